//! Build records: `builds/builds.json` and each arch's `builds/<id>/<arch>/meta.json`.
//!
//! Owns finding a build and its arches, reading an arch's artifact entry (and refusing paths
//! that leave the arch directory), deciding whether a meta.json already holds a record, and
//! writing a record back the way coreos-assembler's writers do: under cosa's lock
//! (`metalock`), re-read at write time, only the owned key changed, `meta-stamp` bumped, key
//! order and every other field kept, written atomically; or, when the build asks for a
//! delayed merge, into `meta.<KEY>.json` beside it. It does not read archives or talk to a
//! registry.

use std::fs;
use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::metalock::{self, MetaLock};
use crate::platform::Arch;
use crate::reference::{Digest, Repository, Tag};

/// The key coreos-assembler bumps on every meta.json write so concurrent writers can tell
/// which copy is newer.
pub const META_STAMP: &str = "coreos-assembler.meta-stamp";

/// When set (truthy, as Python reads it) in meta.json, cosa's writers put their whole copy of
/// meta.json into `meta.<artifact>.json` instead, for `cosa meta --finalize` to merge later.
pub const DELAYED_MERGE: &str = "coreos-assembler.delayed-meta-merge";

/// An error about one build-record file; it always names the file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {kind}")]
pub struct Error {
    pub path: Utf8PathBuf,
    pub kind: ErrorKind,
}

#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Lock(#[from] metalock::Error),
}

fn err(path: &Utf8Path, kind: impl Into<ErrorKind>) -> Error {
    Error {
        path: path.to_owned(),
        kind: kind.into(),
    }
}

fn invalid(path: &Utf8Path, msg: impl Into<String>) -> Error {
    err(path, ErrorKind::Invalid(msg.into()))
}

/// One entry of builds.json.
#[derive(Debug, Clone)]
pub struct Build {
    pub id: String,
    pub arches: Vec<Arch>,
}

/// `builds/` under a working directory, and its builds.json.
#[derive(Debug)]
pub struct BuildsDir {
    dir: Utf8PathBuf,
    builds: Vec<Build>,
}

impl BuildsDir {
    pub fn load(workdir: &Utf8Path) -> Result<BuildsDir, Error> {
        let dir = workdir.join("builds");
        let path = dir.join("builds.json");
        let value: Value = read_json(&path)?;
        let version = value
            .get("schema-version")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(&path, "no \"schema-version\" string"))?;
        if version.split('.').next() != Some("1") {
            return Err(invalid(
                &path,
                format!("schema-version {version} is not supported (expected 1.x)"),
            ));
        }
        let entries = value
            .get("builds")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid(&path, "no \"builds\" list"))?;
        let mut builds = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let id = entry
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(&path, format!("builds[{i}] has no \"id\" string")))?;
            let arches = entry
                .get("arches")
                .and_then(Value::as_array)
                .ok_or_else(|| invalid(&path, format!("build {id} has no \"arches\" list")))?
                .iter()
                .map(|a| {
                    a.as_str()
                        .ok_or_else(|| {
                            invalid(&path, format!("build {id}: an arch is not a string"))
                        })
                        .and_then(|s| {
                            Arch::parse(s).map_err(|e| invalid(&path, format!("build {id}: {e}")))
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            builds.push(Build {
                id: id.to_owned(),
                arches,
            });
        }
        Ok(BuildsDir { dir, builds })
    }

    /// `latest` is the first entry, as cosa keeps builds.json newest first.
    pub fn find(&self, id: &str) -> Result<&Build, Error> {
        let path = self.dir.join("builds.json");
        if id == "latest" {
            return self
                .builds
                .first()
                .ok_or_else(|| invalid(&path, "lists no builds, so there is no latest build"));
        }
        self.builds
            .iter()
            .find(|b| b.id == id)
            .ok_or_else(|| invalid(&path, format!("has no build {id:?}")))
    }

    pub fn arch_dir(&self, build: &Build, arch: &Arch) -> Utf8PathBuf {
        self.dir.join(&build.id).join(arch.as_str())
    }

    pub fn build_dir(&self, build: &Build) -> Utf8PathBuf {
        self.dir.join(&build.id)
    }
}

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
}

