//! Reading `shipit.toml` into the [`App`] model.
//!
//! The manifest is parsed with `toml_edit` (which keeps the byte span of every key and value)
//! into a small spanned tree, then read field by field. Reading never stops at the first
//! problem: every problem is collected with its line and column, so one `shipit validate`
//! shows them all. Environment overrides are merged over the base services on the tree, so an
//! override that is wrong is reported where it was written.
//!
//! Bad input is bounded: the file may be at most [`MAX_MANIFEST_BYTES`], it may declare at most
//! [`MAX_COMPONENTS`] services and databases and [`MAX_ENVIRONMENTS`] environments, and every
//! check is linear in the manifest's size (lists are deduplicated with sets, lookups go
//! through maps), so any input gets an answer, with a line and column, quickly.

mod diag;
mod locate;
mod read;
#[cfg(test)]
mod tests;
mod tree;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Read;
use std::path::Path;

use indexmap::IndexMap;

use diag::Diagnostics;
pub use diag::{MAX_PROBLEMS, ManifestErrors, Problem};
pub use locate::{Finding, Key, KeyPath, Manifest, Severity, Unknown};
use read::{Fields, cut, quoted_list};
use tree::{Entry, Kind, Node, Span};

use crate::duration::GoDuration;
use crate::image::ImageRef;
use crate::model::*;

const ROOT_KEYS: &[&str] = &["app", "registry", "services", "databases", "environments", "targets"];
const REGISTRY_KEYS: &[&str] = &["host", "namespace"];
const SERVICE_KEYS: &[&str] =
    &["image", "build", "port", "command", "health", "env", "secrets", "env_from", "scale", "vm", "restart", "policy"];
const POLICY_KEYS: &[&str] = &["max_image_mb", "non_root", "require_healthcheck"];
const BUILD_KEYS: &[&str] = &["context", "dockerfile"];
const HEALTH_KEYS: &[&str] = &["path", "interval", "timeout", "grace"];
const SCALE_KEYS: &[&str] = &["min", "max", "auto_stop"];
const VM_KEYS: &[&str] = &["cpu_kind", "cpus", "memory_mb"];
const RESTART_KEYS: &[&str] = &["policy", "retries"];
const ENV_VALUE_KEYS: &[&str] = &["value", "secret"];
const DATABASE_KEYS: &[&str] = &["engine", "version"];
const ENVIRONMENT_KEYS: &[&str] = &["target", "regions", "strategy", "services"];
const TARGET_NAMES: &[&str] = &["fly", "railway", "render"];
const FLY_KEYS: &[&str] = &["org", "primary_region", "name_template"];
const RAILWAY_KEYS: &[&str] = &["project", "name_template", "region", "environments", "databases"];
const RENDER_KEYS: &[&str] = &["region", "name_template", "registry_credential", "services", "owner"];
const RENDER_SERVICE_KEYS: &[&str] = &["plan"];

/// The largest manifest that [`load`] and [`parse_bytes`] accept: 1 MiB.
pub const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;
/// The most services and databases, together, that one manifest may declare.
pub const MAX_COMPONENTS: usize = 1000;
/// The most environments that one manifest may declare.
pub const MAX_ENVIRONMENTS: usize = 100;
/// The longest `name_template`, in bytes (a platform name has at most 63 characters).
const MAX_TEMPLATE: usize = 256;
/// An overridden service is checked again, merged, in each environment that overrides it: all
/// such services together may hold at most this many values (keys, values and array items).
pub const MAX_OVERRIDDEN_VALUES: usize = 50_000;

/// Errors from [`load`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path as given.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_MANIFEST_BYTES`]; nothing was parsed.
    #[error("{path} is {}: a manifest may be at most {}", size_text(*size, *limit), bytes_text(*limit))]
    TooLarge {
        /// The path as given.
        path: String,
        /// The file's size, when known (a pipe is read only up to the limit).
        size: Option<u64>,
        /// The limit, [`MAX_MANIFEST_BYTES`].
        limit: u64,
    },
    /// The file has problems (including bytes that are not UTF-8, at their line and column).
    #[error(transparent)]
    Invalid(#[from] ManifestErrors),
}

fn bytes_text(n: u64) -> String {
    if n >= 1024 * 1024 {
        format!("{:.1} MiB ({n} bytes)", n as f64 / (1024.0 * 1024.0)).replace(".0 MiB", " MiB")
    } else {
        format!("{n} bytes")
    }
}

fn size_text(size: Option<u64>, limit: u64) -> String {
    match size {
        Some(n) => bytes_text(n),
        None => format!("larger than {}", bytes_text(limit)),
    }
}

/// Reads and validates the manifest at `path`: at most [`MAX_MANIFEST_BYTES`] are read.
pub fn load(path: &Path) -> Result<App, LoadError> {
    load_located(path).map(|(app, _)| app)
}

