//! `.github/workflows/shipit.yml`: check, build, deploy, promote and roll back from GitHub
//! Actions, as generated: it passes `check-workflows` (actionlint and zizmor) with no finding.
//!
//! Jobs:
//!
//! - `check` (pull requests): `shipit render --to all --env <production> --check` fails a pull
//!   request whose committed platform files (and this workflow) drifted from `shipit.toml`.
//! - `build` (push to `main`): one matrix entry per service builds its Dockerfile for
//!   `linux/amd64` and `linux/arm64` and pushes `<image>:<commit sha>` and `<image>:latest`,
//!   with a GitHub Actions build cache per service.
//! - `deploy-staging` (after `build`): `shipit secrets sync`, then
//!   `shipit deploy --env <staging> --tag "$GITHUB_SHA"`.
//! - `promote-<env>` and `rollback-<env>` (manual, `workflow_dispatch` with `action` and
//!   `environment` inputs): one job per environment, so each passes exactly the variables that
//!   environment's platform needs. `promote` moves the digests staging runs, nothing rebuilt;
//!   `rollback` returns to the previous good release.
//!
//! "Staging" is the environment named `staging`, else the manifest's first; "production" (the
//! default of the manual jobs and the environment `check` compares) is the one named
//! `production`, else the last.
//!
//! Choices:
//!
//! - shipit comes from this repository's GitHub Action at the tag of the version that rendered
//!   the file (a checksummed release binary, cached), not from a source build.
//! - Permissions are granted per job, least first: `contents: read` everywhere, `packages: write`
//!   only in the jobs that push images or move tags; the workflow itself grants nothing.
//!   Checkouts do not persist credentials.
//! - Each variable reaches only the step that reads it ([`Needs`]): the platform token, the
//!   manifest's secrets (and on Fly the database URLs) for `secrets sync`; the token and the
//!   registry's for `deploy`, `promote` and `rollback`.
//! - Each deploying job runs in a GitHub environment of the same name, so secrets can differ
//!   per environment (environment secrets win over repository secrets), and in a concurrency
//!   group `shipit-<environment>` that queues rather than cancels.
//! - No expression is spliced into a `run:` script: the commit comes from `GITHUB_SHA`, and the
//!   environment names are the manifest's (lowercase letters, digits, dashes).
//! - The workflow expects `shipit.toml` at the repository root.

use std::collections::{BTreeMap, BTreeSet};

use indexmap::IndexMap;
use serde::Serialize;

use crate::compose::to_yaml;
use crate::files::{RenderError, RenderedFile};
use crate::model::{App, Environment, PlatformKind};
use crate::platform::database_reference_names;

/// The path of the rendered file.
pub const PATH: &str = ".github/workflows/shipit.yml";

/// The shipit version the workflow installs: this crate's.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `owner/repo` of shipit's own GitHub Action (this workspace's repository).
fn action_repo() -> &'static str {
    env!("CARGO_PKG_REPOSITORY").strip_prefix("https://github.com/").unwrap_or("shipit-dev/shipit")
}

const CHECKOUT: &str = "actions/checkout@v6";

/// The variable holding `platform`'s API token, as the CLI reads it.
pub fn token_var(platform: PlatformKind) -> &'static str {
    match platform {
        PlatformKind::Fly => "FLY_API_TOKEN",
        PlatformKind::Railway => "RAILWAY_TOKEN",
        PlatformKind::Render => "RENDER_API_KEY",
    }
}

/// Railway's account token: the one that sees two environments (a project token sees one).
const RAILWAY_ACCOUNT_TOKEN: &str = "RAILWAY_API_TOKEN";

/// The variables each shipit step of the workflow passes, for one environment: exactly what
/// that command reads on the environment's platform. The rendered workflow is built from this,
/// and the CLI's end-to-end tests run each step with exactly these variables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Needs {
    /// The environment's platform; `None` when it has no target and the manifest declares
    /// several (the workflow does not deploy it).
    pub platform: Option<PlatformKind>,
    /// `shipit secrets sync --env <env>`: the platform token and every secret name the
    /// platform needs (on Fly, the database URLs from `env_from` too).
    pub sync: BTreeSet<String>,
    /// `shipit deploy`: the platform token and the registry's; on Render the secrets too,
    /// which a service gets in the request that creates it.
    pub deploy: BTreeSet<String>,
    /// `shipit rollback`: the platform token and the registry's.
    pub rollback: BTreeSet<String>,
    /// `shipit promote <staging> <env>`: both environments' tokens (Railway's account token
    /// to read a Railway staging) and the registry's, and on Render the secrets; `None` for
    /// staging itself.
    pub promote: Option<BTreeSet<String>>,
}

