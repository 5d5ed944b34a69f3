//! A blob of an archive as a [`BlobSource`]: its bytes opened at any offset, as often as an
//! upload needs them.

use std::io::Read;

use super::*;
use crate::hash::{BlobSource, Copying};

/// One blob of an [`Archive`], located and sized against its descriptor.
pub struct ArchiveBlob<'a> {
    archive: &'a Archive,
    name: String,
    entry: Entry,
}

impl Archive {
    /// `blob` as a source of bytes for an upload; the archive's entry must be as long as
    /// the descriptor says.
    pub fn blob_source(&self, blob: &BlobRef) -> Result<ArchiveBlob<'_>, Error> {
        Ok(ArchiveBlob {
            archive: self,
            name: blob_name(&blob.digest),
            entry: self.sized_blob_entry(blob)?,
        })
    }
}

impl BlobSource for ArchiveBlob<'_> {
    type Reader = Copying<Box<dyn Read + Send>>;
    type Error = Error;

    fn open_at(&self, offset: u64) -> Result<Self::Reader, Error> {
        let skip = offset.min(self.entry.size);
        let rest = Entry {
            offset: self.entry.offset + skip,
            size: self.entry.size - skip,
        };
        Ok(Copying(Box::new(
            self.archive.entry_reader(&self.name, rest)?,
        )))
    }
}
