//! Test support for pushes: a REAL registry (Debian's `docker-registry`, distribution 2.8)
//! started by the tests themselves, and OCI image layouts built without Docker.
//!
//! # The registry
//!
//! [`RealRegistry::start`] writes a config into a temporary directory (filesystem storage in
//! that directory, `http.addr` on a free 127.0.0.1 port, access log on), runs
//! `docker-registry serve <config>` with stdout (the access log: one combined-log line per
//! request, with method, URI, status and response size) and stderr (its own log) captured to
//! files, waits until `GET /v2/` answers, and kills the process by its PID on drop.
//!
//! When the binary is missing: with `CI=true` the test fails (a CI that cannot run these tests
//! must not pass them silently); otherwise it prints
//! `SKIPPED: docker-registry not installed (apt-get install docker-registry)` and
//! [`RealRegistry::start`] returns `None`, and the test returns early. `skopeo` is handled the
//! same way by [`skopeo_raw`].
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Where Debian installs the registry.
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// Whether this is CI (`CI=true`): missing tools then fail the test instead of skipping it.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Fails in CI, prints a visible SKIPPED line otherwise.
fn missing(tool: &str, package: &str) {
    assert!(!in_ci(), "{tool} is not installed and CI=true: install it (apt-get install {package})");
    eprintln!("SKIPPED: {tool} not installed (apt-get install {package})");
    println!("SKIPPED: {tool} not installed (apt-get install {package})");
}

/// One line of the registry's access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub method: String,
    /// Path and query, as sent.
    pub uri: String,
    pub status: u16,
    /// Response body size.
    pub size: u64,
}

impl Access {
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or_default()
    }
    pub fn is_blob(&self) -> bool {
        self.uri.contains("/blobs/")
    }
    pub fn is_manifest(&self) -> bool {
        self.uri.contains("/manifests/")
    }
}

/// A running `docker-registry`, killed on drop.
pub struct RealRegistry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    marks: AtomicU64,
}

