//! A stateful fake of Render's public REST API (`https://api.render.com/v1`), for tests.
//!
//! # Design
//!
//! [`RenderFake::start`] starts a wiremock [`MockServer`] with a single catch-all [`Mock`] whose
//! [`Respond`] impl routes every request itself over one `Arc<Mutex<State>>`, like the
//! [Fly fake](crate::fly): a service created by one request is patched, deployed, scaled and
//! rolled back by the next ones. Clients reach it through the testkit's TCP proxy
//! ([`RenderFake::uri`]) so that a [`Fault::Reset`] can drop a connection and a
//! [`Fault::CutBody`] can stop a body short.
//!
//! # Routing and shapes
//!
//! Paths are matched by segment under `/v1` (anything else: 404). Bodies follow the OpenAPI
//! description (`render-public-api-1.json`, camelCase): lists are `[{cursor, <item>}]` with
//! cursor pagination (`limit` 1–100, default 20; `cursor` is the cursor of the last item seen),
//! except `GET /registrycredentials`, a plain array. Errors are always `{id, message}`. Only
//! image-backed (`runtime: "image"`) `web_service`s and `background_worker`s exist. Unknown body
//! fields are ignored; the fields of the endpoints below are validated as Render does.
//!
//! Endpoints: `GET /owners`, `GET /owners/{id}`; `GET|POST /services`,
//! `GET|PATCH|DELETE /services/{id}`; `GET|POST /services/{id}/deploys`,
//! `GET /services/{id}/deploys/{deployId}`, `POST …/deploys/{deployId}/cancel`,
//! `POST /services/{id}/rollback`; `GET|PUT /services/{id}/env-vars`,
//! `GET|PUT|DELETE /services/{id}/env-vars/{key}`; `POST /services/{id}/scale`,
//! `PUT|DELETE /services/{id}/autoscaling`, `POST /services/{id}/suspend|resume`;
//! `GET|POST /registrycredentials`, `GET|PATCH|DELETE /registrycredentials/{id}`;
//! `GET /postgres`, `GET /postgres/{id}[/connection-info]`, `GET /key-value`,
//! `GET /key-value/{id}[/connection-info]` (databases are seeded, read-only).
//!
//! # Time
//!
//! The fake has its own clock, started at the real time of [`RenderFake::start`]: it moves 1 ms
//! per request and by [`RenderFake::advance`]. Timestamps and the rate-limit windows read it.
//! Deploys do not move with time but per observation (below). Nothing sleeps but [`Fault::Slow`].
//!
//! # Scenarios
//!
//! Only one deploy runs per service: a deploy started while another is in progress is `queued`
//! and starts (`created`) when the running one reaches a final status, oldest queued first. Each
//! `GET /services/{id}/deploys/{deployId}` is one observation: it moves the service's running
//! deploy one step, when the deploy observed is that one or one queued behind it (a client
//! waiting on a queued deploy sees the queue drain). Listing deploys moves nothing. The steps are
//! those of the [`Behaviour`] registered for the running deploy's image digest
//! ([`RenderFake::set_behaviour`], looked up at each step). When a deploy goes `live` the
//! previously live one becomes `deactivated`; a failed or canceled one leaves the previous one
//! live. Each deploy snapshots, at its creation, the image it runs and the service's env vars
//! and settings (plan, docker command, health check path).
//!
//! # Traps (as on Render)
//!
//! - `POST /services` answers 201 `{service, deployId}` and has already started the first deploy:
//!   a client that then POSTs a deploy gets a duplicate, queued (202).
//! - `POST /services/{id}/deploys` answers 202 with NO body when the deploy is queued.
//! - PATCHed settings, env var changes and a new `imagePath` apply at the next deploy only; the
//!   live deploy keeps running what it ran. `numInstances` and `region` are not patchable.
//! - A deploy's `imageUrl` may change only the tag or digest (same registry and repository) and
//!   does not change the service's `imagePath` setting; a rollback runs the target's image but
//!   does not change the `imagePath` setting either: the next deploy Render starts (e.g. on
//!   `resume`, or [`RenderFake::start_deploy`]) runs the setting.
//! - `PUT /services/{id}/env-vars` REPLACES ALL variables (the others are deleted).
//! - `POST /services/{id}/scale` answers 202 but is ignored while autoscaling is enabled
//!   ([`FakeService::ignored_scales`] counts those).
//!
//! # Rate limits
//!
//! Every request counts in one fixed-window bucket ([`RateBucket`]): `PATCH /services/{id}`,
//! deploy POSTs, rollbacks, suspend and resume in that service's bucket (10 per minute);
//! `POST /services` in the create bucket (20 per hour); other POST/PATCH/PUT/DELETE in the
//! writes bucket (30 per minute) and GETs in the reads bucket (400 per minute), both per API key.
//! Every answer carries `Ratelimit-Limit`, `Ratelimit-Remaining` and `Ratelimit-Reset` for the
//! request's bucket; the reset is a number of seconds until the window ends, as in Render's
//! examples, or epoch seconds after [`RenderFake::set_reset_as_epoch`] (as Render's docs say).
//! Past a bucket: `429 {id, message}` (no `Retry-After`), nothing applied. The windows run on the
//! fake clock ([`RenderFake::advance`]).
//!
//! # Auth, faults and the request log
//!
//! Every request must carry `Authorization: Bearer fake-render-api-key` ([`API_KEY`];
//! [`RenderFake::accept_key`] adds keys); anything else gets `401 {"id": "unauthorized", ...}`.
//! Injected [`Fault`]s match a method and a path filter, as in the Fly fake, and are checked
//! before auth and the rate limit ([`Fault::Echo`] quotes the request's `Authorization` header
//! and body back, [`crate::echo`]). Every request is recorded ([`RenderFake::requests`]) with its
//! method, path, query and status, never its body, so no env var value or registry token is kept
//! outside the fake's state.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::proxy::{CUT_HEADER, Proxy, RESET_HEADER};

/// The API key the fake accepts by default, as `Authorization: Bearer <API_KEY>`.
pub const API_KEY: &str = "fake-render-api-key";
/// Render's regions, the values `serviceDetails.region` accepts.
pub const REGIONS: [&str; 5] = ["oregon", "ohio", "frankfurt", "singapore", "virginia"];
/// The region of a service created without one.
pub const DEFAULT_REGION: &str = "oregon";
/// The plans a web service accepts (the spec's `plan` enum, API spelling).
pub const WEB_PLANS: [&str; 15] = [
    "starter",
    "starter_plus",
    "standard",
    "standard_plus",
    "pro",
    "pro_plus",
    "pro_max",
    "pro_ultra",
    "free",
    "custom",
    "starter_legacy",
    "standard_legacy",
    "standard_plus_legacy",
    "pro_legacy",
    "pro_plus_legacy",
];
/// The plans a background worker accepts (the spec's `paidPlan` enum: no `free`).
pub const WORKER_PLANS: [&str; 6] = ["starter", "standard", "pro", "pro_plus", "pro_max", "pro_ultra"];
/// The plan of a service created without one.
pub const DEFAULT_PLAN: &str = "starter";
/// Observations after which an [`Behaviour::Unhealthy`] deploy fails, by default.
pub const DEFAULT_UNHEALTHY_OBSERVATIONS: u32 = 50;
/// Largest instance count for `POST /scale` and autoscaling.
pub const MAX_INSTANCES: u64 = 100;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;
const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 100;

/// What a deploy running a given image digest does (see [`RenderFake::set_behaviour`]).
///
/// "GET n" below is the n-th observation of the running deploy (see the module docs), counting
/// from 1; the answer that started the deploy shows `created`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Behaviour {
    /// GET 1 `build_in_progress`, GET 2 `update_in_progress`, GET 3 `live`.
    #[default]
    Healthy,
    /// The health check never passes: GET 1 `build_in_progress`, then `update_in_progress` until
    /// the N-th GET, which shows `update_failed` (N from [`RenderFake::set_unhealthy_observations`],
    /// [`DEFAULT_UNHEALTHY_OBSERVATIONS`] by default, at least 3).
    Unhealthy,
    /// The container exits at start: GET 1 `build_in_progress`, GET 2 `update_failed`.
    Crash,
    /// The image cannot be pulled: GET 1 `build_failed`.
    BuildFail,
    /// The pre-deploy command fails: GET 1 `build_in_progress`, GET 2 `pre_deploy_in_progress`,
    /// GET 3 `pre_deploy_failed`.
    PreDeployFail,
}

/// A fault to inject into the fake's responses (see [`RenderFake::inject`]).
///
/// `path_contains` is matched against the request path, including the `/v1` prefix (e.g.
/// `"/deploys"`, `"/v1/services"`): a plain string matches anywhere; one ending in `$` matches
/// only at the end of the path (`"/v1/services$"` is the create and list, not a service), and
/// `…/$` matches the prefix plus exactly one more segment (`"/deploys/$"` is one deploy, not a
/// cancel). `method: None` matches any method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The next `times` matching requests get `status` (with `Retry-After: <secs>` when set) and
    /// an `{id, message}` body. They have no effect on the fake's state.
    Status {
        /// HTTP method to match (case-insensitive), or any.
        method: Option<String>,
        /// Path filter (see [`Fault`]).
        path_contains: String,
        /// Status to answer with, e.g. 429 or 503.
        status: u16,
        /// How many matching requests fail.
        times: u32,
        /// Seconds to put in a `Retry-After` header.
        retry_after: Option<u64>,
    },
    /// The next `times` matching requests get `status` and an error that quotes the request
    /// back: `{"id": ..., "message": "echo: Authorization: … body: …"}` and the same in an
    /// [`ECHO_HEADER`](crate::echo::ECHO_HEADER) header ([`crate::echo`]). Checked before auth;
    /// no effect on the state. For tests that no credential or secret comes out of a client.
    Echo {
        /// HTTP method to match (case-insensitive), or any.
        method: Option<String>,
        /// Path filter (see [`Fault`]).
        path_contains: String,
        /// Status to answer with, e.g. 400 or 500.
        status: u16,
        /// How many matching requests get the echo.
        times: u32,
    },
    /// The next `times` matching requests ARE applied, but the client gets `status` (and an
    /// `{id, message}` body) instead of the real answer.
    LostResponse {
        /// HTTP method to match (case-insensitive), or any.
        method: Option<String>,
        /// Path filter (see [`Fault`]).
        path_contains: String,
        /// Status the client sees, e.g. 502 or 504.
        status: u16,
        /// How many matching requests lose their response.
        times: u32,
    },
    /// The next `times` matching requests ARE applied, and answered after a real `delay`.
    Slow {
        /// HTTP method to match (case-insensitive), or any.
        method: Option<String>,
        /// Path filter (see [`Fault`]).
        path_contains: String,
        /// How long to hold each matching response.
        delay: Duration,
        /// How many matching requests are slow.
        times: u32,
    },
    /// The next `times` matching requests get no answer: the connection is reset (TCP RST).
    /// Not applied; recorded with status 0.
    Reset {
        /// HTTP method to match (case-insensitive), or any.
        method: Option<String>,
        /// Path filter (see [`Fault`]).
        path_contains: String,
        /// How many matching requests are reset.
        times: u32,
    },
    /// The next `times` matching requests ARE applied, then their connection is reset before any
    /// answer. Recorded with status 0.
    ResetAfter {
        /// HTTP method to match (case-insensitive), or any.
        method: Option<String>,
        /// Path filter (see [`Fault`]).
        path_contains: String,
        /// How many matching requests are reset after being applied.
        times: u32,
    },
    /// The next `times` matching requests ARE applied, and their body stops half-way short of
    /// its `Content-Length` (the proxy closes the connection). An answer without a body arrives
    /// whole.
    CutBody {
        /// HTTP method to match (case-insensitive), or any.
        method: Option<String>,
        /// Path filter (see [`Fault`]).
        path_contains: String,
        /// How many matching requests get a cut body.
        times: u32,
    },
    /// The next `times` matching requests ARE applied, but answer `200` with a body that is not
    /// JSON (`{"id": "trunc`).
    Malformed {
        /// HTTP method to match (case-insensitive), or any.
        method: Option<String>,
        /// Path filter (see [`Fault`]).
        path_contains: String,
        /// How many matching requests get the malformed body.
        times: u32,
    },
    /// Every service create (`POST /services`), deploy POST, rollback or resume that would run an
    /// image with `digest` (with or without `sha256:`; for an image without a digest, the whole
    /// reference) is refused with `status` and not applied, until [`RenderFake::clear_faults`].
    RefuseImage {
        /// The refused image digest.
        digest: String,
        /// Status to answer with, e.g. 400 or 422.
        status: u16,
    },
}

