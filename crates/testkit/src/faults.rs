//! The fault matrix: every HTTP fault against every operation, as one table, run on any
//! platform's fake through the conformance suite's [`Harness`].
//!
//! [`MATRIX`] is the table. Each [`Cell`] is one [`MatrixFault`] against one [`Op`], with what a
//! user must see:
//!
//! - the exit codes the CLI may end with, computed from the operation's verdict or error by
//!   core's [`exit_code_for_summary`] and [`exit_code_for_error`] (the CLI's own mapping), and for
//!   `status` as the CLI computes it ([`status_exit_code`]);
//! - the state the platform must end in ([`End`]): which digest serves, which digest the
//!   service's settings point at, how many instances it has, whether the secret is set, read
//!   through [`Harness::observer`] after the faults are cleared;
//! - how many requests the operation may send ([`Bound`]), from the harness's request log.
//!
//! Beside its own expectations, every cell checks what the exit code table of `docs/cli.md`
//! promises, whatever the fault: no lock is left behind; no service has more instances than it
//! asked for (a create sent twice); exit 0 means the operation did what it would have done
//! without the fault; 3, 4, 5 and 6, and 1 with a verdict of `rolled_back` or `nothing_changed`,
//! mean the platform runs what it ran before; `releases` and `status` change nothing.
//!
//! Every cell runs on a fresh harness: the setup its operation needs (one or two earlier
//! releases of `api`, without faults), then the fault ([`MatrixFault::injection`]), then the
//! operation, on the service `api` of the suite's manifest ([`crate::conformance::manifest`]).
//! A fault is injected on the operation's main call ([`Op::main_call`]), except `5xx forever`
//! (every request), `401` (the first request) and `404` (the first read: the service's own
//! record). Each cell also checks that its fault did hit.
//!
//! The first row, `none`, is each operation without a fault: its request count is the baseline
//! that [`Bound::Baseline`] adds to. A cell whose needs the harness does not meet (HTTP fault
//! controls, a capability) is skipped by name, with the reason, like a conformance check.
//! [`run_matrix`] runs every cell and prints the table ([`MatrixReport`]'s `Display`).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::io::Write;
use std::time::Duration;

use secrecy::SecretString;
use shipit_core::engine::{self, Outcome, RollbackTo, Summary, exit_code_for_error, exit_code_for_summary};
use shipit_core::{Error, Events, InstanceState, Release, ReleaseStatus, Service, ServiceStatus};

use crate::conformance::{
    CallClass, CheckResult, Harness, HttpFault, LoggedRequest, Needs, deploy_to, digest, expect, images, opts, target,
};

/// The service every cell works on.
const SERVICE: &str = "api";
/// The secret a sync sets, and its value.
const SECRET: &str = "API_SECRET";
const SECRET_VALUE: &str = "matrix-secret-value";
/// How many 5xx a burst sends: within any sane retry cap (`RetryPolicy::fast` retries 4 times).
pub const BURST: u32 = 2;
/// How many 5xx "forever" is.
pub const FOREVER: u32 = 100_000;
/// How long one cell may take before it counts as failed.
pub const CELL_TIMEOUT: Duration = Duration::from_secs(60);

/// An operation a user runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// `shipit deploy` of `api` on a platform that has never seen it (release v1).
    FirstDeploy,
    /// `shipit deploy` of v2 over v1.
    Update,
    /// `shipit rollback` from v2 to the previous release, v1.
    Rollback,
    /// `shipit secrets sync` of `api` (v1 deployed).
    SecretsSync,
    /// `shipit releases` of `api` (v1 then v2 deployed).
    Releases,
    /// `shipit status` of `api` (v1 deployed).
    Status,
}

impl Op {
    /// Every operation, in the table's column order.
    pub const ALL: [Op; 6] = [Op::FirstDeploy, Op::Update, Op::Rollback, Op::SecretsSync, Op::Releases, Op::Status];

    /// Its name in the table.
    pub fn name(self) -> &'static str {
        match self {
            Op::FirstDeploy => "first deploy",
            Op::Update => "update",
            Op::Rollback => "rollback",
            Op::SecretsSync => "secrets sync",
            Op::Releases => "releases",
            Op::Status => "status",
        }
    }

    /// The call a fault on "the main call" hits: the instance create of a first deploy, the
    /// instance update of an update or a rollback, the secrets write of a sync (the first write
    /// of that class), the first read of `releases` and `status`.
    pub fn main_call(self) -> CallClass {
        match self {
            Op::FirstDeploy => CallClass::CreateInstance,
            Op::Update | Op::Rollback => CallClass::UpdateInstance,
            Op::SecretsSync => CallClass::OtherWrite,
            Op::Releases | Op::Status => CallClass::Read,
        }
    }

    /// Whether it may change the platform (`releases` and `status` never do).
    pub fn writes(self) -> bool {
        !matches!(self, Op::Releases | Op::Status)
    }

    /// The releases deployed before it runs (labels; digest `api-<label>`).
    fn setup(self) -> &'static [&'static str] {
        match self {
            Op::FirstDeploy => &[],
            Op::Update | Op::SecretsSync | Op::Status => &["v1"],
            Op::Rollback | Op::Releases => &["v1", "v2"],
        }
    }

    /// What the platform holds afterwards: `done` as if no fault happened, else as before.
    fn want(self, done: bool) -> Want {
        let (label, secret) = match (self, done) {
            (Op::FirstDeploy, true) => (Some("v1"), None),
            (Op::FirstDeploy, false) => (None, None),
            (Op::Update, true) | (Op::Releases, _) => (Some("v2"), None),
            (Op::Update, false) | (Op::Status, _) => (Some("v1"), None),
            (Op::Rollback, true) => (Some("v1"), None),
            (Op::Rollback, false) => (Some("v2"), None),
            (Op::SecretsSync, done) => (Some("v1"), Some(done)),
        };
        Want { label, secret }
    }
}