/// As [`load`], with the [`Manifest`] that gives checks outside this module (a platform's)
/// the line and column of any key path.
pub fn load_located(path: &Path) -> Result<(App, Manifest), LoadError> {
    let shown = path.display().to_string();
    let io = |source| LoadError::Io { path: shown.clone(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let too_large = |size| LoadError::TooLarge { path: shown.clone(), size, limit: MAX_MANIFEST_BYTES };
    // A regular file's size is known before reading; anything else is read up to the limit + 1.
    if let Ok(meta) = file.metadata()
        && meta.is_file()
        && meta.len() > MAX_MANIFEST_BYTES
    {
        return Err(too_large(Some(meta.len())));
    }
    let mut bytes = Vec::new();
    file.take(MAX_MANIFEST_BYTES + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(too_large(None));
    }
    parse_bytes_located(&bytes, &shown)
}

/// Parses and validates the bytes of a manifest, as [`load`] does once it has read the file:
/// more than [`MAX_MANIFEST_BYTES`] are refused before parsing, and bytes that are not UTF-8
/// are reported at the line and column of the first bad byte.
pub fn parse_bytes(bytes: &[u8], file: &str) -> Result<App, LoadError> {
    parse_bytes_located(bytes, file).map(|(app, _)| app)
}

/// As [`parse_bytes`], with the [`Manifest`].
pub fn parse_bytes_located(bytes: &[u8], file: &str) -> Result<(App, Manifest), LoadError> {
    let size = bytes.len() as u64;
    if size > MAX_MANIFEST_BYTES {
        return Err(LoadError::TooLarge { path: file.to_string(), size: Some(size), limit: MAX_MANIFEST_BYTES });
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(parse_located(text, file)?),
        Err(e) => Err(LoadError::Invalid(diag::not_utf8(bytes, &e, file))),
    }
}

/// Parses and validates manifest text; `file` is the name used in messages.
///
/// Unlike [`parse_bytes`], this does not enforce [`MAX_MANIFEST_BYTES`]; it is linear in the
/// text's size either way.
pub fn parse(source: &str, file: &str) -> Result<App, ManifestErrors> {
    parse_located(source, file).map(|(app, _)| app)
}

/// As [`parse`], with the [`Manifest`] that gives any key path its line and column.
pub fn parse_located(source: &str, file: &str) -> Result<(App, Manifest), ManifestErrors> {
    let mut d = Diagnostics::new(source);
    let mut root = None;
    let app = parse_inner(source, &mut d, &mut root);
    match (app, root) {
        (Some(app), Some(root)) if !d.has_errors() => {
            let manifest = Manifest::new(file, d.masked_source(), root);
            Ok((app, manifest))
        }
        _ => Err(d.finish(file)),
    }
}

/// Reads `source`; the spanned tree is left in `tree` for [`Manifest`].
fn parse_inner(source: &str, d: &mut Diagnostics<'_>, tree: &mut Option<Node>) -> Option<App> {
    let doc = match toml_edit::Document::parse(source) {
        Ok(doc) => doc,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let msg = e.message().trim().trim_end_matches('.').to_string();
            d.error(&span, format!("invalid TOML: {msg}"));
            return None;
        }
    };
    let root_node = tree.insert(tree::from_table(doc.as_table(), 0..source.len()));
    let root = Fields::new(d, root_node, "", ROOT_KEYS)?;

    let name = match root.get("app") {
        None => {
            d.error(
                &(0..0),
                "missing `app = \"name\"` at the top level: the app's name (lowercase letters, digits, dashes)",
            );
            None
        }
        Some(_) => root.string(d, "app", "a name of lowercase letters, digits and dashes").and_then(|n| {
            check_name(d, &root.get("app").map(|e| e.node.span.clone()).unwrap_or_default(), "app", n)
                .then(|| n.to_string())
        }),
    };

    let registry = parse_registry(d, &root);

    let mut db_entries: &[Entry] = match root.get("databases") {
        Some(e) => Fields::open(d, &e.node, "databases").map(|f| f.entries()).unwrap_or_default(),
        None => &[],
    };
    let mut service_entries: &[Entry] = match root.get("services") {
        Some(e) => Fields::open(d, &e.node, "services").map(|f| f.entries()).unwrap_or_default(),
        None => {
            d.error(&(0..0), "missing `[services.NAME]`: declare at least one service");
            &[]
        }
    };
    // Every environment holds every service: the counts are bounded so that the work is too.
    let components = db_entries.len() + service_entries.len();
    if components > MAX_COMPONENTS {
        let keep_dbs = db_entries.len().min(MAX_COMPONENTS);
        let keep_services = MAX_COMPONENTS - keep_dbs;
        let first_dropped = db_entries.get(keep_dbs).or_else(|| service_entries.get(keep_services));
        if let Some(e) = first_dropped {
            d.error(
                &e.key_span,
                format!(
                    "too many services and databases: {components}; a manifest may declare at most {MAX_COMPONENTS}"
                ),
            );
        }
        db_entries = db_entries.get(..keep_dbs).unwrap_or_default();
        service_entries = service_entries.get(..keep_services).unwrap_or_default();
    }

    // Databases first: services refer to them.
    let mut databases = IndexMap::new();
    for entry in db_entries {
        if let Some(db) = parse_database(d, entry) {
            databases.insert(db.name.clone(), db);
        }
    }

    let service_entries: Vec<&Entry> = service_entries.iter().collect();
    // Every declared database counts for references, even one with problems of its own (a
    // bad engine): a reference to it is not reported as a second, misleading problem.
    let names = Names::new(
        service_entries.iter().map(|e| e.key.as_str()).collect(),
        db_entries.iter().map(|e| e.key.as_str()).collect(),
    );
    for e in &service_entries {
        check_name(d, &e.key_span, &format!("services.{}", e.key), &e.key);
        if names.is_database(&e.key) {
            d.error(&e.key_span, format!("`{}` is both a service and a database: names must be unique", e.key));
        }
    }

    let ctx = ServiceCtx { app: name.as_deref().unwrap_or("app"), registry: &registry, names: &names };
    let mut services = IndexMap::new();
    for e in &service_entries {
        if let Some(s) = parse_service(d, &ctx, &e.key, &e.node, &format!("services.{}", e.key), &e.key_span) {
            services.insert(s.name.clone(), s);
        }
    }
    check_references(d, &services, &service_entries);
    let mut base = Base { entries: &service_entries, parsed: &services, values_left: Some(MAX_OVERRIDDEN_VALUES) };

    let targets = parse_targets(d, &root, &names);

    let mut environments = IndexMap::new();
    match root.get("environments") {
        Some(e) => {
            if let Some(envs) = Fields::open(d, &e.node, "environments") {
                let mut entries = envs.entries();
                if let Some(first_dropped) = entries.get(MAX_ENVIRONMENTS) {
                    d.error(
                        &first_dropped.key_span,
                        format!(
                            "too many environments: {}; a manifest may declare at most {MAX_ENVIRONMENTS}",
                            entries.len()
                        ),
                    );
                    entries = entries.get(..MAX_ENVIRONMENTS).unwrap_or_default();
                }
                for entry in entries {
                    if let Some(env) = parse_environment(d, &ctx, entry, &mut base) {
                        environments.insert(env.name.clone(), env);
                    }
                }
                if envs.entries().is_empty() {
                    d.error(&e.key_span, "`environments` is empty: declare at least one, like [environments.staging]");
                }
            }
        }
        None => d.error(
            &(0..0),
            "missing `[environments.NAME]`: declare at least one environment, like [environments.staging]",
        ),
    }

    let app = App { name: name?, registry, services, databases, environments, targets };
    check_platform_names(d, &app, &root);
    Some(app)
}

/// The names of the services and databases, in manifest order and as sets.
struct Names<'a> {
    services: Vec<&'a str>,
    /// The databases, then the services.
    all: Vec<&'a str>,
    service_set: HashSet<&'a str>,
    database_set: HashSet<&'a str>,
}

impl<'a> Names<'a> {
    fn new(services: Vec<&'a str>, databases: Vec<&'a str>) -> Self {
        let service_set = services.iter().copied().collect();
        let database_set = databases.iter().copied().collect();
        let all = databases.into_iter().chain(services.iter().copied()).collect();
        Self { services, all, service_set, database_set }
    }

