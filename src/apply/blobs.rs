//! Getting each image into the repository: its blobs, then its manifest by digest.
//!
//! Each arch goes at its own pace: one round trip asks at once whether its manifest and the
//! blobs it is first to have are there, and its uploads start as soon as that answers. A
//! local archive is read once: one check pass per archive (its whole-file sha256, and the
//! digest of every blob not sent) hands the blobs it reads over to their uploads, and the
//! registry checks each blob's digest before it commits (bytes read any other way, or from
//! an archive with no recorded sha256, are hashed as they go out). No manifest goes out
//! before every archive has passed its check and every blob is in, so bad input publishes
//! nothing (only blob sessions may have been opened).
//!
//! Byte-heavy uploads move `jobs` at a time; small requests (HEADs, small blobs, manifests)
//! have a higher limit of their own, since each costs a round trip that only concurrency
//! hides.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use futures_util::stream::FuturesUnordered;
use tokio::sync::Semaphore;

use super::*;
use crate::archive::FedBlob;
use crate::hash::BlobSource;

/// Blobs under this many bytes move under the small-request limit.
const SMALL_BLOB: u64 = 1 << 20;

/// How often a manifest the registry refused for an unknown blob is put again, after its
/// blobs were checked (and the missing ones moved in) each time.
const BLOB_UNKNOWN_TRIES: u32 = 3;

/// How one blob reached the registry.
pub(super) enum Moved {
    Uploaded(u64),
    Mounted,
}

/// The two limits on requests in flight.
struct Limits {
    uploads: Semaphore,
    small: Semaphore,
}

impl Limits {
    fn for_size(&self, size: u64) -> &Semaphore {
        if size < SMALL_BLOB {
            &self.small
        } else {
            &self.uploads
        }
    }
}

/// What pushing one arch's blobs came to.
#[derive(Default)]
struct ArchBlobs {
    /// Its manifest must go out (the registry lacks it, or `--force`).
    needed: bool,
    moved: Vec<Moved>,
    skipped: u64,
}

