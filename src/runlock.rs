//! One runner at a time per build and record key: advisory locks (`flock`-style, through
//! std's `File::lock`) under `builds/<id>/`, held for a whole run.
//!
//! Two runs publishing the same artifact of a build at once would race on tags and records;
//! the second one fails at once with a clear message, or waits its turn when asked to. Runs
//! for different record keys of one build do not race (each writes its own key, and
//! meta.json writes are serialised by cosa's lock), and fedora-coreos-pipeline's release job
//! runs them in parallel (the oscontainer, kubevirt and extensions pushes), so a push locks
//! only its key: `.reprise.lock` shared, then `.reprise.<KEY>.lock` exclusive. `reprise run`
//! publishes several keys and takes `.reprise.lock` exclusive, so it excludes every push.
//!
//! The locks are released by the kernel when the process ends, however it ends, so a crashed
//! run never leaves one stuck. (coreos-assembler's own `.meta.json.lock` is a different,
//! finer lock.)

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, Write as _};

use camino::{Utf8Path, Utf8PathBuf};

pub const LOCK_FILE: &str = ".reprise.lock";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "{path}: another reprise run{holder} is working on {what}; \
         wait for it to finish, or pass --wait-lock to wait for it"
    )]
    Busy {
        path: Utf8PathBuf,
        holder: String,
        what: String,
    },
    #[error("{path}: cannot lock: {source}")]
    Io {
        path: Utf8PathBuf,
        source: std::io::Error,
    },
}

/// What a run locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// The whole build (`reprise run`): no other run on the build at the same time.
    Build,
    /// One record key of the build (a push under `--metajsonname KEY`): runs for other keys
    /// may go on at the same time; a run of the whole build may not.
    Key(&'a str),
}

/// Held for as long as it lives.
#[derive(Debug)]
pub struct RunLock {
    _files: Vec<File>,
    path: Utf8PathBuf,
}

impl RunLock {
    /// The lock file that is this run's own: the build's, or the key's.
    pub fn path(&self) -> &Utf8Path {
        &self.path
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Shared,
    Exclusive,
}

/// Locks `scope` of the build in `build_dir`. Fails at once if another process holds what it
/// needs, unless `wait`, in which case it blocks until that is free. Blocking: call it off
/// the async runtime.
pub fn acquire(build_dir: &Utf8Path, scope: Scope<'_>, wait: bool) -> Result<RunLock, Error> {
    let build = build_dir.join(LOCK_FILE);
    match scope {
        Scope::Build => {
            let file = lock(&build, Mode::Exclusive, "this build", wait)?;
            Ok(RunLock {
                _files: vec![file],
                path: build,
            })
        }
        Scope::Key(key) => {
            let shared = lock(&build, Mode::Shared, "this build", wait)?;
            let path = build_dir.join(key_lock_name(key));
            let what = format!("{key} of this build");
            let own = lock(&path, Mode::Exclusive, &what, wait)?;
            Ok(RunLock {
                _files: vec![shared, own],
                path,
            })
        }
    }
}

/// `.reprise.<KEY>.lock`; a key that is not a plain file name is spelled in hex.
fn key_lock_name(key: &str) -> String {
    let plain = !key.is_empty()
        && !key.starts_with('.')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if plain {
        format!(".reprise.{key}.lock")
    } else {
        format!(".reprise.x-{}.lock", hex::encode(key))
    }
}

fn lock(path: &Utf8Path, mode: Mode, what: &str, wait: bool) -> Result<File, Error> {
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io)?;
    let tried = match mode {
        Mode::Shared => file.try_lock_shared(),
        Mode::Exclusive => file.try_lock(),
    };
    match tried {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) if wait => {
            tracing::warn!(
                "{path}: another reprise run{} is working on {what}; waiting for it",
                holder(&mut file)
            );
            match mode {
                Mode::Shared => file.lock_shared(),
                Mode::Exclusive => file.lock(),
            }
            .map_err(io)?;
        }
        Err(TryLockError::WouldBlock) => {
            return Err(Error::Busy {
                holder: holder(&mut file),
                path: path.to_owned(),
                what: what.to_owned(),
            });
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    // Only a hint for the message another run may print; the lock itself is what counts.
    // Several runs share a shared lock, so none of them names itself there.
    let _ = file.set_len(0).and_then(|()| file.rewind());
    if mode == Mode::Exclusive {
        let _ = write!(file, "{}", std::process::id());
    }
    Ok(file)
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
        let first = acquire(&build, Scope::Build, false).unwrap();
        let err = acquire(&build, Scope::Build, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(".reprise.lock") && err.contains("--wait-lock"),
            "{err}"
        );
        assert!(
            err.contains(&format!("(pid {})", std::process::id())),
            "{err}"
        );
        drop(first);
        acquire(&build, Scope::Build, false).unwrap();
    }

    #[test]
    fn different_builds_do_not_contend() {
        let (_a, one) = dir();
        let (_b, two) = dir();
        let _x = acquire(&one, Scope::Build, false).unwrap();
        let _y = acquire(&two, Scope::Build, false).unwrap();
    }

    #[test]
    fn pushes_of_different_keys_of_one_build_do_not_contend() {
        let (_tmp, build) = dir();
        let _base = acquire(&build, Scope::Key("base-oscontainer"), false).unwrap();
        let _kubevirt = acquire(&build, Scope::Key("kubevirt"), false).unwrap();
        let err = acquire(&build, Scope::Key("kubevirt"), false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(".reprise.kubevirt.lock") && err.contains("kubevirt of this build"),
            "{err}"
        );
        assert!(
            err.contains(&format!("(pid {})", std::process::id())),
            "{err}"
        );
    }

    #[test]
    fn a_whole_build_run_and_a_key_push_exclude_each_other() {
        let (_tmp, build) = dir();
        let key = acquire(&build, Scope::Key("base-oscontainer"), false).unwrap();
        let err = acquire(&build, Scope::Build, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains(".reprise.lock"), "{err}");
        drop(key);
        let whole = acquire(&build, Scope::Build, false).unwrap();
        assert!(acquire(&build, Scope::Key("kubevirt"), false).is_err());
        drop(whole);
        acquire(&build, Scope::Key("kubevirt"), false).unwrap();
    }

    #[test]
    fn a_key_that_is_no_plain_file_name_gets_a_hex_lock_name() {
        assert_eq!(
            key_lock_name("base-oscontainer"),
            ".reprise.base-oscontainer.lock"
        );
        for odd in ["../x", "", ".hidden", "a/b"] {
            let name = key_lock_name(odd);
            assert!(
                name.starts_with(".reprise.x-") && !name.contains('/'),
                "{name}"
            );
        }
    }

    #[test]
    fn a_missing_build_directory_is_an_error_naming_the_lock_file() {
        let (_tmp, base) = dir();
        let err = acquire(&base.join("nope"), Scope::Build, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope/.reprise.lock"), "{err}");
    }
}
