//! One deploy on Render: started exactly once (a 202 or a lost answer is found again by listing
//! the deploys), waited for, and cancelled when shipit stops waiting.

use std::collections::BTreeSet;
use std::task::Poll;
use std::time::Duration;

use shipit_core::http::{PollError, poll_until};
use shipit_core::{Error, ErrorKind, Events};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::{Deploy, RenderClient};
use crate::error::RenderApiError;

/// How a deploy is started.
pub(crate) enum Start<'a> {
    /// `POST /deploys {imageUrl}`.
    Image(&'a str),
    /// `POST /rollback {deployId}`.
    Rollback(&'a str),
}

/// What is needed to start and follow one deploy of one service.
pub(crate) struct Rollout<'a> {
    pub client: &'a RenderClient,
    pub service_id: &'a str,
    pub service: &'a str,
    /// The image reference the deploy runs (`repo:tag@digest`).
    pub image_ref: &'a str,
    pub digest: &'a str,
    /// Deploys that existed before: one found after a 202 or a lost answer must be new.
    pub known: BTreeSet<String>,
    pub poll_interval: Duration,
    pub events: &'a Events,
}

impl Rollout<'_> {
    /// Starts the deploy once and answers its id. A 202 (queued, no body) or an ambiguous
    /// failure is resolved by listing the newest deploys for a new one of this image; only if
    /// there is none is the request sent again. A 429 is waited out (the rate limit's reset),
    /// never turned into two deploys.
    pub async fn start(&self, how: Start<'_>) -> Result<String, Error> {
        let policy = self.client.retry_policy();
        let mut last: Option<RenderApiError> = None;
        let mut delay = policy.min_delay;
        for attempt in 0..=policy.max_retries {
            if attempt > 0 {
                let wait = last.as_ref().and_then(RenderApiError::retry_after).unwrap_or(delay).min(policy.max_delay);
                if matches!(last, Some(RenderApiError::RateLimited { .. })) {
                    self.events.step(
                        self.service,
                        format!("rate limited by Render: waiting {}s for the limit to reset", wait.as_secs()),
                    );
                }
                tokio::time::sleep(wait).await;
                delay = delay.saturating_mul(2);
            }
            let sent = match how {
                Start::Image(url) => self.client.start_deploy(self.service_id, url).await,
                Start::Rollback(id) => self.client.rollback(self.service_id, id).await,
            };
            match sent {
                Ok(Some(d)) => return Ok(d.id),
                Ok(None) => {
                    if let Some(found) = self.find_new().await? {
                        self.events.step(self.service, format!("deploy {found} queued behind another one"));
                        return Ok(found);
                    }
                    return Err(Error::new(
                        ErrorKind::Other,
                        "Render queued the deploy but lists no new deploy of this image",
                    ));
                }
                Err(e) if e.may_have_applied() => {
                    if let Some(found) = self.find_new().await? {
                        self.events.step(
                            self.service,
                            format!("the answer was lost, but deploy {found} was made: following it"),
                        );
                        return Ok(found);
                    }
                    last = Some(e);
                }
                Err(e @ RenderApiError::RateLimited { .. }) => last = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last.map_or_else(|| Error::new(ErrorKind::Other, "no deploy was started"), Error::from))
    }

    /// The newest deploy not known before that runs this digest.
    pub async fn find_new(&self) -> Result<Option<String>, Error> {
        let deploys = self.client.deploys(self.service_id, 10).await?;
        Ok(deploys
            .into_iter()
            .find(|d| {
                !self.known.contains(&d.id)
                    && (d.image_ref() == Some(self.image_ref) || d.digest().as_deref() == Some(self.digest))
            })
            .map(|d| d.id))
    }

    /// Waits until deploy `id` is live or has failed. A deploy queued behind another waits
    /// within the same timeout; one still running or queued at the deadline, or when the user
    /// stops shipit, is cancelled.
    pub async fn wait(&self, id: &str, timeout: Duration, cancel: &CancellationToken) -> Result<Deploy, Error> {
        let deadline = Instant::now() + timeout;
        let seen = std::sync::Mutex::new(String::from("unknown"));
        let result = poll_until(deadline, self.poll_interval, cancel, || async {
            let d = self.client.deploy_once(self.service_id, id).await?;
            if let Ok(mut s) = seen.lock() {
                s.clone_from(&d.status);
            }
            Ok::<_, RenderApiError>(verdict(d))
        })
        .await;
        let last = seen.lock().map(|s| s.clone()).unwrap_or_default();
        match result {
            Ok(Ok(d)) => Ok(d),
            Ok(Err(e)) => Err(e),
            Err(PollError::Timeout { waited, .. }) => {
                self.cancel(id).await;
                Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "deploy {id} was not live after {}s (Render says {last}); it was cancelled, so it cannot go live later",
                        waited.as_secs()
                    ),
                ))
            }
            Err(PollError::Cancelled) => {
                self.cancel(id).await;
                Err(Error::new(ErrorKind::Cancelled, format!("stopped while deploy {id} was {last}; it was cancelled")))
            }
            Err(PollError::Failed(e)) => Err(e.into()),
            Err(other) => Err(Error::from(other)),
        }
    }

    async fn cancel(&self, id: &str) {
        match tokio::time::timeout(Duration::from_secs(30), self.client.cancel(self.service_id, id)).await {
            Ok(Ok(())) => self.events.step(self.service, format!("cancelled deploy {id}")),
            Ok(Err(e)) => self.events.warn(Some(self.service), format!("could not cancel deploy {id}: {e}")),
            Err(_) => self.events.warn(Some(self.service), format!("could not cancel deploy {id}: no answer")),
        }
    }
}

fn verdict(d: Deploy) -> Poll<Result<Deploy, Error>> {
    let id = d.id.clone();
    match d.status.as_str() {
        "live" => Poll::Ready(Ok(d)),
        "build_failed" => Poll::Ready(Err(Error::new(
            ErrorKind::Unhealthy,
            format!("deploy {id} failed on Render (build_failed): the image could not be pulled or started"),
        ))),
        "update_failed" => Poll::Ready(Err(Error::new(
            ErrorKind::Unhealthy,
            format!(
                "deploy {id} failed on Render (update_failed): the new instances did not pass their health check, or crashed"
            ),
        ))),
        "pre_deploy_failed" => Poll::Ready(Err(Error::new(
            ErrorKind::Unhealthy,
            format!("deploy {id} failed on Render (pre_deploy_failed)"),
        ))),
        "canceled" => Poll::Ready(Err(Error::new(
            ErrorKind::Conflict,
            format!("deploy {id} was cancelled on Render before it went live (by someone else, or a newer deploy)"),
        ))),
        "deactivated" => Poll::Ready(Err(Error::new(
            ErrorKind::Conflict,
            format!("deploy {id} was replaced by another deploy: another deploy or a change in Render's dashboard"),
        ))),
        _ => Poll::Pending,
    }
}
