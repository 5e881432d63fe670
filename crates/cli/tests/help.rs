//! Help and flags as people read them: global options apart, examples, no manifest flag where no
//! manifest is read, only the strategies some target implements, "did you mean" for values and
//! commands.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use assert_cmd::Command;
use support::output;

fn shipit() -> Command {
    let mut cmd = Command::cargo_bin("shipit").unwrap();
    cmd.env_clear().env("CI", "true");
    cmd
}

#[test]
fn help_puts_global_options_apart_and_ends_with_examples() {
    let (code, stdout, _) = output(shipit().args(["deploy", "--help"]));
    assert_eq!(code, 0);
    let (own, global) = stdout.split_once("Global options:").expect("a Global options heading");
    assert!(own.contains("--tag") && !own.contains("--json"), "{stdout}");
    assert!(global.contains("--json") && global.contains("--file") && global.contains("--color"), "{stdout}");
    assert!(stdout.contains("Examples:\n  shipit deploy --env staging"), "{stdout}");
    for cmd in ["validate", "render", "plan", "promote", "rollback", "status", "doctor", "push", "tag", "login"] {
        let (_, stdout, _) = output(shipit().args([cmd, "--help"]));
        assert!(stdout.contains("Examples:"), "{cmd}: {stdout}");
    }
}

#[test]
fn push_tag_and_login_do_not_offer_a_manifest() {
    for cmd in [&["push"][..], &["tag"], &["login"], &["logout"], &["completions"], &["man"]] {
        let (_, stdout, _) = output(shipit().args(cmd).arg("--help"));
        assert!(!stdout.contains("--file"), "{cmd:?}: {stdout}");
        assert!(stdout.contains("--json"), "{cmd:?}: {stdout}");
    }
    let (_, stdout, _) = output(shipit().args(["validate", "--help"]));
    assert!(stdout.contains("--file"), "{stdout}");
}

#[test]
fn strategy_offers_what_a_target_can_do() {
    let (_, stdout, _) = output(shipit().args(["deploy", "--help"]));
    let line = stdout.lines().skip_while(|l| !l.contains("--strategy")).take(12).collect::<Vec<_>>().join("\n");
    assert!(line.contains("rolling") && line.contains("immediate"), "{line}");
    assert!(!line.contains("canary") && !line.contains("bluegreen"), "{line}");
    let (code, _, stderr) = output(shipit().args(["deploy", "--env", "x", "--tag", "y", "--strategy", "canary"]));
    assert_eq!(code, 4);
    assert!(stderr.contains("[possible values: rolling, immediate]"), "{stderr}");
}

#[test]
fn strategy_on_a_target_that_rolls_out_its_own_way_is_refused_before_anything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shipit.toml");
    std::fs::write(
        &path,
        "app = \"shop\"\n[registry]\nnamespace = \"acme\"\n[services.api]\nport = 8080\n[environments.staging]\ntarget = \"railway\"\n[targets.railway]\nproject = \"shop\"\n",
    )
    .unwrap();
    let (code, _, stderr) = output(
        shipit()
            .env("RAILWAY_API_TOKEN", "t")
            .env("SHIPIT_RAILWAY_API_URL", "http://127.0.0.1:9/graphql")
            .arg("-f")
            .arg(&path)
            .args(["deploy", "--env", "staging", "--tag", "v1", "--strategy", "rolling"]),
    );
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("--strategy rolling: railway rolls out its own way"), "{stderr}");
}

#[test]
fn did_you_mean_for_to_and_commands() {
    let (code, _, stderr) = output(shipit().args(["deploy", "--env", "x", "--tag", "y", "--to", "flyy"]));
    assert_eq!(code, 4);
    assert!(stderr.contains("a similar value exists: 'fly'"), "{stderr}");
    let (code, _, stderr) = output(shipit().args(["deplyo"]));
    assert_eq!(code, 4);
    assert!(stderr.contains("a similar subcommand exists: 'deploy'"), "{stderr}");
}

#[test]
fn every_flag_of_every_command_is_in_docs_cli_md() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/cli.md")).unwrap();
    let commands = [
        "validate",
        "render",
        "init",
        "plan",
        "deploy",
        "promote",
        "rollback",
        "push",
        "tag",
        "doctor",
        "releases",
        "status",
        "secrets sync",
        "login",
        "logout",
        "completions",
        "man",
    ];
    let mut missing = Vec::new();
    for c in commands {
        let (_, stdout, _) = output(shipit().args(c.split(' ')).arg("--help"));
        for line in stdout.lines() {
            let t = line.trim_start();
            let t = t.strip_prefix("-").and_then(|r| r.get(1..)).map(|r| r.trim_start_matches(", ")).unwrap_or(t);
            if let Some(flag) = t.strip_prefix("--").map(|r| r.split([' ', '.', '=']).next().unwrap_or_default())
                && !["help", "version"].contains(&flag)
                && !docs.contains(&format!("--{flag}"))
            {
                missing.push(format!("{c} --{flag}"));
            }
        }
    }
    assert!(missing.is_empty(), "flags docs/cli.md does not describe: {missing:?}");
}
