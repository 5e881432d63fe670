//! The fault matrix (shipit-testkit's `faults`): every HTTP fault against every operation, run
//! through the engine against the Render fake. The table is printed on stderr
//! (`cargo test -p shipit-render --test fault_matrix -- --nocapture` shows it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use harness::Render;
use shipit_testkit::faults;

#[tokio::test]
async fn render_fault_matrix() {
    let report = faults::run_matrix(Render::new).await;
    assert!(report.failed_names().is_empty(), "{report}");
    // A missing service is an empty list, not a 404: that one cell is skipped, by name.
    assert_eq!(report.skipped_names(), ["404 × first deploy"], "{report}");
}
