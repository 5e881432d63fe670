//! `shipit deploy --to render`, `rollback`, `releases`, `secrets sync` and `validate`, run as the
//! built binary against the stateful Render REST fake and a fake OCI registry. Every test checks
//! what a user would check, through the fake's state: each service's settings and env vars, what
//! its live deploy runs, its image setting (`imagePath`: what the next deploy Render starts by
//! itself would run), and which requests reached Render.

// Test helpers outside #[test] fns unwrap and panic on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use support::{digest_of, json_lines, run, summary};

use assert_cmd::Command;
use serde_json::Value;
use shipit_testkit::registry::RegistryFake;
use shipit_testkit::render::{API_KEY, Behaviour, FakeDeploy, FakeService, RenderFake};

/// A secret value; the `canary` prefix makes any part of it that leaks easy to find.
const SECRET: &str = "canary-render-secret-9f3a";
/// The secret's value when the deploy that creates `api` runs (a canary too).
const CREATED_SECRET: &str = "canary-render-created-41b7";
/// The manifest's services, in manifest order.
const SERVICES: [&str; 3] = ["api", "worker", "web"];

/// The forgestack-like app on Render: `staging` in ohio, `production` in frankfurt; api a web
/// service (port, health path, autoscaled 2..3), worker a background worker with a command and a
/// `vm` that needs the `pro` plan, web a web service whose plan is forced to `standard`.
fn manifest(host: &str) -> String {
    format!(
        r#"app = "forgestack"

[registry]
host = "{host}"
namespace = "acme"

[services.api]
port = 4000
health = {{ path = "/api/health" }}
env = {{ NODE_ENV = "production" }}
secrets = ["STRIPE_SECRET_KEY"]
scale = {{ min = 2, max = 3 }}

[services.worker]
command = ["node", "dist/index.js"]
vm = {{ cpus = 2, memory_mb = 1024 }}

[services.web]
port = 3000
health = {{ path = "/healthz" }}
env_from = {{ NEXT_PUBLIC_API_URL = "api.url" }}

[environments.staging]
target = "render"
regions = ["ohio"]

[environments.production]
target = "render"
regions = ["frankfurt"]

[targets.render]

[targets.render.services.web]
plan = "standard"
"#
    )
}

struct World {
    fake: RenderFake,
    registry: RegistryFake,
    dir: tempfile::TempDir,
    owner: String,
}

impl World {
    async fn new() -> Self {
        Self::with(|m| m).await
    }

    /// The world, with the manifest changed by `edit`.
    async fn with(edit: impl FnOnce(String) -> String) -> Self {
        let fake = RenderFake::start().await;
        let registry = RegistryFake::start().await;
        let owner = fake.seed_pro_owner("acme");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("shipit.toml"), edit(manifest(&registry.host()))).unwrap();
        Self { fake, registry, dir, owner }
    }

    fn manifest_path(&self) -> std::path::PathBuf {
        self.dir.path().join("shipit.toml")
    }

    /// The binary, pointed at the fakes, with the Render key and no other platform token.
    fn shipit(&self) -> Command {
        let mut cmd = Command::cargo_bin("shipit").unwrap();
        cmd.env_clear()
            .env("CI", "true")
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RENDER_API_KEY", API_KEY)
            // A new Render service gets its secrets in the create request: deploys have it.
            .env("STRIPE_SECRET_KEY", CREATED_SECRET)
            .env("SHIPIT_RENDER_API_URL", self.fake.uri())
            .env("SHIPIT_RENDER_POLL_INTERVAL", "10ms")
            .env("SHIPIT_INSECURE_REGISTRIES", self.registry.host())
            .arg("-f")
            .arg(self.manifest_path());
        cmd
    }

    /// Pushes an image for every service under `tag`; returns the digests by service.
    fn push(&self, tag: &str) -> Vec<(String, String)> {
        SERVICES
            .iter()
            .map(|s| (s.to_string(), self.registry.put_image(&format!("acme/forgestack-{s}"), tag)))
            .collect()
    }

    fn name(service: &str, env: &str) -> String {
        format!("forgestack-{service}-{env}")
    }

    fn service(&self, env: &str, service: &str) -> FakeService {
        self.fake
            .service_by_name(&self.owner, &Self::name(service, env))
            .unwrap_or_else(|| panic!("no Render service for {service} in {env}"))
    }

    fn exists(&self, env: &str, service: &str) -> bool {
        self.fake.service_by_name(&self.owner, &Self::name(service, env)).is_some()
    }

    fn id(&self, env: &str, service: &str) -> String {
        self.service(env, service).id
    }

    fn live(&self, env: &str, service: &str) -> FakeDeploy {
        self.fake.live_deploy(&self.id(env, service)).unwrap_or_else(|| panic!("{service} has no live deploy in {env}"))
    }

    /// Newest first.
    fn deploys(&self, env: &str, service: &str) -> Vec<FakeDeploy> {
        self.fake.deploys(&self.id(env, service))
    }

    /// The digest the service's image setting points at: what a deploy Render starts would run.
    fn image_path_digest(&self, env: &str, service: &str) -> Option<String> {
        self.service(env, service).image_path.split_once('@').map(|(_, d)| d.to_string())
    }

    /// A position in the request log.
    fn mark(&self) -> usize {
        self.fake.requests().len()
    }

    /// Requests after `mark` that are not reads, as `METHOD path`.
    fn writes_since(&self, mark: usize) -> Vec<String> {
        self.fake
            .requests()
            .into_iter()
            .skip(mark)
            .filter(|r| r.method != "GET")
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }

    fn deploy_ok(&self, tag: &str, extra: &[&str]) {
        let r = run(self.shipit().args(["deploy", "--env", "staging", "--tag", tag]).args(extra));
        assert_eq!(r.code, 0, "deploy {tag} {extra:?}\n{r}");
    }
}

