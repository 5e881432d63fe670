//! The command line's conventions: shell completions, the man page, `--version` with the commit,
//! `SHIPIT_FILE` and `SHIPIT_ENV`, finding the manifest from a subdirectory, and "did you mean".

// Test helpers outside #[test] fns unwrap and panic on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/forgestack/shipit.toml")
}

/// The binary, with none of the variables these tests are about set by whoever runs them.
fn shipit() -> Command {
    let mut cmd = Command::cargo_bin("shipit").unwrap();
    // CI=true: the binary never reaches the OS keyring of whoever runs the tests.
    cmd.env_remove("GITHUB_ACTIONS").env_remove("SHIPIT_FILE").env_remove("SHIPIT_ENV").env("CI", "true");
    cmd
}

fn stdout(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A git repository (a `.git` directory is all it takes) with the example manifest at its root.
fn repo() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("shop");
    std::fs::create_dir_all(root.join(".git")).unwrap();
    std::fs::copy(example(), root.join("shipit.toml")).unwrap();
    (dir, root)
}

/// Every command a user can run, as `shipit --help` lists them.
const COMMANDS: &[&str] = &[
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
    "secrets",
    "login",
    "logout",
    "completions",
    "man",
];

#[test]
fn completions_are_printed_for_every_shell() {
    let shells = [
        ("bash", "complete -F _shipit"),
        ("zsh", "#compdef shipit"),
        ("fish", "complete -c shipit"),
        ("powershell", "Register-ArgumentCompleter -Native -CommandName 'shipit'"),
        ("elvish", "edit:completion:arg-completer[shipit]"),
    ];
    for (shell, marker) in shells {
        let script = stdout(shipit().args(["completions", shell]));
        assert!(script.contains(marker), "{shell}: {script:.2000}");
        for command in ["deploy", "promote", "rollback", "secrets", "completions"] {
            assert!(script.contains(command), "{shell} does not complete {command}");
        }
        // fish names long flags without their dashes (`-l dry-run`).
        assert!(script.contains("dry-run") && script.contains("wait-timeout"), "{shell} does not complete flags");
    }
    shipit().args(["completions", "tcsh"]).assert().code(4).stderr(predicate::str::contains("possible values"));
}

#[test]
fn the_man_page_is_roff_and_names_every_command() {
    let page = stdout(shipit().arg("man"));
    assert!(page.starts_with(".TH shipit 1 "), "{page:.500}");
    assert!(page.contains(&format!("\"shipit {}", env!("CARGO_PKG_VERSION"))), "{page:.500}");
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH OPTIONS", ".SH SUBCOMMANDS"] {
        assert!(page.contains(section), "no {section}: {page:.2000}");
    }
    for command in COMMANDS {
        assert!(page.contains(&format!("shipit\\-{command}(1)")), "the page does not name {command}");
    }
    assert!(!page.contains("shipit\\-help(1)"), "help is not a page");
    assert!(page.contains("SHIPIT_FILE"), "the variable is documented");

    let deploy = stdout(shipit().args(["man", "deploy"]));
    assert!(deploy.starts_with(".TH shipit-deploy 1 "), "{deploy:.500}");
    assert!(deploy.contains("\\-\\-dry\\-run") && deploy.contains("SHIPIT_ENV"), "{deploy:.3000}");
    let sync = stdout(shipit().args(["man", "secrets", "sync"]));
    assert!(sync.starts_with(".TH shipit-secrets-sync 1 "), "{sync:.500}");

    shipit().args(["man", "dpeloy"]).assert().code(4).stdout("").stderr(
        predicate::str::contains("shipit has no command \"dpeloy\"")
            .and(predicate::str::contains("did you mean \"deploy\"?")),
    );
}

#[test]
fn version_names_the_package_version_and_the_commit_when_known() {
    let version = env!("CARGO_PKG_VERSION");
    let line = stdout(shipit().arg("--version"));
    let rest = line.strip_prefix(&format!("shipit {version}")).unwrap_or_else(|| panic!("{line:?}"));
    // Built from a git checkout: ` (<12 hex digits>)`; from a crates.io package: nothing.
    match rest.trim_end().strip_prefix(" (").and_then(|r| r.strip_suffix(')')) {
        Some(commit) => assert!(commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit()), "{line:?}"),
        None => assert_eq!(rest, "\n", "{line:?}"),
    }
    // Each command says the same.
    assert_eq!(stdout(shipit().args(["deploy", "--version"])), line.replacen("shipit", "shipit-deploy", 1));
}

