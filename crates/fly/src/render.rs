//! Renders `fly.<service>.toml` for each service of an environment.

use std::fmt::Write as _;

use shipit_core::{
    App, EnvValue, Environment, PlatformKind, Property, Reference, ReferenceKind, RenderError, RenderedFile,
    RestartKind, Service, Strategy,
};
use toml_edit::{Array, ArrayOfTables, DocumentMut, Item, Table, value};

const PLATFORM: &str = "fly";
/// The process group a service's `command` runs as.
const PROCESS_GROUP: &str = "app";
/// CPU counts Fly machines offer.
const FLY_CPUS: &[u32] = &[1, 2, 4, 8, 16];

/// Renders one `fly.<service>.toml` per service of environment `env`, in manifest order.
///
/// Fails when the environment does not exist, when no primary region can be chosen, or when a
/// service asks for something Fly cannot express.
pub fn render(app: &App, env: &str) -> Result<Vec<RenderedFile>, RenderError> {
    let environment = app.environment(env).map_err(|e| RenderError::new(PLATFORM, e.to_string()))?;
    let region = primary_region(app, environment)?;
    environment
        .services
        .values()
        .map(|service| {
            let contents = render_service(app, environment, service, region)?;
            Ok(RenderedFile::new(format!("fly.{}.toml", service.name), contents))
        })
        .collect()
}

fn err(message: impl Into<String>) -> RenderError {
    RenderError::new(PLATFORM, message)
}

/// `[targets.fly] primary_region`, else the environment's first region.
fn primary_region<'a>(app: &'a App, environment: &'a Environment) -> Result<&'a str, RenderError> {
    let first_region = environment.regions.first().map(String::as_str);
    app.targets.fly.primary_region.as_deref().or(first_region).ok_or_else(|| {
        err(format!(
            "environment {:?} has no region for Fly: set `[targets.fly] primary_region` \
             (or `regions` on the environment)",
            environment.name
        ))
    })
}

fn render_service(
    app: &App,
    environment: &Environment,
    service: &Service,
    region: &str,
) -> Result<String, RenderError> {
    let mut doc = DocumentMut::new();
    doc["app"] = value(app.platform_name(PlatformKind::Fly, &service.name, &environment.name));
    doc["primary_region"] = value(region);

    let mut build = Table::new();
    build["image"] = value(service.image.with_tag(&environment.name).to_string());
    doc["build"] = Item::Table(build);

    let mut deploy = Table::new();
    deploy["strategy"] = value(strategy(environment.strategy.unwrap_or(Strategy::Rolling)));
    doc["deploy"] = Item::Table(deploy);

    let mut env = Table::new();
    for (name, v) in &service.env {
        match v {
            EnvValue::Plain(s) => env[name.as_str()] = value(s.as_str()),
            EnvValue::From(r) if r.kind == ReferenceKind::Service => {
                env[name.as_str()] = value(resolve_service_ref(app, environment, name, r)?);
            }
            // Secrets and database references are Fly app secrets.
            _ => {}
        }
    }
    if !env.is_empty() {
        doc["env"] = Item::Table(env);
    }

    if let Some(command) = &service.command {
        let mut processes = Table::new();
        processes[PROCESS_GROUP] = value(shipit_core::shell::join(command));
        doc["processes"] = Item::Table(processes);
    }

    if let Some(port) = service.port {
        doc["http_service"] = Item::Table(http_service(service, port));
    }

    if let Some(vm) = service.vm {
        if !FLY_CPUS.contains(&vm.cpus) {
            return Err(err(format!(
                "service {:?}: Fly machines have 1, 2, 4, 8 or 16 CPUs, not vm.cpus = {}",
                service.name, vm.cpus
            )));
        }
        let mut t = Table::new();
        t["cpu_kind"] = value(vm.cpu_kind.as_str());
        t["cpus"] = value(i64::from(vm.cpus));
        t["memory"] = value(format!("{}mb", vm.memory_mb));
        scope_to_process_group(service, &mut t);
        doc["vm"] = one_table_array(t);
    }

    if let Some(restart) = service.restart {
        let mut t = Table::new();
        t["policy"] = value(restart_policy(restart.policy));
        if let Some(retries) = restart.retries {
            t["retries"] = value(i64::from(retries));
        }
        scope_to_process_group(service, &mut t);
        doc["restart"] = one_table_array(t);
    }

    Ok(format!("{}{doc}", header(environment, service)))
}

