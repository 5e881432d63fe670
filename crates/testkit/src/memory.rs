//! [`MemoryPlatform`]: an in-memory [`Platform`] with *native-rollback* semantics, for the
//! engine's tests and the conformance suite.
//!
//! # The model (Railway/Render-like, deliberately not Fly's)
//!
//! A service has a **source** (the image it points at) and **settings** (start command,
//! replicas, port, health path, variables, secret names: all from the manifest), kept apart from
//! its **deployments**. Each deployment (`dep-1`, `dep-2`…) records the digest, git sha and
//! shipit release it was made for, the settings it ran with, and where it stands
//! ([`DeploymentStatus`]). One deployment at most is live: it is what serves.
//!
//! A deploy:
//!
//! 1. makes its first call (where [`Fault::Refuse`] answers, e.g. a 401): nothing changed yet;
//! 2. takes the service's lock ([`Capabilities::locks`]), waiting up to
//!    [`DeployRequest::lock_wait`] for another deploy's, then re-reads what runs and refreshes
//!    the restore point it was given;
//! 3. points the source and settings at the new image: **from here on the deploy has touched
//!    the service** ([`DeployFailure::touched`]);
//! 4. starts a deployment, which becomes live after the rollout time (the one it replaces is
//!    then removed), or fails.
//!
//! When a deployment fails, **the old deployment keeps serving while the source still points at
//! the new image**: [`Platform::status`] shows the old digest, [`MemoryPlatform::source_digest`]
//! the new one, and a later "redeploy" would ship the failed image. That is the trap
//! [`Platform::restore`] exists for: it puts the source and settings back and either re-points
//! (when the old deployment still serves as it was) or starts a new deployment of the old
//! digest with the old settings.
//!
//! # Faults
//!
//! [`MemoryPlatform::inject`] arms a [`Fault`] for a [`Scope`] (a service, a digest, or
//! anything). Deploy faults act on `deploy` only; [`Fault::RestoreFails`] on `restore` only. A
//! fault armed with [`MemoryPlatform::inject_times`] is spent after that many uses.
//!
//! # Time
//!
//! A healthy deployment becomes live after [`MemoryPlatform::with_rollout_time`] (10 ms by
//! default), a crashing one fails after [`MemoryPlatform::with_crash_time`] (5 ms). An unhealthy
//! or stuck deployment fails at the request's `wait_timeout`, really waited: give tests short
//! timeouts.
//!
//! # What tests read
//!
//! Everything a user would check: which digest serves ([`MemoryPlatform::serving_digest`]),
//! which the source points at ([`MemoryPlatform::source_digest`]), the settings
//! ([`MemoryPlatform::settings`]), every deployment ([`MemoryPlatform::service`]), the locks
//! still held, and the log of the calls made, in order ([`MemoryPlatform::ops`]). Secret values
//! are kept (for [`MemoryPlatform::secret_value`]) and never put in an event, a status, a plan or
//! a restore point.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;
use shipit_core::{
    App, Capabilities, DeployFailure, DeployRequest, Deployed, EnvValue, Error, ErrorKind, Event, FieldChange,
    ImageRef, Instance, InstanceState, PlannedCall, Platform, PlatformKind, Release, ReleaseInfo, ReleaseStatus,
    RenderError, RenderedFile, RestorePoint, RestoreRequest, SecretsSynced, Service, ServicePlan, ServiceStatus,
    Target,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often a deploy waiting for a lock looks again.
const LOCK_POLL: Duration = Duration::from_millis(2);
/// The digest a deployment started by someone else ([`Fault::ForeignDeployment`]) runs.
pub const FOREIGN_DIGEST: &str = "sha256:f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0";

/// What a service points at: the image a new deployment would run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The image, with its digest.
    pub image: String,
    /// The digest (`sha256:…`).
    pub digest: String,
}

/// A service's settings, separate from its source: what the manifest says about how it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// The start command, replacing the image's.
    pub start_command: Option<Vec<String>>,
    /// How many replicas run.
    pub replicas: u32,
    /// The port it listens on.
    pub port: Option<u16>,
    /// The health check's path.
    pub health_path: Option<String>,
    /// Plain variables, and references as `${{target.property}}`.
    pub variables: BTreeMap<String, String>,
    /// Names of the secrets it uses (values are kept apart, never here).
    pub secrets: Vec<String>,
}

impl Settings {
    /// The settings the manifest gives `service`.
    pub fn of(service: &Service) -> Self {
        let mut variables = BTreeMap::new();
        let mut secrets = Vec::new();
        for (name, value) in &service.env {
            match value {
                EnvValue::Plain(v) => {
                    variables.insert(name.clone(), v.clone());
                }
                EnvValue::Secret => secrets.push(name.clone()),
                EnvValue::From(r) => {
                    let property = serde_json::to_value(r.property)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                    variables.insert(name.clone(), format!("${{{{{}.{property}}}}}", r.target));
                }
                _ => {}
            }
        }
        Self {
            start_command: service.command.clone(),
            replicas: service.scale.min.max(1),
            port: service.port,
            health_path: service.health.as_ref().map(|h| h.path.clone()),
            variables,
            secrets,
        }
    }
}

/// Where a deployment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentStatus {
    /// Building or rolling out; not serving.
    InProgress,
    /// Serving.
    Live,
    /// Failed (crashed, never passed its health check).
    Failed,
    /// Replaced, cancelled or given up on; [`Deployment::succeeded`] says whether it ever served.
    Removed,
}