#[test]
fn the_manifest_is_found_from_a_subdirectory_of_the_repository() {
    let (_dir, root) = repo();
    let sub = root.join("apps/api/src");
    std::fs::create_dir_all(&sub).unwrap();
    shipit()
        .current_dir(&sub)
        .arg("validate")
        .assert()
        .success()
        .stderr(predicate::str::starts_with("../../../shipit.toml: ok — app forgestack"));
    // Files are rendered beside the manifest it found.
    shipit().current_dir(&sub).args(["render", "--to", "fly", "--env", "staging"]).assert().success();
    assert!(root.join("fly.api.toml").is_file());
    // One in the current directory wins over the root's.
    std::fs::write(sub.join("shipit.toml"), "app = \"Bad\"\n").unwrap();
    shipit().current_dir(&sub).arg("validate").assert().code(4).stderr(predicate::str::contains("shipit.toml:1:7"));
}

#[test]
fn the_search_stops_at_the_repository_root() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(example(), dir.path().join("shipit.toml")).unwrap();
    let root = dir.path().join("repo");
    let sub = root.join("deploy");
    std::fs::create_dir_all(root.join(".git")).unwrap();
    std::fs::create_dir_all(&sub).unwrap();
    let expected = format!(
        "error: no shipit.toml in {} or any directory above it up to the root of its git repository, {}",
        sub.display(),
        root.display()
    );
    shipit()
        .current_dir(&sub)
        .arg("validate")
        .assert()
        .code(4)
        .stderr(predicate::str::contains(expected).and(predicate::str::contains("-f PATH or SHIPIT_FILE")));
}

#[test]
fn outside_a_repository_only_the_current_directory_is_searched() {
    let dir = tempfile::tempdir().unwrap();
    if dir.path().ancestors().any(|d| d.join(".git").exists()) {
        return; // the temp directory is inside a git repository on this machine
    }
    std::fs::copy(example(), dir.path().join("shipit.toml")).unwrap();
    let sub = dir.path().join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    shipit().current_dir(dir.path()).arg("validate").assert().success();
    shipit().current_dir(&sub).arg("validate").assert().code(4).stderr(predicate::str::contains(format!(
        "no shipit.toml in {} (not in a git repository, so no directory above it was searched)",
        sub.display()
    )));
}

#[test]
fn init_writes_here_even_below_a_manifest() {
    let (_dir, root) = repo();
    let sub = root.join("other");
    std::fs::create_dir_all(&sub).unwrap();
    shipit().current_dir(&sub).args(["init", "--namespace", "acme"]).assert().success();
    assert!(sub.join("shipit.toml").is_file());
}

#[test]
fn shipit_file_names_the_manifest_and_f_wins_over_it() {
    let dir = tempfile::tempdir().unwrap();
    shipit()
        .current_dir(dir.path())
        .env("SHIPIT_FILE", example())
        .arg("validate")
        .assert()
        .success()
        .stderr(predicate::str::contains("ok — app forgestack"));
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "app = \"Bad\"\n").unwrap();
    shipit()
        .current_dir(dir.path())
        .env("SHIPIT_FILE", example())
        .arg("validate")
        .arg("-f")
        .arg(&bad)
        .assert()
        .code(4)
        .stderr(predicate::str::contains("bad.toml:1:7"));
    // A variable that names no file is reported as the path it names.
    shipit()
        .current_dir(dir.path())
        .env("SHIPIT_FILE", dir.path().join("missing.toml"))
        .arg("validate")
        .assert()
        .code(4)
        .stderr(predicate::str::contains("cannot read").and(predicate::str::contains("missing.toml")));
    // An empty one counts as unset: the search runs.
    shipit()
        .current_dir(dir.path())
        .env("SHIPIT_FILE", "")
        .arg("validate")
        .assert()
        .code(4)
        .stderr(predicate::str::contains("no shipit.toml in"));
}

