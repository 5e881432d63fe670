//! The commands that talk to a platform: plan, deploy, rollback, releases, status, secrets sync.

use std::sync::Arc;

use secrecy::SecretString;
use shipit_core::engine::{self, DeployOptions, OnFailure, RollbackTo};
use shipit_core::{App, Error, ErrorKind, Platform, PlatformKind, Strategy, Target};
use tokio_util::sync::CancellationToken;

use crate::cli::{
    Cli, DeployArgs, OnFailureArg, PlanArgs, PromoteArgs, ReleasesArgs, RollbackArgs, SecretsSyncArgs, StatusArgs,
    Where,
};
use crate::diagnostics;
use crate::exit::Exit;
use crate::output::Output;
use crate::platforms;

/// `println!` for platform data on stdout, through the process's scrubber: what a platform
/// answers (names, releases, plan values) can quote a token or a secret back.
macro_rules! show {
    ($($arg:tt)*) => {
        println!("{}", crate::platforms::scrub(&format!($($arg)*)))
    };
}

/// The manifest, the environment and the platform a command works on.
struct Context {
    app: App,
    env: String,
    kind: PlatformKind,
}

impl Context {
    fn target(&self) -> Result<Target<'_>, Exit> {
        let env = self.app.environments.get(&self.env).ok_or(Exit::BadInput)?;
        Ok(Target { app: &self.app, env })
    }
}

fn context(cli: &Cli, place: &Where) -> Result<Context, Exit> {
    let app = super::load_manifest(cli)?;
    let env = super::render::pick_env(cli, &app, Some(&place.env))?;
    let explicit = place.to.as_deref().and_then(|t| t.parse::<PlatformKind>().ok());
    let Some(kind) = app.resolve_platform(explicit, Some(&env)) else {
        diagnostics::error(
            cli,
            &format!(
                "which platform? environment `{env}` has no `target` and the manifest does not have exactly one [targets.*]"
            ),
            Some("pass --to fly|railway|render, or set `target` in [environments.ENV]"),
        );
        return Err(Exit::BadInput);
    };
    Ok(Context { app, env, kind })
}

/// What a command that talks to one platform needs: the manifest and environment, the
/// platform client, the output, and an async runtime. Nothing is sent yet.
struct Session {
    ctx: Context,
    platform: Box<dyn shipit_core::Platform>,
    out: Arc<Output>,
    rt: tokio::runtime::Runtime,
}

fn session(cli: &Cli, place: &Where) -> Result<Session, Exit> {
    let ctx = context(cli, place)?;
    let platform = platforms::platform(ctx.kind).map_err(|e| fail(cli, &e))?;
    let rt = runtime()?;
    Ok(Session { ctx, platform, out: Output::new(cli), rt })
}

impl From<OnFailureArg> for OnFailure {
    fn from(a: OnFailureArg) -> Self {
        match a {
            OnFailureArg::Rollback => OnFailure::Rollback,
            OnFailureArg::Leave => OnFailure::Leave,
        }
    }
}

/// Prints the verdict of a deploy, promote or rollback and turns it into the exit code.
fn verdict(cli: &Cli, out: &Output, result: Result<engine::Summary, Error>) -> Exit {
    match result {
        Ok(summary) => {
            out.summary(&summary);
            Exit::for_summary(&summary)
        }
        Err(e) => fail(cli, &e),
    }
}

fn fail(cli: &Cli, e: &Error) -> Exit {
    // Scrubbed where it was made; once more here, the last line of defence.
    diagnostics::error(cli, &platforms::scrub(&e.to_string()), hint(e.kind));
    Exit::for_error(e.kind)
}

