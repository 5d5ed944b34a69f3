//! Runs a plan: uploads the blobs the registry lacks, pushes each arch manifest by digest,
//! pushes the index to the tags that differ, reads every written tag back, and only then
//! writes the meta.json records. Between every step that changes state sits a named
//! [`failpoint`](crate::failpoint), so tests can crash a run there and check a rerun converges.
//!
//! It decides nothing the plan did not decide; it only checks what it must see with its own
//! eyes (whether a blob or manifest is already present, whether a tag reads back right).

use std::time::Duration;

use camino::Utf8PathBuf;
use serde::Serialize;

use crate::archive::{self, Archive, Image};
use crate::builds;
use crate::failpoint;
use crate::plan::{Plan, TagAction};
use crate::platform::Arch;
use crate::reference::Repository;
use crate::registry::{self, Client};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Registry(#[from] registry::Error),
    #[error(transparent)]
    Archive(#[from] archive::Error),
    #[error(transparent)]
    Builds(#[from] builds::Error),
    #[error(
        "{path}: sha256 is {actual} but meta.json records {expected}; refusing to push from it"
    )]
    Checksum {
        path: Utf8PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{0}")]
    Task(String),
}

/// One arch's image, ready to push.
pub struct ArchImage {
    pub arch: Arch,
    pub image: Image,
    pub origin: Origin,
    /// The meta.json that records this arch; `None` for images given with `--image`.
    pub meta_path: Option<Utf8PathBuf>,
}

/// Where an image's blobs are read from.
pub enum Origin {
    /// A local OCI archive or layout directory. `sha256` is the whole-archive checksum
    /// meta.json records, checked before anything is pushed from it.
    Local {
        archive: Archive,
        sha256: Option<String>,
    },
    /// An image already in a registry, reached through `client`.
    Registry { client: Client, repo: Repository },
}

/// What applying did, for the report.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    pub uploaded_blobs: u64,
    pub uploaded_bytes: u64,
    pub skipped_blobs: u64,
    /// Blobs linked from another repository of the same registry instead of uploaded.
    pub mounted_blobs: u64,
    pub pushed_manifests: u64,
    pub records_written: Vec<Arch>,
}

pub struct Apply<'a> {
    pub client: &'a Client,
    pub repo: &'a Repository,
    pub metajsonname: &'a str,
    pub force: bool,
    /// How long the record step waits for another writer's meta.json lock.
    pub lock_timeout: Duration,
}

