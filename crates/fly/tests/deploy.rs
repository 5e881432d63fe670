//! Deploys against the stateful Fly fake: what runs afterwards, what was sent, what is left behind.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use shipit_core::{ErrorKind, Event, Events, Platform, ReleaseStatus, Strategy};
use shipit_testkit::fly::{Behaviour, FlyFake};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn first_deploy_creates_the_app_and_min_machines_per_region() {
    let fake = FlyFake::start().await;
    let fly = platform(&fake);
    let app = app();
    let t = target(&app, "production");
    let api = service(t, "api");
    let (events, seen) = Events::collect();
    let mut req = request(t, api, "x", 1);
    req.events = events;

    let done = deploy(&fly, &req).await.unwrap();
    assert!(done.changed);
    assert_eq!((done.instances, done.digest.as_str()), (4, digest("x").as_str()));

    let name = fly_app("production", "api");
    assert_eq!(fake.apps(), std::slice::from_ref(&name));
    let machines = fake.machines(&name);
    let mut regions: Vec<&str> = machines.iter().map(|m| m.region.as_str()).collect();
    regions.sort_unstable();
    assert_eq!(regions, ["fra", "fra", "iad", "iad"], "scale.min = 2 in each region");
    for m in &machines {
        assert_eq!(m.digest.as_deref(), Some(digest("x").as_str()));
        assert_eq!(m.image, format!("ghcr.io/acme/shop-api:x@{}", digest("x")));
        assert_eq!(m.metadata.get("shipit_release"), Some(&release(1)));
        assert_eq!(m.metadata.get("shipit_digest"), Some(&digest("x")));
        assert_eq!(m.metadata.get("shipit_git_sha").map(String::as_str), Some("abc0001"));
        assert_eq!(m.metadata.get("shipit_service").map(String::as_str), Some("api"));
        assert_eq!(m.metadata.get("fly_process_group").map(String::as_str), Some("app"));
        let c = &m.config;
        assert_eq!(c["guest"]["memory_mb"], 512);
        assert_eq!(c["checks"]["http"]["path"], "/api/health");
        assert_eq!(c["checks"]["http"]["port"], 4000);
        assert_eq!(c["services"][0]["internal_port"], 4000);
        assert_eq!(c["restart"]["policy"], "on-failure");
        assert_eq!(c["env"]["NODE_ENV"], "production");
        // Secrets and database URLs are app secrets, never in the config.
        assert!(c["env"].get("STRIPE_SECRET_KEY").is_none() && c["env"].get("DATABASE_URL").is_none());
    }
    let healthy = seen.lock().unwrap().iter().filter(|e| matches!(e, Event::InstanceHealthy { .. })).count();
    assert_eq!(healthy, 4, "every machine passed its gate");
    assert!(fake.leases_held().is_empty());
}

#[tokio::test]
async fn service_references_and_commands_reach_the_machine_config() {
    let fake = FlyFake::start().await;
    let fly = platform(&fake);
    let app = app();
    let t = target(&app, "staging");
    deploy(&fly, &request(t, service(t, "web"), "w", 1)).await.unwrap();
    deploy(&fly, &request(t, service(t, "worker"), "k", 1)).await.unwrap();
    let web = fake.machines(&fly_app("staging", "web"));
    assert_eq!(web.len(), 1);
    assert_eq!(web[0].config["env"]["API_URL"], "https://shop-api-staging.fly.dev");
    let worker = fake.machines(&fly_app("staging", "worker"));
    assert_eq!(worker[0].config["init"]["cmd"], serde_json::json!(["node", "worker.js"]));
    assert!(worker[0].config.get("services").is_none(), "a worker has no services");
}

