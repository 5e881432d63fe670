//! [`RegistryConfig`]: how the client authenticates, which hosts may use plain HTTP, how hard it
//! retries. Built with [`RegistryClient::builder`] or read from the environment with
//! [`RegistryConfig::from_env`].

use std::fmt;
use std::time::Duration;

use secrecy::SecretString;
use shipit_core::http::Scrubber;
use shipit_core::retry::RetryPolicy;

use crate::client::RegistryClient;
use crate::error::RegistryError;

/// The registry `GITHUB_TOKEN` / `GHCR_TOKEN` belong to.
pub const GHCR: &str = "ghcr.io";

/// User name sent with a token when `GITHUB_ACTOR` is not set (GHCR accepts any user name with a
/// personal access token or a job's `GITHUB_TOKEN`).
pub const DEFAULT_USER: &str = "shipit";

/// A user and its token. `Debug` shows the user only.
#[derive(Clone)]
pub(crate) struct Credentials {
    pub(crate) user: String,
    pub(crate) token: SecretString,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("user", &self.user).field("token", &"[redacted]").finish()
    }
}

/// Configuration of a [`RegistryClient`], and its builder.
///
/// ```no_run
/// # use shipit_registry::RegistryClient;
/// # use secrecy::SecretString;
/// let client = RegistryClient::builder()
///     .credentials("octocat", SecretString::from("ghp_…"))
///     .insecure_hosts(vec!["localhost:5000".to_string()])
///     .build()?;
/// # Ok::<(), shipit_registry::RegistryError>(())
/// ```
///
/// `Debug` never shows the token.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    pub(crate) credentials: Option<Credentials>,
    /// Hosts the credentials are sent to; `None` = any registry that asks for them.
    pub(crate) credential_hosts: Option<Vec<String>>,
    pub(crate) insecure_hosts: Vec<String>,
    pub(crate) retry: RetryPolicy,
    pub(crate) user_agent: String,
    pub(crate) timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) scrubber: Scrubber,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            credentials: None,
            credential_hosts: None,
            insecure_hosts: Vec::new(),
            retry: RetryPolicy::default(),
            user_agent: concat!("shipit/", env!("CARGO_PKG_VERSION")).to_string(),
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            scrubber: Scrubber::new(),
        }
    }
}

impl RegistryConfig {
    /// A configuration with no credentials (anonymous pulls only), HTTPS everywhere and the
    /// default retry policy.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the process environment:
    ///
    /// - `GHCR_TOKEN`, else `GITHUB_TOKEN`: the token (empty values count as unset);
    /// - `GITHUB_ACTOR`: its user (default [`DEFAULT_USER`]: GHCR accepts any user name);
    /// - `SHIPIT_GHCR_HOSTS`: comma-separated hosts, besides `ghcr.io`, that these credentials
    ///   are sent to (GitHub Enterprise Server's `containers.<host>`, a local test registry).
    ///   Other registries never see them, so resolving a Docker Hub image cannot leak a
    ///   GitHub token;
    /// - `SHIPIT_INSECURE_REGISTRIES`: comma-separated `host[:port]` reached over plain HTTP
    ///   (checked by [`build`](Self::build)).
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) with another source of variables (tests, a config file).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let var = |name: &str| var(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let mut config = Self::new();
        if let Some(token) = var("GHCR_TOKEN").or_else(|| var("GITHUB_TOKEN")) {
            let user = var("GITHUB_ACTOR").unwrap_or_else(|| DEFAULT_USER.to_string());
            config = config.credentials(user, SecretString::from(token));
            let mut hosts = vec![GHCR.to_string()];
            hosts.extend(split_list(var("SHIPIT_GHCR_HOSTS").as_deref()));
            config = config.credential_hosts(hosts);
        }
        config.insecure_hosts(split_list(var("SHIPIT_INSECURE_REGISTRIES").as_deref()))
    }

    /// Credentials: a user and a token (for GHCR, any user name and a token that can read the
    /// package). Sent as HTTP Basic to the registry's token service, or to the registry itself
    /// when it asks for Basic authentication.
    pub fn credentials(mut self, user: impl Into<String>, token: SecretString) -> Self {
        self.credentials = Some(Credentials { user: user.into(), token });
        self
    }

    /// Restricts the credentials to these registry hosts (`host` or `host:port`). Without this,
    /// credentials are sent to any registry that asks for them.
    pub fn credential_hosts(mut self, hosts: Vec<String>) -> Self {
        self.credential_hosts = Some(hosts);
        self
    }

    /// Hosts reached over plain HTTP (`host` matches any port, `host:port` only that port).
    /// Every other host is HTTPS only, including token services and redirects. `localhost` is
    /// not insecure unless listed.
    pub fn insecure_hosts(mut self, hosts: Vec<String>) -> Self {
        self.insecure_hosts = hosts;
        self
    }

    /// How requests that may be repeated (HEAD, GET, token GET) are retried.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The `User-Agent` header (default `shipit/<version>`).
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// Time limit of one request (default 60 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Time limit to connect (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Other secrets to keep out of every error message, besides the token and the bearer
    /// tokens the client is issued (which it adds itself): a caller's scrubber that knows every
    /// credential in use.
    pub fn scrubber(mut self, scrubber: Scrubber) -> Self {
        self.scrubber = scrubber;
        self
    }

    /// The user the credentials belong to, if any.
    pub fn user(&self) -> Option<&str> {
        self.credentials.as_ref().map(|c| c.user.as_str())
    }

    /// Whether `host` (`host` or `host:port`, as in an image reference) is reached over plain HTTP.
    pub fn is_insecure(&self, host: &str) -> bool {
        host_matches(&self.insecure_hosts, host)
    }

    /// Whether the credentials are sent to `host`.
    pub fn sends_credentials_to(&self, host: &str) -> bool {
        self.credentials.is_some() && self.credential_hosts.as_ref().is_none_or(|hosts| host_matches(hosts, host))
    }

    /// Checks the configuration and builds the client.
    ///
    /// Fails when an insecure or credential host is not `host[:port]` (a scheme or trailing `/`
    /// is tolerated and dropped), or when the user agent is not a valid header value.
    pub fn build(mut self) -> Result<RegistryClient, RegistryError> {
        self.insecure_hosts = normalize_hosts(&self.insecure_hosts, "SHIPIT_INSECURE_REGISTRIES")?;
        if let Some(hosts) = &self.credential_hosts {
            self.credential_hosts = Some(normalize_hosts(hosts, "credential hosts (SHIPIT_GHCR_HOSTS)")?);
        }
        if let Some(c) = &self.credentials
            && (c.user.is_empty() || c.user.contains(':'))
        {
            return Err(RegistryError::InvalidConfig(format!(
                "the registry user {:?} must be non-empty and contain no ':' (set GITHUB_ACTOR)",
                c.user
            )));
        }
        RegistryClient::from_config(self)
    }
}

