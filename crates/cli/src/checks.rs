//! What a deploy would refuse, checked before one: `validate` and `doctor` run these after the
//! manifest's own checks and report both together.
//!
//! - each environment's resolved target: its platform crate's `check` (regions, strategies, a
//!   missing region, settings the platform ignores), pure functions with no client or token;
//! - the placeholder namespace `owner` that `shipit init` writes when it finds no GitHub owner;
//! - a `port` that is not the one `init` recorded from the Dockerfile's `EXPOSE` (the comment
//!   `# EXPOSE 4000 in apps/api/Dockerfile` after `port`).
//!
//! Errors become [`Problem`]s at their line and column, reported like the manifest's own;
//! warnings stay data, so that JSON can carry them.

use shipit_core::manifest::{Finding, Manifest, Severity};
use shipit_core::{App, ManifestErrors, PlatformKind, Problem, key_path};

use crate::cli::Cli;
use crate::suggest;

/// The placeholder `shipit init` writes for `[registry] namespace` when it cannot find the
/// GitHub owner of the repository.
pub const PLACEHOLDER_NAMESPACE: &str = "owner";

/// What the checks found: errors (exit 4) and warnings.
#[derive(Debug)]
pub struct Checked {
    /// Every error, with the manifest's masked source, when there is any.
    pub errors: Option<ManifestErrors>,
    /// Every warning, in file order.
    pub warnings: Vec<Problem>,
}

/// Runs every check on a manifest that parsed.
pub fn run(app: &App, manifest: &Manifest) -> Checked {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for f in findings(app, manifest) {
        let help = f
            .unknown
            .as_ref()
            .and_then(|u| suggest::closest(&u.found, u.known.iter().map(String::as_str)))
            .map(|m| format!("did you mean {m:?}?"));
        let p = manifest.problem(&f, help);
        match f.severity {
            Severity::Error => errors.push(p),
            _ => warnings.push(p),
        }
    }
    let errors = (!errors.is_empty()).then(|| manifest.errors(errors));
    // Deduplicated and in file order, as errors are.
    let warnings = manifest.errors(warnings).problems;
    Checked { errors, warnings }
}

/// Every finding, for every environment and its target.
pub fn findings(app: &App, manifest: &Manifest) -> Vec<Finding> {
    let mut out = Vec::new();
    for env in app.environments.values() {
        match app.resolve_platform(None, Some(&env.name)) {
            Some(PlatformKind::Fly) => out.extend(shipit_fly::check::check(app, env)),
            Some(PlatformKind::Railway) => out.extend(shipit_railway::check::check(app, env)),
            Some(PlatformKind::Render) => out.extend(shipit_render::check::check(app, env)),
            // No target: commands need --to, and each platform checks then.
            _ => {}
        }
    }
    out.extend(placeholder_namespace(app, manifest));
    out.extend(exposed_ports(app, manifest));
    out
}

/// The namespace `init` writes when it cannot find the owner, and images under it.
fn placeholder_namespace(app: &App, manifest: &Manifest) -> Vec<Finding> {
    let mut out = Vec::new();
    let help = "set it to your GitHub user or organisation (`shipit init --namespace NAME` writes it)";
    if app.registry.namespace.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(PLACEHOLDER_NAMESPACE)) {
        out.push(
            Finding::error(
                key_path!["registry", "namespace"],
                format!(
                    "`registry.namespace` is {PLACEHOLDER_NAMESPACE:?}, the placeholder `shipit init` writes when it cannot find the GitHub owner: there is no such registry namespace to push to or deploy from"
                ),
            )
            .with_help(help),
        );
    }
    for svc in app.services.values() {
        let path = key_path!["services", &svc.name, "image"];
        let first = svc.image.repository.split('/').next().unwrap_or_default();
        if manifest.has(&path)
            && first.eq_ignore_ascii_case(PLACEHOLDER_NAMESPACE)
            && svc.image.repository.contains('/')
        {
            out.push(
                Finding::error(
                    path,
                    format!(
                        "`services.{}.image` is under {first:?}, the placeholder `shipit init` writes when it cannot find the GitHub owner",
                        svc.name
                    ),
                )
                .with_help(help),
            );
        }
    }
    out
}

/// The port `init` recorded from a Dockerfile's EXPOSE: the comment after `port`
/// (`port = 4000  # EXPOSE 4000 in apps/api/Dockerfile`).
pub fn recorded_expose(manifest: &Manifest, service: &str) -> Option<u16> {
    let path = key_path!["services", service, "port"];
    let comment = manifest.comment_after(&path)?;
    let rest = comment.strip_prefix("EXPOSE ")?;
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// A port (in the base service, or an environment's override) that is not the one `init`
/// recorded from EXPOSE: health checks and traffic go to `port`, where nothing listens.
fn exposed_ports(app: &App, manifest: &Manifest) -> Vec<Finding> {
    let mut out = Vec::new();
    for svc in app.services.values() {
        let Some(exposed) = recorded_expose(manifest, &svc.name) else { continue };
        let what = |port: u16| {
            let probe = if svc.health.is_some() { "health checks and traffic go" } else { "traffic goes" };
            format!(
                "`services.{}.port` is {port}, but the image EXPOSEs {exposed} (recorded by `shipit init` after `port`): {probe} to `port`",
                svc.name
            )
        };
        let help = format!("set `port = {exposed}`, or update the `# EXPOSE` comment if the Dockerfile changed");
        if let Some(port) = svc.port
            && port != exposed
        {
            out.push(Finding::error(key_path!["services", &svc.name, "port"], what(port)).with_help(help.clone()));
        }
        for env in app.environments.values() {
            let path = key_path!["environments", &env.name, "services", &svc.name, "port"];
            if let Some(port) = env.services.get(&svc.name).and_then(|s| s.port)
                && port != exposed
                && manifest.has(&path)
            {
                out.push(Finding::error(path, what(port)).with_help(help.clone()));
            }
        }
    }
    out
}

/// Prints each warning as `warning: file:line:col: message` on stderr (with its hint); with
/// `--json` they are in the JSON instead.
pub fn print_warnings(cli: &Cli, file: &str, warnings: &[Problem]) {
    if cli.json {
        return;
    }
    for w in warnings {
        eprintln!("{} {file}:{}:{}: {}", crate::style::warning_word(), w.line, w.column, w.message);
        if let Some(h) = &w.help {
            eprintln!("  help: {h}");
        }
    }
}