#[tokio::test]
async fn redeploying_the_running_digest_changes_nothing() {
    let fake = FlyFake::start().await;
    let fly = platform(&fake);
    let app = app();
    let t = target(&app, "staging");
    let api = service(t, "api");
    deploy(&fly, &request(t, api, "x", 1)).await.unwrap();
    let before = fake.requests().len();

    let again = deploy(&fly, &request(t, api, "x", 2)).await.unwrap();
    assert!(!again.changed);
    let after = fake.requests();
    let new = &after[before..];
    assert!(new.iter().all(|r| r.method == "GET"), "only reads: {new:?}");
    assert!(
        fake.machines(&fly_app("staging", "api")).iter().all(|m| m.metadata.get("shipit_release") == Some(&release(1)))
    );
}

#[tokio::test]
async fn an_update_rolls_every_machine_under_leases() {
    let fake = FlyFake::start().await;
    let fly = platform(&fake);
    let app = app();
    let t = target(&app, "production");
    let api = service(t, "api");
    deploy(&fly, &request(t, api, "x", 1)).await.unwrap();
    let before = fake.requests().len();
    let name = fly_app("production", "api");

    let (events, seen) = Events::collect();
    let mut req = request(t, api, "y", 2);
    req.events = events;
    let done = deploy(&fly, &req).await.unwrap();
    assert!(done.changed);
    assert_eq!(done.instances, 4);

    let machines = fake.machines(&name);
    assert_eq!(machines.len(), 4, "no machine created or lost");
    for m in &machines {
        assert_eq!(m.digest.as_deref(), Some(digest("y").as_str()));
        assert_eq!(m.metadata.get("shipit_release"), Some(&release(2)));
        assert_eq!(fake.versions(&name, &m.id).len(), 2, "one new version per machine");
    }
    assert!(fake.leases_held().is_empty(), "every lease released");

    let reqs = fake.requests();
    let new = &reqs[before..];
    let ups = updates(new);
    assert_eq!(ups.len(), 4);
    assert!(ups.iter().all(|r| r.has_nonce), "updates carry the lease nonce");
    // Every lease is taken before the first machine changes.
    let first_update = new.iter().position(|r| updates(std::slice::from_ref(r)).len() == 1).unwrap();
    let last_lease = new.iter().rposition(|r| r.method == "POST" && r.path.ends_with("/lease")).unwrap();
    assert!(last_lease < first_update);
    let deletes = new.iter().filter(|r| r.method == "DELETE" && r.path.ends_with("/lease") && r.has_nonce).count();
    assert_eq!(deletes, 4);
    let events = seen.lock().unwrap();
    assert_eq!(events.iter().filter(|e| matches!(e, Event::InstanceUpdated { .. })).count(), 4);
    assert!(
        events.iter().any(|e| matches!(e, Event::Step { message, .. } if message.starts_with("acquiring lease on")))
    );
}

#[tokio::test]
async fn immediate_updates_all_then_gates_all() {
    let fake = FlyFake::start().await;
    let fly = platform(&fake);
    let app = app();
    let t = target(&app, "production");
    let api = service(t, "api");
    deploy(&fly, &request(t, api, "x", 1)).await.unwrap();
    let before = fake.requests().len();
    let mut req = request(t, api, "y", 2);
    req.strategy = Some(Strategy::Immediate);
    deploy(&fly, &req).await.unwrap();
    let reqs = fake.requests();
    let new = &reqs[before..];
    let positions: Vec<usize> =
        new.iter().enumerate().filter(|(_, r)| updates(std::slice::from_ref(*r)).len() == 1).map(|(i, _)| i).collect();
    let first_wait = new.iter().position(|r| r.path.ends_with("/wait")).unwrap();
    assert_eq!(positions.len(), 4);
    assert!(positions.iter().all(|p| *p < first_wait), "every update is sent before any wait");
}

