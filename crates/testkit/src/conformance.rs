//! The conformance suite: one list of checks every platform must pass against its fake.
//!
//! [`CHECKS`] is the list, and the only one: each [`Check`] has its name, what it [`Needs`]
//! (platform [`Capabilities`] like locks or strategies, and harness abilities like HTTP fault
//! controls) and the async function that runs it over a [`Harness`]. [`run_all`] runs every check
//! on a fresh harness and returns a [`SuiteReport`] of what passed, what failed and what was
//! skipped, by name and with the reason; skips are printed where `cargo test` shows them, so a
//! missing feature is visible rather than silently passing.
//!
//! Every check asserts what a user would check, never a platform's mechanism: which digest
//! serves ([`Platform::status`]), which digest the service's settings point at
//! ([`Harness::settings_digest`]: what a redeploy or a variable change would ship), which release
//! is live and which are rollback targets, the verdict and per-service results of the
//! [`Summary`], that no lock is left behind, that no secret value appears in any
//! event. A failed check returns `Err(String)` saying what was expected.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use secrecy::SecretString;
use shipit_core::engine::{self, DeployOptions, OnFailure, Outcome, RollbackTo, ServiceResult, Summary};
use shipit_core::{App, Capabilities, ErrorKind, Event, Events, Platform, Release, ReleaseStatus, Strategy, Target};

/// What the suite needs from a platform's test setup (one fresh harness per check).
pub trait Harness: Send + Sync {
    /// The platform under test, talking to its fake.
    fn platform(&self) -> &dyn Platform;
    /// The manifest the suite deploys ([`manifest`]): environment `staging` with a service `api`
    /// (a port, a health check, the secret `API_SECRET`, two instances) and a worker `worker`.
    fn app(&self) -> &App;
    /// From now on, instances running `digest` fail their health checks.
    fn make_unhealthy(&self, digest: &str);
    /// From now on, instances running `digest` exit right after they start.
    fn make_crash(&self, digest: &str);
    /// From now on, a deploy of `digest` fails *after* the service's settings moved to it, before
    /// the new release serves (Fly: the second machine's update is refused; Railway: the
    /// deployment cannot be started once the source points at the image).
    fn fail_after_settings(&self, digest: &str);
    /// Someone else (`owner`) holds the lock of `service` from now on. The service has been
    /// deployed once when this is called.
    fn hold_lock(&self, service: &str, owner: &str) -> Result<(), String>;
    /// Locks held by shipit still on the platform (someone else's held with
    /// [`hold_lock`](Self::hold_lock) do not count).
    fn locks_held(&self) -> usize;
    /// The digest `service`'s settings point at: what a redeploy, a restart or a variable change
    /// would run (Fly: what every machine's config names; Railway and Render: the service's
    /// source). `None` when it has none, or several.
    fn settings_digest(&self, service: &str) -> Option<String>;
    /// The value the platform holds for secret `name` of `service`, if any.
    fn secret_value(&self, service: &str, name: &str) -> Option<String>;
    /// HTTP fault controls and the request log, for a platform reached over HTTP.
    fn http(&self) -> Option<&dyn HttpFaults> {
        None
    }
    /// A platform client for the suite's own reads of what runs (the fault matrix's "what a
    /// user's next `shipit status` sees"), not hindered by what a fault did to
    /// [`platform`](Self::platform)'s client (a client that stops after a 401 sends nothing
    /// more). By default the platform itself; its requests are logged like any other, after the
    /// operation's.
    fn observer(&self) -> &dyn Platform {
        self.platform()
    }
    /// How many instance creates ([`CallClass::CreateInstance`]) bring up `instances` instances:
    /// one per instance by default (a Fly machine each); Railway starts every replica with one
    /// deployment.
    fn creates_for(&self, instances: usize) -> usize {
        instances
    }
    /// Why a 404 on the service's own record cannot happen before a first deploy, if it cannot
    /// (Railway: a service that does not exist yet has no record to read; the first deploy finds
    /// it missing from the project's service list). `None`: the first deploy reads the service's
    /// record, and a 404 there means "create it".
    fn no_record_before_create(&self) -> Option<&'static str> {
        None
    }
}

/// Faults at the HTTP level, and the log of the requests the platform sent.
pub trait HttpFaults: Send + Sync {
    /// The next `times` requests of class `on` (any request with `None`) get `fault`.
    fn inject(&self, fault: HttpFault, on: Option<CallClass>, times: u32);
    /// Removes every fault injected, spent or not.
    fn clear(&self);
    /// Every request received so far, in order of arrival.
    fn requests(&self) -> Vec<LoggedRequest>;
    /// The timeout the platform's client gives one ordinary request.
    fn client_timeout(&self) -> Duration;
    /// How many times the platform's client sends one retried request at most: the first
    /// attempt and its retries (the retry policy's cap).
    fn attempts_per_call(&self) -> usize;
    /// Uses of the injected faults not met yet (0 once every injected fault has hit).
    fn faults_left(&self) -> u32;
}

