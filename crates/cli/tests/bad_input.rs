//! Bad manifests through the built binary (issue 8): a problem at any line or column is shown,
//! never a panic; a file that is not UTF-8 or too large gets a clear error; a secret written
//! into the manifest is not repeated.

// Test helpers outside #[test] fns unwrap and panic on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;

/// A small valid manifest; the tests add to it.
const BASE: &str = "app = \"shop\"\n[registry]\nnamespace = \"acme\"\n[services.api]\nport = 4000\n[environments.staging]\ntarget = \"fly\"\n";

fn shipit() -> Command {
    let mut cmd = Command::cargo_bin("shipit").unwrap();
    cmd.env_remove("GITHUB_ACTIONS").env("NO_COLOR", "1").env("CI", "true");
    cmd
}

/// Writes `text` as shipit.toml in a new temp dir.
fn manifest(text: impl AsRef<[u8]>) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shipit.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// Runs `shipit -f PATH ARGS…`, expecting exit 4 (bad input) and no panic.
#[track_caller]
fn bad_input(path: &Path, args: &[&str], env: &[(&str, &str)]) -> (String, String) {
    run(path, args, env, 4)
}

/// Runs `shipit -f PATH ARGS…`, expecting exit `code` and no panic.
#[track_caller]
fn run(path: &Path, args: &[&str], env: &[(&str, &str)], code: i32) -> (String, String) {
    let mut cmd = shipit();
    cmd.arg("-f").arg(path).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out: Output = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let head = |s: &str| s.chars().take(2000).collect::<String>();
    assert_eq!(out.status.code(), Some(code), "{args:?}: stdout {}\nstderr {}", head(&stdout), head(&stderr));
    assert!(!stderr.contains("panicked"), "{}", head(&stderr));
    (stdout, stderr)
}

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.trim()).unwrap()
}

#[test]
fn a_problem_past_column_65536_is_shown_in_every_mode() {
    // miette panicked ("Formatting argument out of range") at column 65,537 and beyond: exit 101.
    let (_dir, path) = manifest(format!("{BASE}{}bogus = 1\n", " ".repeat(70_000)));
    let (stdout, stderr) = bad_input(&path, &["validate"], &[]);
    assert!(stdout.is_empty());
    assert!(stderr.contains("shipit.toml:8:70001: unknown key `bogus` in `environments.staging`"), "{stderr:.2000}");
    assert!(
        stderr.contains("╭─[") && stderr.contains("shipit.toml:8:70001]") && stderr.contains("here"),
        "{stderr:.2000}"
    );
    assert!(stderr.contains("…") && stderr.len() < 4000, "the snippet is a window of the line: {stderr:.2000}");

    let (stdout, _) = bad_input(&path, &["validate", "--json"], &[]);
    let v = json(&stdout);
    assert_eq!((v["problems"][0]["line"].as_u64(), v["problems"][0]["column"].as_u64()), (Some(8), Some(70001)));

    // every command that reads the manifest
    bad_input(&path, &["render", "--to", "fly", "--env", "staging"], &[]);
    let (stdout, _) = run(&path, &["doctor"], &[], 1);
    assert!(stdout.contains("has problems"), "{stdout:.2000}");
    // Annotations go to stderr: stdout is the result's.
    let (stdout, stderr) = bad_input(&path, &["validate"], &[("GITHUB_ACTIONS", "true")]);
    assert!(stdout.is_empty(), "{stdout:.2000}");
    assert!(stderr.contains("shipit.toml,line=8,col=70001::unknown key `bogus`"), "{stderr:.2000}");
}

#[test]
fn wide_characters_and_tabs_past_65536_columns_on_screen() {
    // 20,000 tabs are 80,000 columns on screen; 40,000 CJK characters too.
    let tabs = "\t".repeat(20_000);
    let wide = "日".repeat(40_000);
    let text = BASE
        .replace("port = 4000", &format!("port = 4000\n{tabs}prot = 1\nenv = {{ A = \"{wide}\", bad_name = \"x\" }}"));
    let (_dir, path) = manifest(text);
    let (_, stderr) = bad_input(&path, &["validate"], &[]);
    assert!(stderr.contains("shipit.toml:6:20001: unknown key `prot`"), "{stderr:.3000}");
    assert!(
        stderr.contains("shipit.toml:7:40017: `services.api.env`: \"bad_name\" is not a valid variable name"),
        "{stderr:.3000}"
    );
    assert!(stderr.contains("2 problems") && stderr.len() < 8000, "{stderr:.3000}");
}

