//! A stateful fake of the Fly Machines API (`https://api.machines.dev/v1`), for tests.
//!
//! # Design
//!
//! [`FlyFake::start`] starts a wiremock [`MockServer`] with a single catch-all [`Mock`] whose
//! [`Respond`] impl routes every request itself over one `Arc<Mutex<State>>`. Wiremock gives a
//! real HTTP server on 127.0.0.1, request recording and response delays for free; routing by hand
//! over shared state (instead of one canned `Mock` per endpoint) is what makes the fake
//! *stateful*: a machine created by one request is listed, updated, leased and versioned by the
//! next ones, exactly as the real API would, so a client is tested on what it does rather than on
//! the order in which a test happened to register responses.
//!
//! Request and response bodies follow the Machines API spec (`openapi.yaml`, snake_case), with the
//! live shapes where the live API differs from the 2023 spec (leases answer
//! `{"status":"success","data":{...}}`; `POST /apps/{app}/secrets` exists; the IP address routes
//! `GET`/`POST /apps/{app}/ip_assignments` and `DELETE /apps/{app}/ip_assignments/{ip}` are newer
//! than the spec and follow fly-go's `flaps_ip_assignments.go`). A machine's `config`
//! is kept as a [`serde_json::Value`]: whatever the client sends is stored and returned verbatim.
//!
//! # Time
//!
//! The fake has its own clock. It starts at the real time of [`FlyFake::start`] and moves only
//! when the fake says so: 1 ms per request, the seconds a `wait` spends (without really sleeping),
//! and [`FlyFake::advance`]. Lease expiry, `created_at`/`updated_at` and event timestamps all read
//! that clock, so tests are deterministic and never sleep. Only [`Fault::Delay`] really sleeps.
//!
//! # Scenarios
//!
//! What a machine does after it is launched (created, updated or started) is decided by the
//! [`Behaviour`] registered for its image digest ([`FlyFake::set_behaviour`]), looked up each
//! time, so a behaviour can be set before or after the deploy. A launched machine moves one step
//! through its scenario on every `GET /apps/{app}/machines/{id}` (one "observation"), and a `wait`
//! fast-forwards through up to `timeout` steps (one step = one second of fake time) until the
//! requested state is reached. Listing machines does not move them. See [`Behaviour`] for each
//! scenario's steps.
//!
//! # Auth and faults
//!
//! Every request must carry `Authorization: Bearer fake-fly-token` (or `FlyV1 fake-fly-token`);
//! anything else gets `401 {"error":"unauthorized"}` ([`FlyFake::accept_token`] adds tokens).
//! Injected [`Fault`]s are checked before auth and routing ([`Fault::Echo`] quotes the request's
//! `Authorization` header and body back). Every request is recorded ([`FlyFake::requests`])
//! without its body, so no secret value is ever kept outside the secret store.
//!
//! Clients reach the fake through a small TCP proxy of the testkit's (its address is
//! [`FlyFake::uri`]), which relays every request and response unchanged; it is there so that a
//! [`Fault::Reset`] can drop a connection with a TCP reset, which wiremock cannot do.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::proxy::{CUT_HEADER, Proxy, RESET_HEADER};

/// The only API token the fake accepts, as `Bearer <TOKEN>` or `FlyV1 <TOKEN>`.
pub const TOKEN: &str = "fake-fly-token";
/// The owner recorded on leases taken through the API (the user the fake token belongs to).
pub const LEASE_OWNER: &str = "deployer@example.com";
/// The header that carries a lease nonce on guarded requests.
pub const NONCE_HEADER: &str = "fly-machine-lease-nonce";

const MAX_WAIT_SECS: u64 = 60;
const DEFAULT_LEASE_TTL_SECS: u64 = 30;
const FOREIGN_LEASE_TTL_SECS: u64 = 30 * 60;
const DEFAULT_REGION: &str = "iad";
const MAX_EVENTS: usize = 20;
/// Observations a seeded machine is considered to have had: long past any start-up scenario.
const SETTLED: u32 = 1_000;

/// What a machine running a given image digest does once launched (see [`FlyFake::set_behaviour`]).
///
/// "GET n" below is the n-th `GET /apps/{app}/machines/{id}` after the launch, counting from 1.
/// The create/update/start response itself reports the launch state: `"started"` (`"starting"`
/// for `SlowStart(n)` with n > 0) and every check `"warning"` (no result yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Behaviour {
    /// State `"started"`; checks `"warning"` on GET 1 and `"passing"` from GET 2 on, so a client
    /// has to poll. `wait?state=started` answers 200 at once.
    #[default]
    Healthy,
    /// State `"started"`; checks stay `"critical"`. `wait?state=started` answers 200.
    FailingChecks,
    /// Starts, then crashes: GET 1 already shows state `"stopped"`, checks `"critical"`, and an
    /// `exit` event (`exit_code` 1, `requested_stop` false, `restarting` false). The machine
    /// stays stopped until it is updated or started again. `wait?state=started` answers 200 while
    /// the crash has not been observed yet (the machine did start), and 408 once it has;
    /// `wait?state=stopped` answers 200, making the crash visible.
    Crash,
    /// State `"started"`; checks alternate `"critical"` (GET 1, 3, ...) and `"passing"` (GET 2, 4, ...).
    Flapping,
    /// State `"starting"` with checks `"critical"` for the first n GETs, then [`Behaviour::Healthy`]
    /// (GET n+1 `"started"` with checks `"warning"`, then `"passing"`). A `wait?state=started`
    /// fast-forwards through the remaining starting steps when they fit in its timeout (one step
    /// per second), and answers 408 otherwise, having spent the timeout.
    SlowStart(u32),
}

/// A fault to inject into the fake's responses (see [`FlyFake::inject`]).
///
/// `path_contains` is matched against the request path, including the `/v1` prefix
/// (e.g. `"/machines"`, `"/lease"`, `"/v1/apps/web/secrets"`); `method: None` matches any method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// `path_contains` ending in `$` matches only at the end of the path, and `…/$` matches
    /// the prefix plus exactly one more segment. The next `times` matching requests get `status` (with `Retry-After: <secs>` when set)
    /// and a `{"error": ...}` body. They have no effect on the fake's state.
    Status {
        /// HTTP method to match (case-insensitive), or any.
        method: Option<String>,
        /// Substring of the request path to match.
        path_contains: String,
        /// Status to answer with, e.g. 429 or 503.
        status: u16,
        /// How many matching requests fail.
        times: u32,
        /// Seconds to put in a `Retry-After` header.
        retry_after: Option<u64>,
    },
    /// The next `times` matching requests get `status` (with `Retry-After: <secs>` when set) and
    /// an error that quotes the request back: `{"error": "echo: Authorization: … body: …"}` with
    /// the `Authorization` header and the body as received (also base64- and percent-encoded),
    /// and the same in an [`ECHO_HEADER`](crate::echo::ECHO_HEADER) response header (see
    /// [`crate::echo`]). Checked before auth, like [`Fault::Status`]; no effect on the state. For
    /// tests that no credential or secret value comes out of a client.
    Echo {
        /// HTTP method to match (case-insensitive), or any.
        method: Option<String>,
        /// Substring of the request path to match.
        path_contains: String,
        /// Status to answer with, e.g. 401 or 500.
        status: u16,
        /// How many matching requests get the echo.
        times: u32,
        /// Seconds to put in a `Retry-After` header (`Some(0)`: retried at once).
        retry_after: Option<u64>,
    },
    /// The next `times` matching requests ARE applied to the state, but the client gets `status`
    /// instead of the real answer: a create or update that may have succeeded.
    LostResponse {
        /// HTTP method to match (case-insensitive), or any.
        method: Option<String>,
        /// Substring of the request path to match.
        path_contains: String,
        /// Status the client sees, e.g. 502 or 504.
        status: u16,
        /// How many matching requests lose their response.
        times: u32,
    },
    /// Every matching request is answered after a real `delay`, until [`FlyFake::clear_faults`].
    Delay {
        /// Substring of the request path to match.
        path_contains: String,
        /// How long to hold each matching response.
        delay: Duration,
    },
    /// The next `times` matching requests ARE applied, and answered after a real `delay`: longer
    /// than the client's request timeout, the client gives up on an answer that was coming.
    Slow {
        /// HTTP method to match (case-insensitive), or any.
        method: Option<String>,
        /// Substring of the request path to match.
        path_contains: String,
        /// How long to hold each matching response.
        delay: Duration,
        /// How many matching requests are slow.
        times: u32,
    },
    /// The next `times` matching requests get no answer: the connection is reset (TCP RST) once
    /// the request has arrived. They have no effect on the fake's state, and are recorded with
    /// status 0.
    Reset {
        /// HTTP method to match (case-insensitive), or any.
        method: Option<String>,
        /// Substring of the request path to match.
        path_contains: String,
        /// How many matching requests are reset.
        times: u32,
    },
    /// The next `times` matching requests ARE applied, then their connection is reset (TCP RST)
    /// before any answer: a lost response the client sees as a network error. Recorded with
    /// status 0, like [`Fault::Reset`].
    ResetAfter {
        /// HTTP method to match (case-insensitive), or any.
        method: Option<String>,
        /// Substring of the request path to match.
        path_contains: String,
        /// How many matching requests are reset after being applied.
        times: u32,
    },
    /// The next `times` matching requests ARE applied, and their answer's body stops half-way
    /// short of its `Content-Length`: the connection closes mid-body (the proxy cuts it). An
    /// answer without a body arrives whole. Recorded with the status of the cut answer.
    CutBody {
        /// HTTP method to match (case-insensitive), or any.
        method: Option<String>,
        /// Substring of the request path to match.
        path_contains: String,
        /// How many matching requests get a cut body.
        times: u32,
    },
    /// The next `times` matching requests ARE applied, but answer `200` with a body that is not
    /// JSON (`{"id": "trunc`, as from a proxy that cut the response short).
    Malformed {
        /// HTTP method to match (case-insensitive), or any.
        method: Option<String>,
        /// Substring of the request path to match.
        path_contains: String,
        /// How many matching requests get the malformed body.
        times: u32,
    },
    /// Machine creates and updates (`POST /apps/{app}/machines[/{id}]`) whose `config.image`
    /// has `digest` (with or without `sha256:`): the first `after` pass, every later one is
    /// refused with `status` and not applied, until [`FlyFake::clear_faults`]. A deploy of that
    /// digest therefore fails after it changed some machines (a failure after the settings
    /// moved), while a restore of another digest goes through.
    RefuseImage {
        /// The image digest whose creates and updates are refused.
        digest: String,
        /// How many of them pass first.
        after: u32,
        /// Status to answer with, e.g. 422.
        status: u16,
    },
}

