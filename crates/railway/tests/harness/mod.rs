//! The Railway harness of the shared suites (shipit-testkit's conformance checks and fault
//! matrix): a fresh Railway fake with project `conf` and environments `staging` and `production`,
//! a platform talking to it with an account token, and the fake's fault controls in the suites'
//! platform-neutral terms.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use secrecy::SecretString;
use shipit_core::retry::RetryPolicy;
use shipit_core::{App, Platform, PlatformKind};
use shipit_railway::{RailwayPlatform, RailwayToken};
use shipit_testkit::conformance::{self, CallClass, Harness, HttpFault, HttpFaults, LoggedRequest};
use shipit_testkit::railway::{
    API_TOKEN, Behaviour, FakeDeployment, FakeInstance, Fault, RailwayFake, RecordedRequest,
};

/// The client's timeout for one request: short, so a slow answer can outlast it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(500);

/// Queries: safe to repeat.
pub const READS: &[&str] =
    &["ProjectToken", "Projects", "Project", "ServiceInstance", "Variables", "Deployment", "Deployments", "Domains"];
/// The service's own records: what a "not found" is about.
const RECORDS: &[&str] = &["ServiceInstance", "Variables", "Deployments"];
/// Writes other than a deployment or the instance update.
const OTHER_WRITES: &[&str] =
    &["ServiceCreate", "ServiceInstanceLimitsUpdate", "VariableCollectionUpsert", "VariableDelete", "DeploymentCancel"];

fn policy() -> RetryPolicy {
    RetryPolicy::fast()
}

/// A platform on `fake` with `token`.
pub fn platform(fake: &RailwayFake, token: RailwayToken) -> RailwayPlatform {
    RailwayPlatform::builder()
        .with_base_url(fake.endpoint())
        .token(token)
        .poll_interval(Duration::from_millis(10))
        .retry(policy())
        .request_timeout(REQUEST_TIMEOUT)
        .build()
        .unwrap()
}

/// The account token the fake accepts.
pub fn api_token() -> RailwayToken {
    RailwayToken::Api(SecretString::from(API_TOKEN.to_string()))
}

pub struct Railway {
    pub fake: RailwayFake,
    pub project: String,
    pub staging: String,
    pub production: String,
    platform: RailwayPlatform,
    observer: RailwayPlatform,
    app: App,
}

impl Railway {
    pub async fn new() -> Self {
        let fake = RailwayFake::start().await;
        let project = fake.seed_project("conf");
        let staging = fake.seed_environment(&project, "staging");
        let production = fake.seed_environment(&project, "production");
        let platform = platform(&fake, api_token());
        let observer = platform_for_observer(&fake);
        let manifest = conformance::manifest("railway", "[targets.railway]\nproject = \"conf\"");
        let app = shipit_core::parse(&manifest, "shipit.toml").unwrap();
        Self { fake, project, staging, production, platform, observer, app }
    }

    /// The Railway service name of `service` (`{service}`).
    pub fn service_name(&self, service: &str) -> String {
        self.app.platform_name(PlatformKind::Railway, service, "staging")
    }

    /// The fake's id of `service`, once it exists.
    pub fn service_id(&self, service: &str) -> Option<String> {
        self.fake.service_id(&self.project, &self.service_name(service))
    }
}

fn platform_for_observer(fake: &RailwayFake) -> RailwayPlatform {
    platform(fake, api_token())
}

/// The `sha256:…` part of an image reference.
fn digest_of(image: &str) -> Option<String> {
    image.split_once('@').map(|(_, d)| d.to_string())
}

impl Harness for Railway {
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
    /// Railway refuses to start a deployment of `digest` once the instance points at it.
    fn fail_after_settings(&self, digest: &str) {
        self.fake.inject(Fault::RefuseDeploy {
            digest: digest.to_string(),
            message: "Failed to deploy: image could not be pulled".to_string(),
        });
    }
    fn hold_lock(&self, _service: &str, _owner: &str) -> Result<(), String> {
        Err("Railway keeps no locks".to_string())
    }
    fn locks_held(&self) -> usize {
        0
    }
    /// The digest the service instance's source points at (what any redeploy would run).
    fn settings_digest(&self, service: &str) -> Option<String> {
        let id = self.service_id(service)?;
        let instance = self.fake.instance(&self.project, &self.staging, &id)?;
        instance.image.as_deref().and_then(digest_of)
    }
    fn secret_value(&self, service: &str, name: &str) -> Option<String> {
        let id = self.service_id(service)?;
        self.fake.variable(&self.project, &self.staging, &id, name).flatten()
    }
    fn http(&self) -> Option<&dyn HttpFaults> {
        Some(self)
    }
    /// A client of its own: the platform's stops sending after a refused token.
    fn observer(&self) -> &dyn Platform {
        &self.observer
    }
    /// One deployment starts every replica.
    fn creates_for(&self, _instances: usize) -> usize {
        1
    }
    fn no_record_before_create(&self) -> Option<&'static str> {
        Some(
            "a service that does not exist has no record to read: a first deploy finds it missing from the project's services (the `none` row), and Railway answers \"not found\" inside a 200 only for ids it was given",
        )
    }
}

