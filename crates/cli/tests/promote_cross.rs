//! `shipit promote` across platforms, run as the built binary against the platform fakes and a
//! fake OCI registry: staging on Fly promoted to production on Render, and staging on Render
//! promoted to production on Railway. Production must run exactly the digests staging runs (read
//! from staging's platform, not from a tag that moved since), health-gated, with nothing rebuilt
//! or re-pushed: the registry sees no blob upload and no manifest it did not already hold.

// Test helpers outside #[test] fns unwrap and panic on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use support::{json_lines, run, summary};

use assert_cmd::Command;
use serde_json::Value;
use shipit_testkit::fly::FlyFake;
use shipit_testkit::railway::{self, FakeDeployment, RailwayFake};
use shipit_testkit::registry::RegistryFake;
use shipit_testkit::render::{self, FakeDeploy, FakeService, RenderFake};

/// The manifest's services, in manifest order.
const SERVICES: [&str; 3] = ["api", "worker", "web"];

/// The app's services; `environments` and `targets` come from each test.
fn manifest(host: &str, rest: &str) -> String {
    format!(
        r#"app = "forgestack"

[registry]
host = "{host}"
namespace = "acme"

[services.api]
port = 4000
health = {{ path = "/api/health" }}
env = {{ NODE_ENV = "production" }}
scale = {{ min = 2, max = 2 }}

[services.worker]
command = ["node", "dist/index.js"]

[services.web]
port = 3000
health = {{ path = "/healthz" }}
env_from = {{ NEXT_PUBLIC_API_URL = "api.url" }}
{rest}"#
    )
}

/// Staging on Fly, production on Render (frankfurt).
const FLY_TO_RENDER: &str = r#"
[environments.staging]
target = "fly"

[environments.production]
target = "render"
regions = ["frankfurt"]

[targets.fly]
org = "acme"
primary_region = "iad"

[targets.render]
"#;

/// Staging on Render, production on Railway.
const RENDER_TO_RAILWAY: &str = r#"
[environments.staging]
target = "render"

[environments.production]
target = "railway"

[targets.render]

[targets.railway]
"#;

/// Every fake, and a manifest.
struct World {
    fly: FlyFake,
    render: RenderFake,
    railway: RailwayFake,
    registry: RegistryFake,
    dir: tempfile::TempDir,
    owner: String,
    project: String,
    railway_production: String,
}