impl Fault {
    /// The next `times` requests whose path contains `path_contains` get
    /// `429 Too Many Requests` with `Retry-After: retry_after_secs`.
    pub fn rate_limited(path_contains: &str, times: u32, retry_after_secs: u64) -> Self {
        Fault::Status {
            method: None,
            path_contains: path_contains.to_owned(),
            status: 429,
            times,
            retry_after: Some(retry_after_secs),
        }
    }

    /// The next `times` requests whose path contains `path_contains` get `503 Service Unavailable`.
    pub fn unavailable(path_contains: &str, times: u32) -> Self {
        Fault::Status { method: None, path_contains: path_contains.to_owned(), status: 503, times, retry_after: None }
    }

    /// Uses left of a fault that counts them.
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
            Fault::Delay { .. } | Fault::RefuseImage { .. } => 0,
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
            Fault::Delay { path_contains, .. } => (None, path_contains),
            Fault::RefuseImage { .. } => return false,
        };
        // A trailing `$` anchors the match at the end of the path (`/machines/$` is an update,
        // not a lease).
        let hit = match p.strip_suffix('$') {
            Some(end) => path.ends_with(end) || path_ends_with_segment_after(path, end),
            None => path.contains(p.as_str()),
        };
        m.is_none_or(|m| m.eq_ignore_ascii_case(method)) && hit
    }
}

/// Whether `path` is `prefix` followed by exactly one more segment (`…/machines/` + an id).
fn path_ends_with_segment_after(path: &str, prefix: &str) -> bool {
    prefix.ends_with('/')
        && path.find(prefix).is_some_and(|i| {
            let rest = &path[i + prefix.len()..];
            !rest.is_empty() && !rest.contains('/')
        })
}

/// A machine as the fake holds it, for assertions (see [`FlyFake::machines`]).
#[derive(Debug, Clone, PartialEq)]
pub struct FakeMachine {
    /// Machine id (14 hex characters).
    pub id: String,
    /// Machine name.
    pub name: String,
    /// Region code, e.g. `"iad"`.
    pub region: String,
    /// Last state a client could have seen: `"created"`, `"starting"`, `"started"`, `"stopped"`.
    pub state: String,
    /// `config.image`, verbatim.
    pub image: String,
    /// The `sha256:...` digest in `image`, if it has one.
    pub digest: Option<String>,
    /// `config.metadata` (string values only).
    pub metadata: BTreeMap<String, String>,
    /// The full config, exactly as the client last sent it.
    pub config: Value,
    /// Current instance id (= current version).
    pub instance_id: String,
    /// `min_secrets_version` sent with the last create or update, if any.
    pub min_secrets_version: Option<u64>,
    /// The app's secrets version when this instance started: Fly hands a machine the app's
    /// secrets as they are when it (re)starts, so a value set later reaches it only at its next
    /// update or create.
    pub secrets_version_started: u64,
}

/// One entry of a machine's version history (see [`FlyFake::versions`]).
#[derive(Debug, Clone, PartialEq)]
pub struct FakeVersion {
    /// Version id (the instance id that version ran as).
    pub version: String,
    /// The config of that version, verbatim.
    pub config: Value,
}

/// One IP address of an app (see [`FlyFake::ip_assignments`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeIp {
    /// The address.
    pub ip: String,
    /// The type it was allocated as: `shared_v4`, `v4`, `v6`, `private_v6`, `egress_v4`, `egress_v6`.
    pub kind: String,
    /// `global` unless a region was asked for.
    pub region: String,
}

/// One request the fake received (see [`FlyFake::requests`]). Bodies are not recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// HTTP method, upper case.
    pub method: String,
    /// Path including `/v1`, e.g. `/v1/apps/web/machines`.
    pub path: String,
    /// Raw query string, empty when there is none.
    pub query: String,
    /// Whether a `fly-machine-lease-nonce` header was sent.
    pub has_nonce: bool,
    /// Whether the `Authorization` header carried the fake token.
    pub authorization_ok: bool,
    /// Status the fake answered with; 0 when the connection was reset instead ([`Fault::Reset`]).
    pub status: u16,
}

/// The Fly Machines API fake: a running server plus its state. See the [module docs](self).
pub struct FlyFake {
    server: MockServer,
    state: Arc<Mutex<State>>,
    /// `None` only when the proxy could not start: then clients talk to wiremock directly and a
    /// [`Fault::Reset`] is answered `502` instead.
    proxy: Option<Proxy>,
}

impl std::fmt::Debug for FlyFake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlyFake").field("uri", &self.uri()).finish_non_exhaustive()
    }
}

impl FlyFake {
    /// The only API token the fake accepts (same as [`TOKEN`]).
    pub const TOKEN: &'static str = TOKEN;

    /// Starts the fake on a free port of 127.0.0.1, with no apps.
    pub async fn start() -> FlyFake {
        let server = MockServer::start().await;
        let proxy = Proxy::start(*server.address()).ok();
        let state = Arc::new(Mutex::new(State::new()));
        state.lock().unwrap_or_else(|e| e.into_inner()).proxied = proxy.is_some();
        Mock::given(any()).respond_with(Handler(Arc::clone(&state))).mount(&server).await;
        FlyFake { server, state, proxy }
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

    /// Sets what machines whose image has this digest do once launched. `digest` may be given
    /// with or without its `sha256:` prefix; for an image without a digest, pass the whole image
    /// string. Applies to machines already running it from their next observation on.
    pub fn set_behaviour(&self, digest: &str, behaviour: Behaviour) {
        self.lock().behaviours.insert(normalize_digest(digest).to_owned(), behaviour);
    }

    /// Injects a fault; see [`Fault`].
    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// Accepts `token` too, besides [`TOKEN`] (as `Bearer <token>` or `FlyV1 <token>`): for
    /// tests that need a token of their own, such as a canary searched for in the output.
    pub fn accept_token(&self, token: &str) {
        self.lock().tokens.push(token.to_owned());
    }

    /// Uses of injected faults not met yet: the `times` left of every counted fault
    /// ([`Fault::Delay`] and [`Fault::RefuseImage`] have none).
    pub fn faults_left(&self) -> u32 {
        self.lock().faults.iter().map(Fault::times_left).sum()
    }

    /// Removes every injected fault, spent or not.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Moves the fake's clock forward (e.g. to let a lease expire).
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        let mut st = self.lock();
        st.now_ms = st.now_ms.saturating_add(ms);
    }

