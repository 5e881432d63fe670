//! Secrets never leave: every command that talks to something, in every output mode, against
//! fakes that quote the request's credentials and body back (in error bodies and a response
//! header), with canary tokens and a canary secret value. stdout, stderr, the GitHub step summary
//! and every file shipit wrote are searched for the canaries in every form: plain,
//! percent-encoded, JSON-escaped (all three keep the `canary` prefix readable, so any text with
//! `canary` in it is a leak, a partial one included) and base64 (standard and URL-safe, at every
//! alignment, so padding and a token inside `Basic user:token` are covered), and for the bearer
//! tokens the registry's token service issued. URL credentials (`http://user:pass@…` in
//! `SHIPIT_*_API_URL` and the registry host lists) are checked the same way.
//!
//! The runs are independent processes and go in parallel threads; every scenario uses fakes of
//! its own, so faults never cross scenarios.

// Test helpers outside #[test] fns unwrap and panic on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::{Digest, Sha256};
use shipit_testkit::fly::Fault;
use support::World;

const FLY_TOKEN: &str = "canary-fly-token-7f3a9c";
const GHCR_TOKEN: &str = "canary-ghcr-token-4b8d1e";
const GITHUB_TOKEN: &str = "canary-github-token-2c6f0a";
const RAILWAY_TOKEN: &str = "canary-railway-token-81d3";
const RENDER_KEY: &str = "canary-render-key-0e4f";
/// Characters that every encoding treats differently: `/ + = &`, a space, quotes, `<>`, non-ASCII.
const SECRET_VALUE: &str = "canary-secret-9d2e/b+x=y&z \"q\" <é>";
const URL_USER: &str = "canary-url-user";
const URL_PASSWORD: &str = "canary-url-pass-5e1b";
const ACTOR: &str = "octocat";
/// Every bearer token the fake registry's token service issues starts with this.
const REGISTRY_TOKEN: &str = "fake-registry-token-";

/// Every value that must never be printed.
const CANARIES: [&str; 8] =
    [FLY_TOKEN, GHCR_TOKEN, GITHUB_TOKEN, RAILWAY_TOKEN, RENDER_KEY, SECRET_VALUE, URL_USER, URL_PASSWORD];

/// The output modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Human,
    Verbose,
    Quiet,
    Json,
    Github,
    JsonGithub,
}

const MODES: [Mode; 6] = [Mode::Human, Mode::Verbose, Mode::Quiet, Mode::Json, Mode::Github, Mode::JsonGithub];

impl Mode {
    fn flags(self) -> &'static [&'static str] {
        match self {
            Mode::Human | Mode::Github => &[],
            Mode::Verbose => &["-v"],
            Mode::Quiet => &["-q"],
            Mode::Json | Mode::JsonGithub => &["--json"],
        }
    }

    fn github(self) -> bool {
        matches!(self, Mode::Github | Mode::JsonGithub)
    }
}

/// How to run shipit in one scenario: the manifest and the environment.
#[derive(Clone)]
struct Setup {
    scenario: &'static str,
    manifest: PathBuf,
    env: Vec<(String, String)>,
}

