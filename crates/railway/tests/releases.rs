//! Releases and rollback on the Railway fake: the history as Railway keeps it (newest first,
//! digests and git shas from `meta`, which deployments are targets), and a rollback that brings
//! back the image and settings but keeps today's variables.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::time::Duration;

use harness::{World, app, deploy, deploy_with, digest, opts, sync, target};
use shipit_core::engine::{self, Outcome, RollbackTo, ServiceResult};
use shipit_core::{App, Events, Platform, Release, ReleaseStatus};
use shipit_testkit::railway::Behaviour;

fn one(extra: &str) -> App {
    app(&format!(
        "[services.api]\nport = 8080\nsecrets = [\"API_SECRET\"]\n{extra}\n\n[services.worker]\n\n[environments.staging]\ntarget = \"railway\"\n"
    ))
}

async fn releases(p: &dyn Platform, app: &App, service: &str) -> Vec<Release> {
    let t = target(app, "staging");
    p.releases(t, t.env.services.get(service).unwrap()).await.unwrap()
}

fn of<'a>(releases: &'a [Release], service: &str, label: &str) -> &'a Release {
    let d = digest(service, label);
    releases
        .iter()
        .find(|r| r.digest.as_deref() == Some(d.as_str()))
        .unwrap_or_else(|| panic!("{label} in {releases:#?}"))
}

async fn deploy_sha(p: &dyn Platform, app: &App, label: &str, sha: &str, wait: Duration) -> engine::Summary {
    let mut o = opts();
    o.git_sha = Some(sha.to_string());
    o.wait_timeout = wait;
    deploy_with(p, app, "staging", &["api"], label, &o, &Events::none()).await
}

#[tokio::test]
async fn releases_newest_first_with_meta_and_statuses() {
    let w = World::new().await;
    let app = one("");
    let p = w.platform();
    let long = Duration::from_secs(5);
    deploy_sha(&p, &app, "v1", "1111111aaaa", long).await;
    deploy_sha(&p, &app, "v2", "2222222bbbb", long).await;
    w.fake.set_behaviour(&digest("api", "v3"), Behaviour::Unhealthy);
    let s = deploy_sha(&p, &app, "v3", "3333333cccc", Duration::from_millis(300)).await;
    assert_eq!(s.outcome, Outcome::TimedOut, "{s:?}");
    w.fake.set_behaviour(&digest("api", "v4"), Behaviour::Crash);
    let s = deploy_sha(&p, &app, "v4", "4444444dddd", long).await;
    assert_eq!(s.outcome, Outcome::RolledBack, "{s:?}");
    w.fake.set_behaviour(&digest("api", "v5"), Behaviour::NeedsApproval);
    let s = deploy_sha(&p, &app, "v5", "5555555eeee", long).await;
    assert_eq!(s.outcome, Outcome::RolledBack, "{s:?}");

    let rs = releases(&p, &app, "api").await;
    let digests: Vec<Option<String>> = rs.iter().map(|r| r.digest.clone()).collect();
    let want: Vec<Option<String>> = ["v5", "v4", "v3", "v2", "v1"].iter().map(|l| Some(digest("api", l))).collect();
    assert_eq!(digests, want, "newest first: {rs:#?}");
    let statuses: Vec<ReleaseStatus> = rs.iter().map(|r| r.status).collect();
    use ReleaseStatus::*;
    assert_eq!(statuses, [Failed, Failed, Failed, Live, Superseded], "{rs:#?}");
    let shas: Vec<Option<&str>> = rs.iter().map(|r| r.git_sha.as_deref()).collect();
    assert_eq!(
        shas,
        [Some("5555555eeee"), Some("4444444dddd"), Some("3333333cccc"), Some("2222222bbbb"), Some("1111111aaaa")]
    );
    // A release is a Railway deployment: its id, its image as sent.
    let fake = w.deployments("api");
    for (r, d) in rs.iter().zip(&fake) {
        assert_eq!(r.id, d.id);
        assert_eq!(r.platform_id.as_deref(), Some(d.id.as_str()));
        assert_eq!(r.image, d.image);
    }
    // The cancelled (timed out, waiting for approval) and the crashed ones are never targets.
    let pick = engine::pick_release(&rs, &RollbackTo::Previous).unwrap();
    assert_eq!(pick.digest.as_deref(), Some(digest("api", "v1").as_str()), "{pick:?}");
    for label in ["v3", "v4", "v5"] {
        let r = of(&rs, "api", label);
        assert!(engine::pick_release(&rs, &RollbackTo::Release(r.id.clone())).is_err(), "{label}");
    }
    assert!(engine::pick_release(&rs, &RollbackTo::Sha("3333333".into())).is_err());
    let by_sha = engine::pick_release(&rs, &RollbackTo::Sha("1111111".into())).unwrap();
    assert_eq!(by_sha.id, of(&rs, "api", "v1").id);
    // A service never deployed has no releases.
    assert!(releases(&p, &app, "worker").await.is_empty());
}

