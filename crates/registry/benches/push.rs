//! Push benchmark: shipit's [`RegistryClient::push_layout`] against `skopeo copy` on a real
//! local registry (Debian's `docker-registry`, started by the bench itself through the test
//! harness in `tests/support`), plus the cost of a retag and the peak memory of a 1 GiB push.
//!
//! Run with `cargo bench -p shipit-registry --bench push` (see `docs/performance.md`). It
//! prints, in one run:
//!
//! 1. a 100 MiB single-layer push: shipit (in-process, tokio) vs `skopeo copy
//!    --dest-tls-verify=false oci:<dir> docker://…`, alternating, 5 runs each, every run into a
//!    fresh registry and repository (registry start-up not timed): medians and their ratio;
//! 2. three images sharing a 30 MiB base layer (plus a 10 MiB layer each) pushed to three
//!    sibling repositories, same method, and what each tool did (from the registry's log);
//! 3. the requests and blob bytes of one retag;
//! 4. the peak RSS (`VmHWM`) of a child process (this binary, re-executed with
//!    `SHIPIT_BENCH_CHILD=push:<layout>:<image>`) pushing a 1 GiB layer;
//! 5. the machine and the tool versions.
//!
//! Layers are real gzip streams (stored deflate blocks of pseudo-random bytes) written to disk
//! as they are generated, never held in memory: skopeo then sends them as they are instead of
//! compressing them on the way (it compresses a layer that does not start like gzip).
//!
//! Without `docker-registry` or `skopeo` it prints a SKIPPED line and exits 0 (1 with
//! `CI=true`). Run by `cargo test --benches` (no `--bench` argument) it does nothing.
// A benchmark binary fails loudly on any setup error, like a test; clippy's allow-*-in-tests
// does not cover bench targets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use sha2::{Digest, Sha256};
use shipit_core::ImageRef;
use shipit_registry::{PushOptions, PushReport, RegistryClient, UploadMode};
use support::{Access, OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, REGISTRY_BIN, RealRegistry};

const MIB: u64 = 1024 * 1024;
/// Runs per tool in the timed comparisons.
const RUNS: usize = 5;
/// The child-process mode: `push:<layout dir>:<image with tag>`.
const CHILD_VAR: &str = "SHIPIT_BENCH_CHILD";
/// Largest stored deflate block.
const GZIP_BLOCK: usize = 65_535;

