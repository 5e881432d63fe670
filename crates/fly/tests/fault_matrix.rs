//! The fault matrix (shipit-testkit's `faults`): every HTTP fault against every operation, run
//! through the engine against the Fly fake. The table is printed on stderr
//! (`cargo test -p shipit-fly --test fault_matrix -- --nocapture` shows it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use harness::Fly;
use shipit_testkit::faults;

#[tokio::test]
async fn fly_fault_matrix() {
    let report = faults::run_matrix(Fly::new).await;
    assert!(report.failed_names().is_empty(), "{report}");
    // Fly is reached over HTTP: every cell runs.
    assert!(report.skipped_names().is_empty(), "{report}");
}