/// 1. A first deploy creates the three services with the manifest's settings and env vars; the
/// create starts each one's first deploy, by digest, and no deploy POST follows. An identical
/// second deploy writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_creates_the_services_and_runs_the_pushed_digests_with_the_manifest_settings() {
    let w = World::new().await;
    let v1 = w.push("v1");
    let r = run(w.shipit().args(["deploy", "--to", "render", "--env", "staging", "--tag", "v1", "--sha", "1111111"]));
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("live and healthy"), "{r}");

    // exactly one POST /services per service, and no deploy POST after a create
    assert_eq!(w.fake.creates(), 3, "{:?}", w.writes_since(0));
    let creates = w.fake.requests().iter().filter(|q| q.method == "POST" && q.path == "/v1/services").count();
    assert_eq!(creates, 3, "{:?}", w.writes_since(0));
    for s in SERVICES {
        let svc = w.service("staging", s);
        assert_eq!(
            w.fake.deploy_posts(&svc.id),
            0,
            "{s}: the create started the first deploy: {:?}",
            w.writes_since(0)
        );
        let deploys = w.deploys("staging", s);
        assert_eq!(deploys.len(), 1, "{s}: exactly one deploy: {deploys:#?}");
        let live = w.live("staging", s);
        assert_eq!(live.image_sha, digest_of(&v1, s), "{s}: the live deploy runs the pushed digest");
        let repo = format!("{}/acme/forgestack-{s}", w.registry.host());
        assert!(live.image_ref.starts_with(&format!("{repo}:")), "{s}: {}", live.image_ref);
        assert!(
            live.image_ref.ends_with(&format!("@{}", digest_of(&v1, s))),
            "{s}: pinned by digest: {}",
            live.image_ref
        );
        assert_eq!(svc.image_path, live.image_ref, "{s}: the image setting is the deployed reference");
        assert_eq!(svc.region, "ohio", "{s}: the environment's region");
        assert_eq!(svc.owner_id, w.owner, "{s}");
        assert!(!w.exists("production", s), "{s}: nothing in production");
    }

    let api = w.service("staging", "api");
    assert_eq!(api.service_type, "web_service");
    assert_eq!(api.plan, "starter", "no vm: Render's starter plan");
    assert_eq!(api.health_check_path.as_deref(), Some("/api/health"));
    assert_eq!(api.docker_command, "", "the image's own command");
    assert_eq!(api.num_instances, 2, "scale.min");
    let auto = api.autoscaling.expect("scale.min < scale.max: autoscaling");
    assert!(auto.enabled, "{auto:?}");
    assert_eq!((auto.min, auto.max), (2, 3), "{auto:?}");
    assert_eq!(api.env_vars.get("NODE_ENV").map(String::as_str), Some("production"));
    assert_eq!(api.env_vars.get("PORT").map(String::as_str), Some("4000"));
    assert_eq!(
        api.env_vars.get("STRIPE_SECRET_KEY").map(String::as_str),
        Some(CREATED_SECRET),
        "a new service gets its secret from the environment of the deploy that creates it"
    );
    assert!(!r.all().contains(CREATED_SECRET), "the value leaked\n{r}");

    let worker = w.service("staging", "worker");
    assert_eq!(worker.service_type, "background_worker");
    assert_eq!(worker.plan, "pro", "the smallest plan with 2 CPUs");
    assert_eq!(worker.docker_command, "node dist/index.js");
    assert_eq!(worker.num_instances, 1);
    assert_eq!(worker.autoscaling, None);
    assert!(worker.health_check_path.as_deref().unwrap_or_default().is_empty(), "a worker has no health check");
    assert_eq!(worker.env_vars.get("PORT"), None, "a worker has no port");

    let web = w.service("staging", "web");
    assert_eq!(web.service_type, "web_service");
    assert_eq!(web.plan, "standard", "targets.render.services.web.plan");
    assert_eq!(web.health_check_path.as_deref(), Some("/healthz"));
    assert_eq!(web.num_instances, 1);
    assert_eq!(web.env_vars.get("PORT").map(String::as_str), Some("3000"));
    assert_eq!(
        web.env_vars.get("NEXT_PUBLIC_API_URL").map(String::as_str),
        Some("https://forgestack-api-staging.onrender.com")
    );

    // the first deploy was made with those settings and variables (the create's snapshot)
    let live_api = w.live("staging", "api");
    assert_eq!(live_api.trigger, "api");
    assert_eq!(live_api.env_vars.get("NODE_ENV").map(String::as_str), Some("production"));
    assert_eq!(live_api.env_vars.get("PORT").map(String::as_str), Some("4000"));
    assert_eq!(live_api.health_check_path.as_deref(), Some("/api/health"));
    assert_eq!(w.live("staging", "worker").docker_command, "node dist/index.js");
    assert_eq!(w.live("staging", "worker").plan, "pro");

    // the environment tag follows what runs
    for s in SERVICES {
        assert_eq!(
            w.registry.tag_digest(&format!("acme/forgestack-{s}"), "staging").as_deref(),
            Some(digest_of(&v1, s)),
            "{s}"
        );
    }

    let r = run(w.shipit().args(["status", "--env", "staging"]));
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains(digest_of(&v1, "api")), "{r}");

    // the same deploy again: nothing is written, every service is unchanged
    let mark = w.mark();
    let r = run(w.shipit().args(["--json", "deploy", "--env", "staging", "--tag", "v1", "--sha", "1111111"]));
    assert_eq!(r.code, 0, "{r}");
    let s = summary(&r.stdout);
    assert_eq!(s["outcome"], "succeeded", "{s}");
    assert!(s["services"].as_array().unwrap().iter().all(|x| x["result"] == "unchanged"), "{s}");
    assert_eq!(w.writes_since(mark), Vec::<String>::new(), "an identical deploy writes nothing");
    assert!(!r.all().contains("not set on render"), "the secret was set at creation: {r}");
    for s in SERVICES {
        assert_eq!(w.deploys("staging", s).len(), 1, "{s}");
    }
    let r = run(w.shipit().args(["plan", "--env", "staging", "--tag", "v1"]));
    assert_eq!(r.code, 0, "what runs is what the manifest says: {r}");
}

