//! render.yaml for the reference app, and every way rendering can refuse a manifest.
// Helpers outside #[test] fns fail like tests do.
#![allow(clippy::unwrap_used, clippy::panic)]

use shipit_core::{App, RenderError, RenderedFile};

fn forgestack() -> App {
    shipit_core::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/forgestack/shipit.toml"
    )))
    .unwrap()
}

fn yaml(app: &App, env: &str) -> String {
    let files: Vec<RenderedFile> = shipit_render::render(app, env).unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].path, "render.yaml");
    files[0].contents.clone()
}

/// The rendered Blueprint as a generic value, for assertions by key.
fn value(app: &App, env: &str) -> serde_json::Value {
    serde_saphyr::from_str(&yaml(app, env)).unwrap()
}

fn service<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["services"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap()
}

fn var<'a>(svc: &'a serde_json::Value, key: &str) -> &'a serde_json::Value {
    svc["envVars"].as_array().unwrap().iter().find(|e| e["key"] == key).unwrap()
}

/// A small manifest with `extra` appended.
fn small(extra: &str) -> Result<App, String> {
    let text = format!(
        r#"app = "shop"
[registry]
namespace = "acme"
[services.api]
port = 8080
{extra}
[databases.db]
engine = "postgres"
[databases.cache]
engine = "redis"
[environments.staging]
"#
    );
    shipit_core::parse(&text, "shipit.toml").map_err(|e| e.to_string())
}

fn render_err(app: &App) -> RenderError {
    shipit_render::render(app, "staging").unwrap_err()
}

#[test]
fn forgestack_staging() {
    insta::assert_snapshot!("forgestack_staging", yaml(&forgestack(), "staging"));
}

#[test]
fn forgestack_production() {
    insta::assert_snapshot!("forgestack_production", yaml(&forgestack(), "production"));
}

#[test]
fn rendering_is_deterministic() {
    assert_eq!(yaml(&forgestack(), "production"), yaml(&forgestack(), "production"));
}

#[test]
fn production_api_autoscales_and_staging_does_not() {
    let prod = value(&forgestack(), "production");
    let api = service(&prod, "forgestack-api-production");
    assert_eq!(api["type"], "web");
    assert_eq!(api["scaling"]["minInstances"], 2);
    assert_eq!(api["scaling"]["maxInstances"], 6);
    assert_eq!(api["scaling"]["targetCPUPercent"], 70);
    assert!(api.get("numInstances").is_none());
    assert_eq!(api["healthCheckPath"], "/api/health");
    assert_eq!(api["image"]["url"], "ghcr.io/acme/forgestack-api:production");
    let staging = value(&forgestack(), "staging");
    let worker = service(&staging, "forgestack-worker-staging");
    assert_eq!(worker["numInstances"], 1);
    assert!(worker.get("scaling").is_none());
}

#[test]
fn worker_is_a_worker_with_its_command() {
    let v = value(&forgestack(), "production");
    let worker = service(&v, "forgestack-worker-production");
    assert_eq!(worker["type"], "worker");
    assert_eq!(worker["dockerCommand"], "node dist/index.js");
    assert!(worker.get("healthCheckPath").is_none());
    assert!(worker["envVars"].as_array().unwrap().iter().all(|e| e["key"] != "PORT"));
}

#[test]
fn secrets_sync_false_without_value() {
    let v = value(&forgestack(), "production");
    let api = service(&v, "forgestack-api-production");
    for key in ["BETTER_AUTH_SECRET", "STRIPE_SECRET_KEY"] {
        let e = var(api, key);
        assert_eq!(e["sync"], false);
        assert!(e.get("value").is_none(), "{key} must have no value");
    }
}

