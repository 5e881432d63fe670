//! A stateful fake of an OCI registry that authenticates like GitHub Container Registry.
//!
//! # Design
//!
//! [`RegistryFake::start`] starts a wiremock [`MockServer`] with one catch-all [`Mock`] whose
//! [`Respond`] impl parses every path itself (repositories contain slashes:
//! `/v2/acme/forgestack-api/manifests/3f2c1ab`) and answers from one `Arc<Mutex<State>>`: the
//! manifests stored by digest, the tags pointing at them, the tokens issued.
//!
//! Endpoints (distribution spec shapes):
//!
//! - `GET /v2/`: 200 `{}` (or the auth challenge).
//! - `HEAD`/`GET /v2/<repo>/manifests/<tag or digest>`: the manifest with `Content-Type` and
//!   `Docker-Content-Digest` (unless [`RegistryFake::omit_digest_header`]); 404
//!   `{"errors":[{"code":"MANIFEST_UNKNOWN",…}]}` when unknown, also when the request's `Accept`
//!   lists neither the manifest's media type nor `*/*` (as GHCR does for an index).
//! - `PUT /v2/<repo>/manifests/<ref>`: stores the body under its sha256 (and the tag), 201;
//!   400 `MANIFEST_BLOB_UNKNOWN` when a referenced blob or child manifest is not in the
//!   repository (unless [`RegistryFake::check_references`] is off).
//! - `HEAD`/`GET /v2/<repo>/blobs/<digest>`: 200 with `Docker-Content-Digest`, or 404
//!   `BLOB_UNKNOWN`.
//! - `POST /v2/<repo>/blobs/uploads/`: 202 and a relative `Location` of a new session;
//!   with `?mount=<digest>&from=<other>`, 201 when `other` has the blob (and the token may pull
//!   it), else 202 and a session, as the spec says.
//! - `PATCH <session>` with `Content-Range: start-end`: appends; 416 when `start` is not the
//!   session's size; 413 over [`RegistryFake::max_chunk_size`]. 202, `Range: 0-<last>` and the
//!   next `Location`.
//! - `GET <session>`: 204 with `Range` and `Location` (upload status). `DELETE`: cancels.
//! - `PUT <session>?digest=<d>`: appends the body, checks the digest (400 `DIGEST_INVALID`),
//!   stores the blob, 201.
//! - `GET /token?service=…&scope=repository:<repo>:<actions>` (several `scope`s allowed): the
//!   token service.
//!
//! # Auth
//!
//! Open by default. [`RegistryFake::require_auth`] switches on GHCR's flow: a request without a
//! valid token gets 401 with
//! `WWW-Authenticate: Bearer realm="<uri>/token",service="<host>",scope="repository:<repo>:pull"`;
//! the token service wants HTTP Basic `user:token` and answers `{"token":"…"}` (no
//! `expires_in`, like GHCR), granting the actions asked for. Without credentials it grants a
//! pull-only token when [`RegistryFake::allow_anonymous_pull`] is on (a public image), and 401
//! otherwise. [`RegistryFake::invalidate_tokens`] makes every issued token stale, as if it had
//! expired ([`RegistryFake::expire_tokens_on`] does it in the middle of a push).
//! [`RegistryFake::deny_push`] makes the token service grant `pull` only and answer pushes 403
//! `DENIED`, like GHCR for a token without `packages: write`.
//! [`RegistryFake::require_basic_auth`] instead wants Basic credentials on every request.
//!
//! # Faults and recording
//!
//! [`RegistryFake::inject_status`] answers the next `times` requests whose path contains a string
//! with a status (and `Retry-After`), before auth and routing; [`RegistryFake::inject_status_on`]
//! also filters on the method and lets the first matches through; [`RegistryFake::inject_echo`]
//! answers with an error that quotes the request's `Authorization` header and body back. Every
//! request is recorded ([`RegistryFake::requests`]) with whether it carried an `Authorization`
//! header and its scheme, never the credentials themselves, and its body's size.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::json;
use sha2::{Digest, Sha256};
use wiremock::http::{HeaderValue, Method};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// OCI image manifest media type (what [`RegistryFake::put_image`] stores).
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest v2 media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list media type.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// One request the fake received (see [`RegistryFake::requests`]). Neither bodies nor
/// credentials are recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// HTTP method, upper case.
    pub method: String,
    /// Path, e.g. `/v2/acme/api/manifests/latest` or `/token`.
    pub path: String,
    /// Raw query string, empty when there is none (the token service's `service` and `scope`).
    pub query: String,
    /// Whether an `Authorization` header was sent.
    pub has_authorization: bool,
    /// Its scheme (`Basic`, `Bearer`), never its value.
    pub auth_scheme: Option<String>,
    /// Status the fake answered with.
    pub status: u16,
    /// Size of the request body.
    pub body_len: usize,
}

