//! shipit-testkit: stateful fakes of the services shipit talks to, for shipit's own tests
//! (`publish = false`).
//!
//! Each HTTP fake is a real HTTP server on 127.0.0.1 (wiremock) that keeps state behind its
//! responders, follows the real API's request and response shapes, and can inject faults
//! (rate limits, 5xx bursts, slow responses, reset connections, malformed bodies, unhealthy or
//! crashing releases):
//!
//! - [`fly`]: the Fly Machines API (apps, machines, leases, wait, versions, secrets).
//! - [`railway`]: Railway's public GraphQL API (projects, services, settings, variables,
//!   deployments, project tokens), validated against shipit's SDL subset.
//! - [`render`]: Render's public REST API (owners, image-backed services, deploys with a
//!   one-at-a-time queue, rollbacks, env vars, scaling, registry credentials, read-only
//!   databases, per-service and per-key rate buckets).
//! - [`registry`]: an OCI registry.
//!
//! Both can echo what a client sent (its `Authorization` header and body) back in an error body
//! and a header ([`echo`]), for tests that prove no credential comes out of shipit.
//!
//! Beside them:
//!
//! - [`memory`]: [`MemoryPlatform`], an in-memory platform with native-rollback semantics
//!   (Railway/Render-like), for the engine's tests.
//! - [`conformance`]: the checks every platform must pass, over a [`conformance::Harness`].
//! - [`faults`]: the fault matrix, every HTTP fault against every operation, over the same
//!   harness.

pub mod conformance;
pub mod echo;
pub mod faults;
pub mod fly;
pub mod memory;
mod proxy;
pub mod railway;
pub mod registry;
pub mod render;

pub use memory::MemoryPlatform;
