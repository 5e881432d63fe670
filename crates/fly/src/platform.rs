//! [`FlyPlatform`]: shipit's [`Platform`] on the Fly Machines API.
//!
//! One service is one Fly app; its machines of process group `app` run the service. What runs
//! is recorded in the machines' metadata (`shipit_release`, `shipit_digest`, `shipit_failed`…),
//! which `releases` reads back from the machines' config versions: Fly has no release history
//! of its own. The jobs of a deploy live in their own files, the way flyctl keeps one file per
//! strategy: [`crate::rollout`] (batches and creates), [`crate::leases`] (the lock),
//! [`crate::gate`] (the health gate), [`crate::restore`] (restore points) and `ips.rs`
//! (the public addresses a service with a port gets on deploy).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use futures::future::join_all;
use secrecy::SecretString;
use serde_json::{Value, json};
use shipit_core::{
    App, Capabilities, DeployFailure, DeployRequest, Deployed, Error, ErrorKind, FieldChange, ImageRef, Instance,
    InstanceState, PlannedCall, Platform, PlatformKind, Release, ReleaseInfo, RenderError, RenderedFile, RestorePoint,
    RestoreRequest, SecretsSynced, Service, ServicePlan, ServiceStatus, Strategy, Target, database_reference_names,
};

use crate::client::{FlyClient, IpType, Machine, MachineVersion, NONCE_HEADER};
use crate::config::FlyConfig;
use crate::error::FlyError;
use crate::history::{self, History};
use crate::ips;
use crate::machine::{self, META_FAILED, META_RELEASE, PROCESS_GROUP, ReleaseMeta};
use crate::restore;
use crate::rollout::{self, Desired, Job, app_machines, batch_size};

/// Fly.io through the Machines API.
pub struct FlyPlatform {
    client: FlyClient,
    pub(crate) poll_interval: Duration,
    pub(crate) lease_ttl: Duration,
    /// Secrets version per app after `sync_secrets`, sent as `min_secrets_version`.
    secrets_versions: Mutex<HashMap<String, u64>>,
    /// Secret values offered before a deploy: an app that runs no machine yet gets the ones it
    /// lacks before its first machine is created, so that machine starts with them.
    offered: Mutex<BTreeMap<String, SecretString>>,
}

impl std::fmt::Debug for FlyPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlyPlatform")
            .field("client", &self.client)
            .field("poll_interval", &self.poll_interval)
            .field("lease_ttl", &self.lease_ttl)
            .finish()
    }
}

pub(crate) fn app_name(target: Target<'_>, service: &Service) -> String {
    target.platform_name(PlatformKind::Fly, &service.name)
}

/// The regions machines run in: the environment's, else the primary region.
fn regions(target: Target<'_>) -> Result<Vec<String>, Error> {
    if !target.env.regions.is_empty() {
        return Ok(target.env.regions.clone());
    }
    match &target.app.targets.fly.primary_region {
        Some(r) => Ok(vec![r.clone()]),
        None => Err(Error::new(
            ErrorKind::InvalidConfig,
            format!(
                "environment {:?} has no region for Fly: set `[targets.fly] primary_region` (or `regions` on the environment)",
                target.env.name
            ),
        )),
    }
}

/// Machines per region a service wants.
fn per_region(service: &Service) -> usize {
    usize::try_from(service.scale.min.max(1)).unwrap_or(1)
}

fn image_of(config: &Value) -> Option<&str> {
    config.get("image").and_then(Value::as_str)
}

fn digest_of_config(config: &Value) -> Option<String> {
    image_of(config).and_then(machine::digest_of).map(str::to_string)
}

/// Fly's machine states in shipit's words.
fn instance_state(state: &str) -> InstanceState {
    match state {
        "created" => InstanceState::Created,
        "starting" | "replacing" | "updating" => InstanceState::Starting,
        "started" => InstanceState::Started,
        "stopping" => InstanceState::Stopping,
        "stopped" => InstanceState::Stopped,
        "suspending" | "suspended" => InstanceState::Suspended,
        "failed" => InstanceState::Failed,
        "destroying" | "destroyed" => InstanceState::Destroyed,
        _ => InstanceState::Unknown,
    }
}

/// The same value on every machine, or `None`.
fn common<I: IntoIterator<Item = Option<String>>>(values: I) -> Option<String> {
    let mut it = values.into_iter();
    let first = it.next()??;
    it.all(|v| v.as_deref() == Some(first.as_str())).then_some(first)
}

