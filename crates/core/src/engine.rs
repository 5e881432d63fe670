//! The deploy engine: tags to digests, services in dependency order, a health gate on each,
//! and the last good release put back when something fails.
//!
//! It lives in core so that library users get the same behaviour as the CLI. It knows nothing
//! of any one platform: it asks the [`Platform`] what runs before it changes anything, deploys,
//! and on failure compares what runs with what ran before and restores it. The verdict it
//! returns ([`Summary`]) is built from the platform's status *after* the rollout, not from what
//! the engine hoped happened.
//!
//! Concurrency: services of one dependency level (a service that takes another's URL waits for
//! it) are deployed at the same time; the engine adds no waiting of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::future::join_all;
use secrecy::SecretString;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, ErrorKind};
use crate::events::{Event, Events};
use crate::image::ImageRef;
use crate::model::{EnvValue, ReferenceKind, Service, Strategy};
use crate::platform::{
    DeployRequest, ImageRegistry, Platform, Release, ReleaseInfo, ReleaseStatus, Resolver, SecretsSynced, ServicePlan,
    ServiceStatus, Target,
};

/// What to do when a service fails its rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Put the previous release back (the default).
    Rollback,
    /// Leave the instances as they are.
    Leave,
}

/// Options of a deploy.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeployOptions {
    /// Services to deploy; empty means all.
    pub services: Vec<String>,
    /// Strategy; `None` uses the environment's.
    pub strategy: Option<Strategy>,
    /// How long each service may take to become healthy.
    pub wait_timeout: Duration,
    /// What to do when a service fails.
    pub on_failure: OnFailure,
    /// Roll back every service of the release when any fails.
    pub atomic: bool,
    /// Whether missing apps or services may be created.
    pub create: bool,
    /// How long to wait for another deploy's lock.
    pub lock_wait: Duration,
    /// Git commit of this release.
    pub git_sha: Option<String>,
    /// Ctrl-C / SIGTERM.
    pub cancel: CancellationToken,
    /// Deploy images that break their service's policy anyway (each violation is a warning).
    pub force: bool,
    /// After a service is live, point the environment's tag (`staging`, `production`) at its
    /// digest, so the registry shows what each environment runs.
    pub move_env_tag: bool,
}

impl Default for DeployOptions {
    fn default() -> Self {
        Self {
            services: Vec::new(),
            strategy: None,
            wait_timeout: Duration::from_secs(300),
            on_failure: OnFailure::Rollback,
            atomic: false,
            create: true,
            lock_wait: Duration::ZERO,
            git_sha: None,
            cancel: CancellationToken::new(),
            force: false,
            move_env_tag: true,
        }
    }
}

/// What the whole operation came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every service runs the new release and is healthy.
    Succeeded,
    /// Something failed; every affected service runs its previous release again.
    RolledBack,
    /// A health gate timed out; every affected service runs its previous release again.
    TimedOut,
    /// Something failed and at least one service does not run a known-good release.
    Failed,
    /// Stopped by a signal; every instance is on a known image (see the services).
    Cancelled,
    /// Refused before anything changed (lock held, missing app with `--no-create`…).
    NothingChanged,
}

/// What happened to one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceResult {
    /// Now runs the new release.
    Deployed,
    /// Already ran it; nothing changed.
    Unchanged,
    /// Failed, and its previous release is back.
    RolledBack,
    /// Failed, but nothing had changed yet (lock held, refused before any update).
    FailedUnchanged,
    /// Failed and was not restored.
    Failed,
    /// Deployed fine, then rolled back because another service failed (`--atomic`).
    RolledBackAtomic,
    /// Not started (a dependency failed, or the rollout was stopped).
    Skipped,
    /// Stopped mid-rollout by a signal.
    Cancelled,
}

/// One service in the summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ServiceReport {
    /// Service.
    pub service: String,
    /// What happened.
    pub result: ServiceResult,
    /// The digest this operation wanted.
    pub target_digest: Option<String>,
    /// What it runs now, from the platform's status after the operation.
    pub running_digest: Option<String>,
    /// The release it runs now.
    pub running_release: Option<String>,
    /// Every digest its instances run now (more than one mid-rollout).
    pub running_digests: Vec<String>,
    /// Failure kind, when it failed.
    pub error_kind: Option<ErrorKind>,
    /// Failure message, when it failed.
    pub error: Option<String>,
}