#[tokio::test]
async fn failing_checks_time_out_naming_the_check() {
    let fake = FlyFake::start().await;
    let fly = platform(&fake);
    let app = app();
    let t = target(&app, "staging");
    let api = service(t, "api");
    deploy(&fly, &request(t, api, "x", 1)).await.unwrap();
    fake.set_behaviour(&digest("y"), Behaviour::FailingChecks);

    let mut req = request(t, api, "y", 2);
    req.wait_timeout = Duration::from_millis(300);
    let started = Instant::now();
    let err = deploy(&fly, &req).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout, "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(err.message.contains("\"http\"") && err.message.contains("critical"), "{err}");
    assert!(err.message.contains("503"), "the check's output is shown: {err}");
    let digests: Vec<_> = fake.machines(&fly_app("staging", "api")).into_iter().map(|m| m.digest).collect();
    assert_eq!(
        digests.iter().filter(|d| d.as_deref() == Some(digest("y").as_str())).count(),
        1,
        "rolling stops at the first batch"
    );
    assert!(fake.leases_held().is_empty());
}

#[tokio::test]
async fn a_flapping_check_does_not_pass_the_gate() {
    let fake = FlyFake::start().await;
    let fly = platform(&fake);
    let app = app();
    let t = target(&app, "staging");
    let web = service(t, "web");
    fake.set_behaviour(&digest("f"), Behaviour::Flapping);
    let mut req = request(t, web, "f", 1);
    req.wait_timeout = Duration::from_millis(300);
    assert_eq!(deploy(&fly, &req).await.unwrap_err().kind, ErrorKind::Timeout);
}

#[tokio::test]
async fn a_slow_start_still_passes() {
    let fake = FlyFake::start().await;
    let fly = platform(&fake);
    let app = app();
    let t = target(&app, "staging");
    fake.set_behaviour(&digest("s"), Behaviour::SlowStart(3));
    deploy(&fly, &request(t, service(t, "web"), "s", 1)).await.unwrap();
}

#[tokio::test]
async fn a_crash_fails_at_once() {
    let fake = FlyFake::start().await;
    let fly = platform(&fake);
    let app = app();
    let t = target(&app, "staging");
    let api = service(t, "api");
    deploy(&fly, &request(t, api, "x", 1)).await.unwrap();
    fake.set_behaviour(&digest("y"), Behaviour::Crash);

    let mut req = request(t, api, "y", 2);
    req.wait_timeout = Duration::from_secs(30);
    let started = Instant::now();
    let err = deploy(&fly, &req).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unhealthy, "{err}");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert!(err.message.contains("exited with code 1"), "{err}");
    assert!(fake.leases_held().is_empty());
}

#[tokio::test]
async fn a_lease_held_by_someone_else_is_a_conflict_and_nothing_changes() {
    let fake = FlyFake::start().await;
    let fly = platform(&fake);
    let app = app();
    let t = target(&app, "staging");
    let api = service(t, "api");
    deploy(&fly, &request(t, api, "x", 1)).await.unwrap();
    let name = fly_app("staging", "api");
    let second = fake.machines(&name)[1].id.clone();
    fake.hold_lease(&name, &second, "alice@acme.dev").unwrap();
    let before = fake.requests().len();

    let err = deploy(&fly, &request(t, api, "y", 2)).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Conflict);
    assert!(err.message.contains("deploy in progress by alice@acme.dev"), "{err}");
    assert!(fake.machines(&name).iter().all(|m| m.digest.as_deref() == Some(digest("x").as_str())));
    assert!(updates(&fake.requests()[before..]).is_empty(), "no update was sent");
    let held = fake.leases_held();
    assert_eq!(held.len(), 1, "only alice's lease remains: {held:?}");
    assert_eq!(held[0].2, "alice@acme.dev");
}

