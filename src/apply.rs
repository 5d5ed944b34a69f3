//! Runs a plan: uploads the blobs the registry lacks, pushes each arch manifest (and each
//! carried manifest converted to the list's format) by digest, pushes the index to the tags
//! that differ, reads every written tag back, and only then writes the meta.json records.
//!
//! Moving the blobs, and checking each archive on the way, is `blobs`: each archive is read
//! once, its check pass handing the blobs to their uploads, and no manifest goes out before
//! every archive passed, so bad input publishes nothing. Just before the tags are written
//! they are read again, and after recording once more: another writer's move is never
//! hidden. Between every step that changes state sits a named
//! `failpoint`, so tests can crash a run there and check a rerun
//! converges.
//!
//! It decides nothing the plan did not decide; it only checks what it must see with its own
//! eyes (whether a blob or manifest is already present, whether a tag reads back right).

use std::time::Duration;

use camino::Utf8PathBuf;
use serde::Serialize;

use futures_util::StreamExt as _;
use futures_util::future::try_join_all;

use crate::archive::{self, Archive, BlobRef, Image};
use crate::blocking::{self, TaskFailed};
use crate::builds;
use crate::failpoint;
use crate::plan::{Conversion, Plan, TagAction};
use crate::platform::Arch;
use crate::progress::Progress;
use crate::reference::{Digest, Repository, Tag};
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
    #[error(transparent)]
    Task(#[from] TaskFailed),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// A tag changed under the run twice: after its plan, and again after planning anew.
    #[error(
        "{target}: another writer put {found} there while this run was publishing, again after \
         it planned anew; not written"
    )]
    MovedAgain { target: String, found: String },
    #[error(
        "{target}: another writer put {found} there after this run recorded it; the record \
         names a tag this run no longer holds"
    )]
    TakenAfterRecording { target: String, found: String },
}

/// One record to write, and where.
struct Record {
    arch: Arch,
    path: Utf8PathBuf,
    store: Option<crate::store::Store>,
    record: builds::Record,
}

/// A tag read back holding another writer's digest, or nothing.
fn moved(r: &crate::reference::Reference, found: Option<Digest>) -> registry::Error {
    registry::Error::Moved {
        target: r.to_string(),
        found,
    }
}

/// One arch's image, ready to push.
pub struct ArchImage {
    pub arch: Arch,
    pub image: Image,
    pub origin: Origin,
    /// The meta.json that records this arch; `None` for images given with `--image`.
    pub meta_path: Option<Utf8PathBuf>,
    /// The build store `meta_path` is in, when it was read from one (`--builds-url`) rather
    /// than from a local file: records go back there by conditional write.
    pub meta_store: Option<crate::store::Store>,
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
    /// The meta.json key records are written under; `None` when the run records nothing.
    pub metajsonname: Option<&'a str>,
    pub force: bool,
    /// How long the record step waits for another writer's meta.json lock.
    pub lock_timeout: Duration,
    /// Other repositories of the same registry that may already hold this run's blobs
    /// (`--mount-from`, and where earlier records say the build was pushed): a blob found
    /// there is mounted instead of uploaded.
    pub mount_from: &'a [Repository],
}

