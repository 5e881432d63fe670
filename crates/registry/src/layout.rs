//! OCI image layouts as `docker buildx build --output type=oci` writes them — a directory or a
//! tar file holding `oci-layout`, `index.json` and `blobs/sha256/<hex>` — read, checked, and
//! turned into a [`Plan`]: the blobs to push, then the manifests, children before parents.
//!
//! A tar is never unpacked: its entries are indexed once (seeking over the data, so only the
//! 512-byte headers are read) and a blob is then a byte range of the tar file, read like a file
//! of a directory layout. Manifests (small, at most 4 MiB) are read into memory and checked
//! against their digests here; layers are checked while they stream (see `push`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use shipit_core::image::is_valid_digest;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::client::MANIFEST_LIMIT;
use crate::error::RegistryError;
use crate::resolve::sha256_digest;

/// OCI image index media type.
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest media type.
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker manifest list media type.
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The annotation naming an image in `index.json`.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// The annotation buildx puts on attestation manifests (value `attestation-manifest`).
pub const REFERENCE_TYPE_ANNOTATION: &str = "vnd.docker.reference.type";

/// Nesting deeper than this (an index of indexes of…) is refused.
const MAX_DEPTH: usize = 8;

/// `GOOS` values: an index entry's `platform.os` must be one of them (or the entry an attestation).
const KNOWN_OS: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "hurd",
    "illumos",
    "ios",
    "js",
    "linux",
    "nacl",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "wasip1",
    "windows",
    "zos",
];
/// `GOARCH` values, for `platform.architecture`.
const KNOWN_ARCH: &[&str] = &[
    "386",
    "amd64",
    "amd64p32",
    "arm",
    "arm64",
    "arm64be",
    "armbe",
    "loong64",
    "mips",
    "mips64",
    "mips64le",
    "mips64p32",
    "mips64p32le",
    "mipsle",
    "ppc",
    "ppc64",
    "ppc64le",
    "riscv",
    "riscv64",
    "s390",
    "s390x",
    "sparc",
    "sparc64",
    "wasm",
];

/// A content descriptor (`mediaType`, `digest`, `size`, …).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    #[serde(default)]
    pub(crate) media_type: String,
    pub(crate) digest: String,
    pub(crate) size: u64,
    #[serde(default)]
    pub(crate) annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) platform: Option<Platform>,
}

/// `platform` of an index entry.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Platform {
    #[serde(default)]
    pub(crate) os: String,
    #[serde(default)]
    pub(crate) architecture: String,
    #[serde(default)]
    pub(crate) variant: Option<String>,
}

impl Platform {
    fn is_known(&self) -> bool {
        KNOWN_OS.contains(&self.os.as_str()) && KNOWN_ARCH.contains(&self.architecture.as_str())
    }

    fn name(&self) -> String {
        match &self.variant {
            Some(v) if !v.is_empty() => format!("{}/{}/{v}", self.os, self.architecture),
            _ => format!("{}/{}", self.os, self.architecture),
        }
    }
}

/// The fields of a manifest or an index this module needs.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

/// Where a blob's bytes are: `len` bytes from `offset` of `file` (a blob file of a directory
/// layout, or an entry's data inside a tar).
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub(crate) file: PathBuf,
    pub(crate) offset: u64,
    pub(crate) len: u64,
}

impl Source {
    /// The blob's bytes as an async reader, from its first byte.
    pub(crate) async fn open(&self) -> Result<tokio::io::Take<tokio::fs::File>, RegistryError> {
        self.open_at(0).await
    }

    /// The blob's bytes from `pos` on.
    pub(crate) async fn open_at(&self, pos: u64) -> Result<tokio::io::Take<tokio::fs::File>, RegistryError> {
        let io = |source| RegistryError::Io { path: self.file.display().to_string(), source };
        let mut file = tokio::fs::File::open(&self.file).await.map_err(io)?;
        file.seek(SeekFrom::Start(self.offset + pos)).await.map_err(io)?;
        Ok(file.take(self.len.saturating_sub(pos)))
    }
}

/// A blob (config or layer) to push.
#[derive(Debug, Clone)]
pub(crate) struct Blob {
    pub(crate) digest: String,
    pub(crate) size: u64,
    pub(crate) source: Source,
}

