//! What a deploy to Railway would refuse, or would not do, found in the manifest alone: no
//! client, no token. `shipit validate` and `shipit doctor` report these with the manifest's
//! problems.

use shipit_core::manifest::{Finding, KeyPath, Severity};
use shipit_core::{App, Environment, HealthCheck, PlatformKind, Strategy, key_path};

use crate::regions::{self, REGIONS};

/// The strategies a Railway deploy implements: none, Railway replaces replicas its own way
/// (its `Capabilities::strategies`; a test holds the two equal).
pub const STRATEGIES: &[Strategy] = &[];

/// Everything a deploy of environment `env` to Railway would refuse (errors) or ignore
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
                "`environments.{name}.strategy`: Railway deploys do not implement the {} strategy: Railway replaces replicas its own way; leave `strategy` out",
                s.as_str()
            ),
        ));
    }
    // As `render::regions`: the environment's regions when all are Railway's; an unknown one is
    // refused when the environment targets Railway, else the regions are not used.
    let unknown: Vec<(usize, &String)> =
        env.regions.iter().enumerate().filter(|(_, r)| !regions::is_region(r)).collect();
    if env.target == Some(PlatformKind::Railway) {
        for (i, r) in &unknown {
            out.push(unknown_region(
                key_path!["environments", name, "regions", *i],
                &format!("`environments.{name}.regions`"),
                r,
            ));
        }
    } else if let Some((i, r)) = unknown.first() {
        out.push(Finding::warning(
            key_path!["environments", name, "regions", *i],
            format!(
                "environment {name:?} on Railway: {r:?} is not a Railway region, so `regions` is ignored and `targets.railway.region` (default {:?}) is used",
                regions::DEFAULT_REGION
            ),
        ));
    }
    if let Some(r) = &app.targets.railway.region
        && !regions::is_region(r)
    {
        out.push(unknown_region(key_path!["targets", "railway", "region"], "`targets.railway.region`", r));
    }
    let default_interval = HealthCheck::default_timing().0;
    for svc in env.services.values() {
        let warn = |key: &[&str], what: String| {
            Finding::service_setting(
                Severity::Warning,
                name,
                &svc.name,
                key,
                format!("environment {name:?}, service `{}`: {what}", svc.name),
            )
        };
        if svc.scale.max > svc.scale.min.max(1) {
            out.push(warn(
                &["scale", "max"],
                "Railway runs a fixed number of replicas per region (`scale.min`); `scale.max` is ignored".to_string(),
            ));
        }
        if svc.scale.auto_stop && svc.scale.min > 0 {
            out.push(warn(
                &["scale", "auto_stop"],
                "Railway sleeps a service only with `scale.min = 0`; `scale.auto_stop` is ignored".to_string(),
            ));
        }
        if let Some(h) = &svc.health
            && h.interval != default_interval
        {
            out.push(warn(
                &["health", "interval"],
                "Railway probes at its own pace (its health check window is `grace` + `timeout`, at least 300 s); `health.interval` is ignored".to_string(),
            ));
        }
    }
    // Anything else the deploy's own rendering refuses, at the environment.
    if !out.iter().any(Finding::is_error)
        && let Err(e) = crate::render(app, name)
    {
        out.push(Finding::error(
            key_path!["environments", name],
            format!("environment {name:?} on Railway: {}", e.message),
        ));
    }
    out
}

fn unknown_region(path: KeyPath, what: &str, region: &str) -> Finding {
    Finding::unknown_region(path, what, region, "Railway", REGIONS)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use shipit_core::Platform;

    use super::*;
    use crate::RailwayToken;

    fn app(extra: &str) -> App {
        let src = format!(
            "app = \"shop\"\n[registry]\nnamespace = \"acme\"\n[services.api]\nport = 4000\nscale = {{ min = 1, max = 3 }}\n[environments.staging]\ntarget = \"railway\"\n{extra}"
        );
        shipit_core::parse(&src, "shipit.toml").unwrap()
    }

    #[test]
    fn strategies_are_the_platforms_capabilities() {
        let platform =
            crate::RailwayPlatform::builder().token(RailwayToken::Api("t".to_string().into())).build().unwrap();
        assert_eq!(platform.capabilities().strategies, STRATEGIES);
    }

    #[test]
    fn finds_what_a_deploy_refuses_and_what_it_ignores() {
        let a = app("regions = [\"us-west\"]\nstrategy = \"rolling\"\n");
        let f = check(&a, &a.environments["staging"]);
        let errors: Vec<&str> = f.iter().filter(|f| f.is_error()).map(|f| f.message.as_str()).collect();
        assert_eq!(errors.len(), 2, "{f:#?}");
        assert!(errors.iter().any(|m| m.contains("\"us-west\" is not a Railway region")), "{errors:#?}");
        assert!(f.iter().any(|f| !f.is_error() && f.message.contains("`scale.max` is ignored")), "{f:#?}");

        let a = app("regions = [\"us-west2\"]\n");
        let f = check(&a, &a.environments["staging"]);
        assert!(f.iter().all(|f| !f.is_error()), "{f:#?}");
    }
}
