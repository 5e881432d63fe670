//! shipit's core: the application model, the `shipit.toml` reader, the [`Platform`] trait, the
//! deploy engine, the HTTP plumbing every API client shares, and the renderers that do not
//! belong to one platform (Docker Compose and the GitHub Actions workflow).
//!
//! # Design
//!
//! The model ([`model`]) is data: what should run, already validated and with each
//! environment's overrides merged in. Platform crates turn it into their own files and API
//! calls; nothing here knows how a platform works.
//!
//! The manifest reader ([`manifest`]) keeps the position of every key and value, reports every
//! problem at once with its line and column, and never panics. Its trade-off is that it reads
//! the TOML by hand rather than through serde derive: more code, but each error can say what was
//! expected at that exact place, and unknown keys get a "did you mean".
//!
//! Rendering is deterministic: maps are ordered (services in manifest order, variables sorted by
//! name), so the same manifest always yields byte-identical files, which `shipit render --check`
//! relies on.
//!
//! The engine ([`engine`]) orders, decides and reports; a platform acts. The engine takes the
//! services in dependency order, decides whether a failed one is restored, and builds the verdict
//! from the platform's status *after* the operation. It knows no platform's mechanism (machines,
//! leases, versions, deployments). The [`Platform`] trait ([`platform`]) is what it asks of one
//! service of one environment: restore points, deploy, restore, status, releases, secrets.
//!
//! Before it changes a service, the engine takes the platform's [`RestorePoint`]: what runs, plus
//! an opaque record of everything a deploy moves. A deploy that fails without touching anything is
//! not restored; one that touched something is put back to that point by the platform's
//! [`restore`](Platform::restore), image *and* settings, never old secret values. With
//! `--on-failure leave`, or nothing earlier to go back to, the failed release is recorded as failed
//! ([`Platform::mark_failed`]) so a rollback never returns to it. A rollback takes its point from
//! history ([`Platform::release_point`]) and goes through the same `restore`.
//!
//! What every API client needs lives here once ([`http`], [`retry`]): Retry-After and
//! rate-limit headers, error bodies scrubbed of secrets and cut to size, status polling with a
//! deadline and cancellation, and retries that keep each client's own error type. It takes plain
//! values (header text, body bytes, the time), so it depends on no HTTP client and knows no API.

pub mod compose;
pub mod duration;
pub mod engine;
pub mod error;
pub mod events;
pub mod files;
pub mod github;
pub mod http;
pub mod image;
pub mod manifest;
pub mod model;
pub mod platform;
pub mod policy;
pub mod retry;
pub mod shell;
pub mod shutdown;

pub use duration::GoDuration;
pub use error::{Error, ErrorKind};
pub use events::{Event, Events};
pub use files::{RenderError, RenderedFile};
pub use image::ImageRef;
pub use manifest::{ManifestErrors, Problem, load, parse};
pub use model::*;
pub use platform::*;
