//! What a release did, stage by stage: the JSON shape (the release branch of
//! `schemas/report.schema.json`) and the human summary.

use std::fmt::Write as _;

use serde::Serialize;

use super::TagStep;
use super::config::{Kind, Stage};
use crate::apply::Stats;
use crate::plan::TagAction;
use crate::platform::Arch;
use crate::reference::{Digest, Repository, Tag};
use crate::report::{Report as PushReport, Skipped, Uploaded};

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub release: Summary,
    pub stages: Vec<StageReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub config: String,
    /// The build id the release ran on (`latest` resolved).
    pub build: String,
    /// The release as a whole: `failed` or `refused` if a stage was, else the most any
    /// stage did.
    pub outcome: StageOutcome,
    pub dry_run: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StageOutcome {
    Noop,
    Recorded,
    Pushed,
    Planned,
    Refused,
    Failed,
    /// An earlier stage failed or was refused.
    NotRun,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageReport {
    pub name: String,
    pub kind: Kind,
    pub repo: Repository,
    pub outcome: StageOutcome,
    /// Earlier stages whose planned writes this stage's plan reads (dry run only).
    pub after: Vec<String>,
    pub tags: Vec<TagReport>,
    pub uploaded: Uploaded,
    pub skipped_blobs: u64,
    /// Arches of the build the stage leaves out (container-manifest and arch-tags: an
    /// artifact some arches do not have).
    pub skipped: Vec<Skipped>,
    /// copy-tag: the tag copied and the digest it held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<FromReport>,
    /// container-manifest: the push report, as `push-container-manifest --json` prints it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push: Option<PushReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TagReport {
    pub tag: Tag,
    /// arch-tags: the arch whose manifest the tag holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arch: Option<Arch>,
    pub before: Option<Digest>,
    pub after: Option<Digest>,
    pub action: TagAction,
    pub reason: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct FromReport {
    pub tag: Tag,
    pub digest: Digest,
}

impl StageReport {
    fn empty(stage: &Stage, outcome: StageOutcome) -> StageReport {
        StageReport {
            name: stage.name.clone(),
            kind: stage.kind.kind(),
            repo: stage.repo.clone(),
            outcome,
            after: vec![],
            tags: vec![],
            uploaded: Uploaded::default(),
            skipped_blobs: 0,
            skipped: vec![],
            from: None,
            push: None,
            error: None,
        }
    }

    pub fn not_run(stage: &Stage) -> StageReport {
        StageReport::empty(stage, StageOutcome::NotRun)
    }

    pub fn failed(stage: &Stage, error: String) -> StageReport {
        StageReport {
            error: Some(error),
            ..StageReport::empty(stage, StageOutcome::Failed)
        }
    }

    pub fn from_push(stage: &Stage, push: PushReport, after: Vec<String>) -> StageReport {
        StageReport {
            outcome: push.outcome.into(),
            after,
            tags: push
                .tags
                .iter()
                .map(|t| TagReport {
                    tag: t.tag.clone(),
                    arch: None,
                    before: t.before.clone(),
                    after: t.after.clone(),
                    action: t.action,
                    reason: t.reason,
                })
                .collect(),
            uploaded: push.uploaded.clone(),
            skipped_blobs: push.skipped_blobs,
            skipped: push.skipped.clone(),
            push: Some(push),
            ..StageReport::empty(stage, StageOutcome::Noop)
        }
    }

    /// The same report, listing `skipped` as the arches the stage left out.
    pub(super) fn with_skipped(mut self, skipped: &[Skipped]) -> StageReport {
        self.skipped = skipped.to_vec();
        self
    }

    /// An arch-tags or copy-tag stage: planned (`stats` none) or applied.
    pub(super) fn from_tags(
        stage: &Stage,
        steps: &[TagStep],
        source: Option<&(Tag, Digest)>,
        stats: Option<Stats>,
        after: Vec<String>,
    ) -> StageReport {
        let writes = steps.iter().any(|s| s.action == TagAction::Push);
        let outcome = match (&stats, writes) {
            (None, _) => StageOutcome::Planned,
            (Some(_), true) => StageOutcome::Pushed,
            (Some(_), false) => StageOutcome::Noop,
        };
        let stats = stats.unwrap_or_default();
        StageReport {
            after,
            tags: steps
                .iter()
                .map(|s| TagReport {
                    tag: s.tag.clone(),
                    arch: s.arch.clone(),
                    before: s.before.clone(),
                    after: Some(s.want.clone()),
                    action: s.action,
                    reason: s.reason,
                })
                .collect(),
            uploaded: Uploaded {
                blobs: stats.uploaded_blobs,
                bytes: stats.uploaded_bytes,
                mounted: stats.mounted_blobs,
            },
            skipped_blobs: stats.skipped_blobs,
            from: source.map(|(tag, digest)| FromReport {
                tag: tag.clone(),
                digest: digest.clone(),
            }),
            ..StageReport::empty(stage, outcome)
        }
    }
}

fn outcome_word(o: StageOutcome) -> &'static str {
    match o {
        StageOutcome::Noop => "nothing to do",
        StageOutcome::Recorded => "recorded (registry already up to date)",
        StageOutcome::Pushed => "pushed",
        StageOutcome::Planned => "plan (dry run, nothing changed)",
        StageOutcome::Refused => "refused",
        StageOutcome::Failed => "failed",
        StageOutcome::NotRun => "not run",
    }
}

fn short(d: &Option<Digest>) -> String {
    d.as_ref()
        .map_or_else(|| "absent".to_owned(), |d| d.as_str()[..19].to_owned())
}

impl Report {
    /// The human summary, several lines, for stderr.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let r = &self.release;
        let _ = writeln!(
            out,
            "reprise: release {} on build {}: {}",
            r.config,
            r.build,
            outcome_word(r.outcome)
        );
        let count = self.stages.len();
        for (i, s) in self.stages.iter().enumerate() {
            let _ = writeln!(
                out,
                "  [{}/{count}] {} ({}, {}): {}",
                i + 1,
                s.name,
                s.kind.as_str(),
                s.repo,
                outcome_word(s.outcome)
            );
            if !s.after.is_empty() {
                let _ = writeln!(out, "      planned as left by stage {}", s.after.join(", "));
            }
            if let Some(e) = &s.error {
                let _ = writeln!(out, "      error: {e}");
            }
            match &s.push {
                Some(push) => push_lines(&mut out, push, &r.config),
                None => tag_lines(&mut out, s),
            }
        }
        out
    }
}