/// A fault of the matrix: one [`HttpFault`], where it hits and how often.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MatrixFault {
    /// No fault: the baseline.
    None,
    /// `429` with `Retry-After: 1`, once, on the main call.
    RateLimited,
    /// `429` without `Retry-After`, once, on the main call.
    RateLimitedBare,
    /// [`BURST`] `503`s on the main call: recovers within the retry cap.
    ServerBurst,
    /// `503` on every request, for good.
    ServerForever,
    /// The connection reset before the main call was applied, once.
    ResetBefore,
    /// The main call applied, then its connection reset: a lost response, once.
    LostResponse,
    /// The main call applied, and its answer's body cut mid-way, once.
    CutBody,
    /// The main call applied, and its answer slower than the client's timeout, once.
    Timeout,
    /// The main call applied, and its answer a 200 that cannot be parsed, once.
    Malformed,
    /// `401` on the first request.
    Unauthorized,
    /// `404` on the first read (the service's own record), once.
    NotFound,
}

/// One injection: what [`HttpFaults::inject`](crate::conformance::HttpFaults::inject) is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Injection {
    /// The fault.
    pub fault: HttpFault,
    /// The class of request it hits; `None`: any.
    pub on: Option<CallClass>,
    /// How many requests it hits.
    pub times: u32,
}

impl MatrixFault {
    /// Every fault, in the table's row order.
    pub const ALL: [MatrixFault; 12] = [
        MatrixFault::None,
        MatrixFault::RateLimited,
        MatrixFault::RateLimitedBare,
        MatrixFault::ServerBurst,
        MatrixFault::ServerForever,
        MatrixFault::ResetBefore,
        MatrixFault::LostResponse,
        MatrixFault::CutBody,
        MatrixFault::Timeout,
        MatrixFault::Malformed,
        MatrixFault::Unauthorized,
        MatrixFault::NotFound,
    ];

    /// Its name in the table.
    pub fn name(self) -> &'static str {
        match self {
            MatrixFault::None => "none",
            MatrixFault::RateLimited => "429 Retry-After",
            MatrixFault::RateLimitedBare => "429 bare",
            MatrixFault::ServerBurst => "5xx burst",
            MatrixFault::ServerForever => "5xx forever",
            MatrixFault::ResetBefore => "reset before",
            MatrixFault::LostResponse => "reset after (lost)",
            MatrixFault::CutBody => "cut body",
            MatrixFault::Timeout => "timeout",
            MatrixFault::Malformed => "malformed",
            MatrixFault::Unauthorized => "401",
            MatrixFault::NotFound => "404",
        }
    }

    /// What to inject for `op`, given the client's timeout; `None` for the baseline.
    pub fn injection(self, op: Op, client_timeout: Duration) -> Option<Injection> {
        let main = Some(op.main_call());
        let (fault, on, times) = match self {
            MatrixFault::None => return None,
            MatrixFault::RateLimited => (HttpFault::RateLimited { retry_after_secs: 1 }, main, 1),
            MatrixFault::RateLimitedBare => (HttpFault::RateLimitedWithoutRetryAfter, main, 1),
            MatrixFault::ServerBurst => (HttpFault::ServerError { status: 503 }, main, BURST),
            MatrixFault::ServerForever => (HttpFault::ServerError { status: 503 }, None, FOREVER),
            MatrixFault::ResetBefore => (HttpFault::Reset, main, 1),
            MatrixFault::LostResponse => (HttpFault::ResetAfterApplied, main, 1),
            MatrixFault::CutBody => (HttpFault::CutBody, main, 1),
            MatrixFault::Timeout => (HttpFault::Slow { delay: client_timeout * 3 }, main, 1),
            MatrixFault::Malformed => (HttpFault::Malformed, main, 1),
            MatrixFault::Unauthorized => (HttpFault::Unauthorized, None, 1),
            MatrixFault::NotFound => (HttpFault::NotFound, Some(CallClass::Read), 1),
        };
        Some(Injection { fault, on, times })
    }
}

/// The state the platform must end in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// As if no fault had happened: a deploy's digest serves on every instance it asked for and
    /// the settings point at it, a rollback's earlier release is back, a sync's secret is set;
    /// `releases` and `status` answer with what runs.
    Done,
    /// What ran before still runs, settings included, and no secret was set.
    Untouched,
    /// [`Done`] when the exit code is 0, else [`Untouched`]: the fault
    /// was retried, or the operation failed without changing anything.
    DoneOrUntouched,
    /// Nothing changed, and the answer says the service is not deployed (its record was 404).
    NotDeployed,
    /// Only what every cell checks (no lock left, no duplicate, a verdict that matches what
    /// runs): the fault may leave a change the verdict owns up to.
    Truthful,
}

/// How many requests an operation may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// At most the `none` row's count for the same operation plus this many.
    Baseline(usize),
    /// At most this many calls, each sent at most
    /// [`attempts_per_call`](crate::conformance::HttpFaults::attempts_per_call) times.
    Calls(usize),
    /// The fault's answer is the last request: nothing is sent after it.
    StopsAtFault,
}

/// One cell of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    /// The fault.
    pub fault: MatrixFault,
    /// The operation.
    pub op: Op,
    /// The exit codes a user may see (any of them).
    pub exit: &'static [u8],
    /// The state the platform must end in.
    pub end: End,
    /// How many requests it may send.
    pub requests: Bound,
    /// What the harness and the platform must have for the cell to mean something.
    pub needs: Needs,
    /// What a user expects, in words.
    pub expect: &'static str,
}

