//! Colour: status words (`ok`, `FAILED`, `warning`…) and problems, on the stream that is a
//! terminal. Off with `--color never`, a non-empty `NO_COLOR`, `TERM=dumb`, or when the stream is
//! not a terminal; `--color always` forces it (for a pager like `less -R`). `--json` never
//! colours stdout.
//!
//! The escapes come from `anstyle` (already in the tree through clap); which words get which
//! colour is kept here, so every command paints the same word the same way.

use std::io::IsTerminal;
use std::sync::OnceLock;

use anstyle::{AnsiColor, Style};

use crate::cli::ColorChoice;

struct Choice {
    stdout: bool,
    stderr: bool,
}

static CHOICE: OnceLock<Choice> = OnceLock::new();

/// Whether the environment turns colour off whatever the stream is.
fn env_says_no() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) || std::env::var("TERM").is_ok_and(|t| t == "dumb")
}

/// Decides, once, whether stdout and stderr are coloured.
pub fn init(choice: ColorChoice, json: bool) {
    let (stdout, stderr) = match choice {
        ColorChoice::Never => (false, false),
        ColorChoice::Always => (!json, true),
        ColorChoice::Auto => {
            let no = env_says_no();
            (!no && !json && std::io::stdout().is_terminal(), !no && std::io::stderr().is_terminal())
        }
    };
    let _ = CHOICE.set(Choice { stdout, stderr });
}

/// Whether stderr (progress, warnings, problems) is coloured.
pub fn colour() -> bool {
    CHOICE.get().is_some_and(|c| c.stderr)
}

/// Whether stdout (the summary) is coloured.
pub fn colour_stdout() -> bool {
    CHOICE.get().is_some_and(|c| c.stdout)
}

fn paint(on: bool, style: Style, text: &str) -> String {
    if on { format!("{}{text}{}", style.render(), style.render_reset()) } else { text.to_string() }
}

const RED: Style = AnsiColor::Red.on_default().bold();
const GREEN: Style = AnsiColor::Green.on_default().bold();
const YELLOW: Style = AnsiColor::Yellow.on_default().bold();

/// How good the news a word carries is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Done, healthy.
    Good,
    /// Needs a look, but not a failure.
    Warn,
    /// Failed.
    Bad,
}

fn style_of(tone: Tone) -> Style {
    match tone {
        Tone::Good => GREEN,
        Tone::Warn => YELLOW,
        Tone::Bad => RED,
    }
}

/// `text` painted for stderr.
pub fn err(tone: Tone, text: &str) -> String {
    paint(colour(), style_of(tone), text)
}

/// `text` painted for stdout.
pub fn out(tone: Tone, text: &str) -> String {
    paint(colour_stdout(), style_of(tone), text)
}

/// `text` painted whatever the streams are (the caller decided).
pub fn paint_always(tone: Tone, text: &str) -> String {
    paint(true, style_of(tone), text)
}

/// `error:` as stderr shows it.
pub fn error_word() -> String {
    err(Tone::Bad, "error:")
}

/// `warning:` as stderr shows it.
pub fn warning_word() -> String {
    err(Tone::Warn, "warning:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn painted_text_is_wrapped_in_escapes_and_plain_text_is_not() {
        assert_eq!(paint(false, RED, "FAILED"), "FAILED");
        let red = paint(true, RED, "FAILED");
        assert!(red.starts_with("\u{1b}[") && red.contains("FAILED") && red.ends_with("\u{1b}[0m"), "{red:?}");
    }
}
