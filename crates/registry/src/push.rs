//! Pushing an OCI image layout: [`RegistryClient::push_layout`], its [`PushOptions`] and
//! [`PushReport`].
//!
//! Order: every blob (concurrently, each once), then each manifest by digest with children
//! before parents, then the tags. Everything that can be checked locally (tags, the layout,
//! blob presence and sizes, manifest digests, platforms) is checked before the first request;
//! a layer that does not hash to its name is caught while it streams, before its upload is
//! committed. So an interrupted or failed push never leaves a tag pointing at a partial image.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use futures::{StreamExt, TryStreamExt};
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderMap, HeaderValue, RANGE};
use reqwest::{Method, StatusCode};
use sha2::{Digest, Sha256};
use shipit_core::ImageRef;
use shipit_core::image::is_valid_tag;
use tokio::io::AsyncReadExt;
use url::Url;

use crate::client::{Call, RegistryClient, Target, bare};
use crate::config::GHCR;
use crate::error::RegistryError;
use crate::layout::{self, Blob, BlobReader, Plan, Source, corrupt};

/// Default largest `PATCH` body: GHCR refuses chunks over 4 MiB.
pub const DEFAULT_CHUNK_SIZE: usize = 4 * 1024 * 1024;
/// Default number of blobs uploaded at once.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// How often one chunked upload may resume after a `416 Range Not Satisfiable`.
const MAX_RESUMES: usize = 5;
/// Bytes read from disk at a time for a streamed body.
const STREAM_BUFFER: usize = 256 * 1024;

/// How blob bytes are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum UploadMode {
    /// [`Chunked`](Self::Chunked) for `ghcr.io` (which limits request bodies),
    /// [`Monolithic`](Self::Monolithic) elsewhere.
    #[default]
    Auto,
    /// `POST` a session, then one `PUT <location>?digest=…` with the body streamed from disk:
    /// the fewest requests, for registries without a body limit.
    Monolithic,
    /// `POST` a session, `PATCH` bodies of at most [`PushOptions::chunk_size`] with
    /// `Content-Range`, following each `Location`, then an empty `PUT <location>?digest=…`.
    /// A `416` is answered by asking the session where it stands and resuming from there.
    Chunked,
}

/// Options of [`RegistryClient::push_layout`]. Build with [`PushOptions::default`] and the
/// setters.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PushOptions {
    /// Most blobs uploaded at once (default 4; 0 counts as 1).
    pub concurrency: usize,
    /// Largest `PATCH` body of a chunked upload (default 4 MiB, GHCR's limit).
    pub chunk_size: usize,
    /// Monolithic or chunked uploads (default: chunked for GHCR only).
    pub upload: UploadMode,
    /// Repositories of the same registry to mount missing blobs from (`acme/base`), tried in
    /// order: a blob found there is linked, not uploaded. The token asks for `pull` on each.
    pub mount_from: Vec<String>,
    /// Which image of `index.json` to push when it lists several: the one whose
    /// `org.opencontainers.image.ref.name` annotation is this.
    pub ref_name: Option<String>,
}

impl Default for PushOptions {
    fn default() -> Self {
        Self {
            concurrency: DEFAULT_CONCURRENCY,
            chunk_size: DEFAULT_CHUNK_SIZE,
            upload: UploadMode::Auto,
            mount_from: Vec::new(),
            ref_name: None,
        }
    }
}

impl PushOptions {
    /// Most blobs uploaded at once.
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// Largest `PATCH` body of a chunked upload.
    pub fn chunk_size(mut self, bytes: usize) -> Self {
        self.chunk_size = bytes;
        self
    }

    /// Monolithic or chunked uploads.
    pub fn upload(mut self, mode: UploadMode) -> Self {
        self.upload = mode;
        self
    }

    /// Repositories to mount missing blobs from, in order.
    pub fn mount_from(mut self, repositories: Vec<String>) -> Self {
        self.mount_from = repositories;
        self
    }

