//! The health-gated rollout shared by deploy and restore.
//!
//! A rollout is told what each machine should run ([`Desired`]): a deploy gives one config
//! built from the manifest (merged over each machine's live config, so keys shipit does not
//! manage survive); a restore gives each machine the exact config it had at the restore point.
//! It then leases every machine of the app (see [`crate::leases`]), re-reads what runs under
//! the leases (another deploy may have finished while we waited), updates the machines that
//! differ in batches (rolling: a third at a time, immediate: all), gates each batch on health,
//! and creates the machines regions lack. It records whether it touched anything: an update or
//! create that Fly accepted, or whose answer was lost.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::join_all;
use serde_json::Value;
use shipit_core::{
    DeployRequest, Error, ErrorKind, Event, Events, RestorePoint, RestoreRequest, Service, Strategy, Target,
};
use tokio_util::sync::CancellationToken;

use crate::client::{CreateMachine, FlyClient, Machine, UpdateMachine};
use crate::error::FlyError;
use crate::gate::{Pending, gate};
use crate::leases::LeaseGuard;
use crate::machine::{self, META_RELEASE};
use crate::restore;

pub(crate) fn cancelled_error() -> Error {
    Error::new(ErrorKind::Cancelled, "stopped by a signal: leases released, machines left on a known image")
}

/// One rollout of one service: where, how, and whether it has touched anything yet.
pub(crate) struct Job<'a> {
    pub client: FlyClient,
    pub service: &'a Service,
    pub app: String,
    pub strategy: Strategy,
    pub wait_timeout: Duration,
    pub lock_wait: Duration,
    pub poll_interval: Duration,
    pub lease_ttl: Duration,
    pub lease_label: String,
    pub secrets_version: Option<u64>,
    pub cancel: CancellationToken,
    pub events: Events,
    touched: AtomicBool,
}

impl<'a> Job<'a> {
    fn new(platform: &crate::FlyPlatform, target: Target<'a>, service: &'a Service, label: &str) -> Self {
        let app = crate::platform::app_name(target, service);
        let stamp = jiff::Timestamp::now();
        Self {
            client: platform.client().clone(),
            service,
            secrets_version: platform.secrets_version(&app),
            app,
            strategy: Strategy::Rolling,
            wait_timeout: Duration::from_secs(300),
            lock_wait: Duration::ZERO,
            poll_interval: platform.poll_interval,
            lease_ttl: platform.lease_ttl,
            lease_label: format!("shipit {label} ({:x}{:x})", stamp.as_second(), stamp.subsec_nanosecond()),
            cancel: CancellationToken::new(),
            events: Events::none(),
            touched: AtomicBool::new(false),
        }
    }

    /// The rollout of a deploy; no strategy is Fly's rolling.
    pub(crate) fn deploy(platform: &crate::FlyPlatform, req: &DeployRequest<'a>) -> Self {
        let mut job = Self::new(platform, req.target, req.service, &format!("deploy {}", req.release.id));
        job.strategy = req.strategy.unwrap_or(Strategy::Rolling);
        job.wait_timeout = req.wait_timeout;
        job.lock_wait = req.lock_wait;
        job.cancel = req.cancel.clone();
        job.events = req.events.clone();
        job
    }

    /// The rollout of a restore: rolling, like the deploy it undoes.
    pub(crate) fn restore(platform: &crate::FlyPlatform, req: &RestoreRequest<'a>) -> Self {
        let mut job = Self::new(platform, req.target, req.service, "restore");
        job.wait_timeout = req.wait_timeout;
        job.lock_wait = req.lock_wait;
        job.cancel = req.cancel.clone();
        job.events = req.events.clone();
        job
    }

    /// Whether anything may have changed.
    pub(crate) fn touched(&self) -> bool {
        self.touched.load(Ordering::SeqCst)
    }

    fn touch(&self) {
        self.touched.store(true, Ordering::SeqCst);
    }

