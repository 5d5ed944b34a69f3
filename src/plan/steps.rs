//! The named steps [`super::plan`] is composed of, each a pure function of what it is given:
//! foreign platforms, the missing-arch policy, carried attestations, the choice of index, tag
//! plans and record plans.
//!
//! The types the plan hands out (and its refusals) live in `plan/mod.rs`; this file owns only
//! the intermediate values passed between steps. No I/O here either.

use std::collections::BTreeMap;

use crate::builds::{self, Record, RecordState};
use crate::index::{self, BuiltIndex, Entry, OtherEntry, PlatformMap};
use crate::platform::Platform;
use crate::reference::{Digest, Tag};
use crate::v2s2;

use super::{
    ContentKind, Conversion, Desired, IndexSource, Missing, MissingArch, Observed, RecordPlan,
    Refusal, RemoteContent, RemoteEntry, SingleImage, TagAction, TagPlan, TagState, TargetIndex,
    Unconvertible,
};

/// Each tag with what it holds (absent when not observed), in the order the tags were given,
/// so reports and reuse follow the command line.
pub(super) fn tag_states<'a>(
    tags: &'a [Tag],
    observed: &'a Observed,
) -> Vec<(&'a Tag, &'a TagState)> {
    tags.iter()
        .map(|t| (t, observed.tags.get(t).unwrap_or(&TagState::Absent)))
        .collect()
}

/// What the tags hold that this build does not provide.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Foreign {
    /// Each remote platform this build lacks, with every (tag, entry) that lists it.
    pub platforms: BTreeMap<Platform, Vec<(Tag, Entry)>>,
    /// Entries without a platform (attestations), per tag.
    pub other: Vec<(Tag, OtherEntry)>,
    /// Platforms a remote index lists more than once (reported, never merged).
    pub duplicates: Vec<(Tag, Platform)>,
}

/// Step 1: the remote platforms (and platform-less entries) the tags hold beyond `own`.
pub(super) fn foreign_platforms(own: &[Entry], states: &[(&Tag, &TagState)]) -> Foreign {
    let (own_map, _) = index::platform_map(own);
    let mut foreign = Foreign::default();
    for &(tag, state) in states {
        let TagState::Present {
            content: Some(content),
            ..
        } = state
        else {
            continue;
        };
        let (_, dups) = index::platform_map(&content.platforms);
        foreign
            .duplicates
            .extend(dups.into_iter().map(|p| (tag.clone(), p)));
        for e in &content.platforms {
            let key = e.platform.key();
            if !own_map.contains_key(&key) {
                foreign
                    .platforms
                    .entry(key)
                    .or_default()
                    .push((tag.clone(), e.clone()));
            }
        }
        foreign
            .other
            .extend(content.other.iter().map(|o| (tag.clone(), o.clone())));
    }
    foreign
}

/// What the missing-arch policy makes of the foreign platforms.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Remote {
    /// Carried entries as the new index lists them (in the list's format).
    pub entries: Vec<Entry>,
    pub carried: Vec<RemoteEntry>,
    pub converted: Vec<Conversion>,
    pub dropped: Vec<RemoteEntry>,
}

/// Step 2: refuse, keep or drop the foreign platforms.
pub(super) fn arch_policy(
    policy: MissingArch,
    foreign: &Foreign,
    format: index::Format,
    manifests: &BTreeMap<Digest, Vec<u8>>,
) -> Result<Remote, Refusal> {
    let mut remote = Remote::default();
    match policy {
        MissingArch::Refuse if !foreign.platforms.is_empty() => {
            return Err(missing_arches(&foreign.platforms));
        }
        MissingArch::Refuse => {}
        MissingArch::Keep => {
            for (platform, at) in &foreign.platforms {
                let (entry, carried, conversion) =
                    keep_platform(platform, at, &foreign.duplicates, format, manifests)?;
                remote.entries.push(entry);
                remote.carried.push(carried);
                remote.converted.extend(conversion);
            }
        }
        MissingArch::Drop => {
            for (platform, at) in &foreign.platforms {
                remote.dropped.extend(at.iter().map(|(tag, e)| RemoteEntry {
                    platform: Some(platform.clone()),
                    digest: e.digest.clone(),
                    converted_from: None,
                    tags: vec![tag.clone()],
                }));
            }
        }
    }
    Ok(remote)
}

