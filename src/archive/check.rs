//! The one check pass over an archive: the whole file hashed front to back (for the sha256
//! coreos-assembler records) and every blob checked against its descriptor on the way.

use std::fs::File;
use std::io::{self, Read};

use sha2::{Digest as _, Sha256};

use super::*;

impl Archive {
    /// Reads the archive once, front to back, hashing the whole file (for cosa's recorded
    /// sha256) and checking every blob in `blobs` against its digest and size on the way, so
    /// a push reads its data once to check it and once to send it. Returns the file's sha256
    /// (hex); `None` for an OCI layout directory, which has no single file to hash.
    pub fn verify(&self, blobs: &[&BlobRef]) -> Result<Option<String>, Error> {
        if self.layout == Layout::Dir {
            for blob in blobs {
                io::copy(&mut self.blob_reader(blob)?, &mut io::sink())
                    .map_err(|e| self.error(mismatch_kind(e)))?;
            }
            return Ok(None);
        }
        // Blob ranges in file order; a blob listed twice is checked once.
        let mut ranges: Vec<(u64, u64, &BlobRef)> = Vec::with_capacity(blobs.len());
        for blob in blobs {
            let entry = self.sized_blob_entry(blob)?;
            if !ranges.iter().any(|(_, _, b)| b.digest == blob.digest) {
                ranges.push((entry.offset, entry.offset + entry.size, blob));
            }
        }
        ranges.sort_by_key(|(start, _, _)| *start);
        let mut file = CountingReader {
            inner: File::open(&self.path).map_err(|e| self.error(e.into()))?,
            count: self.bytes_read.clone(),
        };
        let mut whole = Sha256::new();
        let mut current: Option<(usize, Sha256)> = None;
        let mut next = 0usize;
        let mut buf = vec![0u8; 1 << 20];
        let mut pos = 0u64;
        loop {
            let n = file.read(&mut buf).map_err(|e| self.error(e.into()))?;
            if n == 0 {
                break;
            }
            let chunk = &buf[..n];
            whole.update(chunk);
            let end = pos + n as u64;
            // Feed every blob range this chunk overlaps; ranges never overlap each other.
            let mut at = pos;
            while at < end {
                if current.is_none() {
                    match ranges.get(next) {
                        Some(&(start, _, _)) if start < end => {
                            at = at.max(start);
                            current = Some((next, Sha256::new()));
                            next += 1;
                        }
                        _ => break,
                    }
                }
                let Some((i, hasher)) = current.as_mut() else {
                    break;
                };
                let (_, stop, blob) = ranges[*i];
                let upto = stop.min(end);
                hasher.update(&chunk[(at - pos) as usize..(upto - pos) as usize]);
                at = upto;
                if upto == stop {
                    let Some((_, hasher)) = current.take() else {
                        break;
                    };
                    let actual = Digest::from_sha256(hasher);
                    if actual != blob.digest {
                        return Err(self.error(ErrorKind::DigestMismatch {
                            expected: blob.digest.clone(),
                            actual,
                        }));
                    }
                }
            }
            pos = end;
        }
        if current.is_some() || next < ranges.len() {
            return Err(self.error(ErrorKind::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive ends inside a blob",
            ))));
        }
        Ok(Some(hex::encode(whole.finalize())))
    }
}
