//! The conformance suite: one set of checks every platform must pass against its fake.
//!
//! The checks are plain async functions over a [`Harness`], which gives the suite the platform
//! (as `&dyn Platform`) and the few fault controls it needs. A platform that lacks a capability
//! says so in [`Platform::capabilities`] and the checks that need it are skipped by name, so a
//! missing feature is visible rather than silently passing.
//!
//! Every check asserts what a user would check: which digest runs, which release is live,
//! whether the old release is back, that no lock is left behind, that no secret value appears in
//! any event. A failed check returns `Err(String)` saying what was expected.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use shipit_core::engine::{self, DeployOptions, OnFailure, Outcome, RollbackTo, ServiceResult};
use shipit_core::{App, Events, Platform, ReleaseStatus, Target};

/// What the suite needs from a platform's test setup.
pub trait Harness: Send + Sync {
    /// The platform under test, talking to its fake.
    fn platform(&self) -> &dyn Platform;
    /// The manifest the suite deploys: environment `staging` with a service `api` that has a
    /// port, a health check and the secret `API_SECRET`, and a worker `worker`.
    fn app(&self) -> &App;
    /// From now on, instances running `digest` fail their health checks.
    fn make_unhealthy(&self, digest: &str);
    /// From now on, instances running `digest` exit right after they start.
    fn make_crash(&self, digest: &str);
    /// Locks (leases) still held on the platform.
    fn locks_held(&self) -> usize;
    /// The value the platform holds for secret `name` of `service`, if any.
    fn secret_value(&self, service: &str, name: &str) -> Option<String>;
}

/// A digest made from a short label, for tests (`sha256:<label padded>`).
pub fn digest(label: &str) -> String {
    use sha2::{Digest, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(label.as_bytes())))
}

fn opts() -> DeployOptions {
    let mut o = DeployOptions::default();
    o.wait_timeout = Duration::from_secs(2);
    o.git_sha = Some("c0ffee1".to_string());
    o
}

fn target(h: &dyn Harness) -> Result<Target<'_>, String> {
    let env = h.app().environments.get("staging").ok_or("the suite's manifest needs a `staging` environment")?;
    Ok(Target { app: h.app(), env })
}

async fn deploy_to(
    h: &dyn Harness,
    services: &[&str],
    label: &str,
    o: DeployOptions,
    events: &Events,
) -> Result<engine::Summary, String> {
    let t = target(h)?;
    let mut images = BTreeMap::new();
    for s in services {
        let svc = t.env.services.get(*s).ok_or_else(|| format!("no service {s}"))?;
        images.insert(s.to_string(), svc.image.with_tag(label).with_digest(&digest(&format!("{s}-{label}"))));
    }
    engine::deploy_digests(h.platform(), None, t, "deploy", &images, &o, events)
        .await
        .map_err(|e| format!("deploy {label}: {e}"))
}

async fn running(h: &dyn Harness, service: &str) -> Result<Option<String>, String> {
    let t = target(h)?;
    let svc = t.env.services.get(service).ok_or_else(|| format!("no service {service}"))?;
    let st = h.platform().status(t, svc).await.map_err(|e| format!("status: {e}"))?;
    Ok(st.digest)
}

fn expect(cond: bool, what: impl Into<String>) -> Result<(), String> {
    if cond { Ok(()) } else { Err(what.into()) }
}

/// First deploy, redeploy of the same digest, update: the instances run exactly what was asked,
/// releases list newest first with the live one on top.
pub async fn deploy_update_and_releases(h: &dyn Harness) -> Result<(), String> {
    let events = Events::none();
    let s = deploy_to(h, &["api", "worker"], "v1", opts(), &events).await?;
    expect(s.outcome == Outcome::Succeeded, format!("first deploy: {s:?}"))?;
    expect(running(h, "api").await? == Some(digest("api-v1")), "api runs v1 after the first deploy")?;
    expect(running(h, "worker").await? == Some(digest("worker-v1")), "worker runs v1")?;

    let again = deploy_to(h, &["api"], "v1", opts(), &events).await?;
    expect(
        again.services.first().map(|r| r.result) == Some(ServiceResult::Unchanged),
        format!("deploying the running digest again changes nothing: {again:?}"),
    )?;

    let s = deploy_to(h, &["api"], "v2", opts(), &events).await?;
    expect(s.outcome == Outcome::Succeeded, format!("update: {s:?}"))?;
    expect(running(h, "api").await? == Some(digest("api-v2")), "api runs v2 after the update")?;

    let t = target(h)?;
    let api = t.env.services.get("api").ok_or("no api")?;
    let releases = h.platform().releases(t, api).await.map_err(|e| e.to_string())?;
    let first = releases.first().ok_or("no releases listed")?;
    expect(
        first.status == ReleaseStatus::Live && first.digest.as_deref() == Some(digest("api-v2").as_str()),
        format!("newest release is v2 and live: {releases:?}"),
    )?;
    expect(
        releases
            .iter()
            .any(|r| r.digest.as_deref() == Some(digest("api-v1").as_str()) && r.status == ReleaseStatus::Superseded),
        format!("v1 is listed as superseded: {releases:?}"),
    )?;
    expect(first.git_sha.as_deref() == Some("c0ffee1"), format!("the git sha is recorded: {first:?}"))?;
    expect(h.locks_held() == 0, "every lock was released")
}

