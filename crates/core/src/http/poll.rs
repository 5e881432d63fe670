//! [`poll_until`]: check a status every interval until it is ready, the deadline passes, or
//! the user cancels.

use std::fmt;
use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, ErrorKind};
use crate::retry::{RetryableError, human};

/// Longest wait between two checks after consecutive temporary errors (a server's
/// Retry-After included).
pub const POLL_BACKOFF_CAP: Duration = Duration::from_secs(30);

/// Why [`poll_until`] stopped without a result.
#[derive(Debug)]
#[non_exhaustive]
pub enum PollError<E> {
    /// The deadline passed before the check said ready.
    Timeout {
        /// From the first check to the deadline.
        waited: Duration,
        /// Checks made.
        attempts: usize,
        /// The last check's temporary error, when the last check failed.
        last_error: Option<E>,
    },
    /// The cancellation token fired.
    Cancelled,
    /// A check failed with an error that is not temporary.
    Failed(E),
}

impl<E: fmt::Display> fmt::Display for PollError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout { waited, attempts, last_error } => {
                write!(f, "timed out after {} ({attempts} checks)", human(*waited))?;
                match last_error {
                    Some(e) => write!(f, "; last error: {e}"),
                    None => Ok(()),
                }
            }
            Self::Cancelled => f.write_str("cancelled"),
            Self::Failed(e) => e.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for PollError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Timeout { last_error: Some(e), .. } => Some(e),
            Self::Failed(e) => e.source(),
            _ => None,
        }
    }
}

impl<E: Into<Error> + fmt::Display> From<PollError<E>> for Error {
    fn from(e: PollError<E>) -> Self {
        match e {
            PollError::Failed(e) => e.into(),
            PollError::Cancelled => Error::new(ErrorKind::Cancelled, "cancelled"),
            timeout @ PollError::Timeout { .. } => Error::new(ErrorKind::Timeout, timeout.to_string()),
        }
    }
}

