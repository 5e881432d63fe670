//! Renders `railway.<service>.json`: the settings shipit applies to each service.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use serde::Serialize;
use shipit_core::{
    App, Engine, EnvValue, PlatformKind, Property, Reference, ReferenceKind, RenderError, RenderedFile, RestartKind,
    Service,
};

/// Railway's regions, as its API spells them.
pub const REGIONS: &[&str] = &["us-west2", "us-east4-eqdc4a", "europe-west4-drams3a", "asia-southeast1-eqsg3a"];

/// Railway's own default healthcheck window, in seconds.
pub const RAILWAY_DEFAULT_HEALTHCHECK_TIMEOUT: u64 = 300;

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

/// Fields of Railway's `ServiceInstanceUpdateInput` that shipit sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct InstanceSettings {
    /// The image.
    pub source: Source,
    /// Command replacing the image's CMD.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_command: Option<String>,
    /// Health check path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck_path: Option<String>,
    /// Seconds a new deployment has to pass its health check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck_timeout: Option<u64>,
    /// Replicas, when not spread over regions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_replicas: Option<u32>,
    /// The one region, when one is named.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Replicas per region, when several are named.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multi_region_config: Option<BTreeMap<String, RegionReplicas>>,
    /// Restart policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_policy_type: Option<RestartPolicyType>,
    /// Most restarts, for `ON_FAILURE`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_policy_max_retries: Option<u32>,
    /// App Sleeping: stop the service when idle.
    pub sleep_application: bool,
}

/// `ServiceSourceInput`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Source {
    /// `<repository>:<environment>`.
    pub image: String,
}

/// One region's entry in `multiRegionConfig`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegionReplicas {
    /// Replicas in that region.
    pub num_replicas: u32,
}

/// Railway's `RestartPolicyType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
    let regions = regions(environment.name.as_str(), environment.target, &environment.regions)?;
    let project = app.targets.railway.project.clone().unwrap_or_else(|| app.name.clone());
    environment
        .services
        .values()
        .map(|svc| Ok((svc.name.clone(), service_settings(app, env, &project, svc, &regions)?)))
        .collect()
}

/// The environment's regions if they are Railway's; see the crate docs.
fn regions(env: &str, target: Option<PlatformKind>, regions: &[String]) -> Result<Vec<String>, RenderError> {
    let unknown: Vec<&str> = regions.iter().map(String::as_str).filter(|r| !REGIONS.contains(r)).collect();
    if unknown.is_empty() {
        return Ok(regions.to_vec());
    }
    if target == Some(PlatformKind::Railway) {
        return Err(err(format!(
            "`environments.{env}.regions` has {} that Railway does not know; its regions are {}",
            unknown.iter().map(|r| format!("{r:?}")).collect::<Vec<_>>().join(", "),
            REGIONS.join(", ")
        )));
    }
    Ok(Vec::new())
}

fn service_settings(
    app: &App,
    env: &str,
    project: &str,
    svc: &Service,
    regions: &[String],
) -> Result<ServiceSettings, RenderError> {
    let replicas = svc.scale.min.max(1);
    let (num_replicas, region, multi_region_config) = match regions {
        [] => (Some(replicas), None, None),
        [one] => (Some(replicas), Some(one.clone()), None),
        many => {
            (None, None, Some(many.iter().map(|r| (r.clone(), RegionReplicas { num_replicas: replicas })).collect()))
        }
    };
    let instance = InstanceSettings {
        source: Source { image: format!("{}:{env}", svc.image.name()) },
        start_command: svc.command.as_deref().map(shipit_core::shell::join),
        healthcheck_path: svc.health.as_ref().map(|h| h.path.clone()),
        // Railway's window for a new deployment to turn healthy: never shorter than its own
        // default (300 s), longer when grace + timeout asks for it.
        healthcheck_timeout: svc.health.as_ref().map(|h| {
            ((h.grace.get() + h.timeout.get()).as_secs_f64().ceil() as u64).max(RAILWAY_DEFAULT_HEALTHCHECK_TIMEOUT)
        }),
        num_replicas,
        region,
        multi_region_config,
        restart_policy_type: svc.restart.map(|r| r.policy.into()),
        restart_policy_max_retries: svc.restart.filter(|r| r.policy == RestartKind::OnFailure).and_then(|r| r.retries),
        sleep_application: svc.scale.auto_stop && svc.scale.min == 0,
    };
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
        environment: env.to_string(),
        project: project.to_string(),
        instance,
        limits,
        variables,
        secrets: svc.secret_names().map(str::to_string).collect(),
    })
}

/// A Railway reference variable for `r`.
fn reference(app: &App, env: &str, svc: &Service, key: &str, r: &Reference) -> Result<String, RenderError> {
    let name = app.platform_name(PlatformKind::Railway, &r.target, env);
    let what = format!("`services.{}.env_from.{key}`", svc.name);
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
