//! The deploy engine: tags to digests, services in dependency order, a health gate on each,
//! and the last good release put back when something fails.
//!
//! It lives in core so that library users get the same behaviour as the CLI. It orders,
//! decides and reports; it knows no platform's mechanism. For each service it takes the
//! platform's [`RestorePoint`](crate::RestorePoint) before any change, asks the platform to
//! deploy, and when a deploy that touched something fails, asks the platform to restore that
//! point (image and settings). The verdict it returns ([`Summary`]) is built from the
//! platform's status *after* the operation, not from what the engine hoped happened.
//!
//! The modules, one job each:
//!
//! - [`options`]: what a caller can ask ([`DeployOptions`], [`OnFailure`]).
//! - `order`: which services go first (a service that takes another's URL waits for it).
//! - `release`: one release from tags or digests to the verdict.
//! - `restore`: putting a failed service back, or recording the failure where it stays.
//! - `rollback`: choosing an earlier release ([`pick_release`]) and returning to it.
//! - [`report`]: the verdict ([`Outcome`], [`ServiceResult`], [`Summary`]).
//!
//! Concurrency: services of one dependency level are deployed at the same time; the engine
//! adds no waiting of its own.

use std::collections::{BTreeMap, BTreeSet};

use futures::future::join_all;
use secrecy::SecretString;

use crate::error::{Error, ErrorKind};
use crate::events::Events;
use crate::image::ImageRef;
use crate::model::Service;
use crate::platform::{ImageRegistry, Platform, Resolver, SecretsSynced, ServicePlan, Target};

pub mod options;
mod order;
mod release;
pub mod report;
mod restore;
mod rollback;

pub use options::{DeployOptions, OnFailure};
pub use report::{
    Outcome, ServiceReport, ServiceResult, Summary, exit_code_for_error, exit_code_for_summary, interrupted, verdict,
};
pub use rollback::{RollbackTo, pick_release};

use release::{Images, Run};

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
    let run = Run { platform, registry: Some(registry), target, operation: "deploy", opts, events };
    release::run_release(run, &services, Images::Tag(tag)).await
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
    let run = Run { platform, registry, target, operation, opts, events };
    release::run_release(run, &services, Images::Pinned(images)).await
}

/// One side of a promotion: a platform and an environment on it.
#[derive(Clone, Copy)]
pub struct Side<'a> {
    /// The platform.
    pub platform: &'a dyn Platform,
    /// The environment.
    pub target: Target<'a>,
}

/// Deploys to environment `to` exactly the digests environment `from` runs now (read from the
/// platform's status, not from a tag that may have moved), through the same health-gated path,
/// then moves `to`'s tag. Nothing is rebuilt or re-pushed; the two sides may be on different
/// platforms.
pub async fn promote(
    from: Side<'_>,
    to: Side<'_>,
    registry: Option<&dyn ImageRegistry>,
    opts: &DeployOptions,
    events: &Events,
) -> Result<Summary, Error> {
    if from.target.env.name == to.target.env.name {
        return Err(Error::new(ErrorKind::InvalidConfig, format!("cannot promote {} to itself", from.target.env.name)));
    }
    let services = select(to.target, &opts.services)?;
    let mut images = BTreeMap::new();
    let mut shas = BTreeSet::new();
    let from_env = &from.target.env.name;
    for s in &services {
        let Some(source) = from.target.env.services.get(&s.name) else {
            return Err(Error::new(ErrorKind::InvalidConfig, format!("{from_env} has no service {}", s.name)));
        };
        let st = from.platform.status(from.target, source).await?;
        if !st.exists {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("{} is not deployed in {from_env}: nothing to promote (deploy it there first)", s.name),
            ));
        }
        let Some(digest) = st.digest.clone() else {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "{} runs several digests in {from_env} (a rollout in progress?): promote when it has settled",
                    s.name
                ),
            ));
        };
        if !st.healthy() {
            events.warn(
                Some(&s.name),
                format!("not every instance in {from_env} is healthy; promoting the digest it runs"),
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
    let run = Run { platform: to.platform, registry, target: to.target, operation: "promote", opts: &opts, events };
    release::run_release(run, &services, Images::Pinned(&images)).await
}

/// Returns services to an earlier release through the health-gated restore path, then (with a
/// registry) points the environment's tag at what runs again.
pub async fn rollback(
    platform: &dyn Platform,
    registry: Option<&dyn ImageRegistry>,
    target: Target<'_>,
    to: &RollbackTo,
    opts: &DeployOptions,
    events: &Events,
) -> Result<Summary, Error> {
    let run = Run { platform, registry, target, operation: "rollback", opts, events };
    rollback::run_rollback(run, to).await
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

/// The secrets of a service a deploy would create (or give its first release): what it needs
/// that the platform lacks, split by whether the caller has a value for it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct FirstDeploySecrets {
    /// Service.
    pub service: String,
    /// Not on the platform, and a value is at hand (the CLI: in the process environment).
    pub at_hand: Vec<String>,
    /// Neither on the platform nor at hand: the service would start without them.
    pub missing: Vec<String>,
}

/// For each selected service that nothing runs for yet (no app or service, or one with nothing
/// deployed), the secrets it declares ([`Platform::required_secrets`]) that the platform does
/// not have, split by `has` (whether the caller has a value). Reads only; services that run, or
/// lack nothing, are left out.
pub async fn first_deploy_secrets(
    platform: &dyn Platform,
    target: Target<'_>,
    services: &[String],
    has: impl Fn(&str) -> bool,
) -> Result<Vec<FirstDeploySecrets>, Error> {
    let mut out = Vec::new();
    for s in select(target, services)? {
        let needed = platform.required_secrets(s);
        if needed.is_empty() {
            continue;
        }
        let st = platform.status(target, s).await?;
        let runs = st.exists && (st.digest.is_some() || st.release.is_some() || !st.instances.is_empty());
        if runs {
            continue;
        }
        let on_platform = if st.exists { platform.secret_names(target, s).await? } else { Vec::new() };
        let lacking = needed.into_iter().filter(|n| !on_platform.contains(n));
        let (at_hand, missing): (Vec<String>, Vec<String>) = lacking.partition(|n| has(n));
        if !at_hand.is_empty() || !missing.is_empty() {
            out.push(FirstDeploySecrets { service: s.name.clone(), at_hand, missing });
        }
    }
    Ok(out)
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
