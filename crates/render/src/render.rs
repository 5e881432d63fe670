//! Renders one environment of the app as a `render.yaml` Blueprint.

use std::collections::BTreeMap;

use serde::Serialize;
use shipit_core::{
    App, Database, Engine, EnvValue, PlatformKind, Property, Reference, ReferenceKind, RenderError, RenderedFile,
    Service, Vm,
};

pub use crate::regions::{DEFAULT_REGION, REGIONS};

/// Instance plans in the Blueprint's spelling, smallest first, with CPUs (in thousandths) and
/// memory in MB, from Render's pricing page. `free` is left out: shipit never picks it.
pub const PLANS: &[(&str, u32, u32)] = &[
    ("starter", 500, 512),
    ("standard", 1000, 2048),
    ("pro", 2000, 4096),
    ("pro plus", 4000, 8192),
    ("pro max", 4000, 16384),
    ("pro ultra", 8000, 32768),
];

/// Plan of a Key Value instance unless one is chosen.
pub const DEFAULT_KEYVALUE_PLAN: &str = "starter";

/// Plan of a Postgres database (the smallest paid one).
pub const DEFAULT_POSTGRES_PLAN: &str = "basic-256mb";

/// Postgres major versions the Blueprint accepts.
pub const POSTGRES_VERSIONS: &[&str] = &["10", "11", "12", "13", "14", "15", "16", "17", "18"];

/// Autoscaling target for services whose `scale.min` and `scale.max` differ.
pub const TARGET_CPU_PERCENT: u32 = 70;

/// The file name of the Blueprint.
pub const FILE_NAME: &str = "render.yaml";

/// A Render Blueprint (`render.yaml`) for one environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Blueprint {
    /// Web services, workers and Key Value instances.
    pub services: Vec<BlueprintService>,
    /// Postgres databases.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub databases: Vec<PostgresDatabase>,
}

/// One entry of `services:`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum BlueprintService {
    /// A web service or a background worker.
    Server(ServerService),
    /// A Key Value (Redis) instance.
    KeyValue(KeyValue),
}

/// Kinds of server service shipit renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceType {
    /// A service with a port, reachable over HTTPS.
    Web,
    /// A background worker with no port.
    Worker,
}

impl ServiceType {
    /// The name as the Blueprint writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Web => "web",
            Self::Worker => "worker",
        }
    }
}

/// A web service or worker running a prebuilt image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ServerService {
    /// `web` or `worker`.
    #[serde(rename = "type")]
    pub kind: ServiceType,
    /// Render service name.
    pub name: String,
    /// Always `image`: shipit deploys prebuilt images.
    pub runtime: String,
    /// The image and its pull credential.
    pub image: Image,
    /// Instance plan, Blueprint spelling.
    pub plan: String,
    /// Region.
    pub region: String,
    /// Fixed instance count, when not autoscaled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_instances: Option<u32>,
    /// Autoscaling, when `scale.min` and `scale.max` differ.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scaling: Option<Autoscaling>,
    /// Health check path (web services only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check_path: Option<String>,
    /// Command replacing the image's CMD, shell-quoted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docker_command: Option<String>,
    /// Environment variables, sorted by key.
    pub env_vars: Vec<EnvVar>,
}

/// `image:` of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Image {
    /// `<repository>:<environment>`.
    pub url: String,
    /// Registry credential for private images.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creds: Option<RegistryCreds>,
}

/// `creds: {fromRegistryCreds: {name}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryCreds {
    /// The credential, by name.
    pub from_registry_creds: Named,
}

/// `{name: ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Named {
    /// The name.
    pub name: String,
}

/// `scaling:` of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Autoscaling {
    /// Fewest instances.
    pub min_instances: u32,
    /// Most instances.
    pub max_instances: u32,
    /// CPU utilisation Render scales towards.
    #[serde(rename = "targetCPUPercent")]
    pub target_cpu_percent: u32,
}

/// One entry of `envVars:`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum EnvVar {
    /// A literal value.
    Value {
        /// Variable name.
        key: String,
        /// Its value.
        value: String,
    },
    /// A secret: `sync: false`, the value is set on Render, never in the file.
    Secret {
        /// Variable name.
        key: String,
        /// Always `false`.
        sync: bool,
    },
    /// A property of a Postgres database.
    #[serde(rename_all = "camelCase")]
    FromDatabase {
        /// Variable name.
        key: String,
        /// The database and property.
        from_database: FromDatabase,
    },
    /// A property of another service or of a Key Value instance.
    #[serde(rename_all = "camelCase")]
    FromService {
        /// Variable name.
        key: String,
        /// The service and property.
        from_service: FromService,
    },
}

