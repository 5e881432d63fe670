//! A small spanned tree built from the TOML document.
//!
//! `toml_edit` keeps spans, but tables, inline tables and arrays of tables are three different
//! types, and merging an environment's overrides over a service means building new tables. This
//! tree is one uniform shape that keeps the span of every key and value, so that a merged
//! override still points at the line where it was written.

use std::collections::HashMap;
use std::ops::Range;

use toml_edit::{Item, Table, Value};

/// A byte range in the manifest source.
pub type Span = Range<usize>;

/// A value in the manifest with where it was written.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) kind: Kind,
    pub(crate) span: Span,
}

/// An entry of a table: its key (with the key's span) and its value.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) key: String,
    pub(crate) key_span: Span,
    pub(crate) node: Node,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Table(Vec<Entry>),
    Array(Vec<Node>),
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    Datetime,
}

impl Node {
    /// The name of this value's TOML type, for "expected X, found Y" messages.
    pub(crate) fn type_name(&self) -> &'static str {
        match &self.kind {
            Kind::Table(_) => "a table",
            Kind::Array(_) => "an array",
            Kind::String(_) => "a string",
            Kind::Integer(_) => "an integer",
            Kind::Float(_) => "a float",
            Kind::Boolean(_) => "a boolean",
            Kind::Datetime => "a date-time",
        }
    }

    pub(crate) fn entries(&self) -> Option<&[Entry]> {
        match &self.kind {
            Kind::Table(entries) => Some(entries),
            _ => None,
        }
    }

    /// How many values this is: itself, and every key, value and item within.
    pub(crate) fn size(&self) -> usize {
        1 + match &self.kind {
            Kind::Table(entries) => entries.iter().map(|e| e.node.size()).sum(),
            Kind::Array(items) => items.iter().map(Node::size).sum(),
            _ => 0,
        }
    }

    /// Merges `over` into `self`: tables merge key by key, anything else is replaced.
    pub(crate) fn merge(&mut self, over: &Node) {
        match (&mut self.kind, &over.kind) {
            (Kind::Table(base), Kind::Table(overrides)) => {
                // Indexed by key: merging many keys over many keys stays linear.
                let mut at: HashMap<String, usize> = base.iter().enumerate().map(|(i, b)| (b.key.clone(), i)).collect();
                for o in overrides {
                    match at.get(&o.key).and_then(|i| base.get_mut(*i)) {
                        Some(b) => {
                            b.node.merge(&o.node);
                            b.key_span = o.key_span.clone();
                        }
                        None => {
                            at.insert(o.key.clone(), base.len());
                            base.push(o.clone());
                        }
                    }
                }
            }
            _ => *self = over.clone(),
        }
    }
}

/// Converts a parsed document's root table.
pub(crate) fn from_table(table: &Table, fallback: Span) -> Node {
    let span = table.span().unwrap_or(fallback);
    let mut entries = Vec::new();
    for (key, item) in table.iter() {
        let key_span = table.get_key_value(key).and_then(|(k, _)| k.span()).unwrap_or_else(|| span.clone());
        if let Some(node) = from_item(item, key_span.clone()) {
            entries.push(Entry { key: key.to_string(), key_span, node });
        }
    }
    Node { kind: Kind::Table(entries), span }
}

fn from_item(item: &Item, key_span: Span) -> Option<Node> {
    match item {
        Item::None => None,
        Item::Value(v) => Some(from_value(v, key_span)),
        Item::Table(t) => Some(from_table(t, key_span)),
        Item::ArrayOfTables(a) => {
            let span = a.span().unwrap_or_else(|| key_span.clone());
            let nodes = a.iter().map(|t| from_table(t, key_span.clone())).collect();
            Some(Node { kind: Kind::Array(nodes), span })
        }
    }
}

fn from_value(value: &Value, key_span: Span) -> Node {
    let span = value.span().unwrap_or_else(|| key_span.clone());
    let kind = match value {
        Value::String(s) => Kind::String(s.value().clone()),
        Value::Integer(i) => Kind::Integer(*i.value()),
        Value::Float(f) => Kind::Float(*f.value()),
        Value::Boolean(b) => Kind::Boolean(*b.value()),
        Value::Datetime(_) => Kind::Datetime,
        Value::Array(a) => Kind::Array(a.iter().map(|v| from_value(v, span.clone())).collect()),
        Value::InlineTable(t) => {
            let mut entries = Vec::new();
            for (key, v) in t.iter() {
                let k_span = t.get_key_value(key).and_then(|(k, _)| k.span()).unwrap_or_else(|| span.clone());
                let node = from_value(v, k_span.clone());
                entries.push(Entry { key: key.to_string(), key_span: k_span, node });
            }
            Kind::Table(entries)
        }
    };
    Node { kind, span }
}
