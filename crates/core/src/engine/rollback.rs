//! `rollback`: a release chosen from the platform's history, put back through the same
//! [`Platform::restore`] a failed deploy uses.

use std::collections::BTreeMap;

use futures::future::join_all;

use crate::error::{Error, ErrorKind};
use crate::events::Event;
use crate::platform::{Release, ReleaseStatus, RestoreReason, RestoreRequest};

use super::release::{Run, move_env_tags};
use super::report::{Report, Results, ServiceResult, Summary};

/// Which release `rollback` returns to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackTo {
    /// The newest release older than the live one that passed its health gate.
    Previous,
    /// A release by id (shipit's or the platform's).
    Release(String),
    /// The newest successful release of a git commit (prefix match).
    Sha(String),
}

/// Picks the release to return to from `releases` (newest first). A release that failed or
/// never passed its health gate is never chosen, whatever the platform.
pub fn pick_release(releases: &[Release], to: &RollbackTo) -> Result<Release, Error> {
    let live = releases.iter().position(|r| r.status == ReleaseStatus::Live);
    let live_digest = live.and_then(|i| releases.get(i)).and_then(|r| r.digest.clone());
    let refuse = |r: &Release| match r.status {
        ReleaseStatus::Failed => Err(Error::new(
            ErrorKind::InvalidConfig,
            format!("release {} failed or never passed its health gate: it is never a rollback target", r.id),
        )),
        ReleaseStatus::Live => {
            Err(Error::new(ErrorKind::InvalidConfig, format!("release {} is the one running now", r.id)))
        }
        ReleaseStatus::InProgress => {
            Err(Error::new(ErrorKind::InvalidConfig, format!("release {} is still rolling out", r.id)))
        }
        ReleaseStatus::Superseded if r.digest.is_none() => {
            Err(Error::new(ErrorKind::NotFound, format!("release {} has no recorded image digest", r.id)))
        }
        ReleaseStatus::Superseded => Ok(r.clone()),
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
            .and_then(refuse),
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

/// Returns the selected services to an earlier release, then (with a registry) points the
/// environment's tag at what runs again. Every target is chosen, and every restore point
/// taken, before anything changes.
pub(crate) async fn run_rollback(run: Run<'_>, to: &RollbackTo) -> Result<Summary, Error> {
    let Run { platform, registry, target, opts, events, .. } = run;
    let services = super::select(target, &opts.services)?;
    let mut picks = Vec::new();
    for s in &services {
        let releases = platform.releases(target, s).await?;
        let pick = pick_release(&releases, to).map_err(|e| e.context(&s.name))?;
        let point = platform.release_point(target, s, &pick).await.map_err(|e| e.context(&s.name))?;
        picks.push((*s, pick, point));
    }
    let release_label = picks.first().map(|(_, r, _)| r.id.clone()).unwrap_or_default();
    events.emit(Event::Started {
        operation: "rollback".to_string(),
        release: release_label.clone(),
        env: target.env.name.clone(),
        platform: platform.kind(),
        services: services.iter().map(|s| s.name.clone()).collect(),
    });
    let outcomes = join_all(picks.iter().map(|(s, to, point)| async move {
        events.emit(Event::RollbackStarted {
            service: s.name.clone(),
            release: Some(to.id.clone()),
            digest: to.digest.clone().unwrap_or_default(),
        });
        let mut req = RestoreRequest::new(target, s, RestoreReason::Rollback);
        req.wait_timeout = opts.wait_timeout;
        req.lock_wait = opts.lock_wait;
        req.cancel = opts.cancel.clone();
        req.events = events.clone();
        platform.restore(&req, point).await
    }))
    .await;

    let mut results: Results = BTreeMap::new();
    let mut images = BTreeMap::new();
    let mut wanted = BTreeMap::new();
    for ((s, to, _), outcome) in picks.iter().zip(outcomes) {
        let digest = to.digest.clone().unwrap_or_default();
        images.insert(s.name.clone(), s.image.with_digest(&digest));
        wanted.insert(s.name.clone(), digest);
        let entry = match outcome {
            Ok(d) => {
                events.emit(Event::RollbackSucceeded { service: s.name.clone(), digest: d.digest });
                (if d.changed { ServiceResult::Deployed } else { ServiceResult::Unchanged }, None)
            }
            Err(f) => {
                events.emit(Event::RollbackFailed { service: s.name.clone(), reason: f.error.message.clone() });
                let r = if !f.touched {
                    ServiceResult::FailedUnchanged
                } else if f.error.kind == ErrorKind::Cancelled {
                    ServiceResult::Cancelled
                } else {
                    ServiceResult::Failed
                };
                (r, Some(f.error))
            }
        };
        results.insert(s.name.clone(), entry);
    }
    if let Some(registry) = registry.filter(|_| opts.move_env_tag) {
        move_env_tags(registry, &services, &images, &results, &target.env.name, events).await;
    }
    let report = Report {
        operation: "rollback",
        release: release_label,
        target,
        platform,
        cancelled: opts.cancel.is_cancelled(),
    };
    Ok(report.build(&services, results, &wanted).await)
}
