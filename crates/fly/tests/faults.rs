//! Retries: what is repeated after 429/5xx, and what is looked up first so it is never done twice.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use shipit_core::Platform;
use shipit_testkit::fly::{Fault, FlyFake};

#[tokio::test]
async fn rate_limits_and_503s_on_reads_are_retried() {
    let fake = FlyFake::start().await;
    let fly = platform(&fake);
    let app = app();
    let t = target(&app, "staging");
    let api = service(t, "api");
    deploy(&fly, &request(t, api, "x", 1)).await.unwrap();
    let before = fake.requests().len();

    fake.inject(Fault::rate_limited("/v1/apps/shop-api-staging", 1, 0));
    fake.inject(Fault::unavailable("/machines", 2));
    let st = fly.status(t, api).await.unwrap();
    assert_eq!(st.digest.as_deref(), Some(digest("x").as_str()));
    let statuses: Vec<u16> = fake.requests()[before..].iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 200, 503, 503, 200]);
}

#[tokio::test]
async fn a_create_whose_response_was_lost_is_not_repeated() {
    let fake = FlyFake::start().await;
    let fly = platform(&fake);
    let app = app();
    let t = target(&app, "staging");
    let api = service(t, "api");
    let name = fly_app("staging", "api");
    fake.seed_app(&name, "acme");
    // The first machine create is applied, but the client sees a 503.
    fake.inject(Fault::LostResponse {
        method: Some("POST".into()),
        path_contains: format!("/v1/apps/{name}/machines"),
        status: 503,
        times: 1,
    });
    let done = deploy(&fly, &request(t, api, "x", 1)).await.unwrap();
    assert_eq!(done.instances, 2);
    assert_eq!(fake.creates(&name), 2, "one create per intended machine");
    assert_eq!(fake.machines(&name).len(), 2);
}

#[tokio::test]
async fn a_create_refused_with_503_is_sent_again_once() {
    let fake = FlyFake::start().await;
    let fly = platform(&fake);
    let app = app();
    let t = target(&app, "staging");
    let api = service(t, "api");
    let name = fly_app("staging", "api");
    fake.seed_app(&name, "acme");
    fake.inject(Fault::Status {
        method: Some("POST".into()),
        path_contains: format!("/v1/apps/{name}/machines"),
        status: 503,
        times: 1,
        retry_after: None,
    });
    deploy(&fly, &request(t, api, "x", 1)).await.unwrap();
    assert_eq!(fake.creates(&name), 2);
}

#[tokio::test]
async fn an_app_create_whose_response_was_lost_is_found_not_repeated() {
    let fake = FlyFake::start().await;
    let fly = platform(&fake);
    let app = app();
    let t = target(&app, "staging");
    fake.inject(Fault::LostResponse {
        method: Some("POST".into()),
        path_contains: "/v1/apps".into(),
        status: 502,
        times: 1,
    });
    deploy(&fly, &request(t, service(t, "worker"), "w", 1)).await.unwrap();
    let posts = fake.requests().iter().filter(|r| r.method == "POST" && r.path == "/v1/apps").count();
    assert_eq!(posts, 1, "the app was looked up, not created twice");
    assert_eq!(fake.apps(), [fly_app("staging", "worker")]);
}

#[tokio::test]
async fn an_update_whose_response_was_lost_is_not_sent_twice() {
    let fake = FlyFake::start().await;
    let fly = platform(&fake);
    let app = app();
    let t = target(&app, "staging");
    let worker = service(t, "worker");
    deploy(&fly, &request(t, worker, "w1", 1)).await.unwrap();
    let name = fly_app("staging", "worker");
    let id = fake.machines(&name)[0].id.clone();
    fake.inject(Fault::LostResponse {
        method: Some("POST".into()),
        path_contains: format!("/v1/apps/{name}/machines/{id}"),
        status: 504,
        // The lease and the update both take effect but answer 504.
        times: 2,
    });
    let before = fake.requests().len();
    deploy(&fly, &request(t, worker, "w2", 2)).await.unwrap();
    assert_eq!(fake.versions(&name, &id).len(), 2, "exactly one new version");
    assert_eq!(fake.machines(&name)[0].digest.as_deref(), Some(digest("w2").as_str()));
    assert!(fake.leases_held().is_empty());
    assert_eq!(updates(&fake.requests()[before..]).len(), 1, "the update was read back, not re-sent");
}

#[tokio::test]
async fn slow_responses_do_not_break_a_deploy() {
    let fake = FlyFake::start().await;
    let fly = platform(&fake);
    let app = app();
    let t = target(&app, "staging");
    fake.inject(Fault::Delay { path_contains: "/wait".into(), delay: std::time::Duration::from_millis(50) });
    deploy(&fly, &request(t, service(t, "web"), "w", 1)).await.unwrap();
}
