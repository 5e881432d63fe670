//! shipit-testkit: stateful fakes of the services shipit talks to, for shipit's own tests
//! (`publish = false`).
//!
//! Each HTTP fake is a real HTTP server on 127.0.0.1 (wiremock) that keeps state behind its
//! responders, follows the real API's request and response shapes, and can inject faults
//! (rate limits, 5xx bursts, slow responses, reset connections, malformed bodies, unhealthy or
//! crashing releases):
//!
//! - [`fly`]: the Fly Machines API (apps, machines, leases, wait, versions, secrets).
//! - [`registry`]: an OCI registry.
//!
//! Beside them:
//!
//! - [`memory`]: [`MemoryPlatform`], an in-memory platform with native-rollback semantics
//!   (Railway/Render-like), for the engine's tests.
//! - [`conformance`]: the checks every platform must pass, over a [`conformance::Harness`].

pub mod conformance;
pub mod fly;
pub mod memory;
mod proxy;
pub mod registry;

pub use memory::MemoryPlatform;