#[test]
fn env_vars_are_sorted() {
    let v = value(&forgestack(), "production");
    let keys: Vec<&str> = service(&v, "forgestack-api-production")["envVars"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(keys, sorted);
}

#[test]
fn references_use_from_database_and_keyvalue() {
    let v = value(&forgestack(), "production");
    let api = service(&v, "forgestack-api-production");
    let db = &var(api, "DATABASE_URL")["fromDatabase"];
    assert_eq!(
        (db["name"].as_str(), db["property"].as_str()),
        (Some("forgestack-db-production"), Some("connectionString"))
    );
    let kv = &var(api, "REDIS_URL")["fromService"];
    assert_eq!(kv["type"], "keyvalue");
    assert_eq!(kv["name"], "forgestack-cache-production");
    assert_eq!(kv["property"], "connectionString");
    let web = service(&v, "forgestack-web-production");
    assert_eq!(var(web, "NEXT_PUBLIC_API_URL")["value"], "https://forgestack-api-production.onrender.com");
}

#[test]
fn databases_and_keyvalue() {
    let v = value(&forgestack(), "production");
    let cache = service(&v, "forgestack-cache-production");
    assert_eq!(cache["type"], "keyvalue");
    assert_eq!(cache["ipAllowList"], serde_json::json!([]));
    let db = &v["databases"][0];
    assert_eq!(db["name"], "forgestack-db-production");
    assert_eq!(db["postgresMajorVersion"], "16");
    assert_eq!(db["plan"], "basic-256mb");
    assert_eq!(db["ipAllowList"], serde_json::json!([]));
}

#[test]
fn plans_fit_the_vm() {
    let v = value(&forgestack(), "production");
    // web: 1 CPU / 1024 MB; api and worker: 1 CPU / 512 MB: starter has only half a CPU.
    for name in ["web", "api", "worker"] {
        assert_eq!(service(&v, &format!("forgestack-{name}-production"))["plan"], "standard", "{name}");
    }
    let app = small("vm = { cpus = 2, memory_mb = 4096 }").unwrap();
    assert_eq!(service(&value(&app, "staging"), "shop-api-staging")["plan"], "pro");
    let app = small("vm = { cpus = 4, memory_mb = 12000 }").unwrap();
    assert_eq!(service(&value(&app, "staging"), "shop-api-staging")["plan"], "pro max");
    let app = small("").unwrap();
    assert_eq!(service(&value(&app, "staging"), "shop-api-staging")["plan"], "starter");
}

#[test]
fn explicit_plan_in_either_spelling() {
    for spelling in ["pro plus", "pro_plus"] {
        let app = small(&format!("[targets.render.services.api]\nplan = \"{spelling}\"")).unwrap();
        assert_eq!(service(&value(&app, "staging"), "shop-api-staging")["plan"], "pro plus");
    }
}

#[test]
fn region_falls_back_to_environment_then_oregon() {
    let v = value(&small("").unwrap(), "staging");
    assert_eq!(service(&v, "shop-api-staging")["region"], "oregon");
    let app = shipit_core::parse(
        "app = \"shop\"\n[registry]\nnamespace = \"acme\"\n[services.api]\nport = 8080\n[environments.staging]\nregions = [\"frankfurt\"]\n",
        "shipit.toml",
    )
    .unwrap();
    assert_eq!(service(&value(&app, "staging"), "shop-api-staging")["region"], "frankfurt");
}

#[test]
fn registry_credential_and_port() {
    let app = small("[targets.render]\nregistry_credential = \"ghcr-acme\"").unwrap();
    let v = value(&app, "staging");
    let api = service(&v, "shop-api-staging");
    assert_eq!(api["image"]["creds"]["fromRegistryCreds"]["name"], "ghcr-acme");
    assert_eq!(var(api, "PORT")["value"], "8080");
}

#[test]
fn unknown_region_is_refused() {
    let e = render_err(&small("[targets.render]\nregion = \"iad\"").unwrap());
    assert_eq!(e.platform, "render");
    assert!(e.message.contains("\"iad\"") && e.message.contains("oregon, ohio, frankfurt, singapore, virginia"), "{e}");
}

#[test]
fn vm_too_big_is_refused() {
    let e = render_err(&small("vm = { cpus = 16, memory_mb = 65536 }").unwrap());
    assert!(e.message.contains("service `api`") && e.message.contains("largest plan"), "{e}");
}

#[test]
fn unknown_plan_is_refused() {
    let e = render_err(&small("[targets.render.services.api]\nplan = \"huge\"").unwrap());
    assert!(e.message.contains("\"huge\" is not a Render plan"), "{e}");
}

#[test]
fn free_worker_is_refused() {
    let text = "app = \"shop\"\n[registry]\nnamespace = \"acme\"\n[services.jobs]\n[environments.staging]\n[targets.render.services.jobs]\nplan = \"free\"\n";
    let e = render_err(&shipit_core::parse(text, "shipit.toml").unwrap());
    assert!(e.message.contains("workers cannot use the free plan"), "{e}");
}

#[test]
fn keyvalue_user_is_refused() {
    let e = render_err(&small("env_from = { REDIS_USER = \"cache.user\" }").unwrap());
    assert!(e.message.contains("REDIS_USER") && e.message.contains("only connection_string, host and port"), "{e}");
}

#[test]
fn unknown_postgres_version_is_refused() {
    let text = "app = \"shop\"\n[registry]\nnamespace = \"acme\"\n[services.api]\nport = 8080\n[databases.db]\nengine = \"postgres\"\nversion = \"9\"\n[environments.staging]\n";
    let e = render_err(&shipit_core::parse(text, "shipit.toml").unwrap());
    assert!(e.message.contains("Postgres \"9\""), "{e}");
}

#[test]
fn unknown_environment_is_refused() {
    let e = shipit_render::render(&forgestack(), "prod").unwrap_err();
    assert!(e.message.contains("\"prod\"") && e.message.contains("staging, production"), "{e}");
}

#[test]
fn regions_of_another_platform_are_not_renders() {
    let text = |target: &str| {
        format!(
            "app = \"shop\"\n[registry]\nnamespace = \"acme\"\n[services.api]\nport = 8080\n[environments.production]\n{target}regions = [\"iad\"]\n"
        )
    };
    // an environment on Fly keeps its Fly regions to itself: Render uses its default
    let app = shipit_core::parse(&text("target = \"fly\"\n"), "shipit.toml").unwrap();
    let yaml = &shipit_render::render(&app, "production").unwrap()[0].contents;
    assert!(yaml.contains("region: oregon"), "{yaml}");
    // an environment on Render must name Render regions
    let app = shipit_core::parse(&text("target = \"render\"\n"), "shipit.toml").unwrap();
    let e = shipit_render::render(&app, "production").unwrap_err();
    assert!(e.message.contains("\"iad\""), "{e}");
}

#[test]
fn what_render_cannot_do_is_listed_for_validate() {
    let text = r#"app = "shop"
[registry]
namespace = "acme"
[services.api]
port = 8080
health = { path = "/healthz", timeout = "2s" }
restart = { policy = "never" }
[services.jobs]
[services.web]
port = 3000
health = "/"
[environments.staging]
target = "render"
[environments.fly]
target = "fly"
[targets.render]
[targets.fly]
"#;
    let app = shipit_core::parse(text, "shipit.toml").unwrap();
    let warnings = shipit_render::render::unsupported_settings(&app);
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    assert!(warnings[0].contains("`api`") && warnings[0].contains("timing"), "{warnings:#?}");
    assert!(warnings[1].contains("`api`") && warnings[1].contains("restart"), "{warnings:#?}");
    assert!(warnings.iter().all(|w| w.contains("\"staging\"")), "only the Render environment: {warnings:#?}");
}
