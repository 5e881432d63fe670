//! The error every platform operation returns, with a kind shared across crates.
//!
//! Each crate has its own typed error (thiserror) and maps it to an [`ErrorKind`] when it
//! crosses into the engine. The kind drives retries ([`ErrorKind::is_temporary`]) and the CLI's
//! exit code; the message is for people and never contains a token or secret value.

use std::time::Duration;

/// What kind of failure, shared by every platform and the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The token is missing, invalid or lacks permission.
    Unauthorized,
    /// The app, service, machine, image or release does not exist.
    NotFound,
    /// Someone else holds the lock, or the state changed underneath.
    Conflict,
    /// The platform asked us to slow down.
    RateLimited,
    /// The manifest or a flag asks for something invalid.
    InvalidConfig,
    /// The platform cannot do this.
    Unsupported,
    /// Waiting for a rollout ran out of time.
    Timeout,
    /// The new release did not become healthy (check failing, crash, exit).
    Unhealthy,
    /// A network error or a 5xx: worth retrying.
    Transient,
    /// Stopped by Ctrl-C or SIGTERM.
    Cancelled,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// Whether retrying the same idempotent request may succeed.
    pub fn is_temporary(self) -> bool {
        matches!(self, Self::RateLimited | Self::Transient)
    }

    /// The kind's name, as in JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::RateLimited => "rate_limited",
            Self::InvalidConfig => "invalid_config",
            Self::Unsupported => "unsupported",
            Self::Timeout => "timeout",
            Self::Unhealthy => "unhealthy",
            Self::Transient => "transient",
            Self::Cancelled => "cancelled",
            Self::Other => "other",
        }
    }
}

/// An error from a platform, the registry or the engine.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// What happened, for people. Never contains a token or secret value.
    pub message: String,
    /// How long the server asked us to wait (Retry-After).
    pub retry_after: Option<Duration>,
    /// The underlying error.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), retry_after: None, source: None }
    }

    /// The platform cannot do `what`.
    pub fn unsupported(platform: &str, what: impl std::fmt::Display) -> Self {
        Self::new(ErrorKind::Unsupported, format!("{platform} does not support {what}"))
    }

    /// Attaches the underlying error.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Attaches a Retry-After.
    pub fn with_retry_after(mut self, after: Option<Duration>) -> Self {
        self.retry_after = after;
        self
    }

    /// Prefixes the message with context (`"machine 1234: "`).
    pub fn context(mut self, context: impl std::fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// Whether retrying may help.
    pub fn is_temporary(&self) -> bool {
        self.kind.is_temporary()
    }

    /// This error with its message scrubbed by `scrubber` (the source, never shown, is kept).
    pub fn scrubbed(mut self, scrubber: &crate::http::Scrubber) -> Self {
        self.message = scrubber.scrub(&self.message);
        self
    }
}
