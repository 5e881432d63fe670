//! Variables on the Railway fake: one upsert per deploy that starts no deployment of its own,
//! ownership (`SHIPIT_VARIABLES`: what shipit set it may delete, nothing else), secrets, database
//! references and `PORT`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use harness::{World, app, deploy, digest, sync};
use shipit_core::App;
use shipit_core::engine::Outcome;

/// `api` with these `env` entries and secrets.
fn with(env: &str, secrets: &[&str]) -> App {
    let secrets: Vec<String> = secrets.iter().map(|s| format!("{s:?}")).collect();
    app(&format!(
        "[services.api]\nport = 8080\nenv = {{ {env} }}\nsecrets = [{}]\n\n[environments.staging]\ntarget = \"railway\"\n",
        secrets.join(", ")
    ))
}

fn owned(w: &World) -> Vec<String> {
    let list = w.variable("api", "SHIPIT_VARIABLES").unwrap_or_default();
    list.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect()
}

#[tokio::test]
async fn upserts_skip_deploys_one_deployment_per_deploy() {
    let w = World::new().await;
    let p = w.platform();
    let v1 = with("A = \"1\", B = \"2\", C = \"3\", D = \"4\"", &["S1", "S2"]);
    let before = w.requests_now();
    let s = deploy(&p, &v1, &["api"], "v1").await;
    assert_eq!(s.outcome, Outcome::Succeeded, "{s:?}");
    let upserts = w.ops_since(before).iter().filter(|op| *op == "VariableCollectionUpsert").count();
    assert_eq!(upserts, 1, "every variable in one upsert");
    assert_eq!(w.deployments("api").len(), 1, "the upsert started no deployment of its own");
    for (k, v) in [("A", "1"), ("B", "2"), ("C", "3"), ("D", "4"), ("PORT", "8080")] {
        assert_eq!(w.variable("api", k).as_deref(), Some(v), "{k}");
    }

    // Secrets: set, no deployment (they apply at the next deploy).
    sync(&p, &v1, "api", &[("S1", "one"), ("S2", "two")]).await;
    assert_eq!(w.deployments("api").len(), 1, "secrets sync starts no deployment");
    assert_eq!(w.variable("api", "S1").as_deref(), Some("one"));

    // Variables change with the next release: one deployment for it, and it runs them.
    let v2 = with("A = \"10\", B = \"20\", C = \"3\", D = \"4\"", &["S1", "S2"]);
    let s = deploy(&p, &v2, &["api"], "v2").await;
    assert_eq!(s.outcome, Outcome::Succeeded, "{s:?}");
    assert_eq!(w.deployments("api").len(), 2, "one deployment per deploy");
    let live = w.live("api").unwrap();
    assert_eq!(live.digest.as_deref(), Some(digest("api", "v2").as_str()));
    assert_eq!(live.variables.get("A"), Some(&Some("10".to_string())), "the deployment runs the new values");
    assert_eq!(live.variables.get("S1"), Some(&Some("one".to_string())), "and the synced secret");

    // A variable change alone, same digest: still exactly one deployment.
    let v3 = with("A = \"100\", B = \"20\", C = \"3\", D = \"4\"", &["S1", "S2"]);
    let s = deploy(&p, &v3, &["api"], "v2").await;
    assert_eq!(s.outcome, Outcome::Succeeded, "{s:?}");
    assert_eq!(w.deployments("api").len(), 3);
    assert_eq!(w.live("api").unwrap().variables.get("A"), Some(&Some("100".to_string())));
    // Nothing ever went to the environment's shared variables.
    assert!(w.fake.shared_variables(&w.project, &w.staging).is_empty());
}

#[tokio::test]
async fn variables_set_by_hand_are_never_changed_or_deleted() {
    let w = World::new().await;
    let p = w.platform();
    let v1 = with("A = \"1\", B = \"2\"", &["S"]);
    deploy(&p, &v1, &["api"], "v1").await;
    w.set_by_hand("api", "HAND", "by hand");
    // A secret the manifest names, set in the dashboard rather than by `secrets sync`.
    w.set_by_hand("api", "S", "dashboard secret");
    deploy(&p, &v1, &["api"], "v2").await;
    assert_eq!(w.variable("api", "HAND").as_deref(), Some("by hand"));
    // The manifest drops B and the secret S: B (shipit's) goes, HAND and S (set by hand) stay.
    let v3 = with("A = \"1\"", &[]);
    let s = deploy(&p, &v3, &["api"], "v3").await;
    assert_eq!(s.outcome, Outcome::Succeeded, "{s:?}");
    assert_eq!(w.variable("api", "HAND").as_deref(), Some("by hand"), "never deleted");
    assert_eq!(w.variable("api", "S").as_deref(), Some("dashboard secret"), "never synced by shipit: not its own");
    assert!(!w.has_variable("api", "B"));
    assert!(!owned(&w).contains(&"HAND".to_string()) && !owned(&w).contains(&"S".to_string()), "{:?}", owned(&w));
}