    fn is_service(&self, name: &str) -> bool {
        self.service_set.contains(name)
    }

    fn is_database(&self, name: &str) -> bool {
        self.database_set.contains(name)
    }
}

/// The base services: their tables and what parsing them gave.
struct Base<'a> {
    entries: &'a [&'a Entry],
    parsed: &'a IndexMap<String, Service>,
    /// What is left of [`MAX_OVERRIDDEN_VALUES`]; `None` once it ran out (and was reported).
    values_left: Option<usize>,
}

/// "twice", "3 times"…
fn times(n: usize) -> String {
    if n == 2 { "twice".to_string() } else { format!("{n} times") }
}

struct ServiceCtx<'a> {
    app: &'a str,
    registry: &'a RegistryConfig,
    names: &'a Names<'a>,
}

fn check_name(d: &mut Diagnostics<'_>, span: &Span, what: &str, name: &str) -> bool {
    let ok = is_valid_name(name);
    if !ok {
        d.error(
            span,
            format!("`{what}` must be lowercase letters, digits and dashes, starting with a letter (at most 63), found {name:?}"),
        );
    }
    ok
}

fn parse_registry(d: &mut Diagnostics<'_>, root: &Fields<'_>) -> RegistryConfig {
    let mut reg = RegistryConfig { host: "ghcr.io".to_string(), namespace: None };
    let Some(e) = root.get("registry") else { return reg };
    let Some(f) = Fields::new(d, &e.node, "registry", REGISTRY_KEYS) else { return reg };
    if let Some(host) = f.string(d, "host", "a registry host like \"ghcr.io\"") {
        reg.host = host.to_string();
    }
    if let Some(ns) = f.string(d, "namespace", "a user or organisation name like \"acme\"") {
        let valid = !ns.is_empty() && ns.split('/').all(|c| format!("{}/{c}", "x.io").parse::<ImageRef>().is_ok());
        if valid {
            reg.namespace = Some(ns.to_string());
        } else if let Some(e) = f.get("namespace") {
            d.error(
                &e.node.span,
                format!("`registry.namespace` must be lowercase letters, digits, '-', '_' or '.', found {ns:?}"),
            );
        }
    }
    reg
}

fn parse_database(d: &mut Diagnostics<'_>, entry: &Entry) -> Option<Database> {
    let path = format!("databases.{}", entry.key);
    check_name(d, &entry.key_span, &path, &entry.key);
    let f = Fields::new(d, &entry.node, &path, DATABASE_KEYS)?;
    let engine = match f.get("engine") {
        None => {
            d.error(&entry.key_span, format!("`{path}` needs `engine = \"postgres\"` or `engine = \"redis\"`"));
            None
        }
        Some(_) => f.choice(d, "engine", &["postgres", "redis"]).map(|e| match e {
            "postgres" => Engine::Postgres,
            _ => Engine::Redis,
        }),
    };
    let version = f.string(d, "version", "a major version string like \"16\"").map(str::to_string);
    Some(Database { name: entry.key.clone(), engine: engine?, version })
}

fn parse_service(
    d: &mut Diagnostics<'_>,
    ctx: &ServiceCtx<'_>,
    name: &str,
    node: &Node,
    path: &str,
    key_span: &Span,
) -> Option<Service> {
    let f = Fields::new(d, node, path, SERVICE_KEYS)?;
    let mut ok = true;

    let image = match f.get("image") {
        Some(e) => match f.string(d, "image", "an image repository like \"ghcr.io/acme/api\"") {
            Some(text) => match text.parse::<ImageRef>() {
                Ok(r) if r.tag.is_some() || r.digest.is_some() => {
                    d.error_help(
                        &e.node.span,
                        format!("`{path}.image` must be a repository without tag or digest, found {text:?}"),
                        "the tag comes from `shipit deploy --tag`",
                    );
                    None
                }
                Ok(r) => Some(r),
                Err(err) => {
                    d.error(&e.node.span, format!("`{path}.image` is not a valid image reference: {}", err.reason));
                    None
                }
            },
            None => None,
        },
        None => match &ctx.registry.namespace {
            Some(ns) => format!("{}/{ns}/{}-{name}", ctx.registry.host, ctx.app).parse().ok(),
            None => {
                d.error_help(
                    key_span,
                    format!("`{path}` has no `image`, and `[registry] namespace` is not set to derive one"),
                    "set `image = \"ghcr.io/OWNER/NAME\"` or `[registry] namespace = \"OWNER\"`",
                );
                None
            }
        },
    };
    ok &= image.is_some();

    let build = parse_build(d, &f, name);

    let port = f.integer(d, "port", 1, 65535, "a port number from 1 to 65535").map(|p| p as u16);
    ok &= f.get("port").is_none() || port.is_some();

    let command = match f.get("command") {
        Some(e) => match f.strings(d, "command", "an array of strings like [\"node\", \"dist/index.js\"]") {
            Some(parts) if parts.is_empty() => {
                d.error(&e.node.span, format!("`{path}.command` must not be empty"));
                None
            }
            Some(parts) => Some(parts.into_iter().map(|(s, _)| s.to_string()).collect()),
            None => None,
        },
        None => None,
    };

    let health = match f.get("health") {
        Some(e) => {
            let h = parse_health(d, &f, e);
            if h.is_some() && f.get("port").is_none() {
                d.error_help(
                    &e.key_span,
                    format!(
                        "`{path}.health` needs a port: a service without `port` cannot be health-checked over HTTP"
                    ),
                    "add `port = …` or remove `health`",
                );
            }
            h
        }
        None => None,
    };

    let env = parse_env_vars(d, &f, ctx.names);
    let scale = parse_scale(d, &f);
    let vm = f.get("vm").and_then(|e| parse_vm(d, &f, e));
    let restart = f.get("restart").and_then(|e| parse_restart(d, &f, e));
    let policy = match f.get("policy") {
        Some(e) => {
            let p = parse_policy(d, &f, e);
            ok &= p.is_some();
            p.unwrap_or_default()
        }
        None => ImagePolicy::default(),
    };

    if !ok {
        return None;
    }
    Some(Service {
        name: name.to_string(),
        image: image?,
        build,
        port,
        command,
        health,
        env: env?,
        scale: scale?,
        vm,
        restart,
        policy,
    })
}

