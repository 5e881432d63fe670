//! [`RegistryClient`]: HTTP to an OCI registry — scheme choice, authentication, retries, request
//! counting, and one [`parse_error`](RegistryClient::parse_error) for every failed response.
//!
//! Retry-After parsing, error-body scrubbing and truncation, and the retry loop come from
//! [`shipit_core::http`]; this module only says which registry answers mean what.
//!
//! The client's [`Scrubber`] knows the configured token, what the caller added
//! ([`RegistryConfig::scrubber`]) and every bearer token the registries' token services have
//! issued to it (added as each arrives). Every error made from a response (its body, a header
//! such as `Location` or a challenge's realm) or from a transport failure (whose message quotes
//! the URL) goes through it.

use std::error::Error as _;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue, LOCATION, RETRY_AFTER};
use reqwest::{Method, Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use shipit_core::ImageRef;
use shipit_core::http::{self, Observed, Scrubber, retry};
use url::Url;

use crate::auth::{Auth, Challenge, TokenCache, challenge};
use crate::config::{GHCR, RegistryConfig, host_matches};
use crate::error::RegistryError;

/// Most bytes read from an error body.
const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// Most characters of a registry's answer quoted in a message.
const DETAIL_CHARS: usize = 300;
/// Most bytes read from a token response.
const TOKEN_BODY_LIMIT: usize = 1024 * 1024;
/// Most bytes of a manifest (the distribution spec lets registries refuse more than 4 MiB).
pub(crate) const MANIFEST_LIMIT: usize = 4 * 1024 * 1024;

/// A client of OCI registries (GHCR, Docker Hub, a local `registry:2`…).
///
/// Cheap to clone: clones share the connection pool, the token cache and the request counter.
/// `Debug` shows the configuration without the token.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    config: RegistryConfig,
    tokens: TokenCache,
    /// Held while a scope's first request is answered or a refused token is renewed.
    auth_lock: tokio::sync::Mutex<()>,
    /// HTTP requests sent, token requests and retries included.
    requests: AtomicU64,
    /// Knows the configured token, the caller's secrets and every bearer token issued so far.
    scrubber: RwLock<Scrubber>,
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient")
            .field("config", &self.inner.config)
            .field("tokens", &self.inner.tokens)
            .field("requests_made", &self.requests_made())
            .finish_non_exhaustive()
    }
}

/// What an operation is about: for URLs, scopes, the token cache, messages and counting.
/// Clones share the request counter, so concurrent requests of one push add up.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// `host[:port]`.
    pub(crate) registry: String,
    /// `acme/forgestack-api`.
    pub(crate) repository: String,
    /// The image as the user knows it, for messages.
    pub(crate) image: String,
    /// Token scopes asked for, each sent as its own `scope` parameter
    /// (`repository:acme/api:pull,push`, then `repository:acme/base:pull` for a mount source).
    pub(crate) scopes: Vec<String>,
    /// Whether the operation writes (a refusal then asks for `packages: write`).
    pub(crate) push: bool,
    /// Requests sent for this operation.
    pub(crate) requests: Arc<AtomicU64>,
}