    /// The image of `index.json` to push, by its ref name annotation.
    pub fn ref_name(mut self, name: impl Into<String>) -> Self {
        self.ref_name = Some(name.into());
        self
    }
}

/// What [`RegistryClient::push_layout`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PushReport {
    /// The pushed image, by digest (`ghcr.io/acme/api@sha256:…`).
    pub image: ImageRef,
    /// Digest of what was tagged: the layout's top manifest or index, byte for byte.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// Tags now pointing at it, in the order they were put.
    pub tags: Vec<String>,
    /// Blobs whose bytes were sent.
    pub blobs_uploaded: usize,
    /// Blobs the repository already had (`HEAD` answered 200).
    pub blobs_skipped: usize,
    /// Blobs linked from a [`PushOptions::mount_from`] repository.
    pub blobs_mounted: usize,
    /// Blob bytes sent (a resumed chunk counts again).
    pub bytes_uploaded: u64,
    /// Manifests and indexes put by digest (tags not counted).
    pub manifests_pushed: usize,
    /// HTTP requests this push made, token requests and retries included.
    pub requests: u64,
}

/// What happened to one blob.
enum Outcome {
    Skipped,
    Mounted,
    Uploaded(u64),
}

/// Per-push settings the blob tasks share.
struct Job<'a> {
    target: &'a Target,
    layout: &'a Path,
    opts: &'a PushOptions,
    chunked: bool,
    chunk_size: usize,
}

