//! A stateful fake of Railway's public GraphQL API (`https://backboard.railway.com/graphql/v2`),
//! for tests.
//!
//! # Design
//!
//! [`RailwayFake::start`] starts a wiremock [`MockServer`] with a single catch-all [`Mock`] whose
//! [`Respond`] impl answers every request itself over one `Arc<Mutex<State>>`, like the
//! [Fly fake](crate::fly): a service created by one request is updated, deployed and listed by the
//! next ones. Clients reach it through the testkit's TCP proxy ([`RailwayFake::uri`]) so that a
//! [`Fault::Reset`] can drop a connection and a [`Fault::CutBody`] can stop a body short.
//!
//! # Routing
//!
//! Only `POST /graphql/v2` exists (anything else: 404), with a JSON body
//! `{"query", "operationName", "variables"}` as graphql_client sends it. The `query` document is
//! parsed (graphql-parser) and the operation named `operationName` is picked (none or an unknown
//! one: an error). Its variables are checked against shipit's SDL subset
//! (`crates/railway/graphql/schema.graphql`, plus a few real fields shipit must never use, see
//! `EXTRA_SDL`): every declared variable's type exists, required ones are present and non-null,
//! values have the right JSON kind, enum values exist, input objects hold only declared fields,
//! and no variable is sent that the operation does not declare. Then each root field's arguments
//! are resolved — literals, `$variables`, nested in input objects — and checked the same way
//! (input defaults such as `replace: false` applied), and the root fields run in order. Answers
//! are whole objects (every field the SDL type has), not pruned to the selection set.
//!
//! Like Railway, auth and validation problems answer HTTP 200 with
//! `{"data": null, "errors": [{"message", "path"?}]}`; a failing root field nulls `data` and stops
//! the operation (all root fields are non-null). Only the rate limit (429) and injected faults
//! use other statuses; a body that is not JSON or has no `query` answers 400.
//!
//! # Auth
//!
//! A `project-access-token` header carries a project token ([`RailwayFake::add_project_token`],
//! [`RailwayFake::create_project_token`]), bound to one project and one environment: it reads
//! that project and acts only in that environment; anything else is `"Not Authorized"`, and so is
//! `projects` (a project token lists nothing). `Authorization: Bearer` carries an account or
//! workspace token ([`API_TOKEN`], [`RailwayFake::add_api_token`]) that sees every project; with
//! it `projectToken` is `"Project Token not found"`. `me` is `"Not Authorized"` for both kinds.
//! When both headers are sent the project token wins, as in the railway CLI.
//!
//! # Time
//!
//! The fake has its own clock, started at the real time of [`RailwayFake::start`]: it moves 1 ms
//! per request, one second per observation of an [`Behaviour::Unhealthy`] deployment, and by
//! [`RailwayFake::advance`]. `createdAt`, health-check timeouts and the hourly rate-limit window
//! read it. Nothing sleeps but [`Fault::Slow`].
//!
//! # Scenarios
//!
//! `serviceInstanceDeployV2` (and every other way to start a deployment) creates an
//! `INITIALIZING` deployment from the instance's current source, settings and variables (all
//! snapshotted on the deployment). Each `deployment(id)` query is one observation that moves it one
//! step through the scenario of the [`Behaviour`] registered for its image digest
//! ([`RailwayFake::set_behaviour`], looked up at each step). Nothing else moves deployments. When
//! one goes live (`SUCCESS`) the previously live deployment of the instance becomes `REMOVED`
//! (rollbackable) and older ones still in progress become `REMOVED` too (never live, not
//! rollbackable); a `FAILED` or `CRASHED` one leaves the previous one serving.
//!
//! # Traps (as on Railway)
//!
//! - `serviceCreate` creates the service in every environment; with `source.image` it deploys at
//!   once, in every environment, with default settings.
//! - `serviceInstanceUpdate`: a field sent as `null` resets the setting to Railway's default; an
//!   update that omits `multiRegionConfig` makes the next deployment run 1 replica in the first
//!   (alphabetical) region of the config, and the instance keeps that.
//! - `variableCollectionUpsert` without `skipDeploys: true` deploys every affected service that
//!   has a source; `replace: true` drops the other variables; without `serviceId` the variables
//!   become the environment's shared variables.
//! - `serviceInstanceRedeploy` / `deploymentRedeploy` re-run the OLD image (and settings) of a
//!   deployment, not the instance's current source; `deploymentRollback` also restores the target
//!   deployment's variables onto the service instance.
//!
//! # Domains
//!
//! Each service instance keeps its public domains ([`RailwayFake::domains`]):
//! `serviceDomainCreate` adds a Railway-generated `<service>-<environment>-<4 hex>.up.railway.app`
//! (with its `targetPort`) every time it is called (it refuses no second one, so a test sees a
//! domain made twice);
//! [`RailwayFake::seed_domain`] adds one as the dashboard would (custom or not). The `domains`
//! query and `serviceInstance { domains }` list them. A refusal is a [`Fault::GraphqlError`] on
//! `ServiceDomainCreate`.
//!
//! # Faults and the request log
//!
//! Injected [`Fault`]s match an operation name filter and are checked before auth and routing,
//! as in the Fly fake; [`Fault::Echo`] quotes the request's `Authorization` and
//! `project-access-token` headers and body back ([`crate::echo`]). Every request is recorded
//! ([`RailwayFake::requests`]) with its operation name, status, first error message and token
//! kind — never its body, token or variable values.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use graphql_parser::query as q;
use graphql_parser::schema as sdl_ast;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::proxy::{CUT_HEADER, Proxy, RESET_HEADER};

/// The account/workspace token the fake accepts by default, as `Authorization: Bearer <API_TOKEN>`.
pub const API_TOKEN: &str = "fake-railway-api-token";
/// The header that carries a project token.
pub const PROJECT_TOKEN_HEADER: &str = "project-access-token";
/// The only path the fake answers (`POST`).
pub const GRAPHQL_PATH: &str = "/graphql/v2";
/// The regions `multiRegionConfig` accepts.
pub const REGIONS: [&str; 4] = ["us-west2", "us-east4-eqdc4a", "europe-west4-drams3a", "asia-southeast1-eqsg3a"];
/// The region of Railway's default `multiRegionConfig` (`{"us-west2": {"numReplicas": 1}}`).
pub const DEFAULT_REGION: &str = "us-west2";
/// The health-check window Railway uses when `healthcheckTimeout` is unset, in seconds.
pub const DEFAULT_HEALTHCHECK_TIMEOUT_SECS: i64 = 300;
/// The hourly request budget until [`RailwayFake::set_hourly_limit`] (Railway's Pro plan).
pub const DEFAULT_HOURLY_LIMIT: u32 = 10_000;

/// Railway's default restart policy.
const DEFAULT_RESTART_POLICY: &str = "ON_FAILURE";
/// Railway's default `restartPolicyMaxRetries`.
const DEFAULT_MAX_RETRIES: i64 = 10;
const HOUR_MS: i64 = 3_600_000;
/// Replicas one region may ask for.
const MAX_REPLICAS: u64 = 50;
/// How deep `${{...}}` references are followed when rendering.
const MAX_RENDER_DEPTH: u32 = 5;

/// The SDL subset shipit's client is generated from: the fake validates against it.
const SUBSET_SDL: &str = include_str!("../../railway/graphql/schema.graphql");
/// Real Railway fields outside the subset that the fake also answers, so tests can show what
/// they would do (and that shipit never sends them). Merged into the subset's types.
const EXTRA_SDL: &str = r"
type Query {
  me: User!
}
type User {
  id: ID!
  email: String
  name: String
}
type Mutation {
  serviceInstanceRedeploy(environmentId: String!, serviceId: String!): Boolean!
  deploymentRedeploy(id: String!, usePreviousImageTag: Boolean): Deployment!
  deploymentRollback(id: String!): Boolean!
}
input ServiceCreateInput {
  source: ServiceSourceInput
}
";

/// What a deployment of a given image digest does (see [`RailwayFake::set_behaviour`]).
///
/// "Observation n" is the n-th `deployment(id)` query of that deployment, counting from 1;
/// the deployment is `INITIALIZING` before the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Behaviour {
    /// Observation 1: `DEPLOYING`; observation 2: `SUCCESS` (live).
    #[default]
    Healthy,
    /// The health check never answers 200: `DEPLOYING`, each observation adding one second of
    /// fake time; the first observation after the deployment's `healthcheckTimeout` (default
    /// 300 s) has passed since it was created: `FAILED`.
    Unhealthy,
    /// Observation 1: `DEPLOYING`; observation 2: `CRASHED`.
    Crash,
    /// Observation 1: `FAILED` (a build or start failure).
    Fail,
    /// `NEEDS_APPROVAL` from observation 1 on, until cancelled.
    NeedsApproval,
}

/// A fault to inject into the fake's answers (see [`RailwayFake::inject`]).
///
/// `ops` filters on the request's `operationName` (`None`: any request, even one without an
/// operation name); `times` is how many matching requests get the fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Not applied: the client gets `status` (with `Retry-After: <secs>` when set) and a
    /// `{"errors": [{"message": ...}]}` body.
    Status {
        /// Operation names to match, or any.
        ops: Option<Vec<String>>,
        /// Status to answer with, e.g. 429 or 503.
        status: u16,
        /// Seconds to put in a `Retry-After` header.
        retry_after: Option<u64>,
        /// How many matching requests fail.
        times: u32,
    },
    /// Not applied: HTTP 200 with `{"data": null, "errors": [{"message": message}]}`.
    GraphqlError {
        /// Operation names to match, or any.
        ops: Option<Vec<String>>,
        /// The error message.
        message: String,
        /// How many matching requests fail.
        times: u32,
    },
    /// Not applied: the connection is reset (TCP RST) once the request has arrived. Recorded
    /// with status 0.
    Reset {
        /// Operation names to match, or any.
        ops: Option<Vec<String>>,
        /// How many matching requests are reset.
        times: u32,
    },
    /// Applied, then the connection is reset before any answer. Recorded with status 0.
    ResetAfter {
        /// Operation names to match, or any.
        ops: Option<Vec<String>>,
        /// How many matching requests are reset after being applied.
        times: u32,
    },
    /// Applied, and the answer's body stops half-way short of its `Content-Length`.
    CutBody {
        /// Operation names to match, or any.
        ops: Option<Vec<String>>,
        /// How many matching requests get a cut body.
        times: u32,
    },
    /// Applied, but answered 200 with a body that is not JSON (`{"data": {"trunc`).
    Malformed {
        /// Operation names to match, or any.
        ops: Option<Vec<String>>,
        /// How many matching requests get the malformed body.
        times: u32,
    },
    /// Applied, but the client gets `status` and a `{"errors": [...]}` body instead of the answer.
    LostResponse {
        /// Operation names to match, or any.
        ops: Option<Vec<String>>,
        /// Status the client sees, e.g. 502 or 504.
        status: u16,
        /// How many matching requests lose their answer.
        times: u32,
    },
    /// Applied, and answered after a real `delay` (longer than a client's timeout: an answer that
    /// was coming).
    Slow {
        /// Operation names to match, or any.
        ops: Option<Vec<String>>,
        /// How long to hold each matching answer.
        delay: Duration,
        /// How many matching requests are slow.
        times: u32,
    },
    /// Not applied: the client gets `status` and an error that quotes the request back — its
    /// `Authorization` and `project-access-token` headers and its body, as received and base64-
    /// and percent-encoded — in `errors[0].message` and in an
    /// [`ECHO_HEADER`](crate::echo::ECHO_HEADER) header. For tests that no credential or secret
    /// comes out of a client.
    Echo {
        /// Operation names to match, or any.
        ops: Option<Vec<String>>,
        /// Status to answer with (200 makes it a GraphQL error).
        status: u16,
        /// How many matching requests get the echo.
        times: u32,
    },
    /// `serviceInstanceDeployV2` of an instance whose source image has `digest` (with or without
    /// `sha256:`; for an image without digest, the whole image) answers a GraphQL error with
    /// `message` and changes nothing, until [`RailwayFake::clear_faults`].
    RefuseDeploy {
        /// The image digest whose deploys are refused.
        digest: String,
        /// The error message.
        message: String,
    },
}

impl Fault {
    /// The next `times` requests (of the operations `ops`, or any) get `429 Too Many Requests`
    /// with `Retry-After: retry_after_secs`.
    pub fn rate_limited(ops: Option<Vec<String>>, times: u32, retry_after_secs: u64) -> Self {
        Fault::Status { ops, status: 429, retry_after: Some(retry_after_secs), times }
    }

    /// The next `times` requests (of the operations `ops`, or any) get `503 Service Unavailable`.
    pub fn unavailable(ops: Option<Vec<String>>, times: u32) -> Self {
        Fault::Status { ops, status: 503, retry_after: None, times }
    }

    /// An operation-name filter for the given names: `Fault::only(&["ServiceInstanceDeployV2"])`.
    pub fn only(ops: &[&str]) -> Option<Vec<String>> {
        Some(ops.iter().map(|s| (*s).to_owned()).collect())
    }

