//! Manifest problems with their place in the file.
//!
//! Every cost here is linear in the manifest's size: positions come from a line index built
//! once, problems are deduplicated with a set, and "did you mean" suggestions draw on a fixed
//! budget of comparisons for the whole manifest.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use super::tree::Span;

/// At most this many problems are reported; one last problem says that more were found.
pub const MAX_PROBLEMS: usize = 1000;
/// Longest message or help kept, in bytes; longer ones are cut with "…".
const MAX_MESSAGE: usize = 1024;
/// String comparisons that "did you mean" may spend on one manifest.
const SUGGESTION_BUDGET: usize = 100_000;
/// Words or candidates longer than this (in bytes) get no suggestion.
const MAX_SUGGESTED_LEN: usize = 64;

/// One problem in a manifest: what is wrong, where, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
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
    /// The manifest's text, for snippets: the values of secret-looking variables are masked
    /// with `*` (byte for byte, so every [`Problem::span`] still points at the same place), and
    /// bytes that are not UTF-8 are replaced with U+FFFD.
    pub source_text: Arc<str>,
    /// The problems, in the order they appear in the file (at most [`MAX_PROBLEMS`], then one
    /// saying that more were found).
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

/// Bytes per checkpoint of the character count.
const CHUNK: usize = 256;

/// Line and column of any byte offset, in time independent of the file's size. It keeps no
/// reference to the source: the same bytes are passed to [`LineIndex::line_col`].
#[derive(Debug)]
pub(crate) struct LineIndex {
    /// Byte offset where each line starts.
    line_starts: Vec<usize>,
    /// Characters before byte `i * CHUNK`, and the total last.
    chars_before: Vec<usize>,
}

impl LineIndex {
    pub(crate) fn new(source: &[u8]) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(source.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1));
        let mut chars_before = Vec::with_capacity(source.len() / CHUNK + 2);
        let mut n = 0;
        for chunk in source.chunks(CHUNK) {
            chars_before.push(n);
            n += count_chars(chunk);
        }
        chars_before.push(n);
        Self { line_starts, chars_before }
    }

    /// Characters in `source[..offset]`.
    fn chars_up_to(&self, source: &[u8], offset: usize) -> usize {
        let chunk = offset / CHUNK;
        let base = self.chars_before.get(chunk).copied().unwrap_or(0);
        base + source.get(chunk * CHUNK..offset).map_or(0, count_chars)
    }

    /// 1-based line and character column of a byte offset (clamped to the source) of the
    /// `source` this index was built from.
    pub(crate) fn line_col(&self, source: &[u8], offset: usize) -> (usize, usize) {
        let offset = offset.min(source.len());
        let line = self.line_starts.partition_point(|s| *s <= offset).max(1);
        let start = self.line_starts.get(line - 1).copied().unwrap_or(0);
        (line, self.chars_up_to(source, offset) - self.chars_up_to(source, start) + 1)
    }
}

/// Characters in UTF-8 bytes: every byte that does not continue a character.
fn count_chars(bytes: &[u8]) -> usize {
    bytes.iter().filter(|b| (**b as i8) >= -0x40).count()
}

/// Collects problems while a manifest is read.
pub(crate) struct Diagnostics<'s> {
    source: &'s str,
    index: LineIndex,
    problems: Vec<Problem>,
    seen: HashSet<Problem>,
    /// The span of the first problem past [`MAX_PROBLEMS`].
    overflow: Option<Span>,
    suggestions_left: usize,
    /// Values that must not be shown.
    masked: Vec<Span>,
}

impl<'s> Diagnostics<'s> {
    pub(crate) fn new(source: &'s str) -> Self {
        Self {
            source,
            index: LineIndex::new(source.as_bytes()),
            problems: Vec::new(),
            seen: HashSet::new(),
            overflow: None,
            suggestions_left: SUGGESTION_BUDGET,
            masked: Vec::new(),
        }
    }

    pub(crate) fn error(&mut self, span: &Span, message: impl Into<String>) {
        self.push(span, message.into(), None);
    }

    pub(crate) fn error_help(&mut self, span: &Span, message: impl Into<String>, help: impl Into<String>) {
        self.push(span, message.into(), Some(help.into()));
    }

    fn push(&mut self, span: &Span, message: String, help: Option<String>) {
        if self.problems.len() >= MAX_PROBLEMS {
            self.overflow.get_or_insert_with(|| span.clone());
            return;
        }
        let (line, column) = self.index.line_col(self.source.as_bytes(), span.start);
        let message = printable(message);
        let help = help.map(printable);
        let problem = Problem { line, column, span: span.clone(), message, help };
        // Overrides are validated once per environment; report each place once.
        if self.seen.insert(problem.clone()) {
            self.problems.push(problem);
        }
    }

