//! Exit codes: distinct, documented in docs/cli.md, and stable.

use std::process::ExitCode;

/// What a run of shipit ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: everything asked for was done.
    Ok,
    /// 1: the operation failed (an I/O error, a platform refusing).
    Failed,
    /// 2: there are differences (`render --check` found drift).
    Changes,
    /// 4: bad input: an invalid manifest, flag or argument. Nothing was changed.
    BadInput,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::Failed => 1,
            Self::Changes => 2,
            Self::BadInput => 4,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e.code())
    }
}
