//! Deploys on Render as a user checks them through the fake's state: a first deploy is one
//! create (never a second deploy POST), an update PATCHes only what differs and POSTs one
//! digest-pinned deploy, a queued deploy is found and followed, failures put the previous
//! deploy and the image setting back, and settings Render cannot change are refused up front.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::time::{Duration, Instant};

use harness::{app, deploy, deploy_with, digest, opts, report, since, writes};
use shipit_core::engine::{Outcome, ServiceResult};
use shipit_core::{App, ErrorKind, Events};
use shipit_testkit::render::{Behaviour, RenderFake};

/// A web service (`api`) and a worker, on Render in `region`; `api_extra` and `worker_extra`
/// are appended to their tables.
fn shop(region: &str, api_extra: &str, worker_extra: &str) -> App {
    shop_with(region, api_extra, worker_extra, "")
}

/// [`shop`] with `render_extra` after `[targets.render]`.
fn shop_with(region: &str, api_extra: &str, worker_extra: &str, render_extra: &str) -> App {
    app(&format!(
        r#"app = "shop"
[registry]
host = "ghcr.io"
namespace = "acme"

[services.api]
port = 8080
{api_extra}

[services.worker]
{worker_extra}

[environments.staging]
target = "render"

[targets.render]
region = "{region}"
{render_extra}
"#
    ))
}

fn basic() -> App {
    shop("oregon", "health = { path = \"/healthz\" }", "command = [\"node\", \"worker.js\"]")
}

async fn start() -> (RenderFake, String) {
    let fake = RenderFake::start().await;
    let owner = fake.seed_pro_owner("acme");
    (fake, owner)
}

#[tokio::test]
async fn first_deploy_is_one_create_and_waits_on_its_deploy() {
    let (fake, owner) = start().await;
    let platform = harness::platform(&fake);
    let app = basic();
    let s = deploy(&platform, &app, "staging", &["api"], "v1").await;
    assert_eq!(s.outcome, Outcome::Succeeded, "{s:?}");

    let svc = fake.service_by_name(&owner, "shop-api-staging").expect("created");
    assert_eq!(fake.creates(), 1);
    assert_eq!(fake.deploy_posts(&svc.id), 0, "the create started the first deploy: no deploy POST");
    let log = fake.requests();
    assert_eq!(log.iter().filter(|r| r.method == "POST" && r.path == "/v1/services").count(), 1);
    assert!(!log.iter().any(|r| r.method == "POST" && r.path.ends_with("/deploys")), "{:?}", writes(&log));

    let deploys = fake.deploys(&svc.id);
    assert_eq!(deploys.len(), 1, "{deploys:?}");
    let first = &deploys[0];
    assert_eq!(first.status, "live");
    // The create's deploy is the one waited on.
    let polled = format!("/v1/services/{}/deploys/{}", svc.id, first.id);
    assert!(log.iter().any(|r| r.method == "GET" && r.path == polled), "polled {polled}");
    // `repo:<release id>.<sha>@<digest>`.
    let want = format!("ghcr.io/acme/shop-api:{}.{}@{}", s.release, harness::SHA, digest("api", "v1"));
    assert_eq!(first.image_ref, want);
    assert_eq!(fake.live_deploy(&svc.id).unwrap().image_ref, want);
    assert_eq!(svc.image_path, want, "the image setting is pinned too");
    assert_eq!(report(&s, "api").running_digest.as_deref(), Some(digest("api", "v1").as_str()));
}

