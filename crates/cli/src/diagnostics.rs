//! How problems are shown: miette snippets for people, JSON with `--json`, and GitHub Actions
//! annotations when running there.
//!
//! miette is never handed the manifest itself, only an [`Excerpt`]: the problem's line and its
//! neighbours, cut to a window of columns around the problem. So a problem at any line or column
//! of any file draws a small snippet (miette's own column arithmetic is limited to 65,535 and
//! panics beyond), and drawing many problems costs nothing per byte of the file.

use miette::{
    Diagnostic, GraphicalReportHandler, GraphicalTheme, MietteError, MietteSpanContents, SourceCode, SourceSpan,
    SpanContents,
};
use shipit_core::{ManifestErrors, Problem};

use crate::cli::Cli;

/// Bytes of a long line shown before a problem.
const BEFORE: usize = 60;
/// Most bytes of a problem that are underlined.
const MAX_LABEL: usize = 60;
/// Bytes of a long line shown after the underline.
const AFTER: usize = 40;
/// Lines up to this many bytes are shown whole.
const WHOLE_LINE: usize = 160;
/// Problems that get a snippet; the rest get their one-line error only.
const MAX_SNIPPETS: usize = 100;

#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{message}")]
struct ProblemReport {
    message: String,
    #[source_code]
    src: Excerpt,
    #[label("here")]
    span: SourceSpan,
    #[help]
    help: Option<String>,
}

/// A few lines of the manifest around one problem, each cut to the same window of columns
/// ("…" marks a cut), with control characters replaced. Line numbers and the problem's column
/// are the file's.
#[derive(Debug)]
struct Excerpt {
    name: String,
    text: String,
    /// 0-based line in the file of the excerpt's first line.
    first_line: usize,
    /// Where the problem starts in `text`, and its 0-based column in the file.
    label_start: usize,
    label_column: usize,
}

impl SourceCode for Excerpt {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let inner = self.text.read_span(span, context_lines_before, context_lines_after)?;
        let column = if span.offset() == self.label_start { self.label_column } else { inner.column() };
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            inner.data(),
            *inner.span(),
            inner.line() + self.first_line,
            column,
            inner.line_count(),
        )))
    }
}

/// The largest char boundary of `s` at or below `i`.
fn floor(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The excerpt around `p`, and the problem's span in it. `starts` holds the byte offset where
/// each line of `source` starts.
fn excerpt(file: &str, source: &str, starts: &[usize], p: &Problem) -> (Excerpt, SourceSpan) {
    let line_of = |offset: usize| starts.partition_point(|s| *s <= offset).max(1) - 1;
    let bounds = |i: usize| {
        let start = starts.get(i).copied().unwrap_or(source.len());
        let end = starts.get(i + 1).map_or(source.len(), |n| n - 1);
        let end = if source.as_bytes().get(end.wrapping_sub(1)) == Some(&b'\r') && end > start { end - 1 } else { end };
        (start, end.max(start))
    };
    let target = line_of(p.span.start.min(source.len()));
    let (ls, le) = bounds(target);
    let s = floor(source, p.span.start.max(ls).min(le));
    let e = floor(source, p.span.end.max(s).min(le).min(s + MAX_LABEL));
    // The window of columns, as byte offsets from the start of each line.
    let cut = le - ls > WHOLE_LINE;
    let (from, to) = if cut {
        let from = s.saturating_sub(BEFORE).max(ls) - ls;
        (from, (e + AFTER).max(ls + from + WHOLE_LINE) - ls)
    } else {
        (0, WHOLE_LINE)
    };
    let first = target.saturating_sub(1);
    let last = (target + 1).min(starts.len().saturating_sub(1));
    let mut text = String::new();
    let (mut label_start, mut label_end) = (0, 0);
    for i in first..=last {
        let (start, end) = bounds(i);
        let a = floor(source, (start + from).min(end));
        let b = floor(source, (start + to).min(end)).max(a);
        if a > start {
            text.push('…');
        }
        for (at, c) in source.get(a..b).unwrap_or_default().char_indices() {
            if a + at == s && i == target {
                label_start = text.len();
            }
            if a + at == e && i == target {
                label_end = text.len();
            }
            let unsafe_char = c.is_control() && c != '\t'
                || matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
            text.push(if unsafe_char { '\u{FFFD}' } else { c });
        }
        if i == target {
            if s == b {
                label_start = text.len();
            }
            if e == b {
                label_end = text.len();
            }
        }
        if b < end {
            text.push('…');
        }
        if i < last {
            text.push('\n');
        }
    }
    let label_end = label_end.max(label_start);
    let excerpt = Excerpt {
        name: file.to_string(),
        text,
        first_line: first,
        label_start,
        label_column: p.column.saturating_sub(1),
    };
    (excerpt, SourceSpan::new(label_start.into(), label_end - label_start))
}

fn handler() -> GraphicalReportHandler {
    let theme = if crate::style::colour() { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
    GraphicalReportHandler::new_themed(theme)
}

fn in_github_actions() -> bool {
    std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
}

/// Escapes a GitHub Actions workflow-command property or message.
fn gha_escape(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A").replace(':', "%3A").replace(',', "%2C")
}

/// Reports every problem of an invalid manifest: with a snippet, each problem's
/// `file:line:column: message` is the snippet's title (one report per problem, not a line and
/// then a report); without one (`--json`, or beyond [`MAX_SNIPPETS`]) it is a line of its own.
pub fn report_manifest(cli: &Cli, errors: &ManifestErrors) {
    let n = errors.problems.len();
    crate::report::result(serde_json::json!({ "file": errors.file, "problems": errors.problems }));
    crate::report::error(
        Some("invalid_manifest"),
        &format!("{}: {n} problem{}", errors.file, if n == 1 { "" } else { "s" }),
        Some("fix each problem at its file:line:column (`shipit validate` lists them all)"),
    );
    let handler = handler();
    let source = &*errors.source_text;
    let starts: Vec<usize> =
        std::iter::once(0).chain(source.bytes().enumerate().filter(|(_, b)| *b == b'\n').map(|(i, _)| i + 1)).collect();
    for (i, p) in errors.problems.iter().enumerate() {
        let title = format!("{}:{}:{}: {}", errors.file, p.line, p.column, p.message);
        let mut drawn = false;
        if !cli.json && i < MAX_SNIPPETS {
            let (src, span) = excerpt(&errors.file, source, &starts, p);
            let report = ProblemReport { message: title.clone(), src, span, help: p.help.clone() };
            let mut out = String::new();
            if handler.render_report(&mut out, &report).is_ok() {
                eprintln!("{out}");
                drawn = true;
            }
        }
        if !drawn {
            eprintln!("{} {title}", crate::style::error_word());
        }
        if in_github_actions() {
            let msg = match &p.help {
                Some(h) => format!("{} ({h})", p.message),
                None => p.message.clone(),
            };
            // On stderr: stdout is the result's (and with --json, NDJSON only).
            eprintln!(
                "::error file={},line={},col={}::{}",
                gha_escape(&errors.file),
                p.line,
                p.column,
                msg.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
            );
        }
    }
    if !cli.json && n > MAX_SNIPPETS {
        eprintln!("(snippets are shown for the first {MAX_SNIPPETS} problems)");
    }
    eprintln!("{}: {n} problem{}", errors.file, if n == 1 { "" } else { "s" });
}

/// Reports an error that has no place in the manifest (stderr; with `--json`, the summary's
/// `error`).
pub fn error(cli: &Cli, message: &str, help: Option<&str>) {
    let _ = cli;
    crate::report::error(None, message, help);
    eprintln!("{} {message}", crate::style::error_word());
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
