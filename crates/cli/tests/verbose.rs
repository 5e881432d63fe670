//! `-v`, `-vv` and errors that explain, run as the built binary against the fakes: every API
//! request on stderr (never a token), retries and waits at `-vv`, the root cause of an
//! unreachable API, an HTML error page in one line, and a missing token refused before any
//! request.

// Test helpers outside #[test] fns unwrap and panic on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use shipit_testkit::fly::{Fault, FlyFake};

mod support;

use support::{SECRET, World, run};

/// The request lines (`-> …`) of a run's stderr.
fn request_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.starts_with("-> ")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dash_v_shows_every_request_and_never_a_token() {
    let w = World::new().await;
    w.push("v1");
    let r = run(w.shipit().env("STRIPE_SECRET_KEY", SECRET).args(["-v", "deploy", "--env", "staging", "--tag", "v1"]));
    assert_eq!(r.code, 0, "{r}");
    let lines = request_lines(&r.stderr);
    let registry = format!("-> HEAD http://{}/v2/acme/forgestack-api/manifests/v1  200 OK  ", w.registry.host());
    assert!(lines.iter().any(|l| l.starts_with(&registry)), "the registry's requests are shown: {r}");
    let fly = format!("-> GET {}/apps/forgestack-api-staging  ", w.fly.uri());
    assert!(lines.iter().any(|l| l.starts_with(&fly)), "the platform's requests are shown: {r}");
    assert!(lines.iter().any(|l| l.contains("/machines") && l.contains(" 200 OK  ")), "{r}");
    // Method, URL, status, duration: `…  200 OK  12ms`.
    assert!(lines.iter().all(|l| l.ends_with("ms") || l.ends_with('s')), "{lines:#?}");
    let sent = w.fly.requests().len() + w.registry.requests().len();
    assert!(lines.len() >= sent, "one line per request: {} lines, {sent} requests", lines.len());
    for text in [&r.stdout, &r.stderr] {
        assert!(!text.contains(FlyFake::TOKEN), "the token leaked: {text}");
        assert!(!text.contains(SECRET), "a secret value leaked: {text}");
    }
    assert!(!r.stdout.contains("-> "), "request lines go to stderr only");

    // Without -v: no request lines.
    let quiet = run(w.shipit().args(["status", "--env", "staging"]));
    assert!(request_lines(&quiet.stderr).is_empty(), "{quiet}");

    // With --json, stdout stays NDJSON only.
    let json = run(w.shipit().args(["--json", "-v", "status", "--env", "staging"]));
    assert!(!request_lines(&json.stderr).is_empty(), "{json}");
    for line in json.stdout.lines().filter(|l| !l.trim().is_empty()) {
        assert!(serde_json::from_str::<serde_json::Value>(line).is_ok(), "not JSON on stdout: {line}\n{json}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dash_vv_shows_retries_and_their_waits() {
    let w = World::new().await;
    w.push("v1");
    let first = run(w.shipit().env("STRIPE_SECRET_KEY", SECRET).args(["deploy", "--env", "staging", "--tag", "v1"]));
    assert_eq!(first.code, 0, "{first}");
    w.fly.inject(Fault::rate_limited("/v1/apps/forgestack-api-staging/machines", 1, 1));

    let r = run(w.shipit().args(["-vv", "status", "--env", "staging"]));
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stderr.contains("  429 Too Many Requests  "), "{r}");
    let retry = r.stderr.lines().find(|l| l.trim_start().starts_with("retry ")).unwrap_or_else(|| panic!("{r}"));
    assert!(retry.contains("retry 1/") && retry.contains("in 1.0s (Retry-After 1.0s): rate limited by Fly"), "{retry}");

    // -v alone shows the requests, not the retries.
    w.fly.inject(Fault::rate_limited("/v1/apps/forgestack-api-staging/machines", 1, 0));
    let r = run(w.shipit().args(["-v", "status", "--env", "staging"]));
    assert!(r.stderr.contains("  429 Too Many Requests  "), "{r}");
    assert!(!r.stderr.lines().any(|l| l.trim_start().starts_with("retry ")), "{r}");
    assert!(!r.all().contains(FlyFake::TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_names_its_root_cause() {
    let w = World::new().await;
    // Port 1 on loopback: nothing listens, the connection is refused.
    let r = run(w.shipit().env("SHIPIT_FLY_API_URL", "http://127.0.0.1:1/v1").args(["status", "--env", "staging"]));
    assert_ne!(r.code, 0, "{r}");
    let error = r.stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("{r}"));
    assert!(error.contains("cannot reach 127.0.0.1:1: connection refused"), "{error}");
    assert!(!error.contains("error sending request"), "{error}");

    let r =
        run(w.shipit().env("SHIPIT_FLY_API_URL", "http://127.0.0.1:1/v1").args(["-v", "status", "--env", "staging"]));
    let failed = request_lines(&r.stderr);
    assert!(
        failed
            .iter()
            .any(|l| l.starts_with("-> GET http://127.0.0.1:1/v1/apps/") && l.contains("failed: connection refused")),
        "{r}"
    );
    // The chain, once under the error: reqwest's, hyper's, the OS's.
    let chain: Vec<&str> = r.stderr.lines().filter(|l| l.starts_with("  caused by: ")).collect();
    assert!(chain.iter().any(|l| l.to_ascii_lowercase().contains("connection refused")), "{r}");
    let mut unique = chain.clone();
    unique.dedup();
    assert_eq!(unique.len(), chain.len(), "no repeats: {chain:#?}");
    assert!(!r.all().contains(FlyFake::TOKEN));
}

/// A server that answers every request with nginx's HTML 502 page; counts the requests.
fn html_502_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            seen.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 8192];
            let _ = stream.read(&mut buf);
            let body = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad \
                        Gateway</h1></center>\r\n<hr><center>nginx/1.25.3</center>\r\n</body>\r\n</html>\r\n";
            let answer = format!(
                "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    (format!("http://{addr}/v1"), count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_html_error_page_is_one_line() {
    let w = World::new().await;
    let (url, count) = html_502_server();
    let r = run(w.shipit().env("SHIPIT_FLY_API_URL", &url).args(["status", "--env", "staging"]));
    assert_ne!(r.code, 0, "{r}");
    assert!(count.load(Ordering::SeqCst) > 0);
    let errors: Vec<&str> = r.stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{r}");
    assert!(errors[0].contains("Fly API error 502: 502 Bad Gateway"), "{}", errors[0]);
    let all = r.all().to_ascii_lowercase();
    assert!(!all.contains("<html") && !all.contains("<center") && !all.contains("nginx"), "markup shown: {r}");
}

/// Every command that talks to a platform refuses a missing token (exit 5) before its first
/// request: neither the platform nor the registry hears from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_token_fails_before_any_request() {
    let w = World::new().await;
    w.push("v1");
    w.registry.clear_requests();
    let commands: [&[&str]; 8] = [
        &["deploy", "--env", "staging", "--tag", "v1"],
        &["promote", "staging", "production"],
        &["rollback", "--env", "staging"],
        &["plan", "--env", "staging", "--tag", "v1"],
        &["status", "--env", "staging"],
        &["releases", "--env", "staging"],
        &["secrets", "sync", "--env", "staging"],
        &["-v", "deploy", "--env", "staging", "--tag", "v1"],
    ];
    for args in commands {
        let r = run(w.shipit().env_remove("FLY_API_TOKEN").env("STRIPE_SECRET_KEY", SECRET).args(args));
        assert_eq!(r.code, 5, "{args:?}: {r}");
        assert!(r.stderr.contains("FLY_API_TOKEN") && r.stderr.contains("shipit login fly"), "{args:?}: {r}");
        assert!(w.fly.requests().is_empty(), "{args:?} reached Fly: {:?}", w.fly.requests());
        assert!(w.registry.requests().is_empty(), "{args:?} reached the registry: {:?}", w.registry.requests());
        assert!(request_lines(&r.stderr).is_empty(), "{args:?}: {r}");
    }
    // doctor reports the missing token and asks Fly nothing.
    let r = run(w.shipit().env_remove("FLY_API_TOKEN").args(["doctor", "--env", "staging"]));
    assert!(r.all().contains("FLY_API_TOKEN"), "{r}");
    assert!(w.fly.requests().is_empty(), "doctor reached Fly: {:?}", w.fly.requests());
    // --dry-run needs no token and sends nothing.
    let r =
        run(w.shipit().env_remove("FLY_API_TOKEN").args(["deploy", "--env", "staging", "--tag", "v1", "--dry-run"]));
    assert_eq!(r.code, 0, "{r}");
    assert!(w.fly.requests().is_empty() && w.registry.requests().is_empty());
}
