//! render.yaml and the API agree: for each service, what `shipit render` writes in the
//! Blueprint and what `shipit deploy` makes on Render (read back from the fake) describe the
//! same service, field by field, with the two vocabularies mapped (`web` ↔ `web_service`,
//! `pro plus` ↔ `pro_plus`, `scaling {minInstances, maxInstances}` ↔ autoscaling min/max,
//! top-level `dockerCommand` ↔ `envSpecificDetails.dockerCommand`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::collections::BTreeSet;

use harness::{app, deploy, deploy_with, opts, raw};
use serde_json::Value;
use shipit_core::engine::Outcome;
use shipit_core::{App, Events};
use shipit_testkit::render::RenderFake;

/// Blueprint type → API type.
const TYPES: &[(&str, &str)] = &[("web", "web_service"), ("worker", "background_worker")];
/// Blueprint plan → API plan.
const PLANS: &[(&str, &str)] = &[
    ("starter", "starter"),
    ("standard", "standard"),
    ("pro", "pro"),
    ("pro plus", "pro_plus"),
    ("pro max", "pro_max"),
    ("pro ultra", "pro_ultra"),
];

fn forgestack() -> App {
    shipit_core::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/forgestack/shipit.toml"
    )))
    .unwrap()
}

/// A web service with a plan chosen by name and autoscaling, a worker with a command, a `vm`
/// (no health check: Render runs none on workers), and both kinds of database.
fn own() -> App {
    app(r#"app = "shop"
[registry]
host = "ghcr.io"
namespace = "acme"

[services.web]
port = 8080
health = { path = "/healthz" }
env = { MODE = "live" }
secrets = ["API_TOKEN"]
env_from = { DATABASE_URL = "db.connection_string", REDIS_URL = "cache.connection_string" }
scale = { min = 2, max = 4 }

[services.worker]
command = ["node", "worker.js", "--queue", "high prio"]
vm = { cpu_kind = "shared", cpus = 4, memory_mb = 8192 }
env_from = { DATABASE_URL = "db.connection_string" }

[databases.db]
engine = "postgres"

[databases.cache]
engine = "redis"

[environments.staging]
target = "render"

[targets.render]
region = "frankfurt"

[targets.render.services.web]
plan = "pro max"
"#)
}

/// The Blueprint of `env`, as the file says it.
fn blueprint(app: &App, env: &str) -> Value {
    let files = shipit_render::render(app, env).unwrap();
    serde_saphyr::from_str(&files[0].contents).unwrap()
}

fn mapped(table: &[(&str, &'static str)], key: &str) -> &'static str {
    table.iter().find(|(k, _)| *k == key).map(|(_, v)| *v).unwrap_or_else(|| panic!("no mapping for {key:?}"))
}

/// Seeds each Blueprint database and Key Value instance of `bp`; answers the internal
/// connection strings by name.
async fn seed_databases(fake: &RenderFake, owner: &str, bp: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for db in bp["databases"].as_array().cloned().unwrap_or_default() {
        let name = db["name"].as_str().unwrap().to_string();
        let id = fake.seed_postgres(owner, &name);
        let (_, info) = raw(fake, "GET", &format!("/postgres/{id}/connection-info"), None).await;
        out.push((name, info["internalConnectionString"].as_str().unwrap().to_string()));
    }
    for kv in bp["services"].as_array().unwrap().iter().filter(|s| s["type"] == "keyvalue") {
        let name = kv["name"].as_str().unwrap().to_string();
        let id = fake.seed_key_value(owner, &name);
        let (_, info) = raw(fake, "GET", &format!("/key-value/{id}/connection-info"), None).await;
        out.push((name, info["internalConnectionString"].as_str().unwrap().to_string()));
    }
    out
}

/// Every server service of `bp` agrees with the service the deploy made, field by field.
fn agree(fake: &RenderFake, owner: &str, bp: &Value, connections: &[(String, String)]) {
    let servers: Vec<&Value> = bp["services"].as_array().unwrap().iter().filter(|s| s["type"] != "keyvalue").collect();
    assert!(!servers.is_empty());
    for b in servers {
        let name = b["name"].as_str().unwrap();
        let svc = fake.service_by_name(owner, name).unwrap_or_else(|| panic!("{name} was created"));
        let at = |field: &str| format!("{name}: {field}");
        let kind = b["type"].as_str().unwrap();
        assert_eq!(svc.service_type, mapped(TYPES, kind), "{}", at("type"));
        assert_eq!(svc.plan, mapped(PLANS, b["plan"].as_str().unwrap()), "{}", at("plan"));
        assert_eq!(svc.region, b["region"].as_str().unwrap(), "{}", at("region"));
        assert_eq!(b["runtime"], "image", "{}", at("runtime"));
        match (b.get("numInstances"), b.get("scaling")) {
            (Some(n), None) => {
                assert_eq!(Some(svc.num_instances), n.as_u64(), "{}", at("numInstances"));
                assert_eq!(svc.autoscaling, None, "{}", at("no autoscaling"));
            }
            (None, Some(s)) => {
                let a = svc.autoscaling.unwrap_or_else(|| panic!("{}", at("autoscaling")));
                assert!(a.enabled, "{}", at("autoscaling enabled"));
                assert_eq!(Some(a.min), s["minInstances"].as_u64(), "{}", at("scaling.minInstances"));
                assert_eq!(Some(a.max), s["maxInstances"].as_u64(), "{}", at("scaling.maxInstances"));
                assert!(a.cpu_enabled, "{}", at("cpu criterion"));
                assert_eq!(Some(a.cpu_percentage), s["targetCPUPercent"].as_u64(), "{}", at("targetCPUPercent"));
            }
            other => panic!("{}: {other:?}", at("numInstances xor scaling")),
        }
        // A health check on a web service only.
        let want_health = b.get("healthCheckPath").and_then(Value::as_str);
        if kind == "web" {
            assert_eq!(svc.health_check_path.as_deref(), want_health, "{}", at("healthCheckPath"));
        } else {
            assert_eq!(want_health, None, "{}", at("no health check in the file"));
            assert!(svc.health_check_path.as_deref().unwrap_or_default().is_empty(), "{}", at("no health check"));
        }
        assert_eq!(
            svc.docker_command,
            b.get("dockerCommand").and_then(Value::as_str).unwrap_or_default(),
            "{}",
            at("dockerCommand")
        );
        // The same repository: the file's `image.url` has the environment's tag, the API's
        // image setting the release's tag and the digest.
        let url = b["image"]["url"].as_str().unwrap();
        let repo = url.rsplit_once(':').unwrap().0;
        assert!(
            svc.image_path.starts_with(&format!("{repo}:")) && svc.image_path.contains("@sha256:"),
            "{}",
            at("image")
        );
        let live = fake.live_deploy(&svc.id).unwrap_or_else(|| panic!("{}", at("live deploy")));
        assert_eq!(live.image_ref, svc.image_path, "{}", at("the live deploy runs the image setting"));

        // Env vars: every one the file names, with values for the plain ones, the references
        // resolved, and the secrets (`sync: false`) from the environment of the deploy that
        // created the service.
        let vars = b["envVars"].as_array().unwrap();
        let want: BTreeSet<&str> = vars.iter().map(|v| v["key"].as_str().unwrap()).collect();
        let got: BTreeSet<&str> =
            svc.env_vars.keys().map(String::as_str).filter(|k| !k.starts_with("SHIPIT_")).collect();
        assert_eq!(got, want, "{}", at("env var names"));
        for v in vars {
            let key = v["key"].as_str().unwrap();
            let value = svc.env_vars.get(key).map(String::as_str);
            if let Some(plain) = v.get("value") {
                assert_eq!(value, plain.as_str(), "{}", at(&format!("env {key}")));
            } else if let Some(from) =
                v.get("fromDatabase").or_else(|| v.get("fromService").filter(|f| f["type"] == "keyvalue"))
            {
                let db = from["name"].as_str().unwrap();
                let conn = connections.iter().find(|(n, _)| n == db).map(|(_, c)| c.as_str());
                assert_eq!(value, conn, "{}", at(&format!("env {key} from {db}")));
            } else {
                assert!(v.get("sync").is_some(), "{}", at(&format!("env {key}: a secret")));
                let offered = harness::offered(key);
                assert_eq!(value, Some(offered.as_str()), "{}", at(&format!("env {key}: set at creation")));
            }
        }
        assert_eq!(&live.env_vars, &svc.env_vars, "{}", at("the live deploy has the env vars"));
    }
}

#[tokio::test]
async fn forgestack_staging_and_production_agree_with_the_blueprint() {
    let app = forgestack();
    for env in ["staging", "production"] {
        let fake = RenderFake::start().await;
        let owner = fake.seed_pro_owner("acme");
        let platform = harness::platform(&fake);
        let bp = blueprint(&app, env);
        let connections = seed_databases(&fake, &owner, &bp).await;
        assert_eq!(connections.len(), 2, "{env}: db and cache");
        let s = deploy(&platform, &app, env, &["api", "worker", "web"], "v1").await;
        assert_eq!(s.outcome, Outcome::Succeeded, "{env}: {s:?}");
        agree(&fake, &owner, &bp, &connections);
        // The web app's API address is the api's default one.
        let web = fake.service_by_name(&owner, &format!("forgestack-web-{env}")).unwrap();
        assert_eq!(
            web.env_vars.get("NEXT_PUBLIC_API_URL").map(String::as_str),
            Some(format!("https://forgestack-api-{env}.onrender.com").as_str())
        );
        // Still agreeing after an update.
        let s = deploy(&platform, &app, env, &["api", "worker", "web"], "v2").await;
        assert_eq!(s.outcome, Outcome::Succeeded, "{env}: {s:?}");
        agree(&fake, &owner, &bp, &connections);
    }
}

#[tokio::test]
async fn own_manifest_agrees_with_the_blueprint() {
    let app = own();
    let fake = RenderFake::start().await;
    let owner = fake.seed_pro_owner("acme");
    let platform = harness::platform(&fake);
    let bp = blueprint(&app, "staging");
    // The vocabularies are really exercised.
    let web = bp["services"].as_array().unwrap().iter().find(|s| s["name"] == "shop-web-staging").unwrap();
    let worker = bp["services"].as_array().unwrap().iter().find(|s| s["name"] == "shop-worker-staging").unwrap();
    assert_eq!((web["type"].as_str(), web["plan"].as_str()), (Some("web"), Some("pro max")));
    assert_eq!(web["scaling"]["minInstances"], 2);
    assert_eq!((worker["type"].as_str(), worker["plan"].as_str()), (Some("worker"), Some("pro plus")));
    assert_eq!(worker["dockerCommand"], "node worker.js --queue 'high prio'");
    let connections = seed_databases(&fake, &owner, &bp).await;
    let s = deploy(&platform, &app, "staging", &["web", "worker"], "v1").await;
    assert_eq!(s.outcome, Outcome::Succeeded, "{s:?}");
    agree(&fake, &owner, &bp, &connections);
    let w = fake.service_by_name(&owner, "shop-web-staging").unwrap();
    assert_eq!((w.plan.as_str(), w.region.as_str()), ("pro_max", "frankfurt"));
    let k = fake.service_by_name(&owner, "shop-worker-staging").unwrap();
    assert_eq!((k.service_type.as_str(), k.plan.as_str()), ("background_worker", "pro_plus"));
}

#[tokio::test]
async fn references_to_missing_databases_are_left_out_with_a_warning_then_set_once_they_exist() {
    let app = own();
    let fake = RenderFake::start().await;
    let owner = fake.seed_pro_owner("acme");
    let platform = harness::platform(&fake);
    let (events, seen) = Events::collect();
    let s = deploy_with(&platform, &app, "staging", &["web"], "v1", &opts(), &events).await.unwrap();
    assert_eq!(s.outcome, Outcome::Succeeded, "{s:?}");
    let web = fake.service_by_name(&owner, "shop-web-staging").unwrap();
    assert!(!web.env_vars.contains_key("DATABASE_URL") && !web.env_vars.contains_key("REDIS_URL"));
    let shown = harness::shown(&seen);
    assert!(shown.contains("DATABASE_URL") && shown.contains("does not exist on Render yet"), "{shown}");

    let bp = blueprint(&app, "staging");
    let connections = seed_databases(&fake, &owner, &bp).await;
    deploy(&platform, &app, "staging", &["web", "worker"], "v2").await;
    agree(&fake, &owner, &bp, &connections);
}