/// A machine's versions, oldest first: by ULID or number when the ids are such, else as Fly
/// returns them (newest first).
fn oldest_first(mut versions: Vec<MachineVersion>) -> Vec<MachineVersion> {
    let number = |v: &MachineVersion| v.version.trim_start_matches(|c: char| !c.is_ascii_digit()).parse::<u64>().ok();
    if !versions.is_empty() && versions.iter().all(|v| history::ulid_time(&v.version).is_some()) {
        versions.sort_by_key(|v| v.version.to_ascii_uppercase());
    } else if !versions.is_empty() && versions.iter().all(|v| number(v).is_some()) {
        versions.sort_by_key(|v| number(v).unwrap_or(0));
    } else {
        versions.reverse();
    }
    versions
}

/// Whether creating an app failed because it exists now: another deploy made it first.
fn taken(e: &FlyError) -> bool {
    match e {
        FlyError::Conflict { .. } => true,
        FlyError::Api { status: 422, message } => {
            let m = message.to_ascii_lowercase();
            m.contains("taken") || m.contains("exists")
        }
        _ => false,
    }
}

fn failure(job: &Job<'_>, e: Error) -> DeployFailure {
    if job.touched() { DeployFailure::touched(e) } else { DeployFailure::untouched(e) }
}

impl FlyPlatform {
    pub(crate) fn new(client: FlyClient, config: FlyConfig) -> Self {
        Self {
            client,
            poll_interval: config.poll_interval,
            lease_ttl: config.lease_ttl,
            secrets_versions: Mutex::new(HashMap::new()),
            offered: Mutex::new(BTreeMap::new()),
        }
    }

    /// Sets `values` on `app` and remembers the secrets version it answers (sent later as
    /// `min_secrets_version`).
    async fn set_secrets(&self, app: &str, values: &[(String, SecretString)]) -> Result<Option<u64>, Error> {
        let set = self
            .client
            .set_secrets(app, values)
            .await
            .map_err(|e| Error::from(e).context(format!("setting secrets on {app}")))?;
        if let (Some(v), Ok(mut map)) = (set.version, self.secrets_versions.lock()) {
            map.insert(app.to_string(), v);
        }
        Ok(set.version)
    }

    /// Before an app's first machine: sets the offered values of the secrets `service` needs
    /// that the app lacks (as `secrets sync` would), and remembers the new secrets version.
    async fn first_secrets(&self, app: &str, service: &Service, events: &shipit_core::Events) -> Result<(), Error> {
        let offered = self.offered.lock().map(|o| o.clone()).unwrap_or_default();
        let needed = self.required_secrets(service);
        let wanted: Vec<&String> = needed.iter().filter(|n| offered.contains_key(n.as_str())).collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let on_app = self.client.list_secrets(app).await.map_err(Error::from)?;
        let values: Vec<(String, SecretString)> = wanted
            .into_iter()
            .filter(|n| !on_app.contains(n))
            .filter_map(|n| offered.get(n.as_str()).map(|v| (n.clone(), v.clone())))
            .collect();
        if values.is_empty() {
            return Ok(());
        }
        self.set_secrets(app, &values).await?;
        let names: Vec<&str> = values.iter().map(|(k, _)| k.as_str()).collect();
        events.step(
            &service.name,
            format!("set {} on {app} from the environment before its first machine", names.join(", ")),
        );
        Ok(())
    }

    /// A builder: token, base URL, polling, retries, lease TTL.
    pub fn builder() -> FlyConfig {
        FlyConfig::new()
    }

    /// Configured from `FLY_API_TOKEN` and `SHIPIT_FLY_API_URL`. A missing token fails the
    /// first API call, not this.
    pub fn from_env() -> Result<Self, FlyError> {
        FlyConfig::from_env().build()
    }

    /// The API client.
    pub fn client(&self) -> &FlyClient {
        &self.client
    }

    pub(crate) fn secrets_version(&self, app: &str) -> Option<u64> {
        self.secrets_versions.lock().ok().and_then(|m| m.get(app).copied())
    }