#[tokio::test]
async fn lock_wait_waits_for_the_other_deploy() {
    let fake = FlyFake::start().await;
    let fly = platform(&fake);
    let app = app();
    let t = target(&app, "staging");
    let api = service(t, "api");
    deploy(&fly, &request(t, api, "x", 1)).await.unwrap();
    let name = fly_app("staging", "api");
    let first = fake.machines(&name)[0].id.clone();
    fake.hold_lease(&name, &first, "alice@acme.dev").unwrap();

    let mut req = request(t, api, "y", 2);
    req.lock_wait = Duration::from_secs(5);
    let other_deploy_ends = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(fake.release_foreign_lease(&name, &first));
    };
    let (done, ()) = tokio::join!(deploy(&fly, &req), other_deploy_ends);
    assert!(done.unwrap().changed);
    assert!(fake.machines(&name).iter().all(|m| m.digest.as_deref() == Some(digest("y").as_str())));
    assert!(fake.leases_held().is_empty());
}

#[tokio::test]
async fn cancelling_mid_rollout_releases_leases_and_leaves_known_images() {
    let fake = FlyFake::start().await;
    let fly = platform(&fake);
    let app = app();
    let t = target(&app, "production");
    let api = service(t, "api");
    deploy(&fly, &request(t, api, "x", 1)).await.unwrap();

    let cancel = CancellationToken::new();
    let on_update = cancel.clone();
    let mut req = request(t, api, "y", 2);
    req.cancel = cancel;
    req.events = Events::new(move |e| {
        if matches!(e, Event::InstanceUpdated { .. }) {
            on_update.cancel();
        }
    });
    let err = deploy(&fly, &req).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Cancelled, "{err}");
    // The background release of a dropped guard is not needed: the leases are already gone.
    assert!(fake.leases_held().is_empty());
    let machines = fake.machines(&fly_app("production", "api"));
    let on = |label: &str| machines.iter().filter(|m| m.digest.as_deref() == Some(digest(label).as_str())).count();
    assert_eq!(on("x") + on("y"), 4, "every machine runs x or y");
    assert!(on("x") >= 1 && on("y") >= 1, "stopped part-way: x {} y {}", on("x"), on("y"));
}

#[tokio::test]
async fn rollback_marks_the_failed_release_and_restores_the_previous() {
    let fake = FlyFake::start().await;
    let fly = platform(&fake);
    let app = app();
    let t = target(&app, "staging");
    let api = service(t, "api");
    deploy(&fly, &request(t, api, "x", 1)).await.unwrap();
    fake.set_behaviour(&digest("y"), Behaviour::FailingChecks);
    let mut bad = request(t, api, "y", 2);
    bad.wait_timeout = Duration::from_millis(200);
    assert!(deploy(&fly, &bad).await.is_err());

    let history = fly.releases(t, api).await.unwrap();
    let previous = history.iter().find(|r| r.id == release(1)).unwrap().clone();
    let back = request(t, api, "x", 2);
    let done = rollback(&fly, &back, &previous).await.unwrap();
    assert_eq!(done.digest, digest("x"));

    let name = fly_app("staging", "api");
    for m in fake.machines(&name) {
        assert_eq!(m.digest.as_deref(), Some(digest("x").as_str()));
        assert_eq!(m.metadata.get("shipit_release"), Some(&release(1)));
    }
    assert!(fake.machines(&name).iter().any(|m| m.metadata.get("shipit_failed") == Some(&release(2))));
    let history = fly.releases(t, api).await.unwrap();
    let status: Vec<(&str, ReleaseStatus)> = history.iter().map(|r| (r.id.as_str(), r.status)).collect();
    assert_eq!(status, [(release(2).as_str(), ReleaseStatus::Failed), (release(1).as_str(), ReleaseStatus::Live)]);
    assert!(fake.leases_held().is_empty());

    // The next deploy keeps the record; the restored release is then superseded, not failed.
    deploy(&fly, &request(t, api, "z", 3)).await.unwrap();
    let history = fly.releases(t, api).await.unwrap();
    let status: Vec<(&str, ReleaseStatus)> = history.iter().map(|r| (r.id.as_str(), r.status)).collect();
    assert_eq!(
        status,
        [
            (release(3).as_str(), ReleaseStatus::Live),
            (release(2).as_str(), ReleaseStatus::Failed),
            (release(1).as_str(), ReleaseStatus::Superseded),
        ]
    );
    assert_eq!(history[0].git_sha.as_deref(), Some("abc0003"));
    assert!(history.iter().all(|r| r.created_at.is_some()));
}