    /// Creates an app (no-op if it exists).
    pub fn seed_app(&self, app: &str, org: &str) {
        let mut st = self.lock();
        if !st.apps.contains_key(app) {
            let id = st.hex_id("app", 14);
            st.apps.insert(app.to_owned(), AppState::new(id, org));
        }
    }

    /// Creates a machine that has been running for a while (as if created by someone else),
    /// creating the app in org `personal` if needed. Returns its id. It is `"started"` with passing
    /// checks until its [`Behaviour`] says otherwise.
    pub fn seed_machine(&self, app: &str, region: &str, config: Value) -> String {
        self.seed_app(app, "personal");
        let mut st = self.lock();
        let (id, instance_id, ip) = (st.hex_id("machine", 14), st.ulid(), st.private_ip());
        let now = st.now_ms;
        let name = format!("seeded-{id}");
        let mut m = MachineState::new(id.clone(), name, region.to_owned(), ip, config, instance_id, now);
        m.state = "started".to_owned();
        m.level = Level::Passing;
        m.launched = true;
        m.observed = SETTLED;
        m.push_event(now, "launch", "created", "user", None);
        m.push_event(now, "start", "started", "flyd", None);
        if let Some(a) = st.apps.get_mut(app) {
            a.machines.push(m);
        }
        id
    }

    /// Forces a machine's visible state (e.g. `"stopped"`), ending any scenario in progress.
    /// Returns false if there is no such machine.
    pub fn set_state(&self, app: &str, machine_id: &str, state: &str) -> bool {
        let mut st = self.lock();
        let Some(m) = st.machine_mut(app, machine_id) else { return false };
        m.state = state.to_owned();
        m.launched = false;
        m.level = if state == "started" { Level::Passing } else { Level::Critical };
        true
    }

    /// Puts a lease on a machine held by `owner` (someone else: the client does not know the
    /// nonce), valid for 30 minutes of fake time. Returns its nonce, or None if there is no such
    /// machine.
    pub fn hold_lease(&self, app: &str, machine_id: &str, owner: &str) -> Option<String> {
        let mut st = self.lock();
        let nonce = st.hex_id("lease", 12);
        let expires = st.now_ms + secs_to_ms(FOREIGN_LEASE_TTL_SECS);
        let m = st.machine_mut(app, machine_id)?;
        m.lease = Some(LeaseState {
            nonce: nonce.clone(),
            owner: owner.to_owned(),
            description: "held by another deploy".to_owned(),
            expires_at_ms: expires,
        });
        Some(nonce)
    }

    /// Drops whatever lease a machine has. Returns whether there was one.
    pub fn release_foreign_lease(&self, app: &str, machine_id: &str) -> bool {
        self.lock().machine_mut(app, machine_id).and_then(|m| m.lease.take()).is_some()
    }

    /// Names of all apps, sorted.
    pub fn apps(&self) -> Vec<String> {
        self.lock().apps.keys().cloned().collect()
    }

    /// The app's machines in creation order, destroyed ones excluded (empty if no such app).
    pub fn machines(&self, app: &str) -> Vec<FakeMachine> {
        let st = self.lock();
        let Some(a) = st.apps.get(app) else { return Vec::new() };
        a.machines.iter().filter(|m| m.state != "destroyed").map(MachineState::snapshot).collect()
    }

    /// A machine's versions, newest first (empty if no such machine).
    pub fn versions(&self, app: &str, machine_id: &str) -> Vec<FakeVersion> {
        let st = self.lock();
        let Some(m) = st.apps.get(app).and_then(|a| a.machine(machine_id)) else { return Vec::new() };
        m.versions.iter().rev().map(|v| FakeVersion { version: v.version.clone(), config: v.config.clone() }).collect()
    }

    /// The value a secret was set to. Assert on it; never print it.
    pub fn secret_value(&self, app: &str, name: &str) -> Option<String> {
        let st = self.lock();
        st.apps.get(app)?.secrets.get(name).map(|s| s.expose_secret().to_owned())
    }

    /// Names of the app's secrets, sorted.
    pub fn secret_names(&self, app: &str) -> Vec<String> {
        self.lock().apps.get(app).map(|a| a.secrets.keys().cloned().collect()).unwrap_or_default()
    }

    /// The app's secrets version: 0 before any `POST /secrets`, +1 per successful one.
    pub fn secrets_version(&self, app: &str) -> u64 {
        self.lock().apps.get(app).map_or(0, |a| a.secrets_version)
    }

    /// Every unexpired lease, as `(app, machine id, owner)`; leases taken through the API have
    /// owner [`LEASE_OWNER`].
    pub fn leases_held(&self) -> Vec<(String, String, String)> {
        let st = self.lock();
        let now = st.now_ms;
        let mut out = Vec::new();
        for (app, a) in &st.apps {
            for m in &a.machines {
                if let Some(l) = m.lease.as_ref().filter(|l| l.expires_at_ms > now) {
                    out.push((app.clone(), m.id.clone(), l.owner.clone()));
                }
            }
        }
        out
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// How many machines were created in the app through the API (including creates whose
    /// response was lost to a [`Fault::LostResponse`]).
    pub fn creates(&self, app: &str) -> usize {
        self.lock().apps.get(app).map_or(0, |a| a.creates)
    }

    /// The app's IP addresses, in allocation order (empty if no such app).
    pub fn ip_assignments(&self, app: &str) -> Vec<FakeIp> {
        let st = self.lock();
        let Some(a) = st.apps.get(app) else { return Vec::new() };
        a.ips.iter().map(|ip| FakeIp { ip: ip.ip.clone(), kind: ip.kind.clone(), region: ip.region.clone() }).collect()
    }

    /// Gives an app an address of type `kind` (`shared_v4`, `v4`, `v6`, `private_v6`…) as if
    /// someone had allocated it, creating the app in org `personal` if needed. Returns the address,
    /// or None for an unknown type.
    pub fn seed_ip(&self, app: &str, kind: &str) -> Option<String> {
        self.seed_app(app, "personal");
        let mut st = self.lock();
        let ip = st.new_ip(kind, "global", "")?;
        let address = ip.ip.clone();
        st.apps.get_mut(app)?.ips.push(ip);
        Some(address)
    }

    /// With `Some(status)`, every `POST /apps/{app}/ip_assignments` is refused with that status
    /// (403 for a token that may deploy but not allocate addresses) and allocates nothing; with
    /// `None`, allocation works again. Reads still work.
    pub fn refuse_ip_allocation(&self, status: Option<u16>) {
        self.lock().refuse_ips = status;
    }
}

// ---------------------------------------------------------------------------------------------
// State

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Passing,
    Warning,
    Critical,
}

struct State {
    now_ms: i64,
    seq: u64,
    apps: BTreeMap<String, AppState>,
    behaviours: BTreeMap<String, Behaviour>,
    faults: Vec<Fault>,
    requests: Vec<RecordedRequest>,
    /// Whether clients come through the proxy (which can reset a connection).
    proxied: bool,
    /// Tokens accepted besides [`TOKEN`] ([`FlyFake::accept_token`]).
    tokens: Vec<String>,
    /// The status `POST …/ip_assignments` is refused with ([`FlyFake::refuse_ip_allocation`]).
    refuse_ips: Option<u16>,
}

struct IpRec {
    ip: String,
    kind: String,
    region: String,
    service_name: String,
    created_at_ms: i64,
}

impl IpRec {
    fn json(&self) -> Value {
        json!({
            "ip": self.ip,
            "region": self.region,
            "service_name": self.service_name,
            "shared": self.kind == "shared_v4",
            "egress": self.kind.starts_with("egress_"),
            "created_at": rfc3339(self.created_at_ms),
        })
    }
}

struct AppState {
    id: String,
    org: String,
    machines: Vec<MachineState>,
    secrets: BTreeMap<String, SecretString>,
    secrets_version: u64,
    creates: usize,
    ips: Vec<IpRec>,
}

impl AppState {
    fn new(id: String, org: &str) -> Self {
        AppState {
            id,
            org: org.to_owned(),
            machines: Vec::new(),
            secrets: BTreeMap::new(),
            secrets_version: 0,
            creates: 0,
            ips: Vec::new(),
        }
    }