/// The refusal naming every foreign platform and the tags that hold it.
fn missing_arches(platforms: &BTreeMap<Platform, Vec<(Tag, Entry)>>) -> Refusal {
    Refusal::MissingArches(
        platforms
            .iter()
            .map(|(platform, at)| Missing {
                platform: platform.clone(),
                arch: platform.basearch(),
                tags: dedup_tags(at.iter().map(|(t, _)| t)),
            })
            .collect(),
    )
}

/// One foreign platform carried over: the entry the new index lists, how it is reported, and
/// the conversion to push when it had to be put in the list's format. Refused when a tag
/// lists the platform twice, the tags disagree on it, or it cannot be converted.
fn keep_platform(
    platform: &Platform,
    at: &[(Tag, Entry)],
    duplicates: &[(Tag, Platform)],
    format: index::Format,
    manifests: &BTreeMap<Digest, Vec<u8>>,
) -> Result<(Entry, RemoteEntry, Option<Conversion>), Refusal> {
    if let Some((tag, _)) = duplicates.iter().find(|(_, p)| p == platform) {
        return Err(Refusal::DuplicateCarry {
            tag: tag.clone(),
            platform: platform.clone(),
        });
    }
    let tags = dedup_tags(at.iter().map(|(t, _)| t));
    // Compared in the list's format, so a tag that already holds the converted manifest
    // agrees with one that still holds the original.
    let mut in_format = Vec::with_capacity(at.len());
    for (_, e) in at {
        let carry = in_list_format(e, format, manifests).map_err(|why| {
            Refusal::Unconvertible(Box::new(Unconvertible {
                platform: platform.clone(),
                digest: e.digest.clone(),
                tags: tags.clone(),
                format,
                why,
            }))
        })?;
        in_format.push(carry);
    }
    let (first, conversion) = in_format.swap_remove(0);
    if in_format.iter().any(|(e, _)| e.digest != first.digest) {
        return Err(Refusal::ConflictingCarry {
            platform: platform.clone(),
            tags,
        });
    }
    let carried = RemoteEntry {
        platform: Some(platform.clone()),
        digest: first.digest.clone(),
        converted_from: conversion.as_ref().map(|c| c.from.clone()),
        tags,
    };
    Ok((first, carried, conversion))
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

/// The platform-less entries (attestations) that go along with the carried manifests.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Attestations {
    /// As the new index lists them, each once.
    pub entries: Vec<OtherEntry>,
    pub carried: Vec<RemoteEntry>,
    pub dropped: Vec<RemoteEntry>,
}

/// Step 3: an attestation goes with the manifest it describes: carried when that manifest is
/// carried as it is and the attestation is in the list's format, dropped (and reported)
/// otherwise; attestations describe no converted manifest and have no Docker schema 2 form.
pub(super) fn carried_attestations(
    other: &[(Tag, OtherEntry)],
    carried: &[RemoteEntry],
    format: index::Format,
) -> Attestations {
    let carried_digests: Vec<&Digest> = carried.iter().map(|c| &c.digest).collect();
    let mut out = Attestations::default();
    for (tag, other) in other {
        let goes_along = other.raw.is_some()
            && v2s2::format_of(&other.media_type) == Some(format)
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
        if !goes_along {
            out.dropped.push(report);
            continue;
        }
        if !out.entries.iter().any(|o| o.digest == other.digest) {
            out.entries.push(other.clone());
        }
        match out.carried.iter_mut().find(|c| c.digest == other.digest) {
            Some(c) if !c.tags.contains(tag) => c.tags.push(tag.clone()),
            Some(_) => {}
            None => out.carried.push(report),
        }
    }
    out
}

