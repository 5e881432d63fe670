//! Shared set-up for the CLI's end-to-end tests: the Fly fake, a fake registry, and a
//! forgestack-like manifest whose images live in that registry.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use assert_cmd::Command;
use shipit_testkit::fly::FlyFake;
use shipit_testkit::registry::RegistryFake;

pub const SECRET: &str = "sk_live_do-not-print-me-42";

/// A forgestack-like app whose images live in the fake registry.
pub struct World {
    pub fly: FlyFake,
    pub registry: RegistryFake,
    pub dir: tempfile::TempDir,
}

impl World {
    pub async fn new() -> Self {
        Self::with_api_lines("").await
    }

    /// The app, with `extra` added to `[services.api]`.
    pub async fn with_api_lines(extra: &str) -> Self {
        let fly = FlyFake::start().await;
        let registry = RegistryFake::start().await;
        let dir = tempfile::tempdir().unwrap();
        let manifest = format!(
            r#"app = "forgestack"

[registry]
host = "{host}"
namespace = "acme"

[services.api]
port = 4000
health = {{ path = "/api/health", interval = "1s", timeout = "1s", grace = "1s" }}
env = {{ NODE_ENV = "production" }}
secrets = ["STRIPE_SECRET_KEY"]
scale = {{ min = 2, max = 3 }}
{extra}

[services.worker]
command = ["node", "dist/index.js"]

[services.web]
port = 3000
health = {{ path = "/api/health" }}
env_from = {{ NEXT_PUBLIC_API_URL = "api.url" }}

[environments.staging]
target = "fly"

[environments.production]
target = "fly"
regions = ["iad", "fra"]

[targets.fly]
org = "acme"
primary_region = "iad"
"#,
            host = registry.host(),
            extra = extra
        );
        std::fs::write(dir.path().join("shipit.toml"), manifest).unwrap();
        Self { fly, registry, dir }
    }

    pub fn manifest(&self) -> PathBuf {
        self.dir.path().join("shipit.toml")
    }

    /// Pushes an image for every service under `tag`; returns the digests by service.
    pub fn push(&self, tag: &str) -> Vec<(String, String)> {
        ["api", "worker", "web"]
            .iter()
            .map(|s| (s.to_string(), self.registry.put_image(&format!("acme/forgestack-{s}"), tag)))
            .collect()
    }

    pub fn shipit(&self) -> Command {
        let mut cmd = Command::cargo_bin("shipit").unwrap();
        // CI=true: the binary never reaches the OS keyring of whoever runs the tests.
        cmd.env_clear()
            .env("CI", "true")
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("FLY_API_TOKEN", FlyFake::TOKEN)
            .env("SHIPIT_FLY_API_URL", self.fly.uri())
            .env("SHIPIT_FLY_POLL_INTERVAL", "10ms")
            .env("SHIPIT_INSECURE_REGISTRIES", self.registry.host())
            .arg("-f")
            .arg(self.manifest());
        cmd
    }

    pub fn digests_running(&self, app: &str) -> Vec<String> {
        self.fly.machines(app).into_iter().map(|m| m.digest.unwrap_or_default()).collect()
    }
}

pub fn output(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

pub fn digest_of<'a>(digests: &'a [(String, String)], service: &str) -> &'a str {
    &digests.iter().find(|(s, _)| s == service).unwrap().1
}

// Running the binary, shared by the platform end-to-end tests (railway.rs, render.rs,
// promote_cross.rs).

/// What one run of the binary gave.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- stdout ---\n{}\n--- stderr ---\n{}", self.code, self.stdout, self.stderr)
    }
}

pub fn run(cmd: &mut Command) -> Run {
    let (code, stdout, stderr) = output(cmd);
    Run { code, stdout, stderr }
}

pub fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
}

pub fn summary(stdout: &str) -> serde_json::Value {
    json_lines(stdout).into_iter().rev().find(|l| l["event"] == "summary").expect("a summary line")
}
