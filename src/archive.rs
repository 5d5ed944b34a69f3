//! OCI archives: a tar holding an OCI image layout (`oci-layout`, `index.json`,
//! `blobs/sha256/…`), as coreos-assembler writes them for each arch.
//!
//! Owns locating entries without extracting anything (tar headers are read and bodies
//! skipped with seeks), reading `index.json`, the image manifest and its config, streaming a
//! blob by offset, and checking digests while streaming so no caller can forget to. It never
//! reads a layer unless asked to stream it, and it does not talk to a registry.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use camino::{Utf8Path, Utf8PathBuf};
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};

use crate::platform::Platform;
use crate::reference::Digest;
use crate::store::{self, Store};

/// JSON documents inside an archive (index.json, manifests, configs) larger than this are
/// refused rather than read into memory.
pub const MAX_JSON_SIZE: u64 = 4 << 20;

pub use crate::media::{DOCKER_MANIFEST, OCI_MANIFEST};

/// An error about one archive; it always names the file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {kind}")]
pub struct Error {
    pub path: Utf8PathBuf,
    pub kind: ErrorKind,
}

#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("not a tar archive: {0}")]
    NotTar(io::Error),
    #[error("tar entry {entry:?} {why}")]
    UnsafeEntry { entry: String, why: &'static str },
    #[error("the archive has no {0}; it is not an OCI archive")]
    Missing(String),
    #[error("index.json lists {0} manifests; expected exactly one")]
    ManifestCount(usize),
    #[error("{what} is not valid: {detail}")]
    Invalid { what: String, detail: String },
    #[error("{what} is {size} bytes, over the {MAX_JSON_SIZE}-byte limit for JSON documents")]
    TooLarge { what: String, size: u64 },
    #[error("{0}")]
    Store(store::Error),
    #[error("blob {expected} does not match its digest (its bytes hash to {actual})")]
    DigestMismatch { expected: Digest, actual: Digest },
    /// Bytes sent unhashed (the whole file's sha256 checks them) that the registry refused.
    #[error("blob {0} does not match its digest (the registry refused its bytes)")]
    RefusedBlob(Digest),
    #[error("blob {digest} is {actual} bytes but its descriptor says {expected}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
}

/// Where a regular file's bytes sit inside the tar.
#[derive(Debug, Clone, Copy)]
struct Entry {
    offset: u64,
    size: u64,
}

pub use crate::hash::BlobRef;
use crate::hash::VerifyingReader;

/// The image inside an archive, as far as pushing it needs: the exact manifest bytes and
/// what they refer to.
#[derive(Debug, Clone)]
pub struct Image {
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
    pub media_type: String,
    pub platform: Platform,
    pub config: BlobRef,
    pub layers: Vec<BlobRef>,
}

impl Image {
    /// Config first, then layers: the order blobs must exist in before the manifest is pushed.
    pub fn blobs(&self) -> impl Iterator<Item = &BlobRef> {
        std::iter::once(&self.config).chain(&self.layers)
    }
}

/// The annotation an OCI layout's index.json uses to name a manifest (`oci:DIR:NAME`).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An opened OCI archive (or OCI layout directory): its table of entries, built from the tar
/// headers (or the directory listing) alone.
#[derive(Debug, Clone)]
pub struct Archive {
    path: Utf8PathBuf,
    layout: Layout,
    entries: BTreeMap<String, Entry>,
    bytes_read: Arc<AtomicU64>,
    /// The build store an archive of [`Layout::Remote`] is read from; `path` is its URL.
    store: Option<Store>,
    /// The image [`Archive::image`] read, for [`Archive::remember`].
    read_image: Arc<OnceLock<Image>>,
    /// Bytes of the file (a tar) or of every file (a layout directory).
    size: u64,
    /// Of an archive in a build store, the byte ranges reading its headers fetched (offset,
    /// bytes): the small documents among them are read from here, not fetched again.
    fetched: Arc<Vec<(u64, bytes::Bytes)>>,
}

/// Where the entries' bytes live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// One tar file; entries are byte ranges of it.
    Tar,
    /// An OCI layout directory; entries are files under it.
    Dir,
    /// One tar object in a build store; entries are byte ranges of it, read by range.
    Remote,
}

impl Archive {
    /// Reads the tar headers of `path`, seeking over every body.
    pub fn open(path: &Utf8Path) -> Result<Archive, Error> {
        let bytes_read = Arc::new(AtomicU64::new(0));
        let err = |kind| Error {
            path: path.to_owned(),
            kind,
        };
        let file = File::open(path).map_err(|e| err(e.into()))?;
        let size = file.metadata().map_err(|e| err(e.into()))?.len();
        let reader = CountingReader {
            inner: BufReader::with_capacity(4096, file),
            count: bytes_read.clone(),
        };
        let entries = read_entries(path, reader)?;
        Ok(Archive {
            path: path.to_owned(),
            layout: Layout::Tar,
            entries,
            bytes_read,
            store: None,
            read_image: Default::default(),
            size,
            fetched: Default::default(),
        })
    }

