//! What reading a checked archive in a build store found, kept on this machine by the
//! archive's sha256 (the checksum meta.json records), so that a later run over the same bytes
//! plans without reading one byte of the archive: its table of entries and its image.
//!
//! An entry is written only after the whole archive was read and hashed to the sha256 it is
//! filed under (see [`Archive::remember`]), so a hit is as good as reading the headers and JSON
//! documents of that archive again; a run whose meta.json records another sha256 misses and
//! reads them. The manifest's digest is recomputed from the kept bytes on every load, and an
//! entry that does not parse or does not match is ignored. Losing the cache costs a few
//! kilobytes of range reads per arch, never correctness.
//!
//! Where: `$XDG_CACHE_HOME/reprise/archives`, else `$HOME/.cache/reprise/archives`.

use std::collections::BTreeMap;

use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use super::{Archive, BlobRef, Entry, Image, Layout};
use crate::platform::Platform;
use crate::reference::Digest;
use crate::store::Store;

#[derive(Serialize, Deserialize)]
struct Kept {
    size: u64,
    entries: BTreeMap<String, (u64, u64)>,
    manifest: String,
    manifest_digest: String,
    media_type: String,
    os: String,
    architecture: String,
    variant: Option<String>,
    config: KeptBlob,
    layers: Vec<KeptBlob>,
}

#[derive(Serialize, Deserialize)]
struct KeptBlob {
    digest: String,
    size: u64,
    media_type: String,
}

impl KeptBlob {
    fn of(b: &BlobRef) -> KeptBlob {
        KeptBlob {
            digest: b.digest.to_string(),
            size: b.size,
            media_type: b.media_type.clone(),
        }
    }

    fn blob(&self) -> Option<BlobRef> {
        Some(BlobRef {
            digest: Digest::parse(&self.digest).ok()?,
            size: self.size,
            media_type: self.media_type.clone(),
        })
    }
}

fn cache_dir() -> Option<Utf8PathBuf> {
    let base = std::env::var("XDG_CACHE_HOME")
        .ok()
        .filter(|d| !d.is_empty())
        .map(Utf8PathBuf::from)
        .or_else(|| {
            std::env::var("HOME")
                .ok()
                .map(|h| Utf8PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("reprise").join("archives"))
}

fn file_for(sha256: &str) -> Option<Utf8PathBuf> {
    let ok = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| cache_dir().map(|d| d.join(format!("{}.json", sha256.to_ascii_lowercase()))))
        .flatten()
}

impl Archive {
    /// The archive `url` of `store` and its image as a run that checked an archive with this
    /// `sha256` found them, without reading the archive; `None` when this machine has not.
    pub fn recalled(store: &Store, url: &Utf8Path, sha256: &str) -> Option<(Archive, Image)> {
        let raw = std::fs::read(file_for(sha256)?).ok()?;
        let kept: Kept = serde_json::from_slice(&raw).ok()?;
        let manifest = kept.manifest.into_bytes();
        let manifest_digest = Digest::of(&manifest);
        if manifest_digest.as_str() != kept.manifest_digest {
            return None;
        }
        let image = Image {
            manifest_digest,
            manifest,
            media_type: kept.media_type,
            platform: Platform::new(&kept.os, &kept.architecture, kept.variant.as_deref()),
            config: kept.config.blob()?,
            layers: kept
                .layers
                .iter()
                .map(KeptBlob::blob)
                .collect::<Option<Vec<_>>>()?,
        };
        let entries = kept
            .entries
            .into_iter()
            .map(|(name, (offset, size))| (name, Entry { offset, size }))
            .collect();
        let archive = Archive {
            path: url.to_owned(),
            layout: Layout::Remote,
            entries,
            bytes_read: Default::default(),
            store: Some(store.clone()),
            read_image: Default::default(),
            size: kept.size,
            fetched: Default::default(),
        };
        // The image must be one this archive's table can serve.
        for blob in image.blobs() {
            archive.sized_blob_entry(blob).ok()?;
        }
        Some((archive, image))
    }

    /// Files what reading this remote archive found under `sha256`, which the caller has just
    /// seen the whole archive hash to. Best effort: a cache that cannot be written is only
    /// logged.
    pub fn remember(&self, sha256: &str) {
        if self.layout != Layout::Remote {
            return;
        }
        let (Some(image), Some(path)) = (self.read_image.get(), file_for(sha256)) else {
            return;
        };
        let Ok(manifest) = String::from_utf8(image.manifest.clone()) else {
            return;
        };
        let kept = Kept {
            size: self.size,
            entries: self
                .entries
                .iter()
                .map(|(n, e)| (n.clone(), (e.offset, e.size)))
                .collect(),
            manifest,
            manifest_digest: image.manifest_digest.to_string(),
            media_type: image.media_type.clone(),
            os: image.platform.os.clone(),
            architecture: image.platform.architecture.clone(),
            variant: image.platform.variant.clone(),
            config: KeptBlob::of(&image.config),
            layers: image.layers.iter().map(KeptBlob::of).collect(),
        };
        let written = serde_json::to_vec(&kept)
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                crate::fs::write_atomic(&path, &bytes)
            });
        if let Err(e) = written {
            tracing::warn!(cache = %path, error = %e, "could not keep what the archive holds");
        }
    }
}