    fn ops(&self) -> Option<&Option<Vec<String>>> {
        match self {
            Fault::Status { ops, .. }
            | Fault::GraphqlError { ops, .. }
            | Fault::Reset { ops, .. }
            | Fault::ResetAfter { ops, .. }
            | Fault::CutBody { ops, .. }
            | Fault::Malformed { ops, .. }
            | Fault::LostResponse { ops, .. }
            | Fault::Slow { ops, .. }
            | Fault::Echo { ops, .. } => Some(ops),
            Fault::RefuseDeploy { .. } => None,
        }
    }

    fn times(&self) -> u32 {
        match self {
            Fault::Status { times, .. }
            | Fault::GraphqlError { times, .. }
            | Fault::Reset { times, .. }
            | Fault::ResetAfter { times, .. }
            | Fault::CutBody { times, .. }
            | Fault::Malformed { times, .. }
            | Fault::LostResponse { times, .. }
            | Fault::Slow { times, .. }
            | Fault::Echo { times, .. } => *times,
            Fault::RefuseDeploy { .. } => 0,
        }
    }

    fn times_mut(&mut self) -> Option<&mut u32> {
        match self {
            Fault::Status { times, .. }
            | Fault::GraphqlError { times, .. }
            | Fault::Reset { times, .. }
            | Fault::ResetAfter { times, .. }
            | Fault::CutBody { times, .. }
            | Fault::Malformed { times, .. }
            | Fault::LostResponse { times, .. }
            | Fault::Slow { times, .. }
            | Fault::Echo { times, .. } => Some(times),
            Fault::RefuseDeploy { .. } => None,
        }
    }

    fn phase(&self) -> Option<Phase> {
        match self {
            Fault::Status { .. } | Fault::GraphqlError { .. } | Fault::Reset { .. } | Fault::Echo { .. } => {
                Some(Phase::BeforeRouting)
            }
            Fault::ResetAfter { .. } | Fault::CutBody { .. } | Fault::Malformed { .. } | Fault::LostResponse { .. } => {
                Some(Phase::AfterRouting)
            }
            Fault::Slow { .. } => Some(Phase::Slow),
            Fault::RefuseDeploy { .. } => None,
        }
    }

    fn matches(&self, op: Option<&str>) -> bool {
        match self.ops() {
            Some(None) => true,
            Some(Some(list)) => op.is_some_and(|o| list.iter().any(|n| n == o)),
            None => false,
        }
    }
}

/// Which credential a request was recognised with (see [`RecordedRequest::token_kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A known project token in `project-access-token`.
    Project,
    /// A known account/workspace token in `Authorization: Bearer`.
    Api,
    /// No token, or one the fake does not know.
    None,
}

/// One request the fake received (see [`RailwayFake::requests`]). Bodies, tokens and variable
/// values are never recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// The body's `operationName`, if it had one.
    pub operation: Option<String>,
    /// Status the fake answered with; 0 when the connection was reset instead.
    pub status: u16,
    /// The first `errors[].message` of the answer (for a [`Fault::Echo`], a placeholder: the echo
    /// quotes credentials).
    pub graphql_error: Option<String>,
    /// Which credential the request was recognised with.
    pub token_kind: TokenKind,
}

/// A service instance (one service in one environment) as the fake holds it, for assertions
/// (see [`RailwayFake::instance`]). Unset settings are `None`; the others hold Railway's defaults
/// until changed.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeInstance {
    /// The instance id.
    pub id: String,
    /// The service id.
    pub service_id: String,
    /// The environment id.
    pub environment_id: String,
    /// `source.image`, as sent.
    pub image: Option<String>,
    /// `startCommand`.
    pub start_command: Option<String>,
    /// `healthcheckPath`.
    pub healthcheck_path: Option<String>,
    /// `healthcheckTimeout` in seconds (`None`: Railway's 300).
    pub healthcheck_timeout: Option<i64>,
    /// `restartPolicyType`: `ON_FAILURE` (default), `ALWAYS` or `NEVER`.
    pub restart_policy_type: String,
    /// `restartPolicyMaxRetries` (default 10).
    pub restart_policy_max_retries: i64,
    /// `sleepApplication` (default false).
    pub sleep_application: bool,
    /// `multiRegionConfig`: `{"<region>": {"numReplicas": N}}`.
    pub multi_region_config: Value,
    /// `railwayConfigFile`.
    pub railway_config_file: Option<String>,
    /// `serviceInstanceLimits` vCPUs, when set.
    pub vcpus: Option<f64>,
    /// `serviceInstanceLimits` memory in GB, when set.
    pub memory_gb: Option<f64>,
    /// The service's variables in this environment (a value may be null).
    pub variables: BTreeMap<String, Option<String>>,
    /// Whether the last `serviceInstanceUpdate` omitted `multiRegionConfig`, so the next
    /// deployment will run 1 replica.
    pub replicas_reset_pending: bool,
}

/// A public domain of a service instance, for assertions (see [`RailwayFake::domains`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeDomain {
    /// Its id.
    pub id: String,
    /// The host name (`api-staging-1a2b.up.railway.app` for one Railway generated).
    pub domain: String,
    /// A custom domain (`customDomainCreate`), not one Railway generated.
    pub custom: bool,
    /// The port it routes to, when one was given.
    pub target_port: Option<i64>,
}

impl FakeDomain {
    fn json(&self, env_id: &str, service_id: &str) -> Value {
        json!({
            "id": self.id,
            "domain": self.domain,
            "environmentId": env_id,
            "serviceId": service_id,
            "targetPort": self.target_port,
        })
    }
}

/// A deployment as the fake holds it, for assertions (see [`RailwayFake::deployments`]).
#[derive(Debug, Clone, PartialEq)]
pub struct FakeDeployment {
    /// The deployment id.
    pub id: String,
    /// Its status, e.g. `"SUCCESS"`.
    pub status: String,
    /// The image it runs, as it was set when it was created.
    pub image: Option<String>,
    /// The `sha256:...` digest in `image`, if it has one.
    pub digest: Option<String>,
    /// Whether it was live once and is not live now.
    pub can_rollback: bool,
    /// Replicas its settings ask for (the sum of `numReplicas` over its `multiRegionConfig`).
    pub replicas: u32,
    /// RUNNING instances now (as many as `replicas` while live, else 0).
    pub instances: usize,
    /// The `multiRegionConfig` it runs with.
    pub multi_region_config: Value,
    /// The `commitSha` it was deployed with.
    pub commit_sha: Option<String>,
    /// The service variables snapshotted when it was created.
    pub variables: BTreeMap<String, Option<String>>,
    /// Its `meta`, as answered.
    pub meta: Value,
    /// `createdAt`, RFC 3339.
    pub created_at: String,
}

/// The Railway GraphQL API fake: a running server plus its state. See the [module docs](self).
pub struct RailwayFake {
    server: MockServer,
    state: Arc<Mutex<State>>,
    /// `None` only when the proxy could not start: then clients talk to wiremock directly and a
    /// [`Fault::Reset`] is answered `502` instead.
    proxy: Option<Proxy>,
}

impl std::fmt::Debug for RailwayFake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RailwayFake").field("uri", &self.uri()).finish_non_exhaustive()
    }
}

impl RailwayFake {
    /// Starts the fake on a free port of 127.0.0.1, with no projects and [`API_TOKEN`] accepted.
    pub async fn start() -> RailwayFake {
        let server = MockServer::start().await;
        let proxy = Proxy::start(*server.address()).ok();
        let state = Arc::new(Mutex::new(State::new()));
        state.lock().unwrap_or_else(|e| e.into_inner()).proxied = proxy.is_some();
        Mock::given(any()).respond_with(Handler(Arc::clone(&state))).mount(&server).await;
        RailwayFake { server, state, proxy }
    }

    /// Base URL, without a path, e.g. `http://127.0.0.1:4567`; the API is at
    /// `uri() + "/graphql/v2"` ([`RailwayFake::endpoint`]).
    pub fn uri(&self) -> String {
        match &self.proxy {
            Some(p) => format!("http://{}", p.addr()),
            None => self.server.uri(),
        }
    }

    /// The GraphQL endpoint: [`RailwayFake::uri`] + [`GRAPHQL_PATH`].
    pub fn endpoint(&self) -> String {
        format!("{}{GRAPHQL_PATH}", self.uri())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    // -- tokens ---------------------------------------------------------------------------------

    /// Accepts `token` as an account/workspace token too (`Authorization: Bearer <token>`).
    pub fn add_api_token(&self, token: &str) {
        self.lock().api_tokens.insert(token.to_owned());
    }

    /// Accepts `token` as a project token (`project-access-token: <token>`) scoped to one project
    /// and one environment. The ids are not checked.
    pub fn add_project_token(&self, token: &str, project_id: &str, environment_id: &str) {
        self.lock().project_tokens.insert(token.to_owned(), (project_id.to_owned(), environment_id.to_owned()));
    }

    /// Makes a new project token (`fake-railway-project-token-N`) scoped to one project and one
    /// environment, and returns it.
    pub fn create_project_token(&self, project_id: &str, environment_id: &str) -> String {
        let mut st = self.lock();
        let token = format!("fake-railway-project-token-{}", st.next_seq());
        st.project_tokens.insert(token.clone(), (project_id.to_owned(), environment_id.to_owned()));
        token
    }

    // -- seeding --------------------------------------------------------------------------------

    /// Creates a project with no environments and no services; returns its id.
    pub fn seed_project(&self, name: &str) -> String {
        let mut st = self.lock();
        let id = st.uuid("project");
        st.projects.push(ProjectState {
            id: id.clone(),
            name: name.to_owned(),
            envs: Vec::new(),
            services: Vec::new(),
            instances: BTreeMap::new(),
        });
        id
    }

    /// Creates an environment in a project (with a default, source-less instance of every
    /// existing service); returns its id, or an empty string if there is no such project.
    pub fn seed_environment(&self, project_id: &str, name: &str) -> String {
        let mut st = self.lock();
        let id = st.uuid("environment");
        let ids: Vec<String> =
            (0..st.project(project_id).map_or(0, |p| p.services.len())).map(|_| st.uuid("instance")).collect();
        let Some(p) = st.project_mut(project_id) else { return String::new() };
        p.envs.push(EnvState { id: id.clone(), name: name.to_owned(), shared: BTreeMap::new() });
        let services: Vec<String> = p.services.iter().map(|s| s.id.clone()).collect();
        for (service_id, instance_id) in services.into_iter().zip(ids) {
            p.instances.insert((id.clone(), service_id), InstanceState::new(instance_id));
        }
        id
    }

    /// Creates a service with no source in every environment of a project (nothing deploys);
    /// returns its id, or an empty string if there is no such project.
    pub fn seed_service(&self, project_id: &str, name: &str) -> String {
        self.lock().add_service(project_id, name, None).unwrap_or_default()
    }

    /// Creates a service running `image` (e.g. a database, "Postgres") in every environment of a
    /// project: each instance has that source and one `SUCCESS` deployment, long settled. Returns
    /// its id, or an empty string if there is no such project.
    pub fn seed_database(&self, project_id: &str, name: &str, image: &str) -> String {
        let mut st = self.lock();
        let Some(service_id) = st.add_service(project_id, name, Some(image)) else { return String::new() };
        let envs: Vec<String> =
            st.project(project_id).map(|p| p.envs.iter().map(|e| e.id.clone()).collect()).unwrap_or_default();
        for env_id in envs {
            let Some(settings) = st.instance(project_id, &env_id, &service_id).map(|i| i.settings.clone()) else {
                continue;
            };
            let i = st.push_deployment(project_id, &env_id, &service_id, settings, BTreeMap::new(), None);
            st.go_live(i);
        }
        service_id
    }

    /// Sets a service variable in one environment, as if set in the dashboard (no deployment).
    /// Returns false if there is no such service instance.
    pub fn seed_variable(
        &self,
        project_id: &str,
        env_id: &str,
        service_id: &str,
        name: &str,
        value: Option<&str>,
    ) -> bool {
        let mut st = self.lock();
        let Some(i) = st.instance_mut(project_id, env_id, service_id) else { return false };
        i.variables.insert(name.to_owned(), value.map(str::to_owned));
        true
    }

    /// Gives a service instance a public domain, as `serviceDomainCreate` (`custom` false: a
    /// `*.up.railway.app` name) or `customDomainCreate` (`custom` true) would. False when the
    /// instance does not exist.
    pub fn seed_domain(&self, project_id: &str, env_id: &str, service_id: &str, domain: &str, custom: bool) -> bool {
        let mut st = self.lock();
        let id = st.uuid("domain");
        let Some(i) = st.instance_mut(project_id, env_id, service_id) else { return false };
        i.domains.push(FakeDomain { id, domain: domain.to_owned(), custom, target_port: None });
        true
    }

    // -- behaviour, faults, limits, time -------------------------------------------------------

    /// Sets what deployments of images with this digest do. `digest` may be given with or
    /// without its `sha256:` prefix; for an image without a digest, pass the whole image string.
    /// Applies to deployments already in progress from their next observation on.
    pub fn set_behaviour(&self, digest: &str, behaviour: Behaviour) {
        self.lock().behaviours.insert(normalize_digest(digest).to_owned(), behaviour);
    }

    /// Injects a fault; see [`Fault`].
    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// Uses of injected faults not met yet: the `times` left of every counted fault
    /// ([`Fault::RefuseDeploy`] has none).
    pub fn faults_left(&self) -> u32 {
        self.lock().faults.iter().map(Fault::times).sum()
    }

    /// Removes every injected fault, spent or not.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Sets the hourly request budget (default [`DEFAULT_HOURLY_LIMIT`]); past it, requests get
    /// 429 until the hour of fake time that started with the window's first request is over.
    pub fn set_hourly_limit(&self, limit: u32) {
        self.lock().hourly_limit = limit;
    }

    /// Moves the fake's clock forward.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        let mut st = self.lock();
        st.now_ms = st.now_ms.saturating_add(ms);
    }