impl Cell {
    /// `fault × operation`.
    pub fn name(&self) -> String {
        format!("{} × {}", self.fault.name(), self.op.name())
    }
}

const fn cell(
    fault: MatrixFault,
    op: Op,
    exit: &'static [u8],
    end: End,
    requests: Bound,
    expect: &'static str,
) -> Cell {
    let needs = match (fault, op) {
        (MatrixFault::None, _) => Needs::NOTHING,
        (MatrixFault::NotFound, Op::FirstDeploy) => Needs { record_before_create: true, ..Needs::HTTP },
        _ => Needs::HTTP,
    };
    Cell { fault, op, exit, end, requests, needs, expect }
}

use Bound::{Baseline, Calls, StopsAtFault};
use End::{Done, DoneOrUntouched, NotDeployed, Truthful, Untouched};
use MatrixFault as F;

/// Requests a retried fault may add to the baseline besides its own repeats: the health gate
/// polls alongside `wait`, so how many polls a rollout takes depends on timing.
const SLACK: usize = 4;
/// One fault use, repeated once: the repeat.
const ONE_REPEAT: usize = 1 + SLACK;
/// One ambiguous fault use on a write: a look (did it apply?), then maybe the repeat, then
/// reading back what a found create holds (its lease).
const ONE_LOOK: usize = 3 + SLACK;
/// [`BURST`] ambiguous uses: a look and a repeat each.
const BURST_LOOKS: usize = 2 * BURST as usize + SLACK;

