//! Env vars on Render: one PUT per changed key (never the replace-all PUT), a var set by hand is
//! left alone, a var shipit set and the manifest dropped is deleted, and `secrets sync` sets
//! values without a deploy for the next deploy to roll out.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use harness::{app, deploy, raw, since, writes};
use secrecy::SecretString;
use shipit_core::engine::Outcome;
use shipit_core::{App, Platform as _};
use shipit_render::platform::OWNED_VARIABLES;
use shipit_testkit::render::{RecordedRequest, RenderFake};

fn with_env(env: &str) -> App {
    app(&format!(
        r#"app = "shop"
[registry]
host = "ghcr.io"
namespace = "acme"

[services.api]
port = 8080
env = {{ {env} }}
secrets = ["API_TOKEN"]

[environments.staging]
target = "render"

[targets.render]
region = "oregon"
"#
    ))
}

fn replace_all(log: &[RecordedRequest]) -> Vec<String> {
    log.iter().filter(|r| r.method == "PUT" && r.path.ends_with("/env-vars")).map(|r| r.path.clone()).collect()
}

fn puts(log: &[RecordedRequest]) -> Vec<String> {
    log.iter()
        .filter(|r| r.method == "PUT" && r.path.contains("/env-vars/"))
        .map(|r| r.path.rsplit('/').next().unwrap_or_default().to_string())
        .collect()
}