impl World {
    async fn new(rest: &str) -> Self {
        let fly = FlyFake::start().await;
        let render = RenderFake::start().await;
        let railway = RailwayFake::start().await;
        let registry = RegistryFake::start().await;
        let owner = render.seed_pro_owner("acme");
        let project = railway.seed_project("forgestack");
        railway.seed_environment(&project, "staging");
        let railway_production = railway.seed_environment(&project, "production");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("shipit.toml"), manifest(&registry.host(), rest)).unwrap();
        Self { fly, render, railway, registry, dir, owner, project, railway_production }
    }

    /// The binary, pointed at every fake, with every platform's token.
    fn shipit(&self) -> Command {
        let mut cmd = Command::cargo_bin("shipit").unwrap();
        cmd.env_clear()
            .env("CI", "true")
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("FLY_API_TOKEN", FlyFake::TOKEN)
            .env("SHIPIT_FLY_API_URL", self.fly.uri())
            .env("SHIPIT_FLY_POLL_INTERVAL", "10ms")
            .env("RENDER_API_KEY", render::API_KEY)
            .env("SHIPIT_RENDER_API_URL", self.render.uri())
            .env("SHIPIT_RENDER_POLL_INTERVAL", "10ms")
            .env("RAILWAY_API_TOKEN", railway::API_TOKEN)
            .env("SHIPIT_RAILWAY_API_URL", self.railway.endpoint())
            .env("SHIPIT_RAILWAY_POLL_INTERVAL", "10ms")
            .env("SHIPIT_INSECURE_REGISTRIES", self.registry.host())
            .arg("-f")
            .arg(self.dir.path().join("shipit.toml"));
        cmd
    }

    fn repo(service: &str) -> String {
        format!("acme/forgestack-{service}")
    }

    /// Pushes an image for every service under `tag`; returns the digests by service.
    fn push(&self, tag: &str) -> BTreeMap<String, String> {
        SERVICES.iter().map(|s| (s.to_string(), self.registry.put_image(&Self::repo(s), tag))).collect()
    }

    /// The digests a Fly app's machines run.
    fn fly_digests(&self, service: &str, env: &str) -> Vec<String> {
        self.fly
            .machines(&format!("forgestack-{service}-{env}"))
            .into_iter()
            .map(|m| m.digest.unwrap_or_default())
            .collect()
    }

    /// The one digest every machine of a Fly app runs.
    fn fly_digest(&self, service: &str, env: &str) -> String {
        let digests = self.fly_digests(service, env);
        assert!(!digests.is_empty(), "{service} runs on Fly in {env}");
        assert!(digests.iter().all(|d| *d == digests[0]), "{service}: one digest: {digests:?}");
        digests[0].clone()
    }

    fn render_service(&self, service: &str, env: &str) -> FakeService {
        self.render
            .service_by_name(&self.owner, &format!("forgestack-{service}-{env}"))
            .unwrap_or_else(|| panic!("no Render service for {service} in {env}"))
    }

    fn render_live(&self, service: &str, env: &str) -> FakeDeploy {
        let id = self.render_service(service, env).id;
        self.render.live_deploy(&id).unwrap_or_else(|| panic!("{service} has no live deploy in {env}"))
    }

    fn render_deploys(&self, service: &str, env: &str) -> Vec<FakeDeploy> {
        self.render.deploys(&self.render_service(service, env).id)
    }

    fn render_image_path_digest(&self, service: &str, env: &str) -> Option<String> {
        self.render_service(service, env).image_path.split_once('@').map(|(_, d)| d.to_string())
    }

    fn railway_id(&self, service: &str) -> String {
        self.railway.service_id(&self.project, service).unwrap_or_else(|| panic!("no Railway service {service}"))
    }

    fn railway_live(&self, service: &str) -> FakeDeployment {
        self.railway
            .live_deployment(&self.project, &self.railway_production, &self.railway_id(service))
            .unwrap_or_else(|| panic!("{service} has no live deployment in production"))
    }

    /// A snapshot of what the registry holds, to compare before and after a promote.
    fn registry_state(&self) -> BTreeMap<String, Vec<String>> {
        SERVICES.iter().map(|s| (s.to_string(), self.registry.blobs(&Self::repo(s)))).collect()
    }

    /// Checks that the registry requests after `mark` pushed nothing: no blob upload or mount,
    /// and every manifest `PUT` (the environment tag `env` moving) re-puts a manifest the
    /// repository already held; `before` is [`World::registry_state`] at `mark`.
    /// Returns how many manifest `PUT`s there were.
    fn assert_nothing_pushed(&self, mark: usize, env: &str, before: &BTreeMap<String, Vec<String>>) -> usize {
        let requests: Vec<_> = self.registry.requests().into_iter().skip(mark).collect();
        for q in &requests {
            assert!(!q.path.contains("/blobs/uploads"), "no blob upload or mount: {} {}", q.method, q.path);
            assert!(q.method != "PATCH" && q.method != "POST", "no upload: {} {}", q.method, q.path);
            assert!(q.method != "DELETE", "nothing deleted: {} {}", q.method, q.path);
            if q.method == "PUT" {
                assert!(q.path.ends_with(&format!("/manifests/{env}")), "only the {env} tag is written: {}", q.path);
            }
        }
        assert_eq!(&self.registry_state(), before, "no new blob in any repository");
        requests.iter().filter(|q| q.method == "PUT").count()
    }

    fn assert_tag(&self, env: &str, want: &BTreeMap<String, String>) {
        for s in SERVICES {
            assert_eq!(
                self.registry.tag_digest(&Self::repo(s), env).as_deref(),
                Some(want[s].as_str()),
                "{s}: the {env} tag follows what runs"
            );
            // The manifest under the tag is the very one pushed: same bytes, same digest.
            let (_, by_tag) = self.registry.manifest(&Self::repo(s), env).unwrap();
            let (_, by_digest) = self.registry.manifest(&Self::repo(s), &want[s]).unwrap();
            assert_eq!(by_tag, by_digest, "{s}");
        }
    }

    /// Re-pushes every image under `tag` (a different image each), and under the `staging`
    /// environment tag too: a moved tag must not decide what is promoted.
    fn move_tags(&self, tag: &str) -> BTreeMap<String, String> {
        let moved = self.push(tag);
        for s in SERVICES {
            assert!(self.registry.move_tag(&Self::repo(s), "staging", &moved[s]));
        }
        moved
    }
}

