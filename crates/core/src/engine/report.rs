//! The verdict: what a deploy, promote or rollback came to, built from the platform's status
//! *after* the operation, not from what the engine hoped happened.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::{Error, ErrorKind};
use crate::http::Scrubber;
use crate::model::{PlatformKind, Service};
use crate::platform::{Platform, ServiceStatus, Target};

/// What the whole operation came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every service runs the new release and is healthy.
    Succeeded,
    /// Something failed; every affected service runs its previous release again.
    RolledBack,
    /// Some services run the new release and the others failed but run their previous release
    /// (put back, or never changed): no `--atomic`, so the environment runs a mix of the two.
    Partial,
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
    /// Why what runs is unknown, when the platform's status could not be read afterwards (a
    /// refused token, an outage): the `running_*` fields are then empty, not "nothing".
    pub status_error: Option<String>,
    /// Failure kind, when it failed.
    pub error_kind: Option<ErrorKind>,
    /// Failure message, when it failed.
    pub error: Option<String>,
    /// Its public URL, for a web service (one with a port) the platform gives one, from the
    /// platform's status after the operation.
    pub url: Option<String>,
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
    pub platform: PlatformKind,
    /// The verdict.
    pub outcome: Outcome,
    /// Per service.
    pub services: Vec<ServiceReport>,
}

impl Summary {
    /// This summary with every text field scrubbed by `scrubber`, for showing it.
    pub fn scrubbed(&self, scrubber: &Scrubber) -> Summary {
        let s = |text: &String| scrubber.scrub(text);
        let opt = |text: &Option<String>| text.as_ref().map(|t| scrubber.scrub(t));
        Summary {
            operation: s(&self.operation),
            release: s(&self.release),
            env: s(&self.env),
            platform: self.platform,
            outcome: self.outcome,
            services: self
                .services
                .iter()
                .map(|r| ServiceReport {
                    service: s(&r.service),
                    result: r.result,
                    target_digest: opt(&r.target_digest),
                    running_digest: opt(&r.running_digest),
                    running_release: opt(&r.running_release),
                    running_digests: r.running_digests.iter().map(s).collect(),
                    status_error: opt(&r.status_error),
                    error_kind: r.error_kind,
                    error: opt(&r.error),
                    url: opt(&r.url),
                })
                .collect(),
        }
    }

    /// The most telling failure kind, if anything failed.
    pub fn failure_kind(&self) -> Option<ErrorKind> {
        let kinds: Vec<ErrorKind> = self.services.iter().filter_map(|s| s.error_kind).collect();
        [ErrorKind::Unauthorized, ErrorKind::Conflict, ErrorKind::Timeout, ErrorKind::Unhealthy]
            .into_iter()
            .find(|k| kinds.contains(k))
            .or_else(|| kinds.first().copied())
    }
}

/// The verdict for a set of service results.
pub fn verdict(results: &[ServiceResult], errors: &[Option<ErrorKind>], cancelled: bool) -> Outcome {
    use ServiceResult::*;
    if cancelled {
        return Outcome::Cancelled;
    }
    if results.iter().all(|r| matches!(r, Deployed | Unchanged)) {
        return Outcome::Succeeded;
    }
    if results.iter().all(|r| matches!(r, Unchanged | FailedUnchanged | Skipped)) {
        return Outcome::NothingChanged;
    }
    if results.iter().any(|r| matches!(r, Failed | Cancelled)) {
        return Outcome::Failed;
    }
    if results.iter().any(|r| matches!(r, Deployed)) {
        return Outcome::Partial;
    }
    if errors.contains(&Some(ErrorKind::Timeout)) {
        return Outcome::TimedOut;
    }
    Outcome::RolledBack
}

/// Per-service results as the engine collects them.
pub(crate) type Results = BTreeMap<String, (ServiceResult, Option<Error>)>;

/// What one operation reports: the results, checked against what runs afterwards.
pub(crate) struct Report<'a> {
    pub operation: &'a str,
    pub release: String,
    pub target: Target<'a>,
    pub platform: &'a dyn Platform,
    pub cancelled: bool,
}

impl Report<'_> {
    /// Builds the summary; `wanted` is the digest each service was to run.
    pub async fn build(
        self,
        services: &[&Service],
        mut results: Results,
        wanted: &BTreeMap<String, String>,
    ) -> Summary {
        let after = statuses(self.platform, self.target, services).await;
        let mut reports = Vec::new();
        for s in services {
            let (result, err) = results.remove(&s.name).unwrap_or((ServiceResult::Skipped, None));
            let (now, status_error) = match after.get(&s.name) {
                Some(Ok(st)) => (Some(st), None),
                Some(Err(e)) => (None, Some(e.message.clone())),
                None => (None, None),
            };
            reports.push(ServiceReport {
                service: s.name.clone(),
                result,
                target_digest: wanted.get(&s.name).cloned(),
                running_digest: now.and_then(|n| n.digest.clone()),
                running_release: now.and_then(|n| n.release.clone()),
                running_digests: distinct_digests(now),
                status_error,
                error_kind: err.as_ref().map(|e| e.kind),
                error: err.map(|e| e.message),
                // Only a web service is reached at a URL; a worker has none.
                url: now.filter(|_| s.port.is_some()).and_then(|n| n.url.clone()),
            });
        }
        let kinds: Vec<ServiceResult> = reports.iter().map(|r| r.result).collect();
        let errors: Vec<Option<ErrorKind>> = reports.iter().map(|r| r.error_kind).collect();
        Summary {
            operation: self.operation.to_string(),
            release: self.release,
            env: self.target.env.name.clone(),
            platform: self.platform.kind(),
            outcome: verdict(&kinds, &errors, self.cancelled),
            services: reports,
        }
    }
}