fn split_list(list: Option<&str>) -> Vec<String> {
    list.unwrap_or_default().split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// `host` or `host:port`, lowercased; a scheme and a trailing `/` are dropped.
fn normalize_hosts(hosts: &[String], what: &str) -> Result<Vec<String>, RegistryError> {
    hosts
        .iter()
        .map(|raw| {
            let h = raw.trim();
            let h = h.strip_prefix("http://").or_else(|| h.strip_prefix("https://")).unwrap_or(h);
            let h = h.trim_end_matches('/').to_ascii_lowercase();
            let (name, port) = match h.rsplit_once(':') {
                Some((name, port)) => (name, Some(port)),
                None => (h.as_str(), None),
            };
            let name_ok = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
            let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
            if name_ok && port_ok {
                Ok(h)
            } else {
                // `user:pass@host` (with or without a scheme) is quoted without its userinfo.
                let shown = match raw.rsplit_once('@') {
                    Some((_, host)) => format!("***@{host}"),
                    None => raw.trim().to_string(),
                };
                Err(RegistryError::InvalidConfig(format!(
                    "{what}: {shown:?} is not host[:port] (for example `localhost:5000` or `registry.internal`)"
                )))
            }
        })
        .collect()
}

/// Whether `host` (`name` or `name:port`) is in `list`: an entry with a port matches exactly, an
/// entry without one matches the name on any port.
pub(crate) fn host_matches(list: &[String], host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host.as_str(),
    };
    list.iter().any(|entry| {
        let entry = entry.to_ascii_lowercase();
        entry == host || (!entry.contains(':') && entry == name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_matching() {
        let list = vec!["localhost:5000".to_string(), "registry.internal".to_string()];
        assert!(host_matches(&list, "localhost:5000"));
        assert!(!host_matches(&list, "localhost:5001"));
        assert!(!host_matches(&list, "localhost"));
        assert!(host_matches(&list, "registry.internal"));
        assert!(host_matches(&list, "Registry.Internal:8443"));
        assert!(!host_matches(&list, "ghcr.io"));
    }

    #[test]
    fn normalizes_and_refuses_hosts() {
        let ok = normalize_hosts(&["http://LocalHost:5000/".to_string(), "10.0.0.1".to_string()], "x").unwrap();
        assert_eq!(ok, ["localhost:5000", "10.0.0.1"]);
        for bad in ["localhost:", "a/b", "host:port", "a b", ":5000"] {
            assert!(normalize_hosts(&[bad.to_string()], "x").is_err(), "{bad:?}");
        }
        for with_credentials in ["http://user:hunter2@localhost:5000", "user:hunter2@localhost:5000", "tok@host"] {
            let e = normalize_hosts(&[with_credentials.to_string()], "x").err().map(|e| e.to_string());
            let e = e.unwrap_or_default();
            assert!(e.contains("***@") && !e.contains("hunter2") && !e.contains("tok@"), "{e}");
        }
    }
}
