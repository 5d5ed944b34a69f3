//! Blobs checked while they stream: the one place reprise hashes a blob's bytes against the
//! descriptor that names them. [`Verifier`] keeps the running sha256 and byte count and says
//! at the end whether they match; [`VerifyingReader`] wraps a reader in one, so that a blob
//! read from an archive cannot be read to completion unless it matches. The registry's copy
//! path feeds its stream through a [`Verifier`] the same way.
//!
//! Owns the blob descriptor ([`BlobRef`]), the mismatch, and [`BlobSource`] (where a blob's
//! bytes can be read from, at any offset); knows nothing of archives or registries.

use std::io::{self, Read};

use bytes::Bytes;

use sha2::{Digest as _, Sha256};

use crate::reference::Digest;

/// A blob an image refers to (config or layer): what its bytes must hash to, how many there
/// are, and what kind of content they hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
}

/// The bytes were not what the descriptor says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    #[error("blob {digest} is {actual} bytes but its descriptor says {expected}")]
    Size {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("blob {expected} does not match its digest (its bytes hash to {actual})")]
    Digest { expected: Digest, actual: Digest },
}

/// A running check of one blob's bytes against its descriptor.
#[derive(Clone)]
pub struct Verifier {
    hasher: Sha256,
    seen: u64,
    expected: BlobRef,
}

impl Verifier {
    pub fn new(expected: BlobRef) -> Verifier {
        Verifier {
            hasher: Sha256::new(),
            seen: 0,
            expected,
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.seen += bytes.len() as u64;
    }

    /// Whether everything fed in is the expected blob: its size first, then its digest.
    pub fn finish(self) -> Result<(), Mismatch> {
        if self.seen != self.expected.size {
            return Err(Mismatch::Size {
                digest: self.expected.digest,
                expected: self.expected.size,
                actual: self.seen,
            });
        }
        let actual = Digest::from_sha256(self.hasher);
        if actual != self.expected.digest {
            return Err(Mismatch::Digest {
                expected: self.expected.digest,
                actual,
            });
        }
        Ok(())
    }
}

/// Hashes everything read through it; at the end of the stream it turns a digest or size
/// mismatch into an `InvalidData` error carrying the [`Mismatch`], so a bad blob can never be
/// read to completion.
pub struct VerifyingReader<R> {
    inner: R,
    /// Taken when the end of the stream is checked.
    verifier: Option<Verifier>,
}

impl<R> VerifyingReader<R> {
    pub fn new(inner: R, expected: BlobRef) -> Self {
        VerifyingReader {
            inner,
            verifier: Some(Verifier::new(expected)),
        }
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            if let Some(v) = self.verifier.as_mut() {
                v.update(&buf[..n]);
            }
            return Ok(n);
        }
        if buf.is_empty() {
            return Ok(0);
        }
        match self.verifier.take().map(Verifier::finish) {
            Some(Err(mismatch)) => Err(io::Error::new(io::ErrorKind::InvalidData, mismatch)),
            _ => Ok(0),
        }
    }
}

/// Bytes read as owned chunks, so that they can go into a request body as they are: a reader
/// that holds them already (an archive's check pass hands them over) gives them without a
/// copy; any other reads them into fresh memory ([`Copying`]).
pub trait ReadChunks: Send {
    /// Up to `max` of the next bytes; empty at the end.
    fn read_chunk(&mut self, max: usize) -> io::Result<Bytes>;
}

impl ReadChunks for Box<dyn ReadChunks> {
    fn read_chunk(&mut self, max: usize) -> io::Result<Bytes> {
        (**self).read_chunk(max)
    }
}

/// Any reader as [`ReadChunks`], each chunk read into fresh memory.
pub struct Copying<R>(pub R);

impl<R: Read + Send> ReadChunks for Copying<R> {
    fn read_chunk(&mut self, max: usize) -> io::Result<Bytes> {
        let mut buf = Vec::with_capacity(max);
        (&mut self.0).take(max as u64).read_to_end(&mut buf)?;
        Ok(Bytes::from(buf))
    }
}

impl<R: ReadChunks> ReadChunks for VerifyingReader<R> {
    fn read_chunk(&mut self, max: usize) -> io::Result<Bytes> {
        let chunk = self.inner.read_chunk(max)?;
        if !chunk.is_empty() {
            if let Some(v) = self.verifier.as_mut() {
                v.update(&chunk);
            }
            return Ok(chunk);
        }
        match self.verifier.take().map(Verifier::finish) {
            Some(Err(mismatch)) if max > 0 => {
                Err(io::Error::new(io::ErrorKind::InvalidData, mismatch))
            }
            _ => Ok(chunk),
        }
    }
}

/// Where one blob's bytes can be read, from any offset and as often as needed: an upload that
/// is retried, or resumed where the registry says it stopped, opens it again. The bytes are
/// raw; whoever reads them checks them ([`Verifier`], [`VerifyingReader`]).
pub trait BlobSource: Sync {
    type Reader: ReadChunks + 'static;
    type Error: std::error::Error + Send + Sync + 'static;

    /// A reader over the blob's bytes from `offset` (within the blob) to its end.
    fn open_at(&self, offset: u64) -> Result<Self::Reader, Self::Error>;

    /// Whether these bytes are already being checked on another path (an archive's check
    /// pass hashes them into the whole file's sha256), so that an upload may leave their
    /// digest to the registry, which checks it before it keeps a blob, rather than hash
    /// every byte a second time.
    fn checked_elsewhere(&self) -> bool {
        false
    }
}

/// The [`Mismatch`] a failed verifying read carries, if that is why it failed.
pub fn mismatch_of(e: &io::Error) -> Option<&Mismatch> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<Mismatch>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(data: &[u8]) -> BlobRef {
        BlobRef {
            digest: Digest::from_sha256(Sha256::new_with_prefix(data)),
            size: data.len() as u64,
            media_type: "application/octet-stream".into(),
        }
    }

    #[test]
    fn the_right_bytes_read_to_the_end() {
        let data = b"layer bytes";
        let mut out = Vec::new();
        VerifyingReader::new(&data[..], blob(data))
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn wrong_bytes_fail_at_the_end_with_the_mismatch() {
        let data = b"layer bytes";
        let mut wrong_digest = blob(b"other bytes");
        let err = VerifyingReader::new(&data[..], wrong_digest.clone())
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert!(
            matches!(mismatch_of(&err), Some(Mismatch::Digest { .. })),
            "{err}"
        );

        wrong_digest.size += 1;
        let err = VerifyingReader::new(&data[..], wrong_digest)
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert!(
            matches!(mismatch_of(&err), Some(Mismatch::Size { actual: 11, .. })),
            "{err}"
        );
    }

    #[test]
    fn a_verifier_fed_in_pieces_agrees_with_one_fed_whole() {
        let data = b"0123456789";
        let mut v = Verifier::new(blob(data));
        for chunk in data.chunks(3) {
            v.update(chunk);
        }
        assert_eq!(v.finish(), Ok(()));
        let mut short = Verifier::new(blob(data));
        short.update(&data[..9]);
        assert!(matches!(
            short.finish(),
            Err(Mismatch::Size { actual: 9, .. })
        ));
    }
}
