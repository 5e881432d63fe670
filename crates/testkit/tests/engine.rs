//! The engine on [`MemoryPlatform`] (native-rollback semantics): ordering, restore on failure,
//! `--atomic`, `--on-failure leave`, the verdict, locks and races, and manual rollback.
//!
//! Every test asserts what a user would check: which digest serves, which digest the service's
//! source and settings point at (what a later redeploy would ship), which release is live and
//! which are rollback targets, the summary's outcome and per-service results, and the events.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use shipit_core::engine::{self, DeployOptions, OnFailure, Outcome, RollbackTo, ServiceResult, Summary};
use shipit_core::{App, ErrorKind, Event, Events, ImageRef, Platform, Release, ReleaseStatus, Strategy, Target};
use shipit_testkit::conformance::digest;
use shipit_testkit::memory::{Call, DeploymentStatus, FOREIGN_DIGEST, Fault, MemoryPlatform, Scope, Settings};

/// The manifest, with what differs between releases: api's `MODE`, its replicas, worker's command.
fn manifest(mode: &str, replicas: u32, worker_cmd: &str) -> String {
    format!(
        r#"app = "shop"

[registry]
host = "registry.example.com"
namespace = "acme"

[services.api]
port = 8080
health = {{ path = "/healthz" }}
env = {{ MODE = "{mode}" }}
scale = {{ min = {replicas}, max = {replicas} }}

[services.web]
port = 3000
health = {{ path = "/" }}
env_from = {{ API_URL = "api.url" }}

[services.worker]
command = ["node", "{worker_cmd}"]

[environments.staging]
target = "railway"

[targets.railway]
project = "shop"
"#
    )
}

fn app() -> App {
    app_with("one", 2, "worker.js")
}

fn app_with(mode: &str, replicas: u32, worker_cmd: &str) -> App {
    shipit_core::parse(&manifest(mode, replicas, worker_cmd), "shipit.toml").unwrap()
}

fn target(app: &App) -> Target<'_> {
    Target { app, env: app.environments.get("staging").unwrap() }
}

/// The digest of `service` at `label`.
fn d(service: &str, label: &str) -> String {
    digest(&format!("{service}-{label}"))
}

fn opts() -> DeployOptions {
    let mut o = DeployOptions::default();
    o.wait_timeout = Duration::from_millis(300);
    o.git_sha = Some("abc1234".to_string());
    o
}

/// Deploys each `(service, label)` through the engine; returns the summary and the events.
async fn deploy_labels(
    mem: &MemoryPlatform,
    app: &App,
    labels: &[(&str, &str)],
    o: &DeployOptions,
) -> (Summary, Vec<Event>) {
    let t = target(app);
    let mut images: BTreeMap<String, ImageRef> = BTreeMap::new();
    for (s, label) in labels {
        let svc = t.env.services.get(*s).unwrap();
        images.insert(s.to_string(), svc.image.with_tag(label).with_digest(&d(s, label)));
    }
    let (events, seen) = Events::collect();
    let summary = engine::deploy_digests(mem, None, t, "deploy", &images, o, &events).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    (summary, seen)
}

/// Deploys `services`, all at `label`.
async fn deploy(
    mem: &MemoryPlatform,
    app: &App,
    services: &[&str],
    label: &str,
    o: &DeployOptions,
) -> (Summary, Vec<Event>) {
    let labels: Vec<(&str, &str)> = services.iter().map(|s| (*s, label)).collect();
    deploy_labels(mem, app, &labels, o).await
}

fn result(s: &Summary, service: &str) -> ServiceResult {
    s.services.iter().find(|r| r.service == service).unwrap_or_else(|| panic!("{service} not in {s:#?}")).result
}

fn report<'a>(s: &'a Summary, service: &str) -> &'a engine::ServiceReport {
    s.services.iter().find(|r| r.service == service).unwrap()
}

/// `service` serves `label` and its source points at it: what a user sees, and what a redeploy
/// would ship, agree.
#[track_caller]
fn on(mem: &MemoryPlatform, service: &str, label: &str) {
    let want = d(service, label);
    assert_eq!(mem.serving_digest(service), Some(want.clone()), "{service} serves {label}");
    assert_eq!(mem.source_digest(service), Some(want), "{service}'s source points at {label}");
}

fn ops_of(mem: &MemoryPlatform, call: Call, service: &str) -> Vec<Option<String>> {
    mem.calls(call).into_iter().filter(|o| o.service == service).map(|o| o.detail).collect()
}

fn position(mem: &MemoryPlatform, call: Call, service: &str, detail: &str) -> usize {
    mem.ops()
        .iter()
        .position(|o| o.call == call && o.service == service && o.detail.as_deref() == Some(detail))
        .unwrap_or_else(|| panic!("no {call:?} of {service} at {detail}: {:#?}", mem.ops()))
}

async fn releases(mem: &MemoryPlatform, app: &App, service: &str) -> Vec<Release> {
    let t = target(app);
    mem.releases(t, t.env.services.get(service).unwrap()).await.unwrap()
}

fn release_of<'a>(releases: &'a [Release], digest: &str) -> &'a Release {
    releases.iter().find(|r| r.digest.as_deref() == Some(digest)).unwrap_or_else(|| panic!("{digest} in {releases:#?}"))
}

