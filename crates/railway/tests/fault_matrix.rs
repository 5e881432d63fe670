//! The fault matrix (shipit-testkit's `faults`): every HTTP fault against every operation, run
//! through the engine against the Railway fake. The table is printed on stderr
//! (`cargo test -p shipit-railway --test fault_matrix -- --nocapture` shows it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use harness::Railway;
use shipit_testkit::faults;

#[tokio::test]
async fn railway_fault_matrix() {
    let report = faults::run_matrix(Railway::new).await;
    assert!(report.failed_names().is_empty(), "{report}");
    // A first deploy reads no record of a service that does not exist yet: that one cell is
    // skipped, by name.
    assert_eq!(report.skipped_names(), ["404 × first deploy"], "{report}");
}
