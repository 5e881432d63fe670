//! `shipit doctor`: what would stop a deploy, checked up front and reported in one go.

use shipit_core::{PlatformKind, Resolver, Target};

use crate::cli::{Cli, DoctorArgs};
use crate::credentials::{self, Account, Credentials, Keyring, Source, Token};
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
        let check = serde_json::json!({ "check": area, "status": label.trim().to_lowercase(), "detail": text });
        crate::report::event("check", check.clone());
        self.json.push(check);
        if !cli.json {
            let tone = match ok {
                Some(true) => crate::style::Tone::Good,
                Some(false) => crate::style::Tone::Bad,
                None => crate::style::Tone::Warn,
            };
            println!("{}  {area:10} {text}", crate::style::out(tone, label));
        }
    }
}

/// The keyring line: which store is in use (ok), or why none is (a warning).
fn keyring_check(creds: &Credentials) -> (Option<bool>, String) {
    let keyring = creds.keyring();
    let ok = match keyring {
        Keyring::Off | Keyring::Open(_) => Some(true),
        Keyring::Unavailable(_) => None,
    };
    (ok, keyring.describe())
}

/// The token line of `kind`: where its token comes from (a variable's name, or the keyring), by
/// name only; FAIL when there is none. The flag says whether there is a token.
fn token_check(creds: &Credentials, kind: PlatformKind) -> (Option<bool>, String, bool) {
    let account = Account::of(kind);
    let login = if creds.ci() {
        "in CI from a secret (under CI=true the keyring is not used)".to_string()
    } else {
        format!("in CI from a secret, or run `shipit login {account}`")
    };
    let vars = account.vars().join(" or ");
    match creds.token(account) {
        Ok(Some(Token { source: Source::Env(var), .. })) => (Some(true), format!("{var} is set ({kind})"), true),
        Ok(Some(Token { source: Source::Keyring(store), .. })) => (
            Some(true),
            format!("{kind}: the token from `shipit login {account}` is in the {store} (no {vars} is set)"),
            true,
        ),
        Ok(None) => (
            Some(false),
            format!("{vars} is not set and no token is stored: deploys to {kind} will fail (export it, {login})"),
            false,
        ),
        Err(problem) => (
            Some(false),
            format!("{vars} is not set, and the keyring cannot be read ({problem}): deploys to {kind} will fail"),
            false,
        ),
    }
}

/// The registry line: GHCR credentials from the environment or the keyring (a warning without).
fn registry_check(creds: &Credentials) -> (Option<bool>, String) {
    let actor = creds.var("GITHUB_ACTOR");
    match creds.token(Account::Ghcr) {
        Ok(Some(Token { source: Source::Env(v), .. })) if actor.is_some() => {
            (Some(true), format!("{v} and GITHUB_ACTOR are set"))
        }
        Ok(Some(Token { source: Source::Env(v), .. })) => {
            (None, format!("{v} is set but GITHUB_ACTOR is not: the user \"shipit\" is sent"))
        }
        Ok(Some(Token { source: Source::Keyring(store), user, .. })) => {
            let user = actor.or(user).unwrap_or_else(|| shipit_registry::DEFAULT_USER.to_string());
            (Some(true), format!("the GHCR token from `shipit login ghcr` is in the {store} (user {user:?})"))
        }
        Ok(None) => {
            let login = if creds.ci() { "" } else { " (set one, or run `shipit login ghcr`)" };
            (None, format!("no GITHUB_TOKEN or GHCR_TOKEN: only public images can be resolved{login}"))
        }
        Err(problem) => (
            None,
            format!(
                "no GITHUB_TOKEN or GHCR_TOKEN, and the keyring cannot be read ({problem}): only public images can be resolved"
            ),
        ),
    }
}

