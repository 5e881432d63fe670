//! The [`Platform`] trait: what shipit asks of Fly.io, Railway and Render.
//!
//! The model says *what* should run; a platform is *how*. The trait is async and object-safe
//! (`&dyn Platform`), so the engine, the CLI and the conformance suite treat every platform
//! alike. What a platform cannot do it declares in [`Capabilities`] and refuses with an
//! [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) error.
//!
//! Each method works on one service of one environment. Deploys are by digest: the engine
//! resolves tags first and hands a platform a [`PinnedImage`], so a platform never sees a tag
//! that could move under it.
//!
//! # Restore points
//!
//! Deciding is the engine's job, restoring the platform's. Before it changes a service the
//! engine takes a [`RestorePoint`] ([`Platform::restore_point`]): what runs (as a [`Release`])
//! plus whatever the platform needs to put back *everything a deploy moves*, kept opaque in
//! [`RestorePoint::state`] (Fly: every machine's config; Railway: the live deployment and the
//! service instance's source and settings; Render: the live deploy and the service's image and
//! settings). [`Platform::deploy`] says whether it touched anything ([`DeployFailure::touched`]):
//! a failure before any change needs no restore. On failure the engine calls
//! [`Platform::restore`], which puts image *and* settings back (never old secret values), so
//! that a later redeploy or variable change cannot resurrect the failed image. A manual
//! rollback takes its point from history ([`Platform::release_point`]) and goes through the
//! same `restore`.
//!
//! A deploy runs under the environment's lock where the platform has one
//! ([`Capabilities::locks`]); once it holds it, it re-reads what runs and refreshes the restore
//! point it was given, so a deploy that waited for another one never "restores" the other
//! deploy's work away.

use std::time::Duration;

use secrecy::SecretString;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, ErrorKind};
use crate::events::Events;
use crate::files::{RenderError, RenderedFile};
use crate::image::ImageRef;
use crate::model::{App, EnvValue, Environment, PlatformKind, ReferenceKind, Service, Strategy};

/// What a platform can do. The engine reads it; the conformance suite skips checks by it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Capabilities {
    /// Whether the platform has a rollback of its own (Railway, Render). The engine never calls it
    /// directly: a platform's `restore` uses it where it restores exactly what a deploy moved.
    pub native_rollback: bool,
    /// Rollout strategies a deploy may ask for. Empty: only the platform's own way (a request
    /// with no strategy), as on Railway and Render.
    pub strategies: Vec<Strategy>,
    /// Whether concurrent deploys are excluded by locks the platform keeps (Fly's leases).
    pub locks: bool,
    /// Whether it scales between min and max by itself.
    pub autoscaling: bool,
    /// Whether shipit can create its databases.
    pub managed_databases: bool,
}

impl Capabilities {
    /// Whether a deploy may ask for `strategy` (`None`, the platform's own way, always may).
    pub fn supports(&self, strategy: Option<Strategy>) -> bool {
        strategy.is_none_or(|s| self.strategies.contains(&s))
    }

    /// Refuses a strategy the platform does not implement.
    pub fn check_strategy(&self, platform: PlatformKind, strategy: Option<Strategy>) -> Result<(), Error> {
        match strategy {
            Some(s) if !self.supports(Some(s)) => {
                Err(Error::unsupported(platform.as_str(), format!("the {} strategy", s.as_str())))
            }
            _ => Ok(()),
        }
    }
}

/// An image pinned by digest: the only kind of image a platform is handed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PinnedImage(ImageRef);

impl PinnedImage {
    /// Pins `image`; refused when it has no digest.
    pub fn new(image: ImageRef) -> Result<Self, Error> {
        match &image.digest {
            Some(d) if !d.is_empty() => Ok(Self(image)),
            _ => Err(Error::new(ErrorKind::InvalidConfig, format!("deploys are by digest, and {image} has none"))),
        }
    }

    /// The digest (`sha256:…`).
    pub fn digest(&self) -> &str {
        self.0.digest.as_deref().unwrap_or_default()
    }

