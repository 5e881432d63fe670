//! Typed readers over the spanned tree that report problems instead of stopping at the first.

use super::diag::Diagnostics;
use super::tree::{Entry, Kind, Node, Span};
use crate::duration::GoDuration;

/// The keys of one table, checked against the keys it may have.
pub(crate) struct Fields<'n> {
    entries: &'n [Entry],
    pub(crate) path: String,
}

impl<'n> Fields<'n> {
    /// Reads `node` as a table whose keys must be among `allowed`; reports every other key.
    pub(crate) fn new(d: &mut Diagnostics<'_>, node: &'n Node, path: &str, allowed: &[&str]) -> Option<Self> {
        let Some(entries) = node.entries() else {
            d.error(&node.span, format!("`{path}` must be a table, found {}", node.type_name()));
            return None;
        };
        for e in entries {
            if !allowed.contains(&e.key.as_str()) {
                unknown_key(d, e, path, allowed);
            }
        }
        Some(Self { entries, path: path.to_string() })
    }

    /// A table whose keys are names chosen by the user (services, env vars…).
    pub(crate) fn open(d: &mut Diagnostics<'_>, node: &'n Node, path: &str) -> Option<Self> {
        let Some(entries) = node.entries() else {
            d.error(&node.span, format!("`{path}` must be a table, found {}", node.type_name()));
            return None;
        };
        Some(Self { entries, path: path.to_string() })
    }

    pub(crate) fn get(&self, key: &str) -> Option<&'n Entry> {
        self.entries.iter().find(|e| e.key == key)
    }

    pub(crate) fn entries(&self) -> &'n [Entry] {
        self.entries
    }

    pub(crate) fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() { key.to_string() } else { format!("{}.{key}", self.path) }
    }

    /// A string value.
    pub(crate) fn string(&self, d: &mut Diagnostics<'_>, key: &str, expected: &str) -> Option<&'n str> {
        let e = self.get(key)?;
        match &e.node.kind {
            Kind::String(s) => Some(s),
            _ => {
                d.error(
                    &e.node.span,
                    format!("`{}` must be {expected}, found {}", self.child_path(key), e.node.type_name()),
                );
                None
            }
        }
    }

    /// An integer in `lo..=hi`.
    pub(crate) fn integer(&self, d: &mut Diagnostics<'_>, key: &str, lo: i64, hi: i64, expected: &str) -> Option<i64> {
        let e = self.get(key)?;
        match &e.node.kind {
            Kind::Integer(i) if (lo..=hi).contains(i) => Some(*i),
            Kind::Integer(i) => {
                d.error(&e.node.span, format!("`{}` must be {expected}, found {i}", self.child_path(key)));
                None
            }
            _ => {
                d.error(
                    &e.node.span,
                    format!("`{}` must be {expected}, found {}", self.child_path(key), e.node.type_name()),
                );
                None
            }
        }
    }

    /// A boolean.
    pub(crate) fn boolean(&self, d: &mut Diagnostics<'_>, key: &str) -> Option<bool> {
        let e = self.get(key)?;
        match &e.node.kind {
            Kind::Boolean(b) => Some(*b),
            _ => {
                d.error(
                    &e.node.span,
                    format!("`{}` must be true or false, found {}", self.child_path(key), e.node.type_name()),
                );
                None
            }
        }
    }

    /// A Go-style duration string.
    pub(crate) fn duration(&self, d: &mut Diagnostics<'_>, key: &str) -> Option<GoDuration> {
        let expected = "a duration like \"30s\", \"500ms\" or \"1h30m\"";
        let text = self.string(d, key, expected)?;
        match text.parse() {
            Ok(v) => Some(v),
            Err(_) => {
                let span = self.get(key).map(|e| e.node.span.clone()).unwrap_or_default();
                d.error(&span, format!("`{}` must be {expected}, found {text:?}", self.child_path(key)));
                None
            }
        }
    }

    /// One of a fixed set of strings.
    pub(crate) fn choice<'c>(&self, d: &mut Diagnostics<'_>, key: &str, choices: &[&'c str]) -> Option<&'c str> {
        let expected = format!("one of {}", quoted_list(choices));
        let text = self.string(d, key, &expected)?;
        if let Some(c) = choices.iter().find(|c| **c == text) {
            return Some(c);
        }
        let span = self.get(key).map(|e| e.node.span.clone()).unwrap_or_default();
        let msg = format!("`{}` must be {expected}, found {text:?}", self.child_path(key));
        match d.did_you_mean(text, choices) {
            Some(m) => d.error_help(&span, msg, format!("did you mean {m:?}?")),
            None => d.error(&span, msg),
        }
        None
    }

    /// An array of strings, each with its span.
    pub(crate) fn strings(&self, d: &mut Diagnostics<'_>, key: &str, expected: &str) -> Option<Vec<(&'n str, Span)>> {
        let e = self.get(key)?;
        let Kind::Array(items) = &e.node.kind else {
            d.error(
                &e.node.span,
                format!("`{}` must be {expected}, found {}", self.child_path(key), e.node.type_name()),
            );
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for item in items {
            match &item.kind {
                Kind::String(s) => out.push((s.as_str(), item.span.clone())),
                _ => {
                    d.error(
                        &item.span,
                        format!(
                            "`{}` must be {expected}, found {} in the array",
                            self.child_path(key),
                            item.type_name()
                        ),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }
}

fn unknown_key(d: &mut Diagnostics<'_>, e: &Entry, path: &str, allowed: &[&str]) {
    let place = if path.is_empty() { "at the top level".to_string() } else { format!("in `{path}`") };
    let msg = format!("unknown key `{}` {place}; expected one of {}", e.key, quoted_list(allowed));
    match d.did_you_mean(&e.key, allowed) {
        Some(m) => d.error_help(&e.key_span, msg, format!("did you mean `{m}`?")),
        None => d.error(&e.key_span, msg),
    }
}

/// Items listed in a message before "and N more".
const MAX_LISTED: usize = 20;
/// Bytes of one listed item before it is cut with "…".
const MAX_ITEM: usize = 64;

/// `a`, `b`, `c`: at most [`MAX_LISTED`] items, each cut to [`MAX_ITEM`] bytes.
pub(crate) fn quoted_list(items: &[&str]) -> String {
    let mut out =
        items.iter().take(MAX_LISTED).map(|i| format!("`{}`", cut(i, MAX_ITEM))).collect::<Vec<_>>().join(", ");
    if items.len() > MAX_LISTED {
        out.push_str(&format!(" and {} more", items.len() - MAX_LISTED));
    }
    out
}

/// `s` cut to at most `max` bytes (on a character boundary), with "…" when cut.
pub(crate) fn cut(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return s.into();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", s.get(..end).unwrap_or_default()).into()
}