#[tokio::test]
async fn update_patches_only_what_differs_and_posts_one_pinned_deploy() {
    let (fake, owner) = start().await;
    let platform = harness::platform(&fake);
    deploy(&platform, &basic(), "staging", &["api", "worker"], "v1").await;
    let api = fake.service_by_name(&owner, "shop-api-staging").unwrap();
    let worker = fake.service_by_name(&owner, "shop-worker-staging").unwrap();

    // A new digest, same settings: the image setting moves, then one deploy of it.
    let from = fake.requests().len();
    let s = deploy(&platform, &basic(), "staging", &["api"], "v2").await;
    assert_eq!(s.outcome, Outcome::Succeeded, "{s:?}");
    let w = writes(&since(&fake, from));
    assert_eq!(
        w,
        [format!("PATCH /v1/services/{}", api.id), format!("POST /v1/services/{}/deploys", api.id)],
        "only the image setting and one deploy"
    );
    assert_eq!(fake.deploy_posts(&api.id), 1);
    let want = format!("ghcr.io/acme/shop-api:{}.{}@{}", s.release, harness::SHA, digest("api", "v2"));
    assert_eq!(fake.live_deploy(&api.id).unwrap().image_ref, want, "imageUrl pinned by digest");
    assert_eq!(fake.service(&api.id).unwrap().image_path, want);

    // What runs, with the same settings: not a single write.
    let from = fake.requests().len();
    let again = deploy(&platform, &basic(), "staging", &["worker"], "v1").await;
    assert_eq!(report(&again, "worker").result, ServiceResult::Unchanged, "{again:?}");
    assert!(writes(&since(&fake, from)).is_empty(), "{:?}", writes(&since(&fake, from)));

    // The same digests, another plan, health path and command: one PATCH and one deploy each,
    // and the deploys run with them.
    let changed = shop_with(
        "oregon",
        "health = { path = \"/ready\" }",
        "command = [\"node\", \"worker.js\", \"--fast\"]",
        "[targets.render.services.api]\nplan = \"pro plus\"",
    );
    let from = fake.requests().len();
    let s = deploy(&platform, &changed, "staging", &["api"], "v2").await;
    assert_eq!(report(&s, "api").result, ServiceResult::Deployed, "{s:?}");
    let s = deploy(&platform, &changed, "staging", &["worker"], "v1").await;
    assert_eq!(report(&s, "worker").result, ServiceResult::Deployed, "{s:?}");
    let w = writes(&since(&fake, from));
    let patches = w.iter().filter(|x| x.starts_with("PATCH")).count();
    let posts = w.iter().filter(|x| x.ends_with("/deploys")).count();
    assert_eq!((patches, posts), (2, 2), "one PATCH and one deploy per service: {w:?}");
    let api_now = fake.service(&api.id).unwrap();
    assert_eq!(api_now.plan, "pro_plus");
    assert_eq!(api_now.health_check_path.as_deref(), Some("/ready"));
    let live = fake.live_deploy(&api.id).unwrap();
    assert_eq!((live.plan.as_str(), live.health_check_path.as_deref()), ("pro_plus", Some("/ready")));
    assert_eq!(live.image_sha, digest("api", "v2"));
    let worker_live = fake.live_deploy(&worker.id).unwrap();
    assert_eq!(worker_live.docker_command, "node worker.js --fast");
    assert_eq!(fake.service(&worker.id).unwrap().docker_command, "node worker.js --fast");
}

#[tokio::test]
async fn a_queued_deploy_is_found_and_followed_never_posted_twice() {
    let (fake, owner) = start().await;
    let platform = harness::platform(&fake);
    deploy(&platform, &basic(), "staging", &["api"], "v1").await;
    let api = fake.service_by_name(&owner, "shop-api-staging").unwrap();
    // Render starts a deploy of its own (of the current image setting): ours queues behind it.
    let theirs = fake.start_deploy(&api.id, "deployed_by_render").unwrap();
    let (events, seen) = Events::collect();
    let s = deploy_with(&platform, &basic(), "staging", &["api"], "v2", &opts(), &events).await.unwrap();
    assert_eq!(s.outcome, Outcome::Succeeded, "{s:?}");
    assert_eq!(fake.deploy_posts(&api.id), 1, "one deploy POST, answered 202");
    let statuses: Vec<u16> = fake
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/deploys"))
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [202]);
    let live = fake.live_deploy(&api.id).unwrap();
    assert_eq!(live.image_sha, digest("api", "v2"));
    let deploys = fake.deploys(&api.id);
    assert_eq!(deploys.len(), 3, "the first, Render's and ours: {deploys:?}");
    let render_side = deploys.iter().find(|d| d.id == theirs).unwrap();
    assert_eq!(render_side.status, "deactivated", "Render's ran first, then ours replaced it");
    assert!(harness::shown(&seen).contains("queued behind another one"));
}