/// The verdict of an operation that was abandoned (told to quit at once): every service
/// `cancelled`, with what runs now read from the platform. `operation` names what was stopped.
pub async fn interrupted(
    platform: &dyn Platform,
    target: Target<'_>,
    services: &[&Service],
    operation: &str,
) -> Summary {
    let results: Results = services.iter().map(|s| (s.name.clone(), (ServiceResult::Cancelled, None))).collect();
    let report = Report { operation, release: String::new(), target, platform, cancelled: true };
    report.build(services, results, &BTreeMap::new()).await
}

/// What runs for each service now, or why it could not be read.
async fn statuses(
    platform: &dyn Platform,
    target: Target<'_>,
    services: &[&Service],
) -> BTreeMap<String, Result<ServiceStatus, Error>> {
    let all = futures::future::join_all(
        services.iter().map(|s| async move { (s.name.clone(), platform.status(target, s).await) }),
    )
    .await;
    all.into_iter().collect()
}

fn distinct_digests(status: Option<&ServiceStatus>) -> Vec<String> {
    let mut d: Vec<String> =
        status.map(|s| s.instances.iter().filter_map(|i| i.digest.clone()).collect()).unwrap_or_default();
    d.sort();
    d.dedup();
    d
}

/// The process exit code for the verdict of a deploy, promote or rollback: the table of
/// `docs/cli.md` ("Exit codes"). The CLI's `Exit` names these codes; the fault matrix of the
/// testkit checks them, so both read this one mapping.
///
/// `succeeded` 0, `timed_out` 3, `failed` (not every service put back) 7, `partial` 1,
/// `cancelled` 130; `nothing_changed` by its cause (5 for a refused token, 6 for a held lock, 4
/// for bad input or something missing, else 1) and `rolled_back` likewise (5, 6, 4 for bad input,
/// else 1).
pub fn exit_code_for_summary(summary: &Summary) -> u8 {
    match summary.outcome {
        Outcome::Succeeded => 0,
        Outcome::TimedOut => 3,
        Outcome::Failed => 7,
        Outcome::Partial => 1,
        Outcome::Cancelled => 130,
        Outcome::NothingChanged => match summary.failure_kind() {
            Some(ErrorKind::Unauthorized) => 5,
            Some(ErrorKind::Conflict) => 6,
            Some(ErrorKind::InvalidConfig | ErrorKind::Unsupported | ErrorKind::NotFound) => 4,
            _ => 1,
        },
        Outcome::RolledBack => match summary.failure_kind() {
            Some(ErrorKind::Unauthorized) => 5,
            Some(ErrorKind::Conflict) => 6,
            Some(ErrorKind::InvalidConfig | ErrorKind::Unsupported) => 4,
            _ => 1,
        },
    }
}

/// The process exit code for an error that stopped a command before it changed anything
/// (`docs/cli.md`, "Exit codes"): 5 unauthorized, 6 conflict, 4 bad input, unsupported or not
/// found, 3 timeout, 130 cancelled, else 1.
pub fn exit_code_for_error(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::Unauthorized => 5,
        ErrorKind::Conflict => 6,
        ErrorKind::InvalidConfig | ErrorKind::Unsupported | ErrorKind::NotFound => 4,
        ErrorKind::Timeout => 3,
        ErrorKind::Cancelled => 130,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::ServiceResult::*;
    use super::*;

    #[test]
    fn verdicts() {
        let v = |r: &[ServiceResult]| verdict(r, &vec![None; r.len()], false);
        assert_eq!(v(&[Deployed, Unchanged]), Outcome::Succeeded);
        assert_eq!(v(&[FailedUnchanged, Skipped]), Outcome::NothingChanged);
        assert_eq!(v(&[RolledBack, Deployed]), Outcome::Partial);
        assert_eq!(v(&[RolledBack, RolledBackAtomic]), Outcome::RolledBack);
        assert_eq!(v(&[RolledBack, Failed]), Outcome::Failed);
        assert_eq!(v(&[Deployed, FailedUnchanged]), Outcome::Partial);
        assert_eq!(verdict(&[RolledBack], &[Some(ErrorKind::Timeout)], false), Outcome::TimedOut);
        assert_eq!(verdict(&[Deployed], &[None], true), Outcome::Cancelled);
    }
}
