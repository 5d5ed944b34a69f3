//! What a run did, for people (a summary on stderr) and machines (JSON on stdout, described
//! by `schemas/report.schema.json`).
//!
//! Owns presenting a push's plan and what applying it did; it decides nothing, and takes
//! what it shows from the desired state, the plan and the apply statistics.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::apply::Stats;
use crate::builds::RecordState;
use crate::plan::{
    Desired, IndexSource, Missing, Outcome, Plan, Refusal, RemoteEntry, SingleImage, TagAction,
};
use crate::platform::{Arch, Platform};
use crate::reference::{Digest, Repository, Tag};
use crate::referrers::Orphaned;

pub use crate::desired::{SkipReason, Skipped};

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub outcome: Outcome,
    pub repo: Repository,
    pub index_digest: Option<Digest>,
    pub index_source: Option<IndexSource>,
    pub tags: Vec<TagReport>,
    pub arches: Vec<ArchReport>,
    pub uploaded: Uploaded,
    pub skipped_blobs: u64,
    pub carried: Vec<RemoteEntry>,
    pub dropped: Vec<RemoteEntry>,
    pub duplicates: Vec<Duplicate>,
    /// Arches of the build this run leaves out, and why.
    pub skipped: Vec<Skipped>,
    /// What the replaced tags held that signatures or attestations refer to: they stay with
    /// the old digest.
    pub orphaned_referrers: Vec<Orphaned>,
    /// The annotations the index carries, when they were asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<RefusalReport>,
    /// What this run read from a remote build store (`--builds-url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreRead>,
}