/// The verdict of a deploy, rollback or promote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Summary {
    /// `deploy`, `rollback` or `promote`.
    pub operation: String,
    /// Release id.
    pub release: String,
    /// Environment.
    pub env: String,
    /// Platform.
    pub platform: crate::model::PlatformKind,
    /// The verdict.
    pub outcome: Outcome,
    /// Per service.
    pub services: Vec<ServiceReport>,
}

impl Summary {
    /// The most telling failure kind, if anything failed.
    pub fn failure_kind(&self) -> Option<ErrorKind> {
        let kinds: Vec<ErrorKind> = self.services.iter().filter_map(|s| s.error_kind).collect();
        [ErrorKind::Unauthorized, ErrorKind::Conflict, ErrorKind::Timeout, ErrorKind::Unhealthy]
            .into_iter()
            .find(|k| kinds.contains(k))
            .or_else(|| kinds.first().copied())
    }
}

/// A release id: UTC time, the short git sha when known, and four hex digits that differ
/// between releases made in the same second.
pub fn release_id(git_sha: Option<&str>) -> String {
    let now = jiff::Timestamp::now();
    let stamp = now.strftime("%Y%m%dT%H%M%SZ").to_string();
    // Two releases of one commit in the same second still get different ids.
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let noise = (now.subsec_nanosecond().unsigned_abs() ^ n.wrapping_mul(0x9E37_79B9)) % 0x10000;
    match git_sha {
        Some(sha) if !sha.is_empty() => format!("{stamp}-{}-{noise:04x}", sha.chars().take(7).collect::<String>()),
        _ => format!("{stamp}-{noise:04x}"),
    }
}

/// Selects services by name, in manifest order; empty means all.
pub fn select<'a>(target: Target<'a>, names: &[String]) -> Result<Vec<&'a Service>, Error> {
    if names.is_empty() {
        return Ok(target.env.services.values().collect());
    }
    let mut out = Vec::new();
    for name in names {
        match target.env.services.get(name) {
            Some(s) => {
                if !out.iter().any(|o: &&Service| o.name == s.name) {
                    out.push(s);
                }
            }
            None => {
                let known: Vec<&str> = target.env.services.keys().map(String::as_str).collect();
                return Err(Error::new(
                    ErrorKind::InvalidConfig,
                    format!("--service {name}: no such service (services: {})", known.join(", ")),
                ));
            }
        }
    }
    Ok(out)
}

/// Groups services into levels: a service comes after the services whose URL, host or port it takes.
fn levels<'a>(services: &[&'a Service]) -> Vec<Vec<&'a Service>> {
    let names: BTreeSet<&str> = services.iter().map(|s| s.name.as_str()).collect();
    let deps = |s: &Service| -> BTreeSet<String> {
        dependencies_of(s).into_iter().filter(|d| *d != s.name && names.contains(d)).map(str::to_string).collect()
    };
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut left: Vec<&Service> = services.to_vec();
    let mut out = Vec::new();
    while !left.is_empty() {
        let (ready, rest): (Vec<&Service>, Vec<&Service>) =
            left.iter().partition(|s| deps(s).iter().all(|d| done.contains(d)));
        // A cycle: deploy what is left together.
        let ready = if ready.is_empty() { rest.clone() } else { ready };
        for s in &ready {
            done.insert(s.name.clone());
        }
        left.retain(|s| !done.contains(&s.name));
        out.push(ready);
    }
    out
}

fn dependencies_of(service: &Service) -> BTreeSet<&str> {
    service
        .env
        .values()
        .filter_map(|v| match v {
            EnvValue::From(r) if r.kind == ReferenceKind::Service => Some(r.target.as_str()),
            _ => None,
        })
        .collect()
}

/// The release a service runs, as a rollback target.
fn release_of(status: &ServiceStatus) -> Option<Release> {
    let digest = status.digest.clone()?;
    Some(Release {
        id: status
            .release
            .clone()
            .unwrap_or_else(|| format!("unmanaged-{}", digest.chars().skip(7).take(12).collect::<String>())),
        platform_id: None,
        service: status.service.clone(),
        image: status.image.clone(),
        digest: Some(digest),
        git_sha: status.git_sha.clone(),
        created_at: None,
        status: ReleaseStatus::Superseded,
    })
}

