//! Railway's rate limits (429 with `Retry-After`, the `X-RateLimit-*` headers, an exhausted
//! hourly budget) and a server that echoes requests back: no secret value or token comes out of
//! shipit, in an event or in an error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::time::{Duration, Instant};

use harness::{World, app, deploy, deploy_with, digest, opts, report, sync, target};
use secrecy::SecretString;
use shipit_core::engine::{self, Outcome};
use shipit_core::retry::RetryPolicy;
use shipit_core::{App, ErrorKind, Events, Platform};
use shipit_railway::{RailwayPlatform, RailwayToken};
use shipit_testkit::echo;
use shipit_testkit::railway::{API_TOKEN, DEFAULT_HOURLY_LIMIT, Fault};

fn one() -> App {
    app(
        "[services.api]\nport = 8080\nenv = { MODE = \"test\" }\nsecrets = [\"API_SECRET\", \"OTHER_SECRET\"]\n\n[environments.staging]\ntarget = \"railway\"\n",
    )
}

/// A platform whose retries wait up to `max_delay` (a longer `Retry-After` is cut to it).
fn patient(w: &World, max_delay: Duration) -> RailwayPlatform {
    let mut policy = RetryPolicy::fast();
    policy.min_delay = Duration::from_millis(1);
    policy.max_delay = max_delay;
    policy.total = Duration::from_secs(3);
    RailwayPlatform::builder()
        .with_base_url(w.fake.endpoint())
        .token(harness::api_token())
        .poll_interval(Duration::from_millis(10))
        .retry(policy)
        .build()
        .unwrap()
}

#[tokio::test]
async fn retry_after_is_honoured_and_the_deploy_succeeds() {
    let w = World::new().await;
    let app = one();
    // Two 429s asking for 1 s each, cut to the policy's 150 ms: a backoff of its own would be 1 ms.
    let p = patient(&w, Duration::from_millis(150));
    w.fake.inject(Fault::rate_limited(Fault::only(&["Projects"]), 2, 1));
    let started = Instant::now();
    let s = deploy(&p, &app, &["api"], "v1").await;
    let took = started.elapsed();
    assert_eq!(s.outcome, Outcome::Succeeded, "{s:?}");
    assert!(took >= Duration::from_millis(300), "waited as asked (capped), twice: {took:?}");
    let projects: Vec<u16> =
        w.fake.requests().iter().filter(|r| r.operation.as_deref() == Some("Projects")).map(|r| r.status).collect();
    assert_eq!(projects, [429, 429, 200]);
    // Without Retry-After, the X-RateLimit-Reset window says how long (an hour here, capped).
    w.fake.inject(Fault::Status { ops: Fault::only(&["ServiceInstance"]), status: 429, retry_after: None, times: 1 });
    let started = Instant::now();
    let s = deploy(&patient(&w, Duration::from_millis(150)), &app, &["api"], "v2").await;
    assert_eq!(s.outcome, Outcome::Succeeded, "{s:?}");
    assert!(started.elapsed() >= Duration::from_millis(150), "{:?}", started.elapsed());
}

#[tokio::test]
async fn the_client_counts_requests_and_reads_the_remaining_budget() {
    let w = World::new().await;
    let p = w.platform();
    assert_eq!(p.client().rate_limit_remaining(), None, "nothing seen yet");
    deploy(&p, &one(), &["api"], "v1").await;
    let sent = p.client().requests_sent();
    assert_eq!(sent, w.fake.request_count(), "every request counted");
    assert_eq!(p.client().rate_limit_remaining(), Some(u64::from(DEFAULT_HOURLY_LIMIT) - sent));
}

#[tokio::test]
async fn an_exhausted_hourly_budget_fails_rate_limited_then_recovers() {
    let w = World::new().await;
    let app = one();
    let p = w.platform();
    deploy(&p, &app, &["api"], "v1").await;
    // The budget is spent: every request is refused until the hour is over.
    w.fake.set_hourly_limit(u32::try_from(w.fake.request_count()).unwrap());
    let (before, sent) = (w.fake.request_count(), p.client().requests_sent());
    let started = Instant::now();
    let s = deploy(&w.platform(), &app, &["api"], "v2").await;
    assert!(started.elapsed() < Duration::from_secs(5), "gives up within the retry policy, not after an hour");
    assert_eq!(s.outcome, Outcome::NothingChanged, "{s:?}");
    assert_eq!(report(&s, "api").error_kind, Some(ErrorKind::RateLimited), "{s:?}");
    let e = report(&s, "api").error.clone().unwrap();
    assert!(e.contains("rate limited") && e.contains("retry after"), "says when: {e}");
    assert!(w.fake.requests().iter().skip(before as usize).all(|r| r.status == 429));
    assert!(w.instance("api").image.unwrap().ends_with(&digest("api", "v1")), "nothing changed");
    // The first client, asked now, sees the empty budget.
    let t = target(&app, "staging");
    let svc = t.env.services.get("api").unwrap();
    let e = p.status(t, svc).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::RateLimited, "{e}");
    assert_eq!(p.client().rate_limit_remaining(), Some(0));
    let attempts = p.client().requests_sent() - sent;
    assert_eq!(attempts, 5, "one read, with the policy's four retries");
    // The window is over: the same deploy goes through.
    w.fake.advance(Duration::from_secs(3601));
    let s = deploy(&p, &app, &["api"], "v2").await;
    assert_eq!(s.outcome, Outcome::Succeeded, "{s:?}");
}