#[tokio::test]
async fn rollback_never_creates_an_app() {
    let fake = FlyFake::start().await;
    let fly = platform(&fake);
    let app = app();
    let t = target(&app, "staging");
    let api = service(t, "api");
    let to = shipit_core::Release::new(release(1), "api", ReleaseStatus::Superseded);
    let err = rollback(&fly, &request(t, api, "x", 1), &to).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert!(fake.apps().is_empty());
}

#[tokio::test]
async fn no_create_refuses_a_missing_app() {
    let fake = FlyFake::start().await;
    let fly = platform(&fake);
    let app = app();
    let t = target(&app, "staging");
    let mut req = request(t, service(t, "api"), "x", 1);
    req.create = false;
    let err = deploy(&fly, &req).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert!(err.message.contains("shop-api-staging does not exist on Fly (and --no-create was given)"), "{err}");
    assert!(fake.apps().is_empty());
}

#[tokio::test]
async fn machines_the_manifest_lacks_are_created_after_the_update() {
    let fake = FlyFake::start().await;
    let fly = platform(&fake);
    let app = app();
    let staging = target(&app, "staging");
    let api = service(staging, "api");
    deploy(&fly, &request(staging, api, "x", 1)).await.unwrap();
    let name = fly_app("staging", "api");
    let seeded = fake.seed_machine(
        &name,
        "iad",
        serde_json::json!({"image": "ghcr.io/acme/shop-api@sha256:00", "metadata": {"fly_process_group": "other"}}),
    );
    let done = deploy(&fly, &request(staging, api, "y", 2)).await.unwrap();
    assert_eq!(done.instances, 2, "the other process group is not ours");
    let other = fake.machines(&name).into_iter().find(|m| m.id == seeded).unwrap();
    assert_eq!(other.digest.as_deref(), Some("sha256:00"), "left alone");
}

#[tokio::test]
async fn status_reports_what_runs() {
    let fake = FlyFake::start().await;
    let fly = Arc::new(platform(&fake));
    let app = app();
    let t = target(&app, "staging");
    let api = service(t, "api");
    let missing = fly.status(t, api).await.unwrap();
    assert!(!missing.exists);
    deploy(&fly, &request(t, api, "x", 1)).await.unwrap();
    let st = fly.status(t, api).await.unwrap();
    assert!(st.exists && st.healthy(), "{st:?}");
    assert_eq!(st.digest.as_deref(), Some(digest("x").as_str()));
    assert_eq!(st.release.as_deref(), Some(release(1).as_str()));
    assert_eq!(st.instances.len(), 2);
    assert!(
        st.instances
            .iter()
            .all(|i| i.region.as_deref() == Some("iad") && i.state == shipit_core::InstanceState::Started)
    );
}

#[tokio::test]
async fn machines_shipit_did_not_make_are_unmanaged_releases() {
    let fake = FlyFake::start().await;
    let fly = platform(&fake);
    let app = app();
    let t = target(&app, "staging");
    let api = service(t, "api");
    let d = digest("hand-made");
    fake.seed_machine(
        &fly_app("staging", "api"),
        "iad",
        serde_json::json!({"image": format!("ghcr.io/acme/shop-api@{d}")}),
    );
    let releases = fly.releases(t, api).await.unwrap();
    assert_eq!(releases.len(), 1);
    let hex = d.trim_start_matches("sha256:");
    assert_eq!(releases[0].id, format!("unmanaged-{}", &hex[..12]));
    assert_eq!(releases[0].status, ReleaseStatus::Live);
    // And a deploy over it works, keeping the unmanaged release as a rollback target.
    deploy(&fly, &request(t, api, "x", 1)).await.unwrap();
    let releases = fly.releases(t, api).await.unwrap();
    assert_eq!(releases.len(), 2);
    assert!(releases[1].is_rollback_target(), "{releases:?}");
}