/// Stops a check pass when the work it serves is dropped or has failed.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Apply<'_> {
    /// Pushes every image of `images` whose manifest the registry lacks (every one under
    /// `--force`): moves its missing blobs while its archive is checked, then, once every
    /// image's blobs are in and every archive passed, puts each manifest by digest.
    pub async fn push_images(&self, images: &[&ArchImage], stats: &mut Stats) -> Result<(), Error> {
        let needed = self.push_blobs(images, stats).await?;
        stats.pushed_manifests += self.push_manifests(&needed).await?;
        Ok(())
    }

    /// The blobs of [`Apply::push_images`]: returns the images whose manifest must go out.
    pub(super) async fn push_blobs<'i>(
        &self,
        images: &[&'i ArchImage],
        stats: &mut Stats,
    ) -> Result<Vec<&'i ArchImage>, Error> {
        let limits = Limits {
            uploads: Semaphore::new(self.client.jobs()),
            small: Semaphore::new(self.client.small_jobs()),
        };
        let total = Arc::new(AtomicU64::new(0));
        let counters = images
            .iter()
            .filter_map(|img| match &img.origin {
                Origin::Local { archive, .. } => {
                    Some((archive.read_counter(), archive.bytes_read()))
                }
                Origin::Registry { .. } => None,
            })
            .collect();
        let progress = Progress::start(total.clone(), counters);
        let owned = first_owners(images);
        let arches = images
            .iter()
            .zip(owned)
            .map(|(img, owned)| self.push_arch_blobs(img, owned, &limits, &total));
        let done = try_join_all(arches).await;
        progress.finish().await;
        let mut needed = Vec::new();
        for (img, arch) in images.iter().zip(done?) {
            stats.skipped_blobs += arch.skipped;
            for m in arch.moved {
                match m {
                    Moved::Uploaded(bytes) => {
                        stats.uploaded_blobs += 1;
                        stats.uploaded_bytes += bytes;
                    }
                    Moved::Mounted => stats.mounted_blobs += 1,
                }
            }
            if arch.needed {
                needed.push(*img);
            }
        }
        Ok(needed)
    }

    /// One arch: whether its manifest and the blobs it owns are there, asked at once, then
    /// the missing ones moved (and its archive checked on the way).
    async fn push_arch_blobs(
        &self,
        img: &ArchImage,
        owned: Vec<&BlobRef>,
        limits: &Limits,
        total: &AtomicU64,
    ) -> Result<ArchBlobs, Error> {
        let digest = &img.image.manifest_digest;
        let manifest = async {
            let present = self.client.resolve(&self.repo.digested(digest)).await?;
            Ok::<_, Error>(present.is_some())
        };
        let blobs = try_join_all(owned.iter().map(|b| async move {
            let _turn = limits.small.acquire().await;
            Ok::<_, Error>(self.client.blob_exists(self.repo, &b.digest).await?)
        }));
        let (present, exists) = futures_util::try_join!(manifest, blobs)?;
        let all = img.image.blobs().count() as u64;
        if present && !self.force {
            tracing::debug!(arch = %img.arch, "manifest already in the registry");
            return Ok(ArchBlobs {
                skipped: all,
                ..ArchBlobs::default()
            });
        }
        let missing: Vec<&BlobRef> = owned
            .into_iter()
            .zip(exists)
            .filter_map(|(b, exists)| (!exists).then_some(b))
            .collect();
        let moved = match &img.origin {
            Origin::Local { archive, sha256 } => {
                total.fetch_add(archive.size(), Ordering::Relaxed);
                self.move_local(img, archive, sha256.as_deref(), &missing, limits)
                    .await?
            }
            Origin::Registry { .. } => {
                let moves = missing.iter().map(|b| async move {
                    let _turn = limits.for_size(b.size).acquire().await;
                    self.move_blob(img, b, None::<&FedBlob>).await
                });
                try_join_all(moves).await?
            }
        };
        Ok(ArchBlobs {
            needed: true,
            skipped: all - moved.len() as u64,
            moved,
        })
    }

    /// Moves the missing blobs of a local archive while one pass over it checks it and hands
    /// them over. The pass's verdict comes first: when it fails, the uploads it fed are
    /// dropped and its error is the one reported.
    async fn move_local(
        &self,
        img: &ArchImage,
        archive: &Archive,
        sha256: Option<&str>,
        missing: &[&BlobRef],
        limits: &Limits,
    ) -> Result<Vec<Moved>, Error> {
        let mut order: Vec<&BlobRef> = missing.to_vec();
        order.sort_by_key(|b| archive.offset_of(b));
        let mut sources = Vec::with_capacity(order.len());
        let mut taps = Vec::new();
        for blob in order {
            let (source, tap) = archive.fed_source(blob, sha256.is_some())?;
            sources.push((blob, source));
            taps.extend(tap);
        }
        let checked: Vec<BlobRef> = img
            .image
            .blobs()
            .filter(|b| !missing.iter().any(|m| m.digest == b.digest))
            .cloned()
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let reader = archive.clone();
        let pass_stop = stop.clone();
        let pass = blocking::run(format!("checking {}", archive.path()), move || {
            reader.check_pass(&checked.iter().collect::<Vec<_>>(), taps, &pass_stop)
        });
        let _stop_pass = StopOnDrop(stop.clone());
        let uploads = self.upload_in_order(img, sources, limits);
        tokio::pin!(pass, uploads);
        tokio::select! {
            checked = &mut pass => {
                check_sum(archive, sha256, checked??)?;
                uploads.await
            }
            moved = &mut uploads => {
                if moved.is_err() {
                    stop.store(true, Ordering::Relaxed);
                }
                // A check error explains a failed upload better than the upload does.
                match pass.await? {
                    Ok(actual) => check_sum(archive, sha256, actual)?,
                    Err(e) if moved.is_ok() || !is_stopped(&e) => return Err(e.into()),
                    Err(_) => {}
                }
                moved
            }
        }
    }

    /// Moves `sources` of one archive in file order, several at once: a blob's upload starts
    /// only once every blob before it in the file has started, so the pass, which hands the
    /// blobs over in file order, always feeds one that is being read.
    async fn upload_in_order(
        &self,
        img: &ArchImage,
        sources: Vec<(&BlobRef, FedBlob<'_>)>,
        limits: &Limits,
    ) -> Result<Vec<Moved>, Error> {
        let mut running = FuturesUnordered::new();
        let mut moved = Vec::with_capacity(sources.len());
        for (blob, source) in sources {
            let limit = limits.for_size(blob.size);
            let turn = loop {
                tokio::select! {
                    biased;
                    Some(done) = running.next() => moved.push(done?),
                    turn = limit.acquire() => break turn,
                }
            };
            running.push(async move {
                let _turn = turn;
                self.move_blob(img, blob, Some(&source)).await
            });
        }
        while let Some(done) = running.next().await {
            moved.push(done?);
        }
        Ok(moved)
    }

    /// Puts each image's manifest by digest, all at once, once its blobs are in; returns
    /// how many.
    pub(super) async fn push_manifests(&self, needed: &[&ArchImage]) -> Result<u64, Error> {
        let puts = needed.iter().map(|img| async move {
            failpoint::hit(&format!("after-blobs:{}", img.arch));
            tracing::info!(arch = %img.arch, digest = %img.image.manifest_digest, "pushing manifest");
            self.put_arch_manifest(img).await?;
            failpoint::hit(&format!("after-manifest:{}", img.arch));
            Ok::<_, Error>(())
        });
        Ok(try_join_all(puts).await?.len() as u64)
    }

    /// Puts one image's manifest. A registry that says a blob of it is unknown, though each
    /// was found or uploaded, is asked about every blob again and given the missing ones,
    /// then the manifest again, a bounded number of times: another run pushing the same
    /// blob can make a registry read its link half-written (Docker Distribution's
    /// filesystem storage rewrites it in place).
    async fn put_arch_manifest(&self, img: &ArchImage) -> Result<(), Error> {
        let target = self.repo.digested(&img.image.manifest_digest);
        let mut tries = 0;
        loop {
            let put = self
                .client
                .put_manifest(&target, &img.image.manifest, &img.image.media_type)
                .await;
            match put {
                Err(e @ registry::Error::BlobUnknown { .. }) if tries < BLOB_UNKNOWN_TRIES => {
                    tries += 1;
                    tracing::warn!("{e}; checking its blobs and trying again");
                    self.restore_blobs(img).await?;
                }
                other => return Ok(other?),
            }
        }
    }

    /// Asks about every blob of `img` again, and moves in those the repository lacks.
    async fn restore_blobs(&self, img: &ArchImage) -> Result<(), Error> {
        let checks = img.image.blobs().map(|b| async move {
            if self.client.blob_exists(self.repo, &b.digest).await? {
                return Ok::<_, Error>(());
            }
            tracing::warn!(arch = %img.arch, digest = %b.digest, "blob missing; moving it again");
            self.move_blob(img, b, None::<&FedBlob>).await?;
            Ok(())
        });
        try_join_all(checks).await?;
        Ok(())
    }

    /// Puts each carried manifest in the list's format by digest, unless the registry has it
    /// (every one under `--force`); returns how many. Its blobs are those of the manifest it
    /// was converted from, which the repository holds, so nothing is uploaded.
    pub(super) async fn push_conversions(&self, conversions: &[Conversion]) -> Result<u64, Error> {
        let puts = conversions.iter().map(|c| async move {
            let target = self.repo.digested(&c.digest);
            if !self.force && self.client.resolve(&target).await?.is_some() {
                return Ok::<_, Error>(false);
            }
            tracing::info!(platform = %c.platform, from = %c.from, digest = %c.digest, "pushing converted manifest");
            self.client
                .put_manifest(&target, &c.bytes, &c.media_type)
                .await?;
            Ok(true)
        });
        let pushed = try_join_all(puts).await?;
        Ok(pushed.into_iter().filter(|p| *p).count() as u64)
    }

    /// Gets one blob the registry lacks into the repository: by mount from another
    /// repository of the same registry that holds it, else by streaming it from its origin
    /// (`source`, for a local archive).
    async fn move_blob<S: BlobSource<Error = archive::Error>>(
        &self,
        img: &ArchImage,
        blob: &BlobRef,
        source: Option<&S>,
    ) -> Result<Moved, Error> {
        let same_registry = |r: &Repository| r.registry() == self.repo.registry() && r != self.repo;
        if let Origin::Registry { repo, .. } = &img.origin
            && same_registry(repo)
            && self
                .client
                .mount_blob(self.repo, repo, &blob.digest)
                .await?
        {
            tracing::info!(arch = %img.arch, digest = %blob.digest, from = %repo, "mounted blob");
            return Ok(Moved::Mounted);
        }
        for from in self.mount_from.iter().filter(|r| same_registry(r)) {
            if self
                .client
                .mount_if_present(self.repo, from, &blob.digest)
                .await?
            {
                tracing::info!(arch = %img.arch, digest = %blob.digest, from = %from, "mounted blob");
                return Ok(Moved::Mounted);
            }
        }
        match (&img.origin, source) {
            (Origin::Local { archive, .. }, Some(source)) => {
                tracing::info!(arch = %img.arch, digest = %blob.digest, size = blob.size, "uploading blob");
                self.client
                    .push_blob(self.repo, blob, source)
                    .await
                    .map_err(|e| local_error(archive, e))?;
            }
            (Origin::Local { archive, .. }, None) => {
                let source = archive.blob_source(blob)?;
                self.client
                    .push_blob(self.repo, blob, &source)
                    .await
                    .map_err(|e| local_error(archive, e))?;
            }
            (Origin::Registry { client, repo }, _) => {
                tracing::info!(arch = %img.arch, digest = %blob.digest, size = blob.size, from = %repo, "copying blob");
                self.client.copy_blob(self.repo, client, repo, blob).await?;
            }
        }
        Ok(Moved::Uploaded(blob.size))
    }

    /// Reads a local image's archive once: every blob against its digest and size, and (cosa
    /// parity) the whole file against the sha256 meta.json records. Only done when something
    /// is pushed from it, so a no-op never reads an archive.
    pub async fn check_archive(&self, img: &ArchImage) -> Result<(), Error> {
        let Origin::Local { archive, sha256 } = &img.origin else {
            return Ok(());
        };
        let blobs: Vec<BlobRef> = img.image.blobs().cloned().collect();
        let reader = archive.clone();
        let actual = blocking::run(format!("checking {}", archive.path()), move || {
            reader.verify(&blobs.iter().collect::<Vec<_>>())
        })
        .await??;
        check_sum(archive, sha256.as_deref(), actual)
    }
}