impl EnvVar {
    /// The variable's name.
    pub fn key(&self) -> &str {
        match self {
            Self::Value { key, .. }
            | Self::Secret { key, .. }
            | Self::FromDatabase { key, .. }
            | Self::FromService { key, .. } => key,
        }
    }
}

/// `fromDatabase: {name, property}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct FromDatabase {
    /// Render name of the database.
    pub name: String,
    /// `connectionString`, `host`, `port`, `user`, `password` or `database`.
    pub property: String,
}

/// `fromService: {type, name, property}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct FromService {
    /// `web`, `worker` or `keyvalue`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Render name of the service.
    pub name: String,
    /// `connectionString`, `host` or `port`.
    pub property: String,
}

/// A Key Value (Redis) instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct KeyValue {
    /// Always `keyvalue`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Render name.
    pub name: String,
    /// Plan.
    pub plan: String,
    /// Region.
    pub region: String,
    /// Always empty: no access from outside Render.
    pub ip_allow_list: Vec<IpAllow>,
}

/// One `ipAllowList` entry (shipit writes none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct IpAllow {
    /// IP address or CIDR block.
    pub source: String,
}

/// A Postgres database of `databases:`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PostgresDatabase {
    /// Render name.
    pub name: String,
    /// Plan.
    pub plan: String,
    /// Region.
    pub region: String,
    /// Major version, when pinned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres_major_version: Option<String>,
    /// Always empty: no access from outside Render.
    pub ip_allow_list: Vec<IpAllow>,
}

fn err(message: impl Into<String>) -> RenderError {
    RenderError::new("render", message)
}

/// Renders `render.yaml` for environment `env`.
pub fn render(app: &App, env: &str) -> Result<Vec<RenderedFile>, RenderError> {
    let bp = blueprint(app, env)?;
    let yaml = serde_saphyr::to_string(&bp).map_err(|e| err(format!("cannot write {FILE_NAME}: {e}")))?;
    let header = format!("# Generated by shipit from shipit.toml (environment {env:?}); edit that, not this file.\n");
    Ok(vec![RenderedFile::new(FILE_NAME, header + &yaml)])
}

/// The Blueprint for environment `env`.
pub fn blueprint(app: &App, env: &str) -> Result<Blueprint, RenderError> {
    let environment = app.environment(env).map_err(|e| err(e.to_string()))?;
    // An environment's regions are Render's only when it runs on Render (or names no target).
    let env_region = match environment.target {
        None | Some(shipit_core::PlatformKind::Render) => environment.regions.first().map(String::as_str),
        Some(_) => None,
    };
    let region = region(app, &environment.name, env_region)?;
    let mut services = Vec::new();
    for svc in environment.services.values() {
        services.push(BlueprintService::Server(server_service(app, env, svc, &region)?));
    }
    let mut databases = Vec::new();
    for db in app.databases.values() {
        let name = app.platform_name(PlatformKind::Render, &db.name, env);
        match db.engine {
            Engine::Redis => services.push(BlueprintService::KeyValue(KeyValue {
                kind: "keyvalue".to_string(),
                name,
                plan: DEFAULT_KEYVALUE_PLAN.to_string(),
                region: region.clone(),
                ip_allow_list: Vec::new(),
            })),
            Engine::Postgres => databases.push(PostgresDatabase {
                name,
                plan: DEFAULT_POSTGRES_PLAN.to_string(),
                region: region.clone(),
                postgres_major_version: postgres_version(db)?,
                ip_allow_list: Vec::new(),
            }),
        }
    }
    Ok(Blueprint { services, databases })
}

/// One service of environment `env` as the Blueprint describes it (what `deploy` sends, in the
/// API's vocabulary, is built from this).
pub fn service_of(app: &App, env: &str, svc: &Service) -> Result<ServerService, RenderError> {
    let environment = app.environment(env).map_err(|e| err(e.to_string()))?;
    let env_region = match environment.target {
        None | Some(shipit_core::PlatformKind::Render) => environment.regions.first().map(String::as_str),
        Some(_) => None,
    };
    let region = region(app, &environment.name, env_region)?;
    server_service(app, env, svc, &region)
}

