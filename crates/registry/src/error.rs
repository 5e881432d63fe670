//! [`RegistryError`]: everything that can go wrong talking to a registry, with the shared
//! [`ErrorKind`] it maps to when it crosses into the engine.
//!
//! Messages are for people: they name the image, say what the registry answered, and say what
//! to change (which variable to set, which list to add a host to). They never contain a token:
//! the client scrubs the credentials it knows from anything a registry echoes back
//! ([`shipit_core::http::Scrubber`]). After retries, the detail says how many attempts were made.

use std::time::Duration;

use shipit_core::ErrorKind;
use shipit_core::http::{Attempts, RetryableError, Scrubber};

/// An error from the registry client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The repository, tag or digest does not exist (404, `MANIFEST_UNKNOWN`, `NAME_UNKNOWN`).
    #[error("{image} not found in the registry{}", detail_suffix(.detail))]
    NotFound {
        /// The image as the user wrote it (`ghcr.io/acme/api:3f2c1ab`).
        image: String,
        /// What the registry said, when it said something.
        detail: String,
    },

    /// The registry wants credentials that were not given, or refused the ones given
    /// (401/403 after authenticating).
    #[error("{}", unauthorized_message(.image, .user.as_deref(), .detail, .hint))]
    Unauthorized {
        /// The image (`ghcr.io/acme/api:3f2c1ab`).
        image: String,
        /// The user whose credentials were refused; `None` when none were sent.
        user: Option<String>,
        /// What the registry said.
        detail: String,
        /// What to do: which variables to set or check.
        hint: String,
    },

    /// 429: the registry asks us to slow down.
    #[error("{registry} is rate limiting requests{}{}", detail_suffix(.detail), after_suffix(*.retry_after))]
    RateLimited {
        /// Registry host.
        registry: String,
        /// How long it asked us to wait (Retry-After, seconds or an HTTP date).
        retry_after: Option<Duration>,
        /// What the registry said.
        detail: String,
    },

    /// A 5xx (or another status worth retrying): the registry is having trouble.
    #[error("{registry} answered {status}{}{}", detail_suffix(.detail), after_suffix(*.retry_after))]
    Server {
        /// Registry host.
        registry: String,
        /// HTTP status.
        status: u16,
        /// What the registry said.
        detail: String,
        /// How long it asked us to wait (Retry-After, seconds or an HTTP date), if it did.
        retry_after: Option<Duration>,
    },

    /// The registry could not be reached (DNS, connection, timeout): worth retrying.
    #[error("cannot reach {url}: {cause}")]
    Network {
        /// The URL (never carries credentials).
        url: String,
        /// The root cause, briefly (`connection refused`).
        cause: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },

    /// The TLS handshake failed (a certificate that is not trusted, or a server that speaks
    /// plain HTTP): not retried, the configuration has to change.
    #[error(
        "TLS with {url} failed: {cause}; if {host} is a registry you trust that serves plain HTTP, \
         add it to SHIPIT_INSECURE_REGISTRIES (comma-separated host[:port])"
    )]
    Tls {
        /// `host[:port]`.
        host: String,
        /// The URL.
        url: String,
        /// The chain of causes, joined.
        cause: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },

    /// A plain-HTTP URL (a registry, token realm or redirect) for a host that is not listed as
    /// insecure. Nothing was sent to it.
    #[error(
        "refusing plain HTTP to {host} ({url}): shipit talks to registries over HTTPS only; \
         if {host} is a registry you trust that serves plain HTTP, add it to SHIPIT_INSECURE_REGISTRIES \
         (comma-separated host[:port])"
    )]
    PlainHttpRefused {
        /// `host[:port]`.
        host: String,
        /// The URL that was refused.
        url: String,
    },

    /// The registry answered something this client does not understand.
    #[error("{registry} sent an unexpected response: {detail}")]
    InvalidResponse {
        /// Registry host.
        registry: String,
        /// What was wrong.
        detail: String,
    },

    /// The image reference cannot be resolved (for example a malformed digest).
    #[error("cannot resolve {image}: {detail}")]
    InvalidReference {
        /// The image.
        image: String,
        /// Why.
        detail: String,
    },

    /// The client's configuration is invalid (an insecure host that is not `host[:port]`…).
    #[error("registry configuration: {0}")]
    InvalidConfig(String),

    /// A tag to push or move is not a valid tag. Checked before any request.
    #[error(
        "{tag:?} is not a valid tag: letters, digits, '_', '.' and '-', at most 128, starting with a letter, \
         a digit or '_'"
    )]
    InvalidTag {
        /// The tag as given.
        tag: String,
    },

    /// The OCI image layout to push cannot be pushed as it is: not a layout (no `oci-layout` or
    /// `index.json`), a missing blob, a blob whose size is not its descriptor's, a platform that
    /// is neither real nor an attestation, several images to choose from… Found before anything
    /// is tagged.
    #[error("{path}: {detail}")]
    InvalidLayout {
        /// The layout (directory or tar file).
        path: String,
        /// What is wrong and, when it helps, what to do.
        detail: String,
    },

    /// A blob of the layout does not hash to the digest it is named by (or is shorter or longer
    /// than its descriptor says): the layout is corrupt. Nothing was tagged.
    #[error("{path}: blob {digest} is corrupt: {detail}; nothing was tagged")]
    CorruptBlob {
        /// The layout.
        path: String,
        /// The digest the blob should have.
        digest: String,
        /// What was found instead.
        detail: String,
    },

    /// Reading the layout failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl RegistryError {
    /// The kind shared across shipit's crates.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::Unauthorized { .. } => ErrorKind::Unauthorized,
            Self::RateLimited { .. } => ErrorKind::RateLimited,
            Self::Server { .. } => ErrorKind::Transient,
            Self::Network { source, .. } => {
                if source.is_builder() {
                    ErrorKind::InvalidConfig
                } else {
                    ErrorKind::Transient
                }
            }
            Self::Tls { .. }
            | Self::PlainHttpRefused { .. }
            | Self::InvalidReference { .. }
            | Self::InvalidConfig(_)
            | Self::InvalidTag { .. }
            | Self::InvalidLayout { .. }
            | Self::CorruptBlob { .. } => ErrorKind::InvalidConfig,
            Self::InvalidResponse { .. } | Self::Io { .. } => ErrorKind::Other,
        }
    }

    /// How long the registry asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } | Self::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether retrying the same request may succeed.
    pub fn is_temporary(&self) -> bool {
        self.kind().is_temporary()
    }

    /// This error with every text in it scrubbed by `scrubber`.
    pub(crate) fn scrubbed(mut self, scrubber: &Scrubber) -> Self {
        let s = |text: &mut String| *text = scrubber.scrub(text);
        match &mut self {
            Self::NotFound { image, detail } | Self::InvalidReference { image, detail } => {
                s(image);
                s(detail);
            }
            Self::Unauthorized { image, user, detail, hint } => {
                s(image);
                user.iter_mut().for_each(s);
                s(detail);
                s(hint);
            }
            Self::RateLimited { registry, detail, .. }
            | Self::Server { registry, detail, .. }
            | Self::InvalidResponse { registry, detail } => {
                s(registry);
                s(detail);
            }
            Self::Network { url, cause, .. } => {
                s(url);
                s(cause);
            }
            Self::Tls { host, url, cause, .. } => {
                s(host);
                s(url);
                s(cause);
            }
            Self::PlainHttpRefused { host, url } => {
                s(host);
                s(url);
            }
            Self::InvalidConfig(detail) => s(detail),
            Self::InvalidTag { tag } => s(tag),
            Self::InvalidLayout { path, detail } | Self::CorruptBlob { path, detail, .. } => {
                s(path);
                s(detail);
            }
            Self::Io { path, .. } => s(path),
        }
        self
    }
}

