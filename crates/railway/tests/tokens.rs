//! Tokens on the Railway fake: a project token reaches its one project and environment and
//! nothing else (refused before any change, naming `RAILWAY_API_TOKEN`), which token
//! `from_env` picks, and a token Railway refuses inside an HTTP 200.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use harness::{World, app, deploy, deploy_with, digest, mutations, opts, report};
use secrecy::SecretString;
use shipit_core::engine::{self, Outcome, Side};
use shipit_core::{App, ErrorKind, Events, Platform};
use shipit_railway::{RailwayConfig, RailwayToken};
use shipit_testkit::railway::{API_TOKEN, Fault, TokenKind};

fn both_envs() -> App {
    app(
        "[services.api]\nport = 8080\nsecrets = [\"API_SECRET\"]\n\n[environments.staging]\ntarget = \"railway\"\n\n[environments.production]\ntarget = \"railway\"\n",
    )
}

/// The summary of a deploy refused because of the token: nothing changed, unauthorized, and
/// the message says which variable would do.
fn refused(s: &engine::Summary) {
    assert_eq!(s.outcome, Outcome::NothingChanged, "{s:?}");
    let r = report(s, "api");
    assert_eq!(r.error_kind, Some(ErrorKind::Unauthorized), "{s:?}");
    assert!(r.error.as_deref().is_some_and(|e| e.contains("RAILWAY_API_TOKEN")), "names RAILWAY_API_TOKEN: {r:?}");
}

#[tokio::test]
async fn a_project_token_bound_to_staging_deploys_to_staging_only() {
    let w = World::new().await;
    let app = both_envs();
    let p = w.project_token_platform(&w.staging);
    let s = deploy(&p, &app, &["api"], "v1").await;
    assert_eq!(s.outcome, Outcome::Succeeded, "{s:?}");
    assert_eq!(w.live("api").unwrap().digest.as_deref(), Some(digest("api", "v1").as_str()));
    let sent = w.fake.requests();
    assert!(sent.iter().all(|r| r.token_kind == TokenKind::Project), "sent as project-access-token: {sent:?}");
    assert_eq!(sent.first().and_then(|r| r.operation.as_deref()), Some("ProjectToken"), "its scope, asked first");
    assert!(!w.fake.operations().iter().any(|op| op == "Projects" || op == "Me"), "no account-only query");

    // Production, with the same token (and a fresh one: nothing cached either way).
    for p in [&p, &w.project_token_platform(&w.staging)] {
        let before = w.requests_now();
        let s = deploy_with(p, &app, "production", &["api"], "v1", &opts(), &Events::none()).await;
        refused(&s);
        let ops = w.ops_since(before);
        assert_eq!(mutations(&ops), Vec::<String>::new(), "refused before any change: {ops:?}");
    }
    let prod = w.instance_in(&w.production, "api");
    assert_eq!(prod.image, None, "production was never pointed at anything");
    assert!(w.fake.deployments(&w.project, &w.production, &w.service("api")).is_empty());

    // Every other command says the same.
    let t = harness::target(&app, "production");
    let svc = t.env.services.get("api").unwrap();
    let e = p.restore_point(t, svc).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthorized);
    assert!(e.message.contains("RAILWAY_API_TOKEN") && e.message.contains("production"), "{e}");
    let e = engine::sync_secrets(&p, t, &["api".into()], |_| Some(SecretString::from("x"))).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthorized, "{e}");
    assert_eq!(w.fake.variable(&w.project, &w.production, &w.service("api"), "API_SECRET"), None);
}

#[tokio::test]
async fn a_project_token_for_another_project_is_refused() {
    let w = World::new().await;
    let other = w.fake.seed_project("other");
    let other_staging = w.fake.seed_environment(&other, "staging");
    let token = w.fake.create_project_token(&other, &other_staging);
    let p = harness::platform(&w.fake, RailwayToken::Project(SecretString::from(token)));
    let app = both_envs();
    let s = deploy(&p, &app, &["api"], "v1").await;
    refused(&s);
    let r = report(&s, "api");
    assert!(r.error.as_deref().is_some_and(|e| e.contains("\"other\"")), "names the token's project: {r:?}");
    assert_eq!(mutations(&w.fake.operations()), Vec::<String>::new(), "{:?}", w.fake.operations());
    assert!(w.fake.service_names(&w.project).is_empty() && w.fake.service_names(&other).is_empty());
}

#[tokio::test]
async fn promote_with_a_staging_token_changes_nothing() {
    let w = World::new().await;
    let app = both_envs();
    let p = w.project_token_platform(&w.staging);
    deploy(&p, &app, &["api"], "v1").await;
    let before = w.requests_now();
    let from = Side { platform: &p, target: harness::target(&app, "staging") };
    let to = Side { platform: &p, target: harness::target(&app, "production") };
    let kind = match engine::promote(from, to, None, &opts(), &Events::none()).await {
        Ok(s) => {
            refused(&s);
            ErrorKind::Unauthorized
        }
        Err(e) => {
            assert!(e.message.contains("RAILWAY_API_TOKEN"), "{e}");
            e.kind
        }
    };
    assert_eq!(kind, ErrorKind::Unauthorized);
    let ops = w.ops_since(before);
    assert_eq!(mutations(&ops), Vec::<String>::new(), "{ops:?}");
    assert_eq!(w.instance_in(&w.production, "api").image, None);
    // With an account token the same promotion goes through.
    let s = engine::promote(
        Side { platform: &w.platform(), target: harness::target(&app, "staging") },
        Side { platform: &w.platform(), target: harness::target(&app, "production") },
        None,
        &opts(),
        &Events::none(),
    )
    .await
    .unwrap();
    assert_eq!(s.outcome, Outcome::Succeeded, "{s:?}");
    let live = w.fake.live_deployment(&w.project, &w.production, &w.service("api")).unwrap();
    assert_eq!(live.digest.as_deref(), Some(digest("api", "v1").as_str()));
}