#[tokio::test]
async fn leases_are_refreshed_while_a_rollout_outlives_half_their_ttl() {
    let fake = FlyFake::start().await;
    let fly = builder(&fake)
        .token(secrecy::SecretString::from(shipit_testkit::fly::TOKEN.to_string()))
        .lease_ttl(Duration::from_millis(200))
        .build()
        .unwrap();
    let app = app();
    let t = target(&app, "staging");
    let api = service(t, "api");
    deploy(&fly, &request(t, api, "x", 1)).await.unwrap();
    fake.set_behaviour(&digest("y"), Behaviour::FailingChecks);
    let mut req = request(t, api, "y", 2);
    req.wait_timeout = Duration::from_millis(450);
    assert!(deploy(&fly, &req).await.is_err());
    let refreshes = lease_posts(&fake.requests()).into_iter().filter(|r| r.has_nonce).count();
    assert!(refreshes >= 2, "{refreshes} refreshes");
    assert!(fake.leases_held().is_empty());
}

#[tokio::test]
async fn an_abandoned_deploy_still_releases_its_leases() {
    let fake = FlyFake::start().await;
    let fly = platform(&fake);
    let app = app();
    let t = target(&app, "staging");
    let api = service(t, "api");
    deploy(&fly, &request(t, api, "x", 1)).await.unwrap();
    fake.set_behaviour(&digest("y"), Behaviour::FailingChecks);
    let mut req = request(t, api, "y", 2);
    req.wait_timeout = Duration::from_secs(30);
    // The caller gives up on the future mid-gate: it is dropped, not cancelled.
    assert!(tokio::time::timeout(Duration::from_millis(200), deploy(&fly, &req)).await.is_err());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(fake.leases_held().is_empty(), "{:?}", fake.leases_held());
}

/// `POST /v1/apps/{app}/ip_assignments`, in order.
fn ip_posts(requests: &[shipit_testkit::fly::RecordedRequest], app: &str) -> usize {
    let path = format!("/v1/apps/{app}/ip_assignments");
    requests.iter().filter(|r| r.method == "POST" && r.path == path).count()
}

fn kinds(fake: &FlyFake, app: &str) -> Vec<String> {
    fake.ip_assignments(app).into_iter().map(|ip| ip.kind).collect()
}

fn warnings(seen: &std::sync::Mutex<Vec<Event>>) -> Vec<String> {
    let seen = seen.lock().unwrap();
    seen.iter()
        .filter_map(|e| if let Event::Warning { message, .. } = e { Some(message.clone()) } else { None })
        .collect()
}

