//! Release ordering: which services go first.
//!
//! A service that takes another's URL, host or port (`env_from = { X = "api.url" }`) comes after
//! it; services of one level are deployed at the same time. Databases are not deployed by the
//! engine, so only service-to-service references order anything.

use std::collections::BTreeSet;

use crate::model::{EnvValue, ReferenceKind, Service};

/// Groups services into levels: a service comes after the services it references. A cycle
/// (refused by the manifest, but not trusted here) is deployed as one level.
pub(crate) fn levels<'a>(services: &[&'a Service]) -> Vec<Vec<&'a Service>> {
    let names: BTreeSet<&str> = services.iter().map(|s| s.name.as_str()).collect();
    let deps = |s: &Service| -> BTreeSet<String> {
        dependencies_of(s).into_iter().filter(|d| *d != s.name && names.contains(d)).map(str::to_string).collect()
    };
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut left: Vec<&Service> = services.to_vec();
    let mut out = Vec::new();
    while !left.is_empty() {
        let (ready, rest): (Vec<&Service>, Vec<&Service>) =
            left.iter().partition(|s| deps(s).iter().all(|d| done.contains(d)));
        let ready = if ready.is_empty() { rest } else { ready };
        for s in &ready {
            done.insert(s.name.clone());
        }
        left.retain(|s| !done.contains(&s.name));
        out.push(ready);
    }
    out
}

/// The services whose URL, host or port `service` takes.
pub(crate) fn dependencies_of(service: &Service) -> BTreeSet<&str> {
    service
        .env
        .values()
        .filter_map(|v| match v {
            EnvValue::From(r) if r.kind == ReferenceKind::Service => Some(r.target.as_str()),
            _ => None,
        })
        .collect()
}
