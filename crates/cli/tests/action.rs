//! The GitHub Action's install script (`action/install.sh`), run the way `action.yml` runs it:
//! bash with the runner's variables, against a fake release in a directory (`file://` URLs).
//! Needs bash, curl, tar with xz, sha256sum, unzip and python3 (to write a zip) on PATH.

// Test helpers outside #[test] fns unwrap and panic on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

const LINUX_TARGET: &str = "x86_64-unknown-linux-musl";
const LINUX_ARCHIVE: &str = "shipit-cli-x86_64-unknown-linux-musl.tar.xz";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../action/install.sh")
}

/// What one run of the script did.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn assert_success(&self) -> &Self {
        assert_eq!(self.code, Some(0), "install.sh failed\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }

    fn assert_failure(&self) -> &Self {
        assert_eq!(
            self.code,
            Some(1),
            "install.sh should have failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// The `::error` workflow command the runner shows as the job's error.
    fn error(&self) -> String {
        let line = self
            .stdout
            .lines()
            .find(|l| l.starts_with("::error"))
            .unwrap_or_else(|| panic!("no ::error line\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr));
        line.to_owned()
    }

    /// `plan`'s key=value lines.
    fn value(&self, key: &str) -> String {
        let prefix = format!("{key}=");
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no {key}= line\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr))
    }
}

/// A runner's directories and files, and a fake release to download from, in one temporary dir.
struct Runner {
    root: tempfile::TempDir,
}

impl Runner {
    fn new() -> Self {
        let runner = Self { root: tempfile::tempdir().unwrap() };
        for dir in ["toolcache", "temp", "release"] {
            fs::create_dir_all(runner.root.path().join(dir)).unwrap();
        }
        runner
    }

    fn tool_cache(&self) -> PathBuf {
        self.root.path().join("toolcache")
    }

    fn runner_temp(&self) -> PathBuf {
        self.root.path().join("temp")
    }

    fn release(&self) -> PathBuf {
        self.root.path().join("release")
    }

    fn github_path(&self) -> PathBuf {
        self.root.path().join("github_path")
    }

    fn github_output(&self) -> PathBuf {
        self.root.path().join("github_output")
    }

    /// The lines the script appended to `$GITHUB_PATH`.
    fn path_lines(&self) -> Vec<String> {
        fs::read_to_string(self.github_path()).unwrap_or_default().lines().map(str::to_owned).collect()
    }

    fn output(&self, key: &str) -> Option<String> {
        let prefix = format!("{key}=");
        let text = fs::read_to_string(self.github_output()).unwrap_or_default();
        text.lines().filter_map(|l| l.strip_prefix(&prefix)).next_back().map(str::to_owned)
    }

    /// The script with only the environment a runner gives it (plus PATH for the tools).
    fn command(&self, mode: &str, os: &str, arch: &str) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg(script())
            .arg(mode)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("LC_ALL", "C")
            .env("RUNNER_OS", os)
            .env("RUNNER_ARCH", arch)
            .env("RUNNER_TOOL_CACHE", self.tool_cache())
            .env("RUNNER_TEMP", self.runner_temp())
            .env("GITHUB_PATH", self.github_path())
            .env("GITHUB_OUTPUT", self.github_output())
            .env("SHIPIT_RELEASE_BASE_URL", format!("file://{}", self.release().display()));
        cmd
    }

    fn run(cmd: &mut Command) -> Run {
        let out = cmd.output().unwrap_or_else(|e| panic!("cannot run bash: {e}"));
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn plan(&self, os: &str, arch: &str, version: &str) -> Run {
        let mut cmd = self.command("plan", os, arch);
        cmd.env("SHIPIT_VERSION", version).env_remove("SHIPIT_RELEASE_BASE_URL");
        Self::run(&mut cmd)
    }

    fn install(&self, version: &str) -> Run {
        self.install_on("Linux", "X64", version, &[])
    }

    fn install_on(&self, os: &str, arch: &str, version: &str, env: &[(&str, &str)]) -> Run {
        let mut cmd = self.command("install", os, arch);
        cmd.env("SHIPIT_VERSION", version);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self::run(&mut cmd)
    }

    /// Every file below `dir`, as paths relative to it.
    fn files_under(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for entry in fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    todo.push(path);
                } else {
                    out.push(path.strip_prefix(dir).unwrap().display().to_string());
                }
            }
        }
        out.sort();
        out
    }
}

