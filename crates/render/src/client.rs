//! [`RenderClient`]: typed calls to Render's REST API (`https://api.render.com/v1`).
//!
//! Retries follow one rule: a request is repeated only when repeating it cannot do something
//! twice. GETs, PATCHes of the same body, per-key env var PUTs, scale and autoscaling calls and
//! cancels are retried on 429/5xx/network errors and unreadable answers. A service create, a
//! deploy and a rollback are sent once: after an ambiguous failure the caller looks (the
//! service by name; the deploys created since) before sending again. A 401 stops the client.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use shipit_core::http::{Observed, Scrubber, retry, without_userinfo};
use shipit_core::retry::RetryPolicy;

use crate::error::{RenderApiError, parse_error};

/// A workspace (owner).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Owner {
    /// Its id (`tea-…`, `usr-…`).
    pub id: String,
    /// Its name.
    pub name: String,
}

/// A service, as `GET /services/{id}` answers it (kept whole; read through accessors).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct RenderService(pub Value);

impl RenderService {
    fn str_at(&self, ptr: &str) -> Option<&str> {
        self.0.pointer(ptr).and_then(Value::as_str)
    }
    /// Its id.
    pub fn id(&self) -> &str {
        self.str_at("/id").unwrap_or_default()
    }
    /// Its name.
    pub fn name(&self) -> &str {
        self.str_at("/name").unwrap_or_default()
    }
    /// `web_service`, `background_worker`…
    pub fn kind(&self) -> &str {
        self.str_at("/type").unwrap_or_default()
    }
    /// The image setting (`ghcr.io/acme/api:tag` or with a digest).
    pub fn image_path(&self) -> Option<&str> {
        self.str_at("/imagePath")
    }
    /// The plan.
    pub fn plan(&self) -> Option<&str> {
        self.str_at("/serviceDetails/plan")
    }
    /// The region.
    pub fn region(&self) -> Option<&str> {
        self.str_at("/serviceDetails/region")
    }
    /// Instances (when not autoscaled).
    pub fn num_instances(&self) -> Option<u64> {
        self.0.pointer("/serviceDetails/numInstances").and_then(Value::as_u64)
    }
    /// Health check path (web services).
    pub fn health_check_path(&self) -> Option<&str> {
        self.str_at("/serviceDetails/healthCheckPath")
    }
    /// The command replacing the image's CMD.
    pub fn docker_command(&self) -> Option<&str> {
        self.str_at("/serviceDetails/envSpecificDetails/dockerCommand")
    }
    /// The autoscaling object, when enabled.
    pub fn autoscaling(&self) -> Option<&Value> {
        self.0
            .pointer("/serviceDetails/autoscaling")
            .filter(|a| a.get("enabled").and_then(Value::as_bool).unwrap_or(false))
    }
    /// The registry credential's id.
    pub fn registry_credential_id(&self) -> Option<&str> {
        self.str_at("/registryCredential/id")
    }
}

/// A deploy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
#[non_exhaustive]
pub struct Deploy {
    /// Its id (`dep-…`).
    pub id: String,
    /// `created`, `queued`, `build_in_progress`, `update_in_progress`, `live`, `deactivated`,
    /// `build_failed`, `update_failed`, `pre_deploy_failed`, `canceled`…
    pub status: String,
    /// What started it (`api`, `rollback`…).
    pub trigger: Option<String>,
    /// The image: `ref` as given, `sha` the digest it resolved to.
    pub image: Option<DeployImage>,
    /// When it was made (RFC 3339).
    pub created_at: Option<String>,
    /// When it finished.
    pub finished_at: Option<String>,
}

/// `deploy.image`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(default)]
#[non_exhaustive]
pub struct DeployImage {
    /// The reference as given.
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    /// The digest it resolved to.
    pub sha: Option<String>,
}

impl Deploy {
    /// The digest it runs: `image.sha`, else the digest in `image.ref`.
    pub fn digest(&self) -> Option<String> {
        let image = self.image.as_ref()?;
        image
            .sha
            .clone()
            .filter(|s| !s.is_empty())
            .map(|s| if s.starts_with("sha256:") { s } else { format!("sha256:{s}") })
            .or_else(|| image.reference.as_deref().and_then(|r| r.split_once('@')).map(|(_, d)| d.to_string()))
    }

