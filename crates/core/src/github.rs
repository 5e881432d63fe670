//! GitHub workflow rendering (in progress).
