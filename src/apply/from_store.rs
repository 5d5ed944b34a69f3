//! Pushing from archives in a build store: each archive is read once, front to back, and that
//! read both checks it (its sha256 against meta.json, each sent blob against its digest) and
//! feeds the uploads of the blobs the registry lacks ([`crate::archive::ChunkReader`]), so a
//! push fetches each byte of an archive once. Archives go `jobs` at a time; within one, its
//! blobs go in file order.

use std::io::Read;
use std::sync::Mutex;

use futures_util::{StreamExt as _, TryStreamExt as _, stream};

use super::{Apply, ArchImage, Error, Origin, Stats};
use crate::archive::{BlobRef, ChunkReader};
use crate::blocking::{self, TaskFailed};
use crate::hash::VerifyingReader;

impl Apply<'_> {
    /// Sends `missing` (blobs of images read from a build store), mounting what another
    /// repository of the registry holds and streaming the rest; every such image's archive is
    /// read and checked, even when it sends nothing.
    pub(super) async fn stream_from_stores(
        &self,
        needed: &[&ArchImage],
        missing: &[(&ArchImage, &BlobRef)],
        stats: &mut Stats,
    ) -> Result<(), Error> {
        let mut sends: Vec<(&ArchImage, Vec<BlobRef>)> = needed
            .iter()
            .filter(|img| super::from_store(img))
            .map(|img| (*img, Vec::new()))
            .collect();
        for (img, blob) in missing {
            if self.try_mount(img, blob).await? {
                stats.mounted_blobs += 1;
            } else if let Some((_, blobs)) = sends.iter_mut().find(|(i, _)| std::ptr::eq(*i, *img))
            {
                blobs.push((*blob).clone());
            }
        }
        let sent: Vec<(u64, u64)> = stream::iter(
            sends
                .into_iter()
                .map(|(img, blobs)| self.stream_archive(img, blobs)),
        )
        .buffer_unordered(self.client.jobs())
        .try_collect()
        .await?;
        for (blobs, bytes) in sent {
            stats.uploaded_blobs += blobs;
            stats.uploaded_bytes += bytes;
        }
        Ok(())
    }

    /// One archive's read: its blobs in `blobs` uploaded from the stream, its whole sha256
    /// checked at the end. Returns the blobs and bytes uploaded.
    async fn stream_archive(
        &self,
        img: &ArchImage,
        blobs: Vec<BlobRef>,
    ) -> Result<(u64, u64), Error> {
        let Origin::Local { archive, sha256 } = &img.origin else {
            return Ok((0, 0));
        };
        let sent = (blobs.len() as u64, blobs.iter().map(|b| b.size).sum());
        let (reader, expected, arch) = (archive.clone(), sha256.clone(), img.arch.clone());
        let (client, repo) = (self.client.clone(), self.repo.clone());
        let handle = tokio::runtime::Handle::current();
        let path = archive.path().to_owned();
        blocking::run(format!("streaming {path}"), move || {
            let begin = |blob: &BlobRef, chunks: ChunkReader| {
                tracing::info!(%arch, digest = %blob.digest, size = blob.size, "uploading blob");
                let (client, repo, blob, archive) =
                    (client.clone(), repo.clone(), blob.clone(), reader.clone());
                // The stream's bytes for the first try; a retry reads the blob by range.
                let first = Mutex::new(Some(chunks));
                handle.spawn(async move {
                    let open = || match first.lock().ok().and_then(|mut f| f.take()) {
                        Some(c) => Ok(VerifyingReader::new(
                            Box::new(c) as Box<dyn Read + Send>,
                            blob.clone(),
                        )),
                        None => archive.blob_reader(&blob),
                    };
                    client.push_blob(&repo, &blob, open).await
                })
            };
            let finish =
                |upload: tokio::task::JoinHandle<Result<(), crate::registry::Error>>| match handle
                    .block_on(upload)
                {
                    Ok(done) => done.map_err(Error::from),
                    Err(source) => Err(Error::Task(TaskFailed {
                        what: "uploading a blob".into(),
                        source,
                    })),
                };
            let actual = reader.stream_check(&blobs, begin, finish)?;
            match &expected {
                Some(expected) if !actual.eq_ignore_ascii_case(expected) => Err(Error::Checksum {
                    path: reader.path().to_owned(),
                    expected: expected.clone(),
                    actual,
                }),
                Some(expected) => {
                    reader.remember(expected);
                    Ok(sent)
                }
                None => Ok(sent),
            }
        })
        .await?
    }
}