/// The bytes of object bodies a run read from its build store.
#[derive(Debug, Clone, Serialize)]
pub struct StoreRead {
    pub url: String,
    pub bytes_read: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TagReport {
    pub tag: Tag,
    pub before: Option<Digest>,
    /// Set when `before` is a single image manifest (which an index replaces), not an index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub single_image: Option<SingleImage>,
    pub after: Option<Digest>,
    pub action: TagAction,
    pub reason: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArchReport {
    pub arch: Arch,
    pub platform: Platform,
    pub digest: Digest,
    pub record: RecordAction,
    /// How the record compared with what this run records; unknown (null) when refused,
    /// since no index was settled on.
    pub record_before: Option<RecordState>,
}

/// What a run did, or would do, to an arch's meta.json record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordAction {
    Written,
    Unchanged,
    /// A dry run (or `status`) that would write it.
    WouldWrite,
    /// Images given with `--image` have no build record.
    None,
}

impl RecordAction {
    fn as_str(self) -> &'static str {
        match self {
            RecordAction::Written => "written",
            RecordAction::Unchanged => "unchanged",
            RecordAction::WouldWrite => "would-write",
            RecordAction::None => "none",
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Uploaded {
    pub blobs: u64,
    pub bytes: u64,
    /// Blobs linked from another repository of the same registry (no bytes moved).
    pub mounted: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Duplicate {
    pub tag: Tag,
    pub platform: Platform,
}

#[derive(Debug, Clone, Serialize)]
pub struct RefusalReport {
    pub message: String,
    pub missing: Vec<Missing>,
}

impl Report {
    pub fn new(desired: &Desired, plan: &Plan, outcome: Outcome, stats: Option<Stats>) -> Report {
        let stats = stats.unwrap_or_default();
        let applied = outcome != Outcome::Planned;
        let tags = plan
            .tags
            .iter()
            .map(|t| TagReport {
                tag: t.tag.clone(),
                before: t.before.clone(),
                single_image: t.single_image.clone(),
                after: match t.action {
                    TagAction::Push => Some(plan.index.digest.clone()),
                    TagAction::Unchanged => t.before.clone(),
                },
                action: t.action,
                reason: t.reason,
            })
            .collect();
        let arches = desired
            .arches
            .iter()
            .map(|a| {
                let r = plan.records.iter().find(|r| r.arch == a.arch);
                ArchReport {
                    arch: a.arch.clone(),
                    platform: a.entry.platform.clone(),
                    digest: a.entry.digest.clone(),
                    record: match (r.map(|r| r.write), applied) {
                        // Images given with --image have no build record.
                        (None, _) => RecordAction::None,
                        (Some(false), _) => RecordAction::Unchanged,
                        (Some(true), false) => RecordAction::WouldWrite,
                        (Some(true), true) if stats.records_written.contains(&a.arch) => {
                            RecordAction::Written
                        }
                        (Some(true), true) => RecordAction::Unchanged,
                    },
                    record_before: r.map(|r| r.state),
                }
            })
            .collect();
        Report {
            outcome,
            repo: desired.repo.clone(),
            index_digest: Some(plan.index.digest.clone()),
            index_source: Some(plan.index.source.clone()),
            tags,
            arches,
            uploaded: Uploaded {
                blobs: stats.uploaded_blobs,
                bytes: stats.uploaded_bytes,
                mounted: stats.mounted_blobs,
            },
            skipped_blobs: stats.skipped_blobs,
            carried: plan.carried.clone(),
            dropped: plan.dropped.clone(),
            duplicates: plan
                .duplicates
                .iter()
                .map(|(tag, platform)| Duplicate {
                    tag: tag.clone(),
                    platform: platform.clone(),
                })
                .collect(),
            skipped: vec![],
            orphaned_referrers: vec![],
            annotations: desired.annotations.clone(),
            store: None,
            refusal: None,
        }
    }

    /// A refused plan: nothing pushed or recorded, and no index settled on.
    pub fn refused(desired: &Desired, refusal: Refusal) -> Report {
        let missing = match &refusal {
            Refusal::MissingArches(m) => m.clone(),
            _ => vec![],
        };
        Report {
            outcome: Outcome::Refused,
            repo: desired.repo.clone(),
            index_digest: None,
            index_source: None,
            tags: vec![],
            arches: desired
                .arches
                .iter()
                .map(|a| ArchReport {
                    arch: a.arch.clone(),
                    platform: a.entry.platform.clone(),
                    digest: a.entry.digest.clone(),
                    // Images given with --image have no build record to leave unchanged.
                    record: if desired.records {
                        RecordAction::Unchanged
                    } else {
                        RecordAction::None
                    },
                    record_before: None,
                })
                .collect(),
            uploaded: Uploaded::default(),
            skipped_blobs: 0,
            carried: vec![],
            dropped: vec![],
            duplicates: vec![],
            skipped: vec![],
            orphaned_referrers: vec![],
            annotations: desired.annotations.clone(),
            store: None,
            refusal: Some(RefusalReport {
                message: refusal.to_string(),
                missing,
            }),
        }
    }

    /// The same report, listing `skipped` as the arches the run left out.
    pub fn with_skipped(mut self, skipped: &[Skipped]) -> Report {
        self.skipped = skipped.to_vec();
        self
    }

    /// The same report, with what the replaced tags leave behind.
    pub fn with_orphans(mut self, orphans: &[Orphaned]) -> Report {
        self.orphaned_referrers = orphans.to_vec();
        self
    }

    /// Whether applying the plan would change anything: a tag to push or a record to write.
    pub fn pending(&self) -> bool {
        self.tags.iter().any(|t| t.action == TagAction::Push)
            || self
                .arches
                .iter()
                .any(|a| a.record == RecordAction::WouldWrite)
    }

    /// The human summary, several lines, for stderr.
    pub fn human(&self) -> String {
        let mut out = String::new();
        if let Some(refusal) = &self.refusal {
            let _ = writeln!(out, "reprise: {}", refusal.message);
            self.skipped_lines(&mut out);
            return out;
        }
        self.headline(&mut out);
        self.annotation_lines(&mut out);
        self.tag_lines(&mut out);
        self.arch_lines(&mut out);
        self.skipped_lines(&mut out);
        self.remote_lines(&mut out);
        self.upload_line(&mut out);
        out
    }
}

/// The parts of [`Report::human`], in the order they are printed.
impl Report {
    /// What the run did, to which repository, and the index.
    fn headline(&self, out: &mut String) {
        let verb = match self.outcome {
            Outcome::Noop => "nothing to do",
            Outcome::Recorded => "recorded (registry already up to date)",
            Outcome::Pushed => "pushed",
            Outcome::Planned => "plan (dry run, nothing changed)",
            Outcome::Refused => "refused",
        };
        let source = match &self.index_source {
            Some(IndexSource::Reused { tag }) => format!(" (reusing the index at {tag})"),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "reprise: {verb}: {} index {}{source}",
            self.repo,
            self.index_digest.as_ref().map_or("-", |d| d.as_str())
        );
    }

    /// The annotations the index carries, when asked for.
    fn annotation_lines(&self, out: &mut String) {
        for (key, value) in self.annotations.iter().flatten() {
            let _ = writeln!(out, "  annotation {key}={value}");
        }
    }

    /// Each tag: what it held, what it holds after, and why.
    fn tag_lines(&self, out: &mut String) {
        for t in &self.tags {
            let action = match t.action {
                TagAction::Push if self.outcome == Outcome::Planned => "would push",
                TagAction::Push => "pushed",
                TagAction::Unchanged => "unchanged",
            };
            let held = match &t.single_image {
                Some(SingleImage { platform: Some(p) }) => format!("; it held the {p} image"),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "  tag {:<20} {} -> {}  {action} ({}{held})",
                t.tag.as_str(),
                short(t.before.as_ref()),
                short(t.after.as_ref()),
                t.reason
            );
        }
    }

    /// Each arch: its platform, manifest digest and what happened to its record.
    fn arch_lines(&self, out: &mut String) {
        for a in &self.arches {
            let record = match a.record {
                RecordAction::None => String::new(),
                r => format!("  meta.json {}", r.as_str()),
            };
            let _ = writeln!(
                out,
                "  {:<8} {:<16} {}{record}",
                a.arch.as_str(),
                a.platform.to_string(),
                a.digest,
            );
        }
    }

    fn skipped_lines(&self, out: &mut String) {
        for s in &self.skipped {
            let _ = writeln!(
                out,
                "  {:<8} skipped: {}",
                s.arch.as_str(),
                s.reason.as_str()
            );
        }
    }

    /// Remote index entries carried or dropped by the arch policy, and duplicate platforms.
    fn remote_lines(&self, out: &mut String) {
        for c in &self.carried {
            let _ = writeln!(out, "  carried {} from the remote index", describe(c));
        }
        for d in &self.dropped {
            let _ = writeln!(out, "  dropped {} from the remote index", describe(d));
        }
        for d in &self.duplicates {
            let _ = writeln!(
                out,
                "  warning: tag {} lists {} more than once",
                d.tag, d.platform
            );
        }
        for o in &self.orphaned_referrers {
            let _ = writeln!(out, "  warning: {}", o.warning());
        }
    }

    /// What a build store served, and after a push how many blobs moved and how many were
    /// there already.
    fn upload_line(&self, out: &mut String) {
        if let Some(store) = &self.store {
            let _ = writeln!(out, "  read {} bytes from {}", store.bytes_read, store.url);
        }
        if self.outcome != Outcome::Pushed {
            return;
        }
        let mounted = match self.uploaded.mounted {
            0 => String::new(),
            n => format!(", {n} mounted"),
        };
        let _ = writeln!(
            out,
            "  uploaded {} blobs ({} bytes){mounted}, {} already present",
            self.uploaded.blobs, self.uploaded.bytes, self.skipped_blobs
        );
    }
}

/// A digest as the summary shows it: `sha256:` and its first 12 hex digits, or `absent`.
fn short(d: Option<&Digest>) -> String {
    d.map_or_else(|| "absent".to_owned(), |d| d.as_str()[..19].to_owned())
}

fn describe(e: &RemoteEntry) -> String {
    let what = e.platform.as_ref().map_or_else(
        || "an entry without a platform".to_owned(),
        |p| p.to_string(),
    );
    let converted = e
        .converted_from
        .as_ref()
        .map_or_else(String::new, |from| format!(", converted from {from}"));
    format!(
        "{what} ({}{converted}) at {}",
        e.digest,
        e.tags
            .iter()
            .map(Tag::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

#[cfg(test)]
mod tests;