/// `targets.render.region`, else the environment's first region (when it targets Render), else
/// `oregon`; checked.
fn region(app: &App, env: &str, first: Option<&str>) -> Result<String, RenderError> {
    let (region, from) = match (&app.targets.render.region, first) {
        (Some(r), _) => (r.as_str(), "`targets.render.region`".to_string()),
        (None, Some(r)) => (r, format!("`environments.{env}.regions`")),
        (None, None) => (DEFAULT_REGION, String::new()),
    };
    if REGIONS.contains(&region) {
        return Ok(region.to_string());
    }
    Err(err(format!(
        "{region:?} (from {from}) is not a Render region; valid regions are {}; set `targets.render.region`",
        REGIONS.join(", ")
    )))
}

fn postgres_version(db: &Database) -> Result<Option<String>, RenderError> {
    let Some(v) = &db.version else {
        return Ok(None);
    };
    if POSTGRES_VERSIONS.contains(&v.as_str()) {
        return Ok(Some(v.clone()));
    }
    Err(err(format!(
        "database `{}`: Render has no Postgres {v:?}; versions are {}",
        db.name,
        POSTGRES_VERSIONS.join(", ")
    )))
}

fn server_service(app: &App, env: &str, svc: &Service, region: &str) -> Result<ServerService, RenderError> {
    let kind = if svc.port.is_some() { ServiceType::Web } else { ServiceType::Worker };
    let creds = app
        .targets
        .render
        .registry_credential
        .as_ref()
        .map(|name| RegistryCreds { from_registry_creds: Named { name: name.clone() } });
    let min = svc.scale.min.max(1);
    let max = svc.scale.max.max(min);
    let (num_instances, scaling) = if min == max {
        (Some(min), None)
    } else {
        (None, Some(Autoscaling { min_instances: min, max_instances: max, target_cpu_percent: TARGET_CPU_PERCENT }))
    };
    Ok(ServerService {
        kind,
        name: app.platform_name(PlatformKind::Render, &svc.name, env),
        runtime: "image".to_string(),
        image: Image { url: format!("{}:{env}", svc.image.name()), creds },
        plan: plan(app, svc, kind)?,
        region: region.to_string(),
        num_instances,
        scaling,
        health_check_path: svc.health.as_ref().filter(|_| kind == ServiceType::Web).map(|h| h.path.clone()),
        docker_command: svc.command.as_deref().map(shipit_core::shell::join),
        env_vars: env_vars(app, env, svc)?,
    })
}

/// The plan set in `targets.render.services`, else the smallest that fits `vm`.
fn plan(app: &App, svc: &Service, kind: ServiceType) -> Result<String, RenderError> {
    if let Some(chosen) = app.targets.render.plans.get(&svc.name) {
        // Accept the API's spelling (`pro_plus`) as well as the Blueprint's (`pro plus`).
        let plan = chosen.trim().to_ascii_lowercase().replace('_', " ");
        if plan == "free" && kind == ServiceType::Worker {
            return Err(err(format!(
                "service `{}` is a worker, and Render workers cannot use the free plan; choose starter or larger",
                svc.name
            )));
        }
        if plan == "free" || PLANS.iter().any(|(p, _, _)| *p == plan) {
            return Ok(plan);
        }
        let names: Vec<&str> = PLANS.iter().map(|(p, _, _)| *p).collect();
        return Err(err(format!(
            "service `{}`: {chosen:?} is not a Render plan; plans are free, {}",
            svc.name,
            names.join(", ")
        )));
    }
    let Some(vm) = svc.vm else {
        return Ok(PLANS[0].0.to_string());
    };
    smallest_plan(&vm).map(str::to_string).ok_or_else(|| {
        err(format!(
            "service `{}` asks for {} CPUs and {} MB, more than Render's largest plan (pro ultra: 8 CPUs, 32 GB); lower `vm`",
            svc.name, vm.cpus, vm.memory_mb
        ))
    })
}

/// The smallest plan with at least `vm`'s CPUs and memory.
pub fn smallest_plan(vm: &Vm) -> Option<&'static str> {
    let cpu = u64::from(vm.cpus) * 1000;
    PLANS.iter().find(|(_, c, m)| u64::from(*c) >= cpu && *m >= vm.memory_mb).map(|(p, _, _)| *p)
}

