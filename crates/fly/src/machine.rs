//! The machine config shipit wants for a service, and the comparison of a live config with it.
//!
//! One function (`machine_config`) builds the config for deploy, plan and `--dry-run`.
//! Comparison goes through `fields`: a flat map of the settings shipit manages (`image`,
//! `guest.cpus`, `env.NAME`, `checks.http`…), read the same way from what shipit sends and from
//! what Fly returns, so Fly's own additions and spellings (`autostop: true` or `"stop"`, `"1m0s"`
//! or `"1m"`) do not look like changes.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use shipit_core::{
    App, EnvValue, Environment, Error, ErrorKind, GoDuration, ImageRef, ReferenceKind, RestartKind, Service, Target,
};

/// The process group shipit's machines belong to (as flyctl names it).
pub const PROCESS_GROUP: &str = "app";
/// Metadata keys shipit writes.
pub const META_RELEASE: &str = "shipit_release";
/// Digest of the release.
pub const META_DIGEST: &str = "shipit_digest";
/// Git commit of the release.
pub const META_GIT_SHA: &str = "shipit_git_sha";
/// Service name.
pub const META_SERVICE: &str = "shipit_service";
/// Comma-separated ids of releases that failed and were rolled back.
pub const META_FAILED: &str = "shipit_failed";
/// flyctl's process group key.
pub const META_GROUP: &str = "fly_process_group";
/// How many failed release ids are kept.
pub const FAILED_CAP: usize = 20;

/// What the metadata of a release says.
#[derive(Debug, Clone)]
pub(crate) struct ReleaseMeta<'a> {
    pub id: &'a str,
    pub git_sha: Option<&'a str>,
    /// The whole `shipit_failed` list to write (already capped).
    pub failed: Vec<String>,
}

/// The machine config for `service` running `image` as release `meta`.
pub(crate) fn machine_config(
    target: Target<'_>,
    service: &Service,
    image: &ImageRef,
    meta: &ReleaseMeta<'_>,
) -> Result<Value, Error> {
    let mut config = Map::new();
    config.insert("image".into(), Value::String(image_string(image)));

    let vm = service.vm;
    config.insert(
        "guest".into(),
        json!({
            "cpu_kind": vm.map_or("shared", |v| v.cpu_kind.as_str()),
            "cpus": vm.map_or(1, |v| v.cpus),
            "memory_mb": vm.map_or(256, |v| v.memory_mb),
        }),
    );

    let env = plain_env(target.app, target.env, service)?;
    if !env.is_empty() {
        config.insert("env".into(), Value::Object(env.into_iter().map(|(k, v)| (k, Value::String(v))).collect()));
    }

    if let Some(port) = service.port {
        config.insert(
            "services".into(),
            json!([{
                "protocol": "tcp",
                "internal_port": port,
                "ports": [
                    { "port": 80, "handlers": ["http"], "force_https": true },
                    { "port": 443, "handlers": ["tls", "http"] },
                ],
                "autostop": if service.scale.auto_stop { "stop" } else { "off" },
                "autostart": service.scale.auto_stop,
                "min_machines_running": service.scale.min,
            }]),
        );
        if let Some(h) = &service.health {
            config.insert(
                "checks".into(),
                json!({ "http": {
                    "type": "http",
                    "port": port,
                    "path": h.path,
                    "method": "GET",
                    "interval": h.interval.to_string(),
                    "timeout": h.timeout.to_string(),
                    "grace_period": h.grace.to_string(),
                }}),
            );
        }
    }

    if let Some(r) = service.restart {
        let mut restart = Map::new();
        restart.insert("policy".into(), Value::String(restart_policy(r.policy).into()));
        if r.policy == RestartKind::OnFailure
            && let Some(n) = r.retries
        {
            restart.insert("max_retries".into(), Value::from(n));
        }
        config.insert("restart".into(), Value::Object(restart));
    }

    if let Some(cmd) = &service.command {
        config.insert("init".into(), json!({ "cmd": cmd }));
    }

    let mut metadata = Map::new();
    metadata.insert(META_GROUP.into(), PROCESS_GROUP.into());
    metadata.insert("fly_platform_version".into(), "v2".into());
    metadata.insert(META_SERVICE.into(), Value::String(service.name.clone()));
    metadata.insert(META_RELEASE.into(), Value::String(meta.id.to_string()));
    if let Some(digest) = &image.digest {
        metadata.insert(META_DIGEST.into(), Value::String(digest.clone()));
    }
    if let Some(sha) = meta.git_sha {
        metadata.insert(META_GIT_SHA.into(), Value::String(sha.to_string()));
    }
    if !meta.failed.is_empty() {
        metadata.insert(META_FAILED.into(), Value::String(meta.failed.join(",")));
    }
    config.insert("metadata".into(), Value::Object(metadata));
    Ok(Value::Object(config))
}

