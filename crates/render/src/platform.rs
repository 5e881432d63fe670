//! [`RenderPlatform`]: shipit's [`Platform`] on Render's REST API.
//!
//! One manifest service is one Render service (`web_service` with a port, `background_worker`
//! without) in the workspace `[targets.render] owner` names (else the only one the key sees).
//! What runs is the service's live deploy; what a deploy Render starts by itself would run is
//! the service's image setting (`imagePath`). A deploy moves both; a restore puts both back.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use shipit_core::http::Scrubber;
use shipit_core::{
    App, Capabilities, DeployFailure, DeployRequest, Deployed, Error, ErrorKind, FieldChange, ImageRef, Instance,
    InstanceState, PlannedCall, Platform, PlatformKind, Release, ReleaseInfo, ReleaseStatus, RenderError, RenderedFile,
    RestorePoint, RestoreRequest, SecretsSynced, Service, ServicePlan, ServiceStatus, Target,
};

use crate::client::{Deploy, RenderClient, RenderService};
use crate::config::RenderConfig;
use crate::error::RenderApiError;
use crate::render::{self, EnvVar, ServerService, ServiceType};
use crate::rollout::{Rollout, Start};

/// The env var in which shipit records which env vars it set (comma-separated names).
pub const OWNED_VARIABLES: &str = "SHIPIT_ENV_VARS";
/// The env var `secrets sync` sets to the deploy that was live when it changed a value: while that
/// deploy is still live, the new values have not been rolled out, and a deploy of the same digest
/// deploys anyway.
pub const SECRETS_PENDING: &str = "SHIPIT_SECRETS_PENDING";
/// The env var in which shipit records deploys it took back after they went live.
pub const FAILED_DEPLOYS: &str = "SHIPIT_FAILED_DEPLOYS";
const HISTORY: usize = 20;
const FAILED_KEPT: usize = 20;

/// Render through its public REST API.
pub struct RenderPlatform {
    client: RenderClient,
    poll_interval: Duration,
    registry_login: Option<(String, SecretString)>,
    owner: Mutex<Option<String>>,
    /// Secret values offered before a deploy: a service created by it gets them in the create
    /// request, since Render starts its first deploy at once.
    offered: Mutex<BTreeMap<String, SecretString>>,
}

impl std::fmt::Debug for RenderPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenderPlatform").field("client", &self.client).finish_non_exhaustive()
    }
}

/// The service as the manifest wants it, in the API's vocabulary.
#[derive(Debug, Clone)]
struct Desired {
    spec: ServerService,
    /// `web_service` or `background_worker`.
    kind: &'static str,
    /// API spelling (`pro_plus`).
    plan: String,
    /// `repo:tag@digest` (tag: shipit's release id and git sha).
    image_ref: String,
    /// Env vars with values (plain ones, `PORT`, resolved references), by key.
    env: BTreeMap<String, String>,
    /// References whose value Render does not have yet (a database that does not exist).
    missing: Vec<String>,
    /// Secret names.
    secrets: Vec<String>,
}

/// What a restore point keeps (env values only for the manifest's plain keys).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct State {
    service_id: String,
    image_path: Option<String>,
    plan: Option<String>,
    health_check_path: Option<String>,
    docker_command: Option<String>,
    num_instances: Option<u64>,
    autoscaling: Option<Value>,
    region: Option<String>,
    kind: String,
    live_id: Option<String>,
    live_digest: Option<String>,
    known: Vec<String>,
    /// Values of the manifest's plain env vars and of shipit's bookkeeping, as they were; names
    /// (no values) of the others shipit owns.
    env: BTreeMap<String, Option<String>>,
}

fn state_of(point: &RestorePoint) -> Option<State> {
    serde_json::from_value(point.state.clone()).ok()
}

fn list(value: Option<&str>) -> BTreeSet<String> {
    value
        .map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect())
        .unwrap_or_default()
}

fn join(names: &BTreeSet<String>) -> String {
    names.iter().cloned().collect::<Vec<_>>().join(",")
}

fn api_plan(plan: &str) -> String {
    plan.trim().replace(' ', "_")
}

/// The tag that carries shipit's release id and git sha in `repo:tag@digest`.
fn release_tag(release: &ReleaseInfo) -> String {
    let clean = |s: &str| s.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_')).collect::<String>();
    match release.git_sha.as_deref().filter(|s| !s.is_empty()) {
        Some(sha) => format!("{}.{}", clean(&release.id), clean(sha)),
        None => clean(&release.id),
    }
}

/// shipit's release id and git sha from a deploy's `image.ref`, when shipit made it.
fn release_of_ref(reference: &str) -> Option<(String, Option<String>)> {
    let before = reference.split_once('@').map_or(reference, |(r, _)| r);
    let tag = before.rsplit_once(':').map(|(_, t)| t).filter(|t| !t.contains('/'))?;
    let looks_like_id =
        tag.len() >= 16 && tag.as_bytes().get(8) == Some(&b'T') && tag.chars().take(8).all(|c| c.is_ascii_digit());
    if !looks_like_id {
        return None;
    }
    match tag.split_once('.') {
        Some((id, sha)) => Some((id.to_string(), Some(sha.to_string()))),
        None => Some((tag.to_string(), None)),
    }
}

fn render_error(e: RenderError) -> Error {
    Error::new(ErrorKind::InvalidConfig, e.message)
}

fn failure(touched: &AtomicBool, e: Error) -> DeployFailure {
    if touched.load(Ordering::SeqCst) { DeployFailure::touched(e) } else { DeployFailure::untouched(e) }
}

impl RenderPlatform {
    pub(crate) fn new(client: RenderClient, config: RenderConfig) -> Self {
        Self {
            client,
            poll_interval: config.poll_interval,
            registry_login: config.registry_login,
            owner: Mutex::new(None),
            offered: Mutex::new(BTreeMap::new()),
        }
    }

    /// A builder: key, base URL, polling, retries.
    pub fn builder() -> RenderConfig {
        RenderConfig::new()
    }

    /// Configured from `RENDER_API_KEY` and `SHIPIT_RENDER_API_URL`.
    pub fn from_env() -> Result<Self, RenderApiError> {
        RenderConfig::from_env().build()
    }

    /// The API client.
    pub fn client(&self) -> &RenderClient {
        &self.client
    }