    async fn deploy_inner(
        &self,
        job: &Job<'_>,
        req: &DeployRequest<'_>,
        point: &mut RestorePoint,
    ) -> Result<Deployed, Error> {
        let service = req.service;
        let svc = service.name.as_str();
        let app = &job.app;
        let regions = regions(req.target)?;
        batch_size(job.strategy, 1)?;
        if req.cancel.is_cancelled() {
            return Err(rollout::cancelled_error());
        }
        match self.client.get_app(app).await? {
            None => {
                if !req.create {
                    return Err(Error::new(
                        ErrorKind::NotFound,
                        format!("app {app} does not exist on Fly (and --no-create was given)"),
                    ));
                }
                let org = &req.target.app.targets.fly.org;
                req.events.step(svc, format!("creating app {app} in organisation {org}"));
                match self.client.create_app(app, org).await {
                    Ok(()) => {}
                    Err(e) if taken(&e) => {
                        return Err(Error::new(
                            ErrorKind::Conflict,
                            format!("another deploy is creating app {app} right now: nothing was changed"),
                        ));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Some(_) if !point.exists => {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!("app {app} appeared after this deploy started: another deploy is creating it"),
                ));
            }
            Some(_) => {}
        }
        if service.port.is_some() {
            // An http_service needs public addresses; the machines do not, so this never fails.
            ips::ensure_public(&self.client, app, svc, &req.events).await;
        }
        let machines = app_machines(&self.client, app).await?;
        if machines.is_empty() {
            self.first_secrets(app, service, &req.events).await?;
        }
        let failed = restore::failed_list(&machines, None);
        let meta = ReleaseMeta { id: &req.release.id, git_sha: req.release.git_sha.as_deref(), failed };
        let config = machine::machine_config(req.target, service, req.image.image(), &meta)?;
        let desired = Desired {
            config,
            exact: BTreeMap::new(),
            per_region: Some((regions, per_region(service))),
            digest: req.digest().to_string(),
            restart: req.restart,
        };
        if req.restart && !machines.is_empty() {
            req.events
                .step(svc, "--restart: every machine is updated, so it starts with the app's secrets as they are now");
        }
        let created = rollout::run(job, &desired, Some(point), &machines).await?;
        Ok(Deployed::new(svc, req.digest(), job.touched(), machines.len() + created))
    }

    async fn restore_inner(
        &self,
        job: &Job<'_>,
        req: &RestoreRequest<'_>,
        point: &RestorePoint,
    ) -> Result<Deployed, Error> {
        let svc = &req.service.name;
        let app = &job.app;
        let nothing = || Error::new(ErrorKind::NotFound, format!("{svc}: nothing to put back (no earlier release)"));
        let Some(digest) = point.digest().map(str::to_string) else { return Err(nothing()) };
        let Some(fallback) = restore::release_config(point) else { return Err(nothing()) };
        if self.client.get_app(app).await?.is_none() {
            return Err(Error::new(ErrorKind::NotFound, format!("app {app} does not exist on Fly")));
        }
        let machines = app_machines(&self.client, app).await?;
        let failed = restore::failed_list(&machines, req.reason.failed_release().map(|r| r.id.as_str()));
        let exact =
            restore::configs(point).into_iter().map(|(id, c)| (id, restore::with_failed(&c, &failed))).collect();
        let desired = Desired {
            config: restore::with_failed(&fallback, &failed),
            exact,
            per_region: None,
            digest,
            restart: false,
        };
        rollout::run(job, &desired, None, &machines).await?;
        Ok(Deployed::new(svc, desired.digest.clone(), job.touched(), machines.len()))
    }

    /// The configs of every machine's versions, newest first, then the current ones.
    async fn configs_newest_first(&self, app: &str, machines: &[Machine]) -> Result<Vec<Value>, Error> {
        let mut out: Vec<Value> = machines.iter().map(|m| m.config.clone()).collect();
        for r in join_all(machines.iter().map(|m| self.client.versions(app, &m.id))).await {
            out.extend(oldest_first(r?).into_iter().rev().map(|v| v.user_config));
        }
        Ok(out)
    }
}

#[async_trait::async_trait]
impl Platform for FlyPlatform {
    fn kind(&self) -> PlatformKind {
        PlatformKind::Fly
    }

    fn capabilities(&self) -> Capabilities {
        let mut c = Capabilities::default();
        c.strategies = vec![Strategy::Rolling, Strategy::Immediate];
        c.locks = true;
        c
    }

    fn render(&self, app: &App, env: &str) -> Result<Vec<RenderedFile>, RenderError> {
        crate::render(app, env)
    }