async fn failing(behaviour: Behaviour) {
    let (fake, owner) = start().await;
    let platform = harness::platform(&fake);
    deploy(&platform, &basic(), "staging", &["api"], "v1").await;
    let api = fake.service_by_name(&owner, "shop-api-staging").unwrap();
    let before = fake.live_deploy(&api.id).unwrap();
    let setting_before = api.image_path.clone();
    fake.set_behaviour(&digest("api", "v2"), behaviour);
    fake.set_unhealthy_observations(4);
    let mut o = opts();
    o.wait_timeout = Duration::from_secs(60);
    let t0 = Instant::now();
    let s = deploy_with(&platform, &basic(), "staging", &["api"], "v2", &o, &Events::none()).await.unwrap();
    assert!(t0.elapsed() < Duration::from_secs(10), "{behaviour:?} failed fast, not at the wait timeout");
    assert_eq!(s.outcome, Outcome::RolledBack, "{behaviour:?}: {s:?}");
    let r = report(&s, "api");
    assert_eq!(r.result, ServiceResult::RolledBack);
    assert_eq!(r.error_kind, Some(ErrorKind::Unhealthy), "{r:?}");
    assert_eq!(r.running_digest.as_deref(), Some(digest("api", "v1").as_str()));
    let live = fake.live_deploy(&api.id).unwrap();
    assert_eq!(live.id, before.id, "{behaviour:?}: the previous deploy is still live");
    let now = fake.service(&api.id).unwrap();
    assert_eq!(now.image_path, setting_before, "{behaviour:?}: the image setting is back on the old digest");
    assert!(now.image_path.ends_with(&digest("api", "v1")));
    let failed = fake.deploys(&api.id).into_iter().find(|d| d.image_sha == digest("api", "v2")).unwrap();
    assert!(failed.status.ends_with("_failed"), "{failed:?}");
}

#[tokio::test]
async fn unhealthy_deploy_fails_fast_and_is_put_back() {
    failing(Behaviour::Unhealthy).await;
}

#[tokio::test]
async fn crashing_deploy_fails_fast_and_is_put_back() {
    failing(Behaviour::Crash).await;
}

#[tokio::test]
async fn build_failure_fails_fast_and_is_put_back() {
    failing(Behaviour::BuildFail).await;
}

#[tokio::test]
async fn a_deploy_still_running_at_the_timeout_is_cancelled() {
    let (fake, owner) = start().await;
    let platform = harness::platform(&fake);
    deploy(&platform, &basic(), "staging", &["api"], "v1").await;
    let api = fake.service_by_name(&owner, "shop-api-staging").unwrap();
    let before = fake.live_deploy(&api.id).unwrap();
    // 50 observations before it fails: far more than 300 ms of 10 ms polls.
    fake.set_behaviour(&digest("api", "v2"), Behaviour::Unhealthy);
    let mut o = opts();
    o.wait_timeout = Duration::from_millis(300);
    let s = deploy_with(&platform, &basic(), "staging", &["api"], "v2", &o, &Events::none()).await.unwrap();
    assert_eq!(s.outcome, Outcome::TimedOut, "{s:?}");
    assert_eq!(report(&s, "api").error_kind, Some(ErrorKind::Timeout));
    let ours = fake.deploys(&api.id).into_iter().find(|d| d.image_sha == digest("api", "v2")).unwrap();
    assert_eq!(ours.status, "canceled", "it can never go live later");
    assert_eq!(fake.live_deploy(&api.id).unwrap().id, before.id);
    assert_eq!(fake.service(&api.id).unwrap().image_path, api.image_path);
}

/// Ctrl-C while a deploy runs: the engine restores nothing then, so the platform cancels the
/// deploy and points the image setting back at what still serves.
#[tokio::test]
async fn a_stopped_deploy_is_cancelled_and_the_image_setting_points_back() {
    let (fake, owner) = start().await;
    let platform = harness::platform(&fake);
    deploy(&platform, &basic(), "staging", &["api"], "v1").await;
    let api = fake.service_by_name(&owner, "shop-api-staging").unwrap();
    let before = fake.live_deploy(&api.id).unwrap();
    fake.set_behaviour(&digest("api", "v2"), Behaviour::Unhealthy);
    let mut o = opts();
    o.wait_timeout = Duration::from_secs(30);
    let cancel = o.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel();
    });
    let s = deploy_with(&platform, &basic(), "staging", &["api"], "v2", &o, &Events::none()).await.unwrap();
    assert_eq!(s.outcome, Outcome::Cancelled, "{s:?}");
    let ours = fake.deploys(&api.id).into_iter().find(|d| d.image_sha == digest("api", "v2")).unwrap();
    assert_eq!(ours.status, "canceled", "it can never go live later");
    assert_eq!(fake.live_deploy(&api.id).unwrap().id, before.id);
    assert_eq!(fake.service(&api.id).unwrap().image_path, api.image_path, "the image setting names what serves");
}