    // -- inspection -----------------------------------------------------------------------------

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// How many requests the fake received (rate-limited, faulted and reset ones included).
    pub fn request_count(&self) -> u64 {
        self.lock().request_count
    }

    /// The operation names of the requests received, in order (requests without one skipped).
    pub fn operations(&self) -> Vec<String> {
        self.lock().requests.iter().filter_map(|r| r.operation.clone()).collect()
    }

    /// The id of the project with that name (the first one, if several).
    pub fn project_id(&self, name: &str) -> Option<String> {
        self.lock().projects.iter().find(|p| p.name == name).map(|p| p.id.clone())
    }

    /// The id of a project's environment with that name.
    pub fn environment_id(&self, project_id: &str, name: &str) -> Option<String> {
        let st = self.lock();
        st.project(project_id)?.envs.iter().find(|e| e.name == name).map(|e| e.id.clone())
    }

    /// The id of a project's service with that name (exact, else case-insensitive).
    pub fn service_id(&self, project_id: &str, name: &str) -> Option<String> {
        let st = self.lock();
        let p = st.project(project_id)?;
        p.services
            .iter()
            .find(|s| s.name == name)
            .or_else(|| p.services.iter().find(|s| s.name.eq_ignore_ascii_case(name)))
            .map(|s| s.id.clone())
    }

    /// Names of a project's services, in creation order.
    pub fn service_names(&self, project_id: &str) -> Vec<String> {
        self.lock().project(project_id).map(|p| p.services.iter().map(|s| s.name.clone()).collect()).unwrap_or_default()
    }

    /// A service instance with all its settings, limits and variables.
    pub fn instance(&self, project_id: &str, env_id: &str, service_id: &str) -> Option<FakeInstance> {
        let st = self.lock();
        let i = st.instance(project_id, env_id, service_id)?;
        let s = &i.settings;
        Some(FakeInstance {
            id: i.id.clone(),
            service_id: service_id.to_owned(),
            environment_id: env_id.to_owned(),
            image: s.image.clone(),
            start_command: s.start_command.clone(),
            healthcheck_path: s.healthcheck_path.clone(),
            healthcheck_timeout: s.healthcheck_timeout,
            restart_policy_type: s.restart_policy_type.clone(),
            restart_policy_max_retries: s.restart_policy_max_retries,
            sleep_application: s.sleep_application,
            multi_region_config: s.regions_json(),
            railway_config_file: s.railway_config_file.clone(),
            vcpus: i.vcpus,
            memory_gb: i.memory_gb,
            variables: i.variables.clone(),
            replicas_reset_pending: i.reset_replicas,
        })
    }

    /// A service instance's public domains (Railway's and custom), in creation order.
    pub fn domains(&self, project_id: &str, env_id: &str, service_id: &str) -> Vec<FakeDomain> {
        self.lock().instance(project_id, env_id, service_id).map(|i| i.domains.clone()).unwrap_or_default()
    }

    /// A service variable: `None` if it is not set, `Some(None)` if it is set to null.
    pub fn variable(&self, project_id: &str, env_id: &str, service_id: &str, name: &str) -> Option<Option<String>> {
        self.lock().instance(project_id, env_id, service_id)?.variables.get(name).cloned()
    }

    /// An environment's shared variables.
    pub fn shared_variables(&self, project_id: &str, env_id: &str) -> BTreeMap<String, Option<String>> {
        let st = self.lock();
        st.project(project_id).and_then(|p| p.env(env_id)).map(|e| e.shared.clone()).unwrap_or_default()
    }

    /// A service's deployments in one environment, newest first.
    pub fn deployments(&self, project_id: &str, env_id: &str, service_id: &str) -> Vec<FakeDeployment> {
        let st = self.lock();
        st.deployments
            .iter()
            .rev()
            .filter(|d| d.project_id == project_id && d.env_id == env_id && d.service_id == service_id)
            .map(DeploymentState::snapshot)
            .collect()
    }

    /// The deployment of a service instance that is live now (`SUCCESS` or `SLEEPING`), if any.
    pub fn live_deployment(&self, project_id: &str, env_id: &str, service_id: &str) -> Option<FakeDeployment> {
        self.deployments(project_id, env_id, service_id).into_iter().find(|d| is_live(&d.status))
    }

    /// One deployment by id.
    pub fn deployment(&self, id: &str) -> Option<FakeDeployment> {
        self.lock().deployments.iter().find(|d| d.id == id).map(DeploymentState::snapshot)
    }
}

// ---------------------------------------------------------------------------------------------
// State

struct State {
    now_ms: i64,
    seq: u64,
    projects: Vec<ProjectState>,
    /// Every deployment, in creation order.
    deployments: Vec<DeploymentState>,
    behaviours: BTreeMap<String, Behaviour>,
    faults: Vec<Fault>,
    requests: Vec<RecordedRequest>,
    request_count: u64,
    proxied: bool,
    api_tokens: BTreeSet<String>,
    /// Project token -> (project id, environment id).
    project_tokens: BTreeMap<String, (String, String)>,
    hourly_limit: u32,
    window_start_ms: Option<i64>,
    window_used: u32,
    sdl: Arc<Result<Sdl, String>>,
}

struct ProjectState {
    id: String,
    name: String,
    envs: Vec<EnvState>,
    services: Vec<ServiceState>,
    /// (environment id, service id) -> instance.
    instances: BTreeMap<(String, String), InstanceState>,
}

impl ProjectState {
    fn env(&self, id: &str) -> Option<&EnvState> {
        self.envs.iter().find(|e| e.id == id)
    }

    fn service(&self, id: &str) -> Option<&ServiceState> {
        self.services.iter().find(|s| s.id == id)
    }

    fn json(&self) -> Value {
        let envs: Vec<Value> = self.envs.iter().map(|e| json!({"node": {"id": e.id, "name": e.name}})).collect();
        let services: Vec<Value> =
            self.services.iter().map(|s| json!({"node": {"id": s.id, "name": s.name, "projectId": self.id}})).collect();
        json!({
            "id": self.id,
            "name": self.name,
            "environments": {"edges": envs},
            "services": {"edges": services},
        })
    }
}

struct EnvState {
    id: String,
    name: String,
    shared: BTreeMap<String, Option<String>>,
}

struct ServiceState {
    id: String,
    name: String,
}

/// A service instance's deploy settings (also snapshotted on each deployment).
#[derive(Clone, Debug, PartialEq)]
struct Settings {
    image: Option<String>,
    start_command: Option<String>,
    healthcheck_path: Option<String>,
    healthcheck_timeout: Option<i64>,
    restart_policy_type: String,
    restart_policy_max_retries: i64,
    sleep_application: bool,
    /// Region -> replicas.
    regions: BTreeMap<String, u32>,
    railway_config_file: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            image: None,
            start_command: None,
            healthcheck_path: None,
            healthcheck_timeout: None,
            restart_policy_type: DEFAULT_RESTART_POLICY.to_owned(),
            restart_policy_max_retries: DEFAULT_MAX_RETRIES,
            sleep_application: false,
            regions: default_regions(),
            railway_config_file: None,
        }
    }
}

impl Settings {
    fn regions_json(&self) -> Value {
        Value::Object(self.regions.iter().map(|(r, n)| (r.clone(), json!({"numReplicas": n}))).collect())
    }

    fn replicas(&self) -> u32 {
        self.regions.values().fold(0, |a, n| a.saturating_add(*n))
    }

    /// The first region (alphabetically): what the legacy `region` field shows.
    fn first_region(&self) -> Option<&str> {
        self.regions.keys().next().map(String::as_str)
    }
}

fn default_regions() -> BTreeMap<String, u32> {
    BTreeMap::from([(DEFAULT_REGION.to_owned(), 1)])
}

struct InstanceState {
    id: String,
    settings: Settings,
    vcpus: Option<f64>,
    memory_gb: Option<f64>,
    variables: BTreeMap<String, Option<String>>,
    /// The last update omitted `multiRegionConfig`: the next deployment runs 1 replica.
    reset_replicas: bool,
    /// Public domains, in creation order, as `domains { serviceDomains customDomains }` lists them.
    domains: Vec<FakeDomain>,
}

impl InstanceState {
    fn new(id: String) -> Self {
        InstanceState {
            id,
            settings: Settings::default(),
            vcpus: None,
            memory_gb: None,
            variables: BTreeMap::new(),
            reset_replicas: false,
            domains: Vec::new(),
        }
    }

    fn limits_json(&self) -> Value {
        let mut m = Map::new();
        if let Some(v) = self.vcpus {
            m.insert("vCPUs".to_owned(), json!(v));
        }
        if let Some(v) = self.memory_gb {
            m.insert("memoryGB".to_owned(), json!(v));
        }
        Value::Object(m)
    }
}

const INITIALIZING: &str = "INITIALIZING";
const DEPLOYING: &str = "DEPLOYING";
const SUCCESS: &str = "SUCCESS";
const FAILED: &str = "FAILED";
const CRASHED: &str = "CRASHED";
const REMOVED: &str = "REMOVED";
const NEEDS_APPROVAL: &str = "NEEDS_APPROVAL";

fn in_progress(status: &str) -> bool {
    matches!(status, "INITIALIZING" | "BUILDING" | "DEPLOYING" | "QUEUED" | "WAITING" | "NEEDS_APPROVAL")
}

fn is_live(status: &str) -> bool {
    matches!(status, "SUCCESS" | "SLEEPING")
}

struct DeploymentState {
    id: String,
    project_id: String,
    env_id: String,
    service_id: String,
    status: &'static str,
    created_ms: i64,
    observed: u32,
    was_live: bool,
    settings: Settings,
    commit: Option<String>,
    variables: BTreeMap<String, Option<String>>,
    /// Ids of its RUNNING instances while live.
    instance_ids: Vec<String>,
}

impl DeploymentState {
    fn can_rollback(&self) -> bool {
        self.was_live && !is_live(self.status)
    }

    fn digest(&self) -> Option<String> {
        self.settings.image.as_deref().and_then(image_digest)
    }

    fn meta(&self) -> Value {
        let s = &self.settings;
        let mut m = Map::new();
        if let Some(image) = &s.image {
            m.insert("image".to_owned(), json!(image));
        }
        if let Some(d) = self.digest() {
            m.insert("imageDigest".to_owned(), json!(d));
        }
        if let Some(c) = &self.commit {
            m.insert("commitHash".to_owned(), json!(c));
        }
        let mut deploy = Map::new();
        if let Some(v) = &s.start_command {
            deploy.insert("startCommand".to_owned(), json!(v));
        }
        if let Some(v) = &s.healthcheck_path {
            deploy.insert("healthcheckPath".to_owned(), json!(v));
        }
        if let Some(v) = s.healthcheck_timeout {
            deploy.insert("healthcheckTimeout".to_owned(), json!(v));
        }
        deploy.insert("restartPolicyType".to_owned(), json!(s.restart_policy_type));
        deploy.insert("restartPolicyMaxRetries".to_owned(), json!(s.restart_policy_max_retries));
        deploy.insert("sleepApplication".to_owned(), json!(s.sleep_application));
        deploy.insert("multiRegionConfig".to_owned(), s.regions_json());
        m.insert("serviceManifest".to_owned(), json!({"source": {"image": s.image}, "deploy": Value::Object(deploy)}));
        Value::Object(m)
    }

    fn json(&self) -> Value {
        let instances: Vec<Value> = self.instance_ids.iter().map(|id| json!({"id": id, "status": "RUNNING"})).collect();
        json!({
            "id": self.id,
            "status": self.status,
            "createdAt": rfc3339(self.created_ms),
            "canRollback": self.can_rollback(),
            "meta": self.meta(),
            "instances": instances,
            "projectId": self.project_id,
            "environmentId": self.env_id,
            "serviceId": self.service_id,
        })
    }

    fn snapshot(&self) -> FakeDeployment {
        FakeDeployment {
            id: self.id.clone(),
            status: self.status.to_owned(),
            image: self.settings.image.clone(),
            digest: self.digest(),
            can_rollback: self.can_rollback(),
            replicas: self.settings.replicas(),
            instances: self.instance_ids.len(),
            multi_region_config: self.settings.regions_json(),
            commit_sha: self.commit.clone(),
            variables: self.variables.clone(),
            meta: self.meta(),
            created_at: rfc3339(self.created_ms),
        }
    }
}