/// 2. A second release deploys by digest: one PATCH of the image setting, one deploy POST per
/// service, no create.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_release_patches_the_image_setting_and_posts_one_deploy_per_service() {
    let w = World::new().await;
    w.push("v1");
    w.deploy_ok("v1", &[]);
    let v2 = w.push("v2");
    let mark = w.mark();
    w.deploy_ok("v2", &[]);
    assert_eq!(w.fake.creates(), 3, "no new service");
    let writes = w.writes_since(mark);
    for s in SERVICES {
        let svc = w.service("staging", s);
        assert_eq!(w.fake.deploy_posts(&svc.id), 1, "{s}: {writes:?}");
        assert_eq!(w.live("staging", s).image_sha, digest_of(&v2, s), "{s}");
        assert_eq!(w.image_path_digest("staging", s).as_deref(), Some(digest_of(&v2, s)), "{s}");
        let patches = writes.iter().filter(|x| **x == format!("PATCH /v1/services/{}", svc.id)).count();
        assert_eq!(patches, 1, "{s}: {writes:?}");
        let deploys = w.deploys("staging", s);
        assert_eq!(deploys.len(), 2, "{s}");
        assert_eq!(deploys[1].status, "deactivated", "{s}: v1 was superseded");
    }
}

/// 3. A release whose health check never passes times out (exit 3); one that crashes fails fast
/// (exit 1). Either way the previous deploy still serves and the image setting is back on the
/// previous digest, so a deploy Render starts by itself cannot ship the failed image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_image_is_put_back_with_the_image_setting_on_the_old_digest() {
    let w = World::new().await;
    let v1 = w.push("v1");
    w.deploy_ok("v1", &["--sha", "1111111"]);
    let before = w.live("staging", "api");

    // never healthy, and never failed by Render within the timeout: timed out, exit 3
    w.fake.set_unhealthy_observations(1_000_000);
    let v2 = w.push("v2");
    w.fake.set_behaviour(digest_of(&v2, "api"), Behaviour::Unhealthy);
    let r =
        run(w.shipit().args(["deploy", "--env", "staging", "--tag", "v2", "--service", "api", "--wait-timeout", "1s"]));
    assert_eq!(r.code, 3, "timed out, previous release put back\n{r}");
    assert!(r.stdout.contains("TIMED OUT"), "{r}");
    assert_eq!(w.live("staging", "api").id, before.id, "the v1 deploy still serves");
    assert_eq!(w.image_path_digest("staging", "api").as_deref(), Some(digest_of(&v1, "api")), "image setting on v1");
    let newest = &w.deploys("staging", "api")[0];
    assert_eq!(newest.image_sha, digest_of(&v2, "api"));
    assert_eq!(newest.status, "canceled", "the v2 deploy was cancelled: {newest:?}");
    assert_eq!(w.service("staging", "api").health_check_path.as_deref(), Some("/api/health"));

    // crashes at start, or cannot be pulled: fails fast, exit 1
    let mut failed = vec![v2.clone()];
    for (tag, behaviour) in [("v3", Behaviour::Crash), ("v4", Behaviour::BuildFail)] {
        let v = w.push(tag);
        failed.push(v.clone());
        w.fake.set_behaviour(digest_of(&v, "api"), behaviour);
        let started = Instant::now();
        let r = run(w.shipit().args([
            "deploy",
            "--env",
            "staging",
            "--tag",
            tag,
            "--service",
            "api",
            "--wait-timeout",
            "60s",
        ]));
        let took = started.elapsed();
        assert_eq!(r.code, 1, "{behaviour:?}: failed, rolled back\n{r}");
        assert!(took < Duration::from_secs(20), "{behaviour:?}: failed fast, not at the timeout: {took:?}");
        assert!(r.stdout.contains("the previous release was put back"), "{behaviour:?}: {r}");
        assert_eq!(w.live("staging", "api").id, before.id, "{behaviour:?}: v1 still serves");
        assert_eq!(
            w.image_path_digest("staging", "api").as_deref(),
            Some(digest_of(&v1, "api")),
            "{behaviour:?}: image setting back on v1"
        );
        let newest = &w.deploys("staging", "api")[0];
        assert_eq!(newest.image_sha, digest_of(&v, "api"), "{behaviour:?}");
        assert!(newest.status.ends_with("_failed"), "{behaviour:?}: {newest:?}");
    }

    // a deploy Render starts by itself (a restart, an autodeploy) runs v1, not a failed image
    let id = w.id("staging", "api");
    assert!(w.fake.start_deploy(&id, "deployed_by_render").is_some());
    assert_eq!(w.fake.deploys(&id)[0].image_sha, digest_of(&v1, "api"));

    // the failed releases are listed as failed; the tag was not moved to them
    let r = run(w.shipit().args(["--json", "releases", "--env", "staging", "--service", "api"]));
    assert_eq!(r.code, 0, "{r}");
    let lines: Vec<_> = json_lines(&r.stdout).into_iter().filter(|l| l["event"] == "release").collect();
    for v in &failed {
        let line = lines.iter().find(|l| l["digest"] == digest_of(v, "api")).unwrap_or_else(|| panic!("{lines:#?}"));
        assert_eq!(line["status"], "failed", "{line}");
    }
    assert_eq!(w.registry.tag_digest("acme/forgestack-api", "staging").as_deref(), Some(digest_of(&v1, "api")));
}