impl RegistryClient {
    /// Pushes the OCI image layout at `layout` (a directory or an uncompressed tar, as
    /// `docker buildx build --output type=oci` writes them) to `image`'s repository, then points
    /// `tags` at it.
    ///
    /// What is pushed is what `index.json` references: its only entry, or the one named by
    /// [`PushOptions::ref_name`]. A multi-platform index goes with all its platform manifests
    /// and buildx's attestation manifests. Manifests and indexes are sent byte for byte, so the
    /// registry's digest is the layout's.
    ///
    /// `image`'s registry and repository say where; its tag, if any, is put too (after `tags`
    /// it is deduplicated with); a digest in it must be the layout's (checked before any
    /// request).
    ///
    /// Order and guarantees:
    /// 1. Checked before any request: every tag ([`RegistryError::InvalidTag`]); the layout
    ///    (`oci-layout`, `index.json`, every referenced blob present with its size, every
    ///    manifest hashing to its digest, every index entry a real platform or an attestation:
    ///    [`RegistryError::InvalidLayout`], [`RegistryError::CorruptBlob`]).
    /// 2. Blobs, at most [`PushOptions::concurrency`] at once, each once however many
    ///    manifests share it: `HEAD` (present: skipped), else a mount from
    ///    [`PushOptions::mount_from`], else an upload ([`UploadMode`]) streamed from disk and
    ///    hashed on the way; a blob that does not hash to its name fails before its upload is
    ///    committed ([`RegistryError::CorruptBlob`]).
    /// 3. Manifests by digest, children before parents, the top one last.
    /// 4. The tags, last: a push that fails before this step leaves every tag where it was.
    ///    (If putting the second of two tags fails, the first one has moved.)
    ///
    /// The token asks for `pull,push` on the repository and `pull` on each mount source; a
    /// refusal is [`RegistryError::Unauthorized`], naming `GITHUB_TOKEN`/`GHCR_TOKEN` and
    /// `packages: write`. Memory stays flat: at most one chunk (or a 256 KiB read buffer) per
    /// concurrent upload.
    pub async fn push_layout(
        &self,
        layout: &Path,
        image: &ImageRef,
        tags: &[String],
        opts: &PushOptions,
    ) -> Result<PushReport, RegistryError> {
        let tags = checked_tags(tags.iter().chain(image.tag.as_ref()))?;
        for repository in &opts.mount_from {
            let valid = format!("{}/{repository}", image.registry).parse::<ImageRef>().is_ok_and(|r| {
                r.registry == image.registry && r.repository == *repository && r.tag.is_none() && r.digest.is_none()
            });
            if !valid {
                return Err(RegistryError::InvalidConfig(format!(
                    "mount source {repository:?} is not a repository of {} (for example `acme/base`)",
                    image.registry
                )));
            }
        }
        let chunk_size = opts.chunk_size.max(1);

        let path = layout.to_path_buf();
        let ref_name = opts.ref_name.clone();
        let plan =
            tokio::task::spawn_blocking(move || layout::plan(&path, ref_name.as_deref())).await.map_err(|e| {
                RegistryError::Io { path: layout.display().to_string(), source: std::io::Error::other(e) }
            })??;
        let Some(top) = plan.top() else {
            return Err(RegistryError::InvalidLayout {
                path: layout.display().to_string(),
                detail: "index.json references nothing to push".into(),
            });
        };
        if let Some(wanted) = &image.digest
            && *wanted != top.digest
        {
            return Err(RegistryError::InvalidReference {
                image: image.to_string(),
                detail: format!("the layout at {} is {}, not {wanted}", layout.display(), top.digest),
            });
        }

        let repo = bare(image);
        let target = Target::push(&repo, &opts.mount_from);
        let chunked = match opts.upload {
            UploadMode::Chunked => true,
            UploadMode::Monolithic => false,
            UploadMode::Auto => image.registry.eq_ignore_ascii_case(GHCR),
        };
        let job = Job { target: &target, layout, opts, chunked, chunk_size };

        let mut report = PushReport {
            image: repo.with_digest(&top.digest),
            digest: top.digest.clone(),
            media_type: top.media_type.clone(),
            tags: Vec::new(),
            blobs_uploaded: 0,
            blobs_skipped: 0,
            blobs_mounted: 0,
            bytes_uploaded: 0,
            manifests_pushed: 0,
            requests: 0,
        };
        // Futures built up front: a closure inside the stream would make the push future !Send.
        let uploads: Vec<_> = plan.blobs.iter().map(|blob| self.push_blob(&job, blob)).collect();
        let outcomes: Vec<Outcome> =
            futures::stream::iter(uploads).buffer_unordered(opts.concurrency.max(1)).try_collect().await?;
        for outcome in outcomes {
            match outcome {
                Outcome::Skipped => report.blobs_skipped += 1,
                Outcome::Mounted => report.blobs_mounted += 1,
                Outcome::Uploaded(bytes) => {
                    report.blobs_uploaded += 1;
                    report.bytes_uploaded += bytes;
                }
            }
        }
        self.push_manifests(&target, &plan, &mut report).await?;
        for tag in tags {
            self.put_manifest_bytes(&target, &tag, &top.media_type, &top.bytes).await?;
            report.tags.push(tag);
        }
        report.requests = target.requests_made();
        Ok(report)
    }

    /// Every manifest by digest, in plan order (children first).
    async fn push_manifests(&self, target: &Target, plan: &Plan, report: &mut PushReport) -> Result<(), RegistryError> {
        for manifest in &plan.manifests {
            self.put_manifest_bytes(target, &manifest.digest, &manifest.media_type, &manifest.bytes).await?;
            report.manifests_pushed += 1;
        }
        Ok(())
    }

