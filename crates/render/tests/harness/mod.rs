//! The Render harness of the shared suites (shipit-testkit's conformance checks and fault
//! matrix): a fresh Render fake with one Pro workspace, a platform talking to it, and the
//! fake's fault controls in the suites' platform-neutral terms.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use secrecy::SecretString;
use shipit_core::retry::RetryPolicy;
use shipit_core::{App, Platform, PlatformKind};
use shipit_render::RenderPlatform;
use shipit_testkit::conformance::{self, CallClass, Harness, HttpFault, HttpFaults, LoggedRequest};
use shipit_testkit::render::{API_KEY, Behaviour, Fault, RecordedRequest, RenderFake};

/// The client's timeout for one request: short, so a slow answer can outlast it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(500);

fn policy() -> RetryPolicy {
    RetryPolicy::fast()
}

/// A platform on `fake`.
pub fn platform(fake: &RenderFake) -> RenderPlatform {
    RenderPlatform::builder()
        .with_base_url(fake.uri())
        .token(SecretString::from(API_KEY.to_string()))
        .poll_interval(Duration::from_millis(10))
        .retry(policy())
        .request_timeout(REQUEST_TIMEOUT)
        .build()
        .unwrap()
}

pub struct Render {
    pub fake: RenderFake,
    pub owner: String,
    platform: RenderPlatform,
    observer: RenderPlatform,
    app: App,
}

impl Render {
    pub async fn new() -> Self {
        let fake = RenderFake::start().await;
        let owner = fake.seed_pro_owner("acme");
        let (platform, observer) = (self::platform(&fake), self::platform(&fake));
        let manifest = conformance::manifest("render", "[targets.render]\nregion = \"oregon\"");
        let app = shipit_core::parse(&manifest, "shipit.toml").unwrap();
        Self { fake, owner, platform, observer, app }
    }

    /// The Render service name of `service` in staging (`conf-api-staging`).
    pub fn service_name(&self, service: &str) -> String {
        self.app.platform_name(PlatformKind::Render, service, "staging")
    }

    pub fn service(&self, service: &str) -> Option<shipit_testkit::render::FakeService> {
        self.fake.service_by_name(&self.owner, &self.service_name(service))
    }
}

impl Harness for Render {
    fn platform(&self) -> &dyn Platform {
        &self.platform
    }
    fn app(&self) -> &App {
        &self.app
    }
    fn make_unhealthy(&self, digest: &str) {
        self.fake.set_behaviour(digest, Behaviour::Unhealthy);
    }
    fn make_crash(&self, digest: &str) {
        self.fake.set_behaviour(digest, Behaviour::Crash);
    }
    /// Render refuses a deploy of `digest` once the service's image setting points at it.
    fn fail_after_settings(&self, digest: &str) {
        self.fake.inject(Fault::RefuseImage { digest: digest.to_string(), status: 400 });
    }
    fn hold_lock(&self, _service: &str, _owner: &str) -> Result<(), String> {
        Err("Render keeps no locks".to_string())
    }
    fn locks_held(&self) -> usize {
        0
    }
    /// The digest of the service's image setting (what a deploy Render starts would run).
    fn settings_digest(&self, service: &str) -> Option<String> {
        let s = self.service(service)?;
        s.image_path.split_once('@').map(|(_, d)| d.to_string())
    }
    fn secret_value(&self, service: &str, name: &str) -> Option<String> {
        self.service(service)?.env_vars.get(name).cloned()
    }
    fn http(&self) -> Option<&dyn HttpFaults> {
        Some(self)
    }
    fn observer(&self) -> &dyn Platform {
        &self.observer
    }
    /// One create starts every instance (and the first deploy).
    fn creates_for(&self, _instances: usize) -> usize {
        1
    }
    fn no_record_before_create(&self) -> Option<&'static str> {
        Some(
            "a service is found by listing services by name, which answers an empty list (not a 404) for one that does not exist: the first deploy's `none` row covers it",
        )
    }
}

