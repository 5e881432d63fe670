//! [`FlyError`]: what can go wrong talking to the Fly Machines API, and [`parse_error`], the one
//! place an HTTP error response becomes a typed error.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use shipit_core::ErrorKind;

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
    #[error("Fly API request failed: {0}")]
    Network(#[source] reqwest::Error),
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
    /// The shared kind, which drives retries and exit codes.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::MissingToken | Self::Unauthorized { .. } | Self::Stopped => ErrorKind::Unauthorized,
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::Conflict { .. } => ErrorKind::Conflict,
            Self::RateLimited { .. } => ErrorKind::RateLimited,
            Self::Server { .. } | Self::Network(_) => ErrorKind::Transient,
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
        matches!(self, Self::Server { .. } | Self::Network(_))
    }

    /// Whether this is a 409 about a lease, with its owner.
    pub fn lease_owner(&self) -> Option<Option<&str>> {
        match self {
            Self::Conflict { owner, .. } => Some(owner.as_deref()),
            _ => None,
        }
    }
}

impl From<FlyError> for shipit_core::Error {
    fn from(e: FlyError) -> Self {
        shipit_core::Error::new(e.kind(), e.to_string()).with_retry_after(e.retry_after()).with_source(e)
    }
}

/// Maps an error response to a [`FlyError`]. The only place statuses are interpreted.
pub fn parse_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> FlyError {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let message = error_message(json.as_ref(), body, status);
    let retry_after = retry_after(headers);
    match status.as_u16() {
        401 | 403 => FlyError::Unauthorized { status: status.as_u16(), message },
        404 => FlyError::NotFound { message },
        408 => FlyError::WaitTimeout { message },
        409 => FlyError::Conflict { owner: lease_owner(json.as_ref(), &message), message },
        429 => FlyError::RateLimited { retry_after, message },
        s if s >= 500 => FlyError::Server { status: s, message, retry_after },
        s => FlyError::Api { status: s, message },
    }
}

/// Fly's `{"error": "..."}`, else the body's text, shortened.
fn error_message(json: Option<&serde_json::Value>, body: &[u8], status: StatusCode) -> String {
    let from_json = json.and_then(|j| {
        j.get("error")
            .or_else(|| j.get("message"))
            .or_else(|| j.get("data").and_then(|d| d.get("error")))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    });
    let text = from_json.unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    let text = if text.is_empty() { status.canonical_reason().unwrap_or("no details").to_string() } else { text };
    shorten(&text, 300)
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max).collect();
    out.push('…');
    out
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

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = jiff::fmt::rfc2822::parse(v).ok()?.timestamp();
    let secs = at.as_second() - jiff::Timestamp::now().as_second();
    Some(Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(status: u16, body: &str) -> FlyError {
        parse_error(StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT), &HeaderMap::new(), body.as_bytes())
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
        h.insert(reqwest::header::RETRY_AFTER, reqwest::header::HeaderValue::from_static("3"));
        let e = parse_error(StatusCode::TOO_MANY_REQUESTS, &h, b"");
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        let core: shipit_core::Error = e.into();
        assert_eq!(core.retry_after, Some(Duration::from_secs(3)));
    }
}