    /// No more problems will be kept: further checks can stop.
    pub(crate) fn is_full(&self) -> bool {
        self.problems.len() >= MAX_PROBLEMS
    }

    pub(crate) fn has_errors(&self) -> bool {
        !self.problems.is_empty()
    }

    /// "line L, column C" of a byte offset, for messages that point at a second place.
    pub(crate) fn position(&self, offset: usize) -> String {
        let (line, column) = self.index.line_col(self.source.as_bytes(), offset);
        format!("line {line}, column {column}")
    }

    /// Marks a value that snippets must not show (a secret written into the manifest).
    pub(crate) fn mask(&mut self, span: &Span) {
        self.masked.push(span.clone());
    }

    /// The closest of `candidates` to `word`, when it is close enough to be a likely typo.
    ///
    /// Long words get none, and once the manifest's budget of comparisons is spent, nothing
    /// more is suggested: a manifest with thousands of typos against thousands of names stays
    /// linear.
    pub(crate) fn did_you_mean<'a>(&mut self, word: &str, candidates: &[&'a str]) -> Option<&'a str> {
        if word.len() > MAX_SUGGESTED_LEN || candidates.len() > self.suggestions_left {
            return None;
        }
        self.suggestions_left -= candidates.len();
        did_you_mean(word, candidates)
    }

    /// The source with every value that snippets must not show masked.
    pub(crate) fn masked_source(&self) -> Arc<str> {
        mask(self.source, &self.masked)
    }

    /// The problems in file order, with the source masked for snippets.
    pub(crate) fn finish(self, file: &str) -> ManifestErrors {
        let mut problems = self.problems;
        problems.sort_by_key(|p| (p.line, p.column));
        if let Some(span) = self.overflow {
            let (line, column) = self.index.line_col(self.source.as_bytes(), span.start);
            problems.push(Problem {
                line,
                column,
                span,
                message: format!("too many problems: only the first {MAX_PROBLEMS} are reported"),
                help: None,
            });
        }
        let source_text = mask(self.source, &self.masked);
        ManifestErrors { file: file.to_string(), source_text, problems }
    }
}

/// Problems for a file that is not UTF-8: one, at the first bad byte.
pub(crate) fn not_utf8(bytes: &[u8], err: &std::str::Utf8Error, file: &str) -> ManifestErrors {
    let at = err.valid_up_to();
    let (line, column) = LineIndex::new(bytes).line_col(bytes, at);
    let bad = bytes.get(at).map_or_else(String::new, |b| format!(" (byte 0x{b:02X})"));
    let text = String::from_utf8_lossy(bytes);
    // The lossy text matches the file up to `at`, where U+FFFD (3 bytes) stands for the bad bytes.
    let span = at..(at + 3).min(text.len());
    let problem = Problem {
        line,
        column,
        span,
        message: format!("the manifest is not valid UTF-8{bad}: save it as UTF-8"),
        help: None,
    };
    ManifestErrors { file: file.to_string(), source_text: mask(&text, &[]), problems: vec![problem] }
}

