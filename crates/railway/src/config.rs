//! [`RailwayConfig`]: how to reach Railway (token, endpoint) and how patiently to work with it.

use std::time::Duration;

use secrecy::SecretString;
use shipit_core::http::{Scrubber, without_userinfo};
use shipit_core::retry::RetryPolicy;

use crate::client::RailwayClient;
use crate::error::RailwayError;
use crate::platform::RailwayPlatform;

/// Railway's public GraphQL endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://backboard.railway.com/graphql/v2";
/// A project token: sent as `project-access-token`, bound to one project and one environment.
pub const PROJECT_TOKEN_ENV: &str = "RAILWAY_TOKEN";
/// An account or workspace token: sent as `Authorization: Bearer`.
pub const API_TOKEN_ENV: &str = "RAILWAY_API_TOKEN";
/// Replaces the whole endpoint URL (a fake in tests).
pub const ENDPOINT_ENV: &str = "SHIPIT_RAILWAY_API_URL";
/// The poll interval of a deployment (a Go duration, e.g. `"10s"`; default 2 s): longer saves
/// requests on plans with low hourly limits, shorter suits tests against a fake.
pub const POLL_INTERVAL_ENV: &str = "SHIPIT_RAILWAY_POLL_INTERVAL";

/// A Railway token and how it is sent.
#[derive(Clone)]
pub enum RailwayToken {
    /// `RAILWAY_TOKEN`: header `project-access-token`; one project, one environment.
    Project(SecretString),
    /// `RAILWAY_API_TOKEN`: `Authorization: Bearer`; whatever the account or workspace can reach.
    Api(SecretString),
}

impl RailwayToken {
    /// The variable such a token is read from (for messages).
    pub fn env_var(&self) -> &'static str {
        match self {
            Self::Project(_) => PROJECT_TOKEN_ENV,
            Self::Api(_) => API_TOKEN_ENV,
        }
    }
}

impl std::fmt::Debug for RailwayToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}(<redacted>)", self.env_var())
    }
}

/// Settings of a [`RailwayPlatform`], built with [`RailwayPlatform::builder`] or
/// [`RailwayConfig::from_env`].
///
/// A missing token is not an error here: `render` and `--dry-run` need none; each API call then
/// fails without sending anything.
#[derive(Clone)]
#[must_use]
pub struct RailwayConfig {
    pub(crate) token: Option<RailwayToken>,
    pub(crate) token_origin: Option<&'static str>,
    pub(crate) endpoint: String,
    pub(crate) poll_interval: Duration,
    pub(crate) retry: RetryPolicy,
    pub(crate) request_timeout: Duration,
    pub(crate) scrubber: Scrubber,
}

impl std::fmt::Debug for RailwayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RailwayConfig")
            .field("token", &self.token)
            .field("token_origin", &self.token_origin)
            .field("endpoint", &without_userinfo(&self.endpoint))
            .field("poll_interval", &self.poll_interval)
            .field("retry", &self.retry)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl Default for RailwayConfig {
    fn default() -> Self {
        Self {
            token: None,
            token_origin: None,
            endpoint: DEFAULT_ENDPOINT.to_string(),
            poll_interval: Duration::from_secs(2),
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(30),
            scrubber: Scrubber::new(),
        }
    }
}

impl RailwayConfig {
    /// Defaults: no token, the public endpoint, 2 s polling.
    pub fn new() -> Self {
        Self::default()
    }

    /// From the environment: `RAILWAY_TOKEN` (used when both are set, as the Railway CLI does),
    /// else `RAILWAY_API_TOKEN`; `SHIPIT_RAILWAY_API_URL`; `SHIPIT_RAILWAY_POLL_INTERVAL`.
    /// Empty values count as unset.
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) with another source of variables (tests, a caller that
    /// resolves credentials itself).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let env_value = |name: &str| var(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let token = env_value(PROJECT_TOKEN_ENV)
            .map(|t| RailwayToken::Project(SecretString::from(t)))
            .or_else(|| env_value(API_TOKEN_ENV).map(|t| RailwayToken::Api(SecretString::from(t))));
        let mut config = Self { token, ..Self::default() };
        if let Some(url) = env_value(ENDPOINT_ENV) {
            config.endpoint = url;
        }
        if let Some(every) = env_value(POLL_INTERVAL_ENV).and_then(|v| v.parse::<shipit_core::GoDuration>().ok()) {
            config.poll_interval = every.get();
        }
        config
    }

    /// The token.
    pub fn token(mut self, token: RailwayToken) -> Self {
        self.token = Some(token);
        self
    }

    /// Where the token came from when it is not the variable its kind is read from (e.g. "the
    /// OS keyring (`shipit login railway`)"): messages about the token name this instead of
    /// `RAILWAY_TOKEN` or `RAILWAY_API_TOKEN`.
    pub fn token_origin(mut self, origin: &'static str) -> Self {
        self.token_origin = Some(origin);
        self
    }

    /// Another endpoint (a fake in tests): the whole URL, e.g. `http://127.0.0.1:9/graphql/v2`.
    pub fn with_base_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint = url.into();
        self
    }

    /// Time between polls of a deployment (default 2 s).
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

    /// Builds the platform. Fails only on an invalid endpoint or TLS setup.
    pub fn build(self) -> Result<RailwayPlatform, RailwayError> {
        let shown = without_userinfo(&self.endpoint);
        let url = reqwest::Url::parse(&self.endpoint)
            .map_err(|e| RailwayError::Config(format!("endpoint {shown:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(RailwayError::Config(format!("endpoint {shown:?}: only http and https are supported")));
        }
        let client = RailwayClient::new(
            self.endpoint.clone(),
            self.token.clone(),
            self.token_origin,
            self.retry,
            self.request_timeout,
            self.scrubber.clone(),
        )?;
        Ok(RailwayPlatform::new(client, self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_endpoint_are_never_shown() {
        let config = RailwayConfig::new()
            .token(RailwayToken::Project(SecretString::from("proj-s3cret")))
            .with_base_url("http://u:hunter2@127.0.0.1:9/graphql/v2");
        let shown = format!("{config:?}");
        assert!(!shown.contains("proj-s3cret") && !shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("RAILWAY_TOKEN(<redacted>)"), "{shown}");
        let bad = RailwayConfig::new().with_base_url("ftp://u:hunter2@host/x").build().err().map(|e| e.to_string());
        assert_eq!(
            bad.as_deref(),
            Some("invalid Railway configuration: endpoint \"ftp://***@host/x\": only http and https are supported")
        );
    }
}