    /// One blob: skip it if present, else mount it, else upload it.
    async fn push_blob(&self, job: &Job<'_>, blob: &Blob) -> Result<Outcome, RegistryError> {
        let target = job.target;
        let url = self.url(&target.registry, &format!("/v2/{}/blobs/{}", target.repository, blob.digest))?;
        let head = self.send_authorized(target, Method::HEAD, &url, None).await?;
        match head.status() {
            s if s.is_success() => return Ok(Outcome::Skipped),
            StatusCode::NOT_FOUND => {}
            _ => return Err(self.error_from(target, head, None).await),
        }

        let mut session = None;
        let sources: Vec<&String> = job.opts.mount_from.iter().filter(|r| **r != target.repository).collect();
        for (i, from) in sources.iter().enumerate() {
            let mut url = self.uploads_url(target)?;
            url.query_pairs_mut().append_pair("mount", &blob.digest).append_pair("from", from);
            // A mount is safe to repeat: retried like a read.
            let response = self.call(target, Call::new(Method::POST, &url)).await?;
            match response.status() {
                StatusCode::CREATED => return Ok(Outcome::Mounted),
                StatusCode::ACCEPTED => {
                    // Not mounted; the registry opened an ordinary upload session instead.
                    let location = self.location(target, &url, response.headers())?;
                    if i + 1 == sources.len() {
                        session = Some(location);
                    } else {
                        self.cancel_upload(target, &location).await;
                    }
                }
                _ => {
                    let error = self.error_from(target, response, None).await;
                    if matches!(error, RegistryError::Unauthorized { .. }) {
                        return Err(error);
                    }
                    // A registry that does not mount (or not from there): upload instead.
                }
            }
        }

        // Whole-blob retries on temporary failures: a new session each time after the first.
        let bytes = self
            .with_retry(|| {
                let start = session.take();
                async move {
                    let location = match start {
                        Some(location) => location,
                        None => self.start_upload(target).await?,
                    };
                    if job.chunked {
                        self.upload_chunked(job, blob, location).await
                    } else {
                        self.upload_monolithic(job, blob, location).await
                    }
                }
            })
            .await?;
        Ok(Outcome::Uploaded(bytes))
    }

    fn uploads_url(&self, target: &Target) -> Result<Url, RegistryError> {
        self.url(&target.registry, &format!("/v2/{}/blobs/uploads/", target.repository))
    }

