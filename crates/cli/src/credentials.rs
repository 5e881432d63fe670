//! Where tokens come from: the environment first, then the OS keyring (after `shipit login`),
//! else nothing, and the command's error names the variable and `shipit login <platform>`.
//!
//! # Order
//!
//! For each account ([`Account`]) the variables are read in order (`FLY_API_TOKEN`, then
//! `FLY_ACCESS_TOKEN`; `RAILWAY_TOKEN`, then `RAILWAY_API_TOKEN`; `RENDER_API_KEY`;
//! `GHCR_TOKEN`, then `GITHUB_TOKEN`); an empty value counts as unset. Only when none is set is
//! the keyring asked, for the entry of service `shipit` and user `fly`, `railway`, `render` or
//! `ghcr`. Under `CI=true` (any value but empty, `0`, `false` or `no`) the keyring is never
//! opened: a CI job's credentials come from its secrets, and a runner's keyring is nobody's.
//!
//! A token read from the keyring joins the process's scrubber as it is read
//! ([`crate::platforms::keep_secret`]), so it is kept out of every message like a token from a
//! variable.
//!
//! # Stores
//!
//! [`open_native`] opens the platform's store on first use (never when a variable is set): the
//! Keychain on macOS, the Credential Manager on Windows, the Secret Service (GNOME Keyring,
//! KWallet) elsewhere on Unix, and on Linux, when no Secret Service answers (a headless server,
//! a container), the kernel's keyutils (the user's persistent keyring, which lasts until a
//! reboot or its expiry, a few days unused). Tests pass their own store instead
//! ([`Credentials::new`] with `keyring_core::mock::Store`); nothing here reads the process
//! environment or a real keyring unless asked through [`process`].

use std::sync::{Arc, OnceLock};

use clap::ValueEnum;
use keyring_core::{CredentialStore, Entry};
use secrecy::{ExposeSecret, SecretString};
use shipit_core::PlatformKind;

/// The keyring service every entry of shipit's is stored under.
pub const SERVICE: &str = "shipit";
/// The user of the entry [`Store::check_writable`] writes and removes.
const PROBE_USER: &str = "probe";

/// What `shipit login` stores a token for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Account {
    /// Fly.io (`FLY_API_TOKEN`).
    Fly,
    /// Railway: an account or workspace token (`RAILWAY_API_TOKEN`).
    Railway,
    /// Render (`RENDER_API_KEY`).
    Render,
    /// GitHub Container Registry (`GHCR_TOKEN`).
    Ghcr,
}

impl Account {
    /// Its name: the keyring user and the `shipit login` argument.
    pub fn name(self) -> &'static str {
        match self {
            Self::Fly => "fly",
            Self::Railway => "railway",
            Self::Render => "render",
            Self::Ghcr => "ghcr",
        }
    }

    /// The variables that hold its token, in the order they are read.
    pub fn vars(self) -> &'static [&'static str] {
        match self {
            Self::Fly => &["FLY_API_TOKEN", "FLY_ACCESS_TOKEN"],
            Self::Railway => &["RAILWAY_TOKEN", "RAILWAY_API_TOKEN"],
            Self::Render => &["RENDER_API_KEY"],
            Self::Ghcr => &["GHCR_TOKEN", "GITHUB_TOKEN"],
        }
    }

    /// The variable a token stored by `shipit login` stands in for.
    pub fn login_var(self) -> &'static str {
        match self {
            Self::Railway => "RAILWAY_API_TOKEN",
            other => other.vars()[0],
        }
    }

    /// The account of a platform.
    pub fn of(kind: PlatformKind) -> Self {
        match kind {
            PlatformKind::Fly => Self::Fly,
            PlatformKind::Railway => Self::Railway,
            PlatformKind::Render => Self::Render,
        }
    }
}

impl std::fmt::Display for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// This variable.
    Env(&'static str),
    /// The keyring, in the store of this name.
    Keyring(&'static str),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Env(var) => f.write_str(var),
            Self::Keyring(store) => write!(f, "the {store}"),
        }
    }
}

/// A token and where it came from. `Debug` never shows it.
pub struct Token {
    /// The token.
    pub secret: SecretString,
    /// Where it came from.
    pub source: Source,
    /// GHCR: the user stored with it by `shipit login ghcr --username` (a variable's token
    /// takes its user from `GITHUB_ACTOR`).
    pub user: Option<String>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token").field("source", &self.source).field("user", &self.user).finish_non_exhaustive()
    }
}