/// One HTTP fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpFault {
    /// `429 Too Many Requests` with `Retry-After`.
    RateLimited {
        /// Seconds in `Retry-After`.
        retry_after_secs: u64,
    },
    /// `429 Too Many Requests` without `Retry-After`: the client picks its own delay.
    RateLimitedWithoutRetryAfter,
    /// A 5xx answer (e.g. 503); the request is not applied.
    ServerError {
        /// The status.
        status: u16,
    },
    /// The request is applied, but its answer comes after `delay` (past the client's timeout).
    Slow {
        /// How long the answer takes.
        delay: Duration,
    },
    /// The connection is reset once the request arrived; the request is not applied.
    Reset,
    /// The request is applied, then the connection is reset before any answer: a lost
    /// response the client sees as a network error.
    ResetAfterApplied,
    /// The request is applied, and its answer's body stops short of its `Content-Length`: the
    /// connection closes mid-body (an answer without a body arrives whole).
    CutBody,
    /// `404 Not Found`, as if the thing asked for did not exist; the request is not applied.
    NotFound,
    /// The request is applied, but the answer is a 200 whose body cannot be parsed.
    Malformed,
    /// `401 Unauthorized`.
    Unauthorized,
    /// The request is applied, but the client gets `status` (e.g. 503) instead of the answer.
    LostResponse {
        /// The status the client sees.
        status: u16,
    },
}

/// What a request does, in platform-neutral terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallClass {
    /// A read: safe to repeat.
    Read,
    /// The call that creates one instance (a Fly machine, a Railway deployment…): never safe to
    /// repeat blindly.
    CreateInstance,
    /// The call that changes what one existing instance runs (a Fly machine update): repeating
    /// it blindly restarts the instance again.
    UpdateInstance,
    /// Any other write.
    OtherWrite,
}

/// One request in the log of [`HttpFaults::requests`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    /// `GET`, `POST`…
    pub method: String,
    /// The path (with its API prefix, e.g. `/v1/apps/x/machines`).
    pub path: String,
    /// The GraphQL operation name, for GraphQL APIs.
    pub operation: Option<String>,
    /// The status answered; `None` when the connection was reset instead.
    pub status: Option<u16>,
    /// What the request does.
    pub class: CallClass,
}

impl LoggedRequest {
    /// `METHOD path`, or the GraphQL operation: what identifies the call when it is repeated.
    pub fn call(&self) -> String {
        match &self.operation {
            Some(op) => op.clone(),
            None => format!("{} {}", self.method, self.path),
        }
    }

    fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// What a check needs to be meaningful; a check whose needs are not met is skipped, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// [`Capabilities::locks`].
    pub locks: bool,
    /// [`Capabilities::native_rollback`].
    pub native_rollback: bool,
    /// Strategies the platform must support ([`Capabilities::strategies`]).
    pub strategies: &'static [Strategy],
    /// At least one strategy the platform does *not* support.
    pub unsupported_strategy: bool,
    /// [`Harness::http`].
    pub http_faults: bool,
    /// A first deploy that reads the service's own record ([`Harness::no_record_before_create`]).
    pub record_before_create: bool,
}

impl Needs {
    /// Nothing beyond the trait.
    pub const NOTHING: Needs = Needs {
        locks: false,
        native_rollback: false,
        strategies: &[],
        unsupported_strategy: false,
        http_faults: false,
        record_before_create: false,
    };
    /// Locks.
    pub const LOCKS: Needs = Needs { locks: true, ..Needs::NOTHING };
    /// HTTP fault controls.
    pub const HTTP: Needs = Needs { http_faults: true, ..Needs::NOTHING };

    /// Why a check with these needs cannot run on `h`, if it cannot.
    pub fn unmet(&self, caps: &Capabilities, h: &dyn Harness) -> Option<String> {
        let kind = h.platform().kind();
        if self.locks && !caps.locks {
            return Some(format!("needs locks; {kind} keeps none"));
        }
        if self.native_rollback && !caps.native_rollback {
            return Some(format!("needs a native rollback; {kind} has none"));
        }
        if let Some(s) = self.strategies.iter().find(|s| !caps.supports(Some(**s))) {
            let has = if caps.strategies.is_empty() {
                "only its own way".to_string()
            } else {
                caps.strategies.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            };
            return Some(format!("needs the {} strategy; {kind} has {has}", s.as_str()));
        }
        if self.unsupported_strategy && ALL_STRATEGIES.iter().all(|s| caps.supports(Some(*s))) {
            return Some(format!("needs a strategy {kind} lacks; it has them all"));
        }
        if self.record_before_create
            && let Some(why) = h.no_record_before_create()
        {
            return Some(format!("needs a record of the service before its first deploy; on {kind}, {why}"));
        }
        if self.http_faults && h.http().is_none() {
            return Some(
                "needs HTTP fault controls; this harness has none (the platform is not reached over HTTP)".into(),
            );
        }
        None
    }
}

const ALL_STRATEGIES: [Strategy; 4] = [Strategy::Rolling, Strategy::Immediate, Strategy::Canary, Strategy::Bluegreen];

/// The future a check returns.
pub type CheckFuture<'a> = BoxFuture<'a, Result<(), String>>;

/// One check of the suite.
#[derive(Clone, Copy)]
pub struct Check {
    /// Its name (the function's).
    pub name: &'static str,
    /// What it needs.
    pub needs: Needs,
    /// Runs it.
    pub run: for<'a> fn(&'a dyn Harness) -> CheckFuture<'a>,
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Check").field("name", &self.name).field("needs", &self.needs).finish_non_exhaustive()
    }
}

macro_rules! check {
    ($f:ident, $needs:expr) => {
        Check { name: stringify!($f), needs: $needs, run: |h| Box::pin($f(h)) }
    };
}