    /// Sleeps, unless cancelled first (then false).
    pub(crate) async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            () = self.cancel.cancelled() => false,
            () = tokio::time::sleep(d) => true,
        }
    }

    fn check_cancel(&self) -> Result<(), Error> {
        if self.cancel.is_cancelled() { Err(cancelled_error()) } else { Ok(()) }
    }
}

/// What each machine should run.
#[derive(Clone)]
pub(crate) struct Desired {
    /// The config for machines not in `exact` (merged over their live config) and for new ones.
    pub config: Value,
    /// Exact configs by machine id (a restore): sent whole.
    pub exact: BTreeMap<String, Value>,
    /// Machines per region to make sure of (deploy), or none (restore never creates).
    pub per_region: Option<(Vec<String>, usize)>,
    /// The digest it makes live.
    pub digest: String,
    /// Update every machine even when it already runs this config (`--restart`): an update
    /// restarts a machine, which then reads the app's secrets as they are now.
    pub restart: bool,
}

impl Desired {
    /// The config machine `m` should get.
    fn for_machine(&self, m: &Machine) -> Value {
        match self.exact.get(&m.id) {
            Some(c) => c.clone(),
            None => machine::merge(&m.config, &self.config),
        }
    }

    /// Whether `m` already runs what it should (image and settings; which release id says so
    /// does not matter: redeploying what runs changes nothing).
    fn satisfied(&self, m: &Machine) -> bool {
        !self.restart && machine::same_settings(&self.for_machine(m), &m.config)
    }

    fn missing(&self, machines: &[Machine]) -> Vec<(String, usize)> {
        let Some((regions, want)) = &self.per_region else { return Vec::new() };
        regions
            .iter()
            .filter_map(|r| {
                let have = machines.iter().filter(|m| &m.region == r).count();
                (have < *want).then(|| (r.clone(), want - have))
            })
            .collect()
    }
}

fn release_of(config: &Value) -> Option<&str> {
    config.pointer("/metadata/shipit_release").and_then(Value::as_str)
}

/// Machines of the service: process group `app` (or none), not destroyed, in a fixed order.
pub(crate) async fn app_machines(client: &FlyClient, app: &str) -> Result<Vec<Machine>, Error> {
    Ok(of_service(&client.list_machines(app).await?))
}

/// The service's machines among every machine of the app, in a fixed order.
fn of_service(listed: &[Machine]) -> Vec<Machine> {
    let mut machines: Vec<Machine> = listed.iter().filter(|m| is_app_machine(m)).cloned().collect();
    machines.sort_by(|a, b| (&a.region, &a.created_at, &a.id).cmp(&(&b.region, &b.created_at, &b.id)));
    machines
}

fn is_app_machine(m: &Machine) -> bool {
    !matches!(m.state.as_str(), "destroyed" | "destroying")
        && m.metadata(machine::META_GROUP).is_none_or(|g| g == machine::PROCESS_GROUP)
}

/// flyctl's rolling batch: a third of the machines (at least one) at a time.
pub(crate) fn batch_size(strategy: Strategy, n: usize) -> Result<usize, Error> {
    match strategy {
        Strategy::Rolling => Ok((n * 33).div_ceil(100).max(1)),
        Strategy::Immediate => Ok(n.max(1)),
        other => Err(Error::unsupported("fly", format!("the {} strategy", other.as_str()))),
    }
}

/// The first `count` free names `{region}-{n}`: the same names two concurrent deploys would
/// pick, so Fly's unique-name rule turns a race into a conflict instead of duplicate machines.
pub(crate) fn machine_names(region: &str, existing: &[Machine], count: usize) -> Vec<String> {
    let taken: BTreeSet<&str> = existing.iter().map(|m| m.name.as_str()).collect();
    (1..).map(|n| format!("{region}-{n}")).filter(|n| !taken.contains(n.as_str())).take(count).collect()
}