    /// The image reference (with its digest, and its tag when known).
    pub fn image(&self) -> &ImageRef {
        &self.0
    }
}

impl std::fmt::Display for PinnedImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// One environment of one app on one platform: where an operation happens.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The app.
    pub app: &'a App,
    /// The environment (services already have its overrides).
    pub env: &'a Environment,
}

impl Target<'_> {
    /// The platform name of `service` (a service or database).
    pub fn platform_name(&self, platform: PlatformKind, service: &str) -> String {
        self.app.platform_name(platform, service, &self.env.name)
    }
}

/// Who and what a release is: written to the platform where it keeps metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ReleaseInfo {
    /// Release id shipit made (`20261122T031500Z-3f2c1ab-4e1f`).
    pub id: String,
    /// Git commit, from `--sha` or `GITHUB_SHA`.
    pub git_sha: Option<String>,
}

impl ReleaseInfo {
    /// A release.
    pub fn new(id: impl Into<String>, git_sha: Option<String>) -> Self {
        Self { id: id.into(), git_sha }
    }
}

/// Everything a platform needs to roll one service out to one digest.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeployRequest<'a> {
    /// Where.
    pub target: Target<'a>,
    /// Which service (with the environment's overrides).
    pub service: &'a Service,
    /// The image, pinned by digest.
    pub image: PinnedImage,
    /// The release this deploy makes live.
    pub release: ReleaseInfo,
    /// How instances are replaced; `None` is the platform's own way.
    pub strategy: Option<Strategy>,
    /// How long to wait for the new release to become healthy.
    pub wait_timeout: Duration,
    /// Whether the platform may create the app or service when it does not exist.
    pub create: bool,
    /// How long to wait for another deploy's lock before failing with a conflict.
    pub lock_wait: Duration,
    /// Roll out even when the service already runs this digest with these settings (`--restart`):
    /// instances are replaced through the same health gate, so values set since (rotated secrets)
    /// reach them. The platform's own rollout: Fly updates every machine, Railway and Render
    /// deploy.
    pub restart: bool,
    /// Ctrl-C / SIGTERM: stop between steps, release locks, leave instances on a known image.
    pub cancel: CancellationToken,
    /// Where progress goes.
    pub events: Events,
}

impl<'a> DeployRequest<'a> {
    /// A request with defaults (the platform's own strategy, 5 minute wait, may create, no lock
    /// wait, no restart, no cancellation, events dropped); set the other (public) fields as needed.
    pub fn new(target: Target<'a>, service: &'a Service, image: PinnedImage, release: ReleaseInfo) -> Self {
        Self {
            target,
            service,
            image,
            release,
            strategy: None,
            wait_timeout: Duration::from_secs(300),
            create: true,
            lock_wait: Duration::ZERO,
            restart: false,
            cancel: CancellationToken::new(),
            events: Events::none(),
        }
    }

    /// The digest being deployed.
    pub fn digest(&self) -> &str {
        self.image.digest()
    }
}

/// Why a service is being put back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RestoreReason {
    /// Release `release` failed on this service.
    Failed {
        /// The release that failed.
        release: ReleaseInfo,
        /// What went wrong.
        why: String,
    },
    /// Release `release` was fine here, but another service of it failed (`--atomic`).
    Atomic {
        /// The release being taken back.
        release: ReleaseInfo,
        /// Which service failed, and how.
        why: String,
    },
    /// `shipit rollback`: a person or CI asked for an earlier release.
    Rollback,
}

impl RestoreReason {
    /// The release being replaced because it failed (never a rollback target afterwards).
    pub fn failed_release(&self) -> Option<&ReleaseInfo> {
        match self {
            Self::Failed { release, .. } | Self::Atomic { release, .. } => Some(release),
            Self::Rollback => None,
        }
    }
}

