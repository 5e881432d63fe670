//! The shared conformance suite (shipit-testkit), run through the engine against the Render
//! fake.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use harness::Render;
use shipit_testkit::conformance;

#[tokio::test]
async fn render_passes_the_conformance_suite() {
    let report = conformance::run_all(Render::new).await;
    assert!(report.ok(), "{report}");
    // Render keeps no locks and has only its own rollout: those checks are skipped, by name.
    assert_eq!(
        report.skipped_names(),
        ["held_lock_changes_nothing", "racing_deploys_agree_with_what_runs", "rolling_strategy_deploys"],
        "{report}"
    );
}
