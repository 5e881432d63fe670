//! The built `shipit` binary, run as a user would: validate, render, init.

// Test helpers outside #[test] fns unwrap and panic on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/forgestack")
}

fn shipit() -> Command {
    let mut cmd = Command::cargo_bin("shipit").unwrap();
    // CI=true: the binary never reaches the OS keyring of whoever runs the tests.
    cmd.env_remove("GITHUB_ACTIONS").env("CI", "true");
    cmd
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn validate_accepts_the_reference_app() {
    shipit()
        .args(["validate", "-f"])
        .arg(example().join("shipit.toml"))
        .assert()
        .success()
        .stderr(predicate::str::contains("ok — app forgestack: services api (:4000), worker (worker), web (:3000)"));
}

#[test]
fn validate_reports_every_problem_with_its_place_and_exit_4() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shipit.toml");
    std::fs::write(
        &path,
        "app = \"shop\"\n[registry]\nnamespace = \"acme\"\n[services.api]\nport = 70000\nprot = 1\n[environments.staging]\n",
    )
    .unwrap();
    let out = shipit().arg("-f").arg(&path).arg("validate").assert().code(4).get_output().clone();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("shipit.toml:5:8: `services.api.port` must be a port number from 1 to 65535, found 70000"),
        "{stderr}"
    );
    assert!(stderr.contains("shipit.toml:6:1: unknown key `prot`"), "{stderr}");
    assert!(stderr.contains("did you mean `port`?"), "{stderr}");
    assert!(stderr.contains("2 problems"), "{stderr}");
    assert!(out.stdout.is_empty(), "human mode prints nothing on stdout");
}

#[test]
fn validate_json_puts_only_json_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shipit.toml");
    std::fs::write(&path, "app = \"shop\"\n[services.api]\nport = \"x\"\n").unwrap();
    let out = shipit().args(["validate", "--json", "-f"]).arg(&path).assert().code(4).get_output().clone();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    let problems = v["problems"].as_array().unwrap();
    let port = problems.iter().find(|p| p["message"].as_str().unwrap().contains("services.api.port")).unwrap();
    assert_eq!((port["line"].as_u64(), port["column"].as_u64()), (Some(3), Some(8)));
    assert!(problems.iter().any(|p| p["message"].as_str().unwrap().contains("declare at least one environment")));
}

#[test]
fn validate_annotates_in_github_actions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shipit.toml");
    std::fs::write(&path, "app = \"Shop\"\n").unwrap();
    shipit()
        .env("GITHUB_ACTIONS", "true")
        .args(["validate", "-f"])
        .arg(&path)
        .assert()
        .code(4)
        .stdout("")
        .stderr(predicate::str::contains(",line=1,col=7::`app` must be lowercase"));
}

#[test]
fn a_missing_manifest_is_bad_input() {
    shipit().args(["validate", "-f", "/nonexistent/shipit.toml"]).assert().code(4).stderr(
        predicate::str::contains("cannot read /nonexistent/shipit.toml").and(predicate::str::contains("shipit init")),
    );
}

#[test]
fn usage_errors_exit_4() {
    shipit().args(["render", "--to", "heroku"]).assert().code(4).stderr(predicate::str::contains("heroku"));
    shipit().arg("frobnicate").assert().code(4);
}

