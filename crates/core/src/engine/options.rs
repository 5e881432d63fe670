//! What a caller can ask of a deploy, promote or rollback.

use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::model::Strategy;

/// What to do when a service fails its rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Put the previous release back (the default).
    Rollback,
    /// Leave the instances as they are (the failed release is still recorded as failed).
    Leave,
}

/// Options of a deploy.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeployOptions {
    /// Services to deploy; empty means all.
    pub services: Vec<String>,
    /// Strategy; `None` uses the environment's, and then the platform's own way.
    pub strategy: Option<Strategy>,
    /// How long each service may take to become healthy.
    pub wait_timeout: Duration,
    /// What to do when a service fails.
    pub on_failure: OnFailure,
    /// Roll back every service of the release when any fails.
    pub atomic: bool,
    /// Whether missing apps or services may be created.
    pub create: bool,
    /// How long to wait for another deploy's lock.
    pub lock_wait: Duration,
    /// Git commit of this release.
    pub git_sha: Option<String>,
    /// Ctrl-C / SIGTERM.
    pub cancel: CancellationToken,
    /// Deploy images that break their service's policy anyway (each violation is a warning).
    pub force: bool,
    /// Roll out even what already runs (same digest, same settings): every instance replaced
    /// through the health gate, restored on failure, so values set since (rotated secrets)
    /// reach the running instances (`--restart`).
    pub restart: bool,
    /// After a service is live, point the environment's tag (`staging`, `production`) at its
    /// digest, so the registry shows what each environment runs.
    pub move_env_tag: bool,
}

impl Default for DeployOptions {
    fn default() -> Self {
        Self {
            services: Vec::new(),
            strategy: None,
            wait_timeout: Duration::from_secs(300),
            on_failure: OnFailure::Rollback,
            atomic: false,
            create: true,
            lock_wait: Duration::ZERO,
            git_sha: None,
            cancel: CancellationToken::new(),
            force: false,
            restart: false,
            move_env_tag: true,
        }
    }
}

impl DeployOptions {
    /// A restore after a failure waits at least this long for a lock: the failed deploy's own
    /// locks may still be on their way out.
    pub(crate) fn restore_lock_wait(&self) -> Duration {
        self.lock_wait.max(Duration::from_secs(30))
    }
}