/// Every check, once.
pub const CHECKS: &[Check] = &[
    check!(deploy_update_and_releases, Needs::NOTHING),
    check!(unhealthy_release_is_rolled_back, Needs::NOTHING),
    check!(crash_fails_fast, Needs::NOTHING),
    check!(leave_on_failure, Needs::NOTHING),
    check!(atomic_rolls_back_every_service, Needs::NOTHING),
    check!(rollback_to_named_and_previous, Needs::NOTHING),
    check!(secrets_never_in_events, Needs::NOTHING),
    check!(secrets_sync_refuses_missing, Needs::NOTHING),
    check!(failure_after_settings_moved_is_restored, Needs::NOTHING),
    check!(held_lock_changes_nothing, Needs::LOCKS),
    check!(racing_deploys_agree_with_what_runs, Needs::LOCKS),
    check!(rolling_strategy_deploys, Needs { strategies: &[Strategy::Rolling], ..Needs::NOTHING }),
    check!(missing_strategy_is_refused_before_any_change, Needs { unsupported_strategy: true, ..Needs::NOTHING }),
    check!(rate_limits_and_5xx_are_retried, Needs::HTTP),
    check!(server_errors_past_the_cap_change_nothing, Needs::HTTP),
    check!(slow_response_past_the_timeout_is_retried, Needs::HTTP),
    check!(reset_connection_is_retried, Needs::HTTP),
    check!(malformed_answer_is_not_taken_for_truth, Needs::HTTP),
    check!(lost_create_is_never_sent_twice, Needs::HTTP),
    check!(unauthorized_stops_at_once, Needs::HTTP),
];

/// A check by name.
pub fn check(name: &str) -> Option<&'static Check> {
    CHECKS.iter().find(|c| c.name == name)
}

/// How one check went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckResult {
    /// Every expectation held.
    Passed,
    /// What was expected and did not happen.
    Failed(String),
    /// Not run, and why.
    Skipped(String),
}

/// How long one check may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs one check on `h`, or says why it is skipped.
pub async fn run_check(check: &Check, h: &dyn Harness) -> CheckResult {
    if let Some(why) = check.needs.unmet(&h.platform().capabilities(), h) {
        return CheckResult::Skipped(why);
    }
    match tokio::time::timeout(CHECK_TIMEOUT, (check.run)(h)).await {
        Ok(Ok(())) => CheckResult::Passed,
        Ok(Err(e)) => CheckResult::Failed(e),
        Err(_) => CheckResult::Failed(format!("did not finish within {} s", CHECK_TIMEOUT.as_secs())),
    }
}

/// What a run of the suite came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SuiteReport {
    /// Checks that passed.
    pub passed: Vec<&'static str>,
    /// Checks that failed, with what was expected.
    pub failed: Vec<(&'static str, String)>,
    /// Checks skipped, with the reason.
    pub skipped: Vec<(&'static str, String)>,
}

impl SuiteReport {
    /// Whether no check failed.
    pub fn ok(&self) -> bool {
        self.failed.is_empty()
    }

    /// Names of the skipped checks, in suite order.
    pub fn skipped_names(&self) -> Vec<&'static str> {
        self.skipped.iter().map(|(n, _)| *n).collect()
    }
}

impl fmt::Display for SuiteReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "conformance: {} passed, {} failed, {} skipped",
            self.passed.len(),
            self.failed.len(),
            self.skipped.len()
        )?;
        for (name, why) in &self.failed {
            writeln!(f, "  FAILED  {name}: {why}")?;
        }
        for (name, why) in &self.skipped {
            writeln!(f, "  SKIPPED {name}: {why}")?;
        }
        Ok(())
    }
}

/// Runs every check, each on a fresh harness from `make`, and prints every skip and failure to
/// stderr (directly, so `cargo test` shows them even when the test passes).
pub async fn run_all<H, F, Fut>(mut make: F) -> SuiteReport
where
    H: Harness,
    F: FnMut() -> Fut,
    Fut: Future<Output = H>,
{
    let mut report = SuiteReport::default();
    let mut err = std::io::stderr();
    for check in CHECKS {
        let h = make().await;
        match run_check(check, &h).await {
            CheckResult::Passed => report.passed.push(check.name),
            CheckResult::Failed(why) => {
                let _ = writeln!(err, "conformance FAILED  {}: {why}", check.name);
                report.failed.push((check.name, why));
            }
            CheckResult::Skipped(why) => {
                let _ = writeln!(err, "conformance SKIPPED {}: {why}", check.name);
                report.skipped.push((check.name, why));
            }
        }
    }
    let _ = writeln!(
        err,
        "conformance: {} passed, {} failed, {} skipped",
        report.passed.len(),
        report.failed.len(),
        report.skipped.len()
    );
    report
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// A digest made from a short label, for tests (`sha256:` and the label's SHA-256).
pub fn digest(label: &str) -> String {
    use sha2::{Digest, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(label.as_bytes())))
}

/// The manifest every platform's conformance run deploys (pass the platform's target name and
/// its `[targets.*]` table).
pub fn manifest(target: &str, target_table: &str) -> String {
    format!(
        r#"app = "conf"
[registry]
host = "registry.example.com"
namespace = "acme"

[services.api]
port = 8080
health = {{ path = "/healthz", interval = "1s", timeout = "1s", grace = "1s" }}
env = {{ MODE = "test" }}
secrets = ["API_SECRET"]
scale = {{ min = 2, max = 2 }}

[services.worker]
command = ["node", "worker.js"]

[environments.staging]
target = "{target}"

{target_table}
"#
    )
}

pub(crate) fn opts() -> DeployOptions {
    let mut o = DeployOptions::default();
    o.wait_timeout = Duration::from_secs(2);
    o.git_sha = Some("c0ffee1".to_string());
    o
}

pub(crate) fn target(h: &dyn Harness) -> Result<Target<'_>, String> {
    let env = h.app().environments.get("staging").ok_or("the suite's manifest needs a `staging` environment")?;
    Ok(Target { app: h.app(), env })
}

