//! How problems are shown: miette snippets for people, JSON with `--json`, and GitHub Actions
//! annotations when running there.

use std::io::IsTerminal;
use std::sync::Arc;

use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme, NamedSource, SourceSpan};
use shipit_core::ManifestErrors;

use crate::cli::Cli;

#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{message}")]
struct ProblemReport {
    message: String,
    #[source_code]
    src: NamedSource<Arc<str>>,
    #[label("here")]
    span: SourceSpan,
    #[help]
    help: Option<String>,
}

fn handler() -> GraphicalReportHandler {
    let theme = if std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    GraphicalReportHandler::new_themed(theme)
}

fn in_github_actions() -> bool {
    std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
}

/// Escapes a GitHub Actions workflow-command property or message.
fn gha_escape(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A").replace(':', "%3A").replace(',', "%2C")
}

/// Reports every problem of an invalid manifest.
pub fn report_manifest(cli: &Cli, errors: &ManifestErrors) {
    if cli.json {
        let out = serde_json::json!({
            "ok": false,
            "file": errors.file,
            "problems": errors.problems,
        });
        println!("{out}");
    }
    let handler = handler();
    for p in &errors.problems {
        eprintln!("error: {}:{}:{}: {}", errors.file, p.line, p.column, p.message);
        if !cli.json {
            let report = ProblemReport {
                message: p.message.clone(),
                src: NamedSource::new(&errors.file, errors.source_text.clone()),
                span: SourceSpan::new(p.span.start.into(), p.span.len()),
                help: p.help.clone(),
            };
            let mut out = String::new();
            if handler.render_report(&mut out, &report).is_ok() {
                eprintln!("{out}");
            }
        }
        if in_github_actions() {
            let msg = match &p.help {
                Some(h) => format!("{} ({h})", p.message),
                None => p.message.clone(),
            };
            println!(
                "::error file={},line={},col={}::{}",
                gha_escape(&errors.file),
                p.line,
                p.column,
                msg.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
            );
        }
    }
    let n = errors.problems.len();
    eprintln!("{}: {n} problem{}", errors.file, if n == 1 { "" } else { "s" });
}

/// Reports an error that has no place in the manifest.
pub fn error(cli: &Cli, message: &str, help: Option<&str>) {
    if cli.json {
        println!("{}", serde_json::json!({ "ok": false, "error": message, "help": help }));
    }
    eprintln!("error: {message}");
    if let Some(h) = help {
        eprintln!("  help: {h}");
    }
}

/// Prints a line of human output to stderr unless `-q`.
pub fn info(cli: &Cli, message: &str) {
    if !cli.quiet {
        eprintln!("{message}");
    }
}