    fn offer_secrets(&self, values: Vec<(String, SecretString)>) {
        if let Ok(mut offered) = self.offered.lock() {
            offered.extend(values);
        }
    }

    fn required_secrets(&self, service: &Service) -> Vec<String> {
        let names: BTreeSet<String> =
            service.secret_names().chain(database_reference_names(service)).map(str::to_string).collect();
        names.into_iter().collect()
    }

    fn describe_deploy(
        &self,
        target: Target<'_>,
        service: &Service,
        image: &ImageRef,
    ) -> Result<Vec<PlannedCall>, Error> {
        let base = self.client.base_url();
        let app = app_name(target, service);
        let regions = regions(target)?;
        let meta = ReleaseMeta { id: "<release id>", git_sha: None, failed: Vec::new() };
        let config = machine::machine_config(target, service, image, &meta)?;
        let org = &target.app.targets.fly.org;
        let ttl = self.lease_ttl.as_secs().max(1);
        let per = per_region(service);
        let machine = format!("{base}/apps/{app}/machines/{{id}}");
        let mut out = vec![
            PlannedCall::new("GET", format!("{base}/apps/{app}")).note("does the app exist?"),
            PlannedCall::new("POST", format!("{base}/apps"))
                .body(json!({ "app_name": app, "org_slug": org }))
                .note("only if it does not exist; not with --no-create"),
        ];
        if service.port.is_some() {
            let ips = format!("{base}/apps/{app}/ip_assignments");
            let when = "the service has a port (an http_service), so the app needs public addresses:";
            out.push(PlannedCall::new("GET", ips.clone()).when(when).note("what it has"));
            out.push(
                PlannedCall::new("POST", ips.clone())
                    .body(json!({ "type": IpType::SharedV4.as_str() }))
                    .when(when)
                    .note("only if it has no public IPv4 (shared or dedicated)"),
            );
            out.push(
                PlannedCall::new("POST", ips)
                    .body(json!({ "type": IpType::V6.as_str() }))
                    .when(when)
                    .note("only if it has no public IPv6; a refusal is a warning naming `fly ips allocate-…`"),
            );
        }
        out.push(
            PlannedCall::new("GET", format!("{base}/apps/{app}/machines"))
                .note(format!("machines of process group \"{PROCESS_GROUP}\"")),
        );
        let lease = "for every machine, in id order, before any change (nothing is updated if one is held):";
        out.push(
            PlannedCall::new("POST", format!("{machine}/lease?ttl={ttl}"))
                .body(json!({ "ttl": ttl, "description": "shipit deploy <release id> <unique suffix>" }))
                .when(lease)
                .note("refreshed at half the ttl"),
        );
        out.push(
            PlannedCall::new("GET", format!("{base}/apps/{app}/machines"))
                .when(lease)
                .note("what runs, read again under the leases"),
        );
        let batch = "then in batches (rolling: a third at a time; immediate: all at once), for each machine whose image or settings differ:";
        out.push(
            PlannedCall::new("POST", machine.clone())
                .body(json!({ "config": config }))
                .when(batch)
                .note(format!("header {NONCE_HEADER}")),
        );
        out.push(
            PlannedCall::new("GET", format!("{machine}/wait?state=started&timeout=60"))
                .when(batch)
                .note("again until --wait-timeout"),
        );
        out.push(PlannedCall::new("GET", machine.clone()).when(batch).note(format!(
            "every {}ms until every health check passes twice in a row; an exit fails at once",
            self.poll_interval.as_millis()
        )));
        let create = format!(
            "for each region with fewer than {per} machine(s), each missing machine (named <region>-<n>), then the same wait and health checks:"
        );
        for region in &regions {
            out.push(
                PlannedCall::new("POST", format!("{base}/apps/{app}/machines"))
                    .body(json!({
                        "name": format!("{region}-1"),
                        "region": region,
                        "config": config,
                        "lease_ttl": ttl,
                    }))
                    .when(create.clone()),
            );
        }
        out.push(
            PlannedCall::new("DELETE", format!("{machine}/lease"))
                .when("finally, for each leased machine:")
                .note(format!("header {NONCE_HEADER}; also on failure and Ctrl-C")),
        );
        Ok(out)
    }