impl Drop for RealRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RealRegistry {
    /// Starts a registry, or returns `None` (after printing SKIPPED) when it is not installed
    /// outside CI. Panics when it is missing in CI or does not come up.
    pub fn start() -> Option<RealRegistry> {
        if !Path::new(REGISTRY_BIN).exists() {
            missing("docker-registry", "docker-registry");
            return None;
        }
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start() {
                Ok(registry) => return Some(registry),
                Err(e) => last = e,
            }
        }
        panic!("docker-registry did not start: {last}");
    }

    fn try_start() -> Result<RealRegistry, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        // A free port: bind :0, read it, release it (a small race, covered by the retries).
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
        let storage = dir.path().join("storage");
        let config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            storage.display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
        let stdout = std::fs::File::create(dir.path().join("access.log")).map_err(|e| e.to_string())?;
        let stderr = std::fs::File::create(dir.path().join("registry.log")).map_err(|e| e.to_string())?;
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot run {REGISTRY_BIN}: {e}"))?;
        let mut registry = RealRegistry { child, port, dir, marks: AtomicU64::new(0) };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = registry.child.try_wait() {
                return Err(format!("exited with {status}: {}", registry.registry_log()));
            }
            if http_get(port, "/v2/").is_some_and(|status| status == 200) {
                return Ok(registry);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("no answer on port {port} within 15 s: {}", registry.registry_log()))
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The PID, for the record.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The registry's own log (stderr).
    pub fn registry_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Every request the registry logged so far, oldest first (without the harness's own
    /// marker requests). Waits until a marker request sent now shows up, so every request that
    /// was answered before the call is in.
    pub fn access_log(&self) -> Vec<Access> {
        let n = self.marks.fetch_add(1, Ordering::Relaxed);
        let mark = format!("/v2/?shipit-mark={n}");
        http_get(self.port, &mark);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let lines = self.read_access_log();
            if lines.iter().any(|a| a.uri == mark) || Instant::now() > deadline {
                // Requests answered just before the marker may log a hair later.
                std::thread::sleep(Duration::from_millis(50));
                return self.read_access_log().into_iter().filter(|a| !a.uri.contains("shipit-mark=")).collect();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Requests logged after the first `skip` (see [`access_log`](Self::access_log)).
    pub fn access_log_since(&self, skip: usize) -> Vec<Access> {
        self.access_log().into_iter().skip(skip).collect()
    }

    fn read_access_log(&self) -> Vec<Access> {
        let text = std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        text.lines().filter_map(parse_access).collect()
    }
}

/// `127.0.0.1 - - [date] "GET /v2/ HTTP/1.1" 200 2 "" "ua"`.
fn parse_access(line: &str) -> Option<Access> {
    let (_, rest) = line.split_once('"')?;
    let (request, rest) = rest.split_once('"')?;
    let mut parts = request.split_whitespace();
    let (method, uri) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut numbers = rest.split_whitespace();
    let status = numbers.next()?.parse().ok()?;
    let size = numbers.next()?.parse().unwrap_or(0);
    Some(Access { method, uri, status, size })
}

/// A blocking `GET` over a raw socket; the status, if the server answered.
fn http_get(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

/// `skopeo inspect --raw --tls-verify=false docker://<image>`: the raw manifest, or `None`
/// (after printing SKIPPED) when skopeo is not installed outside CI.
pub fn skopeo_raw(image: &str) -> Option<Vec<u8>> {
    let output = match Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{image}")])
        .output()
    {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            missing("skopeo", "skopeo");
            return None;
        }
        Err(e) => panic!("cannot run skopeo: {e}"),
    };
    assert!(output.status.success(), "skopeo inspect {image}: {}", String::from_utf8_lossy(&output.stderr));
    Some(output.stdout)
}

// ---------------------------------------------------------------------------------------------
// OCI layouts
// ---------------------------------------------------------------------------------------------

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const IN_TOTO: &str = "application/vnd.in-toto+json";

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// `len` pseudo-random bytes (xorshift from `seed`): layers that differ between tests.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A fresh seed per call, so tests sharing a registry never share blobs by accident.
pub fn seed() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (NEXT.fetch_add(1, Ordering::Relaxed) << 48)
}

/// A descriptor as JSON.
pub fn descriptor(media_type: &str, bytes: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": sha256(bytes), "size": bytes.len()})
}

/// An OCI layout being built: blobs by digest, and what `index.json` lists.
#[derive(Default, Clone)]
pub struct Layout {
    pub blobs: BTreeMap<String, Vec<u8>>,
    pub index: Vec<Value>,
}

impl Layout {
    /// Adds a blob; returns its digest.
    pub fn blob(&mut self, bytes: Vec<u8>) -> String {
        let digest = sha256(&bytes);
        self.blobs.insert(digest.clone(), bytes);
        digest
    }

    /// An image for `os/arch`: a config the image policy can read (`User`, `ExposedPorts`,
    /// `Healthcheck`) and `layers`. Returns the manifest's descriptor (with its platform).
    pub fn image(&mut self, os: &str, arch: &str, layers: Vec<Vec<u8>>) -> Value {
        let diff_ids: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
        let config = json!({
            "architecture": arch,
            "os": os,
            "created": "2026-11-01T00:00:00Z",
            "config": {
                "User": "10001:10001",
                "ExposedPorts": {"8080/tcp": {}},
                "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"],
                "Cmd": ["/app/server"],
                "Healthcheck": {"Test": ["CMD", "/app/server", "--health"], "Interval": 10_000_000_000u64},
            },
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        let config = serde_json::to_vec(&config).unwrap();
        let layer_descriptors: Vec<Value> = layers.iter().map(|l| descriptor(OCI_LAYER, l)).collect();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, &config),
            "layers": layer_descriptors,
        });
        self.blob(config);
        for layer in layers {
            self.blob(layer);
        }
        let bytes = serde_json::to_vec_pretty(&manifest).unwrap();
        let mut desc = descriptor(OCI_MANIFEST, &bytes);
        desc["platform"] = json!({"os": os, "architecture": arch});
        self.blob(bytes);
        desc
    }

    /// A buildx attestation manifest for the image `subject` (platform unknown/unknown, the
    /// `vnd.docker.reference.*` annotations, an in-toto layer).
    pub fn attestation(&mut self, subject: &Value) -> Value {
        let subject_digest = subject["digest"].as_str().unwrap().to_string();
        let config = serde_json::to_vec(&json!({
            "architecture": "unknown", "os": "unknown", "config": {}, "rootfs": {"type": "layers", "diff_ids": []}
        }))
        .unwrap();
        let statement = serde_json::to_vec(&json!({
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": "https://slsa.dev/provenance/v0.2",
            "subject": [{"name": "pkg:docker/acme/api", "digest": {"sha256": subject_digest.trim_start_matches("sha256:")}}],
            "predicate": {"builder": {"id": ""}, "buildType": "https://mobyproject.org/buildkit@v1"},
        }))
        .unwrap();
        let mut layer = descriptor(IN_TOTO, &statement);
        layer["annotations"] = json!({"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"});
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, &config),
            "layers": [layer],
        });
        self.blob(config);
        self.blob(statement);
        let bytes = serde_json::to_vec(&manifest).unwrap();
        let mut desc = descriptor(OCI_MANIFEST, &bytes);
        desc["platform"] = json!({"os": "unknown", "architecture": "unknown"});
        desc["annotations"] = json!({
            "vnd.docker.reference.digest": subject_digest,
            "vnd.docker.reference.type": "attestation-manifest",
        });
        self.blob(bytes);
        desc
    }

    /// An OCI index of `manifests`; returns its descriptor.
    pub fn index_of(&mut self, manifests: Vec<Value>) -> Value {
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
        let bytes = serde_json::to_vec(&index).unwrap();
        let desc = descriptor(OCI_INDEX, &bytes);
        self.blob(bytes);
        desc
    }

    /// Lists `desc` in `index.json`, named `ref_name` when given.
    pub fn top(&mut self, mut desc: Value, ref_name: Option<&str>) -> &mut Self {
        if let Some(name) = ref_name {
            desc["annotations"] = json!({
                "org.opencontainers.image.ref.name": name,
                "io.containerd.image.name": format!("docker.io/acme/api:{name}"),
            });
        }
        self.index.push(desc);
        self
    }

    fn index_json(&self) -> Vec<u8> {
        serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.index})).unwrap()
    }

    /// Writes the layout as a directory.
    pub fn write_dir(&self, dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        std::fs::write(dir.join("index.json"), self.index_json()).unwrap();
        for (digest, bytes) in &self.blobs {
            std::fs::write(dir.join("blobs/sha256").join(digest.trim_start_matches("sha256:")), bytes).unwrap();
        }
        dir.to_path_buf()
    }

    /// Writes the layout as a tar, the way buildx does (directories, then files).
    pub fn write_tar(&self, file: &Path) -> PathBuf {
        let out = std::fs::File::create(file).unwrap();
        let mut tar = tar::Builder::new(out);
        for dir in ["blobs/", "blobs/sha256/"] {
            let mut header = tar::Header::new_ustar();
            header.set_size(0);
            header.set_mode(0o755);
            header.set_entry_type(tar::EntryType::Directory);
            tar.append_data(&mut header, dir, &[][..]).unwrap();
        }
        let mut add = |name: &str, bytes: &[u8]| {
            let mut header = tar::Header::new_ustar();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut header, name, bytes).unwrap();
        };
        add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
        add("index.json", &self.index_json());
        for (digest, bytes) in &self.blobs {
            add(&format!("blobs/sha256/{}", digest.trim_start_matches("sha256:")), bytes);
        }
        tar.into_inner().unwrap().flush().unwrap();
        file.to_path_buf()
    }

    /// Replaces a blob's bytes without renaming it (a corrupt layout).
    pub fn corrupt(&mut self, digest: &str) {
        let bytes = self.blobs.get_mut(digest).unwrap();
        bytes[0] ^= 0xff;
    }
}

