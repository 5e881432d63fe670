//! What a deploy to Fly would refuse, or would not do, found in the manifest alone: no client,
//! no token. `shipit validate` and `shipit doctor` report these with the manifest's problems.

use shipit_core::manifest::Finding;
use shipit_core::{App, Environment, Strategy, key_path};

use crate::regions::{self, REGIONS};

/// The strategies a Fly deploy implements (its `Capabilities::strategies`; a test holds the
/// two equal).
pub const STRATEGIES: &[Strategy] = &[Strategy::Rolling, Strategy::Immediate];

/// Everything a deploy of environment `env` to Fly would refuse. (`scale.max` is not applied by
/// deploys, but the rendered `fly.<service>.toml` carries it for flyctl: no warning.)
pub fn check(app: &App, env: &Environment) -> Vec<Finding> {
    let mut out = Vec::new();
    let name = env.name.as_str();
    if let Some(s) = env.strategy
        && !STRATEGIES.contains(&s)
    {
        out.push(
            Finding::error(
                key_path!["environments", name, "strategy"],
                format!(
                    "`environments.{name}.strategy`: Fly deploys do not implement the {} strategy; they have {}",
                    s.as_str(),
                    names(STRATEGIES)
                ),
            )
            .with_unknown(s.as_str(), &STRATEGIES.iter().map(|s| s.as_str()).collect::<Vec<_>>()),
        );
    }
    for (i, r) in env.regions.iter().enumerate() {
        if !regions::is_region(r) {
            out.push(unknown_region(
                key_path!["environments", name, "regions", i],
                &format!("`environments.{name}.regions`"),
                r,
            ));
        }
    }
    match &app.targets.fly.primary_region {
        Some(r) if !regions::is_region(r) => {
            out.push(unknown_region(key_path!["targets", "fly", "primary_region"], "`targets.fly.primary_region`", r));
        }
        None if env.regions.is_empty() => out.push(
            Finding::error(
                key_path!["environments", name, "regions"],
                format!("environment {name:?} has no region for Fly: a deploy needs one to create machines in"),
            )
            .with_help("set `[targets.fly] primary_region = \"iad\"`, or `regions = [\"iad\"]` on the environment"),
        ),
        _ => {}
    }
    // Anything else the deploy's own rendering refuses, at the environment.
    if !out.iter().any(Finding::is_error)
        && let Err(e) = crate::render(app, name)
    {
        out.push(Finding::error(
            key_path!["environments", name],
            format!("environment {name:?} on Fly: {}", e.message),
        ));
    }
    out
}

fn unknown_region(path: shipit_core::manifest::KeyPath, what: &str, region: &str) -> Finding {
    Finding::unknown_region(path, what, region, "Fly", REGIONS)
}

fn names(strategies: &[Strategy]) -> String {
    strategies.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" and ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use shipit_core::Platform;

    use super::*;

    fn app(extra: &str) -> App {
        let src = format!(
            "app = \"shop\"\n[registry]\nnamespace = \"acme\"\n[services.api]\nport = 4000\n[environments.staging]\ntarget = \"fly\"\n{extra}"
        );
        shipit_core::parse(&src, "shipit.toml").unwrap()
    }

    #[test]
    fn strategies_are_the_platforms_capabilities() {
        let platform = crate::FlyPlatform::builder().token("fm2_test".to_string().into()).build().unwrap();
        assert_eq!(platform.capabilities().strategies, STRATEGIES);
    }

    #[test]
    fn finds_what_a_deploy_refuses() {
        let a = app("regions = [\"iadd\", \"fra\"]\nstrategy = \"canary\"\n");
        let f = check(&a, &a.environments["staging"]);
        let messages: Vec<&str> = f.iter().map(|f| f.message.as_str()).collect();
        assert!(messages.iter().any(|m| m.contains("\"iadd\" is not a Fly region")), "{messages:#?}");
        assert!(messages.iter().any(|m| m.contains("do not implement the canary strategy")), "{messages:#?}");
        assert_eq!(f.iter().filter(|f| f.is_error()).count(), 2, "{messages:#?}");

        let a = app("");
        let f = check(&a, &a.environments["staging"]);
        assert_eq!(f.len(), 1);
        assert!(f[0].message.contains("has no region for Fly"), "{f:?}");

        let a = app("regions = [\"iad\"]\n");
        assert!(check(&a, &a.environments["staging"]).is_empty());
    }
}