fn main() {
    if let Ok(spec) = std::env::var(CHILD_VAR) {
        child(&spec);
        return;
    }
    if !std::env::args().any(|a| a == "--bench") {
        println!("push bench: nothing to do without --bench (run `cargo bench -p shipit-registry --bench push`)");
        return;
    }
    let started = Instant::now();
    println!("shipit push benchmark (crates/registry/benches/push.rs)");
    let Some(tools) = tools() else {
        if support::in_ci() {
            std::process::exit(1);
        }
        return;
    };
    let machine = machine(&tools);
    println!("{}", machine.join("\n"));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let work = tempfile::tempdir().unwrap();
    let seed = support::seed();

    let single = single_layer(rt.handle(), work.path(), seed);
    let variants = upload_variants(rt.handle(), &single.layout);
    let curl = curl_reference(&single.layout);
    drop(single.layout_dir);
    let shared = shared_base(rt.handle(), work.path(), seed + 1000);
    let retag = retag(rt.handle(), work.path(), seed + 2000);
    let rss = peak_rss(work.path(), seed + 3000);

    let met = |ok: bool| if ok { "met" } else { "NOT MET" };
    println!();
    println!("== summary (medians of {RUNS} runs each; a fresh registry and repository per run)");
    println!("{}", machine.join("\n"));
    println!(
        "push 100MiB single layer: shipit median {:.3}s, skopeo median {:.3}s, ratio {:.2}x (goal <= 1.0x: {})",
        single.shipit,
        single.skopeo,
        single.shipit / single.skopeo,
        met(single.shipit <= single.skopeo)
    );
    println!(
        "  CPU seconds (medians): shipit {:.2} + registry {:.2}; skopeo {:.2} + registry {:.2}",
        single.cpu.0, single.cpu.1, single.cpu.2, single.cpu.3
    );
    if let Some(reference) = curl {
        println!(
            "  reference, the layer alone by `curl -T`: median {reference:.3}s (shipit {:.2}x of it, skopeo {:.2}x)",
            single.shipit / reference,
            single.skopeo / reference
        );
    }
    for (name, secs) in &variants {
        println!("  shipit {name}: median {secs:.3}s ({:.2}x skopeo's median)", secs / single.skopeo);
    }
    println!(
        "push 3 images, shared 30MiB base + 10MiB each: shipit median {:.3}s, skopeo median {:.3}s, ratio {:.2}x \
         (goal <= 1.0x: {})",
        shared.shipit,
        shared.skopeo,
        shared.shipit / shared.skopeo,
        met(shared.shipit <= shared.skopeo)
    );
    println!("  shipit: {}", shared.traffic.0);
    println!("  skopeo: {}", shared.traffic.1);
    println!(
        "retag: {} requests ({} in the registry's log), {} blob bytes (goal 2, 0: {})",
        retag.requests,
        retag.logged,
        retag.blob_bytes,
        met(retag.requests == 2 && retag.logged == 2 && retag.blob_requests == 0 && retag.blob_bytes == 0)
    );
    println!(
        "peak RSS 1GiB push: {:.1} MiB (goal <= 64 MiB: {}); skopeo for reference: {:.1} MiB",
        rss.shipit_kib as f64 / 1024.0,
        met(rss.shipit_kib <= 64 * 1024),
        rss.skopeo_kib as f64 / 1024.0
    );
    println!("load average at the end: {}", load_average());
    println!(
        "bench took {:.1}s end to end (layout generation and registry start-ups included)",
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------------
// Tools and machine
// ---------------------------------------------------------------------------------------------

struct Tools {
    skopeo: String,
    registry: String,
}

/// The tool versions, or `None` after printing SKIPPED.
fn tools() -> Option<Tools> {
    let version = |program: &str| -> Option<String> {
        let out = Command::new(program).arg("--version").stdin(Stdio::null()).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let registry = if Path::new(REGISTRY_BIN).exists() { version(REGISTRY_BIN) } else { None };
    let Some(registry) = registry else {
        println!("SKIPPED: docker-registry not installed (apt-get install docker-registry)");
        return None;
    };
    let Some(skopeo) = version("skopeo") else {
        println!("SKIPPED: skopeo not installed (apt-get install skopeo)");
        return None;
    };
    Some(Tools { skopeo, registry })
}

/// `/proc/loadavg`'s 1, 5 and 15 minute averages.
fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// The machine and the tool versions, as lines to print.
fn machine(tools: &Tools) -> Vec<String> {
    let nproc = Command::new("nproc").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string()))
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    vec![
        format!(
            "machine: nproc {}, {model}, {:.1} GiB RAM, Linux {}",
            nproc.unwrap_or_else(|_| "?".into()),
            mem_kib as f64 / 1024.0 / 1024.0,
            kernel.trim()
        ),
        format!("tools: {}; {}; shipit-registry {}", tools.skopeo, tools.registry, env!("CARGO_PKG_VERSION")),
        format!("load average at start: {} (other work on the machine skews the timings)", load_average()),
    ]
}

// ---------------------------------------------------------------------------------------------
// 1. One 100 MiB layer
// ---------------------------------------------------------------------------------------------

struct Single {
    shipit: f64,
    skopeo: f64,
    /// Median CPU seconds: shipit, the registry during shipit's push, skopeo, the registry
    /// during skopeo's.
    cpu: (f64, f64, f64, f64),
    layout: Image,
    layout_dir: tempfile::TempDir,
}

fn single_layer(rt: &tokio::runtime::Handle, work: &Path, seed: u64) -> Single {
    println!();
    println!("== 1. push 100 MiB single layer: shipit vs skopeo, alternating, {RUNS} runs each");
    let layout_dir = tempfile::tempdir_in(work).unwrap();
    let dir = new_layout(layout_dir.path());
    let layer = gzip_layer(&dir, seed, 100 * MIB);
    let image = finish_layout(&dir, &[layer], "single");
    println!("  layout: {} (layer {} bytes, gzip of 100 MiB random)", dir.display(), image.layers[0].size);

    // Untimed warm-up of both (binaries, page cache, first connections).
    let _ = shipit_run(rt, &image, "warmup/shipit", &PushOptions::default());
    let _ = skopeo_run(&image, "warmup/skopeo");
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let mut cpu: [Vec<f64>; 4] = Default::default();
    for run in 1..=RUNS {
        let s = shipit_run(rt, &image, &format!("bench/single-shipit-{run}"), &PushOptions::default());
        let k = skopeo_run(&image, &format!("bench/single-skopeo-{run}"));
        println!(
            "  run {run}: shipit {:.3}s (cpu {:.2}s, registry {:.2}s)  skopeo {:.3}s (cpu {:.2}s, registry {:.2}s)",
            s.secs, s.cpu, s.registry_cpu, k.secs, k.cpu, k.registry_cpu
        );
        if run == RUNS {
            println!("  registry log, last run: shipit {}; skopeo {}", s.traffic, k.traffic);
        }
        ours.push(s.secs);
        theirs.push(k.secs);
        for (v, x) in cpu.iter_mut().zip([s.cpu, s.registry_cpu, k.cpu, k.registry_cpu]) {
            v.push(x);
        }
    }
    let (shipit, skopeo) = (median(&ours), median(&theirs));
    let cpu = (median(&cpu[0]), median(&cpu[1]), median(&cpu[2]), median(&cpu[3]));
    println!(
        "  median: shipit {shipit:.3}s ({:.0} MiB/s), skopeo {skopeo:.3}s ({:.0} MiB/s); min/max shipit {:.3}/{:.3}s, \
         skopeo {:.3}/{:.3}s",
        100.0 / shipit,
        100.0 / skopeo,
        min(&ours),
        max(&ours),
        min(&theirs),
        max(&theirs)
    );
    Single { shipit, skopeo, cpu, layout: image, layout_dir }
}

/// shipit with other upload settings on the same layout: where does its time go?
fn upload_variants(rt: &tokio::runtime::Handle, image: &Image) -> Vec<(String, f64)> {
    println!();
    println!("== 1b. diagnostic: shipit upload settings on the same 100 MiB layout, 3 runs each");
    let variants = [
        ("monolithic (default), concurrency 1", PushOptions::default().concurrency(1)),
        ("chunked 4 MiB", PushOptions::default().upload(UploadMode::Chunked)),
        ("chunked 32 MiB", PushOptions::default().upload(UploadMode::Chunked).chunk_size(32 * MIB as usize)),
    ];
    let mut out = Vec::new();
    for (name, opts) in variants {
        let runs: Vec<Run> = (1..=3).map(|run| shipit_run(rt, image, &format!("bench/variant-{run}"), &opts)).collect();
        let secs: Vec<f64> = runs.iter().map(|r| r.secs).collect();
        let m = median(&secs);
        println!(
            "  {name}: {}  median {m:.3}s (cpu {:.2}s, registry {:.2}s; {})",
            secs.iter().map(|s| format!("{s:.3}s")).collect::<Vec<_>>().join(" "),
            median(&runs.iter().map(|r| r.cpu).collect::<Vec<_>>()),
            median(&runs.iter().map(|r| r.registry_cpu).collect::<Vec<_>>()),
            runs[0].traffic
        );
        out.push((name.to_string(), m));
    }
    out
}

struct Run {
    secs: f64,
    /// CPU seconds of the pushing side (the bench process, or skopeo).
    cpu: f64,
    /// CPU seconds of the registry during the push.
    registry_cpu: f64,
    traffic: Traffic,
}

/// One timed shipit push into a fresh registry: client build and push, not the start-up.
fn shipit_run(rt: &tokio::runtime::Handle, image: &Image, repo: &str, opts: &PushOptions) -> Run {
    let (registry, skip) = fresh_registry();
    let target: ImageRef = format!("{}/{repo}", registry.host()).parse().unwrap();
    let tags = vec!["v1".to_string()];
    let (cpu0, reg0) = (cpu_secs("self").0, cpu_secs(&registry.pid().to_string()).0);
    let started = Instant::now();
    let report: PushReport = rt.block_on(async {
        let client = RegistryClient::builder().insecure_hosts(vec![registry.host()]).build().unwrap();
        client.push_layout(&image.dir, &target, &tags, opts).await.unwrap()
    });
    let secs = started.elapsed().as_secs_f64();
    let (cpu, registry_cpu) = (cpu_secs("self").0 - cpu0, cpu_secs(&registry.pid().to_string()).0 - reg0);
    assert_eq!(report.digest, image.manifest, "shipit pushed the layout's manifest");
    let traffic = Traffic::of(&registry.access_log_since(skip), &image.sizes());
    Run { secs, cpu, registry_cpu, traffic }
}

/// One timed `skopeo copy` into a fresh registry: the whole process, not the start-up.
fn skopeo_run(image: &Image, repo: &str) -> Run {
    let (registry, skip) = fresh_registry();
    // skopeo's CPU: this process's reaped children, read right after it is reaped (before the
    // registry is).
    let (cpu0, reg0) = (cpu_secs("self").1, cpu_secs(&registry.pid().to_string()).0);
    let started = Instant::now();
    skopeo_copy(&image.dir, &format!("{}/{repo}:v1", registry.host()));
    let secs = started.elapsed().as_secs_f64();
    let (cpu, registry_cpu) = (cpu_secs("self").1 - cpu0, cpu_secs(&registry.pid().to_string()).0 - reg0);
    let traffic = Traffic::of(&registry.access_log_since(skip), &image.sizes());
    assert_eq!(traffic.foreign, 0, "skopeo uploaded blobs the layout does not have (recompressed?): {traffic}");
    Run { secs, cpu, registry_cpu, traffic }
}

/// A new registry, and how many requests its log already has (the harness's readiness
/// checks), to leave out of a run's count.
fn fresh_registry() -> (RealRegistry, usize) {
    let registry = RealRegistry::start().expect("docker-registry is installed");
    let skip = registry.access_log().len();
    (registry, skip)
}

/// CPU seconds (user + system) of `/proc/<pid>` (`self` for this process): its own, and its
/// waited-for children's. Ticks are USER_HZ, 100 on Linux.
fn cpu_secs(pid: &str) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which ends with the last ')': state is field 3.
    let fields: Vec<u64> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default()
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let field = |n: usize| fields.get(n - 3).copied().unwrap_or(0) as f64 / 100.0;
    (field(14) + field(15), field(16) + field(17))
}

