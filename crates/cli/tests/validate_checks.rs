//! `validate` (and `doctor`'s manifest check) catch what a deploy would refuse, for every
//! environment and its target, at file:line:col, all at once, and change nothing.

// Test helpers outside #[test] fns unwrap and panic on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;

fn shipit() -> Command {
    let mut cmd = Command::cargo_bin("shipit").unwrap();
    // CI=true: the binary never reaches the OS keyring of whoever runs the tests.
    cmd.env_remove("GITHUB_ACTIONS").env_remove("SHIPIT_FILE").env("CI", "true").env("NO_COLOR", "1");
    cmd
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(dir: &Path, args: &[&str]) -> Out {
    let out = shipit().current_dir(dir).args(["-f", "shipit.toml"]).args(args).output().unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shipit.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn the_readme_sample_and_forgestack_validate() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let sample: String =
        readme.split("```toml\n").nth(1).and_then(|rest| rest.split("```").next()).unwrap().to_string();
    let (dir, _) = write(&sample);
    let r = run(dir.path(), &["validate"]);
    assert_eq!(r.code, 0, "the README's sample:\n{}", r.stderr);

    let forgestack = std::fs::read_to_string(repo().join("examples/forgestack/shipit.toml")).unwrap();
    let (dir, _) = write(&forgestack);
    let r = run(dir.path(), &["validate"]);
    assert_eq!(r.code, 0, "forgestack:\n{}", r.stderr);
}

const REFUSED: &str = r#"app = "shop"
[registry]
namespace = "owner"
[services.api]
port = 4000
[environments.staging]
target = "fly"
regions = ["iadd"]
strategy = "canary"
[environments.production]
target = "fly"
"#;

#[test]
fn everything_a_fly_deploy_would_refuse_is_reported_at_once_and_nothing_changes() {
    let (dir, path) = write(REFUSED);
    let before = std::fs::read(&path).unwrap();
    let r = run(dir.path(), &["validate"]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    for (at, what) in [
        ("shipit.toml:3:13:", "`registry.namespace` is \"owner\", the placeholder `shipit init` writes"),
        ("shipit.toml:8:12:", "\"iadd\" is not a Fly region"),
        ("shipit.toml:9:12:", "Fly deploys do not implement the canary strategy"),
        ("shipit.toml:10:15:", "environment \"production\" has no region for Fly"),
    ] {
        assert!(r.stderr.lines().any(|l| l.contains(at) && l.contains(what)), "{at} {what}:\n{}", r.stderr);
    }
    assert!(r.stderr.contains("did you mean \"iad\"?"), "{}", r.stderr);
    assert!(r.stderr.contains("shipit.toml: 4 problems"), "{}", r.stderr);
    assert_eq!(std::fs::read(&path).unwrap(), before, "validate changes nothing");

    // The same with --json: the problems as data, with line and column.
    let r = run(dir.path(), &["--json", "validate"]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stdout.contains("\"line\":8") && r.stdout.contains("\"column\":12"), "{}", r.stdout);
}

#[test]
fn manifest_problems_come_in_one_pass_and_a_bad_database_still_counts() {
    let (dir, _) = write(
        r#"app = "shop"
[registry]
namespace = "acme"
[services.api]
port = "4000"
env_from = { DATABASE_URL = "db.connection_string", CACHE_URL = "cahce.connection_string" }
[databases.db]
engine = "postgress"
[environments.staging]
target = "fly"
regions = "iad"
services.api.port = "x"
"#,
    );
    let r = run(dir.path(), &["validate"]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    for at in ["shipit.toml:5:8:", "shipit.toml:6:65:", "shipit.toml:8:10:", "shipit.toml:11:11:", "shipit.toml:12:21:"]
    {
        assert!(r.stderr.contains(at), "{at}:\n{}", r.stderr);
    }
    // `db` has a bad engine, but it is still a database: only `cahce` is unknown.
    assert_eq!(r.stderr.matches("neither a database nor a service").count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("refers to \"cahce\""), "{}", r.stderr);
}

#[test]
fn railway_and_render_regions_strategies_and_plans_are_checked() {
    let (dir, _) = write(
        r#"app = "shop"
[registry]
namespace = "acme"
[services.api]
port = 4000
[environments.staging]
target = "railway"
regions = ["us-west"]
[environments.production]
target = "render"
regions = ["oregn"]
strategy = "rolling"
[targets.render.services.api]
plan = "standrd"
"#,
    );
    let r = run(dir.path(), &["validate"]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    for (at, what) in [
        ("shipit.toml:8:12:", "\"us-west\" is not a Railway region"),
        ("shipit.toml:11:12:", "\"oregn\" is not a Render region"),
        ("shipit.toml:12:12:", "Render deploys do not implement the rolling strategy"),
        ("shipit.toml:14:8:", "\"standrd\" is not a Render plan"),
    ] {
        assert!(r.stderr.lines().any(|l| l.contains(at) && l.contains(what)), "{at} {what}:\n{}", r.stderr);
    }
    for m in ["did you mean \"us-west2\"?", "did you mean \"oregon\"?", "did you mean \"standard\"?"] {
        assert!(r.stderr.contains(m), "{m}:\n{}", r.stderr);
    }
}

#[test]
fn settings_a_target_ignores_are_warnings_with_their_place() {
    let (dir, _) = write(
        r#"app = "shop"
[registry]
namespace = "acme"
[services.api]
port = 4000
health = { path = "/healthz", interval = "3s", timeout = "2s" }
restart = { policy = "always" }
[environments.production]
target = "render"
"#,
    );
    let r = run(dir.path(), &["validate"]);
    assert_eq!(r.code, 0, "warnings are not errors:\n{}", r.stderr);
    assert!(
        r.stderr.lines().any(|l| l.starts_with("warning: shipit.toml:6:1:") && l.contains("ignored")),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.lines().any(|l| l.starts_with("warning: shipit.toml:7:1:") && l.contains("`restart`")),
        "{}",
        r.stderr
    );

    let r = run(dir.path(), &["--json", "validate"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim().lines().last().unwrap()).unwrap();
    let warnings = v["warnings"].as_array().unwrap();
    assert!(warnings.iter().any(|w| w["line"] == 7 && w["column"] == 1), "{v}");
}

#[test]
fn a_port_that_is_not_the_exposed_one_init_recorded_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("shop");
    std::fs::create_dir_all(root.join("apps/api")).unwrap();
    std::fs::write(
        root.join("apps/api/Dockerfile"),
        "FROM node:22\nUSER node\nEXPOSE 4000\nHEALTHCHECK CMD curl -f http://localhost:4000/healthz\n",
    )
    .unwrap();
    let out = shipit()
        .current_dir(&root)
        .args(["-f", "shipit.toml", "init", "--from-dockerfiles", "--namespace", "acme"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(root.join("shipit.toml")).unwrap();
    assert!(text.contains("port = 4000  # EXPOSE 4000 in apps/api/Dockerfile"), "{text}");
    assert_eq!(run(&root, &["validate"]).code, 0);

    let line = text.lines().position(|l| l.starts_with("port = ")).unwrap() + 1;
    std::fs::write(root.join("shipit.toml"), text.replace("port = 4000  #", "port = 8080  #")).unwrap();
    let r = run(&root, &["validate"]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    let at = format!("shipit.toml:{line}:8:");
    assert!(
        r.stderr.lines().any(|l| l.contains(&at) && l.contains("is 8080, but the image EXPOSEs 4000")),
        "{at}:\n{}",
        r.stderr
    );
}

#[test]
fn doctor_runs_the_same_checks() {
    let (dir, _) = write(REFUSED);
    let r = run(dir.path(), &["doctor"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("\"iadd\" is not a Fly region"), "{}", r.stderr);
    assert!(r.stdout.contains("FAIL  manifest"), "{}", r.stdout);
}