/// Who is asking.
enum Auth {
    /// A project token's scope.
    Project { project_id: String, env_id: String },
    /// An account/workspace token.
    Api,
    /// No token, or an unknown one.
    Invalid,
}

impl Auth {
    fn kind(&self) -> TokenKind {
        match self {
            Auth::Project { .. } => TokenKind::Project,
            Auth::Api => TokenKind::Api,
            Auth::Invalid => TokenKind::None,
        }
    }

    /// Whether the caller may act in `project_id` (and in `env_id`, when given).
    fn allow(&self, project_id: &str, env_id: Option<&str>) -> Result<(), String> {
        match self {
            Auth::Api => Ok(()),
            Auth::Project { project_id: p, env_id: e } if p == project_id && env_id.is_none_or(|x| x == e) => Ok(()),
            _ => Err(NOT_AUTHORIZED.to_owned()),
        }
    }
}

const NOT_AUTHORIZED: &str = "Not Authorized";

type Args = Map<String, Value>;
type Resolved = Result<Value, String>;

impl State {
    fn new() -> Self {
        State {
            now_ms: jiff::Timestamp::now().as_second().saturating_mul(1000),
            seq: 0,
            projects: Vec::new(),
            deployments: Vec::new(),
            behaviours: BTreeMap::new(),
            faults: Vec::new(),
            requests: Vec::new(),
            request_count: 0,
            proxied: false,
            api_tokens: BTreeSet::from([API_TOKEN.to_owned()]),
            project_tokens: BTreeMap::new(),
            hourly_limit: DEFAULT_HOURLY_LIMIT,
            window_start_ms: None,
            window_used: 0,
            sdl: Arc::new(Sdl::load()),
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// A uuid-looking id, deterministic from a counter.
    fn uuid(&mut self, kind: &str) -> String {
        let seq = self.next_seq();
        let h = hex::encode(Sha256::digest(format!("{kind}/{seq}").as_bytes()));
        let part = |a: usize, b: usize| h.get(a..b).unwrap_or("0");
        format!("{}-{}-4{}-8{}-{}", part(0, 8), part(8, 12), part(13, 16), part(17, 20), part(20, 32))
    }

    fn project(&self, id: &str) -> Option<&ProjectState> {
        self.projects.iter().find(|p| p.id == id)
    }

    fn project_mut(&mut self, id: &str) -> Option<&mut ProjectState> {
        self.projects.iter_mut().find(|p| p.id == id)
    }

    fn instance(&self, project_id: &str, env_id: &str, service_id: &str) -> Option<&InstanceState> {
        self.project(project_id)?.instances.get(&(env_id.to_owned(), service_id.to_owned()))
    }

    fn instance_mut(&mut self, project_id: &str, env_id: &str, service_id: &str) -> Option<&mut InstanceState> {
        self.project_mut(project_id)?.instances.get_mut(&(env_id.to_owned(), service_id.to_owned()))
    }

    /// The project a service belongs to.
    fn service_project(&self, service_id: &str) -> Option<String> {
        self.projects.iter().find(|p| p.service(service_id).is_some()).map(|p| p.id.clone())
    }

    /// Adds a service with an instance in every environment; None if there is no such project.
    fn add_service(&mut self, project_id: &str, name: &str, image: Option<&str>) -> Option<String> {
        let n_envs = self.project(project_id)?.envs.len();
        let id = self.uuid("service");
        let instance_ids: Vec<String> = (0..n_envs).map(|_| self.uuid("instance")).collect();
        let p = self.project_mut(project_id)?;
        p.services.push(ServiceState { id: id.clone(), name: name.to_owned() });
        let envs: Vec<String> = p.envs.iter().map(|e| e.id.clone()).collect();
        for (env_id, instance_id) in envs.into_iter().zip(instance_ids) {
            let mut i = InstanceState::new(instance_id);
            i.settings.image = image.map(str::to_owned);
            p.instances.insert((env_id, id.clone()), i);
        }
        Some(id)
    }

    fn behaviour_of(&self, d: &DeploymentState) -> Behaviour {
        let key = d.digest().or_else(|| d.settings.image.clone()).unwrap_or_default();
        self.behaviours.get(normalize_digest(&key)).copied().unwrap_or_default()
    }

    /// Appends a new `INITIALIZING` deployment; returns its index.
    fn push_deployment(
        &mut self,
        project_id: &str,
        env_id: &str,
        service_id: &str,
        settings: Settings,
        variables: BTreeMap<String, Option<String>>,
        commit: Option<String>,
    ) -> usize {
        let id = self.uuid("deployment");
        self.deployments.push(DeploymentState {
            id,
            project_id: project_id.to_owned(),
            env_id: env_id.to_owned(),
            service_id: service_id.to_owned(),
            status: INITIALIZING,
            created_ms: self.now_ms,
            observed: 0,
            was_live: false,
            settings,
            commit,
            variables,
            instance_ids: Vec::new(),
        });
        self.deployments.len() - 1
    }

    /// Deploys the instance's current source and settings (serviceInstanceDeployV2 and every
    /// deploy a mutation triggers); returns the deployment's index.
    fn deploy_current(
        &mut self,
        project_id: &str,
        env_id: &str,
        service_id: &str,
        commit: Option<String>,
    ) -> Result<usize, String> {
        let Some(inst) = self.instance_mut(project_id, env_id, service_id) else {
            return Err("ServiceInstance not found".to_owned());
        };
        if inst.settings.image.is_none() {
            return Err("Service has no source to deploy".to_owned());
        }
        if inst.reset_replicas {
            // The trap: an update without multiRegionConfig, then a deploy: 1 replica.
            let first = inst.settings.first_region().unwrap_or(DEFAULT_REGION).to_owned();
            inst.settings.regions = BTreeMap::from([(first, 1)]);
            inst.reset_replicas = false;
        }
        let (settings, vars) = (inst.settings.clone(), inst.variables.clone());
        Ok(self.push_deployment(project_id, env_id, service_id, settings, vars, commit))
    }

    /// Makes deployment `i` live, superseding the live one and older ones in progress.
    fn go_live(&mut self, i: usize) {
        let Some(d) = self.deployments.get(i) else { return };
        let (env, svc) = (d.env_id.clone(), d.service_id.clone());
        let n = d.settings.replicas();
        let ids: Vec<String> = (0..n).map(|_| self.uuid("deployment-instance")).collect();
        for (j, other) in self.deployments.iter_mut().enumerate() {
            if j == i || other.env_id != env || other.service_id != svc {
                continue;
            }
            if is_live(other.status) || (j < i && in_progress(other.status)) {
                other.status = REMOVED;
                other.instance_ids.clear();
            }
        }
        if let Some(d) = self.deployments.get_mut(i) {
            d.status = SUCCESS;
            d.was_live = true;
            d.instance_ids = ids;
        }
    }

    /// One observation of deployment `i`: one step of its scenario.
    fn observe(&mut self, i: usize) {
        let Some(d) = self.deployments.get(i) else { return };
        if !in_progress(d.status) {
            return;
        }
        let b = self.behaviour_of(d);
        let k = d.observed.saturating_add(1);
        let timeout_ms =
            d.settings.healthcheck_timeout.unwrap_or(DEFAULT_HEALTHCHECK_TIMEOUT_SECS).saturating_mul(1000);
        let created = d.created_ms;
        let next = match b {
            Behaviour::Healthy if k >= 2 => SUCCESS,
            Behaviour::Healthy => DEPLOYING,
            Behaviour::Crash if k >= 2 => CRASHED,
            Behaviour::Crash => DEPLOYING,
            Behaviour::Fail => FAILED,
            Behaviour::NeedsApproval => NEEDS_APPROVAL,
            Behaviour::Unhealthy => {
                self.now_ms = self.now_ms.saturating_add(1000);
                if self.now_ms.saturating_sub(created) > timeout_ms { FAILED } else { DEPLOYING }
            }
        };
        if let Some(d) = self.deployments.get_mut(i) {
            d.observed = k;
        }
        if next == SUCCESS {
            self.go_live(i);
        } else if let Some(d) = self.deployments.get_mut(i) {
            d.status = next;
        }
    }

    fn deployment_index(&self, id: &str) -> Option<usize> {
        self.deployments.iter().position(|d| d.id == id)
    }

    /// The deployment with that id, if the caller may see it.
    fn find_deployment(&self, id: &str, auth: &Auth) -> Result<usize, String> {
        if let Auth::Invalid = auth {
            return Err(NOT_AUTHORIZED.to_owned());
        }
        let i = self.deployment_index(id).ok_or_else(|| "Deployment not found".to_owned())?;
        let d = self.deployments.get(i).ok_or_else(|| "Deployment not found".to_owned())?;
        auth.allow(&d.project_id, Some(&d.env_id))?;
        Ok(i)
    }

    /// The project of a service instance the caller may act on.
    fn locate_instance(&self, auth: &Auth, env_id: &str, service_id: &str) -> Result<String, String> {
        match auth {
            Auth::Invalid => return Err(NOT_AUTHORIZED.to_owned()),
            Auth::Project { env_id: e, .. } if e != env_id => return Err(NOT_AUTHORIZED.to_owned()),
            _ => {}
        }
        let not_found = || "ServiceInstance not found".to_owned();
        let project_id = self.service_project(service_id).ok_or_else(not_found)?;
        auth.allow(&project_id, Some(env_id))?;
        self.instance(&project_id, env_id, service_id).ok_or_else(not_found)?;
        Ok(project_id)
    }

    /// A project and environment the caller may act in.
    fn locate_env(&self, auth: &Auth, project_id: &str, env_id: &str) -> Result<(), String> {
        if let Auth::Invalid = auth {
            return Err(NOT_AUTHORIZED.to_owned());
        }
        auth.allow(project_id, Some(env_id))?;
        let p = self.project(project_id).ok_or_else(|| "Project not found".to_owned())?;
        p.env(env_id).ok_or_else(|| "Environment not found".to_owned())?;
        Ok(())
    }

    fn refused_deploy(&self, image: Option<&str>) -> Option<String> {
        let image = image?;
        let key = image_digest(image).unwrap_or_else(|| image.to_owned());
        self.faults.iter().find_map(|f| match f {
            Fault::RefuseDeploy { digest, message } if normalize_digest(digest) == normalize_digest(&key) => {
                Some(message.clone())
            }
            _ => None,
        })
    }

    // -- HTTP -----------------------------------------------------------------------------------

    /// Takes one request against the hourly budget; `Err(retry_after_secs)` past it.
    fn rate_limit(&mut self) -> Result<(), u64> {
        let now = self.now_ms;
        let start = match self.window_start_ms {
            Some(s) if now < s.saturating_add(HOUR_MS) => s,
            _ => {
                self.window_start_ms = Some(now);
                self.window_used = 0;
                now
            }
        };
        if self.window_used >= self.hourly_limit {
            let left_ms = start.saturating_add(HOUR_MS).saturating_sub(now);
            return Err(u64::try_from(left_ms.saturating_add(999) / 1000).unwrap_or(1).max(1));
        }
        self.window_used += 1;
        Ok(())
    }

    /// `(limit, remaining, reset epoch seconds)` for the headers.
    fn rate_headers(&self) -> (u32, u32, i64) {
        let (remaining, reset_ms) = match self.window_start_ms {
            Some(s) if self.now_ms < s.saturating_add(HOUR_MS) => {
                (self.hourly_limit.saturating_sub(self.window_used), s.saturating_add(HOUR_MS))
            }
            _ => (self.hourly_limit, self.now_ms.saturating_add(HOUR_MS)),
        };
        (self.hourly_limit, remaining, reset_ms.div_euclid(1000))
    }

    fn auth(&self, project_token: Option<&str>, authorization: &str) -> Auth {
        if let Some(t) = project_token {
            return match self.project_tokens.get(t) {
                Some((p, e)) => Auth::Project { project_id: p.clone(), env_id: e.clone() },
                None => Auth::Invalid,
            };
        }
        let bearer = authorization.trim();
        let token = bearer.strip_prefix("Bearer ").or_else(|| bearer.strip_prefix("bearer ")).map(str::trim);
        match token {
            Some(t) if self.api_tokens.contains(t) => Auth::Api,
            _ => Auth::Invalid,
        }
    }

    /// Parses, validates and runs one GraphQL request.
    fn graphql(&mut self, body: Option<&Value>, auth: &Auth) -> Reply {
        let Some(body) = body.and_then(Value::as_object) else {
            return Reply::http_error(400, "POST body must be a JSON object");
        };
        let Some(query) = body.get("query").and_then(Value::as_str) else {
            return Reply::http_error(400, "Must provide query string.");
        };
        let op_name = body.get("operationName").and_then(Value::as_str);
        let empty = Map::new();
        let vars = match body.get("variables") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(m)) => m,
            Some(_) => return Reply::gql_errors(vec![error("Variables must be provided as a JSON object.", None)]),
        };
        let sdl = Arc::clone(&self.sdl);
        let sdl = match sdl.as_ref() {
            Ok(s) => s,
            Err(e) => return Reply::http_error(500, format!("the fake's SDL does not parse: {e}")),
        };
        let doc = match q::parse_query::<String>(query) {
            Ok(d) => d,
            Err(e) => return Reply::gql_errors(vec![error(&format!("Syntax Error: {e}"), None)]),
        };
        let (root, fields) = match plan(sdl, &doc, op_name, vars) {
            Ok(p) => p,
            Err(errs) => return Reply::gql_errors(errs.iter().map(|m| error(m, None)).collect()),
        };
        let mut data = Map::new();
        for f in fields {
            let out = if f.name == "__typename" { Ok(json!(root)) } else { self.resolve(&f.name, &f.args, auth) };
            match out {
                Ok(v) => {
                    data.insert(f.key, v);
                }
                Err(msg) => return Reply::gql_errors(vec![error(&msg, Some(&f.key))]),
            }
        }
        Reply::json(200, json!({"data": Value::Object(data)}))
    }

