//! shipit-testkit: stateful fakes of the services shipit talks to, for shipit's own tests
//! (`publish = false`).
//!
//! Each fake is a real HTTP server on 127.0.0.1 (wiremock) that keeps state behind its
//! responders, follows the real API's request and response shapes, and can inject faults
//! (rate limits, 5xx bursts, slow responses, unhealthy or crashing releases):
//!
//! - [`fly`]: the Fly Machines API (apps, machines, leases, wait, versions, secrets).
//! - [`registry`]: an OCI registry.

pub mod conformance;
pub mod fly;
pub mod registry;
