//! The health gate of one machine: started, then every check passing twice in a row, before
//! the wait timeout; a crash fails it at once.
//!
//! `wait?state=started` is only a faster way to learn that a machine started: the verdict comes
//! from what `GET /machines/{id}` shows (state, checks, exit events), polled alongside.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::Poll;
use std::time::Duration;

use shipit_core::http::{PollError, error_text, poll_until};
use shipit_core::{Error, ErrorKind, Event};
use tokio::time::Instant;

use crate::client::{FlyClient, Machine};
use crate::error::FlyError;
use crate::rollout::{Job, cancelled_error};

/// Longest pause between two `wait` calls that failed.
const WAIT_BACKOFF_CAP: Duration = Duration::from_secs(10);

/// Consecutive healthy observations that pass the gate.
const HEALTHY_POLLS: u32 = 2;

/// A machine whose new config was sent and that now has to pass its gate.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub id: String,
    pub region: String,
    pub instance_id: Option<String>,
    /// Exit events up to this time (unix ms) happened before the change.
    pub baseline: i64,
}

impl Pending {
    /// Whether `m` is the instance the change started (unknown ids count as yes).
    fn is_new_instance(&self, m: &Machine) -> bool {
        match (&self.instance_id, &m.instance_id) {
            (Some(want), Some(have)) => want == have,
            _ => true,
        }
    }
}

/// Whether every configured check reports and passes.
pub(crate) fn checks_pass(m: &Machine, expected: usize) -> bool {
    m.checks.len() >= expected && m.checks.iter().all(|c| c.status == "passing")
}

/// Why a machine counts as crashed since the change, if it does: an exit that nobody asked for,
/// or the new instance stopped/failed/destroyed.
pub(crate) fn crash_reason(m: &Machine, p: &Pending) -> Option<String> {
    let exit = m
        .events
        .iter()
        .filter(|e| e.kind == "exit" && e.timestamp.unwrap_or(0) > p.baseline && !e.requested_stop())
        .max_by_key(|e| e.timestamp);
    if let Some(e) = exit {
        let code = e.exit_code().map_or_else(|| "unknown".to_string(), |c| c.to_string());
        return Some(format!("machine {} exited with code {code}", m.id));
    }
    (p.is_new_instance(m)
        && matches!(m.state.as_str(), "stopped" | "failed" | "destroyed" | "destroying" | "suspended"))
    .then(|| format!("machine {} is {} after the update", m.id, m.state))
}

/// Why a machine is not healthy yet: its state, or each failing check with its output.
fn not_healthy(m: &Machine, expected: usize) -> String {
    if m.state != "started" {
        return format!("machine {} is {}", m.id, if m.state.is_empty() { "in an unknown state" } else { &m.state });
    }
    let failing: Vec<String> = m
        .checks
        .iter()
        .filter(|c| c.status != "passing")
        .map(|c| {
            let output = c
                .output
                .as_deref()
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(|o| format!(": {}", error_text(o, 200)));
            format!("check {:?} is {}{}", c.name, c.status, output.unwrap_or_default())
        })
        .collect();
    if !failing.is_empty() {
        return format!("machine {}: {}", m.id, failing.join("; "));
    }
    format!("machine {}: {} of {expected} health checks reported", m.id, m.checks.len())
}