/// The matrix: every [`MatrixFault`] against every [`Op`], in row order.
pub const MATRIX: &[Cell] = &[
    // The baseline: what each operation sends without a fault.
    cell(F::None, Op::FirstDeploy, &[0], Done, Baseline(0), "deployed"),
    cell(F::None, Op::Update, &[0], Done, Baseline(0), "updated"),
    cell(F::None, Op::Rollback, &[0], Done, Baseline(0), "rolled back"),
    cell(F::None, Op::SecretsSync, &[0], Done, Baseline(0), "synced"),
    cell(F::None, Op::Releases, &[0], Done, Baseline(0), "listed"),
    cell(F::None, Op::Status, &[0], Done, Baseline(0), "healthy"),
    // 429 with Retry-After: not applied; waited for (capped by the policy) and sent again.
    cell(F::RateLimited, Op::FirstDeploy, &[0], Done, Baseline(ONE_REPEAT), "retried after Retry-After"),
    cell(F::RateLimited, Op::Update, &[0], Done, Baseline(ONE_REPEAT), "retried after Retry-After"),
    cell(F::RateLimited, Op::Rollback, &[0], Done, Baseline(ONE_REPEAT), "retried after Retry-After"),
    cell(F::RateLimited, Op::SecretsSync, &[0], Done, Baseline(ONE_REPEAT), "retried after Retry-After"),
    cell(F::RateLimited, Op::Releases, &[0], Done, Baseline(ONE_REPEAT), "retried after Retry-After"),
    cell(F::RateLimited, Op::Status, &[0], Done, Baseline(ONE_REPEAT), "retried after Retry-After"),
    // 429 without Retry-After: the client's own backoff.
    cell(F::RateLimitedBare, Op::FirstDeploy, &[0], Done, Baseline(ONE_REPEAT), "retried with backoff"),
    cell(F::RateLimitedBare, Op::Update, &[0], Done, Baseline(ONE_REPEAT), "retried with backoff"),
    cell(F::RateLimitedBare, Op::Rollback, &[0], Done, Baseline(ONE_REPEAT), "retried with backoff"),
    cell(F::RateLimitedBare, Op::SecretsSync, &[0], Done, Baseline(ONE_REPEAT), "retried with backoff"),
    cell(F::RateLimitedBare, Op::Releases, &[0], Done, Baseline(ONE_REPEAT), "retried with backoff"),
    cell(F::RateLimitedBare, Op::Status, &[0], Done, Baseline(ONE_REPEAT), "retried with backoff"),
    // A burst of 503s: a write may have been applied, so it is looked up before it is sent again.
    cell(F::ServerBurst, Op::FirstDeploy, &[0], Done, Baseline(BURST_LOOKS), "looked up, sent again"),
    cell(F::ServerBurst, Op::Update, &[0], Done, Baseline(BURST_LOOKS), "looked up, sent again"),
    cell(F::ServerBurst, Op::Rollback, &[0], Done, Baseline(BURST_LOOKS), "looked up, sent again"),
    cell(F::ServerBurst, Op::SecretsSync, &[0], Done, Baseline(BURST_LOOKS), "sent again (same values)"),
    cell(F::ServerBurst, Op::Releases, &[0], Done, Baseline(BURST_LOOKS), "read again"),
    cell(F::ServerBurst, Op::Status, &[0], Done, Baseline(BURST_LOOKS), "read again"),
    // 503 for good, from the first request: gives up within the cap, having changed nothing. A
    // deploy makes two calls (what runs before, and the verdict's read of what runs after).
    cell(F::ServerForever, Op::FirstDeploy, &[1], Untouched, Calls(2), "gives up, nothing changed"),
    cell(F::ServerForever, Op::Update, &[1], Untouched, Calls(2), "gives up, nothing changed"),
    cell(F::ServerForever, Op::Rollback, &[1], Untouched, Calls(1), "gives up, nothing changed"),
    cell(F::ServerForever, Op::SecretsSync, &[1], Untouched, Calls(1), "gives up, nothing set"),
    cell(F::ServerForever, Op::Releases, &[1], Untouched, Calls(1), "gives up"),
    cell(F::ServerForever, Op::Status, &[1], Untouched, Calls(1), "gives up"),
    // A reset before the request was applied: like a 5xx, looked up and sent again.
    cell(F::ResetBefore, Op::FirstDeploy, &[0], Done, Baseline(ONE_LOOK), "looked up, sent again"),
    cell(F::ResetBefore, Op::Update, &[0], Done, Baseline(ONE_LOOK), "looked up, sent again"),
    cell(F::ResetBefore, Op::Rollback, &[0], Done, Baseline(ONE_LOOK), "looked up, sent again"),
    cell(F::ResetBefore, Op::SecretsSync, &[0], Done, Baseline(ONE_LOOK), "sent again"),
    cell(F::ResetBefore, Op::Releases, &[0], Done, Baseline(ONE_LOOK), "read again"),
    cell(F::ResetBefore, Op::Status, &[0], Done, Baseline(ONE_LOOK), "read again"),
    // Applied, then the connection reset: a create or update is found, never sent twice; an
    // idempotent call is sent again.
    cell(F::LostResponse, Op::FirstDeploy, &[0], Done, Baseline(ONE_LOOK), "create found, not sent twice"),
    cell(F::LostResponse, Op::Update, &[0], Done, Baseline(ONE_LOOK), "update found applied"),
    cell(F::LostResponse, Op::Rollback, &[0], Done, Baseline(ONE_LOOK), "update found applied"),
    cell(F::LostResponse, Op::SecretsSync, &[0], Done, Baseline(ONE_LOOK), "sent again (same values)"),
    cell(F::LostResponse, Op::Releases, &[0], Done, Baseline(ONE_LOOK), "read again"),
    cell(F::LostResponse, Op::Status, &[0], Done, Baseline(ONE_LOOK), "read again"),
    // Applied, then the body cut mid-way: the same as a lost response.
    cell(F::CutBody, Op::FirstDeploy, &[0], Done, Baseline(ONE_LOOK), "create found, not sent twice"),
    cell(F::CutBody, Op::Update, &[0], Done, Baseline(ONE_LOOK), "update found applied"),
    cell(F::CutBody, Op::Rollback, &[0], Done, Baseline(ONE_LOOK), "update found applied"),
    cell(F::CutBody, Op::SecretsSync, &[0], Done, Baseline(ONE_LOOK), "sent again (same values)"),
    cell(F::CutBody, Op::Releases, &[0], Done, Baseline(ONE_LOOK), "read again"),
    cell(F::CutBody, Op::Status, &[0], Done, Baseline(ONE_LOOK), "read again"),
    // Applied, the answer slower than the client's timeout: the same as a lost response.
    cell(F::Timeout, Op::FirstDeploy, &[0], Done, Baseline(ONE_LOOK), "create found, not sent twice"),
    cell(F::Timeout, Op::Update, &[0], Done, Baseline(ONE_LOOK), "update found applied"),
    cell(F::Timeout, Op::Rollback, &[0], Done, Baseline(ONE_LOOK), "update found applied"),
    cell(F::Timeout, Op::SecretsSync, &[0], Done, Baseline(ONE_LOOK), "sent again (same values)"),
    cell(F::Timeout, Op::Releases, &[0], Done, Baseline(ONE_LOOK), "read again"),
    cell(F::Timeout, Op::Status, &[0], Done, Baseline(ONE_LOOK), "read again"),
    // Applied, and a 200 that cannot be read: never taken for an answer. A write is read back
    // (and succeeds) or the failure owns up to what it changed; a read is read again or fails
    // clearly; nothing is left half-done under a verdict that says otherwise.
    cell(F::Malformed, Op::FirstDeploy, &[0, 1, 7], Truthful, Baseline(ONE_LOOK), "read back, or an honest failure"),
    cell(F::Malformed, Op::Update, &[0, 1], DoneOrUntouched, Baseline(ONE_LOOK), "read back, or put back"),
    cell(F::Malformed, Op::Rollback, &[0, 1], DoneOrUntouched, Baseline(ONE_LOOK), "read back, or put back"),
    cell(
        F::Malformed,
        Op::SecretsSync,
        &[0, 1],
        Truthful,
        Baseline(ONE_LOOK),
        "read back, or fails (rerun is harmless)",
    ),
    cell(F::Malformed, Op::Releases, &[0, 1], DoneOrUntouched, Baseline(ONE_LOOK), "read again, or fails clearly"),
    cell(F::Malformed, Op::Status, &[0, 1], DoneOrUntouched, Baseline(ONE_LOOK), "read again, or fails clearly"),
    // 401 on the first request: stops at once, nothing sent after it, nothing changed.
    cell(F::Unauthorized, Op::FirstDeploy, &[5], Untouched, StopsAtFault, "stops at once"),
    cell(F::Unauthorized, Op::Update, &[5], Untouched, StopsAtFault, "stops at once"),
    cell(F::Unauthorized, Op::Rollback, &[5], Untouched, StopsAtFault, "stops at once"),
    cell(F::Unauthorized, Op::SecretsSync, &[5], Untouched, StopsAtFault, "stops at once"),
    cell(F::Unauthorized, Op::Releases, &[5], Untouched, StopsAtFault, "stops at once"),
    cell(F::Unauthorized, Op::Status, &[5], Untouched, StopsAtFault, "stops at once"),
    // 404 on the service's record: not deployed. A first deploy creates it; an update or a sync
    // whose service then turns out to exist goes on, or refuses as a conflict (exit 6) having
    // changed nothing; a rollback has nothing to go back to (exit 4); `releases` lists none and
    // `status` says "not deployed" (exit 1).
    cell(F::NotFound, Op::FirstDeploy, &[0], Done, Baseline(ONE_REPEAT), "created"),
    cell(F::NotFound, Op::Update, &[0, 6], DoneOrUntouched, Baseline(ONE_LOOK), "goes on, or a conflict"),
    cell(F::NotFound, Op::Rollback, &[0, 4], DoneOrUntouched, Baseline(ONE_LOOK), "nothing to roll back to"),
    cell(F::NotFound, Op::SecretsSync, &[0, 6], DoneOrUntouched, Baseline(ONE_LOOK), "goes on, or a conflict"),
    cell(F::NotFound, Op::Releases, &[0], NotDeployed, Baseline(ONE_REPEAT), "no releases"),
    cell(F::NotFound, Op::Status, &[1], NotDeployed, Baseline(ONE_REPEAT), "not deployed"),
];

