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
use shipit_testkit::railway::{API_TOKEN, Behaviour, Fault, RailwayFake, RecordedRequest};

/// The client's timeout for one request: short, so a slow answer can outlast it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(500);

/// Queries: safe to repeat.
pub const READS: &[&str] =
    &["ProjectToken", "Projects", "Project", "ServiceInstance", "Variables", "Deployment", "Deployments"];
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