/// The services `names` selects (all when it is empty). An unknown name is bad input, told with
/// the closest service name when one is close to it.
fn select<'a>(cli: &Cli, target: Target<'a>, names: &[String]) -> Result<Vec<&'a shipit_core::Service>, Exit> {
    let services = &target.env.services;
    if let Some(name) = names.iter().find(|n| !services.contains_key(n.as_str())) {
        let known = services.keys().map(String::as_str);
        let hint = crate::suggest::did_you_mean(name, known.clone());
        let known = known.collect::<Vec<_>>().join(", ");
        diagnostics::error(cli, &format!("--service {name}: no such service (services: {known}){hint}"), None);
        return Err(Exit::BadInput);
    }
    engine::select(target, names).map_err(|e| fail(cli, &e))
}

fn hint(kind: ErrorKind) -> Option<&'static str> {
    match kind {
        ErrorKind::Conflict => Some("another deploy is running; wait for it, or pass --lock-wait 5m"),
        _ => None,
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Exit> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| {
        eprintln!("error: cannot start the async runtime: {e}");
        Exit::Failed
    })
}

/// Ctrl-C and SIGTERM (a cancelled CI job): the first asks the rollout to stop between steps
/// (`soft`); a second one of either kind quits at once (`hard`).
struct Signals {
    soft: CancellationToken,
    hard: CancellationToken,
}

/// Waits for one Ctrl-C or SIGTERM.
async fn a_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn on_signals(out: Arc<Output>) -> Signals {
    let signals = Signals { soft: CancellationToken::new(), hard: CancellationToken::new() };
    let (soft, hard) = (signals.soft.clone(), signals.hard.clone());
    tokio::spawn(async move {
        a_signal().await;
        out.say("stopping: finishing the current step, releasing locks… (again to quit at once)");
        soft.cancel();
        a_signal().await;
        out.say("quitting at once: releasing the locks still held, then reading what runs");
        hard.cancel();
    });
    signals
}

