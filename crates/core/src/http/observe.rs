//! One place to watch every API request and every retry: an [`Observer`] set once per process
//! (the CLI's `-v`/`-vv`), which every client's requests pass through ([`Observed`]) and
//! [`retry`](crate::retry::retry) reports to.
//!
//! Nothing here prints. An observer sees the method, the URL (without userinfo), the status or
//! the transport failure with its cause chain, and the time taken: never a header or a body. It
//! is the observer's job to scrub what it prints (the URL of a request may carry a value).
//! Without an observer, watching costs a clock read per request.

use std::fmt;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::cause::{brief_cause, cause_chain};
use super::scrub::without_userinfo;

/// Watches requests and retries. Set once per process with [`set_observer`].
pub trait Observer: Send + Sync {
    /// One request got its answer (or failed to).
    fn request(&self, request: &Request);

    /// A temporary failure is about to be retried after a wait.
    fn retry(&self, _retry: &Retry) {}
}

/// One API request, as an [`Observer`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Request {
    /// `GET`, `POST`…
    pub method: String,
    /// The URL, without userinfo.
    pub url: String,
    /// What the request is about when the URL does not say (a GraphQL operation's name).
    pub note: Option<String>,
    /// The answer's status, or why there was none.
    pub outcome: Outcome,
    /// From sending to the answer (or the failure).
    pub elapsed: Duration,
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// An answer with this status.
    Status {
        /// The status code.
        code: u16,
        /// Its reason phrase (`OK`, `Bad Gateway`), when the status has one.
        reason: Option<&'static str>,
    },
    /// The caller stopped waiting before the answer came (a health gate that decided, a
    /// deadline, Ctrl-C): the request may still have reached the server.
    Abandoned,
    /// No (whole) answer: the connection failed, was reset, or timed out.
    Failed {
        /// The root cause in a few words (`connection refused`).
        brief: String,
        /// Every cause below the transport error, outermost first, repeats removed.
        causes: Vec<String>,
    },
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status { code, reason: Some(r) } => write!(f, "{code} {r}"),
            Self::Status { code, reason: None } => write!(f, "{code}"),
            Self::Abandoned => f.write_str("abandoned (no longer waited for)"),
            Self::Failed { brief, .. } => write!(f, "failed: {brief}"),
        }
    }
}

/// One retry, as an [`Observer`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Retry {
    /// The attempt that failed (1 for the first).
    pub attempt: usize,
    /// Most attempts the policy allows, the first included; 0 when only a deadline limits them
    /// (a status poll waiting out temporary errors).
    pub max_attempts: usize,
    /// Why: the failed attempt's error message.
    pub reason: String,
    /// How long until the next attempt.
    pub wait: Duration,
    /// What the server asked for (Retry-After), when it did; `wait` honours it, capped.
    pub retry_after: Option<Duration>,
}

static OBSERVER: OnceLock<Box<dyn Observer>> = OnceLock::new();

/// Sets the process's observer. Only the first call counts: `false` when one was already set.
pub fn set_observer(observer: Box<dyn Observer>) -> bool {
    OBSERVER.set(observer).is_ok()
}

/// The process's observer, when one is set.
fn observer() -> Option<&'static dyn Observer> {
    OBSERVER.get().map(|o| o.as_ref())
}

/// Reports a retry to the observer, if any.
pub(crate) fn report_retry(retry: impl FnOnce() -> Retry) {
    if let Some(o) = observer() {
        o.retry(&retry());
    }
}

/// A request being watched: start it just before sending, end it with [`status`](Self::status)
/// or [`failed`](Self::failed). Dropped unfinished (the caller's future was dropped), it reports
/// [`Outcome::Abandoned`].
#[derive(Debug)]
#[must_use = "end it with status() or failed()"]
pub struct Observed {
    method: String,
    url: String,
    note: Option<String>,
    started: Instant,
    done: bool,
}

impl Observed {
    /// Starts watching a `method` request to `url` (its userinfo is left out).
    pub fn start(method: &str, url: &str) -> Self {
        let url = if observer().is_some() { without_userinfo(url) } else { String::new() };
        Self { method: method.to_string(), url, note: None, started: Instant::now(), done: false }
    }

    /// What the request is about, when the URL does not say (a GraphQL operation's name).
    pub fn note(mut self, note: &str) -> Self {
        self.note = Some(note.to_string());
        self
    }

    /// The request got an answer with `code` (`reason`: its phrase, e.g. from
    /// `StatusCode::canonical_reason`).
    pub fn status(self, code: u16, reason: Option<&'static str>) {
        self.end(|| Outcome::Status { code, reason });
    }

