//! The health gate is decided by what runs: a slow or failing `wait` only stops helping.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use shipit_core::Platform;
use shipit_testkit::fly::{Fault, FlyFake};

#[tokio::test]
async fn a_wait_slower_than_the_timeout_does_not_fail_a_healthy_rollout() {
    let fake = FlyFake::start().await;
    let fly = platform(&fake);
    let app = app();
    let t = target(&app, "staging");
    let api = service(t, "api");
    deploy(&fly, &request(t, api, "x", 1)).await.unwrap();
    // Every `wait` answers after 1.5 s, past the 1 s the gate allows: the status reads see the
    // machines start long before.
    fake.inject(Fault::Delay { path_contains: "/wait".into(), delay: Duration::from_millis(1500) });
    let mut req = request(t, api, "y", 2);
    req.wait_timeout = Duration::from_secs(1);
    let done = deploy(&fly, &req).await.unwrap();
    assert_eq!(done.digest, digest("y"));
    let st = fly.status(t, api).await.unwrap();
    assert_eq!(st.digest.as_deref(), Some(digest("y").as_str()));
    assert!(st.healthy());
}

#[tokio::test]
async fn a_wait_that_always_fails_is_backed_off_and_the_rollout_passes() {
    let fake = FlyFake::start().await;
    let fly = platform(&fake);
    let app = app();
    let t = target(&app, "staging");
    let api = service(t, "api");
    deploy(&fly, &request(t, api, "x", 1)).await.unwrap();
    fake.inject(Fault::Status {
        method: Some("GET".into()),
        path_contains: "/wait".into(),
        status: 502,
        times: u32::MAX,
        retry_after: None,
    });
    let before = fake.requests().len();
    let mut req = request(t, api, "y", 2);
    req.wait_timeout = Duration::from_secs(2);
    let done = deploy(&fly, &req).await.unwrap();
    assert_eq!(done.digest, digest("y"));
    let waits = fake.requests()[before..].iter().filter(|r| r.path.contains("/wait")).count();
    // Two machines, one at a time (rolling); each gate took a few status reads. Without the
    // backoff a failing `wait` was called in a tight loop.
    assert!(waits <= 12, "{waits} wait calls");
}

/// Status reads that fail for longer than the gate waits end the deploy with a clear transient
/// error; once Fly answers again the previous release is put back, and the verdict says so
/// (exit 1, not "NOT every service could be put back").
#[tokio::test]
async fn a_run_of_5xx_on_status_reads_is_a_transient_failure_and_is_put_back() {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use shipit_core::engine::{self, DeployOptions, Outcome, ServiceResult};
    use shipit_core::{ErrorKind, Event, Events};

    let fake = Arc::new(FlyFake::start().await);
    let fly = platform(&fake);
    let app = app();
    let t = target(&app, "staging");
    let api = service(t, "api");
    deploy(&fly, &request(t, api, "x", 1)).await.unwrap();

    // Every machine read fails (the `$` keeps leases and waits out of it) until the deploy
    // has failed; then Fly answers again.
    fake.inject(Fault::Status {
        method: Some("GET".into()),
        path_contains: "/v1/apps/shop-api-staging/machines/$".into(),
        status: 503,
        times: u32::MAX,
        retry_after: None,
    });
    let healer = fake.clone();
    let events = Events::new(move |e| {
        if matches!(e, Event::ServiceFailed { .. }) {
            healer.clear_faults();
        }
    });
    let mut o = DeployOptions::default();
    o.wait_timeout = Duration::from_millis(600);
    let images = BTreeMap::from([("api".to_string(), api.image.with_tag("y").with_digest(&digest("y")))]);
    let s = engine::deploy_digests(&fly, None, t, "deploy", &images, &o, &events).await.unwrap();
    let r = &s.services[0];
    assert_eq!(s.outcome, Outcome::RolledBack, "{s:#?}");
    assert_eq!(r.result, ServiceResult::RolledBack);
    assert_eq!(r.error_kind, Some(ErrorKind::Transient), "{r:?}");
    assert!(r.error.as_deref().unwrap().contains("could not be read"), "{r:?}");
    assert_eq!(fly.status(t, api).await.unwrap().digest.as_deref(), Some(digest("x").as_str()));
}