/// 1. Staging on Fly, production on Render: production's Render services run exactly the digests
/// staging's Fly machines run, not what the re-pushed tag points at; nothing is pushed. Then a
/// digest that fails on Render is put back, and production stays on its previous release.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fly_staging_promoted_to_render_production_runs_the_exact_digests() {
    let w = World::new(FLY_TO_RENDER).await;
    let v1 = w.push("v1");
    let r = run(w.shipit().args(["deploy", "--env", "staging", "--tag", "v1", "--sha", "1111111"]));
    assert_eq!(r.code, 0, "{r}");
    for s in SERVICES {
        assert_eq!(w.fly_digest(s, "staging"), v1[s], "{s}: staging runs v1 on Fly");
    }
    assert_eq!(w.fly_digests("api", "staging").len(), 2, "scale.min = 2");

    // someone re-pushes v1 and moves the staging tag: promote must read what Fly runs
    let moved = w.move_tags("v1");
    for s in SERVICES {
        assert_ne!(moved[s], v1[s]);
    }

    let mark = w.registry.requests().len();
    let before = w.registry_state();
    let r = run(w.shipit().args(["--json", "promote", "staging", "production"]));
    assert_eq!(r.code, 0, "{r}");
    let s = summary(&r.stdout);
    assert_eq!(s["outcome"], "succeeded", "{s}");
    for s in SERVICES {
        let staging = w.fly_digest(s, "staging");
        let live = w.render_live(s, "production");
        assert_eq!(live.image_sha, staging, "{s}: production runs exactly what staging's machines run");
        assert_ne!(live.image_sha, moved[s], "{s}: not the moved tag's image");
        assert_eq!(live.status, "live", "{s}: through Render's health gate");
        assert!(live.image_ref.ends_with(&format!("@{staging}")), "{s}: pinned by digest: {}", live.image_ref);
        assert_eq!(w.render_image_path_digest(s, "production").as_deref(), Some(staging.as_str()), "{s}");
        assert_eq!(w.render_deploys(s, "production").len(), 1, "{s}: one deploy, the create's");
        let svc = w.render_service(s, "production");
        assert_eq!(svc.region, "frankfurt", "{s}: production's region");
        assert_eq!(w.render.deploy_posts(&svc.id), 0, "{s}: the create started the deploy");
        // nothing on Fly for production
        assert!(w.fly_digests(s, "production").is_empty(), "{s}: production is not on Fly");
    }
    assert_eq!(w.render.creates(), 3);
    assert_eq!(w.render_service("api", "production").num_instances, 2);
    assert_eq!(w.render_service("worker", "production").docker_command, "node dist/index.js");
    assert_eq!(
        w.render_service("web", "production").env_vars.get("NEXT_PUBLIC_API_URL").map(String::as_str),
        Some("https://forgestack-api-production.onrender.com"),
        "production's own settings"
    );
    assert_eq!(w.assert_nothing_pushed(mark, "production", &before), 3, "one tag move per service");
    w.assert_tag("production", &v1);

    // the promoted release records staging's commit
    let r = run(w.shipit().args(["--json", "releases", "--env", "production", "--service", "api"]));
    assert_eq!(r.code, 0, "{r}");
    let lines = json_lines(&r.stdout);
    assert_eq!(lines[0]["status"], "live", "{lines:#?}");
    assert_eq!(lines[0]["digest"], v1["api"], "{lines:#?}");
    assert_eq!(lines[0]["git_sha"], "1111111", "staging's commit: {lines:#?}");

    // v2 on staging is healthy on Fly, but api's v2 crashes on Render: with --atomic, every
    // production service is put back on v1, and production's tag stays on v1
    let v2 = w.push("v2");
    let r = run(w.shipit().args(["deploy", "--env", "staging", "--tag", "v2", "--sha", "2222222"]));
    assert_eq!(r.code, 0, "{r}");
    w.render.set_behaviour(&v2["api"], render::Behaviour::Crash);
    let before_live: BTreeMap<&str, String> =
        SERVICES.iter().map(|s| (*s, w.render_live(s, "production").id)).collect();
    let mark = w.registry.requests().len();
    let before = w.registry_state();
    let r = run(w.shipit().args(["--json", "promote", "staging", "production", "--atomic", "--wait-timeout", "30s"]));
    assert_eq!(r.code, 1, "failed, put back\n{r}");
    let s = summary(&r.stdout);
    assert_eq!(s["outcome"], "rolled_back", "{s}");
    for s in SERVICES {
        assert_eq!(w.render_live(s, "production").image_sha, v1[s], "{s}: production runs v1 again");
        assert_eq!(
            w.render_image_path_digest(s, "production").as_deref(),
            Some(v1[s].as_str()),
            "{s}: the image setting is back on v1"
        );
        assert_eq!(w.fly_digest(s, "staging"), v2[s], "{s}: staging is untouched");
    }
    assert_eq!(w.render_live("api", "production").id, before_live["api"], "api's v1 deploy never stopped serving");
    let newest = &w.render_deploys("api", "production")[0];
    assert_eq!(newest.image_sha, v2["api"]);
    assert_eq!(newest.status, "update_failed", "{newest:?}");
    assert_eq!(w.assert_nothing_pushed(mark, "production", &before), 0, "no service runs the new release");
    w.assert_tag("production", &v1);
    // the worker's v2 went live, so Render rolled it back to v1; web takes api's URL, so it
    // waited for api and was never touched
    let newest = &w.render_deploys("worker", "production")[0];
    assert_eq!(newest.trigger, "rollback", "worker: {newest:?}");
    assert_eq!(newest.image_sha, v1["worker"]);
    assert_eq!(w.render_deploys("web", "production").len(), 1, "web: {:#?}", w.render_deploys("web", "production"));

    // releases: the taken-back v2 releases are failed, v1 is live
    let r = run(w.shipit().args(["--json", "releases", "--env", "production"]));
    assert_eq!(r.code, 0, "{r}");
    let lines = json_lines(&r.stdout);
    for s in SERVICES {
        let live: Vec<&Value> = lines.iter().filter(|l| l["service"] == s && l["status"] == "live").collect();
        assert_eq!(live.len(), 1, "{s}: {lines:#?}");
        assert_eq!(live[0]["digest"], v1[s], "{s}: {lines:#?}");
        let v2_lines: Vec<&Value> = lines.iter().filter(|l| l["service"] == s && l["digest"] == v2[s]).collect();
        assert_eq!(v2_lines.is_empty(), s == "web", "{s}: {lines:#?}");
        for l in v2_lines {
            assert_eq!(l["status"], "failed", "{s}: v2 never a rollback target: {l}");
        }
    }
}

