//! Places in a manifest that parsed: checks outside the manifest module (a platform's regions,
//! strategies, settings it ignores) name a key path, and get a line and column from here.
//!
//! Core knows no platform: the checks live in the platform crates and say what they found as
//! [`Finding`]s; a [`Manifest`] turns each into a [`Problem`] at the place it was written.

use std::fmt;
use std::sync::Arc;

use super::diag::{LineIndex, MAX_PROBLEMS, ManifestErrors, Problem};
use super::tree::{Kind, Node, Span};

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// A key of a table (`environments`, `production`, `regions`).
    Name(String),
    /// An item of an array, from 0.
    Index(usize),
}

impl From<&str> for Key {
    fn from(name: &str) -> Self {
        Self::Name(name.to_string())
    }
}

impl From<&String> for Key {
    fn from(name: &String) -> Self {
        Self::Name(name.clone())
    }
}

impl From<usize> for Key {
    fn from(i: usize) -> Self {
        Self::Index(i)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(n) => f.write_str(n),
            Self::Index(i) => write!(f, "{i}"),
        }
    }
}

/// A key path from the manifest's root: `["environments", "production", "regions", 0]`.
pub type KeyPath = Vec<Key>;

/// Builds a [`KeyPath`] from keys and indexes: `path!["environments", env, "regions", 0]`.
#[macro_export]
macro_rules! key_path {
    ($($k:expr),* $(,)?) => {
        vec![$($crate::manifest::Key::from($k)),*]
    };
}

/// How serious a [`Finding`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// A deploy would refuse it: `validate` fails (exit 4).
    Error,
    /// Accepted, but not what the manifest asks for (a setting the target ignores).
    Warning,
}

/// A name that is not among the known ones, so that a caller can suggest the closest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unknown {
    /// The name as written.
    pub found: String,
    /// The names it could have been.
    pub known: Vec<String>,
}

/// What a check outside the manifest module found, and at which key path.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// Where: the longest prefix of it that the manifest has is where it is reported (a missing
    /// `regions` is reported at its environment).
    pub path: KeyPath,
    /// What is wrong and what was expected.
    pub message: String,
    /// A hint.
    pub help: Option<String>,
    /// A name that is not known, for "did you mean".
    pub unknown: Option<Unknown>,
    /// Other places it may be written, tried after `path` (a service's setting: an
    /// environment's override first, then the base service).
    pub also: Vec<KeyPath>,
}

impl Finding {
    /// An error at `path`.
    pub fn error(path: KeyPath, message: impl Into<String>) -> Self {
        Self { severity: Severity::Error, path, message: message.into(), help: None, unknown: None, also: Vec::new() }
    }

    /// A warning at `path`.
    pub fn warning(path: KeyPath, message: impl Into<String>) -> Self {
        Self { severity: Severity::Warning, path, message: message.into(), help: None, unknown: None, also: Vec::new() }
    }

    /// An error at `path`: `region` (named by `what`) is not one of `platform`'s `regions`,
    /// with the closest one as a hint.
    pub fn unknown_region(path: KeyPath, what: &str, region: &str, platform: &str, regions: &[&str]) -> Self {
        Self::error(
            path,
            format!("{what}: {region:?} is not a {platform} region; {platform}'s regions are {}", regions.join(", ")),
        )
        .with_unknown(region, regions)
    }

    /// With a hint.
    #[must_use]
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// With the name that is not known and the names it could have been.
    #[must_use]
    pub fn with_unknown(mut self, found: &str, known: &[&str]) -> Self {
        self.unknown = Some(Unknown { found: found.to_string(), known: known.iter().map(|k| k.to_string()).collect() });
        self
    }

    /// Reported at `path` instead when the manifest writes it and not the paths before.
    #[must_use]
    pub fn or_at(mut self, path: KeyPath) -> Self {
        self.also.push(path);
        self
    }

    /// A setting of service `service` in environment `env`: where the environment overrides it,
    /// else where the base service writes it.
    pub fn service_setting(
        severity: Severity,
        env: &str,
        service: &str,
        key: &[&str],
        message: impl Into<String>,
    ) -> Self {
        let mut over: KeyPath = vec!["environments".into(), env.into(), "services".into(), service.into()];
        over.extend(key.iter().map(|k| Key::from(*k)));
        let mut base: KeyPath = vec!["services".into(), service.into()];
        base.extend(key.iter().map(|k| Key::from(*k)));
        let f = match severity {
            Severity::Error => Self::error(over, message),
            Severity::Warning => Self::warning(over, message),
        };
        f.or_at(base)
    }