    /// Reads the tar headers of the object `url` (`len` bytes) of `store`, headers side by
    /// side in one range request, fetching nothing of the bodies it seeks over.
    pub fn open_remote(store: &Store, url: &Utf8Path, len: u64) -> Result<Archive, Error> {
        let bytes_read = Arc::new(AtomicU64::new(0));
        let reader = store::SeekReader::new(store, url, len).map_err(|e| Error {
            path: url.to_owned(),
            kind: ErrorKind::Store(e),
        })?;
        let size = reader.object_size();
        let mut reader = CountingReader {
            inner: reader,
            count: bytes_read.clone(),
        };
        let entries = read_entries(url, &mut reader)?;
        Ok(Archive {
            path: url.to_owned(),
            layout: Layout::Remote,
            entries,
            bytes_read,
            store: Some(store.clone()),
            read_image: Default::default(),
            size,
            fetched: Arc::new(reader.inner.into_windows()),
        })
    }

    /// Lists an OCI layout directory (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`).
    /// Links are refused as they are in a tar: the layout must hold its own files.
    pub fn open_dir(path: &Utf8Path) -> Result<Archive, Error> {
        let err = |kind| Error {
            path: path.to_owned(),
            kind,
        };
        let mut entries = BTreeMap::new();
        let mut add = |name: String| -> Result<(), Error> {
            let meta = std::fs::symlink_metadata(path.join(&name)).map_err(|e| err(e.into()))?;
            if meta.file_type().is_symlink() {
                return Err(err(ErrorKind::UnsafeEntry {
                    entry: name,
                    why: "is a link; an OCI layout holds regular files only",
                }));
            }
            if meta.is_file() {
                entries.insert(
                    name,
                    Entry {
                        offset: 0,
                        size: meta.len(),
                    },
                );
            }
            Ok(())
        };
        for name in ["oci-layout", "index.json"] {
            if path.join(name).exists() {
                add(name.to_owned())?;
            }
        }
        let blobs = path.join("blobs");
        if let Ok(algs) = blobs.read_dir_utf8() {
            for alg in algs {
                let alg = alg.map_err(|e| err(e.into()))?;
                let Ok(files) = alg.path().read_dir_utf8() else {
                    continue;
                };
                for file in files {
                    let file = file.map_err(|e| err(e.into()))?;
                    add(format!("blobs/{}/{}", alg.file_name(), file.file_name()))?;
                }
            }
        }
        if !entries.contains_key("index.json") {
            return Err(err(ErrorKind::Missing("index.json".to_owned())));
        }
        Ok(Archive {
            path: path.to_owned(),
            layout: Layout::Dir,
            size: entries.values().map(|e| e.size).sum(),
            entries,
            bytes_read: Arc::new(AtomicU64::new(0)),
            store: None,
            read_image: Default::default(),
            fetched: Default::default(),
        })
    }

    pub fn path(&self) -> &Utf8Path {
        &self.path
    }

    /// Bytes of the archive: what one check pass reads.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Where `blob` starts in the archive (0 for a layout directory's files), to read
    /// blobs in file order.
    pub fn offset_of(&self, blob: &BlobRef) -> u64 {
        self.blob_entry(&blob.digest).map_or(0, |e| e.offset)
    }

    /// How many bytes of the archive file have been read through this handle (headers,
    /// JSON documents and streamed blobs), so tests can prove a no-op reads no archive whole.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }

    /// The counter behind [`Archive::bytes_read`], for watching an upload's progress.
    pub fn read_counter(&self) -> Arc<AtomicU64> {
        self.bytes_read.clone()
    }

    fn error(&self, kind: ErrorKind) -> Error {
        Error {
            path: self.path.clone(),
            kind,
        }
    }

    fn entry(&self, name: &str) -> Result<Entry, Error> {
        self.entries
            .get(name)
            .copied()
            .ok_or_else(|| self.error(ErrorKind::Missing(name.to_owned())))
    }

    fn blob_entry(&self, digest: &Digest) -> Result<Entry, Error> {
        self.entry(&blob_name(digest))
    }

