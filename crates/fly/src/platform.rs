//! [`FlyPlatform`]: shipit's [`Platform`] on the Fly Machines API.
//!
//! One service is one Fly app; its machines of process group `app` run the service. A deploy
//! takes a lease on every machine it will change (so two deploys never interleave), updates them
//! in batches, and gates each machine on `wait?state=started` and then on every health check
//! passing. A crash fails the gate at once; checks that never pass fail it at the wait timeout.
//! Leases are released on every path. What runs is recorded in the machines' metadata
//! (`shipit_release`, `shipit_digest`, `shipit_failed`…), which `releases` reads back from the
//! machines' config versions: Fly has no release history of its own.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use futures::future::join_all;
use secrecy::SecretString;
use serde_json::Value;
use shipit_core::{
    App, Capabilities, DeployRequest, Deployed, Error, ErrorKind, Event, Events, FieldChange, ImageRef, Instance,
    Platform, PlatformKind, Release, RenderError, RenderedFile, SecretsSynced, Service, ServicePlan, ServiceStatus,
    Strategy, Target, database_reference_names,
};
use tokio::time::Instant;

use crate::client::{CreateMachine, FlyClient, Machine, MachineVersion, NONCE_HEADER, UpdateMachine};
use crate::config::FlyConfig;
use crate::error::FlyError;
use crate::history::{self, History};
use crate::machine::{self, META_GROUP, META_RELEASE, PROCESS_GROUP, ReleaseMeta};

/// Fly.io through the Machines API.
pub struct FlyPlatform {
    client: FlyClient,
    poll_interval: Duration,
    lease_ttl: Duration,
    /// Secrets version per app after `sync_secrets`, sent as `min_secrets_version`.
    secrets_versions: Mutex<HashMap<String, u64>>,
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

/// Consecutive healthy observations that pass the gate.
const HEALTHY_POLLS: u32 = 2;

/// A machine whose new config was sent and that now has to pass its gate.
struct Pending {
    id: String,
    region: String,
    instance_id: Option<String>,
    /// Exit events up to this time (unix ms) happened before the change.
    baseline: i64,
}

fn cancelled_error() -> Error {
    Error::new(ErrorKind::Cancelled, "stopped by a signal: leases released, machines left on a known image")
}

fn check_cancel(req: &DeployRequest<'_>) -> Result<(), Error> {
    if req.cancel.is_cancelled() { Err(cancelled_error()) } else { Ok(()) }
}

/// All results, or the most telling error (a cancellation first).
fn all_ok<T>(results: Vec<Result<T, Error>>) -> Result<Vec<T>, Error> {
    let mut oks = Vec::new();
    let mut first: Option<Error> = None;
    for r in results {
        match r {
            Ok(v) => oks.push(v),
            Err(e) => {
                if first.as_ref().is_none_or(|f| e.kind == ErrorKind::Cancelled && f.kind != ErrorKind::Cancelled) {
                    first = Some(e);
                }
            }
        }
    }
    first.map_or(Ok(oks), Err)
}

fn app_name(target: Target<'_>, service: &Service) -> String {
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

/// flyctl's rolling batch: a third of the machines (at least one) at a time.
fn batch_size(strategy: Strategy, n: usize) -> Result<usize, Error> {
    match strategy {
        Strategy::Rolling => Ok((n * 33).div_ceil(100).max(1)),
        Strategy::Immediate => Ok(n.max(1)),
        other => Err(Error::unsupported("fly", format!("the {} strategy", other.as_str()))),
    }
}

/// A machine name unique to this create: region, ordinal and release.
fn machine_name(region: &str, n: usize, release: &str) -> String {
    let raw = format!("{region}-{n}-{release}").to_ascii_lowercase();
    let name: String =
        raw.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }).take(63).collect();
    name.trim_end_matches('-').to_string()
}

/// Machines of the service: process group `app` (or none), not destroyed.
fn is_app_machine(m: &Machine) -> bool {
    !matches!(m.state.as_str(), "destroyed" | "destroying") && m.metadata(META_GROUP).is_none_or(|g| g == PROCESS_GROUP)
}