#[test]
fn a_problem_past_line_65536_and_column_65536() {
    let text = format!("{BASE}{}{}bogus = 1\n", "\n".repeat(70_000), " ".repeat(66_000));
    let (_dir, path) = manifest(text);
    let (_, stderr) = bad_input(&path, &["validate"], &[]);
    assert!(stderr.contains("shipit.toml:70008:66001: unknown key `bogus`"), "{stderr:.2000}");
    assert!(stderr.contains(" 70008 │ …"), "{stderr:.2000}");
    let (stdout, _) = bad_input(&path, &["validate", "--json"], &[]);
    assert_eq!(json(&stdout)["problems"][0]["line"].as_u64(), Some(70008));
}

#[test]
fn a_long_neighbour_line_is_cut_too() {
    // the problem's line is short, the line above it is 1 MiB minus a bit
    let text = format!("app = \"shop\"\n# {}\nbogus = 1\n", "x".repeat(1_000_000));
    let (_dir, path) = manifest(text);
    let (_, stderr) = bad_input(&path, &["validate"], &[]);
    assert!(stderr.contains("shipit.toml:3:1: unknown key `bogus`"), "{stderr:.2000}");
    assert!(stderr.len() < 4000, "{stderr:.2000}");
}

#[test]
fn a_manifest_that_is_not_utf8_is_reported_where_the_bad_byte_is() {
    let mut bytes = BASE.replace("acme", "äcme").into_bytes();
    let at = BASE.find("acme").unwrap() + 3;
    bytes.insert(at, 0xff);
    let (_dir, path) = manifest(bytes);
    let (_, stderr) = bad_input(&path, &["validate"], &[]);
    assert!(stderr.contains("shipit.toml:3:16: the manifest is not valid UTF-8 (byte 0xFF)"), "{stderr}");
    assert!(!stderr.contains("-f PATH") && !stderr.contains("cannot read"), "the file exists: {stderr}");
    assert!(stderr.contains("namespace = \"äc\u{FFFD}me\""), "{stderr}");
    let (stdout, _) = bad_input(&path, &["validate", "--json"], &[]);
    let v = json(&stdout);
    assert_eq!((v["problems"][0]["line"].as_u64(), v["problems"][0]["column"].as_u64()), (Some(3), Some(16)));
}

#[test]
fn a_manifest_over_1_mib_is_refused_before_parsing() {
    let (_dir, path) = manifest(format!("{BASE}#{}", "x".repeat(1 << 20)));
    let (_, stderr) = bad_input(&path, &["validate"], &[]);
    let size = std::fs::metadata(&path).unwrap().len();
    let expected =
        format!("error: {} is 1 MiB ({size} bytes): a manifest may be at most 1 MiB (1048576 bytes)", path.display());
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(!stderr.contains("-f PATH"), "{stderr}");
    let (stdout, _) = bad_input(&path, &["validate", "--json"], &[]);
    let v = json(&stdout);
    assert_eq!(v["ok"], false);
    assert!(v["error"]["message"].as_str().unwrap().contains("a manifest may be at most 1 MiB"), "{v}");
}

#[test]
fn a_directory_is_not_told_to_pass_f() {
    let dir = tempfile::tempdir().unwrap();
    let (_, stderr) = bad_input(dir.path(), &["validate"], &[]);
    assert!(stderr.contains("cannot read"), "{stderr}");
    assert!(!stderr.contains("-f PATH"), "{stderr}");
}