/// The cell of `fault` × `op`.
pub fn cell_of(fault: MatrixFault, op: Op) -> Option<&'static Cell> {
    MATRIX.iter().find(|c| c.fault == fault && c.op == op)
}

/// The exit code of `shipit status` for one service, as the CLI computes it
/// (`crates/cli/src/commands/ops.rs`): 0 when the service exists, at least one instance is
/// healthy and every other one is stopped by autostop; else 1.
pub fn status_exit_code(service: &Service, st: &ServiceStatus) -> u8 {
    let idle = |i: &shipit_core::Instance| {
        service.scale.auto_stop && matches!(i.state, InstanceState::Stopped | InstanceState::Suspended)
    };
    let healthy = st.instances.iter().filter(|i| i.healthy).count();
    let idle_count = st.instances.iter().filter(|i| !i.healthy && idle(i)).count();
    let all_healthy = st.exists && healthy > 0 && healthy + idle_count == st.instances.len();
    if all_healthy { 0 } else { 1 }
}

/// How one cell went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellReport {
    /// The fault.
    pub fault: MatrixFault,
    /// The operation.
    pub op: Op,
    /// Passed, failed (with every expectation that did not hold) or skipped (and why).
    pub result: CheckResult,
    /// The exit code the operation came to, when it ran.
    pub exit: Option<u8>,
    /// Requests it sent, when the harness logs them.
    pub requests: Option<usize>,
    /// What it came to, in words: the verdict and failure kind, or the answer.
    pub detail: String,
}

impl CellReport {
    /// `fault × operation`.
    pub fn name(&self) -> String {
        format!("{} × {}", self.fault.name(), self.op.name())
    }
}

/// What a run of the matrix came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MatrixReport {
    /// The platform it ran on.
    pub platform: String,
    /// Every cell, in [`MATRIX`] order.
    pub cells: Vec<CellReport>,
}

impl MatrixReport {
    /// Whether no cell failed.
    pub fn ok(&self) -> bool {
        self.failed_names().is_empty()
    }

    /// Names of the failed cells (`fault × operation`), in matrix order.
    pub fn failed_names(&self) -> Vec<String> {
        self.cells.iter().filter(|c| matches!(c.result, CheckResult::Failed(_))).map(CellReport::name).collect()
    }

    /// Names of the skipped cells, in matrix order.
    pub fn skipped_names(&self) -> Vec<String> {
        self.cells.iter().filter(|c| matches!(c.result, CheckResult::Skipped(_))).map(CellReport::name).collect()
    }

    /// The report of `fault` × `op`.
    pub fn cell(&self, fault: MatrixFault, op: Op) -> Option<&CellReport> {
        self.cells.iter().find(|c| c.fault == fault && c.op == op)
    }
}

impl fmt::Display for MatrixReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const ROW: usize = 20;
        const COL: usize = 14;
        writeln!(
            f,
            "fault matrix on {}: exit code / requests per cell (x: an expectation failed, -: skipped)",
            self.platform
        )?;
        write!(f, "{:ROW$}", "fault")?;
        for op in Op::ALL {
            write!(f, "{:COL$}", op.name())?;
        }
        writeln!(f)?;
        for fault in MatrixFault::ALL {
            if !self.cells.iter().any(|c| c.fault == fault) {
                continue;
            }
            write!(f, "{:ROW$}", fault.name())?;
            for op in Op::ALL {
                let text = match self.cell(fault, op) {
                    None => String::new(),
                    Some(c) => {
                        let exit = c.exit.map_or_else(|| "?".to_string(), |e| e.to_string());
                        let requests = c.requests.map_or_else(|| "-".to_string(), |n| n.to_string());
                        match c.result {
                            CheckResult::Passed => format!("{exit}/{requests}"),
                            CheckResult::Failed(_) => format!("x {exit}/{requests}"),
                            CheckResult::Skipped(_) => "-".to_string(),
                        }
                    }
                };
                write!(f, "{text:COL$}")?;
            }
            writeln!(f)?;
        }
        let count = |p: fn(&CheckResult) -> bool| self.cells.iter().filter(|c| p(&c.result)).count();
        writeln!(
            f,
            "{} cells: {} passed, {} failed, {} skipped",
            self.cells.len(),
            count(|r| matches!(r, CheckResult::Passed)),
            count(|r| matches!(r, CheckResult::Failed(_))),
            count(|r| matches!(r, CheckResult::Skipped(_))),
        )?;
        for c in &self.cells {
            match &c.result {
                CheckResult::Failed(why) => {
                    let expected = cell_of(c.fault, c.op).map_or("", |cell| cell.expect);
                    writeln!(f, "  FAILED  {} (expected: {expected}; came to: {}): {why}", c.name(), c.detail)?;
                }
                CheckResult::Skipped(why) => writeln!(f, "  SKIPPED {}: {why}", c.name())?,
                CheckResult::Passed => {}
            }
        }
        Ok(())
    }
}