pub(crate) fn images(
    h: &dyn Harness,
    services: &[&str],
    label: &str,
) -> Result<BTreeMap<String, shipit_core::ImageRef>, String> {
    let t = target(h)?;
    let mut images = BTreeMap::new();
    for s in services {
        let svc = t.env.services.get(*s).ok_or_else(|| format!("no service {s}"))?;
        images.insert(s.to_string(), svc.image.with_tag(label).with_digest(&digest(&format!("{s}-{label}"))));
    }
    Ok(images)
}

/// The value offered for every secret before a deploy; it must never appear in an event.
pub const OFFERED_SECRET: &str = "offered-s3cret-that-must-not-leak";

/// What the CLI does before a deploy: offer the secret values it has, [`OFFERED_SECRET`] for
/// each (a platform that creates a service with its secrets needs them; others ignore them).
pub(crate) fn offer_secrets(h: &dyn Harness, t: Target<'_>) {
    let offered = t
        .env
        .services
        .values()
        .flat_map(|s| h.platform().required_secrets(s))
        .map(|n| (n, SecretString::from(OFFERED_SECRET.to_string())))
        .collect();
    h.platform().offer_secrets(offered);
}

/// Deploys `services` at `label` (digest `<service>-<label>`) through the engine, after
/// offering [`OFFERED_SECRET`] for each secret, as the CLI offers the values it has.
pub(crate) async fn deploy_to(
    h: &dyn Harness,
    services: &[&str],
    label: &str,
    o: DeployOptions,
    events: &Events,
) -> Result<Summary, String> {
    let t = target(h)?;
    offer_secrets(h, t);
    let images = images(h, services, label)?;
    engine::deploy_digests(h.platform(), None, t, "deploy", &images, &o, events)
        .await
        .map_err(|e| format!("deploy {label}: {e}"))
}

/// The digest `service` serves, from the platform's status.
async fn running(h: &dyn Harness, service: &str) -> Result<Option<String>, String> {
    let t = target(h)?;
    let svc = t.env.services.get(service).ok_or_else(|| format!("no service {service}"))?;
    let st = h.platform().status(t, svc).await.map_err(|e| format!("status of {service}: {e}"))?;
    Ok(st.digest)
}

async fn releases(h: &dyn Harness, service: &str) -> Result<Vec<Release>, String> {
    let t = target(h)?;
    let svc = t.env.services.get(service).ok_or_else(|| format!("no service {service}"))?;
    h.platform().releases(t, svc).await.map_err(|e| format!("releases of {service}: {e}"))
}

pub(crate) fn expect(cond: bool, what: impl Into<String>) -> Result<(), String> {
    if cond { Ok(()) } else { Err(what.into()) }
}

/// `service` serves `label`'s digest and its settings point at it too.
async fn on(h: &dyn Harness, service: &str, label: &str, when: &str) -> Result<(), String> {
    let want = digest(&format!("{service}-{label}"));
    let serving = running(h, service).await?;
    expect(
        serving.as_deref() == Some(want.as_str()),
        format!("{when}: {service} serves {label} ({want}), not {serving:?}"),
    )?;
    let settings = h.settings_digest(service);
    expect(
        settings.as_deref() == Some(want.as_str()),
        format!("{when}: {service}'s settings point at {label} ({want}), not {settings:?}: a redeploy would ship that"),
    )
}

fn result_of(s: &Summary, service: &str) -> Option<ServiceResult> {
    s.services.iter().find(|r| r.service == service).map(|r| r.result)
}

fn no_locks(h: &dyn Harness) -> Result<(), String> {
    let n = h.locks_held();
    expect(n == 0, format!("every lock was released ({n} still held)"))
}

fn rollbacks_started(seen: &Arc<Mutex<Vec<Event>>>) -> Result<usize, String> {
    let events = seen.lock().map_err(|e| e.to_string())?;
    Ok(events.iter().filter(|e| matches!(e, Event::RollbackStarted { .. })).count())
}

fn http(h: &dyn Harness) -> Result<&dyn HttpFaults, String> {
    h.http().ok_or_else(|| "the harness has no HTTP fault controls".to_string())
}

// ---------------------------------------------------------------------------------------------
// The checks

/// First deploy, redeploy of the same digest, update: the service serves exactly what was
/// asked, its settings point at it, releases list newest first with the live one on top.
pub async fn deploy_update_and_releases(h: &dyn Harness) -> Result<(), String> {
    let events = Events::none();
    let s = deploy_to(h, &["api", "worker"], "v1", opts(), &events).await?;
    expect(s.outcome == Outcome::Succeeded, format!("first deploy: {s:?}"))?;
    on(h, "api", "v1", "after the first deploy").await?;
    on(h, "worker", "v1", "after the first deploy").await?;

    let again = deploy_to(h, &["api"], "v1", opts(), &events).await?;
    expect(
        result_of(&again, "api") == Some(ServiceResult::Unchanged) && again.outcome == Outcome::Succeeded,
        format!("deploying the running digest again changes nothing: {again:?}"),
    )?;

    let s = deploy_to(h, &["api"], "v2", opts(), &events).await?;
    expect(s.outcome == Outcome::Succeeded, format!("update: {s:?}"))?;
    on(h, "api", "v2", "after the update").await?;
    let report = s.services.first().ok_or("the summary lists api")?;
    expect(
        report.running_digest.as_deref() == Some(digest("api-v2").as_str()),
        format!("the summary says what runs: {report:?}"),
    )?;

    let releases = releases(h, "api").await?;
    let first = releases.first().ok_or("no releases listed")?;
    expect(
        first.status == ReleaseStatus::Live && first.digest.as_deref() == Some(digest("api-v2").as_str()),
        format!("newest release is v2 and live: {releases:?}"),
    )?;
    expect(
        releases
            .iter()
            .any(|r| r.digest.as_deref() == Some(digest("api-v1").as_str()) && r.status == ReleaseStatus::Superseded),
        format!("v1 is listed as superseded: {releases:?}"),
    )?;
    expect(first.git_sha.as_deref() == Some("c0ffee1"), format!("the git sha is recorded: {first:?}"))?;
    no_locks(h)
}