    /// `POST /v2/<repo>/blobs/uploads/`: a new upload session's `Location`.
    async fn start_upload(&self, target: &Target) -> Result<Url, RegistryError> {
        let url = self.uploads_url(target)?;
        let response = self.call(target, Call { retry: false, ..Call::new(Method::POST, &url) }).await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(self.error_from(target, response, None).await);
        }
        self.location(target, &url, response.headers())
    }

    /// Best-effort `DELETE` of an upload session we will not use.
    async fn cancel_upload(&self, target: &Target, location: &Url) {
        let _ = self.call(target, Call { retry: false, ..Call::new(Method::DELETE, location) }).await;
    }

    /// One `PUT <location>?digest=…` with the blob streamed from disk and hashed on the way:
    /// a blob that does not hash to its name ends the body with an error, so the registry
    /// never commits it.
    async fn upload_monolithic(&self, job: &Job<'_>, blob: &Blob, location: Url) -> Result<u64, RegistryError> {
        let target = job.target;
        let mut url = location;
        url.query_pairs_mut().append_pair("digest", &blob.digest);
        let mismatch: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let body = || {
            let stream = verified_stream(blob.source.clone(), blob.digest.clone(), Arc::clone(&mismatch));
            Ok(reqwest::Body::wrap_stream(stream))
        };
        let mut headers = octet_stream();
        headers.insert(CONTENT_LENGTH, HeaderValue::from(blob.size));
        let result =
            self.call(target, Call { headers, body: Some(&body), retry: false, ..Call::new(Method::PUT, &url) }).await;
        if let Some(detail) = mismatch.lock().unwrap_or_else(PoisonError::into_inner).take() {
            return Err(corrupt(job.layout, &blob.digest, detail));
        }
        let response = result?;
        if !response.status().is_success() {
            return Err(self.error_from(target, response, None).await);
        }
        Ok(blob.size)
    }

    /// `PATCH` chunks of at most `chunk_size` with `Content-Range`, then an empty
    /// `PUT <location>?digest=…`. The digest is checked before the last chunk is sent.
    async fn upload_chunked(&self, job: &Job<'_>, blob: &Blob, location: Url) -> Result<u64, RegistryError> {
        let target = job.target;
        let mut reader = BlobReader::open(&blob.source).await?;
        let short =
            || corrupt(job.layout, &blob.digest, format!("shorter than the {} bytes its descriptor says", blob.size));
        let (mut url, mut pos, mut sent, mut resumes) = (location, 0u64, 0u64, 0usize);
        while pos < blob.size {
            let len = usize::try_from(blob.size - pos).unwrap_or(usize::MAX).min(job.chunk_size);
            let chunk = bytes::Bytes::from(reader.read_at(pos, len).await?.ok_or_else(short)?);
            let end = pos + len as u64;
            if end == blob.size {
                verify(job.layout, blob, &reader)?;
            }
            let mut headers = octet_stream();
            headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
            headers.insert(CONTENT_RANGE, header(&format!("{pos}-{}", end - 1))?);
            let body = || Ok(reqwest::Body::from(chunk.clone()));
            let call = Call { headers, body: Some(&body), retry: false, ..Call::new(Method::PATCH, &url) };
            let response = self.call(target, call).await?;
            match response.status() {
                StatusCode::RANGE_NOT_SATISFIABLE if resumes < MAX_RESUMES => {
                    resumes += 1;
                    (url, pos) = self.upload_status(target, &url).await?;
                    if pos > blob.size {
                        return Err(RegistryError::InvalidResponse {
                            registry: target.registry.clone(),
                            detail: format!("the upload of {} claims {pos} bytes of {}", blob.digest, blob.size),
                        });
                    }
                }
                s if s.is_success() => {
                    url = self.location(target, &url, response.headers())?;
                    pos = end;
                    sent += len as u64;
                }
                _ => return Err(self.error_from(target, response, None).await),
            }
        }
        if blob.size == 0 {
            verify(job.layout, blob, &reader)?;
        }
        url.query_pairs_mut().append_pair("digest", &blob.digest);
        let mut headers = octet_stream();
        headers.insert(CONTENT_LENGTH, HeaderValue::from(0u64));
        let response = self.call(target, Call { headers, retry: false, ..Call::new(Method::PUT, &url) }).await?;
        if !response.status().is_success() {
            return Err(self.error_from(target, response, None).await);
        }
        Ok(sent)
    }

    /// `GET <location>`: where an upload session stands — its next `Location` and the offset
    /// to resume from (the end of its `Range` plus one).
    async fn upload_status(&self, target: &Target, location: &Url) -> Result<(Url, u64), RegistryError> {
        let response = self.send_authorized(target, Method::GET, location, None).await?;
        if !response.status().is_success() {
            return Err(self.error_from(target, response, None).await);
        }
        let url = match response.headers().get(reqwest::header::LOCATION) {
            Some(_) => self.location(target, location, response.headers())?,
            None => location.clone(),
        };
        let range = response.headers().get(RANGE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let offset = parse_range_end(range).ok_or_else(|| {
            self.scrubbed(RegistryError::InvalidResponse {
                registry: target.registry.clone(),
                detail: format!("the upload status has no usable Range header ({range:?})"),
            })
        })?;
        Ok((url, offset))
    }
}

/// The offset after `0-<end>` (`bytes=` tolerated). distribution answers `0-0` for an empty
/// session, so `0-0` counts as nothing received.
fn parse_range_end(range: &str) -> Option<u64> {
    let range = range.trim();
    let range = range.strip_prefix("bytes=").unwrap_or(range);
    let (start, end) = range.split_once('-')?;
    let (start, end) = (start.trim().parse::<u64>().ok()?, end.trim().parse::<u64>().ok()?);
    match (start, end) {
        (0, 0) => Some(0),
        (0, end) => Some(end + 1),
        _ => None,
    }
}

fn octet_stream() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    headers
}

fn header(value: &str) -> Result<HeaderValue, RegistryError> {
    HeaderValue::from_str(value).map_err(|e| RegistryError::InvalidConfig(format!("bad header value {value:?}: {e}")))
}