/// Runs every cell of [`MATRIX`], each on a fresh harness from `make`, and prints the table to
/// stderr (directly, so `cargo test` shows it even when the test passes).
pub async fn run_matrix<H, F, Fut>(mut make: F) -> MatrixReport
where
    H: Harness,
    F: FnMut() -> Fut,
    Fut: Future<Output = H>,
{
    let mut report = MatrixReport::default();
    let mut baselines: BTreeMap<Op, usize> = BTreeMap::new();
    for cell in MATRIX {
        let h = make().await;
        if report.platform.is_empty() {
            report.platform = h.platform().kind().to_string();
        }
        let r = run_cell(cell, &h, baselines.get(&cell.op).copied()).await;
        if cell.fault == MatrixFault::None
            && r.result == CheckResult::Passed
            && let Some(n) = r.requests
        {
            baselines.insert(cell.op, n);
        }
        report.cells.push(r);
    }
    let _ = write!(std::io::stderr(), "{report}");
    report
}

/// Runs one cell on `h`: its setup, its fault, its operation, then every check. `baseline` is
/// what the operation sends without a fault (the `none` row), for [`Bound::Baseline`].
pub async fn run_cell(cell: &Cell, h: &dyn Harness, baseline: Option<usize>) -> CellReport {
    let mut out = CellReport {
        fault: cell.fault,
        op: cell.op,
        result: CheckResult::Passed,
        exit: None,
        requests: None,
        detail: String::new(),
    };
    if let Some(why) = cell.needs.unmet(&h.platform().capabilities(), h) {
        out.result = CheckResult::Skipped(why);
        return out;
    }
    out.result = match tokio::time::timeout(CELL_TIMEOUT, check_cell(cell, h, baseline, &mut out)).await {
        Ok(Ok(())) => CheckResult::Passed,
        Ok(Err(e)) => CheckResult::Failed(e),
        Err(_) => CheckResult::Failed(format!("did not finish within {} s", CELL_TIMEOUT.as_secs())),
    };
    if let Some(http) = h.http() {
        http.clear();
    }
    out
}

/// What the operation came to.
struct Ran {
    exit: u8,
    detail: String,
    summary: Option<Summary>,
    answer: Answer,
}

/// What a read answered.
enum Answer {
    Nothing,
    Releases(Vec<Release>),
    Status(ServiceStatus),
}

impl Ran {
    fn of_summary(result: Result<Summary, Error>) -> Self {
        match result {
            Ok(s) => {
                let outcome = serde_json::to_value(s.outcome).ok().and_then(|v| v.as_str().map(str::to_string));
                let mut detail = outcome.unwrap_or_else(|| format!("{:?}", s.outcome));
                if let Some(kind) = s.failure_kind() {
                    detail = format!("{detail}, {}", kind.as_str());
                }
                Ran { exit: exit_code_for_summary(&s), detail, summary: Some(s), answer: Answer::Nothing }
            }
            Err(e) => Ran::of_error(&e),
        }
    }

    fn of_error(e: &Error) -> Self {
        Ran {
            exit: exit_code_for_error(e.kind),
            detail: format!("error, {}", e.kind.as_str()),
            summary: None,
            answer: Answer::Nothing,
        }
    }

    /// Whether the exit code (and the verdict) tell the user that what ran before runs again:
    /// exit 3 to 6 say so, and exit 1 with a verdict of `rolled_back` or `nothing_changed`.
    fn claims_untouched(&self) -> bool {
        matches!(self.exit, 3..=6)
            || (self.exit == 1
                && self
                    .summary
                    .as_ref()
                    .is_some_and(|s| matches!(s.outcome, Outcome::RolledBack | Outcome::NothingChanged)))
    }
}

/// What the platform should hold: the digest labelled `label` serving (none: not deployed), and
/// whether the secret is set (`None`: not looked at).
struct Want {
    label: Option<&'static str>,
    secret: Option<bool>,
}

/// What the platform holds, read through the observer.
struct Seen {
    status: ServiceStatus,
    settings: Option<String>,
    secret: Option<String>,
    locks: usize,
}

