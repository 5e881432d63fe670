//! [`RailwayError`]: what can go wrong talking to Railway's GraphQL API, and [`parse_error`] /
//! [`graphql_error`], the one place an answer becomes a typed error.
//!
//! Railway answers most problems — a refused token, a validation error, "not found" — with HTTP
//! 200 and an `errors[]` list; only rate limits (429), gateway trouble (5xx) and a wrong URL use
//! HTTP statuses. Both paths end here and map to the shared [`ErrorKind`]s. Every text that comes
//! from Railway or the transport goes through the client's [`Scrubber`] as the error is made.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use shipit_core::ErrorKind;
use shipit_core::http::{self, Attempts, RetryableError, Scrubber};

/// Most characters of Railway's message kept in an error.
const MESSAGE_CHARS: usize = 300;

/// Which environment variable the token came from, for messages.
pub const TOKEN_HINT: &str = "set RAILWAY_TOKEN (a project token) or RAILWAY_API_TOKEN (an account or workspace token), \
                              or run `shipit login railway`";

/// An error from the Railway client. Messages never contain a token or a variable's value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RailwayError {
    /// No token was configured; nothing was sent.
    #[error("no Railway token: {TOKEN_HINT}")]
    MissingToken,
    /// Railway refused the token (an `errors[]` "Not Authorized", or HTTP 401/403).
    #[error("Railway refused the token ({env}): {message} — check it, or run `shipit login railway`")]
    Unauthorized {
        /// `RAILWAY_TOKEN` or `RAILWAY_API_TOKEN`, or where else the token came from
        /// ([`RailwayConfig::token_origin`](crate::RailwayConfig::token_origin)).
        env: &'static str,
        /// Railway's message.
        message: String,
    },
    /// The token cannot reach this project or environment: nothing was changed.
    #[error("{0}")]
    OutOfScope(String),
    /// An earlier request was refused as unauthorized, so this one was not sent.
    #[error("not sending more requests: Railway refused the token earlier — {TOKEN_HINT}")]
    Stopped,
    /// A project, environment, service or deployment that does not exist.
    #[error("not found on Railway: {message}")]
    NotFound {
        /// Railway's message.
        message: String,
    },
    /// 429.
    #[error("rate limited by Railway{}: {message}", retry_after.map(|d| format!(" (retry after {}s)", d.as_secs())).unwrap_or_default())]
    RateLimited {
        /// Retry-After (or the rate-limit window's reset), when sent.
        retry_after: Option<Duration>,
        /// Railway's message.
        message: String,
    },
    /// A 5xx: the request may or may not have been applied.
    #[error("Railway API error {status}: {message}")]
    Server {
        /// The status.
        status: u16,
        /// The message.
        message: String,
        /// Retry-After, when sent.
        retry_after: Option<Duration>,
    },
    /// The request did not complete (connection refused, reset, timed out, body cut short).
    #[error("Railway API request failed: {message}{}", attempts.map(|a| format!(" ({a})")).unwrap_or_default())]
    Network {
        /// The root cause, briefly, scrubbed (`cannot reach backboard.railway.com: connection refused`).
        message: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
        /// When it was the last of several attempts.
        attempts: Option<Attempts>,
    },
    /// Railway refused the request (`errors[]`): a validation problem or a refused change.
    #[error("Railway refused {operation}: {message}")]
    Refused {
        /// The GraphQL operation.
        operation: String,
        /// Railway's message.
        message: String,
    },
    /// Any other HTTP status.
    #[error("Railway API error {status}: {message}")]
    Api {
        /// The status.
        status: u16,
        /// The message.
        message: String,
    },
    /// An answer shipit could not read (a 200 whose body is not the expected JSON).
    #[error("unexpected answer from Railway ({what}): {message}")]
    Decode {
        /// Which call.
        what: String,
        /// What was wrong (never a value from the body).
        message: String,
    },
    /// The client configuration is invalid (bad URL…).
    #[error("invalid Railway configuration: {0}")]
    Config(String),
}

