//! Renders `railway.<service>.json`: the settings shipit applies to each service.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use serde::Serialize;
use shipit_core::{
    App, Engine, EnvValue, Environment, PlatformKind, Property, Reference, ReferenceKind, RenderError, RenderedFile,
    RestartKind, Service,
};

pub use crate::regions::{DEFAULT_REGION, REGIONS};

/// Railway's own default healthcheck window, in seconds.
pub const RAILWAY_DEFAULT_HEALTHCHECK_TIMEOUT: u64 = 300;
/// Railway's default restart policy retries.
pub const DEFAULT_RESTART_RETRIES: u32 = 10;

/// What shipit sets on one Railway service in one environment.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ServiceSettings {
    /// Says who wrote the file (shipit never overwrites a file without it).
    #[serde(rename = "$comment")]
    pub comment: String,
    /// Railway service name.
    pub service: String,
    /// Railway environment name.
    pub environment: String,
    /// Railway project name.
    pub project: String,
    /// `serviceInstanceUpdate` input.
    pub instance: InstanceSettings,
    /// `serviceInstanceLimitsUpdate` input, when `vm` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// Variables set with `variableCollectionUpsert` (`replace: false`), by name.
    pub variables: BTreeMap<String, String>,
    /// Names of secrets; their values are set on Railway, never here.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
}

/// Railway's `ServiceInstanceUpdateInput` as shipit sends it: every setting it manages, each
/// with a value (Railway resets a setting sent as null, and some omitted ones), so a setting the
/// manifest leaves out is sent as Railway's own default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct InstanceSettings {
    /// The image (`<repository>:<environment>` here; pinned by digest when deployed).
    pub source: Source,
    /// Command replacing the image's CMD; empty: the image's own.
    pub start_command: String,
    /// Health check path; empty: no health check.
    pub healthcheck_path: String,
    /// Seconds a new deployment has to pass its health check (Railway's whole deploy window).
    pub healthcheck_timeout: u64,
    /// Restart policy.
    pub restart_policy_type: RestartPolicyType,
    /// Most restarts (Railway keeps it for every policy; it applies to `ON_FAILURE`).
    pub restart_policy_max_retries: u32,
    /// App Sleeping: stop the service when idle.
    pub sleep_application: bool,
    /// Replicas per region: Railway's only placement setting (the legacy `numReplicas` and
    /// `region` fields are ignored).
    pub multi_region_config: BTreeMap<String, RegionReplicas>,
    /// Railway's config-as-code path, cleared: shipit's settings are the only ones.
    pub railway_config_file: String,
}

/// `ServiceSourceInput`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Source {
    /// `<repository>:<environment>`.
    pub image: String,
}

/// One region's entry in `multiRegionConfig`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegionReplicas {
    /// Replicas in that region.
    pub num_replicas: u32,
}

/// Railway's `RestartPolicyType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RestartPolicyType {
    /// Always restart.
    Always,
    /// Restart after a non-zero exit.
    OnFailure,
    /// Never restart.
    Never,
}

impl From<RestartKind> for RestartPolicyType {
    fn from(k: RestartKind) -> Self {
        match k {
            RestartKind::Always => Self::Always,
            RestartKind::OnFailure => Self::OnFailure,
            RestartKind::Never => Self::Never,
        }
    }
}

/// Fields of Railway's `ServiceInstanceLimitsUpdateInput` that shipit sets.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Limits {
    /// vCPUs.
    #[serde(rename = "vCPUs")]
    pub vcpus: f64,
    /// Memory in GB.
    #[serde(rename = "memoryGB")]
    pub memory_gb: f64,
}

fn err(message: impl Into<String>) -> RenderError {
    RenderError::new("railway", message)
}

/// Renders `railway.<service>.json` for every service of environment `env`.
pub fn render(app: &App, env: &str) -> Result<Vec<RenderedFile>, RenderError> {
    settings(app, env)?
        .into_iter()
        .map(|(name, s)| {
            let path = format!("railway.{name}.json");
            let json = serde_json::to_string_pretty(&s).map_err(|e| err(format!("cannot write {path}: {e}")))?;
            Ok(RenderedFile::new(path, json + "\n"))
        })
        .collect()
}