    fn machine(&self, id: &str) -> Option<&MachineState> {
        self.machines.iter().find(|m| m.id == id)
    }

    fn json(&self, name: &str) -> Value {
        let live = self.machines.iter().any(|m| m.state != "destroyed");
        json!({
            "id": self.id,
            "name": name,
            "status": if live { "deployed" } else { "pending" },
            "organization": {"name": self.org, "slug": self.org},
        })
    }

    fn secrets_json(&self) -> Value {
        let list: Vec<Value> = self
            .secrets
            .iter()
            .map(|(name, v)| json!({"name": name, "digest": secret_digest(v.expose_secret())}))
            .collect();
        Value::Array(list)
    }
}

struct LeaseState {
    nonce: String,
    owner: String,
    description: String,
    expires_at_ms: i64,
}

struct VersionRec {
    version: String,
    config: Value,
}

struct MachineState {
    id: String,
    name: String,
    region: String,
    private_ip: String,
    config: Value,
    instance_id: String,
    created_at_ms: i64,
    updated_at_ms: i64,
    /// Last state a client could have seen.
    state: String,
    /// Check status a client would see now.
    level: Level,
    /// Whether the machine is going through its behaviour's scenario.
    launched: bool,
    /// Observations since the last launch.
    observed: u32,
    events: Vec<Value>,
    event_count: u64,
    versions: Vec<VersionRec>,
    lease: Option<LeaseState>,
    min_secrets_version: Option<u64>,
    secrets_version_started: u64,
}

impl MachineState {
    fn new(
        id: String,
        name: String,
        region: String,
        private_ip: String,
        config: Value,
        instance_id: String,
        now: i64,
    ) -> Self {
        let versions = vec![VersionRec { version: instance_id.clone(), config: config.clone() }];
        MachineState {
            id,
            name,
            region,
            private_ip,
            config,
            instance_id,
            created_at_ms: now,
            updated_at_ms: now,
            state: "created".to_owned(),
            level: Level::Warning,
            launched: false,
            observed: 0,
            events: Vec::new(),
            event_count: 0,
            versions,
            lease: None,
            min_secrets_version: None,
            secrets_version_started: 0,
        }
    }

    fn image(&self) -> &str {
        self.config.get("image").and_then(Value::as_str).unwrap_or("")
    }

