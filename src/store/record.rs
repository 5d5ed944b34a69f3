//! Writing a record back into a meta.json kept in a build store, where no lock can be taken:
//! read it with its ETag, merge only the owned key ([`builds::merged_record`]), and put it back
//! only if the object still has that ETag (S3 `If-Match`). When another writer got there first
//! (412), read again and merge again, a bounded number of times, so both writes survive.

use camino::Utf8Path;

use super::{Error, Store};
use crate::builds::{self, Record};

/// How many times a write is tried against writers that keep getting in first.
pub const WRITE_TRIES: u32 = 5;

/// Records `want` under `key` in the meta.json `url`; whether the object changed.
pub fn write_record(
    store: &Store,
    url: &Utf8Path,
    key: &str,
    want: &Record,
) -> Result<bool, Error> {
    write_record_with(store, url, key, want, |_| {})
}

/// [`write_record`], calling `between(try)` after each read and before its write: where another
/// writer's change lands in the tests of this very race.
pub fn write_record_with(
    store: &Store,
    url: &Utf8Path,
    key: &str,
    want: &Record,
    mut between: impl FnMut(u32),
) -> Result<bool, Error> {
    for attempt in 0..WRITE_TRIES {
        let (raw, etag) = store.get(url)?;
        let merged = builds::merged_record(url, &raw, key, want).map_err(|e| Error::Other {
            url: url.to_string(),
            message: e.kind.to_string(),
        })?;
        let Some(bytes) = merged else {
            return Ok(false);
        };
        between(attempt);
        let Some(etag) = etag else {
            return Err(Error::Other {
                url: url.to_string(),
                message: "the store gave no ETag, so it cannot be written without losing another writer's change".into(),
            });
        };
        if store.put_if_match(url, bytes, &etag)? {
            return Ok(true);
        }
        tracing::info!(meta = %url, attempt, "changed by another writer since it was read; merging again");
    }
    Err(Error::Conflict {
        url: url.to_string(),
        tries: WRITE_TRIES,
    })
}
