//! [`FlyError`]: what can go wrong talking to the Fly Machines API, and [`parse_error`], the one
//! place an HTTP error response becomes a typed error.
//!
//! Retry-After, the scrubbing and shortening of Fly's message, and the retry bookkeeping
//! ([`RetryableError`]) are [`shipit_core::http`]'s; this module only maps statuses. Every text
//! that comes from Fly or from the transport (a response body, a lease owner, reqwest's message
//! with its URL) goes through the client's [`Scrubber`] as the error is made.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use shipit_core::ErrorKind;
use shipit_core::http::{self, Attempts, RetryableError, Scrubber};

/// Most characters of Fly's message kept in an error.
const MESSAGE_CHARS: usize = 300;

/// Hint shown with every authentication failure.
const TOKEN_HINT: &str = "set FLY_API_TOKEN or run `shipit login fly`";

/// An error from the Fly Machines API client. Messages never contain the token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlyError {
    /// No token was configured; nothing was sent.
    #[error("no Fly API token: {TOKEN_HINT}")]
    MissingToken,
    /// Fly refused the token (401) or its permissions (403).
    #[error("Fly refused the API token ({status}): {message} — check FLY_API_TOKEN or run `shipit login fly`")]
    Unauthorized {
        /// 401 or 403.
        status: u16,
        /// Fly's message.
        message: String,
    },
    /// An earlier request got a 401, so this one was not sent.
    #[error(
        "not sending more requests: Fly refused the API token earlier (401) — check FLY_API_TOKEN or run `shipit login fly`"
    )]
    Stopped,
    /// 404.
    #[error("not found on Fly: {message}")]
    NotFound {
        /// Fly's message.
        message: String,
    },
    /// 409: a lease held by someone else, or the state changed underneath.
    #[error("conflict{}: {message}", owner.as_deref().map(|o| format!(" (held by {o})")).unwrap_or_default())]
    Conflict {
        /// Who holds the lease, when Fly says.
        owner: Option<String>,
        /// Fly's message.
        message: String,
    },
    /// 429.
    #[error("rate limited by Fly{}: {message}", retry_after.map(|d| format!(" (retry after {}s)", d.as_secs())).unwrap_or_default())]
    RateLimited {
        /// Retry-After, when sent.
        retry_after: Option<Duration>,
        /// Fly's message.
        message: String,
    },
    /// A 5xx: the request may or may not have been applied.
    #[error("Fly API error {status}: {message}")]
    Server {
        /// The status.
        status: u16,
        /// Fly's message.
        message: String,
        /// Retry-After, when sent.
        retry_after: Option<Duration>,
    },
    /// 408 from `wait`: the machine did not reach the state within that call's timeout.
    #[error("timed out waiting: {message}")]
    WaitTimeout {
        /// Fly's message.
        message: String,
    },
    /// The request did not complete (connection refused, reset, timed out).
    #[error("Fly API request failed: {message}{}", attempts.map(|a| format!(" ({a})")).unwrap_or_default())]
    Network {
        /// The root cause, briefly, scrubbed (`cannot reach api.machines.dev: connection refused`).
        message: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
        /// When it was the last of several attempts: how many, over how long.
        attempts: Option<Attempts>,
    },
    /// Any other error status.
    #[error("Fly API error {status}: {message}")]
    Api {
        /// The status.
        status: u16,
        /// Fly's message.
        message: String,
    },
    /// A response shipit could not read.
    #[error("unexpected response from Fly ({what}): {message}")]
    Decode {
        /// Which call.
        what: String,
        /// What was wrong.
        message: String,
    },
    /// The client configuration is invalid (bad base URL…).
    #[error("invalid Fly configuration: {0}")]
    Config(String),
}

impl FlyError {
    /// A transport error, its message (which quotes the URL) scrubbed.
    /// The message names the root cause (`cannot reach api.machines.dev: connection refused`).
    pub(crate) fn network(source: reqwest::Error, scrubber: &Scrubber) -> Self {
        let message = scrubber.scrub(&http::transport_message(&host_of(&source), &source));
        FlyError::Network { message, source, attempts: None }
    }

    /// This error with every text in it scrubbed: for messages built from what Fly answered
    /// outside [`parse_error`] (a body that could not be read).
    pub(crate) fn scrubbed(mut self, scrubber: &Scrubber) -> Self {
        match &mut self {
            Self::Unauthorized { message, .. }
            | Self::NotFound { message }
            | Self::RateLimited { message, .. }
            | Self::Server { message, .. }
            | Self::WaitTimeout { message }
            | Self::Network { message, .. }
            | Self::Api { message, .. }
            | Self::Config(message) => *message = scrubber.scrub(message),
            Self::Conflict { owner, message } => {
                *owner = owner.as_deref().map(|o| scrubber.scrub(o));
                *message = scrubber.scrub(message);
            }
            Self::Decode { what, message } => {
                *what = scrubber.scrub(what);
                *message = scrubber.scrub(message);
            }
            Self::MissingToken | Self::Stopped => {}
        }
        self
    }