impl Fault {
    /// The next `times` requests whose path matches `path_contains` get `429` with
    /// `Retry-After: retry_after_secs`.
    pub fn rate_limited(path_contains: &str, times: u32, retry_after_secs: u64) -> Self {
        Fault::Status {
            method: None,
            path_contains: path_contains.to_owned(),
            status: 429,
            times,
            retry_after: Some(retry_after_secs),
        }
    }

    /// The next `times` requests whose path matches `path_contains` get `503`.
    pub fn unavailable(path_contains: &str, times: u32) -> Self {
        Fault::Status { method: None, path_contains: path_contains.to_owned(), status: 503, times, retry_after: None }
    }

    fn times_left(&self) -> u32 {
        match self {
            Fault::Status { times, .. }
            | Fault::Echo { times, .. }
            | Fault::LostResponse { times, .. }
            | Fault::Slow { times, .. }
            | Fault::Reset { times, .. }
            | Fault::ResetAfter { times, .. }
            | Fault::CutBody { times, .. }
            | Fault::Malformed { times, .. } => *times,
            Fault::RefuseImage { .. } => 0,
        }
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        let (m, p) = match self {
            Fault::Status { method, path_contains, .. }
            | Fault::Echo { method, path_contains, .. }
            | Fault::LostResponse { method, path_contains, .. }
            | Fault::Slow { method, path_contains, .. }
            | Fault::Reset { method, path_contains, .. }
            | Fault::ResetAfter { method, path_contains, .. }
            | Fault::CutBody { method, path_contains, .. }
            | Fault::Malformed { method, path_contains, .. } => (method.as_deref(), path_contains),
            Fault::RefuseImage { .. } => return false,
        };
        let hit = match p.strip_suffix('$') {
            Some(end) => path.ends_with(end) || path_ends_with_segment_after(path, end),
            None => path.contains(p.as_str()),
        };
        m.is_none_or(|m| m.eq_ignore_ascii_case(method)) && hit
    }
}

/// Whether `path` is `prefix` followed by exactly one more segment (`…/deploys/` + an id).
fn path_ends_with_segment_after(path: &str, prefix: &str) -> bool {
    prefix.ends_with('/')
        && path.find(prefix).is_some_and(|i| {
            let rest = &path[i + prefix.len()..];
            !rest.is_empty() && !rest.contains('/')
        })
}

/// A rate-limit bucket (see the module docs and [`RenderFake::set_rate_limit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RateBucket {
    /// Per service: `PATCH /services/{id}`, deploy POSTs, rollbacks, suspend, resume. 10 per minute.
    Service,
    /// Per API key: `POST /services`. 20 per hour.
    Create,
    /// Per API key: every other POST, PATCH, PUT and DELETE. 30 per minute.
    Write,
    /// Per API key: every GET. 400 per minute.
    Read,
}

impl RateBucket {
    fn default_limit(self) -> u32 {
        match self {
            RateBucket::Service => 10,
            RateBucket::Create => 20,
            RateBucket::Write => 30,
            RateBucket::Read => 400,
        }
    }

    fn window_ms(self) -> i64 {
        match self {
            RateBucket::Create => HOUR_MS,
            _ => MINUTE_MS,
        }
    }
}

/// A workspace (owner) as the fake holds it (see [`RenderFake::owners`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeOwner {
    /// Owner id, `tea-…`.
    pub id: String,
    /// Workspace name.
    pub name: String,
    /// Contact email.
    pub email: String,
    /// Whether the workspace is on a Pro plan (needed for autoscaling).
    pub pro: bool,
}

/// A service's autoscaling configuration, as sent in `PUT /services/{id}/autoscaling`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FakeAutoscaling {
    /// `enabled`.
    pub enabled: bool,
    /// `min` instances.
    pub min: u64,
    /// `max` instances.
    pub max: u64,
    /// `criteria.cpu.enabled`.
    pub cpu_enabled: bool,
    /// `criteria.cpu.percentage`.
    pub cpu_percentage: u64,
    /// `criteria.memory.enabled`.
    pub memory_enabled: bool,
    /// `criteria.memory.percentage`.
    pub memory_percentage: u64,
}

impl FakeAutoscaling {
    fn json(&self) -> Value {
        json!({
            "enabled": self.enabled,
            "min": self.min,
            "max": self.max,
            "criteria": {
                "cpu": {"enabled": self.cpu_enabled, "percentage": self.cpu_percentage},
                "memory": {"enabled": self.memory_enabled, "percentage": self.memory_percentage},
            },
        })
    }
}

/// A service as the fake holds it, for assertions (see [`RenderFake::service`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeService {
    /// Service id, `srv-…`.
    pub id: String,
    /// Service name.
    pub name: String,
    /// Owner (workspace) id.
    pub owner_id: String,
    /// `web_service` or `background_worker`.
    pub service_type: String,
    /// The `imagePath` setting: what the next deploy without `imageUrl` runs.
    pub image_path: String,
    /// Plan, API spelling (`starter`, `pro_plus`, ...).
    pub plan: String,
    /// Region.
    pub region: String,
    /// Instance count (set at creation and by `POST /scale`).
    pub num_instances: u64,
    /// Health check path (web services only).
    pub health_check_path: Option<String>,
    /// `envSpecificDetails.dockerCommand` (empty: the image's own command).
    pub docker_command: String,
    /// Autoscaling configuration, if one was set and not deleted.
    pub autoscaling: Option<FakeAutoscaling>,
    /// `image.registryCredentialId`.
    pub registry_credential_id: Option<String>,
    /// The service's env vars now (what the next deploy will get).
    pub env_vars: BTreeMap<String, String>,
    /// Whether the service is suspended.
    pub suspended: bool,
    /// `POST /scale` requests answered 202 but ignored because autoscaling was enabled.
    pub ignored_scales: u32,
    /// `serviceDetails.url` (`https://<subdomain>.onrender.com`), web services only.
    pub url: Option<String>,
}

/// A deploy as the fake holds it, for assertions (see [`RenderFake::deploys`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeDeploy {
    /// Deploy id, `dep-…`.
    pub id: String,
    /// Last status a client could have seen (`created`, `queued`, `build_in_progress`, ...).
    pub status: String,
    /// `image.ref`: the reference as given.
    pub image_ref: String,
    /// `image.sha`: the digest (computed from the reference when it has none).
    pub image_sha: String,
    /// `api`, `rollback`, `service_resumed`, ... .
    pub trigger: String,
    /// The service's env vars when the deploy was created.
    pub env_vars: BTreeMap<String, String>,
    /// The plan when the deploy was created.
    pub plan: String,
    /// The docker command when the deploy was created.
    pub docker_command: String,
    /// The health check path when the deploy was created.
    pub health_check_path: Option<String>,
    /// Whether it was ever live (`live` or `deactivated`): a rollback target.
    pub was_live: bool,
}

/// One request the fake received (see [`RenderFake::requests`]). Bodies are never recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// HTTP method, upper case.
    pub method: String,
    /// Path including `/v1`, e.g. `/v1/services/srv-…/deploys`.
    pub path: String,
    /// Raw query string, empty when there is none.
    pub query: String,
    /// Whether the `Authorization` header carried an accepted key.
    pub authorization_ok: bool,
    /// Status the fake answered with; 0 when the connection was reset instead.
    pub status: u16,
}

/// The Render API fake: a running server plus its state. See the [module docs](self).
pub struct RenderFake {
    server: MockServer,
    state: Arc<Mutex<State>>,
    /// `None` only when the proxy could not start: then clients talk to wiremock directly and a
    /// [`Fault::Reset`] is answered `502` instead.
    proxy: Option<Proxy>,
}

impl std::fmt::Debug for RenderFake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenderFake").field("uri", &self.uri()).finish_non_exhaustive()
    }
}

impl RenderFake {
    /// The API key the fake accepts by default (same as [`API_KEY`]).
    pub const API_KEY: &'static str = API_KEY;

    /// Starts the fake on a free port of 127.0.0.1, with no owners.
    pub async fn start() -> RenderFake {
        let server = MockServer::start().await;
        let proxy = Proxy::start(*server.address()).ok();
        let state = Arc::new(Mutex::new(State::new()));
        state.lock().unwrap_or_else(|e| e.into_inner()).proxied = proxy.is_some();
        Mock::given(any()).respond_with(Handler(Arc::clone(&state))).mount(&server).await;
        RenderFake { server, state, proxy }
    }