/// `repo:tag@digest`, or `repo@<digest>` placeholder text when the digest is not known yet.
fn image_string(image: &ImageRef) -> String {
    if image.digest.is_some() { image.to_string() } else { format!("{image}@<digest of the tag>") }
}

/// The machine API's restart policy spelling.
fn restart_policy(k: RestartKind) -> &'static str {
    match k {
        RestartKind::Always => "always",
        RestartKind::OnFailure => "on-failure",
        RestartKind::Never => "no",
    }
}

/// Plain values and references to other services; secrets and database references are Fly
/// app secrets and never part of the config.
pub(crate) fn plain_env(
    app: &App,
    environment: &Environment,
    service: &Service,
) -> Result<BTreeMap<String, String>, Error> {
    let mut env = BTreeMap::new();
    for (name, v) in &service.env {
        match v {
            EnvValue::Plain(s) => {
                env.insert(name.clone(), s.clone());
            }
            EnvValue::From(r) if r.kind == ReferenceKind::Service => {
                let value = crate::render::resolve_service_ref(app, environment, name, r)
                    .map_err(|e| Error::new(ErrorKind::InvalidConfig, e.to_string()))?;
                env.insert(name.clone(), value);
            }
            _ => {}
        }
    }
    Ok(env)
}

/// `live` with every key shipit manages replaced by `desired`'s; keys shipit does not manage
/// (mounts, files, dns…) and foreign metadata are kept.
pub(crate) fn merge(live: &Value, desired: &Value) -> Value {
    let mut out = live.as_object().cloned().unwrap_or_default();
    let Some(want) = desired.as_object() else { return desired.clone() };
    for key in ["image", "guest", "env", "services", "checks"] {
        match want.get(key) {
            Some(v) => out.insert(key.into(), v.clone()),
            None => out.remove(key),
        };
    }
    if let Some(r) = want.get("restart") {
        out.insert("restart".into(), r.clone());
    }
    let mut init = out.get("init").and_then(Value::as_object).cloned().unwrap_or_default();
    match want.get("init").and_then(|i| i.get("cmd")) {
        Some(cmd) => {
            init.insert("cmd".into(), cmd.clone());
        }
        None => {
            init.remove("cmd");
        }
    }
    if init.is_empty() {
        out.remove("init");
    } else {
        out.insert("init".into(), Value::Object(init));
    }
    let mut metadata = out.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default();
    metadata.remove(META_GIT_SHA);
    if let Some(m) = want.get("metadata").and_then(Value::as_object) {
        metadata.extend(m.clone());
    }
    out.insert("metadata".into(), Value::Object(metadata));
    Value::Object(out)
}

/// The digest in an image reference (`…@sha256:…`).
pub(crate) fn digest_of(image: &str) -> Option<&str> {
    image.rsplit_once('@').map(|(_, d)| d).filter(|d| !d.is_empty())
}

/// The repository of an image reference, without tag or digest.
fn repository_of(image: &str) -> &str {
    let name = image.split('@').next().unwrap_or(image);
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[last_slash..].rfind(':') {
        Some(i) => &name[..last_slash + i],
        None => name,
    }
}

/// `shipit_failed` of a config, as a list.
pub(crate) fn failed_ids(config: &Value) -> Vec<String> {
    config
        .pointer("/metadata/shipit_failed")
        .and_then(Value::as_str)
        .map(|s| s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect())
        .unwrap_or_default()
}

