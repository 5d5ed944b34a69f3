//! The plan: a pure function from what should be (desired) and what is (observed) to the
//! least work that makes them equal, or a refusal.
//!
//! This is the only place that decides whether a tag is up to date and whether a record is
//! current. No I/O, no async: everything it needs is in its arguments, and its tests are a
//! table of cases.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::builds::{Record, RecordState};
use crate::index::{self, Entry, OtherEntry};
use crate::platform::{Arch, Platform};
use crate::reference::{Digest, Repository, Tag};

mod steps;

/// What to do with platforms a tag holds that this build does not provide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum MissingArch {
    /// Publish nothing and say which arches are missing.
    #[default]
    Refuse,
    /// Carry the remote entries for the missing arches into the new index.
    Keep,
    /// Publish only this build's arches.
    Drop,
}

#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub force: bool,
    pub missing_arch: MissingArch,
}

/// One arch this run publishes.
#[derive(Debug, Clone)]
pub struct DesiredArch {
    pub arch: Arch,
    /// The arch's manifest as it will appear in the index.
    pub entry: Entry,
    /// What its meta.json holds under the record key now, if anything.
    pub existing_record: Option<Value>,
}

#[derive(Debug, Clone)]
pub struct Desired {
    pub repo: Repository,
    pub tags: Vec<Tag>,
    pub arches: Vec<DesiredArch>,
    /// OCI index, or Docker manifest list for `--v2s2`.
    pub format: index::Format,
    /// Whether each arch's meta.json records the push (not for images given with `--image`).
    pub records: bool,
    /// The annotations the index carries, expanded; `None` when none were asked for. When
    /// asked for, they are part of equality: an index with the same platforms and other
    /// annotations is out of date. When not, a remote index's annotations are not compared.
    pub annotations: Option<BTreeMap<String, String>>,
}

/// What a tag holds, as read from the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagState {
    Absent,
    /// The tag resolves to `digest`. `content` is its index view; it may be left out when
    /// `digest` is the digest of the index reprise builds (the bytes are then known).
    Present {
        digest: Digest,
        content: Option<RemoteContent>,
    },
}

/// A remote manifest read as an index, with its exact bytes so it can be reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteContent {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub kind: ContentKind,
    /// For an index, its entries with a real platform; for a single image manifest, that
    /// image (when its config names a real platform).
    pub platforms: Vec<Entry>,
    pub other: Vec<OtherEntry>,
    /// An index's own annotations (none for an image manifest).
    pub annotations: BTreeMap<String, String>,
}

/// What kind of manifest a tag holds. Only an index can be a tag's index: a single image
/// manifest is never up to date and never reused, so `manifest-list-digest` always names a
/// list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentKind {
    /// An OCI image index or a Docker manifest list.
    Index,
    /// A single image manifest (OCI or Docker schema 2).
    Image,
}

/// A tag that held a single image manifest, with the platform its config names (if any), so
/// reports say what the index replaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SingleImage {
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub tags: BTreeMap<Tag, TagState>,
    /// Bodies of remote manifests that a carry would have to put in the list's format (read
    /// under `--missing-arch keep` only), by digest.
    pub manifests: BTreeMap<Digest, Vec<u8>>,
}

/// Why nothing may be published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "refusing to publish: this build lacks {}, which the tags hold; rerun with --missing-arch keep to carry {} over, or --missing-arch drop to remove {}",
        describe_missing(.0), them(.0), them(.0)
    )]
    MissingArches(Vec<Missing>),
    #[error(
        "refusing to publish: tags disagree on {platform}: {} hold different manifests, so there is no single entry to keep",
        .tags.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")
    )]
    ConflictingCarry { platform: Platform, tags: Vec<Tag> },
    #[error(
        "refusing to publish: tag {tag} lists {platform} more than once; fix the tag by hand or rerun with --missing-arch drop"
    )]
    DuplicateCarry { tag: Tag, platform: Platform },
    #[error("refusing to publish: {0}; rerun with --missing-arch drop to remove it")]
    Unconvertible(Box<Unconvertible>),
}

/// A remote entry `--missing-arch keep` would carry that cannot be put in the list's format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{platform} ({digest}) at {} cannot be carried into {}: {why}",
    .tags.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", "), .format.list_name()
)]
pub struct Unconvertible {
    pub platform: Platform,
    pub digest: Digest,
    pub tags: Vec<Tag>,
    pub format: index::Format,
    pub why: String,
}

/// A platform some tags hold that this build lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Missing {
    pub platform: Platform,
    pub arch: Option<Arch>,
    pub tags: Vec<Tag>,
}