/// Deploys the services of `target` to the digests their images' `tag` points to.
pub async fn deploy(
    platform: &dyn Platform,
    registry: &dyn ImageRegistry,
    target: Target<'_>,
    tag: &str,
    opts: &DeployOptions,
    events: &Events,
) -> Result<Summary, Error> {
    let services = select(target, &opts.services)?;
    run_release(platform, Some(registry), target, "deploy", &services, Images::Tag(tag), opts, events).await
}

/// Deploys exactly `images` (service name to digest-pinned image): the path promote takes.
/// Without a registry, no policy is checked and no environment tag is moved.
pub async fn deploy_digests(
    platform: &dyn Platform,
    registry: Option<&dyn ImageRegistry>,
    target: Target<'_>,
    operation: &str,
    images: &BTreeMap<String, ImageRef>,
    opts: &DeployOptions,
    events: &Events,
) -> Result<Summary, Error> {
    let names: Vec<String> = images.keys().cloned().collect();
    let services = select(target, &names)?;
    run_release(platform, registry, target, operation, &services, Images::Pinned(images), opts, events).await
}

/// Deploys to environment `to` exactly the digests environment `from` runs now (read from the
/// platform's status, not from a tag that may have moved), through the same health-gated path,
/// then moves `to`'s tag. Nothing is rebuilt or re-pushed.
#[allow(clippy::too_many_arguments)]
pub async fn promote(
    from_platform: &dyn Platform,
    from: Target<'_>,
    to_platform: &dyn Platform,
    to: Target<'_>,
    registry: Option<&dyn ImageRegistry>,
    opts: &DeployOptions,
    events: &Events,
) -> Result<Summary, Error> {
    if from.env.name == to.env.name {
        return Err(Error::new(ErrorKind::InvalidConfig, format!("cannot promote {} to itself", from.env.name)));
    }
    let services = select(to, &opts.services)?;
    let mut images = BTreeMap::new();
    let mut shas = BTreeSet::new();
    for s in &services {
        let Some(source) = from.env.services.get(&s.name) else {
            return Err(Error::new(ErrorKind::InvalidConfig, format!("{} has no service {}", from.env.name, s.name)));
        };
        let st = from_platform.status(from, source).await?;
        if !st.exists {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("{} is not deployed in {}: nothing to promote (deploy it there first)", s.name, from.env.name),
            ));
        }
        let Some(digest) = st.digest.clone() else {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "{} runs several digests in {} (a rollout in progress?): promote when it has settled",
                    s.name, from.env.name
                ),
            ));
        };
        if !st.healthy() {
            events.warn(
                Some(&s.name),
                format!("not every instance in {} is healthy; promoting the digest it runs", from.env.name),
            );
        }
        images.insert(s.name.clone(), source.image.with_digest(&digest));
        shas.insert(st.git_sha.clone());
    }
    // The promoted release records the commit staging's release was built from, when they agree.
    let mut opts = opts.clone();
    if opts.git_sha.is_none()
        && let [Some(sha)] = shas.into_iter().collect::<Vec<_>>().as_slice()
    {
        opts.git_sha = Some(sha.clone());
    }
    run_release(to_platform, registry, to, "promote", &services, Images::Pinned(&images), &opts, events).await
}

