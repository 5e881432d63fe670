//! Releases and rollback on Render: the history read back from deploys (shipit's release id and
//! git sha out of the image tag), `deactivated` deploys as rollback targets and failed ones
//! never, rollback through `POST /rollback`, and `--atomic` taking back a service that went live.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use harness::{app, deploy, deploy_with, digest, opts, report, since, writes};
use shipit_core::engine::{self, Outcome, RollbackTo, ServiceResult};
use shipit_core::{App, Events, Platform, ReleaseStatus};
use shipit_testkit::render::{Behaviour, RenderFake};

fn shop() -> App {
    app(r#"app = "shop"
[registry]
host = "ghcr.io"
namespace = "acme"

[services.api]
port = 8080
health = { path = "/healthz" }

[services.worker]
command = ["node", "worker.js"]

[environments.staging]
target = "render"

[targets.render]
region = "oregon"
"#)
}

async fn releases(platform: &dyn Platform, app: &App, service: &str) -> Vec<shipit_core::Release> {
    platform.releases(harness::target(app, "staging"), harness::service(app, "staging", service)).await.unwrap()
}

#[tokio::test]
async fn releases_newest_first_with_ids_shas_and_rollback_targets() {
    let fake = RenderFake::start().await;
    let owner = fake.seed_pro_owner("acme");
    let platform = harness::platform(&fake);
    let app = shop();
    let r1 = deploy(&platform, &app, "staging", &["api"], "v1").await;
    let r2 = deploy(&platform, &app, "staging", &["api"], "v2").await;
    fake.set_behaviour(&digest("api", "v3"), Behaviour::Crash);
    let r3 = deploy(&platform, &app, "staging", &["api"], "v3").await;
    assert_eq!(r3.outcome, Outcome::RolledBack, "{r3:?}");
    let id = fake.service_by_name(&owner, "shop-api-staging").unwrap().id;

    let list = releases(&platform, &app, "api").await;
    let got: Vec<(&str, ReleaseStatus, Option<&str>, Option<&str>)> =
        list.iter().map(|r| (r.id.as_str(), r.status, r.git_sha.as_deref(), r.digest.as_deref())).collect();
    let (d1, d2, d3) = (digest("api", "v1"), digest("api", "v2"), digest("api", "v3"));
    assert_eq!(
        got,
        [
            (r3.release.as_str(), ReleaseStatus::Failed, Some(harness::SHA), Some(d3.as_str())),
            (r2.release.as_str(), ReleaseStatus::Live, Some(harness::SHA), Some(d2.as_str())),
            (r1.release.as_str(), ReleaseStatus::Superseded, Some(harness::SHA), Some(d1.as_str())),
        ]
    );
    // Each release names its Render deploy.
    let deploys = fake.deploys(&id);
    for (r, d) in list.iter().zip(&deploys) {
        assert_eq!(r.platform_id.as_deref(), Some(d.id.as_str()));
    }
    assert_eq!(deploys[2].status, "deactivated");

    let pick = engine::pick_release(&list, &RollbackTo::Previous).unwrap();
    assert_eq!(pick.id, r1.release, "the superseded release is the previous one");
    assert!(engine::pick_release(&list, &RollbackTo::Release(r3.release.clone())).is_err(), "failed: never");
    assert!(engine::pick_release(&list, &RollbackTo::Sha(harness::SHA.to_string())).is_ok());
}

#[tokio::test]
async fn rollback_posts_rollback_and_moves_the_image_setting_back() {
    let fake = RenderFake::start().await;
    let owner = fake.seed_pro_owner("acme");
    let platform = harness::platform(&fake);
    let app = shop();
    let r1 = deploy(&platform, &app, "staging", &["api"], "v1").await;
    deploy(&platform, &app, "staging", &["api"], "v2").await;
    let id = fake.service_by_name(&owner, "shop-api-staging").unwrap().id;
    let v1_deploy = fake.deploys(&id).into_iter().find(|d| d.image_sha == digest("api", "v1")).unwrap();

    let from = fake.requests().len();
    let mut o = opts();
    o.services = vec!["api".to_string()];
    let s =
        engine::rollback(&platform, None, harness::target(&app, "staging"), &RollbackTo::Previous, &o, &Events::none())
            .await
            .unwrap();
    assert_eq!(s.outcome, Outcome::Succeeded, "{s:?}");
    assert_eq!(report(&s, "api").running_digest.as_deref(), Some(digest("api", "v1").as_str()));
    let w = writes(&since(&fake, from));
    assert!(w.contains(&format!("POST /v1/services/{id}/rollback")), "{w:?}");
    assert!(!w.iter().any(|x| x.ends_with("/deploys")), "a rollback, not a new deploy: {w:?}");
    assert_eq!(fake.deploy_posts(&id), 1, "only v2's deploy POST");
    let live = fake.live_deploy(&id).unwrap();
    assert_eq!((live.trigger.as_str(), live.image_sha.as_str()), ("rollback", digest("api", "v1").as_str()));
    let svc = fake.service(&id).unwrap();
    assert_eq!(svc.image_path, v1_deploy.image_ref, "the image setting is on the target's digest");
    assert!(svc.image_path.contains(&r1.release));
}

#[tokio::test]
async fn atomic_takes_back_a_service_that_went_live_and_never_picks_it_again() {
    let fake = RenderFake::start().await;
    let owner = fake.seed_pro_owner("acme");
    let platform = harness::platform(&fake);
    let app = shop();
    deploy(&platform, &app, "staging", &["api", "worker"], "v1").await;
    let api = fake.service_by_name(&owner, "shop-api-staging").unwrap();
    let v1_setting = api.image_path.clone();

    // The worker crashes only after several observations: the api is live by then.
    fake.set_behaviour(&digest("worker", "v2"), Behaviour::Unhealthy);
    fake.set_unhealthy_observations(30);
    let mut o = opts();
    o.atomic = true;
    let s = deploy_with(&platform, &app, "staging", &["api", "worker"], "v2", &o, &Events::none()).await.unwrap();
    assert_eq!(s.outcome, Outcome::RolledBack, "{s:?}");
    assert_eq!(report(&s, "api").result, ServiceResult::RolledBackAtomic, "{s:?}");
    assert_eq!(report(&s, "worker").result, ServiceResult::RolledBack, "{s:?}");
    let went_live = fake.deploys(&api.id).into_iter().find(|d| d.image_sha == digest("api", "v2")).unwrap();
    assert!(went_live.was_live, "the api's v2 went live before it was taken back");
    assert_eq!(fake.live_deploy(&api.id).unwrap().image_sha, digest("api", "v1"));
    assert_eq!(fake.service(&api.id).unwrap().image_path, v1_setting);

    let list = releases(&platform, &app, "api").await;
    let v2 = list.iter().find(|r| r.digest.as_deref() == Some(digest("api", "v2").as_str())).unwrap();
    assert_eq!(v2.status, ReleaseStatus::Failed, "{list:?}");
    assert!(engine::pick_release(&list, &RollbackTo::Release(v2.id.clone())).is_err());

    // After a good v3, "previous" is v1 again, never the taken-back v2.
    deploy(&platform, &app, "staging", &["api"], "v3").await;
    let list = releases(&platform, &app, "api").await;
    let pick = engine::pick_release(&list, &RollbackTo::Previous).unwrap();
    assert_eq!(pick.digest.as_deref(), Some(digest("api", "v1").as_str()), "{list:?}");
}
