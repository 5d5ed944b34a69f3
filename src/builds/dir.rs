//! The builds directory: `builds/builds.json`, which builds exist and which arches each has,
//! where a build's and an arch's directories are, and which paths inside an arch directory a
//! meta.json may name. It does not read meta.json (that is [`super::meta`]).

use camino::{Utf8Component, Utf8Path, Utf8PathBuf};
use serde_json::Value;

use super::{Error, invalid, read_json};
use crate::platform::Arch;

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
        BuildsDir::load_dir(workdir.join("builds"))
    }

    /// A `builds/` directory named directly (`--builds-url file:///...`).
    pub fn load_dir(dir: Utf8PathBuf) -> Result<BuildsDir, Error> {
        let path = dir.join("builds.json");
        let value: Value = read_json(&path)?;
        BuildsDir::parse(dir, &value)
    }

    /// builds.json as read from elsewhere (a build store); `dir` is where it was read, and
    /// what the build and arch directories are named under.
    pub fn from_slice(dir: Utf8PathBuf, raw: &[u8]) -> Result<BuildsDir, Error> {
        let path = dir.join("builds.json");
        let value: Value = serde_json::from_slice(raw).map_err(|e| super::err(&path, e))?;
        BuildsDir::parse(dir, &value)
    }

    fn parse(dir: Utf8PathBuf, value: &Value) -> Result<BuildsDir, Error> {
        let path = dir.join("builds.json");
        let value = value.clone();
        check_schema_version(&path, &value)?;
        let entries = value
            .get("builds")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid(&path, "no \"builds\" list"))?;
        let builds = entries
            .iter()
            .enumerate()
            .map(|(i, entry)| parse_build(&path, i, entry))
            .collect::<Result<Vec<_>, _>>()?;
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

/// builds.json must be schema 1.x, the one cosa writes.
fn check_schema_version(path: &Utf8Path, value: &Value) -> Result<(), Error> {
    let version = value
        .get("schema-version")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(path, "no \"schema-version\" string"))?;
    if version.split('.').next() != Some("1") {
        return Err(invalid(
            path,
            format!("schema-version {version} is not supported (expected 1.x)"),
        ));
    }
    Ok(())
}

/// `builds[i]` of builds.json: its id and its arches.
fn parse_build(path: &Utf8Path, i: usize, entry: &Value) -> Result<Build, Error> {
    let id = entry
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(path, format!("builds[{i}] has no \"id\" string")))?;
    let arches = entry
        .get("arches")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid(path, format!("build {id} has no \"arches\" list")))?
        .iter()
        .map(|a| {
            a.as_str()
                .ok_or_else(|| invalid(path, format!("build {id}: an arch is not a string")))
                .and_then(|s| Arch::parse(s).map_err(|e| invalid(path, format!("build {id}: {e}"))))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Build {
        id: id.to_owned(),
        arches,
    })
}

/// Joins `rel` onto `dir` only if the result cannot leave `dir`, lexically and through
/// symlinks that exist.
pub(super) fn contained_path(dir: &Utf8Path, rel: &str) -> Option<Utf8PathBuf> {
    let rel = Utf8Path::new(rel);
    if rel.is_absolute() || rel.as_str().is_empty() {
        return None;
    }
    let mut depth = 0i32;
    for c in rel.components() {
        match c {
            Utf8Component::Normal(_) => depth += 1,
            Utf8Component::CurDir => {}
            Utf8Component::ParentDir => depth -= 1,
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

    #[cfg(unix)]
    #[test]
    fn a_symlink_out_of_the_arch_dir_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Utf8PathBuf::from_path_buf(tmp.path().to_owned()).unwrap();
        let (arch, outside) = (root.join("x86_64"), root.join("elsewhere"));
        std::fs::create_dir(&arch).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("a.ociarchive"), b"").unwrap();
        std::os::unix::fs::symlink(&outside, arch.join("link")).unwrap();
        assert!(contained_path(&arch, "link/a.ociarchive").is_none());
        std::fs::write(arch.join("b.ociarchive"), b"").unwrap();
        assert!(contained_path(&arch, "b.ociarchive").is_some());
    }

    #[test]
    fn only_schema_1_builds_json_is_read() {
        let path = Utf8Path::new("builds/builds.json");
        for (value, ok) in [
            (json!({ "schema-version": "1.0.0" }), true),
            (json!({ "schema-version": "1" }), true),
            (json!({ "schema-version": "2.0.0" }), false),
            (json!({ "schema-version": 1 }), false),
            (json!({}), false),
        ] {
            let got = check_schema_version(path, &value);
            assert_eq!(got.is_ok(), ok, "{value}: {got:?}");
        }
    }

    #[test]
    fn a_build_entry_needs_an_id_and_known_arches() {
        let path = Utf8Path::new("builds/builds.json");
        let build = parse_build(path, 0, &json!({ "id": "40.1", "arches": ["x86_64"] })).unwrap();
        assert_eq!(build.id, "40.1");
        assert_eq!(build.arches, [Arch::parse("x86_64").unwrap()]);
        for (entry, says) in [
            (json!({ "arches": [] }), "builds[3] has no \"id\" string"),
            (json!({ "id": "40.1" }), "build 40.1 has no \"arches\" list"),
            (
                json!({ "id": "40.1", "arches": [7] }),
                "an arch is not a string",
            ),
        ] {
            let e = parse_build(path, 3, &entry).unwrap_err().to_string();
            assert!(e.starts_with("builds/builds.json: "), "{e}");
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn latest_is_the_first_build_and_an_unknown_id_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let work = Utf8PathBuf::from_path_buf(tmp.path().to_owned()).unwrap();
        std::fs::create_dir(work.join("builds")).unwrap();
        let json = json!({
            "schema-version": "1.0.0",
            "builds": [
                { "id": "40.2", "arches": ["x86_64", "aarch64"] },
                { "id": "40.1", "arches": ["x86_64"] },
            ],
        });
        std::fs::write(work.join("builds/builds.json"), json.to_string()).unwrap();
        let dir = BuildsDir::load(&work).unwrap();
        let latest = dir.find("latest").unwrap();
        assert_eq!(latest.id, "40.2");
        assert_eq!(latest.arches.len(), 2);
        assert_eq!(dir.find("40.1").unwrap().arches.len(), 1);
        let e = dir.find("39.9").unwrap_err().to_string();
        assert!(e.contains("has no build \"39.9\""), "{e}");
        assert_eq!(
            dir.arch_dir(latest, &latest.arches[1]),
            work.join("builds/40.2/aarch64")
        );
    }
}