/// One deployment of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    /// Its id: `dep-1`, `dep-2`… (one sequence for the whole platform).
    pub id: String,
    /// The image it runs.
    pub image: String,
    /// The digest it runs.
    pub digest: String,
    /// The git commit of its release.
    pub git_sha: Option<String>,
    /// shipit's release id; `None` for a deployment someone else started.
    pub release: Option<String>,
    /// Where it stands.
    pub status: DeploymentStatus,
    /// Whether it ever became live.
    pub succeeded: bool,
    /// Whether shipit recorded its release as failed (then never a rollback target).
    pub marked_failed: bool,
    /// The settings it runs with.
    pub settings: Settings,
    /// The service's secrets version when it was made: the values it runs with (a deployment
    /// reads the secrets as they are when it starts).
    pub secrets_version: u64,
    /// When it was created (RFC 3339).
    pub created_at: String,
}

impl Deployment {
    /// The release as [`Platform::releases`] lists it.
    pub fn release_status(&self) -> ReleaseStatus {
        match self.status {
            DeploymentStatus::Live => ReleaseStatus::Live,
            DeploymentStatus::InProgress => ReleaseStatus::InProgress,
            DeploymentStatus::Removed if self.succeeded && !self.marked_failed => ReleaseStatus::Superseded,
            DeploymentStatus::Removed | DeploymentStatus::Failed => ReleaseStatus::Failed,
        }
    }

    fn to_release(&self, service: &str) -> Release {
        let mut r =
            Release::new(self.release.clone().unwrap_or_else(|| self.id.clone()), service, self.release_status());
        r.platform_id = Some(self.id.clone());
        r.image = Some(self.image.clone());
        r.digest = Some(self.digest.clone());
        r.git_sha = self.git_sha.clone();
        r.created_at = Some(self.created_at.clone());
        r
    }
}

/// One service as the platform holds it, for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceView {
    /// Environment.
    pub env: String,
    /// Service (the manifest's name).
    pub service: String,
    /// Its name on the platform.
    pub platform_name: String,
    /// What it points at (`None` before the first deploy moved it).
    pub source: Option<Source>,
    /// Its settings (`None` before the first deploy moved them).
    pub settings: Option<Settings>,
    /// Every deployment, oldest first.
    pub deployments: Vec<Deployment>,
    /// Names of its secrets, sorted.
    pub secret_names: Vec<String>,
}

impl ServiceView {
    /// The deployment that serves.
    pub fn live(&self) -> Option<&Deployment> {
        self.deployments.iter().find(|d| d.status == DeploymentStatus::Live)
    }
}

/// Which deploys (or restores) a [`Fault`] applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every one.
    Any,
    /// One service: its manifest name (any environment) or `env/service`.
    Service(String),
    /// Those of this digest (with or without `sha256:`): for a restore, the digest it restores.
    Digest(String),
}

impl Scope {
    fn matches(&self, key: &Key, digest: Option<&str>) -> bool {
        match self {
            Self::Any => true,
            Self::Service(s) => key.is(s),
            Self::Digest(d) => digest.is_some_and(|have| bare(have) == bare(d)),
        }
    }
}

fn bare(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// A fault, at one step of a deploy or restore (see the [module docs](self) for the steps).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The deploy's first call fails with this kind (`Unauthorized` is a 401, `Conflict` a
    /// 409…), before anything changed.
    Refuse(ErrorKind),
    /// The lock is held by `owner`: the deploy waits its `lock_wait`, then fails with a conflict
    /// naming the owner, having changed nothing.
    LockHeld {
        /// Who holds it.
        owner: String,
    },
    /// The source and settings move to the new image, then the deployment cannot be started.
    FailAfterSettings,
    /// Someone else starts a deployment (of [`FOREIGN_DIGEST`]) right after the source moved:
    /// the deploy stops with a conflict, having touched the service.
    ForeignDeployment,
    /// The deployment never passes its health check: it fails at the wait timeout (`Timeout`).
    Unhealthy,
    /// The deployment crashes right after it starts (`Unhealthy`, fast).
    Crash,
    /// The deployment is still rolling out at the wait timeout (`Timeout`); it is cancelled.
    Timeout,
    /// The request's cancellation token is cancelled once the deployment is rolling out (a
    /// Ctrl-C mid-rollout).
    CancelMidRollout,
    /// A restore is refused before it changes anything.
    RestoreFails,
}

impl Fault {
    /// A 401 at the first call.
    pub fn unauthorized() -> Self {
        Self::Refuse(ErrorKind::Unauthorized)
    }

    /// A 409 at the first call.
    pub fn conflict() -> Self {
        Self::Refuse(ErrorKind::Conflict)
    }