/// 3b. A failed deploy that also changed settings puts the old settings back with the old image
/// setting: health check path, docker command and plan, not only the image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_deploy_puts_the_previous_settings_back_with_the_image() {
    let w = World::new().await;
    let v1 = w.push("v1");
    w.deploy_ok("v1", &[]);
    let api_before = w.service("staging", "api");
    let worker_before = w.service("staging", "worker");
    let path = w.manifest_path();
    let m = std::fs::read_to_string(&path).unwrap();
    let changed = m
        .replace("path = \"/api/health\"", "path = \"/api/v2/health\"")
        .replace("NODE_ENV = \"production\"", "NODE_ENV = \"next\"")
        .replace("command = [\"node\", \"dist/index.js\"]", "command = [\"node\", \"dist/v2.js\"]")
        .replace("vm = { cpus = 2, memory_mb = 1024 }", "vm = { cpus = 4, memory_mb = 8192 }");
    assert_ne!(changed, m);
    std::fs::write(&path, changed).unwrap();
    let v2 = w.push("v2");
    w.fake.set_behaviour(digest_of(&v2, "api"), Behaviour::Crash);
    w.fake.set_behaviour(digest_of(&v2, "worker"), Behaviour::Crash);
    let r =
        run(w.shipit().args(["deploy", "--env", "staging", "--tag", "v2", "--service", "api", "--service", "worker"]));
    assert_eq!(r.code, 1, "both failed and were put back\n{r}");
    for (s, before) in [("api", &api_before), ("worker", &worker_before)] {
        let after = w.service("staging", s);
        assert_eq!(w.image_path_digest("staging", s).as_deref(), Some(digest_of(&v1, s)), "{s}");
        assert_eq!(after.health_check_path, before.health_check_path, "{s}: health check put back");
        assert_eq!(after.docker_command, before.docker_command, "{s}: command put back");
        assert_eq!(after.plan, before.plan, "{s}: plan put back");
        // Env var values are not put back (docs/platforms/render.md, "Failure and restore").
        assert_eq!(w.live("staging", s).image_sha, digest_of(&v1, s), "{s}: v1 serves");
    }
    // a deploy Render starts by itself now runs v1 with v1's settings
    let id = w.id("staging", "worker");
    assert!(w.fake.start_deploy(&id, "deployed_by_render").is_some());
    let d = &w.fake.deploys(&id)[0];
    assert_eq!((d.image_sha.as_str(), d.docker_command.as_str()), (digest_of(&v1, "worker"), "node dist/index.js"));
    assert_eq!(d.plan, "pro");
}