impl Setup {
    /// The canary credentials, the secret value, and the fakes of `w`; `changes` then sets
    /// (or, with an empty value, removes) variables.
    fn new(scenario: &'static str, w: &World, changes: &[(&str, &str)]) -> Self {
        let host = w.registry.host();
        let mut env: Vec<(String, String)> = [
            ("PATH", std::env::var("PATH").unwrap_or_default()),
            ("FLY_API_TOKEN", FLY_TOKEN.into()),
            ("GHCR_TOKEN", GHCR_TOKEN.into()),
            ("GITHUB_TOKEN", GITHUB_TOKEN.into()),
            ("GITHUB_ACTOR", ACTOR.into()),
            ("RAILWAY_TOKEN", RAILWAY_TOKEN.into()),
            ("RENDER_API_KEY", RENDER_KEY.into()),
            ("STRIPE_SECRET_KEY", SECRET_VALUE.into()),
            ("SHIPIT_FLY_API_URL", w.fly.uri()),
            ("SHIPIT_FLY_POLL_INTERVAL", "10ms".into()),
            ("SHIPIT_INSECURE_REGISTRIES", host.clone()),
            ("SHIPIT_GHCR_HOSTS", host),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (k, v) in changes {
            env.retain(|(name, _)| name != k);
            if !v.is_empty() {
                env.push((k.to_string(), v.to_string()));
            }
        }
        Self { scenario, manifest: w.manifest(), env }
    }

    fn command(&self, mode: Mode, args: &[String], dir: &Path) -> Command {
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("shipit"));
        // CI=true: the binary never reaches the OS keyring of whoever runs the tests.
        cmd.env_clear().env("CI", "true").envs(self.env.iter().map(|(k, v)| (k, v))).current_dir(dir);
        if mode.github() {
            cmd.env("GITHUB_ACTIONS", "true").env("GITHUB_STEP_SUMMARY", dir.join("step-summary.md"));
        }
        cmd.args(mode.flags()).arg("-f").arg(&self.manifest).args(args);
        cmd
    }
}

/// One run of the binary.
struct Job {
    name: String,
    cmd: Command,
    /// Its working directory: the step summary and every file it writes land here.
    dir: tempfile::TempDir,
    /// Whether the output must show that the fake's echo reached shipit (scrubbed).
    expect_echo: bool,
}

/// What one run left behind.
struct Done {
    name: String,
    code: Option<i32>,
    expect_echo: bool,
    /// (where, text): stdout, stderr, and every file in the working directory.
    texts: Vec<(String, String)>,
    elapsed: Duration,
}

fn job(setup: &Setup, mode: Mode, args: &[&str], expect_echo: bool) -> Job {
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<String> = args.iter().map(|a| a.replace("{dir}", &dir.path().display().to_string())).collect();
    let cmd = setup.command(mode, &args, dir.path());
    Job { name: format!("[{}] {mode:?}: shipit {}", setup.scenario, args.join(" ")), cmd, dir, expect_echo }
}

/// Every file under `dir`, as (path, text).
fn files_under(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.push((path.display().to_string(), String::from_utf8_lossy(&bytes).into_owned()));
            }
        }
    }
    out
}

fn run(mut job: Job) -> Done {
    let started = Instant::now();
    let out = job.cmd.output().unwrap();
    let mut texts = vec![
        ("stdout".to_string(), String::from_utf8_lossy(&out.stdout).into_owned()),
        ("stderr".to_string(), String::from_utf8_lossy(&out.stderr).into_owned()),
    ];
    let mut code = out.status.code();
    // Under load a run can, rarely, finish before it meets the echoing call; it is run once more
    // and both runs' output is searched for leaks (the echo check then looks at either).
    if job.expect_echo && !texts.iter().any(|(_, t)| t.contains("echo: Authorization: ")) {
        let again = job.cmd.output().unwrap();
        texts.push(("stdout (second run)".to_string(), String::from_utf8_lossy(&again.stdout).into_owned()));
        texts.push(("stderr (second run)".to_string(), String::from_utf8_lossy(&again.stderr).into_owned()));
        code = again.status.code();
    }
    texts.extend(files_under(job.dir.path()));
    Done { name: job.name, code, expect_echo: job.expect_echo, texts, elapsed: started.elapsed() }
}

/// Runs the jobs on a few threads.
fn run_all(jobs: Vec<Job>, threads: usize) -> Vec<Done> {
    let queue = Mutex::new(jobs.into_iter().collect::<VecDeque<_>>());
    let done = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let Some(next) = queue.lock().unwrap().pop_front() else { break };
                    let result = run(next);
                    done.lock().unwrap().push(result);
                }
            });
        }
    });
    done.into_inner().unwrap()
}