    fn step(&self) -> FaultStep {
        match self {
            Self::Refuse(_) => FaultStep::FirstCall,
            Self::LockHeld { .. } => FaultStep::Lock,
            Self::FailAfterSettings | Self::ForeignDeployment => FaultStep::AfterSettings,
            Self::Unhealthy | Self::Crash | Self::Timeout | Self::CancelMidRollout => FaultStep::Rollout,
            Self::RestoreFails => FaultStep::Restore,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FaultStep {
    FirstCall,
    Lock,
    AfterSettings,
    Rollout,
    Restore,
}

/// A [`Platform`] method, as the [operation log](MemoryPlatform::ops) names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `plan`.
    Plan,
    /// `describe_deploy`.
    DescribeDeploy,
    /// `restore_point`.
    RestorePoint,
    /// `release_point`.
    ReleasePoint,
    /// `deploy` began.
    Deploy,
    /// `deploy` returned (either way).
    DeployDone,
    /// `restore` began.
    Restore,
    /// `restore` returned (either way).
    RestoreDone,
    /// `mark_failed`.
    MarkFailed,
    /// `status`.
    Status,
    /// `releases`.
    Releases,
    /// `sync_secrets`.
    SyncSecrets,
    /// `secret_names`.
    SecretNames,
}

/// One entry of the operation log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// Which method.
    pub call: Call,
    /// Environment.
    pub env: String,
    /// Service (the manifest's name).
    pub service: String,
    /// The digest deployed or restored; the release id for `release_point` and `mark_failed`.
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    env: String,
    service: String,
}

impl Key {
    fn of(target: Target<'_>, service: &Service) -> Self {
        Self { env: target.env.name.clone(), service: service.name.clone() }
    }

    /// `who` is `service` or `env/service`.
    fn is(&self, who: &str) -> bool {
        match who.split_once('/') {
            Some((env, service)) => env == self.env && service == self.service,
            None => who == self.service,
        }
    }
}

struct Svc {
    platform_name: String,
    source: Option<Source>,
    settings: Option<Settings>,
    deployments: Vec<Deployment>,
    secrets: BTreeMap<String, SecretString>,
    secrets_version: u64,
}

impl Svc {
    fn new(platform_name: String) -> Self {
        Self {
            platform_name,
            source: None,
            settings: None,
            deployments: Vec::new(),
            secrets: BTreeMap::new(),
            secrets_version: 0,
        }
    }

    fn live(&self) -> Option<&Deployment> {
        self.deployments.iter().find(|d| d.status == DeploymentStatus::Live)
    }

    fn deployment_mut(&mut self, id: &str) -> Option<&mut Deployment> {
        self.deployments.iter_mut().find(|d| d.id == id)
    }

    /// Makes `id` the live deployment; the one it replaces is removed.
    fn go_live(&mut self, id: &str) {
        for d in &mut self.deployments {
            if d.id == id {
                d.status = DeploymentStatus::Live;
                d.succeeded = true;
            } else if d.status == DeploymentStatus::Live {
                d.status = DeploymentStatus::Removed;
            }
        }
    }

    fn set_status(&mut self, id: &str, status: DeploymentStatus) {
        if let Some(d) = self.deployment_mut(id) {
            d.status = status;
        }
    }

    fn view(&self, key: &Key) -> ServiceView {
        ServiceView {
            env: key.env.clone(),
            service: key.service.clone(),
            platform_name: self.platform_name.clone(),
            source: self.source.clone(),
            settings: self.settings.clone(),
            deployments: self.deployments.clone(),
            secret_names: self.secrets.keys().cloned().collect(),
        }
    }
}

struct Armed {
    scope: Scope,
    fault: Fault,
    left: Option<u32>,
}

struct LockRec {
    owner: String,
    token: u64,
}

#[derive(Default)]
struct State {
    seq: u64,
    services: BTreeMap<Key, Svc>,
    faults: Vec<Armed>,
    ops: Vec<Op>,
    locks: BTreeMap<Key, LockRec>,
}

impl State {
    fn next(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn log(&mut self, call: Call, key: &Key, detail: Option<&str>) {
        self.ops.push(Op {
            call,
            env: key.env.clone(),
            service: key.service.clone(),
            detail: detail.map(str::to_string),
        });
    }

    /// Takes one use of the first armed fault of `step` that applies.
    fn take(&mut self, step: FaultStep, key: &Key, digest: Option<&str>) -> Option<Fault> {
        let armed = self
            .faults
            .iter_mut()
            .find(|a| a.fault.step() == step && a.left != Some(0) && a.scope.matches(key, digest))?;
        if let Some(n) = armed.left.as_mut() {
            *n -= 1;
        }
        let fault = armed.fault.clone();
        self.faults.retain(|a| a.left != Some(0));
        Some(fault)
    }

    /// The service `who` (`service` or `env/service`) names, when exactly one matches.
    fn find(&self, who: &str) -> Option<(&Key, &Svc)> {
        let mut matching = self.services.iter().filter(|(k, _)| k.is(who));
        match (matching.next(), matching.next()) {
            (Some(found), None) => Some(found),
            _ => None,
        }
    }

    fn new_deployment(
        &mut self,
        key: &Key,
        source: &Source,
        settings: &Settings,
        release: Option<&ReleaseInfo>,
    ) -> String {
        let id = format!("dep-{}", self.next());
        if let Some(svc) = self.services.get_mut(key) {
            let secrets_version = svc.secrets_version;
            svc.deployments.push(Deployment {
                id: id.clone(),
                image: source.image.clone(),
                digest: source.digest.clone(),
                git_sha: release.and_then(|r| r.git_sha.clone()),
                release: release.map(|r| r.id.clone()),
                status: DeploymentStatus::InProgress,
                succeeded: false,
                marked_failed: false,
                settings: settings.clone(),
                secrets_version,
                created_at: jiff::Timestamp::now().to_string(),
            });
        }
        id
    }
}

/// What a restore point's opaque state holds on this platform.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct PointState {
    /// The image to point at again.
    source: Option<Source>,
    /// The settings to put back.
    settings: Option<Settings>,
    /// The deployment that served them.
    deployment: Option<String>,
}

/// A lock held by one deploy or restore; released when dropped, on every path.
struct LockGuard {
    state: Arc<Mutex<State>>,
    key: Key,
    token: u64,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.locks.get(&self.key).is_some_and(|l| l.token == self.token) {
            st.locks.remove(&self.key);
        }
    }
}