    /// The workspace: `[targets.render] owner` (id or name), else the only one the key sees.
    async fn owner(&self, app: &App) -> Result<String, Error> {
        if let Some(o) = self.owner.lock().ok().and_then(|o| o.clone()) {
            return Ok(o);
        }
        let owners = self.client.owners().await?;
        let wanted = app.targets.render.owner.as_deref();
        let found = match wanted {
            Some(w) => {
                owners.iter().find(|o| o.id == w).or_else(|| owners.iter().find(|o| o.name.eq_ignore_ascii_case(w)))
            }
            None if owners.len() == 1 => owners.first(),
            None => None,
        };
        let listed = || owners.iter().map(|o| format!("{:?} ({})", o.name, o.id)).collect::<Vec<_>>().join(", ");
        let Some(owner) = found else {
            return Err(Error::new(
                if wanted.is_some() { ErrorKind::NotFound } else { ErrorKind::InvalidConfig },
                match wanted {
                    Some(w) => format!(
                        "RENDER_API_KEY sees no workspace {w:?} (it sees {}): set `[targets.render] owner`",
                        listed()
                    ),
                    None if owners.is_empty() => "RENDER_API_KEY sees no workspace".to_string(),
                    None => format!(
                        "RENDER_API_KEY sees several workspaces ({}): set `[targets.render] owner` to one",
                        listed()
                    ),
                },
            ));
        };
        if let Ok(mut o) = self.owner.lock() {
            *o = Some(owner.id.clone());
        }
        Ok(owner.id.clone())
    }

    fn spec(&self, target: Target<'_>, service: &Service) -> Result<ServerService, Error> {
        render::service_of(target.app, &target.env.name, service).map_err(render_error)
    }

    /// What the manifest wants, with references resolved through the API when `resolve`.
    async fn desired(
        &self,
        target: Target<'_>,
        service: &Service,
        image: &ImageRef,
        release: &ReleaseInfo,
        owner: Option<&str>,
    ) -> Result<Desired, Error> {
        let spec = self.spec(target, service)?;
        let kind = match spec.kind {
            ServiceType::Web => "web_service",
            ServiceType::Worker => "background_worker",
        };
        let image_ref = match &image.digest {
            Some(d) => format!("{}:{}@{d}", image.name(), release_tag(release)),
            None => format!("{image}@<digest of the tag>"),
        };
        let mut env = BTreeMap::new();
        let mut missing = Vec::new();
        let mut secrets = Vec::new();
        for v in &spec.env_vars {
            match v {
                EnvVar::Value { key, value } => {
                    env.insert(key.clone(), value.clone());
                }
                EnvVar::Secret { key, .. } => secrets.push(key.clone()),
                EnvVar::FromDatabase { key, from_database } => {
                    match self.reference(owner, "postgres", &from_database.name, &from_database.property).await? {
                        Some(value) => {
                            env.insert(key.clone(), value);
                        }
                        None => missing.push(key.clone()),
                    }
                }
                EnvVar::FromService { key, from_service } if from_service.kind == "keyvalue" => {
                    match self.reference(owner, "key-value", &from_service.name, &from_service.property).await? {
                        Some(value) => {
                            env.insert(key.clone(), value);
                        }
                        None => missing.push(key.clone()),
                    }
                }
                EnvVar::FromService { key, from_service } => {
                    // Another service's private address: `<name>` on Render's network.
                    let value = match from_service.property.as_str() {
                        "port" => target
                            .app
                            .services
                            .values()
                            .find(|s| target.platform_name(PlatformKind::Render, &s.name) == from_service.name)
                            .and_then(|s| s.port)
                            .map(|p| p.to_string()),
                        _ => Some(from_service.name.clone()),
                    };
                    match value {
                        Some(v) => {
                            env.insert(key.clone(), v);
                        }
                        None => missing.push(key.clone()),
                    }
                }
            }
        }
        Ok(Desired { plan: api_plan(&spec.plan), kind, image_ref, env, missing, secrets, spec })
    }

    /// A database's property (only the connection string is read through the API).
    async fn reference(
        &self,
        owner: Option<&str>,
        kind: &str,
        name: &str,
        property: &str,
    ) -> Result<Option<String>, Error> {
        let Some(owner) = owner else { return Ok(Some(format!("<{kind} {name} {property}>"))) };
        if property != "connectionString" {
            return Ok(None);
        }
        Ok(self.client.connection_string(kind, owner, name).await?)
    }

    async fn find(&self, target: Target<'_>, service: &Service) -> Result<Option<(String, RenderService)>, Error> {
        let owner = self.owner(target.app).await?;
        let name = target.platform_name(PlatformKind::Render, &service.name);
        Ok(self.client.find_service(&owner, &name).await?.map(|s| (owner, s)))
    }

    async fn point_of(
        &self,
        service: &Service,
        s: &RenderService,
        spec: &ServerService,
        declared: &BTreeSet<String>,
    ) -> Result<RestorePoint, Error> {
        let id = s.id().to_string();
        let deploys = match self.client.deploys(&id, 10).await {
            Ok(d) => d,
            // Deleted since it was listed.
            Err(RenderApiError::NotFound { .. }) => return Ok(RestorePoint::missing(&service.name)),
            Err(e) => return Err(e.into()),
        };
        let live = deploys.iter().find(|d| d.status == "live");
        let env = self.client.env_vars(&id).await?;
        let owned = list(env.get(OWNED_VARIABLES).map(String::as_str));
        let mut kept: BTreeMap<String, Option<String>> = BTreeMap::new();
        for (k, v) in &env {
            if declared.contains(k) || k == OWNED_VARIABLES || k == FAILED_DEPLOYS || k == SECRETS_PENDING {
                kept.insert(k.clone(), Some(v.clone()));
            } else if owned.contains(k) {
                kept.insert(k.clone(), None);
            }
        }
        let _ = spec;
        let state = State {
            service_id: id,
            image_path: s.image_path().map(str::to_string),
            plan: s.plan().map(str::to_string),
            health_check_path: s.health_check_path().map(str::to_string),
            docker_command: s.docker_command().map(str::to_string),
            num_instances: s.num_instances(),
            autoscaling: s.autoscaling().cloned(),
            region: s.region().map(str::to_string),
            kind: s.kind().to_string(),
            live_id: live.map(|d| d.id.clone()),
            live_digest: live.and_then(Deploy::digest),
            known: deploys.iter().map(|d| d.id.clone()).collect(),
            env: kept,
        };
        let release = live.map(|d| release_from(&service.name, d, ReleaseStatus::Live));
        let state = serde_json::to_value(&state).map_err(|e| Error::new(ErrorKind::Other, e.to_string()))?;
        Ok(RestorePoint::new(&service.name, release, state))
    }