/// Whether everything read so far (the whole blob) hashes to the blob's digest.
fn verify(layout: &Path, blob: &Blob, reader: &BlobReader) -> Result<(), RegistryError> {
    let actual = reader.digest();
    if actual == blob.digest {
        Ok(())
    } else {
        Err(corrupt(layout, &blob.digest, format!("its content hashes to {actual}")))
    }
}

/// Tags checked and deduplicated, in order.
pub(crate) fn checked_tags<'a>(tags: impl Iterator<Item = &'a String>) -> Result<Vec<String>, RegistryError> {
    let mut out: Vec<String> = Vec::new();
    for tag in tags {
        if !is_valid_tag(tag) {
            return Err(RegistryError::InvalidTag { tag: tag.clone() });
        }
        if !out.contains(tag) {
            out.push(tag.clone());
        }
    }
    Ok(out)
}

/// A blob's bytes from disk, [`STREAM_BUFFER`] at a time, hashed on the way. The digest is
/// checked before the last bytes are handed over: a blob that does not hash to its name (or is
/// short) writes the problem to `mismatch` and ends the stream with an error instead, so the
/// registry never receives the whole body and commits nothing.
fn verified_stream(
    source: Source,
    digest: String,
    mismatch: Arc<Mutex<Option<String>>>,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static {
    struct State {
        source: Source,
        digest: String,
        mismatch: Arc<Mutex<Option<String>>>,
        file: Option<tokio::io::Take<tokio::fs::File>>,
        hasher: Sha256,
        read: u64,
    }
    impl State {
        fn fail(&self, problem: String) -> std::io::Error {
            *self.mismatch.lock().unwrap_or_else(PoisonError::into_inner) = Some(problem.clone());
            std::io::Error::other(problem)
        }
    }
    let state = State { source, digest, mismatch, file: None, hasher: Sha256::new(), read: 0 };
    futures::stream::try_unfold(state, |mut st| async move {
        if st.read == st.source.len && st.file.is_some() {
            return Ok(None);
        }
        let file = match st.file.as_mut() {
            Some(file) => file,
            None => st.file.insert(st.source.open().await.map_err(std::io::Error::other)?),
        };
        let mut buffer = vec![0u8; STREAM_BUFFER];
        let n = file.read(&mut buffer).await?;
        if n == 0 {
            if st.source.len == 0 {
                // An empty blob: nothing to send, but its digest is still checked.
                let actual = format!("sha256:{}", hex::encode(st.hasher.clone().finalize()));
                if actual != st.digest {
                    return Err(st.fail(format!("its content hashes to {actual}")));
                }
                return Ok(None);
            }
            return Err(st.fail(format!("{} bytes where its descriptor says {}", st.read, st.source.len)));
        }
        buffer.truncate(n);
        st.hasher.update(&buffer);
        st.read += n as u64;
        if st.read == st.source.len {
            let actual = format!("sha256:{}", hex::encode(st.hasher.clone().finalize()));
            if actual != st.digest {
                return Err(st.fail(format!("its content hashes to {actual}")));
            }
        }
        Ok(Some((bytes::Bytes::from(buffer), st)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range_end("0-0"), Some(0));
        assert_eq!(parse_range_end("0-1048575"), Some(1_048_576));
        assert_eq!(parse_range_end("bytes=0-9"), Some(10));
        assert_eq!(parse_range_end("5-9"), None);
        assert_eq!(parse_range_end(""), None);
    }

    #[test]
    fn tags_are_checked_and_deduplicated() {
        let tags = ["v1".to_string(), "latest".to_string(), "v1".to_string()];
        assert_eq!(checked_tags(tags.iter()).unwrap(), ["v1", "latest"]);
        let bad = ["-x".to_string()];
        assert!(matches!(checked_tags(bad.iter()), Err(RegistryError::InvalidTag { .. })));
    }
}