fn describe_missing(missing: &[Missing]) -> String {
    missing
        .iter()
        .map(|m| {
            let name = m
                .arch
                .as_ref()
                .map_or_else(|| m.platform.to_string(), |a| a.to_string());
            let tags: Vec<_> = m.tags.iter().map(Tag::as_str).collect();
            format!("{name} (at {})", tags.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn them(missing: &[Missing]) -> &'static str {
    if missing.len() == 1 { "it" } else { "them" }
}

/// Which index the tags should end at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum IndexSource {
    /// The index reprise builds.
    Built,
    /// An equivalent index a tag already holds, reused byte for byte so every tag ends at
    /// one digest.
    Reused { tag: Tag },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetIndex {
    pub digest: Digest,
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub source: IndexSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TagAction {
    /// Already holds the target index.
    Unchanged,
    /// Write the target index.
    Push,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TagPlan {
    pub tag: Tag,
    pub before: Option<Digest>,
    /// Set when the tag held a single image manifest rather than an index.
    pub single_image: Option<SingleImage>,
    pub action: TagAction,
    pub reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordPlan {
    pub arch: Arch,
    pub record: Record,
    pub state: RecordState,
    /// Whether the meta.json is written.
    pub write: bool,
}

/// A remote entry this run carries into the new index, or drops from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemoteEntry {
    pub platform: Option<Platform>,
    pub digest: Digest,
    /// For a carried entry put in the list's format: the digest the remote index listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub converted_from: Option<Digest>,
    pub tags: Vec<Tag>,
}

/// A carried manifest in the list's format (see `crate::v2s2`), pushed by digest before
/// the index. It names the blobs of the manifest it was converted from, which the repository
/// already holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversion {
    pub platform: Platform,
    pub from: Digest,
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub index: TargetIndex,
    /// Entries of the target index; for a built index, this build's arches plus carried ones.
    pub entries: Vec<Entry>,
    /// Push each arch's blobs and manifest before the index (only when the built index goes
    /// out: a reused index's manifests are in the registry already).
    pub push_images: bool,
    pub tags: Vec<TagPlan>,
    pub records: Vec<RecordPlan>,
    pub carried: Vec<RemoteEntry>,
    /// Carried manifests converted to the list's format, pushed along with the images.
    pub converted: Vec<Conversion>,
    pub dropped: Vec<RemoteEntry>,
    /// Platforms a remote index lists more than once (reported, never merged).
    pub duplicates: Vec<(Tag, Platform)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Noop,
    Recorded,
    Pushed,
    Planned,
    Refused,
}

impl Plan {
    pub fn pushes(&self) -> bool {
        self.tags.iter().any(|t| t.action == TagAction::Push)
    }

    pub fn records_to_write(&self) -> impl Iterator<Item = &RecordPlan> {
        self.records.iter().filter(|r| r.write)
    }

    /// What applying this plan amounts to.
    pub fn outcome(&self) -> Outcome {
        if self.pushes() {
            Outcome::Pushed
        } else if self.records_to_write().next().is_some() {
            Outcome::Recorded
        } else {
            Outcome::Noop
        }
    }
}

/// Works out the least work that makes every tag hold an index mapping each desired platform
/// to its manifest (per the missing-arch policy), and every meta.json record it.
///
/// Read top to bottom: what the tags hold that this build lacks, what the missing-arch policy
/// makes of it, which attestations go along, which index the tags end at, then what each tag
/// and each meta.json needs. Each step is a pure function in `steps`.
pub fn plan(desired: &Desired, observed: &Observed, policy: &Policy) -> Result<Plan, Refusal> {
    let own: Vec<Entry> = desired.arches.iter().map(|a| a.entry.clone()).collect();
    let states = steps::tag_states(&desired.tags, observed);
    let foreign = steps::foreign_platforms(&own, &states);
    let remote = steps::arch_policy(
        policy.missing_arch,
        &foreign,
        desired.format,
        &observed.manifests,
    )?;
    let attestations = steps::carried_attestations(&foreign.other, &remote.carried, desired.format);

    let entries = own.into_iter().chain(remote.entries).collect();
    let none = BTreeMap::new();
    let built = steps::Built::new(
        index::build_with(
            desired.format,
            entries,
            attestations.entries,
            desired.annotations.as_ref().unwrap_or(&none),
        ),
        desired.annotations.clone(),
    );
    let index = steps::choose_index(&states, &built, policy.force);
    let tags = steps::tag_plans(&states, &index, &built, policy.force);
    let push_images =
        index.source == IndexSource::Built && tags.iter().any(|t| t.action == TagAction::Push);
    let records = steps::record_plans(desired, &index.digest);

    let mut carried = remote.carried;
    carried.extend(attestations.carried);
    let mut dropped = remote.dropped;
    dropped.extend(attestations.dropped);
    steps::keep_pushed_tags(&tags, &mut carried);
    steps::keep_pushed_tags(&tags, &mut dropped);

    Ok(Plan {
        index,
        entries: built.index.entries,
        push_images,
        tags,
        records,
        carried,
        converted: remote.converted,
        dropped,
        duplicates: foreign.duplicates,
    })
}

#[cfg(test)]
mod tests;