    fn snapshot(&self) -> FakeMachine {
        let metadata = self
            .config
            .get("metadata")
            .and_then(Value::as_object)
            .map(|o| o.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
            .unwrap_or_default();
        FakeMachine {
            id: self.id.clone(),
            name: self.name.clone(),
            region: self.region.clone(),
            state: self.state.clone(),
            image: self.image().to_owned(),
            digest: parse_image(self.image()).digest,
            metadata,
            config: self.config.clone(),
            instance_id: self.instance_id.clone(),
            min_secrets_version: self.min_secrets_version,
            secrets_version_started: self.secrets_version_started,
        }
    }

    fn push_event(&mut self, now: i64, kind: &str, status: &str, source: &str, request: Option<Value>) {
        self.event_count += 1;
        let salt = u64::from_str_radix(self.id.get(..12).unwrap_or("0"), 16).unwrap_or(0);
        let mut ev = json!({
            "id": ulid(now, (self.event_count << 48) | (salt & 0xffff_ffff_ffff)),
            "type": kind,
            "status": status,
            "source": source,
            "timestamp": now,
        });
        if let (Some(obj), Some(req)) = (ev.as_object_mut(), request) {
            obj.insert("request".to_owned(), req);
        }
        self.events.insert(0, ev);
        self.events.truncate(MAX_EVENTS);
    }

    /// Starts the behaviour's scenario from the beginning.
    fn launch(&mut self, b: Behaviour, now: i64, cause: Option<(&str, &str)>) {
        self.launched = true;
        self.observed = 0;
        self.level = Level::Warning;
        if let Some((kind, status)) = cause {
            self.push_event(now, kind, status, "user", None);
        }
        if matches!(b, Behaviour::SlowStart(n) if n > 0) {
            self.state = "starting".to_owned();
        } else {
            self.state = "started".to_owned();
            self.push_event(now, "start", "started", "flyd", None);
        }
    }

    /// One step of the scenario: what the next GET shows.
    fn observe(&mut self, b: Behaviour, now: i64) {
        if !self.launched {
            return;
        }
        let k = self.observed;
        self.observed = k.saturating_add(1);
        let (state, level, crashed) = view(b, k);
        if crashed {
            self.launched = false;
            self.push_event(now, "exit", "stopped", "flyd", Some(exit_request(1, false, now)));
        } else if state == "started" && self.state != "started" {
            self.push_event(now, "start", "started", "flyd", None);
        }
        self.state = state.to_owned();
        self.level = level;
    }

    fn stop(&mut self, now: i64) {
        self.launched = false;
        self.state = "stopped".to_owned();
        self.level = Level::Critical;
        self.push_event(now, "exit", "stopped", "flyd", Some(exit_request(0, true, now)));
    }

    /// The unexpired lease, dropping an expired one.
    fn active_lease(&mut self, now: i64) -> Option<&LeaseState> {
        if self.lease.as_ref().is_some_and(|l| l.expires_at_ms <= now) {
            self.lease = None;
        }
        self.lease.as_ref()
    }

    /// A guarded request passes when no lease is held or it carries the lease's nonce.
    fn check_lease(&mut self, nonce: Option<&str>, now: i64) -> Result<(), Reply> {
        let id = self.id.clone();
        match self.active_lease(now) {
            Some(l) if nonce != Some(l.nonce.as_str()) => Err(Reply::error(
                409,
                format!("machine {id}: lease currently held by {}, expires at {}", l.owner, rfc3339(l.expires_at_ms)),
            )),
            _ => Ok(()),
        }
    }

    fn checks_json(&self, now: i64) -> Vec<Value> {
        let running = self.state == "started";
        let (status, output) = match (running, self.level) {
            (false, _) => ("critical", "the machine is not running"),
            (true, Level::Passing) => ("passing", "Success"),
            (true, Level::Warning) => ("warning", "waiting for status update"),
            (true, Level::Critical) => ("critical", "503 Service Unavailable"),
        };
        check_names(&self.config)
            .into_iter()
            .map(|name| json!({"name": name, "status": status, "output": output, "updated_at": rfc3339(now)}))
            .collect()
    }

    fn json(&self, now: i64) -> Value {
        let img = parse_image(self.image());
        let mut v = json!({
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "region": self.region,
            "instance_id": self.instance_id,
            "private_ip": self.private_ip,
            "config": self.config,
            "image_ref": {
                "registry": img.registry,
                "repository": img.repository,
                "tag": img.tag.unwrap_or_default(),
                "digest": img.digest.unwrap_or_default(),
                "labels": {},
            },
            "created_at": rfc3339(self.created_at_ms),
            "updated_at": rfc3339(self.updated_at_ms),
            "events": self.events,
        });
        let checks = self.checks_json(now);
        if let (Some(obj), false) = (v.as_object_mut(), checks.is_empty()) {
            obj.insert("checks".to_owned(), Value::Array(checks));
        }
        v
    }
}

/// The scenario: (state, check level, crashed) at observation `k` (0-based) after a launch.
fn view(b: Behaviour, k: u32) -> (&'static str, Level, bool) {
    match b {
        Behaviour::Healthy => ("started", if k == 0 { Level::Warning } else { Level::Passing }, false),
        Behaviour::FailingChecks => ("started", Level::Critical, false),
        Behaviour::Crash => ("stopped", Level::Critical, true),
        Behaviour::Flapping => ("started", if k.is_multiple_of(2) { Level::Critical } else { Level::Passing }, false),
        Behaviour::SlowStart(n) if k < n => ("starting", Level::Critical, false),
        Behaviour::SlowStart(n) => view(Behaviour::Healthy, k - n),
    }
}

impl State {
    fn new() -> Self {
        let now_ms = jiff::Timestamp::now().as_second().saturating_mul(1000);
        State {
            now_ms,
            seq: 0,
            apps: BTreeMap::new(),
            behaviours: BTreeMap::new(),
            faults: Vec::new(),
            requests: Vec::new(),
            proxied: false,
            tokens: Vec::new(),
            refuse_ips: None,
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn hex_id(&mut self, kind: &str, len: usize) -> String {
        let seq = self.next_seq();
        hex::encode(Sha256::digest(format!("{kind}/{seq}").as_bytes())).chars().take(len).collect()
    }

    fn ulid(&mut self) -> String {
        let seq = self.next_seq();
        let salt = Sha256::digest(seq.to_be_bytes());
        let low = salt.iter().take(6).fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        ulid(self.now_ms, (seq << 48) | low)
    }

    fn private_ip(&mut self) -> String {
        let seq = self.next_seq();
        format!("fdaa:0:1:a7b:{seq:x}::2")
    }

    /// A new address of type `kind`, or None for a type the API does not know.
    fn new_ip(&mut self, kind: &str, region: &str, service_name: &str) -> Option<IpRec> {
        let seq = self.next_seq();
        let (a, b) = (seq / 250 % 250, seq % 250 + 1);
        let ip = match kind {
            "shared_v4" => format!("66.241.{}.{b}", 124 + a),
            "v4" => format!("137.66.{a}.{b}"),
            "v6" => format!("2a09:8280:1::{seq:x}:0"),
            "private_v6" => format!("fdaa:0:1:a7b:0:{seq:x}::1"),
            "egress_v4" => format!("149.248.{a}.{b}"),
            "egress_v6" => format!("2605:4c40:1::{seq:x}:0"),
            _ => return None,
        };
        let (kind, region, service_name) = (kind.to_owned(), region.to_owned(), service_name.to_owned());
        Some(IpRec { ip, kind, region, service_name, created_at_ms: self.now_ms })
    }

    fn machine_mut(&mut self, app: &str, id: &str) -> Option<&mut MachineState> {
        self.apps.get_mut(app)?.machines.iter_mut().find(|m| m.id == id)
    }

    fn behaviour_of(&self, config: &Value) -> Behaviour {
        let image = config.get("image").and_then(Value::as_str).unwrap_or("");
        let key = match parse_image(image).digest {
            Some(d) => normalize_digest(&d).to_owned(),
            None => image.to_owned(),
        };
        self.behaviours.get(&key).copied().unwrap_or_default()
    }

    /// App and machine, or the 404 to answer.
    fn find(&mut self, app: &str, id: &str) -> Result<(Behaviour, i64, &mut MachineState), Reply> {
        let now = self.now_ms;
        let a = self.apps.get(app).ok_or_else(|| app_not_found(app))?;
        let m = a.machine(id).ok_or_else(|| Reply::error(404, "machine not found"))?;
        let b = self.behaviour_of(&m.config);
        let m = self.machine_mut(app, id).ok_or_else(|| Reply::error(404, "machine not found"))?;
        Ok((b, now, m))
    }

    fn route(&mut self, c: &Call<'_>) -> Reply {
        match (c.method, c.segs.as_slice()) {
            ("GET", ["apps"]) => self.list_apps(c),
            ("POST", ["apps"]) => self.create_app(c),
            ("GET", ["apps", app]) => match self.apps.get(*app) {
                Some(a) => Reply::json(200, a.json(app)),
                None => app_not_found(app),
            },
            ("GET", ["apps", app, "machines"]) => self.list_machines(app, c),
            ("POST", ["apps", app, "machines"]) => self.create_machine(app, c),
            ("GET", ["apps", app, "machines", id]) => self.find(app, id).map_or_else(
                |e| e,
                |(b, now, m)| {
                    m.observe(b, now);
                    Reply::json(200, m.json(now))
                },
            ),
            ("POST", ["apps", app, "machines", id]) => self.update_machine(app, id, c),
            ("DELETE", ["apps", app, "machines", id]) => self.delete_machine(app, id, c),
            ("GET", ["apps", app, "machines", id, "versions"]) => self.find(app, id).map_or_else(
                |e| e,
                |(_, _, m)| {
                    let list: Vec<Value> = m
                        .versions
                        .iter()
                        .rev()
                        .map(|v| json!({"version": v.version, "user_config": v.config}))
                        .collect();
                    Reply::json(200, Value::Array(list))
                },
            ),
            (_, ["apps", app, "machines", id, "lease"]) => self.lease(app, id, c),
            ("POST", ["apps", app, "machines", id, "metadata", key]) => self.set_metadata(app, id, key, c),
            ("GET", ["apps", app, "machines", id, "wait"]) => self.wait(app, id, c),
            ("POST", ["apps", app, "machines", id, "stop"]) => self.stop_machine(app, id, c),
            ("POST", ["apps", app, "machines", id, "start"]) => self.start_machine(app, id, c),
            ("GET", ["apps", app, "secrets"]) => match self.apps.get(*app) {
                Some(a) => Reply::json(200, json!({"secrets": a.secrets_json()})),
                None => app_not_found(app),
            },
            ("POST", ["apps", app, "secrets"]) => self.set_secrets(app, c),
            ("GET", ["apps", app, "ip_assignments"]) => match self.apps.get(*app) {
                Some(a) => Reply::json(200, json!({"ips": a.ips.iter().map(IpRec::json).collect::<Vec<_>>()})),
                None => app_not_found(app),
            },
            ("POST", ["apps", app, "ip_assignments"]) => self.assign_ip(app, c),
            ("DELETE", ["apps", app, "ip_assignments", ip]) => match self.apps.get_mut(*app) {
                Some(a) => match a.ips.iter().position(|r| r.ip == *ip) {
                    Some(i) => {
                        a.ips.remove(i);
                        Reply::empty(204)
                    }
                    None => Reply::error(404, format!("ip {ip} not found")),
                },
                None => app_not_found(app),
            },
            _ => Reply::error(404, format!("no route for {} {}", c.method, c.path)),
        }
    }

    /// `POST …/metadata/{key} {"value": …}`: sets `config.metadata[key]` in place. Like the
    /// live API it makes no new config version and restarts nothing; a lease held by someone
    /// else refuses it.
    fn set_metadata(&mut self, app: &str, id: &str, key: &str, c: &Call<'_>) -> Reply {
        let body = match c.json_body() {
            Ok(b) => b,
            Err(e) => return e,
        };
        let Some(value) = body.get("value").and_then(Value::as_str).map(str::to_owned) else {
            return Reply::error(400, "value is required");
        };
        match self.find(app, id) {
            Err(e) => e,
            Ok((_, now, m)) => {
                if let Err(e) = m.check_lease(c.nonce, now) {
                    return e;
                }
                match m.config.as_object_mut() {
                    Some(cfg) => {
                        let meta = cfg.entry("metadata").or_insert_with(|| json!({}));
                        if let Some(meta) = meta.as_object_mut() {
                            meta.insert(key.to_owned(), Value::String(value));
                        }
                        Reply::empty(204)
                    }
                    None => Reply::error(500, "machine has no config"),
                }
            }
        }
    }

    fn list_apps(&self, c: &Call<'_>) -> Reply {
        let org = c.query.get("org_slug").map(String::as_str);
        let apps: Vec<Value> = self
            .apps
            .iter()
            .filter(|(_, a)| org.is_none_or(|o| o == "personal" || o == a.org))
            .map(|(name, a)| {
                let count = a.machines.iter().filter(|m| m.state != "destroyed").count();
                json!({"id": a.id, "name": name, "machine_count": count, "network": {}})
            })
            .collect();
        Reply::json(200, json!({"total_apps": apps.len(), "apps": apps}))
    }

    fn create_app(&mut self, c: &Call<'_>) -> Reply {
        let body = match c.json_body() {
            Ok(b) => b,
            Err(e) => return e,
        };
        let Some(name) = body.get("app_name").and_then(Value::as_str).filter(|n| !n.is_empty()) else {
            return Reply::error(400, "app_name is required");
        };
        let org = body.get("org_slug").and_then(Value::as_str).unwrap_or("personal");
        if self.apps.contains_key(name) {
            return Reply::error(422, "Validation failed: Name has already been taken");
        }
        let id = self.hex_id("app", 14);
        self.apps.insert(name.to_owned(), AppState::new(id, org));
        Reply::empty(201)
    }

    fn list_machines(&self, app: &str, c: &Call<'_>) -> Reply {
        let Some(a) = self.apps.get(app) else { return app_not_found(app) };
        let deleted = c.query.get("include_deleted").is_some_and(|v| v == "true");
        let region = c.query.get("region");
        let meta: Vec<(&str, &str)> =
            c.query.iter().filter_map(|(k, v)| Some((k.strip_prefix("metadata.")?, v.as_str()))).collect();
        let list: Vec<Value> = a
            .machines
            .iter()
            .filter(|m| deleted || m.state != "destroyed")
            .filter(|m| region.is_none_or(|r| *r == m.region))
            .filter(|m| {
                meta.iter().all(|(k, v)| m.config.pointer(&format!("/metadata/{k}")).and_then(Value::as_str) == Some(v))
            })
            .map(|m| m.json(self.now_ms))
            .collect();
        Reply::json(200, Value::Array(list))
    }

    fn check_min_secrets(&self, app: &str, body: &Value) -> Result<Option<u64>, Reply> {
        let Some(v) = body.get("min_secrets_version").filter(|v| !v.is_null()) else { return Ok(None) };
        let Some(v) = v.as_u64() else { return Err(Reply::error(400, "min_secrets_version must be an integer")) };
        let have = self.apps.get(app).map_or(0, |a| a.secrets_version);
        if v > have {
            return Err(Reply::error(
                400,
                format!("min_secrets_version {v} is newer than the app's secrets (version {have})"),
            ));
        }
        Ok(Some(v))
    }

    fn create_machine(&mut self, app: &str, c: &Call<'_>) -> Reply {
        let body = match c.json_body() {
            Ok(b) => b,
            Err(e) => return e,
        };
        let Some(a) = self.apps.get(app) else { return app_not_found(app) };
        let config = match valid_config(&body) {
            Ok(cfg) => cfg,
            Err(e) => return e,
        };
        let name = body.get("name").and_then(Value::as_str).map(str::to_owned);
        if let Some(other) =
            name.as_ref().and_then(|n| a.machines.iter().find(|m| &m.name == n && m.state != "destroyed"))
        {
            let msg = format!(
                "unique machine name violation, machine ID {} already exists with name {:?}",
                other.id, other.name
            );
            return Reply::error(409, msg);
        }
        let min_secrets = match self.check_min_secrets(app, &body) {
            Ok(v) => v,
            Err(e) => return e,
        };
        let region = body.get("region").and_then(Value::as_str).unwrap_or(DEFAULT_REGION).to_owned();
        let (id, instance_id, ip) = (self.hex_id("machine", 14), self.ulid(), self.private_ip());
        let name = name.unwrap_or_else(|| format!("machine-{id}"));
        let lease_ttl = body.get("lease_ttl").and_then(Value::as_u64).filter(|t| *t > 0);
        let nonce = lease_ttl.map(|_| self.hex_id("lease", 12));
        let b = self.behaviour_of(&config);
        let now = self.now_ms;
        let mut m = MachineState::new(id, name, region, ip, config, instance_id, now);
        m.min_secrets_version = min_secrets;
        m.secrets_version_started = self.apps.get(app).map_or(0, |a| a.secrets_version);
        if let (Some(ttl), Some(nonce)) = (lease_ttl, &nonce) {
            m.lease = Some(LeaseState {
                nonce: nonce.clone(),
                owner: LEASE_OWNER.to_owned(),
                description: String::new(),
                expires_at_ms: now + secs_to_ms(ttl),
            });
        }
        if body.get("skip_launch").and_then(Value::as_bool) == Some(true) {
            m.push_event(now, "launch", "created", "user", None);
        } else {
            m.launch(b, now, Some(("launch", "created")));
        }
        let mut out = m.json(now);
        if let (Some(obj), Some(nonce)) = (out.as_object_mut(), nonce) {
            obj.insert("nonce".to_owned(), Value::String(nonce));
        }
        if let Some(a) = self.apps.get_mut(app) {
            a.machines.push(m);
            a.creates += 1;
        }
        Reply::json(200, out)
    }

    fn update_machine(&mut self, app: &str, id: &str, c: &Call<'_>) -> Reply {
        let body = match c.json_body() {
            Ok(b) => b,
            Err(e) => return e,
        };
        if let Err(e) = self.find(app, id).and_then(|(_, now, m)| m.check_lease(c.nonce, now)) {
            return e;
        }
        let config = match valid_config(&body) {
            Ok(cfg) => cfg,
            Err(e) => return e,
        };
        let min_secrets = match self.check_min_secrets(app, &body) {
            Ok(v) => v,
            Err(e) => return e,
        };
        let b = self.behaviour_of(&config);
        let instance_id = self.ulid();
        let now = self.now_ms;
        let secrets_now = self.apps.get(app).map_or(0, |a| a.secrets_version);
        let Some(m) = self.machine_mut(app, id) else { return Reply::error(404, "machine not found") };
        if m.state == "destroyed" {
            return Reply::error(412, "machine is destroyed");
        }
        if let Some(r) = body.get("region").and_then(Value::as_str) {
            m.region = r.to_owned();
        }
        if let Some(n) = body.get("name").and_then(Value::as_str) {
            m.name = n.to_owned();
        }
        m.config = config.clone();
        m.instance_id = instance_id.clone();
        m.updated_at_ms = now;
        m.min_secrets_version = min_secrets;
        m.secrets_version_started = secrets_now;
        m.versions.push(VersionRec { version: instance_id, config });
        if body.get("skip_launch").and_then(Value::as_bool) == Some(true) {
            m.push_event(now, "update", "replacing", "user", None);
            m.launched = false;
            m.state = "stopped".to_owned();
            m.level = Level::Critical;
        } else {
            m.launch(b, now, Some(("update", "replacing")));
        }
        Reply::json(200, m.json(now))
    }

    fn delete_machine(&mut self, app: &str, id: &str, c: &Call<'_>) -> Reply {
        let force = ["force", "kill"].iter().any(|k| c.query.get(*k).is_some_and(|v| v == "true"));
        let (_, now, m) = match self.find(app, id) {
            Ok(x) => x,
            Err(e) => return e,
        };
        if let Err(e) = m.check_lease(c.nonce, now) {
            return e;
        }
        if m.state == "started" && !force {
            return Reply::error(412, "unable to destroy machine, not currently stopped");
        }
        m.launched = false;
        m.lease = None;
        m.state = "destroyed".to_owned();
        m.push_event(now, "destroy", "destroyed", "user", None);
        Reply::json(200, json!({"ok": true}))
    }

    fn stop_machine(&mut self, app: &str, id: &str, c: &Call<'_>) -> Reply {
        let (_, now, m) = match self.find(app, id) {
            Ok(x) => x,
            Err(e) => return e,
        };
        if let Err(e) = m.check_lease(c.nonce, now) {
            return e;
        }
        if m.state != "stopped" {
            m.stop(now);
        }
        Reply::json(200, json!({"ok": true}))
    }

    fn start_machine(&mut self, app: &str, id: &str, c: &Call<'_>) -> Reply {
        let (b, now, m) = match self.find(app, id) {
            Ok(x) => x,
            Err(e) => return e,
        };
        if let Err(e) = m.check_lease(c.nonce, now) {
            return e;
        }
        let previous = m.state.clone();
        if previous == "destroyed" {
            return Reply::error(412, "machine is destroyed");
        }
        if previous != "started" {
            m.launch(b, now, None);
        }
        Reply::json(200, json!({"previous_state": previous, "migrated": false, "new_host": ""}))
    }

    fn lease(&mut self, app: &str, id: &str, c: &Call<'_>) -> Reply {
        let nonce = self.hex_id("lease", 12);
        let (_, now, m) = match self.find(app, id) {
            Ok(x) => x,
            Err(e) => return e,
        };
        let version = m.instance_id.clone();
        match c.method {
            "GET" => match m.active_lease(now) {
                Some(l) => Reply::json(200, lease_json(l, &version)),
                None => Reply::error(404, "lease not found"),
            },
            "DELETE" => {
                if m.active_lease(now).is_none() {
                    return Reply::error(404, "lease not found");
                }
                if let Err(e) = m.check_lease(c.nonce, now) {
                    return e;
                }
                m.lease = None;
                Reply::empty(200)
            }
            "POST" => {
                let body = match c.json_body() {
                    Ok(b) => b,
                    Err(e) => return e,
                };
                let ttl = c
                    .query
                    .get("ttl")
                    .and_then(|t| t.parse::<u64>().ok())
                    .or_else(|| body.get("ttl").and_then(Value::as_u64))
                    .filter(|t| *t > 0)
                    .unwrap_or(DEFAULT_LEASE_TTL_SECS);
                let description = body.get("description").and_then(Value::as_str).unwrap_or("").to_owned();
                let expires_at_ms = now + secs_to_ms(ttl);
                if m.active_lease(now).is_some() {
                    // Held: only its nonce may refresh it.
                    if let Err(e) = m.check_lease(c.nonce, now) {
                        return e;
                    }
                    if let Some(l) = m.lease.as_mut() {
                        l.expires_at_ms = expires_at_ms;
                    }
                } else {
                    m.lease = Some(LeaseState { nonce, owner: LEASE_OWNER.to_owned(), description, expires_at_ms });
                }
                match m.lease.as_ref() {
                    Some(l) => Reply::json(200, lease_json(l, &version)),
                    None => Reply::error(500, "lease vanished"),
                }
            }
            other => Reply::error(405, format!("method {other} not allowed")),
        }
    }

    fn wait(&mut self, app: &str, id: &str, c: &Call<'_>) -> Reply {
        let target = c.query.get("state").map_or("started", String::as_str).to_owned();
        if !matches!(target.as_str(), "started" | "stopped" | "destroyed" | "suspended") {
            return Reply::error(400, format!("invalid state {target:?}"));
        }
        let timeout = match c.query.get("timeout").map(|t| t.parse::<u64>()) {
            None => MAX_WAIT_SECS,
            Some(Ok(t)) if t <= MAX_WAIT_SECS => t,
            Some(_) => return Reply::error(400, "timeout must be a whole number of seconds, at most 60"),
        };
        let (b, now, m) = match self.find(app, id) {
            Ok(x) => x,
            Err(e) => return e,
        };
        let mut elapsed = 0;
        let reached = match c.query.get("instance_id").filter(|i| **i != m.instance_id) {
            Some(old) if !m.versions.iter().any(|v| v.version == *old) => {
                return Reply::error(400, format!("instance_id {old} not found"));
            }
            // An instance that was replaced is as good as stopped.
            Some(_) => target != "started",
            None => loop {
                if m.state == target {
                    break true;
                }
                if elapsed >= timeout || !m.launched {
                    break false;
                }
                m.observe(b, now + secs_to_ms(elapsed));
                elapsed += 1;
            },
        };
        let current = m.state.clone();
        let spent = if reached { elapsed } else { timeout };
        self.now_ms = self.now_ms.saturating_add(secs_to_ms(spent));
        if reached {
            Reply::json(200, json!({"ok": true}))
        } else {
            Reply::error(
                408,
                format!("deadline_exceeded: machine did not reach state {target:?} (current state {current:?})"),
            )
        }
    }

    /// `POST /apps/{app}/ip_assignments {"type", "region"?, "service_name"?}`: a new address,
    /// answered as `{ip, region, service_name, shared, egress, created_at}`. Every call allocates
    /// one more, so an allocation sent twice shows in [`FlyFake::ip_assignments`].
    fn assign_ip(&mut self, app: &str, c: &Call<'_>) -> Reply {
        let body = match c.json_body() {
            Ok(b) => b,
            Err(e) => return e,
        };
        if !self.apps.contains_key(app) {
            return app_not_found(app);
        }
        if let Some(status) = self.refuse_ips {
            return Reply::error(status, "unauthorized: this token may not manage IP addresses of the app");
        }
        let text = |key: &str| body.get(key).and_then(Value::as_str).filter(|v| !v.is_empty());
        let Some(kind) = text("type") else { return Reply::error(400, "type is required") };
        let (kind, region, service) = (
            kind.to_owned(),
            text("region").unwrap_or("global").to_owned(),
            text("service_name").unwrap_or("").to_owned(),
        );
        let Some(ip) = self.new_ip(&kind, &region, &service) else {
            return Reply::error(
                400,
                format!("invalid type {kind:?}: v4, v6, shared_v4, private_v6, egress_v4 or egress_v6"),
            );
        };
        let out = ip.json();
        match self.apps.get_mut(app) {
            Some(a) => {
                a.ips.push(ip);
                Reply::json(200, out)
            }
            None => app_not_found(app),
        }
    }

    fn set_secrets(&mut self, app: &str, c: &Call<'_>) -> Reply {
        let body = match c.json_body() {
            Ok(b) => b,
            Err(e) => return e,
        };
        let Some(a) = self.apps.get_mut(app) else { return app_not_found(app) };
        let Some(values) = body.get("values").and_then(Value::as_object) else {
            return Reply::error(400, "values is required: {\"values\": {NAME: value or null}}");
        };
        if let Some((name, _)) = values.iter().find(|(_, v)| !(v.is_string() || v.is_null())) {
            return Reply::error(400, format!("value of {name} must be a string or null"));
        }
        for (name, v) in values {
            match v.as_str() {
                Some(s) => {
                    a.secrets.insert(name.clone(), SecretString::from(s.to_owned()));
                }
                None => {
                    a.secrets.remove(name);
                }
            }
        }
        a.secrets_version += 1;
        Reply::json(200, json!({"secrets": a.secrets_json(), "version": a.secrets_version}))
    }
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
        Reply::json(status, json!({"error": msg.into()}))
    }
}

fn app_not_found(app: &str) -> Reply {
    Reply::error(404, format!("app {app} not found"))
}

struct Call<'a> {
    method: &'a str,
    path: &'a str,
    segs: Vec<&'a str>,
    query: BTreeMap<String, String>,
    nonce: Option<&'a str>,
    body: &'a [u8],
}

impl Call<'_> {
    /// The JSON body; an empty body reads as `{}`.
    fn json_body(&self) -> Result<Value, Reply> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Object(Map::new()));
        }
        match serde_json::from_slice::<Value>(self.body) {
            Ok(v @ Value::Object(_)) => Ok(v),
            Ok(_) => Err(Reply::error(400, "request body must be a JSON object")),
            Err(e) => Err(Reply::error(400, format!("invalid JSON body: {e}"))),
        }
    }
}