/// A release whose health checks fail is rolled back: the old digest serves again, the
/// settings point at it again, the failed release is marked failed, and a later `rollback`
/// never returns to it.
pub async fn unhealthy_release_is_rolled_back(h: &dyn Harness) -> Result<(), String> {
    let events = Events::none();
    deploy_to(h, &["api"], "good", opts(), &events).await?;
    h.make_unhealthy(&digest("api-bad"));
    let s = deploy_to(h, &["api"], "bad", opts(), &events).await?;
    expect(matches!(s.outcome, Outcome::TimedOut | Outcome::RolledBack), format!("unhealthy release: {s:?}"))?;
    expect(result_of(&s, "api") == Some(ServiceResult::RolledBack), format!("api rolled back: {s:?}"))?;
    on(h, "api", "good", "after the rollback").await?;
    let releases = releases(h, "api").await?;
    expect(
        releases
            .iter()
            .any(|r| r.digest.as_deref() == Some(digest("api-bad").as_str()) && r.status == ReleaseStatus::Failed),
        format!("the bad release is marked failed: {releases:?}"),
    )?;
    let pick = engine::pick_release(&releases, &RollbackTo::Previous);
    expect(
        pick.as_ref().map_or(true, |r| r.digest.as_deref() != Some(digest("api-bad").as_str())),
        "a failed release is never a rollback target",
    )?;
    no_locks(h)
}

/// An instance that exits fails the deploy at once, long before the wait timeout.
pub async fn crash_fails_fast(h: &dyn Harness) -> Result<(), String> {
    let events = Events::none();
    deploy_to(h, &["api"], "stable", opts(), &events).await?;
    h.make_crash(&digest("api-crashy"));
    let mut o = opts();
    o.wait_timeout = Duration::from_secs(30);
    let started = Instant::now();
    let s = deploy_to(h, &["api"], "crashy", o, &events).await?;
    let took = started.elapsed();
    expect(s.outcome == Outcome::RolledBack, format!("a crash is a failure, rolled back: {s:?}"))?;
    expect(took < Duration::from_secs(10), format!("a crash fails fast, not after the 30 s timeout (took {took:?})"))?;
    on(h, "api", "stable", "after the crash").await?;
    no_locks(h)
}

/// `--on-failure leave` leaves the failed release in place, says so, records it as failed, and
/// a rollback never chooses it.
pub async fn leave_on_failure(h: &dyn Harness) -> Result<(), String> {
    let (events, seen) = Events::collect();
    deploy_to(h, &["worker"], "w1", opts(), &events).await?;
    h.make_crash(&digest("worker-w2"));
    let mut o = opts();
    o.on_failure = OnFailure::Leave;
    let s = deploy_to(h, &["worker"], "w2", o, &events).await?;
    expect(s.outcome == Outcome::Failed, format!("leave: the verdict says it was not restored: {s:?}"))?;
    expect(result_of(&s, "worker") == Some(ServiceResult::Failed), format!("worker failed and stays so: {s:?}"))?;
    expect(rollbacks_started(&seen)? == 0, "leave: nothing was rolled back")?;
    let releases = releases(h, "worker").await?;
    let failed = releases
        .iter()
        .find(|r| r.digest.as_deref() == Some(digest("worker-w2").as_str()))
        .ok_or_else(|| format!("the failed release w2 is listed: {releases:?}"))?;
    expect(failed.status == ReleaseStatus::Failed, format!("the failed release is recorded as failed: {failed:?}"))?;
    let previous = engine::pick_release(&releases, &RollbackTo::Previous);
    expect(
        previous.as_ref().map_or(true, |r| r.digest != failed.digest),
        format!("rollback to previous never picks the failed release: {previous:?}"),
    )?;
    expect(
        engine::pick_release(&releases, &RollbackTo::Release(failed.id.clone())).is_err(),
        "rollback to the failed release by name is refused",
    )?;
    no_locks(h)
}

/// `--atomic`: when one service fails, every service of the release goes back, and the release
/// is never a rollback target afterwards.
pub async fn atomic_rolls_back_every_service(h: &dyn Harness) -> Result<(), String> {
    let events = Events::none();
    deploy_to(h, &["api", "worker"], "a1", opts(), &events).await?;
    h.make_crash(&digest("worker-a2"));
    let mut o = opts();
    o.atomic = true;
    let s = deploy_to(h, &["api", "worker"], "a2", o, &events).await?;
    expect(s.outcome == Outcome::RolledBack, format!("atomic: {s:?}"))?;
    let api = s.services.iter().find(|r| r.service == "api").ok_or("api in the summary")?;
    expect(
        matches!(api.result, ServiceResult::RolledBackAtomic | ServiceResult::Skipped),
        format!("api was rolled back with the release (or never started): {api:?}"),
    )?;
    on(h, "api", "a1", "after the atomic rollback").await?;
    on(h, "worker", "a1", "after the atomic rollback").await?;
    let releases = releases(h, "api").await?;
    let pick = engine::pick_release(&releases, &RollbackTo::Previous);
    expect(
        pick.as_ref().map_or(true, |r| r.digest.as_deref() != Some(digest("api-a2").as_str())),
        format!("the release taken back is never a rollback target: {pick:?}"),
    )?;
    no_locks(h)
}