/// A fake OCI registry: a running server plus its state. See the [module docs](self).
pub struct RegistryFake {
    server: MockServer,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for RegistryFake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryFake").field("uri", &self.server.uri()).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum AuthMode {
    #[default]
    Open,
    Bearer,
    Basic,
}

#[derive(Debug, Clone)]
struct Manifest {
    media_type: String,
    bytes: Vec<u8>,
}

#[derive(Debug, Clone)]
struct Fault {
    /// Only requests with this method; `None` = any.
    method: Option<String>,
    path_contains: String,
    /// Matching requests let through before the fault fires.
    skip: usize,
    status: u16,
    remaining: usize,
    retry_after: Option<Duration>,
    /// Whether the answer quotes the request's `Authorization` header and body back.
    echo: bool,
}

impl Fault {
    fn matches(&self, method: &str, path: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method)) && path.contains(&self.path_contains)
    }
}

/// Forget every token when a matching request arrives (after `skip` of them).
#[derive(Debug, Clone)]
struct Expiry {
    method: String,
    path_contains: String,
    skip: usize,
}

/// An upload session: its repository and the bytes received so far.
#[derive(Debug, Clone)]
struct Upload {
    repo: String,
    data: Vec<u8>,
}

/// What a token allows: (repository, actions) pairs.
type Grant = Vec<(String, Vec<String>)>;

#[derive(Debug, Default)]
struct State {
    uri: String,
    host: String,
    /// (repository, digest) -> manifest.
    manifests: HashMap<(String, String), Manifest>,
    /// (repository, tag) -> digest.
    tags: HashMap<(String, String), String>,
    mode: AuthMode,
    credentials: Option<(String, String)>,
    /// Further valid credentials (GHCR takes any token of the user's that may read the package).
    more_credentials: Vec<(String, String)>,
    anonymous_pull: bool,
    tokens: HashMap<String, Grant>,
    tokens_issued: usize,
    omit_digest: bool,
    faults: Vec<Fault>,
    requests: Vec<RecordedRequest>,
    serial: u64,
    /// (repository, digest) -> blob.
    blobs: HashMap<(String, String), Vec<u8>>,
    /// Session id -> upload.
    uploads: HashMap<String, Upload>,
    max_chunk: Option<usize>,
    /// Whether a manifest PUT may reference blobs and manifests the repository lacks.
    lax_references: bool,
    deny_push: bool,
    expiries: Vec<Expiry>,
}

