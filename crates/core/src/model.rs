//! The application model: what `shipit.toml` describes, resolved and validated.
//!
//! The model is data: plain structs that say what should run. What a platform does with them
//! lives in the platform crates.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use indexmap::IndexMap;
use serde::Serialize;

use crate::duration::GoDuration;
use crate::image::ImageRef;

/// One application: its services, databases, environments and targets.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct App {
    /// The app name (lowercase letters, digits and dashes).
    pub name: String,
    /// Where images live.
    pub registry: RegistryConfig,
    /// Services as written in the manifest, before any environment's overrides.
    pub services: IndexMap<String, Service>,
    /// Managed databases.
    pub databases: IndexMap<String, Database>,
    /// Environments, each with its services after overrides are merged.
    pub environments: IndexMap<String, Environment>,
    /// Per-platform settings.
    pub targets: Targets,
}

impl App {
    /// The environment called `name`.
    pub fn environment(&self, name: &str) -> Result<&Environment, UnknownEnvironment> {
        self.environments.get(name).ok_or_else(|| UnknownEnvironment {
            name: name.to_string(),
            known: self.environments.keys().cloned().collect(),
        })
    }

    /// The platform name of `service` (a service or database) in environment `env` on `platform`.
    pub fn platform_name(&self, platform: PlatformKind, service: &str, env: &str) -> String {
        self.targets.name_template(platform).expand(&self.name, service, env)
    }

    /// The platform a command should use: `explicit` if given, else the environment's target,
    /// else the only target the manifest configures.
    pub fn resolve_platform(&self, explicit: Option<PlatformKind>, env: Option<&str>) -> Option<PlatformKind> {
        if explicit.is_some() {
            return explicit;
        }
        if let Some(target) = env.and_then(|e| self.environments.get(e)).and_then(|e| e.target) {
            return Some(target);
        }
        let declared = self.targets.declared();
        match declared.as_slice() {
            [only] => Some(*only),
            _ => None,
        }
    }
}

/// An environment name that the manifest does not declare.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no environment {name:?} in the manifest (it has: {})", known.join(", "))]
pub struct UnknownEnvironment {
    /// The name asked for.
    pub name: String,
    /// The environments the manifest declares.
    pub known: Vec<String>,
}

/// Where images live.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RegistryConfig {
    /// Registry host (default `ghcr.io`).
    pub host: String,
    /// Owner or organisation; image `api` defaults to `{host}/{namespace}/{app}-api`.
    pub namespace: Option<String>,
}

/// One service of the app as it should run.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Service {
    /// Service name.
    pub name: String,
    /// Image repository (no tag: the tag or digest comes with each deploy).
    pub image: ImageRef,
    /// Where its Dockerfile lives, for the rendered CI workflow.
    pub build: BuildSpec,
    /// The port it listens on; `None` for a background worker.
    pub port: Option<u16>,
    /// Command that replaces the image's CMD.
    pub command: Option<Vec<String>>,
    /// HTTP health check.
    pub health: Option<HealthCheck>,
    /// Environment variables by name, sorted.
    pub env: BTreeMap<String, EnvValue>,
    /// How many instances run.
    pub scale: Scaling,
    /// Machine size; `None` leaves the platform's default.
    pub vm: Option<Vm>,
    /// Restart policy; `None` leaves the platform's default.
    pub restart: Option<RestartPolicy>,
    /// What the image must satisfy before it is deployed.
    pub policy: ImagePolicy,
}

/// Rules an image must satisfy before `deploy` rolls it out (`policy = { … }`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ImagePolicy {
    /// Largest compressed size (sum of layers) of any platform's image, in MB (10^6 bytes).
    pub max_image_mb: Option<u64>,
    /// The image must not run as root (`User` set, not `root` or `0`).
    pub non_root: bool,
    /// The image must declare a HEALTHCHECK.
    pub require_healthcheck: bool,
}

impl ImagePolicy {
    /// Whether any rule is set.
    pub fn is_empty(&self) -> bool {
        self.max_image_mb.is_none() && !self.non_root && !self.require_healthcheck
    }
}

impl Service {
    /// Names of the secrets this service needs, sorted.
    pub fn secret_names(&self) -> impl Iterator<Item = &str> {
        self.env.iter().filter(|(_, v)| matches!(v, EnvValue::Secret)).map(|(k, _)| k.as_str())
    }
}

/// Build context of a service's image.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct BuildSpec {
    /// Directory sent to the builder (default `apps/<service>`).
    pub context: String,
    /// Dockerfile path (default `<context>/Dockerfile`).
    pub dockerfile: String,
}

/// The value of one environment variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
#[non_exhaustive]
pub enum EnvValue {
    /// A literal value written in the manifest.
    Plain(String),
    /// A secret: only its name is known; the value is set on the platform.
    Secret,
    /// A value taken from a database or another service.
    From(Reference),
}

