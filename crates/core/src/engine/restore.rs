//! Putting a service back after a failed deploy: the engine decides, the platform restores.
//!
//! A failure that touched nothing needs no restore (what ran still runs). One that did is put
//! back to the restore point taken before the change, through [`Platform::restore`], which puts
//! back the image *and* the settings the deploy moved. With `--on-failure leave`, or when there
//! was nothing to go back to, the failed release is only recorded as failed
//! ([`Platform::mark_failed`]), so a later `rollback` never chooses it.

use crate::error::Error;
use crate::events::{Event, Events};
use crate::model::Service;
use crate::platform::{Platform, ReleaseInfo, RestorePoint, RestoreReason, RestoreRequest, Target};

use super::options::DeployOptions;

/// How a restore went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Restored {
    /// The point's release runs again.
    Yes,
    /// It could not be put back (or there was nothing to put back).
    No,
}

/// Puts `service` back to `point` because of `reason`.
pub(crate) async fn restore(
    platform: &dyn Platform,
    target: Target<'_>,
    service: &Service,
    point: &RestorePoint,
    reason: RestoreReason,
    opts: &DeployOptions,
    events: &Events,
) -> Restored {
    let name = &service.name;
    let Some(release) = point.release.as_ref().filter(|r| r.digest.is_some()) else {
        let why = if point.exists {
            "nothing to roll back to: no single earlier release was running"
        } else {
            "nothing to roll back to: it had no earlier release"
        };
        events.emit(Event::RollbackFailed { service: name.clone(), reason: why.to_string() });
        if let Some(failed) = reason.failed_release() {
            record_failure(platform, target, service, failed, why, events).await;
        }
        return Restored::No;
    };
    events.emit(Event::RollbackStarted {
        service: name.clone(),
        release: Some(release.id.clone()),
        digest: release.digest.clone().unwrap_or_default(),
    });
    let mut req = RestoreRequest::new(target, service, reason);
    req.wait_timeout = opts.wait_timeout;
    req.lock_wait = opts.restore_lock_wait();
    req.events = events.clone();
    // A restore is not cancelled by the signal that may have stopped the deploy: it is what
    // leaves the service on a known image.
    match platform.restore(&req, point).await {
        Ok(d) => {
            events.emit(Event::RollbackSucceeded { service: name.clone(), digest: d.digest });
            Restored::Yes
        }
        Err(f) => {
            events.emit(Event::RollbackFailed { service: name.clone(), reason: f.error.message });
            Restored::No
        }
    }
}

/// Records `release` as failed on `service`; a failure to record it is a warning.
pub(crate) async fn record_failure(
    platform: &dyn Platform,
    target: Target<'_>,
    service: &Service,
    release: &ReleaseInfo,
    why: &str,
    events: &Events,
) {
    if let Err(e) = platform.mark_failed(target, service, release, why).await {
        warn_unrecorded(events, service, release, &e);
    }
}

fn warn_unrecorded(events: &Events, service: &Service, release: &ReleaseInfo, e: &Error) {
    events.warn(
        Some(&service.name),
        format!("could not record release {} as failed ({e}): `shipit rollback` may offer it", release.id),
    );
}