/// Runs one command to set a scenario up; it must succeed.
fn seed(setup: &Setup, args: &[&str]) {
    let d = run(job(setup, Mode::Human, args, false));
    assert_eq!(d.code, Some(0), "{}: {:?}", d.name, d.texts);
}

/// The base64 characters made of `value`'s bits alone when it starts at byte 0, 1 or 2 of a
/// 3-byte group: whatever surrounds it (padding, `Basic user:`), its base64 contains one of these.
fn base64_cores(value: &[u8]) -> Vec<String> {
    let mut cores = Vec::new();
    for offset in 0..3 {
        let mut shifted = vec![0u8; offset];
        shifted.extend_from_slice(value);
        let (first, last) = ((offset * 8).div_ceil(6), shifted.len() * 8 / 6);
        for engine in [STANDARD_NO_PAD, URL_SAFE_NO_PAD] {
            cores.push(engine.encode(&shifted)[first..last].to_string());
        }
    }
    cores
}

/// What to search for, each with a name saying which form it is.
fn needles() -> Vec<(String, String)> {
    let mut needles = vec![
        // Plain, percent-encoded (unreserved characters stay as they are) and JSON-escaped
        // canaries all keep this, so this also finds a canary cut in half.
        ("`canary` (plain, percent-encoded or JSON-escaped canary, or a part of one)".into(), "canary".into()),
        ("a registry bearer token".into(), REGISTRY_TOKEN.into()),
    ];
    let every_char = utf8_percent_encode(REGISTRY_TOKEN, NON_ALPHANUMERIC).to_string();
    needles.push(("a percent-encoded registry bearer token".into(), every_char.to_lowercase()));
    needles.push(("a percent-encoded registry bearer token".into(), every_char));
    for prefix in ["canary-", REGISTRY_TOKEN] {
        for core in base64_cores(prefix.as_bytes()) {
            needles.push((format!("base64 of {prefix:?} (any alignment, standard or URL-safe)"), core));
        }
    }
    // The whole forms too, so a report says which one leaked.
    for c in CANARIES {
        let json = serde_json::to_string(c).unwrap();
        needles.push((format!("JSON-escaped {c:?}"), json[1..json.len() - 1].to_string()));
        needles.push((format!("percent-encoded {c:?}"), utf8_percent_encode(c, NON_ALPHANUMERIC).to_string()));
        for (name, engine) in [
            ("std", STANDARD),
            ("std, no padding", STANDARD_NO_PAD),
            ("url-safe", URL_SAFE),
            ("url-safe, no padding", URL_SAFE_NO_PAD),
        ] {
            needles.push((format!("base64 ({name}) of {c:?}"), engine.encode(c)));
            for context in [format!("Bearer {c}"), format!("{ACTOR}:{c}")] {
                needles.push((format!("base64 ({name}) of {context:?}"), engine.encode(context)));
            }
        }
    }
    needles
}

/// Every leak in `done`, one line each.
fn leaks(done: &[Done]) -> Vec<String> {
    let needles = needles();
    let mut found = Vec::new();
    for d in done {
        for (place, text) in &d.texts {
            let lower = text.to_lowercase();
            for (what, needle) in &needles {
                // `canary` in any case; the encoded forms exactly.
                let haystack = if needle == "canary" { &lower } else { text };
                if let Some(at) = haystack.find(needle.as_str()) {
                    let skip = haystack[..at].chars().count().saturating_sub(80);
                    let around: String = haystack.chars().skip(skip).take(200).collect();
                    found.push(format!("{} — {place}: {what}: …{around}…", d.name));
                }
            }
        }
    }
    found
}