/// An in-memory platform with native-rollback semantics. See the [module docs](self).
///
/// Cloning shares the state: two clones are one platform.
#[derive(Clone)]
pub struct MemoryPlatform {
    state: Arc<Mutex<State>>,
    rollout_time: Duration,
    crash_time: Duration,
}

impl std::fmt::Debug for MemoryPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryPlatform")
            .field("rollout_time", &self.rollout_time)
            .field("crash_time", &self.crash_time)
            .finish_non_exhaustive()
    }
}

impl Default for MemoryPlatform {
    fn default() -> Self {
        Self::new()
    }
}

fn untouched(kind: ErrorKind, message: impl Into<String>) -> DeployFailure {
    DeployFailure::untouched(Error::new(kind, message))
}

fn touched(kind: ErrorKind, message: impl Into<String>) -> DeployFailure {
    DeployFailure::touched(Error::new(kind, message))
}

fn cancelled(what: &str) -> Error {
    Error::new(ErrorKind::Cancelled, format!("stopped by a signal {what}"))
}

fn refusal(kind: ErrorKind) -> Error {
    let message = match kind {
        ErrorKind::Unauthorized => "401 Unauthorized: the API token was refused".to_string(),
        ErrorKind::Conflict => "409 Conflict: the service is being changed by someone else".to_string(),
        ErrorKind::NotFound => "404 Not Found".to_string(),
        ErrorKind::RateLimited => "429 Too Many Requests".to_string(),
        other => format!("refused ({})", other.as_str()),
    };
    Error::new(kind, message)
}

impl MemoryPlatform {
    /// An empty platform: no services, no faults.
    pub fn new() -> Self {
        Self { state: Arc::default(), rollout_time: Duration::from_millis(10), crash_time: Duration::from_millis(5) }
    }

    /// How long a healthy deployment takes to become live (default 10 ms). Longer than a
    /// deploy's wait timeout, it times out.
    #[must_use]
    pub fn with_rollout_time(mut self, rollout: Duration) -> Self {
        self.rollout_time = rollout;
        self
    }

