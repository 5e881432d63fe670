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
use crate::style::Tone;

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
    let app = super::load_checked(cli)?;
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
    crate::report::error(Some(e.kind.as_str()), &platforms::scrub(&e.to_string()), hint(e.kind));
    // Scrubbed where it was made; once more here, the last line of defence.
    diagnostics::error(cli, &platforms::scrub(&e.to_string()), hint(e.kind));
    crate::verbose::causes(cli, e);
    Exit::for_error(e.kind)
}

/// Stops a command before its first request when the platform has no token (exit 5): nothing,
/// not even the registry, is asked first.
fn need_token(cli: &Cli, kind: PlatformKind) -> Result<(), Exit> {
    platforms::require_token(kind).map_err(|e| fail(cli, &e))
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

/// A value of secret `name` in the process environment (what `secrets sync` reads), known to
/// the scrubber before it goes anywhere.
fn env_secret(name: &str) -> Option<SecretString> {
    let value = std::env::var(name).ok().filter(|v| !v.is_empty())?;
    platforms::keep_secret(&value);
    Some(SecretString::from(value))
}

/// `deploy --dry-run` reads nothing from the platform: it names the declared secrets that are
/// not in the environment, which a deploy creating the service would need on the platform.
fn note_secrets_not_in_env(out: &Output, platform: &dyn Platform, services: &[&shipit_core::Service]) {
    let absent: std::collections::BTreeSet<String> = services
        .iter()
        .flat_map(|s| platform.required_secrets(s))
        .filter(|n| std::env::var(n).map_or(true, |v| v.is_empty()))
        .collect();
    if !absent.is_empty() && !out.json() {
        out.say(&format!(
            "note: not in the environment: {}; a deploy that creates a service refuses unless they are on {} already (`shipit secrets sync`) or --allow-missing-secrets is given",
            absent.into_iter().collect::<Vec<_>>().join(", "),
            platform.kind()
        ));
    }
}

/// Before a deploy that creates a service on Fly or Railway (Render puts them in the creating
/// request itself): the secrets it declares must be on the platform or in the environment. Those
/// in the environment are set first, as `secrets sync` would, so the first instance starts
/// with them; any in neither refuse the deploy before anything changes (exit 4), unless
/// `--allow-missing-secrets`.
async fn first_deploy_secrets(
    cli: &Cli,
    out: &Output,
    platform: &dyn Platform,
    target: Target<'_>,
    args: &DeployArgs,
) -> Result<(), Exit> {
    if !matches!(platform.kind(), PlatformKind::Fly | PlatformKind::Railway) || args.no_create {
        return Ok(());
    }
    // A manifest the platform cannot take, or a platform that cannot be read, is the engine's to
    // refuse (with its summary): this check only speaks when it can decide.
    let services = engine::select(target, &args.services).unwrap_or_default();
    if services.iter().any(|s| platform.describe_deploy(target, s, &s.image).is_err()) {
        return Ok(());
    }
    let has = |name: &str| std::env::var(name).is_ok_and(|v| !v.is_empty());
    let firsts = match engine::first_deploy_secrets(platform, target, &args.services, has).await {
        Ok(f) => f,
        // A refused token is said here: after a 401 the clients send nothing more, so the
        // engine could only report that.
        Err(e) if e.kind == ErrorKind::Unauthorized => return Err(fail(cli, &e)),
        Err(_) => return Ok(()),
    };
    let missing: Vec<String> =
        firsts.iter().flat_map(|f| f.missing.iter().map(|n| format!("{} ({})", n, f.service))).collect();
    if !missing.is_empty() {
        if !args.allow_missing_secrets {
            let env = &target.env.name;
            diagnostics::error(
                cli,
                &format!(
                    "this deploy creates a service whose secrets are not set: {} — neither on {} nor in the environment; nothing was changed",
                    missing.join(", "),
                    platform.kind()
                ),
                Some(&format!(
                    "export them and run `shipit secrets sync --env {env}` (or export them and deploy again: the deploy sets them), or pass --allow-missing-secrets to create it without them"
                )),
            );
            return Err(Exit::BadInput);
        }
        out.say(&format!("warning: creating without secrets (--allow-missing-secrets): {}", missing.join(", ")));
    }
    // Fly sets the values it is offered itself, once the images resolved, before the app's
    // first machine ([`Platform::offer_secrets`]).
    if platform.kind() == PlatformKind::Fly {
        return Ok(());
    }
    for f in firsts.iter().filter(|f| !f.at_hand.is_empty()) {
        let Some(service) = target.env.services.get(&f.service) else { continue };
        let values: Vec<(String, SecretString)> =
            f.at_hand.iter().filter_map(|n| env_secret(n).map(|v| (n.clone(), v))).collect();
        match platform.sync_secrets(target, service, &values).await {
            Ok(d) => out.say(&format!(
                "{}: set {} from the environment before its first release",
                f.service,
                d.names.join(", ")
            )),
            Err(e) => return Err(fail(cli, &e)),
        }
    }
    Ok(())
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
    // The flag offers what some target can do; this one may do less.
    if let Some(s) = strategy {
        let can = platform.capabilities().strategies;
        if !can.contains(&s) {
            let message = if can.is_empty() {
                format!(
                    "--strategy {}: {} rolls out its own way and takes no --strategy; leave it out",
                    s.as_str(),
                    ctx.kind
                )
            } else {
                let names: Vec<&str> = can.iter().map(|c| c.as_str()).collect();
                format!("--strategy {}: {} can do {}", s.as_str(), ctx.kind, names.join(", "))
            };
            diagnostics::error(cli, &message, Some("see `shipit deploy --help` and docs/cli.md"));
            return Exit::BadInput;
        }
    }
    let services = match select(cli, target, &args.services) {
        Ok(s) => s,
        Err(e) => return e,
    };
    if args.dry_run {
        note_secrets_not_in_env(&out, platform.as_ref(), &services);
        return platforms::dry_run(cli, &out, platform.as_ref(), target, &services, &args.tag, strategy);
    }
    if let Err(e) = need_token(cli, ctx.kind) {
        return e;
    }
    let resolver = match platforms::resolver() {
        Ok(r) => r,
        Err(e) => return fail(cli, &e),
    };
    rt.block_on(async {
        if let Err(e) = first_deploy_secrets(cli, &out, platform.as_ref(), target, args).await {
            return e;
        }
        let signals = on_signals(out.clone());
        let cancel = signals.soft.clone();
        let mut opts = DeployOptions::default();
        opts.services = args.services.clone();
        opts.restart = args.restart;
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
    let app = match super::load_checked(cli) {
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
    if let Err(e) = need_token(cli, from_kind).and_then(|()| need_token(cli, to_kind)) {
        return e;
    }
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
    if let Err(e) = need_token(cli, ctx.kind) {
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
    if let Err(e) = need_token(cli, ctx.kind) {
        return e;
    }
    rt.block_on(async {
        for s in services {
            let releases = match platform.releases(target, s).await {
                Ok(r) => r,
                Err(e) => return fail(cli, &e),
            };
            if out.json() {
                for r in &releases {
                    let mut v = serde_json::to_value(r).unwrap_or_default();
                    if let Some(o) = v.as_object_mut() {
                        o.insert("service".into(), s.name.clone().into());
                    }
                    out.json_event("release", v);
                }
                continue;
            }
            show!("{} ({})", s.name, target.platform_name(ctx.kind, &s.name));
            if releases.is_empty() {
                show!("  no releases");
            }
            for r in &releases {
                let status = format!("{:?}", r.status).to_lowercase();
                let tone = match r.status {
                    shipit_core::ReleaseStatus::Live => Some(Tone::Good),
                    shipit_core::ReleaseStatus::Failed => Some(Tone::Bad),
                    _ => None,
                };
                let padded = format!("{status:11}");
                show!(
                    "  {:32}  {}  {:20}  sha {:8}  {}",
                    r.id,
                    tone.map_or(padded.clone(), |t| crate::style::out(t, &padded)),
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
    if let Err(e) = need_token(cli, ctx.kind) {
        return e;
    }
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
                let mut v = serde_json::to_value(&st).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("service".into(), s.name.clone().into());
                }
                out.json_event("status", v);
                continue;
            }
            if !st.exists {
                show!("{:10} {:32} {}", s.name, st.platform_name, crate::style::out(Tone::Warn, "not deployed"));
                continue;
            }
            if st.instances.is_empty() {
                let none = format!("exists, no {}", platform.kind().instances_noun());
                show!("{:10} {:32} {}", s.name, st.platform_name, crate::style::out(Tone::Warn, &none));
                continue;
            }
            let idle_text = if idle_count > 0 { format!(", {idle_count} stopped by autostop") } else { String::new() };
            let count = format!("{}/{} healthy", healthy, st.instances.len());
            let tone = if healthy + idle_count == st.instances.len() { Tone::Good } else { Tone::Bad };
            show!(
                "{:10} {:32} {}  release {}  {}{idle_text}",
                s.name,
                st.platform_name,
                st.digest.as_deref().unwrap_or("mixed digests"),
                st.release.as_deref().unwrap_or("-"),
                crate::style::out(tone, &count)
            );
        }
        if all_healthy {
            Exit::Ok
        } else {
            crate::report::error(
                Some("unhealthy"),
                &format!("not every service of {} is deployed and healthy", ctx.env),
                Some("see each service's line; `shipit deploy` or `shipit rollback` puts it right"),
            );
            Exit::Failed
        }
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
    if let Err(e) = need_token(cli, ctx.kind) {
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
                out.json_event("plan", serde_json::to_value(p).unwrap_or_default());
                continue;
            }
            if p.create {
                show!("{} {} ({}): will be created", crate::style::out(Tone::Good, "+"), p.service, p.platform_name);
            } else if p.changes.is_empty() {
                show!("  {} ({}): no changes", p.service, p.platform_name);
            } else {
                show!("{} {} ({}):", crate::style::out(Tone::Warn, "~"), p.service, p.platform_name);
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
        let changed = plans.iter().filter(|p| p.has_changes()).count();
        crate::report::result(serde_json::json!({ "changes": changed }));
        if changes {
            crate::report::error(
                Some("changes"),
                &format!("a deploy would change {changed} service{}", if changed == 1 { "" } else { "s" }),
                None,
            );
            Exit::Changes
        } else {
            Exit::Ok
        }
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
    if let Err(e) = need_token(cli, ctx.kind) {
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
                        out.json_event("secrets_set", serde_json::to_value(d).unwrap_or_default());
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
                        // Running instances get new values only when replaced: Fly's machines at
                        // their next update, Railway and Render at the next deploy.
                        let when = match (args.restart, platform.kind()) {
                            (true, _) => "; rolling them out now (--restart)",
                            (false, shipit_core::PlatformKind::Fly) => {
                                "; running machines get them at their next update (--restart rolls them out now)"
                            }
                            (false, _) => "; they apply at the next deploy (--restart rolls them out now)",
                        };
                        show!("{}: set {}{version}{when}", d.service, d.names.join(", "));
                    }
                }
                if done.is_empty() {
                    out.say("no service declares secrets; nothing to do");
                }
                if !args.restart {
                    return Exit::Ok;
                }
                let names: Vec<String> = done.iter().filter(|d| !d.at_creation).map(|d| d.service.clone()).collect();
                restart(cli, &out, platform.as_ref(), target, &names).await
            }
            Err(e) => fail(cli, &e),
        }
    })
}

/// `secrets sync --restart`: redeploys what each of `names` runs now (its digest, from the
/// platform's status) with `restart`, through the same health gate and restore as a deploy, so
/// the new values reach running instances. A service nothing runs for is skipped: its first
/// deploy starts with them.
async fn restart(cli: &Cli, out: &Arc<Output>, platform: &dyn Platform, target: Target<'_>, names: &[String]) -> Exit {
    let mut images = std::collections::BTreeMap::new();
    for name in names {
        let Some(service) = target.env.services.get(name) else { continue };
        let st = match platform.status(target, service).await {
            Ok(st) => st,
            Err(e) => return fail(cli, &e),
        };
        match st.digest {
            Some(d) if st.exists => {
                images.insert(name.clone(), service.image.with_digest(&d));
            }
            None if st.exists && !st.instances.is_empty() => {
                let e = Error::new(
                    ErrorKind::Conflict,
                    format!("{name} runs several digests (a rollout in progress?): restart it once it has settled"),
                );
                return fail(cli, &e);
            }
            _ => out.say(&format!("{name}: nothing runs yet; its first deploy starts with the new values")),
        }
    }
    if images.is_empty() {
        return Exit::Ok;
    }
    let signals = on_signals(out.clone());
    let mut opts = DeployOptions::default();
    opts.services = images.keys().cloned().collect();
    opts.restart = true;
    opts.move_env_tag = false;
    opts.cancel = signals.soft.clone();
    let events = out.events();
    let run = engine::deploy_digests(platform, None, target, "restart", &images, &opts, &events);
    stoppable(cli, out, &signals, (platform, target, "restart"), &opts.services, run).await
}