/// Appends `id` to `list` (once) and keeps the newest [`FAILED_CAP`].
pub(crate) fn push_failed(list: &mut Vec<String>, id: &str) {
    if !list.iter().any(|x| x == id) {
        list.push(id.to_string());
    }
    if list.len() > FAILED_CAP {
        let extra = list.len() - FAILED_CAP;
        list.drain(..extra);
    }
}

/// How many health checks a config defines.
pub(crate) fn check_count(config: &Value) -> usize {
    let top = config.get("checks").and_then(Value::as_object).map_or(0, Map::len);
    let per_service: usize = config
        .get("services")
        .and_then(Value::as_array)
        .map_or(0, |s| s.iter().map(|s| s.get("checks").and_then(Value::as_array).map_or(0, Vec::len)).sum());
    top + per_service
}

/// A Go duration, normalised (`"1m0s"` and `"60s"` are the same; numbers are nanoseconds).
fn duration(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.parse::<GoDuration>().map_or_else(|_| s.clone(), |d| d.to_string()),
        Some(Value::Number(n)) => {
            n.as_u64().map_or_else(|| n.to_string(), |ns| GoDuration(std::time::Duration::from_nanos(ns)).to_string())
        }
        Some(other) => other.to_string(),
        None => "-".into(),
    }
}

fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    }
}

/// `autostop` as a string: Fly's older boolean spelling maps to "stop"/"off".
fn autostop(v: Option<&Value>) -> String {
    match v {
        Some(Value::Bool(true)) => "stop".into(),
        Some(Value::Bool(false)) | Some(Value::Null) | None => "off".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn describe_check(c: &Value) -> String {
    format!(
        "{} {} :{}{} every {} timeout {} grace {}",
        text(c.get("type")),
        text(c.get("method")),
        text(c.get("port")),
        c.get("path").and_then(Value::as_str).unwrap_or(""),
        duration(c.get("interval")),
        duration(c.get("timeout")),
        duration(c.get("grace_period")),
    )
}

fn describe_service(s: &Value) -> String {
    let ports: Vec<String> = s
        .get("ports")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    let handlers: Vec<String> = p
                        .get("handlers")
                        .and_then(Value::as_array)
                        .map(|h| h.iter().filter_map(Value::as_str).map(str::to_string).collect())
                        .unwrap_or_default();
                    let https = if p.get("force_https").and_then(Value::as_bool).unwrap_or(false) {
                        " force_https"
                    } else {
                        ""
                    };
                    format!("{}[{}]{https}", text(p.get("port")), handlers.join(","))
                })
                .collect()
        })
        .unwrap_or_default();
    format!(
        "{} :{} ports {} autostop {} autostart {} min_machines_running {}",
        text(s.get("protocol")),
        text(s.get("internal_port")),
        ports.join(" "),
        autostop(s.get("autostop")),
        s.get("autostart").and_then(Value::as_bool).unwrap_or(false),
        s.get("min_machines_running").and_then(Value::as_u64).unwrap_or(0),
    )
}

/// The settings shipit manages, flattened: `image`, `guest.*`, `env.NAME`, `services`,
/// `checks.NAME`, `restart`, `init.cmd`.
pub(crate) fn fields(config: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(image) = config.get("image").and_then(Value::as_str) {
        out.insert("image".into(), format!("{}@{}", repository_of(image), digest_of(image).unwrap_or("-")));
    }
    let guest = config.get("guest");
    for key in ["cpu_kind", "cpus", "memory_mb"] {
        out.insert(format!("guest.{key}"), text(guest.and_then(|g| g.get(key))));
    }
    if let Some(env) = config.get("env").and_then(Value::as_object) {
        for (k, v) in env {
            out.insert(format!("env.{k}"), text(Some(v)));
        }
    }
    if let Some(services) = config.get("services").and_then(Value::as_array)
        && !services.is_empty()
    {
        let all: Vec<String> = services.iter().map(describe_service).collect();
        out.insert("services".into(), all.join("; "));
    }
    if let Some(checks) = config.get("checks").and_then(Value::as_object) {
        for (name, c) in checks {
            out.insert(format!("checks.{name}"), describe_check(c));
        }
    }
    if let Some(r) = config.get("restart").filter(|r| r.is_object()) {
        let retries =
            r.get("max_retries").and_then(Value::as_u64).map(|n| format!(" max_retries {n}")).unwrap_or_default();
        out.insert("restart".into(), format!("{}{retries}", text(r.get("policy"))));
    }
    if let Some(cmd) = config.pointer("/init/cmd").and_then(Value::as_array)
        && !cmd.is_empty()
    {
        let words: Vec<String> = cmd.iter().filter_map(Value::as_str).map(str::to_string).collect();
        out.insert("init.cmd".into(), shipit_core::shell::join(&words));
    }
    out
}

