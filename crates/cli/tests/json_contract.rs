//! The output contract of docs/cli.md ("The JSON contract"), checked over every command, in every
//! mode: with `--json` stdout is NDJSON only, every line has a known `event`, and the last line is
//! the one `summary` (schema 1) whose `exit_code` is the process's; GitHub annotations never reach
//! stdout; the human modes end with the same exit code.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::Value;
use shipit_testkit::fly::{Behaviour, FlyFake};
use support::{SECRET, World, output};

/// Every event name a line may carry (docs/cli.md lists them).
const EVENTS: &[&str] = &[
    // The engine's stream.
    "started",
    "image_resolved",
    "step",
    "instance_updated",
    "instance_healthy",
    "service_succeeded",
    "service_failed",
    "rollback_started",
    "rollback_succeeded",
    "rollback_failed",
    "warning",
    // Commands' items.
    "release",
    "status",
    "plan",
    "secrets_set",
    "check",
    "dry_run",
    "summary",
];

/// Fields each event must have, beyond `event`.
fn required(event: &str) -> &'static [&'static str] {
    match event {
        "summary" => &["schema", "command", "ok", "exit_code", "error", "ts"],
        "release" => &["service", "id", "status"],
        "status" | "plan" | "secrets_set" => &["service"],
        "check" => &["check", "status", "detail"],
        "dry_run" => &["env", "platform", "tag", "files", "services"],
        "started" | "step" | "warning" | "service_succeeded" | "service_failed" => &["ts"],
        _ => &[],
    }
}

/// Checks one `--json` run against the contract; returns its summary.
fn check_contract(what: &str, code: i32, stdout: &str) -> Value {
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "{what}: no output on stdout");
    let mut summaries = 0;
    for (i, l) in lines.iter().enumerate() {
        let v: Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{what}: line {} is not JSON ({e}): {l}", i + 1));
        let obj = v.as_object().unwrap_or_else(|| panic!("{what}: line {} is not an object: {l}", i + 1));
        let event = obj.get("event").and_then(Value::as_str).unwrap_or_else(|| panic!("{what}: no event: {l}"));
        assert!(EVENTS.contains(&event), "{what}: unknown event {event:?}: {l}");
        for f in required(event) {
            assert!(obj.contains_key(*f), "{what}: {event} without {f}: {l}");
        }
        if event == "summary" {
            summaries += 1;
            assert_eq!(i, lines.len() - 1, "{what}: the summary is not the last line");
        }
    }
    assert_eq!(summaries, 1, "{what}: {summaries} summary lines");
    let s: Value = serde_json::from_str(lines[lines.len() - 1]).unwrap();
    assert_eq!(s["schema"], 1, "{what}");
    assert_eq!(s["exit_code"].as_i64(), Some(i64::from(code)), "{what}: exit_code vs the process's: {s}");
    assert_eq!(s["ok"], code == 0, "{what}: ok: {s}");
    if code == 0 {
        assert!(s["error"].is_null(), "{what}: an error on success: {s}");
    } else {
        let e = &s["error"];
        assert!(e["kind"].as_str().is_some_and(|k| !k.is_empty()), "{what}: error.kind: {s}");
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: error.message: {s}");
        assert!(e["help"].is_null() || e["help"].is_string(), "{what}: error.help: {s}");
    }
    assert!(s["command"].is_null() || s["command"].is_string(), "{what}: command: {s}");
    s
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Json,
    JsonGithub,
    Human,
    HumanGithub,
    Quiet,
}

const MODES: [Mode; 5] = [Mode::Json, Mode::JsonGithub, Mode::Human, Mode::HumanGithub, Mode::Quiet];