/// 4. `releases --json` lists deploys newest first with status, digest and the git sha given
/// with `--sha`; `rollback` returns to the previous good release (never a failed one), image
/// setting included; a failed release is refused as a target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_and_rollback() {
    let w = World::new().await;
    let v1 = w.push("v1");
    w.deploy_ok("v1", &["--sha", "aaaaaaa1"]);
    let v2 = w.push("v2");
    let r = run(w.shipit().env("GITHUB_SHA", "bbbbbbb2").args(["deploy", "--env", "staging", "--tag", "v2"]));
    assert_eq!(r.code, 0, "{r}");
    let v3 = w.push("v3");
    w.fake.set_behaviour(digest_of(&v3, "api"), Behaviour::Crash);
    let r =
        run(w.shipit().args(["deploy", "--env", "staging", "--tag", "v3", "--service", "api", "--sha", "ccccccc3"]));
    assert_eq!(r.code, 1, "{r}");

    let r = run(w.shipit().args(["--json", "releases", "--env", "staging", "--service", "api"]));
    assert_eq!(r.code, 0, "{r}");
    let lines: Vec<_> = json_lines(&r.stdout).into_iter().filter(|l| l["event"] == "release").collect();
    assert_eq!(lines.len(), 3, "{lines:#?}");
    let fake = w.deploys("staging", "api");
    for (line, (v, sha, status)) in
        lines.iter().zip([(&v3, "ccccccc3", "failed"), (&v2, "bbbbbbb2", "live"), (&v1, "aaaaaaa1", "superseded")])
    {
        assert_eq!(line["service"], "api", "{line}");
        assert_eq!(line["digest"], digest_of(v, "api"), "{line}");
        assert_eq!(line["git_sha"], sha, "{line}");
        assert_eq!(line["status"], status, "{line}");
        assert!(line["created_at"].is_string(), "{line}");
    }
    for (line, d) in lines.iter().zip(&fake) {
        assert_eq!(line["platform_id"], d.id, "a Render release is a deploy: {line}");
    }
    let failed_id = lines[0]["id"].as_str().unwrap().to_string();
    let live_id = lines[1]["id"].as_str().unwrap().to_string();

    // human form, every service
    let r = run(w.shipit().args(["releases", "--env", "staging"]));
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("live") && r.stdout.contains("superseded") && r.stdout.contains("failed"), "{r}");

    // the failed release and the live one are refused as targets; nothing is written
    let mark = w.mark();
    for id in [&failed_id, &live_id] {
        let r = run(w.shipit().args(["rollback", "--env", "staging", "--service", "api", "--release", id]));
        assert_eq!(r.code, 4, "{id}: {r}");
    }
    let r = run(w.shipit().args(["rollback", "--env", "staging", "--service", "api", "--release", &failed_id]));
    assert!(r.all().contains("never a rollback target"), "{r}");
    assert_eq!(w.writes_since(mark), Vec::<String>::new());

    // rollback: every service back to v1 (api skips the failed v3), image setting included
    let r = run(w.shipit().args(["rollback", "--env", "staging"]));
    assert_eq!(r.code, 0, "{r}");
    for s in SERVICES {
        let live = w.live("staging", s);
        assert_eq!(live.image_sha, digest_of(&v1, s), "{s}: v1 runs again");
        assert_eq!(w.image_path_digest("staging", s).as_deref(), Some(digest_of(&v1, s)), "{s}: image setting on v1");
        assert_eq!(
            w.registry.tag_digest(&format!("acme/forgestack-{s}"), "staging").as_deref(),
            Some(digest_of(&v1, s)),
            "{s}: the environment tag follows"
        );
    }
    assert_eq!(w.service("staging", "worker").docker_command, "node dist/index.js");
    let r = run(w.shipit().args(["--json", "releases", "--env", "staging", "--service", "api"]));
    let lines = json_lines(&r.stdout);
    assert_eq!(lines[0]["status"], "live", "{lines:#?}");
    assert_eq!(lines[0]["digest"], digest_of(&v1, "api"), "{lines:#?}");
    assert_eq!(lines[0]["git_sha"], "aaaaaaa1", "the rolled-back release keeps its commit: {lines:#?}");

    // --sha: back to v2 by its commit
    let r = run(w.shipit().args(["rollback", "--env", "staging", "--service", "api", "--sha", "bbbbbbb2"]));
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(w.live("staging", "api").image_sha, digest_of(&v2, "api"));
    assert_eq!(w.image_path_digest("staging", "api").as_deref(), Some(digest_of(&v2, "api")));
    assert_eq!(w.live("staging", "worker").image_sha, digest_of(&v1, "worker"));
}