/// Everything a platform needs to put one service back to a [`RestorePoint`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RestoreRequest<'a> {
    /// Where.
    pub target: Target<'a>,
    /// Which service.
    pub service: &'a Service,
    /// Why.
    pub reason: RestoreReason,
    /// How long the restored release may take to become healthy.
    pub wait_timeout: Duration,
    /// How long to wait for another deploy's lock.
    pub lock_wait: Duration,
    /// Ctrl-C / SIGTERM.
    pub cancel: CancellationToken,
    /// Where progress goes.
    pub events: Events,
}

impl<'a> RestoreRequest<'a> {
    /// A request with defaults (5 minute wait, 30 s lock wait, no cancellation, events dropped).
    pub fn new(target: Target<'a>, service: &'a Service, reason: RestoreReason) -> Self {
        Self {
            target,
            service,
            reason,
            wait_timeout: Duration::from_secs(300),
            lock_wait: Duration::from_secs(30),
            cancel: CancellationToken::new(),
            events: Events::none(),
        }
    }
}

/// What runs for one service, and what the platform needs to put it back.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RestorePoint {
    /// Service.
    pub service: String,
    /// Whether the platform had the service (app, service) at all.
    pub exists: bool,
    /// The release that runs (shipit's id, the platform's id, digest, git sha); `None` when
    /// nothing runs or no single release does (a rollout left half done).
    pub release: Option<Release>,
    /// The platform's own record of everything a deploy changes (opaque to the engine; never
    /// holds secret values).
    #[serde(skip)]
    pub state: serde_json::Value,
}

impl RestorePoint {
    /// A point for a service the platform does not have.
    pub fn missing(service: impl Into<String>) -> Self {
        Self { service: service.into(), exists: false, release: None, state: serde_json::Value::Null }
    }

    /// A point for a service that exists.
    pub fn new(service: impl Into<String>, release: Option<Release>, state: serde_json::Value) -> Self {
        Self { service: service.into(), exists: true, release, state }
    }

    /// The digest it would put back, if one release runs.
    pub fn digest(&self) -> Option<&str> {
        self.release.as_ref().and_then(|r| r.digest.as_deref())
    }
}

/// The result of a deploy or restore of one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Deployed {
    /// Service.
    pub service: String,
    /// Digest it now runs.
    pub digest: String,
    /// False when it already ran this digest with these settings.
    pub changed: bool,
    /// Instances running it.
    pub instances: usize,
}

impl Deployed {
    /// A deploy result.
    pub fn new(service: impl Into<String>, digest: impl Into<String>, changed: bool, instances: usize) -> Self {
        Self { service: service.into(), digest: digest.into(), changed, instances }
    }
}

/// A deploy that failed, and whether it changed anything before it did.
#[derive(Debug)]
#[non_exhaustive]
pub struct DeployFailure {
    /// What went wrong.
    pub error: Error,
    /// Whether anything the service runs or is set to run may have changed (an update sent, even
    /// one whose answer was lost). False: what ran before still runs, nothing to restore.
    pub touched: bool,
}

impl DeployFailure {
    /// Failed before changing anything.
    pub fn untouched(error: Error) -> Self {
        Self { error, touched: false }
    }

    /// Failed after something changed (or may have).
    pub fn touched(error: Error) -> Self {
        Self { error, touched: true }
    }
}

impl From<DeployFailure> for Error {
    fn from(f: DeployFailure) -> Self {
        f.error
    }
}

/// Where a release stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseStatus {
    /// What runs now.
    Live,
    /// Passed its health gate and was later replaced: a rollback target.
    Superseded,
    /// Failed, or never passed its health gate: never a rollback target.
    Failed,
    /// Still rolling out.
    InProgress,
}

/// One release of one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Release {
    /// shipit's release id, or the platform's deployment id when shipit did not make it.
    pub id: String,
    /// The platform's own id (Railway/Render deployment id), when it has one.
    pub platform_id: Option<String>,
    /// Service.
    pub service: String,
    /// Image (with digest when known).
    pub image: Option<String>,
    /// Digest.
    pub digest: Option<String>,
    /// Git commit.
    pub git_sha: Option<String>,
    /// When it was created (RFC 3339).
    pub created_at: Option<String>,
    /// Where it stands.
    pub status: ReleaseStatus,
}

