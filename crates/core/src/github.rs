//! `.github/workflows/shipit.yml`: build, deploy, promote and roll back from GitHub Actions.
//!
//! The workflow has four jobs:
//!
//! - `build` (on push to `main`): one matrix entry per service builds its Dockerfile for
//!   `linux/amd64` and `linux/arm64` and pushes `<image>:<commit sha>` and `<image>:latest`,
//!   with a GitHub Actions build cache per service.
//! - `deploy-staging` (after `build`): `shipit secrets sync`, then
//!   `shipit deploy --env <staging> --tag <sha> --sha <sha>`.
//! - `promote` and `rollback` (manual, `workflow_dispatch` with `action` and `environment`
//!   inputs): `shipit promote <staging> <environment>` moves the digests staging runs, nothing
//!   rebuilt; `shipit rollback --env <environment>` returns to the previous good release.
//!
//! "Staging" is the environment named `staging`, else the manifest's first; the default target
//! of the manual jobs is `production`, else the last environment.
//!
//! Choices:
//!
//! - Each deploying job runs in a GitHub environment of the same name, so secrets can differ
//!   per environment (environment secrets win over repository secrets), and in a concurrency
//!   group `shipit-<environment>` that queues rather than cancels: a deploy is never cut off
//!   halfway, and a promotion never races a deploy of the same environment.
//! - Platform tokens (`FLY_API_TOKEN`, `RAILWAY_TOKEN`, `RENDER_API_KEY`) come from secrets of
//!   those names; `deploy-staging` gets the token of staging's target, the manual jobs those of
//!   every environment's target. An environment without a `target` gets the tokens of every
//!   declared target. The registry is reached with the job's `GITHUB_TOKEN`
//!   (`packages: write`, which promotion needs to retag); a registry other than `ghcr.io` is
//!   logged in to with the `REGISTRY_USERNAME` and `REGISTRY_PASSWORD` secrets.
//! - Inputs reach shell commands through environment variables, never spliced into the script.
//! - shipit is installed with `cargo install --locked` at this crate's version and cached.
//! - The workflow expects `shipit.toml` at the repository root.

use std::collections::BTreeSet;

use indexmap::IndexMap;
use serde::Serialize;

use crate::compose::to_yaml;
use crate::files::{RenderError, RenderedFile};
use crate::model::{App, Environment, PlatformKind};

/// The path of the rendered file.
pub const PATH: &str = ".github/workflows/shipit.yml";

/// The shipit version the workflow installs: this crate's.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The variable holding `platform`'s API token, as the CLI reads it.
pub fn token_var(platform: PlatformKind) -> &'static str {
    match platform {
        PlatformKind::Fly => "FLY_API_TOKEN",
        PlatformKind::Railway => "RAILWAY_TOKEN",
        PlatformKind::Render => "RENDER_API_KEY",
    }
}