    async fn plan(
        &self,
        target: Target<'_>,
        service: &Service,
        image: Option<&ImageRef>,
    ) -> Result<ServicePlan, Error> {
        let app = app_name(target, service);
        let regions = regions(target)?;
        let want = per_region(service);
        let image_for_config = image.cloned().unwrap_or_else(|| service.image.clone());
        let meta = ReleaseMeta { id: "", git_sha: None, failed: Vec::new() };
        let desired = machine::machine_config(target, service, &image_for_config, &meta)?;
        let mut desired_fields = machine::fields(&desired);
        if image.is_none() {
            desired_fields.remove("image");
        }

        if self.client.get_app(&app).await?.is_none() {
            let mut changes = vec![FieldChange::new("app", None, Some(app.clone()))];
            if let Some(img) = desired_fields.get("image") {
                changes.push(FieldChange::new("image", None, Some(img.clone())));
            }
            for r in &regions {
                changes.push(FieldChange::new(format!("machines.{r}"), None, Some(want.to_string())));
            }
            return Ok(ServicePlan::new(&service.name, app, true, changes));
        }

        let machines = app_machines(&self.client, &app).await?;
        let mut live: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for m in &machines {
            let mut f = machine::fields(&m.config);
            if image.is_none() {
                f.remove("image");
            }
            for (field, l, _) in machine::diff(&desired_fields, &f) {
                // Never show a live env value the manifest does not declare as plain.
                let shown = match (&l, field.strip_prefix("env.")) {
                    (Some(_), Some(_)) if !desired_fields.contains_key(&field) => "(set)".to_string(),
                    (Some(v), _) => v.clone(),
                    (None, _) => "(none)".to_string(),
                };
                live.entry(field).or_default().insert(shown);
            }
        }
        let mut changes: Vec<FieldChange> = live
            .into_iter()
            .map(|(field, values)| {
                let desired = desired_fields.get(&field).cloned();
                FieldChange::new(field, Some(values.into_iter().collect::<Vec<_>>().join(" | ")), desired)
            })
            .collect();
        for r in &regions {
            let have = machines.iter().filter(|m| &m.region == r).count();
            if have < want {
                changes.push(FieldChange::new(format!("machines.{r}"), Some(have.to_string()), Some(want.to_string())));
            }
        }
        Ok(ServicePlan::new(&service.name, app, false, changes))
    }

    async fn restore_point(&self, target: Target<'_>, service: &Service) -> Result<RestorePoint, Error> {
        let app = app_name(target, service);
        if self.client.get_app(&app).await?.is_none() {
            return Ok(RestorePoint::missing(&service.name));
        }
        let machines = app_machines(&self.client, &app).await?;
        Ok(restore::point_of(service, &machines))
    }

