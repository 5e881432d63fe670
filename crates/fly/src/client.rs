//! [`FlyClient`]: typed calls to the Fly Machines API.
//!
//! Retries follow one rule: a request is repeated only when repeating it cannot do something
//! twice. GETs, lease refreshes and releases, and secret sets (the same values again) are
//! retried on 429/5xx/network errors. Creates and machine updates are not retried blindly:
//! after an ambiguous failure (5xx, lost response) the client first looks whether the first
//! attempt took effect (the app exists, a machine with that name exists, the machine runs that
//! config) and sends again only if it did not. That look is a single request (`*_once`): a
//! retrying lookup inside the retry loop would multiply the attempts.
//!
//! A 401 stops the client: no further request is sent. The IP address calls are the exception
//! (a deploy reads and allocates them only after `GET /apps/{app}` passed with the same token,
//! so there a 401 says the token may not manage IP addresses, not that it is wrong).
//!
//! Retries, Retry-After and the scrubbing of error messages come from [`shipit_core::http`]:
//! the retried call's last [`FlyError`] comes back as itself, saying how many attempts it took.
//! The client's [`Scrubber`] knows the token, the credentials of the base URL and whatever the
//! caller added ([`FlyConfig::scrubber`](crate::FlyConfig::scrubber)); every error made from a
//! response or a transport failure goes through it, and the base URL is shown without its
//! userinfo ([`FlyClient::base_url`]).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shipit_core::http::{Observed, Scrubber, retry, without_userinfo};
use shipit_core::retry::RetryPolicy;

use crate::error::{FlyError, parse_error};

/// Header carrying a lease's nonce.
pub const NONCE_HEADER: &str = "fly-machine-lease-nonce";

/// A Fly app, as `GET /apps/{app}` returns it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct FlyApp {
    /// App id.
    pub id: Option<String>,
    /// App name.
    pub name: String,
    /// `deployed`, `pending`, `suspended`…
    pub status: Option<String>,
}

/// One health check's latest result.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct CheckStatus {
    /// Check name (`http`, or `servicecheck-00-http-4000`).
    pub name: String,
    /// `passing`, `warning` or `critical`.
    pub status: String,
    /// What the check saw.
    pub output: Option<String>,
    /// When it last ran.
    pub updated_at: Option<String>,
}

/// One event in a machine's life (`launch`, `start`, `exit`, `update`…).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct MachineEvent {
    /// Event type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Status after the event.
    pub status: Option<String>,
    /// `flyd`, `user`…
    pub source: Option<String>,
    /// Unix milliseconds.
    pub timestamp: Option<i64>,
    /// Details (`exit_event` for exits).
    pub request: Value,
}

impl MachineEvent {
    /// For an `exit` event: its exit code.
    pub fn exit_code(&self) -> Option<i64> {
        let r = &self.request;
        r.pointer("/exit_event/exit_code").or_else(|| r.get("exit_code")).and_then(Value::as_i64)
    }

    /// For an `exit` event: whether the stop was asked for (an update or a stop, not a crash).
    pub fn requested_stop(&self) -> bool {
        let r = &self.request;
        r.pointer("/exit_event/requested_stop")
            .or_else(|| r.get("requested_stop"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
}

/// A machine.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Machine {
    /// Machine id.
    pub id: String,
    /// Machine name.
    pub name: String,
    /// `created`, `starting`, `started`, `stopping`, `stopped`, `replacing`, `destroyed`…
    pub state: String,
    /// Region.
    pub region: String,
    /// Changes with every config version.
    pub instance_id: Option<String>,
    /// The machine config, kept whole so an update can preserve fields shipit does not manage.
    pub config: Value,
    /// Health check results.
    pub checks: Vec<CheckStatus>,
    /// Recent events.
    pub events: Vec<MachineEvent>,
    /// Created at (RFC 3339).
    pub created_at: Option<String>,
    /// Updated at (RFC 3339).
    pub updated_at: Option<String>,
    /// The nonce of the lease a create with `lease_ttl` took (only in a create's answer).
    pub nonce: Option<String>,
}

impl Machine {
    /// A key of `config.metadata`.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.config.get("metadata").and_then(|m| m.get(key)).and_then(Value::as_str)
    }

    /// The latest event timestamp.
    pub fn last_event_at(&self) -> i64 {
        self.events.iter().filter_map(|e| e.timestamp).max().unwrap_or(0)
    }
}

/// A machine lease.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Lease {
    /// Sent as `fly-machine-lease-nonce` with every change under the lease.
    pub nonce: String,
    /// Unix seconds.
    pub expires_at: Option<i64>,
    /// Who holds it.
    pub owner: Option<String>,
    /// Why it was taken.
    pub description: Option<String>,
    /// Machine version.
    pub version: Option<String>,
}