/// The settings of every service of environment `env`, by service name in manifest order.
pub fn settings(app: &App, env: &str) -> Result<IndexMap<String, ServiceSettings>, RenderError> {
    let environment = app.environment(env).map_err(|e| err(e.to_string()))?;
    let regions = regions(app, environment)?;
    let project = app.targets.railway.project.clone().unwrap_or_else(|| app.name.clone());
    environment
        .services
        .values()
        .map(|svc| Ok((svc.name.clone(), service_settings(app, env, &project, svc, &regions)?)))
        .collect()
}

/// The regions replicas run in: the environment's if they are Railway's (an error when the
/// environment targets Railway and names another), else `[targets.railway] region`, else
/// [`DEFAULT_REGION`].
pub fn regions(app: &App, env: &Environment) -> Result<Vec<String>, RenderError> {
    let unknown: Vec<&str> = env.regions.iter().map(String::as_str).filter(|r| !REGIONS.contains(r)).collect();
    if !env.regions.is_empty() && unknown.is_empty() {
        return Ok(env.regions.clone());
    }
    if !unknown.is_empty() && env.target == Some(PlatformKind::Railway) {
        return Err(err(format!(
            "`environments.{}.regions` has {} that Railway does not know; its regions are {}",
            env.name,
            unknown.iter().map(|r| format!("{r:?}")).collect::<Vec<_>>().join(", "),
            REGIONS.join(", ")
        )));
    }
    match &app.targets.railway.region {
        Some(r) if !REGIONS.contains(&r.as_str()) => Err(err(format!(
            "`targets.railway.region` is {r:?}, a region Railway does not have; its regions are {}",
            REGIONS.join(", ")
        ))),
        Some(r) => Ok(vec![r.clone()]),
        None => Ok(vec![DEFAULT_REGION.to_string()]),
    }
}

/// The Railway service name of database `db`: `[targets.railway.databases]`, else Railway's own
/// name for its template (`Postgres`, `Redis`).
pub fn database_name(app: &App, db: &str) -> Result<String, RenderError> {
    if let Some(name) = app.targets.railway.databases.get(db) {
        return Ok(name.clone());
    }
    let Some(d) = app.databases.get(db) else {
        return Err(err(format!("there is no database `{db}`")));
    };
    let same_engine = app.databases.values().filter(|o| o.engine == d.engine).count();
    if same_engine > 1 {
        return Err(err(format!(
            "databases of one engine need their Railway service names: set `[targets.railway.databases] {db} = \"...\"`"
        )));
    }
    Ok(match d.engine {
        Engine::Postgres => "Postgres".to_string(),
        Engine::Redis => "Redis".to_string(),
    })
}

/// The settings of one service (with the environment's overrides) in environment `env`.
pub fn settings_of(app: &App, env: &str, svc: &Service) -> Result<ServiceSettings, RenderError> {
    let environment = app.environment(env).map_err(|e| err(e.to_string()))?;
    let regions = regions(app, environment)?;
    let project = app.targets.railway.project.clone().unwrap_or_else(|| app.name.clone());
    service_settings(app, env, &project, svc, &regions)
}

fn service_settings(
    app: &App,
    env: &str,
    project: &str,
    svc: &Service,
    regions: &[String],
) -> Result<ServiceSettings, RenderError> {
    let instance = instance_settings(svc, format!("{}:{env}", svc.image.name()), regions);
    let limits = svc.vm.map(|vm| Limits { vcpus: f64::from(vm.cpus), memory_gb: f64::from(vm.memory_mb) / 1024.0 });
    let mut variables = BTreeMap::new();
    for (key, value) in &svc.env {
        match value {
            EnvValue::Plain(v) => {
                variables.insert(key.clone(), v.clone());
            }
            EnvValue::Secret => {}
            EnvValue::From(r) => {
                variables.insert(key.clone(), reference(app, env, svc, key, r)?);
            }
            _ => {
                return Err(err(format!(
                    "`services.{}.env.{key}`: this kind of value is not supported on Railway",
                    svc.name
                )));
            }
        }
    }
    if let Some(port) = svc.port {
        variables.entry("PORT".to_string()).or_insert_with(|| port.to_string());
    }
    Ok(ServiceSettings {
        comment: format!(
            "generated by shipit from shipit.toml for environment {env:?}: the settings shipit applies through Railway's API"
        ),
        service: app.platform_name(PlatformKind::Railway, &svc.name, env),
        environment: app.targets.railway.environment_name(env).to_string(),
        project: project.to_string(),
        instance,
        limits,
        variables,
        secrets: svc.secret_names().map(str::to_string).collect(),
    })
}

