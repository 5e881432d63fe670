//! Retrying idempotent requests: exponential backoff with jitter, Retry-After honoured, total
//! time capped, and the final error saying how many attempts it took.
//!
//! Only call [`retry`] around requests that are safe to repeat (GET, PUT of the same body,
//! DELETE, or a create that was first looked up). A failed non-idempotent request is returned
//! as it is.
//!
//! [`retry`] is generic over the error: any type implementing [`RetryableError`] goes in and
//! comes out unchanged in type, so a client keeps matching on its own error enum after a retry
//! (no conversion to [`Error`] and back, no downcast). The error only has to say whether it is
//! worth retrying, how long the server asked to wait, and how to note the attempts.
//!
//! This module stays separate from [`crate::http`] (which re-exports it) because nothing here
//! is HTTP-specific, and every client's builder already takes a `shipit_core::retry::RetryPolicy`.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use tokio::time::Instant;

use crate::error::Error;

/// How hard to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Most retries after the first attempt.
    pub max_retries: usize,
    /// First delay.
    pub min_delay: Duration,
    /// Longest delay between attempts (a longer Retry-After is cut to this).
    pub max_delay: Duration,
    /// Cap on the sum of all delays actually slept, Retry-After included.
    pub total: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 5,
            min_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(20),
            total: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        Self { max_retries: 0, ..Self::default() }
    }

    /// Short delays, for tests against fakes.
    pub fn fast() -> Self {
        Self {
            max_retries: 4,
            min_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(50),
            total: Duration::from_secs(2),
        }
    }
}

/// How many attempts a retried call made and how long they took, from the first attempt's
/// start to the last one's end. Shown as `after 5 attempts over 2.3s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Attempts {
    /// Attempts made, the first included.
    pub count: usize,
    /// Time from the first attempt's start to the last one's end.
    pub elapsed: Duration,
}

impl Attempts {
    /// `count` attempts over `elapsed`.
    pub fn new(count: usize, elapsed: Duration) -> Self {
        Self { count, elapsed }
    }
}

impl fmt::Display for Attempts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "after {} attempts over {}", self.count, human(self.elapsed))
    }
}

/// `120ms`, `2.3s`: short, for messages.
pub(crate) fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) { format!("{}ms", d.as_millis()) } else { format!("{:.1}s", d.as_secs_f64()) }
}

/// An error [`retry`] can judge and annotate.
pub trait RetryableError: Sized {
    /// Whether repeating the same idempotent request may succeed (429, 5xx, network).
    fn is_temporary(&self) -> bool;

    /// How long the server asked us to wait (Retry-After), if it did.
    fn retry_after(&self) -> Option<Duration> {
        None
    }

    /// Why the attempt failed, in words, for the process's observer at `-vv`
    /// ([`crate::http::Observer::retry`]). Never contains a token or secret value.
    fn retry_reason(&self) -> String {
        "a temporary failure".to_string()
    }

    /// The same error, noting that it is the last of several attempts. Called only when more
    /// than one attempt was made; typically appends ` (after 5 attempts over 2.3s)` to the
    /// message.
    fn with_attempts(self, attempts: Attempts) -> Self;
}

impl RetryableError for Error {
    fn is_temporary(&self) -> bool {
        self.kind.is_temporary()
    }

    fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    fn retry_reason(&self) -> String {
        self.message.clone()
    }

    fn with_attempts(mut self, attempts: Attempts) -> Self {
        self.message = format!("{} ({attempts})", self.message);
        self
    }
}

