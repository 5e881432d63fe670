//! Regression tests for what users met when two deploys ran at once, when a token was refused
//! mid-rollout, and when `rollback` chose a release that never passed its gate. Each runs the
//! engine against the Fly fake, the way the CLI does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use shipit_core::engine::{self, DeployOptions, OnFailure, Outcome, RollbackTo, ServiceResult, Summary};
use shipit_core::{ErrorKind, Events, ImageRef, Platform, ReleaseStatus, Target};
use shipit_fly::FlyPlatform;
use shipit_testkit::fly::{Behaviour, Fault, FlyFake};

fn opts() -> DeployOptions {
    let mut o = DeployOptions::default();
    o.wait_timeout = Duration::from_secs(3);
    o.git_sha = Some("abc1234".into());
    o
}

async fn deploy_label(fly: &FlyPlatform, t: Target<'_>, label: &str, o: &DeployOptions) -> Summary {
    let api = service(t, "api");
    let images: BTreeMap<String, ImageRef> =
        [("api".to_string(), api.image.with_tag(label).with_digest(&digest(label)))].into();
    engine::deploy_digests(fly, None, t, "deploy", &images, o, &Events::none()).await.unwrap()
}

fn digests(fake: &FlyFake, env: &str) -> Vec<String> {
    let mut d: Vec<String> = fake.machines(&fly_app(env, "api")).iter().filter_map(|m| m.digest.clone()).collect();
    d.sort();
    d.dedup();
    d
}

#[tokio::test]
async fn two_deploys_at_once_never_leave_the_environment_split() {
    for trial in 0..10 {
        let fake = FlyFake::start().await;
        let (a, b) = (platform(&fake), platform(&fake));
        let app = app();
        let t = target(&app, "production");
        assert_eq!(deploy_label(&a, t, "v1", &opts()).await.outcome, Outcome::Succeeded);
        let o = opts();
        let (s2, s3) = tokio::join!(deploy_label(&a, t, "v2", &o), deploy_label(&b, t, "v3", &o));
        let runs = digests(&fake, "production");
        assert_eq!(runs.len(), 1, "trial {trial}: one digest everywhere, not {runs:?}\n{s2:?}\n{s3:?}");
        for s in [&s2, &s3] {
            let api = &s.services[0];
            match s.outcome {
                Outcome::Succeeded => {
                    assert_eq!(api.running_digest.as_ref(), runs.first(), "trial {trial}: the winner runs")
                }
                Outcome::NothingChanged => {
                    assert_eq!(api.result, ServiceResult::FailedUnchanged);
                    assert_eq!(s.failure_kind(), Some(ErrorKind::Conflict), "trial {trial}: {s:?}");
                    assert!(api.error.as_deref().unwrap().contains("deploy in progress"), "{s:?}");
                }
                other => panic!("trial {trial}: {other:?}: the loser must change nothing: {s:?}"),
            }
        }
        assert!(fake.leases_held().is_empty());
    }
}

#[tokio::test]
async fn the_same_tag_twice_at_once_ends_on_it() {
    let fake = FlyFake::start().await;
    let (a, b) = (platform(&fake), platform(&fake));
    let app = app();
    let t = target(&app, "production");
    deploy_label(&a, t, "v1", &opts()).await;
    let o = opts();
    let (x, y) = tokio::join!(deploy_label(&a, t, "v2", &o), deploy_label(&b, t, "v2", &o));
    assert_eq!(digests(&fake, "production"), [digest("v2")]);
    for s in [&x, &y] {
        assert!(matches!(s.outcome, Outcome::Succeeded | Outcome::NothingChanged), "{s:?}");
    }
}

#[tokio::test]
async fn two_first_deploys_at_once_make_no_duplicate_machines() {
    for trial in 0..10 {
        let fake = FlyFake::start().await;
        let (a, b) = (platform(&fake), platform(&fake));
        let app = app();
        let t = target(&app, "production");
        let o = opts();
        let (s1, s2) = tokio::join!(deploy_label(&a, t, "v1", &o), deploy_label(&b, t, "v2", &o));
        // Two regions, two machines each (scale.min = 2).
        let machines = fake.machines(&fly_app("production", "api"));
        assert_eq!(machines.len(), 4, "trial {trial}: {machines:#?}\n{s1:?}\n{s2:?}");
        assert_eq!(digests(&fake, "production").len(), 1, "trial {trial}");
        let outcomes = [s1.outcome, s2.outcome];
        assert!(outcomes.contains(&Outcome::Succeeded), "trial {trial}: {s1:?} {s2:?}");
        for s in [&s1, &s2].into_iter().filter(|s| s.outcome != Outcome::Succeeded) {
            assert_eq!(s.outcome, Outcome::NothingChanged, "trial {trial}: {s:?}");
            assert_eq!(s.failure_kind(), Some(ErrorKind::Conflict), "exit 6, not 7: {s:?}");
        }
    }
}

