//! [`RegistryClient`]: HTTP to an OCI registry — scheme choice, authentication, retries, and
//! one [`parse_error`](RegistryClient::parse_error) for every failed response.

use std::error::Error as _;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use shipit_core::ImageRef;
use shipit_core::retry::retry;
use url::Url;

use crate::auth::{Auth, Challenge, TokenCache, challenge};
use crate::config::{GHCR, RegistryConfig, host_matches};
use crate::error::RegistryError;

/// Most bytes read from an error body.
const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// Most bytes read from a token response.
const TOKEN_BODY_LIMIT: usize = 1024 * 1024;
/// Most bytes of a manifest (the distribution spec lets registries refuse more than 4 MiB).
pub(crate) const MANIFEST_LIMIT: usize = 4 * 1024 * 1024;

/// A client of OCI registries (GHCR, Docker Hub, a local `registry:2`…).
///
/// Cheap to clone: clones share the connection pool and the token cache. `Debug` shows the
/// configuration without the token.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    config: RegistryConfig,
    tokens: TokenCache,
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient")
            .field("config", &self.inner.config)
            .field("tokens", &self.inner.tokens)
            .finish_non_exhaustive()
    }
}

/// What a request is about: for URLs, scopes, the token cache and messages.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// `host[:port]`.
    pub(crate) registry: String,
    /// `acme/forgestack-api`.
    pub(crate) repository: String,
    /// The image as the user knows it, for messages.
    pub(crate) image: String,
}

impl Target {
    pub(crate) fn new(image: &ImageRef) -> Self {
        Self { registry: image.registry.clone(), repository: image.repository.clone(), image: image.to_string() }
    }

    /// The token scope for `actions` (`pull`, `pull,push`).
    pub(crate) fn scope(&self, actions: &str) -> String {
        format!("repository:{}:{actions}", self.repository)
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// Refusal of a redirect to plain HTTP, found again in the reqwest error's sources.
#[derive(Debug)]
struct PlainHttpRedirect {
    host: String,
    url: String,
}

impl fmt::Display for PlainHttpRedirect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refusing a redirect to plain HTTP {}", self.url)
    }
}

impl std::error::Error for PlainHttpRedirect {}

/// `host[:port]` of a URL, the way image references and the insecure list spell it.
fn host_port(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => String::new(),
    }
}

impl RegistryClient {
    /// A builder; see [`RegistryConfig`].
    pub fn builder() -> RegistryConfig {
        RegistryConfig::new()
    }

    /// A client configured from the environment ([`RegistryConfig::from_env`]).
    pub fn from_env() -> Result<Self, RegistryError> {
        RegistryConfig::from_env().build()
    }

    /// The configuration (without a way to read the token).
    pub fn config(&self) -> &RegistryConfig {
        &self.inner.config
    }