    /// How long a crashing deployment ([`Fault::Crash`]) runs before it fails (default 5 ms).
    #[must_use]
    pub fn with_crash_time(mut self, crash: Duration) -> Self {
        self.crash_time = crash;
        self
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Arms `fault` for `scope` until [`clear_faults`](Self::clear_faults).
    pub fn inject(&self, scope: Scope, fault: Fault) {
        self.lock().faults.push(Armed { scope, fault, left: None });
    }

    /// Arms `fault` for `scope` for its next `times` uses.
    pub fn inject_times(&self, scope: Scope, fault: Fault, times: u32) {
        if times > 0 {
            self.lock().faults.push(Armed { scope, fault, left: Some(times) });
        }
    }

    /// Disarms every fault.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// A service as the platform holds it; `who` is the manifest's service name (when only one
    /// environment has it) or `env/service`.
    pub fn service(&self, who: &str) -> Option<ServiceView> {
        self.lock().find(who).map(|(k, svc)| svc.view(k))
    }

    /// The digest the live deployment runs: what serves.
    pub fn serving_digest(&self, who: &str) -> Option<String> {
        self.lock().find(who).and_then(|(_, s)| s.live()).map(|d| d.digest.clone())
    }

    /// The digest the service's source points at: what a new deployment would run.
    pub fn source_digest(&self, who: &str) -> Option<String> {
        self.lock().find(who).and_then(|(_, s)| s.source.as_ref()).map(|s| s.digest.clone())
    }

    /// The service's settings.
    pub fn settings(&self, who: &str) -> Option<Settings> {
        self.lock().find(who).and_then(|(_, s)| s.settings.clone())
    }

    /// The value secret `name` of the service holds. Assert on it; never print it.
    pub fn secret_value(&self, who: &str, name: &str) -> Option<String> {
        self.lock().find(who).and_then(|(_, s)| s.secrets.get(name)).map(|v| v.expose_secret().to_string())
    }

    /// Locks held by deploys and restores now (an injected [`Fault::LockHeld`] is not one).
    pub fn locks_held(&self) -> usize {
        self.lock().locks.len()
    }

    /// What someone pressing "Redeploy" in the platform's dashboard gets: a new deployment of
    /// whatever the source and settings point at now, live at once (no faults apply). Returns
    /// the digest it serves, or `None` when the service has no source yet.
    pub fn redeploy(&self, who: &str) -> Option<String> {
        let mut st = self.lock();
        let key = st.find(who).map(|(k, _)| k.clone())?;
        let svc = st.services.get(&key)?;
        let (source, settings) = (svc.source.clone()?, svc.settings.clone()?);
        let id = st.new_deployment(&key, &source, &settings, None);
        st.services.get_mut(&key)?.go_live(&id);
        Some(source.digest)
    }

    /// Every call made so far, in order.
    pub fn ops(&self) -> Vec<Op> {
        self.lock().ops.clone()
    }

    /// The calls of one kind, in order.
    pub fn calls(&self, call: Call) -> Vec<Op> {
        self.lock().ops.iter().filter(|o| o.call == call).cloned().collect()
    }

    fn log(&self, call: Call, key: &Key, detail: Option<&str>) {
        self.lock().log(call, key, detail);
    }

    fn take(&self, step: FaultStep, key: &Key, digest: Option<&str>) -> Option<Fault> {
        self.lock().take(step, key, digest)
    }

    fn platform_name(&self, target: Target<'_>, service: &Service) -> String {
        target.platform_name(self.kind(), &service.name)
    }

    /// Takes the service's lock, waiting up to `wait` for whoever holds it.
    async fn acquire(
        &self,
        key: &Key,
        owner: String,
        wait: Duration,
        cancel: &CancellationToken,
        injected: Option<String>,
    ) -> Result<LockGuard, DeployFailure> {
        let started = Instant::now();
        loop {
            {
                let mut st = self.lock();
                let holder = injected.clone().or_else(|| st.locks.get(key).map(|l| l.owner.clone()));
                match holder {
                    None => {
                        let token = st.next();
                        st.locks.insert(key.clone(), LockRec { owner, token });
                        return Ok(LockGuard { state: Arc::clone(&self.state), key: key.clone(), token });
                    }
                    Some(holder) if started.elapsed() >= wait => {
                        return Err(untouched(
                            ErrorKind::Conflict,
                            format!(
                                "{}: lock held by {holder} (waited {} ms): nothing was changed",
                                key.service,
                                wait.as_millis()
                            ),
                        ));
                    }
                    Some(_) => {}
                }
            }
            if cancel.is_cancelled() {
                return Err(DeployFailure::untouched(cancelled("while waiting for the lock: nothing was changed")));
            }
            tokio::time::sleep(LOCK_POLL).await;
        }
    }

    /// The point that puts back what serves now: the live deployment's image and settings (or,
    /// with nothing live, the source and settings as they are).
    fn point_of(&self, key: &Key) -> RestorePoint {
        let st = self.lock();
        let Some(svc) = st.services.get(key) else { return RestorePoint::missing(&key.service) };
        let state = match svc.live() {
            Some(d) => PointState {
                source: Some(Source { image: d.image.clone(), digest: d.digest.clone() }),
                settings: Some(d.settings.clone()),
                deployment: Some(d.id.clone()),
            },
            None => PointState { source: svc.source.clone(), settings: svc.settings.clone(), deployment: None },
        };
        let release = svc.live().map(|d| d.to_release(&key.service));
        RestorePoint::new(&key.service, release, serde_json::to_value(state).unwrap_or_default())
    }

    async fn deploy_steps(&self, req: &DeployRequest<'_>, point: &mut RestorePoint) -> Result<Deployed, DeployFailure> {
        let service = req.service;
        let name = &service.name;
        let key = Key::of(req.target, service);
        let digest = req.digest().to_string();
        let events = &req.events;
        if let Some(s) = req.strategy {
            return Err(DeployFailure::untouched(Error::unsupported(
                "the memory platform",
                format!("the {} strategy (it rolls out its own way)", s.as_str()),
            )));
        }
        if req.cancel.is_cancelled() {
            return Err(DeployFailure::untouched(cancelled("before the deploy began: nothing was changed")));
        }
        // 1. The first call.
        if let Some(Fault::Refuse(kind)) = self.take(FaultStep::FirstCall, &key, Some(&digest)) {
            return Err(DeployFailure::untouched(refusal(kind).context(name)));
        }
        if !req.create && !self.lock().services.contains_key(&key) {
            return Err(untouched(
                ErrorKind::NotFound,
                format!("{name} does not exist in {} and creating it was not allowed", key.env),
            ));
        }
        // 2. The lock, then what runs now.
        let injected = match self.take(FaultStep::Lock, &key, Some(&digest)) {
            Some(Fault::LockHeld { owner }) => Some(owner),
            _ => None,
        };
        let owner = format!("shipit release {}", req.release.id);
        let _lock = self.acquire(&key, owner, req.lock_wait, &req.cancel, injected).await?;
        *point = self.point_of(&key);
        if req.cancel.is_cancelled() {
            return Err(DeployFailure::untouched(cancelled("before anything changed")));
        }

        // 3. Source and settings.
        let source = Source { image: req.image.to_string(), digest: digest.clone() };
        let settings = Settings::of(service);
        {
            let mut st = self.lock();
            let platform_name = self.platform_name(req.target, service);
            let svc = st.services.entry(key.clone()).or_insert_with(|| Svc::new(platform_name));
            let same = svc.live().is_some_and(|d| d.digest == digest && d.settings == settings)
                && svc.source.as_ref().is_some_and(|s| s.digest == digest)
                && svc.settings.as_ref() == Some(&settings);
            // `restart` rolls out what runs all the same: a new deployment, gated like any other.
            if same && !req.restart {
                events.step(name, "already runs this digest with these settings");
                return Ok(Deployed::new(name, &digest, false, settings.replicas as usize));
            }
            svc.source = Some(source.clone());
            svc.settings = Some(settings.clone());
        }
        events.step(name, format!("source and settings now point at {digest}"));
        tokio::task::yield_now().await;
        match self.take(FaultStep::AfterSettings, &key, Some(&digest)) {
            Some(Fault::FailAfterSettings) => {
                return Err(touched(
                    ErrorKind::Other,
                    format!(
                        "{name}: the deployment could not be started (500 Internal Server Error); the source already points at {digest}"
                    ),
                ));
            }
            Some(Fault::ForeignDeployment) => {
                let id = {
                    let mut st = self.lock();
                    let foreign =
                        Source { image: format!("elsewhere/{name}@{FOREIGN_DIGEST}"), digest: FOREIGN_DIGEST.into() };
                    st.new_deployment(&key, &foreign, &settings, None)
                };
                return Err(touched(
                    ErrorKind::Conflict,
                    format!("{name}: deployment {id} was started by someone else while this deploy was in progress"),
                ));
            }
            _ => {}
        }
        if req.cancel.is_cancelled() {
            return Err(DeployFailure::touched(cancelled("after the source moved, before a deployment started")));
        }

        // 4. The deployment.
        let id = self.lock().new_deployment(&key, &source, &settings, Some(&req.release));
        events.step(name, format!("deployment {id} started"));
        let fault = self.take(FaultStep::Rollout, &key, Some(&digest));
        if fault == Some(Fault::CancelMidRollout) {
            req.cancel.cancel();
        }
        let (wait, verdict) = match fault {
            Some(Fault::Crash) => (self.crash_time, Rollout::Crashes),
            Some(Fault::Unhealthy) => (req.wait_timeout, Rollout::NeverHealthy),
            Some(Fault::Timeout) => (req.wait_timeout, Rollout::Stuck),
            _ if self.rollout_time > req.wait_timeout => (req.wait_timeout, Rollout::Stuck),
            _ => (self.rollout_time, Rollout::Healthy),
        };
        tokio::select! {
            biased;
            () = req.cancel.cancelled() => {
                self.with_svc(&key, |svc| svc.set_status(&id, DeploymentStatus::Removed));
                return Err(DeployFailure::touched(cancelled(&format!(
                    "mid-rollout: deployment {id} cancelled, the previous deployment still serves"
                ))));
            }
            () = tokio::time::sleep(wait) => {}
        }
        let secs = req.wait_timeout.as_secs_f64();
        match verdict {
            Rollout::Healthy => {
                self.with_svc(&key, |svc| svc.go_live(&id));
                for i in 0..settings.replicas {
                    let instance = format!("{id}-{i}");
                    events.emit(Event::InstanceUpdated {
                        service: name.clone(),
                        instance: instance.clone(),
                        region: None,
                        digest: digest.clone(),
                    });
                    events.emit(Event::InstanceHealthy { service: name.clone(), instance });
                }
                Ok(Deployed::new(name, &digest, true, settings.replicas as usize))
            }
            Rollout::Crashes => {
                self.with_svc(&key, |svc| svc.set_status(&id, DeploymentStatus::Failed));
                Err(touched(
                    ErrorKind::Unhealthy,
                    format!("{name}: deployment {id} crashed (exit code 1) right after it started"),
                ))
            }
            Rollout::NeverHealthy => {
                self.with_svc(&key, |svc| svc.set_status(&id, DeploymentStatus::Failed));
                let path = settings.health_path.as_deref().unwrap_or("the health check");
                Err(touched(ErrorKind::Timeout, format!("{name}: deployment {id} did not pass {path} within {secs}s")))
            }
            Rollout::Stuck => {
                self.with_svc(&key, |svc| svc.set_status(&id, DeploymentStatus::Removed));
                Err(touched(
                    ErrorKind::Timeout,
                    format!("{name}: deployment {id} was still rolling out after {secs}s and was cancelled"),
                ))
            }
        }
    }

    fn with_svc(&self, key: &Key, f: impl FnOnce(&mut Svc)) {
        if let Some(svc) = self.lock().services.get_mut(key) {
            f(svc);
        }
    }

    async fn restore_steps(&self, req: &RestoreRequest<'_>, point: &RestorePoint) -> Result<Deployed, DeployFailure> {
        let name = &req.service.name;
        let key = Key::of(req.target, req.service);
        let state: PointState = serde_json::from_value(point.state.clone()).unwrap_or_default();
        let (Some(source), Some(settings)) = (state.source, state.settings) else {
            return Err(untouched(
                ErrorKind::NotFound,
                format!("{name}: the restore point has no image to go back to"),
            ));
        };
        if self.take(FaultStep::Restore, &key, Some(&source.digest)).is_some() {
            return Err(untouched(
                ErrorKind::Other,
                format!("{name}: the restore was refused (500 Internal Server Error); nothing was changed"),
            ));
        }
        let owner = match req.reason.failed_release() {
            Some(r) => format!("shipit restore after release {}", r.id),
            None => "shipit rollback".to_string(),
        };
        let _lock = self.acquire(&key, owner, req.lock_wait, &req.cancel, None).await?;
        let (changed, deploy_needed) = {
            let mut st = self.lock();
            let Some(svc) = st.services.get_mut(&key) else {
                return Err(untouched(ErrorKind::NotFound, format!("{name} does not exist in {}", key.env)));
            };
            let changed = svc.source.as_ref() != Some(&source) || svc.settings.as_ref() != Some(&settings);
            svc.source = Some(source.clone());
            svc.settings = Some(settings.clone());
            for d in &mut svc.deployments {
                if d.status == DeploymentStatus::InProgress {
                    d.status = DeploymentStatus::Removed;
                }
                if let Some(failed) = req.reason.failed_release()
                    && d.release.as_deref() == Some(failed.id.as_str())
                {
                    d.marked_failed = true;
                }
            }
            let serving = svc.live().is_some_and(|d| d.digest == source.digest && d.settings == settings);
            (changed, !serving)
        };
        if !deploy_needed {
            req.events
                .step(name, format!("source and settings point at {} again; it never stopped serving", source.digest));
            return Ok(Deployed::new(name, &source.digest, changed, settings.replicas as usize));
        }
        let release = point.release.as_ref().map(Release::info);
        let id = self.lock().new_deployment(&key, &source, &settings, release.as_ref());
        req.events.step(name, format!("deployment {id} of {} started", source.digest));
        tokio::select! {
            biased;
            () = req.cancel.cancelled() => {
                self.with_svc(&key, |svc| svc.set_status(&id, DeploymentStatus::Removed));
                return Err(DeployFailure::touched(cancelled(&format!("while restoring: deployment {id} cancelled"))));
            }
            () = tokio::time::sleep(self.rollout_time) => {}
        }
        self.with_svc(&key, |svc| svc.go_live(&id));
        Ok(Deployed::new(name, &source.digest, true, settings.replicas as usize))
    }
}

enum Rollout {
    Healthy,
    Crashes,
    NeverHealthy,
    Stuck,
}

#[async_trait::async_trait]
impl Platform for MemoryPlatform {
    /// Railway: the memory platform stands in for a platform with native rollback, and the
    /// manifest's `[targets.railway]` table (and `target = "railway"`) names it.
    fn kind(&self) -> PlatformKind {
        PlatformKind::Railway
    }