/// About the registry's intake alone: one `curl -T` PUT of the layer into an open upload
/// session (no digest computed on the client side, no config, manifest or tag), 3 runs; `None`
/// without curl.
fn curl_reference(image: &Image) -> Option<f64> {
    println!();
    println!("== 1c. reference: the layer alone sent by `curl -T` (one PUT into a session), 3 runs");
    if Command::new("curl").arg("--version").stdout(Stdio::null()).status().is_err() {
        println!("  SKIPPED: curl not installed");
        return None;
    }
    let layer = &image.layers[0];
    let mut secs = Vec::new();
    for run in 1..=3 {
        let registry = RealRegistry::start().expect("docker-registry is installed");
        let post = Command::new("curl")
            .args(["-s", "-D", "-", "-o", "/dev/null", "-X", "POST"])
            .arg(format!("http://{}/v2/bench/curl-{run}/blobs/uploads/", registry.host()))
            .output()
            .unwrap();
        let headers = String::from_utf8_lossy(&post.stdout).to_string();
        let location = headers
            .lines()
            .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("location")).map(|(_, v)| v.trim()))
            .unwrap_or_else(|| panic!("no Location: {headers}"));
        let location = if location.starts_with("http") {
            location.to_string()
        } else {
            format!("http://{}{location}", registry.host())
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{separator}digest={}", layer.digest.replace(':', "%3A"));
        let started = Instant::now();
        let put = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Expect:"])
            .args(["-H", "Content-Type: application/octet-stream", "-T"])
            .arg(blob_path(&image.dir, &layer.digest))
            .arg(&url)
            .output()
            .unwrap();
        secs.push(started.elapsed().as_secs_f64());
        assert_eq!(String::from_utf8_lossy(&put.stdout), "201", "curl PUT {url}");
    }
    let m = median(&secs);
    println!("  {}  median {m:.3}s", secs.iter().map(|s| format!("{s:.3}s")).collect::<Vec<_>>().join(" "));
    Some(m)
}