impl Target {
    /// A read of `image`: scope `repository:<repo>:pull`.
    pub(crate) fn new(image: &ImageRef) -> Self {
        Self {
            registry: image.registry.clone(),
            repository: image.repository.clone(),
            image: image.to_string(),
            scopes: vec![format!("repository:{}:pull", image.repository)],
            push: false,
            requests: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A write to `image`'s repository: `pull,push` on it and `pull` on each mount source.
    pub(crate) fn push(image: &ImageRef, mount_from: &[String]) -> Self {
        let mut scopes = vec![format!("repository:{}:pull,push", image.repository)];
        scopes.extend(mount_from.iter().filter(|r| **r != image.repository).map(|r| format!("repository:{r}:pull")));
        Self { scopes, push: true, ..Self::new(image) }
    }

    /// The token cache key: every scope, in order.
    fn scope_key(&self) -> String {
        self.scopes.join(" ")
    }

    /// Requests sent for this operation so far.
    pub(crate) fn requests_made(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

/// `image` without tag or digest: its repository.
pub(crate) fn bare(image: &ImageRef) -> ImageRef {
    let mut repository = image.clone();
    repository.tag = None;
    repository.digest = None;
    repository
}

/// Builds a request body; called again for every attempt (a retry, a repeat after a 401), so a
/// streamed body is re-opened from its start.
pub(crate) type BodyFn<'a> = dyn Fn() -> Result<reqwest::Body, RegistryError> + Send + Sync + 'a;

/// One request to send with [`RegistryClient::call`].
pub(crate) struct Call<'a> {
    pub(crate) method: Method,
    pub(crate) url: &'a Url,
    pub(crate) accept: Option<&'a str>,
    /// Extra headers (`Content-Type`, `Content-Range`, `Content-Length`).
    pub(crate) headers: HeaderMap,
    pub(crate) body: Option<&'a BodyFn<'a>>,
    /// Whether 5xx, 429 and network errors are retried (only for requests safe to repeat).
    pub(crate) retry: bool,
}

impl<'a> Call<'a> {
    /// A request without body, retried.
    pub(crate) fn new(method: Method, url: &'a Url) -> Self {
        Self { method, url, accept: None, headers: HeaderMap::new(), body: None, retry: true }
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
        let mut scrubber = config.scrubber.clone();
        if let Some(c) = &config.credentials {
            scrubber.add(c.token.expose_secret());
        }
        let scrubber = RwLock::new(scrubber);
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                config,
                tokens: TokenCache::default(),
                auth_lock: tokio::sync::Mutex::new(()),
                requests: AtomicU64::new(0),
                scrubber,
            }),
        })
    }

    /// Whether `registry` (`host[:port]`, e.g. `ghcr.io`) accepts the configured credentials
    /// (for `shipit login`): `GET /v2/`, answering its challenge as every request does (for
    /// GHCR, the token exchange with HTTP Basic credentials), without retries. A refused token
    /// is [`RegistryError::Unauthorized`]; credentials that are not sent to `registry` are
    /// [`RegistryError::InvalidConfig`], with nothing sent.
    pub async fn check_credentials(&self, registry: &str) -> Result<(), RegistryError> {
        if self.credentials_for(registry).is_none() {
            return Err(RegistryError::InvalidConfig(format!("no credentials are sent to {registry}")));
        }
        let target = Target {
            registry: registry.to_string(),
            repository: String::new(),
            image: registry.to_string(),
            scopes: Vec::new(),
            push: false,
            requests: Arc::new(AtomicU64::new(0)),
        };
        let url = self.url(registry, "/v2/")?;
        let response = self.call(&target, Call { retry: false, ..Call::new(Method::GET, &url) }).await?;
        if response.status().is_success() {
            return Ok(());
        }
        Err(self.error_from(&target, response, None).await)
    }

    /// How many HTTP requests this client (and its clones) has sent: registry requests, token
    /// requests and every retry. Read it before and after an operation to count its requests.
    pub fn requests_made(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// What this client keeps out of every error message: the configured token, the caller's
    /// secrets, and every bearer token issued to it so far.
    pub fn scrubber(&self) -> Scrubber {
        self.inner.scrubber.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// `text` scrubbed of every secret this client knows.
    pub(crate) fn scrub(&self, text: &str) -> String {
        self.inner.scrubber.read().unwrap_or_else(PoisonError::into_inner).scrub(text)
    }

    /// `e` with every text in it scrubbed: for errors that quote what a registry answered
    /// outside [`parse_error`](Self::parse_error) (a header, a body that is not JSON).
    pub(crate) fn scrubbed(&self, e: RegistryError) -> RegistryError {
        e.scrubbed(&self.scrubber())
    }

    /// `https://host/path`, or `http://` for a host listed as insecure.
    pub(crate) fn url(&self, registry: &str, path: &str) -> Result<Url, RegistryError> {
        let scheme = if self.inner.config.is_insecure(registry) { "http" } else { "https" };
        Url::parse(&format!("{scheme}://{registry}{path}")).map_err(|e| RegistryError::InvalidReference {
            image: format!("{registry}{path}"),
            detail: format!("not a valid URL: {e}"),
        })
    }

    /// Sends an idempotent request without body to the registry (see [`call`](Self::call)).
    pub(crate) async fn send_authorized(
        &self,
        target: &Target,
        method: Method,
        url: &Url,
        accept: Option<&str>,
    ) -> Result<Response, RegistryError> {
        self.call(target, Call { accept, ..Call::new(method, url) }).await
    }

    /// Sends a request to the registry, authenticating as the registry asks.
    ///
    /// A cached token for the target's scopes is used when there is one. On a 401 the client
    /// answers the challenge (fetching a token for all the scopes, or switching to Basic) and
    /// repeats the request once, body included: this also renews a token the registry no
    /// longer accepts (GHCR says nothing about expiry). With `call.retry`, 5xx, 429 and network
    /// errors are retried with the policy. Any other status is returned for the caller to judge
    /// (a second 401 included). Credentials go only to the target's registry host: an upload
    /// `Location` elsewhere gets none.
    pub(crate) async fn call(&self, target: &Target, call: Call<'_>) -> Result<Response, RegistryError> {
        let (registry, scope) = (&target.registry, target.scope_key());
        let tokens = &self.inner.tokens;
        let own_host = host_port(call.url).eq_ignore_ascii_case(registry);
        let mut auth = if own_host { tokens.get(registry, &scope) } else { None };
        // The first request of a scope goes alone: concurrent blob requests then wait for its
        // token instead of each drawing a 401 and fetching a token of its own.
        let mut first = None;
        if own_host && auth.is_none() && !tokens.is_known(registry, &scope) {
            let guard = self.inner.auth_lock.lock().await;
            auth = tokens.get(registry, &scope);
            if !tokens.is_known(registry, &scope) {
                first = Some(guard);
            }
        }
        let mut answered = false;
        loop {
            let attempt = || async {
                let mut request = self.inner.http.request(call.method.clone(), call.url.clone());
                if let Some(accept) = call.accept {
                    request = request.header(ACCEPT, accept);
                }
                request = request.headers(call.headers.clone());
                if let Some(body) = call.body {
                    request = request.body(body()?);
                }
                request = self.authorize(request, &target.registry, auth.as_ref());
                self.send(target, request, auth.as_ref()).await
            };
            let response = if call.retry { self.with_retry(attempt).await? } else { attempt().await? };
            if response.status() != StatusCode::UNAUTHORIZED || answered || !own_host {
                if response.status() != StatusCode::UNAUTHORIZED && own_host {
                    tokens.mark_known(registry, &scope);
                }
                return Ok(response);
            }
            answered = true;
            let _renewing = match first.take() {
                Some(guard) => guard,
                None => self.inner.auth_lock.lock().await,
            };
            // Renewed by a concurrent request while this one waited: use that token.
            if let Some(current) = tokens.get(registry, &scope)
                && auth.as_ref().is_none_or(|used| !used.same(&current))
            {
                auth = Some(current);
                continue;
            }
            if auth.take().is_some() {
                tokens.remove(registry, &scope);
            }
            let Some(challenge) = challenge(response.headers()) else {
                return Ok(response);
            };
            let fresh = self.answer(target, &challenge, response).await?;
            tokens.insert(registry, &scope, fresh.clone());
            tokens.mark_known(registry, &scope);
            auth = Some(fresh);
        }
    }

    /// The `Location` of a response, resolved against the request's URL; plain HTTP only for
    /// insecure hosts.
    pub(crate) fn location(&self, target: &Target, base: &Url, headers: &HeaderMap) -> Result<Url, RegistryError> {
        let invalid = |detail: String| RegistryError::InvalidResponse { registry: target.registry.clone(), detail };
        let raw = headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| invalid("an upload response without a Location header".into()))?;
        let url =
            base.join(raw).map_err(|e| self.scrubbed(invalid(format!("the Location {raw:?} is not a URL: {e}"))))?;
        match url.scheme() {
            "https" => Ok(url),
            "http" if self.inner.config.is_insecure(&host_port(&url)) => Ok(url),
            "http" => {
                Err(self.scrubbed(RegistryError::PlainHttpRefused { host: host_port(&url), url: url.to_string() }))
            }
            other => Err(self.scrubbed(invalid(format!("the Location {raw:?} has an unsupported scheme {other:?}")))),
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
        unauthorized: Response,
    ) -> Result<Auth, RegistryError> {
        match challenge.scheme.as_str() {
            "bearer" => self.fetch_token(target, challenge).await,
            "basic" if self.credentials_for(&target.registry).is_some() => Ok(Auth::Basic),
            "basic" => Err(self.error_from(target, unauthorized, None).await),
            other => Err(RegistryError::InvalidResponse {
                registry: target.registry.clone(),
                detail: format!("unsupported authentication scheme {other:?} in WWW-Authenticate"),
            }),
        }
    }

    /// `GET realm?service=…&scope=…&scope=…` (one `scope` per target scope, as the distribution
    /// token spec has it), with Basic credentials when there are any for this registry,
    /// anonymously otherwise.
    async fn fetch_token(&self, target: &Target, challenge: &Challenge) -> Result<Auth, RegistryError> {
        let invalid = |detail: String| RegistryError::InvalidResponse { registry: target.registry.clone(), detail };
        let realm = challenge.param("realm").ok_or_else(|| invalid("a Bearer challenge without a realm".into()))?;
        let mut url = Url::parse(realm)
            .map_err(|e| self.scrubbed(invalid(format!("the token realm {realm:?} is not a URL: {e}"))))?;
        match url.scheme() {
            "https" => {}
            "http" if self.inner.config.is_insecure(&host_port(&url)) => {}
            "http" => {
                let refused = RegistryError::PlainHttpRefused { host: host_port(&url), url: url.to_string() };
                return Err(self.scrubbed(refused));
            }
            other => return Err(invalid(format!("the token realm has an unsupported scheme {other:?}"))),
        }
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = challenge.param("service") {
                query.append_pair("service", service);
            }
            for scope in &target.scopes {
                query.append_pair("scope", scope);
            }
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
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            self.scrubbed(invalid(format!("the token service answered something that is not a token: {e}")))
        })?;
        let expires_in = parsed.expires_in;
        let token = parsed
            .token
            .filter(|t| !t.is_empty())
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| invalid("the token service answered without a token".into()))?;
        // Known from now on: a registry that quotes it back in any later answer is scrubbed.
        self.inner.scrubber.write().unwrap_or_else(PoisonError::into_inner).add(&token);
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
        self.inner.requests.fetch_add(1, Ordering::Relaxed);
        target.requests.fetch_add(1, Ordering::Relaxed);
        let watch = Observed::start(request.method().as_str(), &url);
        let response = match self.inner.http.execute(request).await {
            Ok(response) => response,
            Err(e) => {
                watch.failed(&e);
                return Err(self.network_error(&url, &target.registry, e));
            }
        };
        let status = response.status();
        watch.status(status.as_u16(), status.canonical_reason());
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Err(self.error_from(target, response, auth).await);
        }
        Ok(response)
    }

    /// Runs `op` under the retry policy; the last error keeps its type and says how many
    /// attempts were made.
    pub(crate) async fn with_retry<T, F, Fut>(&self, op: F) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, RegistryError>>,
    {
        retry(&self.inner.config.retry, op).await
    }

    /// Reads a failed response's body (bounded) and turns it into an error.
    pub(crate) async fn error_from(&self, target: &Target, response: Response, auth: Option<&Auth>) -> RegistryError {
        let status = response.status();
        let headers = response.headers().clone();
        let body = read_limited(response, ERROR_BODY_LIMIT).await.unwrap_or_default();
        self.parse_error(target, status, &headers, &body, &self.scrubber_for(target, auth))
    }

    /// The client's scrubber plus the bearer tokens this request may have carried: the one
    /// it was sent with and the one cached for its scopes (both already known once issued;
    /// added again for tokens from elsewhere).
    fn scrubber_for(&self, target: &Target, auth: Option<&Auth>) -> Scrubber {
        let cached = self.inner.tokens.get(&target.registry, &target.scope_key());
        let mut scrubber = self.scrubber();
        for used in [auth, cached.as_ref()].into_iter().flatten() {
            if let Auth::Bearer { token, .. } = used {
                scrubber.add(token.expose_secret());
            }
        }
        scrubber
    }

    /// The one place a failed registry response becomes a [`RegistryError`].
    ///
    /// Registry bodies are `{"errors":[{"code","message","detail"}]}`; anything else is quoted
    /// (whitespace collapsed, truncated). Either way the text goes through `scrubber`.
    pub(crate) fn parse_error(
        &self,
        target: &Target,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        scrubber: &Scrubber,
    ) -> RegistryError {
        let entries = serde_json::from_slice::<ErrorBody>(body).map(|b| b.errors).unwrap_or_default();
        let codes: Vec<&str> = entries.iter().map(|e| e.code.as_str()).collect();
        let from_json = entries
            .iter()
            .map(|e| match (e.code.is_empty(), e.message.is_empty()) {
                (false, false) => format!("{}: {}", e.code, e.message),
                (false, true) => e.code.clone(),
                _ => e.message.clone(),
            })
            .collect::<Vec<_>>()
            .join("; ");
        // Not the registry's JSON: one line of it (an HTML error page gives its title).
        let detail = if from_json.is_empty() {
            scrubber.error_summary(body, &["/message", "/error"], DETAIL_CHARS)
        } else {
            scrubber.error_text(&from_json, DETAIL_CHARS)
        };
        let retry_after = headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok());
        let retry_after = http::retry_after(retry_after, SystemTime::now(), http::MAX_WAIT);
        let unknown = codes.iter().any(|c| matches!(*c, "MANIFEST_UNKNOWN" | "NAME_UNKNOWN" | "BLOB_UNKNOWN"));
        let denied = codes.iter().any(|c| matches!(*c, "UNAUTHORIZED" | "DENIED"));
        match status {
            StatusCode::NOT_FOUND => RegistryError::NotFound { image: target.image.clone(), detail: String::new() },
            _ if unknown && !status.is_server_error() => {
                RegistryError::NotFound { image: target.image.clone(), detail: String::new() }
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => self.unauthorized(target, detail),
            _ if denied && status.is_client_error() => self.unauthorized(target, detail),
            StatusCode::TOO_MANY_REQUESTS => {
                RegistryError::RateLimited { registry: target.registry.clone(), retry_after, detail }
            }
            s if s.is_server_error() => {
                RegistryError::Server { registry: target.registry.clone(), status: s.as_u16(), detail, retry_after }
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
            (Some(_), _) if target.push => {
                "check GITHUB_TOKEN or GHCR_TOKEN (or `shipit login ghcr`): pushing needs a token that can write the \
                 package (`packages: write` in the workflow's permissions, or `write:packages` for a personal token), \
                 and GITHUB_ACTOR (the user the token belongs to)"
                    .to_string()
            }
            (None, None) if target.push => "set GITHUB_TOKEN or GHCR_TOKEN to a token that can write the package \
                 (`packages: write` in the workflow's permissions, or `write:packages` for a personal token), and \
                 GITHUB_ACTOR to the user it belongs to, or run `shipit login ghcr`"
                .to_string(),
            (Some(_), _) => {
                "check GITHUB_TOKEN or GHCR_TOKEN, or `shipit login ghcr` (the token must be valid and able \
                 to read the package: `read:packages`) and GITHUB_ACTOR (the user the token belongs to)"
                    .to_string()
            }
            (None, Some(_)) => format!(
                "the configured credentials (GITHUB_TOKEN or GHCR_TOKEN) are sent only to {GHCR} and the hosts in \
                 SHIPIT_GHCR_HOSTS; add {} there if they belong to this registry",
                target.registry
            ),
            (None, None) => "set GITHUB_TOKEN or GHCR_TOKEN to a token that can read the package \
                 (`read:packages`), and GITHUB_ACTOR to the user it belongs to, or run `shipit login ghcr`"
                .to_string(),
        };
        RegistryError::Unauthorized { image: target.image.clone(), user: sent, detail, hint }
    }

    /// A transport error; a failed TLS handshake is told apart (it needs a configuration change,
    /// not a retry).
    pub(crate) fn network_error(&self, url: &str, registry: &str, source: reqwest::Error) -> RegistryError {
        let mut causes = Vec::new();
        let mut next: Option<&(dyn std::error::Error + 'static)> = source.source();
        while let Some(e) = next {
            if let Some(refused) = e.downcast_ref::<PlainHttpRedirect>() {
                let url = self.scrub(&refused.url);
                return RegistryError::PlainHttpRefused { host: refused.host.clone(), url };
            }
            let text = e.to_string();
            if !causes.contains(&text) {
                causes.push(text);
            }
            next = e.source();
        }
        let cause = if causes.is_empty() { source.to_string() } else { causes.join(": ") };
        let (url, cause) = (&self.scrub(url), self.scrub(&cause));
        let lower = cause.to_ascii_lowercase();
        let tls = ["tls", "ssl", "certificate", "corrupt message", "invalidcontenttype", "handshake"]
            .iter()
            .any(|w| lower.contains(w));
        if tls && url.starts_with("https://") {
            let host = Url::parse(url).map(|u| host_port(&u)).unwrap_or_else(|_| registry.to_string());
            return RegistryError::Tls { host, url: url.to_string(), cause, source };
        }
        // The root cause in a few words (`connection refused`); `-v` shows the whole chain.
        let cause = self.scrub(&http::brief_cause(&source));
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const TOKEN: &str = "ghp_s3cretTokenValue42";

    fn parse(status: u16, headers: HeaderMap, body: &[u8]) -> RegistryError {
        let client = RegistryClient::builder().credentials("octocat", SecretString::from(TOKEN)).build().unwrap();
        let image: ImageRef = "ghcr.io/acme/api:v1".parse().unwrap();
        let target = Target::new(&image);
        let status = StatusCode::from_u16(status).unwrap();
        client.parse_error(&target, status, &headers, body, &client.scrubber_for(&target, None))
    }

    fn retry_after(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let e = parse(429, retry_after("7"), b"");
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        let e = parse(503, retry_after(&at), b"");
        let after = e.retry_after().unwrap();
        assert!(after > Duration::from_secs(110) && after <= Duration::from_secs(121), "{after:?}");
        // HTTP dates have whole seconds: 120 s ahead reads back as 118–120 s.
        assert!(["118s", "119s", "120s"].iter().any(|s| e.to_string().ends_with(&format!("retry after {s}"))), "{e}");
        assert_eq!(parse(429, retry_after("soon"), b"").retry_after(), None);
    }

    #[test]
    fn bodies_are_scrubbed_and_cut() {
        let e = parse(500, HeaderMap::new(), format!("token {TOKEN} was\n\n  refused").as_bytes());
        assert_eq!(e.to_string(), "ghcr.io answered 500 (token *** was refused)");
        let json = format!(r#"{{"errors":[{{"code":"DENIED","message":"bad token %22{TOKEN}%22"}}]}}"#);
        let e = parse(403, HeaderMap::new(), json.as_bytes());
        let RegistryError::Unauthorized { detail, .. } = e else { panic!("{e:?}") };
        assert_eq!(detail, "DENIED: bad token %22***%22");
        let long = "x".repeat(1000);
        let RegistryError::Server { detail, .. } = parse(502, HeaderMap::new(), long.as_bytes()) else { panic!() };
        assert_eq!(detail.chars().count(), DETAIL_CHARS + 1);
        let html = parse(502, HeaderMap::new(), b"<html><body>Bad gateway</body></html>");
        assert_eq!(html.to_string(), "ghcr.io answered 502 (HTML error page (37 bytes))");
        let page = b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad \
                     Gateway</h1></center>\r\n</body>\r\n</html>\r\n";
        assert_eq!(parse(502, HeaderMap::new(), page).to_string(), "ghcr.io answered 502 (502 Bad Gateway)");
    }
}