    /// Base URL to give the client, including `/v1`, e.g. `http://127.0.0.1:4567/v1`.
    pub fn uri(&self) -> String {
        match &self.proxy {
            Some(p) => format!("http://{}/v1", p.addr()),
            None => format!("{}/v1", self.server.uri()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Accepts `key` too, besides [`API_KEY`] (each key has its own rate buckets).
    pub fn accept_key(&self, key: &str) {
        self.lock().keys.push(key.to_owned());
    }

    /// Creates a workspace (not Pro) and returns its id (`tea-…`).
    pub fn seed_owner(&self, name: &str) -> String {
        self.lock().seed_owner(name, false)
    }

    /// Creates a Pro workspace (autoscaling allowed) and returns its id.
    pub fn seed_pro_owner(&self, name: &str) -> String {
        self.lock().seed_owner(name, true)
    }

    /// Every owner, in creation order.
    pub fn owners(&self) -> Vec<FakeOwner> {
        self.lock().owners.clone()
    }

    /// Creates a Postgres database of `owner_id` and returns its id (`dpg-…`).
    pub fn seed_postgres(&self, owner_id: &str, name: &str) -> String {
        self.lock().seed_db(owner_id, name, DbKind::Postgres)
    }

    /// Creates a Key Value instance of `owner_id` and returns its id (`red-…`).
    pub fn seed_key_value(&self, owner_id: &str, name: &str) -> String {
        self.lock().seed_db(owner_id, name, DbKind::KeyValue)
    }

    /// Creates a web service of `owner_id` running `image_path`, with one `live` deploy (as if
    /// created earlier by someone else). Returns its id, or `None` if there is no such owner or
    /// the name is taken.
    pub fn seed_service(&self, owner_id: &str, name: &str, image_path: &str) -> Option<String> {
        let mut st = self.lock();
        if !st.owners.iter().any(|o| o.id == owner_id) || st.name_taken(owner_id, name, None) {
            return None;
        }
        let id = st.new_id("srv");
        let now = st.now_ms;
        let slug = st.slug_for(name);
        let svc = ServiceState {
            id: id.clone(),
            name: name.to_owned(),
            slug,
            owner_id: owner_id.to_owned(),
            service_type: "web_service".to_owned(),
            image_path: image_path.to_owned(),
            registry_credential_id: None,
            plan: DEFAULT_PLAN.to_owned(),
            region: DEFAULT_REGION.to_owned(),
            num_instances: 1,
            health_check_path: Some(String::new()),
            docker_command: String::new(),
            autoscaling: None,
            env: BTreeMap::new(),
            suspended: false,
            ignored_scales: 0,
            created_at: now,
            updated_at: now,
            deploys: Vec::new(),
            deploy_posts: 0,
        };
        st.services.insert(id.clone(), svc);
        st.service_order.push(id.clone());
        let dep = st.start_deploy_of(&id, image_path.to_owned(), None, "api")?;
        let svc = st.services.get_mut(&id)?;
        if let Some(d) = svc.deploys.iter_mut().find(|d| d.id == dep) {
            d.status = "live".to_owned();
            d.was_live = true;
            d.finished_at = Some(now);
        }
        Some(id)
    }

    /// Sets what deploys of images with this digest do. `digest` may be given with or without
    /// its `sha256:` prefix; for an image without a digest, pass the whole reference. Applies to
    /// deploys already running it from their next observation on.
    pub fn set_behaviour(&self, digest: &str, behaviour: Behaviour) {
        self.lock().behaviours.insert(normalize_digest(digest).to_owned(), behaviour);
    }

    /// Sets after how many observations an [`Behaviour::Unhealthy`] deploy fails (at least 3).
    pub fn set_unhealthy_observations(&self, n: u32) {
        self.lock().unhealthy_observations = n;
    }

    /// Sends `Ratelimit-Reset` as the epoch second the window ends (`true`) instead of the number
    /// of seconds until then (`false`, the default).
    pub fn set_reset_as_epoch(&self, epoch: bool) {
        self.lock().reset_as_epoch = epoch;
    }

    /// Changes a bucket's limit (requests per window), for every key or service.
    pub fn set_rate_limit(&self, bucket: RateBucket, limit: u32) {
        self.lock().limits.insert(bucket, limit);
    }

    /// Injects a fault; see [`Fault`].
    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// Uses of injected faults not met yet (the `times` left of every counted fault;
    /// [`Fault::RefuseImage`] has none).
    pub fn faults_left(&self) -> u32 {
        self.lock().faults.iter().map(Fault::times_left).sum()
    }

    /// Removes every injected fault, spent or not.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Moves the fake's clock forward (e.g. past a rate-limit window).
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        let mut st = self.lock();
        st.now_ms = st.now_ms.saturating_add(ms);
    }

    /// Starts a deploy of the service's current settings as Render itself would (an autodeploy,
    /// a platform restart), with `trigger` (e.g. `"deployed_by_render"`). Returns its id, or
    /// `None` if there is no such service.
    pub fn start_deploy(&self, service_id: &str, trigger: &str) -> Option<String> {
        let mut st = self.lock();
        let image = st.services.get(service_id)?.image_path.clone();
        st.start_deploy_of(service_id, image, None, trigger)
    }

    /// A service by id.
    pub fn service(&self, id: &str) -> Option<FakeService> {
        self.lock().services.get(id).map(ServiceState::snapshot)
    }

    /// A service by owner id and name.
    pub fn service_by_name(&self, owner_id: &str, name: &str) -> Option<FakeService> {
        let st = self.lock();
        st.services.values().find(|s| s.owner_id == owner_id && s.name == name).map(ServiceState::snapshot)
    }

    /// The service's deploys, newest first (empty if no such service).
    pub fn deploys(&self, service_id: &str) -> Vec<FakeDeploy> {
        let st = self.lock();
        st.services
            .get(service_id)
            .map(|s| s.deploys.iter().rev().map(DeployState::snapshot).collect())
            .unwrap_or_default()
    }

    /// The service's `live` deploy, if any.
    pub fn live_deploy(&self, service_id: &str) -> Option<FakeDeploy> {
        let st = self.lock();
        st.services.get(service_id)?.deploys.iter().find(|d| d.status == "live").map(DeployState::snapshot)
    }

    /// A service env var's current value. Assert on it; never print it.
    pub fn env_var(&self, service_id: &str, key: &str) -> Option<String> {
        self.lock().services.get(service_id)?.env.get(key).cloned()
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// How many requests the fake received (faulted, refused and reset ones included).
    pub fn request_count(&self) -> u64 {
        self.lock().request_count
    }

    /// The auth token a registry credential was created or last patched with (the API never
    /// answers it). Assert on it; never print it.
    pub fn registry_credential_token(&self, id: &str) -> Option<String> {
        let st = self.lock();
        st.credentials.iter().find(|c| c.id == id).map(|c| c.auth_token.expose_secret().to_owned())
    }

    /// How many services were created through `POST /services` (including creates whose
    /// response was lost to a fault).
    pub fn creates(&self) -> u32 {
        self.lock().creates
    }

    /// How many deploys `POST /services/{id}/deploys` created for the service (201 and 202 alike,
    /// lost responses included; not the create's first deploy, nor rollbacks).
    pub fn deploy_posts(&self, service_id: &str) -> u32 {
        self.lock().services.get(service_id).map_or(0, |s| s.deploy_posts)
    }
}

// ---------------------------------------------------------------------------------------------
// State

#[derive(Clone, Copy, PartialEq, Eq)]
enum DbKind {
    Postgres,
    KeyValue,
}

struct DbState {
    id: String,
    name: String,
    owner_id: String,
    kind: DbKind,
    password: String,
    created_at: i64,
}

struct CredentialState {
    id: String,
    name: String,
    registry: String,
    username: String,
    /// Kept, never answered.
    auth_token: SecretString,
    owner_id: String,
    updated_at: i64,
}

impl CredentialState {
    fn json(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "registry": self.registry,
            "username": self.username,
            "updatedAt": rfc3339(self.updated_at),
        })
    }
}

struct DeployState {
    id: String,
    image_ref: String,
    image_sha: String,
    registry_credential_id: Option<String>,
    trigger: String,
    status: String,
    /// Observations since it started.
    observed: u32,
    env: BTreeMap<String, String>,
    plan: String,
    docker_command: String,
    health_check_path: Option<String>,
    was_live: bool,
    created_at: i64,
    updated_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
}

impl DeployState {
    fn json(&self) -> Value {
        let mut image = json!({"ref": self.image_ref, "sha": self.image_sha});
        if let (Some(obj), Some(c)) = (image.as_object_mut(), &self.registry_credential_id) {
            obj.insert("registryCredential".to_owned(), Value::String(c.clone()));
        }
        let mut v = json!({
            "id": self.id,
            "commit": null,
            "image": image,
            "status": self.status,
            "trigger": self.trigger,
            "createdAt": rfc3339(self.created_at),
            "updatedAt": rfc3339(self.updated_at),
        });
        if let Some(obj) = v.as_object_mut() {
            if let Some(t) = self.started_at {
                obj.insert("startedAt".to_owned(), Value::String(rfc3339(t)));
            }
            if let Some(t) = self.finished_at {
                obj.insert("finishedAt".to_owned(), Value::String(rfc3339(t)));
            }
        }
        v
    }

    fn snapshot(&self) -> FakeDeploy {
        FakeDeploy {
            id: self.id.clone(),
            status: self.status.clone(),
            image_ref: self.image_ref.clone(),
            image_sha: self.image_sha.clone(),
            trigger: self.trigger.clone(),
            env_vars: self.env.clone(),
            plan: self.plan.clone(),
            docker_command: self.docker_command.clone(),
            health_check_path: self.health_check_path.clone(),
            was_live: self.was_live,
        }
    }
}

fn in_progress(status: &str) -> bool {
    matches!(status, "created" | "build_in_progress" | "update_in_progress" | "pre_deploy_in_progress")
}

/// The status a deploy shows at observation `k` (1-based) of its scenario.
fn scenario(b: Behaviour, k: u32, unhealthy_after: u32) -> &'static str {
    match (b, k) {
        (_, 0) => "created",
        (Behaviour::BuildFail, _) => "build_failed",
        (_, 1) => "build_in_progress",
        (Behaviour::Healthy, 2) => "update_in_progress",
        (Behaviour::Healthy, _) => "live",
        (Behaviour::Unhealthy, k) if k < unhealthy_after.max(3) => "update_in_progress",
        (Behaviour::Unhealthy, _) | (Behaviour::Crash, _) => "update_failed",
        (Behaviour::PreDeployFail, 2) => "pre_deploy_in_progress",
        (Behaviour::PreDeployFail, _) => "pre_deploy_failed",
    }
}

struct ServiceState {
    id: String,
    name: String,
    slug: String,
    owner_id: String,
    service_type: String,
    image_path: String,
    registry_credential_id: Option<String>,
    plan: String,
    region: String,
    num_instances: u64,
    health_check_path: Option<String>,
    docker_command: String,
    autoscaling: Option<FakeAutoscaling>,
    env: BTreeMap<String, String>,
    suspended: bool,
    ignored_scales: u32,
    created_at: i64,
    updated_at: i64,
    /// Oldest first.
    deploys: Vec<DeployState>,
    deploy_posts: u32,
}

impl ServiceState {
    fn is_web(&self) -> bool {
        self.service_type == "web_service"
    }

    fn snapshot(&self) -> FakeService {
        FakeService {
            id: self.id.clone(),
            name: self.name.clone(),
            owner_id: self.owner_id.clone(),
            service_type: self.service_type.clone(),
            image_path: self.image_path.clone(),
            plan: self.plan.clone(),
            region: self.region.clone(),
            num_instances: self.num_instances,
            health_check_path: self.health_check_path.clone(),
            docker_command: self.docker_command.clone(),
            autoscaling: self.autoscaling,
            registry_credential_id: self.registry_credential_id.clone(),
            env_vars: self.env.clone(),
            suspended: self.suspended,
            ignored_scales: self.ignored_scales,
            url: self.is_web().then(|| format!("https://{}.onrender.com", self.slug)),
        }
    }

    fn deploy_mut(&mut self, id: &str) -> Option<&mut DeployState> {
        self.deploys.iter_mut().find(|d| d.id == id)
    }

    /// Starts the oldest queued deploy, if any.
    fn start_next_queued(&mut self, now: i64) {
        if self.deploys.iter().any(|d| in_progress(&d.status)) {
            return;
        }
        if let Some(d) = self.deploys.iter_mut().find(|d| d.status == "queued") {
            d.status = "created".to_owned();
            d.observed = 0;
            d.started_at = Some(now);
            d.updated_at = now;
        }
    }

    /// Moves the deploy at `i` one step through `b`'s scenario.
    fn step(&mut self, i: usize, b: Behaviour, unhealthy_after: u32, now: i64) {
        let Some(d) = self.deploys.get_mut(i) else { return };
        if !in_progress(&d.status) {
            return;
        }
        d.observed = d.observed.saturating_add(1);
        let next = scenario(b, d.observed, unhealthy_after);
        if next == d.status {
            return;
        }
        d.status = next.to_owned();
        d.updated_at = now;
        if in_progress(next) {
            return;
        }
        d.finished_at = Some(now);
        if next == "live" {
            d.was_live = true;
            let id = d.id.clone();
            for other in self.deploys.iter_mut().filter(|o| o.id != id && o.status == "live") {
                other.status = "deactivated".to_owned();
                other.updated_at = now;
            }
        }
        self.start_next_queued(now);
    }

