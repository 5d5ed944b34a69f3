//! One arch's meta.json as read: its fields, its artifact entries (`images.<name>`), the
//! record under a key wherever a write would put it, and whether the build delays merges into
//! `meta.<KEY>.json`. It does not write (that is [`super::write`]) or decide whether a record
//! is current (that is [`super::record`]).

use camino::{Utf8Path, Utf8PathBuf};
use serde_json::{Map, Value};

use super::dir::contained_path;
use super::record::{Record, put_record};
use super::{Error, invalid, read_json, read_json_if_present};

/// When set (truthy, as Python reads it) in meta.json, cosa's writers put their whole copy of
/// meta.json into `meta.<artifact>.json` instead, for `cosa meta --finalize` to merge later.
pub const DELAYED_MERGE: &str = "coreos-assembler.delayed-meta-merge";

/// What an arch's meta.json says about one artifact.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub path: Utf8PathBuf,
    pub sha256: String,
    pub size: Option<u64>,
}

/// One arch's meta.json as read.
#[derive(Debug, Clone)]
pub struct Meta {
    pub path: Utf8PathBuf,
    json: Map<String, Value>,
    /// Where the artifacts it names are: its own directory, unless the records were
    /// fetched alone and the artifacts stay in the build store.
    artifacts_in: Option<Utf8PathBuf>,
}

impl Meta {
    pub fn load(path: Utf8PathBuf) -> Result<Meta, Error> {
        let json = read_json(&path)?;
        Ok(Meta {
            path,
            json,
            artifacts_in: None,
        })
    }

    /// A meta.json read from elsewhere (a build store); `path` is the name it was read as.
    pub fn from_slice(path: Utf8PathBuf, raw: &[u8]) -> Result<Meta, Error> {
        let json = serde_json::from_slice(raw).map_err(|e| super::err(&path, e))?;
        Ok(Meta {
            path,
            json,
            artifacts_in: None,
        })
    }

    /// The same records, with the artifacts they name read from `dir` (the arch's directory
    /// in the build store) rather than beside this meta.json.
    pub fn with_artifacts_in(self, dir: Utf8PathBuf) -> Meta {
        Meta {
            artifacts_in: Some(dir),
            ..self
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.json.get(key)
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        self.json.get(key).and_then(Value::as_str)
    }

    /// `images.<name>`, or `None` when this arch has no such artifact: the key is absent, null
    /// or an empty object, as for an artifact built for some arches only, such as `kubevirt`
    /// (cosa skips an arch whose `images.get(name)` is falsy). A non-empty entry must be
    /// complete, and its path must stay inside the arch directory.
    pub fn artifact(&self, name: &str) -> Result<Option<Artifact>, Error> {
        let entry = match self.json.get("images") {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Object(images)) => match images.get(name) {
                None | Some(Value::Null) => return Ok(None),
                Some(Value::Object(entry)) if entry.is_empty() => return Ok(None),
                Some(entry) => entry,
            },
            Some(_) => return Err(invalid(&self.path, "\"images\" is not an object")),
        };
        let field = |f: &str| {
            entry
                .get(f)
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(&self.path, format!("images.{name} has no \"{f}\" string")))
        };
        let rel = field("path")?;
        let sha256 = field("sha256")?.to_owned();
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid(
                &self.path,
                format!("images.{name}.sha256 is not 64 hex digits"),
            ));
        }
        let dir = match &self.artifacts_in {
            Some(dir) => dir.as_path(),
            None => self.path.parent().unwrap_or(Utf8Path::new(".")),
        };
        let path = contained_path(dir, rel).ok_or_else(|| {
            invalid(
                &self.path,
                format!("images.{name}.path {rel:?} leaves the arch directory"),
            )
        })?;
        let size = entry.get("size").and_then(Value::as_u64);
        Ok(Some(Artifact { path, sha256, size }))
    }

    /// What is recorded under `key`, where a record write would find it: in meta.json, or,
    /// when the build delays merges and `meta.<key>.json` holds the key, there.
    pub fn existing_record(&self, key: &str) -> Result<Option<Value>, Error> {
        // An empty key is how a caller that records nothing asks; no file is named after it.
        if key.is_empty() || !delays_merge(&self.json) {
            return Ok(self.json.get(key).cloned());
        }
        let delayed = delayed_path(&self.path, key)?;
        let found = read_json_if_present(&delayed)?.and_then(|mut m| m.remove(key));
        Ok(found.or_else(|| self.json.get(key).cloned()))
    }

    /// Fails now, before anything is pushed, if the value under `key` is one a record could not
    /// be written into without overwriting someone else's data.
    pub fn check_record_slot(&self, key: &str, want: &Record) -> Result<(), Error> {
        let mut json = self.json.clone();
        if let Some(existing) = self.existing_record(key)? {
            json.insert(key.to_owned(), existing);
        }
        put_record(&mut json, key, want).map_err(|msg| invalid(&self.path, msg))
    }
}

