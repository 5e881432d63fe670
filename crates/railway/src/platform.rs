//! [`RailwayPlatform`]: shipit's [`Platform`] on Railway's GraphQL API.
//!
//! One manifest service is one Railway service in the environment's Railway environment. What
//! runs is the service instance's live deployment; what a redeploy would run is the instance's
//! source and settings. A deploy moves both (see the crate docs for the request sequence), and
//! a restore puts both back. The jobs live in their own files: [`crate::scope`] (names to ids,
//! token scope) and [`crate::rollout`] (one deployment, started once, waited for, cancelled).

use std::collections::{BTreeMap, BTreeSet};
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

use crate::client::{DeploymentInfo, InstanceInfo, RailwayClient};
use crate::config::RailwayConfig;
use crate::error::RailwayError;
use crate::render::{self, DEFAULT_REGION, DEFAULT_RESTART_RETRIES, ServiceSettings};
use crate::rollout::Deployment;
use crate::scope::{self, Resolver, Scope};

/// The variable in which shipit records which variables it set (comma-separated names), so a
/// variable removed from the manifest is removed only if shipit set it.
pub const OWNED_VARIABLES: &str = "SHIPIT_VARIABLES";
/// The variable in which shipit records deployments it took back after they went live (an
/// `--atomic` rollback), so they are never rollback targets.
pub const FAILED_DEPLOYMENTS: &str = "SHIPIT_FAILED_DEPLOYMENTS";
/// The variable `secrets sync` sets to the deployment that was live when it changed a value: while
/// that deployment is still live, the new values have not been rolled out, and a deploy of the
/// same digest deploys anyway.
pub const SECRETS_PENDING: &str = "SHIPIT_SECRETS_PENDING";
/// How many deployments `releases` reads.
const HISTORY: i64 = 20;
/// How many failed deployment ids are kept in [`FAILED_DEPLOYMENTS`].
const FAILED_KEPT: usize = 20;

/// Railway through its public GraphQL API.
#[derive(Debug)]
pub struct RailwayPlatform {
    client: RailwayClient,
    poll_interval: Duration,
    resolver: Resolver,
}

/// What a restore point keeps (no variable values beyond the manifest's plain ones).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct State {
    service_id: String,
    /// The `ServiceInstanceUpdateInput` that puts the settings back.
    input: Value,
    /// `{"vCPUs", "memoryGB"}` as they were, when set.
    #[serde(default)]
    limits: Value,
    /// The live deployment: id and digest.
    #[serde(default)]
    live_id: Option<String>,
    #[serde(default)]
    live_digest: Option<String>,
    #[serde(default)]
    live_replicas: usize,
    /// The newest deployment, live or not.
    #[serde(default)]
    latest_id: Option<String>,
    /// Values of the variables the manifest declares (plain, references, `PORT`) and of
    /// shipit's bookkeeping variables, as they were.
    #[serde(default)]
    variables: BTreeMap<String, Option<String>>,
    /// Whether the instance had a public domain (custom or Railway's).
    #[serde(default)]
    has_domain: bool,
}

fn state_of(point: &RestorePoint) -> Option<State> {
    serde_json::from_value(point.state.clone()).ok()
}

fn owned_list(value: Option<&Option<String>>) -> BTreeSet<String> {
    value
        .and_then(Option::as_deref)
        .map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect())
        .unwrap_or_default()
}

fn join(names: &BTreeSet<String>) -> String {
    names.iter().cloned().collect::<Vec<_>>().join(",")
}

/// The settings an instance has now, as a full `ServiceInstanceUpdateInput` (Railway's
/// defaults for what it leaves unset). Placement comes from the live deployment's manifest.
fn live_input(info: &InstanceInfo) -> Value {
    let regions = info
        .live()
        .and_then(|d| d.deploy_settings())
        .and_then(|s| s.get("multiRegionConfig"))
        .filter(|m| m.as_object().is_some_and(|o| !o.is_empty()))
        .cloned()
        .unwrap_or_else(|| {
            let region = info.region.clone().unwrap_or_else(|| DEFAULT_REGION.to_string());
            json!({ region: { "numReplicas": info.num_replicas.unwrap_or(1) } })
        });
    json!({
        "source": { "image": info.source.as_ref().and_then(|s| s.image.clone()) },
        "startCommand": info.start_command.clone().unwrap_or_default(),
        "healthcheckPath": info.healthcheck_path.clone().unwrap_or_default(),
        "healthcheckTimeout": info.healthcheck_timeout.unwrap_or(300),
        "restartPolicyType": info.restart_policy_type.clone().unwrap_or_else(|| "ON_FAILURE".into()),
        "restartPolicyMaxRetries": info.restart_policy_max_retries.unwrap_or(i64::from(DEFAULT_RESTART_RETRIES)),
        "sleepApplication": info.sleep_application.unwrap_or(false),
        "multiRegionConfig": regions,
        "railwayConfigFile": info.railway_config_file.clone().unwrap_or_default(),
    })
}