#[test]
fn render_all_writes_every_platform_then_check_detects_drift() {
    let out = tempfile::tempdir().unwrap();
    shipit()
        .arg("-f")
        .arg(example().join("shipit.toml"))
        .args(["render", "--to", "all", "--env", "production", "--out"])
        .arg(out.path())
        .assert()
        .success();
    for f in [
        "fly.api.toml",
        "fly.worker.toml",
        "fly.web.toml",
        "railway.api.json",
        "railway.worker.json",
        "railway.web.json",
        "render.yaml",
        "docker-compose.prod.yml",
        ".github/workflows/shipit.yml",
    ] {
        assert!(out.path().join(f).is_file(), "{f} was not written");
    }
    let fly_api = std::fs::read_to_string(out.path().join("fly.api.toml")).unwrap();
    assert!(fly_api.contains("app = \"forgestack-api-production\""), "{fly_api}");
    assert!(fly_api.contains("min_machines_running = 2"), "production overrides apply: {fly_api}");

    let check = |code: i32| {
        shipit()
            .arg("-f")
            .arg(example().join("shipit.toml"))
            .args(["render", "--to", "all", "--env", "production", "--check", "--out"])
            .arg(out.path())
            .assert()
            .code(code)
    };
    check(0);
    // rendering again over its own files is fine
    shipit()
        .arg("-f")
        .arg(example().join("shipit.toml"))
        .args(["render", "--to", "all", "--env", "production", "--out"])
        .arg(out.path())
        .assert()
        .success();
    std::fs::write(out.path().join("render.yaml"), "services: []\n").unwrap();
    std::fs::remove_file(out.path().join("fly.web.toml")).unwrap();
    let assert = check(2);
    let stderr = String::from_utf8(assert.get_output().stderr.clone()).unwrap();
    assert!(stderr.contains("render.yaml differs"), "{stderr}");
    assert!(stderr.contains("fly.web.toml differs"), "{stderr}");
    assert!(stderr.contains("2 of 9 files differ"), "{stderr}");
    // --check wrote nothing
    assert!(!out.path().join("fly.web.toml").exists());

    // a file shipit wrote for a service that is gone is drift too (--force: render.yaml was
    // replaced by hand above)
    shipit()
        .arg("-f")
        .arg(example().join("shipit.toml"))
        .args(["render", "--to", "all", "--env", "production", "--force", "--out"])
        .arg(out.path())
        .assert()
        .success();
    std::fs::write(out.path().join("fly.billing.toml"), "# generated by shipit\napp = \"x\"\n").unwrap();
    std::fs::write(out.path().join("fly.mine.toml"), "app = \"hand-written\"\n").unwrap();
    let assert = check(2);
    let stderr = String::from_utf8(assert.get_output().stderr.clone()).unwrap();
    assert!(
        stderr.contains("fly.billing.toml was written by shipit for a service the manifest no longer has"),
        "{stderr}"
    );
    assert!(!stderr.contains("fly.mine.toml"), "files shipit did not write are not its business: {stderr}");
}

#[test]
fn render_never_overwrites_a_file_it_did_not_write() {
    let out = tempfile::tempdir().unwrap();
    std::fs::write(out.path().join("render.yaml"), "# mine\nservices: []\n").unwrap();
    shipit()
        .arg("-f")
        .arg(example().join("shipit.toml"))
        .args(["render", "--to", "all", "--env", "staging", "--out"])
        .arg(out.path())
        .assert()
        .code(1)
        .stderr(predicate::str::contains("render.yaml exists and was not generated by shipit"));
    assert_eq!(std::fs::read_to_string(out.path().join("render.yaml")).unwrap(), "# mine\nservices: []\n");
    assert!(!out.path().join("fly.api.toml").exists(), "nothing is written when one file is refused");
    shipit()
        .arg("-f")
        .arg(example().join("shipit.toml"))
        .args(["render", "--to", "render", "--env", "staging", "--force", "--out"])
        .arg(out.path())
        .assert()
        .success();
    assert!(std::fs::read_to_string(out.path().join("render.yaml")).unwrap().contains("forgestack-api-staging"));
}

#[test]
fn render_needs_a_known_env() {
    shipit()
        .arg("-f")
        .arg(example().join("shipit.toml"))
        .args(["render", "--to", "fly", "--env", "prod"])
        .assert()
        .code(4)
        .stderr(
            predicate::str::contains("--env prod: no such environment")
                .and(predicate::str::contains("staging, production")),
        );
    shipit()
        .arg("-f")
        .arg(example().join("shipit.toml"))
        .args(["render", "--to", "fly"])
        .assert()
        .code(4)
        .stderr(predicate::str::contains("--env is required"));
}

