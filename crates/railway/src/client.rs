//! [`RailwayClient`]: typed calls to Railway's GraphQL API.
//!
//! Each operation is one `.graphql` file under `graphql/operations/`, checked at compile time by
//! `graphql_client`'s derive against the project's SDL subset (`graphql/schema.graphql`), which
//! `.ci/run` checks against Railway's published schema. Requests go out with the workspace's
//! reqwest (graphql_client only builds bodies and types answers). Answers are then read into
//! this module's own plain structs (by serde, through JSON), so the rest of the crate never sees
//! the per-operation generated types.
//!
//! - **No nulls.** Every `null` is removed from the variables before sending: Railway resets a
//!   setting sent as null, and graphql_client sends `None` as null.
//! - **Retries only where safe.** Reads and the idempotent writes (an update that sets every
//!   field, a variable upsert of the same values, a cancel) are retried on 429/5xx/network and
//!   unreadable answers. A service create or a deployment is sent once; after an ambiguous
//!   failure the caller looks before sending again.
//! - **Auth.** A refused token (Railway answers "Not Authorized" inside a 200) stops the client:
//!   nothing more is sent.
//! - **Counting.** Railway's hourly limits are low on small plans: the client counts requests and
//!   keeps the last `X-RateLimit-Remaining` it saw.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use graphql_client::GraphQLQuery;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use shipit_core::http::{Observed, Scrubber, retry, without_userinfo};
use shipit_core::retry::RetryPolicy;

use crate::config::{API_TOKEN_ENV, RailwayToken};
use crate::error::{RailwayError, graphql_error, parse_error};

/// The generated operations (one per `.graphql` file). Custom scalars are plain JSON.
#[allow(missing_docs, clippy::all)]
pub mod ops {
    use graphql_client::GraphQLQuery;

    /// `DateTime` (RFC 3339).
    pub type DateTime = String;
    /// `JSON`.
    #[allow(clippy::upper_case_acronyms)]
    pub type JSON = serde_json::Value;
    /// `DeploymentMeta`.
    pub type DeploymentMeta = serde_json::Value;
    /// `EnvironmentVariables`: name to value (a value may be null).
    pub type EnvironmentVariables = std::collections::BTreeMap<String, Option<String>>;
    /// `ServiceInstanceLimit`.
    pub type ServiceInstanceLimit = serde_json::Value;