impl Release {
    /// A release with only its id, service and status; set the other (public) fields as known.
    pub fn new(id: impl Into<String>, service: impl Into<String>, status: ReleaseStatus) -> Self {
        Self {
            id: id.into(),
            platform_id: None,
            service: service.into(),
            image: None,
            digest: None,
            git_sha: None,
            created_at: None,
            status,
        }
    }

    /// Whether a rollback may return to this release: it passed its gate and has a digest.
    pub fn is_rollback_target(&self) -> bool {
        self.status == ReleaseStatus::Superseded && self.digest.is_some()
    }

    /// Who and what it is, for a platform that records releases.
    pub fn info(&self) -> ReleaseInfo {
        ReleaseInfo::new(self.id.clone(), self.git_sha.clone())
    }
}

/// Where one instance stands, in shipit's words (each platform maps its own states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum InstanceState {
    /// Created, not started yet.
    Created,
    /// Starting (or being replaced).
    Starting,
    /// Running.
    Started,
    /// Stopping.
    Stopping,
    /// Stopped (on purpose, or scaled to zero).
    Stopped,
    /// Suspended or sleeping.
    Suspended,
    /// Failed or crashed.
    Failed,
    /// Gone.
    Destroyed,
    /// A state shipit does not know.
    Unknown,
}

impl InstanceState {
    /// The name, as in JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Starting => "starting",
            Self::Started => "started",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Suspended => "suspended",
            Self::Failed => "failed",
            Self::Destroyed => "destroyed",
            Self::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for InstanceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One running instance (a Fly machine, a Railway replica, a Render instance…).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Instance {
    /// Platform id.
    pub id: String,
    /// Region.
    pub region: Option<String>,
    /// Where it stands.
    pub state: InstanceState,
    /// Digest it runs.
    pub digest: Option<String>,
    /// Whether every health check passes.
    pub healthy: bool,
}

impl Instance {
    /// An instance.
    pub fn new(
        id: impl Into<String>,
        region: Option<String>,
        state: InstanceState,
        digest: Option<String>,
        healthy: bool,
    ) -> Self {
        Self { id: id.into(), region, state, digest, healthy }
    }
}

/// What runs for one service now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ServiceStatus {
    /// Service.
    pub service: String,
    /// Its name on the platform.
    pub platform_name: String,
    /// Whether the platform has it at all.
    pub exists: bool,
    /// shipit release id it runs.
    pub release: Option<String>,
    /// Git commit of that release, when the platform keeps it.
    pub git_sha: Option<String>,
    /// Digest it runs (when every instance runs the same one).
    pub digest: Option<String>,
    /// Image it runs.
    pub image: Option<String>,
    /// Its instances.
    pub instances: Vec<Instance>,
    /// Its public URL (`https://…`), for a web service (one with a port) that has one: Fly's
    /// `https://<app>.fly.dev`, Railway's service or custom domain, Render's `serviceDetails.url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl ServiceStatus {
    /// A service the platform does not have.
    pub fn missing(service: &str, platform_name: String) -> Self {
        Self {
            service: service.to_string(),
            platform_name,
            exists: false,
            release: None,
            git_sha: None,
            digest: None,
            image: None,
            instances: Vec::new(),
            url: None,
        }
    }

    /// Whether it exists and every instance is healthy.
    pub fn healthy(&self) -> bool {
        self.exists && !self.instances.is_empty() && self.instances.iter().all(|i| i.healthy)
    }
}

/// One field that differs between the manifest and what runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct FieldChange {
    /// Which field (`image`, `guest.memory_mb`, `machines`…).
    pub field: String,
    /// What runs now (None when absent).
    pub live: Option<String>,
    /// What the manifest wants.
    pub desired: Option<String>,
}

impl FieldChange {
    /// A change.
    pub fn new(field: impl Into<String>, live: Option<String>, desired: Option<String>) -> Self {
        Self { field: field.into(), live, desired }
    }
}