/// An open credential store.
pub struct Store {
    inner: Arc<CredentialStore>,
    name: &'static str,
    /// Why this one and not the first choice, when it is a fallback.
    note: Option<String>,
}

impl Store {
    /// `store`, called `name` in messages ("Secret Service", "kernel keyutils"…).
    pub fn new(store: Arc<CredentialStore>, name: &'static str) -> Self {
        Self { inner: store, name, note: None }
    }

    /// Its name in messages.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Why it was chosen, when it is a fallback.
    pub fn note(&self) -> Option<&str> {
        self.note.as_deref()
    }

    fn entry(&self, account: Account) -> Result<Entry, String> {
        Entry::new_in_store(&self.inner, SERVICE, account.name()).map_err(|e| self.problem(&e))
    }

    /// The secret stored for `account`, if any.
    pub fn read(&self, account: Account) -> Result<Option<String>, String> {
        match self.entry(account)?.get_password() {
            Ok(secret) => Ok(Some(secret)),
            Err(keyring_core::Error::NoEntry) => Ok(None),
            Err(e) => Err(self.problem(&e)),
        }
    }

    /// Stores `secret` for `account`, replacing what was there. A write that failed halfway
    /// (keyutils can add the key, then be refused linking it to the persistent keyring) is
    /// removed again, so a failed login leaves nothing behind.
    pub fn write(&self, account: Account, secret: &str) -> Result<(), String> {
        let entry = self.entry(account)?;
        entry.set_password(secret).map_err(|e| {
            let _ = entry.delete_credential();
            self.problem(&e)
        })
    }

    /// Whether the store can keep a token at all, tried with a harmless value (entry
    /// `shipit`/`probe`, written and removed): so that a token is not sent to be checked, nor
    /// half-written, where it cannot be kept (keyutils in some containers adds a key, then is
    /// refused linking it to the persistent keyring).
    pub fn check_writable(&self) -> Result<(), String> {
        let entry = Entry::new_in_store(&self.inner, SERVICE, PROBE_USER).map_err(|e| self.problem(&e))?;
        let written = entry.set_password("shipit checks that tokens can be kept here");
        let removed = entry.delete_credential();
        match (written, removed) {
            (Ok(()), Ok(()) | Err(keyring_core::Error::NoEntry)) => Ok(()),
            (Err(e), _) | (Ok(()), Err(e)) => Err(self.problem(&e)),
        }
    }

    /// Removes `account`'s entry; `false` when there was none.
    pub fn delete(&self, account: Account) -> Result<bool, String> {
        match self.entry(account)?.delete_credential() {
            Ok(()) => Ok(true),
            Err(keyring_core::Error::NoEntry) => Ok(false),
            Err(e) => Err(self.problem(&e)),
        }
    }

    /// A store error in words, quoting nothing stored (a bad encoding's bytes, a malformed
    /// secret's data, the entries of an ambiguous match are left out).
    fn problem(&self, e: &keyring_core::Error) -> String {
        use keyring_core::Error as E;
        let what = match e {
            E::PlatformFailure(err) => format!("it failed: {err}"),
            E::NoStorageAccess(err) => format!("it cannot be reached: {err}"),
            E::NoEntry => "nothing is stored".to_string(),
            E::BadEncoding(_) => "the stored token is not UTF-8".to_string(),
            E::BadDataFormat(..) | E::BadStoreFormat(_) => "the stored data is malformed".to_string(),
            E::TooLong(name, limit) => format!("the {name} is longer than its limit of {limit}"),
            E::Invalid(name, reason) => format!("the {name} is invalid: {reason}"),
            E::Ambiguous(items) => format!("{} entries match", items.len()),
            E::NoDefaultStore => "no store is set up".to_string(),
            E::NotSupportedByStore(what) => format!("it does not support this: {what}"),
            _ => e.to_string(),
        };
        crate::platforms::scrub(&format!("the {}: {what}", self.name))
    }
}

/// The keyring as a process sees it.
pub enum Keyring {
    /// `CI=true`: never opened.
    Off,
    /// A store to read and write.
    Open(Store),
    /// No store could be opened, and why.
    Unavailable(String),
}

impl Keyring {
    /// For `doctor`: which store is in use.
    pub fn describe(&self) -> String {
        match self {
            Self::Off => "not used (CI=true): tokens come from the environment only".to_string(),
            Self::Open(store) => match store.note() {
                Some(note) => format!("{} ({note})", store.name()),
                None => store.name().to_string(),
            },
            Self::Unavailable(why) => format!("none available: {why}"),
        }
    }
}