async fn check_cell(cell: &Cell, h: &dyn Harness, baseline: Option<usize>, out: &mut CellReport) -> Result<(), String> {
    for label in cell.op.setup() {
        let s = deploy_to(h, &[SERVICE], label, opts(), &Events::none()).await?;
        expect(s.outcome == Outcome::Succeeded, format!("setup: the deploy of {label} did not succeed: {s:?}"))?;
    }
    let http = h.http();
    let before = http.map_or(0, |x| x.requests().len());
    let injection = http.and_then(|x| cell.fault.injection(cell.op, x.client_timeout()));
    if let (Some(x), Some(i)) = (http, injection) {
        x.inject(i.fault, i.on, i.times);
    }
    let ran = perform(cell.op, h).await?;
    let log: Option<Vec<LoggedRequest>> = http.map(|x| x.requests().into_iter().skip(before).collect());
    let left = http.map_or(0, |x| x.faults_left());
    if let Some(x) = http {
        x.clear();
    }
    out.exit = Some(ran.exit);
    out.detail.clone_from(&ran.detail);
    out.requests = log.as_ref().map(Vec::len);

    let mut problems: Vec<String> = Vec::new();
    if !cell.exit.contains(&ran.exit) {
        problems.push(format!("exit {} ({}), expected {}", ran.exit, ran.detail, codes(cell.exit)));
    }
    if injection.is_some() && cell.fault != MatrixFault::ServerForever && left > 0 {
        problems.push(format!("the fault never hit ({left} use(s) left): the operation sent no such request"));
    }
    if let (Some(log), Some(x)) = (&log, http)
        && let Some(p) = check_bound(cell, log, baseline, x.attempts_per_call())
    {
        problems.push(p);
    }

    let seen = observe(h).await?;
    let op = cell.op;
    // The states to check (done: as if no fault happened; else as before), each with why.
    let mut wants: Vec<(bool, String)> = Vec::new();
    match cell.end {
        End::Done => wants.push((true, "not as if no fault happened".into())),
        End::Untouched | End::NotDeployed => wants.push((false, "changed".into())),
        End::DoneOrUntouched if ran.exit == 0 => wants.push((true, "exit 0, but not as if no fault happened".into())),
        End::DoneOrUntouched => wants.push((false, "failed, and changed".into())),
        End::Truthful => {}
    }
    // What the exit code table promises, whatever the cell says.
    if ran.exit == 0 && op.writes() {
        wants.push((true, "exit 0 says it was done, but".into()));
    }
    if !op.writes() {
        wants.push((false, "a read changed what runs".into()));
    } else if ran.claims_untouched() {
        wants.push((false, format!("exit {} ({}) says nothing changed, but", ran.exit, ran.detail)));
    }
    for done in [true, false] {
        let whys: Vec<&str> = wants.iter().filter(|(d, _)| *d == done).map(|(_, why)| why.as_str()).collect();
        if let (false, Err(p)) = (whys.is_empty(), check_want(&seen, &op.want(done))) {
            problems.push(format!("{}: {p}", whys.join("; ")));
        }
    }
    let asked = scale(h)?;
    if seen.status.instances.len() > asked {
        problems.push(format!("{} instances for {asked} asked: a duplicate", seen.status.instances.len()));
    }
    if seen.locks > 0 {
        problems.push(format!("{} lock(s) left behind", seen.locks));
    }
    let answer_ok = match (cell.end, &ran.answer) {
        (End::NotDeployed, a) => not_deployed(a),
        (End::Done, a) => answered(op, a),
        (End::DoneOrUntouched, a) if ran.exit == 0 => answered(op, a),
        _ => Ok(()),
    };
    if let Err(p) = answer_ok {
        problems.push(p);
    }
    problems.dedup();
    if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
}

/// Runs the operation under test.
async fn perform(op: Op, h: &dyn Harness) -> Result<Ran, String> {
    let t = target(h)?;
    let api = t.env.services.get(SERVICE).ok_or("the suite's manifest has no api")?;
    let events = Events::none();
    let ran = match op {
        Op::FirstDeploy | Op::Update => {
            let label = if op == Op::FirstDeploy { "v1" } else { "v2" };
            let images = images(h, &[SERVICE], label)?;
            crate::conformance::offer_secrets(h, t);
            Ran::of_summary(engine::deploy_digests(h.platform(), None, t, "deploy", &images, &opts(), &events).await)
        }
        Op::Rollback => {
            let mut o = opts();
            o.services = vec![SERVICE.to_string()];
            Ran::of_summary(engine::rollback(h.platform(), None, t, &RollbackTo::Previous, &o, &events).await)
        }
        Op::SecretsSync => {
            let needed = h.platform().required_secrets(api);
            let lookup =
                |name: &str| needed.iter().any(|n| n == name).then(|| SecretString::from(SECRET_VALUE.to_string()));
            match engine::sync_secrets(h.platform(), t, &[SERVICE.to_string()], lookup).await {
                Ok(done) => {
                    let names: Vec<String> = done.iter().flat_map(|d| d.names.clone()).collect();
                    Ran { exit: 0, detail: format!("set {}", names.join(",")), summary: None, answer: Answer::Nothing }
                }
                Err(e) => Ran::of_error(&e),
            }
        }
        Op::Releases => match h.platform().releases(t, api).await {
            Ok(list) => Ran {
                exit: 0,
                detail: format!("{} releases", list.len()),
                summary: None,
                answer: Answer::Releases(list),
            },
            Err(e) => Ran::of_error(&e),
        },
        Op::Status => match h.platform().status(t, api).await {
            Ok(st) => {
                let detail = if st.exists { "deployed".to_string() } else { "not deployed".to_string() };
                Ran { exit: status_exit_code(api, &st), detail, summary: None, answer: Answer::Status(st) }
            }
            Err(e) => Ran::of_error(&e),
        },
    };
    Ok(ran)
}

/// `0`, `0 or 6`.
fn codes(codes: &[u8]) -> String {
    codes.iter().map(u8::to_string).collect::<Vec<_>>().join(" or ")
}

fn check_bound(cell: &Cell, log: &[LoggedRequest], baseline: Option<usize>, attempts: usize) -> Option<String> {
    let sent = log.len();
    match cell.requests {
        Bound::Baseline(extra) => match baseline {
            Some(base) if sent > base + extra => {
                Some(format!("{sent} requests, more than the {base} without a fault plus {extra}"))
            }
            Some(_) => None,
            None if cell.fault == MatrixFault::None => None,
            None => Some(format!("no baseline for {}: the `none` cell did not pass", cell.op.name())),
        },
        Bound::Calls(calls) => (sent > calls * attempts).then(|| {
            format!(
                "{sent} requests, more than {calls} call(s) of at most {attempts} attempts each: retries not capped"
            )
        }),
        Bound::StopsAtFault => {
            let fault_at = log.iter().position(|r| r.status == Some(401));
            match fault_at {
                Some(i) if i + 1 == sent => None,
                Some(i) => Some(format!(
                    "{} request(s) sent after the 401: {:?}",
                    sent - i - 1,
                    log.iter().skip(i + 1).map(LoggedRequest::call).collect::<Vec<_>>()
                )),
                None => Some("no request got the 401".to_string()),
            }
        }
    }
}

