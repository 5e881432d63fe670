//! `shipit doctor`: what would stop a deploy, checked up front and reported in one go.

use shipit_core::{PlatformKind, Resolver, Target};

use crate::cli::{Cli, DoctorArgs};
use crate::exit::Exit;
use crate::platforms;

#[derive(Default)]
struct Report {
    failures: usize,
    json: Vec<serde_json::Value>,
}

impl Report {
    /// One check's line; `text` may quote an error, so it is scrubbed.
    fn line(&mut self, cli: &Cli, ok: Option<bool>, area: &str, text: &str) {
        let text = &platforms::scrub(text);
        let label = match ok {
            Some(true) => "ok  ",
            Some(false) => "FAIL",
            None => "warn",
        };
        if ok == Some(false) {
            self.failures += 1;
        }
        if cli.json {
            self.json.push(serde_json::json!({ "check": area, "status": label.trim().to_lowercase(), "detail": text }));
        } else {
            println!("{label}  {area:10} {text}");
        }
    }
}

/// The variables that may hold `kind`'s token, in the order the client reads them.
fn token_vars(kind: PlatformKind) -> &'static [&'static str] {
    match kind {
        PlatformKind::Fly => &["FLY_API_TOKEN"],
        PlatformKind::Railway => &["RAILWAY_TOKEN", "RAILWAY_API_TOKEN"],
        PlatformKind::Render => &["RENDER_API_KEY"],
    }
}

/// The first of `kind`'s token variables that is set.
fn token_set(kind: PlatformKind) -> Option<&'static str> {
    token_vars(kind).iter().copied().find(|v| is_set(v))
}

fn is_set(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| !v.trim().is_empty())
}

/// Runs every check; exit 1 when any fails.
pub fn run(cli: &Cli, args: &DoctorArgs) -> Exit {
    let mut r = Report::default();
    let app = match super::load_manifest(cli) {
        Ok(app) => {
            r.line(cli, Some(true), "manifest", &format!("{} is valid", cli.file.display()));
            app
        }
        Err(_) => {
            r.line(cli, Some(false), "manifest", &format!("{} has problems (above)", cli.file.display()));
            return finish(cli, r);
        }
    };
    let envs: Vec<String> = match &args.env {
        Some(e) => match super::render::pick_env(cli, &app, Some(e)) {
            Ok(e) => vec![e],
            Err(exit) => return exit,
        },
        None => app.environments.keys().cloned().collect(),
    };

    // Credentials, by name only.
    let mut kinds: Vec<PlatformKind> = envs.iter().filter_map(|e| app.resolve_platform(None, Some(e))).collect();
    kinds.sort();
    kinds.dedup();
    for k in &kinds {
        if let Some(var) = token_set(*k) {
            r.line(cli, Some(true), "token", &format!("{var} is set ({k})"));
        } else {
            let vars = token_vars(*k).join(" or ");
            r.line(
                cli,
                Some(false),
                "token",
                &format!("{vars} is not set: deploys to {k} will fail (export it, in CI from a secret)"),
            );
        }
    }
    let registry_token = ["GHCR_TOKEN", "GITHUB_TOKEN"].into_iter().find(|v| is_set(v));
    match registry_token {
        Some(v) if is_set("GITHUB_ACTOR") => {
            r.line(cli, Some(true), "registry", &format!("{v} and GITHUB_ACTOR are set"))
        }
        Some(v) => {
            r.line(cli, None, "registry", &format!("{v} is set but GITHUB_ACTOR is not: the user \"shipit\" is sent"))
        }
        None => r.line(cli, None, "registry", "no GITHUB_TOKEN or GHCR_TOKEN: only public images can be resolved"),
    }

    let Ok(rt) = tokio::runtime::Builder::new_multi_thread().enable_all().build() else { return Exit::Failed };
    rt.block_on(async {
        // Reachability: one status read per service, per environment.
        for env in &envs {
            let Some(kind) = app.resolve_platform(None, Some(env)) else {
                r.line(cli, None, "platform", &format!("{env}: no target; commands need --to"));
                continue;
            };
            let platform = match platforms::platform(kind) {
                Ok(p) => p,
                Err(e) => {
                    r.line(cli, None, "platform", &format!("{env}: {e}"));
                    continue;
                }
            };
            if token_set(kind).is_none() {
                continue;
            }
            let Some(environment) = app.environments.get(env) else { continue };
            let target = Target { app: &app, env: environment };
            for s in environment.services.values() {
                match platform.status(target, s).await {
                    Ok(st) if st.exists => {
                        let healthy = st.instances.iter().filter(|i| i.healthy).count();
                        let ok = healthy == st.instances.len() && !st.instances.is_empty();
                        r.line(
                            cli,
                            Some(ok).filter(|o| *o).or(None),
                            "platform",
                            &format!(
                                "{env}/{}: {} reachable, {healthy}/{} instances healthy",
                                s.name,
                                st.platform_name,
                                st.instances.len()
                            ),
                        );
                    }
                    Ok(st) => r.line(
                        cli,
                        None,
                        "platform",
                        &format!(
                            "{env}/{}: {} does not exist yet (the first deploy creates it)",
                            s.name, st.platform_name
                        ),
                    ),
                    Err(e) => r.line(cli, Some(false), "platform", &format!("{env}/{}: {e}", s.name)),
                }
            }
        }

        // Image policy against a tag.
        if let Some(tag) = &args.tag {
            let registry = match platforms::resolver() {
                Ok(reg) => reg,
                Err(e) => {
                    r.line(cli, Some(false), "images", &e.to_string());
                    return;
                }
            };
            let env = envs.first().and_then(|e| app.environments.get(e));
            let services = env.map(|e| e.services.values().collect::<Vec<_>>()).unwrap_or_default();
            for s in services {
                let tagged = s.image.with_tag(tag);
                let digest = match registry.resolve(&tagged).await {
                    Ok(d) => d,
                    Err(e) => {
                        r.line(cli, Some(false), "images", &format!("{}: {e}", s.name));
                        continue;
                    }
                };
                let pinned = tagged.with_digest(&digest);
                match registry.inspect(&pinned).await {
                    Ok(facts) => {
                        let violations = shipit_core::policy::check(s, &facts);
                        let sizes: Vec<String> = facts
                            .platforms
                            .iter()
                            .map(|p| format!("{} {:.1} MB", p.platform, p.compressed_bytes as f64 / 1e6))
                            .collect();
                        if violations.is_empty() {
                            r.line(
                                cli,
                                Some(true),
                                "images",
                                &format!(
                                    "{tagged}: {} ({})",
                                    if s.policy.is_empty() { "no policy" } else { "meets its policy" },
                                    sizes.join(", ")
                                ),
                            );
                        }
                        for v in violations {
                            r.line(cli, Some(false), "policy", &v.message);
                        }
                    }
                    Err(e) => r.line(cli, Some(false), "images", &format!("{}: {e}", s.name)),
                }
            }
        }
    });
    finish(cli, r)
}

fn finish(cli: &Cli, r: Report) -> Exit {
    if cli.json {
        println!("{}", serde_json::json!({ "ok": r.failures == 0, "checks": r.json }));
    } else if r.failures > 0 {
        println!("{} problem{} found", r.failures, if r.failures == 1 { "" } else { "s" });
    }
    if r.failures == 0 { Exit::Ok } else { Exit::Failed }
}