/// Where the binary sits in a release archive.
#[derive(Clone, Copy)]
enum Layout {
    /// `shipit` at the archive's root.
    Root,
    /// `shipit-cli-<target>/shipit`, as cargo-dist packs it.
    Nested,
}

/// An executable `shipit` that prints `shipit <says>` for `--version`.
fn fake_binary(dir: &Path, name: &str, says: &str) {
    let path = dir.join(name);
    fs::write(&path, format!("#!/bin/sh\necho \"shipit {says}\"\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

fn run_tool(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// A release archive at `dest` holding a fake binary that says `says`, packed the way
/// cargo-dist does (tar.xz, or zip for Windows), with a README beside the binary.
fn pack(dest: &Path, archive: &str, bin_name: &str, layout: Layout, says: &str) -> Vec<u8> {
    let staging = tempfile::tempdir().unwrap();
    let top = archive.trim_end_matches(".tar.xz").trim_end_matches(".zip");
    let inner = match layout {
        Layout::Root => staging.path().to_path_buf(),
        Layout::Nested => staging.path().join(top),
    };
    fs::create_dir_all(&inner).unwrap();
    fake_binary(&inner, bin_name, says);
    fs::write(inner.join("README.md"), "# shipit\n").unwrap();
    let entry = match layout {
        Layout::Root => ".",
        Layout::Nested => top,
    };
    if archive.ends_with(".zip") {
        let zip = "import os, sys, zipfile\n\
                   with zipfile.ZipFile(sys.argv[1], 'w') as z:\n    \
                   for d, _, fs in os.walk(sys.argv[2]):\n        \
                   for f in fs:\n            \
                   p = os.path.join(d, f)\n            \
                   z.write(p, os.path.relpath(p, sys.argv[3]))\n";
        run_tool(
            Command::new("python3").args(["-c", zip]).arg(dest).arg(staging.path().join(entry)).arg(staging.path()),
        );
    } else {
        run_tool(Command::new("tar").arg("-cJf").arg(dest).arg("-C").arg(staging.path()).arg(entry));
    }
    fs::read(dest).unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Publishes `archive` (with its `.sha256`) as release `v<version>` in the runner's fake release
/// dir; returns the archive's digest.
fn publish(runner: &Runner, version: &str, archive: &str, layout: Layout, says: &str, star: bool) -> String {
    let dir = runner.release().join(format!("v{version}"));
    fs::create_dir_all(&dir).unwrap();
    let bin_name = if archive.ends_with(".zip") { "shipit.exe" } else { "shipit" };
    let digest = sha256_hex(&pack(&dir.join(archive), archive, bin_name, layout, says));
    let line = if star { format!("{digest} *{archive}\n") } else { format!("{digest}  {archive}\n") };
    fs::write(dir.join(format!("{archive}.sha256")), line).unwrap();
    digest
}

/// Runs the installed binary by name with `dirs` first on PATH, as a later step would.
fn shipit_version_on_path(dirs: &[String]) -> String {
    let mut path = dirs.join(":");
    path.push(':');
    path.push_str(&std::env::var("PATH").unwrap_or_default());
    let out = Command::new("shipit").arg("--version").env("PATH", path).output().unwrap();
    assert!(out.status.success(), "shipit --version failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

// (a) The download chosen for each runner.

#[test]
fn plan_picks_the_release_archive_for_every_supported_runner() {
    let runner = Runner::new();
    let base = "https://github.com/shipit-dev/shipit/releases/download/v0.1.0";
    let table = [
        ("Linux", "X64", "x86_64-unknown-linux-musl", "tar.xz"),
        ("Linux", "ARM64", "aarch64-unknown-linux-musl", "tar.xz"),
        ("macOS", "X64", "x86_64-apple-darwin", "tar.xz"),
        ("macOS", "ARM64", "aarch64-apple-darwin", "tar.xz"),
        ("Windows", "X64", "x86_64-pc-windows-msvc", "zip"),
    ];
    for (os, arch, target, ext) in table {
        let run = runner.plan(os, arch, "0.1.0");
        run.assert_success();
        let archive = format!("shipit-cli-{target}.{ext}");
        assert_eq!(run.value("target"), target, "{os} {arch}");
        assert_eq!(run.value("archive"), archive, "{os} {arch}");
        assert_eq!(run.value("url"), format!("{base}/{archive}"), "{os} {arch}");
        assert_eq!(run.value("checksum_url"), format!("{base}/{archive}.sha256"), "{os} {arch}");
        assert_eq!(run.value("version"), "0.1.0");
        let dir = runner.tool_cache().join("shipit/0.1.0").join(target);
        assert_eq!(run.value("dir"), dir.display().to_string(), "{os} {arch}");
    }
    assert!(!runner.github_path().exists(), "plan must not touch GITHUB_PATH");
    assert!(!runner.github_output().exists(), "plan must not write outputs");
}

#[test]
fn plan_refuses_runners_without_a_release() {
    let runner = Runner::new();
    for (os, arch) in [("Linux", "X86"), ("Linux", "ARM"), ("Windows", "ARM64"), ("Windows", "X86"), ("FreeBSD", "X64")]
    {
        let run = runner.plan(os, arch, "0.1.0");
        run.assert_failure();
        let error = run.error();
        assert!(error.contains(&format!("RUNNER_OS='{os}' and RUNNER_ARCH='{arch}'")), "{error}");
        assert!(error.contains("Supported: Linux X64, Linux ARM64, macOS X64, macOS ARM64, Windows X64"), "{error}");
        assert!(!run.stdout.contains("url="), "{}", run.stdout);
    }
}

#[test]
fn the_base_url_can_point_elsewhere_for_tests() {
    let runner = Runner::new();
    let mut cmd = runner.command("plan", "Linux", "ARM64");
    cmd.env("SHIPIT_VERSION", "0.3.0").env("SHIPIT_RELEASE_BASE_URL", "file:///srv/releases/");
    let run = Runner::run(&mut cmd);
    run.assert_success();
    assert_eq!(run.value("url"), "file:///srv/releases/v0.3.0/shipit-cli-aarch64-unknown-linux-musl.tar.xz");
}

#[test]
fn resolve_writes_the_plan_as_step_outputs() {
    let runner = Runner::new();
    let mut cmd = runner.command("resolve", "macOS", "ARM64");
    cmd.env("SHIPIT_VERSION", "v2.0.1");
    Runner::run(&mut cmd).assert_success();
    assert_eq!(runner.output("version").as_deref(), Some("2.0.1"));
    assert_eq!(runner.output("target").as_deref(), Some("aarch64-apple-darwin"));
    let dir = runner.tool_cache().join("shipit/2.0.1/aarch64-apple-darwin");
    assert_eq!(runner.output("dir"), Some(dir.display().to_string()));
}

// (d) Which version.

#[test]
fn a_version_is_taken_with_or_without_its_v() {
    let runner = Runner::new();
    for given in ["0.1.0", "v0.1.0", " v0.1.0\n"] {
        let run = runner.plan("Linux", "X64", given);
        run.assert_success();
        assert_eq!(run.value("version"), "0.1.0", "{given:?}");
        assert!(run.value("url").ends_with(&format!("/v0.1.0/{LINUX_ARCHIVE}")), "{given:?}: {}", run.stdout);
    }
    let run = runner.plan("Linux", "X64", "1.0.0-rc.1");
    run.assert_success();
    assert!(run.value("url").contains("/v1.0.0-rc.1/"), "{}", run.stdout);
}

#[test]
fn what_is_not_a_version_is_refused() {
    let runner = Runner::new();
    for given in ["latest", "1.2", "../../evil/1.0.0", "1.0.0/../../x", "main"] {
        let run = runner.plan("Linux", "X64", given);
        run.assert_failure();
        assert!(run.error().contains("is not a shipit version"), "{given}: {}", run.error());
        assert!(!run.stdout.contains("url="), "{given}: {}", run.stdout);
    }
}

#[test]
fn no_version_means_the_actions_own_tag() {
    let runner = Runner::new();
    let mut cmd = runner.command("plan", "Linux", "X64");
    cmd.env("SHIPIT_VERSION", "").env("SHIPIT_ACTION_REF", "v1.2.3");
    let run = Runner::run(&mut cmd);
    run.assert_success();
    assert_eq!(run.value("version"), "1.2.3");
    assert!(run.value("url").ends_with(&format!("/v1.2.3/{LINUX_ARCHIVE}")), "{}", run.stdout);

    // An explicit version wins over the tag.
    let mut cmd = runner.command("plan", "Linux", "X64");
    cmd.env("SHIPIT_VERSION", "0.9.0").env("SHIPIT_ACTION_REF", "v1.2.3");
    assert_eq!(Runner::run(&mut cmd).value("version"), "0.9.0");
}

#[test]
fn no_version_and_no_ref_falls_back_to_the_actions_checkout_dir() {
    let runner = Runner::new();
    let mut cmd = runner.command("plan", "Linux", "X64");
    cmd.env("SHIPIT_ACTION_REF", "").env("GITHUB_ACTION_PATH", "/home/runner/work/_actions/shipit-dev/shipit/v1.4.0");
    let run = Runner::run(&mut cmd);
    run.assert_success();
    assert_eq!(run.value("version"), "1.4.0");
}

#[test]
fn no_version_at_a_ref_that_is_not_a_release_tag_says_to_set_version() {
    let runner = Runner::new();
    for r#ref in ["main", "v1", "0123456789abcdef0123456789abcdef01234567", ""] {
        let mut cmd = runner.command("plan", "Linux", "X64");
        cmd.env("SHIPIT_ACTION_REF", r#ref);
        let run = Runner::run(&mut cmd);
        run.assert_failure();
        let error = run.error();
        assert!(error.contains("cannot tell which shipit to install"), "{ref:?}: {error}");
        assert!(error.contains("`version` input"), "{ref:?}: {error}");
        if !r#ref.is_empty() {
            assert!(error.contains(&format!("'{ref}'")), "{ref:?}: {error}");
        }
    }
}

// (b) A real install.

#[test]
fn install_downloads_verifies_and_puts_shipit_on_path() {
    for (layout, star) in [(Layout::Nested, true), (Layout::Root, false)] {
        let runner = Runner::new();
        publish(&runner, "0.1.0", LINUX_ARCHIVE, layout, "0.1.0", star);
        let run = runner.install("v0.1.0");
        run.assert_success();
        assert!(run.stdout.contains("verified sha256"), "{}", run.stdout);

        let bin_dir = runner.tool_cache().join("shipit/0.1.0").join(LINUX_TARGET).join("bin");
        assert_eq!(runner.path_lines(), vec![bin_dir.display().to_string()]);
        let out = Command::new(bin_dir.join("shipit")).arg("--version").output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "shipit 0.1.0");
        assert_eq!(shipit_version_on_path(&runner.path_lines()), "shipit 0.1.0");

        assert_eq!(runner.output("version").as_deref(), Some("0.1.0"));
        assert_eq!(runner.output("path"), Some(bin_dir.join("shipit").display().to_string()));
        // Nothing is left in RUNNER_TEMP.
        assert_eq!(Runner::files_under(&runner.runner_temp()), Vec::<String>::new());
    }
}

#[test]
fn install_on_windows_unpacks_the_zip_and_finds_shipit_exe() {
    let runner = Runner::new();
    let archive = "shipit-cli-x86_64-pc-windows-msvc.zip";
    publish(&runner, "0.1.0", archive, Layout::Nested, "0.1.0", true);
    let run = runner.install_on("Windows", "X64", "0.1.0", &[]);
    run.assert_success();
    let bin_dir = runner.tool_cache().join("shipit/0.1.0/x86_64-pc-windows-msvc/bin");
    assert_eq!(runner.path_lines(), vec![bin_dir.display().to_string()]);
    assert!(bin_dir.join("shipit.exe").is_file());
    assert_eq!(runner.output("path"), Some(bin_dir.join("shipit.exe").display().to_string()));
}

#[test]
fn a_missing_release_fails_naming_the_url() {
    let runner = Runner::new();
    let run = runner.install("0.4.0");
    run.assert_failure();
    assert!(run.error().contains(&format!("v0.4.0/{LINUX_ARCHIVE}.sha256")), "{}", run.error());
    assert!(runner.path_lines().is_empty());
}

// (c) A checksum mismatch.

#[test]
fn a_checksum_mismatch_stops_and_installs_nothing() {
    let runner = Runner::new();
    let real = publish(&runner, "0.1.0", LINUX_ARCHIVE, Layout::Nested, "0.1.0", true);
    let wrong = sha256_hex(b"not the archive");
    let sums = runner.release().join(format!("v0.1.0/{LINUX_ARCHIVE}.sha256"));
    fs::write(&sums, format!("{wrong} *{LINUX_ARCHIVE}\n")).unwrap();

    let run = runner.install("0.1.0");
    run.assert_failure();
    let error = run.error();
    assert!(error.starts_with("::error"), "{error}");
    assert!(error.contains(&format!("checksum mismatch for {LINUX_ARCHIVE}")), "{error}");
    assert!(error.contains(&wrong), "the expected digest: {error}");
    assert!(error.contains(&real), "the digest of the download: {error}");

    assert!(runner.path_lines().is_empty(), "GITHUB_PATH: {:?}", runner.path_lines());
    assert_eq!(runner.output("path"), None);
    let left: Vec<String> = Runner::files_under(runner.root.path())
        .into_iter()
        .filter(|f| !f.starts_with("release/"))
        .filter(|f| f.ends_with("shipit") || f.ends_with(".tar.xz"))
        .collect();
    assert_eq!(left, Vec::<String>::new(), "no binary and no download may stay behind");
}

#[test]
fn a_checksum_file_without_a_digest_stops_the_install() {
    let runner = Runner::new();
    publish(&runner, "0.1.0", LINUX_ARCHIVE, Layout::Nested, "0.1.0", false);
    fs::write(runner.release().join(format!("v0.1.0/{LINUX_ARCHIVE}.sha256")), "<html>Not Found</html>\n").unwrap();
    let run = runner.install("0.1.0");
    run.assert_failure();
    assert!(run.error().contains("does not hold a SHA-256 digest"), "{}", run.error());
    assert!(runner.path_lines().is_empty());
}

// Caching.

#[test]
fn a_cache_hit_skips_the_download_but_still_checks_the_archive() {
    let runner = Runner::new();
    publish(&runner, "0.1.0", LINUX_ARCHIVE, Layout::Nested, "0.1.0", true);
    runner.install("0.1.0").assert_success();

    // The next job restores the cache; the release's archive is gone, its checksum is not.
    fs::remove_file(runner.release().join(format!("v0.1.0/{LINUX_ARCHIVE}"))).unwrap();
    fs::remove_file(runner.github_path()).unwrap();
    let run = runner.install_on("Linux", "X64", "0.1.0", &[("SHIPIT_CACHE_HIT", "true")]);
    run.assert_success();
    assert!(run.stdout.contains(&format!("using the cached {LINUX_ARCHIVE}")), "{}", run.stdout);
    assert!(!run.stdout.contains("downloading"), "{}", run.stdout);
    assert_eq!(shipit_version_on_path(&runner.path_lines()), "shipit 0.1.0");
}

#[test]
fn a_tampered_cache_is_replaced_by_the_release() {
    let runner = Runner::new();
    publish(&runner, "0.1.0", LINUX_ARCHIVE, Layout::Nested, "0.1.0", true);
    runner.install("0.1.0").assert_success();

    // Someone swaps the cached archive and the unpacked binary.
    let cached_dir = runner.tool_cache().join("shipit/0.1.0").join(LINUX_TARGET);
    pack(&cached_dir.join(LINUX_ARCHIVE), LINUX_ARCHIVE, "shipit", Layout::Nested, "0.1.0 (tampered)");
    fake_binary(&cached_dir.join("bin"), "shipit", "0.1.0 (tampered)");
    fs::remove_file(runner.github_path()).unwrap();

    let run = runner.install_on("Linux", "X64", "0.1.0", &[("SHIPIT_CACHE_HIT", "true")]);
    run.assert_success();
    assert!(
        run.stdout.contains(&format!("::warning title=shipit install::the cached {LINUX_ARCHIVE}")),
        "{}",
        run.stdout
    );
    assert_eq!(shipit_version_on_path(&runner.path_lines()), "shipit 0.1.0");
}

#[test]
fn a_cache_hit_without_the_archive_downloads_it() {
    let runner = Runner::new();
    publish(&runner, "0.1.0", LINUX_ARCHIVE, Layout::Nested, "0.1.0", true);
    let run = runner.install_on("Linux", "X64", "0.1.0", &[("SHIPIT_CACHE_HIT", "true")]);
    run.assert_success();
    assert!(run.stdout.contains("::warning"), "{}", run.stdout);
    assert!(run.stdout.contains("verified sha256"), "{}", run.stdout);
    assert_eq!(shipit_version_on_path(&runner.path_lines()), "shipit 0.1.0");
}

#[test]
fn an_archive_without_shipit_stops_the_install() {
    let runner = Runner::new();
    let dir = runner.release().join("v0.1.0");
    fs::create_dir_all(&dir).unwrap();
    let staging = tempfile::tempdir().unwrap();
    fs::write(staging.path().join("README.md"), "# nothing else\n").unwrap();
    let archive = dir.join(LINUX_ARCHIVE);
    run_tool(Command::new("tar").arg("-cJf").arg(&archive).arg("-C").arg(staging.path()).arg("README.md"));
    let digest = sha256_hex(&fs::read(&archive).unwrap());
    fs::write(dir.join(format!("{LINUX_ARCHIVE}.sha256")), format!("{digest}  {LINUX_ARCHIVE}\n")).unwrap();

    let run = runner.install("0.1.0");
    run.assert_failure();
    assert!(run.error().contains(&format!("{LINUX_ARCHIVE} holds no shipit")), "{}", run.error());
    assert!(runner.path_lines().is_empty());
}

#[test]
fn the_binary_nearest_the_archive_root_is_the_one_installed() {
    let runner = Runner::new();
    let dir = runner.release().join("v0.1.0");
    fs::create_dir_all(&dir).unwrap();
    let staging = tempfile::tempdir().unwrap();
    let top = staging.path().join("shipit-cli-x86_64-unknown-linux-musl");
    fs::create_dir_all(top.join("examples/wrapper")).unwrap();
    fake_binary(&top, "shipit", "0.1.0");
    fake_binary(&top.join("examples/wrapper"), "shipit", "0.0.0 (an example, not the release)");
    let archive = dir.join(LINUX_ARCHIVE);
    run_tool(Command::new("tar").arg("-cJf").arg(&archive).arg("-C").arg(staging.path()).arg("."));
    let digest = sha256_hex(&fs::read(&archive).unwrap());
    fs::write(dir.join(format!("{LINUX_ARCHIVE}.sha256")), format!("{digest}  {LINUX_ARCHIVE}\n")).unwrap();

    runner.install("0.1.0").assert_success();
    assert_eq!(shipit_version_on_path(&runner.path_lines()), "shipit 0.1.0");
}

#[test]
fn the_action_runs_the_script_with_inputs_passed_through_env() {
    let action = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../action.yml")).unwrap();
    assert!(action.contains("using: composite"));
    assert!(action.contains("SHIPIT_VERSION: ${{ inputs.version }}"));
    assert!(action.contains("SHIPIT_ACTION_REF: ${{ github.action_ref }}"));
    assert!(action.contains(r#"bash "$GITHUB_ACTION_PATH/action/install.sh" resolve"#));
    assert!(action.contains(r#"bash "$GITHUB_ACTION_PATH/action/install.sh" install"#));
    for line in action.lines().filter(|l| l.trim_start().starts_with("run:")) {
        assert!(!line.contains("${{"), "an expression inside run: is a template injection: {line}");
    }
}