/// Runs `op` until it succeeds, fails with a non-temporary error, or the policy runs out, and
/// returns its last error in its own type (annotated with [`RetryableError::with_attempts`]
/// when there was more than one attempt).
///
/// A Retry-After from the server replaces the computed delay, capped at `max_delay`. The sum
/// of the delays slept never exceeds `total`: a retry that would go past it is not made. Each
/// retry is reported to the process's [`Observer`](crate::http::Observer), if any: the attempt,
/// why, and the wait.
pub async fn retry<T, E, F, Fut>(policy: &RetryPolicy, mut op: F) -> Result<T, E>
where
    E: RetryableError,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let backoff = ExponentialBuilder::default()
        .with_min_delay(policy.min_delay)
        .with_max_delay(policy.max_delay)
        .with_max_times(policy.max_retries)
        .with_jitter();
    let (max_delay, total, max_attempts) = (policy.max_delay, policy.total, policy.max_retries + 1);
    let mut slept = Duration::ZERO;
    let started = Instant::now();
    // Atomic rather than Cell so the returned future stays Send.
    let attempts = AtomicUsize::new(0);
    let made = &attempts;
    let counted = || {
        attempts.fetch_add(1, Ordering::Relaxed);
        op()
    };
    let result = counted
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .when(|e: &E| e.is_temporary())
        .adjust(move |e: &E, computed| {
            let delay = computed?;
            let asked = e.retry_after();
            let delay = asked.map_or(delay, |ra| ra.min(max_delay));
            slept = slept.checked_add(delay).filter(|s| *s <= total)?;
            crate::http::observe::report_retry(|| crate::http::Retry {
                attempt: made.load(Ordering::Relaxed),
                max_attempts,
                reason: e.retry_reason(),
                wait: delay,
                retry_after: asked,
            });
            Some(delay)
        })
        .await;
    result.map_err(|e| {
        let count = attempts.load(Ordering::Relaxed);
        if count > 1 { e.with_attempts(Attempts::new(count, started.elapsed())) } else { e }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::error::ErrorKind;

    #[tokio::test(start_paused = true)]
    async fn retries_temporary_errors_only() {
        let calls = AtomicUsize::new(0);
        let r: Result<(), Error> = retry(&RetryPolicy::fast(), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Error::new(ErrorKind::Transient, "503"))
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 5, "one attempt and four retries");
        let Err(e) = r else { panic!("expected an error") };
        assert!(e.message.starts_with("503 (after 5 attempts over "), "{e}");

        let calls = AtomicUsize::new(0);
        let r: Result<(), Error> = retry(&RetryPolicy::fast(), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Error::new(ErrorKind::Unauthorized, "401"))
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 1, "a 401 is not retried");
        let Err(e) = r else { panic!("expected an error") };
        assert_eq!(e.message, "401", "one attempt is not annotated");
    }

    #[tokio::test(start_paused = true)]
    async fn succeeds_after_a_rate_limit() {
        let calls = AtomicUsize::new(0);
        let r = retry(&RetryPolicy::fast(), || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(Error::new(ErrorKind::RateLimited, "429").with_retry_after(Some(Duration::from_millis(1))))
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(r.unwrap(), 7);
    }

    fn policy(max_retries: usize, max_delay: Duration, total: Duration) -> RetryPolicy {
        RetryPolicy { max_retries, min_delay: Duration::from_millis(10), max_delay, total }
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured_and_capped() {
        let start = Instant::now();
        let calls = AtomicUsize::new(0);
        let p = policy(3, Duration::from_secs(2), Duration::from_secs(60));
        let r: Result<(), Error> = retry(&p, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Error::new(ErrorKind::RateLimited, "429").with_retry_after(Some(Duration::from_secs(30))))
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        // Three waits of Retry-After 30s cut to max_delay 2s: exactly 6s with paused time.
        assert_eq!(start.elapsed(), Duration::from_secs(6));
        let Err(e) = r else { panic!("expected an error") };
        assert_eq!(e.message, "429 (after 4 attempts over 6.0s)");
    }

    #[tokio::test(start_paused = true)]
    async fn total_time_cap_counts_retry_after() {
        let start = Instant::now();
        let calls = AtomicUsize::new(0);
        let p = policy(10, Duration::from_secs(1), Duration::from_millis(2500));
        let r: Result<(), Error> = retry(&p, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Error::new(ErrorKind::Transient, "503").with_retry_after(Some(Duration::from_secs(1))))
        })
        .await;
        assert!(r.is_err());
        // Waits of 1s, 1s; a third would make 3s > 2.5s, so it is not made.
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    /// A client's own error type: it comes back as itself, variant and fields intact.
    #[derive(Debug, PartialEq)]
    enum Typed {
        Busy { note: String },
        Gone,
    }

    impl RetryableError for Typed {
        fn is_temporary(&self) -> bool {
            matches!(self, Self::Busy { .. })
        }
        fn with_attempts(self, attempts: Attempts) -> Self {
            match self {
                Self::Busy { note } => Self::Busy { note: format!("{note} ({attempts})") },
                other => other,
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn typed_errors_survive() {
        let calls = AtomicUsize::new(0);
        let r: Result<(), Typed> = retry(&RetryPolicy::fast(), || async {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                Err(Typed::Busy { note: "busy".into() })
            } else {
                Err(Typed::Gone)
            }
        })
        .await;
        assert_eq!(r, Err(Typed::Gone), "the last error, in its own type");

        let r: Result<(), Typed> =
            retry(&RetryPolicy::fast(), || async { Err(Typed::Busy { note: "busy".into() }) }).await;
        let Err(Typed::Busy { note }) = r else { panic!("expected Busy") };
        assert!(note.starts_with("busy (after 5 attempts over "), "{note}");
    }

    #[tokio::test(start_paused = true)]
    async fn retries_are_reported_with_reason_and_wait() {
        let seen = crate::http::observe::tests::seen();
        let calls = AtomicUsize::new(0);
        let p = policy(3, Duration::from_secs(2), Duration::from_secs(60));
        let r =
            retry(&p, || async {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0 => Err(Error::new(ErrorKind::RateLimited, "429 report-me")
                        .with_retry_after(Some(Duration::from_secs(1)))),
                    1 => Err(Error::new(ErrorKind::Transient, "503 report-me")
                        .with_retry_after(Some(Duration::from_secs(30)))),
                    _ => Ok(()),
                }
            })
            .await;
        assert!(r.is_ok());
        let retries = seen.retries.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let mine: Vec<_> = retries.iter().filter(|r| r.reason.ends_with("report-me")).collect();
        assert_eq!(mine.len(), 2, "{retries:?}");
        assert_eq!((mine[0].attempt, mine[0].max_attempts), (1, 4));
        assert_eq!(mine[0].reason, "429 report-me");
        assert_eq!(mine[0].wait, Duration::from_secs(1), "Retry-After honoured");
        assert_eq!(mine[0].retry_after, Some(Duration::from_secs(1)));
        assert_eq!(mine[1].attempt, 2);
        assert_eq!(mine[1].wait, Duration::from_secs(2), "Retry-After 30s cut to max_delay");
        assert_eq!(mine[1].retry_after, Some(Duration::from_secs(30)));
    }

    #[test]
    fn attempts_read_well() {
        assert_eq!(Attempts::new(5, Duration::from_millis(2345)).to_string(), "after 5 attempts over 2.3s");
        assert_eq!(Attempts::new(2, Duration::from_millis(120)).to_string(), "after 2 attempts over 120ms");
    }
}
