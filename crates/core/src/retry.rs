//! Retrying idempotent requests: exponential backoff with jitter, Retry-After honoured, total
//! time capped.
//!
//! Only call [`retry`] around requests that are safe to repeat (GET, PUT of the same body,
//! DELETE, or a create that was first looked up). A failed non-idempotent request is returned
//! as it is.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use crate::error::Error;

/// How hard to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Most retries after the first attempt.
    pub max_retries: usize,
    /// First delay.
    pub min_delay: Duration,
    /// Longest delay between attempts.
    pub max_delay: Duration,
    /// Cap on the sum of all delays.
    pub total: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 5,
            min_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(20),
            total: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        Self { max_retries: 0, ..Self::default() }
    }

    /// Short delays, for tests against fakes.
    pub fn fast() -> Self {
        Self {
            max_retries: 4,
            min_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(50),
            total: Duration::from_secs(2),
        }
    }
}

/// Runs `op` until it succeeds, fails with a non-temporary error, or the policy runs out.
/// A Retry-After from the server replaces the computed delay (capped at `max_delay`).
pub async fn retry<T, F, Fut>(policy: &RetryPolicy, op: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let backoff = ExponentialBuilder::default()
        .with_min_delay(policy.min_delay)
        .with_max_delay(policy.max_delay)
        .with_max_times(policy.max_retries)
        .with_total_delay(Some(policy.total))
        .with_jitter();
    let max_delay = policy.max_delay;
    op.retry(backoff)
        .sleep(tokio::time::sleep)
        .when(Error::is_temporary)
        .adjust(move |e: &Error, computed| computed.map(|d| e.retry_after.map_or(d, |ra| ra.min(max_delay))))
        .await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::error::ErrorKind;

    #[tokio::test]
    async fn retries_temporary_errors_only() {
        let calls = AtomicUsize::new(0);
        let r: Result<(), Error> = retry(&RetryPolicy::fast(), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Error::new(ErrorKind::Transient, "503"))
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 5, "one attempt and four retries");

        let calls = AtomicUsize::new(0);
        let r: Result<(), Error> = retry(&RetryPolicy::fast(), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Error::new(ErrorKind::Unauthorized, "401"))
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1, "a 401 is not retried");
    }

    #[tokio::test]
    async fn succeeds_after_a_rate_limit() {
        let calls = AtomicUsize::new(0);
        let r = retry(&RetryPolicy::fast(), || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(Error::new(ErrorKind::RateLimited, "429").with_retry_after(Some(Duration::from_millis(1))))
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(r.unwrap(), 7);
    }
}