impl RegistryFake {
    /// Starts an open registry with no images.
    pub async fn start() -> RegistryFake {
        let server = MockServer::start().await;
        let state =
            Arc::new(Mutex::new(State { uri: server.uri(), host: server.address().to_string(), ..State::default() }));
        Mock::given(any()).respond_with(Handler(Arc::clone(&state))).mount(&server).await;
        RegistryFake { server, state }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// `127.0.0.1:PORT`: the registry part of image references, and what to list as an
    /// insecure host.
    pub fn host(&self) -> String {
        self.server.address().to_string()
    }

    /// `127.0.0.1:PORT/<repo>:<tag>`, an image reference to this registry.
    pub fn reference(&self, repo: &str, tag: &str) -> String {
        format!("{}/{repo}:{tag}", self.host())
    }

    /// Stores a manifest and points `tag` at it; returns its digest (sha256 of `bytes`).
    pub fn put_manifest(&self, repo: &str, tag: &str, media_type: &str, bytes: impl Into<Vec<u8>>) -> String {
        let bytes = bytes.into();
        let digest = sha256_digest(&bytes);
        let mut state = self.state();
        state
            .manifests
            .insert((repo.to_string(), digest.clone()), Manifest { media_type: media_type.to_string(), bytes });
        state.tags.insert((repo.to_string(), tag.to_string()), digest.clone());
        digest
    }

    /// Stores a small valid OCI image manifest (different on every call) under `tag`; returns
    /// its digest.
    pub fn put_image(&self, repo: &str, tag: &str) -> String {
        let serial = {
            let mut state = self.state();
            state.serial += 1;
            state.serial
        };
        let config = json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": {"dev.shipit.fake.serial": serial.to_string()}},
            "rootfs": {"type": "layers", "diff_ids": [sha256_digest(format!("layer {repo} {serial}").as_bytes())]},
        })
        .to_string();
        let layer = format!("layer {repo} {serial}");
        self.put_blob(repo, config.as_bytes());
        self.put_blob(repo, layer.as_bytes());
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256_digest(config.as_bytes()),
                "size": config.len(),
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": sha256_digest(layer.as_bytes()),
                "size": layer.len(),
            }],
            "annotations": {"org.opencontainers.image.ref.name": tag, "dev.shipit.fake.serial": serial.to_string()},
        });
        self.put_manifest(repo, tag, OCI_MANIFEST, manifest.to_string())
    }

    /// Stores a blob in `repo`; returns its digest.
    pub fn put_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = sha256_digest(bytes);
        self.state().blobs.insert((repo.to_string(), digest.clone()), bytes.to_vec());
        digest
    }

    /// A stored blob's bytes.
    pub fn blob(&self, repo: &str, digest: &str) -> Option<Vec<u8>> {
        self.state().blobs.get(&(repo.to_string(), digest.to_string())).cloned()
    }

    /// Digests of the blobs `repo` has, sorted.
    pub fn blobs(&self, repo: &str) -> Vec<String> {
        let mut digests: Vec<String> =
            self.state().blobs.keys().filter(|(r, _)| r == repo).map(|(_, d)| d.clone()).collect();
        digests.sort();
        digests
    }

    /// Upload sessions started and neither finished nor cancelled.
    pub fn open_uploads(&self) -> usize {
        self.state().uploads.len()
    }

    /// Largest `PATCH` body accepted (GHCR: 4 MiB); bigger ones get 413. `None`: no limit.
    pub fn max_chunk_size(&self, bytes: Option<usize>) {
        self.state().max_chunk = bytes;
    }

    /// Whether a manifest `PUT` must reference only blobs and manifests the repository has (on
    /// by default, like a real registry).
    pub fn check_references(&self, check: bool) {
        self.state().lax_references = !check;
    }

    /// Tokens grant `pull` only, and pushes get 403 `DENIED` (a token without `packages: write`).
    pub fn deny_push(&self, deny: bool) {
        self.state().deny_push = deny;
    }

    /// Forgets every issued token when a `method` request whose path contains `path_contains`
    /// arrives, after letting `skip` of them through: that request gets the 401 challenge.
    pub fn expire_tokens_on(&self, method: &str, path_contains: &str, skip: usize) {
        self.state().expiries.push(Expiry {
            method: method.to_string(),
            path_contains: path_contains.to_string(),
            skip,
        });
    }

    /// Points `tag` at a stored manifest (as a push of the same tag would). Returns false, and
    /// changes nothing, when `repo` has no manifest with `digest`.
    pub fn move_tag(&self, repo: &str, tag: &str, digest: &str) -> bool {
        let mut state = self.state();
        if !state.manifests.contains_key(&(repo.to_string(), digest.to_string())) {
            return false;
        }
        state.tags.insert((repo.to_string(), tag.to_string()), digest.to_string());
        true
    }

    /// Removes a tag (the manifest stays, reachable by digest). Returns whether it existed.
    pub fn remove_tag(&self, repo: &str, tag: &str) -> bool {
        self.state().tags.remove(&(repo.to_string(), tag.to_string())).is_some()
    }

    /// The digest `tag` points to.
    pub fn tag_digest(&self, repo: &str, tag: &str) -> Option<String> {
        self.state().tags.get(&(repo.to_string(), tag.to_string())).cloned()
    }

    /// A stored manifest by tag or digest: its media type and exact bytes.
    pub fn manifest(&self, repo: &str, reference: &str) -> Option<(String, Vec<u8>)> {
        self.state().lookup(repo, reference).map(|m| (m.media_type.clone(), m.bytes.clone()))
    }

    /// GHCR's Bearer flow, with `user`/`token` as the only valid credentials (see the
    /// [module docs](self#auth)).
    pub fn require_auth(&self, user: &str, token: &str) {
        let mut state = self.state();
        state.mode = AuthMode::Bearer;
        state.credentials = Some((user.to_string(), token.to_string()));
    }

    /// After [`require_auth`](Self::require_auth): `user`/`token` are valid credentials too (a
    /// second token of the same user, such as a job's token next to a personal one).
    pub fn also_accept(&self, user: &str, token: &str) {
        self.state().more_credentials.push((user.to_string(), token.to_string()));
    }

    /// Basic authentication with `user`/`token` on every request (`WWW-Authenticate: Basic`).
    pub fn require_basic_auth(&self, user: &str, token: &str) {
        let mut state = self.state();
        state.mode = AuthMode::Basic;
        state.credentials = Some((user.to_string(), token.to_string()));
    }

    /// Whether the token service gives pull-only tokens without credentials (a public image on
    /// GHCR). Turning it on also switches on the Bearer flow.
    pub fn allow_anonymous_pull(&self, allow: bool) {
        let mut state = self.state();
        state.anonymous_pull = allow;
        if allow && state.mode == AuthMode::Open {
            state.mode = AuthMode::Bearer;
        }
    }

    /// Forgets every issued token: the next request with one gets a 401 challenge.
    pub fn invalidate_tokens(&self) {
        self.state().tokens.clear();
    }

    /// How many tokens the token service has issued.
    pub fn tokens_issued(&self) -> usize {
        self.state().tokens_issued
    }

    /// Whether manifest responses leave out `Docker-Content-Digest` (some registries do).
    pub fn omit_digest_header(&self, omit: bool) {
        self.state().omit_digest = omit;
    }

    /// Answers the next `times` requests whose path contains `path_contains` with `status` (a
    /// registry error body; `Retry-After` in whole seconds when given), before auth and routing.
    pub fn inject_status(&self, path_contains: &str, status: u16, times: usize, retry_after: Option<Duration>) {
        self.state().faults.push(Fault {
            method: None,
            path_contains: path_contains.to_string(),
            skip: 0,
            status,
            remaining: times,
            retry_after,
            echo: false,
        });
    }

    /// Like [`inject_status`](Self::inject_status) for requests that carry an `Authorization`
    /// header, `HEAD`s excepted (others go through, so a client still gets its 401 challenge and
    /// fetches a token to be echoed), and the answer quotes the request back: the error's message is
    /// `echo: Authorization: … body: …` with the header and the body as received (also base64-
    /// and percent-encoded), and an [`ECHO_HEADER`](crate::echo::ECHO_HEADER) response header
    /// carries the same (see [`crate::echo`]). For tests that no credential or secret value
    /// comes out of a client.
    pub fn inject_echo(&self, path_contains: &str, status: u16, times: usize, retry_after: Option<Duration>) {
        self.state().faults.push(Fault {
            method: None,
            path_contains: path_contains.to_string(),
            skip: 0,
            status,
            remaining: times,
            retry_after,
            echo: true,
        });
    }

    /// Answers `times` `method` requests whose path contains `path_contains` with `status`,
    /// after letting the first `skip` of them through (`416` on the second `PATCH`…).
    pub fn inject_status_on(&self, method: &str, path_contains: &str, skip: usize, status: u16, times: usize) {
        self.state().faults.push(Fault {
            method: Some(method.to_string()),
            path_contains: path_contains.to_string(),
            skip,
            status,
            remaining: times,
            retry_after: None,
            echo: false,
        });
    }

    /// Drops the faults not yet used up.
    pub fn clear_faults(&self) {
        self.state().faults.clear();
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state().requests.clone()
    }

    /// Bytes of request bodies received so far (blob uploads, manifests).
    pub fn bytes_received(&self) -> usize {
        self.state().requests.iter().map(|r| r.body_len).sum()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.state().requests.clear();
    }
}

fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn errors(code: &str, message: &str) -> serde_json::Value {
    json!({"errors": [{"code": code, "message": message, "detail": null}]})
}

/// A response and its status (wiremock keeps a template's status to itself).
struct Reply {
    status: u16,
    template: ResponseTemplate,
}

impl Reply {
    fn new(status: u16) -> Self {
        let status = valid_status(status);
        Self { status, template: ResponseTemplate::new(status) }
    }

    fn json(self, body: serde_json::Value) -> Self {
        Self { template: self.template.set_body_json(body), ..self }
    }

    fn header(self, name: &str, value: HeaderValue) -> Self {
        Self { template: self.template.insert_header(name, value), ..self }
    }

    /// A header from text; a value that cannot be a header is left out.
    fn header_str(self, name: &str, value: &str) -> Self {
        match HeaderValue::from_str(value) {
            Ok(v) => self.header(name, v),
            Err(_) => self,
        }
    }
}

fn error_response(status: u16, code: &str, message: &str) -> Reply {
    Reply::new(status).json(errors(code, message))
}

fn valid_status(status: u16) -> u16 {
    if (200..=599).contains(&status) { status } else { 500 }
}

/// `(scheme, credentials)` of the Authorization header.
fn authorization(request: &Request) -> Option<(String, String)> {
    let value = request.headers.get("authorization")?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    Some((scheme.to_string(), rest.trim().to_string()))
}