    fn json(&self, credentials: &[CredentialState]) -> Value {
        let mut details = Map::new();
        details.insert("env".to_owned(), json!("image"));
        details.insert("runtime".to_owned(), json!("image"));
        details.insert(
            "envSpecificDetails".to_owned(),
            json!({"dockerCommand": self.docker_command, "dockerContext": "", "dockerfilePath": ""}),
        );
        details.insert("numInstances".to_owned(), json!(self.num_instances));
        details.insert("plan".to_owned(), json!(self.plan));
        details.insert("region".to_owned(), json!(self.region));
        details.insert("buildPlan".to_owned(), json!("starter"));
        details.insert("pullRequestPreviewsEnabled".to_owned(), json!("no"));
        details.insert("previews".to_owned(), json!({"generation": "off"}));
        details.insert("maxShutdownDelaySeconds".to_owned(), json!(30));
        if let Some(a) = &self.autoscaling {
            details.insert("autoscaling".to_owned(), a.json());
        }
        if self.is_web() {
            details.insert("healthCheckPath".to_owned(), json!(self.health_check_path.clone().unwrap_or_default()));
            details.insert("openPorts".to_owned(), json!([{"port": 10000, "protocol": "TCP"}]));
            details.insert("url".to_owned(), json!(format!("https://{}.onrender.com", self.slug)));
            details.insert("renderSubdomainPolicy".to_owned(), json!("enabled"));
        }
        let kind = if self.is_web() { "web" } else { "worker" };
        let mut v = json!({
            "id": self.id,
            "autoDeploy": "no",
            "createdAt": rfc3339(self.created_at),
            "dashboardUrl": format!("https://dashboard.render.com/{kind}/{}", self.id),
            "imagePath": self.image_path,
            "name": self.name,
            "notifyOnFail": "default",
            "ownerId": self.owner_id,
            "rootDir": "",
            "slug": self.slug,
            "suspended": if self.suspended { "suspended" } else { "not_suspended" },
            "suspenders": if self.suspended { json!(["user"]) } else { json!([]) },
            "type": self.service_type,
            "updatedAt": rfc3339(self.updated_at),
            "serviceDetails": Value::Object(details),
        });
        let cred = self.registry_credential_id.as_ref().and_then(|id| credentials.iter().find(|c| &c.id == id));
        if let (Some(obj), Some(c)) = (v.as_object_mut(), cred) {
            obj.insert("registryCredential".to_owned(), json!({"id": c.id, "name": c.name}));
        }
        v
    }
}

#[derive(Default)]
struct Window {
    start_ms: Option<i64>,
    used: u32,
}

struct State {
    now_ms: i64,
    seq: u64,
    owners: Vec<FakeOwner>,
    services: BTreeMap<String, ServiceState>,
    /// Service ids in creation order.
    service_order: Vec<String>,
    credentials: Vec<CredentialState>,
    dbs: Vec<DbState>,
    behaviours: BTreeMap<String, Behaviour>,
    unhealthy_observations: u32,
    faults: Vec<Fault>,
    requests: Vec<RecordedRequest>,
    request_count: u64,
    creates: u32,
    keys: Vec<String>,
    windows: BTreeMap<(RateBucket, String), Window>,
    limits: BTreeMap<RateBucket, u32>,
    reset_as_epoch: bool,
    proxied: bool,
}

type Res = Result<Reply, Reply>;

impl State {
    fn new() -> Self {
        State {
            now_ms: jiff::Timestamp::now().as_second().saturating_mul(1000),
            seq: 0,
            owners: Vec::new(),
            services: BTreeMap::new(),
            service_order: Vec::new(),
            credentials: Vec::new(),
            dbs: Vec::new(),
            behaviours: BTreeMap::new(),
            unhealthy_observations: DEFAULT_UNHEALTHY_OBSERVATIONS,
            faults: Vec::new(),
            requests: Vec::new(),
            request_count: 0,
            creates: 0,
            keys: Vec::new(),
            windows: BTreeMap::new(),
            limits: BTreeMap::new(),
            reset_as_epoch: false,
            proxied: false,
        }
    }

    fn hash(&mut self, kind: &str) -> String {
        self.seq += 1;
        hex::encode(Sha256::digest(format!("{kind}/{}", self.seq).as_bytes()))
    }

    /// `prefix-` + 20 lowercase hex characters, like Render's ids.
    fn new_id(&mut self, prefix: &str) -> String {
        let h = self.hash(prefix);
        format!("{prefix}-{}", h.get(..20).unwrap_or(&h))
    }

    fn secret(&mut self) -> String {
        let h = self.hash("secret");
        h.get(..32).unwrap_or(&h).to_owned()
    }

    fn seed_owner(&mut self, name: &str, pro: bool) -> String {
        let id = self.new_id("tea");
        let email = format!("{}@example.com", name.to_ascii_lowercase().replace(' ', "-"));
        self.owners.push(FakeOwner { id: id.clone(), name: name.to_owned(), email, pro });
        id
    }

    fn seed_db(&mut self, owner_id: &str, name: &str, kind: DbKind) -> String {
        let id = self.new_id(if kind == DbKind::Postgres { "dpg" } else { "red" });
        let password = self.secret();
        let created_at = self.now_ms;
        self.dbs.push(DbState {
            id: id.clone(),
            name: name.to_owned(),
            owner_id: owner_id.to_owned(),
            kind,
            password,
            created_at,
        });
        id
    }

    fn owner(&self, id: &str) -> Option<&FakeOwner> {
        self.owners.iter().find(|o| o.id == id)
    }

    fn owner_json(&self, id: &str) -> Value {
        match self.owner(id) {
            Some(o) => json!({"id": o.id, "name": o.name, "email": o.email, "type": "team"}),
            None => json!({"id": id, "name": "", "email": "", "type": "team"}),
        }
    }

    fn name_taken(&self, owner_id: &str, name: &str, except: Option<&str>) -> bool {
        self.services.values().any(|s| s.owner_id == owner_id && s.name == name && Some(s.id.as_str()) != except)
    }

    /// The service's `onrender.com` subdomain: its name, with a suffix if another service has it.
    fn slug_for(&mut self, name: &str) -> String {
        let base: String =
            name.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
        if self.services.values().any(|s| s.slug == base) {
            let h = self.hash("slug");
            format!("{base}-{}", h.get(..4).unwrap_or("0000"))
        } else {
            base
        }
    }

    fn behaviour_of(&self, d: &DeployState) -> Behaviour {
        self.behaviours
            .get(normalize_digest(&d.image_sha))
            .or_else(|| self.behaviours.get(&d.image_ref))
            .copied()
            .unwrap_or_default()
    }

    /// Creates a deploy of `image_ref` with the service's current env vars and settings: `created`
    /// when nothing runs, else `queued`. Returns its id.
    fn start_deploy_of(
        &mut self,
        service_id: &str,
        image_ref: String,
        credential: Option<Option<String>>,
        trigger: &str,
    ) -> Option<String> {
        let id = self.new_id("dep");
        let now = self.now_ms;
        let svc = self.services.get_mut(service_id)?;
        let running = svc.deploys.iter().any(|d| in_progress(&d.status));
        let image_sha = image_sha(&image_ref);
        svc.deploys.push(DeployState {
            id: id.clone(),
            image_ref,
            image_sha,
            registry_credential_id: credential.unwrap_or_else(|| svc.registry_credential_id.clone()),
            trigger: trigger.to_owned(),
            status: if running { "queued" } else { "created" }.to_owned(),
            observed: 0,
            env: svc.env.clone(),
            plan: svc.plan.clone(),
            docker_command: svc.docker_command.clone(),
            health_check_path: svc.health_check_path.clone(),
            was_live: false,
            created_at: now,
            updated_at: now,
            started_at: if running { None } else { Some(now) },
            finished_at: None,
        });
        Some(id)
    }

    /// One observation of `deploy_id`: moves the running deploy when it is the one observed or
    /// the observed one waits behind it.
    fn observe(&mut self, service_id: &str, deploy_id: &str) {
        let now = self.now_ms;
        let after = self.unhealthy_observations;
        let Some(svc) = self.services.get(service_id) else { return };
        let Some(observed) = svc.deploys.iter().find(|d| d.id == deploy_id) else { return };
        if !(in_progress(&observed.status) || observed.status == "queued") {
            return;
        }
        let Some(i) = svc.deploys.iter().position(|d| in_progress(&d.status)) else { return };
        let Some(b) = svc.deploys.get(i).map(|d| self.behaviour_of(d)) else { return };
        if let Some(svc) = self.services.get_mut(service_id) {
            svc.step(i, b, after, now);
        }
    }

    fn limit(&self, bucket: RateBucket) -> u32 {
        self.limits.get(&bucket).copied().unwrap_or_else(|| bucket.default_limit())
    }

    /// Takes one request from the bucket; `false` past its limit.
    fn take(&mut self, bucket: RateBucket, key: &str) -> bool {
        let now = self.now_ms;
        let limit = self.limit(bucket);
        let w = self.windows.entry((bucket, key.to_owned())).or_default();
        if w.start_ms.is_none_or(|s| now >= s.saturating_add(bucket.window_ms())) {
            w.start_ms = Some(now);
            w.used = 0;
        }
        if w.used >= limit {
            return false;
        }
        w.used += 1;
        true
    }

    /// `(limit, remaining, reset)` for the headers.
    fn rate_headers(&self, bucket: RateBucket, key: &str) -> (u32, u32, i64) {
        let now = self.now_ms;
        let limit = self.limit(bucket);
        let (used, end) = match self.windows.get(&(bucket, key.to_owned())) {
            Some(Window { start_ms: Some(s), used }) if now < s.saturating_add(bucket.window_ms()) => {
                (*used, s.saturating_add(bucket.window_ms()))
            }
            _ => (0, now.saturating_add(bucket.window_ms())),
        };
        let reset = if self.reset_as_epoch {
            end.saturating_add(999).div_euclid(1000)
        } else {
            end.saturating_sub(now).saturating_add(999).div_euclid(1000)
        };
        (limit, limit.saturating_sub(used), reset)
    }

    /// Under a [`Fault::RefuseImage`]: the status to refuse this request with.
    fn refused(&self, c: &Call<'_>) -> Option<u16> {
        let image = match (c.method, c.segs.as_slice()) {
            ("POST", ["services"]) => {
                let body: Value = serde_json::from_slice(c.body).ok()?;
                body.pointer("/image/imagePath").and_then(Value::as_str)?.to_owned()
            }
            ("POST", ["services", id, "deploys"]) => {
                let body: Value = serde_json::from_slice(c.body).ok()?;
                match body.get("imageUrl").and_then(Value::as_str) {
                    Some(u) => u.to_owned(),
                    None => self.services.get(*id)?.image_path.clone(),
                }
            }
            ("POST", ["services", id, "resume"]) => self.services.get(*id)?.image_path.clone(),
            ("POST", ["services", id, "rollback"]) => {
                let body: Value = serde_json::from_slice(c.body).ok()?;
                let target = body.get("deployId").and_then(Value::as_str)?;
                self.services.get(*id)?.deploys.iter().find(|d| d.id == target)?.image_ref.clone()
            }
            _ => return None,
        };
        let sha = image_sha(&image);
        self.faults.iter().find_map(|f| match f {
            Fault::RefuseImage { digest, status }
                if normalize_digest(digest) == normalize_digest(&sha) || *digest == image =>
            {
                Some(*status)
            }
            _ => None,
        })
    }

