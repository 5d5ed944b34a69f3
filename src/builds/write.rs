//! Writing records back into meta.json the way coreos-assembler's writers do: under cosa's
//! lock (`metalock`), re-read at write time, only the owned key changed, `meta-stamp` bumped
//! past every stamp seen, key order and every other field kept, written atomically
//! (`crate::fs`); or, when the build delays merges, into `meta.<KEY>.json` under that file's
//! own lock. What a record is and when it is current is [`super::record`]'s; the lock
//! protocol is `metalock`'s.

use std::fs;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;
use serde_json::{Map, Value};

use super::meta::{delayed_path, delays_merge};
use super::record::{Record, RecordState, put_record, record_state};
use super::{Error, err, invalid, read_json_if_present};
use crate::fs::write_atomic;
use crate::metalock::MetaLock;

/// The key coreos-assembler bumps on every meta.json write so concurrent writers can tell
/// which copy is newer.
pub const META_STAMP: &str = "coreos-assembler.meta-stamp";

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
    let writer = Writer {
        key,
        lock_timeout,
        now,
    };
    records
        .iter()
        .map(|(path, want)| {
            let written = writer.write_locked(path, want);
            // A crash here leaves some records written and every lock held.
            let arch = path.parent().and_then(Utf8Path::file_name).unwrap_or("");
            crate::failpoint::hit(&format!("after-record:{arch}"));
            written
        })
        .collect()
}

/// `raw` (a meta.json read from `path`) with `want` recorded under `key` as
/// [`write_records`] writes it in place (only the key changed, `meta-stamp` bumped, key order
/// and a trailing newline kept), or `None` when the record is already current. For a meta.json
/// kept where no lock can be taken: the caller writes the bytes back only if the file is still
/// the one it read. A meta.json that delays merges is refused: `meta.<key>.json` beside it is
/// for a local `cosa meta --finalize`.
pub fn merged_record(
    path: &Utf8Path,
    raw: &[u8],
    key: &str,
    want: &Record,
) -> Result<Option<Vec<u8>>, Error> {
    let mut json: Map<String, Value> = serde_json::from_slice(raw).map_err(|e| err(path, e))?;
    if delays_merge(&json) {
        return Err(invalid(
            path,
            "delays merges into meta.<key>.json, which reprise writes only in a local build directory",
        ));
    }
    if record_state(json.get(key), want) == RecordState::Current {
        return Ok(None);
    }
    put_record(&mut json, key, want).map_err(|msg| invalid(path, msg))?;
    let stamp = next_stamp(now_ns(), [json.get(META_STAMP)]);
    json.insert(META_STAMP.to_owned(), Value::from(stamp));
    let mut out = to_cosa_json(&json).map_err(|e| err(path, e))?;
    if raw.ends_with(b"\n") {
        out.push(b'\n');
    }
    Ok(Some(out))
}

/// What every write of one [`write_records`] call shares.
struct Writer<'a> {
    /// The record key (`--metajsonname`).
    key: &'a str,
    /// How long to wait for a `meta.<key>.json` lock.
    lock_timeout: Duration,
    /// The stamp to write, unless a newer one is seen.
    now: u64,
}

impl Writer<'_> {
    /// The write itself; the caller holds `path`'s lock.
    fn write_locked(&self, path: &Utf8Path, want: &Record) -> Result<bool, Error> {
        let raw = fs::read(path).map_err(|e| err(path, e))?;
        let json: Map<String, Value> = serde_json::from_slice(&raw).map_err(|e| err(path, e))?;
        if delays_merge(&json) {
            self.write_delayed(path, json, want)
        } else {
            // Keep a trailing newline a hand-edited file has; cosa writes none.
            self.write_in_place(path, json, raw.ends_with(b"\n"), want)
        }
    }

    /// Puts the record into meta.json itself.
    fn write_in_place(
        &self,
        path: &Utf8Path,
        mut json: Map<String, Value>,
        newline: bool,
        want: &Record,
    ) -> Result<bool, Error> {
        let key = self.key;
        if record_state(json.get(key), want) == RecordState::Current {
            return Ok(false);
        }
        put_record(&mut json, key, want).map_err(|msg| invalid(path, msg))?;
        let stamp = next_stamp(self.now, [json.get(META_STAMP)]);
        json.insert(META_STAMP.to_owned(), Value::from(stamp));
        let mut out = to_cosa_json(&json).map_err(|e| err(path, e))?;
        if newline {
            out.push(b'\n');
        }
        write_atomic(path, &out).map_err(|e| err(path, e))?;
        Ok(true)
    }

    /// Puts the record into `meta.<key>.json`, cosa's file for a delayed merge: the whole of
    /// meta.json (`json`), with what that file already recorded under the key, under its own
    /// lock.
    fn write_delayed(
        &self,
        path: &Utf8Path,
        mut json: Map<String, Value>,
        want: &Record,
    ) -> Result<bool, Error> {
        let key = self.key;
        let target = delayed_path(path, key)?;
        let _target_lock =
            MetaLock::acquire(&target, self.lock_timeout).map_err(|e| err(&target, e))?;
        let earlier = read_json_if_present(&target)?;
        if let Some(recorded) = earlier.as_ref().and_then(|m| m.get(key)) {
            json.insert(key.to_owned(), recorded.clone());
        }
        if record_state(json.get(key), want) == RecordState::Current {
            return Ok(false);
        }
        put_record(&mut json, key, want).map_err(|msg| invalid(&target, msg))?;
        let earlier_stamp = earlier.as_ref().and_then(|m| m.get(META_STAMP));
        let stamp = next_stamp(self.now, [json.get(META_STAMP), earlier_stamp]);
        json.insert(META_STAMP.to_owned(), Value::from(stamp));
        let out = to_cosa_json(&json).map_err(|e| err(&target, e))?;
        write_atomic(&target, &out).map_err(|e| err(&target, e))?;
        Ok(true)
    }
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

