//! One runner at a time per build: an advisory lock (`flock`-style, through std's
//! `File::lock`) on `builds/<id>/.reprise.lock`, held for a whole run.
//!
//! Two runs publishing the same build at once would race on tags and records; the second
//! one fails at once with a clear message, or waits its turn when asked to. The lock is
//! released by the kernel when the process ends, however it ends, so a crashed run never
//! leaves it stuck. (coreos-assembler's own `.meta.json.lock` is a different, finer lock.)

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, Write as _};

use camino::{Utf8Path, Utf8PathBuf};

pub const LOCK_FILE: &str = ".reprise.lock";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "{path}: another reprise run{holder} is working on this build; \
         wait for it to finish, or pass --wait-lock to wait for it"
    )]
    Busy { path: Utf8PathBuf, holder: String },
    #[error("{path}: cannot lock: {source}")]
    Io {
        path: Utf8PathBuf,
        source: std::io::Error,
    },
}

/// Held for as long as it lives.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    path: Utf8PathBuf,
}

impl RunLock {
    pub fn path(&self) -> &Utf8Path {
        &self.path
    }
}

/// Locks `build_dir`. Fails at once if another process holds the lock, unless `wait`, in
/// which case it blocks until the lock is free. Blocking: call it off the async runtime.
pub fn acquire(build_dir: &Utf8Path, wait: bool) -> Result<RunLock, Error> {
    let path = build_dir.join(LOCK_FILE);
    let io = |source| Error::Io {
        path: path.clone(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) if wait => {
            tracing::warn!(
                "{path}: another reprise run{} is working on this build; waiting for it",
                holder(&mut file)
            );
            file.lock().map_err(io)?;
        }
        Err(TryLockError::WouldBlock) => {
            return Err(Error::Busy {
                holder: holder(&mut file),
                path,
            });
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    // Only a hint for the message another run may print; the lock itself is what counts.
    let _ = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| write!(file, "{}", std::process::id()));
    Ok(RunLock { _file: file, path })
}

/// " (pid N)" if the holder wrote its pid, else nothing.
fn holder(file: &mut File) -> String {
    let mut text = String::new();
    match file.rewind().and_then(|()| file.read_to_string(&mut text)) {
        Ok(_) if !text.trim().is_empty() && text.trim().bytes().all(|b| b.is_ascii_digit()) => {
            format!(" (pid {})", text.trim())
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> (tempfile::TempDir, Utf8PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::from_path_buf(tmp.path().to_owned()).unwrap();
        (tmp, path)
    }

    #[test]
    fn a_second_lock_on_the_same_build_is_refused_until_the_first_is_dropped() {
        let (_tmp, build) = dir();
        let first = acquire(&build, false).unwrap();
        let err = acquire(&build, false).unwrap_err().to_string();
        assert!(
            err.contains(".reprise.lock") && err.contains("--wait-lock"),
            "{err}"
        );
        assert!(
            err.contains(&format!("(pid {})", std::process::id())),
            "{err}"
        );
        drop(first);
        acquire(&build, false).unwrap();
    }

    #[test]
    fn different_builds_do_not_contend() {
        let (_a, one) = dir();
        let (_b, two) = dir();
        let _x = acquire(&one, false).unwrap();
        let _y = acquire(&two, false).unwrap();
    }

    #[test]
    fn a_missing_build_directory_is_an_error_naming_the_lock_file() {
        let (_tmp, base) = dir();
        let err = acquire(&base.join("nope"), false).unwrap_err().to_string();
        assert!(err.contains("nope/.reprise.lock"), "{err}");
    }
}