/// Where a release's digests come from.
enum Images<'a> {
    /// Every service's image at this tag, resolved in the registry.
    Tag(&'a str),
    /// Already pinned by digest.
    Pinned(&'a BTreeMap<String, ImageRef>),
}

/// Tags to digests, all at once: nothing changes if any image is missing.
async fn resolve_all(
    resolver: &dyn Resolver,
    services: &[&Service],
    tag: &str,
    events: &Events,
) -> Result<BTreeMap<String, ImageRef>, Error> {
    let resolved = join_all(services.iter().map(|s| async move {
        let tagged = s.image.with_tag(tag);
        let digest = resolver.resolve(&tagged).await.map_err(|e| e.context(format!("{} ({tagged})", s.name)))?;
        events.emit(Event::ImageResolved {
            service: s.name.clone(),
            image: tagged.to_string(),
            digest: digest.clone(),
        });
        Ok::<_, Error>((s.name.clone(), tagged.with_digest(&digest)))
    }))
    .await;
    resolved.into_iter().collect()
}

#[allow(clippy::too_many_arguments)]
async fn run_release(
    platform: &dyn Platform,
    registry: Option<&dyn ImageRegistry>,
    target: Target<'_>,
    operation: &str,
    services: &[&Service],
    images: Images<'_>,
    opts: &DeployOptions,
    events: &Events,
) -> Result<Summary, Error> {
    let release = ReleaseInfo::new(release_id(opts.git_sha.as_deref()), opts.git_sha.clone());
    let strategy = opts.strategy.unwrap_or(target.env.strategy);
    if !platform.capabilities().strategies.contains(&strategy) {
        return Err(Error::unsupported(platform.kind().as_str(), format!("the {} strategy", strategy.as_str())));
    }
    events.emit(Event::Started {
        operation: operation.to_string(),
        release: release.id.clone(),
        env: target.env.name.clone(),
        platform: platform.kind(),
        services: services.iter().map(|s| s.name.clone()).collect(),
    });
    let resolved;
    let images = match images {
        Images::Pinned(images) => images,
        Images::Tag(tag) => {
            let Some(registry) = registry else {
                return Err(Error::new(ErrorKind::InvalidConfig, "a tag needs a registry to resolve it"));
            };
            resolved = resolve_all(registry, services, tag, events).await?;
            &resolved
        }
    };
    if let Some(registry) = registry {
        enforce_policy(registry, services, images, opts.force, events).await?;
    }

    // What runs before: the rollback target of each service.
    let before = statuses(platform, target, services).await?;
    warn_missing_secrets(platform, target, services, &before, events).await;

    let mut results: BTreeMap<String, (ServiceResult, Option<Error>)> = BTreeMap::new();
    let mut stop = false;
    for level in levels(services) {
        let mut runnable = Vec::new();
        for s in level {
            let failed_dep = dependencies_of(s).into_iter().find(|d| {
                results.get(*d).is_some_and(|(r, _)| !matches!(r, ServiceResult::Deployed | ServiceResult::Unchanged))
            });
            if stop || opts.cancel.is_cancelled() {
                results.insert(s.name.clone(), (ServiceResult::Skipped, None));
            } else if let Some(dep) = failed_dep {
                events.warn(Some(&s.name), format!("not deployed: {dep} failed"));
                results.insert(s.name.clone(), (ServiceResult::Skipped, None));
            } else {
                runnable.push(s);
            }
        }
        let outcomes = join_all(runnable.iter().map(|s| {
            let release = release.clone();
            async move {
                let Some(image) = images.get(&s.name).cloned() else {
                    return Err(Error::new(ErrorKind::Other, format!("no image resolved for {}", s.name)));
                };
                let req = DeployRequest {
                    target,
                    service: s,
                    image,
                    release,
                    strategy,
                    wait_timeout: opts.wait_timeout,
                    create: opts.create,
                    lock_wait: opts.lock_wait,
                    failed_release: None,
                    cancel: opts.cancel.clone(),
                    events: events.clone(),
                };
                platform.deploy(&req).await
            }
        }))
        .await;
        for (s, outcome) in runnable.iter().zip(outcomes) {
            match outcome {
                Ok(d) => {
                    events.emit(Event::ServiceSucceeded {
                        service: s.name.clone(),
                        digest: d.digest.clone(),
                        changed: d.changed,
                    });
                    let r = if d.changed { ServiceResult::Deployed } else { ServiceResult::Unchanged };
                    results.insert(s.name.clone(), (r, None));
                }
                Err(e) => {
                    events.emit(Event::ServiceFailed {
                        service: s.name.clone(),
                        kind: e.kind,
                        reason: e.message.clone(),
                    });
                    let r =
                        if e.kind == ErrorKind::Cancelled { ServiceResult::Cancelled } else { ServiceResult::Failed };
                    results.insert(s.name.clone(), (r, Some(e)));
                    if opts.atomic {
                        stop = true;
                    }
                }
            }
        }
    }

    let any_failed = results.values().any(|(r, _)| *r == ServiceResult::Failed);
    let cancelled = opts.cancel.is_cancelled();
    if any_failed && opts.on_failure == OnFailure::Rollback && !cancelled {
        let to_restore: Vec<&Service> = services
            .iter()
            .copied()
            .filter(|s| match results.get(&s.name) {
                Some((ServiceResult::Failed, _)) => true,
                Some((ServiceResult::Deployed, _)) => opts.atomic,
                _ => false,
            })
            .collect();
        let restored = join_all(to_restore.iter().map(|s| {
            let before = before.get(&s.name);
            restore(platform, target, s, before, &release.id, strategy, opts, events)
        }))
        .await;
        for (s, r) in to_restore.iter().zip(restored) {
            if let Some(entry) = results.get_mut(&s.name) {
                let atomic_rollback = entry.0 == ServiceResult::Deployed;
                entry.0 = match (r, atomic_rollback) {
                    (Restore::RolledBack, true) => ServiceResult::RolledBackAtomic,
                    (Restore::RolledBack, false) => ServiceResult::RolledBack,
                    (Restore::Untouched, _) => ServiceResult::FailedUnchanged,
                    (Restore::NotRestored, _) => ServiceResult::Failed,
                };
            }
        }
    }

    // Only services that stayed on the new release get the environment's tag.
    if let Some(registry) = registry.filter(|_| opts.move_env_tag) {
        move_env_tags(registry, services, images, &results, &target.env.name, events).await;
    }

    let after = statuses(platform, target, services).await.unwrap_or_default();
    let mut reports = Vec::new();
    for s in services {
        let (result, err) = results.remove(&s.name).unwrap_or((ServiceResult::Skipped, None));
        let now = after.get(&s.name);
        reports.push(ServiceReport {
            service: s.name.clone(),
            result,
            target_digest: images.get(&s.name).and_then(|i| i.digest.clone()),
            running_digest: now.and_then(|n| n.digest.clone()),
            running_release: now.and_then(|n| n.release.clone()),
            running_digests: distinct_digests(now),
            error_kind: err.as_ref().map(|e| e.kind),
            error: err.map(|e| e.message),
        });
    }
    let outcome = verdict(&reports, cancelled);
    Ok(Summary {
        operation: operation.to_string(),
        release: release.id,
        env: target.env.name.clone(),
        platform: platform.kind(),
        outcome,
        services: reports,
    })
}

/// Refuses images that break their service's policy, before anything changes (warnings with `force`).
async fn enforce_policy(
    registry: &dyn ImageRegistry,
    services: &[&Service],
    images: &BTreeMap<String, ImageRef>,
    force: bool,
    events: &Events,
) -> Result<(), Error> {
    let mut violations = Vec::new();
    for s in services.iter().filter(|s| !s.policy.is_empty()) {
        let Some(image) = images.get(&s.name) else { continue };
        let facts =
            registry.inspect(image).await.map_err(|e| e.context(format!("inspecting {image} for its policy")))?;
        violations.extend(crate::policy::check(s, &facts));
    }
    if violations.is_empty() {
        return Ok(());
    }
    if force {
        for v in &violations {
            events.warn(Some(&v.service), format!("POLICY OVERRIDDEN with --force: {}", v.message));
        }
        return Ok(());
    }
    let list: Vec<String> = violations.iter().map(|v| format!("{}: {}", v.service, v.message)).collect();
    Err(Error::new(
        ErrorKind::InvalidConfig,
        format!(
            "image policy refused the release, nothing was changed:\n  {}\n(--force deploys it anyway)",
            list.join("\n  ")
        ),
    ))
}

/// Points the environment's tag at the digest each live service runs; a failure is a warning.
async fn move_env_tags(
    registry: &dyn ImageRegistry,
    services: &[&Service],
    images: &BTreeMap<String, ImageRef>,
    results: &BTreeMap<String, (ServiceResult, Option<Error>)>,
    env: &str,
    events: &Events,
) {
    for s in services {
        let live = matches!(results.get(&s.name), Some((ServiceResult::Deployed | ServiceResult::Unchanged, _)));
        let Some(image) = images.get(&s.name).filter(|_| live) else { continue };
        match registry.tag(image, env).await {
            Ok(()) => events.step(&s.name, format!("tagged {}:{env}", image.name())),
            Err(e) => events.warn(Some(&s.name), format!("could not move the {env} tag to the deployed digest: {e}")),
        }
    }
}

fn distinct_digests(status: Option<&ServiceStatus>) -> Vec<String> {
    let mut d: Vec<String> =
        status.map(|s| s.instances.iter().filter_map(|i| i.digest.clone()).collect()).unwrap_or_default();
    d.sort();
    d.dedup();
    d
}

/// Whether a service still runs exactly what it ran before (or still does not exist).
fn unchanged(before: &ServiceStatus, now: &ServiceStatus) -> bool {
    if !before.exists || !now.exists {
        return !before.exists && !now.exists;
    }
    let digests = |s: &ServiceStatus| {
        let mut d: Vec<(String, Option<String>)> =
            s.instances.iter().map(|i| (i.id.clone(), i.digest.clone())).collect();
        d.sort();
        d
    };
    digests(before) == digests(now)
}

fn verdict(reports: &[ServiceReport], cancelled: bool) -> Outcome {
    use ServiceResult::*;
    if cancelled {
        return Outcome::Cancelled;
    }
    if reports.iter().all(|r| matches!(r.result, Deployed | Unchanged)) {
        return Outcome::Succeeded;
    }
    if reports.iter().all(|r| matches!(r.result, Unchanged | FailedUnchanged | Skipped)) {
        return Outcome::NothingChanged;
    }
    if reports.iter().any(|r| matches!(r.result, Failed | Cancelled)) {
        return Outcome::Failed;
    }
    if reports.iter().any(|r| r.error_kind == Some(ErrorKind::Timeout)) {
        return Outcome::TimedOut;
    }
    Outcome::RolledBack
}

async fn statuses(
    platform: &dyn Platform,
    target: Target<'_>,
    services: &[&Service],
) -> Result<BTreeMap<String, ServiceStatus>, Error> {
    let all =
        join_all(services.iter().map(|s| async move { (s.name.clone(), platform.status(target, s).await) })).await;
    let mut out = BTreeMap::new();
    for (name, st) in all {
        out.insert(name, st?);
    }
    Ok(out)
}

async fn warn_missing_secrets(
    platform: &dyn Platform,
    target: Target<'_>,
    services: &[&Service],
    before: &BTreeMap<String, ServiceStatus>,
    events: &Events,
) {
    for s in services {
        let needed = platform.required_secrets(s);
        if needed.is_empty() || !before.get(&s.name).is_some_and(|b| b.exists) {
            continue;
        }
        match platform.secret_names(target, s).await {
            Ok(have) => {
                let missing: Vec<&str> =
                    needed.iter().map(String::as_str).filter(|n| !have.iter().any(|h| h == n)).collect();
                if !missing.is_empty() {
                    events.warn(
                        Some(&s.name),
                        format!(
                            "secrets declared in the manifest but not set on {}: {} (run `shipit secrets sync`)",
                            platform.kind(),
                            missing.join(", ")
                        ),
                    );
                }
            }
            Err(e) => events.warn(Some(&s.name), format!("could not list secrets: {e}")),
        }
    }
}

enum Restore {
    RolledBack,
    Untouched,
    NotRestored,
}

#[allow(clippy::too_many_arguments)]
async fn restore(
    platform: &dyn Platform,
    target: Target<'_>,
    service: &Service,
    before: Option<&ServiceStatus>,
    failed_release: &str,
    strategy: Strategy,
    opts: &DeployOptions,
    events: &Events,
) -> Restore {
    let name = &service.name;
    let now = platform.status(target, service).await.ok();
    // Nothing changed (lock held, refused early, --no-create): what ran before still runs.
    if let (Some(before), Some(now)) = (before, &now)
        && unchanged(before, now)
    {
        return Restore::Untouched;
    }
    let Some(previous) = before.and_then(release_of) else {
        events.emit(Event::RollbackFailed {
            service: name.clone(),
            reason: "nothing to roll back to: it had no earlier release".to_string(),
        });
        return Restore::NotRestored;
    };
    let digest = previous.digest.clone().unwrap_or_default();
    events.emit(Event::RollbackStarted {
        service: name.clone(),
        release: Some(previous.id.clone()),
        digest: digest.clone(),
    });
    let req = DeployRequest {
        target,
        service,
        image: service.image.with_digest(&digest),
        release: ReleaseInfo::new(previous.id.clone(), previous.git_sha.clone()),
        strategy,
        wait_timeout: opts.wait_timeout,
        create: false,
        lock_wait: opts.lock_wait.max(Duration::from_secs(30)),
        failed_release: Some(failed_release.to_string()),
        cancel: CancellationToken::new(),
        events: events.clone(),
    };
    match platform.rollback(&req, &previous).await {
        Ok(d) => {
            events.emit(Event::RollbackSucceeded { service: name.clone(), digest: d.digest });
            Restore::RolledBack
        }
        Err(e) => {
            events.emit(Event::RollbackFailed { service: name.clone(), reason: e.message });
            Restore::NotRestored
        }
    }
}

/// Which release `rollback` returns to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackTo {
    /// The newest successful release older than the live one.
    Previous,
    /// A release by id (shipit's or the platform's).
    Release(String),
    /// The newest successful release of a git commit (prefix match).
    Sha(String),
}