    /// Whether it is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// A manifest that parsed, with its text: gives any key path its line and column.
#[derive(Debug, Clone)]
pub struct Manifest {
    file: String,
    /// The text, with secret values masked (as in [`ManifestErrors::source_text`]).
    text: Arc<str>,
    index: Arc<LineIndex>,
    root: Arc<Node>,
}

impl Manifest {
    pub(crate) fn new(file: &str, text: Arc<str>, root: Node) -> Self {
        let index = LineIndex::new(text.as_bytes());
        Self { file: file.to_string(), text, index: Arc::new(index), root: Arc::new(root) }
    }

    /// The file name as given.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The text, with secret values masked.
    pub fn source_text(&self) -> &str {
        &self.text
    }

    /// The node at `path`, and how many of its steps were found.
    fn find(&self, path: &[Key]) -> (Option<(&Node, &Span)>, usize) {
        let mut node = &*self.root;
        let mut last: Option<(&Node, &Span)> = None;
        for (i, step) in path.iter().enumerate() {
            let next = match (step, &node.kind) {
                (Key::Name(k), Kind::Table(entries)) => {
                    entries.iter().find(|e| &e.key == k).map(|e| (&e.node, &e.key_span))
                }
                (Key::Index(n), Kind::Array(items)) => items.get(*n).map(|item| (item, &item.span)),
                _ => None,
            };
            match next {
                Some((n, key_span)) => {
                    node = n;
                    last = Some((n, key_span));
                }
                None => return (last, i),
            }
        }
        (last, path.len())
    }

    /// Whether the manifest writes every step of `path`.
    pub fn has(&self, path: &[Key]) -> bool {
        self.find(path).1 == path.len()
    }

    /// Where `path` is written: a value's own span, a table's key; when the manifest lacks
    /// the path, the key of its longest prefix that it has (the top of the file for none).
    pub fn span(&self, path: &[Key]) -> Span {
        match self.find(path) {
            (Some((node, key_span)), found) if found == path.len() => match node.kind {
                Kind::Table(_) => key_span.clone(),
                _ => node.span.clone(),
            },
            (Some((_, key_span)), _) => key_span.clone(),
            (None, _) => 0..0,
        }
    }

    /// The comment after the value at `path`, on the same line (`port = 4000  # EXPOSE 4000`
    /// gives `EXPOSE 4000`), when the manifest writes the path and such a comment.
    pub fn comment_after(&self, path: &[Key]) -> Option<&str> {
        let (Some((node, _)), found) = self.find(path) else { return None };
        if found != path.len() || matches!(node.kind, Kind::Table(_)) {
            return None;
        }
        let rest = self.text.get(node.span.end..)?;
        let line = rest.split('\n').next().unwrap_or_default().trim_end_matches('\r');
        let comment = line.trim_start().strip_prefix('#')?;
        Some(comment.trim())
    }

    /// 1-based line and column of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        self.index.line_col(self.text.as_bytes(), offset)
    }

    /// The problem `finding` is, at its place in the file; `help` replaces the finding's own
    /// when given (a caller's "did you mean").
    pub fn problem(&self, finding: &Finding, help: Option<String>) -> Problem {
        let path = std::iter::once(&finding.path)
            .chain(&finding.also)
            .find(|p| self.has(p))
            .or_else(|| finding.also.last())
            .unwrap_or(&finding.path);
        let span = self.span(path);
        let (line, column) = self.line_col(span.start);
        Problem {
            line,
            column,
            span,
            message: super::diag::printable(finding.message.clone()),
            help: help.or_else(|| finding.help.clone()).map(super::diag::printable),
        }
    }

    /// `problems` as the errors of this manifest, in file order, at most [`MAX_PROBLEMS`]
    /// (then one saying that more were found), each place and message once.
    pub fn errors(&self, problems: Vec<Problem>) -> ManifestErrors {
        let mut seen = std::collections::HashSet::new();
        let mut problems: Vec<Problem> = problems.into_iter().filter(|p| seen.insert(p.clone())).collect();
        problems.sort_by_key(|p| (p.line, p.column));
        if problems.len() > MAX_PROBLEMS {
            let first_dropped = problems.get(MAX_PROBLEMS).cloned();
            problems.truncate(MAX_PROBLEMS);
            if let Some(p) = first_dropped {
                problems.push(Problem {
                    message: format!("too many problems: only the first {MAX_PROBLEMS} are reported"),
                    help: None,
                    ..p
                });
            }
        }
        ManifestErrors { file: self.file.clone(), source_text: self.text.clone(), problems }
    }
}