/// A container-manifest stage's lines: the push report's, indented under the stage.
fn push_lines(out: &mut String, push: &PushReport, config: &str) {
    // Its first line repeats the outcome and repo said above, except for a refusal, whose
    // one line is the reason.
    let human = push.human();
    let skip = usize::from(push.refusal.is_none());
    if let Some(d) = &push.index_digest {
        let _ = writeln!(out, "      index {d}");
    }
    for line in human.lines().skip(skip) {
        let line = line.strip_prefix("reprise: ").unwrap_or(line);
        let _ = writeln!(out, "      {}", line.trim_start());
    }
    if push.refusal.is_some() {
        let _ = writeln!(
            out,
            "      (in a release, that is the stage's missing-arch key in {config})"
        );
    }
}

/// An arch-tags or copy-tag stage's lines: the source, each tag, skipped arches, uploads.
fn tag_lines(out: &mut String, s: &StageReport) {
    if let Some(from) = &s.from {
        let _ = writeln!(out, "      from {} = {}", from.tag, from.digest);
    }
    for t in &s.tags {
        let action = match t.action {
            TagAction::Push if s.outcome == StageOutcome::Planned => "would push",
            TagAction::Push => "pushed",
            TagAction::Unchanged => "unchanged",
        };
        let _ = writeln!(
            out,
            "      tag {:<28} {} -> {}  {action} ({})",
            t.tag.as_str(),
            short(&t.before),
            short(&t.after),
            t.reason
        );
    }
    for skip in &s.skipped {
        let _ = writeln!(
            out,
            "      {:<8} skipped: {}",
            skip.arch.as_str(),
            skip.reason.as_str()
        );
    }
    if s.outcome == StageOutcome::Pushed && s.kind == Kind::ArchTags {
        let _ = writeln!(
            out,
            "      uploaded {} blobs ({} bytes), {} already present",
            s.uploaded.blobs, s.uploaded.bytes, s.skipped_blobs
        );
    }
}