/// What the platform holds now, through the observer (no fault is injected any more).
async fn observe(h: &dyn Harness) -> Result<Seen, String> {
    let t = target(h)?;
    let api = t.env.services.get(SERVICE).ok_or("the suite's manifest has no api")?;
    let status = h.observer().status(t, api).await.map_err(|e| format!("reading what runs afterwards: {e}"))?;
    Ok(Seen {
        status,
        settings: h.settings_digest(SERVICE),
        secret: h.secret_value(SERVICE, SECRET),
        locks: h.locks_held(),
    })
}

/// Instances `api` asks for.
fn scale(h: &dyn Harness) -> Result<usize, String> {
    let t = target(h)?;
    let api = t.env.services.get(SERVICE).ok_or("the suite's manifest has no api")?;
    Ok(usize::try_from(api.scale.min.max(1)).unwrap_or(1))
}

/// `v1`, `v2` for the digests the matrix deploys, else the digest itself.
fn label_of(d: Option<&str>) -> String {
    match d {
        None => "nothing".to_string(),
        Some(d) => ["v1", "v2"]
            .into_iter()
            .find(|l| digest(&format!("{SERVICE}-{l}")) == d)
            .map_or_else(|| d.to_string(), str::to_string),
    }
}

fn check_want(seen: &Seen, want: &Want) -> Result<(), String> {
    let st = &seen.status;
    let mut wrong = Vec::new();
    match want.label {
        Some(label) => {
            let d = digest(&format!("{SERVICE}-{label}"));
            if st.digest.as_deref() != Some(d.as_str()) {
                let running: Vec<String> = st.instances.iter().map(|i| label_of(i.digest.as_deref())).collect();
                let serves = match (&st.digest, running.len()) {
                    (Some(other), _) => label_of(Some(other)),
                    (None, 0) => "nothing".to_string(),
                    (None, _) => "a mix".to_string(),
                };
                wrong.push(format!("serves {serves} (instances: {running:?}), not {label}"));
            }
            if seen.settings.as_deref() != Some(d.as_str()) {
                let settings = match (&seen.settings, st.instances.len()) {
                    (None, 2..) => "different digests".to_string(),
                    (other, _) => label_of(other.as_deref()),
                };
                wrong.push(format!("its settings point at {settings}, not {label}"));
            }
            if st.instances.is_empty() {
                wrong.push("has no instance".to_string());
            }
        }
        None => {
            if st.exists && !st.instances.is_empty() {
                let running: Vec<String> = st.instances.iter().map(|i| label_of(i.digest.as_deref())).collect();
                wrong.push(format!("runs {} instance(s) ({running:?}) where nothing was deployed", running.len()));
            }
        }
    }
    match (want.secret, seen.secret.as_deref()) {
        (Some(true), v) if v != Some(SECRET_VALUE) => wrong.push(format!("{SECRET} is not set")),
        // A first deploy may have set it from the offered value: the sync's value is the change.
        (Some(false), Some(v)) if v == SECRET_VALUE => wrong.push(format!("{SECRET} was set")),
        _ => {}
    }
    if wrong.is_empty() { Ok(()) } else { Err(wrong.join(", ")) }
}

/// The answer of a read that succeeded: what runs.
fn answered(op: Op, answer: &Answer) -> Result<(), String> {
    match (op, answer) {
        (Op::Releases, Answer::Releases(list)) => {
            let live = list.first().filter(|r| r.status == ReleaseStatus::Live);
            let v2 = digest(&format!("{SERVICE}-v2"));
            let v1 = digest(&format!("{SERVICE}-v1"));
            expect(
                live.is_some_and(|r| r.digest.as_deref() == Some(v2.as_str())),
                format!("releases: the newest is not v2, live: {:?}", list.first()),
            )?;
            expect(
                list.iter().any(|r| r.digest.as_deref() == Some(v1.as_str()) && r.status == ReleaseStatus::Superseded),
                format!("releases: v1 is not listed as superseded ({} listed)", list.len()),
            )
        }
        (Op::Status, Answer::Status(st)) => {
            let v1 = digest(&format!("{SERVICE}-v1"));
            expect(
                st.exists && st.digest.as_deref() == Some(v1.as_str()) && st.instances.iter().all(|i| i.healthy),
                format!("status: not v1 and healthy: {st:?}"),
            )
        }
        (Op::Releases | Op::Status, Answer::Nothing) => Err("the read answered nothing".to_string()),
        _ => Ok(()),
    }
}

/// The answer of a read whose service's record was not found: not deployed.
fn not_deployed(answer: &Answer) -> Result<(), String> {
    match answer {
        Answer::Releases(list) => {
            expect(list.is_empty(), format!("releases: {} listed for a service not found", list.len()))
        }
        Answer::Status(st) => expect(!st.exists, "status: a service not found is reported as deployed"),
        Answer::Nothing => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_meets_every_operation_once() {
        for fault in MatrixFault::ALL {
            for op in Op::ALL {
                let n = MATRIX.iter().filter(|c| c.fault == fault && c.op == op).count();
                assert_eq!(n, 1, "{} × {} is in the matrix {n} times", fault.name(), op.name());
            }
        }
        assert_eq!(MATRIX.len(), MatrixFault::ALL.len() * Op::ALL.len());
        // The baseline comes first for every operation: the other rows add to it.
        assert!(MATRIX.iter().take(Op::ALL.len()).all(|c| c.fault == MatrixFault::None));
    }

    #[test]
    fn every_cell_allows_some_exit() {
        assert!(MATRIX.iter().all(|c| !c.exit.is_empty() && !c.expect.is_empty()));
    }
}