    /// The request failed with `error` (a transport error: its sources are the causes).
    pub fn failed(self, error: &(dyn std::error::Error + 'static)) {
        self.end(|| Outcome::Failed { brief: brief_cause(error), causes: cause_chain(error) });
    }

    fn end(mut self, outcome: impl FnOnce() -> Outcome) {
        self.report(outcome);
    }

    fn report(&mut self, outcome: impl FnOnce() -> Outcome) {
        self.done = true;
        let Some(o) = observer() else { return };
        let (method, url, note) = (std::mem::take(&mut self.method), std::mem::take(&mut self.url), self.note.take());
        o.request(&Request { method, url, note, outcome: outcome(), elapsed: self.started.elapsed() });
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        if !self.done {
            self.report(|| Outcome::Abandoned);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::{Mutex, PoisonError};

    use super::*;

    /// What the test observer saw, for every test of the crate (one observer per process).
    #[derive(Default)]
    pub(crate) struct Seen {
        pub(crate) requests: Mutex<Vec<Request>>,
        pub(crate) retries: Mutex<Vec<Retry>>,
    }

    struct Recorder;

    static SEEN: OnceLock<Seen> = OnceLock::new();

    impl Observer for Recorder {
        fn request(&self, request: &Request) {
            seen().requests.lock().unwrap_or_else(PoisonError::into_inner).push(request.clone());
        }
        fn retry(&self, retry: &Retry) {
            seen().retries.lock().unwrap_or_else(PoisonError::into_inner).push(retry.clone());
        }
    }

    /// The recording observer, installed on first use; tests filter what it saw by a marker of
    /// their own (a URL, a message), since tests run concurrently.
    pub(crate) fn seen() -> &'static Seen {
        let seen = SEEN.get_or_init(Seen::default);
        let _ = set_observer(Box::new(Recorder));
        seen
    }

    #[test]
    fn the_observer_sees_method_url_status_and_duration() {
        let seen = seen();
        let watch = Observed::start("GET", "https://user:pw@api.example/v1/apps/observe-me");
        std::thread::sleep(Duration::from_millis(5));
        watch.status(200, Some("OK"));
        Observed::start("POST", "https://api.example/graphql?observe-me-too")
            .note("ServiceInstanceUpdate")
            .status(502, Some("Bad Gateway"));
        let requests = seen.requests.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let get = requests.iter().find(|r| r.url.ends_with("/observe-me")).cloned();
        let get = get.unwrap_or_else(|| panic!("not seen: {requests:?}"));
        assert_eq!(get.method, "GET");
        assert_eq!(get.url, "https://***@api.example/v1/apps/observe-me", "no userinfo");
        assert_eq!(get.outcome.to_string(), "200 OK");
        assert!(get.elapsed >= Duration::from_millis(5), "{:?}", get.elapsed);
        let post = requests.iter().find(|r| r.url.ends_with("observe-me-too"));
        let post = post.unwrap_or_else(|| panic!("not seen: {requests:?}"));
        assert_eq!(post.note.as_deref(), Some("ServiceInstanceUpdate"));
        assert_eq!(post.outcome, Outcome::Status { code: 502, reason: Some("Bad Gateway") });
    }

    #[test]
    fn a_dropped_request_is_abandoned() {
        let seen = seen();
        drop(Observed::start("GET", "https://api.example/dropped-observed"));
        let requests = seen.requests.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let r = requests.iter().find(|r| r.url.ends_with("/dropped-observed"));
        assert_eq!(r.map(|r| &r.outcome), Some(&Outcome::Abandoned), "{requests:?}");
        assert_eq!(requests.iter().filter(|r| r.url.ends_with("/dropped-observed")).count(), 1, "once");
    }

    #[test]
    fn a_failed_request_carries_its_causes() {
        let seen = seen();
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused (os error 111)");
        let error = super::super::cause::tests::Chain::new("error sending request for url (x)", Some(refused));
        Observed::start("GET", "http://127.0.0.1:1/failing-observed").failed(&error);
        let requests = seen.requests.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let r = requests.iter().find(|r| r.url.ends_with("/failing-observed"));
        let r = r.unwrap_or_else(|| panic!("not seen: {requests:?}"));
        let Outcome::Failed { brief, causes } = &r.outcome else { panic!("{r:?}") };
        assert_eq!(brief, "connection refused");
        assert_eq!(causes, &["Connection refused (os error 111)"]);
        assert_eq!(r.outcome.to_string(), "failed: connection refused");
    }
}
