//! The record reprise keeps in meta.json under `--metajsonname`, and the pure rules about it:
//! which entry of a record key is for a repository (the primary record or an
//! `additional-images` entry), whether that entry is current ([`record_state`], the one
//! definition of "already recorded"), and how a record is put under the key without touching
//! anything else. No I/O: reading and writing files is [`super::meta`]'s and
//! [`super::write`]'s.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::reference::{Digest, Repository, Tag};

/// The record reprise keeps under `--metajsonname`, the same fields cosa writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    pub image: Repository,
    pub digest: Digest,
    #[serde(rename = "manifest-list-digest")]
    pub manifest_list_digest: Digest,
    pub tags: Vec<Tag>,
}

impl Record {
    pub(super) fn to_json(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m,
            _ => unreachable!("a Record serialises to an object"),
        }
    }

    fn matches(&self, entry: &Value) -> bool {
        let Some(obj) = entry.as_object() else {
            return false;
        };
        let want = self.to_json();
        want.iter().all(|(k, v)| obj.get(k) == Some(v))
    }
}

/// Whether a meta.json already records what a run would record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordState {
    /// No record for this repository under the key.
    Missing,
    /// A record for this repository exists but says something else.
    Stale,
    /// Exactly the record a run would write.
    Current,
}

fn is_for_image(entry: &Value, image: &Repository) -> bool {
    entry
        .get("image")
        .and_then(Value::as_str)
        .and_then(|s| Repository::parse(s).ok())
        .is_some_and(|r| &r == image)
}

/// The entry for `image` in what a record key holds: the primary record, or its
/// `additional-images` entry for that repository.
pub fn record_entry<'a>(existing: &'a Value, image: &Repository) -> Option<&'a Value> {
    if is_for_image(existing, image) {
        return Some(existing);
    }
    existing
        .get("additional-images")
        .and_then(Value::as_array)
        .and_then(|list| list.iter().find(|e| is_for_image(e, image)))
}

/// Every repository a record key names: the primary record's `image` and each
/// `additional-images` entry's.
pub fn record_images(existing: &Value) -> impl Iterator<Item = Repository> + '_ {
    let extra = existing
        .get("additional-images")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    std::iter::once(existing).chain(extra).filter_map(|e| {
        e.get("image")
            .and_then(Value::as_str)
            .and_then(|s| Repository::parse(s).ok())
    })
}

/// The one definition of "already recorded": the primary record or the `additional-images`
/// entry for the same repository holds every field of `want`.
pub fn record_state(existing: Option<&Value>, want: &Record) -> RecordState {
    let Some(existing) = existing else {
        return RecordState::Missing;
    };
    match record_entry(existing, &want.image) {
        None => RecordState::Missing,
        Some(e) if want.matches(e) => RecordState::Current,
        Some(_) => RecordState::Stale,
    }
}

/// Puts `want` under `key`: updates the primary record or the `additional-images` entry for
/// the same repository in place (so other fields and their order survive), or adds one.
/// Never appends a second entry for a repository. Whatever is there that is not a record
/// belongs to someone; it is refused, never overwritten with a guess.
pub(super) fn put_record(
    json: &mut Map<String, Value>,
    key: &str,
    want: &Record,
) -> Result<(), String> {
    let primary = json.get(key).is_some_and(|v| is_for_image(v, &want.image));
    match json.get_mut(key) {
        Some(Value::Object(obj)) if primary => merge_fields(obj, want),
        Some(Value::Object(obj)) if obj.contains_key("image") => {
            put_additional_image(obj, want).map_err(|what| format!("{key}.{what}"))?;
        }
        Some(other) if !other.is_null() && !other.is_object() => {
            return Err(format!("{key} is not an object"));
        }
        _ => {
            json.insert(key.to_owned(), Value::Object(want.to_json()));
        }
    }
    Ok(())
}

/// Puts `want` into the `additional-images` list of a primary record for another repository:
/// updates its entry, or appends one. The error names what is malformed, relative to `primary`.
fn put_additional_image(primary: &mut Map<String, Value>, want: &Record) -> Result<(), String> {
    let list = primary
        .entry("additional-images")
        .or_insert_with(|| Value::Array(Vec::new()));
    let Value::Array(list) = list else {
        return Err("additional-images is not a list".to_owned());
    };
    match list
        .iter_mut()
        .find(|e| is_for_image(e, &want.image))
        .and_then(Value::as_object_mut)
    {
        Some(entry) => merge_fields(entry, want),
        None => list.push(Value::Object(want.to_json())),
    }
    Ok(())
}

