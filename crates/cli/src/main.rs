//! `shipit`: deploy one app, described once in `shipit.toml`, to Fly.io, Railway and Render.
//!
//! The binary is thin: it parses flags, calls the library crates, and turns their results into
//! output (human text on stderr, machine output on stdout with `--json`) and a documented exit
//! code (see [`exit::Exit`] and `docs/cli.md`).

// Every module prints through these (see `stdio`): a closed pipe never panics.
macro_rules! println {
    () => { $crate::stdio::out(format_args!(""), true) };
    ($($arg:tt)*) => { $crate::stdio::out(format_args!($($arg)*), true) };
}
macro_rules! print {
    ($($arg:tt)*) => { $crate::stdio::out(format_args!($($arg)*), false) };
}
macro_rules! eprint {
    ($($arg:tt)*) => { $crate::stdio::err(format_args!($($arg)*), false) };
}
macro_rules! eprintln {
    () => { $crate::stdio::err(format_args!(""), true) };
    ($($arg:tt)*) => { $crate::stdio::err(format_args!($($arg)*), true) };
}

mod checks;
mod cli;
mod commands;
mod credentials;
mod diagnostics;
mod dockerfile;
mod exit;
mod locate;
mod output;
mod platforms;
mod report;
#[cfg(test)]
mod snapshots;
mod stdio;
mod style;
mod suggest;
mod verbose;

use std::process::ExitCode;

use crate::cli::Command;
use crate::exit::Exit;

fn main() -> ExitCode {
    let exit = run();
    report::finish(exit);
    exit.into()
}

fn run() -> Exit {
    let mut cli = match cli::parse() {
        Ok(cli) => cli,
        Err(e) => return usage(&e),
    };
    report::start(cli.json, &cli.command.name());
    style::init(cli.color, cli.json);
    verbose::install(&cli);
    locate::choose(&mut cli);
    match &cli.command {
        Command::Validate => commands::validate::run(&cli),
        Command::Render(args) => commands::render::run(&cli, args),
        Command::Init(args) => commands::init::run(&cli, args),
        Command::Plan(args) => commands::ops::plan(&cli, args),
        Command::Deploy(args) => commands::ops::deploy(&cli, args),
        Command::Promote(args) => commands::ops::promote(&cli, args),
        Command::Rollback(args) => commands::ops::rollback(&cli, args),
        Command::Push(args) => commands::images::push(&cli, args),
        Command::Tag(args) => commands::images::tag(&cli, args),
        Command::Doctor(args) => commands::doctor::run(&cli, args),
        Command::Releases(args) => commands::ops::releases(&cli, args),
        Command::Status(args) => commands::ops::status(&cli, args),
        Command::Secrets(crate::cli::SecretsCommand::Sync(args)) => commands::ops::secrets_sync(&cli, args),
        Command::Login(args) => commands::login::run_login(&cli, args),
        Command::Logout(args) => commands::login::run_logout(&cli, args),
        Command::Completions(args) => commands::generate::completions(args),
        Command::Man(args) => commands::generate::man(&cli, args),
    }
}

/// What clap stopped at: help and `--version` (exit 0), or a usage error (exit 4). With
/// `--json` the text goes to stderr and stdout gets the summary, as for any other run.
fn usage(e: &clap::Error) -> Exit {
    use clap::error::ErrorKind;
    let json = report::json_in_args();
    report::start(json, &report::command_in_args(&cli::command()));
    let shown = matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion);
    if json {
        let text = e.to_string();
        eprint!("{text}");
        if shown {
            report::result(serde_json::json!({ "text": text }));
        } else {
            // The error without clap's usage and "try --help" lines, on one line.
            let head = text.split("\n\nUsage:").next().unwrap_or_default();
            let head = head.split("\n\nFor more information").next().unwrap_or_default();
            let message = head.trim_start_matches("error: ").split_whitespace().collect::<Vec<_>>().join(" ");
            // Clap prints the command's help when its subcommand is missing: say that instead.
            let message = if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                let cmd = report::command_in_args(&cli::command());
                format!("`shipit {cmd}` needs a subcommand (see `shipit {cmd} --help`)").replace("shipit  ", "shipit ")
            } else {
                message
            };
            report::error(Some("usage"), &message, Some("see `shipit --help`"));
        }
    } else {
        let _ = e.print();
    }
    if shown { Exit::Ok } else { Exit::BadInput }
}