    /// The PATCH body that makes the service's settings `want`, if anything differs.
    fn patch_for(&self, owner: &str, state: &State, d: &Desired, credential: Option<&str>) -> Option<Value> {
        let mut details = serde_json::Map::new();
        if state.plan.as_deref() != Some(d.plan.as_str()) {
            details.insert("plan".into(), json!(d.plan));
        }
        let want_cmd = d.spec.docker_command.clone().unwrap_or_default();
        if state.docker_command.as_deref().unwrap_or_default() != want_cmd {
            details.insert("envSpecificDetails".into(), json!({ "dockerCommand": want_cmd }));
        }
        if d.kind == "web_service" {
            let want = d.spec.health_check_path.clone().unwrap_or_default();
            if state.health_check_path.as_deref().unwrap_or_default() != want {
                details.insert("healthCheckPath".into(), json!(want));
            }
        }
        let mut body = serde_json::Map::new();
        if state.image_path.as_deref() != Some(d.image_ref.as_str()) {
            let mut image = json!({ "ownerId": owner, "imagePath": d.image_ref });
            if let (Some(c), Some(obj)) = (credential, image.as_object_mut()) {
                obj.insert("registryCredentialId".into(), json!(c));
            }
            body.insert("image".into(), image);
        }
        if !details.is_empty() {
            details.insert("runtime".into(), json!("image"));
            body.insert("serviceDetails".into(), Value::Object(details));
        }
        (!body.is_empty()).then_some(Value::Object(body))
    }

