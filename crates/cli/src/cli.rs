//! Command-line flags.

use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

/// Deploy one app, described once in shipit.toml, to Fly.io, Railway and Render.
#[derive(Debug, Parser)]
#[command(
    name = "shipit",
    version = env!("SHIPIT_BUILD_VERSION"),
    about,
    propagate_version = true,
    after_help = "Examples:\n  shipit init --from-dockerfiles && shipit validate\n  shipit deploy --env staging --tag \"$GITHUB_SHA\"\n  shipit promote staging production\n  shipit rollback --env production\n\nEvery command: shipit help COMMAND. The manual: docs/cli.md, or shipit man."
)]
pub struct Cli {
    /// The manifest (default: the nearest shipit.toml, from here up to the repository root).
    #[arg(id = "file", short = 'f', long = "file", global = true, env = "SHIPIT_FILE", value_name = "PATH", help_heading = GLOBAL)]
    pub file_arg: Option<PathBuf>,
    /// The manifest commands read: `-f`, else `SHIPIT_FILE`, else the one found by
    /// [`crate::locate`] (set by `main` once the flags are parsed).
    #[arg(skip)]
    pub file: PathBuf,
    /// Where shipit.toml was looked for when neither `-f` nor `SHIPIT_FILE` named it.
    #[arg(skip)]
    pub searched: Option<crate::locate::Searched>,
    /// The command's `--env` came from `SHIPIT_ENV`.
    #[arg(skip)]
    pub env_from_variable: bool,
    /// Machine-readable output: NDJSON on stdout, human text on stderr.
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,
    /// Print only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose", help_heading = GLOBAL)]
    pub quiet: bool,
    /// Print each API request (-v) and each retry and wait (-vv) to stderr, and every error's causes.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = GLOBAL)]
    pub verbose: u8,
    /// Colour status words and problems: auto (on a terminal, unless NO_COLOR or TERM=dumb), always, never.
    #[arg(long, global = true, value_enum, default_value = "auto", value_name = "WHEN", help_heading = GLOBAL)]
    pub color: ColorChoice,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// When to colour output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless NO_COLOR is set or TERM=dumb.
    Auto,
    /// Always, even into a pipe.
    Always,
    /// Never.
    Never,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the manifest; every problem is reported with file:line:column.
    #[command(
        after_help = "Examples:\n  shipit validate\n  shipit validate -f deploy/shipit.toml\n  shipit --json validate | jq .problems"
    )]
    Validate,
    /// Write each platform's files for one environment (or check them for drift).
    #[command(
        after_help = "Examples:\n  shipit render --to all --env production\n  shipit render --to github\n  shipit render --to all --env production --check    # exit 2 on drift"
    )]
    Render(RenderArgs),
    /// Write a shipit.toml, from apps/*/Dockerfile with --from-dockerfiles.
    #[command(
        after_help = "Examples:\n  shipit init --from-dockerfiles\n  shipit init --app shop --namespace acme --to render"
    )]
    Init(InitArgs),
    /// Show what a deploy would change, field by field; exit 2 when something would.
    #[command(
        after_help = "Examples:\n  shipit plan --env production\n  shipit plan --env staging --tag \"$GITHUB_SHA\""
    )]
    Plan(PlanArgs),
    /// Roll services out to the images a tag points to, health-gated, rolling back on failure.
    #[command(
        after_help = "Examples:\n  shipit deploy --env staging --tag \"$GITHUB_SHA\"\n  shipit deploy --env staging --tag 3f2c1ab --service api --dry-run\n  shipit --json deploy --env production --tag v1.4.0 --atomic | jq -c 'select(.event == \"summary\")'"
    )]
    Deploy(DeployArgs),
    /// Deploy to TO exactly the image digests FROM runs (nothing rebuilt), health-gated.
    #[command(
        after_help = "Examples:\n  shipit promote staging production\n  shipit promote staging production --service api"
    )]
    Promote(PromoteArgs),
    /// Return services to an earlier successful release.
    #[command(
        after_help = "Examples:\n  shipit rollback --env production\n  shipit rollback --env production --service api --sha 3f2c1ab"
    )]
    Rollback(RollbackArgs),
    /// Push an OCI image layout (directory or tar, as buildx writes it) to a registry.
    #[command(
        after_help = "Examples:\n  docker buildx build --output type=oci,dest=api.tar apps/api\n  shipit push api.tar --image ghcr.io/acme/shop-api --tag \"$GITHUB_SHA\" --tag latest"
    )]
    Push(PushArgs),
    /// Point new tags at an existing image, moving no blob.
    #[command(after_help = "Examples:\n  shipit tag ghcr.io/acme/shop-api:3f2c1ab production")]
    Tag(TagArgs),
    /// Check credentials, reachability, the manifest and the image policy.
    #[command(after_help = "Examples:\n  shipit doctor\n  shipit doctor --env production --tag \"$GITHUB_SHA\"")]
    Doctor(DoctorArgs),
    /// List a service's releases, newest first.
    #[command(after_help = "Examples:\n  shipit releases --env production --service api")]
    Releases(ReleasesArgs),
    /// Show what runs in an environment.
    #[command(
        after_help = "Examples:\n  shipit status --env production\n  shipit --json status --env staging | jq -c 'select(.event == \"status\")'"
    )]
    Status(StatusArgs),
    /// Manage secrets.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Check a token and keep it in the OS keyring (the environment still wins over it).
    #[command(
        after_help = "Examples:\n  shipit login fly\n  fly tokens create deploy | shipit login fly --with-token --app shop-api-staging"
    )]
    Login(LoginArgs),
    /// Remove a token `shipit login` kept in the OS keyring.
    #[command(after_help = "Examples:\n  shipit logout fly")]
    Logout(LogoutArgs),
    /// Print a completion script for bash, zsh, fish, powershell or elvish.
    #[command(
        after_help = "Examples:\n  source <(shipit completions bash)\n  shipit completions zsh > \"${fpath[1]}/_shipit\""
    )]
    Completions(CompletionsArgs),
    /// Print the man page (roff), e.g. `shipit man | man -l -`.
    #[command(
        after_help = "Examples:\n  shipit man | man -l -\n  shipit man deploy > /usr/local/share/man/man1/shipit-deploy.1"
    )]
    Man(ManArgs),
}