/// Calls `check` until it returns [`Poll::Ready`], and returns that value.
///
/// - `Ok(Poll::Pending)`: not yet; the next check is `interval` later.
/// - A temporary error ([`RetryableError::is_temporary`]): the wait doubles with each
///   consecutive one, from `interval` up to 16 × `interval` (at most [`POLL_BACKOFF_CAP`]),
///   and is at least the error's Retry-After (capped the same way). A `Pending` resets it.
/// - Any other error ends the polling: [`PollError::Failed`].
///
/// The first check is made at once, even with the deadline already past. Then no check starts
/// after `deadline`, and one still running at the deadline is dropped: [`PollError::Timeout`],
/// with the last temporary error if the last check failed. `cancel` firing at any point (during
/// a check or a wait) ends it with [`PollError::Cancelled`].
///
/// `check` should send single requests, not retried ones: this loop already waits out
/// temporary errors, and a retry inside would stretch one check past the deadline.
pub async fn poll_until<T, E, F, Fut>(
    deadline: Instant,
    interval: Duration,
    cancel: &CancellationToken,
    mut check: F,
) -> Result<T, PollError<E>>
where
    E: RetryableError,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Poll<T>, E>>,
{
    let started = Instant::now();
    let cap = interval.saturating_mul(16).min(POLL_BACKOFF_CAP).max(interval);
    let mut attempts = 0;
    let mut failures: u32 = 0;
    let mut last_error = None;
    let timeout = |attempts, last_error| PollError::Timeout {
        waited: deadline.saturating_duration_since(started),
        attempts,
        last_error,
    };
    loop {
        if cancel.is_cancelled() {
            return Err(PollError::Cancelled);
        }
        if attempts > 0 && Instant::now() >= deadline {
            return Err(timeout(attempts, last_error));
        }
        attempts += 1;
        let outcome = tokio::select! {
            biased;
            () = cancel.cancelled() => return Err(PollError::Cancelled),
            outcome = tokio::time::timeout_at(deadline, check()) => outcome,
        };
        let wait = match outcome {
            Err(_) => return Err(timeout(attempts, last_error)),
            Ok(Ok(Poll::Ready(value))) => return Ok(value),
            Ok(Ok(Poll::Pending)) => {
                failures = 0;
                last_error = None;
                interval
            }
            Ok(Err(e)) if e.is_temporary() => {
                failures = failures.saturating_add(1);
                let backoff = interval.saturating_mul(2u32.saturating_pow(failures)).min(cap);
                let asked = e.retry_after().unwrap_or_default().min(POLL_BACKOFF_CAP);
                let wait = backoff.max(asked);
                // A poll has no attempt limit but its deadline: `max_attempts` 0 says so.
                super::observe::report_retry(|| super::Retry {
                    attempt: attempts,
                    max_attempts: 0,
                    reason: e.retry_reason(),
                    wait: wait.min(deadline.saturating_duration_since(Instant::now())),
                    retry_after: e.retry_after(),
                });
                last_error = Some(e);
                wait
            }
            Ok(Err(e)) => return Err(PollError::Failed(e)),
        };
        let wake = (Instant::now() + wait).min(deadline);
        tokio::select! {
            biased;
            () = cancel.cancelled() => return Err(PollError::Cancelled),
            () = tokio::time::sleep_until(wake) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::retry::Attempts;

    #[derive(Debug, PartialEq)]
    enum E {
        Busy(Option<Duration>),
        Broken,
    }

    impl fmt::Display for E {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{self:?}")
        }
    }

    impl RetryableError for E {
        fn is_temporary(&self) -> bool {
            matches!(self, Self::Busy(_))
        }
        fn retry_after(&self) -> Option<Duration> {
            match self {
                Self::Busy(after) => *after,
                Self::Broken => None,
            }
        }
        fn with_attempts(self, _: Attempts) -> Self {
            self
        }
    }

    impl From<E> for Error {
        fn from(e: E) -> Self {
            Error::new(ErrorKind::Other, e.to_string())
        }
    }

    const MS: Duration = Duration::from_millis(1);

    /// Polls with answers from `script` (then `Pending` forever) and records when each check ran.
    async fn run(
        deadline: Duration,
        interval: Duration,
        cancel: &CancellationToken,
        script: Vec<Result<Poll<u32>, E>>,
    ) -> (Result<u32, PollError<E>>, Vec<Duration>) {
        let start = Instant::now();
        let times = Mutex::new(Vec::new());
        let script = Mutex::new(script.into_iter());
        let r = poll_until(start + deadline, interval, cancel, || {
            times.lock().unwrap().push(start.elapsed());
            let next = script.lock().unwrap().next().unwrap_or(Ok(Poll::Pending));
            async move { next }
        })
        .await;
        (r, times.into_inner().unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn ready_after_pending_checks() {
        let script = vec![Ok(Poll::Pending), Ok(Poll::Pending), Ok(Poll::Ready(7))];
        let (r, times) = run(Duration::from_secs(10), 100 * MS, &CancellationToken::new(), script).await;
        assert_eq!(r.unwrap(), 7);
        assert_eq!(times, [Duration::ZERO, 100 * MS, 200 * MS]);
    }

    #[tokio::test(start_paused = true)]
    async fn times_out_at_the_deadline() {
        let start = Instant::now();
        let (r, times) = run(Duration::from_secs(1), 300 * MS, &CancellationToken::new(), vec![]).await;
        assert_eq!(times, [Duration::ZERO, 300 * MS, 600 * MS, 900 * MS]);
        assert_eq!(start.elapsed(), Duration::from_secs(1), "not a moment later");
        let e = r.unwrap_err();
        assert!(matches!(e, PollError::Timeout { attempts: 4, last_error: None, .. }), "{e:?}");
        assert_eq!(e.to_string(), "timed out after 1.0s (4 checks)");
        let core: Error = e.into();
        assert_eq!(core.kind, ErrorKind::Timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_running_at_the_deadline_is_dropped() {
        let start = Instant::now();
        let r: Result<(), PollError<E>> =
            poll_until(start + Duration::from_secs(2), MS, &CancellationToken::new(), || async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(Poll::Ready(()))
            })
            .await;
        assert!(matches!(r, Err(PollError::Timeout { attempts: 1, .. })), "{r:?}");
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn temporary_errors_back_off_and_reset() {
        let script = vec![
            Err(E::Busy(None)),
            Err(E::Busy(None)),
            Err(E::Busy(None)),
            Ok(Poll::Pending),
            Err(E::Busy(None)),
            Ok(Poll::Ready(1)),
        ];
        let (r, times) = run(Duration::from_secs(60), 100 * MS, &CancellationToken::new(), script).await;
        assert_eq!(r.unwrap(), 1);
        // Waits: 200, 400, 800 (doubling), 100 (after a Pending), 200 (count reset).
        assert_eq!(times, [Duration::ZERO, 200 * MS, 600 * MS, 1400 * MS, 1500 * MS, 1700 * MS]);
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_is_capped() {
        let script = (0..8).map(|_| Err(E::Busy(None))).collect();
        let (_, times) = run(Duration::from_secs(60), 100 * MS, &CancellationToken::new(), script).await;
        let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(gaps[..8], [200 * MS, 400 * MS, 800 * MS, 1600 * MS, 1600 * MS, 1600 * MS, 1600 * MS, 1600 * MS]);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured() {
        let script = vec![Err(E::Busy(Some(Duration::from_secs(5)))), Ok(Poll::Ready(2))];
        let (r, times) = run(Duration::from_secs(60), 100 * MS, &CancellationToken::new(), script).await;
        assert_eq!(r.unwrap(), 2);
        assert_eq!(times, [Duration::ZERO, Duration::from_secs(5)]);
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_keeps_the_last_temporary_error() {
        let script = (0..100).map(|_| Err(E::Busy(None))).collect();
        let (r, _) = run(Duration::from_secs(1), 100 * MS, &CancellationToken::new(), script).await;
        let e = r.unwrap_err();
        assert!(matches!(e, PollError::Timeout { last_error: Some(E::Busy(None)), .. }), "{e:?}");
        assert!(e.to_string().ends_with("; last error: Busy(None)"), "{e}");
    }

    #[tokio::test(start_paused = true)]
    async fn other_errors_end_it() {
        let script = vec![Ok(Poll::Pending), Err(E::Broken)];
        let (r, times) = run(Duration::from_secs(60), 100 * MS, &CancellationToken::new(), script).await;
        assert!(matches!(r, Err(PollError::Failed(E::Broken))), "{r:?}");
        assert_eq!(times.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_while_waiting() {
        let start = Instant::now();
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(250)).await;
            trigger.cancel();
        });
        let (r, times) = run(Duration::from_secs(60), Duration::from_secs(10), &cancel, vec![]).await;
        assert!(matches!(r, Err(PollError::Cancelled)), "{r:?}");
        assert_eq!(times, [Duration::ZERO]);
        assert_eq!(start.elapsed(), 250 * MS, "at once, not at the next check");
        let core: Error = r.unwrap_err().into();
        assert_eq!(core.kind, ErrorKind::Cancelled);
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_during_a_check_or_before() {
        let cancel = CancellationToken::new();
        let r: Result<(), PollError<E>> = poll_until(Instant::now() + Duration::from_secs(60), MS, &cancel, || {
            cancel.cancel();
            std::future::pending()
        })
        .await;
        assert!(matches!(r, Err(PollError::Cancelled)), "{r:?}");
        let (r, times) = run(Duration::from_secs(60), MS, &cancel, vec![]).await;
        assert!(matches!(r, Err(PollError::Cancelled)), "{r:?}");
        assert!(times.is_empty(), "no check once cancelled");
    }
}