/// Picks the release to return to from `releases` (newest first).
pub fn pick_release(releases: &[Release], to: &RollbackTo) -> Result<Release, Error> {
    let live = releases.iter().position(|r| r.status == ReleaseStatus::Live);
    let live_digest = live.and_then(|i| releases.get(i)).and_then(|r| r.digest.clone());
    let refuse_failed = |r: &Release| {
        if r.status == ReleaseStatus::Failed {
            Err(Error::new(
                ErrorKind::InvalidConfig,
                format!("release {} failed and was rolled back: it is never a rollback target", r.id),
            ))
        } else if r.status == ReleaseStatus::Live {
            Err(Error::new(ErrorKind::InvalidConfig, format!("release {} is the one running now", r.id)))
        } else if r.digest.is_none() {
            Err(Error::new(ErrorKind::NotFound, format!("release {} has no recorded image digest", r.id)))
        } else {
            Ok(r.clone())
        }
    };
    match to {
        RollbackTo::Previous => releases
            .iter()
            .skip(live.map_or(0, |i| i + 1))
            .find(|r| r.is_rollback_target() && r.digest != live_digest)
            .cloned()
            .ok_or_else(|| Error::new(ErrorKind::NotFound, "no earlier successful release to roll back to")),
        RollbackTo::Release(id) => releases
            .iter()
            .find(|r| &r.id == id || r.platform_id.as_deref() == Some(id.as_str()))
            .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("no release {id}")))
            .and_then(refuse_failed),
        RollbackTo::Sha(sha) => {
            let matching: Vec<&Release> = releases
                .iter()
                .filter(|r| r.git_sha.as_deref().is_some_and(|g| !sha.is_empty() && g.starts_with(sha.as_str())))
                .collect();
            if matching.is_empty() {
                return Err(Error::new(ErrorKind::NotFound, format!("no release of commit {sha}")));
            }
            matching.iter().find(|r| r.is_rollback_target()).map(|r| (*r).clone()).ok_or_else(|| {
                Error::new(ErrorKind::InvalidConfig, format!("every release of commit {sha} failed or is live"))
            })
        }
    }
}

