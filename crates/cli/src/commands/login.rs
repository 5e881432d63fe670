//! `shipit login` and `shipit logout`: a token in the OS keyring, checked before it is stored.
//!
//! `login <platform>` reads the token (a prompt without echo in a terminal, standard input with
//! `--with-token`), checks it with one read-only request, and only then stores it (service
//! `shipit`, user `<platform>`; see [`crate::credentials`]). A refused token, or a check that
//! could not be made, stores nothing. `logout <platform>` removes the entry; nothing stored is
//! not an error. Under `CI=true` both refuse without touching the keyring. The token is never
//! printed: it joins the process's scrubber before the check is sent.

use std::io::{IsTerminal, Read};

use secrecy::{ExposeSecret, SecretString};
use shipit_core::ErrorKind;

use crate::cli::{Cli, LoginArgs, LogoutArgs};
use crate::credentials::{self, Account, Credentials, Keyring};
use crate::exit::Exit;
use crate::output::Output;
use crate::{diagnostics, platforms};

/// Most bytes read from standard input for a token.
const MAX_TOKEN_BYTES: usize = 64 * 1024;
/// The registry `login ghcr` checks against by default.
const DEFAULT_REGISTRY: &str = shipit_registry::GHCR;
/// What Railway messages call the token being checked.
const LOGIN_ORIGIN: &str = "given to `shipit login`";

/// What to log in with.
pub struct Request {
    /// Where.
    pub account: Account,
    /// The token, trimmed.
    pub token: SecretString,
    /// Fly: the app to check the token against.
    pub app: Option<String>,
    /// GHCR: the user the token belongs to.
    pub username: Option<String>,
    /// GHCR: the registry to check against.
    pub registry: Option<String>,
}

/// Why a login or logout did not happen: the message, a hint, the exit code.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub exit: Exit,
    /// What went wrong (scrubbed).
    pub message: String,
    /// What to do.
    pub help: Option<String>,
}

impl Failure {
    fn new(exit: Exit, message: impl AsRef<str>) -> Self {
        Self { exit, message: platforms::scrub(message.as_ref()), help: None }
    }

    fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// A stored token.
#[derive(Debug)]
pub struct LoggedIn {
    /// The store's name.
    pub store: &'static str,
    /// GHCR: the user stored with the token.
    pub user: Option<String>,
    /// A variable that is set now and wins over the keyring.
    pub shadowed_by: Option<&'static str>,
}

/// A removed (or absent) token.
#[derive(Debug)]
pub struct LoggedOut {
    /// The store's name.
    pub store: &'static str,
    /// Whether there was a token to remove.
    pub removed: bool,
    /// A variable that is still set.
    pub still_set: Option<&'static str>,
}

fn refuse_ci(account: Account, what: &str) -> Failure {
    Failure::new(
        Exit::BadInput,
        format!("`shipit {what}` is for a workstation: under CI=true shipit never uses the OS keyring"),
    )
    .help(format!("in CI, give the token in {} from the CI's secrets", account.login_var()))
}

/// The keyring's store, or why there is none.
fn store_of(creds: &Credentials, account: Account) -> Result<&credentials::Store, Failure> {
    match creds.keyring() {
        Keyring::Open(store) => Ok(store),
        Keyring::Unavailable(why) => {
            Err(Failure::new(Exit::Failed, format!("no OS keyring to keep the token in: {why}"))
                .help(format!("set {} in the environment instead", account.login_var())))
        }
        Keyring::Off => Err(refuse_ci(account, "login")),
    }
}

/// Checks the flags that only some platforms take.
fn check_flags(req: &Request) -> Result<(), Failure> {
    let bad = |flag: &str, only: &str| {
        Err(Failure::new(Exit::BadInput, format!("--{flag} is for `shipit login {only}` only, not {}", req.account)))
    };
    if req.app.is_some() && req.account != Account::Fly {
        return bad("app", "fly");
    }
    if req.username.is_some() && req.account != Account::Ghcr {
        return bad("username", "ghcr");
    }
    if req.registry.is_some() && req.account != Account::Ghcr {
        return bad("registry", "ghcr");
    }
    if let Some(app) = &req.app
        && (app.is_empty() || !app.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    {
        return Err(Failure::new(
            Exit::BadInput,
            format!("--app {app:?} is not a Fly app name (letters, digits, dashes)"),
        ));
    }
    let token = req.token.expose_secret();
    if token.is_empty() {
        return Err(Failure::new(Exit::BadInput, "the token is empty: nothing was stored"));
    }
    if token.chars().any(char::is_control) {
        return Err(Failure::new(
            Exit::BadInput,
            "the token has a line break or another control character in it (more than one line given?): nothing was stored",
        ));
    }
    Ok(())
}

/// Checks the token with one read-only request; for GHCR, answers the user it was checked with.
async fn check(creds: &Credentials, req: &Request) -> Result<Option<String>, shipit_core::Error> {
    use shipit_core::Error;
    let var = |name: &str| creds.var(name);
    let token = SecretString::from(req.token.expose_secret().to_string());
    match req.account {
        Account::Fly => {
            let config = shipit_fly::FlyConfig::from_vars(var).token(token).scrubber(platforms::scrubber());
            let fly = config.build().map_err(Error::from)?;
            fly.client().check_token(req.app.as_deref()).await.map_err(Error::from)?;
            Ok(None)
        }
        Account::Railway => {
            let config = shipit_railway::RailwayConfig::from_vars(var)
                .token(shipit_railway::RailwayToken::Api(token))
                .token_origin(LOGIN_ORIGIN)
                .scrubber(platforms::scrubber());
            let railway = config.build().map_err(Error::from)?;
            railway.client().check_token().await.map_err(Error::from)?;
            Ok(None)
        }
        Account::Render => {
            let config = shipit_render::RenderConfig::from_vars(var).token(token).scrubber(platforms::scrubber());
            let render = config.build().map_err(Error::from)?;
            render.client().check_token().await.map_err(Error::from)?;
            Ok(None)
        }
        Account::Ghcr => {
            let user = req.username.clone().or_else(|| creds.var("GITHUB_ACTOR"));
            let registry = req.registry.as_deref().unwrap_or(DEFAULT_REGISTRY).trim().to_ascii_lowercase();
            let vars = |name: &str| match name {
                "GHCR_TOKEN" => Some(req.token.expose_secret().to_string()),
                "GITHUB_ACTOR" => user.clone(),
                _ => creds.var(name),
            };
            let config = shipit_registry::RegistryConfig::from_vars(vars).scrubber(platforms::scrubber());
            let client = config.build().map_err(Error::from)?;
            client.check_credentials(&registry).await.map_err(|e| match e {
                shipit_registry::RegistryError::InvalidConfig(_) => Error::new(
                    ErrorKind::InvalidConfig,
                    format!(
                        "the GHCR token is sent only to {DEFAULT_REGISTRY} and the hosts in SHIPIT_GHCR_HOSTS, \
                         not to {registry}: add it there, or leave out --registry"
                    ),
                ),
                e => Error::from(e),
            })?;
            Ok(user)
        }
    }
}

/// `shipit login`, once the token is read: check, then store.
pub async fn login(creds: &Credentials, req: Request) -> Result<LoggedIn, Failure> {
    if creds.ci() {
        return Err(refuse_ci(req.account, "login"));
    }
    check_flags(&req)?;
    let store = store_of(creds, req.account)?;
    store.check_writable().map_err(|why| {
        Failure::new(Exit::Failed, format!("the OS keyring cannot keep a token here: {why} (nothing was sent)"))
            .help(format!("set {} in the environment instead", req.account.login_var()))
    })?;
    // Known to the scrubber before anything is sent, so no answer can show it.
    platforms::keep_secret(req.token.expose_secret());
    let user = check(creds, &req).await.map_err(|e| {
        let exit = match e.kind {
            ErrorKind::Unauthorized => Exit::Auth,
            ErrorKind::InvalidConfig | ErrorKind::NotFound | ErrorKind::Unsupported => Exit::BadInput,
            _ => Exit::Failed,
        };
        let failure = Failure::new(exit, format!("the token was not stored: {e}"));
        match (req.account, e.kind) {
            (Account::Railway, ErrorKind::Unauthorized) => failure.help(
                "`shipit login railway` keeps an account or workspace token; a project token goes in RAILWAY_TOKEN",
            ),
            (Account::Fly, ErrorKind::Unauthorized) if req.app.is_none() => {
                failure.help("an app-scoped deploy token cannot list apps: pass --app NAME to check it against its app")
            }
            _ => failure,
        }
    })?;
    let secret = credentials::encode(req.account, &req.token, user.as_deref());
    platforms::keep_secret(&secret);
    store.write(req.account, &secret).map_err(|why| {
        Failure::new(Exit::Failed, format!("the token was checked but could not be stored: {why}"))
            .help(format!("set {} in the environment instead", req.account.login_var()))
    })?;
    let shadowed_by = creds.env_token(req.account).map(|(var, _)| var);
    Ok(LoggedIn { store: store.name(), user, shadowed_by })
}

/// `shipit logout`: removes the stored token.
pub fn logout(creds: &Credentials, account: Account) -> Result<LoggedOut, Failure> {
    if creds.ci() {
        return Err(refuse_ci(account, "logout"));
    }
    let store = match creds.keyring() {
        Keyring::Open(store) => store,
        Keyring::Unavailable(why) => {
            return Err(Failure::new(Exit::Failed, format!("no OS keyring to remove the token from: {why}")));
        }
        Keyring::Off => return Err(refuse_ci(account, "logout")),
    };
    let removed =
        store.delete(account).map_err(|why| Failure::new(Exit::Failed, format!("cannot remove the token: {why}")))?;
    let still_set = creds.env_token(account).map(|(var, _)| var);
    Ok(LoggedOut { store: store.name(), removed, still_set })
}

/// Reads the token: standard input with `--with-token`, else a prompt without echo.
fn read_token(account: Account, with_token: bool) -> Result<SecretString, Failure> {
    let text = if with_token {
        let mut bytes = Vec::new();
        let limit = u64::try_from(MAX_TOKEN_BYTES + 1).unwrap_or(u64::MAX);
        std::io::stdin()
            .lock()
            .take(limit)
            .read_to_end(&mut bytes)
            .map_err(|e| Failure::new(Exit::Failed, format!("cannot read the token from standard input: {e}")))?;
        return token_from_input(bytes);
    } else if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("{} token for {account} (input is hidden): ", account.login_var()))
            .map_err(|e| Failure::new(Exit::Failed, format!("cannot read the token: {e}")))?
    } else {
        return Err(Failure::new(Exit::BadInput, "standard input is not a terminal, so there is nobody to ask").help(
            format!("pass --with-token to read the token from it: `shipit login {account} --with-token < token.txt`"),
        ));
    };
    Ok(SecretString::from(text.trim().to_string()))
}

