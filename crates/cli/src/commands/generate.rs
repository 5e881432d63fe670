//! `shipit completions` and `shipit man`: what shells and `man` need, from the flags themselves.

use crate::cli::{Cli, CompletionsArgs, ManArgs};
use crate::diagnostics;
use crate::exit::Exit;

/// Prints the completion script for `args.shell` on stdout.
pub fn completions(args: &CompletionsArgs) -> Exit {
    let mut cmd = crate::cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "shipit", &mut script);
    let script = String::from_utf8_lossy(&script);
    // With --json the script is the summary's `script`: stdout is NDJSON only.
    if crate::report::json() {
        crate::report::result(serde_json::json!({ "shell": args.shell.to_string(), "script": script }));
    } else {
        print!("{script}");
    }
    Exit::Ok
}

/// Prints the man page of shipit, or of the command `args.command` names, as roff on stdout.
pub fn man(cli: &Cli, args: &ManArgs) -> Exit {
    let mut cmd = crate::cli::command_from(<Cli as clap::CommandFactory>::command().disable_help_subcommand(true));
    // Gives every command its page name, `shipit-deploy`, `shipit-secrets-sync`.
    cmd.build();
    let mut page = &cmd;
    for name in &args.command {
        let Some(sub) = page.find_subcommand(name) else {
            let known: Vec<&str> = page.get_subcommands().map(clap::Command::get_name).collect();
            let hint = crate::suggest::did_you_mean(name, known.iter().copied());
            let known = known.join(", ");
            let of = page.get_display_name().unwrap_or_else(|| page.get_name());
            diagnostics::error(cli, &format!("{of} has no command {name:?} (it has: {known}){hint}"), None);
            return Exit::BadInput;
        };
        page = sub;
    }
    let man = clap_mangen::Man::new(page.clone())
        .source(format!("shipit {}", env!("SHIPIT_BUILD_VERSION")))
        .manual("shipit manual");
    let mut roff = Vec::new();
    if let Err(e) = man.render(&mut roff) {
        diagnostics::error(cli, &format!("cannot render the man page: {e}"), None);
        return Exit::Failed;
    }
    let page = title_first(&String::from_utf8_lossy(&roff));
    if crate::report::json() {
        crate::report::result(serde_json::json!({ "roff": page }));
    } else {
        print!("{page}");
    }
    Exit::Ok
}

/// The page with its `.TH` line first, as a man page begins. clap_mangen writes two lines before
/// it that define the `\*(Aq` string (an apostrophe); they still come before any use of it.
fn title_first(page: &str) -> String {
    let mut lines: Vec<&str> = page.split_inclusive('\n').collect();
    if let Some(at) = lines.iter().position(|l| l.starts_with(".TH ")) {
        let title = lines.remove(at);
        lines.insert(0, title);
    }
    lines.concat()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_title_goes_first() {
        let page = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n.TH shipit 1\n.SH NAME\n";
        assert_eq!(super::title_first(page), ".TH shipit 1\n.ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n.SH NAME\n");
        assert_eq!(super::title_first(".SH NAME\n"), ".SH NAME\n");
    }
}