/// `rollback` returns to a named release, and to the previous successful one by default: the
/// digest serves again and the settings point at it.
pub async fn rollback_to_named_and_previous(h: &dyn Harness) -> Result<(), String> {
    let events = Events::none();
    for label in ["r1", "r2", "r3"] {
        let s = deploy_to(h, &["api"], label, opts(), &events).await?;
        expect(s.outcome == Outcome::Succeeded, format!("deploy {label}: {s:?}"))?;
    }
    let t = target(h)?;
    let releases = releases(h, "api").await?;
    let r1 = releases.iter().find(|r| r.digest.as_deref() == Some(digest("api-r1").as_str())).ok_or("r1 is listed")?;
    let mut o = opts();
    o.services = vec!["api".to_string()];
    let s =
        engine::rollback(h.platform(), None, t, &RollbackTo::Previous, &o, &events).await.map_err(|e| e.to_string())?;
    expect(s.outcome == Outcome::Succeeded, format!("rollback to previous: {s:?}"))?;
    on(h, "api", "r2", "previous of r3").await?;
    let s = engine::rollback(h.platform(), None, t, &RollbackTo::Release(r1.id.clone()), &o, &events)
        .await
        .map_err(|e| e.to_string())?;
    expect(s.outcome == Outcome::Succeeded, format!("rollback to r1: {s:?}"))?;
    on(h, "api", "r1", "named rollback to r1").await?;
    no_locks(h)
}

/// Secrets reach the platform; their values appear in no event.
pub async fn secrets_never_in_events(h: &dyn Harness) -> Result<(), String> {
    let value = "s3cr3t-value-that-must-not-leak";
    let (events, seen) = Events::collect();
    deploy_to(h, &["api"], "sec1", opts(), &events).await?;
    let t = target(h)?;
    let needed: Vec<String> = {
        let api = t.env.services.get("api").ok_or("no api")?;
        h.platform().required_secrets(api)
    };
    let lookup = |name: &str| needed.iter().any(|n| n == name).then(|| SecretString::from(value.to_string()));
    let done = engine::sync_secrets(h.platform(), t, &["api".to_string()], lookup).await.map_err(|e| e.to_string())?;
    expect(!done.is_empty(), "secrets were synced")?;
    expect(h.secret_value("api", "API_SECRET").as_deref() == Some(value), "the platform holds the value")?;
    deploy_to(h, &["api"], "sec2", opts(), &events).await?;
    let all = format!("{:?}", seen.lock().map_err(|e| e.to_string())?);
    expect(!all.contains(value) && !all.contains(OFFERED_SECRET), "no event carries a secret value")?;
    expect(!format!("{done:?}").contains(value), "the sync result carries names only")
}

/// Missing secret values: nothing is changed.
pub async fn secrets_sync_refuses_missing(h: &dyn Harness) -> Result<(), String> {
    let t = target(h)?;
    let r = engine::sync_secrets(h.platform(), t, &["api".to_string()], |_| None).await;
    expect(r.is_err(), "a missing value fails the sync")?;
    expect(h.secret_value("api", "API_SECRET").is_none(), "nothing was set")
}

/// A deploy that fails after the service's settings moved to the new image is restored: the
/// old digest serves and the settings point at it again, so no later redeploy ships the failed
/// image.
pub async fn failure_after_settings_moved_is_restored(h: &dyn Harness) -> Result<(), String> {
    let events = Events::none();
    deploy_to(h, &["api"], "s1", opts(), &events).await?;
    h.fail_after_settings(&digest("api-s2"));
    let s = deploy_to(h, &["api"], "s2", opts(), &events).await?;
    expect(s.outcome == Outcome::RolledBack, format!("a failure after the settings moved is rolled back: {s:?}"))?;
    expect(result_of(&s, "api") == Some(ServiceResult::RolledBack), format!("api rolled back: {s:?}"))?;
    on(h, "api", "s1", "after the failed deploy").await?;
    no_locks(h)
}

/// A lock someone else holds: the deploy changes nothing and says who holds it (the CLI's
/// exit 6), and nothing is restored.
pub async fn held_lock_changes_nothing(h: &dyn Harness) -> Result<(), String> {
    let owner = "someone-else@example.com";
    let (events, seen) = Events::collect();
    deploy_to(h, &["api"], "l1", opts(), &events).await?;
    h.hold_lock("api", owner)?;
    let s = deploy_to(h, &["api"], "l2", opts(), &events).await?;
    expect(s.outcome == Outcome::NothingChanged, format!("a held lock changes nothing: {s:?}"))?;
    let api = s.services.first().ok_or("the summary lists api")?;
    expect(api.result == ServiceResult::FailedUnchanged, format!("api failed before any change: {api:?}"))?;
    expect(api.error_kind == Some(ErrorKind::Conflict), format!("the failure is a conflict: {api:?}"))?;
    expect(
        api.error.as_deref().is_some_and(|e| e.contains(owner)),
        format!("the error names who holds the lock ({owner}): {api:?}"),
    )?;
    expect(rollbacks_started(&seen)? == 0, "nothing was restored: nothing had changed")?;
    on(h, "api", "l1", "after the refused deploy").await?;
    no_locks(h)
}

