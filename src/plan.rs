//! The plan: a pure function from what should be (desired) and what is (observed) to the
//! least work that makes them equal, or a refusal.
//!
//! This is the only place that decides whether a tag is up to date and whether a record is
//! current. No I/O, no async: everything it needs is in its arguments, and its tests are a
//! table of cases.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::builds::{self, Record, RecordState};
use crate::index::{self, Entry, OtherEntry, PlatformMap};
use crate::platform::{Arch, Platform};
use crate::reference::{Digest, Repository, Tag};
use crate::v2s2;

/// What to do with platforms a tag holds that this build does not provide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
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

/// A carried manifest in the list's format (see [`crate::v2s2`]), pushed by digest before
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
pub fn plan(desired: &Desired, observed: &Observed, policy: &Policy) -> Result<Plan, Refusal> {
    let own: Vec<Entry> = desired.arches.iter().map(|a| a.entry.clone()).collect();
    let (own_map, _) = index::platform_map(&own);

    // In the order the tags were given, so reports and reuse follow the command line.
    let states: Vec<(&Tag, &TagState)> = desired
        .tags
        .iter()
        .map(|t| (t, observed.tags.get(t).unwrap_or(&TagState::Absent)))
        .collect();

    // Remote platforms this build does not provide, per tag.
    let mut duplicates = Vec::new();
    let mut foreign: BTreeMap<Platform, Vec<(Tag, Entry)>> = BTreeMap::new();
    let mut foreign_other: Vec<(Tag, OtherEntry)> = Vec::new();
    for &(tag, state) in &states {
        let TagState::Present {
            content: Some(content),
            ..
        } = state
        else {
            continue;
        };
        let (_, dups) = index::platform_map(&content.platforms);
        duplicates.extend(dups.into_iter().map(|p| (tag.clone(), p)));
        for e in &content.platforms {
            let key = e.platform.key();
            if !own_map.contains_key(&key) {
                foreign
                    .entry(key)
                    .or_default()
                    .push((tag.clone(), e.clone()));
            }
        }
        foreign_other.extend(content.other.iter().map(|o| (tag.clone(), o.clone())));
    }

    let mut carried = Vec::new();
    let mut converted: Vec<Conversion> = Vec::new();
    let mut dropped = Vec::new();
    let mut entries = own.clone();
    match policy.missing_arch {
        MissingArch::Refuse if !foreign.is_empty() => {
            return Err(Refusal::MissingArches(
                foreign
                    .iter()
                    .map(|(platform, at)| Missing {
                        platform: platform.clone(),
                        arch: platform.basearch(),
                        tags: dedup_tags(at.iter().map(|(t, _)| t)),
                    })
                    .collect(),
            ));
        }
        MissingArch::Refuse => {}
        MissingArch::Keep => {
            for (platform, at) in &foreign {
                if let Some((tag, _)) = duplicates.iter().find(|(_, p)| p == platform) {
                    return Err(Refusal::DuplicateCarry {
                        tag: tag.clone(),
                        platform: platform.clone(),
                    });
                }
                let tags = dedup_tags(at.iter().map(|(t, _)| t));
                // Compared in the list's format, so a tag that already holds the converted
                // manifest agrees with one that still holds the original.
                let mut in_format = Vec::with_capacity(at.len());
                for (_, e) in at {
                    let carry =
                        in_list_format(e, desired.format, &observed.manifests).map_err(|why| {
                            Refusal::Unconvertible(Box::new(Unconvertible {
                                platform: platform.clone(),
                                digest: e.digest.clone(),
                                tags: tags.clone(),
                                format: desired.format,
                                why,
                            }))
                        })?;
                    in_format.push(carry);
                }
                let (first, conversion) = &in_format[0];
                if in_format.iter().any(|(e, _)| e.digest != first.digest) {
                    return Err(Refusal::ConflictingCarry {
                        platform: platform.clone(),
                        tags,
                    });
                }
                entries.push(first.clone());
                carried.push(RemoteEntry {
                    platform: Some(platform.clone()),
                    digest: first.digest.clone(),
                    converted_from: conversion.as_ref().map(|c| c.from.clone()),
                    tags,
                });
                converted.extend(conversion.clone());
            }
        }
        MissingArch::Drop => {
            for (platform, at) in &foreign {
                for (tag, e) in at {
                    dropped.push(RemoteEntry {
                        platform: Some(platform.clone()),
                        digest: e.digest.clone(),
                        converted_from: None,
                        tags: vec![tag.clone()],
                    });
                }
            }
        }
    }
    // Entries without a platform (attestations) go with the manifest they describe: carried
    // when it is carried as it is and they are in the list's format, dropped (and reported)
    // otherwise; they describe no converted manifest and have no Docker schema 2 form.
    let carried_digests: Vec<&Digest> = carried.iter().map(|c| &c.digest).collect();
    let mut carried_other: Vec<OtherEntry> = Vec::new();
    let mut carried_attestations: Vec<RemoteEntry> = Vec::new();
    for (tag, other) in &foreign_other {
        let goes_along = other.raw.is_some()
            && v2s2::format_of(&other.media_type) == Some(desired.format)
            && other
                .refers_to
                .as_ref()
                .is_some_and(|d| carried_digests.contains(&d));
        let report = RemoteEntry {
            platform: None,
            digest: other.digest.clone(),
            converted_from: None,
            tags: vec![tag.clone()],
        };
        if goes_along {
            if !carried_other.iter().any(|o| o.digest == other.digest) {
                carried_other.push(other.clone());
            }
            match carried_attestations
                .iter_mut()
                .find(|c| c.digest == other.digest)
            {
                Some(c) if !c.tags.contains(tag) => c.tags.push(tag.clone()),
                Some(_) => {}
                None => carried_attestations.push(report),
            }
        } else {
            dropped.push(report);
        }
    }
    carried.extend(carried_attestations);

    let built = index::build_with(desired.format, entries.clone(), carried_other);
    let (target_map, _) = index::platform_map(&built.entries);

    let up_to_date = |state: &TagState| -> bool {
        match state {
            TagState::Absent => false,
            TagState::Present { digest, content } => {
                digest == &built.digest
                    || content.as_ref().is_some_and(|c| equivalent(c, &target_map))
            }
        }
    };
    let single_image = |state: &TagState| match state {
        TagState::Present {
            content: Some(c), ..
        } if c.kind == ContentKind::Image => Some(SingleImage {
            platform: c.platforms.first().map(|e| e.platform.clone()),
        }),
        _ => None,
    };

    // Reuse an equivalent index a tag already holds, so all tags end at one digest and an
    // index another tool wrote is not replaced by a byte-different twin.
    let reuse = (!policy.force)
        .then(|| {
            states.iter().find_map(|&(tag, state)| match state {
                TagState::Present {
                    digest,
                    content: Some(c),
                } if digest != &built.digest && up_to_date(state) => Some(TargetIndex {
                    digest: digest.clone(),
                    bytes: c.bytes.clone(),
                    media_type: c.media_type.clone(),
                    source: IndexSource::Reused { tag: tag.clone() },
                }),
                _ => None,
            })
        })
        .flatten();
    let built_holder = states
        .iter()
        .any(|(_, s)| matches!(s, TagState::Present { digest, .. } if digest == &built.digest));
    let index = match reuse {
        // A tag already holding reprise's own bytes wins over a foreign twin.
        Some(reused) if !built_holder => reused,
        _ => TargetIndex {
            digest: built.digest.clone(),
            bytes: built.bytes.clone(),
            media_type: built.media_type.clone(),
            source: IndexSource::Built,
        },
    };

    let tags: Vec<TagPlan> = states
        .iter()
        .map(|&(tag, state)| {
            let before = match state {
                TagState::Present { digest, .. } => Some(digest.clone()),
                TagState::Absent => None,
            };
            let single_image = single_image(state);
            let (action, reason) = if policy.force {
                (TagAction::Push, "--force")
            } else if before.as_ref() == Some(&index.digest) {
                (TagAction::Unchanged, "up to date")
            } else if before.is_none() {
                (TagAction::Push, "tag absent")
            } else if single_image.is_some() {
                (
                    TagAction::Push,
                    "holds a single image manifest, not an index",
                )
            } else if up_to_date(state) {
                (TagAction::Push, "equivalent index; aligning to one digest")
            } else {
                (TagAction::Push, "index differs")
            };
            TagPlan {
                tag: tag.clone(),
                before,
                single_image,
                action,
                reason,
            }
        })
        .collect();

    let push_images =
        index.source == IndexSource::Built && tags.iter().any(|t| t.action == TagAction::Push);

    let records = desired
        .arches
        .iter()
        .filter(|_| desired.records)
        .map(|a| {
            let record = Record {
                image: desired.repo.clone(),
                digest: a.entry.digest.clone(),
                manifest_list_digest: index.digest.clone(),
                tags: desired.tags.clone(),
            };
            let state = builds::record_state(a.existing_record.as_ref(), &record);
            RecordPlan {
                arch: a.arch.clone(),
                write: state != RecordState::Current,
                record,
                state,
            }
        })
        .collect();

    // Nothing is carried or dropped from a tag that is not written.
    let pushed: Vec<&Tag> = tags
        .iter()
        .filter(|t| t.action == TagAction::Push)
        .map(|t| &t.tag)
        .collect();
    for list in [&mut carried, &mut dropped] {
        list.retain_mut(|e| {
            e.tags.retain(|t| pushed.contains(&t));
            !e.tags.is_empty()
        });
    }

    Ok(Plan {
        index,
        entries: built.entries,
        push_images,
        tags,
        records,
        carried,
        converted,
        dropped,
        duplicates,
    })
}