/// One earlier config of a machine.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct MachineVersion {
    /// Version id (a ULID on Fly).
    pub version: String,
    /// The config of that version.
    pub user_config: Value,
    /// When it was made, when Fly says.
    pub created_at: Option<String>,
}

/// Body of `POST /apps/{app}/machines`.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct CreateMachine {
    /// Unique name: how a create is found again after an ambiguous failure.
    pub name: String,
    /// Region.
    pub region: String,
    /// Machine config.
    pub config: Value,
    /// Secrets version the machine must see.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_secrets_version: Option<u64>,
    /// Seconds of a lease the new machine is born with (its nonce comes back in the answer), so
    /// no other deploy can take it over while it passes its gate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_ttl: Option<u64>,
}

impl CreateMachine {
    /// A create request.
    pub fn new(name: String, region: String, config: Value, min_secrets_version: Option<u64>) -> Self {
        Self { name, region, config, min_secrets_version, lease_ttl: None }
    }
}

/// Body of `POST /apps/{app}/machines/{id}`.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct UpdateMachine {
    /// The whole new config.
    pub config: Value,
    /// Secrets version the machine must see.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_secrets_version: Option<u64>,
}

impl UpdateMachine {
    /// An update request.
    pub fn new(config: Value, min_secrets_version: Option<u64>) -> Self {
        Self { config, min_secrets_version }
    }
}

/// What `POST /apps/{app}/secrets` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SecretsSet {
    /// Secret names the app has now.
    pub names: Vec<String>,
    /// Secrets version, for `min_secrets_version`.
    pub version: Option<u64>,
}

/// The kind of an IP address, as `POST /apps/{app}/ip_assignments` names it in `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IpType {
    /// A public IPv4 address shared with other apps (`shared_v4`): free, HTTP and TLS only.
    SharedV4,
    /// A dedicated public IPv4 address (`v4`).
    V4,
    /// A dedicated public IPv6 address (`v6`).
    V6,
    /// A private (Flycast) IPv6 address on the organisation's network (`private_v6`).
    PrivateV6,
    /// An egress IPv4 address (`egress_v4`): outgoing traffic only.
    EgressV4,
    /// An egress IPv6 address (`egress_v6`): outgoing traffic only.
    EgressV6,
}

impl IpType {
    /// The name the API uses (`shared_v4`, `v6`…).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SharedV4 => "shared_v4",
            Self::V4 => "v4",
            Self::V6 => "v6",
            Self::PrivateV6 => "private_v6",
            Self::EgressV4 => "egress_v4",
            Self::EgressV6 => "egress_v6",
        }
    }

    /// In words: `shared IPv4`, `dedicated IPv6`…
    pub fn describe(self) -> &'static str {
        match self {
            Self::SharedV4 => "shared IPv4",
            Self::V4 => "dedicated IPv4",
            Self::V6 => "dedicated IPv6",
            Self::PrivateV6 => "private (Flycast) IPv6",
            Self::EgressV4 => "egress IPv4",
            Self::EgressV6 => "egress IPv6",
        }
    }
}

/// One IP address of an app, as `GET /apps/{app}/ip_assignments` lists it (`{"ips": [...]}`) and
/// `POST /apps/{app}/ip_assignments` answers it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct IpAssignment {
    /// The address.
    pub ip: Option<String>,
    /// `global` for an anycast address, else a region.
    pub region: Option<String>,
    /// The service it is bound to, if any.
    pub service_name: Option<String>,
    /// Shared with other apps (a shared IPv4).
    pub shared: Option<bool>,
    /// Outgoing traffic only.
    pub egress: Option<bool>,
    /// When it was allocated (RFC 3339).
    pub created_at: Option<String>,
}

impl IpAssignment {
    /// Its kind, from the address and the flags, the way fly-go tells them apart: egress first,
    /// then Flycast (`fdaa:`), shared, IPv6, IPv4.
    pub fn kind(&self) -> IpType {
        let ip = self.ip.as_deref().unwrap_or("");
        let v6 = ip.contains(':');
        if self.egress == Some(true) {
            if v6 { IpType::EgressV6 } else { IpType::EgressV4 }
        } else if ip.to_ascii_lowercase().starts_with("fdaa:") {
            IpType::PrivateV6
        } else if self.shared == Some(true) {
            IpType::SharedV4
        } else if v6 {
            IpType::V6
        } else {
            IpType::V4
        }
    }
}

/// `GET /apps/{app}/ip_assignments`: `{"ips": [...]}` (`null` or missing: none).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct IpAssignments {
    ips: Option<Vec<IpAssignment>>,
}

/// A Fly Machines API client. Cheap to clone.
#[derive(Clone)]
pub struct FlyClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: String,
    /// `base` without its userinfo: what is shown.
    shown_base: String,
    token: Option<SecretString>,
    retry: RetryPolicy,
    timeout: Duration,
    /// Set after a 401: no further request is sent.
    stopped: AtomicBool,
    /// Knows the token: every error message goes through it.
    scrubber: Scrubber,
}