/// Runs the rollout over `machines` (as just listed); a deploy's `point` is refreshed from what
/// runs once the leases are held (a restore passes none). Returns how many machines it created.
pub(crate) async fn run(
    job: &Job<'_>,
    desired: &Desired,
    point: Option<&mut RestorePoint>,
    machines: &[Machine],
) -> Result<usize, Error> {
    job.check_cancel()?;
    if machines.iter().all(|m| desired.satisfied(m)) && desired.missing(machines).is_empty() {
        return Ok(0);
    }
    let leases = LeaseGuard::new(job);
    let result = locked(job, desired, point, machines, &leases).await;
    leases.release().await;
    result
}

async fn locked(
    job: &Job<'_>,
    desired: &Desired,
    point: Option<&mut RestorePoint>,
    seen: &[Machine],
    leases: &LeaseGuard,
) -> Result<usize, Error> {
    let all: Vec<&Machine> = seen.iter().collect();
    leases.acquire(job, &all).await?;
    // Under the leases: what runs now is the truth (another deploy may have finished meanwhile).
    // Every machine of the app, other process groups included: new names must be unique in it.
    let mut listed = job.client.list_machines(&job.app).await?;
    let mut machines = of_service(&listed);
    let unleased: Vec<&Machine> = machines.iter().filter(|m| !leases.holds(&m.id)).collect();
    if !unleased.is_empty() {
        leases.acquire(job, &unleased).await?;
        listed = job.client.list_machines(&job.app).await?;
        machines = of_service(&listed);
        if machines.iter().any(|m| !leases.holds(&m.id)) {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("another deploy is creating machines in {} right now", job.app),
            ));
        }
    }
    let refreshed;
    let mut desired = desired;
    if let Some(point) = point
        && restore::changed_since(point, &machines)
    {
        job.events.step(&job.service.name, "what runs changed while waiting for the lock: read it again");
        *point = restore::point_of(job.service, &machines);
        // Failures another deploy recorded meanwhile are carried forward too.
        let mut failed = machine::failed_ids(&desired.config);
        for id in restore::failed_list(&machines, None) {
            machine::push_failed(&mut failed, &id);
        }
        refreshed = Desired { config: restore::with_failed(&desired.config, &failed), ..desired.clone() };
        desired = &refreshed;
    }
    let stale: Vec<&Machine> = machines.iter().filter(|m| !desired.satisfied(m)).collect();
    let missing = desired.missing(&machines);
    tokio::select! {
        r = async {
            update_all(job, desired, &stale, leases).await?;
            create_missing(job, desired, &listed, &missing, leases).await
        } => r,
        () = leases.keep(job.lease_ttl) => Err(Error::new(ErrorKind::Other, "lease refresher stopped")),
    }
}

/// Updates `stale` in batches; each batch is updated, then gated, before the next.
async fn update_all(job: &Job<'_>, desired: &Desired, stale: &[&Machine], leases: &LeaseGuard) -> Result<(), Error> {
    if stale.is_empty() {
        return Ok(());
    }
    let size = batch_size(job.strategy, stale.len())?;
    for batch in stale.chunks(size) {
        job.check_cancel()?;
        let updated = join_all(batch.iter().map(|m| update_one(job, desired, m, leases.nonce(&m.id)))).await;
        let pending = all_ok(updated)?;
        let gated = join_all(pending.iter().map(|(p, expected)| gate(job, p, *expected))).await;
        all_ok(gated)?;
    }
    Ok(())
}