    /// `ProjectToken.graphql`.
    #[derive(GraphQLQuery)]
    #[graphql(
        schema_path = "graphql/schema.graphql",
        query_path = "graphql/operations/ProjectToken.graphql",
        response_derives = "Debug, Clone, Serialize",
        variables_derives = "Debug, Clone, Deserialize"
    )]
    pub struct ProjectToken;

    /// `Projects.graphql`.
    #[derive(GraphQLQuery)]
    #[graphql(
        schema_path = "graphql/schema.graphql",
        query_path = "graphql/operations/Projects.graphql",
        response_derives = "Debug, Clone, Serialize",
        variables_derives = "Debug, Clone, Deserialize"
    )]
    pub struct Projects;

    /// `Project.graphql`.
    #[derive(GraphQLQuery)]
    #[graphql(
        schema_path = "graphql/schema.graphql",
        query_path = "graphql/operations/Project.graphql",
        response_derives = "Debug, Clone, Serialize",
        variables_derives = "Debug, Clone, Deserialize"
    )]
    pub struct Project;

    /// `ServiceInstance.graphql`.
    #[derive(GraphQLQuery)]
    #[graphql(
        schema_path = "graphql/schema.graphql",
        query_path = "graphql/operations/ServiceInstance.graphql",
        response_derives = "Debug, Clone, Serialize",
        variables_derives = "Debug, Clone, Deserialize"
    )]
    pub struct ServiceInstance;

    /// `Variables.graphql`.
    #[derive(GraphQLQuery)]
    #[graphql(
        schema_path = "graphql/schema.graphql",
        query_path = "graphql/operations/Variables.graphql",
        response_derives = "Debug, Clone, Serialize",
        variables_derives = "Debug, Clone, Deserialize"
    )]
    pub struct Variables;

    /// `Deployment.graphql`.
    #[derive(GraphQLQuery)]
    #[graphql(
        schema_path = "graphql/schema.graphql",
        query_path = "graphql/operations/Deployment.graphql",
        response_derives = "Debug, Clone, Serialize",
        variables_derives = "Debug, Clone, Deserialize"
    )]
    pub struct Deployment;

    /// `Deployments.graphql`.
    #[derive(GraphQLQuery)]
    #[graphql(
        schema_path = "graphql/schema.graphql",
        query_path = "graphql/operations/Deployments.graphql",
        response_derives = "Debug, Clone, Serialize",
        variables_derives = "Debug, Clone, Deserialize"
    )]
    pub struct Deployments;

    /// `ServiceCreate.graphql`.
    #[derive(GraphQLQuery)]
    #[graphql(
        schema_path = "graphql/schema.graphql",
        query_path = "graphql/operations/ServiceCreate.graphql",
        response_derives = "Debug, Clone, Serialize",
        variables_derives = "Debug, Clone, Deserialize"
    )]
    pub struct ServiceCreate;

    /// `ServiceInstanceUpdate.graphql`.
    #[derive(GraphQLQuery)]
    #[graphql(
        schema_path = "graphql/schema.graphql",
        query_path = "graphql/operations/ServiceInstanceUpdate.graphql",
        response_derives = "Debug, Clone, Serialize",
        variables_derives = "Debug, Clone, Deserialize"
    )]
    pub struct ServiceInstanceUpdate;

    /// `ServiceInstanceLimitsUpdate.graphql`.
    #[derive(GraphQLQuery)]
    #[graphql(
        schema_path = "graphql/schema.graphql",
        query_path = "graphql/operations/ServiceInstanceLimitsUpdate.graphql",
        response_derives = "Debug, Clone, Serialize",
        variables_derives = "Debug, Clone, Deserialize"
    )]
    pub struct ServiceInstanceLimitsUpdate;

    /// `ServiceInstanceDeployV2.graphql`.
    #[derive(GraphQLQuery)]
    #[graphql(
        schema_path = "graphql/schema.graphql",
        query_path = "graphql/operations/ServiceInstanceDeployV2.graphql",
        response_derives = "Debug, Clone, Serialize",
        variables_derives = "Debug, Clone, Deserialize"
    )]
    pub struct ServiceInstanceDeployV2;

    /// `DeploymentCancel.graphql`.
    #[derive(GraphQLQuery)]
    #[graphql(
        schema_path = "graphql/schema.graphql",
        query_path = "graphql/operations/DeploymentCancel.graphql",
        response_derives = "Debug, Clone, Serialize",
        variables_derives = "Debug, Clone, Deserialize"
    )]
    pub struct DeploymentCancel;

    /// `VariableCollectionUpsert.graphql`.
    #[derive(GraphQLQuery)]
    #[graphql(
        schema_path = "graphql/schema.graphql",
        query_path = "graphql/operations/VariableCollectionUpsert.graphql",
        response_derives = "Debug, Clone, Serialize",
        variables_derives = "Debug, Clone, Deserialize"
    )]
    pub struct VariableCollectionUpsert;

    /// `VariableDelete.graphql`.
    #[derive(GraphQLQuery)]
    #[graphql(
        schema_path = "graphql/schema.graphql",
        query_path = "graphql/operations/VariableDelete.graphql",
        response_derives = "Debug, Clone, Serialize",
        variables_derives = "Debug, Clone, Deserialize"
    )]
    pub struct VariableDelete;

    /// `Domains.graphql`.
    #[derive(GraphQLQuery)]
    #[graphql(
        schema_path = "graphql/schema.graphql",
        query_path = "graphql/operations/Domains.graphql",
        response_derives = "Debug, Clone, Serialize",
        variables_derives = "Debug, Clone, Deserialize"
    )]
    pub struct Domains;

    /// `ServiceDomainCreate.graphql`.
    #[derive(GraphQLQuery)]
    #[graphql(
        schema_path = "graphql/schema.graphql",
        query_path = "graphql/operations/ServiceDomainCreate.graphql",
        response_derives = "Debug, Clone, Serialize",
        variables_derives = "Debug, Clone, Deserialize"
    )]
    pub struct ServiceDomainCreate;
}

/// An id and a name (an environment, a service, a project).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Named {
    /// Railway's id.
    pub id: String,
    /// Its name.
    pub name: String,
}

