//! Release history from machine config versions: Fly keeps no releases, so shipit reads back
//! the metadata it wrote (`shipit_release`, `shipit_digest`, `shipit_git_sha`, `shipit_failed`).
//!
//! A release is a (release id, digest) pair. Ids are shown as they are, except when one id
//! names several digests (two deploys of one commit within a second): then every entry but the
//! live (else newest) one gets `-<digest7>` appended, so each listed id names one image.
//!
//! A release is failed when a rollback replaced it: the config version that first lists its id
//! in `shipit_failed` follows a version of that release on the same machine. When the history
//! is too short to see that, every non-live release with the id counts as failed.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use shipit_core::{Release, ReleaseStatus};

use crate::machine::{self, META_GIT_SHA};

/// One machine's configs, oldest first, ending with its current config; each with the time
/// its version was made (unix ms) when known.
pub(crate) type History<'a> = Vec<(&'a Value, Option<i64>)>;

type Key = (String, Option<String>);

/// The release a config belongs to: its `shipit_release`, else `unmanaged-<digest12>`.
pub(crate) fn release_id_of(config: &Value) -> Option<String> {
    if let Some(id) = config.pointer("/metadata/shipit_release").and_then(Value::as_str).filter(|s| !s.is_empty()) {
        return Some(id.to_string());
    }
    let digest = digest_of(config)?;
    let hex = digest.split_once(':').map_or(digest.as_str(), |(_, h)| h);
    Some(format!("unmanaged-{}", hex.chars().take(12).collect::<String>()))
}

fn digest_of(config: &Value) -> Option<String> {
    config.get("image").and_then(Value::as_str).and_then(machine::digest_of).map(str::to_string)
}

fn key_of(config: &Value) -> Option<Key> {
    Some((release_id_of(config)?, digest_of(config)))
}

/// The time a shipit release id starts with (`20261122T031500Z-…`), in unix ms.
pub(crate) fn release_id_time(id: &str) -> Option<i64> {
    let stamp = id.get(..16)?;
    let b = stamp.as_bytes();
    if b.get(8) != Some(&b'T') || b.get(15) != Some(&b'Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| stamp.get(r).and_then(|s| s.parse::<i16>().ok());
    let (y, mo, d, h, mi, s) = (num(0..4)?, num(4..6)?, num(6..8)?, num(9..11)?, num(11..13)?, num(13..15)?);
    let small = |v: i16| i8::try_from(v).ok();
    let dt = jiff::civil::DateTime::new(y, small(mo)?, small(d)?, small(h)?, small(mi)?, small(s)?, 0).ok()?;
    Some(dt.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp().as_millisecond())
}

/// The time a ULID (Fly's version ids) was made, in unix ms.
pub(crate) fn ulid_time(s: &str) -> Option<i64> {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    if s.len() != 26 {
        return None;
    }
    let mut ms: i64 = 0;
    for c in s.get(..10)?.bytes() {
        let v = ALPHABET.iter().position(|a| *a == c.to_ascii_uppercase())?;
        ms = ms.checked_mul(32)?.checked_add(i64::try_from(v).ok()?)?;
    }
    Some(ms)
}

fn rfc3339(ms: i64) -> Option<String> {
    jiff::Timestamp::from_millisecond(ms).ok().map(|t| t.to_string())
}

#[derive(Default)]
struct Seen<'a> {
    config: Option<&'a Value>,
    /// Largest age (0 = a current config) over machines: how far back it first appears.
    age: usize,
    first_ms: Option<i64>,
    live: bool,
    failed: bool,
}