    /// The shared kind, which drives retries and exit codes.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::MissingToken | Self::Unauthorized { .. } | Self::Stopped => ErrorKind::Unauthorized,
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::Conflict { .. } => ErrorKind::Conflict,
            Self::RateLimited { .. } => ErrorKind::RateLimited,
            Self::Server { .. } | Self::Network { .. } => ErrorKind::Transient,
            Self::WaitTimeout { .. } => ErrorKind::Timeout,
            Self::Api { status: 400 | 422, .. } => ErrorKind::InvalidConfig,
            Self::Api { .. } | Self::Decode { .. } => ErrorKind::Other,
            Self::Config(_) => ErrorKind::InvalidConfig,
        }
    }

    /// How long Fly asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } | Self::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether a non-idempotent request that failed this way may have been applied anyway
    /// (a 5xx or a lost response): look before sending it again.
    pub fn is_ambiguous(&self) -> bool {
        matches!(self, Self::Server { .. } | Self::Network { .. })
    }

    /// Whether a change that failed this way may have been made: an ambiguous failure, or a 2xx
    /// whose body could not be read. Such a failure counts as having touched the service.
    pub fn may_have_applied(&self) -> bool {
        self.is_ambiguous() || matches!(self, Self::Decode { .. })
    }

    /// Whether this is a 409 about a lease, with its owner.
    pub fn lease_owner(&self) -> Option<Option<&str>> {
        match self {
            Self::Conflict { owner, .. } => Some(owner.as_deref()),
            _ => None,
        }
    }
}

impl RetryableError for FlyError {
    fn is_temporary(&self) -> bool {
        self.kind().is_temporary()
    }

    fn retry_after(&self) -> Option<Duration> {
        FlyError::retry_after(self)
    }

    fn retry_reason(&self) -> String {
        self.to_string()
    }

    fn with_attempts(mut self, attempts: Attempts) -> Self {
        match &mut self {
            Self::Unauthorized { message, .. }
            | Self::NotFound { message }
            | Self::Conflict { message, .. }
            | Self::RateLimited { message, .. }
            | Self::Server { message, .. }
            | Self::WaitTimeout { message }
            | Self::Api { message, .. }
            | Self::Decode { message, .. } => *message = format!("{message} ({attempts})"),
            Self::Network { attempts: noted, .. } => *noted = Some(attempts),
            Self::MissingToken | Self::Stopped | Self::Config(_) => {}
        }
        self
    }
}

impl From<FlyError> for shipit_core::Error {
    fn from(e: FlyError) -> Self {
        shipit_core::Error::new(e.kind(), e.to_string()).with_retry_after(e.retry_after()).with_source(e)
    }
}

/// Maps an error response to a [`FlyError`]. The only place statuses are interpreted. Fly's
/// message goes through `scrubber` (the token, and the secret values of the call).
pub fn parse_error(status: StatusCode, headers: &HeaderMap, body: &[u8], scrubber: &Scrubber) -> FlyError {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let message = error_message(body, status, scrubber);
    let retry_after = headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok());
    let retry_after = http::retry_after(retry_after, SystemTime::now(), http::MAX_WAIT);
    match status.as_u16() {
        401 | 403 => FlyError::Unauthorized { status: status.as_u16(), message },
        404 => FlyError::NotFound { message },
        408 => FlyError::WaitTimeout { message },
        409 => FlyError::Conflict { owner: lease_owner(json.as_ref(), &message).map(|o| scrubber.scrub(&o)), message },
        429 => FlyError::RateLimited { retry_after, message },
        s if s >= 500 => FlyError::Server { status: s, message, retry_after },
        s => FlyError::Api { status: s, message },
    }
}

/// Where Fly puts its message: `ErrorResponse.error` in the Machines API's OpenAPI spec,
/// `message` on some endpoints, `data.error` in the `{"status","data"}` envelope of leases.
const ERROR_FIELDS: &[&str] = &["/error", "/message", "/data/error"];

/// Fly's message in one line ([`Scrubber::error_summary`]: an HTML page gives its title),
/// scrubbed and shortened; the status's reason when the body says nothing.
fn error_message(body: &[u8], status: StatusCode, scrubber: &Scrubber) -> String {
    let text = scrubber.error_summary(body, ERROR_FIELDS, MESSAGE_CHARS);
    if text.is_empty() { status.canonical_reason().unwrap_or("no details").to_string() } else { text }
}

