//! [`RenderApiError`]: what can go wrong talking to Render's REST API, and [`parse_error`], the
//! one place an error answer becomes a typed error. (Core's `RenderError` is about rendering
//! files; this one is about the API.)
//!
//! Render answers errors as `{id, message}`. Its rate-limit headers are `Ratelimit-Limit`,
//! `Ratelimit-Remaining` and `Ratelimit-Reset`, the last documented as epoch seconds but shown as a
//! number of seconds in Render's examples: both are accepted ([`shipit_core::http::rate_limit_reset`]).

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use shipit_core::ErrorKind;
use shipit_core::http::{self, Attempts, RetryableError, Scrubber};

/// Most characters of Render's message kept in an error.
const MESSAGE_CHARS: usize = 300;

/// Hint shown with every authentication failure.
const TOKEN_HINT: &str =
    "set RENDER_API_KEY (Render Dashboard → Account settings → API keys) or run `shipit login render`";

/// An error from the Render client. Messages never contain the key or a variable's value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenderApiError {
    /// No key was configured; nothing was sent.
    #[error("no Render API key: {TOKEN_HINT}")]
    MissingToken,
    /// Render refused the key (401/403).
    #[error("Render refused the API key ({status}): {message} — check RENDER_API_KEY or run `shipit login render`")]
    Unauthorized {
        /// 401 or 403.
        status: u16,
        /// Render's message.
        message: String,
    },
    /// An earlier request got a 401, so this one was not sent.
    #[error(
        "not sending more requests: Render refused the API key earlier (401) — check RENDER_API_KEY or run `shipit login render`"
    )]
    Stopped,
    /// 404.
    #[error("not found on Render: {message}")]
    NotFound {
        /// Render's message.
        message: String,
    },
    /// 409.
    #[error("conflict on Render: {message}")]
    Conflict {
        /// Render's message.
        message: String,
    },
    /// 429.
    #[error("rate limited by Render{}: {message}", retry_after.map(|d| format!(" (the limit resets in {}s)", d.as_secs())).unwrap_or_default())]
    RateLimited {
        /// `Retry-After`, else `Ratelimit-Reset`.
        retry_after: Option<Duration>,
        /// Render's message.
        message: String,
    },
    /// A 5xx: the request may or may not have been applied.
    #[error("Render API error {status}: {message}")]
    Server {
        /// The status.
        status: u16,
        /// Render's message.
        message: String,
        /// Retry-After, when sent.
        retry_after: Option<Duration>,
    },
    /// The request did not complete.
    #[error("Render API request failed: {message}{}", attempts.map(|a| format!(" ({a})")).unwrap_or_default())]
    Network {
        /// The root cause, briefly, scrubbed (`cannot reach api.render.com: connection refused`).
        message: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
        /// When it was the last of several attempts.
        attempts: Option<Attempts>,
    },
    /// Any other error status (400, 422…).
    #[error("Render API error {status}: {message}")]
    Api {
        /// The status.
        status: u16,
        /// Render's message.
        message: String,
    },
    /// A 2xx answer shipit could not read.
    #[error("unexpected answer from Render ({what}): {message}")]
    Decode {
        /// Which call.
        what: String,
        /// What was wrong (never a value from the body).
        message: String,
    },
    /// The client configuration is invalid.
    #[error("invalid Render configuration: {0}")]
    Config(String),
}

impl RenderApiError {
    /// A transport error; the message names the root cause
    /// (`cannot reach api.render.com: connection refused`).
    pub(crate) fn network(source: reqwest::Error, scrubber: &Scrubber) -> Self {
        let url = source.url();
        let host = url.and_then(|u| u.host_str()).unwrap_or("the Render API");
        let host = url.and_then(|u| u.port()).map_or_else(|| host.to_string(), |port| format!("{host}:{port}"));
        let message = scrubber.scrub(&http::transport_message(&host, &source));
        Self::Network { message, source, attempts: None }
    }

    /// The shared kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::MissingToken | Self::Unauthorized { .. } | Self::Stopped => ErrorKind::Unauthorized,
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::Conflict { .. } => ErrorKind::Conflict,
            Self::RateLimited { .. } => ErrorKind::RateLimited,
            Self::Server { .. } | Self::Network { .. } | Self::Decode { .. } => ErrorKind::Transient,
            Self::Api { status: 400 | 422, .. } | Self::Config(_) => ErrorKind::InvalidConfig,
            Self::Api { .. } => ErrorKind::Other,
        }
    }

    /// How long Render asked us to wait.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } | Self::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether a change that failed this way may have been made anyway: look before resending.
    pub fn may_have_applied(&self) -> bool {
        matches!(self, Self::Server { .. } | Self::Network { .. } | Self::Decode { .. })
    }
}

impl RetryableError for RenderApiError {
    fn is_temporary(&self) -> bool {
        self.kind().is_temporary()
    }