/// A single-platform linux/amd64 image with `layers` random layers of `size` bytes each,
/// named `ref_name` in `index.json`. Returns the layout and the manifest's descriptor.
pub fn single_arch(layers: usize, size: usize) -> (Layout, Value) {
    let mut layout = Layout::default();
    let seed = seed();
    let layers = (0..layers).map(|i| random_bytes(seed + i as u64, size)).collect();
    let desc = layout.image("linux", "amd64", layers);
    layout.top(desc.clone(), Some("latest"));
    (layout, desc)
}

/// A multi-platform index: linux/amd64 and linux/arm64 (sharing a base layer) and an
/// attestation manifest for each, as buildx writes it. Returns the layout and the index's
/// descriptor.
pub fn multi_arch(size: usize) -> (Layout, Value) {
    let mut layout = Layout::default();
    let seed = seed();
    let base = random_bytes(seed, size);
    let amd = layout.image("linux", "amd64", vec![base.clone(), random_bytes(seed + 1, size)]);
    let arm = layout.image("linux", "arm64", vec![base, random_bytes(seed + 2, size)]);
    let amd_att = layout.attestation(&amd);
    let arm_att = layout.attestation(&arm);
    let index = layout.index_of(vec![amd, arm, amd_att, arm_att]);
    layout.top(index.clone(), Some("latest"));
    (layout, index)
}