/// What differs between `desired` and `live`: (field, live, desired). A `restart` the
/// manifest leaves unset is not compared.
pub(crate) fn diff(
    desired: &BTreeMap<String, String>,
    live: &BTreeMap<String, String>,
) -> Vec<(String, Option<String>, Option<String>)> {
    let mut keys: Vec<&String> = desired.keys().chain(live.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| k.as_str() != "restart" || desired.contains_key("restart"))
        .filter_map(|k| {
            let (d, l) = (desired.get(k), live.get(k));
            (d != l).then(|| (k.clone(), l.cloned(), d.cloned()))
        })
        .collect()
}

/// Whether `live` already has every setting of `desired`.
pub(crate) fn same_settings(desired: &Value, live: &Value) -> bool {
    diff(&fields(desired), &fields(live)).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fly_spellings_are_not_changes() {
        let ours = json!({
            "image": "ghcr.io/a/b:t@sha256:1",
            "guest": {"cpu_kind": "shared", "cpus": 1, "memory_mb": 256},
            "services": [{"protocol": "tcp", "internal_port": 80, "autostop": "stop", "autostart": true, "min_machines_running": 1, "ports": []}],
            "checks": {"http": {"type": "http", "port": 80, "path": "/h", "method": "GET", "interval": "1m", "timeout": "5s", "grace_period": "10s"}},
        });
        let theirs = json!({
            "image": "ghcr.io/a/b@sha256:1",
            "guest": {"cpu_kind": "shared", "cpus": 1, "memory_mb": 256, "kernel_args": []},
            "services": [{"protocol": "tcp", "internal_port": 80, "autostop": true, "autostart": true, "min_machines_running": 1, "ports": []}],
            "checks": {"http": {"type": "http", "port": 80, "path": "/h", "method": "GET", "interval": "1m0s", "timeout": "5s", "grace_period": "10s"}},
            "restart": {"policy": "on-failure"},
            "dns": {},
        });
        assert!(same_settings(&ours, &theirs), "{:?}", diff(&fields(&ours), &fields(&theirs)));
        let other = json!({"image": "ghcr.io/a/b@sha256:2"});
        assert!(!same_settings(&ours, &other));
    }

    #[test]
    fn merge_keeps_what_shipit_does_not_manage() {
        let live = json!({"image": "x@sha256:1", "mounts": [{"volume": "v"}], "init": {"cmd": ["a"], "tty": true},
            "metadata": {"owner": "ops", "shipit_git_sha": "old", "shipit_failed": "r1"}});
        let want = json!({"image": "x@sha256:2", "metadata": {"shipit_release": "r2", "shipit_failed": "r1,r3"}});
        let merged = merge(&live, &want);
        assert_eq!(merged["image"], "x@sha256:2");
        assert_eq!(merged["mounts"][0]["volume"], "v");
        assert_eq!(merged["init"], json!({"tty": true}));
        assert_eq!(merged["metadata"]["owner"], "ops");
        assert_eq!(merged["metadata"]["shipit_failed"], "r1,r3");
        assert!(merged["metadata"].get("shipit_git_sha").is_none());
    }

    #[test]
    fn failed_list_is_capped() {
        let mut list: Vec<String> = (0..FAILED_CAP).map(|i| format!("r{i}")).collect();
        push_failed(&mut list, "new");
        assert_eq!(list.len(), FAILED_CAP);
        assert_eq!(list.last().map(String::as_str), Some("new"));
        assert_eq!(list.first().map(String::as_str), Some("r1"));
    }
}