    fn capabilities(&self) -> Capabilities {
        let mut c = Capabilities::default();
        c.native_rollback = true;
        c.strategies = Vec::new();
        c.locks = true;
        c.autoscaling = false;
        c.managed_databases = false;
        c
    }

    fn render(&self, _app: &App, _env: &str) -> Result<Vec<RenderedFile>, RenderError> {
        Ok(Vec::new())
    }

    fn describe_deploy(
        &self,
        target: Target<'_>,
        service: &Service,
        image: &ImageRef,
    ) -> Result<Vec<PlannedCall>, Error> {
        let key = Key::of(target, service);
        self.log(Call::DescribeDeploy, &key, image.digest.as_deref());
        let base = format!("memory://{}/{}", key.env, self.platform_name(target, service));
        let settings = serde_json::to_value(Settings::of(service)).unwrap_or_default();
        Ok(vec![
            PlannedCall::new("POST", format!("{base}/lock")).note("waits for another deploy's lock"),
            PlannedCall::new("PATCH", format!("{base}/source"))
                .body(json!({ "image": image.to_string(), "settings": settings }))
                .note("the service points at the new image from here on"),
            PlannedCall::new("POST", format!("{base}/deployments")).body(json!({ "image": image.to_string() })),
            PlannedCall::new("GET", format!("{base}/deployments/{{id}}"))
                .when("until the deployment is live or failed, or the wait times out"),
        ])
    }