    fn route(&mut self, c: &Call<'_>) -> Reply {
        let out = match (c.method, c.segs.as_slice()) {
            ("GET", ["owners"]) => self.list_owners(c),
            ("GET", ["owners", id]) => match self.owner(id) {
                Some(_) => Ok(Reply::json(200, self.owner_json(id))),
                None => Err(Reply::error(404, "owner not found")),
            },
            ("GET", ["services"]) => self.list_services(c),
            ("POST", ["services"]) => self.create_service(c),
            ("GET", ["services", id]) => self.service(id).map(|s| Reply::json(200, s.json(&self.credentials))),
            ("PATCH", ["services", id]) => self.patch_service(id, c),
            ("DELETE", ["services", id]) => match self.services.remove(*id) {
                Some(_) => {
                    self.service_order.retain(|s| s != id);
                    Ok(Reply::empty(204))
                }
                None => Err(Reply::error(404, format!("service {id} not found"))),
            },
            ("GET", ["services", id, "deploys"]) => self.list_deploys(id, c),
            ("POST", ["services", id, "deploys"]) => self.post_deploy(id, c),
            ("GET", ["services", id, "deploys", dep]) => self.get_deploy(id, dep),
            ("POST", ["services", id, "deploys", dep, "cancel"]) => self.cancel(id, dep),
            ("POST", ["services", id, "rollback"]) => self.rollback(id, c),
            ("GET", ["services", id, "env-vars"]) => self.env_page(id, c),
            ("PUT", ["services", id, "env-vars"]) => self.replace_env(id, c),
            ("GET", ["services", id, "env-vars", key]) => self.service(id).and_then(|s| match s.env.get(*key) {
                Some(v) => Ok(Reply::json(200, json!({"key": key, "value": v}))),
                None => Err(Reply::error(404, format!("env var {key} not found"))),
            }),
            ("PUT", ["services", id, "env-vars", key]) => self.put_env(id, key, c),
            ("DELETE", ["services", id, "env-vars", key]) => self.delete_env(id, key),
            ("POST", ["services", id, "scale"]) => self.scale(id, c),
            ("PUT", ["services", id, "autoscaling"]) => self.put_autoscaling(id, c),
            ("DELETE", ["services", id, "autoscaling"]) => self.service_mut(id).map(|s| {
                s.autoscaling = None;
                Reply::empty(204)
            }),
            ("POST", ["services", id, "suspend"]) => self.service_mut(id).map(|s| {
                s.suspended = true;
                Reply::empty(202)
            }),
            ("POST", ["services", id, "resume"]) => self.resume(id),
            ("GET", ["registrycredentials"]) => Ok(self.list_credentials(c)),
            ("POST", ["registrycredentials"]) => self.create_credential(c),
            ("GET", ["registrycredentials", id]) => self.credential(id).map(|cr| Reply::json(200, cr.json())),
            ("PATCH", ["registrycredentials", id]) => self.patch_credential(id, c),
            ("DELETE", ["registrycredentials", id]) => {
                let before = self.credentials.len();
                self.credentials.retain(|cr| cr.id != *id);
                if self.credentials.len() < before {
                    Ok(Reply::empty(204))
                } else {
                    Err(Reply::error(404, "registry credential not found"))
                }
            }
            ("GET", ["postgres"]) => self.list_dbs(DbKind::Postgres, c),
            ("GET", ["postgres", id]) => self.db(DbKind::Postgres, id).map(|d| Reply::json(200, self.db_json(d))),
            ("GET", ["postgres", id, "connection-info"]) => {
                self.db(DbKind::Postgres, id).map(|d| Reply::json(200, connection_info(d)))
            }
            ("GET", ["key-value"]) => self.list_dbs(DbKind::KeyValue, c),
            ("GET", ["key-value", id]) => self.db(DbKind::KeyValue, id).map(|d| Reply::json(200, self.db_json(d))),
            ("GET", ["key-value", id, "connection-info"]) => {
                self.db(DbKind::KeyValue, id).map(|d| Reply::json(200, connection_info(d)))
            }
            _ => Err(Reply::error(404, format!("no route for {} {}", c.method, c.path))),
        };
        out.unwrap_or_else(|e| e)
    }

    fn service(&self, id: &str) -> Result<&ServiceState, Reply> {
        self.services.get(id).ok_or_else(|| Reply::error(404, format!("service {id} not found")))
    }

    fn service_mut(&mut self, id: &str) -> Result<&mut ServiceState, Reply> {
        self.services.get_mut(id).ok_or_else(|| Reply::error(404, format!("service {id} not found")))
    }

    fn credential(&self, id: &str) -> Result<&CredentialState, Reply> {
        self.credentials.iter().find(|c| c.id == id).ok_or_else(|| Reply::error(404, "registry credential not found"))
    }

    /// A credential id given for a service of `owner_id`: it must exist and belong to that owner.
    fn check_credential(&self, id: &str, owner_id: &str) -> Result<(), Reply> {
        match self.credentials.iter().find(|c| c.id == id) {
            None => Err(Reply::error(400, format!("registry credential {id} not found"))),
            Some(c) if c.owner_id != owner_id => Err(Reply::error(
                400,
                format!("registry credential {id} belongs to another owner than the service's ({owner_id})"),
            )),
            Some(_) => Ok(()),
        }
    }

    // -- owners, databases --------------------------------------------------------------------

    fn list_owners(&self, c: &Call<'_>) -> Res {
        let names = c.q_all("name");
        let emails = c.q_all("email");
        let items = self
            .owners
            .iter()
            .filter(|o| names.is_empty() || names.contains(&o.name))
            .filter(|o| emails.is_empty() || emails.contains(&o.email))
            .map(|o| (cursor_of(&o.id), self.owner_json(&o.id)))
            .collect();
        page(items, "owner", c)
    }

    fn db(&self, kind: DbKind, id: &str) -> Result<&DbState, Reply> {
        self.dbs.iter().find(|d| d.kind == kind && d.id == id).ok_or_else(|| Reply::error(404, "not found"))
    }

    fn db_json(&self, d: &DbState) -> Value {
        let at = rfc3339(d.created_at);
        let dashboard =
            format!("https://dashboard.render.com/{}/{}", if d.kind == DbKind::Postgres { "d" } else { "r" }, d.id);
        match d.kind {
            DbKind::Postgres => json!({
                "id": d.id,
                "ipAllowList": [],
                "createdAt": at,
                "updatedAt": at,
                "databaseName": db_user(&d.name),
                "databaseUser": db_user(&d.name),
                "highAvailabilityEnabled": false,
                "name": d.name,
                "owner": self.owner_json(&d.owner_id),
                "plan": "basic_1gb",
                "diskSizeGB": 15,
                "region": DEFAULT_REGION,
                "readReplicas": [],
                "role": "primary",
                "status": "available",
                "version": "16",
                "suspended": "not_suspended",
                "suspenders": [],
                "dashboardUrl": dashboard,
                "diskAutoscalingEnabled": false,
                "connectionPool": "none",
            }),
            DbKind::KeyValue => json!({
                "id": d.id,
                "createdAt": at,
                "updatedAt": at,
                "status": "available",
                "region": DEFAULT_REGION,
                "plan": "starter",
                "name": d.name,
                "owner": self.owner_json(&d.owner_id),
                "options": {"maxmemoryPolicy": "allkeys-lru", "persistenceMode": "journal_snapshot"},
                "ipAllowList": [],
                "version": "8.1.4",
                "dashboardUrl": dashboard,
            }),
        }
    }

    fn list_dbs(&self, kind: DbKind, c: &Call<'_>) -> Res {
        let names = c.q_all("name");
        let owners = c.q_all("ownerId");
        let items = self
            .dbs
            .iter()
            .filter(|d| d.kind == kind)
            .filter(|d| names.is_empty() || names.contains(&d.name))
            .filter(|d| owners.is_empty() || owners.contains(&d.owner_id))
            .map(|d| (cursor_of(&d.id), self.db_json(d)))
            .collect();
        page(items, if kind == DbKind::Postgres { "postgres" } else { "keyValue" }, c)
    }

    // -- services -----------------------------------------------------------------------------

    fn list_services(&self, c: &Call<'_>) -> Res {
        let names = c.q_all("name");
        let owners = c.q_all("ownerId");
        let types = c.q_all("type");
        let items = self
            .service_order
            .iter()
            .filter_map(|id| self.services.get(id))
            .filter(|s| names.is_empty() || names.contains(&s.name))
            .filter(|s| owners.is_empty() || owners.contains(&s.owner_id))
            .filter(|s| types.is_empty() || types.contains(&s.service_type))
            .map(|s| (cursor_of(&s.id), s.json(&self.credentials)))
            .collect();
        page(items, "service", c)
    }

    fn create_service(&mut self, c: &Call<'_>) -> Res {
        let body = c.object_body()?;
        let service_type = req_str(&body, "type")?;
        if !matches!(service_type, "web_service" | "background_worker") {
            return Err(Reply::error(
                400,
                format!("type {service_type:?}: the fake serves image-backed web_service and background_worker only"),
            ));
        }
        let web = service_type == "web_service";
        let name = req_str(&body, "name")?;
        let owner_id = req_str(&body, "ownerId")?;
        if self.owner(owner_id).is_none() {
            return Err(Reply::error(404, format!("owner {owner_id} not found")));
        }
        let Some(image) = body.get("image").filter(|i| i.is_object()) else {
            return Err(Reply::error(400, "image is required (only image-backed services are supported)"));
        };
        let image_path = req_str(image, "imagePath").map_err(|_| Reply::error(400, "image.imagePath is required"))?;
        let image_owner = req_str(image, "ownerId").map_err(|_| Reply::error(400, "image.ownerId is required"))?;
        if image_owner != owner_id {
            return Err(Reply::error(400, "image.ownerId must be the service's ownerId"));
        }
        let credential = opt_str(image, "registryCredentialId", "image.registryCredentialId")?;
        if let Some(cred) = credential {
            self.check_credential(cred, owner_id)?;
        }
        let Some(details) = body.get("serviceDetails").filter(|d| d.is_object()) else {
            return Err(Reply::error(400, "serviceDetails is required"));
        };
        match details.get("runtime").or_else(|| details.get("env")).and_then(Value::as_str) {
            Some("image") => {}
            Some(other) => {
                return Err(Reply::error(
                    400,
                    format!("serviceDetails.runtime {other:?}: only \"image\" is supported"),
                ));
            }
            None => return Err(Reply::error(400, "serviceDetails.runtime is required")),
        }
        let plan = opt_str(details, "plan", "serviceDetails.plan")?.unwrap_or(DEFAULT_PLAN);
        check_plan(plan, web)?;
        let region = opt_str(details, "region", "serviceDetails.region")?.unwrap_or(DEFAULT_REGION);
        if !REGIONS.contains(&region) {
            return Err(Reply::error(400, format!("invalid region {region:?}: one of {}", REGIONS.join(", "))));
        }
        let num_instances = match details.get("numInstances") {
            None | Some(Value::Null) => 1,
            Some(v) => match v.as_u64() {
                Some(n) if (1..=MAX_INSTANCES).contains(&n) => n,
                _ => return Err(Reply::error(400, "serviceDetails.numInstances must be an integer from 1 to 100")),
            },
        };
        let health = opt_str(details, "healthCheckPath", "serviceDetails.healthCheckPath")?;
        if health.is_some() && !web {
            return Err(Reply::error(400, "healthCheckPath is only for web services (workers have no health check)"));
        }
        let docker_command = match details.get("envSpecificDetails") {
            None | Some(Value::Null) => "",
            Some(e) => opt_str(e, "dockerCommand", "envSpecificDetails.dockerCommand")?.unwrap_or(""),
        };
        let autoscaling = match details.get("autoscaling") {
            None | Some(Value::Null) => None,
            Some(a) => {
                let a = parse_autoscaling(a)?;
                self.check_pro(owner_id)?;
                Some(a)
            }
        };
        let env = match body.get("envVars") {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => parse_env_list(v)?,
        };
        if self.name_taken(owner_id, name, None) {
            return Err(Reply::error(409, format!("a service named {name:?} already exists in this workspace")));
        }
        let id = self.new_id("srv");
        let now = self.now_ms;
        let slug = self.slug_for(name);
        let env = env.into_iter().map(|(k, v)| (k, v.unwrap_or_else(|| self.secret()))).collect();
        let svc = ServiceState {
            id: id.clone(),
            name: name.to_owned(),
            slug,
            owner_id: owner_id.to_owned(),
            service_type: service_type.to_owned(),
            image_path: image_path.to_owned(),
            registry_credential_id: credential.map(str::to_owned),
            plan: plan.to_owned(),
            region: region.to_owned(),
            num_instances,
            health_check_path: web.then(|| health.unwrap_or("").to_owned()),
            docker_command: docker_command.to_owned(),
            autoscaling,
            env,
            suspended: false,
            ignored_scales: 0,
            created_at: now,
            updated_at: now,
            deploys: Vec::new(),
            deploy_posts: 0,
        };
        self.services.insert(id.clone(), svc);
        self.service_order.push(id.clone());
        self.creates += 1;
        let deploy_id = self.start_deploy_of(&id, image_path.to_owned(), None, "api");
        let service = self.service(&id)?.json(&self.credentials);
        Ok(Reply::json(201, json!({"service": service, "deployId": deploy_id})))
    }