/// `<name>.<property>`: a property of a database or of another service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Reference {
    /// The database or service name.
    pub target: String,
    /// Whether `target` is a database or a service.
    pub kind: ReferenceKind,
    /// Which property.
    pub property: Property,
}

/// What a reference points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferenceKind {
    /// A database of `[databases]`.
    Database,
    /// A service of `[services]`.
    Service,
}

/// A property of a database or service that `env_from` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Property {
    /// Database connection URL.
    ConnectionString,
    /// Host name.
    Host,
    /// Port number.
    Port,
    /// Database user.
    User,
    /// Database password.
    Password,
    /// Database name.
    Database,
    /// A service's public URL.
    Url,
}

impl Property {
    /// Properties a database offers.
    pub const DATABASE: &'static [&'static str] =
        &["connection_string", "host", "port", "user", "password", "database"];
    /// Properties a service offers.
    pub const SERVICE: &'static [&'static str] = &["url", "host", "port"];

    /// Parses a property name as written in `env_from`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "connection_string" => Self::ConnectionString,
            "host" => Self::Host,
            "port" => Self::Port,
            "user" => Self::User,
            "password" => Self::Password,
            "database" => Self::Database,
            "url" => Self::Url,
            _ => return None,
        })
    }
}

/// An HTTP health check.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct HealthCheck {
    /// Path, starting with `/`.
    pub path: String,
    /// Time between checks (default 15s).
    pub interval: GoDuration,
    /// Time one check may take (default 5s).
    pub timeout: GoDuration,
    /// Time after start before failures count (default 10s).
    pub grace: GoDuration,
}

impl HealthCheck {
    /// The default `(interval, timeout, grace)`: 15 s, 5 s, 10 s.
    pub fn default_timing() -> (GoDuration, GoDuration, GoDuration) {
        (GoDuration::from_secs(15), GoDuration::from_secs(5), GoDuration::from_secs(10))
    }
}

/// How many instances run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Scaling {
    /// Instances that always run (default 1).
    pub min: u32,
    /// Most instances (default `min`).
    pub max: u32,
    /// Stop idle instances down to `min` (default false).
    pub auto_stop: bool,
}

/// Machine size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Vm {
    /// Shared or dedicated CPUs.
    pub cpu_kind: CpuKind,
    /// Number of CPUs (positive).
    pub cpus: u32,
    /// Memory in MB (positive).
    pub memory_mb: u32,
}

/// Shared or dedicated CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CpuKind {
    /// Shared CPU (Fly's `shared`).
    Shared,
    /// Dedicated CPU (Fly's `performance`).
    Performance,
}

impl CpuKind {
    /// The name as written in the manifest and in fly.toml.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shared => "shared",
            Self::Performance => "performance",
        }
    }
}

/// When a crashed instance is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RestartPolicy {
    /// The policy.
    pub policy: RestartKind,
    /// Most restarts for `on-failure`.
    pub retries: Option<u32>,
}

/// Restart policies, as Fly names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartKind {
    /// Always restart.
    Always,
    /// Restart when the process exits non-zero.
    OnFailure,
    /// Never restart.
    Never,
}

impl RestartKind {
    /// The name as written in the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::OnFailure => "on-failure",
            Self::Never => "never",
        }
    }
}

/// A managed database.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Database {
    /// Database name.
    pub name: String,
    /// Engine.
    pub engine: Engine,
    /// Major version (`"16"`), when pinned.
    pub version: Option<String>,
}

/// Database engines shipit knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    /// PostgreSQL.
    Postgres,
    /// Redis (Render calls it Key Value).
    Redis,
}

/// One environment (staging, production…) with its services after overrides.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Environment {
    /// Environment name.
    pub name: String,
    /// The platform it runs on unless a command says otherwise.
    pub target: Option<PlatformKind>,
    /// Regions, in the platform's spelling; empty means the target's default.
    pub regions: Vec<String>,
    /// Rollout strategy; `None` (not written) is the platform's own way (rolling on Fly).
    pub strategy: Option<Strategy>,
    /// Every service, with this environment's overrides merged over the base.
    pub services: IndexMap<String, Service>,
}

/// How new instances replace old ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// A few at a time, each health-gated.
    Rolling,
    /// All at once.
    Immediate,
    /// One first, then the rest.
    Canary,
    /// A full new set, then a switch.
    Bluegreen,
}

impl Strategy {
    /// Names as written in the manifest and on the command line.
    pub const NAMES: &'static [&'static str] = &["rolling", "immediate", "canary", "bluegreen"];

    /// The name as written in the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rolling => "rolling",
            Self::Immediate => "immediate",
            Self::Canary => "canary",
            Self::Bluegreen => "bluegreen",
        }
    }
}