/// 1b. The same without `--atomic`, api only: the crash is put back, api stays on its previous
/// release, and the message says so (exit 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_failing_on_render_is_put_back_and_production_keeps_its_release() {
    let w = World::new(FLY_TO_RENDER).await;
    let v1 = w.push("v1");
    assert_eq!(run(w.shipit().args(["deploy", "--env", "staging", "--tag", "v1"])).code, 0);
    let r = run(w.shipit().args(["promote", "staging", "production"]));
    assert_eq!(r.code, 0, "{r}");
    let v2 = w.push("v2");
    assert_eq!(run(w.shipit().args(["deploy", "--env", "staging", "--tag", "v2", "--service", "api"])).code, 0);
    w.render.set_behaviour(&v2["api"], render::Behaviour::Unhealthy);
    w.render.set_unhealthy_observations(1_000_000);
    let before = w.render_live("api", "production").id;
    let r = run(w.shipit().args(["promote", "staging", "production", "--service", "api", "--wait-timeout", "1s"]));
    assert_eq!(r.code, 3, "the health gate timed out, previous release put back\n{r}");
    assert!(r.stdout.contains("TIMED OUT"), "{r}");
    assert_eq!(w.render_live("api", "production").id, before);
    assert_eq!(w.render_live("api", "production").image_sha, v1["api"]);
    assert_eq!(w.render_image_path_digest("api", "production").as_deref(), Some(v1["api"].as_str()));
    assert_eq!(w.render_deploys("api", "production")[0].status, "canceled");
    assert_eq!(w.registry.tag_digest(&World::repo("api"), "production").as_deref(), Some(v1["api"].as_str()));
    assert!(r.all().contains("api"), "{r}");
}

