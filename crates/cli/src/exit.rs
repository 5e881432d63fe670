//! Exit codes: distinct, documented in docs/cli.md, and stable.

use std::process::ExitCode;

use shipit_core::ErrorKind;
use shipit_core::engine::{Summary, exit_code_for_error, exit_code_for_summary};

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

    /// For an error that stopped a command before it changed anything (the mapping is core's
    /// [`exit_code_for_error`], shared with the testkit's fault matrix).
    pub fn for_error(kind: ErrorKind) -> Self {
        Self::from_code(exit_code_for_error(kind))
    }

    /// For the verdict of a deploy, rollback or promote (core's [`exit_code_for_summary`]).
    pub fn for_summary(summary: &Summary) -> Self {
        Self::from_code(exit_code_for_summary(summary))
    }

    /// The exit of a code core's mappings return; a code they never return is `Failed`.
    fn from_code(code: u8) -> Self {
        match code {
            0 => Self::Ok,
            2 => Self::Changes,
            3 => Self::TimedOut,
            4 => Self::BadInput,
            5 => Self::Auth,
            6 => Self::Conflict,
            7 => Self::NotRestored,
            130 => Self::Cancelled,
            _ => Self::Failed,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e.code())
    }
}

#[cfg(test)]
mod tests {
    use super::Exit;

    #[test]
    fn every_exit_survives_its_code() {
        let all = [
            Exit::Ok,
            Exit::Failed,
            Exit::Changes,
            Exit::TimedOut,
            Exit::BadInput,
            Exit::Auth,
            Exit::Conflict,
            Exit::NotRestored,
            Exit::Cancelled,
        ];
        for e in all {
            assert_eq!(Exit::from_code(e.code()), e);
        }
    }
}