fn image_of(config: &Value) -> Option<&str> {
    config.get("image").and_then(Value::as_str)
}

fn digest_of_config(config: &Value) -> Option<String> {
    image_of(config).and_then(machine::digest_of).map(str::to_string)
}

/// Whether every configured check reports and passes.
fn checks_pass(m: &Machine, expected: usize) -> bool {
    m.checks.len() >= expected && m.checks.iter().all(|c| c.status == "passing")
}

/// Why a machine counts as crashed since the change, if it does: an exit that nobody asked for,
/// or the new instance stopped/failed/destroyed.
fn crash_reason(m: &Machine, p: &Pending) -> Option<String> {
    let exit = m
        .events
        .iter()
        .filter(|e| e.kind == "exit" && e.timestamp.unwrap_or(0) > p.baseline && !e.requested_stop())
        .max_by_key(|e| e.timestamp);
    if let Some(e) = exit {
        let code = e.exit_code().map_or_else(|| "unknown".to_string(), |c| c.to_string());
        return Some(format!("machine {} exited with code {code}", m.id));
    }
    let new_instance = match (&p.instance_id, &m.instance_id) {
        (Some(want), Some(have)) => want == have,
        _ => true,
    };
    (new_instance && matches!(m.state.as_str(), "stopped" | "failed" | "destroyed" | "destroying" | "suspended"))
        .then(|| format!("machine {} is {} after the update", m.id, m.state))
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max { s.to_string() } else { format!("{}…", s.chars().take(max).collect::<String>()) }
}