impl std::fmt::Debug for FlyClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlyClient")
            .field("base", &self.inner.shown_base)
            .field("token", &self.inner.token.as_ref().map(|_| "<redacted>"))
            .field("stopped", &self.inner.stopped.load(Ordering::Relaxed))
            .finish()
    }
}

/// A request about to be sent.
struct Call<'a> {
    method: Method,
    path: String,
    nonce: Option<&'a str>,
    body: Option<Value>,
    timeout: Option<Duration>,
    /// Whether a 401 stops the client (see [`Call::refusal_is_a_permission`]).
    stop_on_401: bool,
}

impl<'a> Call<'a> {
    fn new(method: Method, path: String) -> Self {
        Self { method, path, nonce: None, body: None, timeout: None, stop_on_401: true }
    }
    /// A 401 to this call does not stop the client: it is sent only after the same token was
    /// accepted for the app (`GET /apps/{app}`), so a refusal means the token may not do this
    /// one thing (a deploy token and IP addresses), not that the token is wrong.
    fn refusal_is_a_permission(mut self) -> Self {
        self.stop_on_401 = false;
        self
    }
    fn nonce(mut self, nonce: Option<&'a str>) -> Self {
        self.nonce = nonce;
        self
    }
    fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }
}

fn encode_body<T: Serialize>(what: &str, body: &T) -> Result<Value, FlyError> {
    serde_json::to_value(body).map_err(|e| FlyError::Decode { what: what.to_string(), message: e.to_string() })
}

fn decode<T: DeserializeOwned>(what: &str, body: &[u8]) -> Result<T, FlyError> {
    serde_json::from_slice(body).map_err(|e| FlyError::Decode { what: what.to_string(), message: e.to_string() })
}

/// Fly's live API wraps leases as `{"status":"success","data":{...}}`; the spec returns them bare.
fn decode_lease(body: &[u8]) -> Result<Lease, FlyError> {
    let v: Value = decode("lease", body)?;
    let inner = v.get("data").filter(|d| d.is_object()).cloned().unwrap_or(v);
    let lease: Lease =
        serde_json::from_value(inner).map_err(|e| FlyError::Decode { what: "lease".into(), message: e.to_string() })?;
    if lease.nonce.is_empty() {
        return Err(FlyError::Decode { what: "lease".into(), message: "no nonce in the lease".into() });
    }
    Ok(lease)
}

/// Secret names from any of the shapes Fly uses: `[{"name":…}]`, `["NAME"]`,
/// `{"secrets": …}`, or a map keyed by name.
fn secret_names(v: &Value) -> Vec<String> {
    let mut names: Vec<String> = match v {
        Value::Array(items) => items
            .iter()
            .filter_map(|i| match i {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => {
                    o.get("name").or_else(|| o.get("label")).and_then(Value::as_str).map(str::to_string)
                }
                _ => None,
            })
            .collect(),
        Value::Object(o) => match o.get("secrets") {
            Some(inner) => return secret_names(inner),
            None => o.keys().filter(|k| k.as_str() != "version").cloned().collect(),
        },
        _ => Vec::new(),
    };
    names.sort();
    names.dedup();
    names
}

/// `fm1r_`, `fm1a_` and `fm2_` tokens (macaroons) use the `FlyV1` scheme; others `Bearer`.
fn auth_value(token: &str) -> String {
    let token = token.trim();
    if token.starts_with("FlyV1 ") || token.starts_with("Bearer ") {
        token.to_string()
    } else if ["fm1r_", "fm1a_", "fm2_"].iter().any(|p| token.starts_with(p)) {
        format!("FlyV1 {token}")
    } else {
        format!("Bearer {token}")
    }
}