/// `host[:port]` of the URL a transport error is about.
fn host_of(e: &reqwest::Error) -> String {
    let url = e.url();
    let host = url.and_then(|u| u.host_str()).unwrap_or("the Fly API");
    match url.and_then(|u| u.port()) {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// The lease owner from a 409 body: `owner` (bare or under `data`), else "held by X" in the text.
fn lease_owner(json: Option<&serde_json::Value>, message: &str) -> Option<String> {
    let field = json.and_then(|j| {
        j.get("owner")
            .or_else(|| j.get("data").and_then(|d| d.get("owner")))
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    });
    field.or_else(|| {
        let lower = message.to_ascii_lowercase();
        let at = lower.find("held by ")? + "held by ".len();
        let owner: String =
            message[at..].chars().take_while(|c| !c.is_whitespace() && *c != ',' && *c != ';').collect();
        let owner = owner.trim_end_matches(['.', ')']).to_string();
        (!owner.is_empty()).then_some(owner)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(status: u16, body: &str) -> FlyError {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT);
        parse_error(status, &HeaderMap::new(), body.as_bytes(), &Scrubber::new())
    }

    #[test]
    fn statuses_map_to_kinds() {
        assert_eq!(parse(401, "{}").kind(), ErrorKind::Unauthorized);
        assert_eq!(parse(403, "").kind(), ErrorKind::Unauthorized);
        assert_eq!(parse(404, r#"{"error":"app not found"}"#).kind(), ErrorKind::NotFound);
        assert_eq!(parse(408, "").kind(), ErrorKind::Timeout);
        assert_eq!(parse(429, "").kind(), ErrorKind::RateLimited);
        assert_eq!(parse(503, "").kind(), ErrorKind::Transient);
        assert_eq!(parse(418, "").kind(), ErrorKind::Other);
    }

    #[test]
    fn lease_owner_from_body_or_text() {
        let e = parse(409, r#"{"error":"lease held","owner":"ci@acme.dev"}"#);
        assert_eq!(e.lease_owner(), Some(Some("ci@acme.dev")));
        let e = parse(409, r#"{"status":"error","data":{"owner":"ops"}}"#);
        assert_eq!(e.lease_owner(), Some(Some("ops")));
        let e = parse(409, r#"{"error":"machine 1 lease currently held by jane@acme.dev, expires at 2026"}"#);
        assert_eq!(e.lease_owner(), Some(Some("jane@acme.dev")));
    }

    #[test]
    fn retry_after_seconds() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, reqwest::header::HeaderValue::from_static("3"));
        let e = parse_error(StatusCode::TOO_MANY_REQUESTS, &h, b"", &Scrubber::new());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        let core: shipit_core::Error = e.into();
        assert_eq!(core.retry_after, Some(Duration::from_secs(3)));
    }

    #[test]
    fn retry_after_as_a_date() {
        let mut h = HeaderMap::new();
        let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(90);
        let at = jiff::fmt::rfc2822::DateTimePrinter::new().timestamp_to_rfc9110_string(&at).unwrap();
        h.insert(RETRY_AFTER, reqwest::header::HeaderValue::from_str(&at).unwrap());
        let after = parse_error(StatusCode::SERVICE_UNAVAILABLE, &h, b"", &Scrubber::new()).retry_after().unwrap();
        assert!(after > Duration::from_secs(80) && after <= Duration::from_secs(90), "{after:?}");
    }

    #[test]
    fn messages_are_scrubbed_and_shortened() {
        let scrubber = Scrubber::new().with_secret("fm2_s3cret");
        let body = br#"{"error":"bad value fm2_s3cret in   request"}"#;
        let e = parse_error(StatusCode::UNPROCESSABLE_ENTITY, &HeaderMap::new(), body, &scrubber);
        assert_eq!(e.to_string(), "Fly API error 422: bad value *** in request");
        let long = "x".repeat(1000);
        let e = parse_error(StatusCode::BAD_GATEWAY, &HeaderMap::new(), long.as_bytes(), &scrubber);
        let FlyError::Server { message, .. } = e else { panic!("{e:?}") };
        assert_eq!(message.chars().count(), MESSAGE_CHARS + 1);
    }

    #[test]
    fn owners_and_unreadable_answers_are_scrubbed() {
        let scrubber = Scrubber::new().with_secret("fm2_s3cret-token");
        let body = br#"{"error":"lease held","owner":"fm2_s3cret-token"}"#;
        let e = parse_error(StatusCode::CONFLICT, &HeaderMap::new(), body, &scrubber);
        assert_eq!(e.lease_owner(), Some(Some("***")));
        let e = FlyError::Decode { what: "lease".into(), message: "invalid type: string \"fm2_s3cret-token\"".into() };
        assert_eq!(
            e.scrubbed(&scrubber).to_string(),
            "unexpected response from Fly (lease): invalid type: string \"***\""
        );
    }

    #[test]
    fn html_and_odd_bodies_are_one_line() {
        let page = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad \
                    Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
        assert_eq!(parse(502, page).to_string(), "Fly API error 502: 502 Bad Gateway");
        let lease = r#"{"status":"error","data":{"error":"lease expired"}}"#;
        assert_eq!(parse(409, lease).to_string(), "conflict: lease expired");
        assert_eq!(parse(500, "oops\n\nstack trace\n  at x").to_string(), "Fly API error 500: oops stack trace at x");
        assert_eq!(parse(503, "").to_string(), "Fly API error 503: Service Unavailable");
    }

    #[test]
    fn attempts_are_noted() {
        let e = parse(503, r#"{"error":"busy"}"#).with_attempts(Attempts::new(3, Duration::from_millis(1500)));
        assert_eq!(e.to_string(), "Fly API error 503: busy (after 3 attempts over 1.5s)");
    }
}