    fn patch_service(&mut self, id: &str, c: &Call<'_>) -> Res {
        let body = c.object_body()?;
        let svc = self.service(id)?;
        let (owner_id, web) = (svc.owner_id.clone(), svc.is_web());
        let mut image = None;
        if let Some(i) = body.get("image").filter(|i| !i.is_null()) {
            let (Some(path), Some(owner)) = (
                i.get("imagePath").and_then(Value::as_str).filter(|p| !p.is_empty()),
                i.get("ownerId").and_then(Value::as_str).filter(|o| !o.is_empty()),
            ) else {
                return Err(Reply::error(400, "image requires both imagePath and ownerId"));
            };
            if owner != owner_id {
                return Err(Reply::error(400, "image.ownerId must be the service's ownerId"));
            }
            let cred = opt_str(i, "registryCredentialId", "image.registryCredentialId")?;
            if let Some(cred) = cred {
                self.check_credential(cred, &owner_id)?;
            }
            image = Some((path.to_owned(), cred.map(str::to_owned)));
        }
        let name = opt_str(&body, "name", "name")?.filter(|n| !n.is_empty());
        if let Some(n) = name
            && self.name_taken(&owner_id, n, Some(id))
        {
            return Err(Reply::error(409, format!("a service named {n:?} already exists in this workspace")));
        }
        let (mut plan, mut health, mut command) = (None, None, None);
        if let Some(d) = body.get("serviceDetails").filter(|d| !d.is_null()) {
            if !d.is_object() {
                return Err(Reply::error(400, "serviceDetails must be an object"));
            }
            if d.get("numInstances").is_some() {
                return Err(Reply::error(
                    400,
                    "numInstances is not patchable: use POST /services/{id}/scale or PUT /services/{id}/autoscaling",
                ));
            }
            if d.get("region").is_some() {
                return Err(Reply::error(400, "region is not patchable: a service's region cannot be changed"));
            }
            if let Some(p) = opt_str(d, "plan", "serviceDetails.plan")? {
                check_plan(p, web)?;
                plan = Some(p.to_owned());
            }
            if let Some(h) = opt_str(d, "healthCheckPath", "serviceDetails.healthCheckPath")? {
                if !web {
                    return Err(Reply::error(400, "healthCheckPath is only for web services"));
                }
                health = Some(h.to_owned());
            }
            if let Some(r) = opt_str(d, "runtime", "serviceDetails.runtime")?
                && r != "image"
            {
                return Err(Reply::error(400, format!("serviceDetails.runtime {r:?}: only \"image\" is supported")));
            }
            if let Some(e) = d.get("envSpecificDetails").filter(|e| !e.is_null()) {
                command = opt_str(e, "dockerCommand", "envSpecificDetails.dockerCommand")?.map(str::to_owned);
            }
        }
        let now = self.now_ms;
        let svc = self.service_mut(id)?;
        if let Some((path, cred)) = image {
            svc.image_path = path;
            svc.registry_credential_id = cred;
        }
        if let Some(n) = name {
            n.clone_into(&mut svc.name);
        }
        if let Some(p) = plan {
            svc.plan = p;
        }
        if let Some(h) = health {
            svc.health_check_path = Some(h);
        }
        if let Some(cmd) = command {
            svc.docker_command = cmd;
        }
        svc.updated_at = now;
        Ok(Reply::json(200, self.service(id)?.json(&self.credentials)))
    }

    fn check_pro(&self, owner_id: &str) -> Result<(), Reply> {
        match self.owner(owner_id) {
            Some(o) if o.pro => Ok(()),
            _ => Err(Reply::error(403, "autoscaling requires a Professional workspace or higher")),
        }
    }

    fn scale(&mut self, id: &str, c: &Call<'_>) -> Res {
        let body = c.object_body()?;
        self.service(id)?;
        let n = match body.get("numInstances").and_then(Value::as_u64) {
            Some(n) if (1..=MAX_INSTANCES).contains(&n) => n,
            _ => return Err(Reply::error(400, "numInstances must be an integer from 1 to 100")),
        };
        let svc = self.service_mut(id)?;
        if svc.autoscaling.is_some_and(|a| a.enabled) {
            svc.ignored_scales += 1;
        } else {
            svc.num_instances = n;
        }
        Ok(Reply::empty(202))
    }

    fn put_autoscaling(&mut self, id: &str, c: &Call<'_>) -> Res {
        let body = c.object_body()?;
        let owner = self.service(id)?.owner_id.clone();
        let a = parse_autoscaling(&body)?;
        self.check_pro(&owner)?;
        self.service_mut(id)?.autoscaling = Some(a);
        Ok(Reply::json(200, a.json()))
    }

    fn resume(&mut self, id: &str) -> Res {
        let svc = self.service_mut(id)?;
        if svc.suspended {
            svc.suspended = false;
            let image = svc.image_path.clone();
            self.start_deploy_of(id, image, None, "service_resumed");
        }
        Ok(Reply::empty(202))
    }

    // -- deploys ------------------------------------------------------------------------------

    fn list_deploys(&self, id: &str, c: &Call<'_>) -> Res {
        let svc = self.service(id)?;
        let statuses = c.q_all("status");
        let after = c.q_time("createdAfter")?;
        let before = c.q_time("createdBefore")?;
        let items = svc
            .deploys
            .iter()
            .rev()
            .filter(|d| statuses.is_empty() || statuses.contains(&d.status))
            .filter(|d| after.is_none_or(|t| d.created_at > t))
            .filter(|d| before.is_none_or(|t| d.created_at < t))
            .map(|d| (cursor_of(&d.id), d.json()))
            .collect();
        page(items, "deploy", c)
    }

    fn get_deploy(&mut self, id: &str, dep: &str) -> Res {
        self.service(id)?;
        self.observe(id, dep);
        let svc = self.service(id)?;
        match svc.deploys.iter().find(|d| d.id == dep) {
            Some(d) => Ok(Reply::json(200, d.json())),
            None => Err(Reply::error(404, format!("deploy {dep} not found"))),
        }
    }

    fn post_deploy(&mut self, id: &str, c: &Call<'_>) -> Res {
        let body = c.object_body()?;
        let svc = self.service(id)?;
        if let Some(cc) = opt_str(&body, "clearCache", "clearCache")?
            && !matches!(cc, "clear" | "do_not_clear")
        {
            return Err(Reply::error(400, "clearCache must be \"clear\" or \"do_not_clear\""));
        }
        opt_str(&body, "commitId", "commitId")?;
        let mode = opt_str(&body, "deployMode", "deployMode")?;
        if let Some(m) = mode
            && !matches!(m, "deploy_only" | "build_and_deploy")
        {
            return Err(Reply::error(400, "deployMode must be \"deploy_only\" or \"build_and_deploy\""));
        }
        let url = opt_str(&body, "imageUrl", "imageUrl")?;
        if mode.is_some() && (url.is_some() || body.get("commitId").is_some() || body.get("clearCache").is_some()) {
            return Err(Reply::error(400, "deployMode cannot be combined with imageUrl, commitId or clearCache"));
        }
        let image = match url {
            Some(u) => {
                if repository(u) != repository(&svc.image_path) {
                    return Err(Reply::error(
                        400,
                        format!(
                            "imageUrl {u:?} must match the service's image repository ({}): only the tag or \
                             digest may change; update the service's image with PATCH /services/{{id}} first",
                            repository(&svc.image_path)
                        ),
                    ));
                }
                u.to_owned()
            }
            None => svc.image_path.clone(),
        };
        let dep = self.start_deploy_of(id, image, None, "api").unwrap_or_default();
        let svc = self.service_mut(id)?;
        svc.deploy_posts += 1;
        match svc.deploys.iter().find(|d| d.id == dep) {
            Some(d) if d.status == "queued" => Ok(Reply::empty(202)),
            Some(d) => Ok(Reply::json(201, d.json())),
            None => Err(Reply::error(500, "deploy vanished")),
        }
    }

    fn cancel(&mut self, id: &str, dep: &str) -> Res {
        let now = self.now_ms;
        let svc = self.service_mut(id)?;
        let Some(d) = svc.deploy_mut(dep) else { return Err(Reply::error(404, format!("deploy {dep} not found"))) };
        if !(in_progress(&d.status) || d.status == "queued") {
            return Err(Reply::error(400, format!("deploy {dep} is {} and cannot be canceled", d.status)));
        }
        d.status = "canceled".to_owned();
        d.updated_at = now;
        d.finished_at = Some(now);
        let out = d.json();
        svc.start_next_queued(now);
        Ok(Reply::json(200, out))
    }

    fn rollback(&mut self, id: &str, c: &Call<'_>) -> Res {
        let body = c.object_body()?;
        let target = req_str(&body, "deployId")?;
        let svc = self.service(id)?;
        let Some(t) = svc.deploys.iter().find(|d| d.id == target) else {
            return Err(Reply::error(404, format!("deploy {target} not found")));
        };
        if !t.was_live {
            return Err(Reply::error(
                400,
                format!("deploy {target} ({}) was never live: only a live or deactivated deploy is a target", t.status),
            ));
        }
        let (image, cred) = (t.image_ref.clone(), t.registry_credential_id.clone());
        let dep = self.start_deploy_of(id, image, Some(cred), "rollback").unwrap_or_default();
        let svc = self.service(id)?;
        match svc.deploys.iter().find(|d| d.id == dep) {
            Some(d) => Ok(Reply::json(201, d.json())),
            None => Err(Reply::error(500, "deploy vanished")),
        }
    }

    // -- env vars -----------------------------------------------------------------------------

