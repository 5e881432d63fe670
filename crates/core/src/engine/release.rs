//! One release: tags to digests, the image policy, services level by level, restore on failure,
//! environment tags, and the verdict.

use std::collections::BTreeMap;

use futures::future::join_all;

use crate::error::{Error, ErrorKind};
use crate::events::{Event, Events};
use crate::image::ImageRef;
use crate::model::{Service, Strategy};
use crate::platform::{
    DeployFailure, DeployRequest, Deployed, ImageRegistry, PinnedImage, Platform, ReleaseInfo, Resolver, RestorePoint,
    RestoreReason, Target,
};

use super::options::{DeployOptions, OnFailure};
use super::order::{dependencies_of, levels};
use super::report::{Report, Results, ServiceResult, Summary};
use super::restore::{Restored, record_failure, restore};

/// Where a release's digests come from.
pub(crate) enum Images<'a> {
    /// Every service's image at this tag, resolved in the registry.
    Tag(&'a str),
    /// Already pinned by digest.
    Pinned(&'a BTreeMap<String, ImageRef>),
}

/// The fixed parts of one operation.
#[derive(Clone, Copy)]
pub(crate) struct Run<'a> {
    pub platform: &'a dyn Platform,
    pub registry: Option<&'a dyn ImageRegistry>,
    pub target: Target<'a>,
    pub operation: &'a str,
    pub opts: &'a DeployOptions,
    pub events: &'a Events,
}

impl Run<'_> {
    /// The strategy a deploy asks for: the flag's, else the environment's, else the platform's.
    pub fn strategy(&self) -> Result<Option<Strategy>, Error> {
        let strategy = self.opts.strategy.or(self.target.env.strategy);
        self.platform.capabilities().check_strategy(self.platform.kind(), strategy)?;
        Ok(strategy)
    }
}

/// A service in flight: its restore point, then what its deploy came to.
struct InFlight {
    point: RestorePoint,
    outcome: Result<Deployed, DeployFailure>,
}