/// The forms a value could be quoted in.
fn forms(value: &str) -> Vec<String> {
    vec![value.to_string(), echo::percent(value.as_bytes()), echo::base64(value.as_bytes())]
}

fn assert_clean(what: &str, text: &str, secrets: &[&str]) {
    for s in secrets {
        for f in forms(s) {
            assert!(!text.contains(&f), "{what} quotes {f:?}: {text}");
        }
    }
}

/// An error as a user could see it: its message, its Debug and its sources.
fn shown(e: &shipit_core::Error) -> String {
    let mut out = format!("{e} | {e:?}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(&format!(" | {s} | {s:?}"));
        source = s.source();
    }
    out
}

#[tokio::test]
async fn echoed_secrets_never_come_out_of_secrets_sync() {
    let w = World::new().await;
    let app = one();
    let project_token = w.fake.create_project_token(&w.project, &w.staging);
    deploy(&w.platform(), &app, &["api"], "v1").await;
    let value = "s3cr3t-value-that-must-not-leak";
    let other = "another/s3cret+value";
    let lookup =
        |name: &str| Some(SecretString::from(if name == "API_SECRET" { value.to_string() } else { other.to_string() }));
    for token in [harness::api_token(), RailwayToken::Project(SecretString::from(project_token.clone()))] {
        for (status, times) in [(200, 1), (400, 1), (500, 10)] {
            let p = harness::platform(&w.fake, token.clone());
            w.fake.clear_faults();
            w.fake.inject(Fault::Echo { ops: Fault::only(&["VariableCollectionUpsert"]), status, times });
            let e = engine::sync_secrets(&p, target(&app, "staging"), &["api".into()], lookup).await.unwrap_err();
            assert_clean(&format!("the error after an echo ({status})"), &shown(&e), &[value, other, API_TOKEN]);
            assert_clean("the error", &shown(&e), &[&project_token]);
            if matches!(token, RailwayToken::Api(_)) {
                assert!(shown(&e).contains("Bearer ***"), "the echo reached the message, scrubbed: {}", shown(&e));
            }
            assert!(w.variable("api", "API_SECRET").is_none(), "{status}: nothing was set");
        }
    }
    // The echo did quote them: the check above checks something.
    w.fake.clear_faults();
    w.fake.inject(Fault::Echo { ops: None, status: 400, times: 1 });
    let raw = reqwest::Client::new()
        .post(w.fake.endpoint())
        .bearer_auth(API_TOKEN)
        .json(&serde_json::json!({"query": "query { projects { edges { node { id } } } }", "variables": {"v": value}}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(raw.contains(value) && raw.contains(API_TOKEN), "{raw}");
}

#[tokio::test]
async fn echoed_requests_never_put_a_secret_or_token_in_events_or_the_summary() {
    let w = World::new().await;
    let app = one();
    let p = w.platform();
    let value = "s3cr3t-value-that-must-not-leak";
    let (events, seen) = Events::collect();
    deploy_with(&p, &app, "staging", &["api"], "v1", &opts(), &events).await;
    sync(&p, &app, "api", &[("API_SECRET", value), ("OTHER_SECRET", "second-s3cret")]).await;
    // Every kind of write a deploy makes answers with an echo once: 200 (a GraphQL error), 4xx,
    // 5xx (retried).
    let mut summaries = Vec::new();
    for (i, (op, status)) in [
        ("ServiceInstanceUpdate", 200),
        ("VariableCollectionUpsert", 400),
        ("ServiceInstanceDeployV2", 200),
        ("ServiceInstance", 503),
        ("Variables", 200),
    ]
    .into_iter()
    .enumerate()
    {
        w.fake.inject(Fault::Echo { ops: Fault::only(&[op]), status, times: 1 });
        // A changed variable, so the upsert is sent.
        let a = harness::app(&format!(
            "[services.api]\nport = 8080\nenv = {{ MODE = \"m{i}\" }}\nsecrets = [\"API_SECRET\", \"OTHER_SECRET\"]\n\n[environments.staging]\ntarget = \"railway\"\n"
        ));
        let s = deploy_with(&p, &a, "staging", &["api"], &format!("e{i}"), &opts(), &events).await;
        w.fake.clear_faults();
        summaries.push(format!("{s:?}"));
    }
    assert!(summaries.iter().any(|s| s.contains("Bearer ***")), "an echo reached a message, scrubbed: {summaries:?}");
    let all = format!("{:?} {summaries:?}", seen.lock().unwrap());
    assert_clean("events and summaries", &all, &[value, "second-s3cret", API_TOKEN]);
    // The secret is still set and runs.
    assert_eq!(w.variable("api", "API_SECRET").as_deref(), Some(value));
}
