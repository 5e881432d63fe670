//! `shipit init --from-dockerfiles` run on a corpus of Dockerfiles, and init's messages and errors.
//!
//! Each directory under tests/dockerfiles/ is an app: `apps/<service>/Dockerfile` and/or
//! `Dockerfile`, with next to them
//! - `expected.toml`: the manifest init must write, byte for byte;
//! - `expected-stderr.txt` (optional): lines init's output must contain;
//! - `args` (optional): more arguments for init, one a line (the default is `--namespace acme`).
//!
//! `SHIPIT_BLESS=1 cargo test -p shipit-cli --test init_dockerfiles` rewrites the expected.toml
//! files from what init writes; review the diff.

// Test helpers outside #[test] fns unwrap and panic on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;

/// Files of a case that are not part of the app.
const EXPECTATIONS: &[&str] = &["expected.toml", "expected-stderr.txt", "args"];

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dockerfiles")
}

fn shipit() -> Command {
    let mut cmd = Command::cargo_bin("shipit").unwrap();
    // CI=true: the binary never reaches the OS keyring of whoever runs the tests.
    cmd.env_remove("GITHUB_ACTIONS").env("CI", "true");
    cmd
}

fn copy_app(from: &Path, to: &Path, top: bool) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if top && EXPECTATIONS.iter().any(|e| name == *e) {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_app(&entry.path(), &target, false);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Runs init on a copy of the case; returns what went wrong, if anything.
fn run_case(case: &Path, bless: bool) -> Vec<String> {
    let name = case.file_name().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The copy keeps the case's name: init derives the app name from it.
    let root = dir.path().join(name);
    copy_app(case, &root, true);
    let manifest = root.join("shipit.toml");
    let args = match std::fs::read_to_string(case.join("args")) {
        Ok(text) => text.lines().map(str::to_string).filter(|l| !l.is_empty()).collect(),
        Err(_) => vec!["--namespace".to_string(), "acme".to_string()],
    };
    let out = shipit().arg("-f").arg(&manifest).args(["init", "--from-dockerfiles"]).args(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let mut problems = Vec::new();
    if !out.status.success() {
        return vec![format!("init failed ({}):\n{stderr}", out.status)];
    }
    let written = std::fs::read_to_string(&manifest).unwrap();
    let expected_path = case.join("expected.toml");
    if bless {
        std::fs::write(&expected_path, &written).unwrap();
    }
    match std::fs::read_to_string(&expected_path) {
        Ok(expected) if expected == written => {}
        Ok(expected) => {
            problems.push(format!("the manifest differs\n--- expected\n{expected}\n--- written\n{written}"))
        }
        Err(_) => problems.push(format!("no expected.toml; init wrote:\n{written}")),
    }
    if let Ok(lines) = std::fs::read_to_string(case.join("expected-stderr.txt")) {
        for line in lines.lines().filter(|l| !l.trim().is_empty()) {
            if !stderr.contains(line) {
                problems.push(format!("stderr lacks {line:?}; it was:\n{stderr}"));
            }
        }
    }
    // What init writes validates.
    let validate = shipit().arg("-f").arg(&manifest).arg("validate").output().unwrap();
    if !validate.status.success() {
        problems.push(format!("`shipit validate` fails on it:\n{}", String::from_utf8_lossy(&validate.stderr)));
    }
    problems
}

#[test]
fn init_reads_every_dockerfile_of_the_corpus_as_docker_does() {
    let bless = std::env::var_os("SHIPIT_BLESS").is_some();
    let mut cases: Vec<PathBuf> =
        std::fs::read_dir(corpus()).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    cases.sort();
    assert!(cases.len() >= 20, "the corpus has {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        for problem in run_case(case, bless) {
            failures.push(format!("== {}: {problem}", case.file_name().unwrap().to_string_lossy()));
        }
    }
    assert!(failures.is_empty(), "{} problems:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn without_a_dockerfile_init_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("shop");
    std::fs::create_dir_all(root.join("apps/docs")).unwrap();
    std::fs::write(root.join("apps/docs/README.md"), "no image here\n").unwrap();
    let manifest = root.join("shipit.toml");
    shipit()
        .arg("-f")
        .arg(&manifest)
        .args(["init", "--from-dockerfiles"])
        .assert()
        .code(4)
        .stderr(predicate::str::contains("no Dockerfile found: looked for"))
        .stderr(predicate::str::contains("skipped: apps/docs: no Dockerfile"));
    assert!(!manifest.exists());

    // The starter manifest does not claim to come from a Dockerfile.
    let out = shipit().arg("-f").arg(&manifest).arg("init").assert().success().get_output().clone();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("web: port 8080, health /healthz — a starter service (no Dockerfile was read)"),
        "{stderr}"
    );
    assert!(!stderr.contains("from Dockerfile"), "{stderr}");
    assert!(!stderr.contains("--from-dockerfiles"), "no Dockerfile is here to read: {stderr}");
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert!(text.contains("# a starter service, not read from a Dockerfile"), "{text}");
    assert!(!text.contains("USER"), "{text}");
    // No GitHub owner was found: the placeholder namespace is written, and validate says so.
    assert!(text.contains("namespace = \"owner\""), "{text}");
    shipit()
        .arg("-f")
        .arg(&manifest)
        .arg("validate")
        .assert()
        .code(4)
        .stderr(predicate::str::contains("`registry.namespace` is \"owner\", the placeholder `shipit init` writes"));
    shipit().arg("-f").arg(&manifest).args(["init", "--force", "--namespace", "acme"]).assert().success();
    shipit().arg("-f").arg(&manifest).arg("validate").assert().success();

    // With a Dockerfile present, the starter points at --from-dockerfiles.
    std::fs::write(root.join("Dockerfile"), "FROM nginx\nEXPOSE 80\n").unwrap();
    shipit().arg("-f").arg(&manifest).args(["init", "--force"]).assert().success().stderr(predicate::str::contains(
        "a Dockerfile is here: `shipit init --from-dockerfiles --force` drafts from it",
    ));
}

#[test]
fn bad_app_names_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("2024");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("Dockerfile"), "FROM nginx\nEXPOSE 80\n").unwrap();
    let manifest = root.join("shipit.toml");
    for (app, example) in [("123", "my-app"), ("My_Shop", "my-shop"), ("shop-", "shop"), ("", "my-app")] {
        let out = shipit()
            .arg("-f")
            .arg(&manifest)
            .args(["init", "--from-dockerfiles", "--app", app])
            .assert()
            .code(4)
            .get_output()
            .clone();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(
            stderr.contains(&format!(
                "error: --app {app:?} is not a valid app name: expected lowercase letters, digits and dashes, \
                 starting with a letter"
            )),
            "{stderr}"
        );
        assert!(stderr.contains(&format!("help: for example --app {example}")), "{stderr}");
        assert!(!stderr.contains("Some("), "{stderr}");
        assert!(!manifest.exists());
    }
    // The directory "2024" gives no name: the error names it.
    shipit()
        .arg("-f")
        .arg(&manifest)
        .args(["init", "--from-dockerfiles"])
        .assert()
        .code(4)
        .stderr(predicate::str::contains("cannot derive an app name from the directory name \"2024\""))
        .stderr(predicate::str::contains("help: pass --app NAME"));
    let out = shipit()
        .arg("-f")
        .arg(&manifest)
        .args(["init", "--from-dockerfiles", "--app", "y2024", "--json", "--namespace", "acme"])
        .assert()
        .success()
        .get_output()
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["ok"].as_bool(), v["app"].as_str()), (Some(true), Some("y2024")));
    assert_eq!(v["services"], serde_json::json!(["y2024"]));
    assert_eq!(
        v["warnings"],
        serde_json::json!(["y2024: may run as root: no USER in Dockerfile (unless nginx sets one)"])
    );
}