/// Deploys `services` to `images` as one release.
pub(crate) async fn run_release(run: Run<'_>, services: &[&Service], images: Images<'_>) -> Result<Summary, Error> {
    let Run { platform, registry, target, opts, events, .. } = run;
    let release = ReleaseInfo::new(super::release_id(opts.git_sha.as_deref()), opts.git_sha.clone());
    let strategy = run.strategy()?;
    events.emit(Event::Started {
        operation: run.operation.to_string(),
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
    // Every image pinned before anything changes.
    let mut pinned = BTreeMap::new();
    for s in services {
        let Some(image) = images.get(&s.name) else {
            return Err(Error::new(ErrorKind::InvalidConfig, format!("no image for {}", s.name)));
        };
        pinned.insert(s.name.clone(), PinnedImage::new(image.clone()).map_err(|e| e.context(&s.name))?);
    }
    // Every service's deploy described (names, settings, regions) before anything changes: a
    // manifest one service of which the platform cannot take is refused whole.
    for s in services {
        if let Some(p) = pinned.get(&s.name) {
            platform.describe_deploy(target, s, p.image()).map_err(|e| e.context(&s.name))?;
        }
    }
    if let Some(registry) = registry {
        enforce_policy(registry, services, images, opts.force, events).await?;
    }

    let mut results: Results = BTreeMap::new();
    let mut points: BTreeMap<String, RestorePoint> = BTreeMap::new();
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
        let flights = join_all(runnable.iter().map(|s| {
            let release = release.clone();
            let image = pinned.get(&s.name).cloned();
            async move { deploy_one(run, s, image, release, strategy).await }
        }))
        .await;
        for (s, flight) in runnable.iter().zip(flights) {
            let name = s.name.clone();
            match flight.outcome {
                Ok(d) => {
                    events.emit(Event::ServiceSucceeded {
                        service: name.clone(),
                        digest: d.digest,
                        changed: d.changed,
                    });
                    let r = if d.changed { ServiceResult::Deployed } else { ServiceResult::Unchanged };
                    results.insert(name.clone(), (r, None));
                }
                Err(f) => {
                    let e = f.error;
                    events.emit(Event::ServiceFailed {
                        service: name.clone(),
                        kind: e.kind,
                        reason: e.message.clone(),
                    });
                    let r = if !f.touched {
                        ServiceResult::FailedUnchanged
                    } else if e.kind == ErrorKind::Cancelled {
                        ServiceResult::Cancelled
                    } else {
                        ServiceResult::Failed
                    };
                    results.insert(name.clone(), (r, Some(e)));
                    stop |= opts.atomic;
                }
            }
            points.insert(name, flight.point);
        }
    }

    // Stopped by a signal or not, what failed is put back: a service stopped mid-gate runs a
    // release that never passed its health gate, so it goes back to its restore point too.
    let cancelled = opts.cancel.is_cancelled();
    put_back(run, services, &mut results, &points, &release).await;

    // Only services that stayed on the new release get the environment's tag.
    if let Some(registry) = registry.filter(|_| opts.move_env_tag) {
        move_env_tags(registry, services, images, &results, &target.env.name, events).await;
    }
    let wanted = pinned.iter().map(|(k, v)| (k.clone(), v.digest().to_string())).collect();
    let report = Report { operation: run.operation, release: release.id, target, platform, cancelled };
    Ok(report.build(services, results, &wanted).await)
}

/// Takes the restore point, then deploys.
async fn deploy_one(
    run: Run<'_>,
    service: &Service,
    image: Option<PinnedImage>,
    release: ReleaseInfo,
    strategy: Option<Strategy>,
) -> InFlight {
    let Run { platform, target, opts, events, .. } = run;
    let mut point = RestorePoint::missing(&service.name);
    let Some(image) = image else {
        let e = Error::new(ErrorKind::Other, format!("no image resolved for {}", service.name));
        return InFlight { point, outcome: Err(DeployFailure::untouched(e)) };
    };
    match platform.restore_point(target, service).await {
        Ok(p) => point = p,
        Err(e) => {
            let e = e.context("reading what runs before the deploy");
            return InFlight { point, outcome: Err(DeployFailure::untouched(e)) };
        }
    }
    if point.exists {
        warn_missing_secrets(platform, target, service, events).await;
    }
    let mut req = DeployRequest::new(target, service, image, release);
    req.strategy = strategy;
    req.wait_timeout = opts.wait_timeout;
    req.create = opts.create;
    req.lock_wait = opts.lock_wait;
    req.restart = opts.restart;
    req.cancel = opts.cancel.clone();
    req.events = events.clone();
    let outcome = platform.deploy(&req, &mut point).await;
    InFlight { point, outcome }
}

/// After the rollout: restores what failed (and, with `--atomic`, what succeeded), or records
/// the failure where the failed release stays.
async fn put_back(
    run: Run<'_>,
    services: &[&Service],
    results: &mut Results,
    points: &BTreeMap<String, RestorePoint>,
    release: &ReleaseInfo,
) {
    let Run { platform, target, opts, events, .. } = run;
    let failed: Vec<(&str, String)> = results
        .iter()
        .filter(|(_, (r, _))| {
            matches!(r, ServiceResult::Failed | ServiceResult::Cancelled)
                || (opts.atomic && *r == ServiceResult::FailedUnchanged)
        })
        .map(|(name, (_, e))| (name.as_str(), e.as_ref().map(|e| e.message.clone()).unwrap_or_default()))
        .collect();
    if failed.is_empty() {
        return;
    }
    let first_failure = failed.first().map(|(n, why)| format!("{n} failed: {why}")).unwrap_or_default();
    let mut jobs = Vec::new();
    for s in services {
        let Some((result, err)) = results.get(&s.name) else { continue };
        let why = err.as_ref().map(|e| e.message.clone()).unwrap_or_default();
        let reason = match result {
            ServiceResult::Failed | ServiceResult::Cancelled => RestoreReason::Failed { release: release.clone(), why },
            ServiceResult::Deployed if opts.atomic => {
                RestoreReason::Atomic { release: release.clone(), why: first_failure.clone() }
            }
            _ => continue,
        };
        jobs.push((*s, reason));
    }
    if opts.on_failure == OnFailure::Leave {
        // Left in place, but recorded, so that a rollback never returns to it.
        for (s, reason) in &jobs {
            if let RestoreReason::Failed { release, why } = reason {
                record_failure(platform, target, s, release, why, events).await;
            }
        }
        return;
    }
    let restored = join_all(jobs.iter().map(|(s, reason)| async move {
        let point = points.get(&s.name).cloned().unwrap_or_else(|| RestorePoint::missing(&s.name));
        restore(platform, target, s, &point, reason.clone(), opts, events).await
    }))
    .await;
    for ((s, reason), r) in jobs.iter().zip(restored) {
        if let Some(entry) = results.get_mut(&s.name) {
            entry.0 = match (r, reason, entry.0) {
                (Restored::Yes, RestoreReason::Atomic { .. }, _) => ServiceResult::RolledBackAtomic,
                (Restored::Yes, _, _) => ServiceResult::RolledBack,
                // Stopped mid-rollout and not put back: still `cancelled`.
                (Restored::No, _, ServiceResult::Cancelled) => ServiceResult::Cancelled,
                (Restored::No, _, _) => ServiceResult::Failed,
            };
        }
    }
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
pub(crate) async fn move_env_tags(
    registry: &dyn ImageRegistry,
    services: &[&Service],
    images: &BTreeMap<String, ImageRef>,
    results: &Results,
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

async fn warn_missing_secrets(platform: &dyn Platform, target: Target<'_>, service: &Service, events: &Events) {
    let needed = platform.required_secrets(service);
    if needed.is_empty() {
        return;
    }
    match platform.secret_names(target, service).await {
        Ok(have) => {
            let missing: Vec<&str> =
                needed.iter().map(String::as_str).filter(|n| !have.iter().any(|h| h == n)).collect();
            if !missing.is_empty() {
                events.warn(
                    Some(&service.name),
                    format!(
                        "secrets declared in the manifest but not set on {}: {} (run `shipit secrets sync`)",
                        platform.kind(),
                        missing.join(", ")
                    ),
                );
            }
        }
        Err(e) => events.warn(Some(&service.name), format!("could not list secrets: {e}")),
    }
}
