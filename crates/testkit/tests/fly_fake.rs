//! The Fly fake keeps state and answers in the Machines API's shapes, driven by plain reqwest.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use shipit_testkit::fly::{Behaviour, Fault, FlyFake, LEASE_OWNER, NONCE_HEADER, TOKEN};

const GOOD: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const BAD: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
const CRASH: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(fake: &FlyFake) -> Self {
        Api { http: reqwest::Client::new(), base: fake.uri() }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>, nonce: Option<&str>) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        if let Some(n) = nonce {
            req = req.header(NONCE_HEADER, n);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() })
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body), None).await
    }
}

fn config(digest: &str) -> Value {
    json!({
        "image": format!("ghcr.io/acme/api:3f2c1ab@{digest}"),
        "env": {"PORT": "4000"},
        "guest": {"cpu_kind": "shared", "cpus": 1, "memory_mb": 512},
        "services": [{"protocol": "tcp", "internal_port": 4000,
                      "ports": [{"port": 443, "handlers": ["tls", "http"]}]}],
        "checks": {"health": {"type": "http", "port": 4000, "path": "/api/health",
                              "interval": "10s", "timeout": "2s", "grace_period": "5s", "method": "GET"}},
        "restart": {"policy": "on-failure", "max_retries": 3},
        "metadata": {"shipit_release": "r1"},
        "init": {"cmd": ["serve"]},
    })
}