/// Railway's `createdAt` is RFC 3339: `…:07Z` and `…:07.015Z` are one second and a bit apart,
/// whatever their text says when sorted.
#[tokio::test]
async fn releases_sort_by_time_whatever_the_fraction() {
    let w = World::new().await;
    let app = one("");
    let p = w.platform();
    deploy(&p, &app, &["api"], "v1").await;
    // Learn where in an update the deployment is made, then put the next one on a whole second
    // of the fake's clock (it started on one and moves 1 ms per request).
    let before = w.requests_now();
    deploy(&p, &app, &["api"], "v2").await;
    let at = w.ops_since(before).iter().position(|op| op == "ServiceInstanceDeployV2").unwrap() + 1;
    let now = w.fake.request_count() as usize;
    let ahead = (1000 - (now + at) % 1000) % 1000;
    w.fake.advance(Duration::from_millis(ahead as u64));
    deploy(&p, &app, &["api"], "v3").await;
    let v3 = w.deployments("api").into_iter().next().unwrap();
    assert!(!v3.created_at.contains('.'), "v3 was made on a whole second: {}", v3.created_at);
    deploy(&p, &app, &["api"], "v4").await;
    let rs = releases(&p, &app, "api").await;
    let labels: Vec<Option<String>> = rs.iter().map(|r| r.digest.clone()).collect();
    let want: Vec<Option<String>> = ["v4", "v3", "v2", "v1"].iter().map(|l| Some(digest("api", l))).collect();
    assert_eq!(labels, want, "{rs:#?}");
    assert_eq!(rs[0].status, ReleaseStatus::Live);
    let pick = engine::pick_release(&rs, &RollbackTo::Previous).unwrap();
    assert_eq!(pick.digest.as_deref(), Some(digest("api", "v3").as_str()));
}

/// Two manifests: v1's and v2's settings differ.
fn settings(path: &str, command: &str, retries: u32) -> App {
    one(&format!(
        "health = {{ path = \"{path}\" }}\ncommand = [\"{command}\"]\nrestart = {{ policy = \"on-failure\", retries = {retries} }}\nenv = {{ MODE = \"{path}\" }}"
    ))
}

