//! A closed pipe on stdout or stderr never panics: `shipit deploy --dry-run | head -3` ends
//! quietly with the command's own exit code.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;
use std::process::{Command, Stdio};

fn manifest() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/forgestack/shipit.toml").to_string()
}

/// Runs shipit with `args`; the stream `closed` (stdout or stderr) has no reader from the start,
/// so the first write to it fails with EPIPE. Returns the exit code and the other stream.
fn run_with_closed(args: &[&str], close_stdout: bool) -> (Option<i32>, String) {
    let bin = assert_cmd::cargo::cargo_bin("shipit");
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CI", "true")
        .args(["-f", &manifest()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    // Drop the reading end of one pipe before the binary writes to it.
    let mut other = if close_stdout {
        drop(child.stdout.take());
        child.stderr.take().map(|s| Box::new(s) as Box<dyn Read>)
    } else {
        drop(child.stderr.take());
        child.stdout.take().map(|s| Box::new(s) as Box<dyn Read>)
    }
    .unwrap();
    let mut text = String::new();
    other.read_to_string(&mut text).unwrap();
    let status = child.wait().unwrap();
    (status.code(), text)
}

#[test]
fn a_closed_stdout_ends_a_dry_run_quietly_with_its_exit_code() {
    let (code, stderr) = run_with_closed(&["deploy", "--env", "staging", "--tag", "3f2c1ab", "--dry-run"], true);
    assert_eq!(code, Some(0), "the dry run's own exit code, not a panic's 101:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
}

#[test]
fn a_closed_stderr_keeps_the_exit_code_of_a_failure() {
    // No environment named `nope`: a usage error (exit 4) reported on stderr, which is gone.
    let (code, stdout) = run_with_closed(&["deploy", "--env", "nope", "--tag", "3f2c1ab", "--dry-run"], false);
    assert_eq!(code, Some(4), "{stdout}");
    assert!(!stdout.contains("panicked"), "{stdout}");
}

#[test]
fn json_lines_to_a_closed_stdout_do_not_panic() {
    let (code, stderr) = run_with_closed(&["--json", "validate"], true);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