/// What each step of the workflow passes for environment `env` (see [`Needs`]).
pub fn needs(app: &App, env: &Environment) -> Needs {
    let Some(kind) = app.resolve_platform(None, Some(&env.name)) else { return Needs::default() };
    let staging = staging_of(app);
    let mut sync: BTreeSet<String> = secret_names(kind, env);
    if !sync.is_empty() {
        sync.insert(token_var(kind).to_string());
    }
    let registry = registry_vars(app, env, kind);
    let mut deploy: BTreeSet<String> = registry.clone();
    deploy.insert(token_var(kind).to_string());
    // Render starts a service's first deploy when it creates it: the secrets go in that request.
    let creates_with_secrets = if kind == PlatformKind::Render { secret_names(kind, env) } else { BTreeSet::new() };
    let rollback = deploy.clone();
    deploy.extend(creates_with_secrets.iter().cloned());
    let promote = staging.filter(|s| s.name != env.name).and_then(|s| {
        let from = app.resolve_platform(None, Some(&s.name))?;
        let mut vars = registry.clone();
        vars.extend(creates_with_secrets.iter().cloned());
        if from == PlatformKind::Railway {
            // Reading staging from a job of another GitHub environment: a project token sees
            // only its own environment, so the account token.
            vars.insert(RAILWAY_ACCOUNT_TOKEN.to_string());
            if kind == PlatformKind::Railway && sync.remove(token_var(kind)) {
                sync.insert(RAILWAY_ACCOUNT_TOKEN.to_string());
            }
        } else {
            vars.insert(token_var(from).to_string());
        }
        if !(from == PlatformKind::Railway && kind == PlatformKind::Railway) {
            vars.insert(token_var(kind).to_string());
        }
        Some(vars)
    });
    Needs { platform: Some(kind), sync, deploy, rollback, promote }
}

/// Secret names `env`'s services need on `kind`.
fn secret_names(kind: PlatformKind, env: &Environment) -> BTreeSet<String> {
    env.services
        .values()
        .flat_map(|s| {
            let databases = (kind == PlatformKind::Fly).then(|| database_reference_names(s)).into_iter().flatten();
            s.secret_names().chain(databases).map(str::to_string).collect::<Vec<_>>()
        })
        .collect()
}

/// The registry credential shipit reads for `env` on `kind`, for images on GHCR (resolving
/// tags, moving them): the job's `GITHUB_TOKEN`; on Render `GHCR_TOKEN` instead, a lasting
/// token that Render also pulls private images with (unless `[targets.render]
/// registry_credential` names one), and which the registry client prefers when both are set.
fn registry_vars(app: &App, env: &Environment, kind: PlatformKind) -> BTreeSet<String> {
    let ghcr = env.services.values().any(|s| s.image.registry == GHCR);
    let name = if kind == PlatformKind::Render && app.targets.render.registry_credential.is_none() {
        "GHCR_TOKEN"
    } else {
        "GITHUB_TOKEN"
    };
    ghcr.then(|| name.to_string()).into_iter().collect()
}

fn staging_of(app: &App) -> Option<&Environment> {
    app.environments.get("staging").or_else(|| app.environments.values().next())
}

fn production_of(app: &App) -> Option<&Environment> {
    app.environments.get("production").or_else(|| app.environments.values().last())
}

