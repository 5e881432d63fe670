//! The rendered `.github/workflows/shipit.yml` runs as generated: every `run:` line of its
//! deploy, promote and rollback jobs is executed with `bash`, in a checkout holding
//! `shipit.toml`, with exactly the variables that step passes (its `env:`, each
//! `${{ secrets.NAME }}` given a value a GitHub secret of that name would hold) plus what a runner
//! sets by itself (`CI`, `GITHUB_ACTIONS`, `GITHUB_SHA`, `GITHUB_ACTOR`). It runs against the
//! stateful Fly, Railway and Render fakes and a registry fake that wants GHCR's credentials, for
//! every platform and environment, and across platforms.
//!
//! That proves the set each step passes is enough (the commands succeed and the environments
//! then run the digests of the commit); dropping any one variable makes the step fail with a
//! message naming it, which proves each is needed. Together: the set the workflow passes equals
//! the set `secrets sync`, `deploy`, `promote` and `rollback` require.
//!
//! The workflow is rendered from the manifest with its images on `ghcr.io`; the steps run with
//! the same manifest whose registry is the fake, which stands in for `ghcr.io` through
//! `SHIPIT_GHCR_HOSTS` (the hosts GHCR credentials are sent to). The fakes' addresses reach the
//! commands through the `SHIPIT_*_API_URL` variables, which a real runner does not set.

// Test helpers outside #[test] fns unwrap and panic on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use serde_json::Value;
use shipit_testkit::fly::FlyFake;
use shipit_testkit::railway::{API_TOKEN as RAILWAY_ACCOUNT_TOKEN, RailwayFake};
use shipit_testkit::registry::RegistryFake;
use shipit_testkit::render::{API_KEY as RENDER_KEY, RenderFake};

const ACTOR: &str = "octocat";
/// The job's `GITHUB_TOKEN`, and a lasting `GHCR_TOKEN` (Render): the registry fake accepts the
/// one the scenario says.
const JOB_TOKEN: &str = "ghs_job-token-canary";
const GHCR_PAT: &str = "ghp_lasting-token-canary";
const SERVICES: [&str; 3] = ["api", "worker", "web"];

/// The app: an API with secrets and database URLs, a worker, a web front end.
fn manifest(host: &str, staging: &str, production: &str, databases: bool) -> String {
    let env_from = if databases {
        r#"env_from = { DATABASE_URL = "db.connection_string", REDIS_URL = "cache.connection_string" }"#
    } else {
        ""
    };
    let dbs =
        if databases { "[databases.db]\nengine = \"postgres\"\n\n[databases.cache]\nengine = \"redis\"\n" } else { "" };
    format!(
        r#"app = "forgestack"

[registry]
host = "{host}"
namespace = "acme"

[services.api]
port = 4000
health = {{ path = "/api/health", interval = "1s", timeout = "1s", grace = "1s" }}
env = {{ NODE_ENV = "production" }}
secrets = ["STRIPE_SECRET_KEY", "BETTER_AUTH_SECRET"]
{env_from}

[services.worker]
command = ["node", "dist/index.js"]

[services.web]
port = 3000
health = {{ path = "/api/health" }}
env_from = {{ NEXT_PUBLIC_API_URL = "api.url" }}

{dbs}
[environments.staging]
target = "{staging}"

[environments.production]
target = "{production}"

[targets.fly]
org = "acme"
primary_region = "iad"

[targets.railway]

[targets.render]
"#
    )
}