#[tokio::test]
async fn not_authorized_inside_a_200_stops_the_client() {
    let w = World::new().await;
    let app = both_envs();
    let p = w.platform();
    deploy(&p, &app, &["api"], "v1").await;
    let (before, sent) = (w.requests_now(), p.client().requests_sent());
    w.fake.inject(Fault::GraphqlError { ops: None, message: "Not Authorized".to_string(), times: 1 });
    let s = deploy(&p, &app, &["api"], "v2").await;
    assert_eq!(s.outcome, Outcome::NothingChanged, "{s:?}");
    assert_eq!(s.failure_kind(), Some(ErrorKind::Unauthorized), "{s:?}");
    let log: Vec<_> = w.fake.requests().into_iter().skip(before).collect();
    assert_eq!(log.len(), 1, "nothing is sent after the refusal: {log:?}");
    assert_eq!((log[0].status, log[0].graphql_error.as_deref()), (200, Some("Not Authorized")));
    assert_eq!(p.client().requests_sent(), sent + 1);
    // The client stays stopped.
    let t = harness::target(&app, "staging");
    let e = p.status(t, t.env.services.get("api").unwrap()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthorized, "{e}");
    assert_eq!(w.requests_now(), before + 1);
    assert!(w.instance("api").image.unwrap().ends_with(&digest("api", "v1")), "nothing changed");
}

#[tokio::test]
async fn an_unknown_project_token_is_unauthorized_naming_its_variable() {
    let w = World::new().await;
    let p = harness::platform(&w.fake, RailwayToken::Project(SecretString::from("not-a-token".to_string())));
    let s = deploy(&p, &both_envs(), &["api"], "v1").await;
    assert_eq!(s.outcome, Outcome::NothingChanged, "{s:?}");
    let r = report(&s, "api");
    assert_eq!(r.error_kind, Some(ErrorKind::Unauthorized), "{s:?}");
    assert!(r.error.as_deref().is_some_and(|e| e.contains("RAILWAY_TOKEN")), "{r:?}");
    assert_eq!(w.requests_now(), 1, "one refusal, then nothing");
}

/// Marks the child process of [`from_env_prefers_railway_token`].
const CHILD: &str = "SHIPIT_RAILWAY_TEST_CHILD";

/// `RailwayConfig::from_env` in a child process (this test binary again, this test only), so
/// no variable of this process changes: which token it picks, and that it is the one Railway
/// gets.
#[tokio::test]
async fn from_env_prefers_railway_token() {
    if let Ok(expect) = std::env::var(CHILD) {
        let p = RailwayConfig::from_env().build().unwrap();
        let got = match p.client().token() {
            Some(RailwayToken::Project(_)) => "project",
            Some(RailwayToken::Api(_)) => "api",
            None => "none",
        };
        assert_eq!(got, expect);
        if got != "none" {
            // One request, with whatever it picked.
            let _ = p.client().project_token().await;
        }
        return;
    }
    let w = World::new().await;
    let project_token = w.fake.create_project_token(&w.project, &w.staging);
    // What the child must pick, RAILWAY_TOKEN, RAILWAY_API_TOKEN, and what Railway gets.
    type Case<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Option<TokenKind>);
    let cases: [Case<'_>; 4] = [
        ("project", Some(project_token.as_str()), Some(API_TOKEN), Some(TokenKind::Project)),
        ("api", None, Some(API_TOKEN), Some(TokenKind::Api)),
        ("api", Some("  "), Some(API_TOKEN), Some(TokenKind::Api)),
        ("none", Some(""), None, None),
    ];
    for (expect, railway_token, api_token, kind) in cases {
        let before = w.requests_now();
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", "from_env_prefers_railway_token", "--test-threads=1"])
            .env(CHILD, expect)
            .env("SHIPIT_RAILWAY_API_URL", w.fake.endpoint())
            .env_remove("RAILWAY_TOKEN")
            .env_remove("RAILWAY_API_TOKEN");
        if let Some(t) = railway_token {
            cmd.env("RAILWAY_TOKEN", t);
        }
        if let Some(t) = api_token {
            cmd.env("RAILWAY_API_TOKEN", t);
        }
        let out = cmd.output().unwrap();
        let shown = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && shown.contains("1 passed"), "{expect}: {shown}");
        let sent: Vec<TokenKind> = w.fake.requests().into_iter().skip(before).map(|r| r.token_kind).collect();
        assert_eq!(sent, kind.into_iter().collect::<Vec<_>>(), "{expect}: what Railway received");
    }
}