/// Gates one machine.
pub(crate) async fn gate(job: &Job<'_>, p: &Pending, expected: usize) -> Result<(), Error> {
    let deadline = Instant::now() + job.wait_timeout;
    let limit = job.wait_timeout;
    let client = &job.client;
    // Started: whichever learns it first, `wait` or a status read. Only the status reads can
    // fail the gate; a slow or failing `wait` just stops helping.
    tokio::select! {
        r = started_by_status(job, p, deadline) => r?,
        r = wait_started(client, &job.app, p, deadline, job.poll_interval) => r?,
    }
    // Healthy twice in a row: a flapping check does not pass the gate. Decided by what the
    // machine shows; a failing status call backs off (poll_until) until the deadline.
    let passed = AtomicU32::new(0);
    let last: Mutex<Option<Machine>> = Mutex::new(None);
    let polled = poll_until(deadline, job.poll_interval, &job.cancel, || async {
        let m = client
            .get_machine_once(&job.app, &p.id)
            .await
            .map_err(|e| Error::from(e).context(format!("machine {}", p.id)))?;
        if let Some(why) = crash_reason(&m, p) {
            return Err(Error::new(ErrorKind::Unhealthy, why));
        }
        let n = if m.state == "started" && checks_pass(&m, expected) {
            passed.fetch_add(1, Ordering::SeqCst) + 1
        } else {
            passed.store(0, Ordering::SeqCst);
            0
        };
        if let Ok(mut l) = last.lock() {
            *l = Some(m);
        }
        Ok(if n >= HEALTHY_POLLS { Poll::Ready(()) } else { Poll::Pending })
    })
    .await;
    match polled {
        Ok(()) => {
            job.events.emit(Event::InstanceHealthy { service: job.service.name.clone(), instance: p.id.clone() });
            Ok(())
        }
        Err(PollError::Cancelled) => Err(cancelled_error()),
        Err(PollError::Failed(e)) => Err(e),
        Err(PollError::Timeout { last_error: Some(e), attempts, .. }) => Err(Error::new(
            ErrorKind::Transient,
            format!(
                "machine {}: its status could not be read for {}s ({attempts} tries): {e}",
                p.id,
                limit.as_secs_f32()
            ),
        )),
        Err(PollError::Timeout { .. }) => {
            let seen = last.lock().ok().and_then(|l| l.clone());
            let why = match seen.as_ref() {
                Some(m) => not_healthy(m, expected),
                None => format!("machine {}: no status was read", p.id),
            };
            Err(Error::new(ErrorKind::Timeout, format!("not healthy after {}s: {why}", limit.as_secs_f32())))
        }
        Err(other) => Err(other.into()),
    }
}

/// Reads the machine until it shows the new instance started; a crash fails at once.
async fn started_by_status(job: &Job<'_>, p: &Pending, deadline: Instant) -> Result<(), Error> {
    let last: Mutex<Option<String>> = Mutex::new(None);
    let polled = poll_until(deadline, job.poll_interval, &job.cancel, || async {
        let m = job.client.get_machine_once(&job.app, &p.id).await.map_err(Error::from)?;
        if let Some(why) = crash_reason(&m, p) {
            return Err(Error::new(ErrorKind::Unhealthy, why));
        }
        if let Ok(mut l) = last.lock() {
            *l = Some(if m.state.is_empty() { "in an unknown state".to_string() } else { m.state.clone() });
        }
        Ok(if m.state == "started" && p.is_new_instance(&m) { Poll::Ready(()) } else { Poll::Pending })
    })
    .await;
    let limit = job.wait_timeout.as_secs_f32();
    match polled {
        Ok(()) => Ok(()),
        Err(PollError::Cancelled) => Err(cancelled_error()),
        Err(PollError::Failed(e)) => Err(e.context(format!("machine {}", p.id))),
        Err(PollError::Timeout { last_error: Some(e), attempts, .. }) => Err(Error::new(
            ErrorKind::Transient,
            format!(
                "machine {} ({}): its status could not be read for {limit}s ({attempts} tries): {e}",
                p.id, p.region
            ),
        )),
        Err(PollError::Timeout { .. }) => {
            let seen = last.lock().ok().and_then(|l| l.clone()).unwrap_or_else(|| "never read".to_string());
            Err(Error::new(
                ErrorKind::Timeout,
                format!("machine {} ({}) did not start within {limit}s (last seen: {seen})", p.id, p.region),
            ))
        }
        Err(other) => Err(other.into()),
    }
}

/// `wait?state=started`, again after each 408, until it answers that the machine started.
/// Failures back off (capped) and never fail the gate: only a refused token ends it. When Fly
/// refuses to wait (a machine that failed), it stops and leaves the verdict to the status reads.
async fn wait_started(
    client: &FlyClient,
    app: &str,
    p: &Pending,
    deadline: Instant,
    poll: Duration,
) -> Result<(), Error> {
    let mut backoff = poll.max(Duration::from_millis(10));
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return std::future::pending().await;
        }
        match client.wait(app, &p.id, "started", left.min(Duration::from_secs(60)), p.instance_id.as_deref()).await {
            Ok(()) => return Ok(()),
            Err(FlyError::WaitTimeout { .. }) => backoff = poll.max(Duration::from_millis(10)),
            Err(e) if e.kind() == ErrorKind::Unauthorized => return Err(e.into()),
            Err(e) if e.kind().is_temporary() => {
                tokio::time::sleep(e.retry_after().unwrap_or(backoff).min(WAIT_BACKOFF_CAP)).await;
                backoff = (backoff * 2).min(WAIT_BACKOFF_CAP);
            }
            Err(_) => return std::future::pending().await,
        }
    }
}