/// Desired vs live for one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ServicePlan {
    /// Service.
    pub service: String,
    /// Its name on the platform.
    pub platform_name: String,
    /// Whether a deploy would create it.
    pub create: bool,
    /// What differs.
    pub changes: Vec<FieldChange>,
}

impl ServicePlan {
    /// A plan.
    pub fn new(
        service: impl Into<String>,
        platform_name: impl Into<String>,
        create: bool,
        changes: Vec<FieldChange>,
    ) -> Self {
        Self { service: service.into(), platform_name: platform_name.into(), create, changes }
    }

    /// Whether anything would change.
    pub fn has_changes(&self) -> bool {
        self.create || !self.changes.is_empty()
    }
}

/// What `sync_secrets` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SecretsSynced {
    /// Service.
    pub service: String,
    /// Names set (never values).
    pub names: Vec<String>,
    /// The platform's secrets version after the change, when it has one.
    pub version: Option<u64>,
    /// Nothing was set because the service does not exist yet: the deploy that creates it sets
    /// these (Render, whose services start deploying when they are created).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub at_creation: bool,
}

impl SecretsSynced {
    /// A sync result.
    pub fn new(service: impl Into<String>, names: Vec<String>, version: Option<u64>) -> Self {
        Self { service: service.into(), names, version, at_creation: false }
    }

    /// Nothing set yet: the deploy that creates the service sets `names`.
    pub fn at_creation(service: impl Into<String>, names: Vec<String>) -> Self {
        Self { at_creation: true, ..Self::new(service, names, None) }
    }
}

/// One API call a deploy would make: what `deploy --dry-run` prints. Bodies have secret values
/// masked (shipit never has them at that point anyway: secrets are set by `secrets sync`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct PlannedCall {
    /// `GET`, `POST`…; for GraphQL `POST` too, with [`operation`](Self::operation) set.
    pub method: String,
    /// The whole URL (`{id}` stands for a value only known at run time).
    pub url: String,
    /// The GraphQL operation name, for GraphQL APIs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// The request body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    /// When the call is made (`for each machine whose image or settings differ`); calls with the
    /// same `when` form one group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Why, or what the answer decides.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl PlannedCall {
    /// A call.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Self {
        Self { method: method.into(), url: url.into(), operation: None, body: None, when: None, note: None }
    }

    /// With a body.
    pub fn body(mut self, body: serde_json::Value) -> Self {
        self.body = Some(body);
        self
    }

    /// A GraphQL operation.
    pub fn operation(mut self, name: impl Into<String>) -> Self {
        self.operation = Some(name.into());
        self
    }

    /// Made only under this condition, or once per such thing.
    pub fn when(mut self, when: impl Into<String>) -> Self {
        self.when = Some(when.into());
        self
    }

    /// With a note.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    /// One line, as the human dry run prints it: `POST url {body}    (note)`.
    pub fn line(&self) -> String {
        let mut s = format!("{} {}", self.method, self.url);
        if let Some(op) = &self.operation {
            s.push_str(&format!(" {op}"));
        }
        if let Some(b) = &self.body {
            s.push(' ');
            s.push_str(&b.to_string());
        }
        if let Some(n) = &self.note {
            s.push_str(&format!("    ({n})"));
        }
        s
    }
}

/// A deployment platform.
#[async_trait::async_trait]
pub trait Platform: Send + Sync {
    /// Which platform.
    fn kind(&self) -> PlatformKind;

    /// What it can do.
    fn capabilities(&self) -> Capabilities;

    /// The platform's files for one environment.
    fn render(&self, app: &App, env: &str) -> Result<Vec<RenderedFile>, RenderError>;

    /// Names of the secrets `service` needs on this platform (by default its `secrets`).
    fn required_secrets(&self, service: &Service) -> Vec<String> {
        service.secret_names().map(str::to_string).collect()
    }

    /// Secret values the process has, offered before a deploy or promotion. A platform that
    /// must set a new service's secrets in the request that creates it (Render starts a
    /// service's first deploy at creation) puts them there; the others ignore them, since
    /// `secrets sync` sets secrets. Values are never logged or returned.
    fn offer_secrets(&self, values: Vec<(String, SecretString)>) {
        let _ = values;
    }