#[tokio::test]
async fn a_region_change_is_refused_before_any_write() {
    let (fake, owner) = start().await;
    let platform = harness::platform(&fake);
    deploy(&platform, &basic(), "staging", &["api"], "v1").await;
    let api = fake.service_by_name(&owner, "shop-api-staging").unwrap();
    assert_eq!(api.region, "oregon");
    let moved = shop("frankfurt", "health = { path = \"/healthz\" }", "");
    let from = fake.requests().len();
    let s = deploy_with(&platform, &moved, "staging", &["api"], "v2", &opts(), &Events::none()).await.unwrap();
    let r = report(&s, "api");
    assert_eq!(r.error_kind, Some(ErrorKind::InvalidConfig), "{s:?}");
    assert_eq!(r.result, ServiceResult::FailedUnchanged, "{s:?}");
    let msg = r.error.clone().unwrap_or_default();
    assert!(msg.contains("frankfurt") && msg.contains("oregon"), "{msg}");
    assert!(writes(&since(&fake, from)).is_empty(), "{:?}", writes(&since(&fake, from)));
    assert_eq!(fake.service(&api.id).unwrap().image_path, api.image_path);
}

#[tokio::test]
async fn scaling_fixed_autoscaled_and_back() {
    let (fake, owner) = start().await;
    let platform = harness::platform(&fake);
    let with = |scale: &str| shop("oregon", &format!("scale = {scale}"), "");
    deploy(&platform, &with("{ min = 2, max = 2 }"), "staging", &["api"], "v1").await;
    let api = fake.service_by_name(&owner, "shop-api-staging").unwrap();
    assert_eq!((api.num_instances, api.autoscaling), (2, None), "created with two instances");

    // A fixed count: POST /scale.
    let from = fake.requests().len();
    deploy(&platform, &with("{ min = 3, max = 3 }"), "staging", &["api"], "v2").await;
    let w = writes(&since(&fake, from));
    assert!(w.contains(&format!("POST /v1/services/{}/scale", api.id)), "{w:?}");
    assert_eq!(fake.service(&api.id).unwrap().num_instances, 3);

    // min < max: PUT /autoscaling.
    let from = fake.requests().len();
    deploy(&platform, &with("{ min = 2, max = 5 }"), "staging", &["api"], "v3").await;
    let w = writes(&since(&fake, from));
    assert!(w.contains(&format!("PUT /v1/services/{}/autoscaling", api.id)), "{w:?}");
    let a = fake.service(&api.id).unwrap().autoscaling.expect("autoscaling on");
    assert!(a.enabled && (a.min, a.max) == (2, 5), "{a:?}");

    // Other bounds, same image: the autoscaling still changes.
    let from = fake.requests().len();
    deploy(&platform, &with("{ min = 2, max = 6 }"), "staging", &["api"], "v3").await;
    let w = writes(&since(&fake, from));
    assert!(w.contains(&format!("PUT /v1/services/{}/autoscaling", api.id)), "{w:?}");
    assert_eq!(fake.service(&api.id).unwrap().autoscaling.map(|a| a.max), Some(6));

    // Back to a fixed count: autoscaling off first, or Render ignores the scale.
    let from = fake.requests().len();
    deploy(&platform, &with("{ min = 2, max = 2 }"), "staging", &["api"], "v4").await;
    let w = writes(&since(&fake, from));
    let off = w.iter().position(|x| *x == format!("DELETE /v1/services/{}/autoscaling", api.id));
    let scale = w.iter().position(|x| *x == format!("POST /v1/services/{}/scale", api.id));
    assert!(matches!((off, scale), (Some(a), Some(b)) if a < b), "{w:?}");
    let now = fake.service(&api.id).unwrap();
    assert_eq!((now.autoscaling, now.num_instances, now.ignored_scales), (None, 2, 0));
}
