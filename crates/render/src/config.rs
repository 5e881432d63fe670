//! [`RenderConfig`]: how to reach Render (API key, base URL) and how patiently to work with it.

use std::time::Duration;

use secrecy::SecretString;
use shipit_core::http::{Scrubber, without_userinfo};
use shipit_core::retry::RetryPolicy;

use crate::client::RenderClient;
use crate::error::RenderApiError;
use crate::platform::RenderPlatform;

/// Render's public API.
pub const DEFAULT_BASE_URL: &str = "https://api.render.com/v1";
/// The API key, sent as `Authorization: Bearer`.
pub const TOKEN_ENV: &str = "RENDER_API_KEY";
/// Replaces the base URL, including the `/v1`.
pub const BASE_URL_ENV: &str = "SHIPIT_RENDER_API_URL";
/// The poll interval of a deploy (a Go duration, e.g. `"5s"`; default 2 s).
pub const POLL_INTERVAL_ENV: &str = "SHIPIT_RENDER_POLL_INTERVAL";
/// The registry user for a registry credential shipit creates (with `GHCR_TOKEN`).
pub const REGISTRY_USER_ENV: &str = "GITHUB_ACTOR";
/// The registry token for a registry credential shipit creates.
pub const REGISTRY_TOKEN_ENV: &str = "GHCR_TOKEN";

/// Settings of a [`RenderPlatform`], built with [`RenderPlatform::builder`] or
/// [`RenderConfig::from_env`]. A missing key is not an error here: `render` and `--dry-run` need
/// none; each API call then fails without sending anything.
#[derive(Clone)]
#[must_use]
pub struct RenderConfig {
    pub(crate) token: Option<SecretString>,
    pub(crate) base_url: String,
    pub(crate) poll_interval: Duration,
    pub(crate) retry: RetryPolicy,
    pub(crate) request_timeout: Duration,
    pub(crate) scrubber: Scrubber,
    pub(crate) registry_login: Option<(String, SecretString)>,
}

impl std::fmt::Debug for RenderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenderConfig")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("base_url", &without_userinfo(&self.base_url))
            .field("poll_interval", &self.poll_interval)
            .field("retry", &self.retry)
            .field("request_timeout", &self.request_timeout)
            .field("registry_login", &self.registry_login.as_ref().map(|(u, _)| (u, "<redacted>")))
            .finish()
    }
}

impl Default for RenderConfig {
    fn default() -> Self {
        Self {
            token: None,
            base_url: DEFAULT_BASE_URL.to_string(),
            poll_interval: Duration::from_secs(2),
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(30),
            scrubber: Scrubber::new(),
            registry_login: None,
        }
    }
}

impl RenderConfig {
    /// Defaults: no key, the public API, 2 s polling.
    pub fn new() -> Self {
        Self::default()
    }

    /// From the environment: `RENDER_API_KEY`, `SHIPIT_RENDER_API_URL`,
    /// `SHIPIT_RENDER_POLL_INTERVAL`, and `GITHUB_ACTOR` + `GHCR_TOKEN` for a registry
    /// credential. Empty values count as unset.
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) with another source of variables (tests, a caller that
    /// resolves credentials itself).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let env_value = |name: &str| var(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let mut config = Self { token: env_value(TOKEN_ENV).map(SecretString::from), ..Self::default() };
        if let Some(url) = env_value(BASE_URL_ENV) {
            config.base_url = url;
        }
        if let Some(every) = env_value(POLL_INTERVAL_ENV).and_then(|v| v.parse::<shipit_core::GoDuration>().ok()) {
            config.poll_interval = every.get();
        }
        if let (Some(user), Some(token)) = (env_value(REGISTRY_USER_ENV), env_value(REGISTRY_TOKEN_ENV)) {
            config.registry_login = Some((user, SecretString::from(token)));
        }
        config
    }

    /// The API key.
    pub fn token(mut self, token: SecretString) -> Self {
        self.token = Some(token);
        self
    }

    /// Another base URL (a fake in tests), including the `/v1`.
    pub fn with_base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// Time between polls of a deploy (default 2 s).
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every;
        self
    }

    /// Retries of idempotent requests.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Timeout of one request (default 30 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Other secrets to keep out of every message (the caller's process-wide scrubber).
    pub fn scrubber(mut self, scrubber: Scrubber) -> Self {
        self.scrubber = scrubber;
        self
    }

    /// The registry user and token for a registry credential shipit creates on Render.
    pub fn registry_login(mut self, user: impl Into<String>, token: SecretString) -> Self {
        self.registry_login = Some((user.into(), token));
        self
    }

    /// Builds the platform. Fails only on an invalid base URL or TLS setup.
    pub fn build(self) -> Result<RenderPlatform, RenderApiError> {
        let base = self.base_url.trim_end_matches('/').to_string();
        let shown = without_userinfo(&base);
        let url = reqwest::Url::parse(&base).map_err(|e| RenderApiError::Config(format!("base URL {shown:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(RenderApiError::Config(format!("base URL {shown:?}: only http and https are supported")));
        }
        let mut scrubber = self.scrubber.clone();
        if let Some((_, t)) = &self.registry_login {
            scrubber.add(secrecy::ExposeSecret::expose_secret(t));
        }
        let client = RenderClient::new(base, self.token.clone(), self.retry, self.request_timeout, scrubber)?;
        Ok(RenderPlatform::new(client, self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_url_credentials_are_never_shown() {
        let config = RenderConfig::new()
            .token(SecretString::from("rnd_s3cret"))
            .with_base_url("http://u:hunter2@127.0.0.1:9/v1")
            .registry_login("bot", SecretString::from("ghp_s3cret"));
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("rnd_s3cret") && !shown.contains("hunter2") && !shown.contains("ghp_s3cret"),
            "{shown}"
        );
        let bad = RenderConfig::new().with_base_url("ftp://u:hunter2@host/v1").build().err().map(|e| e.to_string());
        assert_eq!(
            bad.as_deref(),
            Some("invalid Render configuration: base URL \"ftp://***@host/v1\": only http and https are supported")
        );
    }
}
