//! One deploy on the Railway fake, checked through what Railway holds afterwards: the settings
//! it was sent (field by field against `railway.<service>.json`), the replicas it runs, the
//! requests it took, and what happens to a deployment that does not go live.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::time::{Duration, Instant};

use harness::{World, app, deploy, deploy_with, digest, mutations, opts, report, target};
use serde_json::{Value, json};
use shipit_core::engine::{Outcome, ServiceResult};
use shipit_core::{App, ErrorKind, Events, Platform};
use shipit_testkit::railway::{Behaviour, Fault};

/// Two services that set every setting shipit manages, one way or another: `api` with
/// everything, `worker` with nothing (Railway's defaults, sent explicitly) but App Sleeping.
fn full() -> App {
    app(r#"
[services.api]
port = 8080
command = ["node", "server.js", "--name", "a b"]
health = { path = "/healthz", interval = "300s", timeout = "200s", grace = "150s" }
env = { MODE = "test", LOG_LEVEL = "debug" }
env_from = { DATABASE_URL = "db.connection_string" }
secrets = ["API_SECRET"]
scale = { min = 2, max = 2 }
vm = { cpu_kind = "shared", cpus = 2, memory_mb = 1536 }
restart = { policy = "always" }

[services.worker]
scale = { min = 0, max = 1, auto_stop = true }
restart = { policy = "on-failure", retries = 4 }

[databases.db]
engine = "postgres"

[environments.staging]
target = "railway"
regions = ["europe-west4-drams3a", "us-east4-eqdc4a"]

[targets.railway]
project = "conf"
"#)
}

/// `railway.<service>.json` for staging, as `shipit render --to railway` writes it.
fn rendered(app: &App, service: &str) -> Value {
    let path = format!("railway.{service}.json");
    let file = shipit_railway::render(app, "staging").unwrap().into_iter().find(|f| f.path == path).unwrap();
    serde_json::from_str(&file.contents).unwrap()
}

#[tokio::test]
async fn rendering_agrees_with_the_api_field_by_field() {
    let w = World::new().await;
    w.fake.seed_database(&w.project, "Postgres", "ghcr.io/railwayapp-templates/postgres-ssl:16");
    let app = full();
    let p = w.platform();
    let s = deploy(&p, &app, &["api", "worker"], "v1").await;
    assert_eq!(s.outcome, Outcome::Succeeded, "{s:?}");

    for service in ["api", "worker"] {
        let file = rendered(&app, service);
        let name = file["service"].as_str().unwrap();
        assert_eq!(file["environment"], "staging");
        assert_eq!(file["project"], "conf");
        let got = w.instance(name);
        let instance = file["instance"].as_object().unwrap();
        for (field, want) in instance {
            let have = match field.as_str() {
                "source" => {
                    // The file shows `<repository>:<env>`; the deploy pins the digest.
                    let shown = want["image"].as_str().unwrap();
                    let repo = shown.strip_suffix(":staging").unwrap_or_else(|| panic!("{shown}"));
                    assert_eq!(got.image.as_deref(), Some(format!("{repo}@{}", digest(service, "v1")).as_str()));
                    continue;
                }
                "startCommand" => json!(got.start_command),
                "healthcheckPath" => json!(got.healthcheck_path),
                "healthcheckTimeout" => json!(got.healthcheck_timeout),
                "restartPolicyType" => json!(got.restart_policy_type),
                "restartPolicyMaxRetries" => json!(got.restart_policy_max_retries),
                "sleepApplication" => json!(got.sleep_application),
                "multiRegionConfig" => got.multi_region_config.clone(),
                // Railway keeps no empty path: cleared is unset.
                "railwayConfigFile" => json!(got.railway_config_file.clone().unwrap_or_default()),
                other => panic!("railway.{service}.json has instance.{other}: compare it with the fake here"),
            };
            assert_eq!(&have, want, "{service}: instance.{field} rendered {want}, Railway holds {have}");
        }
        match file.get("limits") {
            Some(l) => {
                assert_eq!(got.vcpus, l["vCPUs"].as_f64(), "{service}: vCPUs");
                assert_eq!(got.memory_gb, l["memoryGB"].as_f64(), "{service}: memoryGB");
            }
            None => assert_eq!((got.vcpus, got.memory_gb), (None, None), "{service}: no size set"),
        }
        let want: serde_json::Map<String, Value> = file["variables"].as_object().unwrap().clone();
        let have: serde_json::Map<String, Value> = got
            .variables
            .iter()
            .filter(|(k, _)| !k.starts_with("SHIPIT_"))
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        assert_eq!(have, want, "{service}: the variables Railway holds are the rendered ones");
    }
    // What the manifest says, in Railway's terms (so the comparison above compares something).
    let api = w.instance("api");
    assert_eq!(api.start_command.as_deref(), Some("node server.js --name 'a b'"));
    assert_eq!(api.healthcheck_timeout, Some(350), "max(300, grace + timeout)");
    assert_eq!(api.restart_policy_type, "ALWAYS");
    assert_eq!(
        api.multi_region_config,
        json!({"europe-west4-drams3a": {"numReplicas": 2}, "us-east4-eqdc4a": {"numReplicas": 2}})
    );
    assert_eq!((api.vcpus, api.memory_gb), (Some(2.0), Some(1.5)));
    assert_eq!(api.variables.get("PORT"), Some(&Some("8080".to_string())));
    assert_eq!(api.variables.get("DATABASE_URL"), Some(&Some("${{Postgres.DATABASE_URL}}".to_string())));
    let worker = w.instance("worker");
    assert!(worker.sleep_application, "App Sleeping for min = 0 with auto_stop");
    assert_eq!(worker.start_command.as_deref(), Some(""), "the image's command: sent as empty, not left out");
    assert_eq!(worker.restart_policy_max_retries, 4);
    // The deployment runs those settings.
    let live = w.live("api").unwrap();
    assert_eq!(live.digest.as_deref(), Some(digest("api", "v1").as_str()));
    assert_eq!(live.replicas, 4);
    assert_eq!(live.instances, 4);
}

fn replicas(min: u32) -> App {
    app(&format!(
        "[services.api]\nport = 8080\nscale = {{ min = {min}, max = {min} }}\n\n[environments.staging]\ntarget = \"railway\"\n"
    ))
}

#[tokio::test]
async fn multi_region_config_is_sent_on_every_deploy() {
    let w = World::new().await;
    let app = replicas(3);
    let p = w.platform();
    for label in ["v1", "v2", "v3"] {
        let s = deploy(&p, &app, &["api"], label).await;
        assert_eq!(s.outcome, Outcome::Succeeded, "{label}: {s:?}");
        let i = w.instance("api");
        assert!(!i.replicas_reset_pending, "{label}: the update carried multiRegionConfig");
        assert_eq!(i.multi_region_config, json!({"us-west2": {"numReplicas": 3}}), "{label}");
        let live = w.live("api").unwrap();
        assert_eq!(live.digest.as_deref(), Some(digest("api", label).as_str()));
        assert_eq!((live.replicas, live.instances), (3, 3), "{label}: scale.min replicas run");
    }
    // After a failed deploy is restored, too.
    w.fake.set_behaviour(&digest("api", "v4"), Behaviour::Crash);
    let s = deploy(&p, &app, &["api"], "v4").await;
    assert_eq!(s.outcome, Outcome::RolledBack, "{s:?}");
    assert!(!w.instance("api").replicas_reset_pending, "the restore carried multiRegionConfig");
    assert_eq!(w.instance("api").multi_region_config, json!({"us-west2": {"numReplicas": 3}}));

    // The legacy fields never went out: the fake refuses input fields the SDL does not have, and
    // every update was accepted.
    let updates: Vec<_> =
        w.fake.requests().into_iter().filter(|r| r.operation.as_deref() == Some("ServiceInstanceUpdate")).collect();
    assert_eq!(updates.len(), 5, "three deploys, one failed deploy and its restore: {updates:?}");
    assert!(updates.iter().all(|r| r.status == 200 && r.graphql_error.is_none()), "{updates:?}");
    // ...and the fake would have refused them.
    let refused = raw_update(&w, json!({"numReplicas": 3, "region": "us-west2"})).await;
    assert!(refused.get("errors").is_some(), "the fake refuses the legacy fields: {refused}");
    // An update that leaves multiRegionConfig out is what resets replicas (the trap this avoids).
    let trap = raw_update(&w, json!({"startCommand": ""})).await;
    assert!(trap.get("errors").is_none(), "{trap}");
    assert!(w.instance("api").replicas_reset_pending);
}

/// Sends a `serviceInstanceUpdate` of the staging `api` with `input`, as another client would.
async fn raw_update(w: &World, input: Value) -> Value {
    let body = json!({
        "operationName": "U",
        "query": "mutation U($s: String!, $e: String!, $i: ServiceInstanceUpdateInput!) { serviceInstanceUpdate(serviceId: $s, environmentId: $e, input: $i) }",
        "variables": {"s": w.service("api"), "e": w.staging, "i": input},
    });
    reqwest::Client::new()
        .post(w.fake.endpoint())
        .bearer_auth(shipit_testkit::railway::API_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn deploying_what_runs_sends_no_mutation() {
    let w = World::new().await;
    let app = full();
    w.fake.seed_database(&w.project, "Postgres", "postgres:16");
    deploy(&w.platform(), &app, &["api"], "v1").await;
    let deployments = w.deployments("api").len();
    // A fresh process, as the next `shipit deploy` would be.
    let before = w.requests_now();
    let s = deploy(&w.platform(), &app, &["api"], "v1").await;
    assert_eq!(s.outcome, Outcome::Succeeded, "{s:?}");
    assert_eq!(report(&s, "api").result, ServiceResult::Unchanged, "{s:?}");
    let ops = w.ops_since(before);
    assert_eq!(mutations(&ops), Vec::<String>::new(), "nothing is written: {ops:?}");
    assert_eq!(w.deployments("api").len(), deployments, "no deployment");
}

#[tokio::test]
async fn requests_per_one_service_update() {
    let w = World::new().await;
    let app = app(
        "[services.api]\nport = 8080\nhealth = \"/healthz\"\nenv = { MODE = \"test\" }\nsecrets = [\"API_SECRET\"]\n\n[environments.staging]\ntarget = \"railway\"\n",
    );
    deploy(&w.platform(), &app, &["api"], "v1").await;
    harness::sync(&w.platform(), &app, "api", &[("API_SECRET", "v")]).await;
    // The update, from a fresh process.
    let before = w.requests_now();
    let fresh = w.platform();
    let s = deploy(&fresh, &app, &["api"], "v2").await;
    assert_eq!(s.outcome, Outcome::Succeeded, "{s:?}");
    let ops = w.ops_since(before);
    let polls = ops.iter().filter(|op| *op == "Deployment").count();
    let others = ops.len() - polls;
    println!("a one-service update on Railway: {} requests ({others} + {polls} polls): {ops:?}", ops.len());
    assert_eq!(fresh.client().requests_sent(), ops.len() as u64, "the client counts what it sends");
    assert!(others <= 8, "at most 8 requests besides the polls: {ops:?}");
    assert_eq!(
        mutations(&ops),
        ["ServiceInstanceUpdate", "ServiceInstanceDeployV2"],
        "an update with unchanged variables writes the settings and starts one deployment: {ops:?}"
    );
}

/// `api` at v1, then `behaviour` for v2, deployed with a 30 s wait.
async fn failing_v2(behaviour: Behaviour, wait: Duration) -> (World, shipit_core::engine::Summary, Duration) {
    let w = World::new().await;
    let app = replicas(2);
    let p = w.platform();
    deploy(&p, &app, &["api"], "v1").await;
    w.fake.set_behaviour(&digest("api", "v2"), behaviour);
    let mut o = opts();
    o.wait_timeout = wait;
    let started = Instant::now();
    let s = deploy_with(&p, &app, "staging", &["api"], "v2", &o, &Events::none()).await;
    (w, s, started.elapsed())
}

/// v1 serves and the source points at it again; the v2 deployment ended as `status`.
fn back_on_v1(w: &World, status: &str) {
    let live = w.live("api").unwrap();
    assert_eq!(live.digest.as_deref(), Some(digest("api", "v1").as_str()), "v1 serves");
    let image = w.instance("api").image.unwrap();
    assert!(image.ends_with(&digest("api", "v1")), "the source points at v1 again, not {image}");
    let v2: Vec<_> = w
        .deployments("api")
        .into_iter()
        .filter(|d| d.digest.as_deref() == Some(digest("api", "v2").as_str()))
        .collect();
    assert_eq!(v2.len(), 1, "one v2 deployment: {v2:?}");
    assert_eq!(v2[0].status, status, "{v2:?}");
    assert!(!v2[0].can_rollback, "v2 never went live: {v2:?}");
    assert_eq!(w.deployments("api").len(), 2, "the restore made no deployment: v1 still served");
}

#[tokio::test]
async fn needs_approval_fails_fast_and_is_cancelled() {
    let (w, s, took) = failing_v2(Behaviour::NeedsApproval, Duration::from_secs(30)).await;
    assert!(took < Duration::from_secs(5), "fails at once, not at the 30 s timeout ({took:?})");
    assert_eq!(s.outcome, Outcome::RolledBack, "{s:?}");
    let r = report(&s, "api");
    assert!(r.error.as_deref().is_some_and(|e| e.contains("approval")), "the message says why: {r:?}");
    back_on_v1(&w, "REMOVED");
    assert!(w.fake.operations().iter().any(|op| op == "DeploymentCancel"), "it was cancelled");
}

#[tokio::test]
async fn failed_deployment_fails_at_once() {
    let (w, s, took) = failing_v2(Behaviour::Fail, Duration::from_secs(30)).await;
    assert!(took < Duration::from_secs(5), "({took:?})");
    assert_eq!(s.outcome, Outcome::RolledBack, "{s:?}");
    assert_eq!(report(&s, "api").error_kind, Some(ErrorKind::Unhealthy), "{s:?}");
    back_on_v1(&w, "FAILED");
    assert!(!w.fake.operations().iter().any(|op| op == "DeploymentCancel"), "Railway already ended it");
}

#[tokio::test]
async fn crashed_deployment_fails_at_once() {
    let (w, s, took) = failing_v2(Behaviour::Crash, Duration::from_secs(30)).await;
    assert!(took < Duration::from_secs(5), "({took:?})");
    assert_eq!(s.outcome, Outcome::RolledBack, "{s:?}");
    assert_eq!(report(&s, "api").error_kind, Some(ErrorKind::Unhealthy), "{s:?}");
    assert!(report(&s, "api").error.as_deref().is_some_and(|e| e.contains("CRASHED")), "{s:?}");
    back_on_v1(&w, "CRASHED");
}

#[tokio::test]
async fn not_live_at_the_wait_timeout_is_cancelled_and_the_source_restored() {
    let (w, s, took) = failing_v2(Behaviour::Unhealthy, Duration::from_millis(400)).await;
    assert!(took < Duration::from_secs(5), "({took:?})");
    assert_eq!(s.outcome, Outcome::TimedOut, "{s:?}");
    assert_eq!(report(&s, "api").error_kind, Some(ErrorKind::Timeout), "{s:?}");
    assert_eq!(report(&s, "api").result, ServiceResult::RolledBack, "{s:?}");
    back_on_v1(&w, "REMOVED");
    // Railway still counts the deployment (it was cancelled, not left to fail on its own).
    let v2 = w.deployments("api").into_iter().find(|d| d.digest.as_deref() == Some(digest("api", "v2").as_str()));
    assert_eq!(v2.map(|d| d.status), Some("REMOVED".to_string()));
    assert!(!w.instance("api").replicas_reset_pending);
}

#[tokio::test]
async fn a_lost_deploy_answer_makes_exactly_one_deployment() {
    let w = World::new().await;
    let app = replicas(2);
    let p = w.platform();
    // On a first deploy, and on an update.
    for (label, total) in [("v1", 1), ("v2", 2)] {
        w.fake.inject(Fault::ResetAfter { ops: Fault::only(&["ServiceInstanceDeployV2"]), times: 1 });
        let before = w.requests_now();
        let s = deploy(&p, &app, &["api"], label).await;
        assert_eq!(s.outcome, Outcome::Succeeded, "{label}: {s:?}");
        assert_eq!(w.fake.faults_left(), 0, "{label}: the answer was lost");
        let ops = w.ops_since(before);
        assert_eq!(ops.iter().filter(|op| *op == "ServiceInstanceDeployV2").count(), 1, "{label}: sent once: {ops:?}");
        let all = w.deployments("api");
        assert_eq!(all.len(), total, "{label}: exactly one deployment made: {all:?}");
        let live = w.live("api").unwrap();
        assert_eq!(live.digest.as_deref(), Some(digest("api", label).as_str()));
        assert_eq!(live.id, all[0].id, "the one made is the one followed");
    }
}

#[tokio::test]
async fn strategies_are_refused_before_any_request() {
    let w = World::new().await;
    let app = replicas(1);
    let mut o = opts();
    o.strategy = Some(shipit_core::Strategy::Canary);
    let images = [("api".to_string(), harness::image(&app, "staging", "api", "v1"))].into_iter().collect();
    let p = w.platform();
    let r =
        shipit_core::engine::deploy_digests(&p, None, target(&app, "staging"), "deploy", &images, &o, &Events::none())
            .await;
    let kind = match r {
        Err(e) => e.kind,
        Ok(s) => s.failure_kind().unwrap(),
    };
    assert_eq!(kind, ErrorKind::Unsupported);
    assert_eq!(w.fake.request_count(), 0);
    assert!(p.capabilities().strategies.is_empty());
}

/// A web service's URL comes from its domains (a custom one first, else Railway's): the first
/// deploy gives it Railway's own; a worker has none. (`domains.rs` has the rest.)
#[tokio::test]
async fn the_summary_has_each_web_services_domain_as_its_url() {
    let w = World::new().await;
    let app = full();
    w.fake.seed_database(&w.project, "Postgres", "ghcr.io/railwayapp-templates/postgres-ssl:16");
    let p = w.platform();
    let s = deploy(&p, &app, &["api", "worker"], "v1").await;
    assert_eq!(s.outcome, Outcome::Succeeded, "{s:?}");
    let api = w.service("api");
    let made = w.fake.domains(&w.project, &w.staging, &api);
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(report(&s, "api").url, Some(format!("https://{}", made[0].domain)), "Railway's domain");
    assert_eq!(report(&s, "worker").url, None, "a worker has no URL");
    assert!(w.fake.seed_domain(&w.project, &w.staging, &api, "api.example.com", true));
    let t = target(&app, "staging");
    let st = p.status(t, t.env.services.get("api").unwrap()).await.unwrap();
    assert_eq!(st.url.as_deref(), Some("https://api.example.com"), "a custom domain first");
}
