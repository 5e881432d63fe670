//! Leases: Fly's lock on a machine, and so shipit's lock on an environment.
//!
//! A rollout leases *every* machine of the app before it changes any, one at a time in one
//! fixed order (by machine id), so two deploys racing for the same app cannot each hold half:
//! the second one stops at the first machine the other holds, having changed nothing. The
//! leases are refreshed at half their TTL while the rollout runs and released on every path
//! (in the background if the rollout future is dropped).

use std::sync::Mutex;
use std::time::Duration;

use futures::future::join_all;
use shipit_core::{Error, ErrorKind, Events};
use tokio::time::Instant;

use crate::client::{FlyClient, Machine};
use crate::error::FlyError;
use crate::rollout::{Job, cancelled_error};

/// Holds the leases of one rollout; releases them when asked, or in the background if dropped.
pub(crate) struct LeaseGuard {
    client: FlyClient,
    app: String,
    service: String,
    events: Events,
    /// (machine id, nonce); behind a lock so the refresher can read it while creates add to it.
    held: Mutex<Vec<(String, String)>>,
    /// The machine whose lease request is in flight, and our unique description: if the rollout
    /// is abandoned then, the lease may have been taken without our seeing the nonce.
    asking: Mutex<Option<String>>,
    label: String,
}

impl LeaseGuard {
    pub(crate) fn new(job: &Job<'_>) -> Self {
        Self {
            client: job.client.clone(),
            app: job.app.clone(),
            service: job.service.name.clone(),
            events: job.events.clone(),
            held: Mutex::new(Vec::new()),
            asking: Mutex::new(None),
            label: job.lease_label.clone(),
        }
    }

    fn asking(&self, id: Option<&str>) {
        if let Ok(mut a) = self.asking.lock() {
            *a = id.map(str::to_string);
        }
    }

    fn held(&self) -> Vec<(String, String)> {
        self.held.lock().map(|h| h.clone()).unwrap_or_default()
    }

    /// The nonce of our lease on machine `id`.
    pub(crate) fn nonce(&self, id: &str) -> Option<String> {
        self.held().into_iter().find(|(m, _)| m == id).map(|(_, n)| n)
    }

    /// Whether we hold machine `id`.
    pub(crate) fn holds(&self, id: &str) -> bool {
        self.nonce(id).is_some()
    }

    /// Records a lease taken some other way (a machine created with `lease_ttl`).
    pub(crate) fn add(&self, id: &str, nonce: String) {
        if let Ok(mut h) = self.held.lock() {
            h.push((id.to_string(), nonce));
        }
    }

    /// Releases every lease, in parallel.
    pub(crate) async fn release(self) {
        let held = self.held.lock().map(|mut h| std::mem::take(&mut *h)).unwrap_or_default();
        let results = join_all(held.iter().map(|(id, nonce)| self.client.release_lease(&self.app, id, nonce))).await;
        for ((id, _), r) in held.iter().zip(results) {
            if let Err(e) = r {
                self.events.warn(
                    Some(&self.service),
                    format!("could not release the lease on machine {id}: {e} (it expires by itself)"),
                );
            }
        }
    }

    /// Leases `machines` (those not held yet) in id order, waiting up to `job.lock_wait` for
    /// leases others hold. On failure the leases taken so far stay in the guard for the caller
    /// to release.
    pub(crate) async fn acquire(&self, job: &Job<'_>, machines: &[&Machine]) -> Result<(), Error> {
        let mut ids: Vec<&str> = machines.iter().map(|m| m.id.as_str()).filter(|id| !self.holds(id)).collect();
        ids.sort_unstable();
        ids.dedup();
        let deadline = Instant::now() + job.lock_wait;
        for id in ids {
            job.events.step(&job.service.name, format!("acquiring lease on machine {id}"));
            loop {
                if job.cancel.is_cancelled() {
                    return Err(cancelled_error());
                }
                self.asking(Some(id));
                let answer = job.client.acquire_lease(&job.app, id, job.lease_ttl, &job.lease_label).await;
                self.asking(None);
                match answer {
                    Ok(lease) => {
                        self.add(id, lease.nonce);
                        break;
                    }
                    Err(FlyError::Conflict { owner, .. }) => {
                        let now = Instant::now();
                        if now >= deadline {
                            let who = owner.unwrap_or_else(|| "another client".to_string());
                            let hint = if job.lock_wait.is_zero() {
                                " (pass --lock-wait to wait for it)".to_string()
                            } else {
                                format!(" (waited {}s)", job.lock_wait.as_secs())
                            };
                            return Err(Error::new(
                                ErrorKind::Conflict,
                                format!("deploy in progress by {who}: machine {id} of {} is leased{hint}", job.app),
                            ));
                        }
                        if !job.pause(job.poll_interval.min(deadline - now)).await {
                            return Err(cancelled_error());
                        }
                    }
                    Err(e) => return Err(Error::from(e).context(format!("lease on machine {id}"))),
                }
            }
        }
        Ok(())
    }

    /// Refreshes every held lease at half its TTL, for as long as the rollout runs.
    pub(crate) async fn keep(&self, ttl: Duration) {
        let every = (ttl / 2).max(Duration::from_millis(100));
        loop {
            tokio::time::sleep(every).await;
            for (id, nonce) in &self.held() {
                if let Err(e) = self.client.refresh_lease(&self.app, id, nonce, ttl).await {
                    self.events.warn(Some(&self.service), format!("could not refresh the lease on machine {id}: {e}"));
                }
            }
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let held = self.held.get_mut().map(std::mem::take).unwrap_or_default();
        let asking = self.asking.get_mut().ok().and_then(Option::take);
        if held.is_empty() && asking.is_none() {
            return;
        }
        // Dropped mid-rollout (the deploy future was abandoned, e.g. a second Ctrl-C): release
        // in the background, in parallel, tracked so the CLI waits for it before it exits. A
        // lease asked for but not answered yet is read back and released if it is ours.
        let (client, app, label) = (self.client.clone(), self.app.clone(), self.label.clone());
        shipit_core::shutdown::spawn(async move {
            let in_flight = async {
                let Some(id) = asking else { return };
                if let Ok(Some(lease)) = client.get_lease(&app, &id).await
                    && lease.description.as_deref() == Some(label.as_str())
                {
                    let _ = client.release_lease(&app, &id, &lease.nonce).await;
                }
            };
            let held = join_all(held.iter().map(|(id, nonce)| client.release_lease(&app, id, nonce)));
            futures::join!(held, in_flight);
        });
    }
}
