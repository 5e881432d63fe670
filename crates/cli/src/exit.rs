//! Exit codes: distinct, documented in docs/cli.md, and stable.

use std::process::ExitCode;

use shipit_core::ErrorKind;
use shipit_core::engine::{Outcome, Summary};

/// What a run of shipit ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: everything asked for was done.
    Ok,
    /// 1: the operation failed; for a deploy: the previous release was put back.
    Failed,
    /// 2: there are differences (`plan` has changes, `render --check` found drift).
    Changes,
    /// 3: a health gate timed out; the previous release was put back.
    TimedOut,
    /// 4: bad input: invalid manifest, flag or argument, or something the platform does not
    /// support. Nothing was changed.
    BadInput,
    /// 5: a token is missing or was refused. Nothing was changed.
    Auth,
    /// 6: another deploy holds the lock. Nothing was changed.
    Conflict,
    /// 7: the deploy failed and at least one service could NOT be put back.
    NotRestored,
    /// 130: stopped by Ctrl-C or SIGTERM; every instance is on a known image.
    Cancelled,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::Failed => 1,
            Self::Changes => 2,
            Self::TimedOut => 3,
            Self::BadInput => 4,
            Self::Auth => 5,
            Self::Conflict => 6,
            Self::NotRestored => 7,
            Self::Cancelled => 130,
        }
    }

    /// For an error that stopped a command before it changed anything.
    pub fn for_error(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::Unauthorized => Self::Auth,
            ErrorKind::Conflict => Self::Conflict,
            ErrorKind::InvalidConfig | ErrorKind::Unsupported | ErrorKind::NotFound => Self::BadInput,
            ErrorKind::Timeout => Self::TimedOut,
            ErrorKind::Cancelled => Self::Cancelled,
            _ => Self::Failed,
        }
    }

    /// For the verdict of a deploy, rollback or promote.
    pub fn for_summary(summary: &Summary) -> Self {
        match summary.outcome {
            Outcome::Succeeded => Self::Ok,
            Outcome::TimedOut => Self::TimedOut,
            Outcome::Failed => Self::NotRestored,
            Outcome::Partial => Self::Failed,
            Outcome::Cancelled => Self::Cancelled,
            Outcome::NothingChanged => match summary.failure_kind() {
                Some(ErrorKind::Unauthorized) => Self::Auth,
                Some(ErrorKind::Conflict) => Self::Conflict,
                Some(ErrorKind::InvalidConfig | ErrorKind::Unsupported | ErrorKind::NotFound) => Self::BadInput,
                _ => Self::Failed,
            },
            Outcome::RolledBack => match summary.failure_kind() {
                Some(ErrorKind::Unauthorized) => Self::Auth,
                Some(ErrorKind::Conflict) => Self::Conflict,
                Some(ErrorKind::InvalidConfig | ErrorKind::Unsupported) => Self::BadInput,
                _ => Self::Failed,
            },
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e.code())
    }
}
