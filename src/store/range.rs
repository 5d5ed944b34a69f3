//! Byte ranges of a remote object as blocking readers, for the archive code that runs on
//! blocking threads: [`RangeReader`] streams one range fetched by one request, and
//! [`SeekReader`] serves a walk over tar headers, one small range per read, fetching nothing
//! it seeks over.

use std::io::{self, Read, Seek, SeekFrom};

use bytes::Bytes;
use camino::Utf8PathBuf;
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use object_store::path::Path as Key;
use object_store::{GetOptions, GetRange, ObjectStore as _};

use super::Store;

/// `len` bytes of an object from `offset`, fetched by one range GET on the first read and
/// streamed as the body arrives.
pub struct RangeReader {
    store: Store,
    url: Utf8PathBuf,
    key: Key,
    offset: u64,
    len: u64,
    body: Option<BoxStream<'static, object_store::Result<Bytes>>>,
    chunk: Bytes,
    got: u64,
}

impl RangeReader {
    pub(super) fn new(store: Store, url: Utf8PathBuf, key: Key, offset: u64, len: u64) -> Self {
        RangeReader {
            store,
            url,
            key,
            offset,
            len,
            body: None,
            chunk: Bytes::new(),
            got: 0,
        }
    }

    fn io_error(&self, e: object_store::Error) -> io::Error {
        io::Error::other(self.store.error(&self.url, e))
    }
}

impl Read for RangeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.got == self.len && self.chunk.is_empty() {
            return Ok(0);
        }
        if self.body.is_none() {
            let options = GetOptions {
                range: Some(GetRange::Bounded(self.offset..self.offset + self.len)),
                ..GetOptions::default()
            };
            let inner = self.store.inner.clone();
            let key = self.key.clone();
            let got = self
                .store
                .block_on(async move { inner.get_opts(&key, options).await });
            self.body = Some(got.map_err(|e| self.io_error(e))?.into_stream());
        }
        while self.chunk.is_empty() {
            let Some(body) = self.body.as_mut() else {
                return Ok(0);
            };
            let next = self.store.block_on(body.next());
            match next {
                Some(Ok(bytes)) => {
                    self.got += bytes.len() as u64;
                    self.store.count(bytes.len());
                    self.chunk = bytes;
                }
                Some(Err(e)) => return Err(self.io_error(e)),
                None if self.got < self.len => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "{}: the store sent {} of {} bytes",
                            self.url, self.got, self.len
                        ),
                    ));
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        let _ = self.chunk.split_to(n);
        Ok(n)
    }
}

/// How much of an object a read through a [`SeekReader`] fetches after a seek: a tar header
/// and the small document behind it, at most this much read ahead into a layer.
const FIRST_WINDOW: u64 = 8 << 10;
/// Reads that go on where the last window ended (a run of small files: oci-layout,
/// index.json, manifests, configs) fetch twice as much each time, up to this.
const MAX_WINDOW: u64 = 256 << 10;

/// A whole object as `Read + Seek` for walking a tar's headers: each read outside what it
/// already holds fetches one window by one range request (`FIRST_WINDOW` after a seek,
/// growing while the reads stay contiguous), and nothing is fetched of the bodies it seeks
/// over. What it fetched stays available
/// ([`SeekReader::into_windows`]), so the small documents inside can be read without asking
/// again.
pub struct SeekReader {
    store: Store,
    url: Utf8PathBuf,
    key: Key,
    len: u64,
    pos: u64,
    /// The byte ranges fetched so far: (offset in the object, bytes).
    windows: Vec<(u64, Bytes)>,
    /// How much the next contiguous fetch asks for.
    next_window: u64,
}

impl SeekReader {
    /// The object `url` of `store`, `len` bytes long (as a HEAD said).
    pub fn new(
        store: &Store,
        url: &camino::Utf8Path,
        len: u64,
    ) -> Result<SeekReader, super::Error> {
        Ok(SeekReader {
            store: store.clone(),
            url: url.to_owned(),
            key: store.key(url)?,
            len,
            pos: 0,
            windows: Vec::new(),
            next_window: FIRST_WINDOW,
        })
    }

    /// The object's size.
    pub fn object_size(&self) -> u64 {
        self.len
    }

    /// The byte ranges fetched: (offset in the object, bytes), in the order fetched.
    pub fn into_windows(self) -> Vec<(u64, Bytes)> {
        self.windows
    }

    /// The window holding the byte at `pos`, fetching one from there if none does.
    fn window_at(&mut self, pos: u64, want: u64) -> io::Result<&(u64, Bytes)> {
        let held = self
            .windows
            .iter()
            .position(|(start, bytes)| (*start..*start + bytes.len() as u64).contains(&pos));
        let i = match held {
            Some(i) => i,
            None => {
                let contiguous = self
                    .windows
                    .last()
                    .is_some_and(|(start, bytes)| start + bytes.len() as u64 == pos);
                let window = if contiguous {
                    (self.next_window * 2).min(MAX_WINDOW)
                } else {
                    FIRST_WINDOW
                };
                self.next_window = window;
                let n = want.max(window).min(self.len - pos);
                let mut reader = RangeReader::new(
                    self.store.clone(),
                    self.url.clone(),
                    self.key.clone(),
                    pos,
                    n,
                );
                let mut bytes = Vec::with_capacity(n as usize);
                reader.read_to_end(&mut bytes)?;
                self.windows.push((pos, Bytes::from(bytes)));
                self.windows.len() - 1
            }
        };
        Ok(&self.windows[i])
    }
}

impl Read for SeekReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (buf.len() as u64).min(self.len.saturating_sub(self.pos));
        if want == 0 {
            return Ok(0);
        }
        let pos = self.pos;
        let (start, bytes) = self.window_at(pos, want)?;
        let from = (pos - start) as usize;
        let n = (want as usize).min(bytes.len() - from);
        buf[..n].copy_from_slice(&bytes[from..from + n]);
        self.pos += n as u64;
        Ok(n)
    }
}
impl Seek for SeekReader {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let target = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
        };
        self.pos = target
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}