/// Renders `.github/workflows/shipit.yml`.
///
/// `env` is accepted for symmetry with the other renderers: the workflow covers every
/// environment of the manifest.
pub fn render(app: &App, env: &str) -> Result<Vec<RenderedFile>, RenderError> {
    let _ = env;
    let (Some(staging), Some(production)) = (staging_of(app), production_of(app)) else {
        return Err(RenderError::new("github", "the manifest declares no environment"));
    };
    let needs: IndexMap<&str, Needs> = app.environments.values().map(|e| (e.name.as_str(), needs(app, e))).collect();
    let deployed: Vec<&Environment> = app
        .environments
        .values()
        .filter(|e| needs.get(e.name.as_str()).is_some_and(|n| n.platform.is_some()))
        .collect();
    let promotable: Vec<&Environment> =
        deployed.iter().copied().filter(|e| needs.get(e.name.as_str()).is_some_and(|n| n.promote.is_some())).collect();

    let mut jobs = IndexMap::new();
    jobs.insert("check".to_string(), check_job(&production.name));
    jobs.insert("build".to_string(), build_job(app));
    if let Some(n) = needs.get(staging.name.as_str()).filter(|n| n.platform.is_some()) {
        jobs.insert("deploy-staging".to_string(), deploy_staging_job(&staging.name, n));
    }
    for e in &promotable {
        if let Some(n) = needs.get(e.name.as_str()) {
            jobs.insert(format!("promote-{}", e.name), promote_job(&staging.name, &e.name, n));
        }
    }
    if !promotable.is_empty() {
        jobs.insert("promote-to-itself".to_string(), refuse_job(&staging.name));
    }
    for e in &deployed {
        if let Some(n) = needs.get(e.name.as_str()) {
            jobs.insert(format!("rollback-{}", e.name), rollback_job(&e.name, n));
        }
    }

    let mut actions = Vec::new();
    if !promotable.is_empty() {
        actions.push("promote".to_string());
    }
    actions.push("rollback".to_string());
    let inputs = IndexMap::from([
        (
            "action",
            Input {
                description: format!("promote (the images {} runs) or roll back", staging.name),
                required: true,
                kind: "choice",
                default: actions[0].clone(),
                options: actions,
            },
        ),
        (
            "environment",
            Input {
                description: "Environment to promote to or roll back".to_string(),
                required: true,
                kind: "choice",
                options: deployed.iter().map(|e| e.name.clone()).collect(),
                default: production.name.clone(),
            },
        ),
    ]);

    let workflow = Workflow {
        name: "shipit",
        on: On {
            pull_request: PullRequest { branches: vec!["main".to_string()] },
            push: Push { branches: vec!["main".to_string()] },
            workflow_dispatch: Dispatch { inputs },
        },
        permissions: IndexMap::new(),
        jobs,
    };
    let yaml = to_yaml(&workflow).map_err(|e| RenderError::new("github", e))?;
    Ok(vec![RenderedFile::new(PATH, header(app, &needs) + &yaml)])
}

/// The header: which GitHub secrets to set, per environment.
fn header(app: &App, needs: &IndexMap<&str, Needs>) -> String {
    let mut text = String::from("# generated by shipit from shipit.toml: edit shipit.toml, not this file\n");
    text.push_str("# GitHub secrets each environment's jobs pass (set them per environment or for the repository):\n");
    for (env, n) in needs {
        let Some(kind) = n.platform else {
            text.push_str(&format!("#   {env}: not deployed here (no `target`, and the manifest declares several)\n"));
            continue;
        };
        let mut names: BTreeSet<&str> = n.sync.iter().chain(&n.deploy).chain(&n.rollback).map(String::as_str).collect();
        names.extend(n.promote.iter().flatten().map(String::as_str));
        names.remove("GITHUB_TOKEN");
        let names: Vec<&str> = names.into_iter().collect();
        text.push_str(&format!("#   {env} ({kind}): {}\n", names.join(", ")));
    }
    text.push_str("# GITHUB_TOKEN is the job's own (packages: write only where it pushes images or moves tags).\n");
    if needs.values().any(|n| n.deploy.contains("GHCR_TOKEN")) {
        text.push_str(
            "# GHCR_TOKEN: a token that can read and write the packages; Render keeps it to pull private images.\n",
        );
    }
    if registries(app).iter().any(|r| r != GHCR) {
        text.push_str(
            "# The build job logs in to registries other than ghcr.io with REGISTRY_USERNAME and REGISTRY_PASSWORD.\n",
        );
    }
    text
}

const GHCR: &str = "ghcr.io";

#[derive(Serialize)]
struct Workflow {
    name: &'static str,
    on: On,
    permissions: IndexMap<&'static str, &'static str>,
    jobs: IndexMap<String, Job>,
}

#[derive(Serialize)]
struct On {
    pull_request: PullRequest,
    push: Push,
    workflow_dispatch: Dispatch,
}

#[derive(Serialize)]
struct PullRequest {
    branches: Vec<String>,
}

#[derive(Serialize)]
struct Push {
    branches: Vec<String>,
}

#[derive(Serialize)]
struct Dispatch {
    inputs: IndexMap<&'static str, Input>,
}