/// A project with its environments and services.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProjectInfo {
    /// Project id.
    pub id: String,
    /// Project name.
    pub name: String,
    /// Its environments.
    pub environments: Vec<Named>,
    /// Its services (databases included).
    pub services: Vec<Named>,
}

/// A project token's scope.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenScope {
    /// The project.
    pub project: Named,
    /// The one environment.
    pub environment: Named,
}

/// One replica of a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Replica {
    /// Its id.
    pub id: String,
    /// `RUNNING`, `CRASHED`…
    pub status: String,
}

/// A deployment.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct DeploymentInfo {
    /// Its id.
    pub id: String,
    /// `SUCCESS`, `FAILED`, `REMOVED`… (Railway's `DeploymentStatus`).
    pub status: String,
    /// When it was made (RFC 3339).
    #[serde(default)]
    pub created_at: Option<String>,
    /// Whether it was live once and may be rolled back to.
    #[serde(default)]
    pub can_rollback: bool,
    /// Railway's record of what it deployed (`image`, `imageDigest`, `commitHash`,
    /// `serviceManifest`…).
    #[serde(default)]
    pub meta: Value,
    /// Its replicas (only asked for by some operations).
    #[serde(default)]
    pub instances: Vec<Replica>,
}

impl DeploymentInfo {
    /// The digest it runs: `meta.imageDigest`, else the digest in `meta.image`.
    pub fn digest(&self) -> Option<String> {
        let m = &self.meta;
        m.get("imageDigest")
            .and_then(Value::as_str)
            .filter(|d| d.starts_with("sha256:"))
            .map(str::to_string)
            .or_else(|| self.image().and_then(|i| i.split_once('@')).map(|(_, d)| d.to_string()))
    }

    /// The image reference as sent.
    pub fn image(&self) -> Option<&str> {
        self.meta.get("image").and_then(Value::as_str)
    }

    /// The git commit Railway recorded (`meta.commitHash`).
    pub fn git_sha(&self) -> Option<String> {
        self.meta.get("commitHash").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string)
    }

    /// The settings it was deployed with (`meta.serviceManifest.deploy`), when Railway says.
    pub fn deploy_settings(&self) -> Option<&Value> {
        self.meta.pointer("/serviceManifest/deploy").filter(|v| v.is_object())
    }

    /// Whether it serves (or sleeps, serving on the next request).
    pub fn is_live(&self) -> bool {
        matches!(self.status.as_str(), "SUCCESS" | "SLEEPING")
    }
}

/// `ServiceSource`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[non_exhaustive]
pub struct SourceInfo {
    /// The image, when it deploys one.
    #[serde(default)]
    pub image: Option<String>,
}

/// The latest deployment's id.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct DeploymentId {
    /// Its id.
    pub id: String,
}

/// One service in one environment, as `ServiceInstance.graphql` reads it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct InstanceInfo {
    /// The service instance's id.
    pub id: String,
    /// What it deploys.
    #[serde(default)]
    pub source: Option<SourceInfo>,
    /// Start command.
    #[serde(default)]
    pub start_command: Option<String>,
    /// Health check path.
    #[serde(default)]
    pub healthcheck_path: Option<String>,
    /// Deploy window in seconds.
    #[serde(default)]
    pub healthcheck_timeout: Option<i64>,
    /// `ALWAYS`, `ON_FAILURE`, `NEVER`.
    #[serde(default)]
    pub restart_policy_type: Option<String>,
    /// Restarts.
    #[serde(default)]
    pub restart_policy_max_retries: Option<i64>,
    /// App Sleeping.
    #[serde(default)]
    pub sleep_application: Option<bool>,
    /// Legacy replica count (placement lives in the deployment's `multiRegionConfig`).
    #[serde(default)]
    pub num_replicas: Option<i64>,
    /// Legacy region.
    #[serde(default)]
    pub region: Option<String>,
    /// Config-as-code path.
    #[serde(default)]
    pub railway_config_file: Option<String>,
    /// The latest deployment, live or not.
    #[serde(default)]
    pub latest_deployment: Option<DeploymentId>,
    /// What serves now.
    #[serde(default)]
    pub active_deployments: Vec<DeploymentInfo>,
    /// Its public domains.
    #[serde(default)]
    pub domains: Option<Domains>,
    /// `serviceInstanceLimits` (asked in the same request).
    #[serde(skip)]
    pub limits: Value,
}