    fn env_page(&self, id: &str, c: &Call<'_>) -> Res {
        let svc = self.service(id)?;
        let items = svc.env.iter().map(|(k, v)| (cursor_of(k), json!({"key": k, "value": v}))).collect::<Vec<_>>();
        page(items, "envVar", c)
    }

    fn replace_env(&mut self, id: &str, c: &Call<'_>) -> Res {
        self.service(id)?;
        let body = c.any_body_required()?;
        let list = parse_env_list(&body)?;
        let env: BTreeMap<String, String> =
            list.into_iter().map(|(k, v)| (k, v.unwrap_or_else(|| self.secret()))).collect();
        let now = self.now_ms;
        let svc = self.service_mut(id)?;
        svc.env = env;
        svc.updated_at = now;
        let items = svc.env.iter().map(|(k, v)| json!({"cursor": cursor_of(k), "envVar": {"key": k, "value": v}}));
        Ok(Reply::json(200, Value::Array(items.collect())))
    }

    fn put_env(&mut self, id: &str, key: &str, c: &Call<'_>) -> Res {
        self.service(id)?;
        let body = c.object_body()?;
        let value = match (body.get("value"), body.get("generateValue")) {
            (Some(Value::String(v)), _) => v.clone(),
            (None, Some(Value::Bool(true))) => self.secret(),
            _ => return Err(Reply::error(400, "body must be {\"value\": string} or {\"generateValue\": true}")),
        };
        let svc = self.service_mut(id)?;
        svc.env.insert(key.to_owned(), value.clone());
        Ok(Reply::json(200, json!({"key": key, "value": value})))
    }

    fn delete_env(&mut self, id: &str, key: &str) -> Res {
        let svc = self.service_mut(id)?;
        match svc.env.remove(key) {
            Some(_) => Ok(Reply::empty(204)),
            None => Err(Reply::error(404, format!("env var {key} not found"))),
        }
    }

    // -- registry credentials -----------------------------------------------------------------

    fn list_credentials(&self, c: &Call<'_>) -> Reply {
        let names = c.q_all("name");
        let owners = c.q_all("ownerId");
        let list = self
            .credentials
            .iter()
            .filter(|cr| names.is_empty() || names.contains(&cr.name))
            .filter(|cr| owners.is_empty() || owners.contains(&cr.owner_id))
            .map(CredentialState::json)
            .collect();
        Reply::json(200, Value::Array(list))
    }

    fn credential_fields(body: &Value) -> Result<(String, String, String, String), Reply> {
        let registry = req_str(body, "registry")?;
        if !matches!(registry, "GITHUB" | "GITLAB" | "DOCKER" | "GOOGLE_ARTIFACT" | "AWS_ECR") {
            return Err(Reply::error(
                400,
                format!("invalid registry {registry:?}: one of GITHUB, GITLAB, DOCKER, GOOGLE_ARTIFACT, AWS_ECR"),
            ));
        }
        Ok((
            registry.to_owned(),
            req_str(body, "name")?.to_owned(),
            req_str(body, "username")?.to_owned(),
            req_str(body, "authToken")?.to_owned(),
        ))
    }

    fn create_credential(&mut self, c: &Call<'_>) -> Res {
        let body = c.object_body()?;
        let (registry, name, username, token) = Self::credential_fields(&body)?;
        let owner_id = req_str(&body, "ownerId")?;
        if self.owner(owner_id).is_none() {
            return Err(Reply::error(404, format!("owner {owner_id} not found")));
        }
        let id = self.new_id("rgc");
        let cred = CredentialState {
            id,
            name,
            registry,
            username,
            auth_token: SecretString::from(token),
            owner_id: owner_id.to_owned(),
            updated_at: self.now_ms,
        };
        let out = cred.json();
        self.credentials.push(cred);
        Ok(Reply::json(200, out))
    }

    fn patch_credential(&mut self, id: &str, c: &Call<'_>) -> Res {
        let body = c.object_body()?;
        self.credential(id)?;
        let (registry, name, username, token) = Self::credential_fields(&body)?;
        let now = self.now_ms;
        let Some(cred) = self.credentials.iter_mut().find(|cr| cr.id == id) else {
            return Err(Reply::error(404, "registry credential not found"));
        };
        cred.registry = registry;
        cred.name = name;
        cred.username = username;
        cred.auth_token = SecretString::from(token);
        cred.updated_at = now;
        Ok(Reply::json(200, cred.json()))
    }
}

fn check_plan(plan: &str, web: bool) -> Result<(), Reply> {
    if (web && WEB_PLANS.contains(&plan)) || (!web && WORKER_PLANS.contains(&plan)) {
        return Ok(());
    }
    if !web && plan == "free" {
        return Err(Reply::error(400, "background workers cannot use the free plan"));
    }
    let plans = if web { WEB_PLANS.join(", ") } else { WORKER_PLANS.join(", ") };
    Err(Reply::error(400, format!("invalid plan {plan:?}: one of {plans}")))
}

/// The whole autoscaling object, or the 400 to answer.
fn parse_autoscaling(v: &Value) -> Result<FakeAutoscaling, Reply> {
    let whole = || {
        Reply::error(
            400,
            "autoscaling needs the whole object: {enabled, min, max, criteria: {cpu: {enabled, percentage}, \
             memory: {enabled, percentage}}}",
        )
    };
    let b = |p: &str| v.pointer(p).and_then(Value::as_bool).ok_or_else(whole);
    let n = |p: &str| v.pointer(p).and_then(Value::as_u64).ok_or_else(whole);
    let a = FakeAutoscaling {
        enabled: b("/enabled")?,
        min: n("/min")?,
        max: n("/max")?,
        cpu_enabled: b("/criteria/cpu/enabled")?,
        cpu_percentage: n("/criteria/cpu/percentage")?,
        memory_enabled: b("/criteria/memory/enabled")?,
        memory_percentage: n("/criteria/memory/percentage")?,
    };
    if a.min < 1 || a.max < a.min || a.max > MAX_INSTANCES {
        return Err(Reply::error(400, "autoscaling needs 1 <= min <= max <= 100"));
    }
    if ![a.cpu_percentage, a.memory_percentage].iter().all(|p| (1..=100).contains(p)) {
        return Err(Reply::error(400, "autoscaling percentages must be from 1 to 100"));
    }
    Ok(a)
}

/// `[{key, value} | {key, generateValue: true}]`: `(key, Some(value))`, or `None` to generate.
fn parse_env_list(v: &Value) -> Result<Vec<(String, Option<String>)>, Reply> {
    let Some(list) = v.as_array() else { return Err(Reply::error(400, "env vars must be an array of {key, value}")) };
    list.iter()
        .map(|item| {
            let key = item.get("key").and_then(Value::as_str).filter(|k| !k.is_empty());
            match (key, item.get("value"), item.get("generateValue")) {
                (Some(k), Some(Value::String(v)), _) => Ok((k.to_owned(), Some(v.clone()))),
                (Some(k), None, Some(Value::Bool(true))) => Ok((k.to_owned(), None)),
                _ => Err(Reply::error(400, "each env var must be {key, value} or {key, generateValue: true}")),
            }
        })
        .collect()
}

fn rate_limited(bucket: RateBucket) -> Reply {
    let what = match bucket {
        RateBucket::Service => "deploys and updates of this service (10 per minute)",
        RateBucket::Create => "service creation (20 per hour)",
        RateBucket::Write => "write requests (30 per minute)",
        RateBucket::Read => "read requests (400 per minute)",
    };
    Reply::error(429, format!("rate limit exceeded for {what}"))
}

fn connection_info(d: &DbState) -> Value {
    let host = format!("{}-a", d.id);
    match d.kind {
        DbKind::Postgres => {
            let user = db_user(&d.name);
            let external = format!("{host}.{DEFAULT_REGION}-postgres.render.com");
            json!({
                "password": d.password,
                "internalConnectionString": format!("postgresql://{user}:{}@{host}/{user}", d.password),
                "externalConnectionString": format!("postgresql://{user}:{}@{external}/{user}", d.password),
                "psqlCommand": format!("PGPASSWORD={} psql -h {external} -U {user} {user}", d.password),
            })
        }
        DbKind::KeyValue => {
            let external = format!("{DEFAULT_REGION}-keyvalue.render.com");
            json!({
                "internalConnectionString": format!("redis://{}:6379", d.id),
                "externalConnectionString": format!("rediss://red:{}@{external}:6379", d.password),
                "cliCommand": format!("redis-cli --user red --pass {} -h {external} -p 6379 --tls", d.password),
            })
        }
    }
}

fn db_user(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect()
}

// ---------------------------------------------------------------------------------------------
// HTTP

struct Reply {
    status: u16,
    body: Option<Value>,
}

impl Reply {
    fn json(status: u16, body: Value) -> Self {
        Reply { status, body: Some(body) }
    }

    fn empty(status: u16) -> Self {
        Reply { status, body: None }
    }

    fn error(status: u16, msg: impl Into<String>) -> Self {
        Reply::json(status, json!({"id": error_id(status), "message": msg.into()}))
    }
}

fn error_id(status: u16) -> &'static str {
    match status {
        400 => "bad_request",
        401 => "unauthorized",
        402 => "payment_required",
        403 => "forbidden",
        404 => "not_found",
        409 => "conflict",
        422 => "unprocessable_entity",
        429 => "rate_limit_exceeded",
        500 => "internal_server_error",
        502 => "bad_gateway",
        503 => "service_unavailable",
        504 => "gateway_timeout",
        _ => "error",
    }
}

fn fault_message(status: u16) -> &'static str {
    match status {
        401 => "unauthorized",
        404 => "not found",
        429 => "rate limit exceeded",
        500 => "internal server error",
        502 => "bad gateway",
        503 => "service unavailable",
        504 => "gateway timeout",
        _ => "injected fault",
    }
}

struct Call<'a> {
    method: &'a str,
    path: &'a str,
    segs: Vec<&'a str>,
    query: Vec<(String, String)>,
    body: &'a [u8],
}

impl Call<'_> {
    fn body_is_empty(&self) -> bool {
        self.body.iter().all(u8::is_ascii_whitespace)
    }

    fn any_body_required(&self) -> Result<Value, Reply> {
        if self.body_is_empty() {
            return Err(Reply::error(400, "a request body is required"));
        }
        serde_json::from_slice(self.body).map_err(|e| Reply::error(400, format!("invalid JSON body: {e}")))
    }

    /// The JSON object body; a missing body is a 400.
    fn object_body(&self) -> Result<Value, Reply> {
        match self.any_body_required() {
            Ok(v @ Value::Object(_)) => Ok(v),
            Ok(_) => Err(Reply::error(400, "request body must be a JSON object")),
            Err(e) if self.body_is_empty() => {
                Err(Reply::error(e.status, "a request body is required (send {} for the defaults)"))
            }
            Err(e) => Err(e),
        }
    }

    fn q(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Every value of a repeatable parameter (`a=1&a=2` or `a=1,2`).
    fn q_all(&self, name: &str) -> Vec<String> {
        self.query
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned))
            .collect()
    }

    fn q_time(&self, name: &str) -> Result<Option<i64>, Reply> {
        match self.q(name) {
            None => Ok(None),
            Some(t) => t
                .parse::<jiff::Timestamp>()
                .map(|t| Some(t.as_millisecond()))
                .map_err(|e| Reply::error(400, format!("{name} must be an RFC 3339 time: {e}"))),
        }
    }
}