/// The token in what `--with-token` read: trimmed (a trailing newline dropped); not empty (that
/// is checked with the rest, see `check_flags`), not too long, UTF-8.
fn token_from_input(bytes: Vec<u8>) -> Result<SecretString, Failure> {
    if bytes.len() > MAX_TOKEN_BYTES {
        return Err(Failure::new(
            Exit::BadInput,
            format!("standard input holds more than {MAX_TOKEN_BYTES} bytes: not a token"),
        ));
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| Failure::new(Exit::BadInput, "the token on standard input is not UTF-8"))?;
    Ok(SecretString::from(text.trim().to_string()))
}

fn report(cli: &Cli, f: &Failure) -> Exit {
    diagnostics::error(cli, &f.message, f.help.as_deref());
    f.exit
}

/// `shipit login <platform>`.
pub fn run_login(cli: &Cli, args: &LoginArgs) -> Exit {
    let creds = credentials::process();
    if creds.ci() {
        return report(cli, &refuse_ci(args.platform, "login"));
    }
    let token = match read_token(args.platform, args.with_token) {
        Ok(t) => t,
        Err(f) => return report(cli, &f),
    };
    let req = Request {
        account: args.platform,
        token,
        app: args.app.clone(),
        username: args.username.clone(),
        registry: args.registry.clone(),
    };
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return Exit::Failed };
    match rt.block_on(login(creds, req)) {
        Ok(done) => {
            let account = args.platform;
            let out = Output::new(cli);
            if out.json() {
                crate::report::result(serde_json::json!({
                    "platform": account.name(),
                    "store": done.store,
                    "service": credentials::SERVICE,
                    "user": account.name(),
                    "registry_user": done.user,
                    "shadowed_by": done.shadowed_by,
                }));
            } else {
                let user = done.user.as_deref().map(|u| format!(" for user {u:?}")).unwrap_or_default();
                println!(
                    "{}",
                    platforms::scrub(&format!(
                        "logged in to {account}{user}: the token is in the {} (service \"{}\", user \"{account}\")",
                        done.store,
                        credentials::SERVICE
                    ))
                );
            }
            if let Some(var) = done.shadowed_by {
                diagnostics::info(
                    cli,
                    &format!("note: {var} is set in this environment, and it wins over the keyring"),
                );
            }
            Exit::Ok
        }
        Err(f) => report(cli, &f),
    }
}