#[test]
fn a_secret_in_the_manifest_is_not_repeated() {
    // `validate` showed the value of a secret written by mistake into `env` in its snippet.
    let secrets = ["hunter2-env-value", "sk-marked-secret", "pw-in-env-from", "tok-override"];
    let text = BASE
        .replace(
            "port = 4000",
            "port = 4000\nprot = 1\nenv = { API_TOKEN = \"hunter2-env-value\", K = { value = \"sk-marked-secret\", secret = true } }\nenv_from = { DB_PASSWORD = \"pw-in-env-from\" }\nbogus = 2",
        )
        .replace("target = \"fly\"", "target = \"fly\"\nservices.api.env.STRIPE_SECRET_KEY = \"tok-override\"\nbogus = 3");
    let (_dir, path) = manifest(&text);
    let broken = "app = \"shop\"\n[services.api.env]\nAPI_TOKEN = \"hunter2-env-value\"\n[[oops\n";
    let (_dir2, broken_path) = manifest(broken);
    for (path, expected) in [(&path, 7), (&broken_path, 1)] {
        for (args, env) in [
            (&["validate"][..], &[][..]),
            (&["validate", "--json"][..], &[][..]),
            (&["validate"][..], &[("GITHUB_ACTIONS", "true")][..]),
            (&["render", "--to", "fly", "--env", "staging"][..], &[][..]),
        ] {
            let (stdout, stderr) = bad_input(path, args, env);
            for secret in secrets {
                assert!(
                    !stdout.contains(secret) && !stderr.contains(secret),
                    "{secret} shown by {args:?} {env:?}:\n{stdout}\n{stderr}"
                );
            }
            assert!(stderr.contains(&format!("{expected} problem")), "{args:?}: {stderr}");
        }
    }
    let (_, stderr) = bad_input(&path, &["validate"], &[]);
    assert!(stderr.contains("API_TOKEN = \"*****************\""), "the snippet masks the value: {stderr}");
}

#[test]
fn many_problems_get_snippets_for_the_first_hundred() {
    let items = vec!["1"; 5000].join(", ");
    let (_dir, path) = manifest(format!("{BASE}regions = [{items}]\n"));
    let (_, stderr) = bad_input(&path, &["validate"], &[]);
    // One report per problem: a snippet titled `file:line:col: message` for the first 100, a
    // line for the rest.
    assert_eq!(stderr.lines().filter(|l| l.starts_with("error: ")).count(), 901, "{stderr:.2000}");
    assert_eq!(stderr.lines().filter(|l| l.starts_with("  × ")).count(), 100, "{stderr:.2000}");
    assert_eq!(stderr.matches("╭─[").count(), 100);
    assert!(stderr.contains("(snippets are shown for the first 100 problems)"));
    assert!(stderr.contains("too many problems: only the first 1000 are reported"));
}

/// Manifests whose problems sit at awkward places for drawing: long lines with tabs, wide
/// characters, control characters and CRLF, problems at the end of the file, multi-line values.
#[test]
fn awkward_places_never_crash_the_snippets() {
    let mut seed = 0x5EED_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let pieces = ["\t", "日", " ", "é", "\u{1b}[2J", "\u{202e}", "x", "\r\n", "\u{0}"];
    let dir = tempfile::tempdir().unwrap();
    for case in 0..24 {
        let mut filler = String::new();
        let piece = pieces[(next() % pieces.len() as u64) as usize];
        let n = [0, 1, 100, 16_000, 40_000, 70_000][(next() % 6) as usize];
        filler.push_str(&piece.repeat(n));
        let problem = [
            format!("# {filler}\nbogus = 1\n"),
            format!("{filler}bogus = 1\n"),
            format!("x = \"{filler}\"\n"),
            format!("x = \"\"\"\n{filler}\n\"\"\"\nregions = [\n  \"A\",\n  1,\n]\n"),
            format!("regions = [\"{filler}\"]"),
            format!("services.api.env.X = [1,\n2]\n{filler}"),
            format!("[[oops\n{filler}"),
        ][(next() % 7) as usize]
            .clone();
        let path = dir.path().join(format!("case{case}.toml"));
        std::fs::write(&path, format!("{BASE}{problem}")).unwrap();
        let out = shipit().arg("-f").arg(&path).arg("validate").output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(matches!(out.status.code(), Some(0 | 4)), "case {case}: {:?} {:.2000}", out.status, stderr);
        assert!(!stderr.contains("panicked"), "case {case}: {stderr:.2000}");
        assert!(!stderr.contains('\u{1b}') && !stderr.contains('\u{202e}'), "case {case}: raw control characters");
        assert!(stderr.len() < 20_000, "case {case}: {} bytes of output", stderr.len());
    }
}