/// What a request does.
pub fn class(r: &RecordedRequest) -> CallClass {
    let segments = r.path.trim_matches('/').split('/').count();
    match r.method.as_str() {
        "GET" => CallClass::Read,
        "POST" if r.path.ends_with("/services") || r.path.ends_with("/deploys") || r.path.ends_with("/rollback") => {
            CallClass::CreateInstance
        }
        // `/v1/services/{id}`
        "PATCH" if segments == 3 && r.path.contains("/services/") => CallClass::UpdateInstance,
        _ => CallClass::OtherWrite,
    }
}

impl HttpFaults for Render {
    /// Reads are the GETs; a create is `POST /services` (it starts the first deploy); an update is
    /// the `PATCH /services/{id}` that points the service at an image; other writes the env var
    /// PUTs (a sync's). A 404 hits the service's own records (`GET /services/{id}/…`).
    fn inject(&self, fault: HttpFault, on: Option<CallClass>, times: u32) {
        let (method, path_contains) = match (fault, on) {
            (HttpFault::NotFound, _) => (Some("GET".to_string()), "/v1/services/".to_string()),
            (_, Some(CallClass::Read)) => (Some("GET".to_string()), "/v1/".to_string()),
            (_, Some(CallClass::CreateInstance)) => (Some("POST".to_string()), "/services$".to_string()),
            (_, Some(CallClass::UpdateInstance)) => (Some("PATCH".to_string()), "/services/$".to_string()),
            (_, Some(CallClass::OtherWrite)) => (Some("PUT".to_string()), "/env-vars/".to_string()),
            (_, None) => (None, "/v1/".to_string()),
        };
        let status = |status: u16, retry_after: Option<u64>| Fault::Status {
            method: method.clone(),
            path_contains: path_contains.clone(),
            status,
            times,
            retry_after,
        };
        let fault = match fault {
            HttpFault::RateLimited { retry_after_secs } => status(429, Some(retry_after_secs)),
            HttpFault::RateLimitedWithoutRetryAfter => status(429, None),
            HttpFault::ServerError { status: code } => status(code, None),
            HttpFault::Unauthorized => status(401, None),
            HttpFault::NotFound => status(404, None),
            HttpFault::Slow { delay } => Fault::Slow { method, path_contains, delay, times },
            HttpFault::Reset => Fault::Reset { method, path_contains, times },
            HttpFault::ResetAfterApplied => Fault::ResetAfter { method, path_contains, times },
            HttpFault::CutBody => Fault::CutBody { method, path_contains, times },
            HttpFault::Malformed => Fault::Malformed { method, path_contains, times },
            HttpFault::LostResponse { status: code } => {
                Fault::LostResponse { method, path_contains, status: code, times }
            }
            other => panic!("the Render fake has no fault for {other:?}"),
        };
        self.fake.inject(fault);
    }
    fn clear(&self) {
        self.fake.clear_faults();
    }
    fn requests(&self) -> Vec<LoggedRequest> {
        self.fake
            .requests()
            .into_iter()
            .map(|r| LoggedRequest {
                class: class(&r),
                status: (r.status != 0).then_some(r.status),
                method: r.method,
                path: r.path,
                operation: None,
            })
            .collect()
    }
    fn client_timeout(&self) -> Duration {
        REQUEST_TIMEOUT
    }
    fn attempts_per_call(&self) -> usize {
        policy().max_retries + 1
    }
    fn faults_left(&self) -> u32 {
        self.fake.faults_left()
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers of the Render-specific tests (deploy.rs, env_vars.rs, releases.rs, agreement.rs…).

/// The git sha every test release records.
pub const SHA: &str = "c0ffee1";

/// A platform configuration on `fake` (fast polling and retries), to add to before `build`.
pub fn config(fake: &RenderFake) -> shipit_render::RenderConfig {
    RenderPlatform::builder()
        .with_base_url(fake.uri())
        .token(SecretString::from(API_KEY.to_string()))
        .poll_interval(Duration::from_millis(10))
        .retry(policy())
        .request_timeout(REQUEST_TIMEOUT)
}

/// A manifest from its text.
pub fn app(text: &str) -> App {
    shipit_core::parse(text, "shipit.toml").unwrap()
}

/// Environment `env` of `app`.
pub fn target<'a>(app: &'a App, env: &str) -> shipit_core::Target<'a> {
    shipit_core::Target { app, env: app.environments.get(env).unwrap() }
}