/// How long a quit-at-once waits for lock releases, and for each status read after them.
const QUIT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs a deploy, promote or rollback; a second signal abandons it, releases what it holds
/// (within [`QUIT_DEADLINE`]) and reports what runs (exit 130).
async fn stoppable(
    cli: &Cli,
    out: &Output,
    signals: &Signals,
    stopped: (&dyn shipit_core::Platform, Target<'_>, &str),
    names: &[String],
    run: impl std::future::Future<Output = Result<engine::Summary, Error>>,
) -> Exit {
    tokio::select! {
        r = run => return verdict(cli, out, r),
        () = signals.hard.cancelled() => {}
    }
    // The rollout future is dropped: its locks are being released in the background.
    shipit_core::shutdown::drain(QUIT_DEADLINE).await;
    let (platform, target, operation) = stopped;
    let services = engine::select(target, names).unwrap_or_default();
    let report = engine::interrupted(platform, target, &services, operation);
    match tokio::time::timeout(QUIT_DEADLINE, report).await {
        Ok(summary) => out.summary(&summary),
        Err(_) => out.say("could not read what runs in time: see `shipit status`"),
    }
    Exit::Cancelled
}

fn git_sha(explicit: Option<&str>) -> Option<String> {
    explicit.map(str::to_string).or_else(|| std::env::var("GITHUB_SHA").ok().filter(|s| !s.is_empty()))
}

/// Offers `platform` the values of `target`'s secrets that the process has (Render puts them
/// in the request that creates a service); each joins the scrubber first.
fn offer_secrets(platform: &dyn Platform, target: Target<'_>) {
    let names: std::collections::BTreeSet<String> =
        target.env.services.values().flat_map(|s| platform.required_secrets(s)).collect();
    let values = names
        .into_iter()
        .filter_map(|name| {
            let value = std::env::var(&name).ok().filter(|v| !v.is_empty())?;
            platforms::keep_secret(&value);
            Some((name, SecretString::from(value)))
        })
        .collect();
    platform.offer_secrets(values);
}

/// `shipit deploy`.
pub fn deploy(cli: &Cli, args: &DeployArgs) -> Exit {
    let Session { ctx, platform, out, rt } = match session(cli, &args.place) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let Ok(target) = ctx.target() else { return Exit::BadInput };
    if !shipit_core::image::is_valid_tag(&args.tag) {
        diagnostics::error(
            cli,
            &format!("--tag {:?} is not a valid image tag (letters, digits, '_', '.', '-'; at most 128)", args.tag),
            None,
        );
        return Exit::BadInput;
    }
    let strategy = match args.strategy.as_deref().map(str::parse::<Strategy>).transpose() {
        Ok(s) => s,
        Err(e) => {
            diagnostics::error(cli, &format!("--strategy: {e}"), None);
            return Exit::BadInput;
        }
    };
    let services = match select(cli, target, &args.services) {
        Ok(s) => s,
        Err(e) => return e,
    };
    if args.dry_run {
        return platforms::dry_run(cli, &out, platform.as_ref(), target, &services, &args.tag, strategy);
    }
    let resolver = match platforms::resolver() {
        Ok(r) => r,
        Err(e) => return fail(cli, &e),
    };
    rt.block_on(async {
        let signals = on_signals(out.clone());
        let cancel = signals.soft.clone();
        let mut opts = DeployOptions::default();
        opts.services = args.services.clone();
        opts.strategy = strategy;
        opts.wait_timeout = args.wait_timeout.get();
        opts.on_failure = args.on_failure.into();
        opts.atomic = args.atomic;
        opts.create = !args.no_create;
        opts.lock_wait = args.lock_wait.get();
        opts.git_sha = git_sha(args.sha.as_deref());
        opts.cancel = cancel;
        opts.force = args.force;
        let events = out.events();
        offer_secrets(platform.as_ref(), target);
        let run = engine::deploy(platform.as_ref(), &resolver, target, &args.tag, &opts, &events);
        stoppable(cli, &out, &signals, (platform.as_ref(), target, "deploy"), &args.services, run).await
    })
}

/// `shipit promote FROM TO`.
pub fn promote(cli: &Cli, args: &PromoteArgs) -> Exit {
    let app = match super::load_manifest(cli) {
        Ok(app) => app,
        Err(e) => return e,
    };
    let (from_env, to_env) = match (
        super::render::pick_env(cli, &app, Some(&args.from)),
        super::render::pick_env(cli, &app, Some(&args.to)),
    ) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    if from_env == to_env {
        diagnostics::error(
            cli,
            &format!("cannot promote {from_env} to itself"),
            Some("e.g. `shipit promote staging production`"),
        );
        return Exit::BadInput;
    }
    let kinds = [&from_env, &to_env].map(|e| app.resolve_platform(None, Some(e)));
    let [Some(from_kind), Some(to_kind)] = kinds else {
        diagnostics::error(
            cli,
            "promote needs a `target` on both environments",
            Some("set `target` in [environments.ENV]"),
        );
        return Exit::BadInput;
    };
    let (Some(from), Some(to)) = (app.environments.get(&from_env), app.environments.get(&to_env)) else {
        return Exit::BadInput;
    };
    let (from, to) = (Target { app: &app, env: from }, Target { app: &app, env: to });
    if let Err(e) = select(cli, to, &args.services) {
        return e;
    }
    let (from_platform, to_platform) = match (platforms::platform(from_kind), platforms::platform(to_kind)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => return fail(cli, &e),
    };
    let registry = match platforms::resolver() {
        Ok(r) => r,
        Err(e) => return fail(cli, &e),
    };
    let out = Output::new(cli);
    let Ok(rt) = runtime() else { return Exit::Failed };
    rt.block_on(async {
        let signals = on_signals(out.clone());
        let cancel = signals.soft.clone();
        let mut opts = DeployOptions::default();
        opts.services = args.services.clone();
        opts.wait_timeout = args.wait_timeout.get();
        opts.on_failure = args.on_failure.into();
        opts.atomic = args.atomic;
        opts.lock_wait = args.lock_wait.get();
        opts.force = args.force;
        opts.cancel = cancel;
        let events = out.events();
        offer_secrets(to_platform.as_ref(), to);
        let run = engine::promote(
            engine::Side { platform: from_platform.as_ref(), target: from },
            engine::Side { platform: to_platform.as_ref(), target: to },
            Some(&registry),
            &opts,
            &events,
        );
        stoppable(cli, &out, &signals, (to_platform.as_ref(), to, "promote"), &args.services, run).await
    })
}

/// `shipit rollback`.
pub fn rollback(cli: &Cli, args: &RollbackArgs) -> Exit {
    let Session { ctx, platform, out, rt } = match session(cli, &args.place) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let Ok(target) = ctx.target() else { return Exit::BadInput };
    if let Err(e) = select(cli, target, &args.services) {
        return e;
    }
    let to = match (&args.release, &args.sha) {
        (Some(r), _) => RollbackTo::Release(r.clone()),
        (None, Some(s)) => RollbackTo::Sha(s.clone()),
        (None, None) => RollbackTo::Previous,
    };
    rt.block_on(async {
        let signals = on_signals(out.clone());
        let cancel = signals.soft.clone();
        let mut opts = DeployOptions::default();
        opts.services = args.services.clone();
        opts.wait_timeout = args.wait_timeout.get();
        opts.lock_wait = args.lock_wait.get();
        opts.cancel = cancel;
        let registry = platforms::resolver().ok();
        let registry_ref = registry.as_ref().map(|r| r as &dyn shipit_core::ImageRegistry);
        let events = out.events();
        let run = engine::rollback(platform.as_ref(), registry_ref, target, &to, &opts, &events);
        stoppable(cli, &out, &signals, (platform.as_ref(), target, "rollback"), &args.services, run).await
    })
}

/// `shipit releases`.
pub fn releases(cli: &Cli, args: &ReleasesArgs) -> Exit {
    let Session { ctx, platform, out, rt } = match session(cli, &args.place) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let Ok(target) = ctx.target() else { return Exit::BadInput };
    let services = match select(cli, target, &args.services) {
        Ok(s) => s,
        Err(e) => return e,
    };
    rt.block_on(async {
        for s in services {
            let releases = match platform.releases(target, s).await {
                Ok(r) => r,
                Err(e) => return fail(cli, &e),
            };
            if out.json() {
                for r in &releases {
                    out.json_line(&serde_json::to_value(r).unwrap_or_default());
                }
                continue;
            }
            show!("{} ({})", s.name, target.platform_name(ctx.kind, &s.name));
            if releases.is_empty() {
                show!("  no releases");
            }
            for r in &releases {
                show!(
                    "  {:32}  {:11}  {:20}  sha {:8}  {}",
                    r.id,
                    format!("{:?}", r.status).to_lowercase(),
                    r.digest.as_deref().map(|d| d.chars().take(19).collect::<String>()).unwrap_or_else(|| "-".into()),
                    r.git_sha.as_deref().map(|g| g.chars().take(7).collect::<String>()).unwrap_or_else(|| "-".into()),
                    r.created_at.as_deref().unwrap_or("-"),
                );
            }
        }
        Exit::Ok
    })
}

/// `shipit status`.
pub fn status(cli: &Cli, args: &StatusArgs) -> Exit {
    let Session { ctx, platform, out, rt } = match session(cli, &args.place) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let Ok(target) = ctx.target() else { return Exit::BadInput };
    rt.block_on(async {
        let mut all_healthy = true;
        for s in target.env.services.values() {
            let st = match platform.status(target, s).await {
                Ok(st) => st,
                Err(e) => return fail(cli, &e),
            };
            // Machines stopped by autostop are idle, not broken.
            let idle = |i: &shipit_core::Instance| {
                s.scale.auto_stop
                    && matches!(i.state, shipit_core::InstanceState::Stopped | shipit_core::InstanceState::Suspended)
            };
            let healthy = st.instances.iter().filter(|i| i.healthy).count();
            let idle_count = st.instances.iter().filter(|i| !i.healthy && idle(i)).count();
            all_healthy &= st.exists && healthy > 0 && healthy + idle_count == st.instances.len();
            if out.json() {
                out.json_line(&serde_json::to_value(&st).unwrap_or_default());
                continue;
            }
            if !st.exists {
                show!("{:10} {:32} not deployed", s.name, st.platform_name);
                continue;
            }
            if st.instances.is_empty() {
                show!("{:10} {:32} exists, no {}", s.name, st.platform_name, platform.kind().instances_noun());
                continue;
            }
            let idle_text = if idle_count > 0 { format!(", {idle_count} stopped by autostop") } else { String::new() };
            show!(
                "{:10} {:32} {}  release {}  {}/{} healthy{idle_text}",
                s.name,
                st.platform_name,
                st.digest.as_deref().unwrap_or("mixed digests"),
                st.release.as_deref().unwrap_or("-"),
                healthy,
                st.instances.len()
            );
        }
        if all_healthy { Exit::Ok } else { Exit::Failed }
    })
}

/// `shipit plan`.
pub fn plan(cli: &Cli, args: &PlanArgs) -> Exit {
    let Session { ctx, platform, out, rt } = match session(cli, &args.place) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let Ok(target) = ctx.target() else { return Exit::BadInput };
    if let Err(e) = select(cli, target, &args.services) {
        return e;
    }
    let resolver = if args.tag.is_some() {
        match platforms::resolver() {
            Ok(r) => Some(r),
            Err(e) => return fail(cli, &e),
        }
    } else {
        None
    };
    rt.block_on(async {
        let resolver_ref = resolver.as_ref().map(|r| r as &dyn shipit_core::Resolver);
        let plans =
            match engine::plan(platform.as_ref(), resolver_ref, target, &args.services, args.tag.as_deref()).await {
                Ok(p) => p,
                Err(e) => return fail(cli, &e),
            };
        let mut changes = false;
        for p in &plans {
            changes |= p.has_changes();
            if out.json() {
                out.json_line(&serde_json::to_value(p).unwrap_or_default());
                continue;
            }
            if p.create {
                show!("+ {} ({}): will be created", p.service, p.platform_name);
            } else if p.changes.is_empty() {
                show!("  {} ({}): no changes", p.service, p.platform_name);
            } else {
                show!("~ {} ({}):", p.service, p.platform_name);
            }
            for c in &p.changes {
                show!(
                    "    {}: {} -> {}",
                    c.field,
                    c.live.as_deref().unwrap_or("(none)"),
                    c.desired.as_deref().unwrap_or("(none)")
                );
            }
        }
        if changes { Exit::Changes } else { Exit::Ok }
    })
}

/// `shipit secrets sync`.
pub fn secrets_sync(cli: &Cli, args: &SecretsSyncArgs) -> Exit {
    let Session { ctx, platform, out, rt } = match session(cli, &args.place) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let Ok(target) = ctx.target() else { return Exit::BadInput };
    if let Err(e) = select(cli, target, &args.services) {
        return e;
    }
    rt.block_on(async {
        // Each value is known to the process's scrubber before anything is sent.
        let lookup = |name: &str| {
            let value = std::env::var(name).ok()?;
            platforms::keep_secret(&value);
            Some(SecretString::from(value))
        };
        match engine::sync_secrets(platform.as_ref(), target, &args.services, lookup).await {
            Ok(done) => {
                for d in &done {
                    if out.json() {
                        out.json_line(&serde_json::to_value(d).unwrap_or_default());
                    } else {
                        if d.at_creation {
                            show!(
                                "{}: does not exist yet; `shipit deploy` sets {} when it creates it (from its environment)",
                                d.service,
                                d.names.join(", ")
                            );
                            continue;
                        }
                        let version = d.version.map(|v| format!(" (secrets version {v})")).unwrap_or_default();
                        // Railway and Render apply variables at a service's next deploy.
                        let when = match platform.kind() {
                            shipit_core::PlatformKind::Fly => "",
                            _ => "; they apply at the next deploy",
                        };
                        show!("{}: set {}{version}{when}", d.service, d.names.join(", "));
                    }
                }
                if done.is_empty() {
                    out.say("no service declares secrets; nothing to do");
                }
                Exit::Ok
            }
            Err(e) => fail(cli, &e),
        }
    })
}