fn parse_policy(d: &mut Diagnostics<'_>, f: &Fields<'_>, e: &Entry) -> Option<ImagePolicy> {
    let path = f.child_path("policy");
    let p = Fields::new(d, &e.node, &path, POLICY_KEYS)?;
    let max = p.integer(d, "max_image_mb", 1, 1_000_000, "a size in MB from 1 to 1000000");
    let non_root = p.boolean(d, "non_root");
    let healthcheck = p.boolean(d, "require_healthcheck");
    let bad = |k: &str, ok: bool| p.get(k).is_some() && !ok;
    if bad("max_image_mb", max.is_some())
        || bad("non_root", non_root.is_some())
        || bad("require_healthcheck", healthcheck.is_some())
    {
        return None;
    }
    Some(ImagePolicy {
        max_image_mb: max.map(|m| m as u64),
        non_root: non_root.unwrap_or(false),
        require_healthcheck: healthcheck.unwrap_or(false),
    })
}

fn parse_build(d: &mut Diagnostics<'_>, f: &Fields<'_>, name: &str) -> BuildSpec {
    let default_context = format!("apps/{name}");
    let Some(e) = f.get("build") else {
        return BuildSpec { dockerfile: format!("{default_context}/Dockerfile"), context: default_context };
    };
    if let Kind::String(context) = &e.node.kind {
        return BuildSpec { dockerfile: format!("{context}/Dockerfile"), context: context.clone() };
    }
    let path = f.child_path("build");
    let Some(b) = Fields::new(d, &e.node, &path, BUILD_KEYS) else {
        return BuildSpec { dockerfile: format!("{default_context}/Dockerfile"), context: default_context };
    };
    let context = b.string(d, "context", "a directory like \"apps/api\"").unwrap_or(&default_context).to_string();
    let dockerfile = b
        .string(d, "dockerfile", "a path like \"apps/api/Dockerfile\"")
        .map_or_else(|| format!("{context}/Dockerfile"), str::to_string);
    BuildSpec { context, dockerfile }
}

fn parse_health(d: &mut Diagnostics<'_>, f: &Fields<'_>, e: &Entry) -> Option<HealthCheck> {
    let path = f.child_path("health");
    let defaults = HealthCheck::default_timing();
    let check_path = |d: &mut Diagnostics<'_>, p: &str, span: &Span| -> Option<String> {
        if p.starts_with('/') && !p.contains(char::is_whitespace) {
            Some(p.to_string())
        } else {
            d.error(span, format!("`{path}.path` must start with `/`, like \"/healthz\", found {p:?}"));
            None
        }
    };
    if let Kind::String(p) = &e.node.kind {
        let p = check_path(d, p, &e.node.span)?;
        return Some(HealthCheck { path: p, interval: defaults.0, timeout: defaults.1, grace: defaults.2 });
    }
    let h = Fields::new(d, &e.node, &path, HEALTH_KEYS)?;
    let hp = match h.get("path") {
        None => {
            d.error(&e.key_span, format!("`{path}` needs `path`, like {{ path = \"/healthz\" }}"));
            None
        }
        Some(pe) => h.string(d, "path", "a path starting with `/`").and_then(|p| check_path(d, p, &pe.node.span)),
    };
    let interval = h.duration(d, "interval");
    let timeout = h.duration(d, "timeout");
    let grace = h.duration(d, "grace");
    let bad = |k: &str, v: &Option<GoDuration>| h.get(k).is_some() && v.is_none();
    if bad("interval", &interval) || bad("timeout", &timeout) || bad("grace", &grace) {
        return None;
    }
    let interval = interval.unwrap_or(defaults.0);
    let timeout = timeout.unwrap_or(defaults.1);
    if let Some(te) = h.get("timeout")
        && timeout > interval
    {
        d.error(
            &te.node.span,
            format!("`{path}.timeout` ({timeout}) must not be longer than the interval ({interval})"),
        );
        return None;
    }
    Some(HealthCheck { path: hp?, interval, timeout, grace: grace.unwrap_or(defaults.2) })
}

/// Names that look like they hold a secret.
pub fn looks_secret(name: &str) -> bool {
    name.ends_with("_SECRET")
        || name.ends_with("_TOKEN")
        || name.ends_with("_KEY")
        || name.contains("PASSWORD")
        || name.starts_with("SECRET_")
        || matches!(name, "SECRET" | "TOKEN")
}

fn valid_env_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Where each variable was first defined, and the names defined more than once.
#[derive(Default)]
struct Defined {
    first: HashMap<String, Span>,
    /// Invalid names already reported.
    invalid: HashSet<String>,
    /// Per repeated name: the table of its second definition, its span, and how many times.
    repeated: IndexMap<String, (String, Span, usize)>,
}

