//! Build records: `builds/builds.json` and each arch's `builds/<id>/<arch>/meta.json`.
//!
//! Owns finding a build and its arches (`dir`), reading an arch's meta.json and its
//! artifact entries (`meta`), deciding whether a meta.json already holds a record
//! (`record`, pure), and writing a record back the way coreos-assembler's writers do
//! (`write`): under cosa's lock (`metalock`), re-read at write time, only the owned key
//! changed, `meta-stamp` bumped, key order and every other field kept, written atomically
//! (`crate::fs`); or, when the build asks for a delayed merge, into `meta.<KEY>.json` beside
//! it. It does not read archives, talk to a registry, or implement the lock protocol itself.
//!
//! Every error names the file it is about ([`Error`]).

mod dir;
mod meta;
mod record;
#[cfg(test)]
mod test_support;
mod write;

use std::fs;
use std::io;

use camino::{Utf8Path, Utf8PathBuf};
use serde_json::{Map, Value};

use crate::metalock;

pub use crate::fs::write_atomic;
pub use dir::{Build, BuildsDir};
pub use meta::{Artifact, DELAYED_MERGE, Meta};
pub use record::{Record, RecordState, record_entry, record_images, record_state};
pub use write::{META_STAMP, merged_record, to_cosa_json, write_records};

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

fn read_json<T: serde::de::DeserializeOwned>(path: &Utf8Path) -> Result<T, Error> {
    let raw = fs::read(path).map_err(|e| err(path, e))?;
    serde_json::from_slice(&raw).map_err(|e| err(path, e))
}

/// A JSON object file, or `None` when there is no such file.
fn read_json_if_present(path: &Utf8Path) -> Result<Option<Map<String, Value>>, Error> {
    match fs::read(path) {
        Ok(raw) => serde_json::from_slice(&raw)
            .map(Some)
            .map_err(|e| err(path, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(err(path, e)),
    }
}