#[tokio::test]
async fn a_first_deploy_of_a_web_service_allocates_a_shared_ipv4_and_an_ipv6_once() {
    let fake = FlyFake::start().await;
    let fly = platform(&fake);
    let app = app();
    let t = target(&app, "staging");
    let api = service(t, "api");
    let name = fly_app("staging", "api");
    let (events, seen) = Events::collect();
    let mut req = request(t, api, "x", 1);
    req.events = events;
    deploy(&fly, &req).await.unwrap();

    assert_eq!(kinds(&fake, &name), ["shared_v4", "v6"]);
    let reqs = fake.requests();
    assert_eq!(ip_posts(&reqs, &name), 2, "each allocated exactly once");
    // After the app exists, before the machines are read for the rollout.
    let create_app = reqs.iter().position(|r| r.method == "POST" && r.path == "/v1/apps").unwrap();
    let list = reqs.iter().position(|r| r.method == "GET" && r.path.ends_with("/ip_assignments")).unwrap();
    let first_machine = reqs.iter().position(|r| r.method == "POST" && r.path.ends_with("/machines")).unwrap();
    assert!(create_app < list && list < first_machine, "{reqs:#?}");
    assert!(warnings(&seen).is_empty(), "{:?}", warnings(&seen));
    let steps: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| if let Event::Step { message, .. } = e { Some(message.clone()) } else { None })
        .collect();
    assert!(steps.iter().any(|s| s.starts_with("allocated a shared IPv4 address to shop-api-staging: ")), "{steps:?}");
    assert!(
        steps.iter().any(|s| s.starts_with("allocated a dedicated IPv6 address to shop-api-staging: ")),
        "{steps:?}"
    );

    // A second deploy reads them and allocates nothing.
    let before = fake.requests().len();
    deploy(&fly, &request(t, api, "y", 2)).await.unwrap();
    let new = &fake.requests()[before..];
    assert_eq!(ip_posts(new, &name), 0, "{new:#?}");
    assert_eq!(new.iter().filter(|r| r.path.ends_with("/ip_assignments")).count(), 1, "one read");
    assert_eq!(kinds(&fake, &name), ["shared_v4", "v6"]);
}

#[tokio::test]
async fn an_app_that_has_public_addresses_is_left_alone() {
    let fake = FlyFake::start().await;
    let fly = platform(&fake);
    let app = app();
    let t = target(&app, "staging");
    let name = fly_app("staging", "api");
    // Allocated by hand: a dedicated IPv4 counts as much as a shared one.
    fake.seed_ip(&name, "v4").unwrap();
    fake.seed_ip(&name, "v6").unwrap();
    deploy(&fly, &request(t, service(t, "api"), "x", 1)).await.unwrap();
    assert_eq!(ip_posts(&fake.requests(), &name), 0);
    assert_eq!(kinds(&fake, &name), ["v4", "v6"]);

    // Only what is missing: an app with a Flycast address and an IPv4 gets an IPv6 alone.
    let web = fly_app("staging", "web");
    fake.seed_ip(&web, "private_v6").unwrap();
    fake.seed_ip(&web, "shared_v4").unwrap();
    deploy(&fly, &request(t, service(t, "web"), "w", 1)).await.unwrap();
    assert_eq!(ip_posts(&fake.requests(), &web), 1);
    assert_eq!(kinds(&fake, &web), ["private_v6", "shared_v4", "v6"]);
}

#[tokio::test]
async fn an_app_made_by_secrets_sync_gets_its_addresses_on_the_first_deploy() {
    let fake = FlyFake::start().await;
    let fly = platform(&fake);
    let app = app();
    let t = target(&app, "staging");
    let api = service(t, "api");
    let name = fly_app("staging", "api");
    let values = [("STRIPE_SECRET_KEY".to_string(), secrecy::SecretString::from("sk".to_string()))];
    fly.sync_secrets(t, api, &values).await.unwrap();
    assert_eq!(fake.apps(), std::slice::from_ref(&name));
    assert!(fake.ip_assignments(&name).is_empty(), "secrets sync allocates nothing");
    deploy(&fly, &request(t, api, "x", 1)).await.unwrap();
    assert_eq!(kinds(&fake, &name), ["shared_v4", "v6"]);
}

#[tokio::test]
async fn a_worker_gets_no_addresses() {
    let fake = FlyFake::start().await;
    let fly = platform(&fake);
    let app = app();
    let t = target(&app, "staging");
    let name = fly_app("staging", "worker");
    deploy(&fly, &request(t, service(t, "worker"), "k", 1)).await.unwrap();
    assert!(fake.ip_assignments(&name).is_empty());
    assert!(fake.requests().iter().all(|r| !r.path.contains("/ip_assignments")), "not even read");
}