    async fn plan(
        &self,
        target: Target<'_>,
        service: &Service,
        image: Option<&ImageRef>,
    ) -> Result<ServicePlan, Error> {
        let key = Key::of(target, service);
        self.log(Call::Plan, &key, image.and_then(|i| i.digest.as_deref()));
        let platform_name = self.platform_name(target, service);
        let desired = Settings::of(service);
        let st = self.lock();
        let Some(svc) = st.services.get(&key) else {
            let changes = vec![FieldChange::new("image", None, image.map(ToString::to_string))];
            return Ok(ServicePlan::new(&service.name, platform_name, true, changes));
        };
        let mut changes = Vec::new();
        if let Some(want) = image.and_then(|i| i.digest.clone()) {
            let have = svc.source.as_ref().map(|s| s.digest.clone());
            if have.as_deref() != Some(want.as_str()) {
                changes.push(FieldChange::new("image", have, Some(want)));
            }
        }
        let live = svc.settings.clone();
        let field = |changes: &mut Vec<FieldChange>, name: &str, have: Option<String>, want: Option<String>| {
            if have != want {
                changes.push(FieldChange::new(name, have, want));
            }
        };
        let join = |c: &Option<Vec<String>>| c.as_ref().map(|c| c.join(" "));
        field(
            &mut changes,
            "start_command",
            live.as_ref().and_then(|l| join(&l.start_command)),
            join(&desired.start_command),
        );
        field(
            &mut changes,
            "replicas",
            live.as_ref().map(|l| l.replicas.to_string()),
            Some(desired.replicas.to_string()),
        );
        field(
            &mut changes,
            "port",
            live.as_ref().and_then(|l| l.port.map(|p| p.to_string())),
            desired.port.map(|p| p.to_string()),
        );
        field(
            &mut changes,
            "health_path",
            live.as_ref().and_then(|l| l.health_path.clone()),
            desired.health_path.clone(),
        );
        let empty = BTreeMap::new();
        let have_vars = live.as_ref().map_or(&empty, |l| &l.variables);
        let mut names: Vec<&String> = have_vars.keys().chain(desired.variables.keys()).collect();
        names.sort();
        names.dedup();
        for var in names {
            field(
                &mut changes,
                &format!("variables.{var}"),
                have_vars.get(var).cloned(),
                desired.variables.get(var).cloned(),
            );
        }
        let have_secrets = live.as_ref().map(|l| l.secrets.join(","));
        field(
            &mut changes,
            "secrets",
            have_secrets.filter(|s| !s.is_empty()),
            Some(desired.secrets.join(",")).filter(|s| !s.is_empty()),
        );
        Ok(ServicePlan::new(&service.name, platform_name, false, changes))
    }