/// `shipit completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell the script is for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `shipit man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// A command whose own page to print, e.g. `deploy` or `secrets sync` (default: shipit's own page).
    #[arg(value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// Which platform and environment.
#[derive(Debug, Args)]
pub struct Where {
    /// The platform (default: the environment's `target`, else the manifest's only target).
    #[arg(long = "to", value_parser = ["fly", "railway", "render"])]
    pub to: Option<String>,
    /// The environment.
    #[arg(long, env = "SHIPIT_ENV")]
    pub env: String,
}

/// `shipit plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub place: Where,
    /// Compare images with the digest this tag points to.
    #[arg(long)]
    pub tag: Option<String>,
    /// Only these services (repeatable).
    #[arg(long = "service", value_name = "SERVICE")]
    pub services: Vec<String>,
}

/// What to do when a service fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnFailureArg {
    /// Put the previous release back.
    Rollback,
    /// Leave it as it is.
    Leave,
}

/// `shipit deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub place: Where,
    /// The image tag to deploy (every service's image at this tag), e.g. the commit SHA.
    #[arg(long)]
    pub tag: String,
    /// Only these services (repeatable).
    #[arg(long = "service", value_name = "SERVICE")]
    pub services: Vec<String>,
    /// How instances are replaced (default: the environment's strategy, else the platform's own
    /// way). Only Fly takes one; Railway and Render roll out their own way.
    #[arg(long, value_parser = strategies())]
    pub strategy: Option<String>,
    /// How long each service may take to become healthy, e.g. 5m.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub wait_timeout: shipit_core::GoDuration,
    /// What to do when a service fails.
    #[arg(long, value_enum, default_value = "rollback")]
    pub on_failure: OnFailureArg,
    /// Roll back every service of the release when any fails.
    #[arg(long)]
    pub atomic: bool,
    /// Fail instead of creating apps or services that do not exist.
    #[arg(long)]
    pub no_create: bool,
    /// Wait this long for another deploy's lock instead of failing at once, e.g. 2m.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub lock_wait: shipit_core::GoDuration,
    /// The git commit this release is built from (default: $GITHUB_SHA).
    #[arg(long)]
    pub sha: Option<String>,
    /// Print the rendered settings and every API call it would make; change nothing, need no token.
    #[arg(long)]
    pub dry_run: bool,
    /// Deploy images that break their service's `policy` anyway (loudly).
    #[arg(long)]
    pub force: bool,
    /// Create a new app or service even when secrets it declares are neither in the environment
    /// nor on the platform (it starts without them).
    #[arg(long)]
    pub allow_missing_secrets: bool,
    /// Roll out even a service that already runs this digest with these settings (every instance
    /// replaced, health-gated, put back on failure): values set since, such as rotated secrets,
    /// reach the running instances.
    #[arg(long)]
    pub restart: bool,
}