    // -- resolvers ------------------------------------------------------------------------------

    fn resolve(&mut self, field: &str, a: &Args, auth: &Auth) -> Resolved {
        match field {
            "projectToken" => self.q_project_token(auth),
            "project" => self.q_project(a, auth),
            "projects" => self.q_projects(a, auth),
            "serviceInstance" => self.q_service_instance(a, auth),
            "serviceInstanceLimits" => self.q_service_instance_limits(a, auth),
            "variables" => self.q_variables(a, auth),
            "deployment" => self.q_deployment(a, auth),
            "deployments" => self.q_deployments(a, auth),
            "domains" => self.q_domains(a, auth),
            "me" => Err(NOT_AUTHORIZED.to_owned()),
            "serviceCreate" => self.m_service_create(a, auth),
            "serviceInstanceUpdate" => self.m_service_instance_update(a, auth),
            "serviceInstanceLimitsUpdate" => self.m_limits_update(a, auth),
            "serviceInstanceDeployV2" => self.m_deploy_v2(a, auth),
            "deploymentCancel" => self.m_deployment_cancel(a, auth),
            "variableCollectionUpsert" => self.m_variable_upsert(a, auth),
            "variableDelete" => self.m_variable_delete(a, auth),
            "serviceDomainCreate" => self.m_service_domain_create(a, auth),
            "serviceInstanceRedeploy" => self.m_instance_redeploy(a, auth),
            "deploymentRedeploy" => self.m_deployment_redeploy(a, auth),
            "deploymentRollback" => self.m_deployment_rollback(a, auth),
            other => Err(format!("The fake does not implement \"{other}\".")),
        }
    }

    fn q_project_token(&self, auth: &Auth) -> Resolved {
        match auth {
            Auth::Project { project_id, env_id } => {
                let p = self.project(project_id).ok_or_else(|| "Project not found".to_owned())?;
                let e = p.env(env_id).ok_or_else(|| "Environment not found".to_owned())?;
                Ok(json!({
                    "projectId": p.id,
                    "environmentId": e.id,
                    "project": p.json(),
                    "environment": {"id": e.id, "name": e.name},
                }))
            }
            Auth::Api => Err("Project Token not found".to_owned()),
            Auth::Invalid => Err(NOT_AUTHORIZED.to_owned()),
        }
    }

    fn q_project(&self, a: &Args, auth: &Auth) -> Resolved {
        let id = str_arg(a, "id")?;
        if let Auth::Invalid = auth {
            return Err(NOT_AUTHORIZED.to_owned());
        }
        auth.allow(id, None)?;
        self.project(id).map(ProjectState::json).ok_or_else(|| "Project not found".to_owned())
    }

    fn q_projects(&self, a: &Args, auth: &Auth) -> Resolved {
        if !matches!(auth, Auth::Api) {
            return Err(NOT_AUTHORIZED.to_owned());
        }
        let all: Vec<&ProjectState> = self.projects.iter().collect();
        page(&all, a, |p| p.id.clone(), |p| p.json())
    }

    fn q_service_instance(&self, a: &Args, auth: &Auth) -> Resolved {
        let (env_id, service_id) = (str_arg(a, "environmentId")?, str_arg(a, "serviceId")?);
        let project_id = self.locate_instance(auth, env_id, service_id)?;
        let p = self.project(&project_id).ok_or_else(|| "Project not found".to_owned())?;
        let i = self.instance(&project_id, env_id, service_id).ok_or_else(|| "ServiceInstance not found".to_owned())?;
        let mine: Vec<&DeploymentState> =
            self.deployments.iter().rev().filter(|d| d.env_id == env_id && d.service_id == service_id).collect();
        let active: Vec<Value> = mine.iter().filter(|d| is_live(d.status)).map(|d| d.json()).collect();
        let latest = mine.first().map_or(Value::Null, |d| d.json());
        let s = &i.settings;
        Ok(json!({
            "id": i.id,
            "serviceId": service_id,
            "environmentId": env_id,
            "serviceName": p.service(service_id).map(|s| s.name.clone()),
            "source": {"image": s.image, "repo": null},
            "startCommand": s.start_command,
            "healthcheckPath": s.healthcheck_path,
            "healthcheckTimeout": s.healthcheck_timeout,
            "restartPolicyType": s.restart_policy_type,
            "restartPolicyMaxRetries": s.restart_policy_max_retries,
            "sleepApplication": s.sleep_application,
            "numReplicas": s.replicas(),
            "region": s.first_region(),
            "railwayConfigFile": s.railway_config_file,
            "activeDeployments": active,
            "latestDeployment": latest,
            "domains": domains_json(&i.domains, env_id, service_id),
        }))
    }

    fn q_service_instance_limits(&self, a: &Args, auth: &Auth) -> Resolved {
        let (env_id, service_id) = (str_arg(a, "environmentId")?, str_arg(a, "serviceId")?);
        let project_id = self.locate_instance(auth, env_id, service_id)?;
        let i = self.instance(&project_id, env_id, service_id).ok_or_else(|| "ServiceInstance not found".to_owned())?;
        Ok(i.limits_json())
    }