impl Apply<'_> {
    pub async fn run(&self, plan: &Plan, images: &[ArchImage]) -> Result<Stats, Error> {
        let mut stats = Stats::default();
        if plan.push_images {
            let mut needed = Vec::new();
            for img in images {
                let present = self
                    .client
                    .resolve(&self.repo.digested(&img.image.manifest_digest))
                    .await?
                    .is_some();
                if present && !self.force {
                    tracing::debug!(arch = %img.arch, "manifest already in the registry");
                    stats.skipped_blobs += img.image.blobs().count() as u64;
                } else {
                    needed.push(img);
                }
            }
            // Every archive, and every blob in it, is checked before the first write.
            for img in &needed {
                self.check_archive(img).await?;
                self.check_blobs(img).await?;
            }
            for img in needed {
                self.push_image(img, &mut stats).await?;
            }
        }
        let pushed_images = stats.pushed_manifests > 0;
        let to_push: Vec<_> = plan
            .tags
            .iter()
            .filter(|t| t.action == TagAction::Push)
            .collect();
        for t in &to_push {
            tracing::info!(tag = %t.tag, digest = %plan.index.digest, "pushing index");
            self.client
                .put_manifest(
                    &self.repo.tagged(&t.tag),
                    &plan.index.bytes,
                    &plan.index.media_type,
                )
                .await?;
            failpoint::hit(&format!("after-tag:{}", t.tag));
        }
        // Never trust a tag that has not been read back.
        for t in &to_push {
            self.client
                .verify(&self.repo.tagged(&t.tag), &plan.index.digest)
                .await?;
        }
        // Nor record an arch whose manifest the registry cannot serve by digest.
        let planned: Vec<_> = plan.records_to_write().collect();
        if pushed_images || !to_push.is_empty() || !planned.is_empty() {
            for img in images {
                let digest = &img.image.manifest_digest;
                self.client
                    .verify(&self.repo.digested(digest), digest)
                    .await?;
            }
        }
        let mut records = Vec::new();
        let mut arches = Vec::new();
        for rec in planned {
            let Some(path) = images
                .iter()
                .find(|i| i.arch == rec.arch)
                .and_then(|i| i.meta_path.clone())
            else {
                continue;
            };
            records.push((path, rec.record.clone()));
            arches.push(rec.arch.clone());
        }
        if !records.is_empty() {
            let key = self.metajsonname.to_owned();
            let lock_timeout = self.lock_timeout;
            failpoint::hit("before-records");
            // Blocking: it may wait for other writers' locks.
            let changed = tokio::task::spawn_blocking(move || {
                builds::write_records(&records, &key, lock_timeout)
            })
            .await
            .map_err(|e| Error::Task(e.to_string()))??;
            failpoint::hit("after-records");
            for (arch, changed) in arches.into_iter().zip(changed) {
                if changed {
                    stats.records_written.push(arch);
                }
            }
        }
        Ok(stats)
    }

    /// Uploads the blobs of one image the registry lacks, then its manifest by digest.
    pub async fn push_image(&self, img: &ArchImage, stats: &mut Stats) -> Result<(), Error> {
        let manifest_ref = self.repo.digested(&img.image.manifest_digest);
        for blob in img.image.blobs() {
            if self.client.blob_exists(self.repo, &blob.digest).await? {
                stats.skipped_blobs += 1;
                continue;
            }
            match &img.origin {
                Origin::Local { archive, .. } => {
                    tracing::info!(arch = %img.arch, digest = %blob.digest, size = blob.size, "uploading blob");
                    self.client
                        .push_blob(self.repo, blob, || archive.blob_reader(blob))
                        .await?;
                }
                Origin::Registry { client, repo } => {
                    if repo.registry() == self.repo.registry()
                        && self
                            .client
                            .mount_blob(self.repo, repo, &blob.digest)
                            .await?
                    {
                        tracing::info!(arch = %img.arch, digest = %blob.digest, from = %repo, "mounted blob");
                        stats.mounted_blobs += 1;
                        continue;
                    }
                    tracing::info!(arch = %img.arch, digest = %blob.digest, size = blob.size, from = %repo, "copying blob");
                    self.client.copy_blob(self.repo, client, repo, blob).await?;
                }
            }
            stats.uploaded_blobs += 1;
            stats.uploaded_bytes += blob.size;
        }
        failpoint::hit(&format!("after-blobs:{}", img.arch));
        tracing::info!(arch = %img.arch, digest = %img.image.manifest_digest, "pushing manifest");
        self.client
            .put_manifest(&manifest_ref, &img.image.manifest, &img.image.media_type)
            .await?;
        stats.pushed_manifests += 1;
        failpoint::hit(&format!("after-manifest:{}", img.arch));
        Ok(())
    }

    /// Reads every blob once against its digest and size, so a corrupt archive (whose
    /// meta.json checksum may well match it) fails before any upload session is opened,
    /// rather than midway through a push. Uploads verify again as they stream.
    async fn check_blobs(&self, img: &ArchImage) -> Result<(), Error> {
        let Origin::Local { archive, .. } = &img.origin else {
            return Ok(());
        };
        for blob in img.image.blobs() {
            let mut reader = archive.blob_reader(blob)?;
            let path = archive.path().to_owned();
            tokio::task::spawn_blocking(move || {
                std::io::copy(&mut reader, &mut std::io::sink()).map_err(|e| {
                    let is_mismatch = e
                        .get_ref()
                        .is_some_and(|inner| inner.is::<archive::BlobMismatch>());
                    let kind = if is_mismatch {
                        match e
                            .into_inner()
                            .map(|i| i.downcast::<archive::BlobMismatch>())
                        {
                            Some(Ok(mismatch)) => mismatch.0,
                            _ => std::io::Error::other("blob does not match its digest").into(),
                        }
                    } else {
                        e.into()
                    };
                    archive::Error { path, kind }
                })
            })
            .await
            .map_err(|e| Error::Task(e.to_string()))??;
        }
        Ok(())
    }

    /// cosa parity: the archive must be the one meta.json describes before any of it is
    /// pushed. Only done when something is pushed, so a no-op never hashes an archive.
    pub async fn check_archive(&self, img: &ArchImage) -> Result<(), Error> {
        let Origin::Local {
            archive,
            sha256: Some(expected),
        } = &img.origin
        else {
            return Ok(());
        };
        let path = archive.path().to_owned();
        let hashed = path.clone();
        let (actual, _) = tokio::task::spawn_blocking(move || archive::file_sha256(&hashed))
            .await
            .map_err(|e| Error::Task(e.to_string()))?
            .map_err(|e| archive::Error {
                path: path.clone(),
                kind: e.into(),
            })?;
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(Error::Checksum {
                path,
                expected: expected.clone(),
                actual,
            });
        }
        Ok(())
    }
}