fn restores_started(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::RollbackStarted { service, .. } => Some(service.clone()),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Ordering

#[tokio::test]
async fn a_service_that_takes_another_ones_url_deploys_after_it() {
    let mem = MemoryPlatform::new();
    let app = app();
    let (s, _) = deploy(&mem, &app, &["api", "web", "worker"], "v1", &opts()).await;
    assert_eq!(s.outcome, Outcome::Succeeded, "{s:#?}");
    for svc in ["api", "web", "worker"] {
        on(&mem, svc, "v1");
        assert_eq!(result(&s, svc), ServiceResult::Deployed);
    }
    let api_done = position(&mem, Call::DeployDone, "api", &d("api", "v1"));
    let web_start = position(&mem, Call::Deploy, "web", &d("web", "v1"));
    let worker_start = position(&mem, Call::Deploy, "worker", &d("worker", "v1"));
    assert!(web_start > api_done, "web (API_URL = api.url) starts only once api is live: {:#?}", mem.ops());
    assert!(worker_start < api_done, "worker depends on nothing: it deploys alongside api: {:#?}", mem.ops());
}

#[tokio::test]
async fn a_failed_dependency_skips_its_dependents() {
    let mem = MemoryPlatform::new();
    let app = app();
    deploy(&mem, &app, &["api", "web", "worker"], "v1", &opts()).await;
    mem.inject(Scope::Digest(d("api", "v2")), Fault::Crash);
    let (s, events) = deploy(&mem, &app, &["api", "web", "worker"], "v2", &opts()).await;
    assert_eq!(result(&s, "api"), ServiceResult::RolledBack);
    assert_eq!(result(&s, "web"), ServiceResult::Skipped);
    assert_eq!(result(&s, "worker"), ServiceResult::Deployed);
    assert_eq!(s.outcome, Outcome::Partial, "worker runs v2, api and web v1: {s:#?}");
    assert!(
        ops_of(&mem, Call::Deploy, "web").iter().all(|x| x.as_deref() != Some(d("web", "v2").as_str())),
        "web never started"
    );
    on(&mem, "api", "v1");
    on(&mem, "web", "v1");
    on(&mem, "worker", "v2");
    assert!(
        events.iter().any(|e| matches!(e, Event::Warning { service: Some(s), message } if s == "web" && message.contains("api failed"))),
        "the skip is explained: {events:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The verdict

/// What a service does in one mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Does {
    /// Deploys v2.
    Ok,
    /// Is deployed at v1 again (already runs it).
    Same,
    /// v2 crashes; v1 is restored.
    Crash,
    /// v2 is still rolling out at the wait timeout; v1 is restored.
    Timeout,
    /// Refused at the first call (409): nothing changed.
    Refused,
    /// v2 crashes and the restore fails.
    RestoreFails,
}

async fn mix(api: Does, worker: Does, atomic: bool) -> (MemoryPlatform, Summary) {
    let mem = MemoryPlatform::new();
    let app = app();
    deploy(&mem, &app, &["api", "worker"], "v1", &opts()).await;
    let mut labels = Vec::new();
    for (svc, does) in [("api", api), ("worker", worker)] {
        let v2 = Scope::Digest(d(svc, "v2"));
        match does {
            Does::Ok | Does::Same => {}
            Does::Crash => mem.inject(v2, Fault::Crash),
            Does::Timeout => mem.inject(v2, Fault::Timeout),
            Does::Refused => mem.inject(v2, Fault::conflict()),
            Does::RestoreFails => {
                mem.inject(v2, Fault::Crash);
                mem.inject(Scope::Service(svc.to_string()), Fault::RestoreFails);
            }
        }
        labels.push((svc, if does == Does::Same { "v1" } else { "v2" }));
    }
    let mut o = opts();
    o.atomic = atomic;
    let (s, _) = deploy_labels(&mem, &app, &labels, &o).await;
    (mem, s)
}

#[tokio::test]
async fn the_verdict_for_every_mix_of_service_results() {
    use Does::*;
    use ServiceResult as R;
    #[rustfmt::skip]
    let cases: &[(Does, Does, bool, Outcome, R, R)] = &[
        (Ok, Ok, false, Outcome::Succeeded, R::Deployed, R::Deployed),
        (Ok, Same, false, Outcome::Succeeded, R::Deployed, R::Unchanged),
        (Same, Same, false, Outcome::Succeeded, R::Unchanged, R::Unchanged),
        // api fails and is put back, worker succeeds: a mix runs, that is not a rollback.
        (Crash, Ok, false, Outcome::Partial, R::RolledBack, R::Deployed),
        (Crash, Same, false, Outcome::RolledBack, R::RolledBack, R::Unchanged),
        (Crash, Crash, false, Outcome::RolledBack, R::RolledBack, R::RolledBack),
        (Timeout, Ok, false, Outcome::Partial, R::RolledBack, R::Deployed),
        (Timeout, Same, false, Outcome::TimedOut, R::RolledBack, R::Unchanged),
        (Timeout, Crash, false, Outcome::TimedOut, R::RolledBack, R::RolledBack),
        (Refused, Ok, false, Outcome::Partial, R::FailedUnchanged, R::Deployed),
        (Refused, Same, false, Outcome::NothingChanged, R::FailedUnchanged, R::Unchanged),
        (Refused, Refused, false, Outcome::NothingChanged, R::FailedUnchanged, R::FailedUnchanged),
        (Refused, Crash, false, Outcome::RolledBack, R::FailedUnchanged, R::RolledBack),
        (RestoreFails, Ok, false, Outcome::Failed, R::Failed, R::Deployed),
        (RestoreFails, Crash, false, Outcome::Failed, R::Failed, R::RolledBack),
        (RestoreFails, Refused, false, Outcome::Failed, R::Failed, R::FailedUnchanged),
        (Crash, Ok, true, Outcome::RolledBack, R::RolledBack, R::RolledBackAtomic),
        (Timeout, Ok, true, Outcome::TimedOut, R::RolledBack, R::RolledBackAtomic),
        (Crash, Same, true, Outcome::RolledBack, R::RolledBack, R::Unchanged),
        (RestoreFails, Ok, true, Outcome::Failed, R::Failed, R::RolledBackAtomic),
    ];
    let mut wrong = Vec::new();
    for &(api, worker, atomic, outcome, api_r, worker_r) in cases {
        let (mem, s) = mix(api, worker, atomic).await;
        let got = (s.outcome, result(&s, "api"), result(&s, "worker"));
        if got != (outcome, api_r, worker_r) {
            wrong.push(format!(
                "{api:?}/{worker:?} atomic={atomic}: want {:?}, got {got:?}",
                (outcome, api_r, worker_r)
            ));
            continue;
        }
        // What runs agrees with each result.
        for (svc, r) in [("api", api_r), ("worker", worker_r)] {
            let (serving, source) = (mem.serving_digest(svc), mem.source_digest(svc));
            let (v1, v2) = (Some(d(svc, "v1")), Some(d(svc, "v2")));
            let fine = match r {
                R::Deployed => serving == v2 && source == v2,
                R::Unchanged | R::RolledBack | R::RolledBackAtomic | R::FailedUnchanged => {
                    serving == v1 && source == v1
                }
                // The restore failed: the old deployment still serves, the source still points at
                // the failed image (what "Failed" warns about).
                R::Failed => serving == v1 && source == v2,
                _ => false,
            };
            if !fine {
                wrong.push(format!(
                    "{api:?}/{worker:?} atomic={atomic}: {svc} is {r:?} but serves {serving:?}, source {source:?}"
                ));
            }
            assert_eq!(report(&s, svc).running_digest, serving, "the summary reports what serves");
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[tokio::test]
async fn api_restored_and_worker_deployed_is_partial_not_rolled_back() {
    let mem = MemoryPlatform::new();
    let app = app();
    deploy(&mem, &app, &["api", "worker"], "v1", &opts()).await;
    mem.inject(Scope::Service("api".into()), Fault::Crash);
    let (s, events) = deploy(&mem, &app, &["api", "worker"], "v2", &opts()).await;
    assert_eq!(s.outcome, Outcome::Partial, "{s:#?}");
    assert_eq!((result(&s, "api"), result(&s, "worker")), (ServiceResult::RolledBack, ServiceResult::Deployed));
    assert_eq!(report(&s, "api").error_kind, Some(ErrorKind::Unhealthy));
    on(&mem, "api", "v1");
    on(&mem, "worker", "v2");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::ServiceFailed { service, kind: ErrorKind::Unhealthy, .. } if service == "api"))
    );
    assert!(events.iter().any(
        |e| matches!(e, Event::RollbackSucceeded { service, digest } if service == "api" && *digest == d("api", "v1"))
    ));
    assert!(events.iter().any(|e| matches!(e, Event::ServiceSucceeded { service, .. } if service == "worker")));
    assert_eq!(restores_started(&events), ["api"], "only api is put back");
}

// ---------------------------------------------------------------------------------------------
// --atomic and --on-failure leave

#[tokio::test]
async fn atomic_takes_back_every_service_of_the_release() {
    let mem = MemoryPlatform::new();
    let app = app();
    deploy(&mem, &app, &["api", "web", "worker"], "v1", &opts()).await;
    mem.inject(Scope::Digest(d("worker", "v2")), Fault::Crash);
    let mut o = opts();
    o.atomic = true;
    let (s, _) = deploy(&mem, &app, &["api", "web", "worker"], "v2", &o).await;
    assert_eq!(s.outcome, Outcome::RolledBack, "{s:#?}");
    assert_eq!(result(&s, "api"), ServiceResult::RolledBackAtomic);
    assert_eq!(result(&s, "worker"), ServiceResult::RolledBack);
    assert_eq!(result(&s, "web"), ServiceResult::Skipped, "with --atomic nothing starts after a failure");
    for svc in ["api", "web", "worker"] {
        on(&mem, svc, "v1");
    }
    // The release taken back is never a rollback target.
    let api = releases(&mem, &app, "api").await;
    assert_eq!(release_of(&api, &d("api", "v2")).status, ReleaseStatus::Failed, "{api:#?}");
    let previous = engine::pick_release(&api, &RollbackTo::Previous);
    assert!(previous.as_ref().map_or(true, |r| r.digest != Some(d("api", "v2"))), "{previous:?}");
    assert!(engine::pick_release(&api, &RollbackTo::Release(s.release.clone())).is_err());
}

/// A service refused before it changed anything still fails the release: `--atomic` takes back
/// the services of the same level that did deploy. Ignored until the engine fix in `put_back`
/// (see the report: `FailedUnchanged` must count as a failure under `--atomic`).
#[tokio::test]
async fn atomic_also_takes_back_when_the_failure_changed_nothing() {
    let (mem, s) = mix(Does::Refused, Does::Ok, true).await;
    assert_eq!(result(&s, "api"), ServiceResult::FailedUnchanged);
    assert_eq!(result(&s, "worker"), ServiceResult::RolledBackAtomic, "{s:#?}");
    assert_eq!(s.outcome, Outcome::RolledBack);
    on(&mem, "api", "v1");
    on(&mem, "worker", "v1");
}

#[tokio::test]
async fn leave_keeps_the_failed_release_recorded_failed_and_never_a_target() {
    let mem = MemoryPlatform::new();
    let app = app();
    deploy(&mem, &app, &["api"], "v1", &opts()).await;
    deploy(&mem, &app, &["api"], "v2", &opts()).await;
    mem.inject(Scope::Digest(d("api", "v3")), Fault::Crash);
    let mut o = opts();
    o.on_failure = OnFailure::Leave;
    let (s, events) = deploy(&mem, &app, &["api"], "v3", &o).await;
    assert_eq!(s.outcome, Outcome::Failed, "{s:#?}");
    assert_eq!(result(&s, "api"), ServiceResult::Failed);
    assert!(restores_started(&events).is_empty());
    assert!(ops_of(&mem, Call::Restore, "api").is_empty(), "leave: no restore");
    assert_eq!(ops_of(&mem, Call::MarkFailed, "api"), [Some(s.release.clone())], "the failure is recorded");
    // Left as it is: the old deployment serves, the source points at the failed image.
    assert_eq!(mem.serving_digest("api"), Some(d("api", "v2")));
    assert_eq!(mem.source_digest("api"), Some(d("api", "v3")));

    let (s4, _) = deploy(&mem, &app, &["api"], "v4", &opts()).await;
    assert_eq!(s4.outcome, Outcome::Succeeded);
    let list = releases(&mem, &app, "api").await;
    assert_eq!(release_of(&list, &d("api", "v3")).status, ReleaseStatus::Failed, "{list:#?}");
    let previous = engine::pick_release(&list, &RollbackTo::Previous).unwrap();
    assert_eq!(previous.digest, Some(d("api", "v2")), "previous skips the failed v3");
    let err = engine::pick_release(&list, &RollbackTo::Release(s.release.clone())).unwrap_err();
    assert!(err.message.contains("never a rollback target"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Failures before and after anything changed

#[tokio::test]
async fn a_failure_before_anything_changed_restores_nothing() {
    let mem = MemoryPlatform::new();
    let app = app();
    deploy(&mem, &app, &["api"], "v1", &opts()).await;
    mem.inject_times(Scope::Service("api".into()), Fault::conflict(), 1);
    let (s, events) = deploy(&mem, &app, &["api"], "v2", &opts()).await;
    assert_eq!(s.outcome, Outcome::NothingChanged, "{s:#?}");
    assert_eq!(result(&s, "api"), ServiceResult::FailedUnchanged);
    assert_eq!(s.failure_kind(), Some(ErrorKind::Conflict));
    assert!(ops_of(&mem, Call::Restore, "api").is_empty(), "no restore call: {:#?}", mem.ops());
    assert!(ops_of(&mem, Call::MarkFailed, "api").is_empty(), "nothing to record: v2 never existed");
    assert!(restores_started(&events).is_empty());
    on(&mem, "api", "v1");
}

#[tokio::test]
async fn a_401_at_the_first_call_is_nothing_changed_and_unauthorized() {
    let mem = MemoryPlatform::new();
    let app = app();
    deploy(&mem, &app, &["api"], "v1", &opts()).await;
    mem.inject(Scope::Any, Fault::unauthorized());
    let (s, _) = deploy(&mem, &app, &["api", "worker"], "v2", &opts()).await;
    assert_eq!(s.outcome, Outcome::NothingChanged, "{s:#?}");
    assert_eq!(s.failure_kind(), Some(ErrorKind::Unauthorized));
    let api = report(&s, "api");
    assert_eq!(api.error_kind, Some(ErrorKind::Unauthorized));
    assert!(api.error.as_deref().unwrap().contains("401"), "{api:?}");
    assert!(mem.calls(Call::Restore).is_empty());
    on(&mem, "api", "v1");
    assert_eq!(mem.source_digest("worker"), None, "worker was never touched");
}

#[tokio::test]
async fn a_restore_that_fails_is_failed() {
    let mem = MemoryPlatform::new();
    let app = app();
    deploy(&mem, &app, &["api"], "v1", &opts()).await;
    mem.inject(Scope::Digest(d("api", "v2")), Fault::Crash);
    mem.inject(Scope::Service("api".into()), Fault::RestoreFails);
    let (s, events) = deploy(&mem, &app, &["api"], "v2", &opts()).await;
    assert_eq!(s.outcome, Outcome::Failed, "{s:#?}");
    assert_eq!(result(&s, "api"), ServiceResult::Failed);
    assert_eq!(ops_of(&mem, Call::Restore, "api"), [Some(d("api", "v1"))], "the restore was tried, to v1");
    assert!(
        events.iter().any(
            |e| matches!(e, Event::RollbackFailed { service, reason } if service == "api" && reason.contains("refused"))
        ),
        "{events:#?}"
    );
    // The old deployment still serves, but the source points at the failed image: Failed says so.
    assert_eq!(mem.serving_digest("api"), Some(d("api", "v1")));
    assert_eq!(mem.source_digest("api"), Some(d("api", "v2")));
}

#[tokio::test]
async fn a_failure_after_the_settings_moved_puts_source_and_settings_back() {
    let mem = MemoryPlatform::new();
    let (one, two) = (app_with("one", 2, "worker.js"), app_with("two", 3, "worker.js"));
    deploy(&mem, &one, &["api"], "v1", &opts()).await;
    let deployments = mem.service("api").unwrap().deployments.len();
    mem.inject(Scope::Digest(d("api", "v2")), Fault::FailAfterSettings);
    let (s, _) = deploy(&mem, &two, &["api"], "v2", &opts()).await;
    assert_eq!(s.outcome, Outcome::RolledBack, "{s:#?}");
    assert_eq!(result(&s, "api"), ServiceResult::RolledBack);
    on(&mem, "api", "v1");
    let settings = mem.settings("api").unwrap();
    assert_eq!(settings, Settings::of(one.environments["staging"].services.get("api").unwrap()));
    assert_eq!((settings.replicas, settings.variables.get("MODE").map(String::as_str)), (2, Some("one")));
    assert_eq!(mem.service("api").unwrap().deployments.len(), deployments, "v1 never stopped serving: re-pointed only");
    // And a later redeploy ships what serves, not the image that failed.
    assert_eq!(mem.redeploy("api"), Some(d("api", "v1")));
    assert_eq!(mem.serving_digest("api"), Some(d("api", "v1")));
}

#[tokio::test]
async fn the_trap_when_nothing_is_restored_a_redeploy_ships_the_failed_image() {
    let mem = MemoryPlatform::new();
    let app = app();
    deploy(&mem, &app, &["api"], "v1", &opts()).await;
    mem.inject(Scope::Digest(d("api", "v2")), Fault::FailAfterSettings);
    let mut o = opts();
    o.on_failure = OnFailure::Leave;
    let (s, _) = deploy(&mem, &app, &["api"], "v2", &o).await;
    assert_eq!(s.outcome, Outcome::Failed);
    assert_eq!(report(&s, "api").running_digest, Some(d("api", "v1")), "status shows the old digest serving");
    assert_eq!(mem.source_digest("api"), Some(d("api", "v2")), "while the source points at the new one");
    assert_eq!(mem.redeploy("api"), Some(d("api", "v2")), "so a redeploy ships it");
}

#[tokio::test]
async fn a_foreign_deployment_mid_deploy_is_a_conflict_and_is_restored() {
    let mem = MemoryPlatform::new();
    let app = app();
    deploy(&mem, &app, &["api"], "v1", &opts()).await;
    mem.inject_times(Scope::Service("api".into()), Fault::ForeignDeployment, 1);
    let (s, _) = deploy(&mem, &app, &["api"], "v2", &opts()).await;
    assert_eq!(s.outcome, Outcome::RolledBack, "{s:#?}");
    assert_eq!(report(&s, "api").error_kind, Some(ErrorKind::Conflict));
    on(&mem, "api", "v1");
    let view = mem.service("api").unwrap();
    let foreign = view.deployments.iter().find(|d| d.digest == FOREIGN_DIGEST).unwrap();
    assert_ne!(foreign.status, DeploymentStatus::Live);
}

// ---------------------------------------------------------------------------------------------
// Timeouts, cancellation, first deploys

#[tokio::test]
async fn a_release_that_never_becomes_healthy_times_out_and_is_restored() {
    let mem = MemoryPlatform::new();
    let app = app();
    deploy(&mem, &app, &["api"], "v1", &opts()).await;
    mem.inject(Scope::Digest(d("api", "v2")), Fault::Unhealthy);
    let (s, _) = deploy(&mem, &app, &["api"], "v2", &opts()).await;
    assert_eq!(s.outcome, Outcome::TimedOut, "{s:#?}");
    assert_eq!(result(&s, "api"), ServiceResult::RolledBack);
    assert_eq!(report(&s, "api").error_kind, Some(ErrorKind::Timeout));
    on(&mem, "api", "v1");
    let list = releases(&mem, &app, "api").await;
    assert_eq!(release_of(&list, &d("api", "v2")).status, ReleaseStatus::Failed);
}

#[tokio::test]
async fn a_crash_fails_fast() {
    let mem = MemoryPlatform::new();
    let app = app();
    deploy(&mem, &app, &["api"], "v1", &opts()).await;
    mem.inject(Scope::Digest(d("api", "v2")), Fault::Crash);
    let mut o = opts();
    o.wait_timeout = Duration::from_secs(60);
    let started = Instant::now();
    let (s, _) = deploy(&mem, &app, &["api"], "v2", &o).await;
    assert!(started.elapsed() < Duration::from_secs(10), "not after the 60 s wait");
    assert_eq!(s.outcome, Outcome::RolledBack);
    assert_eq!(report(&s, "api").error_kind, Some(ErrorKind::Unhealthy));
    on(&mem, "api", "v1");
}

#[tokio::test]
async fn cancellation_mid_rollout_is_cancelled() {
    let mem = MemoryPlatform::new();
    let app = app();
    deploy(&mem, &app, &["api", "web"], "v1", &opts()).await;
    mem.inject(Scope::Digest(d("api", "v2")), Fault::CancelMidRollout);
    let o = opts();
    let (s, _) = deploy(&mem, &app, &["api", "web"], "v2", &o).await;
    assert!(o.cancel.is_cancelled());
    assert_eq!(s.outcome, Outcome::Cancelled, "{s:#?}");
    assert_eq!(result(&s, "api"), ServiceResult::RolledBack, "stopped mid-rollout, then put back");
    assert_eq!(ops_of(&mem, Call::Restore, "api").len(), 1, "through the platform's restore");
    on(&mem, "api", "v1");
    assert_eq!(result(&s, "web"), ServiceResult::Skipped, "nothing starts after the signal");
    assert!(ops_of(&mem, Call::Deploy, "web").iter().all(|x| x.as_deref() != Some(d("web", "v2").as_str())));
    assert_eq!(mem.serving_digest("api"), Some(d("api", "v1")), "the previous deployment still serves");
    assert_eq!(mem.locks_held(), 0);
    let list = releases(&mem, &app, "api").await;
    assert_eq!(release_of(&list, &d("api", "v2")).status, ReleaseStatus::Failed, "cancelled: never a target");
}

#[tokio::test]
async fn a_failed_first_deploy_is_failed_and_never_a_rollback_target() {
    let mem = MemoryPlatform::new();
    let app = app();
    mem.inject(Scope::Digest(d("api", "v1")), Fault::Crash);
    let (s, events) = deploy(&mem, &app, &["api"], "v1", &opts()).await;
    assert_eq!(s.outcome, Outcome::Failed, "nothing earlier to go back to: {s:#?}");
    assert_eq!(result(&s, "api"), ServiceResult::Failed);
    assert!(mem.calls(Call::Restore).is_empty(), "nothing to restore");
    assert_eq!(ops_of(&mem, Call::MarkFailed, "api"), [Some(s.release.clone())]);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::RollbackFailed { reason, .. } if reason.contains("nothing to roll back to")))
    );
    assert_eq!(mem.serving_digest("api"), None);

    let (s2, _) = deploy(&mem, &app, &["api"], "v2", &opts()).await;
    assert_eq!(s2.outcome, Outcome::Succeeded);
    let list = releases(&mem, &app, "api").await;
    assert_eq!(release_of(&list, &d("api", "v1")).status, ReleaseStatus::Failed);
    assert!(engine::pick_release(&list, &RollbackTo::Previous).is_err(), "v1 is no target: {list:#?}");
    assert!(engine::pick_release(&list, &RollbackTo::Release(s.release.clone())).is_err());
    let mut o = opts();
    o.services = vec!["api".into()];
    let t = target(&app);
    assert!(engine::rollback(&mem, None, t, &RollbackTo::Previous, &o, &Events::none()).await.is_err());
    on(&mem, "api", "v2");
}

#[tokio::test]
async fn an_explicit_strategy_is_unsupported_before_anything_changes() {
    let mem = MemoryPlatform::new();
    let app = app();
    let t = target(&app);
    let api = t.env.services.get("api").unwrap();
    let images = BTreeMap::from([("api".to_string(), api.image.with_digest(&d("api", "v1")))]);
    let mut o = opts();
    o.strategy = Some(Strategy::Rolling);
    let err = engine::deploy_digests(&mem, None, t, "deploy", &images, &o, &Events::none()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unsupported, "{err}");
    assert!(mem.calls(Call::Deploy).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Locks and races

#[tokio::test]
async fn a_held_lock_is_a_conflict_that_changes_and_restores_nothing() {
    let mem = MemoryPlatform::new();
    let app = app();
    deploy(&mem, &app, &["api"], "v1", &opts()).await;
    mem.inject(Scope::Service("api".into()), Fault::LockHeld { owner: "ci-bot@example.com".into() });
    let mut o = opts();
    o.lock_wait = Duration::from_millis(30);
    let (s, events) = deploy(&mem, &app, &["api"], "v2", &o).await;
    assert_eq!(s.outcome, Outcome::NothingChanged, "{s:#?}");
    assert_eq!(s.failure_kind(), Some(ErrorKind::Conflict));
    assert!(report(&s, "api").error.as_deref().unwrap().contains("lock held by ci-bot@example.com"));
    assert!(mem.calls(Call::Restore).is_empty());
    assert!(restores_started(&events).is_empty());
    assert_eq!(mem.locks_held(), 0);
    on(&mem, "api", "v1");
}

#[tokio::test]
async fn racing_deploys_without_waiting_one_wins_and_nothing_is_restored() {
    let mem = MemoryPlatform::new().with_rollout_time(Duration::from_millis(50));
    let app = app();
    deploy(&mem, &app, &["api"], "v1", &opts()).await;
    let o = opts();
    let ((a, _), (b, _)) = tokio::join!(deploy(&mem, &app, &["api"], "v2", &o), deploy(&mem, &app, &["api"], "v3", &o));
    let outcomes = [a.outcome, b.outcome];
    assert!(outcomes.contains(&Outcome::Succeeded) && outcomes.contains(&Outcome::NothingChanged), "{a:#?} {b:#?}");
    let (winner, loser) = if a.outcome == Outcome::Succeeded { (&a, &b) } else { (&b, &a) };
    assert_eq!(loser.failure_kind(), Some(ErrorKind::Conflict));
    assert!(mem.calls(Call::Restore).is_empty(), "the loser changed nothing and restores nothing");
    let won = report(winner, "api").target_digest.clone();
    assert_eq!(mem.serving_digest("api"), won, "what the successful summary says runs");
    assert_eq!(mem.source_digest("api"), won);
    assert_eq!(releases(&mem, &app, "api").await.first().unwrap().status, ReleaseStatus::Live);
    assert_eq!(mem.locks_held(), 0);
}

#[tokio::test]
async fn a_deploy_that_waited_for_the_lock_restores_the_winners_release_not_the_older_one() {
    let mem = MemoryPlatform::new().with_rollout_time(Duration::from_millis(50));
    let app = app();
    deploy(&mem, &app, &["api"], "v1", &opts()).await;
    mem.inject(Scope::Digest(d("api", "v3")), Fault::Unhealthy);
    let mut o = opts();
    o.lock_wait = Duration::from_secs(5);
    // join! polls the v2 deploy first, so it takes the lock and v3 waits for it.
    let ((a, _), (b, _)) = tokio::join!(deploy(&mem, &app, &["api"], "v2", &o), deploy(&mem, &app, &["api"], "v3", &o));
    assert_eq!(a.outcome, Outcome::Succeeded, "{a:#?}");
    assert_eq!(b.outcome, Outcome::TimedOut, "{b:#?}");
    assert_eq!(result(&b, "api"), ServiceResult::RolledBack);
    assert_eq!(ops_of(&mem, Call::Restore, "api"), [Some(d("api", "v2"))], "v3 put back what ran when it got the lock");
    on(&mem, "api", "v2");
    assert_eq!(report(&b, "api").running_digest, Some(d("api", "v2")));
    let list = releases(&mem, &app, "api").await;
    assert_eq!(release_of(&list, &d("api", "v2")).status, ReleaseStatus::Live, "{list:#?}");
    assert_eq!(release_of(&list, &d("api", "v3")).status, ReleaseStatus::Failed);
    assert_eq!(release_of(&list, &d("api", "v1")).status, ReleaseStatus::Superseded);
}

#[tokio::test]
async fn deploys_that_wait_for_each_other_both_succeed_in_turn() {
    let mem = MemoryPlatform::new().with_rollout_time(Duration::from_millis(30));
    let app = app();
    deploy(&mem, &app, &["api"], "v1", &opts()).await;
    let mut o = opts();
    o.lock_wait = Duration::from_secs(5);
    let ((a, _), (b, _)) = tokio::join!(deploy(&mem, &app, &["api"], "v2", &o), deploy(&mem, &app, &["api"], "v3", &o));
    assert_eq!((a.outcome, b.outcome), (Outcome::Succeeded, Outcome::Succeeded));
    assert_eq!(report(&b, "api").running_digest, Some(d("api", "v3")), "the later one reports what it left");
    on(&mem, "api", "v3");
    let list = releases(&mem, &app, "api").await;
    assert_eq!(release_of(&list, &d("api", "v2")).status, ReleaseStatus::Superseded);
    assert!(mem.calls(Call::Restore).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Manual rollback

#[tokio::test]
async fn manual_rollback_brings_back_digest_and_settings() {
    let mem = MemoryPlatform::new();
    let apps = [app_with("one", 1, "a.js"), app_with("two", 2, "b.js"), app_with("three", 3, "c.js")];
    for (app, (label, sha)) in apps.iter().zip([("r1", "aaaa111"), ("r2", "bbbb222"), ("r3", "cccc333")]) {
        let mut o = opts();
        o.git_sha = Some(sha.to_string());
        let (s, _) = deploy(&mem, app, &["api", "worker"], label, &o).await;
        assert_eq!(s.outcome, Outcome::Succeeded);
    }
    let settings_of = |app: &App, svc: &str| Settings::of(app.environments["staging"].services.get(svc).unwrap());
    // Rolling back with today's manifest (three) still brings back each release's own settings.
    let today = &apps[2];
    let t = target(today);
    let mut o = opts();
    o.services = vec!["api".into(), "worker".into()];
    let list = releases(&mem, today, "api").await;
    let r1 = release_of(&list, &d("api", "r1")).id.clone();

    let steps: [(RollbackTo, &str, usize); 3] = [
        (RollbackTo::Previous, "r2", 1),
        (RollbackTo::Release(r1), "r1", 0),
        (RollbackTo::Sha("cccc".into()), "r3", 2),
    ];
    for (to, label, app_index) in steps {
        let restores = mem.calls(Call::Restore).len();
        let (events, _) = Events::collect();
        let s = engine::rollback(&mem, None, t, &to, &o, &events).await.unwrap();
        assert_eq!(s.outcome, Outcome::Succeeded, "{to:?}: {s:#?}");
        assert_eq!(mem.calls(Call::Restore).len(), restores + 2, "{to:?} goes through restore for both services");
        for svc in ["api", "worker"] {
            on(&mem, svc, label);
            assert_eq!(
                mem.settings(svc).unwrap(),
                settings_of(&apps[app_index], svc),
                "{to:?}: {svc}'s settings of {label}"
            );
            assert_eq!(report(&s, svc).running_digest, Some(d(svc, label)));
        }
        let st = mem.status(t, t.env.services.get("api").unwrap()).await.unwrap();
        assert_eq!(
            st.instances.len(),
            settings_of(&apps[app_index], "api").replicas as usize,
            "{to:?}: replicas of {label}"
        );
    }
    assert!(mem.calls(Call::ReleasePoint).len() >= 6, "each rollback took its points from history");
    assert!(mem.calls(Call::Deploy).len() == 6, "a rollback never deploys: it restores");
}

// ---------------------------------------------------------------------------------------------
// Secrets

#[tokio::test]
async fn secret_values_are_kept_but_never_shown() {
    let mem = MemoryPlatform::new();
    let app = shipit_core::parse(
        &manifest("one", 1, "w.js").replace("[services.web]", "secrets = [\"TOKEN\"]\n\n[services.web]"),
        "shipit.toml",
    )
    .unwrap();
    let t = target(&app);
    let value = "very-secret-value";
    let synced = engine::sync_secrets(&mem, t, &["api".into()], |_| Some(value.to_string().into())).await.unwrap();
    assert_eq!(synced.first().unwrap().names, ["TOKEN"]);
    assert_eq!(mem.secret_value("api", "TOKEN").as_deref(), Some(value));
    let (s, events) = deploy(&mem, &app, &["api"], "v1", &opts()).await;
    assert_eq!(s.outcome, Outcome::Succeeded);
    let api = t.env.services.get("api").unwrap();
    let point = mem.restore_point(t, api).await.unwrap();
    let shown = format!(
        "{events:?} {s:?} {:?} {:?} {point:?} {}",
        mem.service("api"),
        mem.status(t, api).await.unwrap(),
        point.state
    );
    assert!(!shown.contains(value), "a secret value leaked: {shown}");
    assert_eq!(mem.settings("api").unwrap().secrets, ["TOKEN"], "settings name the secret");
}

// ---------------------------------------------------------------------------------------------
// Ctrl-C during a failing health gate, --restart, URLs

/// The first Ctrl-C while a health gate is failing: the new release was applied but never
/// passed, so it is put back (through `restore`) before the command ends, and the summary says
/// it is cancelled and rolled back, with the old release running again.
#[tokio::test]
async fn a_signal_during_a_failing_health_gate_restores_the_previous_release() {
    let mem = MemoryPlatform::new();
    let app = app();
    deploy(&mem, &app, &["api"], "v1", &opts()).await;
    mem.inject(Scope::Digest(d("api", "v2")), Fault::Unhealthy);
    let mut o = opts();
    o.wait_timeout = Duration::from_secs(60);
    let cancel = o.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        cancel.cancel();
    });
    let started = Instant::now();
    let (s, events) = deploy(&mem, &app, &["api"], "v2", &o).await;
    assert!(started.elapsed() < Duration::from_secs(10), "not after the 60 s gate");
    assert_eq!(s.outcome, Outcome::Cancelled, "{s:#?}");
    assert_eq!(engine::exit_code_for_summary(&s), 130);
    assert_eq!(result(&s, "api"), ServiceResult::RolledBack, "{s:#?}");
    assert_eq!(report(&s, "api").running_digest.as_deref(), Some(d("api", "v1").as_str()));
    assert_eq!(report(&s, "api").error_kind, Some(ErrorKind::Cancelled));
    on(&mem, "api", "v1");
    assert_eq!(ops_of(&mem, Call::Restore, "api").len(), 1);
    assert!(events.iter().any(|e| matches!(e, Event::RollbackSucceeded { .. })), "{events:#?}");
    assert_eq!(mem.locks_held(), 0);
    let list = releases(&mem, &app, "api").await;
    assert_eq!(release_of(&list, &d("api", "v2")).status, ReleaseStatus::Failed, "never a rollback target");
}

/// With `--on-failure leave`, a signal mid-gate leaves the release in place (recorded failed).
#[tokio::test]
async fn a_signal_with_on_failure_leave_restores_nothing() {
    let mem = MemoryPlatform::new();
    let app = app();
    deploy(&mem, &app, &["api"], "v1", &opts()).await;
    mem.inject(Scope::Digest(d("api", "v2")), Fault::CancelMidRollout);
    let mut o = opts();
    o.on_failure = OnFailure::Leave;
    let (s, _) = deploy(&mem, &app, &["api"], "v2", &o).await;
    assert_eq!(s.outcome, Outcome::Cancelled);
    assert_eq!(result(&s, "api"), ServiceResult::Cancelled);
    assert!(mem.calls(Call::Restore).is_empty());
}

/// `restart`: the same digest with the same settings still goes through a new deployment and
/// its gate, which picks up the secrets set since; without it, nothing happens.
#[tokio::test]
async fn restart_rolls_out_an_unchanged_digest_with_the_new_secrets() {
    use secrecy::SecretString;
    let mem = MemoryPlatform::new();
    let app = app();
    deploy(&mem, &app, &["api"], "v1", &opts()).await;
    let t = target(&app);
    let api = t.env.services.get("api").unwrap();
    let synced = mem.sync_secrets(t, api, &[("TOKEN".to_string(), SecretString::from("rotated"))]).await.unwrap();
    let version = synced.version.unwrap();

    let (s, _) = deploy(&mem, &app, &["api"], "v1", &opts()).await;
    assert_eq!(result(&s, "api"), ServiceResult::Unchanged, "without restart: nothing to do");
    let live = |mem: &MemoryPlatform| {
        mem.service("api").unwrap().deployments.into_iter().find(|d| d.status == DeploymentStatus::Live).unwrap()
    };
    assert!(live(&mem).secrets_version < version, "the running deployment predates the rotation");

    let mut o = opts();
    o.restart = true;
    let (s, _) = deploy(&mem, &app, &["api"], "v1", &o).await;
    assert_eq!(s.outcome, Outcome::Succeeded, "{s:#?}");
    assert_eq!(result(&s, "api"), ServiceResult::Deployed);
    assert_eq!(live(&mem).secrets_version, version, "the new values reached the running deployment");
    on(&mem, "api", "v1");

    // A restart that fails its gate is put back like any deploy.
    mem.inject(Scope::Digest(d("api", "v1")), Fault::Crash);
    let before = live(&mem).id;
    let (s, _) = deploy(&mem, &app, &["api"], "v1", &o).await;
    assert_eq!(s.outcome, Outcome::RolledBack, "{s:#?}");
    assert_eq!(result(&s, "api"), ServiceResult::RolledBack);
    assert_eq!(ops_of(&mem, Call::Restore, "api").len(), 1);
    assert_eq!(live(&mem).id, before, "the deployment that ran before serves again");
}

/// The summary carries each web service's URL from the platform's status; a worker has none.
#[tokio::test]
async fn the_summary_carries_each_web_services_url() {
    let mem = MemoryPlatform::new();
    let app = app();
    let (s, _) = deploy(&mem, &app, &["api", "web", "worker"], "v1", &opts()).await;
    assert_eq!(s.outcome, Outcome::Succeeded);
    let url = |svc: &str| report(&s, svc).url.clone();
    assert!(url("api").is_some_and(|u| u.starts_with("https://")), "{s:#?}");
    assert!(url("web").is_some_and(|u| u.starts_with("https://")), "{s:#?}");
    assert_eq!(url("worker"), None, "a worker has no URL");
}