struct Handler(Arc<Mutex<State>>);

impl Respond for Handler {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut st = self.0.lock().unwrap_or_else(|e| e.into_inner());
        st.now_ms = st.now_ms.saturating_add(1);
        let method = req.method.as_str().to_ascii_uppercase();
        let path = req.url.path().to_owned();
        let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
        let nonce = header(NONCE_HEADER).map(str::trim).filter(|n| !n.is_empty());
        let auth = header("authorization").unwrap_or("");
        let authorization_ok = std::iter::once(TOKEN)
            .chain(st.tokens.iter().map(String::as_str))
            .any(|t| [format!("Bearer {t}"), format!("FlyV1 {t}")].iter().any(|a| a == auth.trim()));

        let mut delay: Duration = st
            .faults
            .iter()
            .filter(|f| matches!(f, Fault::Delay { .. }) && f.matches(&method, &path))
            .map(|f| match f {
                Fault::Delay { delay, .. } => *delay,
                _ => Duration::ZERO,
            })
            .sum();
        if let Some(Taken::Slow(d)) = take_fault(&mut st.faults, &method, &path, Phase::Slow) {
            delay += d;
        }
        let mut retry_after = None;
        let mut reset = false;
        let mut malformed = false;
        let mut cut = false;
        let mut echo = None;
        let reply = match take_fault(&mut st.faults, &method, &path, Phase::BeforeRouting) {
            Some(Taken::Status(status, ra)) => {
                retry_after = ra;
                Reply::error(status, fault_message(status))
            }
            Some(Taken::Echo(status, ra)) => {
                retry_after = ra;
                echo = Some(crate::echo::header(auth, &req.body));
                Reply::error(status, crate::echo::text(auth, &req.body))
            }
            Some(Taken::Reset) if st.proxied => {
                reset = true;
                Reply::empty(0)
            }
            Some(Taken::Reset) => Reply::error(502, "connection reset (the fake runs without its proxy)"),
            _ if !authorization_ok => Reply::error(401, "unauthorized"),
            _ => {
                let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
                let call = Call {
                    method: &method,
                    path: &path,
                    segs: match segs.split_first() {
                        Some((&"v1", rest)) => rest.to_vec(),
                        _ => vec!["-not-v1-"],
                    },
                    query: req.url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect(),
                    nonce,
                    body: &req.body,
                };
                match refuse_image(&mut st.faults, &call) {
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
            has_nonce: nonce.is_some(),
            authorization_ok,
            status: reply.status,
        });
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
    /// `Status` and `Reset`: the request is not applied.
    BeforeRouting,
    /// `LostResponse`, `ResetAfter`, `CutBody` and `Malformed`: the request was applied.
    AfterRouting,
    /// `Slow`.
    Slow,
}

/// A fault use taken.
enum Taken {
    Status(u16, Option<u64>),
    Echo(u16, Option<u64>),
    Reset,
    Cut,
    Malformed,
    Slow(Duration),
}

/// Consumes one use of the first matching fault of `phase`, in the order they were injected.
fn take_fault(faults: &mut Vec<Fault>, method: &str, path: &str, phase: Phase) -> Option<Taken> {
    let i = faults.iter().position(|f| {
        f.matches(method, path)
            && match f {
                Fault::Status { times, .. } | Fault::Echo { times, .. } | Fault::Reset { times, .. } => {
                    phase == Phase::BeforeRouting && *times > 0
                }
                Fault::LostResponse { times, .. }
                | Fault::ResetAfter { times, .. }
                | Fault::CutBody { times, .. }
                | Fault::Malformed { times, .. } => phase == Phase::AfterRouting && *times > 0,
                Fault::Slow { times, .. } => phase == Phase::Slow && *times > 0,
                Fault::Delay { .. } | Fault::RefuseImage { .. } => false,
            }
    })?;
    let out = match faults.get_mut(i)? {
        Fault::Status { status, times, retry_after, .. } => {
            *times -= 1;
            Taken::Status(*status, *retry_after)
        }
        Fault::Echo { status, times, retry_after, .. } => {
            *times -= 1;
            Taken::Echo(*status, *retry_after)
        }
        Fault::LostResponse { status, times, .. } => {
            *times -= 1;
            Taken::Status(*status, None)
        }
        Fault::Reset { times, .. } => {
            *times -= 1;
            Taken::Reset
        }
        Fault::ResetAfter { times, .. } => {
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
        Fault::Delay { .. } | Fault::RefuseImage { .. } => return None,
    };
    faults.retain(|f| {
        !matches!(
            f,
            Fault::Status { times: 0, .. }
                | Fault::Echo { times: 0, .. }
                | Fault::LostResponse { times: 0, .. }
                | Fault::Reset { times: 0, .. }
                | Fault::ResetAfter { times: 0, .. }
                | Fault::CutBody { times: 0, .. }
                | Fault::Malformed { times: 0, .. }
                | Fault::Slow { times: 0, .. }
        )
    });
    Some(out)
}

/// The status to refuse a machine create or update with, under a [`Fault::RefuseImage`].
fn refuse_image(faults: &mut [Fault], c: &Call<'_>) -> Option<u16> {
    let is_write =
        c.method == "POST" && matches!(c.segs.as_slice(), ["apps", _, "machines"] | ["apps", _, "machines", _]);
    if !is_write {
        return None;
    }
    let body: Value = serde_json::from_slice(c.body).ok()?;
    let image = body.pointer("/config/image").and_then(Value::as_str)?;
    let digest = parse_image(image).digest?;
    faults.iter_mut().find_map(|f| match f {
        Fault::RefuseImage { digest: d, after, status } if normalize_digest(d) == normalize_digest(&digest) => {
            if *after > 0 {
                *after -= 1;
                None
            } else {
                Some(*status)
            }
        }
        _ => None,
    })
}

fn fault_message(status: u16) -> &'static str {
    match status {
        401 => "unauthorized",
        404 => "not found",
        422 => "unprocessable entity",
        429 => "rate limit exceeded",
        500 => "internal server error",
        502 => "bad gateway",
        503 => "service unavailable",
        504 => "gateway timeout",
        _ => "injected fault",
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// `body.config` if it is an object with a non-empty `image`, else the 400 to answer.
fn valid_config(body: &Value) -> Result<Value, Reply> {
    let Some(config) = body.get("config").filter(|c| c.is_object()) else {
        return Err(Reply::error(400, "config is required"));
    };
    if config.get("image").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err(Reply::error(400, "invalid config: image is required"));
    }
    Ok(config.clone())
}

/// Names of the checks a machine reports: `config.checks` keys, then one
/// `servicecheck-NN-TYPE-PORT` per `config.services[].checks[]`.
fn check_names(config: &Value) -> Vec<String> {
    let mut names: Vec<String> =
        config.get("checks").and_then(Value::as_object).map(|o| o.keys().cloned().collect()).unwrap_or_default();
    for svc in config.get("services").and_then(Value::as_array).into_iter().flatten() {
        let port = svc.get("internal_port").and_then(Value::as_u64).unwrap_or(0);
        for (j, chk) in svc.get("checks").and_then(Value::as_array).into_iter().flatten().enumerate() {
            let kind = chk.get("type").and_then(Value::as_str).unwrap_or("tcp");
            names.push(format!("servicecheck-{j:02}-{kind}-{port}"));
        }
    }
    names
}

fn lease_json(l: &LeaseState, version: &str) -> Value {
    json!({
        "status": "success",
        "data": {
            "nonce": l.nonce,
            "expires_at": l.expires_at_ms.div_euclid(1000),
            "owner": l.owner,
            "description": l.description,
            "version": version,
        }
    })
}

fn exit_request(code: i64, requested_stop: bool, now: i64) -> Value {
    json!({
        "exit_event": {
            "exit_code": code,
            "guest_exit_code": code,
            "guest_signal": -1,
            "signal": -1,
            "oom_killed": false,
            "requested_stop": requested_stop,
            "restarting": false,
            "exited_at": rfc3339(now),
        }
    })
}

fn secret_digest(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes())).chars().take(16).collect()
}