    async fn restore_point(&self, target: Target<'_>, service: &Service) -> Result<RestorePoint, Error> {
        let key = Key::of(target, service);
        self.log(Call::RestorePoint, &key, None);
        Ok(self.point_of(&key))
    }

    async fn release_point(
        &self,
        target: Target<'_>,
        service: &Service,
        release: &Release,
    ) -> Result<RestorePoint, Error> {
        let key = Key::of(target, service);
        self.log(Call::ReleasePoint, &key, Some(&release.id));
        let st = self.lock();
        let found = st.services.get(&key).and_then(|svc| {
            svc.deployments.iter().rev().find(|d| match &release.platform_id {
                Some(pid) => &d.id == pid,
                None => {
                    d.release.as_deref() == Some(release.id.as_str())
                        && release.digest.as_deref() == Some(d.digest.as_str())
                }
            })
        });
        let Some(d) = found else {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("{}: no deployment of release {}", service.name, release.id),
            ));
        };
        let state = PointState {
            source: Some(Source { image: d.image.clone(), digest: d.digest.clone() }),
            settings: Some(d.settings.clone()),
            deployment: Some(d.id.clone()),
        };
        let mut release = release.clone();
        release.digest = Some(d.digest.clone());
        Ok(RestorePoint::new(&service.name, Some(release), serde_json::to_value(state).unwrap_or_default()))
    }

    async fn deploy(&self, req: &DeployRequest<'_>, point: &mut RestorePoint) -> Result<Deployed, DeployFailure> {
        let key = Key::of(req.target, req.service);
        self.log(Call::Deploy, &key, Some(req.digest()));
        let done = self.deploy_steps(req, point).await;
        self.log(Call::DeployDone, &key, Some(req.digest()));
        done
    }

    async fn restore(&self, req: &RestoreRequest<'_>, point: &RestorePoint) -> Result<Deployed, DeployFailure> {
        let key = Key::of(req.target, req.service);
        self.log(Call::Restore, &key, point.digest());
        let done = self.restore_steps(req, point).await;
        self.log(Call::RestoreDone, &key, point.digest());
        done
    }

    async fn mark_failed(
        &self,
        target: Target<'_>,
        service: &Service,
        release: &ReleaseInfo,
        _why: &str,
    ) -> Result<(), Error> {
        let key = Key::of(target, service);
        self.log(Call::MarkFailed, &key, Some(&release.id));
        self.with_svc(&key, |svc| {
            for d in svc.deployments.iter_mut().filter(|d| d.release.as_deref() == Some(release.id.as_str())) {
                d.marked_failed = true;
            }
        });
        Ok(())
    }

    async fn status(&self, target: Target<'_>, service: &Service) -> Result<ServiceStatus, Error> {
        let key = Key::of(target, service);
        self.log(Call::Status, &key, None);
        let platform_name = self.platform_name(target, service);
        let st = self.lock();
        let Some(svc) = st.services.get(&key) else { return Ok(ServiceStatus::missing(&service.name, platform_name)) };
        let mut status = ServiceStatus::missing(&service.name, platform_name);
        status.exists = true;
        // A web service is served at its platform name, as Fly serves `<app>.fly.dev`.
        if service.port.is_some() {
            status.url = Some(format!("https://{}.memory.test", status.platform_name));
        }
        if let Some(d) = svc.live() {
            status.release = Some(d.release.clone().unwrap_or_else(|| d.id.clone()));
            status.git_sha = d.git_sha.clone();
            status.digest = Some(d.digest.clone());
            status.image = Some(d.image.clone());
            status.instances = (0..d.settings.replicas)
                .map(|i| {
                    Instance::new(format!("{}-{i}", d.id), None, InstanceState::Started, Some(d.digest.clone()), true)
                })
                .collect();
        }
        Ok(status)
    }

    async fn releases(&self, target: Target<'_>, service: &Service) -> Result<Vec<Release>, Error> {
        let key = Key::of(target, service);
        self.log(Call::Releases, &key, None);
        let st = self.lock();
        Ok(st
            .services
            .get(&key)
            .map(|svc| svc.deployments.iter().rev().map(|d| d.to_release(&service.name)).collect())
            .unwrap_or_default())
    }

    async fn sync_secrets(
        &self,
        target: Target<'_>,
        service: &Service,
        values: &[(String, SecretString)],
    ) -> Result<SecretsSynced, Error> {
        let key = Key::of(target, service);
        self.log(Call::SyncSecrets, &key, None);
        let platform_name = self.platform_name(target, service);
        let mut st = self.lock();
        let svc = st.services.entry(key).or_insert_with(|| Svc::new(platform_name));
        for (name, value) in values {
            svc.secrets.insert(name.clone(), value.clone());
        }
        svc.secrets_version += 1;
        let names = values.iter().map(|(n, _)| n.clone()).collect();
        Ok(SecretsSynced::new(&service.name, names, Some(svc.secrets_version)))
    }

    async fn secret_names(&self, target: Target<'_>, service: &Service) -> Result<Vec<String>, Error> {
        let key = Key::of(target, service);
        self.log(Call::SecretNames, &key, None);
        Ok(self.lock().services.get(&key).map(|s| s.secrets.keys().cloned().collect()).unwrap_or_default())
    }
}
