//! HTTP plumbing every client shares: rate-limit headers, error bodies made safe to show,
//! status polling, and (re-exported from [`crate::retry`]) retries.
//!
//! # Design
//!
//! Core does not depend on an HTTP client. Everything here takes plain values — a header's
//! text as `Option<&str>`, a body as `&[u8]`, the current time as a parameter — so each client
//! (reqwest in the platform crates and the registry) reads its own response and hands the
//! pieces over, and the parsing is unit-tested without a server or a clock.
//!
//! - **Waiting.** [`retry_after`] reads `Retry-After` in both forms RFC 9110 allows (seconds,
//!   or an HTTP date, including the two obsolete date formats), [`rate_limit_reset`] reads
//!   `X-RateLimit-Reset`/`RateLimit-Reset` (epoch seconds or a number of seconds: APIs use
//!   both, Render's documentation says one and shows the other). Both are capped, so a server
//!   cannot park us for a day.
//! - **Error bodies.** A [`Scrubber`] holds the secrets a client knows (its token, the secret
//!   values it is syncing) and removes them from any text in every form a server may echo them
//!   (plain, percent-encoded, base64, JSON-escaped), plus credentials in URLs.
//!   [`Scrubber::error_body`] is the one way a response body becomes part of a message:
//!   scrubbed first, then whitespace collapsed and cut to a length (scrubbing after cutting
//!   could leave half a secret). [`error_body`] shapes without scrubbing.
//! - **Polling.** [`poll_until`] runs a status check every interval until it says
//!   [`Poll::Ready`], backing off on temporary errors, and ends at the deadline or on
//!   cancellation with a typed [`PollError`].
//! - **Retries.** [`retry`] is generic over the client's own error type ([`RetryableError`]),
//!   so typed errors survive a retry, and the last error says how many attempts were made.
//! - **Explaining errors.** [`Scrubber::error_summary`] makes any error body one line: the
//!   platform's own message from its JSON error shape, an HTML page's `<title>`, or the text.
//!   [`transport_message`] names a transport failure's root cause
//!   (`cannot reach api.machines.dev: connection refused`), [`cause_chain`] lists every cause.
//! - **Watching.** Every client wraps each request in an [`Observed`], and [`retry`] reports
//!   each retry: both go to the process's [`Observer`] when one is set ([`set_observer`]; the
//!   CLI's `-v` and `-vv`). Method, URL, status or cause, time: never a header or a body.
//!
//! # Secrets never leave
//!
//! A [`Scrubber`] is applied where text *enters* shipit's errors and events, not where they are
//! printed. Whoever holds the credentials builds one that knows every secret in use (the CLI:
//! one per process, from the tokens and URLs in the environment and the secret values it reads)
//! and hands it to the clients and the event sink:
//!
//! - each client builds every error from a response (body, headers such as `Location`) or a
//!   transport error (whose message quotes the URL) through its scrubber, which also knows the
//!   client's own token, its base URL's credentials and, for the registry, every bearer token
//!   issued to it;
//! - [`Events::scrubbed`](crate::Events::scrubbed) scrubs every text field of every event before
//!   the sink sees it ([`Error::scrubbed`](crate::Error::scrubbed) and
//!   [`Summary::scrubbed`](crate::engine::Summary::scrubbed) do the same for an error and a
//!   verdict);
//! - the CLI scrubs its final error message, the summary and every JSON line once more, as a
//!   last line of defence.
//!
//! URLs are shown without their userinfo ([`without_userinfo`]): a base URL configured as
//! `https://user:pass@host` is used as given and shown as `https://***@host`.

mod cause;
pub(crate) mod observe;
mod poll;
mod scrub;
mod summary;

use std::time::{Duration, SystemTime};

pub use std::task::Poll;

pub use crate::retry::{Attempts, RetryPolicy, RetryableError, retry};
pub use cause::{brief_cause, cause_chain, transport_message};
pub use observe::{Observed, Observer, Outcome, Request, Retry, set_observer};
pub use poll::{POLL_BACKOFF_CAP, PollError, poll_until};
pub use scrub::{REDACTED, Scrubber, error_body, error_text, without_userinfo};

/// A sane ceiling for a server's "wait this long": clients pass it to [`retry_after`] and
/// [`rate_limit_reset`] (the retry loop then cuts it further, to its policy's `max_delay`).
pub const MAX_WAIT: Duration = Duration::from_secs(3600);

/// Values at or above this (2001-09-09) are read as Unix timestamps by [`rate_limit_reset`];
/// smaller ones as a number of seconds.
const EPOCH_THRESHOLD: u64 = 1_000_000_000;