/// The index reprise builds, with its platform map and the annotations asked for, against
/// which tags are compared.
pub(super) struct Built {
    pub index: BuiltIndex,
    pub map: PlatformMap,
    /// `None` when no annotations were asked for: a remote index's are then not compared.
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Built {
    pub(super) fn new(index: BuiltIndex, annotations: Option<BTreeMap<String, String>>) -> Self {
        let (map, _) = index::platform_map(&index.entries);
        Built {
            index,
            map,
            annotations,
        }
    }

    /// Whether a tag already holds this index or an equivalent one.
    fn up_to_date(&self, state: &TagState) -> bool {
        match state {
            TagState::Absent => false,
            TagState::Present { digest, content } => {
                digest == &self.index.digest
                    || content
                        .as_ref()
                        .is_some_and(|c| equivalent(c, &self.map) && self.annotated_as_asked(c))
            }
        }
    }

    /// Whether a remote index carries exactly the annotations asked for (any, when none were).
    fn annotated_as_asked(&self, content: &RemoteContent) -> bool {
        self.annotations
            .as_ref()
            .is_none_or(|want| want == &content.annotations)
    }

    /// Whether a tag holds an index with the right platforms whose annotations are not the
    /// ones asked for.
    fn only_annotations_differ(&self, state: &TagState) -> bool {
        match state {
            TagState::Present {
                content: Some(c), ..
            } => equivalent(c, &self.map) && !self.annotated_as_asked(c),
            _ => false,
        }
    }

    fn as_target(&self) -> TargetIndex {
        TargetIndex {
            digest: self.index.digest.clone(),
            bytes: self.index.bytes.clone(),
            media_type: self.index.media_type.clone(),
            source: IndexSource::Built,
        }
    }
}

/// Whether a remote index maps exactly the target platforms to the target digests and lists
/// no platform twice. Entries without a platform do not take part. A single image manifest is
/// never equivalent, whatever its platform: it is not a list.
fn equivalent(content: &RemoteContent, target: &PlatformMap) -> bool {
    let (map, dups) = index::platform_map(&content.platforms);
    content.kind == ContentKind::Index && dups.is_empty() && &map == target
}

/// Step 4: the index the tags end at. An equivalent index a tag already holds is reused (not
/// under `--force`), so all tags end at one digest and an index another tool wrote is not
/// replaced by a byte-different twin; but a tag already holding reprise's own bytes wins.
pub(super) fn choose_index(
    states: &[(&Tag, &TagState)],
    built: &Built,
    force: bool,
) -> TargetIndex {
    let built_holder = states.iter().any(
        |(_, s)| matches!(s, TagState::Present { digest, .. } if digest == &built.index.digest),
    );
    if force || built_holder {
        return built.as_target();
    }
    states
        .iter()
        .find_map(|&(tag, state)| match state {
            TagState::Present {
                digest,
                content: Some(c),
            } if digest != &built.index.digest && built.up_to_date(state) => Some(TargetIndex {
                digest: digest.clone(),
                bytes: c.bytes.clone(),
                media_type: c.media_type.clone(),
                source: IndexSource::Reused { tag: tag.clone() },
            }),
            _ => None,
        })
        .unwrap_or_else(|| built.as_target())
}

/// Step 5: what each tag needs to end at `index`, and why.
pub(super) fn tag_plans(
    states: &[(&Tag, &TagState)],
    index: &TargetIndex,
    built: &Built,
    force: bool,
) -> Vec<TagPlan> {
    states
        .iter()
        .map(|&(tag, state)| {
            let before = match state {
                TagState::Present { digest, .. } => Some(digest.clone()),
                TagState::Absent => None,
            };
            let single_image = single_image(state);
            let (action, reason) = if force {
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
            } else if built.up_to_date(state) {
                (TagAction::Push, "equivalent index; aligning to one digest")
            } else if built.only_annotations_differ(state) {
                (TagAction::Push, "annotations differ")
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
        .collect()
}

/// The single image manifest a tag holds instead of an index, if it does.
fn single_image(state: &TagState) -> Option<SingleImage> {
    match state {
        TagState::Present {
            content: Some(c), ..
        } if c.kind == ContentKind::Image => Some(SingleImage {
            platform: c.platforms.first().map(|e| e.platform.clone()),
        }),
        _ => None,
    }
}

/// Step 6: what each arch's meta.json needs to record the push (nothing when the build's
/// records are not kept).
pub(super) fn record_plans(desired: &Desired, index_digest: &Digest) -> Vec<RecordPlan> {
    if !desired.records {
        return Vec::new();
    }
    desired
        .arches
        .iter()
        .map(|a| {
            let record = Record {
                image: desired.repo.clone(),
                digest: a.entry.digest.clone(),
                manifest_list_digest: index_digest.clone(),
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
        .collect()
}

/// Nothing is carried or dropped from a tag that is not written: keep only the pushed tags
/// of each entry, and only entries left with a tag.
pub(super) fn keep_pushed_tags(tags: &[TagPlan], entries: &mut Vec<RemoteEntry>) {
    let pushed: Vec<&Tag> = tags
        .iter()
        .filter(|t| t.action == TagAction::Push)
        .map(|t| &t.tag)
        .collect();
    entries.retain_mut(|e| {
        e.tags.retain(|t| pushed.contains(&t));
        !e.tags.is_empty()
    });
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