/// A service instance's public domains: Railway's (`*.up.railway.app`) and custom ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Domains {
    /// Domains Railway generated.
    #[serde(default)]
    pub service_domains: Vec<DomainName>,
    /// Domains the user added.
    #[serde(default)]
    pub custom_domains: Vec<DomainName>,
}

/// One domain name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct DomainName {
    /// The host name.
    pub domain: String,
}

impl Domains {
    /// The public address: a custom domain first, else Railway's own.
    pub fn first(&self) -> Option<&str> {
        self.custom_domains.iter().chain(&self.service_domains).next().map(|d| d.domain.as_str())
    }
}

impl InstanceInfo {
    /// The live deployment (the newest if several).
    pub fn live(&self) -> Option<&DeploymentInfo> {
        let mut live: Vec<&DeploymentInfo> = self.active_deployments.iter().filter(|d| d.is_live()).collect();
        live.sort_by(|a, b| time_key(b.created_at.as_deref()).cmp(&time_key(a.created_at.as_deref())));
        live.first().copied()
    }
}

struct Inner {
    http: reqwest::Client,
    url: String,
    shown_endpoint: String,
    token: Option<RailwayToken>,
    /// Where the token came from, when not its variable (for messages).
    token_origin: Option<&'static str>,
    retry: RetryPolicy,
    timeout: Duration,
    scrubber: Scrubber,
    stopped: AtomicBool,
    sent: AtomicU64,
    remaining: AtomicI64,
}

/// A client of Railway's GraphQL API (cheap to clone).
#[derive(Clone)]
pub struct RailwayClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RailwayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RailwayClient")
            .field("endpoint", &self.inner.shown_endpoint)
            .field("token", &self.inner.token)
            .field("sent", &self.requests_sent())
            .finish()
    }
}

/// Whether a call may be repeated as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A read, or a write that sets the same values again: retried.
    Idempotent,
    /// A create: sent once; the caller looks after an ambiguous failure.
    Once,
}

/// An RFC 3339 UTC time (`createdAt`) as a key that sorts by time. As text, `…:07Z` would sort
/// after `…:07.015Z`, and `…:07.01Z` after `…:07.015Z`: RFC 3339 lets the fraction of a second
/// be left out or shortened, so the fraction is padded to nine digits here.
fn time_key(t: Option<&str>) -> (&str, String) {
    let t = t.unwrap_or_default();
    // `YYYY-MM-DDTHH:MM:SS`, then an optional fraction, then the zone.
    let (seconds, rest) = t.split_at_checked(19).unwrap_or((t, ""));
    let fraction: String =
        rest.strip_prefix('.').unwrap_or_default().chars().take_while(char::is_ascii_digit).collect();
    (seconds, format!("{fraction:0<9}"))
}

/// Removes every `null` (in objects) from `v`, at any depth.
pub fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|_, x| !x.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// A serde error described without quoting the body (which may hold variable values).
fn decode_error(what: &str, e: &serde_json::Error) -> RailwayError {
    RailwayError::Decode { what: what.to_string(), message: shipit_core::http::unreadable_answer(e) }
}

/// `T` read from `value` through JSON (a generated answer into this module's structs).
pub(crate) fn via_json<T: DeserializeOwned>(what: &str, value: impl serde::Serialize) -> Result<T, RailwayError> {
    let v = serde_json::to_value(value).map_err(|e| decode_error(what, &e))?;
    serde_json::from_value(v).map_err(|e| decode_error(what, &e))
}

