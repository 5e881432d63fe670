//! fly.toml rendering of the forgestack example, pinned with insta, plus the checks a user makes.
// Helpers outside #[test] fns fail like tests do.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::PathBuf;

use shipit_core::{App, RenderedFile};

fn forgestack() -> App {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/forgestack/shipit.toml");
    shipit_core::load(&path).unwrap()
}

fn rendered(env: &str) -> Vec<RenderedFile> {
    shipit_fly::render(&forgestack(), env).unwrap()
}

fn file<'a>(files: &'a [RenderedFile], path: &str) -> &'a str {
    &files.iter().find(|f| f.path == path).unwrap_or_else(|| panic!("no {path}")).contents
}

fn parsed(files: &[RenderedFile], path: &str) -> toml_edit::DocumentMut {
    file(files, path).parse().unwrap()
}

#[test]
fn snapshots() {
    for env in ["staging", "production"] {
        let files = rendered(env);
        let paths: Vec<_> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["fly.api.toml", "fly.worker.toml", "fly.web.toml"]);
        for f in &files {
            insta::assert_snapshot!(format!("{env}__{}", f.path), f.contents);
        }
    }
}

#[test]
fn production_api_keeps_two_machines_running() {
    let doc = parsed(&rendered("production"), "fly.api.toml");
    assert_eq!(doc["http_service"]["min_machines_running"].as_integer(), Some(2));
    assert_eq!(doc["app"].as_str(), Some("forgestack-api-production"));
    assert_eq!(doc["primary_region"].as_str(), Some("iad"));
}

#[test]
fn worker_is_a_process_without_http_service() {
    let doc = parsed(&rendered("staging"), "fly.worker.toml");
    assert!(doc.get("http_service").is_none());
    assert_eq!(doc["processes"]["app"].as_str(), Some("node dist/index.js"));
}

#[test]
fn web_reaches_the_api_of_its_own_environment() {
    let doc = parsed(&rendered("staging"), "fly.web.toml");
    assert_eq!(doc["env"]["NEXT_PUBLIC_API_URL"].as_str(), Some("https://forgestack-api-staging.fly.dev"));
    assert_eq!(doc["build"]["image"].as_str(), Some("ghcr.io/acme/forgestack-web:staging"));
}

#[test]
fn secrets_are_named_but_never_set() {
    for env in ["staging", "production"] {
        for f in rendered(env) {
            let doc: toml_edit::DocumentMut = f.contents.parse().unwrap();
            let vars = doc.get("env").and_then(|e| e.as_table());
            for secret in ["BETTER_AUTH_SECRET", "STRIPE_SECRET_KEY", "DATABASE_URL", "REDIS_URL"] {
                assert!(vars.is_none_or(|t| !t.contains_key(secret)), "{env} {}: {secret} in [env]", f.path);
            }
            // The only "pk_" allowed is the publishable key, which the manifest marks not secret.
            let without_publishable = f.contents.replace("NEXT_PUBLIC_STRIPE_KEY = \"pk_live_51Forgestack\"", "");
            assert!(!without_publishable.contains("pk_"), "{env} {}", f.path);
            assert!(!f.contents.contains("postgres://") && !f.contents.contains("redis://"));
        }
        let api = rendered(env);
        let api = file(&api, "fly.api.toml");
        for name in ["BETTER_AUTH_SECRET", "STRIPE_SECRET_KEY", "DATABASE_URL", "REDIS_URL"] {
            assert!(api.lines().any(|l| l.starts_with('#') && l.contains(name)), "{name} not listed");
        }
    }
}

/// Writes every rendered file under the test scratch dir, for `check-rendered`.
#[test]
fn writes_files_for_schema_check() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("shipit-fly-rendered");
    for env in ["staging", "production"] {
        shipit_core::files::write_all(&out.join(env), &rendered(env)).unwrap();
    }
    let varied = shipit_core::parse(VARIED, "shipit.toml").unwrap();
    shipit_core::files::write_all(&out.join("qa"), &shipit_fly::render(&varied, "qa").unwrap()).unwrap();
}

