//! Manifest problems with their place in the file.

use std::fmt;
use std::sync::Arc;

use super::tree::Span;

/// One problem in a manifest: what is wrong, where, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Problem {
    /// 1-based line of the offending key or value.
    pub line: usize,
    /// 1-based column (in characters) of the offending key or value.
    pub column: usize,
    /// Byte range in the source, for diagnostics that underline it.
    #[serde(skip)]
    pub span: Span,
    /// What is wrong and what was expected.
    pub message: String,
    /// A hint such as "did you mean `port`?".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

/// Every problem found in one manifest, with its source so callers can show snippets.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ManifestErrors {
    /// The file name as given (shown in messages).
    pub file: String,
    /// The manifest's text.
    pub source_text: Arc<str>,
    /// The problems, in the order they appear in the file.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ManifestErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{}:{}: {}", self.file, p.line, p.column, p.message)?;
            if let Some(help) = &p.help {
                write!(f, " ({help})")?;
            }
        }
        Ok(())
    }
}

/// Collects problems while a manifest is read.
pub(crate) struct Diagnostics<'s> {
    source: &'s str,
    pub(crate) problems: Vec<Problem>,
}

impl<'s> Diagnostics<'s> {
    pub(crate) fn new(source: &'s str) -> Self {
        Self { source, problems: Vec::new() }
    }

    pub(crate) fn error(&mut self, span: &Span, message: impl Into<String>) {
        self.push(span, message.into(), None);
    }

    pub(crate) fn error_help(&mut self, span: &Span, message: impl Into<String>, help: impl Into<String>) {
        self.push(span, message.into(), Some(help.into()));
    }

    fn push(&mut self, span: &Span, message: String, help: Option<String>) {
        let (line, column) = line_col(self.source, span.start);
        let problem = Problem { line, column, span: span.clone(), message, help };
        // Overrides are validated once per environment; report each place once.
        if !self.problems.contains(&problem) {
            self.problems.push(problem);
        }
    }

    pub(crate) fn has_errors(&self) -> bool {
        !self.problems.is_empty()
    }
}

/// 1-based line and character column of a byte offset.
pub(crate) fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

/// The closest of `candidates` to `word`, when it is close enough to be a likely typo.
pub(crate) fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(word, c), *c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}
