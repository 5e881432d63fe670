//! Events: the library's only output channel.
//!
//! The engine and the platforms never print. They emit typed [`Event`]s to an [`Events`] sink;
//! the CLI turns them into progress bars, plain lines, NDJSON or GitHub Actions annotations.
//! No event carries a token or a secret value: secrets appear by name only. The clients scrub
//! what they put in error messages, and [`Events::scrubbed`] scrubs every text field of every
//! event once more before its sink sees it (see [`crate::http::Scrubber`]).

use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::error::ErrorKind;
use crate::http::Scrubber;
use crate::model::PlatformKind;

/// Something that happened during a rollout.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A deploy, promote or rollback began.
    Started {
        /// `deploy`, `promote` or `rollback`.
        operation: String,
        /// Release id.
        release: String,
        /// Environment.
        env: String,
        /// Platform.
        platform: PlatformKind,
        /// Services in this operation.
        services: Vec<String>,
    },
    /// A tag was resolved to a digest in the registry.
    ImageResolved {
        /// Service.
        service: String,
        /// The image with its tag.
        image: String,
        /// The digest it resolved to.
        digest: String,
    },
    /// A step of a service's rollout (creating the app, acquiring a lease…).
    Step {
        /// Service.
        service: String,
        /// What is happening.
        message: String,
    },
    /// One instance (machine, deployment) now runs the new config.
    InstanceUpdated {
        /// Service.
        service: String,
        /// Instance id.
        instance: String,
        /// Region, when known.
        region: Option<String>,
        /// Digest it runs.
        digest: String,
    },
    /// An instance passed its health gate.
    InstanceHealthy {
        /// Service.
        service: String,
        /// Instance id.
        instance: String,
    },
    /// A service's rollout finished and is healthy.
    ServiceSucceeded {
        /// Service.
        service: String,
        /// Digest it runs.
        digest: String,
        /// False when it already ran this digest with these settings.
        changed: bool,
    },
    /// A service's rollout failed.
    ServiceFailed {
        /// Service.
        service: String,
        /// Failure kind.
        kind: ErrorKind,
        /// What went wrong.
        reason: String,
    },
    /// A rollback of a service began.
    RollbackStarted {
        /// Service.
        service: String,
        /// Release being restored.
        release: Option<String>,
        /// Digest being restored.
        digest: String,
    },
    /// A service is back on the restored release.
    RollbackSucceeded {
        /// Service.
        service: String,
        /// Digest it runs again.
        digest: String,
    },
    /// A rollback failed: the service may not run a known-good release.
    RollbackFailed {
        /// Service.
        service: String,
        /// What went wrong.
        reason: String,
    },
    /// Something worth knowing that does not stop the rollout.
    Warning {
        /// Service, if it concerns one.
        service: Option<String>,
        /// The warning.
        message: String,
    },
}

impl Event {
    /// This event with every text field scrubbed by `scrubber`.
    pub fn scrubbed(&self, scrubber: &Scrubber) -> Event {
        let s = |text: &String| scrubber.scrub(text);
        let opt = |text: &Option<String>| text.as_ref().map(|t| scrubber.scrub(t));
        match self {
            Self::Started { operation, release, env, platform, services } => Self::Started {
                operation: s(operation),
                release: s(release),
                env: s(env),
                platform: *platform,
                services: services.iter().map(s).collect(),
            },
            Self::ImageResolved { service, image, digest } => {
                Self::ImageResolved { service: s(service), image: s(image), digest: s(digest) }
            }
            Self::Step { service, message } => Self::Step { service: s(service), message: s(message) },
            Self::InstanceUpdated { service, instance, region, digest } => Self::InstanceUpdated {
                service: s(service),
                instance: s(instance),
                region: opt(region),
                digest: s(digest),
            },
            Self::InstanceHealthy { service, instance } => {
                Self::InstanceHealthy { service: s(service), instance: s(instance) }
            }
            Self::ServiceSucceeded { service, digest, changed } => {
                Self::ServiceSucceeded { service: s(service), digest: s(digest), changed: *changed }
            }
            Self::ServiceFailed { service, kind, reason } => {
                Self::ServiceFailed { service: s(service), kind: *kind, reason: s(reason) }
            }
            Self::RollbackStarted { service, release, digest } => {
                Self::RollbackStarted { service: s(service), release: opt(release), digest: s(digest) }
            }
            Self::RollbackSucceeded { service, digest } => {
                Self::RollbackSucceeded { service: s(service), digest: s(digest) }
            }
            Self::RollbackFailed { service, reason } => Self::RollbackFailed { service: s(service), reason: s(reason) },
            Self::Warning { service, message } => Self::Warning { service: opt(service), message: s(message) },
        }
    }