    async fn release_point(
        &self,
        target: Target<'_>,
        service: &Service,
        release: &Release,
    ) -> Result<RestorePoint, Error> {
        let app = app_name(target, service);
        let Some(digest) = release.digest.as_deref() else {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("release {} has no recorded image digest", release.id),
            ));
        };
        if self.client.get_app(&app).await?.is_none() {
            return Err(Error::new(ErrorKind::NotFound, format!("app {app} does not exist on Fly")));
        }
        let machines = app_machines(&self.client, &app).await?;
        let configs = self.configs_newest_first(&app, &machines).await?;
        // The release's own config (image and settings as they were), newest copy first.
        let found = configs.into_iter().find(|c| {
            digest_of_config(c).as_deref() == Some(digest)
                && history::release_id_of(c).is_some_and(|id| release.id.starts_with(&id))
        });
        let config = match found {
            Some(c) => c,
            None => {
                // Out of Fly's version history: the digest with today's settings.
                let meta = ReleaseMeta { id: &release.id, git_sha: release.git_sha.as_deref(), failed: Vec::new() };
                machine::machine_config(target, service, &service.image.with_digest(digest), &meta)?
            }
        };
        Ok(restore::point_for_config(service, release, &config))
    }

    async fn deploy(&self, req: &DeployRequest<'_>, point: &mut RestorePoint) -> Result<Deployed, DeployFailure> {
        let job = Job::deploy(self, req);
        self.deploy_inner(&job, req, point).await.map_err(|e| failure(&job, e))
    }

    async fn restore(&self, req: &RestoreRequest<'_>, point: &RestorePoint) -> Result<Deployed, DeployFailure> {
        let job = Job::restore(self, req);
        self.restore_inner(&job, req, point).await.map_err(|e| failure(&job, e))
    }

    async fn mark_failed(
        &self,
        target: Target<'_>,
        service: &Service,
        release: &ReleaseInfo,
        _why: &str,
    ) -> Result<(), Error> {
        let app = app_name(target, service);
        if self.client.get_app(&app).await?.is_none() {
            return Ok(());
        }
        let machines = app_machines(&self.client, &app).await?;
        let failed = restore::failed_list(&machines, Some(&release.id)).join(",");
        let running: Vec<&Machine> =
            machines.iter().filter(|m| m.metadata(META_RELEASE) == Some(release.id.as_str())).collect();
        for r in join_all(running.iter().map(|m| self.client.set_metadata(&app, &m.id, META_FAILED, &failed))).await {
            r?;
        }
        Ok(())
    }

    async fn status(&self, target: Target<'_>, service: &Service) -> Result<ServiceStatus, Error> {
        let app = app_name(target, service);
        if self.client.get_app(&app).await?.is_none() {
            return Ok(ServiceStatus::missing(&service.name, app));
        }
        let machines = app_machines(&self.client, &app).await?;
        let mut st = ServiceStatus::missing(&service.name, app);
        st.exists = true;
        st.digest = common(machines.iter().map(|m| digest_of_config(&m.config)));
        st.release = common(machines.iter().map(|m| m.metadata(META_RELEASE).map(str::to_string)));
        st.git_sha = common(machines.iter().map(|m| m.metadata(machine::META_GIT_SHA).map(str::to_string)));
        st.image = common(machines.iter().map(|m| image_of(&m.config).map(str::to_string)));
        // A service with a port is an http_service: Fly serves it at the app's fly.dev name.
        if service.port.is_some() {
            st.url = Some(format!("https://{}.fly.dev", st.platform_name));
        }
        st.instances = machines
            .iter()
            .map(|m| {
                let healthy = m.state == "started" && crate::gate::checks_pass(m, machine::check_count(&m.config));
                Instance::new(
                    &m.id,
                    Some(m.region.clone()),
                    instance_state(&m.state),
                    digest_of_config(&m.config),
                    healthy,
                )
            })
            .collect();
        Ok(st)
    }

    async fn releases(&self, target: Target<'_>, service: &Service) -> Result<Vec<Release>, Error> {
        let app = app_name(target, service);
        if self.client.get_app(&app).await?.is_none() {
            return Ok(Vec::new());
        }
        let machines = app_machines(&self.client, &app).await?;
        let mut versions = Vec::new();
        for r in join_all(machines.iter().map(|m| self.client.versions(&app, &m.id))).await {
            versions.push(oldest_first(r?));
        }
        let histories: Vec<History<'_>> = machines
            .iter()
            .zip(&versions)
            .map(|(m, vs)| {
                let mut h: History<'_> = vs.iter().map(|v| (&v.user_config, history::ulid_time(&v.version))).collect();
                // The current config, unless the newest version is it.
                let newest_is_current = h.last().is_some_and(|(c, _)| {
                    history::release_id_of(c) == history::release_id_of(&m.config)
                        && image_of(c) == image_of(&m.config)
                        && machine::failed_ids(c) == machine::failed_ids(&m.config)
                });
                if !newest_is_current {
                    h.push((&m.config, None));
                }
                h
            })
            .collect();
        Ok(history::releases(&service.name, &histories))
    }

    async fn sync_secrets(
        &self,
        target: Target<'_>,
        service: &Service,
        values: &[(String, SecretString)],
    ) -> Result<SecretsSynced, Error> {
        let app = app_name(target, service);
        if self.client.get_app(&app).await?.is_none() {
            // Secrets must be in place before the first machine starts.
            match self.client.create_app(&app, &target.app.targets.fly.org).await {
                // Made meanwhile (by a deploy): set the secrets on it all the same.
                Err(e) if taken(&e) => {}
                r => r?,
            }
        }
        let version = self.set_secrets(&app, values).await?;
        let mut names: Vec<String> = values.iter().map(|(k, _)| k.clone()).collect();
        names.sort();
        names.dedup();
        Ok(SecretsSynced::new(&service.name, names, version))
    }

    async fn secret_names(&self, target: Target<'_>, service: &Service) -> Result<Vec<String>, Error> {
        let app = app_name(target, service);
        match self.client.list_secrets(&app).await {
            Ok(names) => Ok(names),
            Err(FlyError::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }
}
