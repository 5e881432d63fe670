//! Building the platform and registry clients a command needs, `--dry-run`, and the process's
//! [`Scrubber`].
//!
//! # Secrets never leave
//!
//! The CLI holds one [`Scrubber`] for the whole process ([`scrubber`]). It is built, on first
//! use, from every credential the process can see: the platform tokens (`FLY_API_TOKEN`,
//! `FLY_ACCESS_TOKEN`, `RAILWAY_TOKEN`, `RAILWAY_API_TOKEN`, `RENDER_API_KEY`), the registry's
//! (`GHCR_TOKEN`, `GITHUB_TOKEN`), and the userinfo of the API URLs
//! (`SHIPIT_{FLY,RAILWAY,RENDER}_API_URL`) and registry host lists (`SHIPIT_INSECURE_REGISTRIES`,
//! `SHIPIT_GHCR_HOSTS`). A token read from the OS keyring ([`crate::credentials`]) and each value
//! `secrets sync` reads are added as they are read ([`keep_secret`]), before anything is sent.
//! Then:
//!
//! - the clients are built with it ([`platform`], [`resolver`]), so every error they make from a
//!   response or a transport failure is scrubbed as it is made (the registry client adds the
//!   bearer tokens it is issued);
//! - [`Output`]'s event sink is wrapped in it ([`shipit_core::Events::scrubbed`]);
//! - the final error message, the summary and every JSON line are scrubbed once more as they are
//!   printed ([`scrub`]): a last line of defence, not the first.

use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use shipit_core::http::Scrubber;
use shipit_core::{Error, PlannedCall, Platform, PlatformKind, Service, Strategy, Target};

use crate::cli::Cli;
use crate::credentials::{Account, Credentials, Source, Token};
use crate::exit::Exit;
use crate::output::Output;

/// Variables holding tokens.
const TOKEN_VARS: [&str; 7] = [
    "FLY_API_TOKEN",
    "FLY_ACCESS_TOKEN",
    "RAILWAY_TOKEN",
    "RAILWAY_API_TOKEN",
    "RENDER_API_KEY",
    "GHCR_TOKEN",
    "GITHUB_TOKEN",
];
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

/// What Railway messages call a token from the keyring.
const KEYRING_ORIGIN: &str = "the OS keyring";

/// The platform client for `kind`, configured from the environment, with its token from the
/// environment or the OS keyring ([`crate::credentials`]). No request is made here, so a missing
/// token only fails when an API call is needed.
pub fn platform(kind: PlatformKind) -> Result<Box<dyn Platform>, Error> {
    platform_with(kind, crate::credentials::process())
}

/// The platforms whose client [`platform_with`] built without a token.
fn tokenless() -> &'static Mutex<Vec<PlatformKind>> {
    static TOKENLESS: OnceLock<Mutex<Vec<PlatformKind>>> = OnceLock::new();
    TOKENLESS.get_or_init(Mutex::default)
}

/// Fails as `kind`'s client would at its first request (exit 5, naming the variables and
/// `shipit login`) when [`platform`] found no token for it. Commands call it before their first
/// network call, so a missing platform token stops them before they read the registry.
pub fn require_token(kind: PlatformKind) -> Result<(), Error> {
    if !tokenless().lock().unwrap_or_else(PoisonError::into_inner).contains(&kind) {
        return Ok(());
    }
    Err(match kind {
        PlatformKind::Fly => Error::from(shipit_fly::FlyError::MissingToken),
        PlatformKind::Railway => Error::from(shipit_railway::RailwayError::MissingToken),
        PlatformKind::Render => Error::from(shipit_render::RenderApiError::MissingToken),
    })
}

/// `account`'s token from `creds`; a keyring that cannot be read is a warning (the command then
/// fails as without a token, naming the variable and `shipit login`).
fn token_of(creds: &Credentials, account: Account) -> Option<Token> {
    creds.token(account).unwrap_or_else(|problem| {
        eprintln!(
            "{} {}",
            crate::style::warning_word(),
            scrub(&format!("cannot read the {account} token from the OS keyring: {problem}"))
        );
        None
    })
}

/// [`platform`] with the variables and keyring of `creds`.
pub fn platform_with(kind: PlatformKind, creds: &Credentials) -> Result<Box<dyn Platform>, Error> {
    let var = |name: &str| creds.var(name);
    let token = token_of(creds, Account::of(kind));
    if token.is_none() {
        tokenless().lock().unwrap_or_else(PoisonError::into_inner).push(kind);
    }
    match kind {
        PlatformKind::Fly => {
            let mut config = shipit_fly::FlyConfig::from_vars(var);
            if let Some(t) = token {
                config = config.token(t.secret);
            }
            let config = config.scrubber(scrubber());
            Ok(Box::new(config.build().map_err(|e| Error::from(e).scrubbed(&scrubber()))?))
        }
        PlatformKind::Railway => {
            use shipit_railway::RailwayToken;
            let mut config = shipit_railway::RailwayConfig::from_vars(var);
            match token {
                Some(Token { secret, source: Source::Env("RAILWAY_TOKEN"), .. }) => {
                    config = config.token(RailwayToken::Project(secret));
                }
                Some(Token { secret, source: Source::Env(_), .. }) => config = config.token(RailwayToken::Api(secret)),
                // `shipit login railway` stores an account or workspace token.
                Some(Token { secret, source: Source::Keyring(_), .. }) => {
                    config = config.token(RailwayToken::Api(secret)).token_origin(KEYRING_ORIGIN);
                }
                None => {}
            }
            let config = config.scrubber(scrubber());
            Ok(Box::new(config.build().map_err(|e| Error::from(e).scrubbed(&scrubber()))?))
        }
        PlatformKind::Render => {
            let mut config = shipit_render::RenderConfig::from_vars(var);
            if let Some(t) = token {
                config = config.token(t.secret);
            }
            let config = config.scrubber(scrubber());
            Ok(Box::new(config.build().map_err(|e| Error::from(e).scrubbed(&scrubber()))?))
        }
    }
}