    pub(crate) fn from_config(config: RegistryConfig) -> Result<Self, RegistryError> {
        let insecure = config.insecure_hosts.clone();
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 10 {
                return attempt.error("too many redirects");
            }
            let url = attempt.url();
            if url.scheme() == "http" && !host_matches(&insecure, &host_port(url)) {
                let refused = PlainHttpRedirect { host: host_port(url), url: url.to_string() };
                return attempt.error(refused);
            }
            attempt.follow()
        });
        let http = reqwest::Client::builder()
            .user_agent(config.user_agent.clone())
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .redirect(redirects)
            .build()
            .map_err(|e| RegistryError::InvalidConfig(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self { inner: Arc::new(Inner { http, config, tokens: TokenCache::default() }) })
    }

    /// `https://host/path`, or `http://` for a host listed as insecure.
    pub(crate) fn url(&self, registry: &str, path: &str) -> Result<Url, RegistryError> {
        let scheme = if self.inner.config.is_insecure(registry) { "http" } else { "https" };
        Url::parse(&format!("{scheme}://{registry}{path}")).map_err(|e| RegistryError::InvalidReference {
            image: format!("{registry}{path}"),
            detail: format!("not a valid URL: {e}"),
        })
    }

    /// Sends an idempotent request to the registry, authenticating as the registry asks.
    ///
    /// A cached token is used when there is one. On a 401 the client answers the challenge
    /// (fetching a token, or switching to Basic) and repeats the request once: this also
    /// renews a token the registry no longer accepts (GHCR says nothing about expiry).
    /// 5xx, 429 and network errors are retried with the policy. Any other status is returned
    /// for the caller to judge (a second 401 included).
    pub(crate) async fn send_authorized(
        &self,
        target: &Target,
        method: Method,
        url: &Url,
        accept: Option<&str>,
        actions: &str,
    ) -> Result<Response, RegistryError> {
        let scope = target.scope(actions);
        let mut auth = self.inner.tokens.get(&target.registry, &scope);
        let mut answered = false;
        loop {
            let response = self
                .with_retry(|| {
                    let mut request = self.inner.http.request(method.clone(), url.clone());
                    if let Some(accept) = accept {
                        request = request.header(ACCEPT, accept);
                    }
                    request = self.authorize(request, &target.registry, auth.as_ref());
                    self.send(target, request, auth.as_ref())
                })
                .await?;
            if response.status() != StatusCode::UNAUTHORIZED || answered {
                return Ok(response);
            }
            answered = true;
            if auth.take().is_some() {
                self.inner.tokens.remove(&target.registry, &scope);
            }
            let Some(challenge) = challenge(response.headers()) else {
                return Ok(response);
            };
            let fresh = self.answer(target, &challenge, &scope, response).await?;
            self.inner.tokens.insert(&target.registry, &scope, fresh.clone());
            auth = Some(fresh);
        }
    }

    /// Adds the `Authorization` header for `auth`, marked sensitive.
    fn authorize(
        &self,
        request: reqwest::RequestBuilder,
        registry: &str,
        auth: Option<&Auth>,
    ) -> reqwest::RequestBuilder {
        match auth {
            Some(Auth::Bearer { token, .. }) => {
                match HeaderValue::try_from(format!("Bearer {}", token.expose_secret())) {
                    Ok(mut value) => {
                        value.set_sensitive(true);
                        request.header(AUTHORIZATION, value)
                    }
                    // A token that cannot be a header value is sent as no token: the registry's
                    // 401 then says what is wrong.
                    Err(_) => request,
                }
            }
            Some(Auth::Basic) => match self.credentials_for(registry) {
                Some(c) => request.basic_auth(&c.user, Some(c.token.expose_secret())),
                None => request,
            },
            None => request,
        }
    }

    fn credentials_for(&self, registry: &str) -> Option<&crate::config::Credentials> {
        let config = &self.inner.config;
        config.credentials.as_ref().filter(|_| config.sends_credentials_to(registry))
    }

    /// Answers a 401's challenge: a token for Bearer, the credentials for Basic.
    async fn answer(
        &self,
        target: &Target,
        challenge: &Challenge,
        scope: &str,
        unauthorized: Response,
    ) -> Result<Auth, RegistryError> {
        match challenge.scheme.as_str() {
            "bearer" => self.fetch_token(target, challenge, scope).await,
            "basic" if self.credentials_for(&target.registry).is_some() => Ok(Auth::Basic),
            "basic" => Err(self.error_from(target, unauthorized, None).await),
            other => Err(RegistryError::InvalidResponse {
                registry: target.registry.clone(),
                detail: format!("unsupported authentication scheme {other:?} in WWW-Authenticate"),
            }),
        }
    }

    /// `GET realm?service=…&scope=…`, with Basic credentials when there are any for this
    /// registry, anonymously otherwise.
    async fn fetch_token(&self, target: &Target, challenge: &Challenge, scope: &str) -> Result<Auth, RegistryError> {
        let invalid = |detail: String| RegistryError::InvalidResponse { registry: target.registry.clone(), detail };
        let realm = challenge.param("realm").ok_or_else(|| invalid("a Bearer challenge without a realm".into()))?;
        let mut url = Url::parse(realm).map_err(|e| invalid(format!("the token realm {realm:?} is not a URL: {e}")))?;
        match url.scheme() {
            "https" => {}
            "http" if self.inner.config.is_insecure(&host_port(&url)) => {}
            "http" => return Err(RegistryError::PlainHttpRefused { host: host_port(&url), url: url.to_string() }),
            other => return Err(invalid(format!("the token realm has an unsupported scheme {other:?}"))),
        }
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = challenge.param("service") {
                query.append_pair("service", service);
            }
            query.append_pair("scope", scope);
        }
        let credentials = self.credentials_for(&target.registry);
        let response = self
            .with_retry(|| {
                let mut request = self.inner.http.get(url.clone());
                if let Some(c) = credentials {
                    request = request.basic_auth(&c.user, Some(c.token.expose_secret()));
                }
                self.send(target, request, None)
            })
            .await?;
        if !response.status().is_success() {
            return Err(self.error_from(target, response, None).await);
        }
        let body = read_limited(response, TOKEN_BODY_LIMIT)
            .await
            .map_err(|e| self.network_error(url.as_str(), &target.registry, e))?;
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| invalid(format!("the token service answered something that is not a token: {e}")))?;
        let expires_in = parsed.expires_in;
        let token = parsed
            .token
            .filter(|t| !t.is_empty())
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| invalid("the token service answered without a token".into()))?;
        Ok(Auth::bearer(SecretString::from(token), expires_in))
    }

    /// Sends one request. 429, 5xx and network failures are errors (temporary ones, which
    /// [`with_retry`](Self::with_retry) repeats); every other response is returned.
    async fn send(
        &self,
        target: &Target,
        request: reqwest::RequestBuilder,
        auth: Option<&Auth>,
    ) -> Result<Response, RegistryError> {
        let request = request.build().map_err(|e| self.network_error("", &target.registry, e))?;
        let url = request.url().to_string();
        let response =
            self.inner.http.execute(request).await.map_err(|e| self.network_error(&url, &target.registry, e))?;
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Err(self.error_from(target, response, auth).await);
        }
        Ok(response)
    }

    /// Runs `op` under the retry policy, keeping its typed error.
    pub(crate) async fn with_retry<T, F, Fut>(&self, mut op: F) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, RegistryError>>,
    {
        let last: Mutex<Option<RegistryError>> = Mutex::new(None);
        let result = retry(&self.inner.config.retry, || {
            let attempt = op();
            let last = &last;
            async move {
                attempt.await.map_err(|e| {
                    let shared = shipit_core::Error::new(e.kind(), "").with_retry_after(e.retry_after());
                    *last.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
                    shared
                })
            }
        })
        .await;
        result.map_err(|shared| {
            last.into_inner()
                .unwrap_or_else(PoisonError::into_inner)
                .unwrap_or_else(|| RegistryError::InvalidResponse { registry: String::new(), detail: shared.message })
        })
    }

    /// Reads a failed response's body (bounded) and turns it into an error.
    pub(crate) async fn error_from(&self, target: &Target, response: Response, auth: Option<&Auth>) -> RegistryError {
        let status = response.status();
        let headers = response.headers().clone();
        let body = read_limited(response, ERROR_BODY_LIMIT).await.unwrap_or_default();
        self.scrub(self.parse_error(target, status, &headers, &body), auth)
    }

    /// The one place a failed registry response becomes a [`RegistryError`].
    ///
    /// Registry bodies are `{"errors":[{"code","message","detail"}]}`; anything else is quoted
    /// (first line, truncated).
    pub(crate) fn parse_error(
        &self,
        target: &Target,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> RegistryError {
        let entries = serde_json::from_slice::<ErrorBody>(body).map(|b| b.errors).unwrap_or_default();
        let codes: Vec<&str> = entries.iter().map(|e| e.code.as_str()).collect();
        let mut detail = entries
            .iter()
            .map(|e| match (e.code.is_empty(), e.message.is_empty()) {
                (false, false) => format!("{}: {}", e.code, e.message),
                (false, true) => e.code.clone(),
                _ => e.message.clone(),
            })
            .collect::<Vec<_>>()
            .join("; ");
        if detail.is_empty() {
            let text = String::from_utf8_lossy(body);
            let line = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or_default();
            detail = truncate(line, 200);
            if detail.starts_with('<') {
                detail = String::new(); // an HTML error page says nothing useful
            }
        }
        let unknown = codes.iter().any(|c| matches!(*c, "MANIFEST_UNKNOWN" | "NAME_UNKNOWN" | "BLOB_UNKNOWN"));
        let denied = codes.iter().any(|c| matches!(*c, "UNAUTHORIZED" | "DENIED"));
        match status {
            StatusCode::NOT_FOUND => RegistryError::NotFound { image: target.image.clone(), detail: String::new() },
            _ if unknown && !status.is_server_error() => {
                RegistryError::NotFound { image: target.image.clone(), detail: String::new() }
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => self.unauthorized(target, detail),
            _ if denied && status.is_client_error() => self.unauthorized(target, detail),
            StatusCode::TOO_MANY_REQUESTS => RegistryError::RateLimited {
                registry: target.registry.clone(),
                retry_after: retry_after(headers),
                detail,
            },
            s if s.is_server_error() => {
                RegistryError::Server { registry: target.registry.clone(), status: s.as_u16(), detail }
            }
            s => RegistryError::InvalidResponse {
                registry: target.registry.clone(),
                detail: format!("status {s}{}", if detail.is_empty() { String::new() } else { format!(": {detail}") }),
            },
        }
    }

    fn unauthorized(&self, target: &Target, detail: String) -> RegistryError {
        let config = &self.inner.config;
        let sent = self.credentials_for(&target.registry).map(|c| c.user.clone());
        let hint = match (&sent, &config.credentials) {
            (Some(_), _) => "check GITHUB_TOKEN or GHCR_TOKEN (the token must be valid and able to read the package: \
                 `read:packages`) and GITHUB_ACTOR (the user the token belongs to)"
                .to_string(),
            (None, Some(_)) => format!(
                "the configured credentials (GITHUB_TOKEN or GHCR_TOKEN) are sent only to {GHCR} and the hosts in \
                 SHIPIT_GHCR_HOSTS; add {} there if they belong to this registry",
                target.registry
            ),
            (None, None) => "set GITHUB_TOKEN or GHCR_TOKEN to a token that can read the package \
                 (`read:packages`), and GITHUB_ACTOR to the user it belongs to"
                .to_string(),
        };
        RegistryError::Unauthorized { image: target.image.clone(), user: sent, detail, hint }
    }

    /// Removes every credential this client knows from an error's text.
    fn scrub(&self, error: RegistryError, auth: Option<&Auth>) -> RegistryError {
        let mut secrets: Vec<&str> = Vec::new();
        if let Some(c) = &self.inner.config.credentials {
            secrets.push(c.token.expose_secret());
        }
        if let Some(Auth::Bearer { token, .. }) = auth {
            secrets.push(token.expose_secret());
        }
        let clean = |s: String| secrets.iter().filter(|t| t.len() >= 4).fold(s, |s, t| s.replace(t, "[redacted]"));
        match error {
            RegistryError::NotFound { image, detail } => RegistryError::NotFound { image, detail: clean(detail) },
            RegistryError::Unauthorized { image, user, detail, hint } => {
                RegistryError::Unauthorized { image, user, detail: clean(detail), hint }
            }
            RegistryError::RateLimited { registry, retry_after, detail } => {
                RegistryError::RateLimited { registry, retry_after, detail: clean(detail) }
            }
            RegistryError::Server { registry, status, detail } => {
                RegistryError::Server { registry, status, detail: clean(detail) }
            }
            RegistryError::InvalidResponse { registry, detail } => {
                RegistryError::InvalidResponse { registry, detail: clean(detail) }
            }
            other => other,
        }
    }

    /// A transport error; a failed TLS handshake is told apart (it needs a configuration change,
    /// not a retry).
    pub(crate) fn network_error(&self, url: &str, registry: &str, source: reqwest::Error) -> RegistryError {
        let mut causes = Vec::new();
        let mut next: Option<&(dyn std::error::Error + 'static)> = source.source();
        while let Some(e) = next {
            if let Some(refused) = e.downcast_ref::<PlainHttpRedirect>() {
                return RegistryError::PlainHttpRefused { host: refused.host.clone(), url: refused.url.clone() };
            }
            let text = e.to_string();
            if !causes.contains(&text) {
                causes.push(text);
            }
            next = e.source();
        }
        let cause = if causes.is_empty() { source.to_string() } else { causes.join(": ") };
        let lower = cause.to_ascii_lowercase();
        let tls = ["tls", "ssl", "certificate", "corrupt message", "invalidcontenttype", "handshake"]
            .iter()
            .any(|w| lower.contains(w));
        if tls && url.starts_with("https://") {
            let host = Url::parse(url).map(|u| host_port(&u)).unwrap_or_else(|_| registry.to_string());
            return RegistryError::Tls { host, url: url.to_string(), cause, source };
        }
        RegistryError::Network { url: url.to_string(), cause, source }
    }
}

/// Reads at most `limit` bytes of a body.
pub(crate) async fn read_limited(mut response: Response, limit: usize) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    Ok(body)
}

/// `Retry-After` in seconds (an HTTP date is ignored: the policy's delay is used instead).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}