/// The `ServiceInstanceUpdateInput` for `svc` with source `image`: what deploy sends and
/// `railway.<service>.json` shows.
pub fn instance_settings(svc: &Service, image: String, regions: &[String]) -> InstanceSettings {
    let replicas = svc.scale.min.max(1);
    let restart = svc.restart;
    InstanceSettings {
        source: Source { image },
        start_command: svc.command.as_deref().map(shipit_core::shell::join).unwrap_or_default(),
        healthcheck_path: svc.health.as_ref().map(|h| h.path.clone()).unwrap_or_default(),
        // Railway's window for a new deployment to turn healthy: never shorter than its own
        // default (300 s), longer when grace + timeout asks for it.
        healthcheck_timeout: svc.health.as_ref().map_or(RAILWAY_DEFAULT_HEALTHCHECK_TIMEOUT, |h| {
            ((h.grace.get() + h.timeout.get()).as_secs_f64().ceil() as u64).max(RAILWAY_DEFAULT_HEALTHCHECK_TIMEOUT)
        }),
        restart_policy_type: restart.map_or(RestartPolicyType::OnFailure, |r| r.policy.into()),
        restart_policy_max_retries: restart.and_then(|r| r.retries).unwrap_or(DEFAULT_RESTART_RETRIES),
        sleep_application: svc.scale.auto_stop && svc.scale.min == 0,
        multi_region_config: regions.iter().map(|r| (r.clone(), RegionReplicas { num_replicas: replicas })).collect(),
        railway_config_file: String::new(),
    }
}

/// A Railway reference variable for `r`.
fn reference(app: &App, env: &str, svc: &Service, key: &str, r: &Reference) -> Result<String, RenderError> {
    let what = format!("`services.{}.env_from.{key}`", svc.name);
    let name = match r.kind {
        ReferenceKind::Database => database_name(app, &r.target).map_err(|e| err(format!("{what}: {}", e.message)))?,
        ReferenceKind::Service => app.platform_name(PlatformKind::Railway, &r.target, env),
    };
    let var = match r.kind {
        ReferenceKind::Database => {
            let db = app
                .databases
                .get(&r.target)
                .ok_or_else(|| err(format!("{what} refers to a database `{}` that does not exist", r.target)))?;
            match (db.engine, r.property) {
                (Engine::Postgres, Property::ConnectionString) => "DATABASE_URL",
                (Engine::Postgres, Property::Host) => "PGHOST",
                (Engine::Postgres, Property::Port) => "PGPORT",
                (Engine::Postgres, Property::User) => "PGUSER",
                (Engine::Postgres, Property::Password) => "PGPASSWORD",
                (Engine::Postgres, Property::Database) => "PGDATABASE",
                (Engine::Redis, Property::ConnectionString) => "REDIS_URL",
                (Engine::Redis, Property::Host) => "REDISHOST",
                (Engine::Redis, Property::Port) => "REDISPORT",
                (Engine::Redis, Property::User) => "REDISUSER",
                (Engine::Redis, Property::Password) => "REDISPASSWORD",
                (Engine::Redis, Property::Database) => {
                    return Err(err(format!("{what}: Railway's Redis has no database name; use connection_string")));
                }
                (_, Property::Url) => {
                    return Err(err(format!("{what}: a database has no `url`; use `connection_string`")));
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
            match r.property {
                Property::Url => {
                    return Ok(format!("https://${{{{{name}.RAILWAY_PUBLIC_DOMAIN}}}}"));
                }
                Property::Host => "RAILWAY_PRIVATE_DOMAIN",
                Property::Port => "PORT",
                _ => {
                    return Err(err(format!("{what}: a service offers only url, host and port")));
                }
            }
        }
    };
    Ok(format!("${{{{{name}.{var}}}}}"))
}