/// The source with `spans`, and the values of secret-looking keys found by a lexical scan
/// (which also works when the TOML does not parse), replaced by `*` byte for byte; newlines
/// and the quotes around a string stay.
fn mask(source: &str, spans: &[Span]) -> Arc<str> {
    let mut bytes = source.as_bytes().to_vec();
    let hide = |span: &Span, bytes: &mut Vec<u8>| {
        let end = span.end.min(bytes.len());
        let Some(value) = bytes.get_mut(span.start.min(end)..end) else { return };
        let quotes = value.iter().take(3).take_while(|b| matches!(b, b'"' | b'\'')).count();
        let len = value.len();
        let closing = value.iter().rev().take(quotes).take_while(|b| matches!(b, b'"' | b'\'')).count();
        for (i, b) in value.iter_mut().enumerate() {
            if i >= quotes && i + closing < len && *b != b'\n' && *b != b'\r' {
                *b = b'*';
            }
        }
    };
    for span in spans.iter().chain(secret_assignments(source.as_bytes()).iter()) {
        hide(span, &mut bytes);
    }
    // Only whole characters were replaced by ASCII, so this is UTF-8; the fallback is lossy.
    match String::from_utf8(bytes) {
        Ok(s) => Arc::from(s),
        Err(e) => Arc::from(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

/// Value spans of `KEY = value` where the last segment of `KEY` looks secret, found without
/// parsing: strings and comments are skipped, and a value runs to its closing quote, or to `,`,
/// `}`, `]`, `#` or the end of the line.
fn secret_assignments(src: &[u8]) -> Vec<Span> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&b) = src.get(i) {
        match b {
            b'"' | b'\'' => i = skip_string(src, i),
            b'#' => i = line_end(src, i),
            // The key first: reading the value costs up to the end of its line.
            b'=' if key_before(src, i).is_some_and(super::looks_secret) => {
                let value = value_span(src, i + 1);
                if matches!(src.get(value.start), Some(b'{' | b'[') | None) {
                    i += 1;
                } else {
                    i = value.end.max(i + 1);
                    out.push(value);
                }
            }
            _ => i += 1,
        }
    }
    out
}

fn line_end(src: &[u8], from: usize) -> usize {
    src.get(from..).and_then(|r| r.iter().position(|b| *b == b'\n')).map_or(src.len(), |p| from + p)
}

/// The end of the string starting at `start` (a quote): past its closing quote, or at the end
/// of the line (of the file, for a multi-line string) when it is not closed.
fn skip_string(src: &[u8], start: usize) -> usize {
    let q = src.get(start).copied().unwrap_or(b'"');
    let triple = src.get(start..start + 3).is_some_and(|t| t.iter().all(|b| *b == q));
    let mut i = start + if triple { 3 } else { 1 };
    while let Some(&b) = src.get(i) {
        if b == b'\\' && q == b'"' {
            i += 2;
        } else if b == b'\n' && !triple {
            return i;
        } else if b == q && (!triple || src.get(i..i + 3).is_some_and(|t| t.iter().all(|c| *c == q))) {
            return i + if triple { 3 } else { 1 };
        } else {
            i += 1;
        }
    }
    src.len()
}

/// The value after the `=` at `from - 1`.
fn value_span(src: &[u8], from: usize) -> Span {
    let mut start = from;
    while matches!(src.get(start), Some(b' ' | b'\t')) {
        start += 1;
    }
    let end = match src.get(start) {
        Some(b'"' | b'\'') => skip_string(src, start),
        _ => {
            let stop = src
                .get(start..)
                .and_then(|r| r.iter().position(|b| matches!(b, b',' | b'}' | b']' | b'#' | b'\n' | b'\r')))
                .map_or(src.len(), |p| start + p);
            let mut end = stop;
            while end > start && matches!(src.get(end - 1), Some(b' ' | b'\t')) {
                end -= 1;
            }
            end
        }
    };
    start..end.min(src.len())
}

/// The last segment of the key written just before the `=` at `eq`, on the same line.
fn key_before(src: &[u8], eq: usize) -> Option<&str> {
    let mut end = eq;
    while end > 0 && matches!(src.get(end - 1), Some(b' ' | b'\t')) {
        end -= 1;
    }
    let last = *src.get(end.checked_sub(1)?)?;
    let (start, stop) = if matches!(last, b'"' | b'\'') {
        let open = src.get(..end - 1)?.iter().rposition(|b| *b == last || *b == b'\n')?;
        (open + 1, end - 1)
    } else {
        let is_bare = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-';
        let start = src.get(..end)?.iter().rposition(|b| !is_bare(b)).map_or(0, |p| p + 1);
        (start, end)
    };
    std::str::from_utf8(src.get(start..stop)?).ok()
}

/// Control and bidirectional-override characters escaped, so that a message cannot move the
/// cursor or reorder a terminal line; cut to [`MAX_MESSAGE`] bytes.
pub(crate) fn printable(s: String) -> String {
    let unsafe_char = |c: char| {
        c.is_control()
            || matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    };
    let mut s = if s.chars().any(unsafe_char) {
        s.chars().map(|c| if unsafe_char(c) { c.escape_unicode().to_string() } else { c.to_string() }).collect()
    } else {
        s
    };
    if s.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// The closest of `candidates` to `word`, when it is close enough to be a likely typo.
fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .filter(|c| c.len() <= MAX_SUGGESTED_LEN)
        .map(|c| (strsim::jaro_winkler(word, c), *c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters_across_chunks() {
        let src = format!("{}\né{}x", "a".repeat(300), "ü".repeat(300));
        let index = LineIndex::new(src.as_bytes());
        let b = src.as_bytes();
        assert_eq!(index.line_col(b, 0), (1, 1));
        assert_eq!(index.line_col(b, 300), (1, 301));
        assert_eq!(index.line_col(b, 301), (2, 1));
        let x = src.len() - 1;
        assert_eq!(index.line_col(b, x), (2, 302));
        assert_eq!(index.line_col(b, src.len() + 10), (2, 303));
    }

    #[test]
    fn lexical_masking_finds_secret_values() {
        let src = "env = { API_TOKEN = \"hunter2\" }\nenv = { NODE_ENV = \"x\", B_TOKEN = \"t0p\" }\n\"DB_PASSWORD\" = 'p=1' # c\nA_KEY = 12\n";
        let masked = mask(src, &[]);
        assert!(
            !masked.contains("hunter2") && !masked.contains("t0p") && !masked.contains("p=1") && !masked.contains("12"),
            "{masked}"
        );
        assert!(masked.contains("NODE_ENV = \"x\""), "{masked}");
        assert_eq!(masked.len(), src.len());
    }
}
