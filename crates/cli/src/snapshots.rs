//! Snapshots of what people read after a deploy: the human summary and the GitHub step summary
//! of every outcome, made by the real engine on the in-memory platform, so a change to any of
//! them is a reviewed change (`cargo insta review`). Release ids carry the time and are redacted.
//! The NDJSON stream and `--dry-run` are snapshotted from the binary in
//! `crates/cli/tests/snapshots.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use shipit_core::engine::{self, DeployOptions, OnFailure, Outcome, Summary};
use shipit_core::{App, Events, ImageRef, Target};
use shipit_testkit::conformance::digest;
use shipit_testkit::memory::{Fault, MemoryPlatform, Scope};

use crate::output::{human_summary, step_summary};

const MANIFEST: &str = r#"app = "shop"

[registry]
host = "registry.example.com"
namespace = "acme"

[services.api]
port = 8080
health = { path = "/healthz" }

[services.worker]
command = ["node", "worker.js"]

[environments.staging]
target = "railway"

[targets.railway]
project = "shop"
"#;

fn app() -> App {
    shipit_core::parse(MANIFEST, "shipit.toml").unwrap()
}

fn opts() -> DeployOptions {
    let mut o = DeployOptions::default();
    o.wait_timeout = Duration::from_millis(300);
    o.git_sha = Some("abc1234".to_string());
    o
}

async fn deploy(mem: &MemoryPlatform, app: &App, label: &str, o: &DeployOptions) -> Summary {
    let t = Target { app, env: app.environments.get("staging").unwrap() };
    let mut images = BTreeMap::<String, ImageRef>::new();
    for s in ["api", "worker"] {
        let svc = t.env.services.get(s).unwrap();
        images.insert(s.to_string(), svc.image.with_tag(label).with_digest(&digest(&format!("{s}-{label}"))));
    }
    engine::deploy_digests(mem, None, t, "deploy", &images, o, &Events::none()).await.unwrap()
}

/// A deploy of v2 over a healthy v1, with `fault` on api's v2 (and `also` on api).
async fn outcome(fault: Option<Fault>, also: Option<Fault>, o: DeployOptions) -> Summary {
    let mem = MemoryPlatform::new();
    let app = app();
    let first = deploy(&mem, &app, "v1", &opts()).await;
    assert_eq!(first.outcome, Outcome::Succeeded);
    if let Some(f) = fault {
        mem.inject(Scope::Digest(digest("api-v2")), f);
    }
    if let Some(f) = also {
        mem.inject_times(Scope::Service("api".into()), f, 1);
    }
    deploy(&mem, &app, "v2", &o).await
}

fn check(name: &str, s: &Summary) {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"\d{8}T\d{6}Z-[0-9a-z-]+", "[release]");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        insta::assert_snapshot!(format!("{name}_human"), human_summary(s, false));
        insta::assert_snapshot!(format!("{name}_step_summary"), step_summary(s));
    });
}

#[tokio::test]
async fn succeeded() {
    let s = outcome(None, None, opts()).await;
    assert_eq!(s.outcome, Outcome::Succeeded);
    check("succeeded", &s);
}

#[tokio::test]
async fn rolled_back() {
    let s = outcome(Some(Fault::Crash), None, opts()).await;
    assert_eq!(s.outcome, Outcome::Partial, "worker runs v2, api went back");
    check("partial", &s);
    let mut o = opts();
    o.atomic = true;
    let s = outcome(Some(Fault::Crash), None, o).await;
    assert_eq!(s.outcome, Outcome::RolledBack);
    check("rolled_back", &s);
}

#[tokio::test]
async fn timed_out() {
    let mut o = opts();
    o.atomic = true;
    let s = outcome(Some(Fault::Unhealthy), None, o).await;
    assert_eq!(s.outcome, Outcome::TimedOut);
    check("timed_out", &s);
}

#[tokio::test]
async fn failed() {
    let s = outcome(Some(Fault::Crash), Some(Fault::RestoreFails), opts()).await;
    assert_eq!(s.outcome, Outcome::Failed);
    check("failed", &s);
    let mut o = opts();
    o.on_failure = OnFailure::Leave;
    let s = outcome(Some(Fault::Crash), None, o).await;
    check("left_in_place", &s);
}

#[tokio::test]
async fn cancelled() {
    let s = outcome(Some(Fault::CancelMidRollout), None, opts()).await;
    assert_eq!(s.outcome, Outcome::Cancelled);
    check("cancelled", &s);
}

#[tokio::test]
async fn nothing_changed() {
    let mem = MemoryPlatform::new();
    let app = app();
    deploy(&mem, &app, "v1", &opts()).await;
    mem.inject(Scope::Any, Fault::unauthorized());
    let s = deploy(&mem, &app, "v2", &opts()).await;
    assert_eq!(s.outcome, Outcome::NothingChanged);
    check("nothing_changed", &s);
}

#[test]
fn colour_paints_status_words_only() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let s = rt.block_on(outcome(Some(Fault::Crash), None, opts()));
    let plain = human_summary(&s, false);
    let painted = human_summary(&s, true);
    assert!(!plain.contains('\u{1b}'));
    assert!(painted.contains("\u{1b}["), "{painted:?}");
    let stripped =
        painted.replace("\u{1b}[0m", "").replace("\u{1b}[1m\u{1b}[31m", "").replace("\u{1b}[1m\u{1b}[32m", "");
    let stripped = stripped.replace("\u{1b}[1m\u{1b}[33m", "");
    assert_eq!(stripped, plain, "colour adds escapes and nothing else");
}