fn deletes(log: &[RecordedRequest]) -> Vec<String> {
    log.iter()
        .filter(|r| r.method == "DELETE" && r.path.contains("/env-vars/"))
        .map(|r| r.path.rsplit('/').next().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn only_changed_keys_are_put_hand_set_vars_are_kept_and_dropped_ones_deleted() {
    let fake = RenderFake::start().await;
    let owner = fake.seed_pro_owner("acme");
    let platform = harness::platform(&fake);
    deploy(&platform, &with_env(r#"A = "1", B = "2""#), "staging", &["api"], "v1").await;
    let id = fake.service_by_name(&owner, "shop-api-staging").unwrap().id;
    assert_eq!(fake.env_var(&id, "A").as_deref(), Some("1"));
    assert_eq!(fake.env_var(&id, "PORT").as_deref(), Some("8080"));
    // Someone sets a variable by hand, in the dashboard.
    let (status, _) =
        raw(&fake, "PUT", &format!("/services/{id}/env-vars/HAND"), Some(serde_json::json!({"value": "by-hand"})))
            .await;
    assert_eq!(status, 200);

    let from = fake.requests().len();
    let s = deploy(&platform, &with_env(r#"A = "1", B = "3", C = "4""#), "staging", &["api"], "v2").await;
    assert_eq!(s.outcome, Outcome::Succeeded, "{s:?}");
    let log = since(&fake, from);
    let mut put = puts(&log);
    put.sort();
    assert_eq!(put, ["B", "C", OWNED_VARIABLES], "one PUT per changed key: {:?}", writes(&log));
    assert!(deletes(&log).is_empty(), "{:?}", writes(&log));
    assert_eq!(fake.env_var(&id, "B").as_deref(), Some("3"));
    assert_eq!(fake.env_var(&id, "C").as_deref(), Some("4"));
    let live = fake.live_deploy(&id).unwrap();
    assert_eq!(live.env_vars.get("B").map(String::as_str), Some("3"), "the new deploy runs with them");

    // B and C leave the manifest: shipit set them, so they go; HAND stays as it was.
    let from = fake.requests().len();
    let s = deploy(&platform, &with_env(r#"A = "1""#), "staging", &["api"], "v3").await;
    assert_eq!(s.outcome, Outcome::Succeeded, "{s:?}");
    let log = since(&fake, from);
    let mut del = deletes(&log);
    del.sort();
    assert_eq!(del, ["B", "C"], "{:?}", writes(&log));
    assert!(!puts(&log).iter().any(|k| k == "A" || k == "HAND"), "{:?}", writes(&log));
    assert_eq!(fake.env_var(&id, "B"), None);
    assert_eq!(fake.env_var(&id, "C"), None);
    assert_eq!(fake.env_var(&id, "A").as_deref(), Some("1"));
    assert_eq!(fake.env_var(&id, "HAND").as_deref(), Some("by-hand"), "a var set by hand is never touched");
    let owned = fake.env_var(&id, OWNED_VARIABLES).unwrap();
    assert!(!owned.contains('B') && !owned.contains("HAND"), "{owned}");

    // The replace-all PUT was never sent (it would delete HAND).
    assert!(replace_all(&fake.requests()).is_empty());
    assert!(!fake.requests().iter().any(|r| r.method == "DELETE" && r.path.ends_with("/env-vars/HAND")));
}

#[tokio::test]
async fn secrets_sync_sets_values_without_a_deploy_and_the_next_deploy_rolls_them_out() {
    let fake = RenderFake::start().await;
    let owner = fake.seed_pro_owner("acme");
    let platform = harness::platform(&fake);
    let app = with_env(r#"A = "1""#);
    deploy(&platform, &app, "staging", &["api"], "v1").await;
    let id = fake.service_by_name(&owner, "shop-api-staging").unwrap().id;
    let deploys_before = fake.deploys(&id).len();

    let from = fake.requests().len();
    let t = harness::target(&app, "staging");
    let done = shipit_core::engine::sync_secrets(&platform, t, &["api".to_string()], |name| {
        (name == "API_TOKEN").then(|| SecretString::from("tok-s3cret-value".to_string()))
    })
    .await
    .unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].names, ["API_TOKEN"]);
    assert_eq!(fake.env_var(&id, "API_TOKEN").as_deref(), Some("tok-s3cret-value"));
    assert_eq!(fake.deploys(&id).len(), deploys_before, "a sync starts no deploy");
    let log = since(&fake, from);
    assert!(!writes(&log).iter().any(|w| w.contains("/deploys") || w.starts_with("PATCH")), "{:?}", writes(&log));
    assert!(replace_all(&log).is_empty());
    // Live: the value the service was created with, until a deploy.
    assert_eq!(
        fake.live_deploy(&id).unwrap().env_vars.get("API_TOKEN"),
        Some(&harness::offered("API_TOKEN")),
        "not live before a deploy"
    );

    // The next deploy runs with it, and does not remove it (the manifest declares it).
    let s = deploy(&platform, &app, "staging", &["api"], "v2").await;
    assert_eq!(s.outcome, Outcome::Succeeded, "{s:?}");
    let live = fake.live_deploy(&id).unwrap();
    assert_eq!(live.env_vars.get("API_TOKEN").map(String::as_str), Some("tok-s3cret-value"));
    assert_eq!(fake.env_var(&id, "API_TOKEN").as_deref(), Some("tok-s3cret-value"));

    // A secret the manifest no longer has was shipit's: it is deleted.
    let dropped = app_without_secrets();
    let from = fake.requests().len();
    deploy(&platform, &dropped, "staging", &["api"], "v3").await;
    assert_eq!(deletes(&since(&fake, from)), ["API_TOKEN"]);
    assert_eq!(fake.env_var(&id, "API_TOKEN"), None);
}

fn app_without_secrets() -> App {
    app(r#"app = "shop"
[registry]
host = "ghcr.io"
namespace = "acme"

[services.api]
port = 8080
env = { A = "1" }

[environments.staging]
target = "render"

[targets.render]
region = "oregon"
"#)
}

#[tokio::test]
async fn a_new_service_gets_its_secrets_in_the_create_request_and_sync_before_it_waits_for_that() {
    let fake = RenderFake::start().await;
    let owner = fake.seed_pro_owner("acme");
    let platform = harness::platform(&fake);
    let app = with_env(r#"A = "1""#);
    let t = harness::target(&app, "staging");

    // Before the service exists, a sync sets nothing and says the creating deploy will.
    let done = shipit_core::engine::sync_secrets(&platform, t, &["api".to_string()], |name| {
        (name == "API_TOKEN").then(|| SecretString::from("tok-s3cret-value".to_string()))
    })
    .await
    .unwrap();
    assert_eq!(done.len(), 1);
    assert!(done[0].at_creation, "{done:?}");
    assert_eq!(done[0].names, ["API_TOKEN"]);
    assert!(fake.service_by_name(&owner, "shop-api-staging").is_none(), "a sync creates nothing");
    assert!(writes(&fake.requests()).is_empty(), "{:?}", writes(&fake.requests()));

    // A deploy that has no value for it creates nothing and names it.
    let fresh = harness::platform(&fake);
    let images = std::collections::BTreeMap::from([(
        "api".to_string(),
        app.services["api"].image.with_tag("v1").with_digest(&harness::digest("api", "v1")),
    )]);
    let s = shipit_core::engine::deploy_digests(
        &fresh,
        None,
        t,
        "deploy",
        &images,
        &harness::opts(),
        &shipit_core::Events::none(),
    )
    .await
    .unwrap();
    assert_eq!(s.outcome, Outcome::NothingChanged, "{s:?}");
    let error = harness::report(&s, "api").error.clone().unwrap_or_default();
    assert!(error.contains("creating shop-api-staging needs API_TOKEN"), "{error}");
    assert!(fake.service_by_name(&owner, "shop-api-staging").is_none());

    // With the value offered (the CLI offers what its environment has), the first deploy runs
    // with it, and shipit owns it.
    platform.offer_secrets(vec![("API_TOKEN".to_string(), SecretString::from("tok-s3cret-value".to_string()))]);
    let s = shipit_core::engine::deploy_digests(
        &platform,
        None,
        t,
        "deploy",
        &images,
        &harness::opts(),
        &shipit_core::Events::none(),
    )
    .await
    .unwrap();
    assert_eq!(s.outcome, Outcome::Succeeded, "{s:?}");
    let svc = fake.service_by_name(&owner, "shop-api-staging").unwrap();
    let live = fake.live_deploy(&svc.id).unwrap();
    assert_eq!(live.env_vars.get("API_TOKEN").map(String::as_str), Some("tok-s3cret-value"));
    assert!(fake.env_var(&svc.id, OWNED_VARIABLES).unwrap_or_default().contains("API_TOKEN"));
    assert!(!format!("{s:?}").contains("tok-s3cret-value"));
}