/// Two deploys at once: the environment ends on one release, its settings agree, and a deploy
/// that reports success is what runs (unless the other finished after it, successfully too).
pub async fn racing_deploys_agree_with_what_runs(h: &dyn Harness) -> Result<(), String> {
    let events = Events::none();
    deploy_to(h, &["api"], "base", opts(), &events).await?;
    let (a, b) = tokio::join!(
        deploy_to(h, &["api"], "race-a", opts(), &events),
        deploy_to(h, &["api"], "race-b", opts(), &events)
    );
    let (a, b) = (a?, b?);
    let serving = running(h, "api").await?;
    let settings = h.settings_digest("api");
    expect(
        serving.is_some() && serving == settings,
        format!("one digest serves and settings agree: {serving:?} vs {settings:?}"),
    )?;
    let won = |s: &Summary| s.outcome == Outcome::Succeeded;
    let digest_of = |s: &Summary| s.services.first().and_then(|r| r.target_digest.clone());
    match (won(&a), won(&b)) {
        (false, false) => expect(
            serving.as_deref() == Some(digest("api-base").as_str()),
            format!("neither won, so the base release still serves: {serving:?}"),
        )?,
        (true, false) | (false, true) => {
            let (winner, loser) = if won(&a) { (&a, &b) } else { (&b, &a) };
            expect(
                serving == digest_of(winner),
                format!("the winner's release serves, not restored away by the loser: {winner:?} {loser:?}"),
            )?;
        }
        (true, true) => expect(
            serving == digest_of(&a) || serving == digest_of(&b),
            format!("both succeeded one after the other; one of them serves: {serving:?}"),
        )?,
    }
    for s in [&a, &b] {
        if s.outcome == Outcome::NothingChanged {
            expect(
                s.failure_kind() == Some(ErrorKind::Conflict),
                format!("a deploy that lost the race says it was a conflict: {s:?}"),
            )?;
        }
    }
    no_locks(h)
}

/// An explicit rolling strategy deploys like the default.
pub async fn rolling_strategy_deploys(h: &dyn Harness) -> Result<(), String> {
    let mut o = opts();
    o.strategy = Some(Strategy::Rolling);
    let s = deploy_to(h, &["api"], "roll1", o, &Events::none()).await?;
    expect(s.outcome == Outcome::Succeeded, format!("rolling deploy: {s:?}"))?;
    on(h, "api", "roll1", "after the rolling deploy").await?;
    no_locks(h)
}

/// A strategy the platform does not have is refused before anything changes.
pub async fn missing_strategy_is_refused_before_any_change(h: &dyn Harness) -> Result<(), String> {
    deploy_to(h, &["api"], "st1", opts(), &Events::none()).await?;
    let caps = h.platform().capabilities();
    let missing = ALL_STRATEGIES.into_iter().find(|s| !caps.supports(Some(*s))).ok_or("no missing strategy")?;
    let mut o = opts();
    o.strategy = Some(missing);
    let t = target(h)?;
    let images = images(h, &["api"], "st2")?;
    match engine::deploy_digests(h.platform(), None, t, "deploy", &images, &o, &Events::none()).await {
        Err(e) => expect(e.kind == ErrorKind::Unsupported, format!("refused as unsupported: {e}"))?,
        Ok(s) => expect(
            s.outcome == Outcome::NothingChanged && s.failure_kind() == Some(ErrorKind::Unsupported),
            format!("the {} strategy is refused before any change: {s:?}", missing.as_str()),
        )?,
    }
    on(h, "api", "st1", "after the refused strategy").await?;
    no_locks(h)
}

/// A 429 with `Retry-After` and a burst of 503s on reads are retried, and the deploy succeeds.
pub async fn rate_limits_and_5xx_are_retried(h: &dyn Harness) -> Result<(), String> {
    let http = http(h)?;
    deploy_to(h, &["api"], "h1", opts(), &Events::none()).await?;
    let before = http.requests().len();
    http.inject(HttpFault::RateLimited { retry_after_secs: 1 }, Some(CallClass::Read), 1);
    http.inject(HttpFault::ServerError { status: 503 }, Some(CallClass::Read), 2);
    let s = deploy_to(h, &["api"], "h2", opts(), &Events::none()).await?;
    expect(s.outcome == Outcome::Succeeded, format!("the deploy survives a 429 and two 503s: {s:?}"))?;
    on(h, "api", "h2", "after the retried deploy").await?;
    let log: Vec<LoggedRequest> = http.requests().into_iter().skip(before).collect();
    let failing: Vec<&LoggedRequest> = log.iter().filter(|r| matches!(r.status, Some(429 | 503))).collect();
    let statuses: Vec<Option<u16>> = failing.iter().map(|r| r.status).collect();
    expect(statuses == [Some(429), Some(503), Some(503)], format!("the faults were met in order: {log:#?}"))?;
    let call = failing.first().map(|r| r.call()).unwrap_or_default();
    expect(failing.iter().all(|r| r.call() == call), format!("it was one read, repeated: {failing:#?}"))?;
    expect(
        log.iter().any(|r| r.call() == call && r.succeeded()),
        format!("the repeated read finally succeeded: {log:#?}"),
    )?;
    no_locks(h)
}

/// 5xx answers past any sensible retry cap: the deploy gives up, having changed nothing.
pub async fn server_errors_past_the_cap_change_nothing(h: &dyn Harness) -> Result<(), String> {
    let http = http(h)?;
    deploy_to(h, &["api"], "b1", opts(), &Events::none()).await?;
    let before = http.requests().len();
    http.inject(HttpFault::ServerError { status: 503 }, Some(CallClass::Read), 100);
    let s = deploy_to(h, &["api"], "b2", opts(), &Events::none()).await?;
    http.clear();
    let sent = http.requests().len().saturating_sub(before);
    expect(s.outcome == Outcome::NothingChanged, format!("it gave up before any change: {s:?}"))?;
    expect(sent <= 25, format!("retries are capped: {sent} requests sent into a wall of 503s"))?;
    on(h, "api", "b1", "after giving up").await?;
    no_locks(h)
}