/// The registry client, configured from the environment, with the GHCR credentials from the
/// environment or the OS keyring.
pub fn resolver() -> Result<shipit_registry::RegistryClient, Error> {
    resolver_with(crate::credentials::process())
}

/// [`resolver`] with the variables and keyring of `creds`. A keyring token stands in for
/// `GHCR_TOKEN`, with `GITHUB_ACTOR` (else the user stored with it) as its user, so it goes
/// only where those would: `ghcr.io` and the hosts in `SHIPIT_GHCR_HOSTS`.
pub fn resolver_with(creds: &Credentials) -> Result<shipit_registry::RegistryClient, Error> {
    let keyring = match creds.env_token(Account::Ghcr) {
        Some(_) => None,
        None => token_of(creds, Account::Ghcr),
    };
    let var = |name: &str| match (&keyring, name) {
        (Some(t), "GHCR_TOKEN") => Some(secrecy::ExposeSecret::expose_secret(&t.secret).to_string()),
        (Some(t), "GITHUB_ACTOR") => creds.var(name).or_else(|| t.user.clone()),
        _ => creds.var(name),
    };
    let config = shipit_registry::RegistryConfig::from_vars(var).scrubber(scrubber());
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
        out.json_event(
            "dry_run",
            serde_json::json!({
                "env": target.env.name,
                "platform": platform.kind(),
                "tag": tag,
                "strategy": strategy.map(|s| s.as_str()),
                "files": files,
                "services": services,
            }),
        );
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
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use keyring_core::Entry;
    use shipit_testkit::fly::FlyFake;
    use shipit_testkit::registry::RegistryFake;

    use super::*;
    use crate::credentials::tests::{mock, with_store};

    const MANIFEST: &str = r#"app = "forgestack"

[registry]
host = "ghcr.io"
namespace = "acme"

[services.api]
port = 4000

[environments.staging]
target = "fly"

[targets.fly]
org = "acme"
primary_region = "iad"
"#;

    /// "A command uses it when no variable is set": the Fly platform built the way every command
    /// builds it, with no FLY_API_TOKEN, reads what runs with the token `shipit login` stored.
    #[tokio::test]
    async fn a_command_uses_the_keyring_token_when_no_variable_is_set() {
        let keyring_token = "fm2_only-in-the-keyring";
        let fly = FlyFake::start().await;
        fly.accept_token(keyring_token);
        let image =
            "ghcr.io/acme/forgestack-api@sha256:0000000000000000000000000000000000000000000000000000000000000001";
        fly.seed_machine("forgestack-api-staging", "iad", serde_json::json!({ "image": image }));
        let app = shipit_core::parse(MANIFEST, "shipit.toml").unwrap();
        let env = &app.environments["staging"];
        let target = Target { app: &app, env };
        let api = &env.services["api"];

        let store = mock();
        Entry::new_in_store(&store, "shipit", "fly").unwrap().set_password(keyring_token).unwrap();
        let creds = with_store(&[("SHIPIT_FLY_API_URL", fly.uri().as_str())], &store);
        let platform = platform_with(PlatformKind::Fly, &creds).unwrap();
        let status = platform.status(target, api).await.unwrap();
        assert!(status.exists && status.instances.len() == 1, "{status:?}");
        let requests = fly.requests();
        assert!(!requests.is_empty() && requests.iter().all(|r| r.authorization_ok), "{requests:?}");
        // The keyring's token is a secret like the variables' tokens.
        assert_eq!(scrub(&format!("token {keyring_token}")), "token ***");

        // With nothing stored, the same read fails before anything is sent, naming the variable
        // and `shipit login`.
        let empty = with_store(&[("SHIPIT_FLY_API_URL", fly.uri().as_str())], &mock());
        let e = platform_with(PlatformKind::Fly, &empty).unwrap().status(target, api).await.unwrap_err();
        assert_eq!(e.kind, shipit_core::ErrorKind::Unauthorized);
        assert!(e.message.contains("FLY_API_TOKEN") && e.message.contains("shipit login fly"), "{e}");
        assert_eq!(fly.requests().len(), requests.len(), "nothing more was sent");
    }

    #[tokio::test]
    async fn the_registry_uses_the_ghcr_login_when_no_variable_is_set() {
        let registry = RegistryFake::start().await;
        registry.require_auth("octocat", "ghp_keyring-registry-token");
        let digest = registry.put_image("acme/forgestack-api", "v1");
        let host = registry.host();
        let store = mock();
        let stored = r#"{"username":"octocat","token":"ghp_keyring-registry-token"}"#;
        Entry::new_in_store(&store, "shipit", "ghcr").unwrap().set_password(stored).unwrap();
        let list = [("SHIPIT_INSECURE_REGISTRIES", host.as_str()), ("SHIPIT_GHCR_HOSTS", host.as_str())];
        let client = resolver_with(&with_store(&list, &store)).unwrap();
        assert_eq!(client.config().user(), Some("octocat"));
        let image: shipit_core::ImageRef = format!("{host}/acme/forgestack-api:v1").parse().unwrap();
        assert_eq!(client.resolve_digest(&image).await.unwrap(), digest);
    }

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
