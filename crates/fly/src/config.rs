//! [`FlyConfig`]: how to reach Fly (token, base URL) and how patiently to work with it.

use std::time::Duration;

use secrecy::SecretString;
use shipit_core::http::{Scrubber, without_userinfo};
use shipit_core::retry::RetryPolicy;

use crate::client::FlyClient;
use crate::error::FlyError;
use crate::platform::FlyPlatform;

/// The public Machines API.
pub const DEFAULT_BASE_URL: &str = "https://api.machines.dev/v1";
/// Environment variable holding the token.
pub const TOKEN_ENV: &str = "FLY_API_TOKEN";
/// The other variable flyctl reads a token from; [`TOKEN_ENV`] wins when both are set.
pub const ACCESS_TOKEN_ENV: &str = "FLY_ACCESS_TOKEN";
/// Environment variable overriding the base URL.
pub const BASE_URL_ENV: &str = "SHIPIT_FLY_API_URL";
/// Environment variable overriding the poll interval (a Go duration, e.g. `"50ms"`): for
/// tests of the binary against a fake.
pub const POLL_INTERVAL_ENV: &str = "SHIPIT_FLY_POLL_INTERVAL";

/// Settings of a [`FlyPlatform`], built with [`FlyPlatform::builder`] or [`FlyConfig::from_env`].
///
/// A missing token is not an error here: `render` and `--dry-run` need none. Each API call then
/// fails with an [`ErrorKind::Unauthorized`](shipit_core::ErrorKind::Unauthorized) error
/// naming `FLY_API_TOKEN`, without sending anything.
///
/// Credentials in the base URL (`https://user:pass@host/v1`) are used as given (reqwest sends
/// them as Basic credentials) but never shown: messages, `Debug` and
/// [`FlyClient::base_url`] (which `--dry-run` prints) have `https://***@host/v1`.
#[derive(Clone)]
#[must_use]
pub struct FlyConfig {
    pub(crate) token: Option<SecretString>,
    pub(crate) base_url: String,
    pub(crate) poll_interval: Duration,
    pub(crate) retry: RetryPolicy,
    pub(crate) lease_ttl: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) scrubber: Scrubber,
}

impl std::fmt::Debug for FlyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlyConfig")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("base_url", &without_userinfo(&self.base_url))
            .field("poll_interval", &self.poll_interval)
            .field("retry", &self.retry)
            .field("lease_ttl", &self.lease_ttl)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl Default for FlyConfig {
    fn default() -> Self {
        Self {
            token: None,
            base_url: DEFAULT_BASE_URL.to_string(),
            poll_interval: Duration::from_secs(1),
            retry: RetryPolicy::default(),
            lease_ttl: Duration::from_secs(120),
            request_timeout: Duration::from_secs(30),
            scrubber: Scrubber::new(),
        }
    }
}

impl FlyConfig {
    /// Defaults: no token, the public API, 1s polling, 120s leases.
    pub fn new() -> Self {
        Self::default()
    }

    /// From the environment: `FLY_API_TOKEN`, else `FLY_ACCESS_TOKEN` (as flyctl reads them;
    /// an empty value counts as unset), `SHIPIT_FLY_API_URL` and `SHIPIT_FLY_POLL_INTERVAL`.
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) with another source of variables (tests, a caller that
    /// resolves credentials itself).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let var = |name: &str| var(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let mut config = Self::default();
        if let Some(token) = var(TOKEN_ENV).or_else(|| var(ACCESS_TOKEN_ENV)) {
            config.token = Some(SecretString::from(token));
        }
        if let Some(url) = var(BASE_URL_ENV) {
            config.base_url = url;
        }
        if let Some(every) = var(POLL_INTERVAL_ENV).and_then(|v| v.parse::<shipit_core::GoDuration>().ok()) {
            config.poll_interval = every.get();
        }
        config
    }

    /// The API token. Tokens starting `fm1r_`, `fm1a_` or `fm2_` are sent as `FlyV1 <token>`,
    /// others as `Bearer <token>`.
    pub fn token(mut self, token: SecretString) -> Self {
        self.token = Some(token);
        self
    }

    /// Another base URL (a fake in tests), including the `/v1`.
    pub fn with_base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// Time between polls of a machine's state and checks (default 1s).
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every;
        self
    }

    /// Retries of idempotent requests.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// How long a machine lease lasts before it must be refreshed (default 120s).
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// Timeout of one ordinary request (default 30s; `wait` calls get their own).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Other secrets to keep out of every error message, besides the token and the base URL's
    /// credentials (which the client adds itself): a caller's scrubber that knows every
    /// credential in use and the secret values it will sync.
    pub fn scrubber(mut self, scrubber: Scrubber) -> Self {
        self.scrubber = scrubber;
        self
    }

    /// Builds the platform. Fails only on an invalid base URL or TLS setup; never on a
    /// missing token.
    pub fn build(self) -> Result<FlyPlatform, FlyError> {
        let base = self.base_url.trim_end_matches('/').to_string();
        let shown = without_userinfo(&base);
        let url = reqwest::Url::parse(&base).map_err(|e| FlyError::Config(format!("base URL {shown:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FlyError::Config(format!("base URL {shown:?}: only http and https are supported")));
        }
        let client = FlyClient::new(base, self.token.clone(), self.retry, self.request_timeout, self.scrubber.clone())?;
        Ok(FlyPlatform::new(client, self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_credentials_are_never_shown() {
        let config = FlyConfig::new()
            .token(SecretString::from("fm2_token-value"))
            .with_base_url("http://deployer:hunter2-pass@127.0.0.1:9/v1/");
        assert!(!format!("{config:?}").contains("hunter2"), "{config:?}");
        let platform = config.clone().build().map_err(|e| e.to_string());
        let Ok(platform) = platform else { panic!("{platform:?}") };
        assert_eq!(platform.client().base_url(), "http://***@127.0.0.1:9/v1");
        assert!(!format!("{:?}", platform.client()).contains("hunter2"));
        let scrubbed = platform.client().scrubber().scrub("got hunter2-pass and fm2_token-value");
        assert_eq!(scrubbed, "got *** and ***");
        let bad = config.with_base_url("ftp://u:hunter2-pass@host/v1").build().err().map(|e| e.to_string());
        assert_eq!(
            bad.as_deref(),
            Some("invalid Fly configuration: base URL \"ftp://***@host/v1\": only http and https are supported")
        );
    }

    #[test]
    fn fly_access_token_is_read_like_fly_api_token_which_wins() {
        use secrecy::ExposeSecret;
        let token = |vars: &[(&str, &str)]| {
            let config =
                FlyConfig::from_vars(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_string()));
            config.token.map(|t| t.expose_secret().to_string())
        };
        assert_eq!(token(&[("FLY_ACCESS_TOKEN", " fm2_access\n")]).as_deref(), Some("fm2_access"));
        assert_eq!(
            token(&[("FLY_ACCESS_TOKEN", "fm2_access"), ("FLY_API_TOKEN", "fm2_api")]).as_deref(),
            Some("fm2_api")
        );
        assert_eq!(token(&[("FLY_API_TOKEN", " "), ("FLY_ACCESS_TOKEN", "fm2_access")]).as_deref(), Some("fm2_access"));
        assert_eq!(token(&[]), None);
    }
}
