//! Fly's restore points: every machine's whole config, so a restore puts back image *and*
//! settings exactly as they were, machine by machine.
//!
//! Fly has no rollback of its own; restoring is a rollout whose desired configs are the ones
//! recorded in the point. Machines the failed deploy created (not in the point) get the
//! point's release config. The restored configs carry the failed release in `shipit_failed`,
//! which is how [`crate::history`] knows it is never a rollback target. A release left in place
//! (`--on-failure leave`, or nothing to go back to) is recorded through the machine metadata
//! endpoint, which changes no config and restarts nothing.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use shipit_core::{Release, ReleaseStatus, RestorePoint, Service};

use crate::client::Machine;
use crate::history;
use crate::machine::{self, META_FAILED, META_GIT_SHA};

/// The point of `machines` (as listed now).
pub(crate) fn point_of(service: &Service, machines: &[Machine]) -> RestorePoint {
    let configs: serde_json::Map<String, Value> = machines.iter().map(|m| (m.id.clone(), m.config.clone())).collect();
    let release = common_release(service, machines.iter().map(|m| &m.config));
    RestorePoint::new(&service.name, release, json!({ "machines": configs }))
}

/// A point that returns every machine to `config` (a release from history).
pub(crate) fn point_for_config(service: &Service, release: &Release, config: &Value) -> RestorePoint {
    let mut r = release.clone();
    r.status = ReleaseStatus::Superseded;
    RestorePoint::new(&service.name, Some(r), json!({ "machines": {}, "config": config }))
}

/// The release every config runs, if they agree on one.
fn common_release<'a>(service: &Service, configs: impl Iterator<Item = &'a Value>) -> Option<Release> {
    let mut first: Option<(String, String, &Value)> = None;
    for c in configs {
        let id = history::release_id_of(c)?;
        let digest = c.get("image").and_then(Value::as_str).and_then(machine::digest_of)?.to_string();
        match &first {
            None => first = Some((id, digest, c)),
            Some((i, d, _)) if *i == id && *d == digest => {}
            Some(_) => return None,
        }
    }
    let (id, digest, config) = first?;
    let mut r = Release::new(id, &service.name, ReleaseStatus::Live);
    r.image = config.get("image").and_then(Value::as_str).map(str::to_string);
    r.digest = Some(digest);
    r.git_sha =
        config.pointer("/metadata").and_then(|m| m.get(META_GIT_SHA)).and_then(Value::as_str).map(str::to_string);
    Some(r)
}

/// The configs a point recorded, by machine id.
pub(crate) fn configs(point: &RestorePoint) -> BTreeMap<String, Value> {
    point
        .state
        .get("machines")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// The config of the point's release: the one recorded for it, else any machine's.
pub(crate) fn release_config(point: &RestorePoint) -> Option<Value> {
    if let Some(c) = point.state.get("config").filter(|c| c.is_object()) {
        return Some(c.clone());
    }
    configs(point).into_values().next()
}

/// Whether the machines differ from what the point recorded (another deploy ran in between).
/// A point from history records no machines and never counts as changed.
pub(crate) fn changed_since(point: &RestorePoint, machines: &[Machine]) -> bool {
    if point.state.get("config").is_some_and(Value::is_object) {
        return false;
    }
    let before = configs(point);
    before.len() != machines.len()
        || machines.iter().any(|m| {
            before.get(&m.id).is_none_or(|c| {
                !machine::same_settings(c, &m.config) || history::release_id_of(c) != history::release_id_of(&m.config)
            })
        })
}

/// `config` with `shipit_failed` set to `failed`.
pub(crate) fn with_failed(config: &Value, failed: &[String]) -> Value {
    let mut c = config.clone();
    if let Some(meta) = c.get_mut("metadata").and_then(Value::as_object_mut) {
        if failed.is_empty() {
            meta.remove(META_FAILED);
        } else {
            meta.insert(META_FAILED.into(), Value::String(failed.join(",")));
        }
    } else if !failed.is_empty()
        && let Some(obj) = c.as_object_mut()
    {
        obj.insert("metadata".into(), json!({ META_FAILED: failed.join(",") }));
    }
    c
}

/// Every failed id the machines list, plus `extra`, capped.
pub(crate) fn failed_list(machines: &[Machine], extra: Option<&str>) -> Vec<String> {
    let mut failed = Vec::new();
    for m in machines {
        for id in machine::failed_ids(&m.config) {
            machine::push_failed(&mut failed, &id);
        }
    }
    if let Some(id) = extra {
        machine::push_failed(&mut failed, id);
    }
    failed
}