/// One invocation: its arguments (after `-f manifest`), and the exit code it must have.
struct Case {
    args: Vec<String>,
    code: i32,
    /// Extra environment.
    env: Vec<(&'static str, String)>,
}

fn case(args: &[&str], code: i32) -> Case {
    Case { args: args.iter().map(|s| s.to_string()).collect(), code, env: vec![] }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_command_in_every_mode_keeps_the_contract() {
    let w = World::new().await;
    w.push("v1");
    let out = tempfile::tempdir().unwrap();
    let out_dir = out.path().display().to_string();
    let init_dir = tempfile::tempdir().unwrap();
    let init_file = init_dir.path().join("shipit.toml").display().to_string();
    let api = format!("{}/acme/forgestack-api:v1", w.registry.host());
    let mut without_secret = case(&["secrets", "sync", "--env", "staging"], 4);
    without_secret.env.push(("STRIPE_SECRET_KEY", String::new()));

    // In order: a deploy first, so that status, releases, promote and plan see something.
    let cases = vec![
        case(&["validate"], 0),
        case(&["render", "--to", "fly", "--env", "staging", "--out", &out_dir, "--force"], 0),
        case(&["render", "--to", "all", "--env", "staging", "--out", &out_dir, "--check"], 2),
        case(&["deploy", "--env", "staging", "--tag", "v1", "--dry-run"], 0),
        case(&["deploy", "--env", "staging", "--tag", "v1"], 0),
        case(&["deploy", "--env", "staging", "--tag", "missing"], 4),
        case(&["deploy", "--env", "prodution", "--tag", "v1"], 4),
        case(&["deploy", "--env", "staging", "--tag", "v1", "--service", "wbe"], 4),
        case(&["deploy", "--env", "staging"], 4),
        case(&["deploy", "--env", "staging", "--tag", "v1", "--strategy", "canary"], 4),
        case(&["plan", "--env", "staging", "--tag", "v1"], 0),
        case(&["plan", "--env", "production"], 2),
        case(&["status", "--env", "staging"], 0),
        case(&["status", "--env", "production"], 1),
        case(&["releases", "--env", "staging"], 0),
        case(&["rollback", "--env", "staging"], 4),
        case(&["promote", "staging", "staging"], 4),
        without_secret,
        case(&["secrets", "sync", "--env", "staging"], 0),
        case(&["doctor", "--env", "staging"], 0),
        case(&["tag", &api, "qa"], 0),
        case(&["tag", "not a ref", "qa"], 4),
        case(&["push", "/nonexistent/layout", "--image", &api.replace(":v1", ""), "--tag", "x"], 4),
        case(&["login", "fly", "--with-token"], 4),
        case(&["logout", "fly"], 4),
        case(&["completions", "bash"], 0),
        case(&["man", "deploy"], 0),
        case(&["man", "deplyo"], 4),
        case(&["deplyo"], 4),
        case(&["secrets"], 4),
        case(&["--version"], 0),
        case(&["init", "--app", "123", "-f", &init_file], 4),
        case(&["init", "-f", &init_file], 0),
    ];
    for c in &cases {
        for mode in MODES {
            let what = format!("{mode:?} shipit {}", c.args.join(" "));
            let mut cmd = w.shipit();
            // The declared secret is set, as a first deploy needs, unless the case clears it.
            cmd.env("FLY_API_TOKEN", FlyFake::TOKEN).env("STRIPE_SECRET_KEY", SECRET);
            for (k, v) in &c.env {
                cmd.env(k, v);
            }
            let gh = tempfile::NamedTempFile::new().unwrap();
            match mode {
                Mode::JsonGithub | Mode::HumanGithub => {
                    cmd.env("GITHUB_ACTIONS", "true").env("GITHUB_STEP_SUMMARY", gh.path());
                }
                _ => {}
            }
            match mode {
                Mode::Json | Mode::JsonGithub => {
                    cmd.arg("--json");
                }
                Mode::Quiet => {
                    cmd.arg("-q");
                }
                _ => {}
            }
            // `init` writes the file once; later modes must not find it there.
            if c.args.first().is_some_and(|a| a == "init") {
                let _ = std::fs::remove_file(&init_file);
            }
            cmd.args(&c.args);
            let (code, stdout, stderr) = output(&mut cmd);
            let shown = format!("{what}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}");
            assert_eq!(code, c.code, "exit code of {shown}");
            assert!(!stdout.contains("::error") && !stdout.contains("::warning"), "an annotation on stdout: {shown}");
            assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET), "the secret was printed: {shown}");
            assert!(!stderr.contains("panicked"), "a panic: {shown}");
            match mode {
                Mode::Json | Mode::JsonGithub => {
                    let s = check_contract(&shown, code, &stdout);
                    let command = c.args.iter().find(|a| !a.starts_with('-')).cloned().unwrap_or_default();
                    if command != "deplyo" && !command.is_empty() {
                        assert!(s["command"].as_str().is_some_and(|n| n.starts_with(&command)), "command of {shown}");
                    }
                }
                Mode::Human | Mode::HumanGithub | Mode::Quiet => {
                    for l in stdout.lines() {
                        assert!(!l.starts_with("{\"event\""), "NDJSON without --json: {shown}");
                    }
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_deploy_ends_with_one_summary_carrying_the_outcome_and_the_error() {
    let w = World::new().await;
    w.push("v1");
    let (code, ..) =
        output(w.shipit().env("STRIPE_SECRET_KEY", SECRET).args(["deploy", "--env", "staging", "--tag", "v1"]));
    assert_eq!(code, 0);
    let v2 = w.push("v2");
    w.fly.set_behaviour(support::digest_of(&v2, "api"), Behaviour::Crash);
    let (code, stdout, _) = output(w.shipit().args(["--json", "deploy", "--env", "staging", "--tag", "v2"]));
    let s = check_contract("failed deploy", code, &stdout);
    assert_ne!(code, 0);
    assert!(s["outcome"].is_string(), "{s}");
    assert!(s["services"].is_array(), "{s}");
    assert!(s["error"]["message"].as_str().unwrap().contains("api"), "{s}");
}

#[test]
fn a_usage_error_under_json_is_a_summary_with_kind_usage() {
    let mut cmd = assert_cmd::Command::cargo_bin("shipit").unwrap();
    let (code, stdout, stderr) = output(cmd.env("CI", "true").args(["--json", "deploy", "--bogus"]));
    assert_eq!(code, 4);
    let s = check_contract("usage", code, &stdout);
    assert_eq!(s["error"]["kind"], "usage", "{s}");
    assert_eq!(s["command"], "deploy", "{s}");
    assert!(stderr.contains("--bogus"), "{stderr}");
}