#[derive(Serialize)]
struct Input {
    description: String,
    required: bool,
    #[serde(rename = "type")]
    kind: &'static str,
    options: Vec<String>,
    default: String,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Job {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    needs: Option<&'static str>,
    #[serde(rename = "if")]
    condition: String,
    runs_on: &'static str,
    timeout_minutes: u32,
    permissions: IndexMap<&'static str, &'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    environment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    concurrency: Option<Concurrency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    strategy: Option<Strategy>,
    steps: Vec<Step>,
}

impl Job {
    fn new(name: String, condition: String, permissions: &[(&'static str, &'static str)], steps: Vec<Step>) -> Self {
        Self {
            name,
            needs: None,
            condition,
            runs_on: "ubuntu-latest",
            timeout_minutes: 30,
            permissions: permissions.iter().copied().collect(),
            environment: None,
            concurrency: None,
            strategy: None,
            steps,
        }
    }

    /// `contents: read`, and `packages: write` when a step is given the job's `GITHUB_TOKEN`
    /// (to push images or move tags).
    fn least_permissions(mut self) -> Self {
        let pushes = self.steps.iter().any(|s| s.env.contains_key("GITHUB_TOKEN"));
        self.permissions = (if pushes { PUSH } else { READ }).iter().copied().collect();
        self
    }

    /// Runs in the GitHub environment `env`, queued behind any other job acting on it.
    fn in_environment(mut self, env: &str) -> Self {
        self.environment = Some(env.to_string());
        self.concurrency = Some(Concurrency { group: format!("shipit-{env}"), cancel_in_progress: false });
        self
    }
}

const READ: &[(&str, &str)] = &[("contents", "read")];
const PUSH: &[(&str, &str)] = &[("contents", "read"), ("packages", "write")];

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Concurrency {
    group: String,
    cancel_in_progress: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Strategy {
    fail_fast: bool,
    matrix: Matrix,
}

#[derive(Serialize)]
struct Matrix {
    include: Vec<MatrixEntry>,
}

#[derive(Serialize)]
struct MatrixEntry {
    service: String,
    image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    registry: Option<String>,
    context: String,
    dockerfile: String,
}

#[derive(Serialize, Default)]
struct Step {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(rename = "if", skip_serializing_if = "Option::is_none")]
    condition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uses: Option<String>,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    with: IndexMap<&'static str, With>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    env: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    run: Option<String>,
}

impl Step {
    fn uses(action: impl Into<String>) -> Self {
        Self { uses: Some(action.into()), ..Self::default() }
    }

    fn run(name: &str, script: String) -> Self {
        Self { name: Some(name.to_string()), run: Some(script), ..Self::default() }
    }

    fn with(mut self, key: &'static str, value: impl Into<With>) -> Self {
        self.with.insert(key, value.into());
        self
    }

