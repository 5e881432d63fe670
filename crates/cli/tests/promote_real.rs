//! `shipit push`, `deploy` and `promote` end to end against a REAL registry (Debian's
//! docker-registry, started by the test) and the Fly fake: production runs exactly the digest
//! staging runs, both environment tags point at it, and the promotion moved no blob.

// Test helpers outside #[test] fns unwrap and panic on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../registry/tests/support/mod.rs"]
mod real;

use assert_cmd::Command;
use shipit_core::ImageRef;
use shipit_testkit::fly::FlyFake;

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_deploy_promote_on_a_real_registry() {
    let Some(registry) = real::RealRegistry::start() else { return };
    let fly = FlyFake::start().await;
    let host = registry.host();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("shipit.toml");
    std::fs::write(
        &manifest,
        format!(
            r#"app = "forgestack"
[registry]
host = "{host}"
namespace = "acme"
[services.api]
port = 4000
health = {{ path = "/api/health", interval = "1s", timeout = "1s", grace = "1s" }}
[services.worker]
command = ["node", "dist/index.js"]
[environments.staging]
target = "fly"
[environments.production]
target = "fly"
[targets.fly]
org = "acme"
primary_region = "iad"
"#
        ),
    )
    .unwrap();
    let shipit = || {
        let mut c = Command::cargo_bin("shipit").unwrap();
        c.env_clear()
            .env("CI", "true")
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("FLY_API_TOKEN", FlyFake::TOKEN)
            .env("SHIPIT_FLY_API_URL", fly.uri())
            .env("SHIPIT_FLY_POLL_INTERVAL", "10ms")
            .env("SHIPIT_INSECURE_REGISTRIES", &host)
            .arg("-f")
            .arg(&manifest);
        c
    };

    // push a multi-arch api and a single-arch worker, as buildx would lay them out
    let (api_layout, api_index) = real::multi_arch(64 * 1024);
    let (worker_layout, worker_desc) = real::single_arch(2, 32 * 1024);
    let api_dir = api_layout.write_dir(&dir.path().join("api-oci"));
    let worker_tar = worker_layout.write_tar(&dir.path().join("worker-oci.tar"));
    let api_digest = api_index["digest"].as_str().unwrap().to_string();
    let worker_digest = worker_desc["digest"].as_str().unwrap().to_string();
    for (layout, repo) in [(&api_dir, "forgestack-api"), (&worker_tar, "forgestack-worker")] {
        let (code, stdout, stderr) =
            run(shipit().arg("push").arg(layout).args(["--image", &format!("{host}/acme/{repo}"), "--tag", "3f2c1ab"]));
        assert_eq!(code, 0, "{stdout}\n{stderr}");
    }

    let (code, stdout, stderr) = run(shipit().args(["deploy", "--env", "staging", "--tag", "3f2c1ab"]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let running = |app: &str| fly.machines(app).into_iter().map(|m| m.digest.unwrap_or_default()).collect::<Vec<_>>();
    assert!(running("forgestack-api-staging").iter().all(|d| *d == api_digest), "staging runs the pushed index digest");

    let log_before = registry.access_log().len();
    let (code, stdout, stderr) = run(shipit().args(["promote", "staging", "production"]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(running("forgestack-api-production").iter().all(|d| *d == api_digest));
    assert!(running("forgestack-worker-production").iter().all(|d| *d == worker_digest));

    let promotion = registry.access_log_since(log_before);
    assert!(
        promotion.iter().all(|a| !a.is_blob()),
        "promotion moved no blob: {:?}",
        promotion.iter().map(|a| a.path()).collect::<Vec<_>>()
    );

    let client = shipit_registry::RegistryClient::builder().insecure_hosts(vec![host.clone()]).build().unwrap();
    for (repo, digest) in [("forgestack-api", &api_digest), ("forgestack-worker", &worker_digest)] {
        for env in ["staging", "production"] {
            let image: ImageRef = format!("{host}/acme/{repo}:{env}").parse().unwrap();
            assert_eq!(&client.resolve_digest(&image).await.unwrap(), digest, "{repo}:{env} points at what runs");
        }
    }
}