fn parse_env_vars(d: &mut Diagnostics<'_>, f: &Fields<'_>, names: &Names<'_>) -> Option<BTreeMap<String, EnvValue>> {
    let mut env = BTreeMap::new();
    let mut defined = Defined::default();
    let mut ok = true;
    let mut define = |d: &mut Diagnostics<'_>, key: &str, span: &Span, value: EnvValue, path: &str| {
        if !valid_env_name(key) {
            if defined.invalid.insert(key.to_string()) {
                d.error(span, format!("`{path}`: {:?} is not a valid variable name: expected uppercase letters, digits and `_`, not starting with a digit", cut(key, 64)));
            }
            return false;
        }
        if env.contains_key(key) {
            // Reported once per name, after all tables are read.
            defined.repeated.entry(key.to_string()).or_insert_with(|| (path.to_string(), span.clone(), 1)).2 += 1;
            return false;
        }
        defined.first.insert(key.to_string(), span.clone());
        env.insert(key.to_string(), value);
        true
    };

    if let Some(e) = f.get("env") {
        let path = f.child_path("env");
        if let Some(vars) = Fields::open(d, &e.node, &path) {
            for v in vars.entries() {
                let vpath = format!("{path}.{}", v.key);
                mask_env_value(d, v);
                let (value, marked_plain) = match &v.node.kind {
                    Kind::String(s) => (Some(s.clone()), false),
                    Kind::Integer(i) => (Some(i.to_string()), false),
                    Kind::Boolean(b) => (Some(b.to_string()), false),
                    Kind::Float(x) => (Some(x.to_string()), false),
                    Kind::Table(_) => match Fields::new(d, &v.node, &vpath, ENV_VALUE_KEYS) {
                        Some(t) => {
                            let value = t.string(d, "value", "a string");
                            if t.get("value").is_none() {
                                d.error(
                                    &v.node.span,
                                    format!(
                                        "`{vpath}` needs `value`, like {{ value = \"pk_live_…\", secret = false }}"
                                    ),
                                );
                            }
                            let secret = t.boolean(d, "secret");
                            match (t.get("secret"), secret) {
                                (Some(se), Some(true)) => {
                                    d.error_help(
                                        &se.node.span,
                                        format!("`{vpath}` is marked secret but has its value in the manifest"),
                                        format!(
                                            "move {} to `secrets = [...]` and set its value on the platform",
                                            v.key
                                        ),
                                    );
                                    (None, true)
                                }
                                _ => (value.map(str::to_string), true),
                            }
                        }
                        None => (None, true),
                    },
                    _ => {
                        d.error(&v.node.span, format!("`{vpath}` must be a string, found {}", v.node.type_name()));
                        (None, false)
                    }
                };
                let Some(value) = value else {
                    ok = false;
                    continue;
                };
                if looks_secret(&v.key) && !marked_plain {
                    d.error_help(
                        &v.key_span,
                        format!("`{vpath}` looks like a secret but has a plain value in the manifest"),
                        format!(
                            "move {} to `secrets = [\"{}\"]` and set it with `shipit secrets sync`, or write {{ value = \"…\", secret = false }} if it is not secret",
                            v.key, v.key
                        ),
                    );
                    ok = false;
                    continue;
                }
                ok &= define(d, &v.key, &v.key_span, EnvValue::Plain(value), &path);
            }
        } else {
            ok = false;
        }
    }

    if f.get("secrets").is_some() {
        let path = f.child_path("secrets");
        match f.strings(d, "secrets", "an array of variable names like [\"STRIPE_SECRET_KEY\"]") {
            Some(list) => {
                for (name, span) in list {
                    ok &= define(d, name, &span, EnvValue::Secret, &path);
                }
            }
            None => ok = false,
        }
    }

    if let Some(e) = f.get("env_from") {
        let path = f.child_path("env_from");
        match Fields::open(d, &e.node, &path) {
            Some(refs) => {
                for r in refs.entries() {
                    let rpath = format!("{path}.{}", r.key);
                    let Kind::String(text) = &r.node.kind else {
                        d.error(
                            &r.node.span,
                            format!(
                                "`{rpath}` must be a string like \"db.connection_string\", found {}",
                                r.node.type_name()
                            ),
                        );
                        ok = false;
                        continue;
                    };
                    // A secret pasted here instead of a reference is not repeated either.
                    let known = text.split_once('.').is_some_and(|(t, _)| names.is_database(t) || names.is_service(t));
                    let hide = looks_secret(&r.key) && !known;
                    if hide {
                        d.mask(&r.node.span);
                    }
                    match parse_reference(d, names, text, hide, &r.node.span, &rpath) {
                        Some(reference) => ok &= define(d, &r.key, &r.key_span, EnvValue::From(reference), &path),
                        None => ok = false,
                    }
                }
            }
            None => ok = false,
        }
    }
    for (key, (path, span, n)) in &defined.repeated {
        let first = defined.first.get(key).map_or_else(String::new, |s| format!("; first at {}", d.position(s.start)));
        d.error(span, format!("`{path}`: {key} is defined {} (in `env`, `secrets` or `env_from`{first})", times(*n)));
    }
    ok.then_some(env)
}

/// Masks the value of `v` in snippets when it is a secret: its name looks secret and it is
/// not marked `secret = false`, or it is marked `secret = true`.
fn mask_env_value(d: &mut Diagnostics<'_>, v: &Entry) {
    let (marked, span) = match &v.node.kind {
        Kind::Table(entries) => {
            let marked = entries.iter().find(|e| e.key == "secret").and_then(|e| match e.node.kind {
                Kind::Boolean(b) => Some(b),
                _ => None,
            });
            (marked, entries.iter().find(|e| e.key == "value").map(|e| &e.node.span))
        }
        _ => (None, Some(&v.node.span)),
    };
    if let Some(span) = span
        && (marked == Some(true) || (marked.is_none() && looks_secret(&v.key)))
    {
        d.mask(span);
    }
}

/// Reads `text` as `<target>.<property>`; with `hide`, messages do not repeat it.
fn parse_reference(
    d: &mut Diagnostics<'_>,
    names: &Names<'_>,
    text: &str,
    hide: bool,
    span: &Span,
    path: &str,
) -> Option<Reference> {
    let Some((target, prop)) = text.split_once('.') else {
        let found =
            if hide { "a value that is not shown, as the name looks secret".to_string() } else { format!("{text:?}") };
        d.error(span, format!("`{path}` must be `<database>.<property>` or `<service>.<property>`, like \"db.connection_string\", found {found}"));
        return None;
    };
    let (kind, allowed) = if names.is_database(target) {
        (ReferenceKind::Database, Property::DATABASE)
    } else if names.is_service(target) {
        (ReferenceKind::Service, Property::SERVICE)
    } else {
        let shown = if hide {
            "a name that is not shown, as the variable looks secret".to_string()
        } else {
            format!("{:?}", cut(target, 64))
        };
        let msg = format!(
            "`{path}` refers to {shown}, which is neither a database nor a service (known: {})",
            quoted_list(&names.all)
        );
        let suggestion = if hide { None } else { d.did_you_mean(target, &names.all) };
        match suggestion {
            Some(m) => d.error_help(span, msg, format!("did you mean `{m}`?")),
            None => d.error(span, msg),
        }
        return None;
    };
    let what = match kind {
        ReferenceKind::Database => "database",
        ReferenceKind::Service => "service",
    };
    match Property::parse(prop).filter(|_| allowed.contains(&prop)) {
        Some(property) => Some(Reference { target: target.to_string(), kind, property }),
        None => {
            let msg = format!("`{path}`: a {what} has no property {prop:?}; expected one of {}", quoted_list(allowed));
            match d.did_you_mean(prop, allowed) {
                Some(m) => d.error_help(span, msg, format!("did you mean `{target}.{m}`?")),
                None => d.error(span, msg),
            }
            None
        }
    }
}

