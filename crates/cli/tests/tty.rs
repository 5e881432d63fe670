//! The binary in a terminal: run under a pseudo-terminal (rexpect), where stdout and stderr are
//! TTYs, it draws progress and colours status words; `NO_COLOR`, `TERM=dumb` and `--color never`
//! turn the colour off, and the words stay.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;

use shipit_testkit::fly::FlyFake;
use support::{SECRET, World};

const GREEN: &str = "\u{1b}[1m\u{1b}[32m";
const RED: &str = "\u{1b}[1m\u{1b}[31m";

/// Runs the binary under a pseudo-terminal; returns everything it wrote there and its exit.
fn in_a_terminal(w: &World, env: &[(&str, &str)], args: &[&str]) -> (String, String) {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("shipit"));
    cmd.env_clear()
        .env("CI", "true")
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TERM", "xterm-256color")
        .env("FLY_API_TOKEN", FlyFake::TOKEN)
        .env("STRIPE_SECRET_KEY", SECRET)
        .env("SHIPIT_FLY_API_URL", w.fly.uri())
        .env("SHIPIT_FLY_POLL_INTERVAL", "10ms")
        .env("SHIPIT_INSECURE_REGISTRIES", w.registry.host());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.arg("-f").arg(w.manifest()).args(args);
    let mut p = rexpect::session::spawn_command(cmd, Some(60_000)).unwrap();
    let text = p.exp_eof().unwrap();
    let status = format!("{:?}", p.process.wait().unwrap());
    (text, status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_in_a_terminal_shows_progress_and_colours_its_verdict() {
    let w = World::new().await;
    w.push("v1");
    let (text, status) = in_a_terminal(&w, &[], &["deploy", "--env", "staging", "--tag", "v1"]);
    assert!(status.contains("Exited") && status.ends_with(", 0)"), "{status}\n{text}");
    assert!(text.contains(&format!("{GREEN}live and healthy")), "the verdict is green: {text:?}");
    // indicatif's spinners redraw their line: carriage returns or erase-line escapes.
    assert!(text.contains("\u{1b}[2K") || text.contains('\r'), "progress is drawn: {text:?}");
    assert!(text.contains("api") && text.contains("worker") && text.contains("web"), "{text}");
    assert!(!text.contains(SECRET) && !text.contains(FlyFake::TOKEN));

    // A failure: red, in the summary and in the progress lines.
    let v2 = w.push("v2");
    w.fly.set_behaviour(support::digest_of(&v2, "api"), shipit_testkit::fly::Behaviour::Crash);
    let (text, status) = in_a_terminal(&w, &[], &["deploy", "--env", "staging", "--tag", "v2", "--service", "api"]);
    assert!(status.ends_with(", 1)"), "{status}\n{text}");
    assert!(text.contains(&format!("{RED}FAILED")), "{text:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_color_term_dumb_and_color_never_keep_the_words_and_drop_the_colour() {
    let w = World::new().await;
    w.push("v1");
    let (text, status) = in_a_terminal(&w, &[("NO_COLOR", "1")], &["deploy", "--env", "staging", "--tag", "v1"]);
    assert!(status.ends_with(", 0)"), "{status}\n{text}");
    assert!(text.contains("live and healthy") && !text.contains("\u{1b}[32m"), "{text:?}");
    type Case<'a> = (String, &'a [(&'a str, &'a str)], Vec<&'a str>);
    let mut cases: Vec<Case> = vec![
        ("NO_COLOR".into(), &[("NO_COLOR", "1")], vec!["deploy", "--env", "staging", "--tag", "v1"]),
        ("TERM=dumb".into(), &[("TERM", "dumb")], vec!["deploy", "--env", "staging", "--tag", "v1"]),
        ("--color never".into(), &[], vec!["--color", "never", "deploy", "--env", "staging", "--tag", "v1"]),
    ];
    cases.push(("NO_COLOR doctor".into(), &[("NO_COLOR", "1")], vec!["doctor", "--env", "staging"]));
    for (what, env, args) in cases {
        let (text, _) = in_a_terminal(&w, env, &args);
        assert!(!text.contains("\u{1b}[32m") && !text.contains("\u{1b}[31m"), "{what}: colour: {text:?}");
        assert!(
            text.contains("already runs") || text.contains("live and healthy") || text.contains("ok"),
            "{what}: {text}"
        );
    }
    // `--color always` colours even what is not a terminal.
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("shipit"))
        .env("CI", "true")
        .args(["--color", "always", "validate", "-f"])
        .arg(w.dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains(RED), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validate_problem_in_a_terminal_is_one_coloured_report() {
    let w = World::new().await;
    std::fs::write(w.manifest(), "app = \"shop\"\n[services.api]\nprot = 80\n").unwrap();
    let (text, status) = in_a_terminal(&w, &[], &["validate"]);
    assert!(status.ends_with(", 4)"), "{status}\n{text}");
    assert_eq!(text.matches("unknown key `prot`").count(), 1, "one line per problem, not a line and a report: {text}");
    assert!(text.contains("\u{1b}["), "miette's report is coloured: {text:?}");
    let (text, _) = in_a_terminal(&w, &[("NO_COLOR", "1")], &["validate"]);
    assert!(!text.contains("\u{1b}[3"), "{text:?}");
}
