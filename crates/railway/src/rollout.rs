//! One deployment on Railway: starting it exactly once, waiting for Railway's verdict, and
//! cancelling it when shipit stops waiting, so it cannot go live after shipit reported failure.

use std::task::Poll;
use std::time::Duration;

use shipit_core::http::{PollError, poll_until};
use shipit_core::{Error, ErrorKind, Events};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::{DeploymentInfo, RailwayClient};
use crate::error::RailwayError;

/// What a deploy needs to start and follow one deployment.
pub(crate) struct Deployment<'a> {
    pub client: &'a RailwayClient,
    pub project_id: &'a str,
    pub environment_id: &'a str,
    pub service_id: &'a str,
    pub service: &'a str,
    pub digest: &'a str,
    pub git_sha: Option<&'a str>,
    /// The newest deployment before this one, if any: a deployment found after a lost answer
    /// must be newer.
    pub latest_before: Option<&'a str>,
    pub poll_interval: Duration,
    pub events: &'a Events,
}

impl Deployment<'_> {
    /// Starts the deployment (`serviceInstanceDeployV2`) and answers its id. Never sent twice:
    /// after an ambiguous failure (5xx, a lost or unreadable answer) the service's newest
    /// deployment is read, and one newer than `latest_before` with this digest is the one sent.
    pub async fn start(&self) -> Result<String, Error> {
        let policy = self.client.retry_policy();
        let mut last: Option<RailwayError> = None;
        let mut delay = policy.min_delay;
        for attempt in 0..=policy.max_retries {
            if attempt > 0 {
                let asked = last.as_ref().and_then(RailwayError::retry_after).unwrap_or(delay);
                tokio::time::sleep(asked.min(policy.max_delay)).await;
                delay = delay.saturating_mul(2);
            }
            match self.client.deploy(self.service_id, self.environment_id, self.git_sha).await {
                Ok(id) => return Ok(id),
                Err(e) if e.may_have_applied() => {
                    if let Some(found) = self.find_sent().await? {
                        self.events.step(
                            self.service,
                            format!("the answer was lost, but deployment {found} was made: following it"),
                        );
                        return Ok(found);
                    }
                    last = Some(e);
                }
                Err(e) if e.is_temporary_error() => last = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last.map_or_else(|| Error::new(ErrorKind::Other, "no deployment was started"), Error::from))
    }

    /// The deployment a lost `serviceInstanceDeployV2` made, if it made one.
    async fn find_sent(&self) -> Result<Option<String>, Error> {
        let newest = self.client.deployments(self.project_id, self.environment_id, self.service_id, 1, false).await?;
        Ok(newest
            .into_iter()
            .next()
            .filter(|d| Some(d.id.as_str()) != self.latest_before && d.digest().as_deref() == Some(self.digest))
            .map(|d| d.id))
    }

    /// Waits for Railway's verdict on deployment `id`: live (SUCCESS, or SLEEPING), or failed.
    /// A deployment still in progress at the deadline, or when the user stops shipit, is
    /// cancelled.
    pub async fn wait(&self, id: &str, timeout: Duration, cancel: &CancellationToken) -> Result<DeploymentInfo, Error> {
        let deadline = Instant::now() + timeout;
        let mut last_status = String::from("unknown");
        let seen = std::sync::Mutex::new(String::new());
        let result = poll_until(deadline, self.poll_interval, cancel, || async {
            let d = self.client.deployment_once(id).await?;
            if let Ok(mut s) = seen.lock() {
                s.clone_from(&d.status);
            }
            Ok::<_, RailwayError>(verdict(d))
        })
        .await;
        if let Ok(s) = seen.lock() {
            last_status.clone_from(&s);
        }
        match result {
            Ok(Ok(d)) => Ok(d),
            Ok(Err((e, waits))) => {
                if waits {
                    self.cancel(id).await;
                }
                Err(e)
            }
            Err(PollError::Timeout { waited, .. }) => {
                self.cancel(id).await;
                Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "deployment {id} was not live after {}s (Railway says {last_status}); it was cancelled, so it cannot go live later",
                        waited.as_secs()
                    ),
                ))
            }
            Err(PollError::Cancelled) => {
                self.cancel(id).await;
                Err(Error::new(
                    ErrorKind::Cancelled,
                    format!("stopped while deployment {id} was {last_status}; it was cancelled"),
                ))
            }
            Err(PollError::Failed(e)) => Err(e.into()),
            Err(other) => Err(Error::from(other)),
        }
    }

    /// Cancels `id` (best effort, bounded): a deployment shipit gave up on must not go live.
    async fn cancel(&self, id: &str) {
        let done = tokio::time::timeout(Duration::from_secs(30), self.client.cancel(id)).await;
        match done {
            Ok(Ok(())) => self.events.step(self.service, format!("cancelled deployment {id}")),
            Ok(Err(e)) => self.events.warn(Some(self.service), format!("could not cancel deployment {id}: {e}")),
            Err(_) => self.events.warn(Some(self.service), format!("could not cancel deployment {id}: no answer")),
        }
    }
}

/// Ready when Railway has decided: the deployment, or why it failed (and whether it still waits
/// and must be cancelled).
fn verdict(d: DeploymentInfo) -> Poll<Result<DeploymentInfo, (Error, bool)>> {
    let id = d.id.clone();
    let fail = |kind, msg: String, waits| Poll::Ready(Err((Error::new(kind, msg), waits)));
    match d.status.as_str() {
        "SUCCESS" | "SLEEPING" => Poll::Ready(Ok(d)),
        "FAILED" => fail(
            ErrorKind::Unhealthy,
            format!(
                "deployment {id} failed on Railway (FAILED): it did not start, or its health check did not answer 200 within healthcheckTimeout"
            ),
            false,
        ),
        "CRASHED" => fail(ErrorKind::Unhealthy, format!("deployment {id} crashed on Railway (CRASHED)"), false),
        "NEEDS_APPROVAL" => fail(
            ErrorKind::Other,
            format!(
                "deployment {id} waits for approval in Railway (NEEDS_APPROVAL); shipit does not approve deployments, so it cancelled it"
            ),
            true,
        ),
        "REMOVED" | "REMOVING" | "SKIPPED" => fail(
            ErrorKind::Conflict,
            format!(
                "deployment {id} was replaced before it went live (Railway says {}): another deploy or a change in Railway's dashboard",
                d.status
            ),
            false,
        ),
        _ => Poll::Pending,
    }
}

impl RailwayError {
    /// Temporary and not applied (a 429): send again after waiting.
    fn is_temporary_error(&self) -> bool {
        matches!(self, RailwayError::RateLimited { .. })
    }
}