/// The releases of `service`, newest first.
pub(crate) fn releases(service: &str, histories: &[History<'_>]) -> Vec<Release> {
    let mut seen: BTreeMap<Key, Seen<'_>> = BTreeMap::new();
    let mut failed_pairs: BTreeSet<Key> = BTreeSet::new();
    let mut failed_ids: BTreeSet<String> = BTreeSet::new();
    for history in histories {
        let n = history.len();
        for (i, (config, ms)) in history.iter().enumerate() {
            let listed = machine::failed_ids(config);
            // Ids this version newly lists as failed: the version before it is that release.
            if let Some((prev, _)) = i.checked_sub(1).and_then(|p| history.get(p)) {
                let before = machine::failed_ids(prev);
                for id in listed.iter().filter(|id| !before.contains(id)) {
                    if let Some(k) = key_of(prev).filter(|k| &k.0 == id) {
                        failed_pairs.insert(k);
                    }
                }
            }
            failed_ids.extend(listed);
            let Some(key) = key_of(config) else { continue };
            let age = n - 1 - i;
            let e = seen.entry(key).or_default();
            e.config.get_or_insert(config);
            e.age = e.age.max(age);
            e.first_ms = match (e.first_ms, *ms) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            e.live |= age == 0;
        }
    }
    let resolved: BTreeSet<&String> = failed_pairs.iter().map(|(id, _)| id).collect();
    for (key, e) in &mut seen {
        e.failed = failed_pairs.contains(key) || (failed_ids.contains(&key.0) && !resolved.contains(&key.0));
    }

    // One shown id per image: the live (else newest) entry keeps the id, the others get a suffix.
    let mut by_id: BTreeMap<&str, Vec<(&Key, &Seen<'_>)>> = BTreeMap::new();
    for (k, e) in &seen {
        by_id.entry(k.0.as_str()).or_default().push((k, e));
    }
    let mut shown: BTreeMap<&Key, String> = BTreeMap::new();
    for (id, mut entries) in by_id {
        entries.sort_by_key(|(_, e)| (!e.live, e.age));
        for (i, (k, _)) in entries.iter().enumerate() {
            let name = match (&k.1, i) {
                (Some(d), 1..) => {
                    let hex = d.split_once(':').map_or(d.as_str(), |(_, h)| h);
                    format!("{id}-{}", hex.chars().take(7).collect::<String>())
                }
                _ => id.to_string(),
            };
            shown.insert(k, name);
        }
    }

    // Entries that now show the same id and image are one release.
    let mut merged: BTreeMap<Key, Seen<'_>> = BTreeMap::new();
    for (k, e) in &seen {
        let name = shown.get(k).cloned().unwrap_or_else(|| k.0.clone());
        let m = merged.entry((name, k.1.clone())).or_default();
        m.config = m.config.or(e.config);
        m.age = m.age.max(e.age);
        m.first_ms = match (m.first_ms, e.first_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        m.live |= e.live;
        m.failed |= e.failed;
    }

    let mut out: Vec<(Option<i64>, usize, Release)> = merged
        .into_iter()
        .filter_map(|((id, digest), e)| {
            // A release recorded as failed stays failed even while it runs (`--on-failure
            // leave`, or nothing earlier to go back to): it never passed its gate.
            let status = if e.failed {
                ReleaseStatus::Failed
            } else if e.live {
                ReleaseStatus::Live
            } else {
                ReleaseStatus::Superseded
            };
            let (config, age, first_ms) = (e.config?, e.age, e.first_ms);
            let time = first_ms.or_else(|| release_id_time(&id));
            let mut r = Release::new(&id, service, status);
            r.image = config.get("image").and_then(Value::as_str).map(str::to_string);
            r.digest = digest;
            r.git_sha = config
                .pointer("/metadata")
                .and_then(|m| m.get(META_GIT_SHA))
                .and_then(Value::as_str)
                .map(str::to_string);
            r.created_at = time.and_then(rfc3339);
            Some((time, age, r))
        })
        .collect();
    // Newest first: by time when every release has one, else by how far back it first appears.
    if out.iter().all(|(t, _, _)| t.is_some()) {
        out.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(b.2.id.cmp(&a.2.id)));
    } else {
        out.sort_by(|a, b| a.1.cmp(&b.1).then(b.2.id.cmp(&a.2.id)));
    }
    out.into_iter().map(|(_, _, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn cfg(id: &str, digest: &str, failed: &str) -> Value {
        json!({"image": format!("r.io/a/b@sha256:{digest}"), "metadata": {"shipit_release": id, "shipit_failed": failed, "shipit_git_sha": "abc"}})
    }

    #[test]
    fn times_from_release_ids_and_ulids() {
        assert_eq!(
            release_id_time("20261122T031500Z-3f2c1ab").and_then(rfc3339).as_deref(),
            Some("2026-11-22T03:15:00Z")
        );
        assert_eq!(release_id_time("r1"), None);
        // 01ARZ3NDEK = 1469922850259 ms (the ULID spec's example).
        assert_eq!(ulid_time("01ARZ3NDEKTSV4RRFFQ69G5FAV"), Some(1_469_922_850_259));
        assert_eq!(ulid_time("v3"), None);
    }

    #[test]
    fn rollback_marks_the_replaced_release_failed() {
        let (good, bad, back) = (cfg("T1", "aaaa", ""), cfg("T2", "bbbb", ""), cfg("T1", "aaaa", "T2"));
        let h: Vec<History<'_>> =
            vec![vec![(&good, None), (&bad, None), (&back, None)], vec![(&good, None), (&back, None)]];
        let r = releases("api", &h);
        let status: Vec<(&str, ReleaseStatus)> = r.iter().map(|r| (r.id.as_str(), r.status)).collect();
        assert_eq!(status, [("T2", ReleaseStatus::Failed), ("T1", ReleaseStatus::Live)]);
        assert_eq!(r.first().and_then(|r| r.git_sha.as_deref()), Some("abc"));
    }

    #[test]
    fn one_id_for_two_images_is_split() {
        let id = "20261122T031500Z-c0ffee1";
        let (v1, v2, v3) = (cfg(id, "1111111", ""), cfg(id, "2222222", ""), cfg(id, "3333333", ""));
        let h: Vec<History<'_>> = vec![vec![(&v1, None), (&v2, None), (&v3, None)]];
        let ids: Vec<String> = releases("api", &h).into_iter().map(|r| r.id).collect();
        assert_eq!(ids, [id.to_string(), format!("{id}-2222222"), format!("{id}-1111111")]);
    }

    #[test]
    fn a_failed_id_shared_with_a_good_release_fails_only_the_bad_image() {
        let id = "20261122T031500Z-c0ffee1";
        let (good, bad, back, next) =
            (cfg(id, "aaaa", ""), cfg(id, "bbbb", ""), cfg(id, "aaaa", id), cfg("20261122T040000Z-d", "cccc", id));
        let h: Vec<History<'_>> = vec![vec![(&good, None), (&bad, None), (&back, None), (&next, None)]];
        let r = releases("api", &h);
        let status: Vec<(Option<&str>, ReleaseStatus)> = r.iter().map(|r| (r.digest.as_deref(), r.status)).collect();
        assert_eq!(
            status,
            [
                (Some("sha256:cccc"), ReleaseStatus::Live),
                (Some("sha256:bbbb"), ReleaseStatus::Failed),
                (Some("sha256:aaaa"), ReleaseStatus::Superseded),
            ]
        );
    }
}