/// Writes a small one-image OCI layout for `push`.
fn write_layout(dir: &Path) {
    let sha = |b: &[u8]| format!("sha256:{}", hex::encode(Sha256::digest(b)));
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let d = sha(bytes);
        std::fs::write(blobs.join(d.trim_start_matches("sha256:")), bytes).unwrap();
        (d, bytes.len())
    };
    let (layer_d, layer_n) = put(b"a small layer for the leak test");
    let config =
        br#"{"architecture":"amd64","os":"linux","config":{"User":"app"},"rootfs":{"type":"layers","diff_ids":[]}}"#;
    let (config_d, config_n) = put(config);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_d, "size": config_n},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_d, "size": layer_n}]
    })
    .to_string();
    let (manifest_d, manifest_n) = put(manifest.as_bytes());
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_d, "size": manifest_n}]
    });
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
}

/// Every command that talks to something (or writes something), by name.
fn commands(layout: &Path, host: &str) -> Vec<(&'static str, Vec<String>)> {
    let layout = layout.display().to_string();
    let (image, source) = (format!("{host}/acme/uploaded"), format!("{host}/acme/forgestack-api:v1"));
    let list: Vec<(&str, Vec<&str>)> = vec![
        ("deploy", vec!["deploy", "--env", "staging", "--tag", "v2", "--wait-timeout", "5s"]),
        ("dry-run", vec!["deploy", "--env", "staging", "--tag", "v2", "--dry-run"]),
        ("promote", vec!["promote", "staging", "production", "--wait-timeout", "5s"]),
        ("rollback", vec!["rollback", "--env", "staging", "--wait-timeout", "5s"]),
        ("releases", vec!["releases", "--env", "staging"]),
        ("status", vec!["status", "--env", "staging"]),
        ("plan", vec!["plan", "--env", "staging", "--tag", "v2"]),
        ("secrets", vec!["secrets", "sync", "--env", "staging"]),
        ("doctor", vec!["doctor", "--tag", "v2"]),
        ("push", vec!["push", &layout, "--image", &image, "--tag", "leak"]),
        ("tag", vec!["tag", &source, "leak"]),
        ("validate", vec!["validate"]),
        ("render", vec!["render", "--to", "all", "--env", "staging", "--out", "{dir}/rendered"]),
    ];
    list.into_iter().map(|(name, args)| (name, args.into_iter().map(str::to_string).collect())).collect()
}

/// Every command named in `run` (all when empty), in every mode; those named in `echo` must
/// show the fake's echo.
fn all_modes(setup: &Setup, commands: &[(&str, Vec<String>)], run: &[&str], echo: &[&str], jobs: &mut Vec<Job>) {
    for mode in MODES {
        for (name, args) in commands.iter().filter(|(name, _)| run.is_empty() || run.contains(name)) {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            jobs.push(job(setup, mode, &args, echo.contains(name)));
        }
    }
}

/// The commands that talk to Fly.
const FLY_COMMANDS: [&str; 8] = ["deploy", "promote", "rollback", "releases", "status", "plan", "secrets", "doctor"];

/// A world with v1 deployed to staging and v2 pushed, the canary Fly token accepted, and the
/// registry asking for the canary GHCR credentials (so bearer tokens are issued and sent).
async fn seeded_world(scenario: &'static str, changes: &[(&str, &str)]) -> (World, Setup) {
    let w = World::new().await;
    w.fly.accept_token(FLY_TOKEN);
    let registry_token = changes.iter().find(|(k, _)| *k == "GHCR_TOKEN").map_or(GHCR_TOKEN, |_| GITHUB_TOKEN);
    w.registry.require_auth(ACTOR, registry_token);
    w.push("v1");
    w.push("v2");
    let setup = Setup::new(scenario, &w, changes);
    let seeding = setup.clone();
    tokio::task::spawn_blocking(move || seed(&seeding, &["deploy", "--env", "staging", "--tag", "v1"])).await.unwrap();
    (w, setup)
}