fn skopeo_copy(layout: &Path, dest: &str) {
    let out = Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false", &format!("oci:{}", layout.display()), &format!("docker://{dest}")])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo copy to {dest}: {}", String::from_utf8_lossy(&out.stderr));
}

// ---------------------------------------------------------------------------------------------
// 2. Three images sharing a base layer
// ---------------------------------------------------------------------------------------------

struct Shared {
    shipit: f64,
    skopeo: f64,
    /// What each did, from the registry's log (last run).
    traffic: (String, String),
}

const SERVICES: [&str; 3] = ["api", "worker", "web"];

fn shared_base(rt: &tokio::runtime::Handle, work: &Path, seed: u64) -> Shared {
    println!();
    println!(
        "== 2. push 3 images (30 MiB shared base + 10 MiB own layer each) to 3 sibling repositories, one after \
         the other: shipit vs skopeo, alternating, {RUNS} runs each"
    );
    let root = tempfile::tempdir_in(work).unwrap();
    let mut base: Option<(Blob, PathBuf)> = None;
    let mut images = Vec::new();
    for (i, name) in SERVICES.iter().enumerate() {
        let dir = new_layout(&root.path().join(name));
        let base_blob = match &base {
            Some((blob, path)) => {
                std::fs::hard_link(path, blob_path(&dir, &blob.digest))
                    .or_else(|_| std::fs::copy(path, blob_path(&dir, &blob.digest)).map(|_| ()))
                    .unwrap();
                blob.clone()
            }
            None => {
                let blob = gzip_layer(&dir, seed, 30 * MIB);
                base = Some((blob.clone(), blob_path(&dir, &blob.digest)));
                blob
            }
        };
        let own = gzip_layer(&dir, seed + 1 + i as u64, 10 * MIB);
        images.push(finish_layout(&dir, &[base_blob, own], name));
    }
    let sizes: HashMap<String, u64> = images.iter().flat_map(|i| i.sizes()).collect();
    let distinct: u64 = sizes.values().sum();
    let naive: u64 = images.iter().map(|i| i.sizes().values().sum::<u64>()).sum();
    println!(
        "  blob bytes: {:.1} MiB distinct, {:.1} MiB if every image sent all of its blobs",
        distinct as f64 / MIB as f64,
        naive as f64 / MIB as f64
    );

    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let mut descriptions = (String::new(), String::new());
    for run in 0..=RUNS {
        // shipit: the first image plainly, the others mounting from the first repository.
        let (registry, skip) = fresh_registry();
        let prefix = format!("bench{run}-shipit");
        let started = Instant::now();
        rt.block_on(async {
            let client = RegistryClient::builder().insecure_hosts(vec![registry.host()]).build().unwrap();
            for (i, image) in images.iter().enumerate() {
                let target: ImageRef = format!("{}/{prefix}/{}", registry.host(), SERVICES[i]).parse().unwrap();
                let opts = match i {
                    0 => PushOptions::default(),
                    _ => PushOptions::default().mount_from(vec![format!("{prefix}/{}", SERVICES[0])]),
                };
                let report = client.push_layout(&image.dir, &target, &["v1".to_string()], &opts).await.unwrap();
                assert_eq!(report.digest, image.manifest);
            }
        });
        let s = started.elapsed().as_secs_f64();
        let s_traffic = Traffic::of(&registry.access_log_since(skip), &sizes);
        drop(registry);

        // skopeo: three copies, one per repository.
        let (registry, skip) = fresh_registry();
        let started = Instant::now();
        for (i, image) in images.iter().enumerate() {
            skopeo_copy(&image.dir, &format!("{}/bench{run}-skopeo/{}:v1", registry.host(), SERVICES[i]));
        }
        let k = started.elapsed().as_secs_f64();
        let k_traffic = Traffic::of(&registry.access_log_since(skip), &sizes);
        assert_eq!(k_traffic.foreign, 0, "skopeo uploaded blobs the layouts do not have: {k_traffic}");
        drop(registry);

        if run == 0 {
            println!("  warm-up (untimed): shipit {s:.3}s, skopeo {k:.3}s");
            continue;
        }
        println!("  run {run}: shipit {s:.3}s  skopeo {k:.3}s");
        descriptions = (s_traffic.to_string(), k_traffic.to_string());
        ours.push(s);
        theirs.push(k);
    }
    let (shipit, skopeo) = (median(&ours), median(&theirs));
    println!("  what shipit did (registry log, last run): {}", descriptions.0);
    println!("  what skopeo did (registry log, last run): {}", descriptions.1);
    println!(
        "  median: shipit {shipit:.3}s, skopeo {skopeo:.3}s; min/max shipit {:.3}/{:.3}s, skopeo {:.3}/{:.3}s",
        min(&ours),
        max(&ours),
        min(&theirs),
        max(&theirs)
    );
    Shared { shipit, skopeo, traffic: descriptions }
}

