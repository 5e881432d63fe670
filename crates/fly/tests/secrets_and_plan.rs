//! Secrets (values reach Fly, never events), plans, and the dry-run description.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use secrecy::SecretString;
use shipit_core::{Events, Platform};
use shipit_testkit::fly::FlyFake;

const VALUE: &str = "sk_live_must-never-be-printed";

#[tokio::test]
async fn secret_values_reach_fly_and_only_names_come_back() {
    let fake = FlyFake::start().await;
    let fly = platform(&fake);
    let app = app();
    let t = target(&app, "staging");
    let api = service(t, "api");
    assert_eq!(
        fly.required_secrets(api),
        ["DATABASE_URL", "STRIPE_SECRET_KEY"],
        "a database URL is an app secret on Fly"
    );

    let values: Vec<(String, SecretString)> =
        fly.required_secrets(api).into_iter().map(|n| (n, SecretString::from(VALUE.to_string()))).collect();
    let synced = fly.sync_secrets(t, api, &values).await.unwrap();
    assert_eq!(synced.names, ["DATABASE_URL", "STRIPE_SECRET_KEY"]);
    assert_eq!(synced.version, Some(1));
    assert!(!format!("{synced:?}").contains(VALUE));
    let name = fly_app("staging", "api");
    assert_eq!(fake.secret_value(&name, "STRIPE_SECRET_KEY").as_deref(), Some(VALUE));
    assert_eq!(fly.secret_names(t, api).await.unwrap(), ["DATABASE_URL", "STRIPE_SECRET_KEY"]);

    // The next deploy asks machines for at least that secrets version; no event shows a value.
    let (events, seen) = Events::collect();
    let mut req = request(t, api, "x", 1);
    req.events = events;
    deploy(&fly, &req).await.unwrap();
    assert!(fake.machines(&name).iter().all(|m| m.min_secrets_version == Some(1)));
    let shown = format!("{:?}", seen.lock().unwrap());
    assert!(!shown.is_empty() && !shown.contains(VALUE));
    let configs = format!("{:?}", fake.machines(&name));
    assert!(!configs.contains(VALUE), "no value in any machine config");
}

#[tokio::test]
async fn secret_names_of_a_missing_app_are_none() {
    let fake = FlyFake::start().await;
    let fly = platform(&fake);
    let app = app();
    let t = target(&app, "staging");
    assert!(fly.secret_names(t, service(t, "api")).await.unwrap().is_empty());
}

#[tokio::test]
async fn plans_compare_the_manifest_with_the_machines() {
    let fake = FlyFake::start().await;
    let fly = platform(&fake);
    let app = app();
    let t = target(&app, "production");
    let api = service(t, "api");
    let x = api.image.with_tag("x").with_digest(&digest("x"));
    let y = api.image.with_tag("y").with_digest(&digest("y"));

    let plan = fly.plan(t, api, Some(&x)).await.unwrap();
    assert!(plan.create && plan.has_changes());
    let fields: Vec<&str> = plan.changes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(fields, ["app", "image", "machines.iad", "machines.fra"]);

    deploy(&fly, &request(t, api, "x", 1)).await.unwrap();
    let same = fly.plan(t, api, Some(&x)).await.unwrap();
    assert!(!same.has_changes(), "{same:?}");
    assert!(!fly.plan(t, api, None).await.unwrap().has_changes());

    let next = fly.plan(t, api, Some(&y)).await.unwrap();
    assert!(!next.create);
    let image = next.changes.iter().find(|c| c.field == "image").unwrap();
    assert!(
        image.live.as_deref().unwrap().ends_with(&digest("x"))
            && image.desired.as_deref().unwrap().ends_with(&digest("y"))
    );
    assert_eq!(next.changes.len(), 1, "{next:?}");

    // A setting changed by hand shows up by name.
    let name = fly_app("production", "api");
    let m = &fake.machines(&name)[0];
    let mut config = m.config.clone();
    config["guest"]["memory_mb"] = 256.into();
    config["env"]["HAND_SET"] = "x".into();
    fake.seed_machine(&name, "iad", config);
    let drift = fly.plan(t, api, None).await.unwrap();
    let fields: Vec<&str> = drift.changes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(fields, ["env.HAND_SET", "guest.memory_mb"], "{drift:?}");
    let hand = drift.changes.iter().find(|c| c.field == "env.HAND_SET").unwrap();
    assert_eq!(hand.live.as_deref(), Some("(set)"), "a value the manifest does not declare is not shown");
}

#[tokio::test]
async fn describe_deploy_lists_the_calls_and_sends_nothing() {
    let fake = FlyFake::start().await;
    let fly = builder(&fake).build().unwrap();
    let app = app();
    let t = target(&app, "production");
    let api = service(t, "api");
    let calls = fly.describe_deploy(t, api, &api.image.with_tag("3f2c1ab")).unwrap();
    let base = fake.uri();
    let verbs: Vec<&str> = calls.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(
        verbs,
        ["GET", "POST", "GET", "POST", "POST", "GET", "POST", "GET", "POST", "GET", "GET", "POST", "POST", "DELETE"]
    );
    // The public addresses of a service with a port, after the app and before the machines.
    let ips = format!("{base}/apps/shop-api-production/ip_assignments");
    assert_eq!((calls[2].method.as_str(), calls[2].url.as_str()), ("GET", ips.as_str()));
    assert_eq!(calls[3].body, Some(serde_json::json!({"type": "shared_v4"})));
    assert_eq!(calls[4].body, Some(serde_json::json!({"type": "v6"})));
    assert!(calls[3].note.as_deref().unwrap().contains("no public IPv4"), "{:?}", calls[3]);
    assert_eq!(calls[5].url, format!("{base}/apps/shop-api-production/machines"));
    // A worker has no port: no addresses.
    let worker = service(t, "worker");
    let calls_w = fly.describe_deploy(t, worker, &worker.image.with_tag("3f2c1ab")).unwrap();
    assert!(calls_w.iter().all(|c| !c.url.contains("/ip_assignments")), "{calls_w:#?}");
    let lease = calls.iter().position(|c| c.url.contains("/lease?ttl=")).unwrap();
    let first_update = calls.iter().position(|c| c.method == "POST" && c.url.ends_with("/machines/{id}")).unwrap();
    assert!(lease < first_update, "leases are taken before any update");
    assert_eq!(calls[0].url, format!("{base}/apps/shop-api-production"));
    assert_eq!(calls[1].body.as_ref().unwrap()["org_slug"], "acme");
    let update = &calls[first_update];
    let config = &update.body.as_ref().unwrap()["config"];
    assert_eq!(config["image"], "ghcr.io/acme/shop-api:3f2c1ab@<digest of the tag>", "{update:?}");
    assert_eq!(config["checks"]["http"]["path"], "/api/health");
    assert!(update.note.as_deref().unwrap().contains("fly-machine-lease-nonce"));
    assert!(calls.iter().any(|c| c.body.as_ref().is_some_and(|b| b["region"] == "fra")));
    // Every call is a JSON object in `--json` mode.
    let json = serde_json::to_value(&calls).unwrap();
    assert!(json.as_array().unwrap().iter().all(|c| c["method"].is_string() && c["url"].is_string()));
    assert!(fake.requests().is_empty());
}