/// Service `name` of environment `env` (with the environment's overrides).
pub fn service<'a>(app: &'a App, env: &str, name: &str) -> &'a shipit_core::Service {
    app.environments.get(env).unwrap().services.get(name).unwrap()
}

/// The digest of `service` at `label` (`sha256:` and the SHA-256 of `<service>-<label>`).
pub fn digest(service: &str, label: &str) -> String {
    conformance::digest(&format!("{service}-{label}"))
}

/// Deploy options of the tests: a short wait, the test sha.
pub fn opts() -> shipit_core::engine::DeployOptions {
    let mut o = shipit_core::engine::DeployOptions::default();
    o.wait_timeout = Duration::from_secs(10);
    o.git_sha = Some(SHA.to_string());
    o
}

/// The value every test offers for secret `name` before a deploy, as the CLI offers what its
/// environment has (Render puts a new service's secrets in the request that creates it).
pub fn offered(name: &str) -> String {
    format!("offered-{name}-value")
}

/// Offers [`offered`] values for every secret of `t`'s services.
pub fn offer_secrets(platform: &dyn Platform, t: shipit_core::Target<'_>) {
    let values = t
        .env
        .services
        .values()
        .flat_map(|s| platform.required_secrets(s))
        .map(|n| {
            let v = offered(&n);
            (n, secrecy::SecretString::from(v))
        })
        .collect();
    platform.offer_secrets(values);
}

/// Deploys `services` of `env` at `label` (digest [`digest`]) through the engine, after
/// [`offer_secrets`].
pub async fn deploy_with(
    platform: &dyn Platform,
    app: &App,
    env: &str,
    services: &[&str],
    label: &str,
    o: &shipit_core::engine::DeployOptions,
    events: &shipit_core::Events,
) -> Result<shipit_core::engine::Summary, shipit_core::Error> {
    let t = target(app, env);
    offer_secrets(platform, t);
    let mut images = std::collections::BTreeMap::new();
    for s in services {
        let svc = service(app, env, s);
        images.insert(s.to_string(), svc.image.with_tag(label).with_digest(&digest(s, label)));
    }
    shipit_core::engine::deploy_digests(platform, None, t, "deploy", &images, o, events).await
}

/// [`deploy_with`] with [`opts`] and no events, unwrapped.
pub async fn deploy(
    platform: &dyn Platform,
    app: &App,
    env: &str,
    services: &[&str],
    label: &str,
) -> shipit_core::engine::Summary {
    deploy_with(platform, app, env, services, label, &opts(), &shipit_core::Events::none()).await.unwrap()
}

/// The report of `service` in `summary`.
pub fn report<'a>(summary: &'a shipit_core::engine::Summary, service: &str) -> &'a shipit_core::engine::ServiceReport {
    summary.services.iter().find(|r| r.service == service).unwrap()
}

/// Requests received after the first `from`.
pub fn since(fake: &RenderFake, from: usize) -> Vec<RecordedRequest> {
    fake.requests().into_iter().skip(from).collect()
}

/// `METHOD path` of every write (not a GET) among `requests`.
pub fn writes(requests: &[RecordedRequest]) -> Vec<String> {
    requests.iter().filter(|r| r.method != "GET").map(|r| format!("{} {}", r.method, r.path)).collect()
}

/// A request straight to the fake (as a person would with curl): status and JSON body.
pub async fn raw(
    fake: &RenderFake,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let client = reqwest::Client::new();
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut rb = client.request(method, format!("{}{path}", fake.uri())).bearer_auth(API_KEY);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

/// Every event's text, for "never shows" checks.
pub fn shown(events: &std::sync::Arc<std::sync::Mutex<Vec<shipit_core::Event>>>) -> String {
    format!("{:?}", events.lock().unwrap())
}
