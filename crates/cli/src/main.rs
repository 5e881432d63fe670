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
macro_rules! eprintln {
    () => { $crate::stdio::err(format_args!(""), true) };
    ($($arg:tt)*) => { $crate::stdio::err(format_args!($($arg)*), true) };
}

mod cli;
mod commands;
mod credentials;
mod diagnostics;
mod dockerfile;
mod exit;
mod locate;
mod output;
mod platforms;
mod stdio;
mod suggest;

use std::process::ExitCode;

use crate::cli::Command;
use crate::exit::Exit;

fn main() -> ExitCode {
    let mut cli = match cli::parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => Exit::Ok.into(),
                _ => Exit::BadInput.into(),
            };
        }
    };
    locate::choose(&mut cli);
    let exit = match &cli.command {
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
    };
    exit.into()
}