#[test]
fn shipit_env_is_the_default_environment() {
    let (_dir, root) = repo();
    let dry_run = ["deploy", "--dry-run", "--tag", "3f2c1ab"];
    shipit()
        .current_dir(&root)
        .env("SHIPIT_ENV", "staging")
        .args(dry_run)
        .assert()
        .success()
        .stdout(predicate::str::contains("dry run: deploy 3f2c1ab to staging"));
    shipit()
        .current_dir(&root)
        .env("SHIPIT_ENV", "staging")
        .args(dry_run)
        .args(["--env", "production"])
        .assert()
        .success()
        .stdout(predicate::str::contains("dry run: deploy 3f2c1ab to production"));
    // render and doctor take it too.
    shipit().current_dir(&root).env("SHIPIT_ENV", "production").args(["render", "--to", "fly"]).assert().success();
    assert!(std::fs::read_to_string(root.join("fly.api.toml")).unwrap().contains("forgestack-api-production"));
    // Without it, or empty, --env is required.
    for env in [None, Some("")] {
        let mut cmd = shipit();
        if let Some(value) = env {
            cmd.env("SHIPIT_ENV", value);
        }
        cmd.current_dir(&root).args(dry_run).assert().code(4).stderr(predicate::str::contains("--env <ENV>"));
    }
}

#[test]
fn an_unknown_environment_gets_a_suggestion() {
    let (_dir, root) = repo();
    shipit()
        .current_dir(&root)
        .args(["deploy", "--dry-run", "--tag", "3f2c1ab", "--env", "prodution"])
        .assert()
        .code(4)
        .stderr(predicate::str::contains(
            "error: --env prodution: no such environment in shipit.toml (it has: staging, production) — did you mean \"production\"?",
        ));
    // From the variable, the message says so.
    shipit().current_dir(&root).env("SHIPIT_ENV", "stagign").args(["render", "--to", "fly"]).assert().code(4).stderr(
        predicate::str::contains("error: SHIPIT_ENV=stagign: no such environment")
            .and(predicate::str::contains("did you mean \"staging\"?")),
    );
    shipit()
        .current_dir(&root)
        .args(["promote", "staging", "prodution"])
        .assert()
        .code(4)
        .stderr(predicate::str::contains("did you mean \"production\"?"));
    // Nothing close: no suggestion.
    shipit().current_dir(&root).args(["doctor", "--env", "qa"]).assert().code(4).stderr(
        predicate::str::contains("--env qa: no such environment").and(predicate::str::contains("did you").not()),
    );
}

#[test]
fn an_unknown_service_gets_a_suggestion() {
    let (_dir, root) = repo();
    shipit()
        .current_dir(&root)
        .args(["deploy", "--dry-run", "--tag", "3f2c1ab", "--env", "staging", "--service", "api", "--service", "wbe"])
        .assert()
        .code(4)
        .stdout("")
        .stderr(predicate::str::contains(
            "error: --service wbe: no such service (services: api, worker, web) — did you mean \"web\"?",
        ));
    // Every command that takes --service, before it sends anything (no token is set).
    for command in [
        &["plan", "--env", "staging"][..],
        &["rollback", "--env", "staging"],
        &["releases", "--env", "staging"],
        &["secrets", "sync", "--env", "staging"],
        &["promote", "staging", "production"],
    ] {
        shipit()
            .current_dir(&root)
            .env_remove("FLY_API_TOKEN")
            .env_remove("FLY_ACCESS_TOKEN")
            .args(command)
            .args(["--service", "workr"])
            .assert()
            .code(4)
            .stderr(
                predicate::str::contains("--service workr: no such service")
                    .and(predicate::str::contains("did you mean \"worker\"?")),
            );
    }
    shipit()
        .current_dir(&root)
        .args(["deploy", "--dry-run", "--tag", "3f2c1ab", "--env", "staging", "--service", "zzz"])
        .assert()
        .code(4)
        .stderr(
            predicate::str::contains("--service zzz: no such service").and(predicate::str::contains("did you").not()),
        );
}