fn fly_echo(method: Option<&str>, path: &str, status: u16) -> Fault {
    Fault::Echo {
        method: method.map(str::to_string),
        path_contains: path.to_string(),
        status,
        times: u32::MAX,
        retry_after: Some(0),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_or_secret_value_comes_out_of_any_command_in_any_mode() {
    let started = Instant::now();
    let layout = tempfile::tempdir().unwrap();
    write_layout(layout.path());
    let mut jobs = Vec::new();
    let mut worlds = Vec::new();

    // Fly quotes every request back, with a 401 and with a 500 (retried at once).
    for (scenario, status) in [("fly echoes 401", 401), ("fly echoes 500", 500)] {
        let (w, setup) = seeded_world(scenario, &[]).await;
        w.fly.inject(fly_echo(None, "", status));
        all_modes(&setup, &commands(layout.path(), &w.registry.host()), &[], &FLY_COMMANDS, &mut jobs);
        worlds.push(w);
    }

    // Fly quotes only what a deploy sends midway (machine updates) and the secrets calls (a
    // `secrets sync` body holds the values; a deploy lists the names): events, the summary and
    // a warning carry the echo. One world per mode, as these runs change what runs.
    for mode in MODES {
        let (w, setup) = seeded_world("fly echoes updates and secrets", &[]).await;
        w.fly.inject(fly_echo(Some("POST"), "/machines/$", 500));
        w.fly.inject(fly_echo(None, "/secrets", 422));
        for args in [
            &["deploy", "--env", "staging", "--tag", "v2", "--wait-timeout", "5s"][..],
            &["secrets", "sync", "--env", "staging"],
        ] {
            jobs.push(job(&setup, mode, args, true));
        }
        worlds.push(w);
    }

    // The registry quotes the token request (Basic with the GHCR token), and, with only
    // GITHUB_TOKEN set, every manifest GET and PUT (with the bearer token it issued) with a 500.
    let registry_commands = ["deploy", "plan", "doctor", "push", "tag", "promote"];
    for (scenario, path, status, changes, echo) in [
        ("registry echoes token requests", "/token", 401, &[][..], &["deploy", "plan", "doctor", "push", "tag"][..]),
        ("registry echoes manifests", "/manifests/", 500, &[("GHCR_TOKEN", "")][..], &["doctor", "push", "tag"][..]),
    ] {
        let (w, setup) = seeded_world(scenario, changes).await;
        w.registry.inject_echo(path, status, usize::MAX, Some(Duration::ZERO));
        all_modes(&setup, &commands(layout.path(), &w.registry.host()), &registry_commands, echo, &mut jobs);
        worlds.push(w);
    }

    // Credentials in URLs: the Fly API URL (printed by --dry-run, used by a deploy), the
    // Railway and Render ones, and the registry host lists.
    let w = World::new().await;
    w.push("v2");
    let fly_url = w.fly.uri().replacen("http://", &format!("http://{URL_USER}:{URL_PASSWORD}@"), 1);
    let railway_url = format!("https://{URL_USER}:{URL_PASSWORD}@backboard.railway.app/graphql/v2");
    let render_url = format!("https://{URL_USER}:{URL_PASSWORD}@api.render.com/v1");
    let userinfo_host = format!("http://{URL_USER}:{URL_PASSWORD}@{}", w.registry.host());
    let in_urls = Setup::new(
        "credentials in the API URLs",
        &w,
        &[
            ("SHIPIT_FLY_API_URL", &fly_url),
            ("SHIPIT_RAILWAY_API_URL", &railway_url),
            ("SHIPIT_RENDER_API_URL", &render_url),
        ],
    );
    let in_hosts = Setup::new(
        "credentials in the registry host lists",
        &w,
        &[("SHIPIT_INSECURE_REGISTRIES", &userinfo_host), ("SHIPIT_GHCR_HOSTS", &userinfo_host)],
    );
    let host = w.registry.host();
    for mode in MODES {
        for args in [
            &["deploy", "--env", "staging", "--tag", "v2", "--dry-run"][..],
            &["deploy", "--env", "production", "--tag", "v2", "--dry-run"],
            &["status", "--env", "staging"],
        ] {
            jobs.push(job(&in_urls, mode, args, false));
        }
    }
    all_modes(&in_hosts, &commands(layout.path(), &host), &["deploy", "plan", "doctor", "push", "tag"], &[], &mut jobs);
    worlds.push(w);

    let n = jobs.len();
    let done = tokio::task::spawn_blocking(move || run_all(jobs, 4)).await.unwrap();
    assert_eq!(done.len(), n);

    let crashed: Vec<_> = done.iter().filter(|d| d.code.is_none_or(|c| c == 101)).map(|d| &d.name).collect();
    assert!(crashed.is_empty(), "runs that panicked or were killed: {crashed:#?}");

    let found = leaks(&done);
    assert!(
        found.is_empty(),
        "{} leaks:\n{}",
        found.len(),
        found.iter().take(60).cloned().collect::<Vec<_>>().join("\n")
    );

    // The echo reached shipit's output (scrubbed): the test is not passing for want of a fault.
    let silent: Vec<_> = done
        .iter()
        .filter(|d| d.expect_echo && !d.texts.iter().any(|(_, t)| t.contains("echo: Authorization: ")))
        .map(|d| {
            let text: String = d.texts.iter().map(|(place, t)| format!("{place}: {t}")).collect();
            format!("{} (exit {:?}): {}", d.name, d.code, text.chars().take(600).collect::<String>())
        })
        .collect();
    assert!(silent.is_empty(), "{} runs never showed the echo:\n{}", silent.len(), silent.join("\n\n"));

    // The fakes' own files (the manifests' directories) hold nothing either.
    let mut written = Vec::new();
    for w in &worlds {
        written.extend(files_under(w.dir.path()));
    }
    let left = leaks(&[Done {
        name: "manifest directories".into(),
        code: Some(0),
        expect_echo: false,
        texts: written,
        elapsed: Duration::ZERO,
    }]);
    assert!(left.is_empty(), "{left:#?}");

    let slowest = done.iter().max_by_key(|d| d.elapsed).map(|d| (d.name.clone(), d.elapsed));
    eprintln!("{n} runs in {:.1}s; slowest: {slowest:?}", started.elapsed().as_secs_f64());
}

/// The search itself: every form of every canary, and of the registry's tokens, is found.
#[test]
fn the_search_finds_every_form() {
    let quoted = |c: &str| {
        let json = serde_json::to_string(c).unwrap();
        json[1..json.len() - 1].to_string()
    };
    let issued = format!("{REGISTRY_TOKEN}17");
    for c in CANARIES.iter().copied().chain([issued.as_str()]) {
        let mut forms = vec![
            c.to_string(),
            utf8_percent_encode(c, NON_ALPHANUMERIC).to_string(),
            utf8_percent_encode(c, NON_ALPHANUMERIC).to_string().to_lowercase(),
            shipit_testkit::echo::percent(c.as_bytes()),
            quoted(c),
        ];
        if c.starts_with("canary") {
            forms.push(format!("{}…", &c[..10]));
        }
        if c.starts_with("canary") {
            forms.push(c.to_uppercase());
        }
        for engine in [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD] {
            forms.push(engine.encode(c));
            forms.push(engine.encode(format!("Bearer {c}")));
            forms.push(engine.encode(format!("{ACTOR}:{c}")));
            forms.push(engine.encode(format!("{{\"values\":{{\"K\":\"{}\"}}}}", quoted(c))));
        }
        for form in forms {
            let done = Done {
                name: "probe".into(),
                code: Some(0),
                expect_echo: false,
                texts: vec![("stdout".into(), format!("error: got {form} back"))],
                elapsed: Duration::ZERO,
            };
            assert!(!leaks(&[done]).is_empty(), "{c:?} as {form:?} is not found");
        }
    }
    let clean = Done {
        name: "clean".into(),
        code: Some(0),
        expect_echo: false,
        texts: vec![(
            "stdout".into(),
            "Fly refused the API token (401): echo: Authorization: Bearer *** (base64 ***)".into(),
        )],
        elapsed: Duration::ZERO,
    };
    assert!(leaks(&[clean]).is_empty());
}