    /// Each of `names` from the GitHub secret of the same name (`GITHUB_TOKEN`: the job's).
    fn secrets<'a>(mut self, names: impl IntoIterator<Item = &'a String>) -> Self {
        self.env.extend(names.into_iter().map(|n| (n.clone(), secret(n))));
        self
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum With {
    Str(String),
    Bool(bool),
}

impl From<&str> for With {
    fn from(s: &str) -> Self {
        Self::Str(s.to_string())
    }
}

impl From<String> for With {
    fn from(s: String) -> Self {
        Self::Str(s)
    }
}

impl From<bool> for With {
    fn from(b: bool) -> Self {
        Self::Bool(b)
    }
}

/// `${{ expr }}`.
fn expr(e: &str) -> String {
    format!("${{{{ {e} }}}}")
}

/// `${{ secrets.NAME }}`.
fn secret(name: &str) -> String {
    expr(&format!("secrets.{name}"))
}

/// Registries the services' images live in.
fn registries(app: &App) -> BTreeSet<String> {
    app.services.values().map(|s| s.image.registry.clone()).collect()
}

/// A checkout that leaves no token behind in `.git/config`.
fn checkout() -> Step {
    Step::uses(CHECKOUT).with("persist-credentials", false)
}

/// Checkout, then shipit from its GitHub Action at this version's tag.
fn setup_steps() -> Vec<Step> {
    vec![
        checkout(),
        Step { name: Some("Install shipit".to_string()), ..Step::uses(format!("{}@v{VERSION}", action_repo())) },
    ]
}

fn check_job(production: &str) -> Job {
    let mut steps = setup_steps();
    steps.push(Step::run(
        "Platform files match shipit.toml",
        format!("shipit render --to all --env {production} --check"),
    ));
    let mut job = Job::new(
        "platform files match shipit.toml".to_string(),
        "github.event_name == 'pull_request'".to_string(),
        READ,
        steps,
    );
    job.timeout_minutes = 10;
    job
}

fn build_job(app: &App) -> Job {
    let registries = registries(app);
    let several = registries.len() > 1;
    let include = app
        .services
        .values()
        .map(|s| MatrixEntry {
            service: s.name.clone(),
            image: s.image.name(),
            registry: several.then(|| s.image.registry.clone()),
            context: s.build.context.clone(),
            dockerfile: s.build.dockerfile.clone(),
        })
        .collect();
    let mut steps =
        vec![checkout(), Step::uses("docker/setup-qemu-action@v4"), Step::uses("docker/setup-buildx-action@v4")];
    for registry in &registries {
        let (user, password) = if registry == GHCR {
            (expr("github.actor"), secret("GITHUB_TOKEN"))
        } else {
            (secret("REGISTRY_USERNAME"), secret("REGISTRY_PASSWORD"))
        };
        let mut login = Step::uses("docker/login-action@v4")
            .with("registry", registry.as_str())
            .with("username", user)
            .with("password", password);
        if several {
            login.condition = Some(format!("matrix.registry == '{registry}'"));
        }
        steps.push(login);
    }
    let image = expr("matrix.image");
    let scope = expr("matrix.service");
    steps.push(
        Step::uses("docker/build-push-action@v7")
            .with("context", expr("matrix.context"))
            .with("file", expr("matrix.dockerfile"))
            .with("platforms", "linux/amd64,linux/arm64")
            .with("push", true)
            .with("tags", format!("{image}:{}\n{image}:latest\n", expr("github.sha")))
            .with("cache-from", format!("type=gha,scope={scope}"))
            .with("cache-to", format!("type=gha,mode=max,scope={scope}")),
    );
    let mut job = Job::new(
        format!("build {}", expr("matrix.service")),
        "github.event_name == 'push' && github.ref == 'refs/heads/main'".to_string(),
        PUSH,
        steps,
    );
    job.timeout_minutes = 60;
    job.strategy = Some(Strategy { fail_fast: true, matrix: Matrix { include } });
    job
}

/// `shipit secrets sync`, when the environment has secrets.
fn sync_step(env: &str, names: &BTreeSet<String>) -> Option<Step> {
    (!names.is_empty()).then(|| Step::run("Sync secrets", format!("shipit secrets sync --env {env}")).secrets(names))
}

fn deploy_staging_job(staging: &str, needs: &Needs) -> Job {
    let mut steps = setup_steps();
    steps.extend(sync_step(staging, &needs.sync));
    steps.push(
        Step::run("Deploy", format!("shipit deploy --env {staging} --tag \"$GITHUB_SHA\"")).secrets(&needs.deploy),
    );
    let mut job = Job::new(
        format!("deploy to {staging}"),
        "github.event_name == 'push' && github.ref == 'refs/heads/main'".to_string(),
        READ,
        steps,
    )
    .least_permissions()
    .in_environment(staging);
    job.needs = Some("build");
    job
}

/// The condition of the manual job doing `action` to `env`.
fn dispatched(action: &str, env: &str) -> String {
    format!("github.event_name == 'workflow_dispatch' && inputs.action == '{action}' && inputs.environment == '{env}'")
}

fn promote_job(staging: &str, env: &str, needs: &Needs) -> Job {
    let mut steps = setup_steps();
    steps.extend(sync_step(env, &needs.sync));
    let promote = needs.promote.clone().unwrap_or_default();
    steps.push(Step::run("Promote", format!("shipit promote {staging} {env}")).secrets(&promote));
    Job::new(format!("promote {staging} to {env}"), dispatched("promote", env), READ, steps)
        .least_permissions()
        .in_environment(env)
}

/// Fails a promotion of staging to itself, which no other job would run.
fn refuse_job(staging: &str) -> Job {
    let steps = vec![Step::run(
        "Refuse to promote to itself",
        format!("echo \"::error::{staging} is where promotions come from; pick another environment\"; exit 1"),
    )];
    let mut job = Job::new(format!("promote {staging} to itself"), dispatched("promote", staging), &[], steps);
    job.timeout_minutes = 5;
    job
}

fn rollback_job(env: &str, needs: &Needs) -> Job {
    let mut steps = setup_steps();
    steps.push(Step::run("Roll back", format!("shipit rollback --env {env}")).secrets(&needs.rollback));
    Job::new(format!("roll back {env}"), dispatched("rollback", env), READ, steps)
        .least_permissions()
        .in_environment(env)
}