// ---------------------------------------------------------------------------------------------
// 3. Retag
// ---------------------------------------------------------------------------------------------

struct Retag {
    /// `RetagReport::requests`.
    requests: u64,
    /// Requests in the registry's log.
    logged: usize,
    /// Requests under `/blobs/` in the registry's log.
    blob_requests: usize,
    blob_bytes: u64,
}

fn retag(rt: &tokio::runtime::Handle, work: &Path, seed: u64) -> Retag {
    println!();
    println!("== 3. retag (one tag added to a pushed image)");
    let layout_dir = tempfile::tempdir_in(work).unwrap();
    let dir = new_layout(layout_dir.path());
    let layer = gzip_layer(&dir, seed, 4 * MIB);
    let image = finish_layout(&dir, &[layer], "retag");
    let registry = RealRegistry::start().expect("docker-registry is installed");
    let img: ImageRef = format!("{}/bench/retag", registry.host()).parse().unwrap();
    let client = RegistryClient::builder().insecure_hosts(vec![registry.host()]).build().unwrap();
    let (report, client_requests, log) = rt.block_on(async {
        client.push_layout(&dir, &img, &["3f2c1ab".to_string()], &PushOptions::default()).await.unwrap();
        let before_log = registry.access_log().len();
        let before = client.requests_made();
        let report = client.retag(&img.with_tag("3f2c1ab"), &["staging".to_string()]).await.unwrap();
        let client_requests = client.requests_made() - before;
        let log = registry.access_log_since(before_log);
        let resolved = client.resolve_digest(&img.with_tag("staging")).await.unwrap();
        assert_eq!(resolved, image.manifest, "staging points at the pushed image");
        (report, client_requests, log)
    });
    let traffic = Traffic::of(&log, &image.sizes());
    let calls: Vec<String> = log.iter().map(|a| format!("{} {} {}", a.method, a.path(), a.status)).collect();
    println!(
        "  RetagReport.requests {}, client counter {client_requests}, registry log {} requests: {}",
        report.requests,
        log.len(),
        calls.join(", ")
    );
    println!("  blob requests {}, blob bytes {}", traffic.blob_requests, traffic.blob_bytes());
    Retag {
        requests: report.requests,
        logged: log.len(),
        blob_requests: traffic.blob_requests,
        blob_bytes: traffic.blob_bytes(),
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Peak RSS of a 1 GiB push, in a child process
// ---------------------------------------------------------------------------------------------

struct Rss {
    shipit_kib: u64,
    skopeo_kib: u64,
}

fn peak_rss(work: &Path, seed: u64) -> Rss {
    println!();
    println!("== 4. peak RSS pushing a 1 GiB layer (child process, /proc/<pid>/status VmHWM polled every 5 ms)");
    let layout_dir = tempfile::tempdir_in(work).unwrap();
    let dir = new_layout(layout_dir.path());
    let started = Instant::now();
    let layer = gzip_layer(&dir, seed, 1024 * MIB);
    let image = finish_layout(&dir, &[layer], "big");
    println!("  layer written streaming in {:.1}s: {} bytes", started.elapsed().as_secs_f64(), image.layers[0].size);

    let registry = RealRegistry::start().expect("docker-registry is installed");
    let spec = format!("push:{}:{}/bench/big:v1", dir.display(), registry.host());
    assert!(!dir.display().to_string().contains(':'), "the layout path must not contain ':'");
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.env(CHILD_VAR, &spec).stdin(Stdio::null()).stdout(Stdio::piped());
    let (shipit_kib, secs, stdout) = watch(command);
    assert!(stdout.contains(&format!("digest={}", image.manifest)), "child: {stdout}");
    let own: u64 =
        stdout.split_whitespace().find_map(|w| w.strip_prefix("vmhwm_kib=")).and_then(|v| v.parse().ok()).unwrap_or(0);
    println!(
        "  shipit (child): {secs:.2}s, peak RSS polled {:.1} MiB (the child's own final VmHWM: {:.1} MiB)",
        shipit_kib as f64 / 1024.0,
        own as f64 / 1024.0
    );
    drop(registry);

    let registry = RealRegistry::start().expect("docker-registry is installed");
    let mut command = Command::new("skopeo");
    command
        .args([
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{}", dir.display()),
            &format!("docker://{}/bench/big:v1", registry.host()),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let (skopeo_kib, secs, _) = watch(command);
    println!("  skopeo (reference): {secs:.2}s, peak RSS polled {:.1} MiB", skopeo_kib as f64 / 1024.0);
    Rss { shipit_kib, skopeo_kib }
}

/// Runs `command`, polling its `VmHWM` until it exits: the last reading is the peak. Returns
/// it (KiB), the wall time and the child's stdout. Panics when the child fails.
fn watch(mut command: Command) -> (u64, f64, String) {
    let started = Instant::now();
    let mut child = command.spawn().unwrap();
    let pid = child.id();
    let mut peak = 0;
    let status = loop {
        // Read before reaping: once reaped (or a zombie) the process has no VmHWM any more.
        if let Some(kib) = vm_hwm_kib(pid) {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let secs = started.elapsed().as_secs_f64();
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        std::io::Read::read_to_string(&mut out, &mut stdout).unwrap();
    }
    assert!(status.success(), "{command:?} failed: {status}: {stdout}");
    (peak, secs, stdout)
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// The child: push `<layout>` to `<image>` (its tag included), print the digest, the time and
/// its own final `VmHWM`.
fn child(spec: &str) {
    let rest =
        spec.strip_prefix("push:").unwrap_or_else(|| panic!("{CHILD_VAR}={spec}: expected push:<layout>:<image>"));
    let (layout, image) = rest.split_once(':').unwrap();
    let image: ImageRef = image.parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let started = Instant::now();
    let report = rt.block_on(async {
        let client = RegistryClient::builder()
            .insecure_hosts(vec![image.registry.clone()])
            .timeout(Duration::from_secs(600))
            .build()
            .unwrap();
        client.push_layout(Path::new(layout), &image, &[], &PushOptions::default()).await.unwrap()
    });
    println!(
        "digest={} bytes={} secs={:.2} vmhwm_kib={}",
        report.digest,
        report.bytes_uploaded,
        started.elapsed().as_secs_f64(),
        vm_hwm_kib(std::process::id()).unwrap_or(0)
    );
}

// ---------------------------------------------------------------------------------------------
// What the registry saw
// ---------------------------------------------------------------------------------------------

/// A push as the registry's access log tells it.
#[derive(Default)]
struct Traffic {
    requests: usize,
    blob_requests: usize,
    /// Blob uploads committed (`PUT …?digest=` answered 201).
    uploads: usize,
    upload_bytes: u64,
    /// Committed uploads of digests the layouts do not have (a tool rewrote a blob).
    foreign: usize,
    /// Cross-repository mounts answered 201.
    mounts: usize,
    /// `HEAD` of a blob answered 200 (already there, in this or a mount source repository).
    heads_found: usize,
    /// Blob bytes served by `GET`.
    download_bytes: u64,
}

impl Traffic {
    fn of(log: &[Access], sizes: &HashMap<String, u64>) -> Traffic {
        let mut t = Traffic { requests: log.len(), ..Traffic::default() };
        for a in log.iter().filter(|a| a.is_blob()) {
            t.blob_requests += 1;
            match a.method.as_str() {
                "PUT" if a.status == 201 => {
                    let digest = a
                        .uri
                        .split(['?', '&'])
                        .find_map(|p| p.strip_prefix("digest="))
                        .map(|d| d.replace("%3A", ":").replace("%3a", ":"))
                        .unwrap_or_default();
                    t.uploads += 1;
                    match sizes.get(&digest) {
                        Some(size) => t.upload_bytes += size,
                        None => t.foreign += 1,
                    }
                }
                "POST" if a.status == 201 && a.uri.contains("mount=") => t.mounts += 1,
                "HEAD" if a.status == 200 => t.heads_found += 1,
                "GET" if a.status == 200 => t.download_bytes += a.size,
                _ => {}
            }
        }
        t
    }

    fn blob_bytes(&self) -> u64 {
        self.upload_bytes + self.download_bytes
    }
}

impl std::fmt::Display for Traffic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} requests, {} blobs uploaded ({:.1} MiB), {} mounted, {} HEAD hits",
            self.requests,
            self.uploads,
            self.upload_bytes as f64 / MIB as f64,
            self.mounts,
            self.heads_found
        )?;
        if self.foreign > 0 {
            write!(f, ", {} uploads of blobs not in the layout", self.foreign)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// OCI layouts, written streaming
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
struct Blob {
    digest: String,
    size: u64,
    /// For a layer: the digest of its uncompressed content.
    diff_id: String,
}

struct Image {
    dir: PathBuf,
    manifest: String,
    config: Blob,
    layers: Vec<Blob>,
}

impl Image {
    /// Blob digests and sizes (config and layers).
    fn sizes(&self) -> HashMap<String, u64> {
        std::iter::once(&self.config).chain(&self.layers).map(|b| (b.digest.clone(), b.size)).collect()
    }
}

fn new_layout(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    dir.to_path_buf()
}

fn blob_path(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))
}

fn write_blob(dir: &Path, bytes: &[u8]) -> Blob {
    let digest = support::sha256(bytes);
    std::fs::write(blob_path(dir, &digest), bytes).unwrap();
    Blob { digest, size: bytes.len() as u64, diff_id: String::new() }
}

/// A config and a manifest for `layers` (already in `dir`), and `index.json` naming it `latest`.
fn finish_layout(dir: &Path, layers: &[Blob], name: &str) -> Image {
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2026-11-01T00:00:00Z",
        "config": {
            "User": "10001:10001",
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"],
            "Cmd": ["/app/server"],
            "Labels": {"dev.shipit.bench": name},
        },
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()},
    }))
    .unwrap();
    let config = write_blob(dir, &config);
    let descriptor = |media_type: &str, b: &Blob| json!({"mediaType": media_type, "digest": b.digest, "size": b.size});
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, &config),
        "layers": layers.iter().map(|l| descriptor(OCI_LAYER, l)).collect::<Vec<_>>(),
    }))
    .unwrap();
    let manifest = write_blob(dir, &manifest);
    let mut top = descriptor(OCI_MANIFEST, &manifest);
    top["annotations"] = json!({"org.opencontainers.image.ref.name": "latest"});
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [top]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    Image { dir: dir.to_path_buf(), manifest: manifest.digest, config, layers: layers.to_vec() }
}

