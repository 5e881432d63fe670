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
//! - `PUT /v2/<repo>/manifests/<ref>`: stores the body under its sha256 (and the tag), 201.
//! - `GET /token?service=…&scope=repository:<repo>:<actions>`: the token service.
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
//! expired. [`RegistryFake::require_basic_auth`] instead wants Basic credentials on every request.
//!
//! # Faults and recording
//!
//! [`RegistryFake::inject_status`] answers the next `times` requests whose path contains a string
//! with a status (and `Retry-After`), before auth and routing. Every request is recorded
//! ([`RegistryFake::requests`]) with whether it carried an `Authorization` header and its scheme,
//! never the credentials themselves.

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
    path_contains: String,
    status: u16,
    remaining: usize,
    retry_after: Option<Duration>,
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
    anonymous_pull: bool,
    tokens: HashMap<String, Grant>,
    tokens_issued: usize,
    omit_digest: bool,
    faults: Vec<Fault>,
    requests: Vec<RecordedRequest>,
    serial: u64,
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
            path_contains: path_contains.to_string(),
            status,
            remaining: times,
            retry_after,
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
        let Some((user, token)) = &self.credentials else { return false };
        scheme.eq_ignore_ascii_case("basic")
            && base64_decode(&encoded).is_some_and(|d| d == format!("{user}:{token}").as_bytes())
    }

    /// `None` when `request` may do `action` on `repo`, else the 401 to answer.
    fn check(&self, request: &Request, repo: Option<&str>, action: &str) -> Option<Reply> {
        match self.mode {
            AuthMode::Open => None,
            AuthMode::Basic if self.basic_ok(request) => None,
            AuthMode::Basic => Some(
                error_response(401, "UNAUTHORIZED", "authentication required")
                    .header("www-authenticate", HeaderValue::from_static(r#"Basic realm="fake registry""#)),
            ),
            AuthMode::Bearer => {
                let granted = match authorization(request) {
                    Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                        self.tokens.get(&token).is_some_and(|grant| match repo {
                            Some(repo) => {
                                grant.iter().any(|(r, actions)| r == repo && actions.iter().any(|a| a == action))
                            }
                            None => true,
                        })
                    }
                    _ => false,
                };
                if granted {
                    return None;
                }
                let mut challenge = format!(r#"Bearer realm="{}/token",service="{}""#, self.uri, self.host);
                if let Some(repo) = repo {
                    challenge.push_str(&format!(r#",scope="repository:{repo}:{action}""#));
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
            let actions = actions.split(',').filter(|a| authenticated || *a == "pull").map(str::to_string).collect();
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

    fn route(&mut self, request: &Request) -> Reply {
        let path = request.url.path().to_string();
        if let Some(i) = self.faults.iter().position(|f| f.remaining > 0 && path.contains(&f.path_contains)) {
            let fault = &mut self.faults[i];
            fault.remaining -= 1;
            let (status, retry_after) = (fault.status, fault.retry_after);
            let code = match status {
                429 => "TOOMANYREQUESTS",
                s if s >= 500 => "UNAVAILABLE",
                _ => "INJECTED",
            };
            let mut reply = error_response(status, code, "injected by the test");
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
        });
        reply.template
    }
}