/// 2. Staging on Render, production on Railway: promote moves the exact digests Render runs,
/// not the moved tag's, with staging's commit; nothing is pushed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn render_staging_promoted_to_railway_production_runs_the_exact_digests() {
    let w = World::new(RENDER_TO_RAILWAY).await;
    let v1 = w.push("v1");
    let r = run(w.shipit().args(["deploy", "--env", "staging", "--tag", "v1", "--sha", "1111111"]));
    assert_eq!(r.code, 0, "{r}");
    for s in SERVICES {
        assert_eq!(w.render_live(s, "staging").image_sha, v1[s], "{s}: staging runs v1 on Render");
    }
    let moved = w.move_tags("v1");

    let mark = w.registry.requests().len();
    let before = w.registry_state();
    let r = run(w.shipit().args(["--json", "promote", "staging", "production"]));
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(summary(&r.stdout)["outcome"], "succeeded", "{r}");
    for s in SERVICES {
        let staging = w.render_live(s, "staging").image_sha;
        let live = w.railway_live(s);
        assert_eq!(live.digest.as_deref(), Some(staging.as_str()), "{s}: production runs what Render runs");
        assert_ne!(live.digest.as_deref(), Some(moved[s].as_str()), "{s}: not the moved tag's image");
        assert_eq!(
            live.image.as_deref(),
            Some(format!("{}/{}@{staging}", w.registry.host(), World::repo(s)).as_str()),
            "{s}: pinned by digest"
        );
        assert_eq!(live.status, "SUCCESS", "{s}: through Railway's health gate");
        assert_eq!(live.commit_sha.as_deref(), Some("1111111"), "{s}: staging's commit");
        let inst = w.railway.instance(&w.project, &w.railway_production, &w.railway_id(s)).unwrap();
        assert_eq!(inst.image, live.image, "{s}: the source is pinned by the same digest");
        assert_eq!(
            w.railway.deployments(&w.project, &w.railway_production, &w.railway_id(s)).len(),
            1,
            "{s}: exactly one deployment"
        );
    }
    let api = w.railway.instance(&w.project, &w.railway_production, &w.railway_id("api")).unwrap();
    assert_eq!(api.healthcheck_path.as_deref(), Some("/api/health"), "production's settings on Railway");
    assert_eq!(w.railway_live("api").replicas, 2);
    assert_eq!(w.assert_nothing_pushed(mark, "production", &before), 3, "one tag move per service");
    w.assert_tag("production", &v1);
    // Render's staging is untouched
    assert_eq!(w.render.creates(), 3);
    for s in SERVICES {
        assert_eq!(w.render_deploys(s, "staging").len(), 1, "{s}");
    }

    // staging moves on to v2; a Railway crash of api's v2 is put back, production stays on v1
    let v2 = w.push("v2");
    assert_eq!(run(w.shipit().args(["deploy", "--env", "staging", "--tag", "v2"])).code, 0);
    w.railway.set_behaviour(&v2["api"], railway::Behaviour::Crash);
    let before_id = w.railway_live("api").id;
    let mark = w.registry.requests().len();
    let before = w.registry_state();
    let r = run(w.shipit().args(["promote", "staging", "production", "--service", "api"]));
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stdout.contains("the previous release was put back"), "{r}");
    assert_eq!(w.railway_live("api").id, before_id, "v1 still serves");
    let inst = w.railway.instance(&w.project, &w.railway_production, &w.railway_id("api")).unwrap();
    assert!(inst.image.as_deref().unwrap_or_default().ends_with(&format!("@{}", v1["api"])), "{inst:?}");
    assert_eq!(w.assert_nothing_pushed(mark, "production", &before), 0);
    assert_eq!(w.registry.tag_digest(&World::repo("api"), "production").as_deref(), Some(v1["api"].as_str()));

    // and a healthy promote of v2 then moves exactly v2
    w.railway.set_behaviour(&v2["api"], railway::Behaviour::Healthy);
    let r = run(w.shipit().args(["promote", "staging", "production"]));
    assert_eq!(r.code, 0, "{r}");
    for s in SERVICES {
        assert_eq!(w.railway_live(s).digest.as_deref(), Some(v2[s].as_str()), "{s}");
    }
    w.assert_tag("production", &v2);
    let r = run(w.shipit().args(["--json", "releases", "--env", "production", "--service", "api"]));
    let lines = json_lines(&r.stdout);
    assert_eq!((&lines[0]["status"], &lines[0]["digest"]), (&Value::from("live"), &Value::from(v2["api"].clone())));
}
