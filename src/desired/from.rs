//! Where a build is read from: the working directory's `builds/` (as cosa leaves it), or the
//! build store `--builds-url` names. With a store, builds.json and the archives come from the
//! store; each arch's meta.json comes from the working directory when the pipeline fetched the
//! records there (and records are then written there), else from the store.

use camino::{Utf8Path, Utf8PathBuf};

use super::Error;
use crate::archive::{self, Archive};
use crate::builds::{self, Build, BuildsDir, Meta};
use crate::platform::Arch;
use crate::store::{BuildsUrl, Store};

/// The builds a push reads.
pub(crate) struct BuildSource<'a> {
    workdir: &'a Utf8Path,
    url: Option<&'a BuildsUrl>,
}

/// One arch's meta.json as read, and the store it must be written back to, if any.
pub(crate) struct ArchMeta {
    pub meta: Meta,
    /// `Some` when meta.json was read from a remote store: a record goes back there.
    pub store: Option<Store>,
}

impl<'a> BuildSource<'a> {
    pub fn new(workdir: &'a Utf8Path, url: Option<&'a BuildsUrl>) -> Self {
        BuildSource { workdir, url }
    }

    pub fn builds_dir(&self) -> Result<BuildsDir, Error> {
        match self.url {
            None => Ok(BuildsDir::load(self.workdir)?),
            Some(BuildsUrl::Local(dir)) => Ok(BuildsDir::load_dir(dir.clone())?),
            Some(BuildsUrl::Remote(store)) => {
                let url = store.url_of("builds.json");
                let (raw, _) = store.get(&url).map_err(|e| store_error(&url, e))?;
                Ok(BuildsDir::from_slice(store.url().into(), &raw)?)
            }
        }
    }

    /// The arch's meta.json: the working directory's copy when there is one (its artifacts
    /// still read from the store), else the store's.
    pub fn meta(&self, dir: &BuildsDir, build: &Build, arch: &Arch) -> Result<ArchMeta, Error> {
        let arch_dir = dir.arch_dir(build, arch);
        let Some(url) = self.url else {
            let meta = Meta::load(arch_dir.join("meta.json"))?;
            return Ok(ArchMeta { meta, store: None });
        };
        let local = self
            .workdir
            .join("builds")
            .join(&build.id)
            .join(arch.as_str())
            .join("meta.json");
        if local.is_file() {
            let meta = Meta::load(local)?.with_artifacts_in(arch_dir);
            return Ok(ArchMeta { meta, store: None });
        }
        let path = arch_dir.join("meta.json");
        match url {
            BuildsUrl::Local(_) => Ok(ArchMeta {
                meta: Meta::load(path)?,
                store: None,
            }),
            BuildsUrl::Remote(store) => {
                let (raw, _) = store.get(&path).map_err(|e| store_error(&path, e))?;
                Ok(ArchMeta {
                    meta: Meta::from_slice(path, &raw)?,
                    store: Some(store.clone()),
                })
            }
        }
    }

    /// The archive's size: a local file's, or the object's (a HEAD, no body).
    pub fn archive_len(&self, path: &Utf8Path) -> Result<u64, std::io::Error> {
        match self.url {
            Some(BuildsUrl::Remote(store)) => store.len(path).map_err(std::io::Error::other),
            _ => std::fs::metadata(path).map(|m| m.len()),
        }
    }

    /// The archive (`len` bytes) and the image in it. From a build store, what an earlier
    /// run that checked an archive with this `sha256` found, when this machine keeps it: no
    /// archive byte read.
    pub fn archive_and_image(
        &self,
        path: &Utf8Path,
        sha256: &str,
        len: u64,
    ) -> Result<(Archive, archive::Image), archive::Error> {
        let archive = match self.url {
            Some(BuildsUrl::Remote(store)) => {
                if let Some(hit) = Archive::recalled(store, path, sha256) {
                    tracing::debug!(archive = %path, "archive known from an earlier check");
                    return Ok(hit);
                }
                Archive::open_remote(store, path, len)?
            }
            _ => Archive::open(path)?,
        };
        let image = archive.image()?;
        Ok((archive, image))
    }
}

/// The meta.json `rel` names under the builds URL (`ID/ARCH/meta.json`), read from there: what
/// `inspect --meta` compares when given `--builds-url`.
pub fn meta_at(url: &BuildsUrl, rel: &Utf8Path) -> Result<Meta, builds::Error> {
    let escapes = rel.is_absolute()
        || rel
            .components()
            .any(|c| matches!(c, camino::Utf8Component::ParentDir));
    if escapes {
        return Err(builds::Error {
            path: rel.to_owned(),
            kind: builds::ErrorKind::Invalid(
                "with --builds-url, --meta names a meta.json under that URL (ID/ARCH/meta.json)"
                    .into(),
            ),
        });
    }
    match url {
        BuildsUrl::Local(dir) => Meta::load(dir.join(rel)),
        BuildsUrl::Remote(store) => {
            let path = store.url_of(rel.as_str());
            let (raw, _) = store.get(&path).map_err(|e| store_error(&path, e))?;
            Meta::from_slice(path, &raw)
        }
    }
}

/// A store error about a build record, as the same error a local file would give.
fn store_error(path: &Utf8PathBuf, e: crate::store::Error) -> builds::Error {
    builds::Error {
        path: path.clone(),
        kind: builds::ErrorKind::Invalid(match e {
            crate::store::Error::NotFound { .. } => {
                "No such file or directory (not found in the build store)".into()
            }
            e => strip_url(path, &e.to_string()),
        }),
    }
}

/// A store error's message without the object name it starts with (the caller names it).
fn strip_url(path: &Utf8Path, message: &str) -> String {
    message
        .strip_prefix(path.as_str())
        .and_then(|m| m.strip_prefix(": "))
        .unwrap_or(message)
        .to_owned()
}
