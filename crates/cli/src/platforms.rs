//! Building the platform and registry clients a command needs, and `--dry-run`.

use std::sync::Arc;

use shipit_core::{Error, ErrorKind, PlannedCall, Platform, PlatformKind, Service, Strategy, Target};

use crate::cli::Cli;
use crate::exit::Exit;
use crate::output::Output;

/// The platform client for `kind`, configured from the environment. No request is made here,
/// so a missing token only fails when an API call is needed.
pub fn platform(kind: PlatformKind) -> Result<Box<dyn Platform>, Error> {
    match kind {
        PlatformKind::Fly => Ok(Box::new(shipit_fly::FlyPlatform::from_env()?)),
        PlatformKind::Railway | PlatformKind::Render => Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "deploying to {kind} is not built yet; `shipit render --to {kind}` writes its files. Fly.io is supported: --to fly"
            ),
        )),
    }
}

/// The registry client, configured from the environment.
pub fn resolver() -> Result<shipit_registry::RegistryClient, Error> {
    shipit_registry::RegistryClient::from_env().map_err(Error::from)
}

/// `deploy --dry-run`: the rendered settings and every call a deploy would make. No request,
/// no token.
pub fn dry_run(
    cli: &Cli,
    out: &Arc<Output>,
    platform: &dyn Platform,
    target: Target<'_>,
    services: &[&Service],
    tag: &str,
    strategy: Option<Strategy>,
) -> Exit {
    let files = match platform.render(target.app, &target.env.name) {
        Ok(f) => f,
        Err(e) => {
            crate::diagnostics::error(cli, &format!("cannot render for `{}`: {e}", target.env.name), None);
            return Exit::BadInput;
        }
    };
    let strategy = strategy.or(target.env.strategy);
    if let Err(e) = platform.capabilities().check_strategy(platform.kind(), strategy) {
        crate::diagnostics::error(cli, &e.to_string(), None);
        return Exit::BadInput;
    }
    let strategy_name = strategy.map_or("the platform's own", |s| s.as_str());
    let mut calls = Vec::new();
    for s in services {
        let tagged = s.image.with_tag(tag);
        let mut these = vec![
            PlannedCall::new("HEAD", format!("https://{}/v2/{}/manifests/{tag}", tagged.registry, tagged.repository))
                .note("registry: tag -> digest"),
        ];
        match platform.describe_deploy(target, s, &tagged) {
            Ok(c) => these.extend(c),
            Err(e) => {
                crate::diagnostics::error(cli, &format!("{}: {e}", s.name), None);
                return Exit::for_error(e.kind);
            }
        }
        calls.push((s.name.clone(), these));
    }
    if out.json() {
        let files: Vec<_> =
            files.iter().map(|f| serde_json::json!({ "path": f.path, "contents": f.contents })).collect();
        let services: Vec<_> = calls.iter().map(|(s, c)| serde_json::json!({ "service": s, "calls": c })).collect();
        out.json_line(&serde_json::json!({
            "event": "dry_run",
            "env": target.env.name,
            "platform": platform.kind(),
            "tag": tag,
            "strategy": strategy.map(|s| s.as_str()),
            "files": files,
            "services": services,
        }));
        return Exit::Ok;
    }
    println!(
        "dry run: deploy {tag} to {} on {} ({strategy_name} strategy); nothing is sent\n",
        target.env.name,
        platform.kind(),
    );
    for f in &files {
        println!("--- {} ---\n{}", f.path, f.contents);
    }
    for (service, these) in &calls {
        println!("--- calls for {service} ---");
        let mut group: Option<&str> = None;
        for c in these {
            if c.when.as_deref() != group {
                group = c.when.as_deref();
                if let Some(g) = group {
                    println!("{g}");
                }
            }
            let indent = if group.is_some() { "  " } else { "" };
            println!("{indent}{}", c.line());
        }
        println!();
    }
    Exit::Ok
}
