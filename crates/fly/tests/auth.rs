//! Tokens: none configured, refused by Fly, and the header scheme each kind of token uses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use secrecy::SecretString;
use shipit_core::{ErrorKind, Platform};
use shipit_fly::FlyPlatform;
use shipit_testkit::fly::FlyFake;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn a_missing_token_fails_every_call_without_sending_anything() {
    let fake = FlyFake::start().await;
    let fly = builder(&fake).build().unwrap();
    let app = app();
    let t = target(&app, "staging");
    let api = service(t, "api");

    let err = deploy(&fly, &request(t, api, "x", 1)).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unauthorized);
    assert!(err.message.contains("FLY_API_TOKEN") && err.message.contains("shipit login fly"), "{err}");
    assert_eq!(fly.status(t, api).await.unwrap_err().kind, ErrorKind::Unauthorized);
    assert_eq!(fly.secret_names(t, api).await.unwrap_err().kind, ErrorKind::Unauthorized);
    assert!(fake.requests().is_empty(), "nothing was sent");

    // What needs no token still works.
    let calls = fly.describe_deploy(t, api, &api.image.with_tag("3f2c1ab")).unwrap();
    assert!(calls.iter().any(|c| c.method == "POST" && c.url.ends_with("/machines/{id}")), "{calls:#?}");
    assert!(!fly.render(&app, "staging").unwrap().is_empty());
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn after_a_401_nothing_more_is_sent() {
    let fake = FlyFake::start().await;
    let fly = builder(&fake).token(SecretString::from("wrong-token".to_string())).build().unwrap();
    let app = app();
    let t = target(&app, "staging");
    let api = service(t, "api");

    let err = deploy(&fly, &request(t, api, "x", 1)).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unauthorized);
    assert!(err.message.contains("FLY_API_TOKEN"), "{err}");
    assert!(!err.message.contains("wrong-token"), "the token never appears: {err}");
    let again = fly.status(t, api).await.unwrap_err();
    assert_eq!(again.kind, ErrorKind::Unauthorized);
    assert!(again.message.contains("FLY_API_TOKEN"), "{again}");
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1, "one request, then stop: {reqs:?}");
    assert_eq!(reqs[0].status, 401);
}

#[tokio::test]
async fn macaroon_tokens_use_the_flyv1_scheme_and_others_bearer() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/apps/shop-api-staging/secrets"))
        .and(header("authorization", "FlyV1 fm2_abc"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"secrets": [{"name": "A"}]})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/apps/shop-api-staging/secrets"))
        .and(header("authorization", "Bearer plain-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"secrets": [{"name": "B"}]})))
        .expect(1)
        .mount(&server)
        .await;
    let app = app();
    let t = target(&app, "staging");
    let api = service(t, "api");
    for (token, want) in [("fm2_abc", "A"), ("plain-token", "B")] {
        let fly = FlyPlatform::builder()
            .with_base_url(format!("{}/v1", server.uri()))
            .token(SecretString::from(token.to_string()))
            .build()
            .unwrap();
        assert_eq!(fly.secret_names(t, api).await.unwrap(), [want]);
    }
}

#[tokio::test]
async fn debug_output_never_shows_the_token() {
    let fake = FlyFake::start().await;
    let config = builder(&fake).token(SecretString::from("fm2_very-secret-token".to_string()));
    assert!(!format!("{config:?}").contains("very-secret"));
    let fly = config.build().unwrap();
    let shown = format!("{fly:?} {:?}", fly.client());
    assert!(!shown.contains("very-secret"), "{shown}");
}