/// `shipit promote`.
#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// The environment whose running digests are promoted, e.g. staging.
    pub from: String,
    /// The environment that gets them, e.g. production.
    pub to: String,
    /// Only these services (repeatable).
    #[arg(long = "service", value_name = "SERVICE")]
    pub services: Vec<String>,
    /// How long each service may take to become healthy.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub wait_timeout: shipit_core::GoDuration,
    /// What to do when a service fails.
    #[arg(long, value_enum, default_value = "rollback")]
    pub on_failure: OnFailureArg,
    /// Roll back every service of the release when any fails.
    #[arg(long)]
    pub atomic: bool,
    /// Wait this long for another deploy's lock.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub lock_wait: shipit_core::GoDuration,
    /// Promote images that break their service's `policy` anyway (loudly).
    #[arg(long)]
    pub force: bool,
}

/// `shipit push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// An OCI image layout: a directory or a tar file (`docker buildx build --output type=oci`).
    pub layout: std::path::PathBuf,
    /// The repository to push to, e.g. ghcr.io/acme/forgestack-api.
    #[arg(long)]
    pub image: String,
    /// Tags to point at the pushed image (repeatable), e.g. the commit SHA and latest.
    #[arg(long = "tag", required = true, value_name = "TAG")]
    pub tags: Vec<String>,
    /// Sibling repositories to mount shared blobs from (repeatable).
    #[arg(long = "mount-from", value_name = "REPO")]
    pub mount_from: Vec<String>,
    /// Concurrent blob uploads.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
}

/// `shipit tag`.
#[derive(Debug, Args)]
pub struct TagArgs {
    /// The existing image, `REPO:TAG` or `REPO@DIGEST`.
    pub source: String,
    /// New tags (repeatable).
    #[arg(required = true)]
    pub tags: Vec<String>,
}

/// `shipit doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Only this environment (default: all).
    #[arg(long, env = "SHIPIT_ENV")]
    pub env: Option<String>,
    /// Check the image policy against the images at this tag.
    #[arg(long)]
    pub tag: Option<String>,
}

/// `shipit rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub place: Where,
    /// Only these services (repeatable).
    #[arg(long = "service", value_name = "SERVICE")]
    pub services: Vec<String>,
    /// Return to this release id.
    #[arg(long, conflicts_with = "sha")]
    pub release: Option<String>,
    /// Return to the newest successful release of this commit.
    #[arg(long)]
    pub sha: Option<String>,
    /// How long each service may take to become healthy.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub wait_timeout: shipit_core::GoDuration,
    /// Wait this long for another deploy's lock.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub lock_wait: shipit_core::GoDuration,
}

/// `shipit releases`.
#[derive(Debug, Args)]
pub struct ReleasesArgs {
    #[command(flatten)]
    pub place: Where,
    /// Only this service (repeatable).
    #[arg(long = "service", value_name = "SERVICE")]
    pub services: Vec<String>,
}

/// `shipit status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub place: Where,
}

/// `shipit secrets …`.
#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Set each service's secrets from the process environment (names from the manifest).
    #[command(
        after_help = "Examples:\n  STRIPE_SECRET_KEY=... shipit secrets sync --env production\n  shipit secrets sync --env production --restart    # roll the new values out now"
    )]
    Sync(SecretsSyncArgs),
}

/// `shipit secrets sync`.
#[derive(Debug, Args)]
pub struct SecretsSyncArgs {
    #[command(flatten)]
    pub place: Where,
    /// Only these services (repeatable).
    #[arg(long = "service", value_name = "SERVICE")]
    pub services: Vec<String>,
    /// Then roll the new values out: each selected service that runs is redeployed with what it
    /// runs now, through the health gate, and put back if it fails.
    #[arg(long)]
    pub restart: bool,
}

/// `shipit login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Where the token is for.
    #[arg(value_enum)]
    pub platform: crate::credentials::Account,
    /// Read the token from standard input (a trailing newline is dropped) instead of prompting.
    #[arg(long)]
    pub with_token: bool,
    /// Fly: check the token by reading this app (an app-scoped deploy token cannot list apps).
    #[arg(long, value_name = "APP")]
    pub app: Option<String>,
    /// GHCR: the user the token belongs to (default: $GITHUB_ACTOR, else "shipit").
    #[arg(long)]
    pub username: Option<String>,
    /// GHCR: the registry to check the token against: ghcr.io (default) or a host in SHIPIT_GHCR_HOSTS.
    #[arg(long, value_name = "HOST")]
    pub registry: Option<String>,
}

/// `shipit logout`.
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// Whose token to remove.
    #[arg(value_enum)]
    pub platform: crate::credentials::Account,
}

/// The heading the options every command takes are listed under, apart from the command's own.
const GLOBAL: &str = "Global options";

