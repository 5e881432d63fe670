//! The health gate of one machine: started, then every check passing twice in a row, before
//! the wait timeout; a crash fails it at once.
//!
//! `wait?state=started` is only a faster way to learn that a machine started: the verdict comes
//! from what `GET /machines/{id}` shows (state, checks, exit events), polled alongside.

use std::time::Duration;

use shipit_core::{Error, ErrorKind, Event};
use tokio::time::Instant;

use crate::client::{FlyClient, Machine};
use crate::error::FlyError;
use crate::rollout::{Job, cancelled_error};

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
    let new_instance = match (&p.instance_id, &m.instance_id) {
        (Some(want), Some(have)) => want == have,
        _ => true,
    };
    (new_instance && matches!(m.state.as_str(), "stopped" | "failed" | "destroyed" | "destroying" | "suspended"))
        .then(|| format!("machine {} is {} after the update", m.id, m.state))
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max { s.to_string() } else { format!("{}…", s.chars().take(max).collect::<String>()) }
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
            let output =
                c.output.as_deref().map(str::trim).filter(|o| !o.is_empty()).map(|o| format!(": {}", shorten(o, 200)));
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
    tokio::select! {
        () = job.cancel.cancelled() => return Err(cancelled_error()),
        () = tokio::time::sleep_until(deadline) => {
            return Err(Error::new(ErrorKind::Timeout, format!("machine {} ({}) did not start within {}s", p.id, p.region, limit.as_secs_f32())));
        }
        r = wait_started(client, &job.app, p, deadline, job.poll_interval) => r?,
        e = watch_for_crash(client, &job.app, p, job.poll_interval) => return Err(e),
    }
    // Healthy twice in a row: a flapping check does not pass the gate.
    let mut passed = 0;
    loop {
        let m = tokio::select! {
            () = job.cancel.cancelled() => return Err(cancelled_error()),
            m = client.get_machine(&job.app, &p.id) => m.map_err(|e| Error::from(e).context(format!("machine {}", p.id)))?,
        };
        if let Some(why) = crash_reason(&m, p) {
            return Err(Error::new(ErrorKind::Unhealthy, why));
        }
        if m.state == "started" && checks_pass(&m, expected) {
            passed += 1;
            if passed >= HEALTHY_POLLS {
                job.events.emit(Event::InstanceHealthy { service: job.service.name.clone(), instance: p.id.clone() });
                return Ok(());
            }
        } else {
            passed = 0;
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::new(
                ErrorKind::Timeout,
                format!("not healthy after {}s: {}", limit.as_secs_f32(), not_healthy(&m, expected)),
            ));
        }
        if !job.pause(job.poll_interval.min(deadline - now)).await {
            return Err(cancelled_error());
        }
    }
}

/// `wait?state=started`, again after each 408, until the deadline.
async fn wait_started(
    client: &FlyClient,
    app: &str,
    p: &Pending,
    deadline: Instant,
    poll: Duration,
) -> Result<(), Error> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.wait(app, &p.id, "started", left.min(Duration::from_secs(60)), p.instance_id.as_deref()).await {
            Ok(()) => return Ok(()),
            Err(FlyError::WaitTimeout { .. }) => {
                // Not started yet: crashed, or still starting?
                if let Ok(m) = client.get_machine(app, &p.id).await
                    && let Some(why) = crash_reason(&m, p)
                {
                    return Err(Error::new(ErrorKind::Unhealthy, why));
                }
            }
            Err(e) if e.kind().is_temporary() => tokio::time::sleep(poll).await,
            Err(e) => {
                // Fly refuses to wait on a machine that failed: say why.
                if let Ok(m) = client.get_machine(app, &p.id).await
                    && let Some(why) = crash_reason(&m, p)
                {
                    return Err(Error::new(ErrorKind::Unhealthy, why));
                }
                return Err(Error::from(e).context(format!("waiting for machine {} to start", p.id)));
            }
        }
    }
}

/// Polls the machine while `wait` blocks, so that a crash is seen at once.
async fn watch_for_crash(client: &FlyClient, app: &str, p: &Pending, poll: Duration) -> Error {
    loop {
        tokio::time::sleep(poll).await;
        if let Ok(m) = client.get_machine(app, &p.id).await
            && let Some(why) = crash_reason(&m, p)
        {
            return Error::new(ErrorKind::Unhealthy, why);
        }
    }
}
