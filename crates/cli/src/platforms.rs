//! Building the platform and registry clients a command needs, `--dry-run`, and the process's
//! [`Scrubber`].
//!
//! # Secrets never leave
//!
//! The CLI holds one [`Scrubber`] for the whole process ([`scrubber`]). It is built, on first
//! use, from every credential the process can see: the platform tokens (`FLY_API_TOKEN`,
//! `RAILWAY_TOKEN`, `RAILWAY_API_TOKEN`, `RENDER_API_KEY`), the registry's (`GHCR_TOKEN`, `GITHUB_TOKEN`), and the
//! userinfo of the API URLs (`SHIPIT_{FLY,RAILWAY,RENDER}_API_URL`) and registry host lists
//! (`SHIPIT_INSECURE_REGISTRIES`, `SHIPIT_GHCR_HOSTS`). `secrets sync` adds each value it reads
//! ([`keep_secret`]) before anything is sent. Then:
//!
//! - the clients are built with it ([`platform`], [`resolver`]), so every error they make from a
//!   response or a transport failure is scrubbed as it is made (the registry client adds the
//!   bearer tokens it is issued);
//! - [`Output`]'s event sink is wrapped in it ([`shipit_core::Events::scrubbed`]);
//! - the final error message, the summary and every JSON line are scrubbed once more as they are
//!   printed ([`scrub`]): a last line of defence, not the first.

use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use shipit_core::http::Scrubber;
use shipit_core::{Error, PlannedCall, Platform, PlatformKind, Service, Strategy, Target};

use crate::cli::Cli;
use crate::exit::Exit;
use crate::output::Output;

/// Variables holding tokens.
const TOKEN_VARS: [&str; 6] =
    ["FLY_API_TOKEN", "RAILWAY_TOKEN", "RAILWAY_API_TOKEN", "RENDER_API_KEY", "GHCR_TOKEN", "GITHUB_TOKEN"];
/// Variables holding URLs, whose userinfo is a credential.
const URL_VARS: [&str; 3] = ["SHIPIT_FLY_API_URL", "SHIPIT_RAILWAY_API_URL", "SHIPIT_RENDER_API_URL"];
/// Variables holding comma-separated `host[:port]` lists, where `user:pass@` has no business.
const HOST_LIST_VARS: [&str; 2] = ["SHIPIT_INSECURE_REGISTRIES", "SHIPIT_GHCR_HOSTS"];

fn process_scrubber() -> &'static RwLock<Scrubber> {
    static SCRUBBER: OnceLock<RwLock<Scrubber>> = OnceLock::new();
    SCRUBBER.get_or_init(|| RwLock::new(from_env(|name| std::env::var(name).ok())))
}

/// The credentials found through `var` (see the [module docs](self)).
fn from_env(var: impl Fn(&str) -> Option<String>) -> Scrubber {
    let mut scrubber = Scrubber::new();
    for name in TOKEN_VARS {
        if let Some(token) = var(name) {
            scrubber.add(&token);
            scrubber.add(token.trim());
        }
    }
    for name in URL_VARS {
        if let Some(url) = var(name) {
            scrubber.add_url_credentials(url.trim());
        }
    }
    for name in HOST_LIST_VARS {
        for entry in var(name).unwrap_or_default().split(',') {
            let entry = entry.trim();
            let entry = entry.split_once("://").map_or(entry, |(_, rest)| rest);
            if let Some((userinfo, _)) = entry.rsplit_once('@') {
                scrubber = scrubber.with_url_credentials(&format!("x://{userinfo}@host"));
            }
        }
    }
    scrubber
}

/// The process's scrubber, as it is now: every credential in the environment and every secret
/// value read so far.
pub fn scrubber() -> Scrubber {
    process_scrubber().read().unwrap_or_else(PoisonError::into_inner).clone()
}

/// Adds a secret value (one `secrets sync` is about to send) to the process's scrubber.
pub fn keep_secret(value: &str) {
    process_scrubber().write().unwrap_or_else(PoisonError::into_inner).add(value);
}

/// `text` scrubbed by the process's scrubber: the last line of defence before it is printed.
pub fn scrub(text: &str) -> String {
    process_scrubber().read().unwrap_or_else(PoisonError::into_inner).scrub(text)
}

/// Every string of `value` scrubbed by the process's scrubber, in place.
pub fn scrub_json(value: &mut serde_json::Value) {
    process_scrubber().read().unwrap_or_else(PoisonError::into_inner).scrub_json(value);
}

/// The platform client for `kind`, configured from the environment. No request is made here,
/// so a missing token only fails when an API call is needed.
pub fn platform(kind: PlatformKind) -> Result<Box<dyn Platform>, Error> {
    match kind {
        PlatformKind::Fly => {
            let config = shipit_fly::FlyConfig::from_env().scrubber(scrubber());
            Ok(Box::new(config.build().map_err(|e| Error::from(e).scrubbed(&scrubber()))?))
        }
        PlatformKind::Railway => {
            let config = shipit_railway::RailwayConfig::from_env().scrubber(scrubber());
            Ok(Box::new(config.build().map_err(|e| Error::from(e).scrubbed(&scrubber()))?))
        }
        PlatformKind::Render => {
            let config = shipit_render::RenderConfig::from_env().scrubber(scrubber());
            Ok(Box::new(config.build().map_err(|e| Error::from(e).scrubbed(&scrubber()))?))
        }
    }
}

/// The registry client, configured from the environment.
pub fn resolver() -> Result<shipit_registry::RegistryClient, Error> {
    let config = shipit_registry::RegistryConfig::from_env().scrubber(scrubber());
    config.build().map_err(|e| Error::from(e).scrubbed(&scrubber()))
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
            crate::diagnostics::error(cli, &scrub(&format!("cannot render for `{}`: {e}", target.env.name)), None);
            return Exit::BadInput;
        }
    };
    let strategy = strategy.or(target.env.strategy);
    if let Err(e) = platform.capabilities().check_strategy(platform.kind(), strategy) {
        crate::diagnostics::error(cli, &scrub(&e.to_string()), None);
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
                crate::diagnostics::error(cli, &scrub(&format!("{}: {e}", s.name)), None);
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
            // The URLs come from configuration (credentials shown as `***` by the clients);
            // scrubbed once more, like everything printed.
            println!("{indent}{}", scrub(&c.line()));
        }
        println!();
    }
    Exit::Ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_credential_in_the_environment_is_known() {
        let vars = |name: &str| {
            let value = match name {
                "FLY_API_TOKEN" => " fm2_fly-token-value\n",
                "GITHUB_TOKEN" => "ghs_github-token-value",
                "SHIPIT_FLY_API_URL" => "https://deployer:url-password-1@fly.internal/v1",
                "SHIPIT_INSECURE_REGISTRIES" => "localhost:5000, http://reg:host-password-2@10.0.0.1:5000",
                "SHIPIT_GHCR_HOSTS" => "tokenuser-credential-3@ghcr.internal",
                _ => return None,
            };
            Some(value.to_string())
        };
        let s = from_env(vars);
        let text = "fm2_fly-token-value ghs_github-token-value url-password-1 host-password-2 \
                    tokenuser-credential-3 localhost:5000 deployer";
        assert_eq!(s.scrub(text), "*** *** *** *** *** localhost:5000 deployer");
        assert!(from_env(|_| None).is_empty());
    }
}
