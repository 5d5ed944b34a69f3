//! Replacing a file atomically: the one way reprise writes a file it means to keep.
//!
//! Owns the write itself: temp file in the same directory, fsync, rename over the target,
//! fsync the directory, keeping the target's permissions. It does not name the file in its
//! errors (callers do, in their own error types), lock anything, or decide what to write:
//! meta.json records are `builds`'s, the `--write-digest-to-file` file is `push`'s.

use std::fs::{self, File};
use std::io::{self, Write};

use camino::Utf8Path;

/// Mode of a file that did not exist before, as `open(2)` with the usual umask gives.
const NEW_FILE_MODE: u32 = 0o644;

/// Replaces `path` with `bytes` so that a reader (or a crash) sees either the old file or the
/// new one, never a mix: temp file in the same directory, fsync, rename, fsync the directory.
/// The new file keeps the old one's permission bits (0644 when there was none).
pub fn write_atomic(path: &Utf8Path, bytes: &[u8]) -> io::Result<()> {
    let dir = parent_dir(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(".reprise-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(NEW_FILE_MODE);
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(mode))?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    File::open(dir)?.sync_all()
}

/// The directory that holds `path`, the one to sync after the rename. A bare file name's
/// parent is "", which names no directory, so it is ".".
fn parent_dir(path: &Utf8Path) -> &Utf8Path {
    match path.parent() {
        Some(p) if !p.as_str().is_empty() => p,
        _ => Utf8Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What is in `dir` after a write: the file and nothing else (no temp file left).
    fn entries(dir: &Utf8Path) -> Vec<String> {
        let mut v: Vec<String> = dir
            .read_dir_utf8()
            .unwrap()
            .map(|e| e.unwrap().file_name().to_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn parent_dir_of_a_bare_name_is_the_current_dir() {
        for (path, dir) in [
            ("meta.json", "."),
            ("./meta.json", "."),
            ("builds/1/meta.json", "builds/1"),
            ("/meta.json", "/"),
        ] {
            assert_eq!(parent_dir(Utf8Path::new(path)), dir, "{path}");
        }
    }

    #[test]
    fn a_new_file_is_written_whole_and_no_temp_file_is_left() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(tmp.path()).unwrap();
        let path = dir.join("digest");
        write_atomic(&path, b"sha256:abc").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"sha256:abc");
        assert_eq!(entries(dir), ["digest"]);
    }

    #[cfg(unix)]
    #[test]
    fn a_replaced_file_keeps_its_permissions_and_a_new_one_gets_0644() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(tmp.path()).unwrap();
        let mode = |p: &Utf8Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let fresh = dir.join("fresh");
        write_atomic(&fresh, b"1").unwrap();
        assert_eq!(mode(&fresh), NEW_FILE_MODE);
        let kept = dir.join("kept");
        fs::write(&kept, b"old").unwrap();
        fs::set_permissions(&kept, fs::Permissions::from_mode(0o600)).unwrap();
        write_atomic(&kept, b"new").unwrap();
        assert_eq!(fs::read(&kept).unwrap(), b"new");
        assert_eq!(mode(&kept), 0o600);
    }

    #[test]
    fn a_missing_directory_is_an_error_and_writes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(tmp.path()).unwrap();
        let e = write_atomic(&dir.join("absent/file"), b"x").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(entries(dir).is_empty());
    }
}