    fn q_variables(&self, a: &Args, auth: &Auth) -> Resolved {
        let (project_id, env_id) = (str_arg(a, "projectId")?, str_arg(a, "environmentId")?);
        let service_id = opt_str(a, "serviceId");
        let unrendered = a.get("unrendered").and_then(Value::as_bool).unwrap_or(false);
        self.locate_env(auth, project_id, env_id)?;
        let p = self.project(project_id).ok_or_else(|| "Project not found".to_owned())?;
        let vars = match service_id {
            Some(s) => {
                let key = (env_id.to_owned(), s.to_owned());
                &p.instances.get(&key).ok_or_else(|| "ServiceInstance not found".to_owned())?.variables
            }
            None => &p.env(env_id).ok_or_else(|| "Environment not found".to_owned())?.shared,
        };
        let out: Map<String, Value> = vars
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Some(s) if !unrendered => json!(render(p, env_id, service_id, s, 0)),
                    other => json!(other),
                };
                (k.clone(), v)
            })
            .collect();
        Ok(Value::Object(out))
    }

    fn q_deployment(&mut self, a: &Args, auth: &Auth) -> Resolved {
        let i = self.find_deployment(str_arg(a, "id")?, auth)?;
        self.observe(i);
        self.deployments.get(i).map(DeploymentState::json).ok_or_else(|| "Deployment not found".to_owned())
    }

    fn q_deployments(&self, a: &Args, auth: &Auth) -> Resolved {
        let input = a.get("input").and_then(Value::as_object).cloned().unwrap_or_default();
        let mut project = opt_str(&input, "projectId").map(str::to_owned);
        let mut env = opt_str(&input, "environmentId").map(str::to_owned);
        let service = opt_str(&input, "serviceId");
        match auth {
            Auth::Invalid => return Err(NOT_AUTHORIZED.to_owned()),
            Auth::Project { project_id, env_id } => {
                auth.allow(project.as_deref().unwrap_or(project_id), Some(env.as_deref().unwrap_or(env_id)))?;
                project = Some(project_id.clone());
                env = Some(env_id.clone());
            }
            Auth::Api => {}
        }
        let list: Vec<&DeploymentState> = self
            .deployments
            .iter()
            .rev()
            .filter(|d| project.as_deref().is_none_or(|p| d.project_id == p))
            .filter(|d| env.as_deref().is_none_or(|e| d.env_id == e))
            .filter(|d| service.is_none_or(|s| d.service_id == s))
            .collect();
        page(&list, a, |d| d.id.clone(), |d| d.json())
    }

    fn q_domains(&self, a: &Args, auth: &Auth) -> Resolved {
        let (env_id, service_id) = (str_arg(a, "environmentId")?, str_arg(a, "serviceId")?);
        let project_id = self.locate_instance(auth, env_id, service_id)?;
        if project_id != str_arg(a, "projectId")? {
            return Err("Project not found".to_owned());
        }
        let i = self.instance(&project_id, env_id, service_id).ok_or_else(|| "ServiceInstance not found".to_owned())?;
        Ok(domains_json(&i.domains, env_id, service_id))
    }

    /// `serviceDomainCreate`: a Railway-generated `<service>-<environment>-<4 hex>.up.railway.app`,
    /// as Railway names them. Like Railway's API it does not refuse a second one: the caller
    /// looks first (`domains`).
    fn m_service_domain_create(&mut self, a: &Args, auth: &Auth) -> Resolved {
        let input = obj_arg(a, "input")?;
        let (env_id, service_id) = (str_arg(input, "environmentId")?, str_arg(input, "serviceId")?);
        let target_port = input.get("targetPort").and_then(Value::as_i64);
        if target_port.is_some_and(|p| !(1..=65_535).contains(&p)) {
            return Err("Invalid target port".to_owned());
        }
        let project_id = self.locate_instance(auth, env_id, service_id)?;
        let p = self.project(&project_id).ok_or_else(|| "Project not found".to_owned())?;
        let label = |name: &str| -> String {
            let lower: String =
                name.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
            lower.split('-').filter(|s| !s.is_empty()).collect::<Vec<_>>().join("-")
        };
        let service = label(&p.service(service_id).map(|s| s.name.clone()).unwrap_or_default());
        let env = label(&p.env(env_id).map(|e| e.name.clone()).unwrap_or_default());
        let id = self.uuid("domain");
        let hash = hex::encode(Sha256::digest(id.as_bytes()));
        let domain = format!("{service}-{env}-{}.up.railway.app", hash.get(..4).unwrap_or("0000"));
        let d = FakeDomain { id, domain, custom: false, target_port };
        let out = d.json(env_id, service_id);
        let i =
            self.instance_mut(&project_id, env_id, service_id).ok_or_else(|| "ServiceInstance not found".to_owned())?;
        i.domains.push(d);
        Ok(out)
    }

    fn m_service_create(&mut self, a: &Args, auth: &Auth) -> Resolved {
        let input = obj_arg(a, "input")?;
        let project_id = str_arg(input, "projectId")?;
        let env_id = opt_str(input, "environmentId");
        if let Auth::Invalid = auth {
            return Err(NOT_AUTHORIZED.to_owned());
        }
        auth.allow(project_id, env_id)?;
        let p = self.project(project_id).ok_or_else(|| "Project not found".to_owned())?;
        if let Some(e) = env_id {
            p.env(e).ok_or_else(|| "Environment not found".to_owned())?;
        }
        let name = match opt_str(input, "name") {
            Some(n) => n.to_owned(),
            None => format!("service-{}", p.services.len() + 1),
        };
        if p.services.iter().any(|s| s.name.eq_ignore_ascii_case(&name)) {
            return Err("Service name already exists".to_owned());
        }
        let image = input.get("source").and_then(|s| s.get("image")).and_then(Value::as_str).map(str::to_owned);
        let envs: Vec<String> = p.envs.iter().map(|e| e.id.clone()).collect();
        let id = self.add_service(project_id, &name, image.as_deref()).ok_or_else(|| "Project not found".to_owned())?;
        if image.is_some() {
            // The trap: a service created with a source deploys at once, everywhere.
            for e in envs {
                self.deploy_current(project_id, &e, &id, None)?;
            }
        }
        Ok(json!({"id": id, "name": name, "projectId": project_id}))
    }

    fn m_service_instance_update(&mut self, a: &Args, auth: &Auth) -> Resolved {
        let service_id = str_arg(a, "serviceId")?;
        let env_id = opt_str(a, "environmentId").ok_or_else(|| "environmentId is required".to_owned())?;
        let input = obj_arg(a, "input")?;
        let project_id = self.locate_instance(auth, env_id, service_id)?;
        let inst =
            self.instance(&project_id, env_id, service_id).ok_or_else(|| "ServiceInstance not found".to_owned())?;
        let mut s = inst.settings.clone();
        for (k, v) in input {
            match (k.as_str(), v) {
                ("source", Value::Null) => s.image = None,
                ("source", src) => {
                    if let Some(img) = src.get("image") {
                        s.image = img.as_str().map(str::to_owned);
                    }
                }
                ("startCommand", v) => s.start_command = v.as_str().map(str::to_owned),
                ("healthcheckPath", v) => s.healthcheck_path = v.as_str().map(str::to_owned),
                ("healthcheckTimeout", v) => s.healthcheck_timeout = v.as_i64(),
                ("restartPolicyType", v) => {
                    s.restart_policy_type = v.as_str().unwrap_or(DEFAULT_RESTART_POLICY).to_owned();
                }
                ("restartPolicyMaxRetries", v) => {
                    s.restart_policy_max_retries = v.as_i64().unwrap_or(DEFAULT_MAX_RETRIES)
                }
                ("sleepApplication", v) => s.sleep_application = v.as_bool().unwrap_or(false),
                ("multiRegionConfig", Value::Null) => s.regions = default_regions(),
                ("multiRegionConfig", v) => s.regions = parse_regions(v)?,
                ("railwayConfigFile", v) => {
                    s.railway_config_file = v.as_str().filter(|f| !f.is_empty()).map(str::to_owned);
                }
                // Validation refuses fields the SDL does not declare.
                _ => {}
            }
        }
        let omitted_regions = !input.contains_key("multiRegionConfig");
        let inst =
            self.instance_mut(&project_id, env_id, service_id).ok_or_else(|| "ServiceInstance not found".to_owned())?;
        inst.settings = s;
        inst.reset_replicas = omitted_regions;
        Ok(json!(true))
    }

    fn m_limits_update(&mut self, a: &Args, auth: &Auth) -> Resolved {
        let input = obj_arg(a, "input")?;
        let (service_id, env_id) = (str_arg(input, "serviceId")?, str_arg(input, "environmentId")?);
        let project_id = self.locate_instance(auth, env_id, service_id)?;
        for k in ["vCPUs", "memoryGB"] {
            if input.get(k).and_then(Value::as_f64).is_some_and(|v| v <= 0.0) {
                return Err(format!("{k} must be positive"));
            }
        }
        let inst =
            self.instance_mut(&project_id, env_id, service_id).ok_or_else(|| "ServiceInstance not found".to_owned())?;
        if let Some(v) = input.get("vCPUs") {
            inst.vcpus = v.as_f64();
        }
        if let Some(v) = input.get("memoryGB") {
            inst.memory_gb = v.as_f64();
        }
        Ok(json!(true))
    }

    fn m_deploy_v2(&mut self, a: &Args, auth: &Auth) -> Resolved {
        let (service_id, env_id) = (str_arg(a, "serviceId")?, str_arg(a, "environmentId")?);
        let commit = opt_str(a, "commitSha").map(str::to_owned);
        let project_id = self.locate_instance(auth, env_id, service_id)?;
        let image = self.instance(&project_id, env_id, service_id).and_then(|i| i.settings.image.clone());
        if let Some(message) = self.refused_deploy(image.as_deref()) {
            return Err(message);
        }
        let i = self.deploy_current(&project_id, env_id, service_id, commit)?;
        self.deployments.get(i).map(|d| json!(d.id)).ok_or_else(|| "Deployment not found".to_owned())
    }

    fn m_deployment_cancel(&mut self, a: &Args, auth: &Auth) -> Resolved {
        let i = self.find_deployment(str_arg(a, "id")?, auth)?;
        if let Some(d) = self.deployments.get_mut(i).filter(|d| in_progress(d.status)) {
            d.status = REMOVED;
        }
        Ok(json!(true))
    }

    /// The target of a variable mutation: the instance's variables or the environment's shared
    /// ones.
    fn variable_target(
        &mut self,
        project_id: &str,
        env_id: &str,
        service_id: Option<&str>,
    ) -> Result<&mut BTreeMap<String, Option<String>>, String> {
        let p = self.project_mut(project_id).ok_or_else(|| "Project not found".to_owned())?;
        match service_id {
            Some(s) => p
                .instances
                .get_mut(&(env_id.to_owned(), s.to_owned()))
                .map(|i| &mut i.variables)
                .ok_or_else(|| "ServiceInstance not found".to_owned()),
            None => p
                .envs
                .iter_mut()
                .find(|e| e.id == env_id)
                .map(|e| &mut e.shared)
                .ok_or_else(|| "Environment not found".to_owned()),
        }
    }

    fn m_variable_upsert(&mut self, a: &Args, auth: &Auth) -> Resolved {
        let input = obj_arg(a, "input")?;
        let (project_id, env_id) = (str_arg(input, "projectId")?, str_arg(input, "environmentId")?);
        let service_id = opt_str(input, "serviceId");
        let replace = input.get("replace").and_then(Value::as_bool).unwrap_or(false);
        let skip_deploys = input.get("skipDeploys").and_then(Value::as_bool).unwrap_or(false);
        self.locate_env(auth, project_id, env_id)?;
        let Some(Value::Object(given)) = input.get("variables") else {
            return Err("variables must be an object of names to values".to_owned());
        };
        let mut values = BTreeMap::new();
        for (k, v) in given {
            match v {
                Value::String(s) => values.insert(k.clone(), Some(s.clone())),
                Value::Null => values.insert(k.clone(), None),
                _ => return Err(format!("Variable {k}: value must be a string or null")),
            };
        }
        let target = self.variable_target(project_id, env_id, service_id)?;
        if replace {
            target.clear();
        }
        target.extend(values);
        if !skip_deploys {
            // The trap: every upsert without skipDeploys deploys what it touched.
            let affected: Vec<String> = match service_id {
                Some(s) => vec![s.to_owned()],
                None => self
                    .project(project_id)
                    .map(|p| p.services.iter().map(|s| s.id.clone()).collect())
                    .unwrap_or_default(),
            };
            for s in affected {
                if self.instance(project_id, env_id, &s).is_some_and(|i| i.settings.image.is_some()) {
                    self.deploy_current(project_id, env_id, &s, None)?;
                }
            }
        }
        Ok(json!(true))
    }

    fn m_variable_delete(&mut self, a: &Args, auth: &Auth) -> Resolved {
        let input = obj_arg(a, "input")?;
        let (project_id, env_id) = (str_arg(input, "projectId")?, str_arg(input, "environmentId")?);
        let (service_id, name) = (opt_str(input, "serviceId"), str_arg(input, "name")?);
        self.locate_env(auth, project_id, env_id)?;
        self.variable_target(project_id, env_id, service_id)?.remove(name);
        Ok(json!(true))
    }

    /// A new deployment that re-runs deployment `i`'s image and settings with the instance's
    /// current variables.
    fn redeploy(&mut self, i: usize) -> Result<usize, String> {
        let d = self.deployments.get(i).ok_or_else(|| "Deployment not found".to_owned())?;
        let (p, e, s) = (d.project_id.clone(), d.env_id.clone(), d.service_id.clone());
        let (settings, commit) = (d.settings.clone(), d.commit.clone());
        let vars = self.instance(&p, &e, &s).map(|i| i.variables.clone()).unwrap_or_default();
        Ok(self.push_deployment(&p, &e, &s, settings, vars, commit))
    }

    fn m_instance_redeploy(&mut self, a: &Args, auth: &Auth) -> Resolved {
        let (service_id, env_id) = (str_arg(a, "serviceId")?, str_arg(a, "environmentId")?);
        self.locate_instance(auth, env_id, service_id)?;
        let latest = self
            .deployments
            .iter()
            .rposition(|d| d.env_id == env_id && d.service_id == service_id)
            .ok_or_else(|| "No deployment found to redeploy".to_owned())?;
        self.redeploy(latest)?;
        Ok(json!(true))
    }

    fn m_deployment_redeploy(&mut self, a: &Args, auth: &Auth) -> Resolved {
        let i = self.find_deployment(str_arg(a, "id")?, auth)?;
        let new = self.redeploy(i)?;
        self.deployments.get(new).map(DeploymentState::json).ok_or_else(|| "Deployment not found".to_owned())
    }

    fn m_deployment_rollback(&mut self, a: &Args, auth: &Auth) -> Resolved {
        let i = self.find_deployment(str_arg(a, "id")?, auth)?;
        let d = self.deployments.get(i).ok_or_else(|| "Deployment not found".to_owned())?;
        if !d.can_rollback() {
            return Err("Deployment cannot be rolled back".to_owned());
        }
        let (p, e, s) = (d.project_id.clone(), d.env_id.clone(), d.service_id.clone());
        let (settings, vars, commit) = (d.settings.clone(), d.variables.clone(), d.commit.clone());
        if let Some(inst) = self.instance_mut(&p, &e, &s) {
            // The rollback trap: the old variables come back onto the service.
            inst.variables = vars.clone();
        }
        self.push_deployment(&p, &e, &s, settings, vars, commit);
        Ok(json!(true))
    }
}

/// `{"<region>": {"numReplicas": N}}` with Railway regions only; a null region is left out.
fn parse_regions(v: &Value) -> Result<BTreeMap<String, u32>, String> {
    let Value::Object(m) = v else {
        return Err("Invalid multiRegionConfig: expected an object of regions".to_owned());
    };
    let mut out = BTreeMap::new();
    for (region, cfg) in m {
        if !REGIONS.contains(&region.as_str()) {
            return Err(format!("Invalid region {region}"));
        }
        if cfg.is_null() {
            continue;
        }
        let n = cfg
            .get("numReplicas")
            .and_then(Value::as_u64)
            .filter(|n| *n <= MAX_REPLICAS)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| {
                format!("Invalid multiRegionConfig: {region}.numReplicas must be an integer from 0 to {MAX_REPLICAS}")
            })?;
        out.insert(region.clone(), n);
    }
    Ok(out)
}

/// Renders `${{Service.VAR}}`, `${{shared.VAR}}` and `${{VAR}}` (same service) references from
/// the environment's variables; an unknown reference renders as the empty string.
fn render(p: &ProjectState, env_id: &str, service_id: Option<&str>, value: &str, depth: u32) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${{") {
        out.push_str(rest.get(..start).unwrap_or_default());
        let after = rest.get(start + 3..).unwrap_or_default();
        let Some(end) = after.find("}}") else {
            out.push_str(rest.get(start..).unwrap_or_default());
            return out;
        };
        let reference = after.get(..end).unwrap_or_default().trim();
        rest = after.get(end + 2..).unwrap_or_default();
        let (svc, found) = match reference.split_once('.') {
            Some(("shared", name)) => (None, p.env(env_id).and_then(|e| e.shared.get(name.trim()))),
            Some((ns, name)) => {
                let s = p
                    .services
                    .iter()
                    .find(|s| s.name == ns.trim())
                    .or_else(|| p.services.iter().find(|s| s.name.eq_ignore_ascii_case(ns.trim())));
                let v = s
                    .and_then(|s| p.instances.get(&(env_id.to_owned(), s.id.clone())))
                    .and_then(|i| i.variables.get(name.trim()));
                (s.map(|s| s.id.as_str()), v)
            }
            None => {
                let v = match service_id {
                    Some(s) => {
                        p.instances.get(&(env_id.to_owned(), s.to_owned())).and_then(|i| i.variables.get(reference))
                    }
                    None => p.env(env_id).and_then(|e| e.shared.get(reference)),
                };
                (service_id, v)
            }
        };
        if let Some(Some(v)) = found {
            if depth < MAX_RENDER_DEPTH {
                out.push_str(&render(p, env_id, svc, v, depth + 1));
            } else {
                out.push_str(v);
            }
        }
    }
    out.push_str(rest);
    out
}

/// `AllDomains`: Railway's and custom domains, each in creation order.
fn domains_json(domains: &[FakeDomain], env_id: &str, service_id: &str) -> Value {
    let of = |custom: bool| -> Vec<Value> {
        domains.iter().filter(|d| d.custom == custom).map(|d| d.json(env_id, service_id)).collect()
    };
    json!({"serviceDomains": of(false), "customDomains": of(true)})
}

/// A connection page of `items` by `first` / `after` (a cursor is the node's id).
fn page<T>(items: &[T], a: &Args, cursor: impl Fn(&T) -> String, node: impl Fn(&T) -> Value) -> Resolved {
    let start = match opt_str(a, "after") {
        Some(c) => {
            items.iter().position(|i| cursor(i) == c).map(|i| i + 1).ok_or_else(|| "Invalid cursor".to_owned())?
        }
        None => 0,
    };
    let first = match a.get("first").and_then(Value::as_i64) {
        Some(n) if n < 0 => return Err("first must be non-negative".to_owned()),
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        None => usize::MAX,
    };
    let rest = items.get(start..).unwrap_or_default();
    let shown = rest.get(..first.min(rest.len())).unwrap_or_default();
    let edges: Vec<Value> = shown.iter().map(|i| json!({"cursor": cursor(i), "node": node(i)})).collect();
    Ok(json!({
        "edges": edges,
        "pageInfo": {
            "hasNextPage": rest.len() > shown.len(),
            "hasPreviousPage": start > 0,
            "startCursor": shown.first().map(&cursor),
            "endCursor": shown.last().map(&cursor),
        },
    }))
}

fn str_arg<'a>(a: &'a Args, k: &str) -> Result<&'a str, String> {
    opt_str(a, k).ok_or_else(|| format!("Argument \"{k}\" is required"))
}

fn opt_str<'a>(a: &'a Args, k: &str) -> Option<&'a str> {
    a.get(k).and_then(Value::as_str)
}

fn obj_arg<'a>(a: &'a Args, k: &str) -> Result<&'a Args, String> {
    a.get(k).and_then(Value::as_object).ok_or_else(|| format!("Argument \"{k}\" is required"))
}