const MINIMAL: &str = r#"
app = "tiny"
[registry]
namespace = "acme"
[services.api]
port = 8080
[environments.staging]
target = "fly"
[targets.fly]
org = "acme"
"#;

#[test]
fn no_region_is_a_render_error() {
    let app = shipit_core::parse(MINIMAL, "shipit.toml").unwrap();
    let e = shipit_fly::render(&app, "staging").unwrap_err();
    assert_eq!(e.platform, "fly");
    assert!(e.message.contains("[targets.fly] primary_region"), "{e}");
}

#[test]
fn environment_regions_give_the_primary_region() {
    let text = MINIMAL.replace("target = \"fly\"", "target = \"fly\"\nregions = [\"fra\", \"iad\"]");
    let app = shipit_core::parse(&text, "shipit.toml").unwrap();
    let files = shipit_fly::render(&app, "staging").unwrap();
    assert_eq!(parsed(&files, "fly.api.toml")["primary_region"].as_str(), Some("fra"));
}

#[test]
fn unknown_environment_is_a_render_error() {
    let e = shipit_fly::render(&forgestack(), "qa").unwrap_err();
    assert!(e.message.contains("qa") && e.message.contains("staging"), "{e}");
}

const VARIED: &str = r#"
app = "shop"
[registry]
namespace = "acme"
[services.api]
port = 8080
command = ["bin/server", "--greeting", "hello world"]
scale = { min = 0, max = 2 }
vm = { cpu_kind = "performance", cpus = 2, memory_mb = 4096 }
restart = { policy = "never" }
[services.jobs]
env_from = { API_HOST = "api.host", API_PORT = "api.port" }
[environments.qa]
target = "fly"
strategy = "bluegreen"
[targets.fly]
primary_region = "ams"
name_template = "{env}-{service}"
"#;

#[test]
fn commands_references_and_settings_map_to_fly_names() {
    let app = shipit_core::parse(VARIED, "shipit.toml").unwrap();
    let files = shipit_fly::render(&app, "qa").unwrap();
    let api = parsed(&files, "fly.api.toml");
    assert_eq!(api["app"].as_str(), Some("qa-api"));
    assert_eq!(api["processes"]["app"].as_str(), Some("bin/server --greeting 'hello world'"));
    let http = &api["http_service"];
    assert_eq!(http["processes"].as_array().map(|a| a.len()), Some(1));
    assert_eq!(http["auto_stop_machines"].as_str(), Some("off"));
    assert_eq!(http["auto_start_machines"].as_bool(), Some(false));
    assert_eq!(http["min_machines_running"].as_integer(), Some(0));
    assert!(http.get("checks").is_none());
    assert_eq!(api["deploy"]["strategy"].as_str(), Some("bluegreen"));
    assert_eq!(api["restart"][0]["policy"].as_str(), Some("never"));
    assert!(api["restart"][0].get("retries").is_none());
    assert_eq!(api["vm"][0]["cpu_kind"].as_str(), Some("performance"));
    assert_eq!(api["vm"][0]["memory"].as_str(), Some("4096mb"));

    let jobs = parsed(&files, "fly.jobs.toml");
    assert_eq!(jobs["env"]["API_HOST"].as_str(), Some("qa-api.internal"));
    assert_eq!(jobs["env"]["API_PORT"].as_str(), Some("8080"));
    assert!(jobs.get("processes").is_none() && jobs.get("http_service").is_none() && jobs.get("vm").is_none());
    assert!(file(&files, "fly.jobs.toml").contains("# Secrets: none."));
}

#[test]
fn cpu_counts_fly_does_not_offer_are_refused() {
    let text = VARIED.replace("cpus = 2", "cpus = 3");
    let app = shipit_core::parse(&text, "shipit.toml").unwrap();
    let e = shipit_fly::render(&app, "qa").unwrap_err();
    assert!(e.message.contains("vm.cpus = 3"), "{e}");
}