#[tokio::test]
async fn a_variable_removed_from_the_manifest_is_deleted() {
    let w = World::new().await;
    let p = w.platform();
    deploy(&p, &with("A = \"1\", B = \"2\"", &[]), &["api"], "v1").await;
    assert_eq!(owned(&w), ["A", "B", "PORT"]);
    let before = w.requests_now();
    let s = deploy(&p, &with("A = \"1\"", &[]), &["api"], "v2").await;
    assert_eq!(s.outcome, Outcome::Succeeded, "{s:?}");
    assert!(w.ops_since(before).iter().any(|op| op == "VariableDelete"), "{:?}", w.ops_since(before));
    assert!(!w.has_variable("api", "B"), "B was shipit's and the manifest no longer has it");
    assert_eq!(w.variable("api", "A").as_deref(), Some("1"));
    assert_eq!(owned(&w), ["A", "PORT"]);
    assert!(!w.live("api").unwrap().variables.contains_key("B"), "the new deployment runs without it");

    // Removed with the same digest: still deleted (and deployed, so it takes effect).
    let s = deploy(&p, &with("", &[]), &["api"], "v2").await;
    assert_eq!(s.outcome, Outcome::Succeeded, "{s:?}");
    assert!(!w.has_variable("api", "A"));
    assert_eq!(owned(&w), ["PORT"]);
    assert!(!w.live("api").unwrap().variables.contains_key("A"));
}

#[tokio::test]
async fn synced_secrets_stay_while_declared_and_go_when_removed() {
    let w = World::new().await;
    let p = w.platform();
    let both = with("A = \"1\"", &["S1", "S2"]);
    deploy(&p, &both, &["api"], "v1").await;
    sync(&p, &both, "api", &[("S1", "one"), ("S2", "two")]).await;
    assert!(owned(&w).contains(&"S1".to_string()) && owned(&w).contains(&"S2".to_string()), "{:?}", owned(&w));
    // Declared secrets are kept by every deploy (their values are not in the manifest).
    deploy(&p, &both, &["api"], "v2").await;
    assert_eq!(w.variable("api", "S1").as_deref(), Some("one"));
    assert_eq!(w.variable("api", "S2").as_deref(), Some("two"));
    // S2 leaves the manifest: shipit set it, so it goes; S1 stays.
    let s = deploy(&p, &with("A = \"1\"", &["S1"]), &["api"], "v3").await;
    assert_eq!(s.outcome, Outcome::Succeeded, "{s:?}");
    assert_eq!(w.variable("api", "S1").as_deref(), Some("one"));
    assert!(!w.has_variable("api", "S2"), "a synced secret removed from the manifest is deleted");
    assert!(!owned(&w).contains(&"S2".to_string()), "{:?}", owned(&w));
    assert!(!w.live("api").unwrap().variables.contains_key("S2"));

    // A plain variable that becomes a secret keeps its value until it is synced (never deleted
    // on the way).
    deploy(&p, &with("A = \"1\", T = \"plain\"", &["S1"]), &["api"], "v4").await;
    deploy(&p, &with("A = \"1\"", &["S1", "T"]), &["api"], "v5").await;
    assert_eq!(w.variable("api", "T").as_deref(), Some("plain"));
}

#[tokio::test]
async fn database_references_and_port() {
    let w = World::new().await;
    w.fake.seed_database(&w.project, "Postgres", "postgres:16");
    w.fake.seed_database(&w.project, "Redis", "redis:7");
    let p = w.platform();
    let a = app(r#"
[services.api]
port = 4000
env_from = { DATABASE_URL = "db.connection_string", PGHOST = "db.host", REDIS_URL = "cache.connection_string" }

[services.web]
port = 3000
env = { PORT = "3001" }
env_from = { API_URL = "api.url", API_HOST = "api.host" }

[databases.db]
engine = "postgres"

[databases.cache]
engine = "redis"

[environments.staging]
target = "railway"
"#);
    let s = deploy(&p, &a, &["api", "web"], "v1").await;
    assert_eq!(s.outcome, Outcome::Succeeded, "{s:?}");
    assert_eq!(w.variable("api", "DATABASE_URL").as_deref(), Some("${{Postgres.DATABASE_URL}}"));
    assert_eq!(w.variable("api", "PGHOST").as_deref(), Some("${{Postgres.PGHOST}}"));
    assert_eq!(w.variable("api", "REDIS_URL").as_deref(), Some("${{Redis.REDIS_URL}}"));
    assert_eq!(w.variable("api", "PORT").as_deref(), Some("4000"), "PORT from the port");
    assert_eq!(w.variable("web", "PORT").as_deref(), Some("3001"), "an explicit PORT wins");
    assert_eq!(w.variable("web", "API_URL").as_deref(), Some("https://${{api.RAILWAY_PUBLIC_DOMAIN}}"));
    assert_eq!(w.variable("web", "API_HOST").as_deref(), Some("${{api.RAILWAY_PRIVATE_DOMAIN}}"));
    // References compare as written: the next deploy of what runs writes nothing.
    let before = w.requests_now();
    let s = deploy(&p, &a, &["api", "web"], "v1").await;
    assert_eq!(s.outcome, Outcome::Succeeded, "{s:?}");
    assert_eq!(harness::mutations(&w.ops_since(before)), Vec::<String>::new());
    // The databases were referenced, not touched.
    assert_eq!(w.deployments("Postgres").len(), 1);
    assert!(w.instance("Postgres").variables.is_empty());
}