    /// The entry of `blob`, which must be as long as its descriptor says.
    fn sized_blob_entry(&self, blob: &BlobRef) -> Result<Entry, Error> {
        let entry = self.blob_entry(&blob.digest)?;
        if entry.size != blob.size {
            return Err(self.error(ErrorKind::SizeMismatch {
                digest: blob.digest.clone(),
                expected: blob.size,
                actual: entry.size,
            }));
        }
        Ok(entry)
    }

    /// Opens a reader over exactly one entry's bytes.
    fn entry_reader(&self, name: &str, entry: Entry) -> Result<Box<dyn Read + Send>, Error> {
        if let (Layout::Remote, Some(store)) = (self.layout, &self.store) {
            let end = entry.offset + entry.size;
            let held = self
                .fetched
                .iter()
                .find(|(start, bytes)| *start <= entry.offset && end <= start + bytes.len() as u64);
            if let Some((start, bytes)) = held {
                let from = (entry.offset - start) as usize;
                let part = bytes.slice(from..from + entry.size as usize);
                return Ok(Box::new(io::Cursor::new(part)));
            }
            let reader = store
                .range_reader(&self.path, entry.offset, entry.size)
                .map_err(|e| self.error(ErrorKind::Store(e)))?;
            return Ok(Box::new(CountingReader {
                inner: reader,
                count: self.bytes_read.clone(),
            }));
        }
        let file_path = match self.layout {
            Layout::Dir => self.path.join(name),
            Layout::Tar | Layout::Remote => self.path.clone(),
        };
        let mut file = File::open(&file_path).map_err(|e| self.error(e.into()))?;
        file.seek(SeekFrom::Start(entry.offset))
            .map_err(|e| self.error(e.into()))?;
        Ok(Box::new(
            CountingReader {
                inner: file,
                count: self.bytes_read.clone(),
            }
            .take(entry.size),
        ))
    }

    fn read_json_entry(&self, name: &str, what: &str) -> Result<Vec<u8>, Error> {
        let entry = self.entry(name)?;
        if entry.size > MAX_JSON_SIZE {
            return Err(self.error(ErrorKind::TooLarge {
                what: what.to_owned(),
                size: entry.size,
            }));
        }
        let mut buf = Vec::with_capacity(entry.size as usize);
        self.entry_reader(name, entry)?
            .read_to_end(&mut buf)
            .map_err(|e| self.error(e.into()))?;
        Ok(buf)
    }

    /// Reads a small blob whole (manifest, config), checking its digest and size.
    fn read_json_blob(&self, blob: &BlobRef, what: &str) -> Result<Vec<u8>, Error> {
        self.sized_blob_entry(blob)?;
        let bytes = self.read_json_entry(&blob_name(&blob.digest), what)?;
        let actual = Digest::of(&bytes);
        if actual != blob.digest {
            return Err(self.error(ErrorKind::DigestMismatch {
                expected: blob.digest.clone(),
                actual,
            }));
        }
        Ok(bytes)
    }

    /// Reads index.json, the one image manifest it names, and that manifest's config.
    pub fn image(&self) -> Result<Image, Error> {
        let image = self.image_named(None)?;
        let _ = self.read_image.set(image.clone());
        Ok(image)
    }

    /// Like [`Archive::image`], but with `Some(name)` picks the manifest index.json names
    /// `name` (annotation `org.opencontainers.image.ref.name`) among several.
    pub fn image_named(&self, name: Option<&str>) -> Result<Image, Error> {
        let invalid = |what: &str, detail: String| {
            self.error(ErrorKind::Invalid {
                what: what.to_owned(),
                detail,
            })
        };
        let index_bytes = self.read_json_entry("index.json", "index.json")?;
        let index: ImageIndex = serde_json::from_slice(&index_bytes)
            .map_err(|e| invalid("index.json", e.to_string()))?;
        let desc = match name {
            None => match index.manifests().as_slice() {
                [desc] => desc,
                other => return Err(self.error(ErrorKind::ManifestCount(other.len()))),
            },
            Some(name) => index
                .manifests()
                .iter()
                .find(|d| {
                    d.annotations()
                        .as_ref()
                        .and_then(|a| a.get(REF_NAME))
                        .is_some_and(|n| n == name)
                })
                .ok_or_else(|| {
                    self.error(ErrorKind::Missing(format!(
                        "manifest named {name:?} in index.json"
                    )))
                })?,
        };
        let media_type = desc.media_type().to_string();
        if media_type != OCI_MANIFEST && media_type != DOCKER_MANIFEST {
            return Err(invalid(
                "index.json",
                format!("its manifest has media type {media_type}, not an image manifest"),
            ));
        }
        let manifest_ref = blob_ref(desc).map_err(|d| invalid("index.json", d))?;
        let manifest = self.read_json_blob(&manifest_ref, "the image manifest")?;
        let parsed: ImageManifest = serde_json::from_slice(&manifest)
            .map_err(|e| invalid("the image manifest", e.to_string()))?;
        let config = blob_ref(parsed.config()).map_err(|d| invalid("the image manifest", d))?;
        let layers = parsed
            .layers()
            .iter()
            .map(blob_ref)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|d| invalid("the image manifest", d))?;
        for layer in &layers {
            self.sized_blob_entry(layer)?;
        }
        let config_bytes = self.read_json_blob(&config, "the image config")?;
        let cfg: ImageConfiguration = serde_json::from_slice(&config_bytes)
            .map_err(|e| invalid("the image config", e.to_string()))?;
        let platform = Platform::new(
            &cfg.os().to_string(),
            &cfg.architecture().to_string(),
            cfg.variant().as_deref(),
        );
        Ok(Image {
            manifest_digest: manifest_ref.digest,
            manifest,
            media_type,
            platform,
            config,
            layers,
        })
    }

    /// A reader over one blob that fails at its end if the bytes do not hash to `blob.digest`
    /// or are not `blob.size` long.
    pub fn blob_reader(
        &self,
        blob: &BlobRef,
    ) -> Result<VerifyingReader<Box<dyn Read + Send>>, Error> {
        let entry = self.sized_blob_entry(blob)?;
        let name = blob_name(&blob.digest);
        Ok(VerifyingReader::new(
            self.entry_reader(&name, entry)?,
            blob.clone(),
        ))
    }
}

