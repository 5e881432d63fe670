//! `shipit deploy`, `rollback`, `releases`, `status` and `secrets sync`, run as the built binary
//! against the stateful Fly fake and a fake OCI registry.

// Test helpers outside #[test] fns unwrap and panic on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use assert_cmd::Command;
use shipit_testkit::fly::{Behaviour, FlyFake};

mod support;

use support::{SECRET, World, digest_of, output};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_then_failed_release_is_rolled_back_then_manual_rollback() {
    let w = World::new().await;
    let v1 = w.push("v1");

    // first deploy: every service is created and runs exactly the digests v1 points to
    let (code, stdout, stderr) = output(w.shipit().args([
        "deploy",
        "--env",
        "staging",
        "--tag",
        "v1",
        "--allow-missing-secrets",
        "--sha",
        "1111111",
    ]));
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("live and healthy"), "{stdout}");
    let api = w.digests_running("forgestack-api-staging");
    assert_eq!(api.len(), 2, "scale.min = 2 machines");
    assert!(api.iter().all(|d| d == digest_of(&v1, "api")), "{api:?}");
    assert!(w.digests_running("forgestack-worker-staging").iter().all(|d| d == digest_of(&v1, "worker")));
    let web = &w.fly.machines("forgestack-web-staging")[0];
    assert_eq!(web.config["env"]["NEXT_PUBLIC_API_URL"], "https://forgestack-api-staging.fly.dev");
    assert!(w.fly.leases_held().is_empty(), "every lease released");

    // v2's api never passes its checks: the deploy fails, api goes back to v1, exit 3 (timed out)
    let v2 = w.push("v2");
    w.fly.set_behaviour(digest_of(&v2, "api"), Behaviour::FailingChecks);
    let (code, stdout, stderr) = output(w.shipit().args([
        "deploy",
        "--env",
        "staging",
        "--tag",
        "v2",
        "--service",
        "api",
        "--wait-timeout",
        "2s",
    ]));
    assert_eq!(code, 3, "timed out and rolled back\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("previous release was put back"), "{stdout}");
    assert!(w.digests_running("forgestack-api-staging").iter().all(|d| d == digest_of(&v1, "api")), "api back on v1");
    assert!(w.fly.leases_held().is_empty());
    let machine = &w.fly.machines("forgestack-api-staging")[0];
    assert_eq!(
        machine.metadata.get("shipit_git_sha").map(String::as_str),
        Some("1111111"),
        "the restored release keeps its commit"
    );

    // a crash fails fast and is rolled back: exit 1
    let v3 = w.push("v3");
    w.fly.set_behaviour(digest_of(&v3, "worker"), Behaviour::Crash);
    let (code, stdout, _) = output(w.shipit().args([
        "deploy",
        "--env",
        "staging",
        "--tag",
        "v3",
        "--service",
        "worker",
        "--wait-timeout",
        "60s",
    ]));
    assert_eq!(code, 1, "{stdout}");
    assert!(w.digests_running("forgestack-worker-staging").iter().all(|d| d == digest_of(&v1, "worker")));

    // a good v4, then `rollback` returns api to v1 (v2 failed, so it is never the target)
    let v4 = w.push("v4");
    let (code, ..) = output(w.shipit().args(["deploy", "--env", "staging", "--tag", "v4", "--service", "api"]));
    assert_eq!(code, 0);
    assert!(w.digests_running("forgestack-api-staging").iter().all(|d| d == digest_of(&v4, "api")));
    let (code, stdout, _) = output(w.shipit().args(["releases", "--env", "staging", "--service", "api"]));
    assert_eq!(code, 0);
    assert!(stdout.contains("live") && stdout.contains("failed") && stdout.contains("superseded"), "{stdout}");
    let (code, stdout, stderr) = output(w.shipit().args(["rollback", "--env", "staging", "--service", "api"]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        w.digests_running("forgestack-api-staging").iter().all(|d| d == digest_of(&v1, "api")),
        "back on v1, skipping failed v2"
    );

    let (code, stdout, _) = output(w.shipit().args(["status", "--env", "staging"]));
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains(digest_of(&v1, "api")), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_output_is_ndjson_with_a_summary_last() {
    let w = World::new().await;
    w.push("v1");
    let (code, stdout, _) =
        output(w.shipit().args(["deploy", "--env", "staging", "--tag", "v1", "--allow-missing-secrets", "--json"]));
    assert_eq!(code, 0);
    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.len() > 3);
    assert_eq!(lines[0]["event"], "started");
    let last = lines.last().unwrap();
    assert_eq!(last["event"], "summary");
    assert_eq!(last["outcome"], "succeeded");
    assert_eq!(last["services"].as_array().unwrap().len(), 3);
    assert!(lines.iter().any(|l| l["event"] == "image_resolved"));
    assert!(lines.iter().all(|l| l["ts"].is_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_sync_sets_values_and_never_prints_them() {
    let w = World::new().await;
    w.push("v1");
    // missing value: refuses and changes nothing
    let (code, _, stderr) = output(w.shipit().args(["secrets", "sync", "--env", "staging"]));
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("STRIPE_SECRET_KEY"), "{stderr}");
    assert!(w.fly.apps().is_empty() || w.fly.secret_names("forgestack-api-staging").is_empty());

    let (code, ..) = output(w.shipit().args(["deploy", "--env", "staging", "--tag", "v1", "--allow-missing-secrets"]));
    assert_eq!(code, 0);
    let (code, stdout, stderr) = output(w.shipit().env("STRIPE_SECRET_KEY", SECRET).args([
        "secrets",
        "sync",
        "--env",
        "staging",
        "--service",
        "api",
    ]));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(w.fly.secret_value("forgestack-api-staging", "STRIPE_SECRET_KEY").as_deref(), Some(SECRET));
    assert!(stdout.contains("STRIPE_SECRET_KEY"));
    for text in [&stdout, &stderr] {
        assert!(!text.contains(SECRET), "the value leaked: {text}");
    }
    let (_, stdout, stderr) = output(
        w.shipit().env("STRIPE_SECRET_KEY", SECRET).args(["deploy", "--env", "staging", "--tag", "v1", "--json", "-v"]),
    );
    assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_means_exit_5_and_no_request() {
    let w = World::new().await;
    w.push("v1");
    let (code, _, stderr) =
        output(w.shipit().env_remove("FLY_API_TOKEN").args(["deploy", "--env", "staging", "--tag", "v1"]));
    assert_eq!(code, 5, "{stderr}");
    assert!(stderr.contains("FLY_API_TOKEN") && stderr.contains("shipit login fly"), "{stderr}");
    assert!(w.fly.requests().is_empty(), "nothing was sent to Fly");

    let (code, _, stderr) = output(w.shipit().env("FLY_API_TOKEN", "wrong").args(["status", "--env", "staging"]));
    assert_eq!(code, 5, "{stderr}");
    assert!(!stderr.contains("wrong"), "the token is never printed: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_held_by_someone_else_is_a_conflict() {
    let w = World::new().await;
    w.push("v1");
    assert_eq!(output(w.shipit().args(["deploy", "--env", "staging", "--tag", "v1", "--service", "worker"])).0, 0);
    let before = w.digests_running("forgestack-worker-staging");
    let machine = w.fly.machines("forgestack-worker-staging")[0].id.clone();
    w.fly.hold_lease("forgestack-worker-staging", &machine, "alice@example.com");
    w.push("v2");
    let (code, stdout, stderr) =
        output(w.shipit().args(["deploy", "--env", "staging", "--tag", "v2", "--service", "worker"]));
    assert_eq!(code, 6, "{stdout}\n{stderr}");
    assert!(format!("{stdout}{stderr}").contains("alice@example.com"), "{stdout}\n{stderr}");
    assert_eq!(w.digests_running("forgestack-worker-staging"), before, "nothing changed");
}

#[test]
fn dry_run_needs_no_token_and_sends_nothing() {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/forgestack/shipit.toml");
    let out = Command::cargo_bin("shipit")
        .unwrap()
        .env_clear()
        .env("CI", "true")
        .env("SHIPIT_FLY_API_URL", "http://127.0.0.1:9/v1")
        .arg("-f")
        .arg(&manifest)
        .args(["deploy", "--env", "staging", "--tag", "3f2c1ab", "--dry-run"])
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("--- fly.api.toml ---"), "{stdout}");
    assert!(stdout.contains("POST") && stdout.contains("/apps/forgestack-api-staging/machines"), "{stdout}");
    assert!(stdout.contains("ghcr.io/acme/forgestack-api:3f2c1ab"), "{stdout}");
}

#[test]
fn dry_run_json_prints_every_call_as_an_object() {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/forgestack/shipit.toml");
    let out = Command::cargo_bin("shipit")
        .unwrap()
        .env_clear()
        .env("CI", "true")
        .env("SHIPIT_FLY_API_URL", "http://127.0.0.1:9/v1")
        .arg("-f")
        .arg(&manifest)
        .args(["--json", "deploy", "--env", "staging", "--tag", "3f2c1ab", "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let dry = lines.iter().find(|l| l["event"] == "dry_run").expect("a dry_run object");
    let api = dry["services"].as_array().unwrap().iter().find(|s| s["service"] == "api").unwrap();
    let calls = api["calls"].as_array().unwrap();
    assert!(calls.iter().all(|c| c["method"].is_string() && c["url"].is_string()), "{calls:#?}");
    let update = calls
        .iter()
        .find(|c| c["method"] == "POST" && c["url"].as_str().unwrap().ends_with("/machines/{id}"))
        .expect("the machine update");
    assert_eq!(update["body"]["config"]["image"], "ghcr.io/acme/forgestack-api:3f2c1ab@<digest of the tag>");
    let lease = calls.iter().position(|c| c["url"].as_str().unwrap().contains("/lease?ttl=")).unwrap();
    let first_update = calls.iter().position(|c| c == update).unwrap();
    assert!(lease < first_update, "leases come first");
}

#[test]
fn render_dry_run_lists_the_rest_calls_without_a_key() {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/forgestack/shipit.toml");
    let out = Command::cargo_bin("shipit")
        .unwrap()
        .env("CI", "true")
        .env_remove("RENDER_API_KEY")
        .arg("-f")
        .arg(&manifest)
        .args(["--json", "deploy", "--to", "render", "--env", "staging", "--tag", "x", "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("https://api.render.com/v1/services/{id}/deploys"), "{stdout}");
    assert!(stdout.contains("imageUrl"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_cleanly_with_leases_released() {
    let w = World::new().await;
    let v1 = w.push("v1");
    assert_eq!(
        output(w.shipit().args([
            "deploy",
            "--env",
            "staging",
            "--tag",
            "v1",
            "--allow-missing-secrets",
            "--service",
            "api"
        ]))
        .0,
        0
    );
    let v2 = w.push("v2");
    // slow machine reads make the rollout long enough to interrupt
    w.fly.inject(shipit_testkit::fly::Fault::Delay {
        path_contains: "/machines/".to_string(),
        delay: std::time::Duration::from_millis(150),
    });
    // wait until the rollout holds a lease, then send SIGTERM as a cancelled CI job would
    let child = deploy_holding_a_lease(&w, &["--strategy", "rolling"]).await;
    let status = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(130), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("CANCELLED"), "{stdout}");
    w.fly.clear_faults();
    assert!(w.fly.leases_held().is_empty(), "every lease released");
    for d in w.digests_running("forgestack-api-staging") {
        assert!(d == digest_of(&v1, "api") || d == digest_of(&v2, "api"), "every machine on a known image: {d}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_exits_2_on_changes_and_deploy_warns_about_missing_secrets() {
    let w = World::new().await;
    w.push("v1");
    let (code, stdout, _) = output(w.shipit().args(["plan", "--env", "staging"]));
    assert_eq!(code, 2, "nothing exists yet: {stdout}");
    assert!(stdout.contains("will be created"), "{stdout}");
    let (code, _, stderr) =
        output(w.shipit().args(["deploy", "--env", "staging", "--tag", "v1", "--allow-missing-secrets"]));
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, _) = output(w.shipit().args(["plan", "--env", "staging", "--tag", "v1"]));
    assert_eq!(code, 0, "what runs is what the manifest says: {stdout}");
    w.push("v2");
    let (code, stdout, _) = output(w.shipit().args(["plan", "--env", "staging", "--tag", "v2", "--service", "api"]));
    assert_eq!(code, 2, "{stdout}");
    assert!(stdout.contains("image"), "{stdout}");
    // STRIPE_SECRET_KEY is declared but was never set on Fly
    let (code, _, stderr) = output(w.shipit().args(["deploy", "--env", "staging", "--tag", "v2", "--service", "api"]));
    assert_eq!(code, 0);
    assert!(stderr.contains("not set on fly: STRIPE_SECRET_KEY"), "{stderr}");
}

/// A second signal quits at once, but still releases every lease and says what runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_quits_at_once_with_leases_released() {
    for signal in ["-TERM", "-INT"] {
        let w = World::new().await;
        let v1 = w.push("v1");
        assert_eq!(
            output(w.shipit().args([
                "deploy",
                "--env",
                "staging",
                "--tag",
                "v1",
                "--allow-missing-secrets",
                "--service",
                "api"
            ]))
            .0,
            0
        );
        let v2 = w.push("v2");
        w.fly.inject(shipit_testkit::fly::Fault::Delay {
            path_contains: "/machines/".to_string(),
            delay: std::time::Duration::from_millis(150),
        });
        let child = deploy_holding_a_lease(&w, &[]).await;
        let pid = child.id().to_string();
        for _ in 0..2 {
            assert!(std::process::Command::new("kill").args([signal, &pid]).status().unwrap().success());
            tokio::time::sleep(std::time::Duration::from_millis(60)).await;
        }
        let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(130), "{signal}: {stdout}\n{stderr}");
        assert!(stderr.contains("quitting at once"), "{signal}: {stderr}");
        assert!(stdout.contains("CANCELLED") && stdout.contains("runs sha256:"), "{signal}: {stdout}");
        w.fly.clear_faults();
        assert!(w.fly.leases_held().is_empty(), "{signal}: every lease released: {:?}", w.fly.leases_held());
        for d in w.digests_running("forgestack-api-staging") {
            assert!(d == digest_of(&v1, "api") || d == digest_of(&v2, "api"), "every machine on a known image: {d}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_of_an_app_with_no_machines_says_so() {
    let w = World::new().await;
    w.fly.seed_app("forgestack-api-staging", "acme");
    let (code, stdout, stderr) = output(w.shipit().args(["status", "--env", "staging"]));
    assert_eq!(code, 1, "not healthy: {stdout}\n{stderr}");
    let api = stdout.lines().find(|l| l.starts_with("api")).unwrap_or_default();
    assert!(api.contains("exists, no machines"), "{stdout}");
    assert!(!stdout.contains("mixed digests"), "{stdout}");
}

/// Platform data printed in human form goes through the scrubber too: a token quoted back in a
/// machine's metadata never reaches the terminal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn human_status_and_releases_never_print_the_token() {
    let w = World::new().await;
    w.fly.seed_app("forgestack-api-staging", "acme");
    let config = serde_json::json!({
        "image": format!("ghcr.io/acme/forgestack-api@sha256:{}", "a".repeat(64)),
        "metadata": { "shipit_release": format!("echo-{}", FlyFake::TOKEN), "fly_process_group": "app" },
    });
    w.fly.seed_machine("forgestack-api-staging", "iad", config);
    for cmd in [["status", "--env", "staging"], ["releases", "--env", "staging"]] {
        let (_, stdout, stderr) = output(w.shipit().args(cmd));
        assert!(stdout.contains("echo-"), "{cmd:?}: the release is shown: {stdout}");
        assert!(!stdout.contains(FlyFake::TOKEN) && !stderr.contains(FlyFake::TOKEN), "{cmd:?}: {stdout}\n{stderr}");
    }
}

/// Starts `shipit deploy --tag v2 --service api` (plus `extra`) against the world's fakes and
/// returns once its rollout holds a lease, ready to be signalled.
async fn deploy_holding_a_lease(w: &World, extra: &[&str]) -> std::process::Child {
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("shipit"))
        .env_clear()
        .env("CI", "true")
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("FLY_API_TOKEN", FlyFake::TOKEN)
        .env("SHIPIT_FLY_API_URL", w.fly.uri())
        .env("SHIPIT_FLY_POLL_INTERVAL", "10ms")
        .env("SHIPIT_INSECURE_REGISTRIES", w.registry.host())
        .arg("-f")
        .arg(w.manifest())
        .args(["deploy", "--env", "staging", "--tag", "v2", "--service", "api"])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while w.fly.leases_held().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!w.fly.leases_held().is_empty(), "the rollout started");
    child
}