    /// The registry credential's id: `[targets.render] registry_credential` by name, else one
    /// shipit creates from `GITHUB_ACTOR` + `GHCR_TOKEN` for a GHCR image, else none.
    async fn credential(&self, target: Target<'_>, owner: &str, image: &ImageRef) -> Result<Option<String>, Error> {
        if let Some(name) = &target.app.targets.render.registry_credential {
            return match self.client.credential(owner, name).await? {
                Some(c) => Ok(Some(c.id)),
                None => Err(Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "Render has no registry credential {name:?} in this workspace (`[targets.render] registry_credential`)"
                    ),
                )),
            };
        }
        let Some((user, token)) = &self.registry_login else { return Ok(None) };
        if image.registry != "ghcr.io" {
            return Ok(None);
        }
        let name = "shipit-ghcr";
        if let Some(c) = self.client.credential(owner, name).await? {
            return Ok(Some(c.id));
        }
        Ok(Some(self.client.create_credential(owner, name, user, token).await?.id))
    }

    async fn set_env(
        &self,
        id: &str,
        state_env: &BTreeMap<String, Option<String>>,
        d: &Desired,
        events: &shipit_core::Events,
        svc: &str,
    ) -> Result<(), Error> {
        let declared: BTreeSet<String> = d.env.keys().cloned().collect();
        let secrets: BTreeSet<String> = d.secrets.iter().cloned().collect();
        let owned_before = list(state_env.get(OWNED_VARIABLES).and_then(|v| v.as_deref()));
        let owned_now: BTreeSet<String> =
            declared.iter().cloned().chain(owned_before.intersection(&secrets).cloned()).collect();
        let none = Scrubber::new();
        for (k, v) in &d.env {
            if state_env.get(k).and_then(|x| x.as_deref()) != Some(v.as_str()) {
                events.step(svc, format!("setting env var {k}"));
                self.client.put_env_var(id, k, v, &none).await?;
            }
        }
        for k in owned_before
            .iter()
            .filter(|k| !owned_now.contains(*k) && !secrets.contains(*k) && state_env.contains_key(*k))
        {
            events.step(svc, format!("removing env var {k} (shipit set it; the manifest no longer has it)"));
            self.client.delete_env_var(id, k).await?;
        }
        let text = join(&owned_now);
        if state_env.get(OWNED_VARIABLES).and_then(|v| v.as_deref()).unwrap_or_default() != text {
            self.client.put_env_var(id, OWNED_VARIABLES, &text, &none).await?;
        }
        Ok(())
    }

    async fn scale(&self, id: &str, state: &State, spec: &ServerService) -> Result<(), Error> {
        match (&spec.scaling, spec.num_instances) {
            (Some(a), _) => {
                let same = state.autoscaling.as_ref().is_some_and(|x| {
                    x.get("min").and_then(Value::as_u64) == Some(u64::from(a.min_instances))
                        && x.get("max").and_then(Value::as_u64) == Some(u64::from(a.max_instances))
                });
                if !same {
                    self.client.autoscale(id, a.min_instances, a.max_instances, a.target_cpu_percent).await?;
                }
            }
            (None, Some(n)) => {
                if state.autoscaling.is_some() {
                    // Render ignores `/scale` while autoscaling is on.
                    self.client.stop_autoscaling(id).await?;
                }
                if state.num_instances != Some(u64::from(n)) || state.autoscaling.is_some() {
                    self.client.scale(id, n).await?;
                }
            }
            (None, None) => {}
        }
        Ok(())
    }

    fn rollout<'a>(
        &'a self,
        id: &'a str,
        svc: &'a str,
        image_ref: &'a str,
        digest: &'a str,
        known: BTreeSet<String>,
        events: &'a shipit_core::Events,
    ) -> Rollout<'a> {
        Rollout {
            client: &self.client,
            service_id: id,
            service: svc,
            image_ref,
            digest,
            known,
            poll_interval: self.poll_interval,
            events,
        }
    }

    async fn deploy_inner(
        &self,
        req: &DeployRequest<'_>,
        point: &mut RestorePoint,
        touched: &AtomicBool,
    ) -> Result<Deployed, Error> {
        let target = req.target;
        let svc = req.service.name.as_str();
        self.capabilities().check_strategy(PlatformKind::Render, req.strategy)?;
        let name = target.platform_name(PlatformKind::Render, svc);
        let owner = self.owner(target.app).await?;
        let d = self.desired(target, req.service, req.image.image(), &req.release, Some(&owner)).await?;
        for k in &d.missing {
            req.events.warn(
                Some(svc),
                format!("env var {k}: the database it refers to does not exist on Render yet; it is not set"),
            );
        }
        if req.cancel.is_cancelled() {
            return Err(Error::new(ErrorKind::Cancelled, "cancelled before anything changed"));
        }
        let credential = self.credential(target, &owner, req.image.image()).await?;
        let Some(state) = state_of(point).filter(|_| point.exists) else {
            return self.create(req, &owner, &name, &d, credential.as_deref(), touched).await;
        };
        let id = state.service_id.clone();
        if state.region.as_deref().is_some_and(|r| r != d.spec.region) {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                format!(
                    "service {name} runs in {} and the manifest asks for {}: Render cannot move a service to another region through its API (nothing was changed)",
                    state.region.as_deref().unwrap_or_default(),
                    d.spec.region
                ),
            ));
        }
        if state.kind != d.kind {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                format!(
                    "service {name} is a {} on Render and the manifest makes it a {} (nothing was changed)",
                    state.kind, d.kind
                ),
            ));
        }
        let patch = self.patch_for(&owner, &state, &d, credential.as_deref());
        let env_same = d.env.iter().all(|(k, v)| state.env.get(k).and_then(|x| x.as_deref()) == Some(v.as_str()));
        let scale_same = match (&d.spec.scaling, d.spec.num_instances) {
            (Some(a), _) => state.autoscaling.as_ref().is_some_and(|x| {
                x.get("min").and_then(Value::as_u64) == Some(u64::from(a.min_instances))
                    && x.get("max").and_then(Value::as_u64) == Some(u64::from(a.max_instances))
            }),
            (None, Some(n)) => state.autoscaling.is_none() && state.num_instances == Some(u64::from(n)),
            (None, None) => true,
        };
        let patch_only_image = patch.as_ref().is_none_or(|p| p.get("serviceDetails").is_none());
        let secrets_pending = state.live_id.is_some()
            && state.env.get(SECRETS_PENDING).and_then(|v| v.as_deref()) == state.live_id.as_deref();
        // `--restart` deploys what runs all the same: Render applies env vars at a deploy.
        if !req.restart
            && state.live_digest.as_deref() == Some(req.digest())
            && patch_only_image
            && env_same
            && scale_same
            && !secrets_pending
        {
            req.events.step(svc, format!("already runs {} with these settings: nothing to do", req.digest()));
            return Ok(Deployed::new(svc, req.digest(), false, state.num_instances.unwrap_or(1) as usize));
        }
        touched.store(true, Ordering::SeqCst);
        if let Some(p) = patch {
            req.events.step(svc, "updating the service's settings (they apply at the next deploy)");
            self.client.patch_service(&id, p).await?;
        }
        self.scale(&id, &state, &d.spec).await?;
        self.set_env(&id, &state.env, &d, &req.events, svc).await?;
        let known: BTreeSet<String> = state.known.iter().cloned().collect();
        let r = self.rollout(&id, svc, &d.image_ref, req.digest(), known, &req.events);
        let deploy_id = r.start(Start::Image(&d.image_ref)).await?;
        req.events.step(svc, format!("deploy {deploy_id} started; waiting for Render to report it live"));
        let live = match r.wait(&deploy_id, req.wait_timeout, &req.cancel).await {
            Ok(live) => live,
            Err(e) if e.kind == ErrorKind::Cancelled => {
                self.settle_after_stop(&owner, &state, &req.events, svc).await;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        self.check_digest(&live, req.digest())?;
        Ok(Deployed::new(
            svc,
            req.digest(),
            true,
            d.spec.num_instances.or(d.spec.scaling.map(|a| a.min_instances)).unwrap_or(1) as usize,
        ))
    }

    fn check_digest(&self, live: &Deploy, digest: &str) -> Result<(), Error> {
        match live.digest() {
            Some(got) if got == digest => Ok(()),
            got => Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "deploy {} is live but runs {}, not {digest}",
                    live.id,
                    got.unwrap_or_else(|| "an unknown image".into())
                ),
            )),
        }
    }

    async fn create(
        &self,
        req: &DeployRequest<'_>,
        owner: &str,
        name: &str,
        d: &Desired,
        credential: Option<&str>,
        touched: &AtomicBool,
    ) -> Result<Deployed, Error> {
        let svc = req.service.name.as_str();
        if !req.create {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("service {name} does not exist on Render (and --no-create was given)"),
            ));
        }
        // Render starts the first deploy at creation: the secrets must be in this request.
        let offered = self.offered.lock().map(|o| o.clone()).unwrap_or_default();
        let missing: Vec<&str> =
            d.secrets.iter().filter(|k| !offered.contains_key(k.as_str())).map(String::as_str).collect();
        if !missing.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                format!(
                    "creating {name} needs {} in the environment: Render starts a service's first deploy when it creates it, so its secrets go in that request (nothing was changed)",
                    missing.join(", ")
                ),
            ));
        }
        let mut env: Vec<Value> = d.env.iter().map(|(k, v)| json!({ "key": k, "value": v })).collect();
        let mut secrets = Scrubber::new();
        for k in &d.secrets {
            if let Some(v) = offered.get(k) {
                secrets = secrets.with_secret(v.expose_secret());
                env.push(json!({ "key": k, "value": v.expose_secret() }));
            }
        }
        let owned: BTreeSet<String> = d.env.keys().chain(&d.secrets).cloned().collect();
        env.push(json!({ "key": OWNED_VARIABLES, "value": join(&owned) }));
        let mut image = json!({ "ownerId": owner, "imagePath": d.image_ref });
        if let (Some(c), Some(obj)) = (credential, image.as_object_mut()) {
            obj.insert("registryCredentialId".into(), json!(c));
        }
        let mut details = json!({
            "runtime": "image",
            "plan": d.plan,
            "region": d.spec.region,
            "numInstances": d.spec.num_instances.or(d.spec.scaling.map(|a| a.min_instances)).unwrap_or(1),
            "envSpecificDetails": { "dockerCommand": d.spec.docker_command.clone().unwrap_or_default() },
        });
        if let (Some(path), Some(obj)) = (&d.spec.health_check_path, details.as_object_mut())
            && d.kind == "web_service"
        {
            obj.insert("healthCheckPath".into(), json!(path));
        }
        let body = json!({ "type": d.kind, "name": name, "ownerId": owner, "image": image, "envVars": env, "serviceDetails": details });
        req.events.step(svc, format!("creating service {name} (Render starts its first deploy at once)"));
        let (service, deploy_id) = self.create_once(owner, name, body, &secrets, &req.events, svc).await?;
        touched.store(true, Ordering::SeqCst);
        let id = service.id().to_string();
        if let Some(a) = d.spec.scaling {
            self.client.autoscale(&id, a.min_instances, a.max_instances, a.target_cpu_percent).await?;
        }
        let r = self.rollout(&id, svc, &d.image_ref, req.digest(), BTreeSet::new(), &req.events);
        let deploy_id = match deploy_id {
            Some(x) => x,
            None => r.find_new().await?.ok_or_else(|| {
                Error::new(ErrorKind::Other, format!("service {name} was created but Render lists no deploy of it"))
            })?,
        };
        req.events.step(svc, format!("first deploy {deploy_id} started; waiting for Render to report it live"));
        let live = r.wait(&deploy_id, req.wait_timeout, &req.cancel).await?;
        self.check_digest(&live, req.digest())?;
        Ok(Deployed::new(svc, req.digest(), true, d.spec.num_instances.unwrap_or(1) as usize))
    }

    /// After Ctrl-C / SIGTERM (the engine restores nothing then): the deploy was cancelled and
    /// the earlier one still serves, so the image setting goes back to it too, leaving the
    /// service on a known image. Best effort, bounded.
    async fn settle_after_stop(&self, owner: &str, state: &State, events: &shipit_core::Events, svc: &str) {
        let Some(path) = state.image_path.as_deref().filter(|_| state.live_digest.is_some()) else { return };
        let put_back = async {
            // The image object is replaced whole: keep its registry credential.
            let now = self.client.service(&state.service_id).await?;
            let mut image = json!({ "ownerId": owner, "imagePath": path });
            if let (Some(c), Some(obj)) = (now.registry_credential_id(), image.as_object_mut()) {
                obj.insert("registryCredentialId".into(), json!(c));
            }
            self.client.patch_service(&state.service_id, json!({ "image": image })).await
        };
        match tokio::time::timeout(Duration::from_secs(30), put_back).await {
            Ok(Ok(())) => events.step(svc, format!("stopped: the service's image setting is {path} again")),
            Ok(Err(e)) => events.warn(Some(svc), format!("stopped, and could not point the image setting back: {e}")),
            Err(_) => events.warn(Some(svc), "stopped, and could not point the image setting back: no answer"),
        }
    }

    /// `POST /services`, made safe by a lookup: after an ambiguous failure the service is looked
    /// up by name and only created again if it is not there; a 429 is waited out.
    async fn create_once(
        &self,
        owner: &str,
        name: &str,
        body: Value,
        secrets: &Scrubber,
        events: &shipit_core::Events,
        svc: &str,
    ) -> Result<(RenderService, Option<String>), Error> {
        let policy = self.client.retry_policy();
        let mut delay = policy.min_delay;
        let mut last: Option<RenderApiError> = None;
        for attempt in 0..=policy.max_retries {
            if attempt > 0 {
                let wait = last.as_ref().and_then(RenderApiError::retry_after).unwrap_or(delay).min(policy.max_delay);
                if matches!(last, Some(RenderApiError::RateLimited { .. })) {
                    events.step(
                        svc,
                        format!("rate limited by Render: waiting {}s before creating {name}", wait.as_secs()),
                    );
                }
                tokio::time::sleep(wait).await;
                delay = delay.saturating_mul(2);
            }
            match self.client.create_service(body.clone(), secrets).await {
                Ok(x) => return Ok(x),
                Err(e) if e.may_have_applied() => {
                    if let Some(s) = self.client.find_service(owner, name).await? {
                        events.step(
                            svc,
                            format!("the answer was lost, but service {name} was created: following its first deploy"),
                        );
                        return Ok((s, None));
                    }
                    last = Some(e);
                }
                Err(e @ RenderApiError::RateLimited { .. }) => last = Some(e),
                Err(RenderApiError::Conflict { message }) => {
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        format!(
                            "Render has a service named {name} already ({message}): another deploy is creating it (nothing was changed)"
                        ),
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(last.map_or_else(|| Error::new(ErrorKind::Other, "the service was not created"), Error::from))
    }

    async fn record_failed(&self, id: &str, deploy: &str) -> Result<(), Error> {
        let env = self.client.env_vars(id).await?;
        let mut ids: Vec<String> = env
            .get(FAILED_DEPLOYS)
            .map(|v| v.split(',').map(str::to_string).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        if ids.iter().any(|x| x == deploy) {
            return Ok(());
        }
        ids.push(deploy.to_string());
        let skip = ids.len().saturating_sub(FAILED_KEPT);
        let value = ids.into_iter().skip(skip).collect::<Vec<_>>().join(",");
        self.client.put_env_var(id, FAILED_DEPLOYS, &value, &Scrubber::new()).await?;
        Ok(())
    }

    async fn restore_inner(
        &self,
        req: &RestoreRequest<'_>,
        point: &RestorePoint,
        touched: &AtomicBool,
    ) -> Result<Deployed, Error> {
        let svc = req.service.name.as_str();
        let nothing = || Error::new(ErrorKind::NotFound, format!("{svc}: nothing to put back (no earlier release)"));
        let Some(state) = state_of(point) else { return Err(nothing()) };
        let Some(digest) = point.digest().map(str::to_string) else { return Err(nothing()) };
        let Some(target_deploy) = state.live_id.clone() else { return Err(nothing()) };
        let id = state.service_id.clone();
        let owner = self.owner(req.target.app).await?;
        let now = self.client.service(&id).await?;
        touched.store(true, Ordering::SeqCst);
        // The image setting and settings as they were.
        let mut body = serde_json::Map::new();
        if let Some(path) = &state.image_path
            && now.image_path() != Some(path.as_str())
        {
            let mut image = json!({ "ownerId": owner, "imagePath": path });
            if let (Some(c), Some(obj)) = (now.registry_credential_id(), image.as_object_mut()) {
                obj.insert("registryCredentialId".into(), json!(c));
            }
            body.insert("image".into(), image);
        }
        let mut details = serde_json::Map::new();
        if state.plan.is_some() && now.plan() != state.plan.as_deref() {
            details.insert("plan".into(), json!(state.plan));
        }
        if now.docker_command().unwrap_or_default() != state.docker_command.as_deref().unwrap_or_default() {
            details.insert(
                "envSpecificDetails".into(),
                json!({ "dockerCommand": state.docker_command.clone().unwrap_or_default() }),
            );
        }
        if state.kind == "web_service"
            && now.health_check_path().unwrap_or_default() != state.health_check_path.as_deref().unwrap_or_default()
        {
            details.insert("healthCheckPath".into(), json!(state.health_check_path.clone().unwrap_or_default()));
        }
        if !details.is_empty() {
            details.insert("runtime".into(), json!("image"));
            body.insert("serviceDetails".into(), Value::Object(details));
        }
        if !body.is_empty() {
            req.events.step(svc, format!("pointing the service back at {digest} with its earlier settings"));
            self.client.patch_service(&id, Value::Object(body)).await?;
        }
        let deploys = self.client.deploys(&id, 10).await?;
        let live = deploys.iter().find(|d| d.status == "live");
        if let (Some(l), Some(_)) = (live, req.reason.failed_release())
            && l.digest().as_deref() != Some(digest.as_str())
        {
            self.record_failed(&id, &l.id).await?;
        }
        if let Some(l) = live
            && l.digest().as_deref() == Some(digest.as_str())
        {
            req.events.step(svc, format!("deploy {} still serves {digest}: no new deploy needed", l.id));
            return Ok(Deployed::new(svc, digest, true, now.num_instances().unwrap_or(1) as usize));
        }
        let image_ref = state.image_path.clone().unwrap_or_default();
        let known: BTreeSet<String> = deploys.iter().map(|d| d.id.clone()).collect();
        let r = self.rollout(&id, svc, &image_ref, &digest, known, &req.events);
        req.events.step(svc, format!("rolling back to deploy {target_deploy} ({digest})"));
        let new = r.start(Start::Rollback(&target_deploy)).await?;
        let done = r.wait(&new, req.wait_timeout, &req.cancel).await?;
        self.check_digest(&done, &digest)?;
        Ok(Deployed::new(svc, digest, true, now.num_instances().unwrap_or(1) as usize))
    }
}

fn release_from(service: &str, d: &Deploy, status: ReleaseStatus) -> Release {
    let (id, sha) = d.image_ref().and_then(release_of_ref).unwrap_or_else(|| (d.id.clone(), None));
    let mut r = Release::new(id, service, status);
    r.platform_id = Some(d.id.clone());
    r.digest = d.digest();
    r.image = d.image_ref().map(str::to_string);
    r.git_sha = sha;
    r.created_at.clone_from(&d.created_at);
    r
}

#[async_trait::async_trait]
impl Platform for RenderPlatform {
    fn kind(&self) -> PlatformKind {
        PlatformKind::Render
    }

    fn capabilities(&self) -> Capabilities {
        let mut c = Capabilities::default();
        c.native_rollback = true;
        c.autoscaling = true;
        c
    }

    fn render(&self, app: &App, env: &str) -> Result<Vec<RenderedFile>, RenderError> {
        crate::render(app, env)
    }

    fn describe_deploy(
        &self,
        target: Target<'_>,
        service: &Service,
        image: &ImageRef,
    ) -> Result<Vec<PlannedCall>, Error> {
        let base = self.client.base_url();
        let spec = self.spec(target, service)?;
        let name = target.platform_name(PlatformKind::Render, &service.name);
        let kind = if spec.kind == ServiceType::Web { "web_service" } else { "background_worker" };
        let release = ReleaseInfo::new("<release id>", None);
        let image_ref = match &image.digest {
            Some(d) => format!("{}:{}@{d}", image.name(), release_tag(&release)),
            None => format!("{}:<release id>@<digest of the tag>", image.name()),
        };
        let env_names: Vec<&str> = spec.env_vars.iter().map(EnvVar::key).collect();
        let svc = format!("{base}/services/{{id}}");
        let mut out = vec![
            PlannedCall::new("GET", format!("{base}/owners")).note("the workspace (once per run)"),
            PlannedCall::new("GET", format!("{base}/services?name={name}&ownerId={{owner}}&includePreviews=false")).note("does the service exist?"),
            PlannedCall::new("GET", format!("{svc}/deploys?limit=10")).note("what runs: the restore point"),
            PlannedCall::new("GET", format!("{svc}/env-vars?limit=100")).note("env vars (values never shown)"),
            PlannedCall::new("POST", format!("{base}/services"))
                .body(json!({
                    "type": kind, "name": name, "ownerId": "{owner}",
                    "image": { "ownerId": "{owner}", "imagePath": image_ref },
                    "serviceDetails": { "runtime": "image", "plan": api_plan(&spec.plan), "region": spec.region,
                        "numInstances": spec.num_instances.or(spec.scaling.map(|a| a.min_instances)).unwrap_or(1),
                        "healthCheckPath": spec.health_check_path, "envSpecificDetails": { "dockerCommand": spec.docker_command.clone().unwrap_or_default() } },
                    "envVars": env_names,
                }))
                .when("only if the service does not exist (not with --no-create)")
                .note("starts the first deploy itself: no deploy POST follows"),
            PlannedCall::new("PATCH", svc.clone())
                .body(json!({ "image": { "ownerId": "{owner}", "imagePath": image_ref }, "serviceDetails": { "plan": api_plan(&spec.plan), "healthCheckPath": spec.health_check_path, "envSpecificDetails": { "dockerCommand": spec.docker_command.clone().unwrap_or_default() } } }))
                .when("only the fields that differ"),
            PlannedCall::new("POST", format!("{svc}/scale")).body(json!({ "numInstances": spec.num_instances })).when("only if the instance count differs"),
            PlannedCall::new("PUT", format!("{svc}/env-vars/{{key}}")).when(format!("for each of {} whose value differs", env_names.join(", "))),
            PlannedCall::new("POST", format!("{svc}/deploys")).body(json!({ "imageUrl": image_ref })).note("201 with the deploy, or 202 (queued): found by listing deploys"),
            PlannedCall::new("GET", format!("{svc}/deploys/{{deployId}}")).note(format!("every {}ms until live; *_failed and canceled fail", self.poll_interval.as_millis())),
            PlannedCall::new("POST", format!("{svc}/deploys/{{deployId}}/cancel")).when("only if not live at --wait-timeout, or on Ctrl-C"),
        ];
        if spec.scaling.is_some() {
            out.insert(7, PlannedCall::new("PUT", format!("{svc}/autoscaling")).when("only if min or max differ"));
        }
        Ok(out)
    }

    async fn plan(
        &self,
        target: Target<'_>,
        service: &Service,
        image: Option<&ImageRef>,
    ) -> Result<ServicePlan, Error> {
        let name = target.platform_name(PlatformKind::Render, &service.name);
        let owner = self.owner(target.app).await?;
        let img = image.cloned().unwrap_or_else(|| service.image.clone());
        let d = self.desired(target, service, &img, &ReleaseInfo::new("plan", None), Some(&owner)).await?;
        let Some(s) = self.client.find_service(&owner, &name).await? else {
            return Ok(ServicePlan::new(
                &service.name,
                name.clone(),
                true,
                vec![FieldChange::new("service", None, Some(name))],
            ));
        };
        let declared: BTreeSet<String> = d.env.keys().cloned().collect();
        let point = self.point_of(service, &s, &d.spec, &declared).await?;
        let Some(state) = state_of(&point) else { return Ok(ServicePlan::new(&service.name, name, false, Vec::new())) };
        let mut changes = Vec::new();
        let mut field = |f: &str, l: Option<String>, w: Option<String>| {
            if l != w {
                changes.push(FieldChange::new(f, l, w));
            }
        };
        field("plan", state.plan.clone(), Some(d.plan.clone()));
        field("region", state.region.clone(), Some(d.spec.region.clone()));
        field("dockerCommand", state.docker_command.clone().filter(|c| !c.is_empty()), d.spec.docker_command.clone());
        if d.kind == "web_service" {
            field(
                "healthCheckPath",
                state.health_check_path.clone().filter(|c| !c.is_empty()),
                d.spec.health_check_path.clone(),
            );
        }
        if let Some(n) = d.spec.num_instances {
            field("numInstances", state.num_instances.map(|n| n.to_string()), Some(n.to_string()));
        }
        if image.is_some() {
            field("deploy", state.live_digest.clone(), img.digest.clone());
        }
        for (k, v) in &d.env {
            let live = state.env.get(k).cloned().flatten();
            if live.as_deref() != Some(v.as_str()) {
                changes.push(FieldChange::new(format!("env.{k}"), live, Some(v.clone())));
            }
        }
        Ok(ServicePlan::new(&service.name, name, false, changes))
    }

    async fn restore_point(&self, target: Target<'_>, service: &Service) -> Result<RestorePoint, Error> {
        let spec = self.spec(target, service)?;
        let declared: BTreeSet<String> =
            spec.env_vars.iter().filter(|v| !matches!(v, EnvVar::Secret { .. })).map(|v| v.key().to_string()).collect();
        match self.find(target, service).await? {
            None => Ok(RestorePoint::missing(&service.name)),
            Some((_, s)) => self.point_of(service, &s, &spec, &declared).await,
        }
    }

    async fn release_point(
        &self,
        target: Target<'_>,
        service: &Service,
        release: &Release,
    ) -> Result<RestorePoint, Error> {
        let Some(digest) = release.digest.clone() else {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("release {} has no recorded image digest", release.id),
            ));
        };
        let Some((_, s)) = self.find(target, service).await? else {
            return Err(Error::new(ErrorKind::NotFound, format!("service {} does not exist on Render", service.name)));
        };
        let deploy_id = release.platform_id.clone().unwrap_or_else(|| release.id.clone());
        let d = self.client.deploy(s.id(), &deploy_id).await?;
        // Render keeps no settings per deploy: the image as it was, today's settings.
        let state = State {
            service_id: s.id().to_string(),
            image_path: d.image_ref().map(str::to_string),
            plan: s.plan().map(str::to_string),
            health_check_path: s.health_check_path().map(str::to_string),
            docker_command: s.docker_command().map(str::to_string),
            num_instances: s.num_instances(),
            autoscaling: s.autoscaling().cloned(),
            region: s.region().map(str::to_string),
            kind: s.kind().to_string(),
            live_id: Some(d.id.clone()),
            live_digest: Some(digest.clone()),
            known: Vec::new(),
            env: BTreeMap::new(),
        };
        let state = serde_json::to_value(&state).map_err(|e| Error::new(ErrorKind::Other, e.to_string()))?;
        let mut r = release.clone();
        r.digest = Some(digest);
        Ok(RestorePoint::new(&service.name, Some(r), state))
    }

    async fn deploy(&self, req: &DeployRequest<'_>, point: &mut RestorePoint) -> Result<Deployed, DeployFailure> {
        let touched = AtomicBool::new(false);
        self.deploy_inner(req, point, &touched).await.map_err(|e| failure(&touched, e))
    }

    async fn restore(&self, req: &RestoreRequest<'_>, point: &RestorePoint) -> Result<Deployed, DeployFailure> {
        let touched = AtomicBool::new(false);
        self.restore_inner(req, point, &touched).await.map_err(|e| failure(&touched, e))
    }

    async fn mark_failed(
        &self,
        target: Target<'_>,
        service: &Service,
        _release: &ReleaseInfo,
        _why: &str,
    ) -> Result<(), Error> {
        let Some((_, s)) = self.find(target, service).await? else { return Ok(()) };
        let deploys = self.client.deploys(s.id(), 1).await?;
        match deploys.first() {
            Some(d) if d.status == "live" => self.record_failed(s.id(), &d.id).await,
            _ => Ok(()),
        }
    }

    async fn status(&self, target: Target<'_>, service: &Service) -> Result<ServiceStatus, Error> {
        let name = target.platform_name(PlatformKind::Render, &service.name);
        let Some((_, s)) = self.find(target, service).await? else {
            return Ok(ServiceStatus::missing(&service.name, name));
        };
        let deploys = match self.client.deploys(s.id(), 10).await {
            Ok(d) => d,
            Err(RenderApiError::NotFound { .. }) => return Ok(ServiceStatus::missing(&service.name, name)),
            Err(e) => return Err(e.into()),
        };
        let mut st = ServiceStatus::missing(&service.name, name);
        st.exists = true;
        // A web service's public address, as Render reports it (`https://<slug>.onrender.com`).
        if service.port.is_some() {
            st.url = s.0.pointer("/serviceDetails/url").and_then(Value::as_str).map(str::to_string);
        }
        if let Some(live) = deploys.iter().find(|d| d.status == "live") {
            let r = release_from(&service.name, live, ReleaseStatus::Live);
            st.release = Some(r.id);
            st.git_sha = r.git_sha;
            st.digest = live.digest();
            st.image = live.image_ref().map(str::to_string);
            let n = s
                .num_instances()
                .or_else(|| s.autoscaling().and_then(|a| a.get("min")).and_then(Value::as_u64))
                .unwrap_or(1);
            // Render's API reports a service's instance count, not each instance's health:
            // a live deploy passed Render's health check on every instance.
            st.instances = (0..n)
                .map(|i| {
                    Instance::new(
                        format!("{}-{i}", live.id),
                        s.region().map(str::to_string),
                        InstanceState::Started,
                        live.digest(),
                        true,
                    )
                })
                .collect();
        }
        Ok(st)
    }

    async fn releases(&self, target: Target<'_>, service: &Service) -> Result<Vec<Release>, Error> {
        let Some((_, s)) = self.find(target, service).await? else { return Ok(Vec::new()) };
        let deploys = match self.client.deploys(s.id(), HISTORY).await {
            Ok(d) => d,
            Err(RenderApiError::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let failed = if deploys.iter().any(|d| d.status == "deactivated" || d.status == "live") {
            list(self.client.env_vars(s.id()).await?.get(FAILED_DEPLOYS).map(String::as_str))
        } else {
            BTreeSet::new()
        };
        Ok(deploys
            .iter()
            .map(|d| {
                let status = if failed.contains(&d.id) {
                    ReleaseStatus::Failed
                } else {
                    match d.status.as_str() {
                        "live" => ReleaseStatus::Live,
                        "deactivated" => ReleaseStatus::Superseded,
                        _ if d.failed() => ReleaseStatus::Failed,
                        _ => ReleaseStatus::InProgress,
                    }
                };
                release_from(&service.name, d, status)
            })
            .collect())
    }

    fn offer_secrets(&self, values: Vec<(String, SecretString)>) {
        if let Ok(mut offered) = self.offered.lock() {
            offered.extend(values);
        }
    }

    async fn sync_secrets(
        &self,
        target: Target<'_>,
        service: &Service,
        values: &[(String, SecretString)],
    ) -> Result<SecretsSynced, Error> {
        let name = target.platform_name(PlatformKind::Render, &service.name);
        let Some((_, s)) = self.find(target, service).await? else {
            // Nothing to set yet: the deploy that creates it puts them in the create request.
            let mut names: Vec<String> = values.iter().map(|(k, _)| k.clone()).collect();
            names.sort();
            names.dedup();
            return Ok(SecretsSynced::at_creation(&service.name, names));
        };
        let mut id = s.id().to_string();
        let env = match self.client.env_vars(&id).await {
            Ok(env) => env,
            Err(RenderApiError::NotFound { .. }) => {
                // Gone, or not visible yet: look it up once more.
                let again = self.client.find_service(&self.owner(target.app).await?, &name).await?;
                let Some(s) = again else {
                    return Err(Error::new(ErrorKind::NotFound, format!("service {name} does not exist on Render")));
                };
                id = s.id().to_string();
                self.client.env_vars(&id).await?
            }
            Err(e) => return Err(e.into()),
        };
        let mut owned = list(env.get(OWNED_VARIABLES).map(String::as_str));
        let changed = values.iter().any(|(k, v)| env.get(k).map(String::as_str) != Some(v.expose_secret()));
        if changed {
            // Applied at the next deploy: until then, a deploy of the same digest deploys.
            let deploys = self.client.deploys(&id, 10).await?;
            if let Some(live) = deploys.iter().find(|d| d.status == "live") {
                self.client.put_env_var(&id, SECRETS_PENDING, &live.id, &Scrubber::new()).await?;
            }
        }
        for (k, v) in values {
            let secrets = Scrubber::new().with_secret(v.expose_secret());
            if env.get(k).map(String::as_str) != Some(v.expose_secret()) {
                self.client
                    .put_env_var(&id, k, v.expose_secret(), &secrets)
                    .await
                    .map_err(|e| Error::from(e).context(format!("setting {k} on {name}")))?;
            }
            owned.insert(k.clone());
        }
        let text = join(&owned);
        if env.get(OWNED_VARIABLES).map(String::as_str).unwrap_or_default() != text {
            self.client.put_env_var(&id, OWNED_VARIABLES, &text, &Scrubber::new()).await?;
        }
        let mut names: Vec<String> = values.iter().map(|(k, _)| k.clone()).collect();
        names.sort();
        names.dedup();
        Ok(SecretsSynced::new(&service.name, names, None))
    }

    async fn secret_names(&self, target: Target<'_>, service: &Service) -> Result<Vec<String>, Error> {
        let Some((_, s)) = self.find(target, service).await? else { return Ok(Vec::new()) };
        Ok(self.client.env_vars(s.id()).await?.into_keys().filter(|k| !k.starts_with("SHIPIT_")).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_ids_survive_in_the_tag() {
        let info = ReleaseInfo::new("20261122T031500Z-c0ffee1-4e1f", Some("c0ffee1".into()));
        let tag = release_tag(&info);
        assert_eq!(tag, "20261122T031500Z-c0ffee1-4e1f.c0ffee1");
        let r = release_of_ref(&format!("ghcr.io/acme/api:{tag}@sha256:abc"));
        assert_eq!(r, Some(("20261122T031500Z-c0ffee1-4e1f".to_string(), Some("c0ffee1".to_string()))));
        assert_eq!(release_of_ref("ghcr.io/acme/api:v1@sha256:abc"), None, "not shipit's");
        assert_eq!(release_of_ref("localhost:5000/acme/api@sha256:abc"), None);
    }
}
