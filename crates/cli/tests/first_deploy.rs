//! A first deploy that finishes the job, run as the built binary against the Fly fake: each web
//! service's URL in every summary, a new app refused while its secrets are not set, rotated
//! secrets rolled out with `--restart`, and Ctrl-C during a failing health gate putting the
//! previous release back before exit 130.

// Test helpers outside #[test] fns unwrap and panic on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use shipit_testkit::fly::{Behaviour, FlyFake};

mod support;

use support::{SECRET, World, digest_of, output, summary};

const ROTATED: &str = "sk_live_rotated-do-not-print-77";

/// The first deploy, with the secret in the environment so it is allowed.
fn first_deploy(w: &World, tag: &str) {
    let (code, stdout, stderr) =
        output(w.shipit().env("STRIPE_SECRET_KEY", SECRET).args(["deploy", "--env", "staging", "--tag", tag]));
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_summary_prints_each_web_services_url() {
    let w = World::new().await;
    w.push("v1");
    let steps = w.dir.path().join("step-summary.md");
    let (code, stdout, stderr) = output(
        w.shipit()
            .env("STRIPE_SECRET_KEY", SECRET)
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_STEP_SUMMARY", &steps)
            .args(["deploy", "--env", "staging", "--tag", "v1"]),
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    // human summary: a URL for api and web, none for the worker
    assert!(stdout.contains("https://forgestack-api-staging.fly.dev"), "{stdout}");
    assert!(stdout.contains("https://forgestack-web-staging.fly.dev"), "{stdout}");
    assert!(!stdout.contains("forgestack-worker-staging.fly.dev"), "a worker has no URL: {stdout}");
    // the job summary has a url column
    let md = std::fs::read_to_string(&steps).unwrap();
    assert!(md.contains("| url |"), "{md}");
    assert!(md.contains("| https://forgestack-api-staging.fly.dev |"), "{md}");
    let worker = md.lines().find(|l| l.starts_with("| worker ")).unwrap();
    assert!(worker.ends_with("| — |"), "{worker}");

    // JSON summary of a rollback: the URL per service too
    w.push("v2");
    assert_eq!(output(w.shipit().args(["deploy", "--env", "staging", "--tag", "v2", "--service", "api"])).0, 0);
    let (code, stdout, stderr) =
        output(w.shipit().args(["--json", "rollback", "--env", "staging", "--service", "api"]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let s = summary(&stdout);
    assert_eq!(s["operation"], "rollback");
    assert_eq!(s["services"][0]["url"], "https://forgestack-api-staging.fly.dev", "{s:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_app_whose_secrets_are_not_set_is_refused_before_anything_changes() {
    let w = World::new().await;
    w.push("v1");
    let (code, stdout, stderr) = output(w.shipit().args(["deploy", "--env", "staging", "--tag", "v1"]));
    assert_eq!(code, 4, "{stdout}\n{stderr}");
    assert!(stderr.contains("STRIPE_SECRET_KEY (api)"), "{stderr}");
    assert!(stderr.contains("shipit secrets sync") && stderr.contains("--allow-missing-secrets"), "{stderr}");
    assert!(w.fly.machines("forgestack-api-staging").is_empty(), "nothing was created");
    assert!(w.fly.machines("forgestack-web-staging").is_empty(), "not even the services without secrets");

    // --dry-run needs no token and says which secrets the environment lacks
    let (code, _, stderr) = output(w.shipit().args(["deploy", "--env", "staging", "--tag", "v1", "--dry-run"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("not in the environment: STRIPE_SECRET_KEY"), "{stderr}");

    // exported: the deploy sets it before the first machine starts
    first_deploy(&w, "v1");
    assert_eq!(w.fly.secret_value("forgestack-api-staging", "STRIPE_SECRET_KEY").as_deref(), Some(SECRET));
    let version = w.fly.secrets_version("forgestack-api-staging");
    assert!(version >= 1);
    for m in w.fly.machines("forgestack-api-staging") {
        assert_eq!(m.secrets_version_started, version, "started with the secret");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_missing_secrets_creates_it_without_them_and_secrets_sync_first_is_enough() {
    let w = World::new().await;
    w.push("v1");
    let (code, stdout, stderr) =
        output(w.shipit().args(["deploy", "--env", "staging", "--tag", "v1", "--allow-missing-secrets"]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stderr.contains("creating without secrets"), "{stderr}");
    assert_eq!(w.fly.secret_value("forgestack-api-staging", "STRIPE_SECRET_KEY"), None);

    // in production: `secrets sync` first, then a deploy with no secret in its environment
    let w = World::new().await;
    w.push("v1");
    let (code, _, stderr) =
        output(w.shipit().env("STRIPE_SECRET_KEY", SECRET).args(["secrets", "sync", "--env", "staging"]));
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) = output(w.shipit().args(["deploy", "--env", "staging", "--tag", "v1"]));
    assert_eq!(code, 0, "on the platform already: {stdout}\n{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_sync_restart_rolls_the_rotated_value_out_to_running_machines() {
    let w = World::new().await;
    let v1 = w.push("v1");
    first_deploy(&w, "v1");
    let app = "forgestack-api-staging";
    let before: Vec<String> = w.fly.machines(app).into_iter().map(|m| m.instance_id).collect();

    // without --restart: set, and the running machines still have the old value
    let (code, stdout, stderr) =
        output(w.shipit().env("STRIPE_SECRET_KEY", ROTATED).args(["secrets", "sync", "--env", "staging"]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let rotated = w.fly.secrets_version(app);
    assert!(w.fly.machines(app).iter().all(|m| m.secrets_version_started < rotated), "not rolled out yet");
    let (code, stdout, _) = output(w.shipit().args(["deploy", "--env", "staging", "--tag", "v1", "--service", "api"]));
    assert_eq!(code, 0);
    assert!(stdout.contains("unchanged"), "the same digest: nothing to do: {stdout}");
    assert!(w.fly.machines(app).iter().all(|m| m.secrets_version_started < rotated), "still not rolled out");

    // --restart: every machine updated through the gate, with min_secrets_version
    let (code, stdout, stderr) =
        output(w.shipit().env("STRIPE_SECRET_KEY", ROTATED).args(["secrets", "sync", "--env", "staging", "--restart"]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("restart") && stdout.contains("live and healthy"), "{stdout}");
    assert!(!stdout.contains(ROTATED) && !stderr.contains(ROTATED), "never printed");
    let latest = w.fly.secrets_version(app);
    let machines = w.fly.machines(app);
    assert_eq!(machines.len(), 2);
    for m in &machines {
        assert_eq!(m.secrets_version_started, latest, "{} runs the rotated value", m.id);
        assert_eq!(m.min_secrets_version, Some(latest));
        assert_eq!(m.digest.as_deref(), Some(digest_of(&v1, "api")), "the same image");
        assert!(!before.contains(&m.instance_id), "a new instance");
    }
    assert!(w.fly.leases_held().is_empty());
    // services without secrets are not restarted
    assert!(w.fly.machines("forgestack-web-staging").iter().all(|m| m.secrets_version_started == 0));

    // deploy --restart of the same digest goes through the rollout too
    let ids: Vec<String> = w.fly.machines(app).into_iter().map(|m| m.instance_id).collect();
    let (code, stdout, _) =
        output(w.shipit().args(["deploy", "--env", "staging", "--tag", "v1", "--service", "api", "--restart"]));
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("deployed"), "{stdout}");
    assert!(w.fly.machines(app).iter().all(|m| !ids.contains(&m.instance_id)), "every machine replaced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_that_fails_its_gate_is_put_back() {
    let w = World::new().await;
    let v1 = w.push("v1");
    first_deploy(&w, "v1");
    // the rotated value makes the app crash: the restart fails and is put back
    w.fly.set_behaviour(digest_of(&v1, "api"), Behaviour::Crash);
    let (code, stdout, stderr) =
        output(w.shipit().env("STRIPE_SECRET_KEY", ROTATED).args(["secrets", "sync", "--env", "staging", "--restart"]));
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(stdout.contains("rolled back"), "{stdout}");
    assert!(w.digests_running("forgestack-api-staging").iter().all(|d| d == digest_of(&v1, "api")));
    assert!(w.fly.leases_held().is_empty());
}

/// Ctrl-C while the new release fails its health gate: the previous release is restored
/// through the normal path, then exit 130 with a summary saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_a_failing_health_gate_restores_the_previous_release() {
    let w = World::new().await;
    let v1 = w.push("v1");
    first_deploy(&w, "v1");
    let v2 = w.push("v2");
    w.fly.set_behaviour(digest_of(&v2, "api"), Behaviour::FailingChecks);
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
        .args(["deploy", "--env", "staging", "--tag", "v2", "--service", "api", "--wait-timeout", "60s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // wait until a machine runs v2 (its update sent: the gate is failing now)
    let deadline = Instant::now() + Duration::from_secs(20);
    while !w.digests_running("forgestack-api-staging").iter().any(|d| d == digest_of(&v2, "api")) {
        assert!(Instant::now() < deadline, "the rollout never updated a machine");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    assert!(std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(130), "{stdout}\n{stderr}");
    assert!(started.elapsed() < Duration::from_secs(30), "not after the 60 s gate");
    assert!(stdout.contains("CANCELLED"), "{stdout}");
    let api = stdout.lines().find(|l| l.trim_start().starts_with("api ")).unwrap_or_default();
    assert!(api.contains("rolled back"), "the summary says it was put back: {stdout}");
    assert!(api.contains(&digest_of(&v1, "api")[..19]), "and runs v1: {stdout}");
    assert!(
        w.digests_running("forgestack-api-staging").iter().all(|d| d == digest_of(&v1, "api")),
        "every machine runs v1 again"
    );
    assert!(w.fly.leases_held().is_empty(), "every lease released");
}

/// The secrets at hand are set by the deploy itself, once every image resolved: a tag that
/// does not exist creates no app and sets no secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_tag_creates_nothing_even_with_the_secrets_at_hand() {
    let w = World::new().await;
    w.push("v1");
    let (code, stdout, stderr) =
        output(w.shipit().env("STRIPE_SECRET_KEY", SECRET).args(["deploy", "--env", "staging", "--tag", "nope"]));
    assert_eq!(code, 4, "{stdout}\n{stderr}");
    assert!(w.fly.apps().is_empty(), "no app was created: {:?}", w.fly.apps());
}
