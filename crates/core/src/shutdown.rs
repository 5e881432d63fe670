//! Cleanup that must finish even when a rollout is abandoned: lock releases.
//!
//! When shipit is told to quit at once (a second Ctrl-C or SIGTERM), the CLI drops the rollout
//! future. Whatever a platform holds then (Fly's leases) is released by cleanup tasks the
//! platform starts through [`spawn`]; the CLI then [`drain`]s them, for a short deadline, before
//! it exits. Without this, spawned tasks die with the process and the locks stay held until
//! they expire.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use tokio_util::task::TaskTracker;

fn tracker() -> &'static TaskTracker {
    static TRACKER: OnceLock<TaskTracker> = OnceLock::new();
    TRACKER.get_or_init(TaskTracker::new)
}

/// Runs `cleanup` in the background on the current runtime, tracked so [`drain`] can wait for
/// it. Outside a runtime it is dropped (there is nothing left to clean up with).
pub fn spawn<F>(cleanup: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        tracker().spawn_on(cleanup, &rt);
    }
}

/// Waits up to `deadline` for every cleanup task started so far; true when all finished.
pub async fn drain(deadline: Duration) -> bool {
    let t = tracker();
    t.close();
    let done = tokio::time::timeout(deadline, t.wait()).await.is_ok();
    t.reopen();
    done
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[tokio::test]
    async fn drain_waits_for_cleanup() {
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            flag.store(true, Ordering::SeqCst);
        });
        assert!(drain(Duration::from_secs(2)).await);
        assert!(done.load(Ordering::SeqCst));
    }
}