fn req_str<'v>(v: &'v Value, field: &str) -> Result<&'v str, Reply> {
    v.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Reply::error(400, format!("{field} is required")))
}

fn opt_str<'v>(v: &'v Value, field: &str, label: &str) -> Result<Option<&'v str>, Reply> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Reply::error(400, format!("{label} must be a string"))),
    }
}

/// `[{cursor, <field>: item}]` from `limit` and `cursor` (the cursor of the last item seen).
fn page(items: Vec<(String, Value)>, field: &str, c: &Call<'_>) -> Res {
    let limit = match c.q("limit") {
        None => DEFAULT_LIMIT,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => return Err(Reply::error(400, "limit must be an integer from 1 to 100")),
        },
    };
    let start = match c.q("cursor").filter(|s| !s.is_empty()) {
        None => 0,
        Some(cur) => match items.iter().position(|(k, _)| k == cur) {
            Some(i) => i + 1,
            None => return Err(Reply::error(400, "invalid cursor")),
        },
    };
    let out = items
        .into_iter()
        .skip(start)
        .take(limit)
        .map(|(cursor, v)| {
            let mut o = Map::new();
            o.insert("cursor".to_owned(), Value::String(cursor));
            o.insert(field.to_owned(), v);
            Value::Object(o)
        })
        .collect();
    Ok(Reply::json(200, Value::Array(out)))
}

fn cursor_of(key: &str) -> String {
    hex::encode(key.as_bytes())
}

/// The bucket a request counts in, and the bucket's key (a service id or the API key).
fn bucket_of<'a>(method: &str, segs: &[&'a str], key: &'a str) -> (RateBucket, &'a str) {
    match (method, segs) {
        ("POST", ["services"]) => (RateBucket::Create, key),
        ("PATCH", ["services", id]) | ("POST", ["services", id, "deploys" | "rollback" | "suspend" | "resume"]) => {
            (RateBucket::Service, id)
        }
        ("GET", _) => (RateBucket::Read, key),
        _ => (RateBucket::Write, key),
    }
}

struct Handler(Arc<Mutex<State>>);

impl Respond for Handler {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut st = self.0.lock().unwrap_or_else(|e| e.into_inner());
        st.now_ms = st.now_ms.saturating_add(1);
        st.request_count += 1;
        let method = req.method.as_str().to_ascii_uppercase();
        let path = req.url.path().to_owned();
        let auth = req.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
        let key = auth.trim().strip_prefix("Bearer ").map(str::trim).unwrap_or("");
        let authorization_ok = !key.is_empty() && (key == API_KEY || st.keys.iter().any(|k| k == key));
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let segs = match segs.split_first() {
            Some((&"v1", rest)) => rest.to_vec(),
            _ => vec!["-not-v1-"],
        };
        let (bucket, bucket_key) = bucket_of(&method, &segs, key);
        let bucket_key = bucket_key.to_owned();

        let mut delay = Duration::ZERO;
        if let Some(Taken::Slow(d)) = take_fault(&mut st.faults, &method, &path, Phase::Slow) {
            delay = d;
        }
        let (mut reset, mut malformed, mut cut) = (false, false, false);
        let mut retry_after = None;
        let mut echo = None;
        let reply = match take_fault(&mut st.faults, &method, &path, Phase::BeforeRouting) {
            Some(Taken::Status(status, ra)) => {
                retry_after = ra;
                Reply::error(status, fault_message(status))
            }
            Some(Taken::Echo(status)) => {
                echo = Some(crate::echo::header(auth, &req.body));
                Reply::error(status, crate::echo::text(auth, &req.body))
            }
            Some(Taken::Reset) if st.proxied => {
                reset = true;
                Reply::empty(0)
            }
            Some(Taken::Reset) => Reply::error(502, "connection reset (the fake runs without its proxy)"),
            _ if !authorization_ok => Reply::error(401, "unauthorized: invalid or missing API key"),
            _ if !st.take(bucket, &bucket_key) => rate_limited(bucket),
            _ => {
                let call = Call {
                    method: &method,
                    path: &path,
                    segs: segs.clone(),
                    query: req.url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect(),
                    body: &req.body,
                };
                match st.refused(&call) {
                    Some(status) => Reply::error(status, format!("image refused: {}", fault_message(status))),
                    None => {
                        let reply = st.route(&call);
                        match take_fault(&mut st.faults, &method, &path, Phase::AfterRouting) {
                            Some(Taken::Status(status, _)) => Reply::error(status, fault_message(status)),
                            Some(Taken::Malformed) => {
                                malformed = true;
                                Reply::empty(200)
                            }
                            Some(Taken::Reset) if st.proxied => {
                                reset = true;
                                Reply::empty(0)
                            }
                            Some(Taken::Cut) if st.proxied => {
                                cut = true;
                                reply
                            }
                            Some(Taken::Reset | Taken::Cut) => {
                                Reply::error(502, "answer lost after being applied (the fake runs without its proxy)")
                            }
                            _ => reply,
                        }
                    }
                }
            }
        };

        st.requests.push(RecordedRequest {
            method,
            path,
            query: req.url.query().unwrap_or("").to_owned(),
            authorization_ok,
            status: reply.status,
        });
        let (limit, remaining, reset_at) = st.rate_headers(bucket, &bucket_key);
        drop(st);

        if reset {
            return ResponseTemplate::new(500).insert_header(RESET_HEADER, "1");
        }
        let mut t = ResponseTemplate::new(reply.status);
        if malformed {
            t = t.set_body_raw(b"{\"id\": \"trunc".to_vec(), "application/json");
        } else if let Some(body) = reply.body {
            if cut {
                let half = serde_json::to_vec(&body).map_or(0, |b| b.len() / 2);
                t = t.insert_header(CUT_HEADER, half.to_string().as_str());
            }
            t = t.set_body_json(body);
        }
        t = t
            .insert_header("ratelimit-limit", limit.to_string().as_str())
            .insert_header("ratelimit-remaining", remaining.to_string().as_str())
            .insert_header("ratelimit-reset", reset_at.to_string().as_str());
        if let Some(secs) = retry_after {
            t = t.insert_header("retry-after", secs.to_string().as_str());
        }
        if let Some(echo) = echo {
            t = t.insert_header(crate::echo::ECHO_HEADER, echo.as_str());
        }
        if !delay.is_zero() {
            t = t.set_delay(delay);
        }
        t
    }
}

/// Which faults a lookup takes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// `Status`, `Echo` and `Reset`: the request is not applied.
    BeforeRouting,
    /// `LostResponse`, `ResetAfter`, `CutBody` and `Malformed`: the request was applied.
    AfterRouting,
    /// `Slow`.
    Slow,
}

/// A fault use taken.
enum Taken {
    Status(u16, Option<u64>),
    Echo(u16),
    Reset,
    Cut,
    Malformed,
    Slow(Duration),
}

/// Consumes one use of the first matching fault of `phase`, in the order they were injected.
fn take_fault(faults: &mut Vec<Fault>, method: &str, path: &str, phase: Phase) -> Option<Taken> {
    let i = faults.iter().position(|f| {
        f.matches(method, path)
            && f.times_left() > 0
            && match f {
                Fault::Status { .. } | Fault::Echo { .. } | Fault::Reset { .. } => phase == Phase::BeforeRouting,
                Fault::LostResponse { .. }
                | Fault::ResetAfter { .. }
                | Fault::CutBody { .. }
                | Fault::Malformed { .. } => phase == Phase::AfterRouting,
                Fault::Slow { .. } => phase == Phase::Slow,
                Fault::RefuseImage { .. } => false,
            }
    })?;
    let out = match faults.get_mut(i)? {
        Fault::Status { status, times, retry_after, .. } => {
            *times -= 1;
            Taken::Status(*status, *retry_after)
        }
        Fault::Echo { status, times, .. } => {
            *times -= 1;
            Taken::Echo(*status)
        }
        Fault::LostResponse { status, times, .. } => {
            *times -= 1;
            Taken::Status(*status, None)
        }
        Fault::Reset { times, .. } | Fault::ResetAfter { times, .. } => {
            *times -= 1;
            Taken::Reset
        }
        Fault::CutBody { times, .. } => {
            *times -= 1;
            Taken::Cut
        }
        Fault::Malformed { times, .. } => {
            *times -= 1;
            Taken::Malformed
        }
        Fault::Slow { times, delay, .. } => {
            *times -= 1;
            Taken::Slow(*delay)
        }
        Fault::RefuseImage { .. } => return None,
    };
    faults.retain(|f| matches!(f, Fault::RefuseImage { .. }) || f.times_left() > 0);
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH).to_string()
}

fn normalize_digest(d: &str) -> &str {
    d.strip_prefix("sha256:").unwrap_or(d)
}

/// `[registry/]repository[:tag][@digest]` → (registry/repository, tag, digest), with docker's
/// defaults for a bare name (`nginx` → `docker.io/library/nginx`).
fn split_image(image: &str) -> (String, Option<&str>, Option<&str>) {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let slash = name.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name.get(slash..).and_then(|last| last.rfind(':')) {
        Some(i) => (name.get(..slash + i).unwrap_or(name), name.get(slash + i + 1..)),
        None => (name, None),
    };
    let full = match name.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => name.to_owned(),
        Some(_) => format!("docker.io/{name}"),
        None => format!("docker.io/library/{name}"),
    };
    (full.to_ascii_lowercase(), tag, digest)
}

/// The registry and repository of an image reference, without tag or digest.
fn repository(image: &str) -> String {
    split_image(image).0
}

/// `image.sha` of a deploy: the reference's digest, or (for a tag Render would resolve) a
/// digest made from the reference.
fn image_sha(image: &str) -> String {
    match split_image(image).2 {
        Some(d) => d.to_owned(),
        None => format!("sha256:{}", hex::encode(Sha256::digest(image.as_bytes()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_ignore_tag_and_digest() {
        assert_eq!(repository("ghcr.io/acme/api:v1@sha256:abc"), "ghcr.io/acme/api");
        assert_eq!(repository("nginx:1.27"), "docker.io/library/nginx");
        assert_eq!(repository("localhost:5000/api@sha256:def"), "localhost:5000/api");
        assert_eq!(image_sha("ghcr.io/acme/api:v1@sha256:abc"), "sha256:abc");
        assert!(image_sha("ghcr.io/acme/api:v1").starts_with("sha256:"));
    }

    #[test]
    fn scenarios() {
        let steps = |b| (1..=4).map(|k| scenario(b, k, 3)).collect::<Vec<_>>();
        assert_eq!(steps(Behaviour::Healthy), ["build_in_progress", "update_in_progress", "live", "live"]);
        assert_eq!(steps(Behaviour::Unhealthy)[2], "update_failed");
        assert_eq!(steps(Behaviour::Crash)[1], "update_failed");
        assert_eq!(steps(Behaviour::BuildFail)[0], "build_failed");
        assert_eq!(steps(Behaviour::PreDeployFail)[2], "pre_deploy_failed");
    }

    #[test]
    fn fault_paths() {
        let f = Fault::Reset { method: None, path_contains: "/deploys/$".to_owned(), times: 1 };
        assert!(f.matches("GET", "/v1/services/srv-1/deploys/dep-1"));
        assert!(!f.matches("POST", "/v1/services/srv-1/deploys/dep-1/cancel"));
        let f = Fault::Reset { method: Some("post".to_owned()), path_contains: "/v1/services$".to_owned(), times: 1 };
        assert!(f.matches("POST", "/v1/services"));
        assert!(!f.matches("POST", "/v1/services/srv-1"));
    }
}