/// The fakes, the checkout, and the value each GitHub secret holds, per GitHub environment.
struct World {
    fly: FlyFake,
    railway: RailwayFake,
    render: RenderFake,
    registry: RegistryFake,
    checkout: tempfile::TempDir,
    workflow: Value,
    secrets: BTreeMap<(String, String), String>,
    project: String,
    render_owner: String,
    targets: [&'static str; 2],
    /// Steps run once already (`job/step`).
    ran: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl World {
    async fn new(staging: &'static str, production: &'static str) -> Self {
        let databases = staging != "render" && production != "render";
        let fly = FlyFake::start().await;
        let railway = RailwayFake::start().await;
        let render = RenderFake::start().await;
        let registry = RegistryFake::start().await;
        let render_owner = render.seed_pro_owner("acme");
        let project = railway.seed_project("forgestack");
        let mut secrets = BTreeMap::new();
        for env in ["staging", "production"] {
            let env_id = railway.seed_environment(&project, env);
            let project_token = railway.create_project_token(&project, &env_id);
            for (name, value) in [
                ("FLY_API_TOKEN", FlyFake::TOKEN.to_string()),
                ("RAILWAY_TOKEN", project_token),
                ("RAILWAY_API_TOKEN", RAILWAY_ACCOUNT_TOKEN.to_string()),
                ("RENDER_API_KEY", RENDER_KEY.to_string()),
                ("GITHUB_TOKEN", JOB_TOKEN.to_string()),
                ("GHCR_TOKEN", GHCR_PAT.to_string()),
                ("STRIPE_SECRET_KEY", format!("sk_canary_{env}_stripe")),
                ("BETTER_AUTH_SECRET", format!("canary_{env}_auth")),
                ("DATABASE_URL", format!("postgres://u:canary_{env}_pw@db.example:5432/app")),
                ("REDIS_URL", format!("redis://default:canary_{env}_redis@cache.example:6379")),
            ] {
                secrets.insert((env.to_string(), name.to_string()), value);
            }
            if databases {
                for (db, image, var, url) in [
                    ("Postgres", "ghcr.io/railwayapp-templates/postgres-ssl:16", "DATABASE_URL", "postgresql://pg"),
                    ("Redis", "bitnami/redis:7.2.5", "REDIS_URL", "redis://r"),
                ] {
                    let id =
                        railway.service_id(&project, db).unwrap_or_else(|| railway.seed_database(&project, db, image));
                    assert!(railway.seed_variable(&project, &env_id, &id, var, Some(url)));
                }
            }
        }
        // The workflow, as `shipit render --to github` writes it for the ghcr.io manifest.
        let app = shipit_core::parse(&manifest("ghcr.io", staging, production, databases), "shipit.toml").unwrap();
        let files = shipit_core::github::render(&app, "production").unwrap();
        let workflow: Value = serde_saphyr::from_str(&files[0].contents).unwrap();
        let checkout = tempfile::tempdir().unwrap();
        std::fs::write(checkout.path().join("shipit.toml"), manifest(&registry.host(), staging, production, databases))
            .unwrap();
        Self {
            fly,
            railway,
            render,
            registry,
            checkout,
            workflow,
            secrets,
            project,
            render_owner,
            targets: [staging, production],
            ran: Default::default(),
        }
    }

    fn push(&self, sha: &str) -> Vec<String> {
        SERVICES.iter().map(|s| self.registry.put_image(&format!("acme/forgestack-{s}"), sha)).collect()
    }

    /// The step of `job` named `name`.
    fn step(&self, job: &str, name: &str) -> &Value {
        let steps = self.workflow["jobs"][job]["steps"].as_array().unwrap_or_else(|| panic!("no job {job}"));
        steps.iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("no step {name:?} in {job}"))
    }

    /// The step's variables, each `${{ secrets.X }}` with the value of secret X in the job's
    /// GitHub environment.
    fn variables(&self, job: &str, step: &Value) -> BTreeMap<String, String> {
        let env = self.workflow["jobs"][job]["environment"].as_str().unwrap().to_string();
        let mut vars = BTreeMap::new();
        for (k, v) in step["env"].as_object().into_iter().flatten() {
            let v = v.as_str().unwrap();
            let name = v.strip_prefix("${{ secrets.").and_then(|r| r.strip_suffix(" }}"));
            let name = name.unwrap_or_else(|| panic!("{job}: {k} is {v}, not a secret"));
            let value = self.secrets.get(&(env.clone(), name.to_string()));
            vars.insert(k.clone(), value.unwrap_or_else(|| panic!("no secret {name} in {env}")).clone());
        }
        vars
    }

    /// Runs the `run:` line of `step` with bash, with `vars` and what a runner sets.
    fn run(&self, job: &str, step: &Value, vars: &BTreeMap<String, String>, sha: &str) -> (bool, String) {
        let script = step["run"].as_str().unwrap();
        let bin = assert_cmd::cargo::cargo_bin("shipit");
        let path = format!("{}:{}", bin.parent().unwrap().display(), std::env::var("PATH").unwrap_or_default());
        let out = std::process::Command::new("bash")
            .arg("-ec")
            .arg(script)
            .current_dir(self.checkout.path())
            .env_clear()
            .env("PATH", path)
            .env("CI", "true")
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_SHA", sha)
            .env("GITHUB_ACTOR", ACTOR)
            // The fakes, standing in for the platforms and ghcr.io.
            .env("SHIPIT_FLY_API_URL", self.fly.uri())
            .env("SHIPIT_FLY_POLL_INTERVAL", "10ms")
            .env("SHIPIT_RAILWAY_API_URL", self.railway.endpoint())
            .env("SHIPIT_RAILWAY_POLL_INTERVAL", "10ms")
            .env("SHIPIT_RENDER_API_URL", self.render.uri())
            .env("SHIPIT_RENDER_POLL_INTERVAL", "10ms")
            .env("SHIPIT_INSECURE_REGISTRIES", self.registry.host())
            .env("SHIPIT_GHCR_HOSTS", self.registry.host())
            .envs(vars)
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        for value in self.secrets.values() {
            assert!(!text.contains(value.as_str()), "{job}: a secret value was printed:\n{text}");
        }
        (out.status.success(), text)
    }

    /// On the step's first run, each of its variables is needed: without it the step fails,
    /// naming it. Every run: together they are enough (the step succeeds). Returns the
    /// successful run's output.
    ///
    /// Promote and rollback read no image from the registry: they need its token only to move
    /// the environment's tag, and a run without it would promote or roll back all the same
    /// (saying the tag stayed). Those tokens are proven needed by the tags instead: the fake
    /// refuses a push without the credential, and [`Self::tags_follow`] finds them moved.
    fn run_step(&self, job: &str, name: &str, sha: &str) -> String {
        let step = self.step(job, name).clone();
        let vars = self.variables(job, &step);
        assert!(!vars.is_empty(), "{job}/{name} passes no variable");
        let first = self.ran.lock().unwrap().insert(format!("{job}/{name}"));
        let tag_only = |v: &str| ["GITHUB_TOKEN", "GHCR_TOKEN"].contains(&v) && name != "Deploy";
        for missing in vars.keys().filter(|v| first && !tag_only(v)) {
            let mut fewer = vars.clone();
            fewer.remove(missing);
            let (ok, text) = self.run(job, &step, &fewer, sha);
            assert!(!ok, "{job}/{name} succeeded without {missing}: it is passed but not needed\n{text}");
            let named = text.contains(missing.as_str())
                // The registry names the pair it reads; either missing fails the same way.
                || (missing == "GHCR_TOKEN" && text.contains("GITHUB_TOKEN or GHCR_TOKEN"));
            assert!(named, "{job}/{name} without {missing} fails without naming it:\n{text}");
        }
        let (ok, text) = self.run(job, &step, &vars, sha);
        assert!(ok, "{job}/{name} failed with the variables the workflow passes ({:?}):\n{text}", vars.keys());
        text
    }

    /// The digests `env`'s services run, in service order.
    fn running(&self, env: &str) -> Vec<String> {
        let target = self.targets[usize::from(env == "production")];
        SERVICES
            .iter()
            .map(|s| match target {
                "fly" => {
                    let machines = self.fly.machines(&format!("forgestack-{s}-{env}"));
                    let digests: Vec<String> = machines.iter().filter_map(|m| m.digest.clone()).collect();
                    assert!(!digests.is_empty() && digests.iter().all(|d| d == &digests[0]), "{s}: {digests:?}");
                    digests[0].clone()
                }
                "railway" => {
                    let env_id = self.railway.environment_id(&self.project, env).unwrap();
                    let service = self.railway.service_id(&self.project, s).unwrap();
                    self.railway.live_deployment(&self.project, &env_id, &service).unwrap().digest.unwrap()
                }
                "render" => {
                    let service = self.render.service_by_name(&self.render_owner, &format!("forgestack-{s}-{env}"));
                    let live = self.render.live_deploy(&service.unwrap().id).unwrap();
                    live.image_ref.split_once('@').map(|(_, d)| d.to_string()).unwrap_or(live.image_sha)
                }
                other => panic!("unknown target {other}"),
            })
            .collect()
    }

    /// `env`'s tag points at what each service runs: shipit moved it with the registry token
    /// the step was given (the only credential it had, and the fake wants one to push).
    fn tags_follow(&self, env: &str) {
        let running = self.running(env);
        for (s, digest) in SERVICES.iter().zip(&running) {
            let tag = self.registry.tag_digest(&format!("acme/forgestack-{s}"), env);
            assert_eq!(tag.as_ref(), Some(digest), "{s}:{env} follows what {env} runs");
        }
    }

    /// Merge to main twice, promoting each time, then roll production back, as a team would.
    fn merge_promote_and_roll_back(&self) {
        // Registry credentials are checked like GHCR's, so a missing token fails; both tokens
        // are the actor's.
        self.registry.require_auth(ACTOR, JOB_TOKEN);
        self.registry.also_accept(ACTOR, GHCR_PAT);
        let first = self.push("1111111aaaa");
        let has_sync = |job: &str| {
            self.workflow["jobs"][job]["steps"].as_array().unwrap().iter().any(|s| s["name"] == "Sync secrets")
        };
        assert!(has_sync("deploy-staging") && has_sync("promote-production"));
        self.run_step("deploy-staging", "Sync secrets", "1111111aaaa");
        self.run_step("deploy-staging", "Deploy", "1111111aaaa");
        assert_eq!(self.running("staging"), first, "staging runs the commit's images");
        self.tags_follow("staging");
        self.run_step("promote-production", "Sync secrets", "1111111aaaa");
        self.run_step("promote-production", "Promote", "1111111aaaa");
        assert_eq!(self.running("production"), first, "production runs what staging ran");
        self.tags_follow("production");

        let second = self.push("2222222bbbb");
        self.run_step("deploy-staging", "Deploy", "2222222bbbb");
        self.run_step("promote-production", "Promote", "2222222bbbb");
        assert_eq!(self.running("production"), second);
        self.tags_follow("production");
        self.run_step("rollback-production", "Roll back", "2222222bbbb");
        assert_eq!(self.running("production"), first, "the rollback put the first release back");
        self.tags_follow("production");
        self.run_step("rollback-staging", "Roll back", "2222222bbbb");
        assert_eq!(self.running("staging"), first);
        self.tags_follow("staging");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fly_to_fly_passes_the_database_urls_to_secrets_sync() {
    let w = World::new("fly", "fly").await;
    let vars = w.variables("deploy-staging", w.step("deploy-staging", "Sync secrets"));
    assert!(vars.contains_key("DATABASE_URL") && vars.contains_key("REDIS_URL"), "{vars:?}");
    w.merge_promote_and_roll_back();
    // The database URL reached Fly as an app secret (names only are visible).
    assert!(w.fly.secret_names("forgestack-api-production").contains(&"DATABASE_URL".to_string()));
}

#[tokio::test(flavor = "multi_thread")]
async fn railway_to_railway_promotes_with_the_account_token() {
    let w = World::new("railway", "railway").await;
    let promote = w.variables("promote-production", w.step("promote-production", "Promote"));
    assert!(promote.contains_key("RAILWAY_API_TOKEN") && !promote.contains_key("RAILWAY_TOKEN"), "{promote:?}");
    w.merge_promote_and_roll_back();
}

#[tokio::test(flavor = "multi_thread")]
async fn render_to_render_uses_a_lasting_registry_token() {
    let w = World::new("render", "render").await;
    w.merge_promote_and_roll_back();
}

#[tokio::test(flavor = "multi_thread")]
async fn fly_to_render_promotes_across_platforms() {
    let w = World::new("fly", "render").await;
    w.merge_promote_and_roll_back();
}

#[tokio::test(flavor = "multi_thread")]
async fn railway_to_fly_promotes_across_platforms() {
    let w = World::new("railway", "fly").await;
    w.merge_promote_and_roll_back();
}