/// Commands that read no manifest: their help does not list `-f`.
const NO_MANIFEST: &[&str] = &["push", "tag", "login", "logout", "completions", "man"];

/// The command-line definition, with variables that stand in for flags applied.
pub fn command() -> clap::Command {
    command_from(Cli::command())
}

/// [`command`], from `cmd` (e.g. with its `help` subcommand turned off for the man page).
pub fn command_from(cmd: clap::Command) -> clap::Command {
    let mut cmd = without_empty_env(cmd);
    // Global flags reach the subcommands when the command is built; only then can one be hidden.
    cmd.build();
    for name in NO_MANIFEST {
        // `mut_args` edits in place: the built command's index of its flags stays right.
        cmd = cmd.mut_subcommand(name, |sub| sub.mut_args(|a| if a.get_id() == "file" { a.hide(true) } else { a }));
    }
    cmd
}

impl Command {
    /// The command's name as typed, e.g. `deploy` or `secrets sync` (the summary's `command`).
    pub fn name(&self) -> String {
        match self {
            Self::Secrets(SecretsCommand::Sync(_)) => "secrets sync".to_string(),
            other => {
                let debug = format!("{other:?}");
                let variant = debug.split(['(', ' ', '{']).next().unwrap_or_default();
                variant.to_lowercase()
            }
        }
    }
}

/// The flags as parsed from the process's arguments. A variable that stands in for a flag
/// (`SHIPIT_FILE`, `SHIPIT_ENV`) counts as unset when it is empty, as every variable shipit reads.
pub fn parse() -> Result<Cli, clap::Error> {
    let mut cmd = command();
    let matches = cmd.try_get_matches_from_mut(std::env::args_os())?;
    let mut cli = Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))?;
    cli.env_from_variable = env_source(&matches) == Some(clap::parser::ValueSource::EnvVariable);
    Ok(cli)
}

/// Where the command's `--env` came from, when it has one.
fn env_source(matches: &clap::ArgMatches) -> Option<clap::parser::ValueSource> {
    match matches.subcommand() {
        Some((_, sub)) => env_source(sub),
        None => matches.ids().any(|id| id == "env").then(|| matches.value_source("env")).flatten(),
    }
}

fn without_empty_env(cmd: clap::Command) -> clap::Command {
    cmd.mut_args(|arg| {
        let empty = arg.get_env().and_then(std::env::var_os).is_some_and(|v| v.is_empty());
        if empty { arg.env(None) } else { arg }
    })
    .mut_subcommands(without_empty_env)
}

/// The strategies a deploy can ask for of some target: Fly's. `canary` and `bluegreen` are
/// manifest words no target implements yet, so the flag does not offer them (docs/cli.md).
fn strategies() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new([
        clap::builder::PossibleValue::new("rolling").help("A few machines at a time, each health-gated (Fly)"),
        clap::builder::PossibleValue::new("immediate").help("Every machine at once, then the health gate (Fly)"),
    ])
}

fn parse_duration(s: &str) -> Result<shipit_core::GoDuration, String> {
    s.parse().map_err(|e: shipit_core::duration::DurationError| e.to_string())
}

/// What `render --to` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RenderTarget {
    /// fly.<service>.toml per service.
    Fly,
    /// railway.<service>.json per service: the settings applied through the API.
    Railway,
    /// render.yaml Blueprint.
    Render,
    /// docker-compose.prod.yml.
    Compose,
    /// .github/workflows/shipit.yml.
    Github,
    /// All of the above.
    All,
}

/// `shipit render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Which files.
    #[arg(long = "to", value_enum)]
    pub to: RenderTarget,
    /// The environment (may be left out when the manifest has only one).
    #[arg(long, env = "SHIPIT_ENV")]
    pub env: Option<String>,
    /// Where to write (default: the manifest's directory).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Write nothing; exit 2 listing the files that differ from what would be rendered.
    #[arg(long)]
    pub check: bool,
    /// Overwrite files that shipit did not generate.
    #[arg(long)]
    pub force: bool,
}

/// `shipit init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Read apps/*/Dockerfile (and ./Dockerfile): EXPOSE, HEALTHCHECK, ENTRYPOINT and CMD, USER, as Docker reads them.
    #[arg(long)]
    pub from_dockerfiles: bool,
    /// Replace an existing manifest.
    #[arg(long)]
    pub force: bool,
    /// The app name (default: the directory's name).
    #[arg(long)]
    pub app: Option<String>,
    /// GHCR owner (default: from the git remote `origin`, else "OWNER").
    #[arg(long)]
    pub namespace: Option<String>,
    /// Platform for the staging and production environments.
    #[arg(long = "to", default_value = "fly", value_parser = ["fly", "railway", "render"])]
    pub to: String,
}