fn error(message: &str, field: Option<&str>) -> Value {
    match field {
        Some(f) => json!({"message": message, "path": [f]}),
        None => json!({"message": message}),
    }
}

// ---------------------------------------------------------------------------------------------
// SDL and validation

/// A type reference.
#[derive(Clone, Debug, PartialEq)]
enum Ty {
    Named(String),
    List(Box<Ty>),
    NonNull(Box<Ty>),
}

impl Ty {
    fn from_ast(t: &q::Type<'_, String>) -> Ty {
        match t {
            q::Type::NamedType(n) => Ty::Named(n.clone()),
            q::Type::ListType(inner) => Ty::List(Box::new(Ty::from_ast(inner))),
            q::Type::NonNullType(inner) => Ty::NonNull(Box::new(Ty::from_ast(inner))),
        }
    }

    fn name(&self) -> &str {
        match self {
            Ty::Named(n) => n,
            Ty::List(t) | Ty::NonNull(t) => t.name(),
        }
    }

    fn non_null(&self) -> bool {
        matches!(self, Ty::NonNull(_))
    }
}

impl std::fmt::Display for Ty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ty::Named(n) => write!(f, "{n}"),
            Ty::List(t) => write!(f, "[{t}]"),
            Ty::NonNull(t) => write!(f, "{t}!"),
        }
    }
}

/// An argument or input field.
struct InputDef {
    name: String,
    ty: Ty,
    default: Option<Value>,
}

struct FieldDef {
    args: Vec<InputDef>,
}

enum Kind {
    Scalar,
    Enum(Vec<String>),
    Input(Vec<InputDef>),
    Object(BTreeMap<String, FieldDef>),
}

/// The schema the fake validates against: shipit's subset plus [`EXTRA_SDL`].
struct Sdl {
    types: BTreeMap<String, Kind>,
    query: String,
    mutation: String,
}

impl Sdl {
    fn load() -> Result<Sdl, String> {
        let mut sdl = Sdl {
            types: ["String", "ID", "Int", "Float", "Boolean"]
                .iter()
                .map(|n| ((*n).to_owned(), Kind::Scalar))
                .collect(),
            query: "Query".to_owned(),
            mutation: "Mutation".to_owned(),
        };
        for src in [SUBSET_SDL, EXTRA_SDL] {
            let doc = sdl_ast::parse_schema::<String>(src).map_err(|e| e.to_string())?;
            for def in doc.definitions {
                match def {
                    sdl_ast::Definition::SchemaDefinition(s) => {
                        if let Some(q) = s.query {
                            sdl.query = q;
                        }
                        if let Some(m) = s.mutation {
                            sdl.mutation = m;
                        }
                    }
                    sdl_ast::Definition::TypeDefinition(t) => sdl.add(t),
                    sdl_ast::Definition::TypeExtension(_) | sdl_ast::Definition::DirectiveDefinition(_) => {}
                }
            }
        }
        Ok(sdl)
    }

    /// Adds a type, merging fields into a type of the same name.
    fn add(&mut self, t: sdl_ast::TypeDefinition<'_, String>) {
        let input_defs = |fields: Vec<sdl_ast::InputValue<'_, String>>| -> Vec<InputDef> {
            fields
                .into_iter()
                .map(|f| InputDef {
                    name: f.name,
                    ty: Ty::from_ast(&f.value_type),
                    default: f
                        .default_value
                        .as_ref()
                        .and_then(|v| literal(v, &Map::new(), &BTreeSet::new()).ok().flatten()),
                })
                .collect()
        };
        let object = |fields: Vec<sdl_ast::Field<'_, String>>| -> BTreeMap<String, FieldDef> {
            fields.into_iter().map(|f| (f.name, FieldDef { args: input_defs(f.arguments) })).collect()
        };
        match t {
            sdl_ast::TypeDefinition::Scalar(s) => {
                self.types.entry(s.name).or_insert(Kind::Scalar);
            }
            sdl_ast::TypeDefinition::Object(o) => {
                let fields = object(o.fields);
                if let Kind::Object(existing) =
                    self.types.entry(o.name).or_insert_with(|| Kind::Object(BTreeMap::new()))
                {
                    existing.extend(fields);
                }
            }
            sdl_ast::TypeDefinition::Interface(i) => {
                self.types.entry(i.name).or_insert_with(|| Kind::Object(object(i.fields)));
            }
            sdl_ast::TypeDefinition::Union(u) => {
                self.types.entry(u.name).or_insert_with(|| Kind::Object(BTreeMap::new()));
            }
            sdl_ast::TypeDefinition::Enum(e) => {
                let values: Vec<String> = e.values.into_iter().map(|v| v.name).collect();
                if let Kind::Enum(existing) = self.types.entry(e.name).or_insert_with(|| Kind::Enum(Vec::new())) {
                    existing.extend(values);
                }
            }
            sdl_ast::TypeDefinition::InputObject(i) => {
                let fields = input_defs(i.fields);
                if let Kind::Input(existing) = self.types.entry(i.name).or_insert_with(|| Kind::Input(Vec::new())) {
                    for f in fields {
                        if !existing.iter().any(|e| e.name == f.name) {
                            existing.push(f);
                        }
                    }
                }
            }
        }
    }

    fn field(&self, object: &str, name: &str) -> Option<&FieldDef> {
        match self.types.get(object)? {
            Kind::Object(fields) => fields.get(name),
            _ => None,
        }
    }

    /// Checks `v` against `ty` and returns it coerced (input defaults applied, integer IDs as
    /// strings). Messages quote no string value.
    fn coerce(&self, v: &Value, ty: &Ty, at: &str, errs: &mut Vec<String>) -> Value {
        match ty {
            Ty::NonNull(inner) => {
                if v.is_null() {
                    errs.push(format!(
                        "Invalid value at \"{at}\": Expected non-nullable type \"{ty}\" not to be null."
                    ));
                    return Value::Null;
                }
                self.coerce(v, inner, at, errs)
            }
            _ if v.is_null() => Value::Null,
            Ty::List(inner) => match v {
                Value::Array(items) => Value::Array(
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| self.coerce(item, inner, &format!("{at}[{i}]"), errs))
                        .collect(),
                ),
                single => Value::Array(vec![self.coerce(single, inner, at, errs)]),
            },
            Ty::Named(name) => self.coerce_named(v, name, at, errs),
        }
    }

    fn coerce_named(&self, v: &Value, name: &str, at: &str, errs: &mut Vec<String>) -> Value {
        let mut bad = |what: String| {
            errs.push(format!("Invalid value at \"{at}\": {what}"));
            Value::Null
        };
        match self.types.get(name) {
            None => {
                errs.push(format!("Unknown type \"{name}\"."));
                Value::Null
            }
            Some(Kind::Scalar) => match name {
                "String" if v.is_string() => v.clone(),
                "String" => bad("String cannot represent a non string value.".to_owned()),
                "ID" if v.is_string() => v.clone(),
                "ID" if v.is_i64() || v.is_u64() => Value::String(v.to_string()),
                "ID" => bad("ID cannot represent a non-string and non-integer value.".to_owned()),
                "Int" if v.as_i64().is_some_and(|i| i32::try_from(i).is_ok()) => v.clone(),
                "Int" => bad("Int cannot represent non-integer or non-32-bit value.".to_owned()),
                "Float" if v.is_number() => v.clone(),
                "Float" => bad("Float cannot represent non numeric value.".to_owned()),
                "Boolean" if v.is_boolean() => v.clone(),
                "Boolean" => bad("Boolean cannot represent a non boolean value.".to_owned()),
                // Custom scalars (JSON, EnvironmentVariables, DateTime, ...) take any JSON.
                _ => v.clone(),
            },
            Some(Kind::Enum(values)) => match v.as_str() {
                Some(s) if values.iter().any(|e| e == s) => v.clone(),
                Some(s) => bad(format!("Value \"{s}\" does not exist in \"{name}\" enum.")),
                None => bad(format!("Enum \"{name}\" cannot represent non-string value.")),
            },
            Some(Kind::Input(fields)) => {
                let Value::Object(obj) = v else {
                    return bad(format!("Expected type \"{name}\" to be an object."));
                };
                for k in obj.keys() {
                    if !fields.iter().any(|f| f.name == *k) {
                        errs.push(format!("Field \"{k}\" is not defined by type \"{name}\"."));
                    }
                }
                let mut out = Map::new();
                for f in fields {
                    match obj.get(&f.name) {
                        Some(Value::Null) if f.ty.non_null() => errs.push(format!(
                            "Field \"{name}.{}\" of non-null type \"{}\" must not be null.",
                            f.name, f.ty
                        )),
                        Some(val) => {
                            let c = self.coerce(val, &f.ty, &format!("{at}.{}", f.name), errs);
                            out.insert(f.name.clone(), c);
                        }
                        None => match &f.default {
                            Some(d) => {
                                out.insert(f.name.clone(), d.clone());
                            }
                            None if f.ty.non_null() => errs.push(format!(
                                "Field \"{name}.{}\" of required type \"{}\" was not provided.",
                                f.name, f.ty
                            )),
                            None => {}
                        },
                    }
                }
                Value::Object(out)
            }
            Some(Kind::Object(_)) => {
                errs.push(format!("Type \"{name}\" is not an input type."));
                Value::Null
            }
        }
    }
}

/// A root field to run, its arguments resolved and checked.
struct Planned {
    /// The response key (alias or name).
    key: String,
    name: String,
    args: Args,
}

/// Picks the operation, checks its variables, resolves and checks its root fields' arguments.
/// Returns the root type's name and the fields to run, or the validation errors.
fn plan<'a>(
    sdl: &Sdl,
    doc: &'a q::Document<'a, String>,
    op_name: Option<&str>,
    provided: &Map<String, Value>,
) -> Result<(String, Vec<Planned>), Vec<String>> {
    let Some(op_name) = op_name else {
        return Err(vec!["Must provide operation name (operationName).".to_owned()]);
    };
    let op = doc.definitions.iter().find_map(|d| match d {
        q::Definition::Operation(q::OperationDefinition::Query(o)) if o.name.as_deref() == Some(op_name) => {
            Some((sdl.query.clone(), &o.variable_definitions, &o.selection_set))
        }
        q::Definition::Operation(q::OperationDefinition::Mutation(o)) if o.name.as_deref() == Some(op_name) => {
            Some((sdl.mutation.clone(), &o.variable_definitions, &o.selection_set))
        }
        q::Definition::Operation(q::OperationDefinition::Subscription(o)) if o.name.as_deref() == Some(op_name) => {
            Some(("Subscription".to_owned(), &o.variable_definitions, &o.selection_set))
        }
        _ => None,
    });
    let Some((root, var_defs, selection)) = op else {
        return Err(vec![format!("Unknown operation named \"{op_name}\".")]);
    };
    let mut errs = Vec::new();
    if !sdl.types.contains_key(&root) {
        return Err(vec![format!("Schema is not configured to execute {} operation.", root.to_lowercase())]);
    }

    // Variables.
    let mut declared = BTreeSet::new();
    let mut vars = Map::new();
    for def in var_defs {
        let name = def.name.clone();
        declared.insert(name.clone());
        let ty = Ty::from_ast(&def.var_type);
        match sdl.types.get(ty.name()) {
            None => {
                errs.push(format!("Unknown type \"{}\".", ty.name()));
                continue;
            }
            Some(Kind::Object(_)) => {
                errs.push(format!("Variable \"${name}\" cannot be non-input type \"{ty}\"."));
                continue;
            }
            Some(_) => {}
        }
        match provided.get(&name) {
            None => {
                let default =
                    def.default_value.as_ref().and_then(|v| literal(v, &Map::new(), &BTreeSet::new()).ok().flatten());
                match default {
                    Some(d) => {
                        let c = sdl.coerce(&d, &ty, &format!("${name}"), &mut errs);
                        vars.insert(name, c);
                    }
                    None if ty.non_null() => {
                        errs.push(format!("Variable \"${name}\" of required type \"{ty}\" was not provided."));
                    }
                    None => {}
                }
            }
            Some(Value::Null) if ty.non_null() => {
                errs.push(format!("Variable \"${name}\" of non-null type \"{ty}\" must not be null."));
            }
            Some(v) => {
                let c = sdl.coerce(v, &ty, &format!("${name}"), &mut errs);
                vars.insert(name, c);
            }
        }
    }
    for k in provided.keys() {
        if !declared.contains(k) {
            errs.push(format!("Variable \"${k}\" is not defined by operation \"{op_name}\"."));
        }
    }

    // Root fields.
    let fragments: HashMap<&str, &q::FragmentDefinition<'_, String>> = doc
        .definitions
        .iter()
        .filter_map(|d| match d {
            q::Definition::Fragment(f) => Some((f.name.as_str(), f)),
            q::Definition::Operation(_) => None,
        })
        .collect();
    let mut fields = Vec::new();
    collect_fields(selection, &fragments, &mut fields, &mut errs, 0);
    let mut planned = Vec::new();
    for f in fields {
        let key = f.alias.clone().unwrap_or_else(|| f.name.clone());
        if f.name == "__typename" {
            planned.push(Planned { key, name: f.name.clone(), args: Map::new() });
            continue;
        }
        let Some(def) = sdl.field(&root, &f.name) else {
            errs.push(format!("Cannot query field \"{}\" on type \"{root}\".", f.name));
            continue;
        };
        let mut given = Map::new();
        for (arg, value) in &f.arguments {
            if !def.args.iter().any(|a| a.name == *arg) {
                errs.push(format!("Unknown argument \"{arg}\" on field \"{root}.{}\".", f.name));
                continue;
            }
            match literal(value, &vars, &declared) {
                Ok(Some(v)) => {
                    given.insert(arg.clone(), v);
                }
                Ok(None) => {}
                Err(undeclared) => {
                    errs.push(format!("Variable \"${undeclared}\" is not defined by operation \"{op_name}\"."));
                }
            }
        }
        let mut args = Map::new();
        for a in &def.args {
            match given.get(&a.name) {
                None => match &a.default {
                    Some(d) => {
                        args.insert(a.name.clone(), d.clone());
                    }
                    None if a.ty.non_null() => errs.push(format!(
                        "Field \"{}\" argument \"{}\" of type \"{}\" is required, but it was not provided.",
                        f.name, a.name, a.ty
                    )),
                    None => {}
                },
                Some(Value::Null) if a.ty.non_null() => {
                    errs.push(format!("Argument \"{}\" of non-null type \"{}\" must not be null.", a.name, a.ty));
                }
                Some(v) => {
                    let c = sdl.coerce(v, &a.ty, &format!("{}({})", f.name, a.name), &mut errs);
                    args.insert(a.name.clone(), c);
                }
            }
        }
        planned.push(Planned { key, name: f.name.clone(), args });
    }
    if errs.is_empty() {
        Ok((root, planned))
    } else {
        // A variable checked at its own type and again as an argument reports twice.
        let mut seen = BTreeSet::new();
        errs.retain(|e| seen.insert(e.clone()));
        Err(errs)
    }
}