/// A release whose health checks fail is rolled back: the old digest runs again, the failed
/// release is marked failed, and a later `rollback` never returns to it.
pub async fn unhealthy_release_is_rolled_back(h: &dyn Harness) -> Result<(), String> {
    let events = Events::none();
    deploy_to(h, &["api"], "good", opts(), &events).await?;
    h.make_unhealthy(&digest("api-bad"));
    let s = deploy_to(h, &["api"], "bad", opts(), &events).await?;
    expect(matches!(s.outcome, Outcome::TimedOut | Outcome::RolledBack), format!("unhealthy release: {s:?}"))?;
    expect(s.services.first().map(|r| r.result) == Some(ServiceResult::RolledBack), format!("api rolled back: {s:?}"))?;
    expect(running(h, "api").await? == Some(digest("api-good")), "the good digest runs again")?;
    let t = target(h)?;
    let api = t.env.services.get("api").ok_or("no api")?;
    let releases = h.platform().releases(t, api).await.map_err(|e| e.to_string())?;
    expect(
        releases
            .iter()
            .any(|r| r.digest.as_deref() == Some(digest("api-bad").as_str()) && r.status == ReleaseStatus::Failed),
        format!("the bad release is marked failed: {releases:?}"),
    )?;
    let pick = engine::pick_release(&releases, &RollbackTo::Previous);
    expect(
        pick.as_ref().map_or(true, |r| r.digest.as_deref() != Some(digest("api-bad").as_str())),
        "a failed release is never a rollback target",
    )?;
    expect(h.locks_held() == 0, "every lock was released")
}

/// An instance that exits fails the deploy at once, long before the wait timeout.
pub async fn crash_fails_fast(h: &dyn Harness) -> Result<(), String> {
    let events = Events::none();
    deploy_to(h, &["api"], "stable", opts(), &events).await?;
    h.make_crash(&digest("api-crashy"));
    let mut o = opts();
    o.wait_timeout = Duration::from_secs(30);
    let started = Instant::now();
    let s = deploy_to(h, &["api"], "crashy", o, &events).await?;
    let took = started.elapsed();
    expect(s.outcome == Outcome::RolledBack, format!("a crash is a failure, rolled back: {s:?}"))?;
    expect(took < Duration::from_secs(10), format!("a crash fails fast, not after the 30 s timeout (took {took:?})"))?;
    expect(running(h, "api").await? == Some(digest("api-stable")), "the stable digest runs again")?;
    expect(h.locks_held() == 0, "every lock was released")
}

/// `--on-failure leave` leaves the failed release in place and says so.
pub async fn leave_on_failure(h: &dyn Harness) -> Result<(), String> {
    let events = Events::none();
    deploy_to(h, &["worker"], "w1", opts(), &events).await?;
    h.make_crash(&digest("worker-w2"));
    let mut o = opts();
    o.on_failure = OnFailure::Leave;
    let s = deploy_to(h, &["worker"], "w2", o, &events).await?;
    expect(s.outcome == Outcome::Failed, format!("leave: the verdict says it was not restored: {s:?}"))?;
    expect(h.locks_held() == 0, "every lock was released")
}

/// `--atomic`: when one service fails, every service of the release goes back.
pub async fn atomic_rolls_back_every_service(h: &dyn Harness) -> Result<(), String> {
    let events = Events::none();
    deploy_to(h, &["api", "worker"], "a1", opts(), &events).await?;
    h.make_crash(&digest("worker-a2"));
    let mut o = opts();
    o.atomic = true;
    let s = deploy_to(h, &["api", "worker"], "a2", o, &events).await?;
    expect(s.outcome == Outcome::RolledBack, format!("atomic: {s:?}"))?;
    let api = s.services.iter().find(|r| r.service == "api").ok_or("api in the summary")?;
    expect(
        matches!(api.result, ServiceResult::RolledBackAtomic | ServiceResult::Skipped),
        format!("api was rolled back with the release (or never started): {api:?}"),
    )?;
    expect(running(h, "api").await? == Some(digest("api-a1")), "api runs a1 again")?;
    expect(running(h, "worker").await? == Some(digest("worker-a1")), "worker runs a1 again")?;
    expect(h.locks_held() == 0, "every lock was released")
}