/// How long a `Retry-After` header asks to wait, at most `max`.
///
/// Accepts delay-seconds (`120`) and an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`, and the
/// obsolete RFC 850 and asctime forms), measured from `now`; a date in the past means "now"
/// ([`Duration::ZERO`]). `None` when the header is absent or unreadable.
pub fn retry_after(value: Option<&str>, now: SystemTime, max: Duration) -> Option<Duration> {
    let value = value?.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = httpdate::parse_http_date(value).ok()?;
            at.duration_since(now).unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(max))
}

/// How long until a rate-limit window resets, from `X-RateLimit-Reset` or `RateLimit-Reset`,
/// at most `max`.
///
/// Accepts a Unix timestamp in seconds (`1711234600`, measured from `now`; a past one means
/// "now") and a number of seconds (`45`): values from 1 000 000 000 on are timestamps. `None`
/// when the header is absent or not a non-negative integer.
pub fn rate_limit_reset(value: Option<&str>, now: SystemTime, max: Duration) -> Option<Duration> {
    let n = value?.trim().parse::<u64>().ok()?;
    let wait = if n >= EPOCH_THRESHOLD {
        let at = SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(n))?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    } else {
        Duration::from_secs(n)
    };
    Some(wait.min(max))
}

/// Why an answer could not be read as JSON, without quoting it (serde's own message quotes the
/// value it choked on, which may be a secret): `the answer is not valid JSON (line 1, column 12)`.
pub fn unreadable_answer(e: &serde_json::Error) -> String {
    let kind = match e.classify() {
        serde_json::error::Category::Io => "could not be read",
        serde_json::error::Category::Syntax => "is not valid JSON",
        serde_json::error::Category::Data => "does not have the expected shape",
        serde_json::error::Category::Eof => "stops short",
    };
    format!("the answer {kind} (line {}, column {})", e.line(), e.column())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-03-01T12:00:00Z.
    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_294_400)
    }

    const MAX: Duration = Duration::from_secs(600);

    #[test]
    fn unreadable_answers_quote_nothing() {
        let e = serde_json::from_str::<Vec<u32>>(r#"["s3cret-value"]"#).err();
        let text = e.as_ref().map(unreadable_answer).unwrap_or_default();
        assert_eq!(text, "the answer does not have the expected shape (line 1, column 15)");
        let e = serde_json::from_str::<serde_json::Value>(r#"{"a": "tr"#).err();
        assert!(e.as_ref().map(unreadable_answer).unwrap_or_default().contains("stops short"));
    }

    #[test]
    fn retry_after_in_seconds() {
        assert_eq!(retry_after(Some("3"), now(), MAX), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(Some(" 0 "), now(), MAX), Some(Duration::ZERO));
        assert_eq!(retry_after(Some("86400"), now(), MAX), Some(MAX), "capped");
    }

    #[test]
    fn retry_after_as_an_http_date() {
        let imf = retry_after(Some("Fri, 01 Mar 2024 12:00:30 GMT"), now(), MAX);
        assert_eq!(imf, Some(Duration::from_secs(30)));
        let rfc850 = retry_after(Some("Friday, 01-Mar-24 12:01:00 GMT"), now(), MAX);
        assert_eq!(rfc850, Some(Duration::from_secs(60)));
        let asctime = retry_after(Some("Fri Mar  1 12:00:05 2024"), now(), MAX);
        assert_eq!(asctime, Some(Duration::from_secs(5)));
        let past = retry_after(Some("Thu, 29 Feb 2024 12:00:00 GMT"), now(), MAX);
        assert_eq!(past, Some(Duration::ZERO), "a past date means now");
        let far = retry_after(Some("Sat, 02 Mar 2024 12:00:00 GMT"), now(), MAX);
        assert_eq!(far, Some(MAX), "capped");
    }

    #[test]
    fn retry_after_unreadable() {
        assert_eq!(retry_after(None, now(), MAX), None);
        assert_eq!(retry_after(Some(""), now(), MAX), None);
        assert_eq!(retry_after(Some("-1"), now(), MAX), None);
        assert_eq!(retry_after(Some("soon"), now(), MAX), None);
        assert_eq!(retry_after(Some("1.5"), now(), MAX), None);
    }

    #[test]
    fn rate_limit_reset_both_forms() {
        assert_eq!(rate_limit_reset(Some("45"), now(), MAX), Some(Duration::from_secs(45)));
        assert_eq!(rate_limit_reset(Some("1709294460"), now(), MAX), Some(Duration::from_secs(60)));
        assert_eq!(rate_limit_reset(Some("1709294000"), now(), MAX), Some(Duration::ZERO), "past");
        assert_eq!(rate_limit_reset(Some("1809294400"), now(), MAX), Some(MAX), "capped");
        assert_eq!(rate_limit_reset(Some("999999999"), now(), MAX), Some(MAX), "a count, capped");
        assert_eq!(rate_limit_reset(Some("later"), now(), MAX), None);
        assert_eq!(rate_limit_reset(None, now(), MAX), None);
    }
}