/// References to another service's `url` need that service to have a port.
fn check_references(d: &mut Diagnostics<'_>, services: &IndexMap<String, Service>, entries: &[&Entry]) {
    let by_name: HashMap<&str, &Entry> = entries.iter().map(|e| (e.key.as_str(), *e)).collect();
    for s in services.values() {
        // The spans of this service's `env_from` entries, looked up once.
        let mut spans: Option<HashMap<&str, &Span>> = None;
        for (var, value) in &s.env {
            let EnvValue::From(r) = value else { continue };
            if r.kind != ReferenceKind::Service {
                continue;
            }
            let Some(target) = services.get(&r.target) else { continue };
            let spans = spans.get_or_insert_with(|| {
                by_name
                    .get(s.name.as_str())
                    .and_then(|e| e.node.entries())
                    .and_then(|es| es.iter().find(|e| e.key == "env_from"))
                    .and_then(|e| e.node.entries())
                    .map(|es| es.iter().map(|e| (e.key.as_str(), &e.node.span)).collect())
                    .unwrap_or_default()
            });
            let span = spans.get(var.as_str()).map(|s| (*s).clone()).unwrap_or_default();
            if target.port.is_none() {
                d.error(
                    &span,
                    format!(
                        "`services.{}.env_from.{var}` needs `{}` to have a port, but it is a worker with none",
                        s.name, r.target
                    ),
                );
            } else if r.target == s.name && r.property == Property::Url {
                d.error(&span, format!("`services.{}.env_from.{var}` refers to the service itself", s.name));
            }
        }
    }
}

fn parse_scale(d: &mut Diagnostics<'_>, f: &Fields<'_>) -> Option<Scaling> {
    let Some(e) = f.get("scale") else {
        return Some(Scaling { min: 1, max: 1, auto_stop: false });
    };
    let path = f.child_path("scale");
    let s = Fields::new(d, &e.node, &path, SCALE_KEYS)?;
    let min = s.integer(d, "min", 0, 1000, "a number of instances from 0 to 1000");
    let max = s.integer(d, "max", 1, 1000, "a number of instances from 1 to 1000");
    let auto_stop = s.boolean(d, "auto_stop");
    if (s.get("min").is_some() && min.is_none()) || (s.get("max").is_some() && max.is_none()) {
        return None;
    }
    let min = min.unwrap_or(1) as u32;
    let max = max.map_or(min.max(1), |m| m as u32);
    if min > max {
        let span = s.get("min").map_or(e.node.span.clone(), |m| m.node.span.clone());
        d.error(&span, format!("`{path}.min` ({min}) must not be greater than `max` ({max})"));
        return None;
    }
    Some(Scaling { min, max, auto_stop: auto_stop.unwrap_or(false) })
}

fn parse_vm(d: &mut Diagnostics<'_>, f: &Fields<'_>, e: &Entry) -> Option<Vm> {
    let path = f.child_path("vm");
    let v = Fields::new(d, &e.node, &path, VM_KEYS)?;
    let cpu_kind = match v.get("cpu_kind") {
        Some(_) => Some(match v.choice(d, "cpu_kind", &["shared", "performance"])? {
            "shared" => CpuKind::Shared,
            _ => CpuKind::Performance,
        }),
        None => Some(CpuKind::Shared),
    };
    let cpus = v.integer(d, "cpus", 1, 64, "a positive number of CPUs (1 to 64)");
    let memory = v.integer(d, "memory_mb", 1, 262_144, "a positive amount of memory in MB");
    if (v.get("cpus").is_some() && cpus.is_none()) || (v.get("memory_mb").is_some() && memory.is_none()) {
        return None;
    }
    Some(Vm { cpu_kind: cpu_kind?, cpus: cpus.unwrap_or(1) as u32, memory_mb: memory.unwrap_or(256) as u32 })
}

fn parse_restart(d: &mut Diagnostics<'_>, f: &Fields<'_>, e: &Entry) -> Option<RestartPolicy> {
    let path = f.child_path("restart");
    let r = Fields::new(d, &e.node, &path, RESTART_KEYS)?;
    let policy = match r.get("policy") {
        Some(_) => match r.choice(d, "policy", &["always", "on-failure", "never"])? {
            "always" => RestartKind::Always,
            "never" => RestartKind::Never,
            _ => RestartKind::OnFailure,
        },
        None => RestartKind::OnFailure,
    };
    let retries = match r.get("retries") {
        Some(re) => {
            let n = r.integer(d, "retries", 0, 1000, "a number of retries from 0 to 1000")? as u32;
            if policy != RestartKind::OnFailure {
                d.error(&re.key_span, format!("`{path}.retries` applies only to policy \"on-failure\""));
                return None;
            }
            Some(n)
        }
        None => None,
    };
    Some(RestartPolicy { policy, retries })
}