/// Whether `value` of `CI` means a CI job: anything but unset, empty, `0`, `false` or `no`.
fn is_ci(value: Option<&str>) -> bool {
    value
        .map(str::trim)
        .is_some_and(|v| !v.is_empty() && !["0", "false", "no"].contains(&v.to_ascii_lowercase().as_str()))
}

type Vars = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;
type Opener = Box<dyn Fn() -> Keyring + Send + Sync>;

/// Credential lookup: variables (injected, so tests need not touch the process's), and a
/// keyring opened on first need.
pub struct Credentials {
    vars: Vars,
    ci: bool,
    open: Opener,
    keyring: OnceLock<Keyring>,
}

impl Credentials {
    /// Variables from `vars`, the keyring from `open` (called at most once, and never under
    /// `CI=true`).
    pub fn new(
        vars: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
        open: impl Fn() -> Keyring + Send + Sync + 'static,
    ) -> Self {
        let ci = is_ci(vars("CI").as_deref());
        Self { vars: Box::new(vars), ci, open: Box::new(open), keyring: OnceLock::new() }
    }

    /// A variable, trimmed; empty counts as unset.
    pub fn var(&self, name: &str) -> Option<String> {
        (self.vars)(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
    }

    /// Whether this is a CI job (`CI=true`): the keyring is then never used.
    pub fn ci(&self) -> bool {
        self.ci
    }

    /// The keyring, opened now if it was not yet; [`Keyring::Off`] under `CI=true`.
    pub fn keyring(&self) -> &Keyring {
        self.keyring.get_or_init(|| if self.ci { Keyring::Off } else { (self.open)() })
    }

    /// The first of `account`'s variables that is set.
    pub fn env_token(&self, account: Account) -> Option<(&'static str, String)> {
        account.vars().iter().find_map(|v| self.var(v).map(|t| (*v, t)))
    }

    /// `account`'s token: from its variables, else (unless `CI=true`) from the keyring; `Ok(None)`
    /// when there is none. `Err` says why the keyring could not be read (it is not an error that
    /// there is no keyring, or nothing in it). A keyring token joins the process's scrubber.
    pub fn token(&self, account: Account) -> Result<Option<Token>, String> {
        if let Some((var, token)) = self.env_token(account) {
            return Ok(Some(Token { secret: SecretString::from(token), source: Source::Env(var), user: None }));
        }
        let Keyring::Open(store) = self.keyring() else { return Ok(None) };
        let Some(stored) = store.read(account)? else { return Ok(None) };
        crate::platforms::keep_secret(&stored);
        let (token, user) = decode(account, &stored);
        if token.is_empty() {
            return Ok(None);
        }
        crate::platforms::keep_secret(&token);
        Ok(Some(Token { secret: SecretString::from(token), source: Source::Keyring(store.name()), user }))
    }
}

/// What is stored for `account`: the token, except for GHCR, where it is
/// `{"username": …, "token": …}` (a bare token is read too).
pub fn encode(account: Account, token: &SecretString, user: Option<&str>) -> String {
    match (account, user) {
        (Account::Ghcr, Some(user)) => {
            serde_json::json!({ "username": user, "token": token.expose_secret() }).to_string()
        }
        _ => token.expose_secret().to_string(),
    }
}

/// The token and user in what [`encode`] stored.
fn decode(account: Account, stored: &str) -> (String, Option<String>) {
    if account == Account::Ghcr
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(stored)
        && let Some(token) = v.get("token").and_then(serde_json::Value::as_str)
    {
        let user = v.get("username").and_then(serde_json::Value::as_str).map(str::to_string).filter(|u| !u.is_empty());
        return (token.trim().to_string(), user);
    }
    (stored.trim().to_string(), None)
}

/// The process's credentials: its environment, and the OS keyring ([`open_native`]).
pub fn process() -> &'static Credentials {
    static CREDENTIALS: OnceLock<Credentials> = OnceLock::new();
    CREDENTIALS.get_or_init(|| Credentials::new(|name| std::env::var(name).ok(), open_native))
}

