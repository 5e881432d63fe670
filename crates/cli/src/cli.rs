//! Command-line flags.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Deploy one app, described once in shipit.toml, to Fly.io, Railway and Render.
#[derive(Debug, Parser)]
#[command(name = "shipit", version, about, propagate_version = true)]
pub struct Cli {
    /// The manifest.
    #[arg(short = 'f', long = "file", global = true, default_value = "shipit.toml", value_name = "PATH")]
    pub file: PathBuf,
    /// Machine-readable output: NDJSON on stdout, human text on stderr.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print more detail.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the manifest; every problem is reported with file:line:column.
    Validate,
    /// Write each platform's files for one environment (or check them for drift).
    Render(RenderArgs),
    /// Write a shipit.toml, from apps/*/Dockerfile with --from-dockerfiles.
    Init(InitArgs),
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
    #[arg(long)]
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
    /// Read apps/*/Dockerfile (and ./Dockerfile): EXPOSE, HEALTHCHECK, CMD, USER.
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