/// A manifest or index to push, with its exact bytes.
#[derive(Debug, Clone)]
pub(crate) struct ManifestBlob {
    pub(crate) digest: String,
    pub(crate) media_type: String,
    pub(crate) bytes: Vec<u8>,
}

/// What a push sends: every blob once, then the manifests with children before parents; the
/// last manifest is the one to tag.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) blobs: Vec<Blob>,
    pub(crate) manifests: Vec<ManifestBlob>,
}

impl Plan {
    /// The manifest or index to tag.
    pub(crate) fn top(&self) -> Option<&ManifestBlob> {
        self.manifests.last()
    }
}

/// The files of a layout: a directory, or the regular-file entries of a tar.
enum Store {
    Dir(PathBuf),
    Tar { file: PathBuf, entries: HashMap<String, (u64, u64)> },
}

/// Reads and checks the layout at `path` and plans its push (blocking I/O: run it off the
/// async runtime). `ref_name` picks the image when `index.json` lists several.
pub(crate) fn plan(path: &Path, ref_name: Option<&str>) -> Result<Plan, RegistryError> {
    let store = Store::open(path)?;
    let planner = Planner { store: &store, path, seen: HashSet::new(), sizes: HashMap::new() };
    planner.run(ref_name)
}

fn invalid(path: &Path, detail: impl Into<String>) -> RegistryError {
    RegistryError::InvalidLayout { path: path.display().to_string(), detail: detail.into() }
}

fn io_error(path: &Path) -> impl Fn(io::Error) -> RegistryError + '_ {
    move |source| RegistryError::Io { path: path.display().to_string(), source }
}

/// `blobs/<algorithm>/<hex>`, for a valid digest only (so the name cannot leave the layout).
fn blob_name(digest: &str) -> Option<String> {
    if !is_valid_digest(digest) || !digest.starts_with("sha256:") {
        return None;
    }
    digest.split_once(':').map(|(alg, hex)| format!("blobs/{alg}/{hex}"))
}

/// A tar entry's name as a layout path: no leading `./` or `/`.
fn normalize(name: &str) -> String {
    let mut name = name.trim_start_matches('/');
    while let Some(rest) = name.strip_prefix("./") {
        name = rest.trim_start_matches('/');
    }
    name.to_string()
}

const NOT_A_LAYOUT_HINT: &str = "push the output of `docker buildx build --output type=oci,dest=…` \
     (a tar) or `--output type=oci,dest=…,tar=false` (a directory)";

impl Store {
    fn open(path: &Path) -> Result<Self, RegistryError> {
        let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => invalid(path, "no such file or directory"),
            _ => RegistryError::Io { path: path.display().to_string(), source: e },
        })?;
        let store = if meta.is_dir() {
            Store::Dir(path.to_path_buf())
        } else {
            Store::Tar { file: path.to_path_buf(), entries: index_tar(path)? }
        };
        for required in ["oci-layout", "index.json"] {
            if store.source(required).is_none() {
                return Err(invalid(
                    path,
                    format!("not an OCI image layout: it has no {required} file; {NOT_A_LAYOUT_HINT}"),
                ));
            }
        }
        let marker = store.read(path, "oci-layout", 64 * 1024)?;
        let version = serde_json::from_slice::<serde_json::Value>(&marker)
            .ok()
            .and_then(|v| v.get("imageLayoutVersion").and_then(|v| v.as_str()).map(str::to_string));
        if version.is_none() {
            return Err(invalid(path, "not an OCI image layout: oci-layout has no imageLayoutVersion"));
        }
        Ok(store)
    }

    /// Where `name` (`index.json`, `blobs/sha256/…`) is, if the layout has it.
    fn source(&self, name: &str) -> Option<Source> {
        match self {
            Store::Dir(dir) => {
                let file = dir.join(name);
                let meta = std::fs::metadata(&file).ok().filter(|m| m.is_file())?;
                Some(Source { file, offset: 0, len: meta.len() })
            }
            Store::Tar { file, entries } => {
                entries.get(name).map(|&(offset, len)| Source { file: file.clone(), offset, len })
            }
        }
    }

    /// The whole of a small file (at most `limit` bytes).
    fn read(&self, path: &Path, name: &str, limit: u64) -> Result<Vec<u8>, RegistryError> {
        let source = self.source(name).ok_or_else(|| invalid(path, format!("{name} is missing")))?;
        if source.len > limit {
            return Err(invalid(path, format!("{name} is larger than {limit} bytes")));
        }
        read_range(&source)
    }
}