/// Decodes standard base64 (with or without padding).
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

fn query_params(request: &Request) -> Vec<(String, String)> {
    request.url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

impl State {
    fn lookup(&self, repo: &str, reference: &str) -> Option<&Manifest> {
        let digest = if reference.contains(':') {
            reference.to_string()
        } else {
            self.tags.get(&(repo.to_string(), reference.to_string()))?.clone()
        };
        self.manifests.get(&(repo.to_string(), digest))
    }

    /// Whether the request's Basic credentials are the configured ones.
    fn basic_ok(&self, request: &Request) -> bool {
        let Some((scheme, encoded)) = authorization(request) else { return false };
        let Some(decoded) = base64_decode(&encoded).filter(|_| scheme.eq_ignore_ascii_case("basic")) else {
            return false;
        };
        self.credentials
            .iter()
            .chain(&self.more_credentials)
            .any(|(user, token)| decoded == format!("{user}:{token}").as_bytes())
    }

    /// `None` when `request` may do `action` on `repo`, else the 401 (or 403) to answer.
    fn check(&self, request: &Request, repo: Option<&str>, action: &str) -> Option<Reply> {
        if self.deny_push && action == "push" && self.mode != AuthMode::Bearer {
            return Some(error_response(403, "DENIED", "permission_denied: write_package"));
        }
        match self.mode {
            AuthMode::Open => None,
            AuthMode::Basic if self.basic_ok(request) => None,
            AuthMode::Basic => Some(
                error_response(401, "UNAUTHORIZED", "authentication required")
                    .header("www-authenticate", HeaderValue::from_static(r#"Basic realm="fake registry""#)),
            ),
            AuthMode::Bearer => {
                let grant = match authorization(request) {
                    Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => self.tokens.get(&token),
                    _ => None,
                };
                let allows = |grant: &Grant, action: &str| match repo {
                    Some(repo) => grant.iter().any(|(r, actions)| r == repo && actions.iter().any(|a| a == action)),
                    None => true,
                };
                if grant.is_some_and(|g| allows(g, action)) {
                    return None;
                }
                if self.deny_push && action == "push" && grant.is_some_and(|g| allows(g, "pull")) {
                    return Some(error_response(403, "DENIED", "permission_denied: write_package"));
                }
                let mut challenge = format!(r#"Bearer realm="{}/token",service="{}""#, self.uri, self.host);
                if let Some(repo) = repo {
                    let actions = if action == "push" { "pull,push" } else { action };
                    challenge.push_str(&format!(r#",scope="repository:{repo}:{actions}""#));
                }
                Some(
                    error_response(401, "UNAUTHORIZED", "authentication required")
                        .header_str("www-authenticate", &challenge),
                )
            }
        }
    }

    /// `GET /token?service=…&scope=repository:<repo>:<actions>`.
    fn token(&mut self, request: &Request) -> Reply {
        let authenticated = match authorization(request) {
            Some(_) if self.credentials.is_some() => {
                if !self.basic_ok(request) {
                    return error_response(401, "UNAUTHORIZED", "invalid username or token");
                }
                true
            }
            _ => false,
        };
        if !authenticated && !self.anonymous_pull {
            return error_response(401, "UNAUTHORIZED", "authentication required");
        }
        let mut grant: Grant = Vec::new();
        for (key, value) in query_params(request) {
            if key != "scope" {
                continue;
            }
            let Some((repo, actions)) = value.strip_prefix("repository:").and_then(|s| s.rsplit_once(':')) else {
                continue;
            };
            let actions = actions
                .split(',')
                .filter(|a| (authenticated && !self.deny_push) || *a == "pull")
                .map(str::to_string)
                .collect();
            grant.push((repo.to_string(), actions));
        }
        self.serial += 1;
        self.tokens_issued += 1;
        let token = format!("fake-registry-token-{}", self.serial);
        self.tokens.insert(token.clone(), grant);
        Reply::new(200).json(json!({"token": token}))
    }

    fn manifest(&mut self, request: &Request, repo: &str, reference: &str) -> Reply {
        let action = if request.method == Method::PUT { "push" } else { "pull" };
        if let Some(denied) = self.check(request, Some(repo), action) {
            return denied;
        }
        if request.method == Method::PUT {
            return self.put(request, repo, reference);
        }
        if request.method != Method::GET && request.method != Method::HEAD {
            return error_response(405, "UNSUPPORTED", "method not allowed");
        }
        let Some(manifest) = self.lookup(repo, reference) else {
            return error_response(404, "MANIFEST_UNKNOWN", "manifest unknown");
        };
        let accept =
            request.headers.get_all("accept").iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(",");
        let accepted = accept.is_empty()
            || accept
                .split(',')
                .map(|a| a.split(';').next().unwrap_or_default().trim())
                .any(|a| a == manifest.media_type || a == "*/*");
        if !accepted {
            let message = format!("{} found, but the accept header does not support it", manifest.media_type);
            return error_response(404, "MANIFEST_UNKNOWN", &message);
        }
        let digest = sha256_digest(&manifest.bytes);
        let content_type =
            HeaderValue::from_str(&manifest.media_type).unwrap_or(HeaderValue::from_static("application/octet-stream"));
        let mut reply = Reply::new(200);
        reply.template = reply.template.set_body_raw(manifest.bytes.clone(), "application/octet-stream");
        reply = reply.header("content-type", content_type);
        if !self.omit_digest {
            reply = reply.header_str("docker-content-digest", &digest);
        }
        reply
    }

    fn put(&mut self, request: &Request, repo: &str, reference: &str) -> Reply {
        let digest = sha256_digest(&request.body);
        if reference.contains(':') && reference != digest {
            return error_response(400, "DIGEST_INVALID", "the manifest does not match its digest");
        }
        if !self.lax_references
            && let Some(missing) = self.missing_reference(repo, &request.body)
        {
            return error_response(400, "MANIFEST_BLOB_UNKNOWN", &format!("blob unknown to registry: {missing}"));
        }
        let media_type = request
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_string();
        self.manifests.insert((repo.to_string(), digest.clone()), Manifest { media_type, bytes: request.body.clone() });
        if !reference.contains(':') {
            self.tags.insert((repo.to_string(), reference.to_string()), digest.clone());
        }
        Reply::new(201)
            .header_str("docker-content-digest", &digest)
            .header_str("location", &format!("/v2/{repo}/manifests/{digest}"))
    }

    /// The first blob or child manifest a manifest references that `repo` lacks.
    fn missing_reference(&self, repo: &str, body: &[u8]) -> Option<String> {
        let doc: serde_json::Value = serde_json::from_slice(body).ok()?;
        let digest_of = |d: &serde_json::Value| d.get("digest").and_then(|d| d.as_str()).map(str::to_string);
        let list = |key: &str| doc.get(key).and_then(|v| v.as_array()).cloned().unwrap_or_default();
        let blobs =
            doc.get("config").into_iter().chain(list("layers").iter()).filter_map(digest_of).collect::<Vec<_>>();
        let has_manifest = |d: &String| self.manifests.contains_key(&(repo.to_string(), d.clone()));
        blobs
            .into_iter()
            .find(|d| !self.blobs.contains_key(&(repo.to_string(), d.clone())))
            .or_else(|| list("manifests").iter().filter_map(digest_of).find(|d| !has_manifest(d)))
    }

    /// `HEAD`/`GET /v2/<repo>/blobs/<digest>`.
    fn blob(&mut self, request: &Request, repo: &str, digest: &str) -> Reply {
        if let Some(denied) = self.check(request, Some(repo), "pull") {
            return denied;
        }
        if request.method != Method::GET && request.method != Method::HEAD {
            return error_response(405, "UNSUPPORTED", "method not allowed");
        }
        let Some(bytes) = self.blobs.get(&(repo.to_string(), digest.to_string())) else {
            return error_response(404, "BLOB_UNKNOWN", "blob unknown to registry");
        };
        let mut reply = Reply::new(200);
        if request.method == Method::GET {
            reply.template = reply.template.set_body_raw(bytes.clone(), "application/octet-stream");
        }
        reply.header_str("docker-content-digest", digest)
    }

    /// `/v2/<repo>/blobs/uploads/[<id>]`: start (or mount), append, status, finish, cancel.
    fn upload(&mut self, request: &Request, repo: &str, id: &str) -> Reply {
        if let Some(denied) = self.check(request, Some(repo), "push") {
            return denied;
        }
        let params = query_params(request);
        let param = |key: &str| params.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        if id.is_empty() {
            if request.method != Method::POST {
                return error_response(405, "UNSUPPORTED", "method not allowed");
            }
            if let (Some(digest), Some(from)) = (param("mount"), param("from")) {
                let readable = self.check(request, Some(&from), "pull").is_none();
                if let Some(bytes) = self.blobs.get(&(from, digest.clone())).filter(|_| readable).cloned() {
                    self.blobs.insert((repo.to_string(), digest.clone()), bytes);
                    return Reply::new(201)
                        .header_str("docker-content-digest", &digest)
                        .header_str("location", &format!("/v2/{repo}/blobs/{digest}"));
                }
            }
            self.serial += 1;
            let id = format!("upload-{}", self.serial);
            self.uploads.insert(id.clone(), Upload { repo: repo.to_string(), data: Vec::new() });
            return self.session_reply(202, repo, &id);
        }
        let Some(upload) = self.uploads.get(id).filter(|u| u.repo == repo) else {
            return error_response(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry");
        };
        if param("_state").is_some_and(|state| state != upload.data.len().to_string()) {
            return error_response(400, "BLOB_UPLOAD_INVALID", "stale upload state: follow the last Location");
        }
        let method = request.method.clone();
        if method == Method::GET {
            return self.session_reply(204, repo, id);
        }
        if method == Method::DELETE {
            self.uploads.remove(id);
            return Reply::new(204);
        }
        if method == Method::PATCH {
            if self.max_chunk.is_some_and(|max| request.body.len() > max) {
                return error_response(413, "SIZE_INVALID", "chunk larger than the registry accepts");
            }
            let size = upload.data.len();
            let range = request.headers.get("content-range").and_then(|v| v.to_str().ok()).map(str::to_string);
            if let Some(range) = range {
                let parsed =
                    range.split_once('-').and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)));
                let fits = parsed.is_some_and(|(start, end)| start == size && end + 1 == start + request.body.len());
                if !fits {
                    return error_response(
                        416,
                        "BLOB_UPLOAD_INVALID",
                        &format!("range {range} does not follow {size}"),
                    );
                }
            }
            if let Some(upload) = self.uploads.get_mut(id) {
                upload.data.extend_from_slice(&request.body);
            }
            return self.session_reply(202, repo, id);
        }
        if method == Method::PUT {
            let Some(digest) = param("digest") else {
                return error_response(400, "DIGEST_INVALID", "a digest parameter is required");
            };
            let Some(mut upload) = self.uploads.remove(id) else {
                return error_response(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry");
            };
            upload.data.extend_from_slice(&request.body);
            if sha256_digest(&upload.data) != digest {
                return error_response(400, "DIGEST_INVALID", "provided digest did not match uploaded content");
            }
            self.blobs.insert((repo.to_string(), digest.clone()), upload.data);
            return Reply::new(201)
                .header_str("docker-content-digest", &digest)
                .header_str("location", &format!("/v2/{repo}/blobs/{digest}"));
        }
        error_response(405, "UNSUPPORTED", "method not allowed")
    }

    /// A session's `Location` (relative, its `_state` the size so far) and `Range`.
    fn session_reply(&self, status: u16, repo: &str, id: &str) -> Reply {
        let size = self.uploads.get(id).map_or(0, |u| u.data.len());
        Reply::new(status)
            .header_str("location", &format!("/v2/{repo}/blobs/uploads/{id}?_state={size}"))
            .header_str("range", &format!("0-{}", size.saturating_sub(1)))
            .header_str("docker-upload-uuid", id)
    }

    fn route(&mut self, request: &Request) -> Reply {
        let path = request.url.path().to_string();
        let method = request.method.to_string();
        if let Some(i) =
            self.expiries.iter().position(|e| e.method.eq_ignore_ascii_case(&method) && path.contains(&e.path_contains))
        {
            if self.expiries[i].skip == 0 {
                self.expiries.remove(i);
                self.tokens.clear();
            } else {
                self.expiries[i].skip -= 1;
            }
        }
        let mut fired = None;
        // An echo needs credentials to quote and a body to quote them in.
        let echoable = request.headers.contains_key("authorization") && request.method != Method::HEAD;
        for (i, fault) in self.faults.iter_mut().enumerate() {
            if fault.remaining == 0 || !fault.matches(&method, &path) || (fault.echo && !echoable) {
                continue;
            }
            if fault.skip > 0 {
                fault.skip -= 1;
                continue;
            }
            fired = Some(i);
            break;
        }
        if let Some(i) = fired {
            let fault = &mut self.faults[i];
            fault.remaining -= 1;
            let (status, retry_after, echo) = (fault.status, fault.retry_after, fault.echo);
            let code = match status {
                429 => "TOOMANYREQUESTS",
                401 => "UNAUTHORIZED",
                s if s >= 500 => "UNAVAILABLE",
                _ => "INJECTED",
            };
            let mut reply = if echo {
                let auth = request.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
                error_response(status, code, &crate::echo::text(auth, &request.body))
                    .header_str(crate::echo::ECHO_HEADER, &crate::echo::header(auth, &request.body))
            } else {
                error_response(status, code, "injected by the test")
            };
            if let Some(after) = retry_after {
                reply = reply.header_str("retry-after", &after.as_secs().to_string());
            }
            return reply;
        }
        if path == "/token" {
            return self.token(request);
        }
        if path == "/v2" || path == "/v2/" {
            return self.check(request, None, "pull").unwrap_or_else(|| Reply::new(200).json(json!({})));
        }
        if let Some((repo, id)) = path.strip_prefix("/v2/").and_then(|p| p.rsplit_once("/blobs/uploads"))
            && !repo.is_empty()
            && (id.is_empty() || id.starts_with('/'))
        {
            let (repo, id) = (repo.to_string(), id.trim_start_matches('/').to_string());
            return self.upload(request, &repo, &id);
        }
        if let Some((repo, digest)) = path.strip_prefix("/v2/").and_then(|p| p.rsplit_once("/blobs/"))
            && !repo.is_empty()
            && digest.contains(':')
        {
            let (repo, digest) = (repo.to_string(), digest.to_string());
            return self.blob(request, &repo, &digest);
        }
        if let Some((repo, reference)) = path.strip_prefix("/v2/").and_then(|p| p.rsplit_once("/manifests/"))
            && !repo.is_empty()
            && !reference.is_empty()
        {
            let (repo, reference) = (repo.to_string(), reference.to_string());
            return self.manifest(request, &repo, &reference);
        }
        error_response(404, "NOT_FOUND", "the fake registry has no such endpoint")
    }
}

/// The catch-all responder.
struct Handler(Arc<Mutex<State>>);

impl Respond for Handler {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let reply = state.route(request);
        let auth = authorization(request);
        state.requests.push(RecordedRequest {
            method: request.method.to_string(),
            path: request.url.path().to_string(),
            query: request.url.query().unwrap_or_default().to_string(),
            has_authorization: auth.is_some(),
            auth_scheme: auth.map(|(scheme, _)| scheme),
            status: reply.status,
            body_len: request.body.len(),
        });
        reply.template
    }
}