/// A read whose answer comes after the client's timeout is sent again, and the deploy succeeds.
pub async fn slow_response_past_the_timeout_is_retried(h: &dyn Harness) -> Result<(), String> {
    let http = http(h)?;
    deploy_to(h, &["api"], "t1", opts(), &Events::none()).await?;
    let before = http.requests().len();
    let delay = http.client_timeout() * 3;
    http.inject(HttpFault::Slow { delay }, Some(CallClass::Read), 1);
    let s = deploy_to(h, &["api"], "t2", opts(), &Events::none()).await?;
    expect(s.outcome == Outcome::Succeeded, format!("the deploy survives a slow answer: {s:?}"))?;
    on(h, "api", "t2", "after the slow answer").await?;
    let log: Vec<LoggedRequest> = http.requests().into_iter().skip(before).collect();
    let (first, second) = (log.first(), log.get(1));
    expect(
        first.is_some() && first.map(LoggedRequest::call) == second.map(LoggedRequest::call),
        format!("the read that timed out was sent again: {log:#?}"),
    )?;
    no_locks(h)
}

/// A reset connection on a read is retried, and the deploy succeeds.
pub async fn reset_connection_is_retried(h: &dyn Harness) -> Result<(), String> {
    let http = http(h)?;
    deploy_to(h, &["api"], "c1", opts(), &Events::none()).await?;
    let before = http.requests().len();
    http.inject(HttpFault::Reset, Some(CallClass::Read), 2);
    let s = deploy_to(h, &["api"], "c2", opts(), &Events::none()).await?;
    expect(s.outcome == Outcome::Succeeded, format!("the deploy survives two resets: {s:?}"))?;
    on(h, "api", "c2", "after the resets").await?;
    let log: Vec<LoggedRequest> = http.requests().into_iter().skip(before).collect();
    let resets: Vec<&LoggedRequest> = log.iter().filter(|r| r.status.is_none()).collect();
    expect(resets.len() == 2, format!("two connections were reset: {log:#?}"))?;
    let call = resets.first().map(|r| r.call()).unwrap_or_default();
    expect(
        log.iter().any(|r| r.call() == call && r.succeeded()),
        format!("the reset read was sent again and succeeded: {log:#?}"),
    )?;
    no_locks(h)
}

/// A 200 whose body cannot be parsed is never taken for an answer: the deploy either reads
/// again and succeeds, or stops having changed nothing; what it reports is what runs.
pub async fn malformed_answer_is_not_taken_for_truth(h: &dyn Harness) -> Result<(), String> {
    let http = http(h)?;
    deploy_to(h, &["api"], "m1", opts(), &Events::none()).await?;
    http.inject(HttpFault::Malformed, Some(CallClass::Read), 1);
    let s = deploy_to(h, &["api"], "m2", opts(), &Events::none()).await?;
    http.clear();
    match s.outcome {
        Outcome::Succeeded => on(h, "api", "m2", "after a malformed answer, read again").await?,
        Outcome::NothingChanged => on(h, "api", "m1", "after a malformed answer, nothing changed").await?,
        other => return Err(format!("a malformed answer must not leave a half-done deploy ({other:?}): {s:?}")),
    }
    no_locks(h)
}

/// A create whose answer is lost (applied, but the client saw a 503) is never sent twice: the
/// service ends with exactly the instances it asked for.
pub async fn lost_create_is_never_sent_twice(h: &dyn Harness) -> Result<(), String> {
    let http = http(h)?;
    let t = target(h)?;
    let api = t.env.services.get("api").ok_or("no api")?;
    let want = usize::try_from(api.scale.min).unwrap_or(0);
    http.inject(HttpFault::LostResponse { status: 503 }, Some(CallClass::CreateInstance), 1);
    let s = deploy_to(h, &["api"], "n1", opts(), &Events::none()).await?;
    expect(s.outcome == Outcome::Succeeded, format!("the first deploy survives a lost create: {s:?}"))?;
    let st = h.platform().status(t, api).await.map_err(|e| e.to_string())?;
    expect(st.instances.len() == want, format!("exactly {want} instances, no duplicate: {st:?}"))?;
    let creates = http.requests().iter().filter(|r| r.class == CallClass::CreateInstance).count();
    let sent_for = h.creates_for(want);
    expect(creates == sent_for, format!("{creates} creates were sent for {want} instances (expected {sent_for})"))?;
    on(h, "api", "n1", "after the lost create").await?;
    no_locks(h)
}

/// A 401 stops everything at once: no request after it, nothing changed, and the verdict says
/// why.
pub async fn unauthorized_stops_at_once(h: &dyn Harness) -> Result<(), String> {
    let http = http(h)?;
    deploy_to(h, &["api"], "u1", opts(), &Events::none()).await?;
    let before = http.requests().len();
    http.inject(HttpFault::Unauthorized, None, 1);
    let s = deploy_to(h, &["api"], "u2", opts(), &Events::none()).await?;
    expect(s.outcome == Outcome::NothingChanged, format!("a 401 changes nothing: {s:?}"))?;
    expect(s.failure_kind() == Some(ErrorKind::Unauthorized), format!("the verdict says unauthorized: {s:?}"))?;
    let log: Vec<LoggedRequest> = http.requests().into_iter().skip(before).collect();
    expect(
        log.len() == 1 && log.first().and_then(|r| r.status) == Some(401),
        format!("no request is sent after the 401: {log:#?}"),
    )?;
    let settings = h.settings_digest("api");
    expect(
        settings.as_deref() == Some(digest("api-u1").as_str()),
        format!("the settings still point at u1: {settings:?}"),
    )?;
    no_locks(h)
}