    /// The API calls a deploy of `service` to `image` would make, in order, with their bodies:
    /// what `shipit deploy --dry-run` prints. Makes no request and needs no token.
    fn describe_deploy(
        &self,
        target: Target<'_>,
        service: &Service,
        image: &ImageRef,
    ) -> Result<Vec<PlannedCall>, Error>;

    /// Desired vs live for one service; `image` is the digest a deploy would use, if known.
    async fn plan(&self, target: Target<'_>, service: &Service, image: Option<&ImageRef>)
    -> Result<ServicePlan, Error>;

    /// What runs now and everything a deploy would change: taken before any change.
    async fn restore_point(&self, target: Target<'_>, service: &Service) -> Result<RestorePoint, Error>;

    /// The point that returns `service` to `release` (from [`releases`](Self::releases)): its
    /// image and its settings as they were, today's secrets.
    async fn release_point(
        &self,
        target: Target<'_>,
        service: &Service,
        release: &Release,
    ) -> Result<RestorePoint, Error>;

    /// Rolls `req.service` out to `req.image`, health-gated, under the environment's lock.
    /// Once it holds the lock it refreshes `point` from what runs then. On failure it says
    /// whether it touched anything; locks are always released; restoring is left to the engine.
    async fn deploy(&self, req: &DeployRequest<'_>, point: &mut RestorePoint) -> Result<Deployed, DeployFailure>;

    /// Puts `req.service` back to `point`: image and settings, health-gated, never old secret
    /// values. Records `req.reason`'s failed release as failed where the platform keeps such
    /// records, so it is never a rollback target. On failure it says whether it touched anything.
    async fn restore(&self, req: &RestoreRequest<'_>, point: &RestorePoint) -> Result<Deployed, DeployFailure>;

    /// Records that `release` failed on `service` and was left in place (`--on-failure leave`,
    /// or nothing to go back to), where the platform does not record that by itself.
    async fn mark_failed(
        &self,
        _target: Target<'_>,
        _service: &Service,
        _release: &ReleaseInfo,
        _why: &str,
    ) -> Result<(), Error> {
        Ok(())
    }

    /// What runs now.
    async fn status(&self, target: Target<'_>, service: &Service) -> Result<ServiceStatus, Error>;

    /// Releases of one service, newest first.
    async fn releases(&self, target: Target<'_>, service: &Service) -> Result<Vec<Release>, Error>;

    /// Sets secrets by name; never logs or returns values.
    async fn sync_secrets(
        &self,
        target: Target<'_>,
        service: &Service,
        values: &[(String, SecretString)],
    ) -> Result<SecretsSynced, Error>;

    /// Names of the secrets the platform has for `service`.
    async fn secret_names(&self, target: Target<'_>, service: &Service) -> Result<Vec<String>, Error>;
}

/// Resolves image tags to digests (implemented by shipit-registry).
#[async_trait::async_trait]
pub trait Resolver: Send + Sync {
    /// The digest `image` (with a tag) points to now.
    async fn resolve(&self, image: &ImageRef) -> Result<String, Error>;
}

/// What the engine needs from the registry beyond tags: image facts for the policy, and moving
/// an environment's tag to the digest it now runs (implemented by shipit-registry).
#[async_trait::async_trait]
pub trait ImageRegistry: Resolver {
    /// Sizes and config of every platform of `image` (pinned by digest).
    async fn inspect(&self, image: &ImageRef) -> Result<crate::policy::ImageFacts, Error>;

    /// Points `tag` at `image`'s digest in the same repository, moving no blob.
    async fn tag(&self, image: &ImageRef, tag: &str) -> Result<(), Error>;
}

/// Names of variables that come from a database (on Fly they are secrets).
pub fn database_reference_names(service: &Service) -> impl Iterator<Item = &str> {
    service
        .env
        .iter()
        .filter(|(_, v)| matches!(v, EnvValue::From(r) if r.kind == ReferenceKind::Database))
        .map(|(k, _)| k.as_str())
}