/// JSON as coreos-assembler writes meta.json: 4-space indentation, no trailing newline.
pub fn to_cosa_json(value: &impl Serialize) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    value.serialize(&mut ser)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builds::test_support::{meta_file, meta_with, names, read_map, record};
    use crate::builds::{DELAYED_MERGE, ErrorKind, Meta};
    use crate::metalock;

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

    /// Takes the lock of `meta` the way another live writer would: a claim naming this
    /// process that is not ours, so it is never broken, only waited for. Returns the lock
    /// file, whose removal lets go.
    fn hold_as_another_writer(meta: &Utf8Path) -> std::path::PathBuf {
        let lockfile = std::path::absolute(metalock::lock_path(meta)).unwrap();
        let claim = format!(
            "{}|{}|{}|1",
            lockfile.display(),
            metalock::hostname(),
            std::process::id()
        );
        fs::write(&claim, &claim).unwrap();
        fs::hard_link(&claim, &lockfile).unwrap();
        lockfile
    }

    #[test]
    fn next_stamp_is_now_or_one_past_the_newest_seen() {
        let v = |j: Value| Some(j);
        for (seen, want) in [
            (vec![], 10),
            (vec![None], 10),
            (vec![v(Value::from(3u64))], 10),
            (vec![v(Value::from(10u64))], 11),
            (vec![v(Value::from(3u64)), v(Value::from(20u64))], 21),
            (vec![v(Value::from(25.9f64))], 26),
            (vec![v(Value::from(-5.0f64))], 10),
            (vec![v(Value::from("99"))], 10),
            (vec![v(Value::from(u64::MAX))], u64::MAX),
        ] {
            let seen_refs: Vec<Option<&Value>> = seen.iter().map(Option::as_ref).collect();
            assert_eq!(next_stamp(10, seen_refs), want, "{seen:?}");
        }
    }

    #[test]
    fn cosa_json_is_indented_by_four_with_no_trailing_newline() {
        let out = to_cosa_json(&meta_with(None)).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\n    \"buildid\": \"40.1\",\n    \"name\": \"fedora-coreos\"\n}"
        );
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
    fn a_trailing_newline_in_meta_json_is_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let path = meta_file(&tmp, &meta_with(None));
        let mut raw = fs::read(&path).unwrap();
        raw.push(b'\n');
        fs::write(&path, &raw).unwrap();
        let want = record("quay.io/a/b", 'a');
        assert!(write_record_at(&path, "base-oscontainer", &want, WAIT, 7).unwrap());
        let after = fs::read(&path).unwrap();
        assert!(after.ends_with(b"}\n"));
        assert!(!after.ends_with(b"\n\n"));
    }

    #[test]
    fn the_stamp_moves_past_a_newer_one_on_disk() {
        let tmp = tempfile::tempdir().unwrap();
        let want = record("quay.io/a/b", 'a');
        // A stamp cosa took from a file's mtime is a float of seconds; still a number.
        for (on_disk, written) in [
            (Value::from(1_000u64), 1_001u64),
            (Value::from(1_700_000_000.5f64), 1_700_000_001),
        ] {
            let mut json = meta_with(None);
            json.insert(META_STAMP.into(), on_disk.clone());
            let path = meta_file(&tmp, &json);
            write_record_at(&path, "base-oscontainer", &want, WAIT, 10).unwrap();
            assert_eq!(read_map(&path)[META_STAMP], written, "{on_disk}");
        }
    }

    #[test]
    fn a_write_waits_for_the_lock_and_writes_nothing_when_it_cannot_have_it() {
        let tmp = tempfile::tempdir().unwrap();
        let path = meta_file(&tmp, &meta_with(None));
        let before = fs::read(&path).unwrap();
        let lockfile = hold_as_another_writer(&path);
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
        // The second file's lock is held by someone alive.
        let held = hold_as_another_writer(&paths[1]);
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
    fn delayed_merge_refuses_a_key_that_is_no_file_name() {
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