/// Renders `.github/workflows/shipit.yml`.
///
/// `env` is accepted for symmetry with the other renderers: the workflow covers every
/// environment of the manifest.
pub fn render(app: &App, env: &str) -> Result<Vec<RenderedFile>, RenderError> {
    let _ = env;
    let envs: Vec<&Environment> = app.environments.values().collect();
    let (Some(first), Some(last)) = (envs.first(), envs.last()) else {
        return Err(RenderError::new("github", "the manifest declares no environment"));
    };
    let staging = app.environments.get("staging").unwrap_or(first);
    let production = app.environments.get("production").unwrap_or(last);
    let can_promote = envs.len() > 1;

    let staging_tokens = tokens(app, [staging]);
    let all_tokens = tokens(app, envs.iter().copied());
    let staging_secrets = secrets(staging);
    let all_secrets: BTreeSet<&str> = envs.iter().flat_map(|e| secrets(e)).collect();

    let mut jobs = IndexMap::new();
    jobs.insert("build".to_string(), build_job(app));
    jobs.insert("deploy-staging".to_string(), deploy_staging_job(&staging.name, &staging_tokens, &staging_secrets));
    if can_promote {
        jobs.insert("promote".to_string(), promote_job(&staging.name, &all_tokens, &all_secrets));
    }
    jobs.insert("rollback".to_string(), rollback_job(&all_tokens));

    let mut actions = Vec::new();
    if can_promote {
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
                options: app.environments.keys().cloned().collect(),
                default: production.name.clone(),
            },
        ),
    ]);

    let workflow = Workflow {
        name: "shipit",
        on: On { push: Push { branches: vec!["main".to_string()] }, workflow_dispatch: Dispatch { inputs } },
        permissions: IndexMap::from([("contents", "read"), ("packages", "write")]),
        jobs,
    };
    let yaml = to_yaml(&workflow).map_err(|e| RenderError::new("github", e))?;

    let mut repo_secrets: BTreeSet<&str> = all_tokens.iter().map(|p| token_var(*p)).collect();
    repo_secrets.extend(all_secrets.iter().copied());
    if registries(app).iter().any(|r| r != GHCR) {
        repo_secrets.extend(["REGISTRY_USERNAME", "REGISTRY_PASSWORD"]);
    }
    let mut text = String::from("# generated by shipit from shipit.toml: edit shipit.toml, not this file\n");
    if !repo_secrets.is_empty() {
        let names: Vec<&str> = repo_secrets.into_iter().collect();
        text.push_str(&format!("# secrets to set (per environment or for the repository): {}\n", names.join(", ")));
    }
    text.push_str(&yaml);
    Ok(vec![RenderedFile::new(PATH, text)])
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
    push: Push,
    workflow_dispatch: Dispatch,
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
    condition: &'static str,
    runs_on: &'static str,
    timeout_minutes: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    environment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    concurrency: Option<Concurrency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    strategy: Option<Strategy>,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    env: IndexMap<String, String>,
    steps: Vec<Step>,
}

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
    uses: Option<&'static str>,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    with: IndexMap<&'static str, With>,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    env: IndexMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    run: Option<String>,
}

impl Step {
    fn uses(action: &'static str) -> Self {
        Self { uses: Some(action), ..Self::default() }
    }

    fn run(name: &str, script: String) -> Self {
        Self { name: Some(name.to_string()), run: Some(script), ..Self::default() }
    }

