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