/// Reads a whole (small) source into memory.
fn read_range(source: &Source) -> Result<Vec<u8>, RegistryError> {
    let io = io_error(&source.file);
    let mut file = File::open(&source.file).map_err(&io)?;
    file.seek(SeekFrom::Start(source.offset)).map_err(&io)?;
    let mut bytes = Vec::with_capacity(usize::try_from(source.len).unwrap_or(0));
    file.take(source.len).read_to_end(&mut bytes).map_err(&io)?;
    Ok(bytes)
}

/// Name → (data offset, size) of every regular file in the tar, reading headers only.
fn index_tar(path: &Path) -> Result<HashMap<String, (u64, u64)>, RegistryError> {
    let io = io_error(path);
    let mut file = File::open(path).map_err(&io)?;
    let mut magic = [0u8; 2];
    let n = file.read(&mut magic).map_err(&io)?;
    if n == 2 && magic == [0x1f, 0x8b] {
        return Err(invalid(
            path,
            "a compressed tar is not supported: gunzip it first (buildx writes it uncompressed)",
        ));
    }
    file.seek(SeekFrom::Start(0)).map_err(&io)?;
    let not_tar =
        |e: io::Error| invalid(path, format!("not a directory nor a readable tar file ({e}); {NOT_A_LAYOUT_HINT}"));
    let mut archive = tar::Archive::new(file);
    let mut entries = HashMap::new();
    for entry in archive.entries_with_seek().map_err(not_tar)? {
        let entry = entry.map_err(not_tar)?;
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind == tar::EntryType::Continuous) {
            continue; // directories, links, pax headers; a sparse blob then shows up as missing
        }
        let name = normalize(&entry.path().map_err(not_tar)?.to_string_lossy());
        entries.insert(name, (entry.raw_file_position(), entry.size()));
    }
    if entries.is_empty() {
        return Err(invalid(path, format!("not a directory nor a tar file with files in it; {NOT_A_LAYOUT_HINT}")));
    }
    Ok(entries)
}

/// Walks the layout from `index.json` down.
struct Planner<'a> {
    store: &'a Store,
    path: &'a Path,
    /// Manifests already planned.
    seen: HashSet<String>,
    /// Blob digest → size, for blobs already planned.
    sizes: HashMap<String, u64>,
}