fn check_statuses(machine: &Value) -> Vec<String> {
    machine["checks"].as_array().unwrap().iter().map(|c| c["status"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn apps_machines_leases_and_versions_keep_state() {
    let fake = FlyFake::start().await;
    assert!(fake.uri().ends_with("/v1"));
    let api = Api::new(&fake);

    assert_eq!(api.get("/apps/forge-api-staging").await.0, StatusCode::NOT_FOUND);
    let (s, _) = api.post("/apps", json!({"app_name": "forge-api-staging", "org_slug": "acme"})).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = api.post("/apps", json!({"app_name": "forge-api-staging", "org_slug": "acme"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, app) = api.get("/apps/forge-api-staging").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(app["name"], "forge-api-staging");
    assert_eq!(app["organization"]["slug"], "acme");
    assert_eq!(fake.apps(), vec!["forge-api-staging".to_owned()]);

    // Create: the config comes back verbatim, with the spec's Machine fields.
    let cfg = config(GOOD);
    let (s, m) = api.post("/apps/forge-api-staging/machines", json!({"region": "fra", "config": cfg})).await;
    assert_eq!(s, StatusCode::OK, "{m}");
    let id = m["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 14);
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(m["config"], cfg);
    assert_eq!(m["state"], "started");
    assert_eq!(m["region"], "fra");
    assert_eq!(m["image_ref"]["digest"], GOOD);
    assert_eq!(m["image_ref"]["repository"], "acme/api");
    for field in ["name", "instance_id", "private_ip", "created_at", "updated_at", "events"] {
        assert!(!m[field].is_null(), "missing {field} in {m}");
    }
    let first_instance = m["instance_id"].as_str().unwrap().to_owned();
    assert_eq!(fake.creates("forge-api-staging"), 1);
    let listed = api.get("/apps/forge-api-staging/machines").await.1;
    assert_eq!(listed.as_array().unwrap().len(), 1);

    let machine_path = format!("/apps/forge-api-staging/machines/{id}");
    let lease_path = format!("{machine_path}/lease");

    // Lease (?ttl=N, live shape), then updates need its nonce.
    let (s, lease) = api.call(Method::POST, &format!("{lease_path}?ttl=60"), None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(lease["status"], "success");
    let nonce = lease["data"]["nonce"].as_str().unwrap().to_owned();
    assert_eq!(lease["data"]["owner"], LEASE_OWNER);
    assert_eq!(lease["data"]["version"], first_instance.as_str());
    assert!(lease["data"]["expires_at"].as_i64().unwrap() > 0);
    assert_eq!(fake.leases_held().len(), 1);
    // A second acquisition without the nonce conflicts; with it, it refreshes.
    assert_eq!(api.call(Method::POST, &lease_path, Some(json!({"ttl": 30})), None).await.0, StatusCode::CONFLICT);
    let (s, again) = api.call(Method::POST, &format!("{lease_path}?ttl=60"), None, Some(&nonce)).await;
    assert_eq!((s, again["data"]["nonce"].as_str()), (StatusCode::OK, Some(nonce.as_str())));
    assert_eq!(api.get(&lease_path).await.1["data"]["nonce"], nonce.as_str());

    let mut cfg2 = config(GOOD);
    cfg2["metadata"]["shipit_release"] = json!("r2");
    let body = json!({"config": cfg2, "min_secrets_version": 0});
    let (s, err) = api.call(Method::POST, &machine_path, Some(body.clone()), None).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(err["error"].as_str().unwrap().contains("lease currently held"), "{err}");
    let (s, _) = api.call(Method::POST, &machine_path, Some(body.clone()), Some("wrong")).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, updated) = api.call(Method::POST, &machine_path, Some(body), Some(&nonce)).await;
    assert_eq!(s, StatusCode::OK, "{updated}");
    assert_eq!(updated["config"], cfg2);
    assert_ne!(updated["instance_id"], first_instance.as_str());

    // Versions: both, newest first, {version, user_config}.
    let (s, versions) = api.get(&format!("{machine_path}/versions")).await;
    assert_eq!(s, StatusCode::OK);
    let versions = versions.as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["version"], updated["instance_id"]);
    assert_eq!(versions[0]["user_config"], cfg2);
    assert_eq!(versions[1]["version"], first_instance.as_str());
    assert_eq!(versions[1]["user_config"], cfg);
    assert_eq!(fake.versions("forge-api-staging", &id).len(), 2);

    // Release: no lease left, and the request carried the nonce.
    let (s, _) = api.call(Method::DELETE, &lease_path, None, Some(&nonce)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(fake.leases_held().is_empty());
    assert_eq!(api.get(&lease_path).await.0, StatusCode::NOT_FOUND);
    let release = fake.requests().into_iter().rfind(|r| r.method == "DELETE").unwrap();
    assert!(release.has_nonce && release.authorization_ok);

    let seen = &fake.machines("forge-api-staging")[0];
    assert_eq!(seen.metadata.get("shipit_release").map(String::as_str), Some("r2"));
    assert_eq!(seen.digest.as_deref(), Some(GOOD));
    assert_eq!(seen.min_secrets_version, Some(0));
}

#[tokio::test]
async fn foreign_leases_block_until_released_or_expired() {
    let fake = FlyFake::start().await;
    let api = Api::new(&fake);
    let id = fake.seed_machine("web", "iad", config(GOOD));
    fake.hold_lease("web", &id, "someone@example.com").unwrap();
    let lease_path = format!("/apps/web/machines/{id}/lease");
    let (s, err) = api.call(Method::POST, &lease_path, None, None).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(err["error"].as_str().unwrap().contains("someone@example.com"));
    fake.advance(std::time::Duration::from_secs(31 * 60));
    assert_eq!(api.call(Method::POST, &lease_path, None, None).await.0, StatusCode::OK);
    assert_eq!(fake.leases_held(), vec![("web".to_owned(), id.clone(), LEASE_OWNER.to_owned())]);
    assert!(fake.release_foreign_lease("web", &id));
    assert!(fake.leases_held().is_empty());
}

#[tokio::test]
async fn health_follows_the_behaviour_of_the_digest() {
    let fake = FlyFake::start().await;
    let api = Api::new(&fake);
    fake.seed_app("web", "acme");
    fake.set_behaviour(BAD, Behaviour::FailingChecks);
    fake.set_behaviour(CRASH.trim_start_matches("sha256:"), Behaviour::Crash);
    fake.set_behaviour("sha256:4444", Behaviour::SlowStart(3));

    // Healthy: warning first, then passing — the client has to poll.
    let good = api.post("/apps/web/machines", json!({"config": config(GOOD)})).await.1;
    let path = format!("/apps/web/machines/{}", good["id"].as_str().unwrap());
    let inst = good["instance_id"].as_str().unwrap();
    let (s, ok) = api.get(&format!("{path}/wait?state=started&timeout=60&instance_id={inst}")).await;
    assert_eq!((s, ok), (StatusCode::OK, json!({"ok": true})));
    assert_eq!(check_statuses(&api.get(&path).await.1), ["warning"]);
    let m = api.get(&path).await.1;
    assert_eq!(check_statuses(&m), ["passing"]);
    assert_eq!(m["checks"][0]["name"], "health");

    // Failing checks stay critical.
    let bad = api.post("/apps/web/machines", json!({"config": config(BAD)})).await.1;
    let path = format!("/apps/web/machines/{}", bad["id"].as_str().unwrap());
    for _ in 0..3 {
        let m = api.get(&path).await.1;
        assert_eq!((m["state"].as_str(), check_statuses(&m)), (Some("started"), vec!["critical".to_owned()]));
    }

    // Crash: wait says started once, then the next GET shows the exit; later waits time out.
    let crash = api.post("/apps/web/machines", json!({"config": config(CRASH)})).await.1;
    let path = format!("/apps/web/machines/{}", crash["id"].as_str().unwrap());
    assert_eq!(api.get(&format!("{path}/wait?state=started&timeout=5")).await.0, StatusCode::OK);
    let m = api.get(&path).await.1;
    assert_eq!(m["state"], "stopped");
    let exit = m["events"].as_array().unwrap().iter().find(|e| e["type"] == "exit").unwrap();
    assert_eq!(exit["request"]["exit_event"]["exit_code"], 1);
    assert_eq!(exit["request"]["exit_event"]["restarting"], false);
    assert_eq!(exit["request"]["exit_event"]["requested_stop"], false);
    let started = std::time::Instant::now();
    let (s, err) = api.get(&format!("{path}/wait?state=started&timeout=60")).await;
    assert_eq!(s, StatusCode::REQUEST_TIMEOUT, "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "the fake must not really wait");
    assert_eq!(api.get(&format!("{path}/wait?state=started&timeout=61")).await.0, StatusCode::BAD_REQUEST);

    // Slow start: starting for 3 GETs, or a wait fast-forwards through them.
    let slow_cfg = json!({"image": "ghcr.io/acme/api@sha256:4444", "checks": {"h": {"type": "tcp", "port": 1}}});
    let slow = api.post("/apps/web/machines", json!({"config": slow_cfg.clone()})).await.1;
    assert_eq!(slow["state"], "starting");
    let path = format!("/apps/web/machines/{}", slow["id"].as_str().unwrap());
    let states: Vec<Value> = poll_states(&api, &path, 5).await;
    assert_eq!(states, [json!("starting"), json!("starting"), json!("starting"), json!("started"), json!("started")]);
    let slow = api.post("/apps/web/machines", json!({"config": slow_cfg})).await.1;
    let path = format!("/apps/web/machines/{}", slow["id"].as_str().unwrap());
    assert_eq!(api.get(&format!("{path}/wait?state=started&timeout=2")).await.0, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(api.get(&format!("{path}/wait?state=started&timeout=2")).await.0, StatusCode::OK);
    assert_eq!(api.get(&path).await.1["state"], "started");
}

async fn poll_states(api: &Api, path: &str, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(api.get(path).await.1["state"].clone());
    }
    out
}

#[tokio::test]
async fn requests_without_the_token_get_401() {
    let fake = FlyFake::start().await;
    fake.seed_app("web", "acme");
    let http = reqwest::Client::new();
    let url = format!("{}/apps/web", fake.uri());
    let resp = http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"error": "unauthorized"}));
    assert_eq!(http.get(&url).bearer_auth("nope").send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let flyv1 = http.get(&url).header("authorization", format!("FlyV1 {TOKEN}")).send().await.unwrap();
    assert_eq!(flyv1.status(), StatusCode::OK);
    let auth: Vec<bool> = fake.requests().iter().map(|r| r.authorization_ok).collect();
    assert_eq!(auth, [false, false, true]);
}

#[tokio::test]
async fn injected_faults_fail_the_next_matching_requests() {
    let fake = FlyFake::start().await;
    let api = Api::new(&fake);
    fake.seed_app("web", "acme");
    fake.inject(Fault::rate_limited("/machines", 2, 7));

    let resp = reqwest::Client::new()
        .post(format!("{}/apps/web/machines", fake.uri()))
        .bearer_auth(TOKEN)
        .json(&json!({"config": config(GOOD)}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["retry-after"], "7");
    assert_eq!(api.get("/apps/web/machines").await.0, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(fake.creates("web"), 0, "a rate-limited request has no effect");
    assert_eq!(api.get("/apps/web").await.0, StatusCode::OK, "other paths are not affected");
    assert_eq!(api.post("/apps/web/machines", json!({"config": config(GOOD)})).await.0, StatusCode::OK);

    // A lost response: the create happened, the client saw a 502.
    fake.inject(Fault::LostResponse {
        method: Some("POST".to_owned()),
        path_contains: "/machines".to_owned(),
        status: 502,
        times: 1,
    });
    assert_eq!(api.post("/apps/web/machines", json!({"config": config(GOOD)})).await.0, StatusCode::BAD_GATEWAY);
    assert_eq!(fake.creates("web"), 2);

    fake.inject(Fault::Delay { path_contains: "/apps/web".to_owned(), delay: std::time::Duration::from_millis(150) });
    let started = std::time::Instant::now();
    assert_eq!(api.get("/apps/web").await.0, StatusCode::OK);
    assert!(started.elapsed() >= std::time::Duration::from_millis(150));
    fake.clear_faults();

    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 429, 200, 200, 502, 200]);
}

#[tokio::test]
async fn secrets_bump_the_version_and_list_names_only() {
    let fake = FlyFake::start().await;
    let api = Api::new(&fake);
    fake.seed_app("web", "acme");
    assert_eq!(api.get("/apps/web/secrets").await.1, json!({"secrets": []}));

    let (s, out) = api
        .post("/apps/web/secrets", json!({"values": {"DATABASE_URL": "postgres://u:pw@db/app", "API_KEY": "k1"}}))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(out["version"], 1);
    let (s, out) = api.post("/apps/web/secrets", json!({"values": {"API_KEY": null}})).await;
    assert_eq!((s, out["version"].as_u64()), (StatusCode::OK, Some(2)));
    assert_eq!(fake.secrets_version("web"), 2);

    let (_, listed) = api.get("/apps/web/secrets").await;
    let secrets = listed["secrets"].as_array().unwrap();
    assert_eq!(secrets.len(), 1);
    assert_eq!(secrets[0]["name"], "DATABASE_URL");
    assert!(secrets[0].get("value").is_none());
    assert!(!listed.to_string().contains("pw@db"), "values never leave the fake");
    assert!(fake.secret_value("web", "DATABASE_URL").is_some_and(|v| v == "postgres://u:pw@db/app"));
    assert_eq!(fake.secret_value("web", "API_KEY"), None);

    // An update may not ask for secrets newer than the app has.
    let id = fake.seed_machine("web", "iad", config(GOOD));
    let path = format!("/apps/web/machines/{id}");
    let (s, _) = api.post(&path, json!({"config": config(GOOD), "min_secrets_version": 3})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(api.post(&path, json!({"config": config(GOOD), "min_secrets_version": 2})).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_reset_fault_drops_the_connection_without_an_answer() {
    let fake = FlyFake::start().await;
    let api = Api::new(&fake);
    fake.seed_app("web", "acme");
    fake.inject(Fault::Reset { method: Some("GET".into()), path_contains: "/v1/apps/web".into(), times: 1 });
    let err = api.http.get(format!("{}/apps/web", api.base)).bearer_auth(TOKEN).send().await.unwrap_err();
    assert!(!err.is_timeout() && !err.is_status(), "a reset, not an answer: {err:?}");
    // At the TCP level it is a reset, not a close.
    fake.inject(Fault::Reset { method: Some("GET".into()), path_contains: "/v1/apps/web".into(), times: 1 });
    let addr = api.base.trim_start_matches("http://").trim_end_matches("/v1").to_owned();
    let read = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        write!(tcp, "GET /v1/apps/web HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\n\r\n").unwrap();
        let mut buf = [0u8; 64];
        tcp.read(&mut buf)
    })
    .await
    .unwrap();
    assert_eq!(read.map_err(|e| e.kind()), Err(std::io::ErrorKind::ConnectionReset));
    // The same client goes on over a new connection.
    assert_eq!(api.get("/apps/web").await.0, StatusCode::OK);
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [0, 0, 200], "a reset is recorded with status 0");
}

#[tokio::test]
async fn a_malformed_fault_applies_the_request_and_answers_an_unparseable_200() {
    let fake = FlyFake::start().await;
    let api = Api::new(&fake);
    fake.inject(Fault::Malformed { method: Some("POST".into()), path_contains: "/v1/apps".into(), times: 1 });
    let resp = api
        .http
        .post(format!("{}/apps", api.base))
        .bearer_auth(TOKEN)
        .json(&json!({"app_name": "web", "org_slug": "acme"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.text().await.unwrap();
    assert!(serde_json::from_str::<Value>(&body).is_err(), "{body}");
    assert_eq!(fake.apps(), ["web"], "the create was applied");
}

#[tokio::test]
async fn a_reset_after_fault_applies_the_request_then_drops_the_connection() {
    let fake = FlyFake::start().await;
    let api = Api::new(&fake);
    fake.inject(Fault::ResetAfter { method: Some("POST".into()), path_contains: "/v1/apps".into(), times: 1 });
    let body = json!({"app_name": "web", "org_slug": "acme"});
    let err = api.http.post(format!("{}/apps", api.base)).bearer_auth(TOKEN).json(&body).send().await.unwrap_err();
    assert!(!err.is_timeout() && !err.is_status(), "a reset, not an answer: {err:?}");
    assert_eq!(fake.apps(), ["web"], "the create was applied");
    assert_eq!(fake.faults_left(), 0);
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [0], "recorded like a reset");
}

#[tokio::test]
async fn a_cut_body_fault_applies_the_request_and_stops_the_body_short() {
    let fake = FlyFake::start().await;
    let api = Api::new(&fake);
    fake.seed_app("web", "acme");
    fake.inject(Fault::CutBody { method: Some("GET".into()), path_contains: "/v1/apps/web".into(), times: 1 });
    let resp = api.http.get(format!("{}/apps/web", api.base)).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "the head arrives");
    assert!(resp.headers().get("x-shipit-fake-cut").is_none(), "without the proxy's mark");
    let err = resp.bytes().await.unwrap_err();
    assert!(err.is_body() || err.is_decode(), "the body stops short: {err:?}");
    assert_eq!(fake.faults_left(), 0);
    // The next answer is whole.
    assert_eq!(api.get("/apps/web").await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_slow_fault_holds_the_next_answers_past_a_timeout() {
    let fake = FlyFake::start().await;
    let api = Api::new(&fake);
    fake.seed_app("web", "acme");
    fake.inject(Fault::Slow {
        method: None,
        path_contains: "/v1/apps/web".into(),
        delay: std::time::Duration::from_millis(400),
        times: 1,
    });
    let url = format!("{}/apps/web", api.base);
    let timeout = std::time::Duration::from_millis(100);
    let err = api.http.get(&url).bearer_auth(TOKEN).timeout(timeout).send().await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    let resp = api.http.get(&url).bearer_auth(TOKEN).timeout(timeout).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "only one answer was slow");
}

#[tokio::test]
async fn refuse_image_lets_the_first_writes_of_a_digest_through_and_refuses_the_rest() {
    let fake = FlyFake::start().await;
    let api = Api::new(&fake);
    fake.seed_app("web", "acme");
    fake.inject(Fault::RefuseImage { digest: BAD.trim_start_matches("sha256:").into(), after: 1, status: 422 });
    let (s, first) = api.post("/apps/web/machines", json!({"config": config(BAD)})).await;
    assert_eq!(s, StatusCode::OK, "{first}");
    let (s, _) = api.post("/apps/web/machines", json!({"config": config(BAD)})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let id = first["id"].as_str().unwrap();
    let (s, _) = api.post(&format!("/apps/web/machines/{id}"), json!({"config": config(BAD)})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "updates too");
    let (s, _) = api.post(&format!("/apps/web/machines/{id}"), json!({"config": config(GOOD)})).await;
    assert_eq!(s, StatusCode::OK, "another digest goes through");
    assert_eq!(fake.creates("web"), 1);
    fake.clear_faults();
    assert_eq!(api.post("/apps/web/machines", json!({"config": config(BAD)})).await.0, StatusCode::OK);
}

#[tokio::test]
async fn the_proxy_relays_large_answers_over_kept_alive_connections() {
    let fake = FlyFake::start().await;
    let api = Api::new(&fake);
    fake.seed_app("web", "acme");
    for _ in 0..40 {
        assert_eq!(api.post("/apps/web/machines", json!({"config": config(GOOD)})).await.0, StatusCode::OK);
    }
    let resp = api.http.get(format!("{}/apps/web/machines", api.base)).bearer_auth(TOKEN).send().await.unwrap();
    let body = resp.bytes().await.unwrap();
    assert!(body.len() > 32 * 1024, "a body larger than the proxy's buffer: {}", body.len());
    let listed: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 40);
    // Empty bodies (201, no content) keep the connection usable too.
    for i in 0..5 {
        assert_eq!(
            api.post("/apps", json!({"app_name": format!("app{i}"), "org_slug": "acme"})).await.0,
            StatusCode::CREATED
        );
    }
}