/// 5. `secrets sync` sets the value on Render, says it applies at the next deploy, and never
/// prints it in any output mode; the next deploy's snapshot has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_sync_sets_the_value_applies_at_the_next_deploy_and_never_prints_it() {
    let w = World::new().await;
    w.push("v1");

    // before the service exists: nothing set, nothing created; the creating deploy sets it
    let r = run(w.shipit().env("STRIPE_SECRET_KEY", SECRET).args(["secrets", "sync", "--env", "staging"]));
    assert_eq!(r.code, 0, "{r}");
    assert!(
        r.all().contains("api: does not exist yet; `shipit deploy` sets STRIPE_SECRET_KEY when it creates it"),
        "{r}"
    );
    assert_eq!(w.fake.creates(), 0);
    assert_eq!(w.writes_since(0), Vec::<String>::new());

    // a first deploy without the value creates nothing and names it
    let r = run(w.shipit().env_remove("STRIPE_SECRET_KEY").args(["deploy", "--env", "staging", "--tag", "v1"]));
    assert_ne!(r.code, 0, "{r}");
    assert!(r.all().contains("creating forgestack-api-staging needs STRIPE_SECRET_KEY in the environment"), "{r}");
    assert!(w.fake.service_by_name(&w.owner, &World::name("api", "staging")).is_none(), "{r}");

    w.deploy_ok("v1", &[]);
    let id = w.id("staging", "api");
    assert_eq!(w.fake.env_var(&id, "STRIPE_SECRET_KEY").as_deref(), Some(CREATED_SECRET), "set at creation");

    // no value: refused, nothing written
    let mark = w.mark();
    let r = run(w.shipit().env_remove("STRIPE_SECRET_KEY").args(["secrets", "sync", "--env", "staging"]));
    assert_eq!(r.code, 4, "{r}");
    assert!(r.stderr.contains("STRIPE_SECRET_KEY"), "{r}");
    assert_eq!(w.writes_since(mark), Vec::<String>::new());

    let modes: [&[&str]; 4] = [&[], &["-v"], &["-q"], &["--json"]];
    for mode in modes {
        let r =
            run(w.shipit().env("STRIPE_SECRET_KEY", SECRET).args(mode).args(["secrets", "sync", "--env", "staging"]));
        assert_eq!(r.code, 0, "{mode:?}: {r}");
        assert_eq!(w.fake.env_var(&id, "STRIPE_SECRET_KEY").as_deref(), Some(SECRET), "{mode:?}");
        assert!(!r.all().to_lowercase().contains("canary"), "{mode:?}: the value leaked\n{r}");
        if mode.is_empty() {
            assert!(r.stdout.contains("api: set STRIPE_SECRET_KEY; they apply at the next deploy"), "{r}");
        }
        if mode == ["--json"] {
            let lines = json_lines(&r.stdout);
            assert_eq!(lines[0]["service"], "api", "{lines:?}");
            assert_eq!(lines[0]["names"], serde_json::json!(["STRIPE_SECRET_KEY"]), "{lines:?}");
        }
    }
    assert_eq!(w.deploys("staging", "api").len(), 1, "secrets sync starts no deploy");
    assert_eq!(
        w.live("staging", "api").env_vars.get("STRIPE_SECRET_KEY").map(String::as_str),
        Some(CREATED_SECRET),
        "not applied yet: the live deploy has the value it was created with"
    );
    assert_eq!(w.service("staging", "api").env_vars.get("NODE_ENV").map(String::as_str), Some("production"));

    // the next deploy runs with it, and no longer warns
    w.push("v2");
    let r = run(w.shipit().env("STRIPE_SECRET_KEY", SECRET).args(["deploy", "--env", "staging", "--tag", "v2", "-v"]));
    assert_eq!(r.code, 0, "{r}");
    assert!(!r.all().contains("not set on render"), "{r}");
    assert!(!r.all().to_lowercase().contains("canary"), "the value leaked\n{r}");
    assert_eq!(w.live("staging", "api").env_vars.get("STRIPE_SECRET_KEY").map(String::as_str), Some(SECRET));
    assert_eq!(w.live("staging", "api").env_vars.get("NODE_ENV").map(String::as_str), Some("production"));

    // no other command prints it either
    let commands: [&[&str]; 5] = [
        &["status", "--env", "staging"],
        &["releases", "--env", "staging"],
        &["plan", "--env", "staging", "--tag", "v2"],
        &["deploy", "--env", "staging", "--tag", "v2"],
        &["deploy", "--env", "staging", "--tag", "v2", "--dry-run"],
    ];
    for cmd in commands {
        for mode in modes {
            let r = run(w.shipit().env("STRIPE_SECRET_KEY", SECRET).args(mode).args(cmd));
            assert_eq!(r.code, 0, "{cmd:?} {mode:?}: {r}");
            assert!(!r.all().to_lowercase().contains("canary"), "{cmd:?} {mode:?}: the value leaked\n{r}");
        }
    }
}