fn secs_to_ms(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX / 1000).saturating_mul(1000)
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH).to_string()
}

fn normalize_digest(d: &str) -> &str {
    d.strip_prefix("sha256:").unwrap_or(d)
}

/// A 26-character Crockford base32 ULID from a millisecond timestamp and 80 bits of `rand`.
fn ulid(ms: i64, rand: u64) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let ms = u128::try_from(ms).unwrap_or(0) & ((1 << 48) - 1);
    let v = (ms << 80) | u128::from(rand);
    (0..26)
        .map(|i| {
            let idx = usize::try_from((v >> (125 - 5 * i)) & 31).unwrap_or(0);
            char::from(ALPHABET.get(idx).copied().unwrap_or(b'0'))
        })
        .collect()
}

struct ImageParts {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

/// Splits `[registry/]repository[:tag][@digest]` like docker does.
fn parse_image(image: &str) -> ImageParts {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d.to_owned())),
        None => (image, None),
    };
    let slash = name.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name.get(slash..).and_then(|last| last.rfind(':')) {
        Some(i) => (name.get(..slash + i).unwrap_or(name), name.get(slash + i + 1..).map(str::to_owned)),
        None => (name, None),
    };
    let (registry, repository) = match name.split_once('/') {
        Some((first, rest)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            (first.to_owned(), rest.to_owned())
        }
        _ => ("docker-hub-mirror.fly.io".to_owned(), name.to_owned()),
    };
    ImageParts { registry, repository, tag, digest }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_images() {
        let p = parse_image("ghcr.io/acme/api:3f2c1ab@sha256:abc");
        assert_eq!((p.registry.as_str(), p.repository.as_str()), ("ghcr.io", "acme/api"));
        assert_eq!((p.tag.as_deref(), p.digest.as_deref()), (Some("3f2c1ab"), Some("sha256:abc")));
        let p = parse_image("localhost:5000/api@sha256:def");
        assert_eq!((p.registry.as_str(), p.repository.as_str(), p.tag), ("localhost:5000", "api", None));
        let p = parse_image("nginx:1.27");
        assert_eq!((p.repository.as_str(), p.tag.as_deref(), p.digest), ("nginx", Some("1.27"), None));
    }

    #[test]
    fn ulids_are_26_chars_and_ordered() {
        let a = ulid(1_700_000_000_000, 1 << 48);
        let b = ulid(1_700_000_000_000, 2 << 48);
        let c = ulid(1_700_000_000_001, 0);
        assert_eq!(a.len(), 26);
        assert!(a < b && b < c, "{a} {b} {c}");
    }

    #[test]
    fn slow_start_then_healthy() {
        let steps: Vec<_> = (0..4).map(|k| view(Behaviour::SlowStart(2), k)).collect();
        assert_eq!(steps[0].0, "starting");
        assert_eq!(steps[2], ("started", Level::Warning, false));
        assert_eq!(steps[3], ("started", Level::Passing, false));
    }
}