/// A remote entry as the new list carries it: as it is when it is in the list's format,
/// otherwise its manifest (read into `manifests`) converted, or why that cannot be done.
fn in_list_format(
    entry: &Entry,
    format: index::Format,
    manifests: &BTreeMap<Digest, Vec<u8>>,
) -> Result<(Entry, Option<Conversion>), String> {
    if v2s2::format_of(&entry.media_type) == Some(format) {
        return Ok((entry.clone(), None));
    }
    let bytes = manifests
        .get(&entry.digest)
        .ok_or("the registry does not serve its manifest by digest")?;
    let m = v2s2::convert_manifest(bytes, format).map_err(|e| e.to_string())?;
    let carried = Entry {
        platform: entry.platform.clone(),
        digest: m.digest.clone(),
        size: m.bytes.len() as u64,
        media_type: m.media_type.clone(),
    };
    // The remote index may have named the manifest with the wrong media type; the bytes
    // were already in the list's format and nothing needs pushing.
    let conversion = (m.digest != entry.digest).then(|| Conversion {
        platform: entry.platform.clone(),
        from: entry.digest.clone(),
        digest: m.digest,
        media_type: m.media_type,
        bytes: m.bytes,
    });
    Ok((carried, conversion))
}

/// Whether a remote index maps exactly the target platforms to the target digests and lists
/// no platform twice. Entries without a platform do not take part. A single image manifest is
/// never equivalent, whatever its platform: it is not a list.
fn equivalent(content: &RemoteContent, target: &PlatformMap) -> bool {
    let (map, dups) = index::platform_map(&content.platforms);
    content.kind == ContentKind::Index && dups.is_empty() && &map == target
}

fn dedup_tags<'a>(tags: impl Iterator<Item = &'a Tag>) -> Vec<Tag> {
    let mut out: Vec<Tag> = Vec::new();
    for t in tags {
        if !out.contains(t) {
            out.push(t.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests;