/// Writes a gzip stream of `payload` pseudo-random bytes (stored deflate blocks: random bytes
/// do not compress) into `dir`'s blobs, generating, hashing and writing it block by block.
fn gzip_layer(dir: &Path, seed: u64, payload: u64) -> Blob {
    let partial = dir.join("blobs/sha256").join(format!(".partial-{seed}"));
    let file = BufWriter::with_capacity(1 << 20, File::create(&partial).unwrap());
    let mut out = Hashing { inner: file, sha: Sha256::new(), len: 0 };
    let crc_table = Crc32::new();
    let (mut crc, mut raw) = (0u32, Sha256::new());
    let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut block = vec![0u8; GZIP_BLOCK];
    // Header: magic, deflate, no flags, no mtime, no extra flags, OS unknown.
    out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]).unwrap();
    let mut left = payload;
    loop {
        let n = usize::try_from(left.min(GZIP_BLOCK as u64)).unwrap();
        let data = &mut block[..n];
        for chunk in data.chunks_mut(8) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            chunk.copy_from_slice(&rng.to_le_bytes()[..chunk.len()]);
        }
        left -= n as u64;
        let len = u16::try_from(n).unwrap();
        out.write_all(&[u8::from(left == 0)]).unwrap();
        out.write_all(&len.to_le_bytes()).unwrap();
        out.write_all(&(!len).to_le_bytes()).unwrap();
        out.write_all(data).unwrap();
        crc = crc_table.update(crc, data);
        raw.update(&*data);
        if left == 0 {
            break;
        }
    }
    out.write_all(&crc.to_le_bytes()).unwrap();
    out.write_all(&(payload as u32).to_le_bytes()).unwrap();
    out.inner.flush().unwrap();
    let digest = format!("sha256:{}", hex::encode(out.sha.finalize()));
    std::fs::rename(&partial, blob_path(dir, &digest)).unwrap();
    Blob { digest, size: out.len, diff_id: format!("sha256:{}", hex::encode(raw.finalize())) }
}