/// Sets `want`'s fields on `entry`, in place: fields reprise does not own, and the order of
/// those it does, are kept.
fn merge_fields(entry: &mut Map<String, Value>, want: &Record) {
    for (k, v) in want.to_json() {
        entry.insert(k, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builds::test_support::{digest, meta_with, record};
    use serde_json::json;

    fn repos(existing: &Value) -> Vec<String> {
        record_images(existing).map(|r| r.to_string()).collect()
    }

    #[test]
    fn record_states() {
        let want = record("quay.io/a/b", 'a');
        assert_eq!(record_state(None, &want), RecordState::Missing);
        let current = Value::Object(want.to_json());
        assert_eq!(record_state(Some(&current), &want), RecordState::Current);
        let stale = Value::Object(record("quay.io/a/b", 'b').to_json());
        assert_eq!(record_state(Some(&stale), &want), RecordState::Stale);
        let other = Value::Object(record("quay.io/x/y", 'a').to_json());
        assert_eq!(record_state(Some(&other), &want), RecordState::Missing);
    }

    #[test]
    fn record_state_table() {
        let want = record("quay.io/a/b", 'a');
        let cur = Value::Object(want.to_json());
        let old = Value::Object(record("quay.io/a/b", 'b').to_json());
        let mut with_extra_field = want.to_json();
        with_extra_field.insert("extra".into(), "kept".into());
        let mut missing_a_field = want.to_json();
        missing_a_field.remove("tags");
        let primary_other = |extra: Value| {
            let mut p = record("quay.io/x/y", 'c').to_json();
            p.insert("additional-images".into(), extra);
            Value::Object(p)
        };
        let cases = [
            ("no value", None, RecordState::Missing),
            ("null", Some(Value::Null), RecordState::Missing),
            ("a string", Some(json!("quay.io/a/b")), RecordState::Missing),
            ("primary, current", Some(cur.clone()), RecordState::Current),
            (
                "primary, extra fields",
                Some(Value::Object(with_extra_field)),
                RecordState::Current,
            ),
            (
                "primary, a field missing",
                Some(Value::Object(missing_a_field)),
                RecordState::Stale,
            ),
            (
                "primary, other digest",
                Some(old.clone()),
                RecordState::Stale,
            ),
            (
                "additional entry, current",
                Some(primary_other(json!([cur]))),
                RecordState::Current,
            ),
            (
                "additional entry, stale",
                Some(primary_other(json!([old]))),
                RecordState::Stale,
            ),
            (
                "additional-images not a list",
                Some(primary_other(json!(7))),
                RecordState::Missing,
            ),
            (
                "another repository only",
                Some(primary_other(json!([]))),
                RecordState::Missing,
            ),
        ];
        for (what, existing, state) in cases {
            assert_eq!(record_state(existing.as_ref(), &want), state, "{what}");
        }
        // The same repository spelled another way is its entry, but not current: a write
        // puts the normalised name in.
        let hub = record("docker.io/fedora/coreos", 'a');
        let mut short = hub.to_json();
        short.insert("image".into(), "fedora/coreos".into());
        let short = Value::Object(short);
        assert_eq!(record_entry(&short, &hub.image), Some(&short));
        assert_eq!(record_state(Some(&short), &hub), RecordState::Stale);
    }

    #[test]
    fn record_entry_finds_the_primary_or_the_additional_entry_for_a_repository() {
        let mut primary = record("quay.io/a/b", 'a').to_json();
        let mirror = Value::Object(record("registry.example.com/m/b", 'b').to_json());
        primary.insert("additional-images".into(), json!([mirror]));
        let existing = Value::Object(primary);
        let find = |repo: &str| record_entry(&existing, &Repository::parse(repo).unwrap());
        assert_eq!(find("quay.io/a/b"), Some(&existing));
        assert_eq!(find("registry.example.com/m/b"), Some(&mirror));
        assert_eq!(find("quay.io/x/y"), None);
    }

    #[test]
    fn record_images_lists_every_repository_a_key_names() {
        let cases = [
            (json!(null), vec![]),
            (json!("quay.io/a/b"), vec![]),
            (json!({ "image": "quay.io/a/b" }), vec!["quay.io/a/b"]),
            (
                json!({
                    "image": "quay.io/a/b",
                    "additional-images": [
                        { "image": "registry.example.com/m/b" },
                        { "image": "not a repository!" },
                        { "digest": "no image" },
                        { "image": "quay.io/c/d" },
                    ],
                }),
                vec!["quay.io/a/b", "registry.example.com/m/b", "quay.io/c/d"],
            ),
            (
                json!({ "additional-images": [{ "image": "quay.io/c/d" }] }),
                vec!["quay.io/c/d"],
            ),
            (
                json!({ "image": "quay.io/a/b", "additional-images": 7 }),
                vec!["quay.io/a/b"],
            ),
        ];
        for (existing, want) in cases {
            assert_eq!(repos(&existing), want, "{existing}");
        }
    }

    #[test]
    fn putting_a_record_keeps_key_order_and_other_fields() {
        let mut existing = record("quay.io/a/b", 'b').to_json();
        existing.insert("extra".into(), "kept".into());
        let mut json = meta_with(Some(Value::Object(existing)));
        put_record(&mut json, "base-oscontainer", &record("quay.io/a/b", 'a')).unwrap();
        let keys: Vec<_> = json.keys().cloned().collect();
        assert_eq!(keys, ["buildid", "base-oscontainer", "name"]);
        let rec = &json["base-oscontainer"];
        assert_eq!(rec["extra"], "kept");
        assert_eq!(rec["digest"], digest('a').as_str());
    }

    #[test]
    fn second_repository_goes_to_additional_images_once() {
        let mut json = meta_with(None);
        let first = record("quay.io/a/b", 'a');
        let second = record("registry.example.com/mirror/b", 'a');
        for r in [&first, &second, &second] {
            put_record(&mut json, "base-oscontainer", r).unwrap();
        }
        let rec = &json["base-oscontainer"];
        assert_eq!(rec["image"], "quay.io/a/b");
        let extra = rec["additional-images"].as_array().unwrap();
        assert_eq!(extra.len(), 1);
        assert_eq!(extra[0]["image"], "registry.example.com/mirror/b");
        assert_eq!(record_state(Some(rec), &second), RecordState::Current);
        assert_eq!(record_state(Some(rec), &first), RecordState::Current);
    }

    #[test]
    fn an_additional_entry_is_updated_in_place() {
        let mirror = "registry.example.com/mirror/b";
        let mut entry = record(mirror, 'b').to_json();
        entry.insert("extra".into(), "kept".into());
        let mut primary = record("quay.io/a/b", 'a').to_json();
        primary.insert("additional-images".into(), json!([entry]));
        let mut json = meta_with(Some(Value::Object(primary)));
        put_record(&mut json, "base-oscontainer", &record(mirror, 'a')).unwrap();
        let extra = json["base-oscontainer"]["additional-images"]
            .as_array()
            .unwrap();
        assert_eq!(extra.len(), 1);
        assert_eq!(extra[0]["digest"], digest('a').as_str());
        assert_eq!(extra[0]["extra"], "kept");
        let keys: Vec<_> = extra[0].as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            ["image", "digest", "manifest-list-digest", "tags", "extra"]
        );
    }

    #[test]
    fn a_null_slot_is_filled_and_an_object_without_image_replaced() {
        for slot in [Value::Null, json!({ "note": "no image" })] {
            let mut json = meta_with(Some(slot.clone()));
            let want = record("quay.io/a/b", 'a');
            put_record(&mut json, "base-oscontainer", &want).unwrap();
            assert_eq!(
                json["base-oscontainer"],
                Value::Object(want.to_json()),
                "{slot}"
            );
        }
    }

    #[test]
    fn malformed_record_values_are_refused_not_overwritten() {
        let mut json = meta_with(Some(Value::from("a string")));
        assert!(put_record(&mut json, "base-oscontainer", &record("quay.io/a/b", 'a')).is_err());
        let mut other = record("quay.io/x/y", 'a').to_json();
        other.insert("additional-images".into(), Value::from(7));
        let mut json = meta_with(Some(Value::Object(other)));
        let err = put_record(&mut json, "base-oscontainer", &record("quay.io/a/b", 'a'));
        assert!(err.unwrap_err().contains("additional-images"));
        assert_eq!(json["base-oscontainer"]["additional-images"], 7);
    }
}