    /// The service the event concerns, if any.
    pub fn service(&self) -> Option<&str> {
        match self {
            Self::Started { .. } => None,
            Self::Warning { service, .. } => service.as_deref(),
            Self::ImageResolved { service, .. }
            | Self::Step { service, .. }
            | Self::InstanceUpdated { service, .. }
            | Self::InstanceHealthy { service, .. }
            | Self::ServiceSucceeded { service, .. }
            | Self::ServiceFailed { service, .. }
            | Self::RollbackStarted { service, .. }
            | Self::RollbackSucceeded { service, .. }
            | Self::RollbackFailed { service, .. } => Some(service),
        }
    }
}

type Sink = dyn Fn(&Event) + Send + Sync;

/// Where events go. Cheap to clone.
#[derive(Clone)]
pub struct Events(Arc<Sink>);

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Events")
    }
}

impl Events {
    /// A sink that calls `f` for every event.
    pub fn new(f: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// This sink behind `scrubber`: every event's text fields are scrubbed before it sees them.
    /// A caller that knows secrets (tokens, URL credentials, secret values) wraps its sink once,
    /// so nothing it is given to show can carry one.
    pub fn scrubbed(self, scrubber: Scrubber) -> Self {
        Self::new(move |e| (self.0)(&e.scrubbed(&scrubber)))
    }

    /// A sink that drops everything.
    pub fn none() -> Self {
        Self::new(|_| {})
    }

    /// A sink that keeps every event, for tests and summaries.
    pub fn collect() -> (Self, Arc<Mutex<Vec<Event>>>) {
        let store = Arc::new(Mutex::new(Vec::new()));
        let s = store.clone();
        let events = Self::new(move |e| {
            if let Ok(mut v) = s.lock() {
                v.push(e.clone());
            }
        });
        (events, store)
    }

    /// Emits one event.
    pub fn emit(&self, event: Event) {
        (self.0)(&event);
    }

    /// Emits a [`Event::Step`].
    pub fn step(&self, service: &str, message: impl Into<String>) {
        self.emit(Event::Step { service: service.to_string(), message: message.into() });
    }

    /// Emits a [`Event::Warning`].
    pub fn warn(&self, service: Option<&str>, message: impl Into<String>) {
        self.emit(Event::Warning { service: service.map(str::to_string), message: message.into() });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubbed_sinks_never_see_a_secret() {
        let (inner, seen) = Events::collect();
        let events = inner.scrubbed(Scrubber::new().with_secret("tok-123456789"));
        events.step("api", "got tok-123456789 back");
        events.warn(None, "see http://u:p@host/x");
        events.emit(Event::ServiceFailed {
            service: "api".into(),
            kind: ErrorKind::Unauthorized,
            reason: "refused dG9rLTEyMzQ1Njc4OQ==".into(),
        });
        events.emit(Event::RollbackStarted {
            service: "api".into(),
            release: Some("tok-123456789".into()),
            digest: "d".into(),
        });
        let seen = seen.lock().map(|v| v.clone()).unwrap_or_default();
        let text = serde_json::to_string(&seen).unwrap_or_default();
        assert_eq!(seen.len(), 4);
        assert!(!text.contains("tok-") && !text.contains("dG9r") && !text.contains("u:p@"), "{text}");
        assert_eq!(seen[0], Event::Step { service: "api".into(), message: "got *** back".into() });
    }
}