async fn update_one(
    job: &Job<'_>,
    desired: &Desired,
    m: &Machine,
    nonce: Option<String>,
) -> Result<(Pending, usize), Error> {
    job.check_cancel()?;
    let svc = &job.service.name;
    job.events.step(svc, format!("updating machine {} ({})", m.id, m.region));
    let config = desired.for_machine(m);
    let expected = machine::check_count(&config);
    let release = release_of(&config).map(str::to_string);
    let applied = |live: &Machine| {
        machine::same_settings(&config, &live.config) && live.metadata(META_RELEASE) == release.as_deref()
    };
    let body = UpdateMachine::new(config.clone(), job.secrets_version);
    let updated = match job.client.update_machine(&job.app, &m.id, nonce.as_deref(), &body, applied).await {
        Ok(u) => {
            job.touch();
            u
        }
        Err(e) => {
            if e.may_have_applied() {
                job.touch();
            }
            return Err(Error::from(e).context(format!("updating machine {}", m.id)));
        }
    };
    job.events.emit(Event::InstanceUpdated {
        service: svc.clone(),
        instance: m.id.clone(),
        region: Some(m.region.clone()),
        digest: desired.digest.clone(),
    });
    let pending = Pending {
        id: m.id.clone(),
        region: m.region.clone(),
        instance_id: updated.instance_id.clone(),
        baseline: m.last_event_at().max(updated.last_event_at()),
    };
    Ok((pending, expected))
}

/// Creates the machines regions lack, then gates them.
async fn create_missing(
    job: &Job<'_>,
    desired: &Desired,
    listed: &[Machine],
    missing: &[(String, usize)],
    leases: &LeaseGuard,
) -> Result<usize, Error> {
    let svc = &job.service.name;
    let release = release_of(&desired.config).map(str::to_string);
    let mut pending = Vec::new();
    for (region, count) in missing {
        for name in machine_names(region, listed, *count) {
            job.check_cancel()?;
            job.events.step(svc, format!("creating machine {name} in {region}"));
            let mut create =
                CreateMachine::new(name.clone(), region.clone(), desired.config.clone(), job.secrets_version);
            // Born leased: no other deploy can take the new machine over while it is gated.
            create.lease_ttl = Some(job.lease_ttl.as_secs().max(1));
            let m = match job.client.create_machine(&job.app, &create).await {
                Ok(m) => {
                    job.touch();
                    m
                }
                Err(FlyError::Conflict { message, .. }) => {
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        format!("another deploy is creating machines in {}: {message}", job.app),
                    ));
                }
                Err(e) => {
                    if e.may_have_applied() {
                        job.touch();
                    }
                    return Err(Error::from(e).context(format!("creating machine {name}")));
                }
            };
            if m.metadata(META_RELEASE) != release.as_deref() {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!("another deploy created machine {name} in {} at the same time", job.app),
                ));
            }
            match m.nonce.clone() {
                Some(nonce) => leases.add(&m.id, nonce),
                // Found by name after a lost answer: the lease the create took is read back (a
                // create's lease has no description), so it is released with the others.
                None => {
                    if let Ok(Some(lease)) = job.client.get_lease(&job.app, &m.id).await
                        && lease.description.as_deref().is_none_or(str::is_empty)
                    {
                        leases.add(&m.id, lease.nonce);
                    }
                }
            }
            job.events.emit(Event::InstanceUpdated {
                service: svc.clone(),
                instance: m.id.clone(),
                region: Some(region.clone()),
                digest: desired.digest.clone(),
            });
            pending.push(Pending {
                id: m.id.clone(),
                region: region.clone(),
                instance_id: m.instance_id.clone(),
                baseline: m.last_event_at(),
            });
        }
    }
    let expected = machine::check_count(&desired.config);
    all_ok(join_all(pending.iter().map(|p| gate(job, p, expected))).await)?;
    Ok(pending.len())
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
    fn machine_names_take_the_first_free_ordinals() {
        let m = |name: &str| Machine { name: name.to_string(), ..Machine::default() };
        let existing = [m("iad-1"), m("iad-3"), m("fra-1")];
        assert_eq!(machine_names("iad", &existing, 2), ["iad-2", "iad-4"]);
        assert_eq!(machine_names("fra", &[], 1), ["fra-1"]);
    }
}