fn env_vars(app: &App, env: &str, svc: &Service) -> Result<Vec<EnvVar>, RenderError> {
    let mut vars = BTreeMap::new();
    for (key, value) in &svc.env {
        let var = match value {
            EnvValue::Plain(v) => EnvVar::Value { key: key.clone(), value: v.clone() },
            EnvValue::Secret => EnvVar::Secret { key: key.clone(), sync: false },
            EnvValue::From(r) => reference(app, env, svc, key, r)?,
            _ => {
                return Err(err(format!(
                    "`services.{}.env.{key}`: this kind of value is not supported on Render",
                    svc.name
                )));
            }
        };
        vars.insert(key.clone(), var);
    }
    if let Some(port) = svc.port {
        vars.entry("PORT".to_string())
            .or_insert_with(|| EnvVar::Value { key: "PORT".to_string(), value: port.to_string() });
    }
    Ok(vars.into_values().collect())
}

fn reference(app: &App, env: &str, svc: &Service, key: &str, r: &Reference) -> Result<EnvVar, RenderError> {
    let key = key.to_string();
    let name = app.platform_name(PlatformKind::Render, &r.target, env);
    let what = format!("`services.{}.env_from.{key}`", svc.name);
    match r.kind {
        ReferenceKind::Database => {
            let db = app
                .databases
                .get(&r.target)
                .ok_or_else(|| err(format!("{what} refers to a database `{}` that does not exist", r.target)))?;
            match db.engine {
                Engine::Postgres => {
                    let property = match r.property {
                        Property::ConnectionString => "connectionString",
                        Property::Host => "host",
                        Property::Port => "port",
                        Property::User => "user",
                        Property::Password => "password",
                        Property::Database => "database",
                        Property::Url => {
                            return Err(err(format!("{what}: a database has no `url`; use `connection_string`")));
                        }
                    };
                    Ok(EnvVar::FromDatabase {
                        key,
                        from_database: FromDatabase { name, property: property.to_string() },
                    })
                }
                Engine::Redis => {
                    let property = match r.property {
                        Property::ConnectionString => "connectionString",
                        Property::Host => "host",
                        Property::Port => "port",
                        _ => {
                            return Err(err(format!(
                                "{what}: Render Key Value (database `{}`) offers only connection_string, host and port",
                                r.target
                            )));
                        }
                    };
                    Ok(EnvVar::FromService {
                        key,
                        from_service: FromService {
                            kind: "keyvalue".to_string(),
                            name,
                            property: property.to_string(),
                        },
                    })
                }
            }
        }
        ReferenceKind::Service => {
            let target = app
                .services
                .get(&r.target)
                .ok_or_else(|| err(format!("{what} refers to a service `{}` that does not exist", r.target)))?;
            if target.port.is_none() {
                return Err(err(format!("{what} refers to `{}`, a worker, which has no address", r.target)));
            }
            let property = match r.property {
                // Render's default address; custom domains are unknown here.
                Property::Url => {
                    return Ok(EnvVar::Value { key, value: format!("https://{name}.onrender.com") });
                }
                Property::Host => "host",
                Property::Port => "port",
                _ => {
                    return Err(err(format!("{what}: a service offers only url, host and port")));
                }
            };
            Ok(EnvVar::FromService {
                key,
                from_service: FromService {
                    kind: ServiceType::Web.as_str().to_string(),
                    name,
                    property: property.to_string(),
                },
            })
        }
    }
}

/// What the manifest asks of Render environments that Render cannot do through its API, one
/// line each (`shipit validate` prints them as warnings): a health check's interval, timeout or
/// grace (Render fixes them) and a restart policy. (A health check on a worker is refused by the
/// manifest itself, on every platform.)
pub fn unsupported_settings(app: &App) -> Vec<String> {
    let defaults = shipit_core::HealthCheck::default_timing();
    let mut out = Vec::new();
    for env in app.environments.values().filter(|e| e.target == Some(PlatformKind::Render)) {
        for svc in env.services.values() {
            let at = format!("environment {:?}, service `{}`", env.name, svc.name);
            if let Some(h) = &svc.health
                && (h.interval, h.timeout, h.grace) != defaults
            {
                out.push(format!(
                    "{at}: Render fixes a health check's timing (5 s per probe, failing after 15 minutes); `health.interval`, `timeout` and `grace` are ignored"
                ));
            }
            if svc.restart.is_some() {
                out.push(format!("{at}: Render always restarts a service that exits; `restart` is ignored"));
            }
        }
    }
    out
}