impl Planner<'_> {
    fn run(mut self, ref_name: Option<&str>) -> Result<Plan, RegistryError> {
        let bytes = self.store.read(self.path, "index.json", MANIFEST_LIMIT as u64)?;
        let index: Document = serde_json::from_slice(&bytes)
            .map_err(|e| invalid(self.path, format!("index.json is not an OCI index: {e}")))?;
        let entries = index.manifests.unwrap_or_default();
        let top = self.pick(&entries, ref_name)?.clone();
        let mut plan = Plan { blobs: Vec::new(), manifests: Vec::new() };
        self.visit(&top, 0, &mut plan)?;
        Ok(plan)
    }

    /// The image `index.json` names: the only entry, or the one whose ref name is `ref_name`.
    fn pick<'d>(&self, entries: &'d [Descriptor], ref_name: Option<&str>) -> Result<&'d Descriptor, RegistryError> {
        let name_of = |d: &Descriptor| d.annotations.get(REF_NAME_ANNOTATION).cloned();
        let names = || {
            let names: Vec<String> = entries.iter().filter_map(name_of).collect();
            if names.is_empty() { "none has a ref name".to_string() } else { names.join(", ") }
        };
        match (entries, ref_name) {
            ([], _) => Err(invalid(self.path, "index.json lists no image")),
            (_, Some(wanted)) => entries.iter().find(|d| name_of(d).as_deref() == Some(wanted)).ok_or_else(|| {
                invalid(
                    self.path,
                    format!("index.json has no image named {wanted:?} ({REF_NAME_ANNOTATION}: {})", names()),
                )
            }),
            ([only], None) => Ok(only),
            (_, None) => Err(invalid(
                self.path,
                format!(
                    "index.json lists {} images ({REF_NAME_ANNOTATION}: {}); choose one with PushOptions::ref_name",
                    entries.len(),
                    names()
                ),
            )),
        }
    }

    /// Plans `desc` (a manifest or an index) after everything it references.
    fn visit(&mut self, desc: &Descriptor, depth: usize, plan: &mut Plan) -> Result<(), RegistryError> {
        if depth > MAX_DEPTH {
            return Err(invalid(self.path, format!("indexes nested deeper than {MAX_DEPTH} levels")));
        }
        if self.seen.contains(&desc.digest) {
            return Ok(());
        }
        let bytes = self.manifest_bytes(desc)?;
        let doc: Document = serde_json::from_slice(&bytes).map_err(|e| {
            invalid(
                self.path,
                format!("manifest {} ({}) is not a manifest or an index: {e}", desc.digest, desc.media_type),
            )
        })?;
        // The manifest's own mediaType is what the registry checks Content-Type against.
        let media_type = doc.media_type.clone().filter(|m| !m.is_empty()).unwrap_or_else(|| desc.media_type.clone());
        let is_index =
            matches!(media_type.as_str(), OCI_INDEX | DOCKER_LIST) || (doc.config.is_none() && doc.manifests.is_some());
        if is_index {
            for child in doc.manifests.as_deref().unwrap_or_default() {
                self.check_platform(&desc.digest, child)?;
                self.visit(child, depth + 1, plan)?;
            }
        } else if let Some(config) = &doc.config {
            self.add_blob(&desc.digest, config, plan)?;
            for layer in &doc.layers {
                self.add_blob(&desc.digest, layer, plan)?;
            }
        } else {
            return Err(invalid(
                self.path,
                format!("{} ({media_type}) is neither an image manifest (no config) nor an index", desc.digest),
            ));
        }
        let media_type = if media_type.is_empty() {
            if is_index { OCI_INDEX.to_string() } else { OCI_MANIFEST.to_string() }
        } else {
            media_type
        };
        self.seen.insert(desc.digest.clone());
        plan.manifests.push(ManifestBlob { digest: desc.digest.clone(), media_type, bytes });
        Ok(())
    }

    /// A manifest's bytes, checked against its descriptor's size and digest.
    fn manifest_bytes(&self, desc: &Descriptor) -> Result<Vec<u8>, RegistryError> {
        let source = self.source_of(desc, "manifest")?;
        if source.len > MANIFEST_LIMIT as u64 {
            return Err(invalid(self.path, format!("manifest {} is larger than 4 MiB", desc.digest)));
        }
        let bytes = read_range(&source)?;
        let actual = sha256_digest(&bytes);
        if actual != desc.digest {
            return Err(corrupt(self.path, &desc.digest, format!("its content hashes to {actual}")));
        }
        Ok(bytes)
    }

    /// Where a described blob is in the layout, checked against the descriptor's size.
    fn source_of(&self, desc: &Descriptor, what: &str) -> Result<Source, RegistryError> {
        let name = blob_name(&desc.digest).ok_or_else(|| {
            invalid(self.path, format!("{what} digest {:?} is not sha256: and 64 lowercase hex digits", desc.digest))
        })?;
        let source = self.store.source(&name).ok_or_else(|| {
            invalid(self.path, format!("{what} {} ({}) is missing: no {name}", desc.digest, desc.media_type))
        })?;
        if source.len != desc.size {
            return Err(corrupt(
                self.path,
                &desc.digest,
                format!("{} bytes where its descriptor says {}", source.len, desc.size),
            ));
        }
        Ok(source)
    }

    fn add_blob(&mut self, manifest: &str, desc: &Descriptor, plan: &mut Plan) -> Result<(), RegistryError> {
        if let Some(&size) = self.sizes.get(&desc.digest) {
            if size != desc.size {
                return Err(invalid(
                    self.path,
                    format!("blob {} is described with sizes {size} and {} (in {manifest})", desc.digest, desc.size),
                ));
            }
            return Ok(());
        }
        let source = self.source_of(desc, &format!("blob of manifest {manifest}:"))?;
        self.sizes.insert(desc.digest.clone(), desc.size);
        plan.blobs.push(Blob { digest: desc.digest.clone(), size: desc.size, source });
        Ok(())
    }

    /// An index entry must be a real platform or an attestation (buildx: platform unknown/unknown
    /// and `vnd.docker.reference.type: attestation-manifest`). An entry without a platform is
    /// allowed (the OCI spec makes it optional).
    fn check_platform(&self, index: &str, child: &Descriptor) -> Result<(), RegistryError> {
        let attestation = child.annotations.get(REFERENCE_TYPE_ANNOTATION).is_some_and(|v| v == "attestation-manifest");
        match &child.platform {
            Some(p) if !attestation && !p.is_known() => Err(invalid(
                self.path,
                format!(
                    "index {index} lists manifest {} for platform {:?}, which is neither a real os/architecture \
                     (linux/amd64, linux/arm64, …) nor an attestation ({REFERENCE_TYPE_ANNOTATION}: \
                     attestation-manifest)",
                    child.digest,
                    p.name()
                ),
            )),
            _ => Ok(()),
        }
    }
}