fn parse_environment(
    d: &mut Diagnostics<'_>,
    ctx: &ServiceCtx<'_>,
    entry: &Entry,
    base: &mut Base<'_>,
) -> Option<Environment> {
    let path = format!("environments.{}", entry.key);
    check_name(d, &entry.key_span, &path, &entry.key);
    let f = Fields::new(d, &entry.node, &path, ENVIRONMENT_KEYS)?;
    // Every key is read, and the overrides checked, even when one is wrong: no problem waits
    // for another to be fixed.
    let mut ok = true;
    let target = match f.get("target") {
        Some(_) => {
            let t = f.choice(d, "target", TARGET_NAMES).and_then(|t| t.parse::<PlatformKind>().ok());
            ok &= t.is_some();
            t
        }
        None => None,
    };
    let regions: Vec<String> = match f.get("regions") {
        Some(e) => match f.strings(d, "regions", "an array of region names like [\"iad\", \"fra\"]") {
            Some(list) => {
                check_regions(d, &path, &list);
                if list.is_empty() {
                    d.error(
                        &e.node.span,
                        format!("`{path}.regions` must not be empty; leave it out for the target's default"),
                    );
                }
                list.into_iter().map(|(r, _)| r.to_string()).collect()
            }
            None => {
                ok = false;
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    let strategy = match f.get("strategy") {
        Some(_) => {
            let s = f.choice(d, "strategy", Strategy::NAMES).and_then(|s| s.parse().ok());
            ok &= s.is_some();
            s
        }
        None => None,
    };

    let overrides: &[Entry] = match f.get("services") {
        Some(e) => match Fields::open(d, &e.node, &format!("{path}.services")) {
            Some(o) => o.entries(),
            None => {
                ok = false;
                &[]
            }
        },
        None => &[],
    };
    let known: Vec<&str> = base.entries.iter().map(|e| e.key.as_str()).collect();
    let known_set: HashSet<&str> = known.iter().copied().collect();
    for o in overrides {
        if !known_set.contains(o.key.as_str()) {
            let msg = format!(
                "`{path}.services.{}` overrides a service that does not exist (services: {})",
                o.key,
                quoted_list(&known)
            );
            match d.did_you_mean(&o.key, &known) {
                Some(m) => d.error_help(&o.key_span, msg, format!("did you mean `{m}`?")),
                None => d.error(&o.key_span, msg),
            }
        }
    }
    let by_name: HashMap<&str, &Entry> = overrides.iter().map(|o| (o.key.as_str(), o)).collect();
    let mut merged = IndexMap::new();
    for s in base.entries {
        let Some(o) = by_name.get(s.key.as_str()) else {
            // Not overridden: the same as the base service, already read (and reported).
            if let Some(svc) = base.parsed.get(&s.key) {
                merged.insert(svc.name.clone(), svc.clone());
            }
            continue;
        };
        if o.node.entries().is_none() {
            d.error(&o.node.span, format!("`{path}.services.{}` must be a table, found {}", o.key, o.node.type_name()));
            continue;
        }
        // Checking a merged service costs its size again: bounded for the whole manifest.
        let Some(left) = base.values_left else { continue };
        let values = s.node.size() + o.node.size();
        if values > left {
            base.values_left = None;
            d.error(
                &o.key_span,
                format!("`{path}.services.{}`: too many overridden values: the services that environments override are checked again in each of them, and may hold at most {MAX_OVERRIDDEN_VALUES} values together", o.key),
            );
            continue;
        }
        base.values_left = Some(left - values);
        let mut node = s.node.clone();
        node.merge(&o.node);
        if let Some(svc) = parse_service(d, ctx, &s.key, &node, &format!("services.{}", s.key), &s.key_span) {
            merged.insert(svc.name.clone(), svc);
        }
    }
    ok.then(|| Environment { name: entry.key.clone(), target, regions, strategy, services: merged })
}

/// Each region must be a region name, listed once. One problem per distinct bad or repeated
/// value: a bad one where it is first written, a repeated one where it is repeated first.
fn check_regions(d: &mut Diagnostics<'_>, path: &str, list: &[(&str, Span)]) {
    let is_region =
        |r: &str| !r.is_empty() && r.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    // Per distinct value: its first span, the span of its first repeat, and its count.
    let mut seen: IndexMap<&str, (&Span, Option<&Span>, usize)> = IndexMap::new();
    for (r, span) in list {
        match seen.get_mut(r) {
            Some((_, repeat, n)) => {
                repeat.get_or_insert(span);
                *n += 1;
            }
            None => {
                if !is_region(r) {
                    d.error(
                        span,
                        format!(
                            "`{path}.regions`: {:?} is not a region name (lowercase letters, digits, dashes)",
                            cut(r, 64)
                        ),
                    );
                }
                seen.insert(r, (span, None, 1));
            }
        }
    }
    for (r, (first, repeat, n)) in seen {
        if let Some(repeat) = repeat
            && is_region(r)
        {
            let at = d.position(first.start);
            d.error(repeat, format!("`{path}.regions`: {:?} is listed {} (first at {at})", cut(r, 64), times(n)));
        }
    }
}

/// A table of names to strings (`[targets.railway.environments]`), whose keys `known` accepts.
fn string_map<'a>(
    d: &mut Diagnostics<'_>,
    f: &Fields<'_>,
    key: &str,
    expected: &str,
    known: impl Fn(&str) -> Result<(), (Vec<&'a str>, &'static str)>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(e) = f.get(key) else { return out };
    let path = f.child_path(key);
    let Some(table) = Fields::open(d, &e.node, &path) else { return out };
    for entry in table.entries() {
        if let Err((candidates, what)) = known(&entry.key) {
            let msg = format!("`{path}.{}` names {what} that does not exist", entry.key);
            match d.did_you_mean(&entry.key, &candidates) {
                Some(m) => d.error_help(&entry.key_span, msg, format!("did you mean `{m}`?")),
                None => d.error(&entry.key_span, msg),
            }
            continue;
        }
        if let Some(v) = table.string(d, &entry.key, expected) {
            if v.trim().is_empty() {
                d.error(&entry.node.span, format!("`{path}.{}` is empty: expected {expected}", entry.key));
            } else {
                out.insert(entry.key.clone(), v.to_string());
            }
        }
    }
    out
}

fn parse_targets(d: &mut Diagnostics<'_>, root: &Fields<'_>, names: &Names<'_>) -> Targets {
    let default_template = || NameTemplate(NameTemplate::DEFAULT.to_string());
    let mut t = Targets {
        fly: FlyTarget {
            declared: false,
            org: "personal".to_string(),
            primary_region: None,
            name_template: default_template(),
        },
        railway: RailwayTarget {
            declared: false,
            project: None,
            name_template: NameTemplate("{service}".to_string()),
            region: None,
            environments: BTreeMap::new(),
            databases: BTreeMap::new(),
        },
        render: RenderTarget {
            declared: false,
            region: None,
            name_template: default_template(),
            plans: BTreeMap::new(),
            registry_credential: None,
            owner: None,
        },
    };
    let Some(e) = root.get("targets") else { return t };
    let Some(targets) = Fields::new(d, &e.node, "targets", TARGET_NAMES) else { return t };

    let template = |d: &mut Diagnostics<'_>, f: &Fields<'_>| -> Option<NameTemplate> {
        let text = f.string(d, "name_template", "a template like \"{app}-{service}-{env}\"")?;
        let span = f.get("name_template").map(|e| e.node.span.clone()).unwrap_or_default();
        if text.len() > MAX_TEMPLATE {
            d.error(&span, format!("`{}.name_template` is too long: at most {MAX_TEMPLATE} bytes", f.path));
            return None;
        }
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let after = &rest[open + 1..];
            let Some(close) = after.find('}') else {
                d.error(&span, format!("`{}.name_template` has an unclosed `{{`", f.path));
                return None;
            };
            let placeholder = &after[..close];
            if !NameTemplate::PLACEHOLDERS.contains(&placeholder) {
                d.error(&span, format!("`{}.name_template` has an unknown placeholder {{{placeholder}}}; expected {{app}}, {{service}} or {{env}}", f.path));
                return None;
            }
            rest = &after[close + 1..];
        }
        if !text.contains("{service}") {
            d.error(
                &span,
                format!("`{}.name_template` must contain {{service}} so that every service gets its own name", f.path),
            );
            return None;
        }
        Some(NameTemplate(text.to_string()))
    };

    if let Some(e) = targets.get("fly")
        && let Some(f) = Fields::new(d, &e.node, "targets.fly", FLY_KEYS)
    {
        t.fly.declared = true;
        if let Some(org) = f.string(d, "org", "an organisation slug like \"acme\"") {
            t.fly.org = org.to_string();
        }
        t.fly.primary_region = f.string(d, "primary_region", "a region code like \"iad\"").map(str::to_string);
        if let Some(tpl) = template(d, &f) {
            t.fly.name_template = tpl;
        }
    }
    if let Some(e) = targets.get("railway")
        && let Some(f) = Fields::new(d, &e.node, "targets.railway", RAILWAY_KEYS)
    {
        t.railway.declared = true;
        t.railway.project = f.string(d, "project", "a Railway project name or id").map(str::to_string);
        t.railway.region = f.string(d, "region", "a Railway region like \"us-west2\"").map(str::to_string);
        if let Some(tpl) = template(d, &f) {
            t.railway.name_template = tpl;
        }
        let env_names: Vec<&str> = root
            .get("environments")
            .and_then(|e| e.node.entries())
            .map(|es| es.iter().map(|e| e.key.as_str()).collect())
            .unwrap_or_default();
        t.railway.environments = string_map(d, &f, "environments", "a Railway environment name", |k| {
            env_names.contains(&k).then_some(()).ok_or_else(|| (env_names.clone(), "an environment"))
        });
        t.railway.databases = string_map(d, &f, "databases", "the name of a Railway database service", |k| {
            names
                .is_database(k)
                .then_some(())
                .ok_or_else(|| (names.all.iter().copied().filter(|n| names.is_database(n)).collect(), "a database"))
        });
    }
    if let Some(e) = targets.get("render")
        && let Some(f) = Fields::new(d, &e.node, "targets.render", RENDER_KEYS)
    {
        t.render.declared = true;
        t.render.region = f.string(d, "region", "a Render region like \"oregon\"").map(str::to_string);
        t.render.owner = f.string(d, "owner", "a Render workspace id or name").map(str::to_string);
        t.render.registry_credential =
            f.string(d, "registry_credential", "the name of a Render registry credential").map(str::to_string);
        if let Some(tpl) = template(d, &f) {
            t.render.name_template = tpl;
        }
        if let Some(se) = f.get("services")
            && let Some(svcs) = Fields::open(d, &se.node, "targets.render.services")
        {
            for s in svcs.entries() {
                let spath = format!("targets.render.services.{}", s.key);
                if !names.is_service(&s.key) {
                    let msg = format!("`{spath}` names a service that does not exist");
                    match d.did_you_mean(&s.key, &names.services) {
                        Some(m) => d.error_help(&s.key_span, msg, format!("did you mean `{m}`?")),
                        None => d.error(&s.key_span, msg),
                    }
                    continue;
                }
                if let Some(sf) = Fields::new(d, &s.node, &spath, RENDER_SERVICE_KEYS)
                    && let Some(plan) = sf.string(d, "plan", "a Render plan like \"standard\"")
                {
                    t.render.plans.insert(s.key.clone(), plan.to_string());
                }
            }
        }
    }
    t
}

/// Every platform name a template yields must be valid. Components and environments whose own
/// names are invalid were reported already and are left out.
///
/// The names are not all built: every template contains `{service}`, so distinct components get
/// distinct names in one environment, and since every name filled in is valid, a well-formed
/// template (see [`TemplateShape`]) yields a valid name exactly when it is short enough. Only the
/// other names are built and checked, so the work per (component, environment) is constant.
fn check_platform_names(d: &mut Diagnostics<'_>, app: &App, root: &Fields<'_>) {
    let span_of = |platform: PlatformKind| {
        root.get("targets")
            .and_then(|t| t.node.entries())
            .and_then(|es| es.iter().find(|e| e.key == platform.as_str()))
            .and_then(|e| e.node.entries())
            .and_then(|es| es.iter().find(|e| e.key == "name_template"))
            .map_or(0..0, |e| e.node.span.clone())
    };
    let components: BTreeSet<&str> =
        app.services.keys().chain(app.databases.keys()).map(String::as_str).filter(|c| is_valid_name(c)).collect();
    let envs: Vec<&str> = app.environments.keys().map(String::as_str).filter(|e| is_valid_name(e)).collect();
    for platform in PlatformKind::ALL {
        let span = span_of(platform);
        let shape = TemplateShape::of(&app.targets.name_template(platform).0);
        // Without {env}, every environment gets the same names: the first stands for all.
        let envs = if shape.env == 0 { envs.get(..1).unwrap_or_default() } else { &envs[..] };
        for env in envs {
            for c in &components {
                if d.is_full() {
                    return;
                }
                let len = shape.literal + shape.app * app.name.len() + shape.service * c.len() + shape.env * env.len();
                if shape.well_formed && len <= 63 {
                    continue;
                }
                let name = app.platform_name(platform, c, env);
                if !is_valid_name(&name) {
                    d.error(&span, format!("the {platform} name of `{c}` in `{env}` would be {name:?}: names must be lowercase letters, digits and dashes, starting with a letter, at most 63"));
                }
            }
        }
    }
}

/// What a name template is made of.
struct TemplateShape {
    /// Bytes outside placeholders.
    literal: usize,
    /// How often each placeholder appears.
    app: usize,
    service: usize,
    env: usize,
    /// Its text outside placeholders is lowercase letters, digits and dashes, it starts with a
    /// placeholder or a letter, and it ends with a placeholder or not with a dash: filled with
    /// valid names, it yields a valid name of the right length.
    well_formed: bool,
}

impl TemplateShape {
    fn of(template: &str) -> Self {
        let mut shape = Self { literal: 0, app: 0, service: 0, env: 0, well_formed: true };
        let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        let mut rest = template;
        let mut first = true;
        let mut last_literal: Option<char> = None;
        while !rest.is_empty() {
            let open = rest.find('{').unwrap_or(rest.len());
            let (text, after) = rest.split_at(open);
            if let Some(c) = text.chars().next()
                && first
                && !c.is_ascii_lowercase()
            {
                shape.well_formed = false;
            }
            shape.well_formed &= text.chars().all(valid);
            shape.literal += text.len();
            if !text.is_empty() {
                last_literal = text.chars().last();
            }
            first = false;
            let Some(close) = after.find('}') else {
                shape.well_formed &= after.is_empty();
                break;
            };
            match after.get(1..close) {
                Some("app") => shape.app += 1,
                Some("service") => shape.service += 1,
                Some("env") => shape.env += 1,
                _ => shape.well_formed = false,
            }
            last_literal = None;
            rest = after.get(close + 1..).unwrap_or_default();
        }
        shape.well_formed &= last_literal != Some('-') && shape.service > 0;
        shape
    }
}