#[test]
fn init_from_dockerfiles_drafts_a_manifest_that_validates() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("forgestack");
    copy_dir(&example().join("apps"), &root.join("apps"));
    let manifest = root.join("shipit.toml");
    shipit()
        .arg("-f")
        .arg(&manifest)
        .args(["init", "--from-dockerfiles", "--namespace", "acme"])
        .assert()
        .success()
        .stderr(predicate::str::contains("api: port 4000, health /api/health"));
    let text = std::fs::read_to_string(&manifest).unwrap();
    let app = shipit_core::parse(&text, "shipit.toml").unwrap();
    assert_eq!(app.name, "forgestack");
    let api = &app.services["api"];
    assert_eq!(api.port, Some(4000));
    let health = api.health.as_ref().unwrap();
    assert_eq!(
        (health.path.as_str(), health.interval.to_string().as_str(), health.grace.to_string().as_str()),
        ("/api/health", "30s", "10s")
    );
    assert_eq!(api.image.to_string(), "ghcr.io/acme/forgestack-api");
    let worker = &app.services["worker"];
    assert_eq!(worker.port, None);
    assert_eq!(worker.command.as_deref(), Some(&["node".to_string(), "dist/index.js".to_string()][..]));
    assert_eq!(app.services["web"].health.as_ref().unwrap().path, "/api/health");
    assert!(text.contains("# runs as user \"node\""));
    shipit().arg("-f").arg(&manifest).arg("validate").assert().success();

    // never overwritten without --force
    std::fs::write(&manifest, "# mine\n").unwrap();
    shipit()
        .arg("-f")
        .arg(&manifest)
        .args(["init", "--from-dockerfiles"])
        .assert()
        .code(4)
        .stderr(predicate::str::contains("already exists"));
    assert_eq!(std::fs::read_to_string(&manifest).unwrap(), "# mine\n");
    shipit()
        .arg("-f")
        .arg(&manifest)
        .args(["init", "--from-dockerfiles", "--force", "--namespace", "acme"])
        .assert()
        .success();
    assert!(std::fs::read_to_string(&manifest).unwrap().contains("[services.api]"));
}

#[test]
fn init_without_dockerfiles() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("my_shop");
    std::fs::create_dir(&root).unwrap();
    let manifest = root.join("shipit.toml");
    shipit()
        .arg("-f")
        .arg(&manifest)
        .args(["init", "--from-dockerfiles"])
        .assert()
        .code(4)
        .stderr(predicate::str::contains("no Dockerfile found"));
    assert!(!manifest.exists());
    shipit().arg("-f").arg(&manifest).args(["init", "--to", "render"]).assert().success();
    let app = shipit_core::load(&manifest).unwrap();
    assert_eq!(app.name, "my-shop");
    assert_eq!(app.environments["staging"].target, Some(shipit_core::PlatformKind::Render));
}

#[test]
fn init_reads_a_root_dockerfile() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("solo");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("Dockerfile"), "FROM python:3.12\nEXPOSE 8000\nCMD gunicorn app:app\n").unwrap();
    let manifest = root.join("shipit.toml");
    shipit().arg("-f").arg(&manifest).args(["init", "--from-dockerfiles", "--app", "solo"]).assert().success();
    let app = shipit_core::load(&manifest).unwrap();
    let s = &app.services["solo"];
    assert_eq!(s.port, Some(8000));
    assert_eq!(s.build.context, ".");
    assert_eq!(s.command.as_ref().unwrap()[2], "gunicorn app:app");
}

#[test]
fn login_and_logout_refuse_under_ci_and_doctor_says_the_keyring_is_not_used() {
    let bare = || {
        let mut cmd = Command::cargo_bin("shipit").unwrap();
        cmd.env_clear().env("CI", "true");
        cmd
    };
    for args in [&["login", "fly", "--with-token"][..], &["logout", "railway"], &["login", "ghcr"]] {
        let out = bare().args(args).write_stdin("fm2_never-read\n").assert().code(4).get_output().clone();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains("under CI=true shipit never uses the OS keyring"), "{args:?}: {stderr}");
        assert!(!stderr.contains("fm2_never-read"), "{stderr}");
    }
    let out = bare().args(["login", "heroku"]).assert().code(4).get_output().clone();
    assert!(String::from_utf8(out.stderr).unwrap().contains("possible values: fly, railway, render, ghcr"));

    // doctor: where each token comes from, by name; the keyring unused. Nothing listens on the
    // API URL, so the reachability check fails fast (exit 1).
    let out = bare()
        .env("FLY_ACCESS_TOKEN", "fm2_doctor-canary")
        .env("SHIPIT_FLY_API_URL", "http://127.0.0.1:9/v1")
        .arg("-f")
        .arg(example().join("shipit.toml"))
        .args(["doctor", "--env", "staging"])
        .assert()
        .code(1)
        .get_output()
        .clone();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("ok    keyring    not used (CI=true): tokens come from the environment only"), "{stdout}");
    assert!(stdout.contains("ok    token      FLY_ACCESS_TOKEN is set (fly)"), "{stdout}");
    assert!(!stdout.contains("fm2_doctor-canary"), "{stdout}");
}