#[tokio::test]
async fn a_refused_allocation_warns_with_the_commands_and_the_deploy_goes_on() {
    for status in [403, 401] {
        let fake = FlyFake::start().await;
        fake.refuse_ip_allocation(Some(status));
        let fly = platform(&fake);
        let app = app();
        let t = target(&app, "staging");
        let api = service(t, "api");
        let name = fly_app("staging", "api");
        let (events, seen) = Events::collect();
        let mut req = request(t, api, "x", 1);
        req.events = events;
        let done = deploy(&fly, &req).await.unwrap();
        assert!(done.changed, "{status}: the deploy still succeeds");
        assert_eq!(fake.machines(&name).len(), 2, "{status}");
        assert!(fake.ip_assignments(&name).is_empty());
        // Refused once: the second address is not asked for, the warning names both commands.
        assert_eq!(ip_posts(&fake.requests(), &name), 1, "{status}");
        let w = warnings(&seen);
        assert_eq!(w.len(), 1, "{status}: {w:?}");
        assert!(
            w[0].contains(
                "`fly ips allocate-v4 --shared -a shop-api-staging` and `fly ips allocate-v6 -a shop-api-staging`"
            ),
            "{w:?}"
        );
        assert!(w[0].contains(&format!("Fly refused it with this token ({status}: ")), "{w:?}");
        // Even a 401 here does not stop the client: it is about addresses, not the token.
        assert!(fly.status(t, api).await.unwrap().healthy(), "{status}");

        // Allowed again, the next deploy allocates what is still missing.
        fake.refuse_ip_allocation(None);
        deploy(&fly, &request(t, api, "y", 2)).await.unwrap();
        assert_eq!(kinds(&fake, &name), ["shared_v4", "v6"], "{status}");
    }
}

#[tokio::test]
async fn an_allocation_whose_answer_was_lost_is_looked_up_not_sent_twice() {
    let fake = FlyFake::start().await;
    fake.inject(shipit_testkit::fly::Fault::LostResponse {
        method: Some("POST".into()),
        path_contains: "/ip_assignments".into(),
        status: 503,
        times: 1,
    });
    let fly = platform(&fake);
    let app = app();
    let t = target(&app, "staging");
    let name = fly_app("staging", "api");
    let (events, seen) = Events::collect();
    let mut req = request(t, service(t, "api"), "x", 1);
    req.events = events;
    deploy(&fly, &req).await.unwrap();
    assert_eq!(kinds(&fake, &name), ["shared_v4", "v6"], "one of each, no duplicate");
    assert_eq!(ip_posts(&fake.requests(), &name), 2);
    assert!(warnings(&seen).is_empty(), "{:?}", warnings(&seen));
}

#[tokio::test]
async fn failing_address_calls_warn_and_the_deploy_goes_on() {
    let fake = FlyFake::start().await;
    fake.inject(shipit_testkit::fly::Fault::Status {
        method: None,
        path_contains: "/ip_assignments".into(),
        status: 503,
        times: 100,
        retry_after: None,
    });
    let fly = platform(&fake);
    let app = app();
    let t = target(&app, "staging");
    let name = fly_app("staging", "api");
    let (events, seen) = Events::collect();
    let mut req = request(t, service(t, "api"), "x", 1);
    req.events = events;
    assert!(deploy(&fly, &req).await.unwrap().changed);
    let w = warnings(&seen);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].starts_with("could not read the IP addresses of shop-api-staging: Fly API error 503"), "{w:?}");
    assert!(w[0].contains("`fly ips allocate-v4 --shared -a shop-api-staging`"), "{w:?}");
    let reads = fake.requests().iter().filter(|r| r.path.ends_with("/ip_assignments")).count();
    assert_eq!(reads, 5, "one read, retried by the policy, and nothing allocated");
    assert!(fake.ip_assignments(&name).is_empty());
    assert_eq!(fake.machines(&name).len(), 2, "the rollout went on");
}