/// Runs every check; exit 1 when any fails.
pub fn run(cli: &Cli, args: &DoctorArgs) -> Exit {
    let mut r = Report::default();
    // The manifest, and what each environment's target would refuse: `validate`'s checks.
    let checked = super::load_manifest_located(cli).map(|(app, manifest)| {
        let checked = crate::checks::run(&app, &manifest);
        (app, manifest, checked)
    });
    let app = match checked {
        Ok((app, manifest, checked)) => {
            for w in &checked.warnings {
                let at = format!("{}:{}:{}", manifest.file(), w.line, w.column);
                r.line(cli, None, "manifest", &format!("{at}: {}", w.message));
            }
            if let Some(errors) = &checked.errors {
                crate::diagnostics::report_manifest(cli, errors);
                r.line(cli, Some(false), "manifest", &format!("{} has problems (above)", cli.file.display()));
                return finish(cli, r);
            }
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

    // Credentials, by name only: which store, and where each token comes from.
    let creds = credentials::process();
    let (ok, text) = keyring_check(creds);
    r.line(cli, ok, "keyring", &text);
    let mut kinds: Vec<PlatformKind> = envs.iter().filter_map(|e| app.resolve_platform(None, Some(e))).collect();
    kinds.sort();
    kinds.dedup();
    let mut with_token = Vec::new();
    for k in &kinds {
        let (ok, text, has) = token_check(creds, *k);
        r.line(cli, ok, "token", &text);
        if has {
            with_token.push(*k);
        }
    }
    let (ok, text) = registry_check(creds);
    r.line(cli, ok, "registry", &text);

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
            if !with_token.contains(&kind) {
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
    crate::report::result(serde_json::json!({ "checks": r.json, "failures": r.failures }));
    if r.failures > 0 {
        let found = format!("{} problem{} found", r.failures, if r.failures == 1 { "" } else { "s" });
        crate::report::error(Some("failed"), &found, Some("each FAIL line says what to fix"));
        if !cli.json {
            println!("{found}");
        }
    }
    if r.failures == 0 { Exit::Ok } else { Exit::Failed }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use keyring_core::Entry;

    use super::*;
    use crate::credentials::tests::{mock, with_store, with_tripwire};

    #[test]
    fn doctor_says_which_store_and_where_each_token_comes_from_never_its_value() {
        let store = mock();
        Entry::new_in_store(&store, "shipit", "railway").unwrap().set_password("rw_doctor-keyring-token").unwrap();
        let ghcr = r#"{"username":"octocat","token":"ghp_doctor-keyring-token"}"#;
        Entry::new_in_store(&store, "shipit", "ghcr").unwrap().set_password(ghcr).unwrap();
        let creds = with_store(&[("FLY_ACCESS_TOKEN", "fm2_doctor-env-token")], &store);

        assert_eq!(keyring_check(&creds), (Some(true), "mock keyring".to_string()));
        let lines = [
            token_check(&creds, PlatformKind::Fly),
            token_check(&creds, PlatformKind::Railway),
            token_check(&creds, PlatformKind::Render),
        ];
        assert_eq!(lines[0], (Some(true), "FLY_ACCESS_TOKEN is set (fly)".to_string(), true));
        assert_eq!(
            lines[1],
            (
                Some(true),
                "railway: the token from `shipit login railway` is in the mock keyring \
                 (no RAILWAY_TOKEN or RAILWAY_API_TOKEN is set)"
                    .to_string(),
                true
            )
        );
        assert_eq!(
            lines[2],
            (
                Some(false),
                "RENDER_API_KEY is not set and no token is stored: deploys to render will fail \
                 (export it, in CI from a secret, or run `shipit login render`)"
                    .to_string(),
                false
            )
        );
        let registry = registry_check(&creds);
        assert_eq!(
            registry,
            (
                Some(true),
                "the GHCR token from `shipit login ghcr` is in the mock keyring (user \"octocat\")".to_string()
            )
        );
        for text in lines.iter().map(|l| &l.1).chain([&registry.1]) {
            assert!(!text.contains("doctor-keyring-token") && !text.contains("doctor-env-token"), "{text}");
        }
    }

    #[test]
    fn under_ci_doctor_reports_the_keyring_unused_and_never_touches_it() {
        let (creds, wire) = with_tripwire(&[("CI", "true")]);
        assert_eq!(
            keyring_check(&creds),
            (Some(true), "not used (CI=true): tokens come from the environment only".to_string())
        );
        let (ok, text, has) = token_check(&creds, PlatformKind::Fly);
        assert_eq!((ok, has), (Some(false), false));
        assert!(text.ends_with("(export it, in CI from a secret (under CI=true the keyring is not used))"), "{text}");
        assert_eq!(registry_check(&creds).0, None);
        assert_eq!(wire.touched.load(std::sync::atomic::Ordering::SeqCst), 0);
    }
}