/// What a request does.
pub fn class(r: &RecordedRequest) -> CallClass {
    match r.operation.as_deref() {
        Some("ServiceInstanceDeployV2") => CallClass::CreateInstance,
        Some("ServiceInstanceUpdate") => CallClass::UpdateInstance,
        Some(op) if READS.contains(&op) => CallClass::Read,
        _ => CallClass::OtherWrite,
    }
}

fn ops(on: Option<CallClass>) -> Option<Vec<String>> {
    let names: &[&str] = match on {
        Some(CallClass::Read) => READS,
        Some(CallClass::CreateInstance) => &["ServiceInstanceDeployV2"],
        Some(CallClass::UpdateInstance) => &["ServiceInstanceUpdate"],
        Some(CallClass::OtherWrite) => OTHER_WRITES,
        None => return None,
    };
    Fault::only(names)
}

impl HttpFaults for Railway {
    /// Faults hit GraphQL operations by name: reads are the queries, creates the
    /// `serviceInstanceDeployV2`, updates the `serviceInstanceUpdate`. A "not found" is Railway's
    /// own: `errors[]` in a 200, on the service's records.
    fn inject(&self, fault: HttpFault, on: Option<CallClass>, times: u32) {
        let ops = ops(on);
        let fault = match fault {
            HttpFault::RateLimited { retry_after_secs } => {
                Fault::Status { ops, status: 429, retry_after: Some(retry_after_secs), times }
            }
            HttpFault::RateLimitedWithoutRetryAfter => Fault::Status { ops, status: 429, retry_after: None, times },
            HttpFault::ServerError { status } => Fault::Status { ops, status, retry_after: None, times },
            HttpFault::Unauthorized => Fault::Status { ops, status: 401, retry_after: None, times },
            HttpFault::NotFound => Fault::GraphqlError {
                ops: Fault::only(RECORDS),
                message: "ServiceInstance not found".to_string(),
                times,
            },
            HttpFault::Slow { delay } => Fault::Slow { ops, delay, times },
            HttpFault::Reset => Fault::Reset { ops, times },
            HttpFault::ResetAfterApplied => Fault::ResetAfter { ops, times },
            HttpFault::CutBody => Fault::CutBody { ops, times },
            HttpFault::Malformed => Fault::Malformed { ops, times },
            HttpFault::LostResponse { status } => Fault::LostResponse { ops, status, times },
            other => panic!("the Railway fake has no fault for {other:?}"),
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
                method: "POST".to_string(),
                path: "/graphql/v2".to_string(),
                operation: r.operation.clone(),
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
// For the focused tests (deploy.rs, variables.rs, releases.rs, tokens.rs, resolution.rs,
// faults.rs): a fake with project `conf` and environments `staging` and `production`, manifests
// written per test, and the engine driven as the CLI drives it.

/// Operations that change something on Railway (everything but the reads).
pub fn is_mutation(op: &str) -> bool {
    !READS.contains(&op)
}

/// The mutations among `ops`.
pub fn mutations(ops: &[String]) -> Vec<String> {
    ops.iter().filter(|op| is_mutation(op)).cloned().collect()
}

/// A fake with project `conf` (environments `staging` and `production`).
pub struct World {
    pub fake: RailwayFake,
    pub project: String,
    pub staging: String,
    pub production: String,
}

impl World {
    pub async fn new() -> Self {
        let fake = RailwayFake::start().await;
        let project = fake.seed_project("conf");
        let staging = fake.seed_environment(&project, "staging");
        let production = fake.seed_environment(&project, "production");
        Self { fake, project, staging, production }
    }

    /// A platform with the account token (a fresh one is a fresh `shipit` process: nothing
    /// cached).
    pub fn platform(&self) -> RailwayPlatform {
        platform(&self.fake, api_token())
    }

    /// A platform with a project token bound to `env_id` of the project.
    pub fn project_token_platform(&self, env_id: &str) -> RailwayPlatform {
        let token = self.fake.create_project_token(&self.project, env_id);
        platform(&self.fake, RailwayToken::Project(SecretString::from(token)))
    }

    /// The id of Railway service `name`.
    pub fn service(&self, name: &str) -> String {
        self.fake.service_id(&self.project, name).unwrap_or_else(|| panic!("no Railway service {name}"))
    }

    /// The staging instance of Railway service `name`.
    pub fn instance(&self, name: &str) -> FakeInstance {
        self.instance_in(&self.staging, name)
    }

    pub fn instance_in(&self, env_id: &str, name: &str) -> FakeInstance {
        self.fake.instance(&self.project, env_id, &self.service(name)).unwrap()
    }

    /// Staging deployments of `name`, newest first.
    pub fn deployments(&self, name: &str) -> Vec<FakeDeployment> {
        self.fake.deployments(&self.project, &self.staging, &self.service(name))
    }

    /// What serves `name` in staging.
    pub fn live(&self, name: &str) -> Option<FakeDeployment> {
        self.fake.live_deployment(&self.project, &self.staging, &self.service(name))
    }

    /// A staging variable of `name`.
    pub fn variable(&self, name: &str, var: &str) -> Option<String> {
        self.fake.variable(&self.project, &self.staging, &self.service(name), var).flatten()
    }

    /// Whether staging variable `var` of `name` is set at all.
    pub fn has_variable(&self, name: &str, var: &str) -> bool {
        self.fake.variable(&self.project, &self.staging, &self.service(name), var).is_some()
    }

    /// Sets a variable as if in Railway's dashboard.
    pub fn set_by_hand(&self, name: &str, var: &str, value: &str) {
        assert!(self.fake.seed_variable(&self.project, &self.staging, &self.service(name), var, Some(value)));
    }

    /// Operations received since request number `since` (a `fake.requests().len()`).
    pub fn ops_since(&self, since: usize) -> Vec<String> {
        self.fake.requests().into_iter().skip(since).filter_map(|r| r.operation).collect()
    }

    pub fn requests_now(&self) -> usize {
        self.fake.requests().len()
    }
}

/// The registry, app name and a `[targets.railway]` table every focused test's manifest shares;
/// `rest` has the services, databases and environments.
pub fn app(rest: &str) -> App {
    let text = format!("app = \"conf\"\n[registry]\nhost = \"registry.example.com\"\nnamespace = \"acme\"\n\n{rest}\n");
    shipit_core::parse(&text, "shipit.toml").unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// Environment `env` of `app`.
pub fn target<'a>(app: &'a App, env: &str) -> shipit_core::Target<'a> {
    shipit_core::Target { app, env: app.environments.get(env).unwrap_or_else(|| panic!("no environment {env}")) }
}

/// Deploy options: a 5 s wait, a git sha.
pub fn opts() -> shipit_core::engine::DeployOptions {
    let mut o = shipit_core::engine::DeployOptions::default();
    o.wait_timeout = Duration::from_secs(5);
    o.git_sha = Some("c0ffee1".to_string());
    o
}

/// The digest of `service` at `label` (`sha256:` of `<service>-<label>`).
pub fn digest(service: &str, label: &str) -> String {
    conformance::digest(&format!("{service}-{label}"))
}

/// The image of `service` pinned to its `label` digest.
pub fn image(app: &App, env: &str, service: &str, label: &str) -> shipit_core::ImageRef {
    let t = target(app, env);
    let svc = t.env.services.get(service).unwrap_or_else(|| panic!("no service {service}"));
    svc.image.with_tag(label).with_digest(&digest(service, label))
}

/// Deploys `services` of `env` at `label` through the engine.
pub async fn deploy_with(
    platform: &dyn Platform,
    app: &App,
    env: &str,
    services: &[&str],
    label: &str,
    o: &shipit_core::engine::DeployOptions,
    events: &shipit_core::Events,
) -> shipit_core::engine::Summary {
    let images = services.iter().map(|s| (s.to_string(), image(app, env, s, label))).collect();
    shipit_core::engine::deploy_digests(platform, None, target(app, env), "deploy", &images, o, events)
        .await
        .unwrap_or_else(|e| panic!("deploy {label}: {e}"))
}

/// Deploys `services` of staging at `label` with [`opts`].
pub async fn deploy(
    platform: &dyn Platform,
    app: &App,
    services: &[&str],
    label: &str,
) -> shipit_core::engine::Summary {
    deploy_with(platform, app, "staging", services, label, &opts(), &shipit_core::Events::none()).await
}

/// Syncs the secrets of `service` in staging from `values`.
pub async fn sync(platform: &dyn Platform, app: &App, service: &str, values: &[(&str, &str)]) {
    let values: Vec<(String, String)> = values.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    shipit_core::engine::sync_secrets(platform, target(app, "staging"), &[service.to_string()], |name| {
        values.iter().find(|(k, _)| k == name).map(|(_, v)| SecretString::from(v.clone()))
    })
    .await
    .unwrap();
}

/// The report of `service` in `summary`.
pub fn report<'a>(summary: &'a shipit_core::engine::Summary, service: &str) -> &'a shipit_core::engine::ServiceReport {
    summary.services.iter().find(|r| r.service == service).unwrap_or_else(|| panic!("{service} in {summary:?}"))
}