    fn with(mut self, key: &'static str, value: impl Into<With>) -> Self {
        self.with.insert(key, value.into());
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

/// Platforms whose tokens the jobs deploying `envs` need.
fn tokens<'a>(app: &App, envs: impl IntoIterator<Item = &'a Environment>) -> BTreeSet<PlatformKind> {
    envs.into_iter().flat_map(|e| e.target.map_or_else(|| app.targets.declared(), |t| vec![t])).collect()
}

/// Names of the secrets `env`'s services need.
fn secrets(env: &Environment) -> BTreeSet<&str> {
    env.services.values().flat_map(|s| s.secret_names()).collect()
}

/// Registries the services' images live in.
fn registries(app: &App) -> BTreeSet<String> {
    app.services.values().map(|s| s.image.registry.clone()).collect()
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
    let mut steps = vec![
        Step::uses("actions/checkout@v4"),
        Step::uses("docker/setup-qemu-action@v3"),
        Step::uses("docker/setup-buildx-action@v3"),
    ];
    for registry in &registries {
        let (user, password) = if registry == GHCR {
            (expr("github.actor"), secret("GITHUB_TOKEN"))
        } else {
            (secret("REGISTRY_USERNAME"), secret("REGISTRY_PASSWORD"))
        };
        let mut login = Step::uses("docker/login-action@v3")
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
        Step::uses("docker/build-push-action@v6")
            .with("context", expr("matrix.context"))
            .with("file", expr("matrix.dockerfile"))
            .with("platforms", "linux/amd64,linux/arm64")
            .with("push", true)
            .with("tags", format!("{image}:{}\n{image}:latest\n", expr("github.sha")))
            .with("cache-from", format!("type=gha,scope={scope}"))
            .with("cache-to", format!("type=gha,mode=max,scope={scope}")),
    );
    Job {
        name: format!("build {}", expr("matrix.service")),
        needs: None,
        condition: "github.event_name == 'push'",
        runs_on: "ubuntu-latest",
        timeout_minutes: 60,
        environment: None,
        concurrency: None,
        strategy: Some(Strategy { fail_fast: true, matrix: Matrix { include } }),
        env: IndexMap::new(),
        steps,
    }
}

/// Job-level variables: platform tokens and the registry token.
fn job_env(tokens: &BTreeSet<PlatformKind>) -> IndexMap<String, String> {
    let mut env: IndexMap<String, String> =
        tokens.iter().map(|p| (token_var(*p).to_string(), secret(token_var(*p)))).collect();
    env.insert("GITHUB_TOKEN".to_string(), secret("GITHUB_TOKEN"));
    env
}

/// Checkout and a cached `cargo install` of shipit.
fn setup_steps() -> Vec<Step> {
    vec![
        Step::uses("actions/checkout@v4"),
        Step { name: Some("Cache shipit".to_string()), ..Step::uses("actions/cache@v4") }
            .with("path", "~/.cargo/bin/shipit")
            .with("key", format!("shipit-{VERSION}-{}-{}", expr("runner.os"), expr("runner.arch"))),
        Step::run(
            "Install shipit",
            format!("command -v shipit >/dev/null || cargo install --locked shipit --version {VERSION}"),
        ),
    ]
}

/// `shipit secrets sync`, with each secret's value from the GitHub secret of the same name.
fn sync_step(env_arg: &str, names: &BTreeSet<&str>) -> Option<Step> {
    if names.is_empty() {
        return None;
    }
    let mut step = Step::run("Sync secrets", format!("shipit secrets sync --env {env_arg}"));
    step.env.extend(names.iter().map(|n| (n.to_string(), secret(n))));
    Some(step)
}

fn deploy_staging_job(staging: &str, tokens: &BTreeSet<PlatformKind>, secrets: &BTreeSet<&str>) -> Job {
    let mut steps = setup_steps();
    steps.extend(sync_step(staging, secrets));
    let sha = expr("github.sha");
    steps.push(Step::run("Deploy", format!("shipit deploy --env {staging} --tag {sha} --sha {sha}")));
    Job {
        name: format!("deploy to {staging}"),
        needs: Some("build"),
        condition: "github.event_name == 'push' && github.ref == 'refs/heads/main'",
        runs_on: "ubuntu-latest",
        timeout_minutes: 30,
        environment: Some(staging.to_string()),
        concurrency: Some(Concurrency { group: format!("shipit-{staging}"), cancel_in_progress: false }),
        strategy: None,
        env: job_env(tokens),
        steps,
    }
}

/// A manual job acting on the environment chosen in the `environment` input.
fn manual_job(name: String, condition: &'static str, tokens: &BTreeSet<PlatformKind>, steps: Vec<Step>) -> Job {
    let target = expr("inputs.environment");
    let mut env = job_env(tokens);
    env.insert("SHIPIT_ENV".to_string(), target.clone());
    let mut all = setup_steps();
    all.extend(steps);
    Job {
        name,
        needs: None,
        condition,
        runs_on: "ubuntu-latest",
        timeout_minutes: 30,
        environment: Some(target.clone()),
        concurrency: Some(Concurrency { group: format!("shipit-{target}"), cancel_in_progress: false }),
        strategy: None,
        env,
        steps: all,
    }
}

fn promote_job(staging: &str, tokens: &BTreeSet<PlatformKind>, secrets: &BTreeSet<&str>) -> Job {
    let mut steps = Vec::new();
    steps.extend(sync_step("\"$SHIPIT_ENV\"", secrets));
    steps.push(Step::run("Promote", format!("shipit promote {staging} \"$SHIPIT_ENV\"")));
    let mut job = manual_job(
        format!("promote {staging} to {}", expr("inputs.environment")),
        "github.event_name == 'workflow_dispatch' && inputs.action == 'promote'",
        tokens,
        steps,
    );
    let guard = Step {
        condition: Some(format!("inputs.environment == '{staging}'")),
        ..Step::run(
            "Refuse to promote to itself",
            format!("echo \"::error::{staging} is where promotions come from; pick another environment\"; exit 1"),
        )
    };
    job.steps.insert(0, guard);
    job
}

fn rollback_job(tokens: &BTreeSet<PlatformKind>) -> Job {
    manual_job(
        format!("roll back {}", expr("inputs.environment")),
        "github.event_name == 'workflow_dispatch' && inputs.action == 'rollback'",
        tokens,
        vec![Step::run("Roll back", "shipit rollback --env \"$SHIPIT_ENV\"".to_string())],
    )
}