    fn retry_after(&self) -> Option<Duration> {
        RenderApiError::retry_after(self)
    }

    fn retry_reason(&self) -> String {
        self.to_string()
    }

    fn with_attempts(mut self, attempts: Attempts) -> Self {
        match &mut self {
            Self::Unauthorized { message, .. }
            | Self::NotFound { message }
            | Self::Conflict { message }
            | Self::RateLimited { message, .. }
            | Self::Server { message, .. }
            | Self::Api { message, .. }
            | Self::Decode { message, .. } => *message = format!("{message} ({attempts})"),
            Self::Network { attempts: noted, .. } => *noted = Some(attempts),
            Self::MissingToken | Self::Stopped | Self::Config(_) => {}
        }
        self
    }
}

impl From<RenderApiError> for shipit_core::Error {
    fn from(e: RenderApiError) -> Self {
        shipit_core::Error::new(e.kind(), e.to_string()).with_retry_after(e.retry_after()).with_source(e)
    }
}

/// How long to wait: `Retry-After`, else `Ratelimit-Reset` (seconds or an epoch time).
pub fn wait_of(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    http::retry_after(header(RETRY_AFTER.as_str()), SystemTime::now(), http::MAX_WAIT)
        .or_else(|| http::rate_limit_reset(header("ratelimit-reset"), SystemTime::now(), http::MAX_WAIT))
}

/// Where Render puts its message: the public API's `error` schema is `{id, message}`.
const ERROR_FIELDS: &[&str] = &["/message"];

/// Maps an error answer to a [`RenderApiError`]. Render's `{id, message}` gives the message; any
/// other body is summarised in one line (an HTML page by its title).
pub fn parse_error(status: StatusCode, headers: &HeaderMap, body: &[u8], scrubber: &Scrubber) -> RenderApiError {
    let text = scrubber.error_summary(body, ERROR_FIELDS, MESSAGE_CHARS);
    let message = if text.is_empty() { status.canonical_reason().unwrap_or("no details").to_string() } else { text };
    match status.as_u16() {
        401 | 403 => RenderApiError::Unauthorized { status: status.as_u16(), message },
        404 => RenderApiError::NotFound { message },
        409 => RenderApiError::Conflict { message },
        429 => RenderApiError::RateLimited { retry_after: wait_of(headers), message },
        // Ratelimit-Reset is about the rate limit, not an outage: only Retry-After counts here.
        s if s >= 500 => RenderApiError::Server {
            status: s,
            message,
            retry_after: http::retry_after(
                headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok()),
                SystemTime::now(),
                http::MAX_WAIT,
            ),
        },
        s => RenderApiError::Api { status: s, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn statuses_and_reset_forms() {
        let mut h = HeaderMap::new();
        h.insert("ratelimit-reset", HeaderValue::from_static("12"));
        let e =
            parse_error(StatusCode::TOO_MANY_REQUESTS, &h, br#"{"id":"rate","message":"slow down"}"#, &Scrubber::new());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(12)));
        assert_eq!(e.to_string(), "rate limited by Render (the limit resets in 12s): slow down");
        let epoch = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() + 20).unwrap_or(0);
        let mut h = HeaderMap::new();
        h.insert("ratelimit-reset", HeaderValue::from_str(&epoch.to_string()).unwrap_or(HeaderValue::from_static("0")));
        let wait = parse_error(StatusCode::TOO_MANY_REQUESTS, &h, b"", &Scrubber::new()).retry_after();
        assert!(wait.is_some_and(|w| w <= Duration::from_secs(20) && w >= Duration::from_secs(15)), "{wait:?}");
        assert_eq!(
            parse_error(StatusCode::NOT_FOUND, &HeaderMap::new(), b"", &Scrubber::new()).kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            parse_error(StatusCode::BAD_REQUEST, &HeaderMap::new(), b"{}", &Scrubber::new()).kind(),
            ErrorKind::InvalidConfig
        );
        assert!(parse_error(StatusCode::BAD_GATEWAY, &HeaderMap::new(), b"", &Scrubber::new()).may_have_applied());
    }

    #[test]
    fn error_bodies_are_one_line() {
        let parse = |status, body: &str| parse_error(status, &HeaderMap::new(), body.as_bytes(), &Scrubber::new());
        let page = "<html><head><title>503 Service Temporarily Unavailable</title></head>\n<body>\n<center>\
                    <h1>503 Service Temporarily Unavailable</h1></center>\n</body></html>";
        assert_eq!(
            parse(StatusCode::SERVICE_UNAVAILABLE, page).to_string(),
            "Render API error 503: 503 Service Temporarily Unavailable"
        );
        let json = r#"{"id":"invalid-input","message":"imagePath\nis required"}"#;
        assert_eq!(parse(StatusCode::BAD_REQUEST, json).to_string(), "Render API error 400: imagePath is required");
    }
}
