//! The fault matrix against [`MemoryPlatform`](shipit_testkit::MemoryPlatform): it is not reached
//! over HTTP, so only the baseline row runs and every HTTP fault is skipped, by name.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod memory_harness;

use memory_harness::Memory;
use shipit_testkit::conformance::CheckResult;
use shipit_testkit::faults::{self, MatrixFault, Op};

#[tokio::test]
async fn memory_platform_runs_the_baseline_and_skips_http_faults() {
    let report = faults::run_matrix(Memory::new).await;
    assert!(report.ok(), "{report}");
    for op in Op::ALL {
        let none = report.cell(MatrixFault::None, op).unwrap();
        assert_eq!(none.result, CheckResult::Passed, "{report}");
        assert_eq!(none.requests, None, "no request log without HTTP: {report}");
    }
    let skipped = report.skipped_names();
    assert_eq!(skipped.len(), faults::MATRIX.len() - Op::ALL.len(), "{report}");
    assert!(skipped.iter().all(|name| !name.starts_with("none ×")), "{report}");
}