impl Apply<'_> {
    /// Everything the tags will point at: each arch's blobs and manifest, and each carried
    /// manifest converted to the list's format. Writes no tag. While the manifests go out,
    /// the tags are read again (when the plan writes any), all at once: returns those that
    /// moved since the plan, each with what it holds now.
    pub async fn push_content(
        &self,
        plan: &Plan,
        images: &[ArchImage],
        stats: &mut Stats,
    ) -> Result<Vec<(Tag, Option<Digest>)>, Error> {
        let needed = if plan.push_images {
            let all: Vec<&ArchImage> = images.iter().collect();
            self.push_blobs(&all, stats).await?
        } else {
            Vec::new()
        };
        let conversions = if plan.push_images {
            &plan.converted[..]
        } else {
            &[]
        };
        let check = async {
            if plan.pushes() {
                self.moved_tags(plan).await
            } else {
                Ok(Vec::new())
            }
        };
        let (manifests, converted, moved) = futures_util::try_join!(
            self.push_manifests(&needed),
            self.push_conversions(conversions),
            check
        )?;
        stats.pushed_manifests += manifests + converted;
        Ok(moved)
    }

    /// The tags of `plan` that no longer hold what it saw, each with what it holds now
    /// (`None`: nothing), read all at once: another writer got there since the plan.
    pub async fn moved_tags(&self, plan: &Plan) -> Result<Vec<(Tag, Option<Digest>)>, Error> {
        let now = self.read_tags(plan).await?;
        Ok(plan
            .tags
            .iter()
            .zip(now)
            .filter(|(t, now)| &t.before != now)
            .map(|(t, now)| (t.tag.clone(), now))
            .collect())
    }

    /// What every tag of `plan` resolves to now, read concurrently.
    async fn read_tags(&self, plan: &Plan) -> Result<Vec<Option<Digest>>, Error> {
        let reads = plan
            .tags
            .iter()
            .map(|t| async move { self.client.resolve(&self.repo.tagged(&t.tag)).await });
        Ok(try_join_all(reads).await?)
    }

    /// Writes the tags that differ, reads back every written tag and every arch manifest,
    /// records, and reads the tags once more: a record must name only tags this run holds,
    /// and one another writer took meanwhile is reported, never hidden.
    pub async fn publish(
        &self,
        plan: &Plan,
        images: &[ArchImage],
        stats: &mut Stats,
    ) -> Result<(), Error> {
        let pushed_images = stats.pushed_manifests > 0;
        let to_push: Vec<_> = plan
            .tags
            .iter()
            .filter(|t| t.action == TagAction::Push)
            .collect();
        let puts = to_push.iter().map(|t| async move {
            tracing::info!(tag = %t.tag, digest = %plan.index.digest, "pushing index");
            self.client
                .put_manifest(
                    &self.repo.tagged(&t.tag),
                    &plan.index.bytes,
                    &plan.index.media_type,
                )
                .await?;
            failpoint::hit(&format!("after-tag:{}", t.tag));
            Ok::<_, Error>(())
        });
        try_join_all(puts).await?;
        let planned: Vec<_> = plan.records_to_write().collect();
        if pushed_images || !to_push.is_empty() || !planned.is_empty() {
            self.read_back(plan, images).await?;
        }
        let records = self.records(&planned, images);
        if records.is_empty() {
            return Ok(());
        }
        self.write_records(records, stats).await?;
        self.check_held(plan).await
    }

    /// Never trust a tag that has not been read back, nor record an arch whose manifest the
    /// registry cannot serve by digest: every written tag (until it shows the index, unless
    /// another writer's shows instead), every tag the records will name, and every arch
    /// manifest, all read at once.
    async fn read_back(&self, plan: &Plan, images: &[ArchImage]) -> Result<(), Error> {
        let index = &plan.index.digest;
        let tags = plan.tags.iter().map(|t| async move {
            let r = self.repo.tagged(&t.tag);
            match t.action {
                TagAction::Push => {
                    self.client
                        .verify_written(&r, index, t.before.as_ref())
                        .await
                }
                // Held when planned: it must still be, or the records would claim it wrongly.
                _ => match self.client.resolve(&r).await? {
                    Some(d) if &d == index => Ok(()),
                    found => Err(moved(&r, found)),
                },
            }
        });
        let manifests = images.iter().map(|img| async move {
            let digest = &img.image.manifest_digest;
            self.client
                .verify(&self.repo.digested(digest), digest)
                .await
        });
        futures_util::try_join!(try_join_all(tags), try_join_all(manifests))?;
        Ok(())
    }

    /// The records to write: the planned ones of arches that have a meta.json, each with the
    /// build store its meta.json is in (`None`: a local file).
    fn records(&self, planned: &[&crate::plan::RecordPlan], images: &[ArchImage]) -> Vec<Record> {
        planned
            .iter()
            .filter_map(|rec| {
                let img = images.iter().find(|i| i.arch == rec.arch)?;
                Some(Record {
                    arch: rec.arch.clone(),
                    path: img.meta_path.clone()?,
                    store: img.meta_store.clone(),
                    record: rec.record.clone(),
                })
            })
            .collect()
    }

    /// Writes `records`: local meta.json files under their lock, those in a build store by
    /// conditional write (see [`crate::store::write_record`]).
    async fn write_records(&self, records: Vec<Record>, stats: &mut Stats) -> Result<(), Error> {
        let Some(key) = self.metajsonname else {
            return Ok(());
        };
        let key = key.to_owned();
        let lock_timeout = self.lock_timeout;
        failpoint::hit("before-records");
        // Blocking: it may wait for other writers' locks, or for the store.
        let changed = blocking::run("writing the meta.json records", move || {
            let (remote, local): (Vec<_>, Vec<_>) =
                records.into_iter().partition(|r| r.store.is_some());
            let mut changed = Vec::with_capacity(remote.len() + local.len());
            for r in remote {
                if let Some(store) = &r.store {
                    let done = crate::store::write_record(store, &r.path, &key, &r.record)?;
                    changed.push((r.arch, done));
                }
            }
            let (arches, files): (Vec<_>, Vec<_>) = local
                .into_iter()
                .map(|r| (r.arch, (r.path, r.record)))
                .unzip();
            let done = builds::write_records(&files, &key, lock_timeout)?;
            changed.extend(arches.into_iter().zip(done));
            Ok::<_, Error>(changed)
        })
        .await??;
        failpoint::hit("after-records");
        for (arch, changed) in changed {
            if changed {
                stats.records_written.push(arch);
            }
        }
        Ok(())
    }

    /// After recording, every tag must still hold the index: one another writer took in the
    /// meantime is an error naming it, so the record's claim does not go unnoticed.
    async fn check_held(&self, plan: &Plan) -> Result<(), Error> {
        let now = self.read_tags(plan).await?;
        for (t, now) in plan.tags.iter().zip(now) {
            if now.as_ref() != Some(&plan.index.digest) {
                return Err(Error::TakenAfterRecording {
                    target: self.repo.tagged(&t.tag).to_string(),
                    found: registry::found_text(now.as_ref()),
                });
            }
        }
        Ok(())
    }
}

mod blobs;
