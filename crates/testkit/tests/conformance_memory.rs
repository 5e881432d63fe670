//! The shared conformance suite, run through the engine against [`MemoryPlatform`].
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod memory_harness;

use memory_harness::Memory;
use shipit_testkit::conformance;

#[tokio::test]
async fn memory_platform_passes_the_conformance_suite() {
    let report = conformance::run_all(Memory::new).await;
    assert!(report.ok(), "{report}");
    // What is skipped is part of the contract: a check that starts being skipped shows up here.
    assert_eq!(
        report.skipped_names(),
        [
            "rolling_strategy_deploys",
            "rate_limits_and_5xx_are_retried",
            "server_errors_past_the_cap_change_nothing",
            "slow_response_past_the_timeout_is_retried",
            "reset_connection_is_retried",
            "malformed_answer_is_not_taken_for_truth",
            "lost_create_is_never_sent_twice",
            "unauthorized_stops_at_once",
        ],
        "{report}"
    );
    assert!(report.skipped.iter().all(|(_, why)| !why.is_empty()), "every skip says why: {report}");
    assert_eq!(report.passed.len() + report.skipped.len(), conformance::CHECKS.len());
}

#[tokio::test]
async fn every_check_is_listed_once() {
    let mut names: Vec<&str> = conformance::CHECKS.iter().map(|c| c.name).collect();
    let n = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), n, "a check is listed twice");
    assert!(conformance::check("held_lock_changes_nothing").is_some_and(|c| c.needs.locks));
}
