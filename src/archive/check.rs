//! The one check pass over an archive: the whole file hashed front to back (for the sha256
//! coreos-assembler records) and every blob checked against its descriptor on the way.
//!
//! The pass can also hand blobs over as it reads them ([`Tap`]): an upload then streams the
//! very bytes the pass read, so a push reads each archive byte once, and the check costs no
//! time of its own. A blob handed over is checked by its reader instead (an upload verifies
//! every byte it sends, and the registry the digest), so the pass hashes it only into the
//! whole file's sha256.

use std::fs::File;
use std::io::{self, Read};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use bytes::Bytes;
use sha2::{Digest as _, Sha256};

use super::*;
use crate::hash::ReadChunks;

/// How much of the file the pass reads at a time.
const PASS_CHUNK: usize = 512 << 10;
/// Chunks a tap holds while its reader catches up; with [`PASS_CHUNK`] this bounds the memory
/// a handed-over blob takes.
const TAP_DEPTH: usize = 4;

/// The pass's end of a blob handed over as it is read.
pub struct Tap {
    digest: Digest,
    tx: SyncSender<io::Result<Bytes>>,
}

/// One range of the file the pass treats specially, in file order: a blob it checks, or one
/// it hands over.
struct Range<'b> {
    start: u64,
    end: u64,
    /// The descriptor a checked blob must match; `None` for a handed-over one.
    check: Option<&'b BlobRef>,
    /// Where a handed-over blob goes, while its reader takes it.
    tap: Option<SyncSender<io::Result<Bytes>>>,
}

impl Archive {
    /// Reads the archive once, front to back, hashing the whole file (for cosa's recorded
    /// sha256) and checking every blob in `blobs` against its digest and size on the way.
    /// Returns the file's sha256 (hex); `None` for an OCI layout directory, which has no
    /// single file to hash.
    pub fn verify(&self, blobs: &[&BlobRef]) -> Result<Option<String>, Error> {
        self.check_pass(blobs, Vec::new(), &AtomicBool::new(false))
    }

    /// [`Archive::verify`], handing each tapped blob to its reader as it goes by (a tapped
    /// blob need not be in `blobs`). Stops early, with an error, once `stop` is set: the run
    /// no longer wants the answer.
    pub fn check_pass(
        &self,
        blobs: &[&BlobRef],
        taps: Vec<Tap>,
        stop: &AtomicBool,
    ) -> Result<Option<String>, Error> {
        if self.layout == Layout::Dir {
            // No single file: each blob is read on its own; taps never exist here.
            for blob in blobs {
                io::copy(&mut self.blob_reader(blob)?, &mut io::sink())
                    .map_err(|e| self.error(mismatch_kind(e)))?;
            }
            return Ok(None);
        }
        let ranges = self.ranges(blobs, taps)?;
        let mut file = self.whole_reader()?;
        let pool = BufPool::default();
        let mut pass = Pass {
            archive: self,
            ranges,
            next: 0,
            current: None,
            whole: Sha256::new(),
            pos: 0,
        };
        loop {
            if stop.load(Ordering::Relaxed) {
                return Err(self.error(ErrorKind::Io(io::Error::new(
                    io::ErrorKind::Interrupted,
                    "the check was stopped",
                ))));
            }
            // Read straight from the file into spare capacity: no zeroing of a buffer that
            // is about to be overwritten (a tenth of a push's time, measured).
            let mut buf = pool.take();
            let n = (&mut file)
                .take(PASS_CHUNK as u64)
                .read_to_end(&mut buf)
                .map_err(|e| self.error(e.into()))?;
            if n == 0 {
                break;
            }
            self.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
            pass.feed(pool.bytes(buf))?;
        }
        pass.finish()
    }

    /// The blob ranges the pass checks or hands over, in file order; a blob listed twice is
    /// checked once, and a tapped one is handed over rather than checked.
    fn ranges<'b>(&self, blobs: &[&'b BlobRef], taps: Vec<Tap>) -> Result<Vec<Range<'b>>, Error> {
        let mut ranges: Vec<Range<'b>> = Vec::with_capacity(blobs.len() + taps.len());
        let tapped: Vec<&Digest> = taps.iter().map(|t| &t.digest).collect();
        for blob in blobs {
            let entry = self.sized_blob_entry(blob)?;
            let seen = ranges
                .iter()
                .any(|r| r.check.is_some_and(|b| b.digest == blob.digest));
            if !seen && !tapped.contains(&&blob.digest) {
                ranges.push(Range {
                    start: entry.offset,
                    end: entry.offset + entry.size,
                    check: Some(blob),
                    tap: None,
                });
            }
        }
        for tap in taps {
            let entry = self.blob_entry(&tap.digest)?;
            ranges.push(Range {
                start: entry.offset,
                end: entry.offset + entry.size,
                check: None,
                tap: Some(tap.tx),
            });
        }
        ranges.sort_by_key(|r| r.start);
        Ok(ranges)
    }
}

