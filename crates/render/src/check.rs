//! What a deploy to Render would refuse, or would not do, found in the manifest alone: no
//! client, no token. `shipit validate` and `shipit doctor` report these with the manifest's
//! problems.

use shipit_core::manifest::{Finding, KeyPath, Severity};
use shipit_core::{App, Engine, Environment, HealthCheck, PlatformKind, Strategy, key_path};

use crate::regions::{self, REGIONS};
use crate::render::{PLANS, POSTGRES_VERSIONS};

/// The strategies a Render deploy implements: none, Render runs one deploy at a time its own
/// way (its `Capabilities::strategies`; a test holds the two equal).
pub const STRATEGIES: &[Strategy] = &[];

/// Everything a deploy of environment `env` to Render would refuse (errors) or ignore
/// (warnings).
pub fn check(app: &App, env: &Environment) -> Vec<Finding> {
    let mut out = Vec::new();
    let name = env.name.as_str();
    if let Some(s) = env.strategy
        && !STRATEGIES.contains(&s)
    {
        out.push(Finding::error(
            key_path!["environments", name, "strategy"],
            format!(
                "`environments.{name}.strategy`: Render deploys do not implement the {} strategy: Render runs one deploy at a time its own way; leave `strategy` out",
                s.as_str()
            ),
        ));
    }
    // As `render::region`: `targets.render.region`, else the environment's first region (when
    // it runs on Render or names no target); a service runs in one region.
    let own = matches!(env.target, None | Some(PlatformKind::Render));
    match (&app.targets.render.region, own) {
        (Some(r), _) => {
            if !regions::is_region(r) {
                out.push(unknown_region(key_path!["targets", "render", "region"], "`targets.render.region`", r));
            }
            if own && !env.regions.is_empty() {
                out.push(Finding::warning(
                    key_path!["environments", name, "regions"],
                    format!(
                        "environment {name:?} on Render: `targets.render.region` ({r:?}) is used; `regions` is ignored"
                    ),
                ));
            }
        }
        (None, true) => {
            if let Some(first) = env.regions.first()
                && !regions::is_region(first)
            {
                out.push(unknown_region(
                    key_path!["environments", name, "regions", 0],
                    &format!("`environments.{name}.regions`"),
                    first,
                ));
            }
            if env.regions.len() > 1 {
                out.push(Finding::warning(
                    key_path!["environments", name, "regions", 1],
                    format!("environment {name:?} on Render: a service runs in one region, the first; the other `regions` are ignored"),
                ));
            }
        }
        (None, false) => {}
    }
    for (svc, chosen) in &app.targets.render.plans {
        let plan = chosen.trim().to_ascii_lowercase().replace('_', " ");
        let path = key_path!["targets", "render", "services", svc, "plan"];
        let names: Vec<&str> = std::iter::once("free").chain(PLANS.iter().map(|(p, _, _)| *p)).collect();
        if !names.contains(&plan.as_str()) {
            out.push(
                Finding::error(
                    path,
                    format!(
                        "`targets.render.services.{svc}.plan`: {chosen:?} is not a Render plan; plans are {}",
                        names.join(", ")
                    ),
                )
                .with_unknown(chosen, &names),
            );
        } else if plan == "free" && env.services.get(svc).is_some_and(|s| s.port.is_none()) {
            out.push(Finding::error(
                path,
                format!("`targets.render.services.{svc}.plan`: `{svc}` is a worker, and Render workers cannot use the free plan; choose starter or larger"),
            ));
        }
    }
    for db in app.databases.values() {
        if let (Engine::Postgres, Some(v)) = (db.engine, &db.version)
            && !POSTGRES_VERSIONS.contains(&v.as_str())
        {
            out.push(
                Finding::error(
                    key_path!["databases", &db.name, "version"],
                    format!(
                        "`databases.{}.version`: Render has no Postgres {v:?}; versions are {}",
                        db.name,
                        POSTGRES_VERSIONS.join(", ")
                    ),
                )
                .with_unknown(v, POSTGRES_VERSIONS),
            );
        }
    }
    let defaults = HealthCheck::default_timing();
    for svc in env.services.values() {
        let warn = |key: &[&str], what: &str| {
            Finding::service_setting(
                Severity::Warning,
                name,
                &svc.name,
                key,
                format!("environment {name:?}, service `{}`: {what}", svc.name),
            )
        };
        if let Some(h) = &svc.health
            && (h.interval, h.timeout, h.grace) != defaults
        {
            out.push(warn(
                &["health"],
                "Render fixes a health check's timing (5 s per probe, failing after 15 minutes); `health.interval`, `timeout` and `grace` are ignored",
            ));
        }
        if svc.restart.is_some() {
            out.push(warn(&["restart"], "Render always restarts a service that exits; `restart` is ignored"));
        }
        if svc.scale.auto_stop {
            out.push(warn(&["scale", "auto_stop"], "Render does not stop idle services; `scale.auto_stop` is ignored"));
        }
    }
    // Anything else the deploy's own rendering refuses, at the environment.
    if !out.iter().any(Finding::is_error)
        && let Err(e) = crate::render::blueprint(app, name)
    {
        out.push(Finding::error(
            key_path!["environments", name],
            format!("environment {name:?} on Render: {}", e.message),
        ));
    }
    out
}

fn unknown_region(path: KeyPath, what: &str, region: &str) -> Finding {
    Finding::unknown_region(path, what, region, "Render", REGIONS)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use shipit_core::Platform;

    use super::*;

    fn app(extra: &str, targets: &str) -> App {
        let src = format!(
            "app = \"shop\"\n[registry]\nnamespace = \"acme\"\n[services.api]\nport = 4000\nrestart = {{ policy = \"always\" }}\n[databases.db]\nengine = \"postgres\"\nversion = \"9\"\n[environments.staging]\ntarget = \"render\"\n{extra}\n{targets}"
        );
        shipit_core::parse(&src, "shipit.toml").unwrap()
    }

    #[test]
    fn strategies_are_the_platforms_capabilities() {
        let platform = crate::RenderPlatform::builder().token("rnd_test".to_string().into()).build().unwrap();
        assert_eq!(platform.capabilities().strategies, STRATEGIES);
    }

    #[test]
    fn finds_what_a_deploy_refuses_and_what_it_ignores() {
        let a = app("regions = [\"oregn\"]\nstrategy = \"canary\"", "[targets.render.services.api]\nplan = \"huge\"");
        let f = check(&a, &a.environments["staging"]);
        let errors: Vec<&str> = f.iter().filter(|f| f.is_error()).map(|f| f.message.as_str()).collect();
        assert_eq!(errors.len(), 4, "{f:#?}");
        assert!(errors.iter().any(|m| m.contains("\"oregn\" is not a Render region")), "{errors:#?}");
        assert!(errors.iter().any(|m| m.contains("\"huge\" is not a Render plan")), "{errors:#?}");
        assert!(errors.iter().any(|m| m.contains("no Postgres \"9\"")), "{errors:#?}");
        assert!(f.iter().any(|f| !f.is_error() && f.message.contains("`restart` is ignored")), "{f:#?}");
    }
}