/// The table of a tar's regular files, from its headers alone.
fn read_entries<R: Read + Seek>(
    path: &Utf8Path,
    reader: R,
) -> Result<BTreeMap<String, Entry>, Error> {
    let err = |kind| Error {
        path: path.to_owned(),
        kind,
    };
    let mut tar = tar::Archive::new(reader);
    let mut entries = BTreeMap::new();
    let iter = tar
        .entries_with_seek()
        .map_err(|e| err(ErrorKind::NotTar(e)))?;
    for entry in iter {
        let entry = entry.map_err(|e| err(ErrorKind::NotTar(e)))?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let name = normalise_entry_name(&raw).map_err(err)?;
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        if kind.is_symlink() || kind.is_hard_link() {
            return Err(err(ErrorKind::UnsafeEntry {
                entry: raw,
                why: "is a link; OCI archives hold regular files only",
            }));
        }
        if !kind.is_file() {
            return Err(err(ErrorKind::UnsafeEntry {
                entry: raw,
                why: "is not a regular file",
            }));
        }
        entries.insert(
            name,
            Entry {
                offset: entry.raw_file_position(),
                size: entry.size(),
            },
        );
    }
    if entries.is_empty() {
        return Err(err(ErrorKind::NotTar(io::Error::new(
            io::ErrorKind::InvalidData,
            "no entries",
        ))));
    }
    Ok(entries)
}

/// Where an OCI layout keeps a blob.
fn blob_name(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

fn blob_ref(desc: &oci_spec::image::Descriptor) -> Result<BlobRef, String> {
    let digest = Digest::parse(desc.digest().as_ref()).map_err(|e| e.to_string())?;
    Ok(BlobRef {
        digest,
        size: desc.size(),
        media_type: desc.media_type().to_string(),
    })
}

/// Strips `./` prefixes and refuses names that could point outside the layout.
fn normalise_entry_name(raw: &str) -> Result<String, ErrorKind> {
    let unsafe_entry = |why| ErrorKind::UnsafeEntry {
        entry: raw.to_owned(),
        why,
    };
    if raw.starts_with('/') {
        return Err(unsafe_entry("is an absolute path"));
    }
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(unsafe_entry("contains '..'")),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

pub(crate) struct CountingReader<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl<R: Seek> Seek for CountingReader<R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
}

/// The archive error a failed verifying read stands for: the blob mismatch it carries, or
/// the I/O error itself.
pub fn mismatch_kind(e: io::Error) -> ErrorKind {
    match crate::hash::mismatch_of(&e) {
        Some(m) => m.clone().into(),
        None => e.into(),
    }
}

impl From<crate::hash::Mismatch> for ErrorKind {
    fn from(m: crate::hash::Mismatch) -> ErrorKind {
        use crate::hash::Mismatch;
        match m {
            Mismatch::Size {
                digest,
                expected,
                actual,
            } => ErrorKind::SizeMismatch {
                digest,
                expected,
                actual,
            },
            Mismatch::Digest { expected, actual } => ErrorKind::DigestMismatch { expected, actual },
        }
    }
}

mod cache;
mod check;
mod source;

pub use check::{FedBlob, Tap};
pub use source::ArchiveBlob;

#[cfg(test)]
mod tests;