    /// The image reference.
    pub fn image_ref(&self) -> Option<&str> {
        self.image.as_ref().and_then(|i| i.reference.as_deref())
    }

    /// Whether it failed for good.
    pub fn failed(&self) -> bool {
        matches!(self.status.as_str(), "build_failed" | "update_failed" | "pre_deploy_failed" | "canceled")
    }
}

/// A registry credential (never its token).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Credential {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
}

struct Inner {
    http: reqwest::Client,
    base: String,
    shown: String,
    token: Option<SecretString>,
    retry: RetryPolicy,
    timeout: Duration,
    scrubber: Scrubber,
    stopped: AtomicBool,
    sent: AtomicU64,
}

/// A client of Render's REST API (cheap to clone).
#[derive(Clone)]
pub struct RenderClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RenderClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenderClient").field("base_url", &self.inner.shown).finish_non_exhaustive()
    }
}

/// A request to send.
struct Call {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    body: Option<Value>,
}

impl Call {
    fn new(method: Method, path: impl Into<String>) -> Self {
        Self { method, path: path.into(), query: Vec::new(), body: None }
    }
    fn query(mut self, k: &str, v: impl Into<String>) -> Self {
        self.query.push((k.to_string(), v.into()));
        self
    }
    fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }
}

fn decode_error(what: &str, e: &serde_json::Error) -> RenderApiError {
    RenderApiError::Decode { what: what.to_string(), message: shipit_core::http::unreadable_answer(e) }
}

fn decode<T: DeserializeOwned>(what: &str, body: &[u8]) -> Result<T, RenderApiError> {
    serde_json::from_slice(body).map_err(|e| decode_error(what, &e))
}

/// `{cursor, <key>: {...}}` items of a page.
fn page_items(what: &str, body: &[u8], key: &str) -> Result<(Vec<Value>, Option<String>), RenderApiError> {
    let v: Value = decode(what, body)?;
    let Some(items) = v.as_array() else {
        return Err(RenderApiError::Decode { what: what.to_string(), message: "the answer is not a list".into() });
    };
    let cursor = items.last().and_then(|i| i.get("cursor")).and_then(Value::as_str).map(str::to_string);
    Ok((items.iter().filter_map(|i| i.get(key).cloned()).collect(), cursor))
}

const PAGE: usize = 100;
/// A bound on pages, so a server that always says "more" cannot keep us here.
const MAX_PAGES: usize = 50;