/// The settings a deployment ran with, from its `meta.serviceManifest.deploy`, over Railway's
/// defaults; `None` when Railway did not record them.
fn deployment_input(d: &DeploymentInfo, image: &str) -> Option<Value> {
    let s = d.deploy_settings()?;
    let str_of = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    let regions =
        s.get("multiRegionConfig").filter(|m| m.as_object().is_some_and(|o| !o.is_empty())).cloned().unwrap_or_else(
            || json!({ DEFAULT_REGION: { "numReplicas": s.get("numReplicas").and_then(Value::as_i64).unwrap_or(1) } }),
        );
    Some(json!({
        "source": { "image": image },
        "startCommand": str_of("startCommand"),
        "healthcheckPath": str_of("healthcheckPath"),
        "healthcheckTimeout": s.get("healthcheckTimeout").and_then(Value::as_i64).unwrap_or(300),
        "restartPolicyType": s.get("restartPolicyType").and_then(Value::as_str).unwrap_or("ON_FAILURE"),
        "restartPolicyMaxRetries": s.get("restartPolicyMaxRetries").and_then(Value::as_i64).unwrap_or(i64::from(DEFAULT_RESTART_RETRIES)),
        "sleepApplication": s.get("sleepApplication").and_then(Value::as_bool).unwrap_or(false),
        "multiRegionConfig": regions,
        "railwayConfigFile": "",
    }))
}

fn replicas_of(input: &Value) -> usize {
    input
        .get("multiRegionConfig")
        .and_then(Value::as_object)
        .map(|m| m.values().filter_map(|r| r.get("numReplicas").and_then(Value::as_u64)).sum::<u64>())
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(1)
}

fn limits_value(s: &ServiceSettings) -> Value {
    s.limits.map_or(Value::Null, |l| json!({ "vCPUs": l.vcpus, "memoryGB": l.memory_gb }))
}

fn same_limits(want: &Value, have: &Value) -> bool {
    let num = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64);
    want.is_null() || (num(want, "vCPUs") == num(have, "vCPUs") && num(want, "memoryGB") == num(have, "memoryGB"))
}

fn render_error(e: RenderError) -> Error {
    Error::new(ErrorKind::InvalidConfig, e.message)
}

fn instance_state(status: &str) -> InstanceState {
    match status {
        "RUNNING" => InstanceState::Started,
        "CREATED" => InstanceState::Created,
        "INITIALIZING" | "RESTARTING" => InstanceState::Starting,
        "REMOVING" => InstanceState::Stopping,
        "STOPPED" | "EXITED" => InstanceState::Stopped,
        "CRASHED" => InstanceState::Failed,
        "REMOVED" | "SKIPPED" => InstanceState::Destroyed,
        _ => InstanceState::Unknown,
    }
}

/// Variables a deploy changes: the values to upsert (those that differ) and the names to delete
/// (shipit set them once; the manifest no longer has them).
struct VariablePlan {
    upsert: BTreeMap<String, Option<String>>,
    delete: Vec<String>,
}

fn variable_plan(settings: &ServiceSettings, live: &BTreeMap<String, Option<String>>) -> VariablePlan {
    let declared: BTreeSet<String> = settings.variables.keys().cloned().collect();
    let secrets: BTreeSet<String> = settings.secrets.iter().cloned().collect();
    let owned_before = owned_list(live.get(OWNED_VARIABLES));
    let owned_now: BTreeSet<String> =
        declared.iter().cloned().chain(owned_before.intersection(&secrets).cloned()).collect();
    let mut upsert: BTreeMap<String, Option<String>> = settings
        .variables
        .iter()
        .filter(|(k, v)| live.get(*k).and_then(Option::as_deref) != Some(v.as_str()))
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    let owned_text = join(&owned_now);
    if live.get(OWNED_VARIABLES).and_then(Option::as_deref).unwrap_or_default() != owned_text {
        upsert.insert(OWNED_VARIABLES.to_string(), Some(owned_text));
    }
    let delete = owned_before
        .iter()
        .filter(|k| !owned_now.contains(*k) && !secrets.contains(*k) && live.contains_key(*k))
        .cloned()
        .collect();
    VariablePlan { upsert, delete }
}

impl RailwayPlatform {
    pub(crate) fn new(client: RailwayClient, config: RailwayConfig) -> Self {
        Self { client, poll_interval: config.poll_interval, resolver: Resolver::default() }
    }

    /// A builder: token, endpoint, polling, retries.
    pub fn builder() -> RailwayConfig {
        RailwayConfig::new()
    }

    /// Configured from `RAILWAY_TOKEN` / `RAILWAY_API_TOKEN` and `SHIPIT_RAILWAY_API_URL`.
    pub fn from_env() -> Result<Self, RailwayError> {
        RailwayConfig::from_env().build()
    }

    /// The API client.
    pub fn client(&self) -> &RailwayClient {
        &self.client
    }

    fn settings(
        &self,
        target: Target<'_>,
        service: &Service,
        image: Option<&ImageRef>,
    ) -> Result<ServiceSettings, Error> {
        let mut s = render::settings_of(target.app, &target.env.name, service).map_err(render_error)?;
        if let Some(image) = image {
            s.instance.source.image = match &image.digest {
                Some(d) => format!("{}@{d}", image.name()),
                // `deploy --dry-run`: the tag is resolved only when deploying.
                None => format!("{image}@<digest of the tag>"),
            };
        }
        Ok(s)
    }

    async fn scope(&self, target: Target<'_>) -> Result<Scope, Error> {
        self.resolver.scope(&self.client, target).await
    }

