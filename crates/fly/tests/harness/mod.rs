//! The Fly harness of the shared suites (shipit-testkit's conformance checks and fault matrix):
//! a fresh Fly fake, a platform talking to it, and the fake's fault controls in the suites'
//! platform-neutral terms. Used by `tests/conformance.rs` and `tests/fault_matrix.rs`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::time::Duration;

use secrecy::SecretString;
use shipit_core::retry::RetryPolicy;
use shipit_core::{App, Platform, PlatformKind};
use shipit_fly::FlyPlatform;
use shipit_testkit::conformance::{self, CallClass, Harness, HttpFault, HttpFaults, LoggedRequest};
use shipit_testkit::fly::{Behaviour, Fault, FlyFake, LEASE_OWNER, RecordedRequest, TOKEN};

/// The client's timeout for one ordinary request: short, so a slow answer can outlast it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(500);

/// The retry policy of the platform under test.
fn policy() -> RetryPolicy {
    RetryPolicy::fast()
}

pub struct Fly {
    pub fake: FlyFake,
    platform: FlyPlatform,
    /// A second client on the same fake, for the suites' own reads of what runs.
    observer: FlyPlatform,
    app: App,
}

fn client(fake: &FlyFake) -> FlyPlatform {
    FlyPlatform::builder()
        .with_base_url(fake.uri())
        .token(SecretString::from(TOKEN.to_string()))
        .poll_interval(Duration::from_millis(10))
        .retry(policy())
        .request_timeout(REQUEST_TIMEOUT)
        .build()
        .unwrap()
}

impl Fly {
    pub async fn new() -> Self {
        let fake = FlyFake::start().await;
        let platform = client(&fake);
        let observer = client(&fake);
        let manifest = conformance::manifest("fly", "[targets.fly]\norg = \"acme\"\nprimary_region = \"iad\"");
        let app = shipit_core::parse(&manifest, "shipit.toml").unwrap();
        Self { fake, platform, observer, app }
    }

    /// The Fly app of `service` in staging (`conf-api-staging`).
    pub fn fly_app(&self, service: &str) -> String {
        self.app.platform_name(PlatformKind::Fly, service, "staging")
    }
}

impl Harness for Fly {
    fn platform(&self) -> &dyn Platform {
        &self.platform
    }
    fn app(&self) -> &App {
        &self.app
    }
    fn make_unhealthy(&self, digest: &str) {
        self.fake.set_behaviour(digest, Behaviour::FailingChecks);
    }
    fn make_crash(&self, digest: &str) {
        self.fake.set_behaviour(digest, Behaviour::Crash);
    }
    /// The first machine write of `digest` passes, every later one is refused (422): with api's
    /// two machines rolled one at a time, the deploy fails after the first machine moved.
    fn fail_after_settings(&self, digest: &str) {
        self.fake.inject(Fault::RefuseImage { digest: digest.to_string(), after: 1, status: 422 });
    }
    /// A lease held by `owner` on every machine of the service.
    fn hold_lock(&self, service: &str, owner: &str) -> Result<(), String> {
        let app = self.fly_app(service);
        let machines = self.fake.machines(&app);
        if machines.is_empty() {
            return Err(format!("{app} has no machine to lease"));
        }
        for m in machines {
            self.fake.hold_lease(&app, &m.id, owner).ok_or_else(|| format!("no machine {} in {app}", m.id))?;
        }
        Ok(())
    }
    fn locks_held(&self) -> usize {
        self.fake.leases_held().iter().filter(|(_, _, owner)| owner == LEASE_OWNER).count()
    }
    /// The digest every machine's config names (the settings a restart or a new machine uses).
    fn settings_digest(&self, service: &str) -> Option<String> {
        let digests: BTreeSet<Option<String>> =
            self.fake.machines(&self.fly_app(service)).into_iter().map(|m| m.digest).collect();
        match digests.into_iter().collect::<Vec<_>>().as_slice() {
            [Some(d)] => Some(d.clone()),
            _ => None,
        }
    }
    fn secret_value(&self, service: &str, name: &str) -> Option<String> {
        self.fake.secret_value(&self.fly_app(service), name)
    }
    fn http(&self) -> Option<&dyn HttpFaults> {
        Some(self)
    }
    /// A client of its own: the platform's stops sending after a 401.
    fn observer(&self) -> &dyn Platform {
        &self.observer
    }
}

/// What a request to the Machines API does.
fn class(r: &RecordedRequest) -> CallClass {
    let segments = r.path.trim_matches('/').split('/').count();
    match r.method.as_str() {
        "GET" => CallClass::Read,
        "POST" if r.path.ends_with("/machines") => CallClass::CreateInstance,
        // `/v1/apps/{app}/machines/{id}`
        "POST" if segments == 5 && r.path.contains("/machines/") => CallClass::UpdateInstance,
        _ => CallClass::OtherWrite,
    }
}

impl HttpFaults for Fly {
    /// Reads are the GETs under `/v1/apps/`; creates the `POST …/machines`, updates the
    /// `POST …/machines/{id}`; other writes any `POST` under `/v1/apps` (creates and updates
    /// included: in a rollout the first of them is a lease, in a sync the secrets).
    fn inject(&self, fault: HttpFault, on: Option<CallClass>, times: u32) {
        let (method, path_contains) = match on {
            Some(CallClass::Read) => (Some("GET".to_string()), "/v1/apps/".to_string()),
            Some(CallClass::CreateInstance) => (Some("POST".to_string()), "/machines$".to_string()),
            Some(CallClass::UpdateInstance) => (Some("POST".to_string()), "/machines/$".to_string()),
            Some(CallClass::OtherWrite) => (Some("POST".to_string()), "/v1/apps".to_string()),
            None => (None, "/v1/".to_string()),
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
            other => panic!("the Fly fake has no fault for {other:?}"),
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