fn http_service(service: &Service, port: u16) -> Table {
    let mut http = Table::new();
    http["internal_port"] = value(i64::from(port));
    http["force_https"] = value(true);
    // The schema accepts only the string form of auto_stop_machines.
    http["auto_stop_machines"] = value(if service.scale.auto_stop { "stop" } else { "off" });
    http["auto_start_machines"] = value(service.scale.auto_stop);
    http["min_machines_running"] = value(i64::from(service.scale.min));
    scope_to_process_group(service, &mut http);
    if let Some(health) = &service.health {
        let mut check = Table::new();
        check["grace_period"] = value(health.grace.to_string());
        check["interval"] = value(health.interval.to_string());
        check["method"] = value("GET");
        check["path"] = value(health.path.as_str());
        check["timeout"] = value(health.timeout.to_string());
        http["checks"] = one_table_array(check);
    }
    http
}

/// With a `[processes]` table, names its group explicitly so flyctl applies the section to it.
fn scope_to_process_group(service: &Service, t: &mut Table) {
    if service.command.is_some() {
        t["processes"] = value(Array::from_iter([PROCESS_GROUP]));
    }
}

fn one_table_array(t: Table) -> Item {
    let mut array = ArrayOfTables::new();
    array.push(t);
    Item::ArrayOfTables(array)
}

/// Comment block naming the environment and the secrets the service needs, never their values.
fn header(environment: &Environment, service: &Service) -> String {
    let mut out = format!(
        "# fly.{service}.toml: generated by shipit from shipit.toml for environment {env:?}.\n\
         # Do not edit: change shipit.toml and run `shipit render --to fly --env {env}`.\n",
        service = service.name,
        env = environment.name,
    );
    let secrets: Vec<String> = service
        .env
        .iter()
        .filter_map(|(name, v)| match v {
            EnvValue::Secret => Some(name.clone()),
            EnvValue::From(r) if r.kind == ReferenceKind::Database => {
                Some(format!("{name} (from database {:?})", r.target))
            }
            _ => None,
        })
        .collect();
    if secrets.is_empty() {
        out.push_str("#\n# Secrets: none.\n");
    } else {
        out.push_str("#\n# Secrets (Fly app secrets, set with `shipit secrets sync`; values never appear here):\n");
        for s in secrets {
            let _ = writeln!(out, "#   {s}");
        }
    }
    out.push('\n');
    out
}

/// A reference to another service, as a plain value: its Fly URL, private host name or port.
pub(crate) fn resolve_service_ref(
    app: &App,
    environment: &Environment,
    var: &str,
    r: &Reference,
) -> Result<String, RenderError> {
    let target_app = app.platform_name(PlatformKind::Fly, &r.target, &environment.name);
    let port = environment.services.get(&r.target).and_then(|s| s.port);
    match r.property {
        Property::Url if port.is_some() => Ok(format!("https://{target_app}.fly.dev")),
        Property::Host => Ok(format!("{target_app}.internal")),
        Property::Port => port
            .map(|p| p.to_string())
            .ok_or_else(|| err(format!("{var} refers to {}.port, but service {:?} has no port", r.target, r.target))),
        Property::Url => Err(err(format!(
            "{var} refers to {}.url, but service {:?} has no port, so it has no public URL",
            r.target, r.target
        ))),
        _ => Err(err(format!("{var}: a service offers url, host and port, not the property asked for"))),
    }
}

fn strategy(s: Strategy) -> &'static str {
    match s {
        Strategy::Rolling => "rolling",
        Strategy::Immediate => "immediate",
        Strategy::Canary => "canary",
        Strategy::Bluegreen => "bluegreen",
    }
}

fn restart_policy(k: RestartKind) -> &'static str {
    match k {
        RestartKind::Always => "always",
        RestartKind::OnFailure => "on-failure",
        RestartKind::Never => "never",
    }
}
