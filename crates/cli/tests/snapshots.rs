//! Snapshots of what the binary prints, so a change to any of it is a reviewed change
//! (`cargo insta review`): the NDJSON stream of a deploy (times, ids, ports and digests
//! redacted), the `--dry-run` plan in both forms, and the GitHub step summary. The human summary
//! of every outcome is snapshotted from the engine in `crates/cli/src/snapshots.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::PathBuf;

use assert_cmd::Command;
use support::{SECRET, World, output};

fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.add_filter(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "[time]");
    s.add_filter(r"\d{8}T\d{6}Z-[0-9a-z-]+", "[release]");
    s.add_filter(r"sha256:[0-9a-f]{12,64}", "sha256:[digest]");
    s.add_filter(r"127\.0\.0\.1:\d+", "[host]");
    s.add_filter(r#""instance":"[^"]+""#, r#""instance":"[machine]""#);
    s.add_filter(r"machine [0-9a-f]{14}", "machine [machine]");
    s.add_filter(r"\b[0-9a-f]{14}\b", "[machine]");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ndjson_stream_and_step_summary_of_a_first_deploy() {
    let w = World::new().await;
    w.push("v1");
    let gh = tempfile::NamedTempFile::new().unwrap();
    let (code, stdout, stderr) = output(
        w.shipit()
            .env("STRIPE_SECRET_KEY", SECRET)
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_STEP_SUMMARY", gh.path())
            .args(["--json", "deploy", "--env", "staging", "--tag", "v1", "--service", "api", "--sha", "1111111"]),
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let step = std::fs::read_to_string(gh.path()).unwrap();
    settings().bind(|| {
        insta::assert_snapshot!("deploy_ndjson", stdout);
        insta::assert_snapshot!("deploy_step_summary", step);
    });
}

fn forgestack() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/forgestack/shipit.toml")
}

fn dry_run(json: bool) -> String {
    let mut cmd = Command::cargo_bin("shipit").unwrap();
    cmd.env_clear().env("CI", "true").arg("-f").arg(forgestack());
    if json {
        cmd.arg("--json");
    }
    cmd.args(["deploy", "--env", "production", "--tag", "3f2c1ab", "--dry-run"]);
    let (code, stdout, stderr) = output(&mut cmd);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    stdout
}

#[test]
fn dry_run_human() {
    settings().bind(|| insta::assert_snapshot!("dry_run_human", dry_run(false)));
}

#[test]
fn dry_run_json() {
    settings().bind(|| insta::assert_snapshot!("dry_run_json", dry_run(true)));
}