impl RailwayClient {
    pub(crate) fn new(
        endpoint: String,
        token: Option<RailwayToken>,
        token_origin: Option<&'static str>,
        retry: RetryPolicy,
        timeout: Duration,
        scrubber: Scrubber,
    ) -> Result<Self, RailwayError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("shipit/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| RailwayError::Config(format!("HTTP client: {e}")))?;
        let mut scrubber = scrubber.with_url_credentials(&endpoint);
        match &token {
            Some(RailwayToken::Project(t) | RailwayToken::Api(t)) => scrubber.add(t.expose_secret()),
            None => {}
        }
        let shown_endpoint = without_userinfo(&endpoint);
        let inner = Inner {
            http,
            url: endpoint,
            shown_endpoint,
            token,
            token_origin,
            retry,
            timeout,
            scrubber,
            stopped: AtomicBool::new(false),
            sent: AtomicU64::new(0),
            remaining: AtomicI64::new(-1),
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The endpoint as it may be shown (credentials as `***`).
    pub fn endpoint(&self) -> &str {
        &self.inner.shown_endpoint
    }

    /// What the client keeps out of every message.
    pub fn scrubber(&self) -> &Scrubber {
        &self.inner.scrubber
    }

    /// The token, if any.
    pub fn token(&self) -> Option<&RailwayToken> {
        self.inner.token.as_ref()
    }

    /// The variable the token came from (`RAILWAY_API_TOKEN` when none is set), or where else
    /// it came from ([`RailwayConfig::token_origin`](crate::RailwayConfig::token_origin)).
    pub fn token_env(&self) -> &'static str {
        self.inner
            .token_origin
            .unwrap_or_else(|| self.inner.token.as_ref().map_or(API_TOKEN_ENV, RailwayToken::env_var))
    }

    /// The retry policy (also the cap on waits before a deployment is sent again).
    pub fn retry_policy(&self) -> RetryPolicy {
        self.inner.retry
    }

    /// Requests sent so far (every attempt counts).
    pub fn requests_sent(&self) -> u64 {
        self.inner.sent.load(Ordering::Relaxed)
    }

    /// The last `X-RateLimit-Remaining` Railway sent, if any.
    pub fn rate_limit_remaining(&self) -> Option<u64> {
        u64::try_from(self.inner.remaining.load(Ordering::Relaxed)).ok()
    }

    /// Runs operation `Q`.
    async fn run<Q: GraphQLQuery>(
        &self,
        vars: Q::Variables,
        mode: Mode,
        extra: Option<&Scrubber>,
    ) -> Result<Q::ResponseData, RailwayError>
    where
        Q::Variables: serde::Serialize,
        Q::ResponseData: DeserializeOwned,
    {
        let query = Q::build_query(vars);
        let name = query.operation_name;
        let mut body = serde_json::to_value(&query).map_err(|e| decode_error(name, &e))?;
        if let Some(v) = body.get_mut("variables") {
            strip_nulls(v);
        }
        let data = match mode {
            Mode::Idempotent => retry(&self.inner.retry, || self.once(name, &body, extra)).await?,
            Mode::Once => self.once(name, &body, extra).await?,
        };
        serde_json::from_value(data).map_err(|e| decode_error(name, &e))
    }

    /// Sends one request; answers its `data`.
    async fn once(&self, operation: &str, body: &Value, extra: Option<&Scrubber>) -> Result<Value, RailwayError> {
        let inner = &self.inner;
        let Some(token) = &inner.token else { return Err(RailwayError::MissingToken) };
        if inner.stopped.load(Ordering::SeqCst) {
            return Err(RailwayError::Stopped);
        }
        let merged;
        let scrubber = match extra {
            Some(x) => {
                merged = inner.scrubber.clone().merged(x);
                &merged
            }
            None => &inner.scrubber,
        };
        let env = inner.token_origin.unwrap_or_else(|| token.env_var());
        let bad_header = || RailwayError::Config(format!("the token in {env} has characters not allowed in a header"));
        let watch = Observed::start("POST", &inner.url).note(operation);
        let mut rb = inner.http.post(&inner.url).timeout(inner.timeout).json(body);
        match token {
            RailwayToken::Project(t) => {
                let mut v = HeaderValue::from_str(t.expose_secret()).map_err(|_| bad_header())?;
                v.set_sensitive(true);
                rb = rb.header("project-access-token", v);
            }
            RailwayToken::Api(t) => {
                let mut v =
                    HeaderValue::from_str(&format!("Bearer {}", t.expose_secret())).map_err(|_| bad_header())?;
                v.set_sensitive(true);
                rb = rb.header(AUTHORIZATION, v);
            }
        }
        inner.sent.fetch_add(1, Ordering::Relaxed);
        let network = |source| RailwayError::network(source, scrubber);
        let resp = match rb.send().await {
            Ok(resp) => resp,
            Err(e) => {
                watch.failed(&e);
                return Err(network(e));
            }
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        if let Some(n) = headers
            .get("x-ratelimit-remaining")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok())
        {
            inner.remaining.store(n, Ordering::Relaxed);
        }
        let bytes = match resp.bytes().await {
            Ok(bytes) => bytes,
            Err(e) => {
                watch.failed(&e);
                return Err(network(e));
            }
        };
        watch.status(status.as_u16(), status.canonical_reason());
        if !status.is_success() {
            let e = parse_error(status, &headers, &bytes, env, scrubber);
            if matches!(e, RailwayError::Unauthorized { .. }) {
                inner.stopped.store(true, Ordering::SeqCst);
            }
            return Err(e);
        }
        let answer: Value = serde_json::from_slice(&bytes).map_err(|e| decode_error(operation, &e))?;
        let errors: Vec<String> = answer
            .get("errors")
            .and_then(Value::as_array)
            .map(|es| {
                es.iter()
                    .map(|e| e.get("message").and_then(Value::as_str).unwrap_or("unknown error").to_string())
                    .collect()
            })
            .unwrap_or_default();
        if !errors.is_empty() {
            let e = graphql_error(operation, &errors, env, scrubber);
            if matches!(e, RailwayError::Unauthorized { .. }) {
                inner.stopped.store(true, Ordering::SeqCst);
            }
            return Err(e);
        }
        match answer.get("data") {
            Some(data) if !data.is_null() => Ok(data.clone()),
            _ => Err(RailwayError::Decode { what: operation.to_string(), message: "the answer has no data".into() }),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Reads

    /// A project token's scope.
    pub async fn project_token(&self) -> Result<TokenScope, RailwayError> {
        let d = self.run::<ops::ProjectToken>(ops::project_token::Variables, Mode::Idempotent, None).await?;
        let t = d.project_token;
        Ok(TokenScope {
            project: Named { id: t.project.id, name: t.project.name },
            environment: Named { id: t.environment.id, name: t.environment.name },
        })
    }

    /// Whether Railway accepts the token, with one read-only request, not retried (for
    /// `shipit login`): the first page of the projects an account or workspace token sees. A
    /// refused token is [`RailwayError::Unauthorized`].
    pub async fn check_token(&self) -> Result<(), RailwayError> {
        self.run::<ops::Projects>(ops::projects::Variables { after: None }, Mode::Once, None).await.map(drop)
    }

    /// Every project the token can see, all pages.
    pub async fn projects(&self) -> Result<Vec<Named>, RailwayError> {
        let mut out = Vec::new();
        let mut after = None;
        // A bound on pages, so a server that always says "more" cannot keep us here.
        for _ in 0..50 {
            let d = self
                .run::<ops::Projects>(ops::projects::Variables { after: after.clone() }, Mode::Idempotent, None)
                .await?;
            out.extend(d.projects.edges.into_iter().map(|e| Named { id: e.node.id, name: e.node.name }));
            match (d.projects.page_info.has_next_page, d.projects.page_info.end_cursor) {
                (true, Some(c)) if Some(&c) != after.as_ref() => after = Some(c),
                _ => break,
            }
        }
        Ok(out)
    }

    /// A project with its environments and services.
    pub async fn project(&self, id: &str) -> Result<ProjectInfo, RailwayError> {
        let d =
            self.run::<ops::Project>(ops::project::Variables { id: id.to_string() }, Mode::Idempotent, None).await?;
        let p = d.project;
        Ok(ProjectInfo {
            id: p.id,
            name: p.name,
            environments: p
                .environments
                .edges
                .into_iter()
                .map(|e| Named { id: e.node.id, name: e.node.name })
                .collect(),
            services: p.services.edges.into_iter().map(|e| Named { id: e.node.id, name: e.node.name }).collect(),
        })
    }

    /// A service instance with its live deployment and limits (one request).
    pub async fn service_instance(&self, environment_id: &str, service_id: &str) -> Result<InstanceInfo, RailwayError> {
        let vars = ops::service_instance::Variables {
            environment_id: environment_id.to_string(),
            service_id: service_id.to_string(),
        };
        let d = self.run::<ops::ServiceInstance>(vars, Mode::Idempotent, None).await?;
        let mut info: InstanceInfo = via_json("ServiceInstance", &d.service_instance)?;
        info.limits = d.service_instance_limits;
        Ok(info)
    }

    /// A service's variables, unrendered. Values may be secrets: never shown.
    pub async fn variables(
        &self,
        project_id: &str,
        environment_id: &str,
        service_id: &str,
    ) -> Result<std::collections::BTreeMap<String, Option<String>>, RailwayError> {
        let vars = ops::variables::Variables {
            project_id: project_id.to_string(),
            environment_id: environment_id.to_string(),
            service_id: service_id.to_string(),
        };
        Ok(self.run::<ops::Variables>(vars, Mode::Idempotent, None).await?.variables)
    }

    /// One deployment, read once (for polling loops, which do their own waiting).
    pub async fn deployment_once(&self, id: &str) -> Result<DeploymentInfo, RailwayError> {
        let d =
            self.run::<ops::Deployment>(ops::deployment::Variables { id: id.to_string() }, Mode::Once, None).await?;
        via_json("Deployment", &d.deployment)
    }

    /// One deployment.
    pub async fn deployment(&self, id: &str) -> Result<DeploymentInfo, RailwayError> {
        let d = self
            .run::<ops::Deployment>(ops::deployment::Variables { id: id.to_string() }, Mode::Idempotent, None)
            .await?;
        via_json("Deployment", &d.deployment)
    }

    /// A service's deployments in one environment, newest first, at most `first`.
    pub async fn deployments(
        &self,
        project_id: &str,
        environment_id: &str,
        service_id: &str,
        first: i64,
        once: bool,
    ) -> Result<Vec<DeploymentInfo>, RailwayError> {
        let vars = ops::deployments::Variables {
            project_id: project_id.to_string(),
            environment_id: environment_id.to_string(),
            service_id: service_id.to_string(),
            first: Some(first),
        };
        let mode = if once { Mode::Once } else { Mode::Idempotent };
        let d = self.run::<ops::Deployments>(vars, mode, None).await?;
        let mut out: Vec<DeploymentInfo> =
            d.deployments.edges.iter().map(|e| via_json("Deployments", &e.node)).collect::<Result<_, _>>()?;
        // Newest first, whatever order the page came in.
        out.sort_by(|a, b| time_key(b.created_at.as_deref()).cmp(&time_key(a.created_at.as_deref())));
        Ok(out)
    }

    // -----------------------------------------------------------------------------------------
    // Writes

    /// Creates an empty service (no source: nothing deploys). Sent once.
    pub async fn service_create(
        &self,
        project_id: &str,
        environment_id: &str,
        name: &str,
    ) -> Result<Named, RailwayError> {
        let vars = ops::service_create::Variables {
            project_id: project_id.to_string(),
            environment_id: environment_id.to_string(),
            name: name.to_string(),
        };
        let d = self.run::<ops::ServiceCreate>(vars, Mode::Once, None).await?;
        Ok(Named { id: d.service_create.id, name: d.service_create.name })
    }

    /// Sets a service instance's source and settings. `input` is a `ServiceInstanceUpdateInput`
    /// with every field set (see [`crate::render::InstanceSettings`]): idempotent, so retried.
    pub async fn service_instance_update(
        &self,
        service_id: &str,
        environment_id: &str,
        input: &Value,
    ) -> Result<(), RailwayError> {
        let input: ops::service_instance_update::ServiceInstanceUpdateInput = via_json("ServiceInstanceUpdate", input)?;
        let vars = ops::service_instance_update::Variables {
            service_id: service_id.to_string(),
            environment_id: environment_id.to_string(),
            input,
        };
        self.run::<ops::ServiceInstanceUpdate>(vars, Mode::Idempotent, None).await.map(|_| ())
    }

    /// Sets a service instance's size.
    pub async fn limits_update(
        &self,
        service_id: &str,
        environment_id: &str,
        vcpus: f64,
        memory_gb: f64,
    ) -> Result<(), RailwayError> {
        let input = ops::service_instance_limits_update::ServiceInstanceLimitsUpdateInput {
            environment_id: environment_id.to_string(),
            service_id: service_id.to_string(),
            v_cp_us: Some(vcpus),
            memory_gb: Some(memory_gb),
        };
        let vars = ops::service_instance_limits_update::Variables { input };
        self.run::<ops::ServiceInstanceLimitsUpdate>(vars, Mode::Idempotent, None).await.map(|_| ())
    }

    /// Starts a deployment of what the instance points at; answers its id. Sent once.
    pub async fn deploy(
        &self,
        service_id: &str,
        environment_id: &str,
        commit_sha: Option<&str>,
    ) -> Result<String, RailwayError> {
        let vars = ops::service_instance_deploy_v2::Variables {
            service_id: service_id.to_string(),
            environment_id: environment_id.to_string(),
            commit_sha: commit_sha.map(str::to_string),
        };
        Ok(self.run::<ops::ServiceInstanceDeployV2>(vars, Mode::Once, None).await?.service_instance_deploy_v2)
    }

    /// Cancels a deployment in progress.
    pub async fn cancel(&self, id: &str) -> Result<(), RailwayError> {
        let vars = ops::deployment_cancel::Variables { id: id.to_string() };
        self.run::<ops::DeploymentCancel>(vars, Mode::Idempotent, None).await.map(|_| ())
    }

    /// Sets `values` on a service (keeping its other variables, starting no deployment).
    /// `secrets` knows the values, to keep them out of any error.
    pub async fn upsert_variables(
        &self,
        project_id: &str,
        environment_id: &str,
        service_id: &str,
        values: std::collections::BTreeMap<String, Option<String>>,
        secrets: &Scrubber,
    ) -> Result<(), RailwayError> {
        let vars = ops::variable_collection_upsert::Variables {
            project_id: project_id.to_string(),
            environment_id: environment_id.to_string(),
            service_id: service_id.to_string(),
            variables: values,
        };
        self.run::<ops::VariableCollectionUpsert>(vars, Mode::Idempotent, Some(secrets)).await.map(|_| ())
    }

    /// Removes one variable of a service.
    pub async fn delete_variable(
        &self,
        project_id: &str,
        environment_id: &str,
        service_id: &str,
        name: &str,
    ) -> Result<(), RailwayError> {
        let vars = ops::variable_delete::Variables {
            project_id: project_id.to_string(),
            environment_id: environment_id.to_string(),
            service_id: service_id.to_string(),
            name: name.to_string(),
        };
        self.run::<ops::VariableDelete>(vars, Mode::Idempotent, None).await.map(|_| ())
    }

    /// A service's public domains in one environment.
    pub async fn domains(
        &self,
        project_id: &str,
        environment_id: &str,
        service_id: &str,
    ) -> Result<Domains, RailwayError> {
        let vars = ops::domains::Variables {
            project_id: project_id.to_string(),
            environment_id: environment_id.to_string(),
            service_id: service_id.to_string(),
        };
        let d = self.run::<ops::Domains>(vars, Mode::Idempotent, None).await?;
        via_json("Domains", &d.domains)
    }

    /// Creates a Railway-generated domain routed to `target_port`; answers its host name. Sent
    /// once: after an ambiguous failure the caller looks ([`Self::domains`]) before sending again.
    pub async fn service_domain_create(
        &self,
        service_id: &str,
        environment_id: &str,
        target_port: u16,
    ) -> Result<String, RailwayError> {
        let input = ops::service_domain_create::ServiceDomainCreateInput {
            environment_id: environment_id.to_string(),
            service_id: service_id.to_string(),
            target_port: Some(i64::from(target_port)),
        };
        let vars = ops::service_domain_create::Variables { input };
        Ok(self.run::<ops::ServiceDomainCreate>(vars, Mode::Once, None).await?.service_domain_create.domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nulls_never_leave() {
        let mut v = json!({"input": {"startCommand": null, "source": {"image": "x", "repo": null}, "list": [{"a": null}]}, "commitSha": null});
        strip_nulls(&mut v);
        assert_eq!(v, json!({"input": {"source": {"image": "x"}, "list": [{}]}}));
    }

    #[test]
    fn decode_errors_quote_nothing() {
        let e = serde_json::from_str::<Vec<u32>>(r#"["s3cret-value"]"#).err().map(|e| decode_error("Variables", &e));
        let shown = e.map(|e| e.to_string()).unwrap_or_default();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("does not have the expected shape"), "{shown}");
    }
}