impl RenderClient {
    pub(crate) fn new(
        base: String,
        token: Option<SecretString>,
        retry: RetryPolicy,
        timeout: Duration,
        scrubber: Scrubber,
    ) -> Result<Self, RenderApiError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("shipit/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| RenderApiError::Config(format!("HTTP client: {e}")))?;
        let mut scrubber = scrubber.with_url_credentials(&base);
        if let Some(t) = &token {
            scrubber.add(t.expose_secret());
        }
        let shown = without_userinfo(&base);
        let inner = Inner {
            http,
            base,
            shown,
            token,
            retry,
            timeout,
            scrubber,
            stopped: AtomicBool::new(false),
            sent: AtomicU64::new(0),
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The base URL as it may be shown.
    pub fn base_url(&self) -> &str {
        &self.inner.shown
    }

    /// What the client keeps out of every message.
    pub fn scrubber(&self) -> &Scrubber {
        &self.inner.scrubber
    }

    /// The retry policy (also the cap on waits for creates and deploys, which are not retried
    /// blindly).
    pub fn retry_policy(&self) -> RetryPolicy {
        self.inner.retry
    }

    /// Requests sent so far.
    pub fn requests_sent(&self) -> u64 {
        self.inner.sent.load(Ordering::Relaxed)
    }

    /// Sends one request: the status and body of a 2xx.
    async fn once(&self, call: &Call, extra: Option<&Scrubber>) -> Result<(u16, Vec<u8>), RenderApiError> {
        let inner = &self.inner;
        let Some(token) = &inner.token else { return Err(RenderApiError::MissingToken) };
        if inner.stopped.load(Ordering::SeqCst) {
            return Err(RenderApiError::Stopped);
        }
        let merged;
        let scrubber = match extra {
            Some(x) => {
                merged = inner.scrubber.clone().merged(x);
                &merged
            }
            None => &inner.scrubber,
        };
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
            .map_err(|_| RenderApiError::Config("RENDER_API_KEY has characters not allowed in a header".into()))?;
        auth.set_sensitive(true);
        let mut url = reqwest::Url::parse(&format!("{}{}", inner.base, call.path))
            .map_err(|e| RenderApiError::Config(format!("URL: {e}")))?;
        if !call.query.is_empty() {
            url.query_pairs_mut().extend_pairs(call.query.iter());
        }
        let watch = Observed::start(call.method.as_str(), url.as_str());
        let mut rb = inner
            .http
            .request(call.method.clone(), url)
            .header(AUTHORIZATION, auth)
            .header("accept", "application/json")
            .timeout(inner.timeout);
        if let Some(b) = &call.body {
            rb = rb.json(b);
        }
        inner.sent.fetch_add(1, Ordering::Relaxed);
        let network = |source| RenderApiError::network(source, scrubber);
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
            return Ok((status.as_u16(), body.to_vec()));
        }
        let e = parse_error(status, &headers, &body, scrubber);
        if status.as_u16() == 401 {
            inner.stopped.store(true, Ordering::SeqCst);
        }
        Err(e)
    }

    async fn idempotent(&self, call: Call, extra: Option<&Scrubber>) -> Result<(u16, Vec<u8>), RenderApiError> {
        retry(&self.inner.retry, || self.once(&call, extra)).await
    }

    /// GET `call` and read it as `T`; an unreadable answer is read again.
    async fn get<T: DeserializeOwned>(&self, what: &str, call: Call) -> Result<T, RenderApiError> {
        retry(&self.inner.retry, || async {
            let (_, body) = self.once(&call, None).await?;
            decode(what, &body)
        })
        .await
    }

    async fn pages(&self, what: &str, call: Call, key: &str) -> Result<Vec<Value>, RenderApiError> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut c = Call::new(Method::GET, call.path.clone()).query("limit", PAGE.to_string());
            c.query.extend(call.query.iter().cloned());
            if let Some(cur) = &cursor {
                c = c.query("cursor", cur.clone());
            }
            let (items, next) = retry(&self.inner.retry, || async {
                let (_, body) = self.once(&c, None).await?;
                page_items(what, &body, key)
            })
            .await?;
            let n = items.len();
            out.extend(items);
            match next {
                Some(n2) if n >= PAGE && Some(&n2) != cursor.as_ref() => cursor = Some(n2),
                _ => break,
            }
        }
        Ok(out)
    }

    // ---- reads ------------------------------------------------------------------------------

    /// Whether Render accepts the key, with one read-only request, not retried (for
    /// `shipit login`): `GET /owners?limit=1`. A refused key is
    /// [`RenderApiError::Unauthorized`].
    pub async fn check_token(&self) -> Result<(), RenderApiError> {
        self.once(&Call::new(Method::GET, "/owners").query("limit", "1".to_string()), None).await.map(drop)
    }

    /// Every workspace the key sees.
    pub async fn owners(&self) -> Result<Vec<Owner>, RenderApiError> {
        let items = self.pages("owners", Call::new(Method::GET, "/owners"), "owner").await?;
        items.into_iter().map(|v| serde_json::from_value(v).map_err(|e| decode_error("owners", &e))).collect()
    }

    /// The service named exactly `name` in `owner`'s workspace.
    pub async fn find_service(&self, owner: &str, name: &str) -> Result<Option<RenderService>, RenderApiError> {
        let call = Call::new(Method::GET, "/services")
            .query("name", name)
            .query("ownerId", owner)
            .query("includePreviews", "false");
        let items = self.pages("services", call, "service").await?;
        Ok(items.into_iter().map(RenderService).find(|s| s.name() == name))
    }

    /// One service.
    pub async fn service(&self, id: &str) -> Result<RenderService, RenderApiError> {
        self.get("service", Call::new(Method::GET, format!("/services/{id}"))).await
    }

    /// A service's newest deploys, at most `limit`.
    pub async fn deploys(&self, id: &str, limit: usize) -> Result<Vec<Deploy>, RenderApiError> {
        let call = Call::new(Method::GET, format!("/services/{id}/deploys")).query("limit", limit.min(100).to_string());
        let items = retry(&self.inner.retry, || async {
            let (_, body) = self.once(&call, None).await?;
            page_items("deploys", &body, "deploy")
        })
        .await?
        .0;
        let mut out: Vec<Deploy> = items
            .into_iter()
            .map(|v| serde_json::from_value(v).map_err(|e| decode_error("deploys", &e)))
            .collect::<Result<_, _>>()?;
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at));
        Ok(out)
    }

    /// One deploy, read once (for polling loops, which do their own waiting).
    pub async fn deploy_once(&self, id: &str, deploy: &str) -> Result<Deploy, RenderApiError> {
        let (_, body) = self.once(&Call::new(Method::GET, format!("/services/{id}/deploys/{deploy}")), None).await?;
        decode("deploy", &body)
    }

    /// One deploy.
    pub async fn deploy(&self, id: &str, deploy: &str) -> Result<Deploy, RenderApiError> {
        self.get("deploy", Call::new(Method::GET, format!("/services/{id}/deploys/{deploy}"))).await
    }

    /// A service's env vars (values may be secrets: never shown).
    pub async fn env_vars(&self, id: &str) -> Result<BTreeMap<String, String>, RenderApiError> {
        let items =
            self.pages("env-vars", Call::new(Method::GET, format!("/services/{id}/env-vars")), "envVar").await?;
        Ok(items
            .into_iter()
            .filter_map(|v| {
                Some((
                    v.get("key")?.as_str()?.to_string(),
                    v.get("value").and_then(Value::as_str).unwrap_or_default().to_string(),
                ))
            })
            .collect())
    }

    /// A Postgres or Key Value instance's connection string, by name, when it exists.
    /// `kind` is `postgres` or `key-value`.
    pub async fn connection_string(
        &self,
        kind: &str,
        owner: &str,
        name: &str,
    ) -> Result<Option<String>, RenderApiError> {
        let key = if kind == "postgres" { "postgres" } else { "keyValue" };
        let call = Call::new(Method::GET, format!("/{kind}")).query("name", name).query("ownerId", owner);
        let items = self.pages(kind, call, key).await?;
        let Some(id) = items
            .iter()
            .find(|i| i.get("name").and_then(Value::as_str) == Some(name))
            .and_then(|i| i.get("id"))
            .and_then(Value::as_str)
        else {
            return Ok(None);
        };
        let info: Value =
            self.get("connection-info", Call::new(Method::GET, format!("/{kind}/{id}/connection-info"))).await?;
        Ok(info.get("internalConnectionString").and_then(Value::as_str).map(str::to_string))
    }

    /// The registry credential named `name` in `owner`'s workspace.
    pub async fn credential(&self, owner: &str, name: &str) -> Result<Option<Credential>, RenderApiError> {
        let call = Call::new(Method::GET, "/registrycredentials").query("ownerId", owner).query("name", name);
        let all: Vec<Credential> = self.get("registry credentials", call).await?;
        Ok(all.into_iter().find(|c| c.name == name))
    }

    // ---- writes -----------------------------------------------------------------------------

    /// `POST /services`: creates the service and starts its first deploy. Sent once.
    pub async fn create_service(
        &self,
        body: Value,
        secrets: &Scrubber,
    ) -> Result<(RenderService, Option<String>), RenderApiError> {
        let (_, bytes) = self.once(&Call::new(Method::POST, "/services").body(body), Some(secrets)).await?;
        let v: Value = decode("create service", &bytes)?;
        let deploy = v.get("deployId").and_then(Value::as_str).map(str::to_string);
        let service = v.get("service").cloned().ok_or_else(|| RenderApiError::Decode {
            what: "create service".into(),
            message: "the answer has no service".into(),
        })?;
        Ok((RenderService(service), deploy))
    }

    /// `PATCH /services/{id}` (the same body again is harmless: retried).
    pub async fn patch_service(&self, id: &str, body: Value) -> Result<(), RenderApiError> {
        self.idempotent(Call::new(Method::PATCH, format!("/services/{id}")).body(body), None).await.map(|_| ())
    }

    /// `POST /services/{id}/deploys {imageUrl}`: the deploy (201), or `None` when Render queued
    /// it without saying which (202). Sent once.
    pub async fn start_deploy(&self, id: &str, image_url: &str) -> Result<Option<Deploy>, RenderApiError> {
        let call = Call::new(Method::POST, format!("/services/{id}/deploys")).body(json!({ "imageUrl": image_url }));
        let (status, body) = self.once(&call, None).await?;
        if status == 202 || body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        decode("deploy", &body).map(Some)
    }

    /// `POST /services/{id}/rollback {deployId}`: the new deploy. Sent once.
    pub async fn rollback(&self, id: &str, deploy: &str) -> Result<Option<Deploy>, RenderApiError> {
        let call = Call::new(Method::POST, format!("/services/{id}/rollback")).body(json!({ "deployId": deploy }));
        let (_, body) = self.once(&call, None).await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        decode("rollback", &body).map(Some)
    }

    /// Cancels a deploy in progress or queued.
    pub async fn cancel(&self, id: &str, deploy: &str) -> Result<(), RenderApiError> {
        self.idempotent(Call::new(Method::POST, format!("/services/{id}/deploys/{deploy}/cancel")), None)
            .await
            .map(|_| ())
    }

    /// Sets one env var (`PUT /services/{id}/env-vars/{key}`; never the replace-all PUT).
    pub async fn put_env_var(
        &self,
        id: &str,
        key: &str,
        value: &str,
        secrets: &Scrubber,
    ) -> Result<(), RenderApiError> {
        let call = Call::new(Method::PUT, format!("/services/{id}/env-vars/{key}")).body(json!({ "value": value }));
        self.idempotent(call, Some(secrets)).await.map(|_| ())
    }

    /// Removes one env var (gone already is fine).
    pub async fn delete_env_var(&self, id: &str, key: &str) -> Result<(), RenderApiError> {
        match self.idempotent(Call::new(Method::DELETE, format!("/services/{id}/env-vars/{key}")), None).await {
            Ok(_) | Err(RenderApiError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A fixed instance count.
    pub async fn scale(&self, id: &str, instances: u32) -> Result<(), RenderApiError> {
        let call = Call::new(Method::POST, format!("/services/{id}/scale")).body(json!({ "numInstances": instances }));
        self.idempotent(call, None).await.map(|_| ())
    }

    /// Autoscaling between `min` and `max` at `cpu` percent.
    pub async fn autoscale(&self, id: &str, min: u32, max: u32, cpu: u32) -> Result<(), RenderApiError> {
        let body = json!({
            "enabled": true, "min": min, "max": max,
            "criteria": { "cpu": { "enabled": true, "percentage": cpu }, "memory": { "enabled": false, "percentage": 80 } }
        });
        self.idempotent(Call::new(Method::PUT, format!("/services/{id}/autoscaling")).body(body), None)
            .await
            .map(|_| ())
    }

    /// Turns autoscaling off.
    pub async fn stop_autoscaling(&self, id: &str) -> Result<(), RenderApiError> {
        match self.idempotent(Call::new(Method::DELETE, format!("/services/{id}/autoscaling")), None).await {
            Ok(_) | Err(RenderApiError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Creates a GitHub registry credential.
    pub async fn create_credential(
        &self,
        owner: &str,
        name: &str,
        user: &str,
        token: &SecretString,
    ) -> Result<Credential, RenderApiError> {
        let secrets = Scrubber::new().with_secret(token.expose_secret());
        let body = json!({ "registry": "GITHUB", "name": name, "username": user, "authToken": token.expose_secret(), "ownerId": owner });
        let (_, bytes) = self.once(&Call::new(Method::POST, "/registrycredentials").body(body), Some(&secrets)).await?;
        decode("registry credential", &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploy_digest_from_sha_or_ref() {
        let d: Deploy = serde_json::from_value(json!({"id": "dep-1", "status": "live", "image": {"ref": "ghcr.io/a/b:v1@sha256:abc", "sha": "sha256:def"}})).unwrap_or_default();
        assert_eq!(d.digest().as_deref(), Some("sha256:def"));
        let d: Deploy = serde_json::from_value(
            json!({"id": "dep-1", "status": "live", "image": {"ref": "ghcr.io/a/b:v1@sha256:abc"}}),
        )
        .unwrap_or_default();
        assert_eq!(d.digest().as_deref(), Some("sha256:abc"));
    }
}