/// `shipit logout <platform>`.
pub fn run_logout(cli: &Cli, args: &LogoutArgs) -> Exit {
    let account = args.platform;
    match logout(credentials::process(), account) {
        Ok(done) => {
            let out = Output::new(cli);
            if out.json() {
                crate::report::result(serde_json::json!({
                    "platform": account.name(),
                    "store": done.store,
                    "removed": done.removed,
                    "still_set": done.still_set,
                }));
            } else if done.removed {
                println!("logged out of {account}: its token was removed from the {}", done.store);
            } else {
                println!("nothing stored for {account} in the {}: nothing to remove", done.store);
            }
            if let Some(var) = done.still_set {
                diagnostics::info(cli, &format!("note: {var} is still set in this environment"));
            }
            Exit::Ok
        }
        Err(f) => report(cli, &f),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::sync::atomic::Ordering;

    use shipit_testkit::fly::FlyFake;
    use shipit_testkit::railway::RailwayFake;
    use shipit_testkit::registry::RegistryFake;
    use shipit_testkit::render::RenderFake;

    use super::*;
    use crate::credentials::tests::{mock, stored, vars, with_store, with_tripwire};

    fn req(account: Account, token: &str) -> Request {
        Request { account, token: SecretString::from(token.to_string()), app: None, username: None, registry: None }
    }

    #[tokio::test]
    async fn login_stores_a_token_fly_accepts_and_logout_removes_it() {
        let fly = FlyFake::start().await;
        let store = mock();
        let creds = with_store(&[("SHIPIT_FLY_API_URL", fly.uri().as_str())], &store);

        let done = login(&creds, req(Account::Fly, FlyFake::TOKEN)).await.unwrap();
        assert_eq!((done.store, done.shadowed_by), ("mock keyring", None));
        assert_eq!(stored(&store, Account::Fly).as_deref(), Some(FlyFake::TOKEN));
        let probe = keyring_core::Entry::new_in_store(&store, "shipit", "probe").unwrap().get_password();
        assert!(matches!(probe, Err(keyring_core::Error::NoEntry)), "the store's check leaves nothing: {probe:?}");
        // One cheap read-only call, with the token.
        let calls: Vec<_> =
            fly.requests().into_iter().map(|r| (r.method, r.path, r.query, r.authorization_ok)).collect();
        assert_eq!(calls, [("GET".to_string(), "/v1/apps".to_string(), "org_slug=personal".to_string(), true)]);

        // Logging in again replaces the token.
        fly.accept_token("fm2_second-token");
        let piped = token_from_input(b"fm2_second-token\r\n".to_vec()).unwrap();
        login(&creds, Request { token: piped, ..req(Account::Fly, "") }).await.unwrap();
        assert_eq!(stored(&store, Account::Fly).as_deref(), Some("fm2_second-token"));

        let out = logout(&creds, Account::Fly).unwrap();
        assert!(out.removed && out.still_set.is_none(), "{out:?}");
        assert_eq!(stored(&store, Account::Fly), None);
        // Nothing stored is not an error.
        let again = logout(&creds, Account::Fly).unwrap();
        assert_eq!((again.store, again.removed), ("mock keyring", false));
    }

    #[tokio::test]
    async fn a_refused_token_is_not_stored_nor_is_one_that_could_not_be_checked() {
        let fly = FlyFake::start().await;
        let store = mock();
        let creds = with_store(&[("SHIPIT_FLY_API_URL", fly.uri().as_str())], &store);
        let f = login(&creds, req(Account::Fly, "fm2_refused-token")).await.unwrap_err();
        assert_eq!(f.exit, Exit::Auth, "{f:?}");
        assert!(f.message.starts_with("the token was not stored: Fly refused the API token (401)"), "{f:?}");
        assert!(!f.message.contains("fm2_refused-token"), "{f:?}");
        assert!(f.help.as_deref().is_some_and(|h| h.contains("--app")), "{f:?}");
        assert_eq!(stored(&store, Account::Fly), None);

        // Nothing answers: nothing is stored.
        let creds = with_store(&[("SHIPIT_FLY_API_URL", "http://127.0.0.1:9/v1")], &store);
        let f = login(&creds, req(Account::Fly, FlyFake::TOKEN)).await.unwrap_err();
        assert_eq!(f.exit, Exit::Failed, "{f:?}");
        assert!(f.message.starts_with("the token was not stored"), "{f:?}");
        assert_eq!(stored(&store, Account::Fly), None);
    }

    #[tokio::test]
    async fn an_app_scoped_fly_token_is_checked_against_its_app() {
        let fly = FlyFake::start().await;
        fly.seed_app("forgestack-api-staging", "acme");
        let store = mock();
        let creds = with_store(&[("SHIPIT_FLY_API_URL", fly.uri().as_str())], &store);
        let mut r = req(Account::Fly, FlyFake::TOKEN);
        r.app = Some("forgestack-api-staging".into());
        login(&creds, r).await.unwrap();
        let paths: Vec<_> = fly.requests().into_iter().map(|r| r.path).collect();
        assert_eq!(paths, ["/v1/apps/forgestack-api-staging"]);
        assert!(stored(&store, Account::Fly).is_some());

        let store = mock();
        let creds = with_store(&[("SHIPIT_FLY_API_URL", fly.uri().as_str())], &store);
        let mut r = req(Account::Fly, FlyFake::TOKEN);
        r.app = Some("no-such-app".into());
        assert_eq!(login(&creds, r).await.unwrap_err().exit, Exit::BadInput);
        let mut r = req(Account::Fly, FlyFake::TOKEN);
        r.app = Some("../machines".into());
        assert_eq!(login(&creds, r).await.unwrap_err().exit, Exit::BadInput);
        assert_eq!(stored(&store, Account::Fly), None);
    }

    #[tokio::test]
    async fn railway_render_and_ghcr_tokens_are_checked_before_they_are_stored() {
        // Railway: one `Projects` query with the token as an account token.
        let railway = RailwayFake::start().await;
        let store = mock();
        let creds = with_store(&[("SHIPIT_RAILWAY_API_URL", railway.endpoint().as_str())], &store);
        let f = login(&creds, req(Account::Railway, "rw_refused")).await.unwrap_err();
        assert_eq!(f.exit, Exit::Auth, "{f:?}");
        assert!(f.help.as_deref().is_some_and(|h| h.contains("RAILWAY_TOKEN")), "{f:?}");
        assert_eq!(stored(&store, Account::Railway), None);
        login(&creds, req(Account::Railway, shipit_testkit::railway::API_TOKEN)).await.unwrap();
        assert_eq!(stored(&store, Account::Railway).as_deref(), Some(shipit_testkit::railway::API_TOKEN));
        assert_eq!(railway.operations(), ["Projects", "Projects"]);

        // Render: GET /owners?limit=1.
        let render = RenderFake::start().await;
        let creds = with_store(&[("SHIPIT_RENDER_API_URL", render.uri().as_str())], &store);
        let f = login(&creds, req(Account::Render, "rnd_refused")).await.unwrap_err();
        assert_eq!(f.exit, Exit::Auth, "{f:?}");
        assert_eq!(stored(&store, Account::Render), None);
        login(&creds, req(Account::Render, RenderFake::API_KEY)).await.unwrap();
        assert_eq!(stored(&store, Account::Render).as_deref(), Some(RenderFake::API_KEY));
        assert_eq!(render.request_count(), 2);

        // GHCR: the token exchange, as the registry client does it; the user is kept with it.
        let registry = RegistryFake::start().await;
        registry.require_auth("octocat", "ghp_good-token");
        let host = registry.host();
        let list = [("SHIPIT_INSECURE_REGISTRIES", host.as_str()), ("SHIPIT_GHCR_HOSTS", host.as_str())];
        let creds = with_store(&list, &store);
        let ghcr = |token: &str, user: &str| Request {
            username: Some(user.to_string()),
            registry: Some(host.clone()),
            ..req(Account::Ghcr, token)
        };
        let f = login(&creds, ghcr("ghp_bad-token", "octocat")).await.unwrap_err();
        assert_eq!(f.exit, Exit::Auth, "{f:?}");
        assert!(!f.message.contains("ghp_bad-token"), "{f:?}");
        assert_eq!(stored(&store, Account::Ghcr), None);
        let done = login(&creds, ghcr("ghp_good-token", "octocat")).await.unwrap();
        assert_eq!(done.user.as_deref(), Some("octocat"));
        let kept: serde_json::Value = serde_json::from_str(&stored(&store, Account::Ghcr).unwrap()).unwrap();
        assert_eq!(kept, serde_json::json!({"username": "octocat", "token": "ghp_good-token"}));
        // A registry the GHCR credentials are never sent to is refused before anything is sent.
        let mut r = ghcr("ghp_good-token", "octocat");
        r.registry = Some("registry.example.com".into());
        assert_eq!(login(&creds, r).await.unwrap_err().exit, Exit::BadInput);
    }

    #[tokio::test]
    async fn under_ci_login_and_logout_refuse_without_touching_the_keyring() {
        let fly = FlyFake::start().await;
        let (creds, wire) = with_tripwire(&[("CI", "true"), ("SHIPIT_FLY_API_URL", fly.uri().as_str())]);
        let f = login(&creds, req(Account::Fly, FlyFake::TOKEN)).await.unwrap_err();
        assert_eq!(f.exit, Exit::BadInput);
        assert!(f.message.contains("under CI=true shipit never uses the OS keyring"), "{f:?}");
        assert!(f.help.as_deref().is_some_and(|h| h.contains("FLY_API_TOKEN")), "{f:?}");
        assert_eq!(logout(&creds, Account::Fly).unwrap_err().exit, Exit::BadInput);
        assert_eq!(wire.touched.load(Ordering::SeqCst), 0);
        assert!(fly.requests().is_empty(), "nothing is sent either");
    }

    #[tokio::test]
    async fn bad_input_and_a_missing_keyring_store_nothing_and_send_nothing() {
        let fly = FlyFake::start().await;
        let (creds, wire) = with_tripwire(&[("SHIPIT_FLY_API_URL", fly.uri().as_str())]);
        assert_eq!(login(&creds, req(Account::Fly, "")).await.unwrap_err().exit, Exit::BadInput);
        let blank = token_from_input(b" \n".to_vec()).unwrap();
        let f = login(&creds, Request { token: blank, ..req(Account::Fly, "") }).await.unwrap_err();
        assert_eq!((f.exit, f.message.as_str()), (Exit::BadInput, "the token is empty: nothing was stored"));
        assert_eq!(token_from_input(vec![0xff, 0xfe]).unwrap_err().exit, Exit::BadInput);
        assert_eq!(token_from_input(vec![b'a'; MAX_TOKEN_BYTES + 1]).unwrap_err().exit, Exit::BadInput);
        assert_eq!(login(&creds, req(Account::Fly, "fm2_a\nfm2_b")).await.unwrap_err().exit, Exit::BadInput);
        let mut r = req(Account::Render, "rnd_x");
        r.username = Some("octocat".into());
        assert_eq!(login(&creds, r).await.unwrap_err().exit, Exit::BadInput);
        assert_eq!(wire.touched.load(Ordering::SeqCst), 0);

        let creds = Credentials::new(vars(&[("SHIPIT_FLY_API_URL", fly.uri().as_str())]), || {
            Keyring::Unavailable("no store in this test".into())
        });
        let f = login(&creds, req(Account::Fly, FlyFake::TOKEN)).await.unwrap_err();
        assert_eq!(f.exit, Exit::Failed);
        assert!(f.message.contains("no OS keyring to keep the token in: no store in this test"), "{f:?}");
        assert!(fly.requests().is_empty(), "the token is not checked when it cannot be kept");
        assert_eq!(logout(&creds, Account::Fly).unwrap_err().exit, Exit::Failed);
    }

    #[tokio::test]
    async fn a_store_that_cannot_keep_a_token_is_found_out_before_the_token_is_sent() {
        let fly = FlyFake::start().await;
        let (creds, wire) = with_tripwire(&[("SHIPIT_FLY_API_URL", fly.uri().as_str())]);
        let f = login(&creds, req(Account::Fly, FlyFake::TOKEN)).await.unwrap_err();
        assert_eq!(f.exit, Exit::Failed);
        assert!(f.message.starts_with("the OS keyring cannot keep a token here: the tripwire"), "{f:?}");
        assert!(f.help.as_deref().is_some_and(|h| h.contains("FLY_API_TOKEN")), "{f:?}");
        assert!(fly.requests().is_empty(), "the token was not sent");
        assert!(wire.touched.load(Ordering::SeqCst) > 0);
    }

    #[tokio::test]
    async fn a_variable_that_wins_over_the_stored_token_is_named() {
        let fly = FlyFake::start().await;
        let store = mock();
        let list = [("SHIPIT_FLY_API_URL", fly.uri()), ("FLY_ACCESS_TOKEN", "fm2_env".to_string())];
        let list: Vec<(&str, &str)> = list.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let creds = with_store(&list, &store);
        let done = login(&creds, req(Account::Fly, FlyFake::TOKEN)).await.unwrap();
        assert_eq!(done.shadowed_by, Some("FLY_ACCESS_TOKEN"));
        assert_eq!(logout(&creds, Account::Fly).unwrap().still_set, Some("FLY_ACCESS_TOKEN"));
    }
}