/// A writer that hashes and counts what goes through it.
struct Hashing<W> {
    inner: W,
    sha: Sha256,
    len: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// CRC-32 (gzip's), slice-by-8.
struct Crc32 {
    table: Vec<[u32; 256]>,
}

impl Crc32 {
    fn new() -> Self {
        let mut table = vec![[0u32; 256]; 8];
        for (i, slot) in table[0].iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 == 1 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
            *slot = c;
        }
        for k in 1..8 {
            let (done, rest) = table.split_at_mut(k);
            for (slot, &prev) in rest[0].iter_mut().zip(done[k - 1].iter()) {
                *slot = (prev >> 8) ^ done[0][(prev & 0xff) as usize];
            }
        }
        Self { table }
    }

    fn update(&self, crc: u32, data: &[u8]) -> u32 {
        let t = &self.table;
        let mut crc = !crc;
        let mut chunks = data.chunks_exact(8);
        for c in &mut chunks {
            let lo = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) ^ crc;
            let hi = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
            crc = t[7][(lo & 0xff) as usize]
                ^ t[6][((lo >> 8) & 0xff) as usize]
                ^ t[5][((lo >> 16) & 0xff) as usize]
                ^ t[4][(lo >> 24) as usize]
                ^ t[3][(hi & 0xff) as usize]
                ^ t[2][((hi >> 8) & 0xff) as usize]
                ^ t[1][((hi >> 16) & 0xff) as usize]
                ^ t[0][(hi >> 24) as usize];
        }
        for &b in chunks.remainder() {
            crc = t[0][((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
        }
        !crc
    }
}

// ---------------------------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------------------------

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn min(xs: &[f64]) -> f64 {
    xs.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(xs: &[f64]) -> f64 {
    xs.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}