impl RetryableError for RegistryError {
    fn is_temporary(&self) -> bool {
        self.kind().is_temporary()
    }

    fn retry_after(&self) -> Option<Duration> {
        RegistryError::retry_after(self)
    }

    fn retry_reason(&self) -> String {
        self.to_string()
    }

    /// Notes the attempts in the detail (or the cause), where the message already says what
    /// the registry answered.
    fn with_attempts(mut self, attempts: Attempts) -> Self {
        match &mut self {
            Self::NotFound { detail, .. }
            | Self::Unauthorized { detail, .. }
            | Self::RateLimited { detail, .. }
            | Self::Server { detail, .. } => {
                *detail = if detail.is_empty() { attempts.to_string() } else { format!("{detail}; {attempts}") };
            }
            Self::InvalidResponse { detail, .. } => *detail = format!("{detail} ({attempts})"),
            Self::Network { cause, .. } | Self::Tls { cause, .. } => *cause = format!("{cause} ({attempts})"),
            _ => {}
        }
        self
    }
}

impl From<RegistryError> for shipit_core::Error {
    fn from(e: RegistryError) -> Self {
        let kind = e.kind();
        let retry_after = e.retry_after();
        let message = e.to_string();
        let error = shipit_core::Error::new(kind, message).with_retry_after(retry_after);
        match e {
            RegistryError::Network { source, .. } | RegistryError::Tls { source, .. } => error.with_source(source),
            RegistryError::Io { source, .. } => error.with_source(source),
            _ => error,
        }
    }
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() { String::new() } else { format!(" ({detail})") }
}

fn after_suffix(after: Option<Duration>) -> String {
    after.map(|d| format!("; retry after {}s", d.as_secs())).unwrap_or_default()
}

fn unauthorized_message(image: &str, user: Option<&str>, detail: &str, hint: &str) -> String {
    let detail = detail_suffix(detail);
    match user {
        None => format!("{image}: the registry requires credentials and none were sent{detail}; {hint}"),
        Some(user) => format!("{image}: the registry refused the credentials of user {user:?}{detail}; {hint}"),
    }
}