impl RailwayError {
    /// A transport error, its message (which quotes the URL) scrubbed.
    /// The message names the root cause (`cannot reach backboard.railway.com: connection refused`).
    pub(crate) fn network(source: reqwest::Error, scrubber: &Scrubber) -> Self {
        let url = source.url();
        let host = url.and_then(|u| u.host_str()).unwrap_or("the Railway API");
        let host = url.and_then(|u| u.port()).map_or_else(|| host.to_string(), |port| format!("{host}:{port}"));
        let message = scrubber.scrub(&http::transport_message(&host, &source));
        RailwayError::Network { message, source, attempts: None }
    }

    /// The shared kind, which drives retries and exit codes.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::MissingToken | Self::Unauthorized { .. } | Self::OutOfScope(_) | Self::Stopped => {
                ErrorKind::Unauthorized
            }
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::RateLimited { .. } => ErrorKind::RateLimited,
            // A body cut short or garbled on the way: reading again may succeed.
            Self::Server { .. } | Self::Network { .. } | Self::Decode { .. } => ErrorKind::Transient,
            Self::Refused { .. } | Self::Config(_) => ErrorKind::InvalidConfig,
            Self::Api { status: 400 | 422, .. } => ErrorKind::InvalidConfig,
            Self::Api { .. } => ErrorKind::Other,
        }
    }

    /// How long Railway asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } | Self::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether a change that failed this way may have been made anyway (a 5xx, a lost or
    /// unreadable answer): look before sending it again.
    pub fn may_have_applied(&self) -> bool {
        matches!(self, Self::Server { .. } | Self::Network { .. } | Self::Decode { .. })
    }
}

impl RetryableError for RailwayError {
    fn is_temporary(&self) -> bool {
        self.kind().is_temporary()
    }

    fn retry_after(&self) -> Option<Duration> {
        RailwayError::retry_after(self)
    }

    fn retry_reason(&self) -> String {
        self.to_string()
    }

    fn with_attempts(mut self, attempts: Attempts) -> Self {
        match &mut self {
            Self::Unauthorized { message, .. }
            | Self::NotFound { message }
            | Self::RateLimited { message, .. }
            | Self::Server { message, .. }
            | Self::Refused { message, .. }
            | Self::Api { message, .. }
            | Self::Decode { message, .. } => *message = format!("{message} ({attempts})"),
            Self::Network { attempts: noted, .. } => *noted = Some(attempts),
            Self::MissingToken | Self::Stopped | Self::OutOfScope(_) | Self::Config(_) => {}
        }
        self
    }
}

impl From<RailwayError> for shipit_core::Error {
    fn from(e: RailwayError) -> Self {
        shipit_core::Error::new(e.kind(), e.to_string()).with_retry_after(e.retry_after()).with_source(e)
    }
}

/// How long to wait after a 429: `Retry-After`, else the `X-RateLimit-Reset` window.
fn wait_of(headers: &HeaderMap) -> Option<Duration> {
    let header = |name| headers.get(name).and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok());
    http::retry_after(header(RETRY_AFTER.as_str()), SystemTime::now(), http::MAX_WAIT)
        .or_else(|| http::rate_limit_reset(header("x-ratelimit-reset"), SystemTime::now(), http::MAX_WAIT))
}

/// Maps a non-2xx answer to a [`RailwayError`]. A body with `errors[]` gives the message; any
/// other body is summarised in one line (an HTML page by its title).
pub fn parse_error(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    env: &'static str,
    scrubber: &Scrubber,
) -> RailwayError {
    let text = scrubber.error_summary(body, ERROR_FIELDS, MESSAGE_CHARS);
    let message = if text.is_empty() { status.canonical_reason().unwrap_or("no details").to_string() } else { text };
    match status.as_u16() {
        401 | 403 => RailwayError::Unauthorized { env, message },
        404 => RailwayError::NotFound { message },
        429 => RailwayError::RateLimited { retry_after: wait_of(headers), message },
        s if s >= 500 => RailwayError::Server { status: s, message, retry_after: wait_of(headers) },
        s => RailwayError::Api { status: s, message },
    }
}

/// Where Railway puts its message: GraphQL's `errors[].message` (all of them, joined), and
/// `message`/`error` from the gateway in front of it.
const ERROR_FIELDS: &[&str] = &["/errors", "/message", "/error"];