/// The root fields of a selection set, through fragments.
fn collect_fields<'a>(
    set: &'a q::SelectionSet<'a, String>,
    fragments: &HashMap<&str, &'a q::FragmentDefinition<'a, String>>,
    out: &mut Vec<&'a q::Field<'a, String>>,
    errs: &mut Vec<String>,
    depth: u32,
) {
    if depth > 10 {
        errs.push("Fragments nest too deep (or form a cycle).".to_owned());
        return;
    }
    for item in &set.items {
        match item {
            q::Selection::Field(f) => out.push(f),
            q::Selection::InlineFragment(i) => collect_fields(&i.selection_set, fragments, out, errs, depth + 1),
            q::Selection::FragmentSpread(s) => match fragments.get(s.fragment_name.as_str()) {
                Some(f) => collect_fields(&f.selection_set, fragments, out, errs, depth + 1),
                None => errs.push(format!("Unknown fragment \"{}\".", s.fragment_name)),
            },
        }
    }
}

/// An AST value as JSON, `$variables` substituted. `Ok(None)`: absent (an unset variable, which
/// leaves an input field out rather than null). `Err(name)`: a variable the operation does not
/// declare.
fn literal(
    v: &q::Value<'_, String>,
    vars: &Map<String, Value>,
    declared: &BTreeSet<String>,
) -> Result<Option<Value>, String> {
    Ok(Some(match v {
        q::Value::Variable(name) => {
            if !declared.contains(name) {
                return Err(name.clone());
            }
            return Ok(vars.get(name).cloned());
        }
        q::Value::Int(n) => n.as_i64().map_or(Value::Null, |i| json!(i)),
        q::Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        q::Value::String(s) => Value::String(s.clone()),
        q::Value::Boolean(b) => Value::Bool(*b),
        q::Value::Null => Value::Null,
        q::Value::Enum(e) => Value::String(e.clone()),
        q::Value::List(items) => {
            let mut out = Vec::new();
            for i in items {
                out.push(literal(i, vars, declared)?.unwrap_or(Value::Null));
            }
            Value::Array(out)
        }
        q::Value::Object(fields) => {
            let mut out = Map::new();
            for (k, val) in fields {
                if let Some(x) = literal(val, vars, declared)? {
                    out.insert(k.clone(), x);
                }
            }
            Value::Object(out)
        }
    }))
}

// ---------------------------------------------------------------------------------------------
// HTTP

struct Reply {
    status: u16,
    body: Value,
}

impl Reply {
    fn json(status: u16, body: Value) -> Self {
        Reply { status, body }
    }

    /// HTTP 200 with `data: null` and these errors.
    fn gql_errors(errors: Vec<Value>) -> Self {
        Reply::json(200, json!({"data": null, "errors": errors}))
    }

    /// A non-GraphQL answer: `status` and `{"errors": [{"message"}]}`.
    fn http_error(status: u16, message: impl Into<String>) -> Self {
        Reply::json(status, json!({"errors": [{"message": message.into()}]}))
    }

    fn first_error(&self) -> Option<String> {
        self.body.pointer("/errors/0/message").and_then(Value::as_str).map(str::to_owned)
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
        let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
        let project_token = header(PROJECT_TOKEN_HEADER).map(str::trim).filter(|t| !t.is_empty());
        let authorization = header("authorization").unwrap_or("");
        let body: Option<Value> = serde_json::from_slice(&req.body).ok();
        let op = body.as_ref().and_then(|b| b.get("operationName")).and_then(Value::as_str).map(str::to_owned);
        let auth = st.auth(project_token, authorization);

        let mut delay = Duration::ZERO;
        if let Some(Taken::Slow(d)) = take_fault(&mut st.faults, op.as_deref(), Phase::Slow) {
            delay = d;
        }
        let (mut reset, mut malformed, mut cut) = (false, false, false);
        let mut retry_after = None;
        let mut echo = None;
        let reply = match take_fault(&mut st.faults, op.as_deref(), Phase::BeforeRouting) {
            Some(Taken::Status(status, ra)) => {
                retry_after = ra;
                Reply::http_error(status, fault_message(status))
            }
            Some(Taken::GraphqlError(message)) => Reply::gql_errors(vec![error(&message, None)]),
            Some(Taken::Echo(status)) => {
                let pat = project_token.unwrap_or("");
                let mut text = crate::echo::text(authorization, &req.body);
                let mut head = crate::echo::header(authorization, &req.body);
                if !pat.is_empty() {
                    text.push_str(&format!(
                        "; {PROJECT_TOKEN_HEADER}: {pat} (base64 {}, url {})",
                        crate::echo::base64(pat.as_bytes()),
                        crate::echo::percent(pat.as_bytes())
                    ));
                    let clean: String = pat.chars().filter(|c| c.is_ascii_graphic() || *c == ' ').collect();
                    head.push_str(&format!("; {PROJECT_TOKEN_HEADER}={clean}"));
                }
                echo = Some(head);
                Reply::json(status, json!({"data": null, "errors": [{"message": text}]}))
            }
            Some(Taken::Reset) if st.proxied => {
                reset = true;
                Reply::json(0, Value::Null)
            }
            Some(Taken::Reset) => Reply::http_error(502, "connection reset (the fake runs without its proxy)"),
            _ if method != "POST" || path != GRAPHQL_PATH => Reply::http_error(404, "Not Found"),
            _ => match st.rate_limit() {
                Err(secs) => {
                    retry_after = Some(secs);
                    Reply::http_error(429, "Rate limit exceeded. Please try again later.")
                }
                Ok(()) => {
                    let reply = st.graphql(body.as_ref(), &auth);
                    match take_fault(&mut st.faults, op.as_deref(), Phase::AfterRouting) {
                        Some(Taken::Status(status, _)) => Reply::http_error(status, fault_message(status)),
                        Some(Taken::Malformed) => {
                            malformed = true;
                            Reply::json(200, Value::Null)
                        }
                        Some(Taken::Reset) if st.proxied => {
                            reset = true;
                            Reply::json(0, Value::Null)
                        }
                        Some(Taken::Cut) if st.proxied => {
                            cut = true;
                            reply
                        }
                        Some(Taken::Reset | Taken::Cut) => {
                            Reply::http_error(502, "answer lost after being applied (the fake runs without its proxy)")
                        }
                        _ => reply,
                    }
                }
            },
        };

        let graphql_error = if echo.is_some() { Some("echo (not recorded)".to_owned()) } else { reply.first_error() };
        st.requests.push(RecordedRequest {
            operation: op,
            status: reply.status,
            graphql_error: if reset || malformed { None } else { graphql_error },
            token_kind: auth.kind(),
        });
        let (limit, remaining, reset_at) = st.rate_headers();
        drop(st);

        if reset {
            return ResponseTemplate::new(500).insert_header(RESET_HEADER, "1");
        }
        let mut t = ResponseTemplate::new(reply.status);
        if malformed {
            t = t.set_body_raw(b"{\"data\": {\"trunc".to_vec(), "application/json");
        } else {
            if cut {
                let half = serde_json::to_vec(&reply.body).map_or(0, |b| b.len() / 2);
                t = t.insert_header(CUT_HEADER, half.to_string().as_str());
            }
            t = t.set_body_json(reply.body);
        }
        t = t
            .insert_header("x-ratelimit-limit", limit.to_string().as_str())
            .insert_header("x-ratelimit-remaining", remaining.to_string().as_str())
            .insert_header("x-ratelimit-reset", reset_at.to_string().as_str());
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
    /// `Status`, `GraphqlError`, `Echo` and `Reset`: the request is not applied.
    BeforeRouting,
    /// `LostResponse`, `ResetAfter`, `CutBody` and `Malformed`: the request was applied.
    AfterRouting,
    /// `Slow`.
    Slow,
}

/// A fault use taken.
enum Taken {
    Status(u16, Option<u64>),
    GraphqlError(String),
    Echo(u16),
    Reset,
    Cut,
    Malformed,
    Slow(Duration),
}

/// Consumes one use of the first matching fault of `phase`, in the order they were injected.
fn take_fault(faults: &mut Vec<Fault>, op: Option<&str>, phase: Phase) -> Option<Taken> {
    let i = faults.iter().position(|f| f.phase() == Some(phase) && f.times() > 0 && f.matches(op))?;
    let f = faults.get_mut(i)?;
    let out = match f {
        Fault::Status { status, retry_after, .. } => Taken::Status(*status, *retry_after),
        Fault::GraphqlError { message, .. } => Taken::GraphqlError(message.clone()),
        Fault::Echo { status, .. } => Taken::Echo(*status),
        Fault::LostResponse { status, .. } => Taken::Status(*status, None),
        Fault::Reset { .. } | Fault::ResetAfter { .. } => Taken::Reset,
        Fault::CutBody { .. } => Taken::Cut,
        Fault::Malformed { .. } => Taken::Malformed,
        Fault::Slow { delay, .. } => Taken::Slow(*delay),
        Fault::RefuseDeploy { .. } => return None,
    };
    if let Some(t) = f.times_mut() {
        *t = t.saturating_sub(1);
    }
    faults.retain(|f| matches!(f, Fault::RefuseDeploy { .. }) || f.times() > 0);
    Some(out)
}

fn fault_message(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Rate limit exceeded. Please try again later.",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "injected fault",
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH).to_string()
}

fn normalize_digest(d: &str) -> &str {
    d.strip_prefix("sha256:").unwrap_or(d)
}

/// The digest of an image reference (`…@sha256:…`), if it has one.
fn image_digest(image: &str) -> Option<String> {
    image.split_once('@').map(|(_, d)| d.to_owned()).filter(|d| !d.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdl_loads_with_the_extra_fields() {
        let sdl = Sdl::load().unwrap_or_else(|e| unreachable!("{e}"));
        assert!(sdl.field("Query", "serviceInstance").is_some());
        assert!(sdl.field("Mutation", "deploymentRollback").is_some());
        assert!(
            matches!(sdl.types.get("ServiceCreateInput"), Some(Kind::Input(f)) if f.iter().any(|f| f.name == "source"))
        );
        let Some(Kind::Input(f)) = sdl.types.get("VariableCollectionUpsertInput") else { unreachable!() };
        assert!(f.iter().any(|f| f.name == "replace" && f.default == Some(json!(false))));
    }

    #[test]
    fn renders_references() {
        let mut p = ProjectState {
            id: "p".into(),
            name: "p".into(),
            envs: vec![EnvState { id: "e".into(), name: "production".into(), shared: BTreeMap::new() }],
            services: vec![ServiceState { id: "db".into(), name: "Postgres".into() }],
            instances: BTreeMap::new(),
        };
        let mut db = InstanceState::new("i".into());
        db.variables.insert("DATABASE_URL".into(), Some("postgres://x".into()));
        p.instances.insert(("e".into(), "db".into()), db);
        assert_eq!(render(&p, "e", None, "url=${{ Postgres.DATABASE_URL }}!", 0), "url=postgres://x!");
        assert_eq!(render(&p, "e", None, "${{Nope.X}}-${{shared.Y}}", 0), "-");
    }

    #[test]
    fn parses_digests() {
        assert_eq!(image_digest("ghcr.io/a/b:1@sha256:abc").as_deref(), Some("sha256:abc"));
        assert_eq!(image_digest("nginx:1"), None);
    }
}