impl FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "rolling" => Self::Rolling,
            "immediate" => Self::Immediate,
            "canary" => Self::Canary,
            "bluegreen" => Self::Bluegreen,
            _ => return Err(format!("expected one of {}, found {s:?}", Self::NAMES.join(", "))),
        })
    }
}

/// The platforms shipit deploys to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlatformKind {
    /// Fly.io.
    Fly,
    /// Railway.
    Railway,
    /// Render.
    Render,
}

impl PlatformKind {
    /// All platforms.
    pub const ALL: [Self; 3] = [Self::Fly, Self::Railway, Self::Render];

    /// The name as written in the manifest and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fly => "fly",
            Self::Railway => "railway",
            Self::Render => "render",
        }
    }

    /// What the platform calls one running copy of a service, plural (for messages).
    pub fn instances_noun(self) -> &'static str {
        match self {
            Self::Fly => "machines",
            Self::Railway => "replicas",
            Self::Render => "instances",
        }
    }
}

impl fmt::Display for PlatformKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PlatformKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("expected one of fly, railway, render, found {s:?}"))
    }
}

/// Per-platform settings from `[targets]`.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Targets {
    /// `[targets.fly]`.
    pub fly: FlyTarget,
    /// `[targets.railway]`.
    pub railway: RailwayTarget,
    /// `[targets.render]`.
    pub render: RenderTarget,
}

impl Targets {
    /// The name template for a platform.
    pub fn name_template(&self, platform: PlatformKind) -> &NameTemplate {
        match platform {
            PlatformKind::Fly => &self.fly.name_template,
            PlatformKind::Railway => &self.railway.name_template,
            PlatformKind::Render => &self.render.name_template,
        }
    }

    /// Platforms that have a `[targets.X]` table.
    pub fn declared(&self) -> Vec<PlatformKind> {
        let mut out = Vec::new();
        if self.fly.declared {
            out.push(PlatformKind::Fly);
        }
        if self.railway.declared {
            out.push(PlatformKind::Railway);
        }
        if self.render.declared {
            out.push(PlatformKind::Render);
        }
        out
    }
}

/// `[targets.fly]`.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct FlyTarget {
    /// Whether the manifest has this table.
    pub declared: bool,
    /// Organisation slug (default `personal`).
    pub org: String,
    /// Primary region; defaults to the environment's first region.
    pub primary_region: Option<String>,
    /// App name template (default `{app}-{service}-{env}`).
    pub name_template: NameTemplate,
}

/// `[targets.railway]`.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RailwayTarget {
    /// Whether the manifest has this table.
    pub declared: bool,
    /// Railway project name (default: the app name).
    pub project: Option<String>,
    /// Service name template (default `{service}`: Railway has environments of its own).
    pub name_template: NameTemplate,
    /// Region used when an environment names no Railway region (default `us-west2`).
    pub region: Option<String>,
    /// Railway environment of a manifest environment, where the names differ.
    pub environments: BTreeMap<String, String>,
    /// Railway service name of a database, where it is not the database's own name.
    pub databases: BTreeMap<String, String>,
}

impl RailwayTarget {
    /// The Railway environment of manifest environment `env`.
    pub fn environment_name<'a>(&'a self, env: &'a str) -> &'a str {
        self.environments.get(env).map_or(env, String::as_str)
    }
}

/// `[targets.render]`.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RenderTarget {
    /// Whether the manifest has this table.
    pub declared: bool,
    /// Region (default `oregon`).
    pub region: Option<String>,
    /// Service name template (default `{app}-{service}-{env}`).
    pub name_template: NameTemplate,
    /// Plan per service, overriding the one chosen from `vm`.
    pub plans: BTreeMap<String, String>,
    /// Name of the registry credential Render uses to pull private images.
    pub registry_credential: Option<String>,
    /// The workspace (owner), by id or name; default: the only one the API key sees.
    pub owner: Option<String>,
}

/// A platform name template with `{app}`, `{service}` and `{env}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct NameTemplate(pub String);

impl NameTemplate {
    /// The default template.
    pub const DEFAULT: &'static str = "{app}-{service}-{env}";
    /// Placeholders a template may use.
    pub const PLACEHOLDERS: &'static [&'static str] = &["app", "service", "env"];

    /// The name for one service in one environment.
    pub fn expand(&self, app: &str, service: &str, env: &str) -> String {
        self.0.replace("{app}", app).replace("{service}", service).replace("{env}", env)
    }
}

/// Whether `name` is a valid app, service or platform name: lowercase letters, digits and
/// dashes, starting with a letter, not ending with a dash, at most 63 characters.
pub fn is_valid_name(name: &str) -> bool {
    name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}