/// Maps the `errors[]` of an HTTP 200 answer to `operation` to a [`RailwayError`].
pub fn graphql_error(operation: &str, messages: &[String], env: &'static str, scrubber: &Scrubber) -> RailwayError {
    let message = scrubber.error_text(&messages.join("; "), MESSAGE_CHARS);
    let lower = message.to_ascii_lowercase();
    if lower.contains("not authorized")
        || lower.contains("unauthorized")
        || lower.contains("project token not found")
        || lower.contains("invalid token")
        || lower.contains("authentication required")
    {
        RailwayError::Unauthorized { env, message }
    } else if lower.contains("rate limit") {
        RailwayError::RateLimited { retry_after: None, message }
    } else if lower.contains("not found") {
        RailwayError::NotFound { message }
    } else if lower.contains("internal server error") || lower.contains("timed out") || lower.contains("try again") {
        RailwayError::Server { status: 200, message, retry_after: None }
    } else {
        RailwayError::Refused { operation: operation.to_string(), message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gql(msg: &str) -> RailwayError {
        graphql_error("ServiceInstanceUpdate", &[msg.to_string()], "RAILWAY_API_TOKEN", &Scrubber::new())
    }

    #[test]
    fn graphql_errors_map_to_kinds() {
        assert_eq!(gql("Not Authorized").kind(), ErrorKind::Unauthorized);
        assert_eq!(gql("Project Token not found").kind(), ErrorKind::Unauthorized);
        assert_eq!(gql("Service not found").kind(), ErrorKind::NotFound);
        assert_eq!(gql("Invalid region eu-mars1").kind(), ErrorKind::InvalidConfig);
        assert_eq!(gql("Internal server error").kind(), ErrorKind::Transient);
        assert_eq!(
            gql("Invalid region eu-mars1").to_string(),
            "Railway refused ServiceInstanceUpdate: Invalid region eu-mars1"
        );
    }

    #[test]
    fn error_bodies_are_one_line() {
        let parse = |status, body: &str| {
            parse_error(status, &HeaderMap::new(), body.as_bytes(), "RAILWAY_TOKEN", &Scrubber::new()).to_string()
        };
        let page = "<!DOCTYPE html>\n<html>\n<head>\n<title>railway.com | 502: Bad gateway</title>\n</head>\n\
                    <body><h1>Bad gateway</h1>\n<p>Error code 502</p></body>\n</html>";
        assert_eq!(parse(StatusCode::BAD_GATEWAY, page), "Railway API error 502: railway.com | 502: Bad gateway");
        let two = r#"{"errors":[{"message":"Problem processing request"},{"message":"try again"}]}"#;
        assert_eq!(parse(StatusCode::BAD_REQUEST, two), "Railway API error 400: Problem processing request; try again");
        assert_eq!(parse(StatusCode::SERVICE_UNAVAILABLE, ""), "Railway API error 503: Service Unavailable");
    }

    #[test]
    fn statuses_map_to_kinds_and_retry_after() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, reqwest::header::HeaderValue::from_static("7"));
        let e = parse_error(
            StatusCode::TOO_MANY_REQUESTS,
            &h,
            br#"{"errors":[{"message":"slow down"}]}"#,
            "RAILWAY_TOKEN",
            &Scrubber::new(),
        );
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        assert_eq!(e.to_string(), "rate limited by Railway (retry after 7s): slow down");
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-reset", reqwest::header::HeaderValue::from_static("30"));
        let e = parse_error(StatusCode::TOO_MANY_REQUESTS, &h, b"", "RAILWAY_TOKEN", &Scrubber::new());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(30)), "the window's reset when Retry-After is missing");
        let e = parse_error(StatusCode::BAD_GATEWAY, &HeaderMap::new(), b"", "RAILWAY_TOKEN", &Scrubber::new());
        assert!(e.is_temporary() && e.may_have_applied());
        let e = parse_error(StatusCode::UNAUTHORIZED, &HeaderMap::new(), b"", "RAILWAY_TOKEN", &Scrubber::new());
        assert_eq!(e.kind(), ErrorKind::Unauthorized);
    }

    #[test]
    fn messages_are_scrubbed() {
        let scrubber = Scrubber::new().with_secret("tok-s3cret");
        let e = graphql_error("X", &["bad token tok-s3cret".to_string()], "RAILWAY_TOKEN", &scrubber);
        assert!(!e.to_string().contains("tok-s3cret"), "{e}");
    }
}
