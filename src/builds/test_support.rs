//! Records and meta.json files for the unit tests of `builds`.

use std::fs;

use camino::{Utf8Path, Utf8PathBuf};
use serde_json::{Map, Value};

use super::{Record, to_cosa_json};
use crate::reference::{Digest, Repository, Tag};

pub fn digest(c: char) -> Digest {
    Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap()
}

/// A record for `repo` whose manifest digest is `d` repeated.
pub fn record(repo: &str, d: char) -> Record {
    Record {
        image: Repository::parse(repo).unwrap(),
        digest: digest(d),
        manifest_list_digest: digest('f'),
        tags: vec![Tag::parse("stable").unwrap()],
    }
}

/// A meta.json with `base-oscontainer` (when given) between two other keys.
pub fn meta_with(key_value: Option<Value>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("buildid".into(), "40.1".into());
    if let Some(v) = key_value {
        m.insert("base-oscontainer".into(), v);
    }
    m.insert("name".into(), "fedora-coreos".into());
    m
}

/// Writes `json` as `meta.json` in `dir`, as cosa would.
pub fn meta_file(dir: &tempfile::TempDir, json: &Map<String, Value>) -> Utf8PathBuf {
    let path = Utf8PathBuf::from_path_buf(dir.path().join("meta.json")).unwrap();
    fs::write(&path, to_cosa_json(json).unwrap()).unwrap();
    path
}

pub fn read_map(path: &Utf8Path) -> Map<String, Value> {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

/// The names in `dir`, sorted.
pub fn names(dir: &tempfile::TempDir) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}