impl Archive {
    /// A reader over the whole archive file, front to back, uncounted: the file itself, or
    /// one streamed GET of a store's object.
    fn whole_reader(&self) -> Result<Box<dyn Read + Send>, Error> {
        match (self.layout, &self.store) {
            (Layout::Remote, Some(store)) => {
                let whole = store
                    .range_reader(&self.path, 0, self.size)
                    .map_err(|e| self.error(ErrorKind::Store(e)))?;
                Ok(Box::new(whole))
            }
            _ => Ok(Box::new(
                File::open(&self.path).map_err(|e| self.error(e.into()))?,
            )),
        }
    }
}

/// The pass's read buffers, each back for another read once every part of it was used (sent
/// in a request body, or hashed): a fresh [`PASS_CHUNK`] allocation comes from the kernel,
/// which faults in and zeroes every page of it, a twentieth of a push's CPU (measured). It
/// holds no more buffers than were in use at once.
#[derive(Default, Clone)]
struct BufPool(Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

impl BufPool {
    /// An empty buffer with room for [`PASS_CHUNK`] bytes.
    fn take(&self) -> Vec<u8> {
        let reused = self.0.lock().ok().and_then(|mut free| free.pop());
        let mut buf = reused.unwrap_or_default();
        buf.clear();
        buf.reserve_exact(PASS_CHUNK);
        buf
    }

    /// `buf` as [`Bytes`] that give it back to the pool when the last of them is dropped.
    fn bytes(&self, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled {
            buf,
            pool: self.clone(),
        })
    }
}

/// A pass buffer lent out as [`Bytes`].
struct Pooled {
    buf: Vec<u8>,
    pool: BufPool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Ok(mut free) = self.pool.0.lock() {
            free.push(std::mem::take(&mut self.buf));
        }
    }
}

/// Where the pass stands: the whole file's hash, and the range being read.
struct Pass<'a, 'b> {
    archive: &'a Archive,
    ranges: Vec<Range<'b>>,
    next: usize,
    /// The range being read, and its own hash when it is checked rather than handed over.
    current: Option<(usize, Option<Sha256>)>,
    whole: Sha256,
    pos: u64,
}

impl Pass<'_, '_> {
    /// Takes in the next `chunk` of the file: every range it overlaps gets its part.
    fn feed(&mut self, chunk: Bytes) -> Result<(), Error> {
        self.whole.update(&chunk);
        let end = self.pos + chunk.len() as u64;
        let mut at = self.pos;
        while at < end {
            if self.current.is_none() {
                match self.ranges.get(self.next) {
                    Some(r) if r.start < end => {
                        at = at.max(r.start);
                        let own = r.check.is_some().then(Sha256::new);
                        self.current = Some((self.next, own));
                        self.next += 1;
                    }
                    _ => break,
                }
            }
            let Some((i, own)) = self.current.as_mut() else {
                break;
            };
            let range = &mut self.ranges[*i];
            let upto = range.end.min(end);
            let part = chunk.slice((at - self.pos) as usize..(upto - self.pos) as usize);
            match own {
                Some(hasher) => hasher.update(&part),
                None => {
                    // A reader that went away (an upload that reads the file itself now, or
                    // a blob mounted instead) is no longer fed.
                    if let Some(tx) = &range.tap
                        && tx.send(Ok(part)).is_err()
                    {
                        range.tap = None;
                    }
                }
            }
            at = upto;
            if upto == range.end {
                self.end_range()?;
            }
        }
        self.pos = end;
        Ok(())
    }

