//! Records the git commit the binary is built from, for `shipit --version`.
//!
//! Sets two variables for the build: `SHIPIT_BUILD_COMMIT`, the commit's 12-character short hash
//! (empty when unknown), and `SHIPIT_BUILD_VERSION`, the package version followed by the commit
//! in brackets when it is known (`0.1.0 (abc123def456)`), else the version alone.
//!
//! It never fails the build: without git, outside a repository, in a repository without a
//! commit, or in a crate unpacked from crates.io (which carries `.cargo_vcs_info.json`; any
//! repository around it is not the one it was built from), the version has no commit.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let dir = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_default();
    let commit = commit(&dir).unwrap_or_default();
    let long = if commit.is_empty() { version } else { format!("{version} ({commit})") };
    println!("cargo:rustc-env=SHIPIT_BUILD_COMMIT={commit}");
    println!("cargo:rustc-env=SHIPIT_BUILD_VERSION={long}");
}

/// The short hash of HEAD, when `dir` is in a git work tree that has a commit.
fn commit(dir: &Path) -> Option<String> {
    if dir.join(".cargo_vcs_info.json").exists() {
        return None;
    }
    let git_dir = dir.join(git(dir, &["rev-parse", "--git-dir"])?);
    // Worktrees keep their HEAD in their own directory and the branches in the common one.
    let common = git(dir, &["rev-parse", "--git-common-dir"]).map_or_else(|| git_dir.clone(), |c| dir.join(c));
    watch_head(&git_dir, &common);
    let sha = git(dir, &["rev-parse", "--short=12", "HEAD"])?;
    sha.chars().all(|c| c.is_ascii_hexdigit()).then_some(sha)
}

/// Re-runs this script when HEAD moves: a checkout rewrites HEAD, a commit rewrites the branch's
/// ref (or creates it, when it was packed). Only paths that exist are named: Cargo re-runs on
/// every build for a path that does not.
fn watch_head(git_dir: &Path, common: &Path) {
    let head = git_dir.join("HEAD");
    watch(&head);
    let Ok(text) = std::fs::read_to_string(&head) else { return };
    let Some(name) = text.trim().strip_prefix("ref: ") else { return };
    let branch = common.join(name);
    if branch.is_file() {
        watch(&branch);
    } else if let Some(parent) = branch.parent() {
        // A packed ref: a commit writes it loose, into this directory.
        watch(parent);
    }
    watch(&common.join("packed-refs"));
}

fn watch(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// The trimmed standard output of `git args` run in `dir`, when it succeeds and prints something.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out =
        Command::new("git").args(args).current_dir(dir).stdin(Stdio::null()).stderr(Stdio::null()).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}