/// 6. `validate` warns about what a Render environment asks and Render cannot do (a restart
/// policy, a health check's timing) on stderr, and still exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_warns_about_restart_policy_and_health_timing_on_render() {
    let w = World::with(|m| {
        m.replace(
            "health = { path = \"/api/health\" }",
            "health = { path = \"/api/health\", interval = \"3s\", timeout = \"2s\", grace = \"20s\" }",
        )
        .replace(
            "command = [\"node\", \"dist/index.js\"]",
            "command = [\"node\", \"dist/index.js\"]\nrestart = { policy = \"on-failure\", retries = 3 }",
        )
    })
    .await;
    let r = run(w.shipit().arg("validate"));
    assert_eq!(r.code, 0, "warnings are not errors\n{r}");
    let warnings: Vec<&str> = r.stderr.lines().filter(|l| l.starts_with("warning:")).collect();
    assert!(
        warnings.iter().any(|l| l.contains("`api`") && l.contains("health") && l.contains("ignored")),
        "health timing: {r}"
    );
    assert!(warnings.iter().any(|l| l.contains("`worker`") && l.contains("restart")), "restart policy: {r}");
    assert!(
        warnings.iter().any(|l| l.contains("\"staging\"")) && warnings.iter().any(|l| l.contains("\"production\""))
    );

    let r = run(w.shipit().args(["--json", "validate"]));
    assert_eq!(r.code, 0, "{r}");
    let v: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert!(!v["warnings"].as_array().unwrap().is_empty(), "{v}");
    assert!(w.fake.requests().is_empty(), "validate talks to no platform");

    // the same settings on an environment that is not on Render: no warning
    let w = World::with(|m| {
        m.replace(
            "command = [\"node\", \"dist/index.js\"]",
            "command = [\"node\", \"dist/index.js\"]\nrestart = { policy = \"on-failure\", retries = 3 }",
        )
        .replace("target = \"render\"\nregions = [\"ohio\"]", "target = \"fly\"")
        .replace("target = \"render\"\nregions = [\"frankfurt\"]", "target = \"fly\"\nregions = [\"fra\"]")
            + "\n[targets.fly]\norg = \"acme\"\nprimary_region = \"iad\"\n"
    })
    .await;
    let r = run(w.shipit().arg("validate"));
    assert_eq!(r.code, 0, "{r}");
    assert!(!r.stderr.contains("warning:"), "no Render environment: {r}");
}

/// 7. Bad input changes nothing: a region Render does not have, several workspaces and no
/// `[targets.render] owner` (the error lists them), an owner the key does not see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_before_anything_changes() {
    // a region Render does not have
    let w = World::with(|m| m.replace("regions = [\"ohio\"]", "regions = [\"iad\"]")).await;
    w.push("v1");
    let r = run(w.shipit().args(["deploy", "--env", "staging", "--tag", "v1"]));
    assert_eq!(r.code, 4, "{r}");
    assert!(
        r.all().contains("\"iad\"") && r.all().contains("oregon"),
        "the message names the region and Render's: {r}"
    );
    assert_eq!(w.writes_since(0), Vec::<String>::new(), "nothing was written");
    assert_eq!(w.fake.creates(), 0);

    // several workspaces, no owner in the manifest: the error lists them
    let w = World::new().await;
    let other = w.fake.seed_owner("globex");
    w.push("v1");
    let r = run(w.shipit().args(["deploy", "--env", "staging", "--tag", "v1"]));
    assert_eq!(r.code, 4, "{r}");
    for needle in ["\"acme\"", "\"globex\"", w.owner.as_str(), other.as_str(), "[targets.render] owner"] {
        assert!(r.all().contains(needle), "the message says {needle:?}: {r}");
    }
    assert_eq!(w.writes_since(0), Vec::<String>::new(), "nothing was written");
    assert_eq!(w.fake.creates(), 0);

    // with the owner named (by name), it deploys there
    let w2 = World::with(|m| m.replace("[targets.render]\n", "[targets.render]\nowner = \"globex\"\n")).await;
    let globex = w2.fake.seed_owner("globex");
    w2.push("v1");
    let r = run(w2.shipit().args(["deploy", "--env", "staging", "--tag", "v1", "--service", "worker"]));
    assert_eq!(r.code, 0, "{r}");
    let svc = w2.fake.service_by_name(&globex, "forgestack-worker-staging").expect("created in globex");
    assert_eq!(svc.owner_id, globex);
    assert!(w2.fake.service_by_name(&w2.owner, "forgestack-worker-staging").is_none());

    // an owner the key does not see
    let w = World::with(|m| m.replace("[targets.render]\n", "[targets.render]\nowner = \"initech\"\n")).await;
    w.push("v1");
    let r = run(w.shipit().args(["deploy", "--env", "staging", "--tag", "v1"]));
    assert_eq!(r.code, 4, "{r}");
    assert!(r.all().contains("\"initech\"") && r.all().contains("\"acme\""), "{r}");
    assert_eq!(w.writes_since(0), Vec::<String>::new());

    // an unknown tag: nothing reaches Render but reads
    let w = World::new().await;
    let r = run(w.shipit().args(["deploy", "--env", "staging", "--tag", "nope"]));
    assert_eq!(r.code, 4, "{r}");
    assert_eq!(w.writes_since(0), Vec::<String>::new());
    let names: BTreeSet<String> = SERVICES.iter().filter(|s| w.exists("staging", s)).map(|s| s.to_string()).collect();
    assert!(names.is_empty(), "{names:?}");
}

/// 5b. "Changes apply at the next deploy: `secrets sync` says so, and the next `deploy` rolls them
/// out" (docs/platforms/render.md): the next deploy of the digest that already runs must roll the
/// synced secret out too, not report "nothing to do" and leave the live deploy without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_deploy_of_the_same_digest_rolls_a_synced_secret_out() {
    let w = World::new().await;
    let v1 = w.push("v1");
    w.deploy_ok("v1", &[]);
    let r = run(w.shipit().env("STRIPE_SECRET_KEY", SECRET).args(["secrets", "sync", "--env", "staging"]));
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("they apply at the next deploy"), "{r}");

    let r = run(w.shipit().args(["--json", "deploy", "--env", "staging", "--tag", "v1", "--service", "api"]));
    assert_eq!(r.code, 0, "{r}");
    let live = w.live("staging", "api");
    assert_eq!(live.image_sha, digest_of(&v1, "api"));
    assert_eq!(
        live.env_vars.get("STRIPE_SECRET_KEY").map(String::as_str),
        Some(SECRET),
        "the deploy after `secrets sync` runs with the secret; summary: {}",
        summary(&r.stdout)
    );
}