impl Meta {
    pub fn load(path: Utf8PathBuf) -> Result<Meta, Error> {
        let json = read_json(&path)?;
        Ok(Meta { path, json })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.json.get(key)
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        self.json.get(key).and_then(Value::as_str)
    }

    /// `images.<name>`, or `None` when this arch has no such artifact (the key is absent or
    /// null, as for an artifact built for some arches only, such as `kubevirt`). A present
    /// entry must be complete, and its path must stay inside the arch directory.
    pub fn artifact(&self, name: &str) -> Result<Option<Artifact>, Error> {
        let entry = match self.json.get("images") {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Object(images)) => match images.get(name) {
                None | Some(Value::Null) => return Ok(None),
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
        let dir = self.path.parent().unwrap_or(Utf8Path::new("."));
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

/// Joins `rel` onto `dir` only if the result cannot leave `dir`, lexically and through
/// symlinks that exist.
fn contained_path(dir: &Utf8Path, rel: &str) -> Option<Utf8PathBuf> {
    let rel = Utf8Path::new(rel);
    if rel.is_absolute() || rel.as_str().is_empty() {
        return None;
    }
    let mut depth = 0i32;
    for c in rel.components() {
        match c {
            camino::Utf8Component::Normal(_) => depth += 1,
            camino::Utf8Component::CurDir => {}
            camino::Utf8Component::ParentDir => depth -= 1,
            _ => return None,
        }
        if depth < 0 {
            return None;
        }
    }
    let joined = dir.join(rel);
    if let (Ok(real), Ok(real_dir)) = (joined.canonicalize_utf8(), dir.canonicalize_utf8())
        && !real.starts_with(&real_dir)
    {
        return None;
    }
    Some(joined)
}

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
    fn to_json(&self) -> Map<String, Value> {
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

fn is_for_image(entry: &Value, image: &Repository) -> bool {
    entry
        .get("image")
        .and_then(Value::as_str)
        .and_then(|s| Repository::parse(s).ok())
        .is_some_and(|r| &r == image)
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

/// The one definition of "already recorded": the primary record or the `additional-images`
/// entry for the same repository holds every field of `want`.
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
/// Never appends a second entry for a repository.
fn put_record(json: &mut Map<String, Value>, key: &str, want: &Record) -> Result<(), String> {
    let fresh = want.to_json();
    let update = |target: &mut Map<String, Value>| {
        for (k, v) in &fresh {
            target.insert(k.clone(), v.clone());
        }
    };
    let primary = json.get(key).is_some_and(|v| is_for_image(v, &want.image));
    match json.get_mut(key) {
        Some(Value::Object(obj)) if primary => update(obj),
        Some(Value::Object(obj)) if obj.contains_key("image") => {
            let list = obj
                .entry("additional-images")
                .or_insert_with(|| Value::Array(Vec::new()));
            // Whatever is there belongs to someone; never overwrite it with a guess.
            let Value::Array(list) = list else {
                return Err(format!("{key}.additional-images is not a list"));
            };
            match list
                .iter_mut()
                .find(|e| is_for_image(e, &want.image))
                .and_then(Value::as_object_mut)
            {
                Some(entry) => update(entry),
                None => list.push(Value::Object(fresh.clone())),
            }
        }
        Some(other) if !other.is_null() && !other.is_object() => {
            return Err(format!("{key} is not an object"));
        }
        _ => {
            json.insert(key.to_owned(), Value::Object(fresh.clone()));
        }
    }
    Ok(())
}

/// Writes each `(path, record)` under `key` for the meta.json at `path` (one per arch), as
/// coreos-assembler's writers do, and returns, per file, whether a file changed.
///
/// Every meta.json is locked first, with cosa's lock (`.meta.json.lock`), in path order and
/// waiting up to `lock_timeout` for another writer, so one held past the bound leaves all of
/// them unchanged. Then each file is read again, so keys other writers added since the run
/// started survive; only `key` changes, and `coreos-assembler.meta-stamp` moves past every
/// stamp seen, so a cosa writer holding an older copy merges it in rather than writing it
/// over ours. When meta.json sets `coreos-assembler.delayed-meta-merge`, the record goes where
/// cosa puts it instead: `meta.<key>.json`, a copy of meta.json (with what that file already
/// recorded under `key`), under its own lock, for `cosa meta --finalize`. Nothing is written
/// where the record is already current.
pub fn write_records(
    records: &[(Utf8PathBuf, Record)],
    key: &str,
    lock_timeout: Duration,
) -> Result<Vec<bool>, Error> {
    write_records_at(records, key, lock_timeout, now_ns())
}

fn write_records_at(
    records: &[(Utf8PathBuf, Record)],
    key: &str,
    lock_timeout: Duration,
    now: u64,
) -> Result<Vec<bool>, Error> {
    let mut paths: Vec<&Utf8PathBuf> = records.iter().map(|(p, _)| p).collect();
    paths.sort();
    paths.dedup();
    let _locks = paths
        .into_iter()
        .map(|p| MetaLock::acquire(p, lock_timeout).map_err(|e| err(p, e)))
        .collect::<Result<Vec<_>, _>>()?;
    records
        .iter()
        .map(|(path, want)| {
            let written = write_locked(path, key, want, lock_timeout, now);
            // A crash here leaves some records written and every lock held.
            let arch = path.parent().and_then(Utf8Path::file_name).unwrap_or("");
            crate::failpoint::hit(&format!("after-record:{arch}"));
            written
        })
        .collect()
}

/// The write itself; the caller holds `path`'s lock.
fn write_locked(
    path: &Utf8Path,
    key: &str,
    want: &Record,
    lock_timeout: Duration,
    now: u64,
) -> Result<bool, Error> {
    let raw = fs::read(path).map_err(|e| err(path, e))?;
    let mut json: Map<String, Value> = serde_json::from_slice(&raw).map_err(|e| err(path, e))?;
    if !delays_merge(&json) {
        if record_state(json.get(key), want) == RecordState::Current {
            return Ok(false);
        }
        put_record(&mut json, key, want).map_err(|msg| invalid(path, msg))?;
        let stamp = next_stamp(now, [json.get(META_STAMP)]);
        json.insert(META_STAMP.to_owned(), Value::from(stamp));
        let mut out = to_cosa_json(&json).map_err(|e| err(path, e))?;
        if raw.ends_with(b"\n") {
            out.push(b'\n');
        }
        write_atomic(path, &out).map_err(|e| err(path, e))?;
        return Ok(true);
    }
    let target = delayed_path(path, key)?;
    let _target_lock = MetaLock::acquire(&target, lock_timeout).map_err(|e| err(&target, e))?;
    let earlier = read_json_if_present(&target)?;
    if let Some(recorded) = earlier.as_ref().and_then(|m| m.get(key)) {
        json.insert(key.to_owned(), recorded.clone());
    }
    if record_state(json.get(key), want) == RecordState::Current {
        return Ok(false);
    }
    put_record(&mut json, key, want).map_err(|msg| invalid(&target, msg))?;
    let stamp = next_stamp(
        now,
        [
            json.get(META_STAMP),
            earlier.as_ref().and_then(|m| m.get(META_STAMP)),
        ],
    );
    json.insert(META_STAMP.to_owned(), Value::from(stamp));
    let out = to_cosa_json(&json).map_err(|e| err(&target, e))?;
    write_atomic(&target, &out).map_err(|e| err(&target, e))?;
    Ok(true)
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

/// Now, or one past the newest stamp seen if a clock behind another writer's would make ours
/// look older: cosa's merge keeps the newer side's values.
fn next_stamp<'a>(now: u64, seen: impl IntoIterator<Item = Option<&'a Value>>) -> u64 {
    seen.into_iter()
        .flatten()
        // cosa writes nanoseconds as an integer, but a float (a file's mtime in seconds) when
        // it had no stamp; either compares as a number.
        .filter_map(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f.max(0.0) as u64)))
        .map(|s| s.saturating_add(1))
        .fold(now, u64::max)
}

/// Python's truthiness, which is how cosa tests the flag.
fn delays_merge(json: &Map<String, Value>) -> bool {
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
fn delayed_path(meta: &Utf8Path, key: &str) -> Result<Utf8PathBuf, Error> {
    if key.is_empty() || key.contains(['/', '\0']) || key == "." || key == ".." {
        return Err(invalid(
            meta,
            format!("{DELAYED_MERGE} is set, but {key:?} cannot name a meta.<KEY>.json file"),
        ));
    }
    let dir = meta.parent().unwrap_or(Utf8Path::new(""));
    Ok(dir.join(format!("meta.{key}.json")))
}

fn read_json_if_present(path: &Utf8Path) -> Result<Option<Map<String, Value>>, Error> {
    match fs::read(path) {
        Ok(raw) => serde_json::from_slice(&raw)
            .map(Some)
            .map_err(|e| err(path, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(err(path, e)),
    }
}

/// JSON as coreos-assembler writes meta.json: 4-space indentation, no trailing newline.
pub fn to_cosa_json(value: &impl Serialize) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    value.serialize(&mut ser)?;
    Ok(out)
}

pub use crate::fs::write_atomic;

fn read_json<T: serde::de::DeserializeOwned>(path: &Utf8Path) -> Result<T, Error> {
    let raw = fs::read(path).map_err(|e| err(path, e))?;
    serde_json::from_slice(&raw).map_err(|e| err(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> Digest {
        Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap()
    }

    fn record(repo: &str, d: char) -> Record {
        Record {
            image: Repository::parse(repo).unwrap(),
            digest: digest(d),
            manifest_list_digest: digest('f'),
            tags: vec![Tag::parse("stable").unwrap()],
        }
    }

    fn meta_with(key_value: Option<Value>) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("buildid".into(), "40.1".into());
        if let Some(v) = key_value {
            m.insert("base-oscontainer".into(), v);
        }
        m.insert("name".into(), "fedora-coreos".into());
        m
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

    #[test]
    fn an_absent_or_null_artifact_is_none_and_a_broken_one_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let mut json = meta_with(None);
        json.insert(
            "images".into(),
            serde_json::json!({
                "ostree": { "path": "a.ociarchive", "sha256": "a".repeat(64) },
                "kubevirt": null,
                "qemu": { "sha256": "a".repeat(64) },
            }),
        );
        let meta = Meta::load(meta_file(&tmp, &json)).unwrap();
        assert!(meta.artifact("ostree").unwrap().is_some());
        assert!(meta.artifact("kubevirt").unwrap().is_none());
        assert!(meta.artifact("extensions-container").unwrap().is_none());
        let e = meta.artifact("qemu").unwrap_err().to_string();
        assert!(e.contains("images.qemu has no \"path\""), "{e}");
        json.insert("images".into(), Value::from("not an object"));
        let meta = Meta::load(meta_file(&tmp, &json)).unwrap();
        assert!(meta.artifact("ostree").is_err());
    }

    #[test]
    fn artifact_paths_cannot_leave_the_arch_dir() {
        let dir = Utf8Path::new("/tmp/builds/1/x86_64");
        assert!(contained_path(dir, "a.ociarchive").is_some());
        assert!(contained_path(dir, "sub/../a.ociarchive").is_some());
        assert!(contained_path(dir, "../a.ociarchive").is_none());
        assert!(contained_path(dir, "sub/../../a").is_none());
        assert!(contained_path(dir, "/etc/passwd").is_none());
        assert!(contained_path(dir, "").is_none());
    }

    fn meta_file(dir: &tempfile::TempDir, json: &Map<String, Value>) -> Utf8PathBuf {
        let path = Utf8PathBuf::from_path_buf(dir.path().join("meta.json")).unwrap();
        fs::write(&path, to_cosa_json(json).unwrap()).unwrap();
        path
    }

    fn read_map(path: &Utf8Path) -> Map<String, Value> {
        serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
    }

    fn names(dir: &tempfile::TempDir) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    const WAIT: Duration = Duration::ZERO;

    fn write_record_at(
        path: &Utf8Path,
        key: &str,
        want: &Record,
        lock_timeout: Duration,
        now: u64,
    ) -> Result<bool, Error> {
        let records = [(path.to_owned(), want.clone())];
        write_records_at(&records, key, lock_timeout, now).map(|changed| changed[0])
    }

    #[test]
    fn write_record_is_atomic_and_noop_when_current() {
        let tmp = tempfile::tempdir().unwrap();
        let path = meta_file(&tmp, &meta_with(None));
        let want = record("quay.io/a/b", 'a');
        assert!(write_record_at(&path, "base-oscontainer", &want, WAIT, 7).unwrap());
        let after = fs::read(&path).unwrap();
        let json: Map<String, Value> = serde_json::from_slice(&after).unwrap();
        assert_eq!(json[META_STAMP], 7);
        assert!(after.starts_with(b"{\n    \"buildid\""));
        assert!(!after.ends_with(b"\n"));
        assert!(!write_record_at(&path, "base-oscontainer", &want, WAIT, 8).unwrap());
        assert_eq!(fs::read(&path).unwrap(), after);
        assert_eq!(
            names(&tmp),
            ["meta.json"],
            "no temp file, lock or claim left behind"
        );
    }

    #[test]
    fn the_stamp_moves_past_a_newer_one_on_disk() {
        let tmp = tempfile::tempdir().unwrap();
        let mut json = meta_with(None);
        json.insert(META_STAMP.into(), Value::from(1_000u64));
        let path = meta_file(&tmp, &json);
        write_record_at(
            &path,
            "base-oscontainer",
            &record("quay.io/a/b", 'a'),
            WAIT,
            10,
        )
        .unwrap();
        assert_eq!(read_map(&path)[META_STAMP], 1_001);
        // A stamp cosa took from a file's mtime is a float of seconds; still a number.
        let mut json = meta_with(None);
        json.insert(META_STAMP.into(), Value::from(1_700_000_000.5f64));
        let path = meta_file(&tmp, &json);
        write_record_at(
            &path,
            "base-oscontainer",
            &record("quay.io/a/b", 'a'),
            WAIT,
            10,
        )
        .unwrap();
        assert_eq!(read_map(&path)[META_STAMP], 1_700_000_001);
    }

    #[test]
    fn a_write_waits_for_the_lock_and_writes_nothing_when_it_cannot_have_it() {
        let tmp = tempfile::tempdir().unwrap();
        let path = meta_file(&tmp, &meta_with(None));
        let before = fs::read(&path).unwrap();
        // A claim naming this (live) process that is not ours: never broken, so waited for.
        let lockfile = std::path::absolute(metalock::lock_path(&path)).unwrap();
        let claim = format!(
            "{}|{}|{}|1",
            lockfile.display(),
            metalock::hostname(),
            std::process::id()
        );
        fs::write(&claim, &claim).unwrap();
        fs::hard_link(&claim, &lockfile).unwrap();
        let want = record("quay.io/a/b", 'a');
        let e = write_record_at(
            &path,
            "base-oscontainer",
            &want,
            Duration::from_millis(20),
            7,
        )
        .unwrap_err();
        assert!(matches!(e.kind, ErrorKind::Lock(_)), "{e}");
        assert!(e.to_string().contains("is held by pid"), "{e}");
        assert_eq!(fs::read(&path).unwrap(), before);
        fs::remove_file(&lockfile).unwrap();
        assert!(write_record_at(&path, "base-oscontainer", &want, WAIT, 7).unwrap());
    }

    #[test]
    fn records_for_several_arches_are_written_only_once_every_lock_is_held() {
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let paths: Vec<_> = dirs
            .iter()
            .map(|d| meta_file(d, &meta_with(None)))
            .collect();
        let before: Vec<_> = paths.iter().map(|p| fs::read(p).unwrap()).collect();
        let want = record("quay.io/a/b", 'a');
        let records: Vec<_> = paths.iter().map(|p| (p.clone(), want.clone())).collect();
        // The second file's lock is held by someone alive (this process, another claim).
        let held = std::path::absolute(metalock::lock_path(&paths[1])).unwrap();
        let claim = format!(
            "{}|{}|{}|1",
            held.display(),
            metalock::hostname(),
            std::process::id()
        );
        fs::write(&claim, &claim).unwrap();
        fs::hard_link(&claim, &held).unwrap();
        assert!(write_records(&records, "base-oscontainer", WAIT).is_err());
        let after: Vec<_> = paths.iter().map(|p| fs::read(p).unwrap()).collect();
        assert_eq!(after, before, "neither file written");
        assert_eq!(
            names(&dirs[0]),
            ["meta.json"],
            "the first lock was released"
        );
        fs::remove_file(&held).unwrap();
        let changed = write_records(&records, "base-oscontainer", WAIT).unwrap();
        assert_eq!(changed, [true, true]);
        for p in &paths {
            let rec = &read_map(p)["base-oscontainer"];
            assert_eq!(record_state(Some(rec), &want), RecordState::Current);
        }
    }

    #[test]
    fn delayed_merge_writes_meta_key_json_and_counts_it_as_recorded() {
        let tmp = tempfile::tempdir().unwrap();
        let mut json = meta_with(None);
        json.insert(DELAYED_MERGE.into(), Value::Bool(true));
        json.insert(META_STAMP.into(), Value::from(5u64));
        let path = meta_file(&tmp, &json);
        let before = fs::read(&path).unwrap();
        let first = record("quay.io/a/b", 'a');
        assert!(write_record_at(&path, "base-oscontainer", &first, WAIT, 9).unwrap());
        assert_eq!(
            fs::read(&path).unwrap(),
            before,
            "meta.json itself is untouched"
        );
        let delayed = path.with_file_name("meta.base-oscontainer.json");
        let written = read_map(&delayed);
        // cosa's shape: the whole of meta.json, the record under the key, a fresh stamp.
        let keys: Vec<_> = written.keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "buildid",
                "name",
                DELAYED_MERGE,
                META_STAMP,
                "base-oscontainer"
            ]
        );
        assert_eq!(written[META_STAMP], 9);
        let meta = Meta::load(path.clone()).unwrap();
        let found = meta.existing_record("base-oscontainer").unwrap();
        assert_eq!(record_state(found.as_ref(), &first), RecordState::Current);
        assert_eq!(meta.get("base-oscontainer"), None);
        // Recorded there, so nothing more to write; a second repository joins that record.
        assert!(!write_record_at(&path, "base-oscontainer", &first, WAIT, 10).unwrap());
        let second = record("registry.example.com/mirror/b", 'a');
        assert!(write_record_at(&path, "base-oscontainer", &second, WAIT, 10).unwrap());
        let rec = &read_map(&delayed)["base-oscontainer"];
        assert_eq!(record_state(Some(rec), &first), RecordState::Current);
        assert_eq!(record_state(Some(rec), &second), RecordState::Current);
        assert_eq!(
            names(&tmp),
            ["meta.base-oscontainer.json", "meta.json"],
            "both locks released"
        );
    }

    #[test]
    fn delayed_merge_follows_pythons_truthiness_and_refuses_a_key_that_is_no_file_name() {
        for (flag, delays) in [
            (Value::Bool(false), false),
            (Value::from(""), false),
            (Value::from(0), false),
            (Value::from(1), true),
            (Value::from("yes"), true),
        ] {
            let mut json = meta_with(None);
            json.insert(DELAYED_MERGE.into(), flag.clone());
            assert_eq!(delays_merge(&json), delays, "{flag}");
        }
        let tmp = tempfile::tempdir().unwrap();
        let mut json = meta_with(None);
        json.insert(DELAYED_MERGE.into(), Value::Bool(true));
        let path = meta_file(&tmp, &json);
        let e = write_record_at(&path, "../x", &record("quay.io/a/b", 'a'), WAIT, 1).unwrap_err();
        assert!(
            e.to_string().contains("cannot name a meta.<KEY>.json"),
            "{e}"
        );
        let meta = Meta::load(path).unwrap();
        assert!(
            meta.check_record_slot("a/b", &record("quay.io/a/b", 'a'))
                .is_err()
        );
    }
}