/// `rollback` returns to a named release, and to the previous successful one by default.
pub async fn rollback_to_named_and_previous(h: &dyn Harness) -> Result<(), String> {
    let events = Events::none();
    for label in ["r1", "r2", "r3"] {
        deploy_to(h, &["api"], label, opts(), &events).await?;
    }
    let t = target(h)?;
    let api = t.env.services.get("api").ok_or("no api")?;
    let releases = h.platform().releases(t, api).await.map_err(|e| e.to_string())?;
    let r1 = releases.iter().find(|r| r.digest.as_deref() == Some(digest("api-r1").as_str())).ok_or("r1 is listed")?;
    let mut o = opts();
    o.services = vec!["api".to_string()];
    let s =
        engine::rollback(h.platform(), None, t, &RollbackTo::Previous, &o, &events).await.map_err(|e| e.to_string())?;
    expect(s.outcome == Outcome::Succeeded, format!("rollback to previous: {s:?}"))?;
    expect(running(h, "api").await? == Some(digest("api-r2")), "previous of r3 is r2")?;
    let s = engine::rollback(h.platform(), None, t, &RollbackTo::Release(r1.id.clone()), &o, &events)
        .await
        .map_err(|e| e.to_string())?;
    expect(s.outcome == Outcome::Succeeded, format!("rollback to r1: {s:?}"))?;
    expect(running(h, "api").await? == Some(digest("api-r1")), "named rollback runs r1")?;
    expect(h.locks_held() == 0, "every lock was released")
}

/// Secrets reach the platform; their values appear in no event.
pub async fn secrets_never_in_events(h: &dyn Harness) -> Result<(), String> {
    let value = "s3cr3t-value-that-must-not-leak";
    let (events, seen) = Events::collect();
    deploy_to(h, &["api"], "sec1", opts(), &events).await?;
    let t = target(h)?;
    let needed: Vec<String> = {
        let api = t.env.services.get("api").ok_or("no api")?;
        h.platform().required_secrets(api)
    };
    let lookup = |name: &str| needed.iter().any(|n| n == name).then(|| SecretString::from(value.to_string()));
    let done = engine::sync_secrets(h.platform(), t, &["api".to_string()], lookup).await.map_err(|e| e.to_string())?;
    expect(!done.is_empty(), "secrets were synced")?;
    expect(h.secret_value("api", "API_SECRET").as_deref() == Some(value), "the platform holds the value")?;
    deploy_to(h, &["api"], "sec2", opts(), &events).await?;
    let all = format!("{:?}", seen.lock().map_err(|e| e.to_string())?);
    expect(!all.contains(value), "no event carries a secret value")?;
    expect(!format!("{done:?}").contains(value), "the sync result carries names only")
}

/// Missing secret values: nothing is changed.
pub async fn secrets_sync_refuses_missing(h: &dyn Harness) -> Result<(), String> {
    let t = target(h)?;
    let r = engine::sync_secrets(h.platform(), t, &["api".to_string()], |_| None).await;
    expect(r.is_err(), "a missing value fails the sync")?;
    expect(h.secret_value("api", "API_SECRET").is_none(), "nothing was set")
}

/// Every check, by name, for a platform's test to run one by one.
pub const CHECKS: &[&str] = &[
    "deploy_update_and_releases",
    "unhealthy_release_is_rolled_back",
    "crash_fails_fast",
    "leave_on_failure",
    "atomic_rolls_back_every_service",
    "rollback_to_named_and_previous",
    "secrets_never_in_events",
    "secrets_sync_refuses_missing",
];

/// Runs one check by name.
pub async fn run(name: &str, h: &dyn Harness) -> Result<(), String> {
    match name {
        "deploy_update_and_releases" => deploy_update_and_releases(h).await,
        "unhealthy_release_is_rolled_back" => unhealthy_release_is_rolled_back(h).await,
        "crash_fails_fast" => crash_fails_fast(h).await,
        "leave_on_failure" => leave_on_failure(h).await,
        "atomic_rolls_back_every_service" => atomic_rolls_back_every_service(h).await,
        "rollback_to_named_and_previous" => rollback_to_named_and_previous(h).await,
        "secrets_never_in_events" => secrets_never_in_events(h).await,
        "secrets_sync_refuses_missing" => secrets_sync_refuses_missing(h).await,
        other => Err(format!("no check {other}")),
    }
}

/// The manifest every platform's conformance run deploys (pass the platform's target table).
pub fn manifest(target: &str, target_table: &str) -> String {
    format!(
        r#"app = "conf"
[registry]
host = "registry.example.com"
namespace = "acme"

[services.api]
port = 8080
health = {{ path = "/healthz", interval = "1s", timeout = "1s", grace = "1s" }}
env = {{ MODE = "test" }}
secrets = ["API_SECRET"]
scale = {{ min = 2, max = 2 }}

[services.worker]
command = ["node", "worker.js"]

[environments.staging]
target = "{target}"

{target_table}
"#
    )
}
