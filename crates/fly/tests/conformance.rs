//! The shared conformance suite (shipit-testkit), run through the engine against the Fly fake.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use harness::Fly;
use shipit_testkit::conformance;

#[tokio::test]
async fn fly_passes_the_conformance_suite() {
    let report = conformance::run_all(Fly::new).await;
    assert!(report.ok(), "{report}");
    // Fly has locks, rolling and immediate, and HTTP: every check runs.
    assert!(report.skipped.is_empty(), "{report}");
}
