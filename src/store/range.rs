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

/// A whole object as `Read + Seek`, where each read is one range request of at most the
/// caller's buffer: what walking a tar's headers needs (512 bytes each), and nothing of the
/// bodies it seeks over.
pub struct SeekReader {
    store: Store,
    url: Utf8PathBuf,
    key: Key,
    len: u64,
    pos: u64,
}

impl SeekReader {
    pub fn new(store: &Store, url: &camino::Utf8Path) -> Result<SeekReader, super::Error> {
        let len = store.len(url)?;
        Ok(SeekReader {
            store: store.clone(),
            url: url.to_owned(),
            key: store.key(url)?,
            len,
            pos: 0,
        })
    }
}

impl SeekReader {
    /// The object's size.
    pub fn object_size(&self) -> u64 {
        self.len
    }
}

impl Read for SeekReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.len.saturating_sub(self.pos));
        if n == 0 {
            return Ok(0);
        }
        let mut reader = RangeReader::new(
            self.store.clone(),
            self.url.clone(),
            self.key.clone(),
            self.pos,
            n,
        );
        reader.read_exact(&mut buf[..n as usize])?;
        self.pos += n;
        Ok(n as usize)
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
