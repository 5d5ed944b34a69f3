//! `reprise inspect`: what a tag or digest holds, read only, as a platform table or JSON, and
//! optionally whether a meta.json record agrees with it.
//!
//! Owns presenting a remote manifest; reading it is `registry`'s job and parsing it `index`'s.

use std::fmt::Write as _;

use camino::Utf8PathBuf;
use serde::Serialize;
use serde_json::Value;

use crate::blocking::{self, TaskFailed};
use crate::builds::{self, Meta};
use crate::index::{self, Parsed};
use crate::platform::Platform;
use crate::reference::{Digest, Reference, Repository};
use crate::registry::{self, Client, ConnectOptions};
use crate::report::SkipReason;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Registry(#[from] registry::Error),
    #[error(transparent)]
    Builds(#[from] builds::Error),
    #[error("{0}: not found (the registry answered 404)")]
    NotFound(String),
    #[error(transparent)]
    Task(#[from] TaskFailed),
    #[error("{target}: {source}")]
    Index {
        target: String,
        source: index::Error,
    },
}

/// What `inspect` found, for the table and for `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    pub reference: String,
    pub digest: Digest,
    pub media_type: String,
    pub entries: Vec<Row>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<MetaCheck>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `None` for entries that are not an image for a platform (attestations).
    pub platform: Option<Platform>,
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
}

/// `--meta FILE --metajsonname KEY [--artifact NAME]`: which record to compare.
#[derive(Debug, Clone)]
pub struct MetaQuery {
    pub path: Utf8PathBuf,
    pub key: String,
    /// When given, a meta.json without `images.<artifact>` expects no record (skipped).
    pub artifact: Option<String>,
    /// `--builds-url`: `path` is under this build store rather than a local file.
    pub store: Option<crate::store::BuildsUrl>,
}

/// How a meta.json record compares with the inspected reference.
#[derive(Debug, Clone, Serialize)]
pub struct MetaCheck {
    pub path: Utf8PathBuf,
    pub key: String,
    pub record_digest: Option<Digest>,
    pub manifest_list_digest: Option<Digest>,
    /// True when the record matches, or when no record is expected (`skipped`).
    pub matches: bool,
    /// Set when the arch has no such artifact, so a push skips it and records nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<SkipReason>,
    pub detail: String,
}

pub async fn inspect(
    reference: &Reference,
    connect: &ConnectOptions,
    meta: Option<MetaQuery>,
) -> Result<Inspection, Error> {
    let repo = reference.repository();
    let client = Client::connect(repo, connect).await?;
    let target = reference.to_string();
    let fetched = client
        .fetch_manifest(reference)
        .await?
        .ok_or_else(|| Error::NotFound(target.clone()))?;
    let parsed = index::parse_remote(&fetched.bytes, None).map_err(|source| Error::Index {
        target: target.clone(),
        source,
    })?;
    let (media_type, entries) = match parsed {
        Parsed::Index(remote) => {
            let mut rows: Vec<Row> = remote
                .platforms
                .into_iter()
                .map(|e| Row {
                    platform: Some(e.platform),
                    digest: e.digest,
                    size: e.size,
                    media_type: e.media_type,
                })
                .collect();
            rows.extend(remote.other.into_iter().map(|o| Row {
                platform: None,
                size: o.size,
                digest: o.digest,
                media_type: o.media_type,
            }));
            (remote.media_type, rows)
        }
        Parsed::Image { config } => {
            let media_type = index::media_type_of(&fetched.bytes);
            let platform = client.fetch_platform(repo, &config).await?;
            let row = Row {
                platform,
                digest: fetched.digest.clone(),
                size: fetched.bytes.len() as u64,
                media_type: media_type.clone(),
            };
            (media_type, vec![row])
        }
    };
    let meta = match meta {
        Some(query) => {
            let (path, store) = (query.path.clone(), query.store.clone());
            let loaded = blocking::run("reading meta.json", move || match &store {
                Some(url) => crate::desired::meta_at(url, &path),
                None => Meta::load(path),
            })
            .await??;
            Some(check_meta(&loaded, &query, repo, &fetched.digest, &entries))
        }
        None => None,
    };
    Ok(Inspection {
        reference: target,
        digest: fetched.digest,
        media_type,
        entries,
        meta,
    })
}

/// The record for `repo` under `key` (the primary one or its `additional-images` entry)
/// matches when its index digest is the inspected digest (or, for a single image, its own
/// digest is) and its arch digest is one the index lists.
fn check_meta(
    meta: &Meta,
    query: &MetaQuery,
    repo: &Repository,
    digest: &Digest,
    rows: &[Row],
) -> MetaCheck {
    let key = query.key.as_str();
    let verdict = |matches: bool, skipped: Option<SkipReason>, detail: String| MetaCheck {
        path: meta.path.clone(),
        key: key.to_owned(),
        record_digest: None,
        manifest_list_digest: None,
        matches,
        skipped,
        detail,
    };
    // The rule a push follows: an arch without the artifact is skipped, and records nothing.
    if let Some(artifact) = &query.artifact {
        match meta.artifact(artifact) {
            Ok(Some(_)) => {}
            Ok(None) => {
                return verdict(
                    true,
                    Some(SkipReason::NoArtifact),
                    format!("no images.{artifact}, so a push skips this arch and records nothing"),
                );
            }
            Err(e) => return verdict(false, None, e.to_string()),
        }
    }
    // Where a push reads it from: meta.json, or meta.<KEY>.json under delayed merge.
    let existing = match meta.existing_record(key) {
        Ok(existing) => existing,
        Err(e) => return verdict(false, None, e.to_string()),
    };
    let record = existing
        .as_ref()
        .and_then(|rec| builds::record_entry(rec, repo));
    let digest_of = |v: Option<&Value>, k: &str| {
        v.and_then(|r| r.get(k))
            .and_then(Value::as_str)
            .and_then(|s| Digest::parse(s).ok())
    };
    let record_digest = digest_of(record, "digest");
    let manifest_list_digest = digest_of(record, "manifest-list-digest");
    let listed = record_digest
        .as_ref()
        .is_some_and(|d| rows.iter().any(|r| &r.digest == d));
    let (matches, detail) = match (&record_digest, &manifest_list_digest) {
        (None, _) => (false, format!("no {key} record for {repo}")),
        (Some(_), Some(list)) if list != digest => (
            false,
            format!("the record's manifest-list-digest is {list}, the reference holds {digest}"),
        ),
        (Some(d), _) if !listed => (false, format!("the record's digest {d} is not listed")),
        (Some(_), _) => (true, "the record matches".to_owned()),
    };
    MetaCheck {
        record_digest,
        manifest_list_digest,
        ..verdict(matches, None, detail)
    }
}

impl Inspection {
    /// The platform table, for stdout.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.reference);
        let _ = writeln!(out, "  digest      {}", self.digest);
        let _ = writeln!(out, "  media type  {}", self.media_type);
        let _ = writeln!(
            out,
            "\n{:<20} {:<71} {:>10}  MEDIA TYPE",
            "PLATFORM", "DIGEST", "SIZE"
        );
        for r in &self.entries {
            let platform = r
                .platform
                .as_ref()
                .map_or_else(|| "-".to_owned(), Platform::to_string);
            let _ = writeln!(
                out,
                "{platform:<20} {:<71} {:>10}  {}",
                r.digest.as_str(),
                r.size,
                r.media_type
            );
        }
        if let Some(m) = &self.meta {
            let verdict = match (m.skipped, m.matches) {
                (Some(reason), _) => format!("skipped: {}", reason.as_str()),
                (None, true) => "matches".to_owned(),
                (None, false) => "DOES NOT MATCH".to_owned(),
            };
            let _ = writeln!(out, "\n{} ({}): {verdict}: {}", m.path, m.key, m.detail);
        }
        out
    }
}