/// Why a machine is not healthy yet: its state, or each failing check with its output.
fn not_healthy(m: &Machine, expected: usize) -> String {
    if m.state != "started" {
        return format!("machine {} is {}", m.id, if m.state.is_empty() { "in an unknown state" } else { &m.state });
    }
    let failing: Vec<String> = m
        .checks
        .iter()
        .filter(|c| c.status != "passing")
        .map(|c| {
            let output =
                c.output.as_deref().map(str::trim).filter(|o| !o.is_empty()).map(|o| format!(": {}", shorten(o, 200)));
            format!("check {:?} is {}{}", c.name, c.status, output.unwrap_or_default())
        })
        .collect();
    if !failing.is_empty() {
        return format!("machine {}: {}", m.id, failing.join("; "));
    }
    format!("machine {}: {} of {expected} health checks reported", m.id, m.checks.len())
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

/// Holds the leases of one rollout; releases them when asked, or in the background if dropped.
struct LeaseGuard {
    client: FlyClient,
    app: String,
    service: String,
    events: Events,
    held: Vec<(String, String)>,
}

impl LeaseGuard {
    fn nonce(&self, id: &str) -> Option<&str> {
        self.held.iter().find(|(m, _)| m == id).map(|(_, n)| n.as_str())
    }

    async fn release(mut self) {
        let held = std::mem::take(&mut self.held);
        let results = join_all(held.iter().map(|(id, nonce)| self.client.release_lease(&self.app, id, nonce))).await;
        for ((id, _), r) in held.iter().zip(results) {
            if let Err(e) = r {
                self.events.warn(
                    Some(&self.service),
                    format!("could not release the lease on machine {id}: {e} (it expires by itself)"),
                );
            }
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if self.held.is_empty() {
            return;
        }
        // Dropped mid-rollout (the deploy future was abandoned): release in the background.
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        let (client, app, held) = (self.client.clone(), self.app.clone(), std::mem::take(&mut self.held));
        rt.spawn(async move {
            for (id, nonce) in held {
                let _ = client.release_lease(&app, &id, &nonce).await;
            }
        });
    }
}

impl FlyPlatform {
    pub(crate) fn new(client: FlyClient, config: FlyConfig) -> Self {
        Self {
            client,
            poll_interval: config.poll_interval,
            lease_ttl: config.lease_ttl,
            secrets_versions: Mutex::new(HashMap::new()),
        }
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

    fn secrets_version(&self, app: &str) -> Option<u64> {
        self.secrets_versions.lock().ok().and_then(|m| m.get(app).copied())
    }

    async fn app_machines(&self, app: &str) -> Result<Vec<Machine>, Error> {
        let mut machines: Vec<Machine> =
            self.client.list_machines(app).await?.into_iter().filter(is_app_machine).collect();
        machines.sort_by(|a, b| (&a.region, &a.created_at, &a.id).cmp(&(&b.region, &b.created_at, &b.id)));
        Ok(machines)
    }

    /// Sleeps, unless cancelled first (then false).
    async fn pause(&self, req: &DeployRequest<'_>, d: Duration) -> bool {
        tokio::select! {
            () = req.cancel.cancelled() => false,
            () = tokio::time::sleep(d) => true,
        }
    }

    /// The health-gated rollout shared by deploy and rollback.
    async fn rollout(
        &self,
        req: &DeployRequest<'_>,
        release_id: &str,
        git_sha: Option<&str>,
    ) -> Result<Deployed, Error> {
        let service = req.service;
        let svc = service.name.as_str();
        let Some(digest) = req.image.digest.clone() else {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                format!("{svc}: deploys are by digest, and {} has none", req.image),
            ));
        };
        let app = app_name(req.target, service);
        let regions = regions(req.target)?;
        batch_size(req.strategy, 1)?;
        check_cancel(req)?;

        if self.client.get_app(&app).await?.is_none() {
            if !req.create {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!("app {app} does not exist on Fly (and --no-create was given)"),
                ));
            }
            let org = &req.target.app.targets.fly.org;
            req.events.step(svc, format!("creating app {app} in organisation {org}"));
            self.client.create_app(&app, org).await?;
        }
        check_cancel(req)?;

        let machines = self.app_machines(&app).await?;
        let mut failed = Vec::new();
        for m in &machines {
            for id in machine::failed_ids(&m.config) {
                machine::push_failed(&mut failed, &id);
            }
        }
        if let Some(f) = &req.failed_release {
            machine::push_failed(&mut failed, f);
        }
        let meta = ReleaseMeta { id: release_id, git_sha, failed };
        let desired = machine::machine_config(req.target, service, &req.image, &meta)?;

        let stale: Vec<&Machine> = machines.iter().filter(|m| !machine::same_settings(&desired, &m.config)).collect();
        let want = per_region(service);
        let missing: Vec<(String, usize)> = regions
            .iter()
            .filter_map(|r| {
                let have = machines.iter().filter(|m| &m.region == r).count();
                (have < want).then(|| (r.clone(), want - have))
            })
            .collect();
        if stale.is_empty() && missing.is_empty() {
            return Ok(Deployed::new(svc, digest, false, machines.len()));
        }

        if !stale.is_empty() {
            let leases = self.acquire_leases(req, &app, &stale).await?;
            let result = tokio::select! {
                r = self.update_all(req, &app, &desired, &stale, &leases, release_id) => r,
                () = self.keep_leases(&leases) => Err(Error::new(ErrorKind::Other, "lease refresher stopped")),
            };
            leases.release().await;
            result?;
        }
        let created = if missing.is_empty() {
            0
        } else {
            self.create_missing(req, &app, &desired, &machines, &missing, release_id).await?
        };
        Ok(Deployed::new(svc, digest, true, machines.len() + created))
    }

    /// Takes a lease on each machine, waiting up to `lock_wait` for leases others hold.
    async fn acquire_leases(
        &self,
        req: &DeployRequest<'_>,
        app: &str,
        machines: &[&Machine],
    ) -> Result<LeaseGuard, Error> {
        let svc = &req.service.name;
        let mut guard = LeaseGuard {
            client: self.client.clone(),
            app: app.to_string(),
            service: svc.clone(),
            events: req.events.clone(),
            held: Vec::new(),
        };
        let deadline = Instant::now() + req.lock_wait;
        let stamp = jiff::Timestamp::now();
        let description =
            format!("shipit deploy {} ({:x}{:x})", req.release.id, stamp.as_second(), stamp.subsec_nanosecond());
        for m in machines {
            req.events.step(svc, format!("acquiring lease on machine {}", m.id));
            loop {
                if req.cancel.is_cancelled() {
                    guard.release().await;
                    return Err(cancelled_error());
                }
                match self.client.acquire_lease(app, &m.id, self.lease_ttl, &description).await {
                    Ok(lease) => {
                        guard.held.push((m.id.clone(), lease.nonce));
                        break;
                    }
                    Err(FlyError::Conflict { owner, .. }) => {
                        let now = Instant::now();
                        if now >= deadline {
                            guard.release().await;
                            let who = owner.unwrap_or_else(|| "another client".to_string());
                            let hint = if req.lock_wait.is_zero() {
                                " (pass --lock-wait to wait for it)".to_string()
                            } else {
                                format!(" (waited {}s)", req.lock_wait.as_secs())
                            };
                            return Err(Error::new(
                                ErrorKind::Conflict,
                                format!("deploy in progress by {who}: machine {} of {app} is leased{hint}", m.id),
                            ));
                        }
                        if !self.pause(req, self.poll_interval.min(deadline - now)).await {
                            guard.release().await;
                            return Err(cancelled_error());
                        }
                    }
                    Err(e) => {
                        guard.release().await;
                        return Err(Error::from(e).context(format!("lease on machine {}", m.id)));
                    }
                }
            }
        }
        Ok(guard)
    }

    /// Refreshes every held lease at half its TTL, for as long as the rollout runs.
    async fn keep_leases(&self, leases: &LeaseGuard) {
        let every = (self.lease_ttl / 2).max(Duration::from_millis(100));
        loop {
            tokio::time::sleep(every).await;
            for (id, nonce) in &leases.held {
                if let Err(e) = self.client.refresh_lease(&leases.app, id, nonce, self.lease_ttl).await {
                    leases
                        .events
                        .warn(Some(&leases.service), format!("could not refresh the lease on machine {id}: {e}"));
                }
            }
        }
    }

    /// Updates `stale` in batches; each batch is updated, then gated, before the next.
    async fn update_all(
        &self,
        req: &DeployRequest<'_>,
        app: &str,
        desired: &Value,
        stale: &[&Machine],
        leases: &LeaseGuard,
        release_id: &str,
    ) -> Result<(), Error> {
        let size = batch_size(req.strategy, stale.len())?;
        let expected = machine::check_count(desired);
        for batch in stale.chunks(size) {
            check_cancel(req)?;
            let updated =
                join_all(batch.iter().map(|m| self.update_one(req, app, desired, m, leases.nonce(&m.id), release_id)))
                    .await;
            let pending = all_ok(updated)?;
            all_ok(join_all(pending.iter().map(|p| self.gate(req, app, p, expected))).await)?;
        }
        Ok(())
    }

    async fn update_one(
        &self,
        req: &DeployRequest<'_>,
        app: &str,
        desired: &Value,
        m: &Machine,
        nonce: Option<&str>,
        release_id: &str,
    ) -> Result<Pending, Error> {
        check_cancel(req)?;
        let svc = &req.service.name;
        req.events.step(svc, format!("updating machine {} ({})", m.id, m.region));
        let body = UpdateMachine::new(machine::merge(&m.config, desired), self.secrets_version(app));
        let applied = |live: &Machine| {
            machine::same_settings(desired, &live.config) && live.metadata(META_RELEASE) == Some(release_id)
        };
        let updated = self
            .client
            .update_machine(app, &m.id, nonce, &body, applied)
            .await
            .map_err(|e| Error::from(e).context(format!("updating machine {}", m.id)))?;
        req.events.emit(Event::InstanceUpdated {
            service: svc.clone(),
            instance: m.id.clone(),
            region: Some(m.region.clone()),
            digest: req.digest().to_string(),
        });
        Ok(Pending {
            id: m.id.clone(),
            region: m.region.clone(),
            instance_id: updated.instance_id.clone(),
            baseline: m.last_event_at().max(updated.last_event_at()),
        })
    }

    /// Creates the machines regions lack, then gates them.
    async fn create_missing(
        &self,
        req: &DeployRequest<'_>,
        app: &str,
        desired: &Value,
        existing: &[Machine],
        missing: &[(String, usize)],
        release_id: &str,
    ) -> Result<usize, Error> {
        let svc = &req.service.name;
        let mut pending = Vec::new();
        for (region, count) in missing {
            let have = existing.iter().filter(|m| &m.region == region).count();
            for i in 0..*count {
                check_cancel(req)?;
                let name = machine_name(region, have + i + 1, release_id);
                req.events.step(svc, format!("creating machine {name} in {region}"));
                let create =
                    CreateMachine::new(name.clone(), region.clone(), desired.clone(), self.secrets_version(app));
                let m = self
                    .client
                    .create_machine(app, &create)
                    .await
                    .map_err(|e| Error::from(e).context(format!("creating machine {name}")))?;
                req.events.emit(Event::InstanceUpdated {
                    service: svc.clone(),
                    instance: m.id.clone(),
                    region: Some(region.clone()),
                    digest: req.digest().to_string(),
                });
                pending.push(Pending {
                    id: m.id.clone(),
                    region: region.clone(),
                    instance_id: m.instance_id.clone(),
                    baseline: m.last_event_at(),
                });
            }
        }
        let expected = machine::check_count(desired);
        all_ok(join_all(pending.iter().map(|p| self.gate(req, app, p, expected))).await)?;
        Ok(pending.len())
    }

    /// The health gate of one machine: started, then every check passing, before
    /// `req.wait_timeout`; a crash fails it at once.
    async fn gate(&self, req: &DeployRequest<'_>, app: &str, p: &Pending, expected: usize) -> Result<(), Error> {
        let deadline = Instant::now() + req.wait_timeout;
        let limit = req.wait_timeout;
        tokio::select! {
            () = req.cancel.cancelled() => return Err(cancelled_error()),
            () = tokio::time::sleep_until(deadline) => {
                return Err(Error::new(ErrorKind::Timeout, format!("machine {} ({}) did not start within {}s", p.id, p.region, limit.as_secs_f32())));
            }
            r = self.wait_started(app, p, deadline) => r?,
            e = self.watch_for_crash(app, p) => return Err(e),
        }
        // Healthy twice in a row: a flapping check does not pass the gate.
        let mut passed = 0;
        loop {
            let m = tokio::select! {
                () = req.cancel.cancelled() => return Err(cancelled_error()),
                m = self.client.get_machine(app, &p.id) => m.map_err(|e| Error::from(e).context(format!("machine {}", p.id)))?,
            };
            if let Some(why) = crash_reason(&m, p) {
                return Err(Error::new(ErrorKind::Unhealthy, why));
            }
            if m.state == "started" && checks_pass(&m, expected) {
                passed += 1;
                if passed >= HEALTHY_POLLS {
                    req.events
                        .emit(Event::InstanceHealthy { service: req.service.name.clone(), instance: p.id.clone() });
                    return Ok(());
                }
            } else {
                passed = 0;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!("not healthy after {}s: {}", limit.as_secs_f32(), not_healthy(&m, expected)),
                ));
            }
            if !self.pause(req, self.poll_interval.min(deadline - now)).await {
                return Err(cancelled_error());
            }
        }
    }

    /// `wait?state=started`, again after each 408, until the deadline.
    async fn wait_started(&self, app: &str, p: &Pending, deadline: Instant) -> Result<(), Error> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self
                .client
                .wait(app, &p.id, "started", left.min(Duration::from_secs(60)), p.instance_id.as_deref())
                .await
            {
                Ok(()) => return Ok(()),
                Err(FlyError::WaitTimeout { .. }) => {
                    // Not started yet: crashed, or still starting?
                    if let Ok(m) = self.client.get_machine(app, &p.id).await
                        && let Some(why) = crash_reason(&m, p)
                    {
                        return Err(Error::new(ErrorKind::Unhealthy, why));
                    }
                }
                Err(e) if e.kind().is_temporary() => tokio::time::sleep(self.poll_interval).await,
                Err(e) => {
                    // Fly refuses to wait on a machine that failed: say why.
                    if let Ok(m) = self.client.get_machine(app, &p.id).await
                        && let Some(why) = crash_reason(&m, p)
                    {
                        return Err(Error::new(ErrorKind::Unhealthy, why));
                    }
                    return Err(Error::from(e).context(format!("waiting for machine {} to start", p.id)));
                }
            }
        }
    }

    /// Polls the machine while `wait` blocks, so that a crash is seen at once.
    async fn watch_for_crash(&self, app: &str, p: &Pending) -> Error {
        loop {
            tokio::time::sleep(self.poll_interval).await;
            if let Ok(m) = self.client.get_machine(app, &p.id).await
                && let Some(why) = crash_reason(&m, p)
            {
                return Error::new(ErrorKind::Unhealthy, why);
            }
        }
    }
}