    /// The current range is read through: a checked blob must match its digest; a tapped
    /// one's reader sees the end of its bytes.
    fn end_range(&mut self) -> Result<(), Error> {
        let Some((i, own)) = self.current.take() else {
            return Ok(());
        };
        let range = &mut self.ranges[i];
        range.tap = None;
        if let (Some(hasher), Some(blob)) = (own, range.check) {
            let actual = Digest::from_sha256(hasher);
            if actual != blob.digest {
                return Err(self.archive.error(ErrorKind::DigestMismatch {
                    expected: blob.digest.clone(),
                    actual,
                }));
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<Option<String>, Error> {
        if self.current.is_some() || self.next < self.ranges.len() {
            let eof = io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive ends inside a blob",
            );
            for r in &self.ranges {
                if let Some(tx) = &r.tap {
                    let _ = tx.send(Err(io::Error::new(eof.kind(), eof.to_string())));
                }
            }
            return Err(self.archive.error(ErrorKind::Io(eof)));
        }
        Ok(Some(hex::encode(self.whole.finalize())))
    }
}

/// An upload's end of a handed-over blob, and where it stands in it.
struct Feed {
    rx: Receiver<io::Result<Bytes>>,
    pos: u64,
    pending: Bytes,
}

/// A blob of an archive whose first reading comes from the check pass ([`Tap`]); any other
/// reading (a retry, a resumed upload at an offset the feed is not at) opens the file.
pub struct FedBlob<'a> {
    file: ArchiveBlob<'a>,
    feed: Arc<std::sync::Mutex<Option<Feed>>>,
    /// Whether a pass over the whole file checks these bytes (a tar, not a directory).
    checked: bool,
}

impl Archive {
    /// `blob` as a source whose bytes the check pass hands over, and the tap to give the
    /// pass. An OCI layout directory has no pass to hand anything over: its source reads
    /// the file, and no tap is made. `sum_checked`: the pass's whole-file sha256 is held to
    /// a recorded one, so the bytes handed over need no hash of their own.
    pub fn fed_source(
        &self,
        blob: &BlobRef,
        sum_checked: bool,
    ) -> Result<(FedBlob<'_>, Option<Tap>), Error> {
        let file = self.blob_source(blob)?;
        if self.layout == Layout::Dir {
            let feed = Arc::new(std::sync::Mutex::new(None));
            let checked = false;
            return Ok((
                FedBlob {
                    file,
                    feed,
                    checked,
                },
                None,
            ));
        }
        let (tx, rx) = sync_channel(TAP_DEPTH);
        let feed = Feed {
            rx,
            pos: 0,
            pending: Bytes::new(),
        };
        let tap = Tap {
            digest: blob.digest.clone(),
            tx,
        };
        let feed = Arc::new(std::sync::Mutex::new(Some(feed)));
        let checked = sum_checked;
        Ok((
            FedBlob {
                file,
                feed,
                checked,
            },
            Some(tap),
        ))
    }
}

impl crate::hash::BlobSource for FedBlob<'_> {
    type Reader = Box<dyn ReadChunks>;
    type Error = Error;

    fn open_at(&self, offset: u64) -> Result<Self::Reader, Error> {
        let feed = self.feed.lock().ok().and_then(|mut f| f.take());
        match feed {
            Some(feed) if feed.pos == offset => Ok(Box::new(FeedReader {
                feed: Some(feed),
                home: self.feed.clone(),
            })),
            // Dropping the feed tells the pass to stop handing this blob over.
            _ => Ok(Box::new(self.file.open_at(offset)?)),
        }
    }

    /// The pass hashes these bytes into the whole file's sha256 (held to the one meta.json
    /// records before any manifest goes out), and the registry checks the blob's digest
    /// before it keeps it: hashing them once more would cost a core for nothing. Without a
    /// recorded sum, or in an OCI layout directory, they are hashed as they are read.
    fn checked_elsewhere(&self) -> bool {
        self.checked
    }
}

/// Reads a handed-over blob from the pass; when dropped, gives the feed back, so the next
/// reading from where this one stopped (the next chunk of a chunked upload) goes on with it.
struct FeedReader {
    feed: Option<Feed>,
    home: Arc<std::sync::Mutex<Option<Feed>>>,
}

impl ReadChunks for FeedReader {
    /// The pass's own bytes, not copied.
    fn read_chunk(&mut self, max: usize) -> io::Result<Bytes> {
        let Some(feed) = self.feed.as_mut() else {
            return Ok(Bytes::new());
        };
        if feed.pending.is_empty() {
            match feed.rx.recv() {
                Ok(Ok(bytes)) => feed.pending = bytes,
                Ok(Err(e)) => return Err(e),
                // The pass handed over the whole blob.
                Err(_) => return Ok(Bytes::new()),
            }
        }
        let chunk = feed.pending.split_to(max.min(feed.pending.len()));
        feed.pos += chunk.len() as u64;
        Ok(chunk)
    }
}

impl Drop for FeedReader {
    fn drop(&mut self) {
        if let (Some(feed), Ok(mut home)) = (self.feed.take(), self.home.lock()) {
            *home = Some(feed);
        }
    }
}