/// Returns services to an earlier release through the health-gated path, then (with a
/// registry) points the environment's tag at what runs again.
pub async fn rollback(
    platform: &dyn Platform,
    registry: Option<&dyn ImageRegistry>,
    target: Target<'_>,
    to: &RollbackTo,
    opts: &DeployOptions,
    events: &Events,
) -> Result<Summary, Error> {
    let services = select(target, &opts.services)?;
    // Pick every target first: refuse before changing anything.
    let mut picks = Vec::new();
    for s in &services {
        let releases = platform.releases(target, s).await?;
        let pick = pick_release(&releases, to).map_err(|e| e.context(&s.name))?;
        picks.push((*s, pick));
    }
    let release_label = picks.first().map(|(_, r)| r.id.clone()).unwrap_or_default();
    events.emit(Event::Started {
        operation: "rollback".to_string(),
        release: release_label.clone(),
        env: target.env.name.clone(),
        platform: platform.kind(),
        services: services.iter().map(|s| s.name.clone()).collect(),
    });
    let strategy = opts.strategy.unwrap_or(target.env.strategy);
    let before = statuses(platform, target, &services).await?;
    let outcomes = join_all(picks.iter().map(|(s, to)| async move {
        let digest = to.digest.clone().unwrap_or_default();
        events.emit(Event::RollbackStarted {
            service: s.name.clone(),
            release: Some(to.id.clone()),
            digest: digest.clone(),
        });
        let req = DeployRequest {
            target,
            service: s,
            image: s.image.with_digest(&digest),
            release: ReleaseInfo::new(to.id.clone(), to.git_sha.clone()),
            strategy,
            wait_timeout: opts.wait_timeout,
            create: false,
            lock_wait: opts.lock_wait,
            failed_release: None,
            cancel: opts.cancel.clone(),
            events: events.clone(),
        };
        platform.rollback(&req, to).await
    }))
    .await;
    let mut results = BTreeMap::new();
    let mut images = BTreeMap::new();
    for ((s, to), outcome) in picks.iter().zip(&outcomes) {
        let r = if outcome.is_ok() { ServiceResult::Deployed } else { ServiceResult::Failed };
        results.insert(s.name.clone(), (r, None));
        images.insert(s.name.clone(), s.image.with_digest(to.digest.as_deref().unwrap_or_default()));
    }
    if let Some(registry) = registry.filter(|_| opts.move_env_tag) {
        move_env_tags(registry, &services, &images, &results, &target.env.name, events).await;
    }
    let mut reports = Vec::new();
    let after = statuses(platform, target, &services).await.unwrap_or_default();
    for ((s, to), outcome) in picks.iter().zip(outcomes) {
        let now = after.get(&s.name);
        let (result, err) = match outcome {
            Ok(d) => {
                events.emit(Event::RollbackSucceeded { service: s.name.clone(), digest: d.digest });
                (ServiceResult::Deployed, None)
            }
            Err(e) => {
                events.emit(Event::RollbackFailed { service: s.name.clone(), reason: e.message.clone() });
                let untouched = matches!((before.get(&s.name), now), (Some(b), Some(n)) if unchanged(b, n));
                let result = if e.kind == ErrorKind::Cancelled {
                    ServiceResult::Cancelled
                } else if untouched {
                    ServiceResult::FailedUnchanged
                } else {
                    ServiceResult::Failed
                };
                (result, Some(e))
            }
        };
        reports.push(ServiceReport {
            service: s.name.clone(),
            result,
            target_digest: to.digest.clone(),
            running_digest: now.and_then(|n| n.digest.clone()),
            running_release: now.and_then(|n| n.release.clone()),
            running_digests: distinct_digests(now),
            error_kind: err.as_ref().map(|e| e.kind),
            error: err.map(|e| e.message),
        });
    }
    let outcome = verdict(&reports, opts.cancel.is_cancelled());
    Ok(Summary {
        operation: "rollback".to_string(),
        release: release_label,
        env: target.env.name.clone(),
        platform: platform.kind(),
        outcome,
        services: reports,
    })
}

