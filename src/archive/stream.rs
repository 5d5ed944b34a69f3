//! One front-to-back read of an archive in a build store that both checks it and feeds the
//! uploads of the blobs a push sends, so no byte is fetched twice: the whole file is hashed
//! (for the sha256 meta.json records) as it streams, and while the stream is inside a blob
//! to send, its bytes also go to that blob's upload through a [`ChunkReader`]. Blobs are sent
//! one after another in file order (the hash needs the bytes in order); archives go side by
//! side. An upload that has to start over (a retry) reads its blob again by range: only a
//! fault costs bytes twice.

use std::io::{self, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use bytes::Bytes;
use sha2::{Digest as _, Sha256};

use super::{Archive, BlobRef, Error, ErrorKind};

/// Chunks in flight between the stream and one upload: bounds the memory a slow upload holds.
const CHANNEL_CHUNKS: usize = 4;
const CHUNK: usize = 1 << 20;

/// A blob's bytes as the archive stream passes them on; ends when the blob does, or early
/// with an error if the stream failed.
pub struct ChunkReader {
    rx: Receiver<Bytes>,
    chunk: Bytes,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.recv() {
                Ok(chunk) => self.chunk = chunk,
                // The sender is dropped at the blob's end; a short blob is caught by the
                // verifying reader around this one.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        let _ = self.chunk.split_to(n);
        Ok(n)
    }
}

impl Archive {
    /// Reads the whole archive once. For each blob of `send` (in file order), `begin(blob,
    /// reader)` starts its upload from `reader`, the stream then feeds it the blob's bytes, and
    /// `finish` waits for that upload. Returns the file's sha256 (hex).
    pub fn stream_check<W, E: From<Error>>(
        &self,
        send: &[BlobRef],
        mut begin: impl FnMut(&BlobRef, ChunkReader) -> W,
        mut finish: impl FnMut(W) -> Result<(), E>,
    ) -> Result<String, E> {
        let mut regions = Vec::with_capacity(send.len());
        for blob in send {
            let entry = self.sized_blob_entry(blob)?;
            if !regions
                .iter()
                .any(|(_, b): &(u64, &BlobRef)| b.digest == blob.digest)
            {
                regions.push((entry.offset, blob));
            }
        }
        regions.sort_by_key(|(offset, _)| *offset);
        let mut file = self.whole_reader()?;
        let mut whole = Sha256::new();
        let mut pos = 0u64;
        for (offset, blob) in regions {
            self.hash_through(&mut file, &mut whole, offset - pos, None)?;
            let (tx, rx) = sync_channel(CHANNEL_CHUNKS);
            let upload = begin(
                blob,
                ChunkReader {
                    rx,
                    chunk: Bytes::new(),
                },
            );
            let streamed = self.hash_through(&mut file, &mut whole, blob.size, Some(tx));
            let uploaded = finish(upload);
            streamed?;
            uploaded?;
            pos = offset + blob.size;
        }
        // The rest of the file, to its end.
        self.hash_through(&mut file, &mut whole, u64::MAX, None)?;
        Ok(hex::encode(whole.finalize()))
    }

    /// Reads `len` bytes of `file` (to its end when `u64::MAX`) into `whole`, passing them to
    /// `to` as well while it listens.
    fn hash_through(
        &self,
        file: &mut dyn Read,
        whole: &mut Sha256,
        len: u64,
        mut to: Option<SyncSender<Bytes>>,
    ) -> Result<(), Error> {
        let mut left = len;
        let mut buf = vec![0u8; CHUNK];
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = file
                .read(&mut buf[..want])
                .map_err(|e| self.error(e.into()))?;
            if n == 0 {
                if len == u64::MAX {
                    return Ok(());
                }
                return Err(self.error(ErrorKind::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the archive ends inside a blob",
                ))));
            }
            whole.update(&buf[..n]);
            if let Some(tx) = &to
                && tx.send(Bytes::copy_from_slice(&buf[..n])).is_err()
            {
                // The upload stopped listening (it failed, or retries from its own range
                // read); the stream still hashes every byte.
                to = None;
            }
            left -= n as u64;
        }
        Ok(())
    }
}