/// Whether meta.json asks for a delayed merge: Python's truthiness of the flag, which is how
/// cosa tests it.
pub(super) fn delays_merge(json: &Map<String, Value>) -> bool {
    match json.get(DELAYED_MERGE) {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
    }
}

/// `meta.<key>.json` beside `meta`, cosa's file for a delayed merge; `key` must be a plain
/// file name part, since it becomes one.
pub(super) fn delayed_path(meta: &Utf8Path, key: &str) -> Result<Utf8PathBuf, Error> {
    if key.is_empty() || key.contains(['/', '\0']) || key == "." || key == ".." {
        return Err(invalid(
            meta,
            format!("{DELAYED_MERGE} is set, but {key:?} cannot name a meta.<KEY>.json file"),
        ));
    }
    let dir = meta.parent().unwrap_or(Utf8Path::new(""));
    Ok(dir.join(format!("meta.{key}.json")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builds::test_support::{meta_file, meta_with, record};

    #[test]
    fn an_absent_null_or_empty_artifact_is_none_and_a_broken_one_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let mut json = meta_with(None);
        json.insert(
            "images".into(),
            serde_json::json!({
                "ostree": { "path": "a.ociarchive", "sha256": "a".repeat(64) },
                "kubevirt": null,
                "extensions-container": {},
                "qemu": { "sha256": "a".repeat(64) },
            }),
        );
        let meta = Meta::load(meta_file(&tmp, &json)).unwrap();
        assert!(meta.artifact("ostree").unwrap().is_some());
        assert!(meta.artifact("kubevirt").unwrap().is_none());
        assert!(meta.artifact("extensions-container").unwrap().is_none());
        assert!(meta.artifact("legacy-oscontainer").unwrap().is_none());
        let e = meta.artifact("qemu").unwrap_err().to_string();
        assert!(e.contains("images.qemu has no \"path\""), "{e}");
        json.insert("images".into(), Value::from("not an object"));
        let meta = Meta::load(meta_file(&tmp, &json)).unwrap();
        assert!(meta.artifact("ostree").is_err());
    }

    #[test]
    fn delayed_merge_follows_pythons_truthiness() {
        for (flag, delays) in [
            (Value::Bool(false), false),
            (Value::from(""), false),
            (Value::from(0), false),
            (Value::from(0.0), false),
            (Value::Null, false),
            (Value::Array(Vec::new()), false),
            (Value::from(1), true),
            (Value::from("yes"), true),
            (Value::from("false"), true),
            (serde_json::json!([0]), true),
            (serde_json::json!({ "a": 1 }), true),
        ] {
            let mut json = meta_with(None);
            json.insert(DELAYED_MERGE.into(), flag.clone());
            assert_eq!(delays_merge(&json), delays, "{flag}");
        }
        assert!(!delays_merge(&meta_with(None)), "absent");
    }

    #[test]
    fn the_delayed_file_sits_beside_meta_json_and_its_key_must_be_a_file_name() {
        let meta = Utf8Path::new("builds/40.1/x86_64/meta.json");
        assert_eq!(
            delayed_path(meta, "base-oscontainer").unwrap(),
            "builds/40.1/x86_64/meta.base-oscontainer.json"
        );
        for key in ["", ".", "..", "a/b", "../x", "a\0b"] {
            let e = delayed_path(meta, key).unwrap_err().to_string();
            assert!(e.contains("cannot name a meta.<KEY>.json"), "{key:?}: {e}");
        }
    }

    #[test]
    fn a_record_slot_that_is_not_an_object_is_refused_before_any_push() {
        let tmp = tempfile::tempdir().unwrap();
        let want = record("quay.io/a/b", 'a');
        let ok = Meta::load(meta_file(&tmp, &meta_with(None))).unwrap();
        ok.check_record_slot("base-oscontainer", &want).unwrap();
        let taken = meta_with(Some(Value::from("a string")));
        let meta = Meta::load(meta_file(&tmp, &taken)).unwrap();
        let e = meta
            .check_record_slot("base-oscontainer", &want)
            .unwrap_err();
        assert!(
            e.to_string().contains("base-oscontainer is not an object"),
            "{e}"
        );
    }
}
