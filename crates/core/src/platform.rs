//! The [`Platform`] trait: what shipit asks of Fly.io, Railway and Render.
//!
//! The model says *what* should run; a platform is *how*. The trait is async and object-safe
//! (`&dyn Platform`), so the engine, the CLI and the conformance suite treat every platform
//! alike. What a platform cannot do it declares in [`Capabilities`] and refuses with an
//! [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) error.
//!
//! Each method works on one service of one environment. Deploys are by digest: the engine
//! resolves tags first, so a platform never sees a tag that could move under it.

use std::time::Duration;

use secrecy::SecretString;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::events::Events;
use crate::files::{RenderError, RenderedFile};
use crate::image::ImageRef;
use crate::model::{App, EnvValue, Environment, PlatformKind, ReferenceKind, Service, Strategy};

/// What a platform can do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Capabilities {
    /// Rollout strategies it implements.
    pub strategies: Vec<Strategy>,
    /// Whether it has rollback of its own (Railway, Render) or shipit redeploys the old digest (Fly).
    pub native_rollback: bool,
    /// Whether it scales between min and max by itself.
    pub autoscaling: bool,
    /// Whether shipit can create its databases.
    pub managed_databases: bool,
    /// Whether concurrent deploys are excluded by leases.
    pub leases: bool,
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
    pub image: ImageRef,
    /// The release this deploy makes live.
    pub release: ReleaseInfo,
    /// How instances are replaced.
    pub strategy: Strategy,
    /// How long to wait for the new release to become healthy.
    pub wait_timeout: Duration,
    /// Whether the platform may create the app or service when it does not exist.
    pub create: bool,
    /// How long to wait for another deploy's lock before failing with a conflict.
    pub lock_wait: Duration,
    /// Set when this deploy restores an older release because `failed` did not work.
    pub failed_release: Option<String>,
    /// Ctrl-C / SIGTERM: stop between steps, release locks, leave instances on a known image.
    pub cancel: CancellationToken,
    /// Where progress goes.
    pub events: Events,
}

impl DeployRequest<'_> {
    /// The digest being deployed.
    pub fn digest(&self) -> &str {
        self.image.digest.as_deref().unwrap_or_default()
    }
}

/// The result of a deploy or rollback of one service.
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

/// Where a release stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseStatus {
    /// What runs now.
    Live,
    /// Ran successfully and was later replaced: a rollback target.
    Superseded,
    /// Failed (and was rolled back): never a rollback target.
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
    /// Whether a rollback may return to this release.
    pub fn is_rollback_target(&self) -> bool {
        self.status == ReleaseStatus::Superseded && self.digest.is_some()
    }
}

/// One running instance (a Fly machine, a Render instance…).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Instance {
    /// Platform id.
    pub id: String,
    /// Region.
    pub region: Option<String>,
    /// Platform state (`started`, `stopped`…).
    pub state: String,
    /// Digest it runs.
    pub digest: Option<String>,
    /// Whether every health check passes.
    pub healthy: bool,
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

    /// The API calls a deploy of `service` to `image` would make, in order, with their bodies:
    /// what `shipit deploy --dry-run` prints. Makes no request and needs no token.
    fn describe_deploy(&self, target: Target<'_>, service: &Service, image: &ImageRef) -> Vec<String>;

    /// Desired vs live for one service; `image` is the digest a deploy would use, if known.
    async fn plan(&self, target: Target<'_>, service: &Service, image: Option<&ImageRef>)
    -> Result<ServicePlan, Error>;

    /// Rolls `req.service` out to `req.image`, health-gated. On failure the instances already
    /// updated are left for the engine to roll back; leases are always released.
    async fn deploy(&self, req: &DeployRequest<'_>) -> Result<Deployed, Error>;

    /// What runs now.
    async fn status(&self, target: Target<'_>, service: &Service) -> Result<ServiceStatus, Error>;

    /// Releases of one service, newest first.
    async fn releases(&self, target: Target<'_>, service: &Service) -> Result<Vec<Release>, Error>;

    /// Returns `req.service` to release `to` through the same health-gated path.
    async fn rollback(&self, req: &DeployRequest<'_>, to: &Release) -> Result<Deployed, Error>;

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

// Constructors for the `#[non_exhaustive]` results above, so platform crates can build them.

impl Capabilities {
    /// Capabilities.
    pub fn new(
        strategies: Vec<Strategy>,
        native_rollback: bool,
        autoscaling: bool,
        managed_databases: bool,
        leases: bool,
    ) -> Self {
        Self { strategies, native_rollback, autoscaling, managed_databases, leases }
    }
}

impl Deployed {
    /// A deploy result.
    pub fn new(service: impl Into<String>, digest: impl Into<String>, changed: bool, instances: usize) -> Self {
        Self { service: service.into(), digest: digest.into(), changed, instances }
    }
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
}

impl Instance {
    /// An instance.
    pub fn new(
        id: impl Into<String>,
        region: Option<String>,
        state: impl Into<String>,
        digest: Option<String>,
        healthy: bool,
    ) -> Self {
        Self { id: id.into(), region, state: state.into(), digest, healthy }
    }
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
}

impl SecretsSynced {
    /// A sync result.
    pub fn new(service: impl Into<String>, names: Vec<String>, version: Option<u64>) -> Self {
        Self { service: service.into(), names, version }
    }
}

impl<'a> DeployRequest<'a> {
    /// A request with defaults (rolling, 5 minute wait, may create, no lock wait, no
    /// cancellation, events dropped); set the other (public) fields as needed.
    pub fn new(target: Target<'a>, service: &'a Service, image: ImageRef, release: ReleaseInfo) -> Self {
        Self {
            target,
            service,
            image,
            release,
            strategy: Strategy::Rolling,
            wait_timeout: Duration::from_secs(300),
            create: true,
            lock_wait: Duration::ZERO,
            failed_release: None,
            cancel: CancellationToken::new(),
            events: Events::none(),
        }
    }
}