    /// The instance, or `None` when Railway says it does not exist.
    async fn instance(&self, scope: &Scope, service_id: &str) -> Result<Option<InstanceInfo>, Error> {
        match self.client.service_instance(&scope.environment.id, service_id).await {
            Ok(i) => Ok(Some(i)),
            Err(RailwayError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn variables(&self, scope: &Scope, service_id: &str) -> Result<BTreeMap<String, Option<String>>, Error> {
        Ok(self.client.variables(&scope.project.id, &scope.environment.id, service_id).await?)
    }

    /// The point for an existing service: its settings, limits, live deployment and the
    /// non-secret variables it declares.
    async fn point_for(
        &self,
        scope: &Scope,
        service: &Service,
        service_id: &str,
        settings: &ServiceSettings,
    ) -> Result<RestorePoint, Error> {
        let Some(info) = self.instance(scope, service_id).await? else {
            return Ok(RestorePoint::missing(&service.name));
        };
        let vars = self.variables(scope, service_id).await?;
        let keep: BTreeSet<&str> = settings
            .variables
            .keys()
            .map(String::as_str)
            .chain([OWNED_VARIABLES, FAILED_DEPLOYMENTS, SECRETS_PENDING])
            .collect();
        // The others shipit set are kept by name only (a value may be a secret's): a deploy
        // deletes those the manifest no longer has.
        let owned = owned_list(vars.get(OWNED_VARIABLES));
        let variables = vars
            .into_iter()
            .filter_map(|(k, v)| match (keep.contains(k.as_str()), owned.contains(&k)) {
                (true, _) => Some((k, v)),
                (false, true) => Some((k, None)),
                (false, false) => None,
            })
            .collect();
        let live = info.live();
        let release = live.map(|d| {
            let mut r = Release::new(&d.id, &service.name, ReleaseStatus::Live);
            r.platform_id = Some(d.id.clone());
            r.digest = d.digest();
            r.image = d.image().map(str::to_string);
            r.git_sha = d.git_sha();
            r.created_at.clone_from(&d.created_at);
            r
        });
        let state = State {
            service_id: service_id.to_string(),
            input: live_input(&info),
            limits: info.limits.clone(),
            live_id: live.map(|d| d.id.clone()),
            live_digest: live.and_then(DeploymentInfo::digest),
            live_replicas: live.map_or(0, |d| d.instances.len()),
            latest_id: info.latest_deployment.as_ref().map(|d| d.id.clone()),
            variables,
            has_domain: info.domains.as_ref().is_some_and(|d| d.first().is_some()),
        };
        let state = serde_json::to_value(&state).map_err(|e| Error::new(ErrorKind::Other, e.to_string()))?;
        Ok(RestorePoint::new(&service.name, release, state))
    }

    #[allow(clippy::too_many_arguments)]
    fn deployment<'a>(
        &'a self,
        scope: &'a Scope,
        service_id: &'a str,
        service: &'a str,
        digest: &'a str,
        git_sha: Option<&'a str>,
        latest_before: Option<&'a str>,
        events: &'a shipit_core::Events,
    ) -> Deployment<'a> {
        Deployment {
            client: &self.client,
            project_id: &scope.project.id,
            environment_id: &scope.environment.id,
            service_id,
            service,
            digest,
            git_sha,
            latest_before,
            poll_interval: self.poll_interval,
            events,
        }
    }

    /// Finds `name` in the project, creating it (empty) when it is missing and `create` allows.
    #[allow(clippy::too_many_arguments)]
    async fn ensure_service(
        &self,
        target: Target<'_>,
        scope: &mut Scope,
        name: &str,
        create: bool,
        touched: &AtomicBool,
        events: &shipit_core::Events,
        svc: &str,
    ) -> Result<(String, bool), Error> {
        if let Some(s) = scope.service(name) {
            return Ok((s.id.clone(), false));
        }
        self.resolver.refresh_services(&self.client, target, scope).await?;
        if let Some(s) = scope.service(name) {
            return Ok((s.id.clone(), false));
        }
        if !create {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "service {name:?} does not exist in Railway project {:?} (and --no-create was given)",
                    scope.project.name
                ),
            ));
        }
        events.step(
            svc,
            format!(
                "creating service {name} in project {} (empty: nothing runs until shipit has set it up)",
                scope.project.name
            ),
        );
        touched.store(true, Ordering::SeqCst);
        let created = match self.client.service_create(&scope.project.id, &scope.environment.id, name).await {
            Ok(n) => n,
            Err(e) if e.may_have_applied() => {
                self.resolver.refresh_services(&self.client, target, scope).await?;
                match scope.service(name) {
                    Some(s) => s.clone(),
                    None => self.client.service_create(&scope.project.id, &scope.environment.id, name).await?,
                }
            }
            Err(e) => return Err(e.into()),
        };
        self.resolver.created(target, created.clone());
        scope.services.push(created.clone());
        Ok((created.id, true))
    }

    async fn deploy_inner(
        &self,
        req: &DeployRequest<'_>,
        point: &mut RestorePoint,
        touched: &AtomicBool,
    ) -> Result<Deployed, Error> {
        let target = req.target;
        let service = req.service;
        let svc = service.name.as_str();
        self.capabilities().check_strategy(PlatformKind::Railway, req.strategy)?;
        let name = scope::service_name(target, service)?;
        let settings = self.settings(target, service, Some(req.image.image()))?;
        if req.cancel.is_cancelled() {
            return Err(Error::new(ErrorKind::Cancelled, "cancelled before anything changed"));
        }
        let mut scope = self.scope(target).await?;
        let existed = scope.service(&name).is_some();
        if existed && !point.exists {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "service {name} appeared after this deploy started: another deploy is creating it (nothing was changed)"
                ),
            ));
        }
        let (service_id, created) =
            self.ensure_service(target, &mut scope, &name, req.create, touched, &req.events, svc).await?;
        let state = if created { None } else { state_of(point) };
        let desired =
            serde_json::to_value(&settings.instance).map_err(|e| Error::new(ErrorKind::Other, e.to_string()))?;
        let limits = limits_value(&settings);
        let empty = BTreeMap::new();
        let live_vars = state.as_ref().map_or(&empty, |s| &s.variables);
        let vars = variable_plan(&settings, live_vars);
        // `--restart` deploys what runs all the same: Railway applies variables at a deployment.
        if let Some(s) = state.as_ref().filter(|_| !req.restart)
            && s.input == desired
            && s.live_digest.as_deref() == Some(req.digest())
            && same_limits(&limits, &s.limits)
            && vars.upsert.is_empty()
            && vars.delete.is_empty()
            && !(s.live_id.is_some()
                && s.variables.get(SECRETS_PENDING).and_then(Option::as_deref) == s.live_id.as_deref())
        {
            req.events.step(svc, format!("already runs {} with these settings: nothing to do", req.digest()));
            if let Some(port) = service.port
                && !s.has_domain
            {
                self.ensure_domain(&scope, &service_id, &name, port, &req.events, svc).await;
            }
            return Ok(Deployed::new(svc, req.digest(), false, s.live_replicas));
        }
        touched.store(true, Ordering::SeqCst);
        req.events.step(svc, format!("pointing {name} at {} with the manifest's settings", req.digest()));
        self.client.service_instance_update(&service_id, &scope.environment.id, &desired).await?;
        if let Some(l) = settings.limits
            && !same_limits(&limits, state.as_ref().map_or(&Value::Null, |s| &s.limits))
        {
            self.client.limits_update(&service_id, &scope.environment.id, l.vcpus, l.memory_gb).await?;
        }
        if !vars.upsert.is_empty() {
            let names: Vec<&str> = vars.upsert.keys().map(String::as_str).collect();
            req.events.step(svc, format!("setting variables {}", names.join(", ")));
            self.client
                .upsert_variables(
                    &scope.project.id,
                    &scope.environment.id,
                    &service_id,
                    vars.upsert.clone(),
                    &Scrubber::new(),
                )
                .await?;
        }
        for k in &vars.delete {
            req.events.step(svc, format!("removing variable {k} (shipit set it; the manifest no longer has it)"));
            self.client.delete_variable(&scope.project.id, &scope.environment.id, &service_id, k).await?;
        }
        if req.cancel.is_cancelled() {
            self.settle_after_stop(&scope, &service_id, state.as_ref(), &req.events, svc).await;
            return Err(Error::new(ErrorKind::Cancelled, "cancelled before the deployment started"));
        }
        // Before the deployment, so it starts with `RAILWAY_PUBLIC_DOMAIN` set.
        if let Some(port) = service.port
            && !state.as_ref().is_some_and(|s| s.has_domain)
        {
            self.ensure_domain(&scope, &service_id, &name, port, &req.events, svc).await;
        }
        let latest = state.as_ref().and_then(|s| s.latest_id.clone());
        let d = self.deployment(
            &scope,
            &service_id,
            svc,
            req.digest(),
            req.release.git_sha.as_deref(),
            latest.as_deref(),
            &req.events,
        );
        let id = d.start().await?;
        req.events.step(svc, format!("deployment {id} started; waiting for Railway to report it live"));
        let live = match d.wait(&id, req.wait_timeout, &req.cancel).await {
            Ok(live) => live,
            Err(e) if e.kind == ErrorKind::Cancelled => {
                self.settle_after_stop(&scope, &service_id, state.as_ref(), &req.events, svc).await;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        match live.digest() {
            Some(got) if got == req.digest() => {}
            got => {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "deployment {id} is live but runs {}, not {}",
                        got.unwrap_or_else(|| "an unknown image".into()),
                        req.digest()
                    ),
                ));
            }
        }
        let replicas = if live.instances.is_empty() { replicas_of(&desired) } else { live.instances.len() };
        point.exists = true;
        Ok(Deployed::new(svc, req.digest(), true, replicas))
    }

    /// Gives a web service without a public domain Railway's own (`serviceDomainCreate`, routed
    /// to `port`). The domains are looked up first, so a retry or a second deploy never makes a
    /// second one; a custom or Railway domain is left alone. Never fails the deploy: a refusal
    /// (or any failure) is a warning naming the `railway domain` command to run.
    async fn ensure_domain(
        &self,
        scope: &Scope,
        service_id: &str,
        name: &str,
        port: u16,
        events: &shipit_core::Events,
        svc: &str,
    ) {
        let (project, env) = (&scope.project.id, &scope.environment.id);
        let command = format!(
            "railway domain --project {} --environment {} --service {name} --port {port}",
            scope.project.id, scope.environment.name
        );
        let warn = |what: &str, e: &RailwayError| {
            events.warn(
                Some(svc),
                format!("{name} has no public domain: {what} failed ({e}). Run `{command}` to give it one"),
            );
        };
        let found = match self.client.domains(project, env, service_id).await {
            Ok(d) => d.first().map(str::to_string),
            Err(e) => return warn("reading its domains", &e),
        };
        if let Some(d) = found {
            events.step(svc, format!("{name} is served at https://{d}"));
            return;
        }
        events.step(svc, format!("giving {name} a Railway domain (port {port})"));
        let created = match self.client.service_domain_create(service_id, env, port).await {
            Ok(d) => Ok(d),
            Err(e) if e.may_have_applied() => {
                // The answer was lost: look before sending again.
                match self.client.domains(project, env, service_id).await {
                    Ok(d) => match d.first() {
                        Some(d) => Ok(d.to_string()),
                        None => self.client.service_domain_create(service_id, env, port).await,
                    },
                    Err(_) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        match created {
            Ok(d) => events.step(svc, format!("{name} is served at https://{d}")),
            Err(e) => warn("creating one", &e),
        }
    }

    /// After Ctrl-C / SIGTERM: the deployment was cancelled and the earlier one still serves, so
    /// the source and settings go back to it at once (the engine's `restore` follows, which then
    /// finds the earlier deployment serving). Best effort, bounded.
    async fn settle_after_stop(
        &self,
        scope: &Scope,
        service_id: &str,
        state: Option<&State>,
        events: &shipit_core::Events,
        svc: &str,
    ) {
        let Some(state) = state.filter(|s| s.live_digest.is_some()) else { return };
        let put_back = self.client.service_instance_update(service_id, &scope.environment.id, &state.input);
        match tokio::time::timeout(Duration::from_secs(30), put_back).await {
            Ok(Ok(())) => events.step(
                svc,
                format!("stopped: the service points at {} again", state.live_digest.as_deref().unwrap_or_default()),
            ),
            Ok(Err(e)) => events.warn(Some(svc), format!("stopped, and could not point the service back: {e}")),
            Err(_) => events.warn(Some(svc), "stopped, and could not point the service back: no answer"),
        }
    }

    /// Adds `id` to the deployments shipit took back (never a rollback target again).
    async fn record_failed(&self, scope: &Scope, service_id: &str, id: &str) -> Result<(), Error> {
        let vars = self.variables(scope, service_id).await?;
        let mut ids: Vec<String> = vars
            .get(FAILED_DEPLOYMENTS)
            .and_then(Option::as_deref)
            .map(|v| v.split(',').map(str::to_string).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        if ids.iter().any(|x| x == id) {
            return Ok(());
        }
        ids.push(id.to_string());
        let skip = ids.len().saturating_sub(FAILED_KEPT);
        let value = ids.into_iter().skip(skip).collect::<Vec<_>>().join(",");
        let mut upsert = BTreeMap::new();
        upsert.insert(FAILED_DEPLOYMENTS.to_string(), Some(value));
        self.client
            .upsert_variables(&scope.project.id, &scope.environment.id, service_id, upsert, &Scrubber::new())
            .await?;
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
        let scope = self.scope(req.target).await?;
        let service_id = state.service_id.as_str();
        touched.store(true, Ordering::SeqCst);
        req.events.step(svc, format!("pointing the service back at {digest} with its earlier settings"));
        self.client.service_instance_update(service_id, &scope.environment.id, &state.input).await?;
        let (vcpus, mem) =
            (state.limits.get("vCPUs").and_then(Value::as_f64), state.limits.get("memoryGB").and_then(Value::as_f64));
        if let (Some(c), Some(m)) = (vcpus, mem) {
            self.client.limits_update(service_id, &scope.environment.id, c, m).await?;
        }
        let info = self.instance(&scope, service_id).await?.ok_or_else(nothing)?;
        let live = info.live();
        if let (Some(l), Some(_)) = (live, req.reason.failed_release())
            && l.digest().as_deref() != Some(digest.as_str())
        {
            // The release being taken back went live: never a rollback target again.
            self.record_failed(&scope, service_id, &l.id).await?;
        }
        if let Some(l) = live
            && l.digest().as_deref() == Some(digest.as_str())
        {
            req.events.step(svc, format!("deployment {} still serves {digest}: no new deployment needed", l.id));
            return Ok(Deployed::new(svc, digest, true, l.instances.len()));
        }
        let latest = info.latest_deployment.as_ref().map(|d| d.id.clone());
        let git_sha = point.release.as_ref().and_then(|r| r.git_sha.clone());
        let d = self.deployment(&scope, service_id, svc, &digest, git_sha.as_deref(), latest.as_deref(), &req.events);
        let id = d.start().await?;
        req.events.step(svc, format!("deployment {id} of {digest} started, with today's variables"));
        let done = d.wait(&id, req.wait_timeout, &req.cancel).await?;
        if done.digest().as_deref() != Some(digest.as_str()) {
            return Err(Error::new(ErrorKind::Conflict, format!("deployment {id} is live but does not run {digest}")));
        }
        Ok(Deployed::new(svc, digest, true, done.instances.len().max(replicas_of(&state.input))))
    }

    /// The service's id, when the project has it.
    async fn service_id(
        &self,
        target: Target<'_>,
        service: &Service,
    ) -> Result<Option<(Scope, String, String)>, Error> {
        let name = scope::service_name(target, service)?;
        let scope = self.scope(target).await?;
        let id = scope.service(&name).map(|s| s.id.clone());
        Ok(id.map(|id| (scope, id, name)))
    }
}

fn failure(touched: &AtomicBool, e: Error) -> DeployFailure {
    if touched.load(Ordering::SeqCst) { DeployFailure::touched(e) } else { DeployFailure::untouched(e) }
}

fn release_of(service: &str, d: &DeploymentInfo, status: ReleaseStatus) -> Release {
    let mut r = Release::new(&d.id, service, status);
    r.platform_id = Some(d.id.clone());
    r.digest = d.digest();
    r.image = d.image().map(str::to_string);
    r.git_sha = d.git_sha();
    r.created_at.clone_from(&d.created_at);
    r
}

#[async_trait::async_trait]
impl Platform for RailwayPlatform {
    fn kind(&self) -> PlatformKind {
        PlatformKind::Railway
    }

    fn capabilities(&self) -> Capabilities {
        let mut c = Capabilities::default();
        // Railway has `deploymentRollback`; shipit does not use it (it restores old variable
        // values): see the crate docs.
        c.native_rollback = true;
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
        let url = self.client.endpoint().to_string();
        let name = scope::service_name(target, service)?;
        let settings = self.settings(target, service, Some(image))?;
        let project = target.app.targets.railway.project.clone().unwrap_or_else(|| target.app.name.clone());
        let env = target.app.targets.railway.environment_name(&target.env.name);
        let call = |op: &str| PlannedCall::new("POST", url.clone()).operation(op);
        let mut out = vec![
            call("ProjectToken").note("with RAILWAY_TOKEN: the project and environment it is bound to (once per run)"),
            call("Projects").note(format!("with RAILWAY_API_TOKEN: find project {project:?} by name (once per run)")),
            call("Project").body(json!({ "id": "{projectId}" })).note(format!("its environments ({env:?}) and services ({name:?}); once per run")),
            call("ServiceInstance")
                .body(json!({ "environmentId": "{environmentId}", "serviceId": "{serviceId}" }))
                .note("what runs, its settings and size: the restore point"),
            call("Variables")
                .body(json!({ "projectId": "{projectId}", "environmentId": "{environmentId}", "serviceId": "{serviceId}" }))
                .note("the variables as written (values are never shown)"),
            call("ServiceCreate")
                .body(json!({ "projectId": "{projectId}", "environmentId": "{environmentId}", "name": name }))
                .when("only if the service does not exist; not with --no-create")
                .note("no source: nothing deploys with Railway's defaults"),
            call("ServiceInstanceUpdate")
                .body(json!({ "serviceId": "{serviceId}", "environmentId": "{environmentId}", "input": settings.instance }))
                .note("every setting, never a null; skipped when image, settings and variables already match"),
        ];
        if let Some(l) = settings.limits {
            out.push(
                call("ServiceInstanceLimitsUpdate")
                    .body(json!({ "input": { "serviceId": "{serviceId}", "environmentId": "{environmentId}", "vCPUs": l.vcpus, "memoryGB": l.memory_gb } }))
                    .when("only if the size differs"),
            );
        }
        let mut vars: BTreeMap<String, Value> = settings.variables.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        vars.insert(OWNED_VARIABLES.to_string(), json!("<names shipit set>"));
        out.push(
            call("VariableCollectionUpsert")
                .body(json!({ "projectId": "{projectId}", "environmentId": "{environmentId}", "serviceId": "{serviceId}", "variables": vars }))
                .when("only the variables that differ")
                .note("replace: false, skipDeploys: true (set in the operation)"),
        );
        out.push(
            call("VariableDelete")
                .body(json!({ "name": "{name}" }))
                .when(format!("for each variable in {OWNED_VARIABLES} the manifest no longer declares")),
        );
        if let Some(port) = service.port {
            let when = format!("the service has a port ({port}), so it needs a public domain:");
            out.push(
                call("Domains")
                    .body(json!({ "projectId": "{projectId}", "environmentId": "{environmentId}", "serviceId": "{serviceId}" }))
                    .when(when.clone())
                    .note("only if ServiceInstance showed no domain: looked up right before creating one"),
            );
            out.push(
                call("ServiceDomainCreate")
                    .body(json!({ "input": { "serviceId": "{serviceId}", "environmentId": "{environmentId}", "targetPort": port } }))
                    .when(when)
                    .note("only if it has no custom or Railway domain; a refusal is a warning naming `railway domain`"),
            );
        }
        out.push(
            call("ServiceInstanceDeployV2")
                .body(json!({ "serviceId": "{serviceId}", "environmentId": "{environmentId}", "commitSha": "<git sha, when known>" }))
                .note("answers the deployment id; sent once (a lost answer is looked up with Deployments)"),
        );
        out.push(
            call("Deployment").body(json!({ "id": "{deploymentId}" })).note(format!(
                "every {}ms until SUCCESS; FAILED or CRASHED fail at once",
                self.poll_interval.as_millis()
            )),
        );
        out.push(
            call("DeploymentCancel")
                .body(json!({ "id": "{deploymentId}" }))
                .when("only if it is not live at --wait-timeout, or on Ctrl-C"),
        );
        Ok(out)
    }

    async fn plan(
        &self,
        target: Target<'_>,
        service: &Service,
        image: Option<&ImageRef>,
    ) -> Result<ServicePlan, Error> {
        let name = scope::service_name(target, service)?;
        let settings = self.settings(target, service, image)?;
        let desired =
            serde_json::to_value(&settings.instance).map_err(|e| Error::new(ErrorKind::Other, e.to_string()))?;
        let Some((scope, id, _)) = self.service_id(target, service).await? else {
            let mut changes = vec![FieldChange::new("service", None, Some(name.clone()))];
            if image.is_some() {
                changes.push(FieldChange::new("source.image", None, Some(settings.instance.source.image.clone())));
            }
            return Ok(ServicePlan::new(&service.name, name, true, changes));
        };
        let point = self.point_for(&scope, service, &id, &settings).await?;
        let Some(state) = state_of(&point) else {
            return Ok(ServicePlan::new(&service.name, name, true, vec![FieldChange::new("service", None, Some(id))]));
        };
        let mut changes = Vec::new();
        if let (Some(want), Some(have)) = (desired.as_object(), state.input.as_object()) {
            for (k, v) in want {
                if k == "source" && image.is_none() {
                    continue;
                }
                let live = have.get(k);
                if live != Some(v) {
                    let show = |x: &Value| match x {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    let field = if k == "source" { "source.image".to_string() } else { k.clone() };
                    let (l, d) = if k == "source" {
                        (live.and_then(|x| x.get("image")).map(show), v.get("image").map(show))
                    } else {
                        (live.map(show), Some(show(v)))
                    };
                    changes.push(FieldChange::new(field, l, d));
                }
            }
        }
        if !same_limits(&limits_value(&settings), &state.limits) {
            changes.push(FieldChange::new(
                "limits",
                Some(state.limits.to_string()),
                Some(limits_value(&settings).to_string()),
            ));
        }
        let vars = variable_plan(&settings, &state.variables);
        for (k, v) in &vars.upsert {
            if k != OWNED_VARIABLES {
                let live = state.variables.get(k).map(|v| v.clone().unwrap_or_default());
                changes.push(FieldChange::new(format!("variables.{k}"), live, v.clone()));
            }
        }
        for k in &vars.delete {
            changes.push(FieldChange::new(format!("variables.{k}"), Some("(set)".into()), None));
        }
        if image.is_some() && state.live_digest.as_deref() != image.and_then(|i| i.digest.as_deref()) {
            changes.push(FieldChange::new(
                "deployment",
                state.live_digest.clone(),
                image.and_then(|i| i.digest.clone()),
            ));
        }
        Ok(ServicePlan::new(&service.name, name, false, changes))
    }

    async fn restore_point(&self, target: Target<'_>, service: &Service) -> Result<RestorePoint, Error> {
        let settings = self.settings(target, service, None)?;
        match self.service_id(target, service).await? {
            None => Ok(RestorePoint::missing(&service.name)),
            Some((scope, id, _)) => self.point_for(&scope, service, &id, &settings).await,
        }
    }

    async fn release_point(
        &self,
        target: Target<'_>,
        service: &Service,
        release: &Release,
    ) -> Result<RestorePoint, Error> {
        let Some(digest) = release.digest.as_deref() else {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("release {} has no recorded image digest", release.id),
            ));
        };
        let Some((_, service_id, _)) = self.service_id(target, service).await? else {
            return Err(Error::new(ErrorKind::NotFound, format!("service {} does not exist on Railway", service.name)));
        };
        let id = release.platform_id.as_deref().unwrap_or(&release.id);
        let d = self.client.deployment(id).await?;
        let image = d
            .image()
            .filter(|i| i.contains(digest))
            .map_or_else(|| service.image.with_digest(digest).to_string(), str::to_string);
        let input = match deployment_input(&d, &image) {
            Some(i) => i,
            None => {
                // Railway did not record the settings: the digest with today's settings.
                let s = self.settings(target, service, Some(&service.image.with_digest(digest)))?;
                serde_json::to_value(&s.instance).map_err(|e| Error::new(ErrorKind::Other, e.to_string()))?
            }
        };
        let state = State { service_id, input, ..State::default() };
        let state = serde_json::to_value(&state).map_err(|e| Error::new(ErrorKind::Other, e.to_string()))?;
        let mut r = release.clone();
        r.digest = Some(digest.to_string());
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
        // Railway records FAILED and CRASHED itself; a live deployment shipit judged failed
        // (and left in place) is recorded so that it is never a rollback target.
        let Some((scope, id, _)) = self.service_id(target, service).await? else { return Ok(()) };
        let Some(info) = self.instance(&scope, &id).await? else { return Ok(()) };
        match (info.live(), info.latest_deployment.as_ref()) {
            (Some(l), Some(latest)) if l.id == latest.id => self.record_failed(&scope, &id, &l.id).await,
            _ => Ok(()),
        }
    }

    async fn status(&self, target: Target<'_>, service: &Service) -> Result<ServiceStatus, Error> {
        let name = scope::service_name(target, service)?;
        let Some((scope, id, _)) = self.service_id(target, service).await? else {
            return Ok(ServiceStatus::missing(&service.name, name));
        };
        let Some(info) = self.instance(&scope, &id).await? else {
            return Ok(ServiceStatus::missing(&service.name, name));
        };
        let mut st = ServiceStatus::missing(&service.name, name);
        st.exists = true;
        // A web service's public address: a custom domain first, else Railway's own.
        if service.port.is_some()
            && let Some(d) = &info.domains
        {
            st.url = d.first().map(|d| format!("https://{d}"));
        }
        if let Some(live) = info.live() {
            st.digest = live.digest();
            st.release = Some(live.id.clone());
            st.git_sha = live.git_sha();
            st.image = live.image().map(str::to_string);
            let healthy = live.status == "SUCCESS";
            st.instances = live
                .instances
                .iter()
                .map(|r| {
                    Instance::new(
                        &r.id,
                        None,
                        instance_state(&r.status),
                        live.digest(),
                        healthy && r.status == "RUNNING",
                    )
                })
                .collect();
        }
        Ok(st)
    }

    async fn releases(&self, target: Target<'_>, service: &Service) -> Result<Vec<Release>, Error> {
        let Some((scope, id, _)) = self.service_id(target, service).await? else { return Ok(Vec::new()) };
        let deployments =
            match self.client.deployments(&scope.project.id, &scope.environment.id, &id, HISTORY, false).await {
                Ok(d) => d,
                Err(RailwayError::NotFound { .. }) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
        let failed: BTreeSet<String> = if deployments.iter().any(|d| d.can_rollback || d.is_live()) {
            match self.variables(&scope, &id).await {
                Ok(v) => owned_list(v.get(FAILED_DEPLOYMENTS)),
                Err(e) if e.kind == ErrorKind::NotFound => BTreeSet::new(),
                Err(e) => return Err(e),
            }
        } else {
            BTreeSet::new()
        };
        let mut live_seen = false;
        Ok(deployments
            .iter()
            .map(|d| {
                let status = if failed.contains(&d.id) {
                    ReleaseStatus::Failed
                } else {
                    match d.status.as_str() {
                        "SUCCESS" | "SLEEPING" if !live_seen => {
                            live_seen = true;
                            ReleaseStatus::Live
                        }
                        "SUCCESS" | "SLEEPING" => ReleaseStatus::Superseded,
                        "REMOVED" | "REMOVING" if d.can_rollback => ReleaseStatus::Superseded,
                        "REMOVED" | "REMOVING" | "FAILED" | "CRASHED" | "SKIPPED" => ReleaseStatus::Failed,
                        _ => ReleaseStatus::InProgress,
                    }
                };
                release_of(&service.name, d, status)
            })
            .collect())
    }

    async fn sync_secrets(
        &self,
        target: Target<'_>,
        service: &Service,
        values: &[(String, SecretString)],
    ) -> Result<SecretsSynced, Error> {
        let name = scope::service_name(target, service)?;
        let mut scope = self.scope(target).await?;
        let touched = AtomicBool::new(false);
        let (id, _) = self
            .ensure_service(target, &mut scope, &name, true, &touched, &shipit_core::Events::none(), &service.name)
            .await?;
        let current = match self.variables(&scope, &id).await {
            Ok(v) => v,
            Err(e) if e.kind == ErrorKind::NotFound => {
                // Not visible yet, or gone: look again once.
                self.resolver.refresh_services(&self.client, target, &mut scope).await?;
                self.variables(&scope, &id).await?
            }
            Err(e) => return Err(e),
        };
        let mut owned = owned_list(current.get(OWNED_VARIABLES));
        let mut upsert: BTreeMap<String, Option<String>> = BTreeMap::new();
        let changed = values.iter().any(|(k, v)| current.get(k).and_then(Option::as_deref) != Some(v.expose_secret()));
        if changed
            && let Some(live) = self.instance(&scope, &id).await?.as_ref().and_then(|i| i.live().map(|d| d.id.clone()))
        {
            // Applied at the next deployment: until then, a deploy of the same digest deploys.
            upsert.insert(SECRETS_PENDING.to_string(), Some(live));
        }
        let mut secrets = Scrubber::new();
        for (k, v) in values {
            secrets.add(v.expose_secret());
            upsert.insert(k.clone(), Some(v.expose_secret().to_string()));
            owned.insert(k.clone());
        }
        upsert.insert(OWNED_VARIABLES.to_string(), Some(join(&owned)));
        self.client
            .upsert_variables(&scope.project.id, &scope.environment.id, &id, upsert, &secrets)
            .await
            .map_err(|e| Error::from(e).context(format!("setting variables on {name}")))?;
        let mut names: Vec<String> = values.iter().map(|(k, _)| k.clone()).collect();
        names.sort();
        names.dedup();
        Ok(SecretsSynced::new(&service.name, names, None))
    }

    async fn secret_names(&self, target: Target<'_>, service: &Service) -> Result<Vec<String>, Error> {
        let Some((scope, id, _)) = self.service_id(target, service).await? else { return Ok(Vec::new()) };
        match self.variables(&scope, &id).await {
            Ok(v) => Ok(v
                .into_iter()
                .filter(|(_, x)| x.is_some())
                .map(|(k, _)| k)
                .filter(|k| !k.starts_with("SHIPIT_"))
                .collect()),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}