/// A 401 at the first change of each kind: nothing changed, and it is the auth exit.
#[tokio::test]
async fn a_token_refused_mid_rollout_changed_nothing() {
    let cases: [(&str, &str, bool); 4] = [
        ("create app", "/v1/apps", false),
        ("create machine", "/v1/apps/shop-api-staging/machines", false),
        ("lease", "/lease", true),
        ("update", "/v1/apps/shop-api-staging/machines/$", true),
    ];
    for (what, path, existing) in cases {
        let fake = FlyFake::start().await;
        let fly = platform(&fake);
        let app = app();
        let t = target(&app, "staging");
        if existing {
            deploy_label(&fly, t, "v1", &opts()).await;
        }
        let before = digests(&fake, "staging");
        let fly = platform(&fake);
        fake.inject(Fault::Status {
            method: Some("POST".into()),
            path_contains: path.into(),
            status: 401,
            times: 1,
            retry_after: None,
        });
        let s = deploy_label(&fly, t, "v2", &opts()).await;
        assert_eq!(s.outcome, Outcome::NothingChanged, "{what}: {s:?}");
        assert_eq!(s.failure_kind(), Some(ErrorKind::Unauthorized), "{what}: {s:?}");
        assert_eq!(digests(&fake, "staging"), before, "{what}: what ran still runs");
        // After a 401 nothing more is sent, not even a lease release: leases taken before it
        // expire by themselves (the TTL), and no other machine was touched.
        if what != "update" {
            assert!(fake.leases_held().is_empty(), "{what}");
        }
        let refused = fake.requests().iter().filter(|r| r.status == 401).count();
        assert_eq!(refused, 1, "{what}: the 401 was met once, and nothing was sent after it");
        let last = fake.requests().last().map(|r| r.status);
        assert!(last == Some(401) || what == "lease" || what == "update", "{what}: {last:?}");
    }
}

#[tokio::test]
async fn a_failed_first_deploy_is_never_a_rollback_target() {
    let fake = FlyFake::start().await;
    let fly = platform(&fake);
    let app = app();
    let t = target(&app, "staging");
    fake.set_behaviour(&digest("bad"), Behaviour::Crash);
    let s = deploy_label(&fly, t, "bad", &opts()).await;
    assert_eq!(s.outcome, Outcome::Failed, "nothing to go back to: {s:?}");
    assert_eq!(deploy_label(&fly, t, "good", &opts()).await.outcome, Outcome::Succeeded);

    let api = service(t, "api");
    let releases = fly.releases(t, api).await.unwrap();
    let bad = releases.iter().find(|r| r.digest.as_deref() == Some(digest("bad").as_str())).unwrap();
    assert_eq!(bad.status, ReleaseStatus::Failed, "{releases:#?}");
    let mut only_api = opts();
    only_api.services = vec!["api".into()];
    let err = engine::rollback(&fly, None, t, &RollbackTo::Previous, &only_api, &Events::none()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    assert_eq!(digests(&fake, "staging"), [digest("good")], "still on the good release");
}

#[tokio::test]
async fn a_release_left_in_place_is_never_a_rollback_target() {
    let fake = FlyFake::start().await;
    let fly = platform(&fake);
    let app = app();
    let t = target(&app, "staging");
    deploy_label(&fly, t, "v1", &opts()).await;
    fake.set_behaviour(&digest("v2"), Behaviour::Crash);
    let mut leave = opts();
    leave.on_failure = OnFailure::Leave;
    assert_eq!(deploy_label(&fly, t, "v2", &leave).await.outcome, Outcome::Failed);
    assert_eq!(deploy_label(&fly, t, "v3", &opts()).await.outcome, Outcome::Succeeded);

    let mut only_api = opts();
    only_api.services = vec!["api".into()];
    let s = engine::rollback(&fly, None, t, &RollbackTo::Previous, &only_api, &Events::none()).await.unwrap();
    assert_eq!(s.outcome, Outcome::Succeeded, "{s:?}");
    assert_eq!(digests(&fake, "staging"), [digest("v1")], "v1, never the v2 that failed its gate");
}

#[tokio::test]
async fn a_deploy_cannot_take_over_machines_another_deploy_is_creating() {
    let fake = FlyFake::start().await;
    let (a, b) = (platform(&fake), platform(&fake));
    let app = app();
    let t = target(&app, "staging");
    // A's first deploy never passes its gate, so it holds its new machines for a while.
    fake.set_behaviour(&digest("v1"), Behaviour::FailingChecks);
    let mut slow = opts();
    slow.wait_timeout = Duration::from_secs(2);
    let second = async {
        let name = fly_app("staging", "api");
        while fake.machines(&name).is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        deploy_label(&b, t, "v2", &opts()).await
    };
    let (first, second) = tokio::join!(deploy_label(&a, t, "v1", &slow), second);
    assert_ne!(first.outcome, Outcome::Succeeded, "v1 never passed its gate: {first:?}");
    assert_eq!(second.outcome, Outcome::NothingChanged, "B changed nothing: {second:?}");
    assert_eq!(second.failure_kind(), Some(ErrorKind::Conflict), "{second:?}");
    assert!(!digests(&fake, "staging").contains(&digest("v2")), "B's image never ran");
}

#[tokio::test]
async fn a_lease_taken_with_an_unreadable_answer_is_still_released() {
    let fake = FlyFake::start().await;
    let fly = platform(&fake);
    let app = app();
    let t = target(&app, "staging");
    deploy_label(&fly, t, "v1", &opts()).await;
    // The lease is taken, but its answer is not JSON.
    fake.inject(Fault::Malformed { method: Some("POST".into()), path_contains: "/lease".into(), times: 1 });
    let s = deploy_label(&fly, t, "v2", &opts()).await;
    assert_eq!(s.outcome, Outcome::Succeeded, "the lease was read back and used: {s:?}");
    assert!(fake.leases_held().is_empty(), "no lease left behind: {:?}", fake.leases_held());
    // The next deploy is not refused with "deploy in progress".
    assert_eq!(deploy_label(&fly, t, "v3", &opts()).await.outcome, Outcome::Succeeded);
}