pub(crate) fn corrupt(path: &Path, digest: &str, detail: String) -> RegistryError {
    RegistryError::CorruptBlob { path: path.display().to_string(), digest: digest.to_string(), detail }
}

/// Incremental sha256 of a blob read in ranges (possibly re-read from an earlier offset when an
/// upload resumes): every byte is hashed once, in order.
pub(crate) struct BlobReader {
    source: Source,
    file: tokio::io::Take<tokio::fs::File>,
    /// Offset the file is at.
    at: u64,
    hasher: Sha256,
    /// Bytes hashed so far (always a prefix of the blob).
    hashed: u64,
}

impl BlobReader {
    pub(crate) async fn open(source: &Source) -> Result<Self, RegistryError> {
        let file = source.open().await?;
        Ok(Self { source: source.clone(), file, at: 0, hasher: Sha256::new(), hashed: 0 })
    }

    /// `len` bytes from `pos`; bytes not yet hashed are hashed. `Ok(None)` when the file is
    /// shorter than that.
    pub(crate) async fn read_at(&mut self, pos: u64, len: usize) -> Result<Option<Vec<u8>>, RegistryError> {
        if pos > self.hashed {
            // Resuming past what was read (the registry has more than we sent): hash the gap.
            let gap = pos - self.hashed;
            let mut left = gap;
            self.seek(self.hashed).await?;
            while left > 0 {
                let n = usize::try_from(left.min(1 << 20)).unwrap_or(1 << 20);
                let Some(bytes) = self.read_exact(n).await? else { return Ok(None) };
                self.hasher.update(&bytes);
                left -= n as u64;
            }
            self.hashed = pos;
        }
        self.seek(pos).await?;
        let Some(bytes) = self.read_exact(len).await? else { return Ok(None) };
        let end = pos + len as u64;
        if end > self.hashed {
            let skip = usize::try_from(self.hashed - pos).unwrap_or(0);
            self.hasher.update(&bytes[skip..]);
            self.hashed = end;
        }
        Ok(Some(bytes))
    }

    /// The digest of the bytes hashed so far.
    pub(crate) fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.clone().finalize()))
    }

    async fn seek(&mut self, pos: u64) -> Result<(), RegistryError> {
        if pos != self.at {
            self.file = self.source.open_at(pos).await?;
            self.at = pos;
        }
        Ok(())
    }

    async fn read_exact(&mut self, len: usize) -> Result<Option<Vec<u8>>, RegistryError> {
        let mut bytes = vec![0u8; len];
        match self.file.read_exact(&mut bytes).await {
            Ok(_) => {
                self.at += len as u64;
                Ok(Some(bytes))
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
            Err(source) => Err(RegistryError::Io { path: self.source.file.display().to_string(), source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(normalize("./blobs/sha256/ab"), "blobs/sha256/ab");
        assert_eq!(normalize("/index.json"), "index.json");
        assert_eq!(normalize("././oci-layout"), "oci-layout");
        assert!(blob_name("sha256:../../etc/passwd").is_none());
        let hex = "a".repeat(64);
        assert_eq!(blob_name(&format!("sha256:{hex}")), Some(format!("blobs/sha256/{hex}")));
    }

    #[test]
    fn platforms() {
        let p = |os: &str, arch: &str| Platform { os: os.into(), architecture: arch.into(), variant: None };
        assert!(p("linux", "amd64").is_known());
        assert!(p("linux", "arm64").is_known());
        assert!(!p("unknown", "unknown").is_known());
        assert!(!p("linux", "amd65").is_known());
    }
}