impl FlyClient {
    pub(crate) fn new(
        base: String,
        token: Option<SecretString>,
        retry: RetryPolicy,
        timeout: Duration,
        scrubber: Scrubber,
    ) -> Result<Self, FlyError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("shipit/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| FlyError::Config(format!("HTTP client: {e}")))?;
        let mut scrubber = scrubber.with_url_credentials(&base);
        if let Some(t) = &token {
            scrubber.add(t.expose_secret());
        }
        let stopped = AtomicBool::new(false);
        let shown_base = without_userinfo(&base);
        let inner = Inner { http, base, shown_base, token, retry, timeout, stopped, scrubber };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The base URL as it may be shown, e.g. `https://api.machines.dev/v1`: credentials in it
    /// (`https://user:pass@host`) appear as `***` (requests use it as configured).
    pub fn base_url(&self) -> &str {
        &self.inner.shown_base
    }

    /// What the client keeps out of every error message: the token, the base URL's credentials,
    /// and what the caller added.
    pub fn scrubber(&self) -> &Scrubber {
        &self.inner.scrubber
    }

    /// A response body read as `T`. serde quotes values it could not read, so the error is
    /// scrubbed.
    fn decode<T: DeserializeOwned>(&self, what: &str, body: &[u8]) -> Result<T, FlyError> {
        decode(what, body).map_err(|e| e.scrubbed(&self.inner.scrubber))
    }

    /// [`decode_lease`], the error scrubbed.
    fn lease(&self, body: &[u8]) -> Result<Lease, FlyError> {
        decode_lease(body).map_err(|e| e.scrubbed(&self.inner.scrubber))
    }

    /// Whether a token is configured.
    pub fn has_token(&self) -> bool {
        self.inner.token.is_some()
    }

    /// Sends one request; a non-2xx answer becomes a [`FlyError`] through [`parse_error`].
    async fn send(&self, call: Call<'_>) -> Result<Vec<u8>, FlyError> {
        self.send_scrubbed(call, &self.inner.scrubber).await
    }

    /// [`send`](Self::send), scrubbing the error with `scrubber` (which knows more secrets).
    async fn send_scrubbed(&self, call: Call<'_>, scrubber: &Scrubber) -> Result<Vec<u8>, FlyError> {
        let inner = &self.inner;
        let Some(token) = &inner.token else { return Err(FlyError::MissingToken) };
        if inner.stopped.load(Ordering::SeqCst) {
            return Err(FlyError::Stopped);
        }
        let mut auth = HeaderValue::from_str(&auth_value(token.expose_secret()))
            .map_err(|_| FlyError::Config("the Fly API token contains characters not allowed in a header".into()))?;
        auth.set_sensitive(true);
        let url = format!("{}{}", inner.base, call.path);
        let stop_on_401 = call.stop_on_401;
        let watch = Observed::start(call.method.as_str(), &url);
        let mut rb = inner
            .http
            .request(call.method, url)
            .header(AUTHORIZATION, auth)
            .timeout(call.timeout.unwrap_or(inner.timeout));
        if let Some(nonce) = call.nonce {
            rb = rb.header(NONCE_HEADER, nonce);
        }
        if let Some(body) = &call.body {
            rb = rb.json(body);
        }
        let network = |source| FlyError::network(source, scrubber);
        let resp = match rb.send().await {
            Ok(resp) => resp,
            Err(e) => {
                watch.failed(&e);
                return Err(network(e));
            }
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = match resp.bytes().await {
            Ok(body) => body,
            Err(e) => {
                watch.failed(&e);
                return Err(network(e));
            }
        };
        watch.status(status.as_u16(), status.canonical_reason());
        if status.is_success() {
            return Ok(body.to_vec());
        }
        if status == StatusCode::UNAUTHORIZED && stop_on_401 {
            inner.stopped.store(true, Ordering::SeqCst);
        }
        Err(parse_error(status, &headers, &body, scrubber))
    }

    /// Runs `op` under the retry policy. Only for requests that are safe to repeat. The last
    /// error is `op`'s own, noting the attempts when there were several.
    async fn retrying<T, F, Fut>(&self, op: F) -> Result<T, FlyError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, FlyError>>,
    {
        retry(&self.inner.retry, op).await
    }

    async fn get<T: DeserializeOwned>(&self, what: &str, path: String) -> Result<T, FlyError> {
        let body = self.retrying(|| self.send(Call::new(Method::GET, path.clone()))).await?;
        self.decode(what, &body)
    }

    /// One GET, not retried: for looks inside a retry loop.
    async fn get_once<T: DeserializeOwned>(&self, what: &str, path: String) -> Result<T, FlyError> {
        self.decode(what, &self.send(Call::new(Method::GET, path)).await?)
    }

    /// `GET /apps/{app}`; `None` when it does not exist.
    pub async fn get_app(&self, app: &str) -> Result<Option<FlyApp>, FlyError> {
        not_found_as_none(self.get("app", format!("/apps/{app}")).await)
    }

    /// Whether Fly accepts the token, with one read-only request, not retried (for
    /// `shipit login`): `GET /apps/{app}` when an app is given (an app-scoped deploy token can
    /// read its app but not list an organization's apps), else `GET /apps?org_slug=personal`.
    /// A refused token is [`FlyError::Unauthorized`]; an app this token cannot see,
    /// [`FlyError::NotFound`].
    pub async fn check_token(&self, app: Option<&str>) -> Result<(), FlyError> {
        let path = match app {
            Some(app) => format!("/apps/{app}"),
            None => "/apps?org_slug=personal".to_string(),
        };
        self.send(Call::new(Method::GET, path)).await.map(drop)
    }

    /// [`get_app`](Self::get_app) as one request, not retried.
    async fn get_app_once(&self, app: &str) -> Result<Option<FlyApp>, FlyError> {
        not_found_as_none(self.get_once("app", format!("/apps/{app}")).await)
    }

    /// `POST /apps {app_name, org_slug}`. After an ambiguous failure it looks the app up
    /// before sending again.
    pub async fn create_app(&self, app: &str, org: &str) -> Result<(), FlyError> {
        let body = serde_json::json!({ "app_name": app, "org_slug": org });
        let maybe_sent = AtomicBool::new(false);
        self.retrying(|| {
            let body = body.clone();
            let maybe_sent = &maybe_sent;
            async move {
                if maybe_sent.load(Ordering::SeqCst) && self.get_app_once(app).await?.is_some() {
                    return Ok(());
                }
                match self.send(Call::new(Method::POST, "/apps".into()).body(body)).await {
                    Ok(_) => Ok(()),
                    Err(e) => {
                        if e.is_ambiguous() {
                            maybe_sent.store(true, Ordering::SeqCst);
                        }
                        Err(e)
                    }
                }
            }
        })
        .await
    }

    /// `GET /apps/{app}/machines`.
    pub async fn list_machines(&self, app: &str) -> Result<Vec<Machine>, FlyError> {
        self.get("machines", format!("/apps/{app}/machines")).await
    }

    /// `GET /apps/{app}/machines/{id}`.
    pub async fn get_machine(&self, app: &str, id: &str) -> Result<Machine, FlyError> {
        self.get("machine", format!("/apps/{app}/machines/{id}")).await
    }

    /// `GET /apps/{app}/machines/{id}`, one request, not retried: for loops that poll and back
    /// off by themselves (the health gate's `poll_until`).
    pub async fn get_machine_once(&self, app: &str, id: &str) -> Result<Machine, FlyError> {
        self.get_once("machine", format!("/apps/{app}/machines/{id}")).await
    }

    /// `POST /apps/{app}/machines`. After an ambiguous failure it lists the machines and returns
    /// the one with `req.name` if the first attempt made it: never two machines for one create.
    pub async fn create_machine(&self, app: &str, req: &CreateMachine) -> Result<Machine, FlyError> {
        let body = encode_body("create machine", req)?;
        let maybe_sent = AtomicBool::new(false);
        self.retrying(|| {
            let body = body.clone();
            let maybe_sent = &maybe_sent;
            async move {
                if maybe_sent.load(Ordering::SeqCst)
                    && let Some(m) = self
                        .get_once::<Vec<Machine>>("machines", format!("/apps/{app}/machines"))
                        .await?
                        .into_iter()
                        .find(|m| m.name == req.name)
                {
                    return Ok(m);
                }
                match self.send(Call::new(Method::POST, format!("/apps/{app}/machines")).body(body)).await {
                    Ok(b) => match self.decode::<Machine>("created machine", &b) {
                        Ok(m) => Ok(m),
                        // Made, but the answer is unreadable: find it by its unique name.
                        Err(unreadable) => {
                            let listed: Vec<Machine> =
                                self.get_once("machines", format!("/apps/{app}/machines")).await?;
                            listed.into_iter().find(|m| m.name == req.name).ok_or(unreadable)
                        }
                    },
                    Err(e) => {
                        if e.is_ambiguous() {
                            maybe_sent.store(true, Ordering::SeqCst);
                        }
                        Err(e)
                    }
                }
            }
        })
        .await
    }

    /// `POST /apps/{app}/machines/{id}` under a lease. After an ambiguous failure it reads the
    /// machine back and sends again only if `applied` says the new config is not there.
    pub async fn update_machine(
        &self,
        app: &str,
        id: &str,
        nonce: Option<&str>,
        req: &UpdateMachine,
        applied: impl Fn(&Machine) -> bool,
    ) -> Result<Machine, FlyError> {
        let body = encode_body("update machine", req)?;
        let maybe_sent = AtomicBool::new(false);
        let applied = &applied;
        self.retrying(|| {
            let body = body.clone();
            let maybe_sent = &maybe_sent;
            async move {
                if maybe_sent.load(Ordering::SeqCst) {
                    let m: Machine = self.get_once("machine", format!("/apps/{app}/machines/{id}")).await?;
                    if applied(&m) {
                        return Ok(m);
                    }
                }
                let call = Call::new(Method::POST, format!("/apps/{app}/machines/{id}")).nonce(nonce).body(body);
                match self.send(call).await {
                    Ok(b) => match self.decode::<Machine>("updated machine", &b) {
                        Ok(m) => Ok(m),
                        // Accepted, but the answer is unreadable: read the machine back.
                        Err(unreadable) => {
                            let m: Machine = self.get_once("machine", format!("/apps/{app}/machines/{id}")).await?;
                            if applied(&m) { Ok(m) } else { Err(unreadable) }
                        }
                    },
                    Err(e) => {
                        if e.is_ambiguous() {
                            maybe_sent.store(true, Ordering::SeqCst);
                        }
                        Err(e)
                    }
                }
            }
        })
        .await
    }

    /// `POST /apps/{app}/machines/{id}/lease?ttl=N`. A 409 (held by someone else) comes back
    /// as [`FlyError::Conflict`] with the owner. After an ambiguous failure, or an answer that
    /// cannot be read, the current lease is read: if it carries our `description` (unique to this
    /// rollout), it is ours.
    pub async fn acquire_lease(
        &self,
        app: &str,
        id: &str,
        ttl: Duration,
        description: &str,
    ) -> Result<Lease, FlyError> {
        let secs = ttl.as_secs().max(1);
        let body = serde_json::json!({ "ttl": secs, "description": description });
        let maybe_sent = AtomicBool::new(false);
        self.retrying(|| {
            let body = body.clone();
            let maybe_sent = &maybe_sent;
            async move {
                if maybe_sent.load(Ordering::SeqCst)
                    && let Some(lease) = self.get_lease_once(app, id).await?
                    && lease.description.as_deref() == Some(description)
                {
                    return Ok(lease);
                }
                let call = Call::new(Method::POST, format!("/apps/{app}/machines/{id}/lease?ttl={secs}")).body(body);
                match self.send(call).await {
                    Ok(b) => match self.lease(&b) {
                        Ok(lease) => Ok(lease),
                        // Taken, but the answer is unreadable: read the lease back, so one that is
                        // ours (our unique description) is held, and released, like any other.
                        Err(unreadable) => match self.get_lease_once(app, id).await {
                            Ok(Some(lease)) if lease.description.as_deref() == Some(description) => Ok(lease),
                            _ => Err(unreadable),
                        },
                    },
                    Err(e) => {
                        if e.is_ambiguous() {
                            maybe_sent.store(true, Ordering::SeqCst);
                        }
                        Err(e)
                    }
                }
            }
        })
        .await
    }

    /// `GET /apps/{app}/machines/{id}/lease`; `None` when there is none.
    pub async fn get_lease(&self, app: &str, id: &str) -> Result<Option<Lease>, FlyError> {
        let res = self.retrying(|| self.send(Call::new(Method::GET, format!("/apps/{app}/machines/{id}/lease")))).await;
        Ok(not_found_as_none(res)?.and_then(|b| decode_lease(&b).ok()))
    }

    /// [`get_lease`](Self::get_lease) as one request, not retried.
    async fn get_lease_once(&self, app: &str, id: &str) -> Result<Option<Lease>, FlyError> {
        let res = self.send(Call::new(Method::GET, format!("/apps/{app}/machines/{id}/lease"))).await;
        Ok(not_found_as_none(res)?.and_then(|b| decode_lease(&b).ok()))
    }

    /// Extends a lease we hold (`POST …/lease?ttl=N` with our nonce).
    pub async fn refresh_lease(&self, app: &str, id: &str, nonce: &str, ttl: Duration) -> Result<Lease, FlyError> {
        let secs = ttl.as_secs().max(1);
        let body = serde_json::json!({ "ttl": secs });
        let b = self
            .retrying(|| {
                let call = Call::new(Method::POST, format!("/apps/{app}/machines/{id}/lease?ttl={secs}"))
                    .nonce(Some(nonce))
                    .body(body.clone());
                self.send(call)
            })
            .await?;
        self.lease(&b)
    }

    /// `DELETE /apps/{app}/machines/{id}/lease` with our nonce. A lease already gone is fine.
    pub async fn release_lease(&self, app: &str, id: &str, nonce: &str) -> Result<(), FlyError> {
        let res = self
            .retrying(|| {
                self.send(Call::new(Method::DELETE, format!("/apps/{app}/machines/{id}/lease")).nonce(Some(nonce)))
            })
            .await;
        match res {
            Ok(_) | Err(FlyError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `GET /apps/{app}/machines/{id}/wait?state=S&timeout=N` (N at most 60). One call, not
    /// retried: a 408 is [`FlyError::WaitTimeout`], and the caller decides whether to wait again.
    pub async fn wait(
        &self,
        app: &str,
        id: &str,
        state: &str,
        timeout: Duration,
        instance_id: Option<&str>,
    ) -> Result<(), FlyError> {
        let secs = timeout.as_secs().clamp(1, 60);
        let mut path = format!("/apps/{app}/machines/{id}/wait?state={state}&timeout={secs}");
        if let Some(instance) = instance_id {
            path.push_str("&instance_id=");
            path.push_str(instance);
        }
        let mut call = Call::new(Method::GET, path);
        call.timeout = Some(Duration::from_secs(secs + 15));
        self.send(call).await.map(|_| ())
    }

    /// `GET /apps/{app}/machines/{id}/versions`.
    pub async fn versions(&self, app: &str, id: &str) -> Result<Vec<MachineVersion>, FlyError> {
        self.get("machine versions", format!("/apps/{app}/machines/{id}/versions")).await
    }

    /// `POST /apps/{app}/secrets {"values": {NAME: value}}`. Setting the same values again is
    /// harmless, so this is retried. Error messages are scrubbed of the values, in any encoding.
    pub async fn set_secrets(&self, app: &str, values: &[(String, SecretString)]) -> Result<SecretsSet, FlyError> {
        let map: serde_json::Map<String, Value> =
            values.iter().map(|(k, v)| (k.clone(), Value::String(v.expose_secret().to_string()))).collect();
        let body = serde_json::json!({ "values": map });
        let scrubber = self.inner.scrubber.clone().with_secrets(values.iter().map(|(_, v)| v.expose_secret()));
        let res = self
            .retrying(|| {
                let call = Call::new(Method::POST, format!("/apps/{app}/secrets")).body(body.clone());
                self.send_scrubbed(call, &scrubber)
            })
            .await;
        drop(body);
        let b = res?;
        let v: Value = decode("secrets", &b)?;
        let version = v.get("version").and_then(|n| n.as_u64().or_else(|| n.as_str().and_then(|s| s.parse().ok())));
        Ok(SecretsSet { names: v.get("secrets").map(secret_names).unwrap_or_default(), version })
    }

    /// `GET /apps/{app}/secrets`: names only.
    pub async fn list_secrets(&self, app: &str) -> Result<Vec<String>, FlyError> {
        let v: Value = self.get("secrets", format!("/apps/{app}/secrets")).await?;
        Ok(secret_names(&v))
    }

    /// `POST /apps/{app}/machines/{id}/metadata/{key} {"value": …}`: changes the machine's
    /// `config.metadata` without a new config version or a restart. Setting the same value
    /// again is harmless, so this is retried.
    pub async fn set_metadata(&self, app: &str, id: &str, key: &str, value: &str) -> Result<(), FlyError> {
        let body = serde_json::json!({ "value": value });
        self.retrying(|| {
            self.send(Call::new(Method::POST, format!("/apps/{app}/machines/{id}/metadata/{key}")).body(body.clone()))
        })
        .await
        .map(|_| ())
    }

    /// `GET /apps/{app}/ip_assignments`: the app's IP addresses. Retried like every GET. A 401
    /// does not stop the client: it is sent after `GET /apps/{app}` passed with the same token,
    /// so a refusal is about IP addresses, not the token.
    pub async fn list_ip_assignments(&self, app: &str) -> Result<Vec<IpAssignment>, FlyError> {
        let body = self.retrying(|| self.send(self.ip_list_call(app))).await?;
        Ok(self.decode::<IpAssignments>("IP addresses", &body)?.ips.unwrap_or_default())
    }

    /// [`list_ip_assignments`](Self::list_ip_assignments) as one request, not retried.
    async fn list_ip_assignments_once(&self, app: &str) -> Result<Vec<IpAssignment>, FlyError> {
        let body = self.send(self.ip_list_call(app)).await?;
        Ok(self.decode::<IpAssignments>("IP addresses", &body)?.ips.unwrap_or_default())
    }

    fn ip_list_call(&self, app: &str) -> Call<'static> {
        Call::new(Method::GET, format!("/apps/{app}/ip_assignments")).refusal_is_a_permission()
    }

    /// `POST /apps/{app}/ip_assignments {"type": kind}`: allocates an address. A create, so
    /// after an ambiguous failure (5xx, lost response) it lists the app's addresses once and sends
    /// again only if none of that kind is there; an answer it cannot read is looked up the same
    /// way. A 401 does not stop the client: the token may read the app but not allocate.
    pub async fn assign_ip(&self, app: &str, kind: IpType) -> Result<IpAssignment, FlyError> {
        let body = serde_json::json!({ "type": kind.as_str() });
        let found = |ips: Vec<IpAssignment>| ips.into_iter().find(|ip| ip.kind() == kind);
        let maybe_sent = AtomicBool::new(false);
        self.retrying(|| {
            let body = body.clone();
            let maybe_sent = &maybe_sent;
            async move {
                if maybe_sent.load(Ordering::SeqCst)
                    && let Some(ip) = found(self.list_ip_assignments_once(app).await?)
                {
                    return Ok(ip);
                }
                let call =
                    Call::new(Method::POST, format!("/apps/{app}/ip_assignments")).body(body).refusal_is_a_permission();
                match self.send(call).await {
                    Ok(b) => match self.decode::<IpAssignment>("allocated IP address", &b) {
                        Ok(ip) => Ok(ip),
                        // Allocated, but the answer is unreadable: find it in the app's list.
                        Err(unreadable) => found(self.list_ip_assignments_once(app).await?).ok_or(unreadable),
                    },
                    Err(e) => {
                        if e.is_ambiguous() {
                            maybe_sent.store(true, Ordering::SeqCst);
                        }
                        Err(e)
                    }
                }
            }
        })
        .await
    }
}

/// A 404 as `None`.
fn not_found_as_none<T>(res: Result<T, FlyError>) -> Result<Option<T>, FlyError> {
    match res {
        Ok(v) => Ok(Some(v)),
        Err(FlyError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;

    async fn client(server: &MockServer) -> FlyClient {
        let token = Some(SecretString::from("fm2_test-token"));
        FlyClient::new(server.uri(), token, RetryPolicy::fast(), Duration::from_secs(5), Scrubber::new()).unwrap()
    }

    async fn requests(server: &MockServer) -> Vec<String> {
        let received = server.received_requests().await.unwrap_or_default();
        received.iter().map(|r| format!("{} {}", r.method, r.url.path())).collect()
    }

    #[tokio::test]
    async fn a_look_inside_a_retry_loop_is_one_request() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/apps/a/machines"))
            .respond_with(ResponseTemplate::new(503))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/apps/a/machines"))
            .respond_with(ResponseTemplate::new(503))
            .mount(&server)
            .await;
        let req = CreateMachine::new("web-1".into(), "ams".into(), serde_json::json!({}), None);
        let err = client(&server).await.create_machine("a", &req).await.unwrap_err();
        // The POST once (ambiguous), then one look per retry: not the look's own retries too.
        let mut expected = vec!["POST /apps/a/machines".to_string()];
        expected.extend(std::iter::repeat_n("GET /apps/a/machines".to_string(), 4));
        assert_eq!(requests(&server).await, expected);
        assert!(matches!(err, FlyError::Server { status: 503, .. }), "typed, no downcast: {err:?}");
        assert!(err.to_string().contains("(after 5 attempts over "), "{err}");
    }

    #[tokio::test]
    async fn an_ambiguous_create_is_looked_up_before_sending_again() {
        let server = MockServer::start().await;
        Mock::given(method("POST")).and(path("/apps")).respond_with(ResponseTemplate::new(502)).mount(&server).await;
        let app = ResponseTemplate::new(200).set_body_json(serde_json::json!({"name": "a"}));
        Mock::given(method("GET")).and(path("/apps/a")).respond_with(app).mount(&server).await;
        client(&server).await.create_app("a", "acme").await.unwrap();
        assert_eq!(requests(&server).await, ["POST /apps", "GET /apps/a"]);
    }

    #[tokio::test]
    async fn secret_values_never_reach_an_error() {
        let server = MockServer::start().await;
        let echo = ResponseTemplate::new(422).set_body_string("cannot set S=hunter2-value (aHVudGVyMi12YWx1ZQ==)");
        Mock::given(method("POST")).and(path("/apps/a/secrets")).respond_with(echo).mount(&server).await;
        let values = [("S".to_string(), SecretString::from("hunter2-value"))];
        let err = client(&server).await.set_secrets("a", &values).await.unwrap_err();
        assert_eq!(err.to_string(), "Fly API error 422: cannot set S=*** (***)");
    }

    #[test]
    fn macaroons_use_the_flyv1_scheme() {
        assert_eq!(auth_value("fm2_abc"), "FlyV1 fm2_abc");
        assert_eq!(auth_value("fm1r_abc"), "FlyV1 fm1r_abc");
        assert_eq!(auth_value("fm1a_abc"), "FlyV1 fm1a_abc");
        assert_eq!(auth_value("FlyV1 fm2_abc"), "FlyV1 fm2_abc");
        assert_eq!(auth_value("abc123"), "Bearer abc123");
    }

    #[test]
    fn leases_in_both_shapes() {
        let live = br#"{"status":"success","data":{"nonce":"n1","expires_at":1,"owner":"me"}}"#;
        assert_eq!(decode_lease(live).map(|l| l.nonce).ok().as_deref(), Some("n1"));
        let bare = br#"{"nonce":"n2","expires_at":1,"owner":"me","version":"v"}"#;
        assert_eq!(decode_lease(bare).map(|l| l.nonce).ok().as_deref(), Some("n2"));
        assert!(decode_lease(br#"{"status":"success"}"#).is_err());
    }

    #[test]
    fn secret_names_in_every_shape() {
        let a: Value = serde_json::json!({"secrets":[{"name":"B"},{"name":"A"}],"version":3});
        assert_eq!(secret_names(&a), ["A", "B"]);
        let b: Value = serde_json::json!(["X"]);
        assert_eq!(secret_names(&b), ["X"]);
        let c: Value = serde_json::json!({"secrets": {"K": {"digest": "d"}}});
        assert_eq!(secret_names(&c), ["K"]);
    }
}