#[async_trait::async_trait]
impl Platform for FlyPlatform {
    fn kind(&self) -> PlatformKind {
        PlatformKind::Fly
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new(vec![Strategy::Rolling, Strategy::Immediate], false, false, false, true)
    }

    fn render(&self, app: &App, env: &str) -> Result<Vec<RenderedFile>, RenderError> {
        crate::render(app, env)
    }

    fn required_secrets(&self, service: &Service) -> Vec<String> {
        let names: BTreeSet<String> =
            service.secret_names().chain(database_reference_names(service)).map(str::to_string).collect();
        names.into_iter().collect()
    }

    fn describe_deploy(&self, target: Target<'_>, service: &Service, image: &ImageRef) -> Vec<String> {
        let base = self.client.base_url();
        let app = app_name(target, service);
        let regions = match regions(target) {
            Ok(r) => r,
            Err(e) => return vec![format!("error: {e}")],
        };
        let meta = ReleaseMeta { id: "<release id>", git_sha: None, failed: Vec::new() };
        let config = match machine::machine_config(target, service, image, &meta) {
            Ok(c) => c,
            Err(e) => return vec![format!("error: {e}")],
        };
        let org = &target.app.targets.fly.org;
        let ttl = self.lease_ttl.as_secs().max(1);
        let per = per_region(service);
        let create_body = |region: &str, n: usize| {
            serde_json::json!({ "name": format!("{region}-{n}-<release id>"), "region": region, "config": config })
                .to_string()
        };
        let mut out = vec![
            format!("GET {base}/apps/{app}    (does the app exist?)"),
            format!(
                "POST {base}/apps {}    (only if it does not exist; not with --no-create)",
                serde_json::json!({ "app_name": app, "org_slug": org })
            ),
            format!("GET {base}/apps/{app}/machines    (machines of process group \"{PROCESS_GROUP}\")"),
        ];
        out.push(
            "for each machine whose image or settings differ, first (nothing is updated if one is held):".to_string(),
        );
        out.push(format!(
            "  POST {base}/apps/{app}/machines/{{id}}/lease?ttl={ttl} {}    (refreshed at half the ttl)",
            serde_json::json!({ "ttl": ttl, "description": "shipit deploy <release id> <unique suffix>" })
        ));
        out.push("then in batches (rolling: a third at a time; immediate: all at once), for each machine:".to_string());
        out.push(format!(
            "  POST {base}/apps/{app}/machines/{{id}} {}    (header {NONCE_HEADER})",
            serde_json::json!({ "config": config })
        ));
        out.push(format!(
            "  GET {base}/apps/{app}/machines/{{id}}/wait?state=started&timeout=60    (again until --wait-timeout)"
        ));
        out.push(format!(
            "  GET {base}/apps/{app}/machines/{{id}}    (every {}ms until every health check passes twice in a row; an exit fails at once)",
            self.poll_interval.as_millis()
        ));
        out.push(format!(
            "finally, for each leased machine: DELETE {base}/apps/{app}/machines/{{id}}/lease    (header {NONCE_HEADER}; also on failure and Ctrl-C)"
        ));
        out.push(format!("for each region with fewer than {per} machine(s), each missing machine, then the same wait and health checks:"));
        for region in &regions {
            out.push(format!("  POST {base}/apps/{app}/machines {}", create_body(region, 1)));
        }
        out
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

        let machines = self.app_machines(&app).await?;
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

    async fn deploy(&self, req: &DeployRequest<'_>) -> Result<Deployed, Error> {
        self.rollout(req, &req.release.id, req.release.git_sha.as_deref()).await
    }

    async fn status(&self, target: Target<'_>, service: &Service) -> Result<ServiceStatus, Error> {
        let app = app_name(target, service);
        if self.client.get_app(&app).await?.is_none() {
            return Ok(ServiceStatus::missing(&service.name, app));
        }
        let machines = self.app_machines(&app).await?;
        let mut st = ServiceStatus::missing(&service.name, app);
        st.exists = true;
        st.digest = common(machines.iter().map(|m| digest_of_config(&m.config)));
        st.release = common(machines.iter().map(|m| m.metadata(META_RELEASE).map(str::to_string)));
        st.git_sha = common(machines.iter().map(|m| m.metadata(machine::META_GIT_SHA).map(str::to_string)));
        st.image = common(machines.iter().map(|m| image_of(&m.config).map(str::to_string)));
        st.instances = machines
            .iter()
            .map(|m| {
                let healthy = m.state == "started" && checks_pass(m, machine::check_count(&m.config));
                Instance::new(&m.id, Some(m.region.clone()), &m.state, digest_of_config(&m.config), healthy)
            })
            .collect();
        Ok(st)
    }

    async fn releases(&self, target: Target<'_>, service: &Service) -> Result<Vec<Release>, Error> {
        let app = app_name(target, service);
        if self.client.get_app(&app).await?.is_none() {
            return Ok(Vec::new());
        }
        let machines = self.app_machines(&app).await?;
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
                    history::release_id_of(c) == history::release_id_of(&m.config) && image_of(c) == image_of(&m.config)
                });
                if !newest_is_current {
                    h.push((&m.config, None));
                }
                h
            })
            .collect();
        Ok(history::releases(&service.name, &histories))
    }

    async fn rollback(&self, req: &DeployRequest<'_>, to: &Release) -> Result<Deployed, Error> {
        let mut req = req.clone();
        req.create = false;
        if let Some(d) = &to.digest {
            req.image = req.image.with_digest(d);
        }
        let git_sha = to.git_sha.clone().or_else(|| req.release.git_sha.clone());
        self.rollout(&req, &to.id, git_sha.as_deref()).await
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
            self.client.create_app(&app, &target.app.targets.fly.org).await?;
        }
        let set = self
            .client
            .set_secrets(&app, values)
            .await
            .map_err(|e| Error::from(e).context(format!("setting secrets on {app}")))?;
        if let (Some(v), Ok(mut map)) = (set.version, self.secrets_versions.lock()) {
            map.insert(app, v);
        }
        let mut names: Vec<String> = values.iter().map(|(k, _)| k.clone()).collect();
        names.sort();
        names.dedup();
        Ok(SecretsSynced::new(&service.name, names, set.version))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolling_batches_are_a_third() {
        let sizes: Vec<usize> =
            [1, 2, 3, 4, 6, 10].iter().map(|n| batch_size(Strategy::Rolling, *n).unwrap_or(0)).collect();
        assert_eq!(sizes, [1, 1, 1, 2, 2, 4]);
        assert_eq!(batch_size(Strategy::Immediate, 5).ok(), Some(5));
        assert!(batch_size(Strategy::Canary, 5).is_err());
    }

    #[test]
    fn machine_names_are_valid() {
        assert_eq!(machine_name("iad", 2, "20261122T031500Z-3f2c1ab"), "iad-2-20261122t031500z-3f2c1ab");
        assert!(machine_name("fra", 1, &"x".repeat(100)).len() <= 63);
    }
}