#[tokio::test]
async fn rollback_brings_back_image_and_settings_with_todays_variables() {
    let w = World::new().await;
    let (a1, a2) = (settings("/v1/health", "serve-v1", 3), settings("/v2/health", "serve-v2", 7));
    let p = w.platform();
    deploy(&p, &a1, &["api"], "v1").await;
    sync(&p, &a1, "api", &[("API_SECRET", "old-secret")]).await;
    deploy(&p, &a2, &["api"], "v2").await;
    assert_eq!(w.instance("api").healthcheck_path.as_deref(), Some("/v2/health"));
    sync(&p, &a2, "api", &[("API_SECRET", "new-secret")]).await;
    w.set_by_hand("api", "HAND", "set since");

    let mut o = opts();
    o.services = vec!["api".to_string()];
    let s =
        engine::rollback(&p, None, target(&a2, "staging"), &RollbackTo::Previous, &o, &Events::none()).await.unwrap();
    assert_eq!(s.outcome, Outcome::Succeeded, "{s:?}");
    assert_eq!(harness::report(&s, "api").result, ServiceResult::Deployed, "{s:?}");

    let live = w.live("api").unwrap();
    assert_eq!(live.digest.as_deref(), Some(digest("api", "v1").as_str()), "v1 runs");
    assert_eq!(w.deployments("api").len(), 3, "a new deployment of v1");
    assert_eq!(live.commit_sha.as_deref(), Some("c0ffee1"), "with v1's commit");
    // Today's variables, not v1's.
    assert_eq!(w.variable("api", "API_SECRET").as_deref(), Some("new-secret"));
    assert_eq!(live.variables.get("API_SECRET"), Some(&Some("new-secret".to_string())), "it runs the new value");
    assert_eq!(w.variable("api", "HAND").as_deref(), Some("set since"));
    assert_eq!(w.variable("api", "MODE").as_deref(), Some("/v2/health"), "plain variables are today's too");
    // v1's settings.
    let i = w.instance("api");
    assert!(i.image.as_deref().is_some_and(|img| img.ends_with(&digest("api", "v1"))), "{:?}", i.image);
    assert_eq!(i.healthcheck_path.as_deref(), Some("/v1/health"));
    assert_eq!(i.start_command.as_deref(), Some("serve-v1"));
    assert_eq!(i.restart_policy_max_retries, 3);
    assert!(!i.replicas_reset_pending);
    assert_eq!(live.meta["serviceManifest"]["deploy"]["healthcheckPath"], "/v1/health");
    // Never Railway's own rollback (it would bring back old-secret), nor a redeploy.
    let ops = w.fake.operations();
    for never in ["DeploymentRollback", "ServiceInstanceRedeploy", "DeploymentRedeploy"] {
        assert!(!ops.iter().any(|op| op.contains(never)), "{never} in {ops:?}");
    }
    // v1's release is live again; v2 is a target now.
    let rs = releases(&p, &a2, "api").await;
    assert_eq!(rs[0].status, ReleaseStatus::Live);
    let pick = engine::pick_release(&rs, &RollbackTo::Previous).unwrap();
    assert_eq!(pick.digest.as_deref(), Some(digest("api", "v2").as_str()));
}

#[tokio::test]
async fn an_atomic_rollbacks_taken_back_release_is_never_chosen_again() {
    let w = World::new().await;
    let app = one("");
    let p = w.platform();
    deploy(&p, &app, &["api", "worker"], "a0").await;
    deploy(&p, &app, &["api", "worker"], "a1").await;
    w.fake.set_behaviour(&digest("worker", "a2"), Behaviour::Crash);
    let mut o = opts();
    o.atomic = true;
    let s = deploy_with(&p, &app, "staging", &["api", "worker"], "a2", &o, &Events::none()).await;
    assert_eq!(s.outcome, Outcome::RolledBack, "{s:?}");
    let api = harness::report(&s, "api").result;
    assert!(matches!(api, ServiceResult::RolledBackAtomic | ServiceResult::Skipped), "{s:?}");
    let live = w.live("api").unwrap();
    assert_eq!(live.digest.as_deref(), Some(digest("api", "a1").as_str()));

    let rs = releases(&p, &app, "api").await;
    if api == ServiceResult::RolledBackAtomic {
        // a2 went live on api and was taken back: recorded, and failed from now on.
        let a2 = of(&rs, "api", "a2");
        assert_eq!(a2.status, ReleaseStatus::Failed, "{rs:#?}");
        let recorded = w.variable("api", "SHIPIT_FAILED_DEPLOYMENTS").unwrap_or_default();
        assert!(recorded.split(',').any(|id| id == a2.id), "{recorded}");
        assert!(engine::pick_release(&rs, &RollbackTo::Release(a2.id.clone())).is_err());
    }
    let pick = engine::pick_release(&rs, &RollbackTo::Previous).unwrap();
    assert_eq!(pick.digest.as_deref(), Some(digest("api", "a0").as_str()), "{rs:#?}");
    // And a rollback does what the pick says.
    let mut o = opts();
    o.services = vec!["api".to_string()];
    let s =
        engine::rollback(&p, None, target(&app, "staging"), &RollbackTo::Previous, &o, &Events::none()).await.unwrap();
    assert_eq!(s.outcome, Outcome::Succeeded, "{s:?}");
    assert_eq!(w.live("api").unwrap().digest.as_deref(), Some(digest("api", "a0").as_str()));
}