/// 6. Every summary gives each web service its Render URL (`serviceDetails.url`): the human
/// summary's line under the service, the JSON summary's `services[].url`, the job summary's `url`
/// column; a worker has none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_summary_prints_each_web_services_render_url() {
    let w = World::new().await;
    w.push("v1");
    let steps = w.dir.path().join("step-summary.md");
    let r = run(w
        .shipit()
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &steps)
        .args(["deploy", "--env", "staging", "--tag", "v1"]));
    assert_eq!(r.code, 0, "{r}");
    let api = w.service("staging", "api").url.unwrap();
    let web = w.service("staging", "web").url.unwrap();
    assert_eq!(api, "https://forgestack-api-staging.onrender.com");
    assert_eq!(w.service("staging", "worker").url, None, "a worker has no URL on Render");
    // human: the line under the service
    let lines: Vec<&str> = r.stdout.lines().collect();
    for (service, url) in [("api", &api), ("web", &web)] {
        let at = lines.iter().position(|l| l.trim_start().starts_with(&format!("{service} "))).unwrap();
        assert_eq!(lines.get(at + 1).map(|l| l.trim()), Some(url.as_str()), "{service}: {r}");
    }
    assert!(!r.stdout.contains("forgestack-worker-staging.onrender.com"), "{r}");
    // the job summary's url column
    let md = std::fs::read_to_string(&steps).unwrap();
    assert!(md.contains("| url |"), "{md}");
    assert!(md.contains(&format!("| {api} |")) && md.contains(&format!("| {web} |")), "{md}");
    let worker = md.lines().find(|l| l.starts_with("| worker ")).unwrap();
    assert!(worker.ends_with("| — |"), "{worker}");

    // JSON: services[].url, null for the worker
    let r = run(w.shipit().args(["--json", "deploy", "--env", "staging", "--tag", "v1"]));
    assert_eq!(r.code, 0, "{r}");
    let s = summary(&r.stdout);
    let url = |service: &str| {
        s["services"].as_array().unwrap().iter().find(|x| x["service"] == service).unwrap()["url"].clone()
    };
    assert_eq!(url("api"), Value::String(api.clone()), "{s:#}");
    assert_eq!(url("web"), Value::String(web), "{s:#}");
    assert_eq!(url("worker"), Value::Null, "{s:#}");
}

/// 7. `deploy --restart` of the digest that runs: one new deploy through the same health gate,
/// reported `deployed`, not `unchanged`; a restart whose deploy fails is put back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_restart_deploys_the_running_digest_again_through_the_gate() {
    let w = World::new().await;
    let v1 = w.push("v1");
    w.deploy_ok("v1", &[]);
    let before = w.deploys("staging", "api");
    assert_eq!(before.len(), 1);

    // without --restart: nothing to do
    let r = run(w.shipit().args(["--json", "deploy", "--env", "staging", "--tag", "v1", "--service", "api"]));
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(summary(&r.stdout)["services"][0]["result"], "unchanged", "{r}");
    assert_eq!(w.deploys("staging", "api").len(), 1);

    let r =
        run(w.shipit().args(["--json", "deploy", "--env", "staging", "--tag", "v1", "--service", "api", "--restart"]));
    assert_eq!(r.code, 0, "{r}");
    let s = summary(&r.stdout);
    assert_eq!(s["outcome"], "succeeded", "{s:#}");
    assert_eq!(s["services"][0]["result"], "deployed", "{s:#}");
    let deploys = w.deploys("staging", "api");
    assert_eq!(deploys.len(), 2, "one new deploy: {deploys:#?}");
    let live = w.live("staging", "api");
    assert_ne!(live.id, before[0].id, "the new deploy serves");
    assert_eq!(live.image_sha, digest_of(&v1, "api"), "the same digest");
    assert_eq!(
        w.fake.live_deploy(&w.id("staging", "web")).map(|d| d.id),
        Some(w.deploys("staging", "web")[0].id.clone())
    );
    assert_eq!(w.deploys("staging", "web").len(), 1, "--service api: web is not restarted");

    // health-gated: a restart that fails its health check is reported and put back
    w.fake.set_behaviour(digest_of(&v1, "api"), Behaviour::Crash);
    let r =
        run(w.shipit().args(["--json", "deploy", "--env", "staging", "--tag", "v1", "--service", "api", "--restart"]));
    assert_eq!(r.code, 1, "{r}");
    let s = summary(&r.stdout);
    assert_ne!(s["outcome"], "succeeded", "{s:#}");
    assert_eq!(w.live("staging", "api").id, live.id, "the previous deploy still serves");
    assert_eq!(w.image_path_digest("staging", "api").as_deref(), Some(digest_of(&v1, "api")));
}