/// The OS's credential store (see the [module docs](self)).
pub fn open_native() -> Keyring {
    #[cfg(target_os = "macos")]
    {
        match apple_native_keyring_store::keychain::Store::new() {
            Ok(store) => Keyring::Open(Store::new(store, "macOS Keychain")),
            Err(e) => Keyring::Unavailable(format!("the macOS Keychain cannot be opened: {e}")),
        }
    }
    #[cfg(windows)]
    {
        match windows_native_keyring_store::Store::new() {
            Ok(store) => Keyring::Open(Store::new(store, "Windows Credential Manager")),
            Err(e) => Keyring::Unavailable(format!("the Windows Credential Manager cannot be opened: {e}")),
        }
    }
    #[cfg(all(unix, not(any(target_os = "macos", target_os = "ios", target_os = "android"))))]
    {
        let secret_service = match zbus_secret_service_keyring_store::Store::new() {
            Ok(store) => return Keyring::Open(Store::new(store, "Secret Service")),
            Err(e) => crate::platforms::scrub(&e.to_string()),
        };
        #[cfg(target_os = "linux")]
        {
            match linux_keyutils_keyring_store::Store::new() {
                Ok(store) => Keyring::Open(Store {
                    inner: store,
                    name: "kernel keyutils",
                    note: Some(format!(
                        "no Secret Service answered: {secret_service}; keyutils keeps tokens until a reboot"
                    )),
                }),
                Err(e) => Keyring::Unavailable(format!(
                    "no Secret Service answered ({secret_service}) and the kernel keyutils cannot be used: {e}"
                )),
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            Keyring::Unavailable(format!("no Secret Service answered: {secret_service}"))
        }
    }
    #[cfg(not(any(target_os = "macos", windows, all(unix, not(any(target_os = "ios", target_os = "android"))))))]
    {
        Keyring::Unavailable("shipit knows no credential store on this operating system".to_string())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use keyring_core::api::CredentialStoreApi;

    use super::*;

    /// Variables from a list.
    pub fn vars(list: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + Send + Sync + 'static {
        let map: HashMap<String, String> = list.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect();
        move |name| map.get(name).cloned()
    }

    /// A fresh mock store (in memory, this test's own).
    pub fn mock() -> Arc<CredentialStore> {
        keyring_core::mock::Store::new().unwrap()
    }

    /// Credentials over `list` and the keyring `store`.
    pub fn with_store(list: &[(&str, &str)], store: &Arc<CredentialStore>) -> Credentials {
        let store = store.clone();
        Credentials::new(vars(list), move || Keyring::Open(Store::new(store.clone(), "mock keyring")))
    }

    /// What `store` holds for `account`.
    pub fn stored(store: &Arc<CredentialStore>, account: Account) -> Option<String> {
        match Entry::new_in_store(store, SERVICE, account.name()).unwrap().get_password() {
            Ok(s) => Some(s),
            Err(keyring_core::Error::NoEntry) => None,
            Err(e) => panic!("{e}"),
        }
    }

    /// A store every call of which fails, counting them: touching it at all is a test failure.
    #[derive(Debug, Default)]
    pub struct Tripwire {
        pub touched: AtomicUsize,
    }

    impl CredentialStoreApi for Tripwire {
        fn vendor(&self) -> String {
            "tripwire".into()
        }
        fn id(&self) -> String {
            "tripwire".into()
        }
        fn build(&self, _: &str, _: &str, _: Option<&HashMap<&str, &str>>) -> keyring_core::Result<Entry> {
            self.touched.fetch_add(1, Ordering::SeqCst);
            Err(keyring_core::Error::NoStorageAccess("the tripwire store was touched".into()))
        }
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
    }

    /// Credentials over `list` whose keyring is a [`Tripwire`]; the counter also counts
    /// openings of the keyring.
    pub fn with_tripwire(list: &[(&str, &str)]) -> (Credentials, Arc<Tripwire>) {
        let wire = Arc::new(Tripwire::default());
        let store = wire.clone();
        let creds = Credentials::new(vars(list), move || {
            store.touched.fetch_add(1, Ordering::SeqCst);
            Keyring::Open(Store::new(store.clone(), "tripwire"))
        });
        (creds, wire)
    }

    #[test]
    fn the_environment_wins_over_the_keyring() {
        let store = mock();
        Entry::new_in_store(&store, SERVICE, "fly").unwrap().set_password("fm2_from-the-keyring").unwrap();

        let creds = with_store(&[("FLY_API_TOKEN", " fm2_from-the-env\n")], &store);
        let t = creds.token(Account::Fly).unwrap().unwrap();
        assert_eq!((t.secret.expose_secret(), t.source), ("fm2_from-the-env", Source::Env("FLY_API_TOKEN")));

        let creds = with_store(&[("FLY_ACCESS_TOKEN", "fm2_access")], &store);
        let t = creds.token(Account::Fly).unwrap().unwrap();
        assert_eq!((t.secret.expose_secret(), t.source), ("fm2_access", Source::Env("FLY_ACCESS_TOKEN")));

        // An empty variable counts as unset: the keyring's token is used.
        let creds = with_store(&[("FLY_API_TOKEN", "  ")], &store);
        let t = creds.token(Account::Fly).unwrap().unwrap();
        assert_eq!((t.secret.expose_secret(), t.source), ("fm2_from-the-keyring", Source::Keyring("mock keyring")));
        assert_eq!(t.source.to_string(), "the mock keyring");
        assert!(!format!("{t:?}").contains("fm2_"), "{t:?}");
        // ... and joins the process's scrubber.
        assert_eq!(crate::platforms::scrub("got fm2_from-the-keyring"), "got ***");

        // Nothing stored for another account: none.
        assert!(creds.token(Account::Render).unwrap().is_none());
    }

    #[test]
    fn with_a_variable_set_the_keyring_is_not_opened() {
        let (creds, wire) = with_tripwire(&[("RENDER_API_KEY", "rnd_env")]);
        assert_eq!(creds.token(Account::Render).unwrap().unwrap().source, Source::Env("RENDER_API_KEY"));
        assert_eq!(wire.touched.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn under_ci_the_keyring_is_never_touched() {
        for ci in ["true", "TRUE", "1", "yes"] {
            let (creds, wire) = with_tripwire(&[("CI", ci), ("RAILWAY_API_TOKEN", "rw_env")]);
            assert!(creds.ci());
            assert!(creds.token(Account::Fly).unwrap().is_none(), "CI={ci}");
            assert!(creds.token(Account::Ghcr).unwrap().is_none());
            let t = creds.token(Account::Railway).unwrap().unwrap();
            assert_eq!(t.source, Source::Env("RAILWAY_API_TOKEN"));
            assert!(matches!(creds.keyring(), Keyring::Off));
            assert_eq!(creds.keyring().describe(), "not used (CI=true): tokens come from the environment only");
            assert_eq!(wire.touched.load(Ordering::SeqCst), 0, "CI={ci}");
        }
        for not_ci in ["", "false", "0", "no"] {
            let (creds, wire) = with_tripwire(&[("CI", not_ci)]);
            assert!(!creds.ci(), "CI={not_ci:?}");
            // Not CI: the keyring is asked (and this one fails, which is reported).
            let e = creds.token(Account::Fly).unwrap_err();
            assert!(e.contains("the tripwire: it cannot be reached"), "{e}");
            assert!(wire.touched.load(Ordering::SeqCst) > 0);
        }
    }

    /// The CLI's end-to-end tests run the built binary: each must set CI=true, so that no test
    /// ever reads or writes the keyring of whoever runs it.
    #[test]
    fn every_test_that_runs_the_binary_keeps_it_off_the_keyring() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
        let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.push(dir.join("support/mod.rs"));
        let mut checked = 0;
        for path in files.iter().filter(|p| p.extension().is_some_and(|e| e == "rs")) {
            let text = std::fs::read_to_string(path).unwrap();
            let runs = text.matches("cargo_bin(\"shipit\")").count();
            if runs > 0 {
                checked += 1;
                let sets = text.matches(".env(\"CI\", \"true\")").count();
                assert!(sets >= runs, "{} runs the binary {runs} times but sets CI=true {sets} times", path.display());
            }
        }
        assert!(checked >= 5, "the tests were found ({checked} files)");
    }

    #[test]
    fn ghcr_keeps_its_user_with_the_token() {
        let store = mock();
        let token = SecretString::from("ghp_stored".to_string());
        let creds = with_store(&[], &store);
        let Keyring::Open(s) = creds.keyring() else { panic!("the mock is open") };
        s.write(Account::Ghcr, &encode(Account::Ghcr, &token, Some("octocat"))).unwrap();
        let t = creds.token(Account::Ghcr).unwrap().unwrap();
        assert_eq!((t.secret.expose_secret(), t.user.as_deref()), ("ghp_stored", Some("octocat")));
        // A bare token (stored by hand) is read as the token.
        s.write(Account::Ghcr, "ghp_bare").unwrap();
        let t = creds.token(Account::Ghcr).unwrap().unwrap();
        assert_eq!((t.secret.expose_secret(), t.user), ("ghp_bare", None));
        assert_eq!(encode(Account::Fly, &token, Some("ignored")), "ghp_stored");
    }
}