/// Plans every selected service; `tag`, when given, is resolved so the image can be compared.
pub async fn plan(
    platform: &dyn Platform,
    resolver: Option<&dyn Resolver>,
    target: Target<'_>,
    services: &[String],
    tag: Option<&str>,
) -> Result<Vec<ServicePlan>, Error> {
    let selected = select(target, services)?;
    let plans = join_all(selected.iter().map(|s| async move {
        let image = match (tag, resolver) {
            (Some(tag), Some(r)) => {
                let tagged = s.image.with_tag(tag);
                let digest = r.resolve(&tagged).await?;
                Some(tagged.with_digest(&digest))
            }
            _ => None,
        };
        platform.plan(target, s, image.as_ref()).await
    }))
    .await;
    plans.into_iter().collect()
}

/// Sets each selected service's secrets from `lookup` (the process environment in the CLI).
/// Every needed value must be present and non-empty, or nothing is changed.
pub async fn sync_secrets(
    platform: &dyn Platform,
    target: Target<'_>,
    services: &[String],
    lookup: impl Fn(&str) -> Option<SecretString>,
) -> Result<Vec<SecretsSynced>, Error> {
    use secrecy::ExposeSecret;
    let selected = select(target, services)?;
    let mut plan = Vec::new();
    let mut missing = BTreeSet::new();
    for s in &selected {
        let mut values = Vec::new();
        for name in platform.required_secrets(s) {
            match lookup(&name) {
                Some(v) if !v.expose_secret().is_empty() => values.push((name, v)),
                _ => {
                    missing.insert(name);
                }
            }
        }
        plan.push((*s, values));
    }
    if !missing.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidConfig,
            format!(
                "not set in the environment: {} — nothing was changed",
                missing.into_iter().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    let mut out = Vec::new();
    for (s, values) in plan {
        if values.is_empty() {
            continue;
        }
        out.push(platform.sync_secrets(target, s, &values).await?);
    }
    Ok(out)
}