/// For each image, the blobs it is the first of `images` to have: each blob is asked about
/// and moved once, though arches share some (the base layer).
fn first_owners<'i>(images: &[&'i ArchImage]) -> Vec<Vec<&'i BlobRef>> {
    let mut seen: Vec<&Digest> = Vec::new();
    images
        .iter()
        .map(|img| {
            img.image
                .blobs()
                .filter(|b| {
                    let first = !seen.contains(&&b.digest);
                    if first {
                        seen.push(&b.digest);
                    }
                    first
                })
                .collect()
        })
        .collect()
}

/// The whole file's sha256 against the one meta.json records. A build store's archive that
/// matched is kept in mind (`archive::cache`), so a rerun plans without reading it.
fn check_sum(
    archive: &Archive,
    expected: Option<&str>,
    actual: Option<String>,
) -> Result<(), Error> {
    let (Some(expected), Some(actual)) = (expected, actual) else {
        return Ok(());
    };
    if !actual.eq_ignore_ascii_case(expected) {
        return Err(Error::Checksum {
            path: archive.path().to_owned(),
            expected: expected.to_owned(),
            actual,
        });
    }
    archive.remember(expected);
    Ok(())
}

/// Whether a check pass ended because it was told to stop.
fn is_stopped(e: &archive::Error) -> bool {
    matches!(&e.kind, archive::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::Interrupted)
}

/// An upload from a local archive whose bytes did not match: the archive is bad, and the
/// error names it.
fn local_error(archive: &Archive, e: registry::Error) -> Error {
    match e {
        registry::Error::Mismatch { mismatch, .. } => Error::Archive(archive::Error {
            path: archive.path().to_owned(),
            kind: mismatch.into(),
        }),
        registry::Error::DigestRefused { digest, .. } => Error::Archive(archive::Error {
            path: archive.path().to_owned(),
            kind: archive::ErrorKind::RefusedBlob(digest),
        }),
        registry::Error::Source(source) => match source.downcast::<archive::Error>() {
            Ok(archive_error) => Error::Archive(*archive_error),
            Err(other) => Error::Registry(registry::Error::Source(other)),
        },
        other => Error::Registry(other),
    }
}
