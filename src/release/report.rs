//! What a release did, stage by stage: the JSON shape (the release branch of
//! `schemas/report.schema.json`). The human summary is `release/human.rs`'s.

use serde::Serialize;

use super::command::{Attempt, Predicate, Ran};
use super::config::{Invocation, Kind, Stage};
use super::copy::Target;
use super::delete::DeleteStep;
use super::stage::{Planned, TagsWork, Work};
use crate::apply::Stats;
use crate::plan::TagAction;
use crate::platform::Arch;
use crate::reference::{Digest, Reference, Repository, Tag};
use crate::referrers::copy::Summary as ReferrersCopy;
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
    /// `--check`: a plan whose pending work is the exit status.
    pub check: bool,
}

impl Report {
    /// Whether any stage planned has work to do (`--check`).
    pub fn pending(&self) -> bool {
        self.stages.iter().any(|s| s.pending)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StageOutcome {
    Noop,
    Recorded,
    Pushed,
    /// A command stage ran its program and `done-when` then held.
    Ran,
    /// A delete-tags stage deleted something.
    Deleted,
    Planned,
    Refused,
    Failed,
    /// An earlier stage failed or was refused.
    NotRun,
    /// Left out by `--only` or `--from`.
    NotSelected,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageReport {
    pub name: String,
    pub kind: Kind,
    /// The stage's repositories (none for a command stage).
    pub repos: Vec<Repository>,
    pub outcome: StageOutcome,
    /// A plan (dry run, --check): whether the stage has work to do.
    pub pending: bool,
    /// Earlier stages whose planned writes this stage's plan reads (dry run only).
    pub after: Vec<String>,
    pub tags: Vec<TagReport>,
    pub uploaded: Uploaded,
    pub skipped_blobs: u64,
    /// Arches of the build the stage leaves out (container-manifest and arch-tags: an
    /// artifact some arches do not have).
    pub skipped: Vec<Skipped>,
    /// copy-tag: the reference copied and the digest it held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<FromReport>,
    /// container-manifest: the push report of the first repository, as
    /// `push-container-manifest --json` prints it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push: Option<PushReport>,
    /// container-manifest: the push reports of the other repositories.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub additional_pushes: Vec<PushReport>,
    /// command: each run of the program.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<RunReport>,
    /// delete-tags: each tag.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deletes: Vec<DeleteStep>,
    /// copy-tag: the referrers copied along, per target repository other than the source's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub referrers: Vec<ReferrersCopy>,
    /// Why the stage was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// A plan (dry run, --check): why the stage could not be planned yet (it reads what an
    /// earlier command stage, still to run, may change).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deferred: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TagReport {
    pub repo: Repository,
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
    pub reference: Reference,
    pub digest: Digest,
}

/// One run of a command stage's program (one arch with `per-arch`).
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arch: Option<Arch>,
    pub argv: Vec<String>,
    /// `done` (done-when held, nothing run), `ran`, `failed`, `would-run`, `not-run`.
    pub outcome: &'static str,
    /// done-when before running.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Predicate>,
    /// done-when after the program exited 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Predicate>,
    pub attempts: Vec<Attempt>,
}

impl RunReport {
    fn new(inv: &Invocation, outcome: &'static str, before: Option<Predicate>) -> RunReport {
        RunReport {
            arch: inv.arch.clone(),
            argv: inv.argv.clone(),
            outcome,
            before,
            after: None,
            attempts: vec![],
        }
    }

    pub(super) fn not_run(inv: &Invocation) -> RunReport {
        RunReport::new(inv, "not-run", None)
    }

    pub(super) fn done(inv: &Invocation, before: Predicate) -> RunReport {
        RunReport::new(inv, "done", Some(before))
    }

    pub(super) fn planned(inv: &Invocation, before: &Predicate) -> RunReport {
        let outcome = if before.holds { "done" } else { "would-run" };
        RunReport::new(inv, outcome, Some(before.clone()))
    }

    pub(super) fn ran(inv: &Invocation, before: Predicate, ran: Ran) -> RunReport {
        let ok = ran.after.as_ref().is_some_and(|p| p.holds);
        RunReport {
            after: ran.after,
            attempts: ran.attempts,
            ..RunReport::new(inv, if ok { "ran" } else { "failed" }, Some(before))
        }
    }
}

impl StageReport {
    fn empty(stage: &Stage, outcome: StageOutcome) -> StageReport {
        StageReport {
            name: stage.name.clone(),
            kind: stage.kind.kind(),
            repos: stage.repos.clone(),
            outcome,
            pending: false,
            after: vec![],
            tags: vec![],
            uploaded: Uploaded::default(),
            skipped_blobs: 0,
            skipped: vec![],
            from: None,
            push: None,
            additional_pushes: vec![],
            runs: vec![],
            deletes: vec![],
            referrers: vec![],
            refusal: None,
            deferred: None,
            error: None,
        }
    }

    /// The same copy-tag report with the referrers copied (or to copy) along: pending when
    /// any is missing, and pushed once applied if only they were written.
    pub(super) fn with_referrers(mut self, referrers: Vec<ReferrersCopy>) -> StageReport {
        if referrers.iter().any(|r| r.missing > 0) {
            self.pending = true;
            if self.outcome == StageOutcome::Noop {
                self.outcome = StageOutcome::Pushed;
            }
        }
        self.referrers = referrers;
        self
    }

    pub fn not_run(stage: &Stage) -> StageReport {
        StageReport::empty(stage, StageOutcome::NotRun)
    }

    pub fn not_selected(stage: &Stage) -> StageReport {
        StageReport::empty(stage, StageOutcome::NotSelected)
    }

    pub fn failed(stage: &Stage, error: String) -> StageReport {
        StageReport {
            error: Some(error),
            ..StageReport::empty(stage, StageOutcome::Failed)
        }
    }

    pub fn refused(stage: &Stage, why: String) -> StageReport {
        StageReport {
            refusal: Some(why),
            pending: true,
            ..StageReport::empty(stage, StageOutcome::Refused)
        }
    }

    pub(super) fn with_deletes(mut self, steps: Vec<DeleteStep>) -> StageReport {
        self.deletes = steps;
        self
    }

    /// A container-manifest stage: one push report per repository, the first the record's.
    pub fn from_pushes(stage: &Stage, pushes: Vec<PushReport>, after: Vec<String>) -> StageReport {
        let rank = |o: StageOutcome| match o {
            StageOutcome::Refused => 4,
            StageOutcome::Pushed => 3,
            StageOutcome::Recorded => 2,
            StageOutcome::Planned => 1,
            _ => 0,
        };
        let mut report = StageReport {
            after,
            ..StageReport::empty(stage, StageOutcome::Noop)
        };
        for push in &pushes {
            let outcome: StageOutcome = push.outcome.into();
            if rank(outcome) > rank(report.outcome) {
                report.outcome = outcome;
            }
            report.pending |= push.pending() || push.refusal.is_some();
            report.tags.extend(push.tags.iter().map(|t| TagReport {
                repo: push.repo.clone(),
                tag: t.tag.clone(),
                arch: None,
                before: t.before.clone(),
                after: t.after.clone(),
                action: t.action,
                reason: t.reason,
            }));
            report.uploaded.blobs += push.uploaded.blobs;
            report.uploaded.bytes += push.uploaded.bytes;
            report.uploaded.mounted += push.uploaded.mounted;
            report.skipped_blobs += push.skipped_blobs;
        }
        let mut pushes = pushes.into_iter();
        report.push = pushes.next();
        report.additional_pushes = pushes.collect();
        if let Some(first) = &report.push {
            report.skipped = first.skipped.clone();
            report.refusal = first.refusal.as_ref().map(|r| r.message.clone());
        }
        report
    }

    fn add_stats(&mut self, stats: &Stats) {
        self.uploaded.blobs += stats.uploaded_blobs;
        self.uploaded.bytes += stats.uploaded_bytes;
        self.uploaded.mounted += stats.mounted_blobs;
        self.skipped_blobs += stats.skipped_blobs;
    }
}

/// The outcome of a stage that writes tags: planned (not applied), pushed, or nothing.
fn tags_outcome(applied: bool, writes: bool) -> StageOutcome {
    match (applied, writes) {
        (false, _) => StageOutcome::Planned,
        (true, true) => StageOutcome::Pushed,
        (true, false) => StageOutcome::Noop,
    }
}

/// An arch-tags stage, planned (no stats) or applied, over its repositories.
pub(super) fn from_tags<'a>(
    stage: &Stage,
    works: impl IntoIterator<Item = (&'a TagsWork, Option<&'a Stats>)>,
    after: Vec<String>,
) -> StageReport {
    let mut report = StageReport {
        after,
        ..StageReport::empty(stage, StageOutcome::Noop)
    };
    let mut applied = true;
    for (w, stats) in works {
        applied &= stats.is_some();
        if let Some(stats) = stats {
            report.add_stats(stats);
        }
        report.tags.extend(w.steps.iter().map(|s| TagReport {
            repo: w.repo.clone(),
            tag: s.tag.clone(),
            arch: s.arch.clone(),
            before: s.before.clone(),
            after: Some(s.want.clone()),
            action: s.action,
            reason: s.reason,
        }));
        if report.skipped.is_empty() {
            report.skipped = w.skipped.clone();
        }
    }
    let writes = report.tags.iter().any(|t| t.action == TagAction::Push);
    report.pending = writes;
    report.outcome = tags_outcome(applied, writes);
    report
}

/// A copy-tag stage, planned (no stats) or applied.
pub(super) fn from_copy(
    stage: &Stage,
    from: &Reference,
    want: &Digest,
    targets: &[Target],
    stats: Option<Stats>,
    after: Vec<String>,
) -> StageReport {
    let writes = targets.iter().any(|t| t.action == TagAction::Push);
    let mut report = StageReport {
        after,
        pending: writes,
        from: Some(FromReport {
            reference: from.clone(),
            digest: want.clone(),
        }),
        tags: targets
            .iter()
            .filter_map(|t| match &t.to {
                Reference::Tagged(repo, tag) => Some(TagReport {
                    repo: repo.clone(),
                    tag: tag.clone(),
                    arch: None,
                    before: t.before.clone(),
                    after: Some(want.clone()),
                    action: t.action,
                    reason: t.reason,
                }),
                Reference::Digested(..) => None,
            })
            .collect(),
        ..StageReport::empty(stage, tags_outcome(stats.is_some(), writes))
    };
    if let Some(stats) = &stats {
        report.add_stats(stats);
    }
    report
}

/// A command stage: its runs, planned or applied; `failure` fails it.
pub(super) fn from_runs(
    stage: &Stage,
    runs: Vec<RunReport>,
    failure: Option<String>,
    applied: bool,
) -> StageReport {
    let pending = runs.iter().any(|r| r.outcome == "would-run");
    let outcome = match (&failure, applied) {
        (Some(_), _) => StageOutcome::Failed,
        (None, false) => StageOutcome::Planned,
        (None, true) if runs.iter().any(|r| r.outcome == "ran") => StageOutcome::Ran,
        (None, true) => StageOutcome::Noop,
    };
    StageReport {
        runs,
        pending,
        error: failure,
        ..StageReport::empty(stage, outcome)
    }
}

/// A delete-tags stage, planned or applied; `refusal` refuses it.
pub(super) fn from_deletes(
    stage: &Stage,
    steps: Vec<DeleteStep>,
    refusal: Option<String>,
    applied: bool,
) -> StageReport {
    let pending = steps
        .iter()
        .any(|s| s.before.is_some() && s.deleted_by.is_none());
    let deleted = steps.iter().any(|s| s.deleted_by.is_some());
    let outcome = match (&refusal, applied, deleted) {
        (Some(_), _, _) => StageOutcome::Refused,
        (None, false, _) => StageOutcome::Planned,
        (None, true, true) => StageOutcome::Deleted,
        (None, true, false) => StageOutcome::Noop,
    };
    StageReport {
        deletes: steps,
        pending: pending || refusal.is_some(),
        refusal,
        ..StageReport::empty(stage, outcome)
    }
}

/// A stage's plan as a report (dry run, --check).
pub(super) fn planned(stage: &Stage, planned: &Planned) -> StageReport {
    let after = planned.after.clone();
    match &planned.work {
        Work::Push(p) => {
            StageReport::from_pushes(stage, p.iter().map(|p| p.planned()).collect(), after)
        }
        Work::Tags(works) => from_tags(stage, works.iter().map(|w| (w, None)), after),
        Work::Copy(c) => from_copy(stage, &c.from, &c.want, &c.targets, None, after)
            .with_referrers(c.referrers_report()),
        Work::Command(c) => from_runs(
            stage,
            c.runs
                .iter()
                .map(|(inv, p)| RunReport::planned(inv, p))
                .collect(),
            None,
            false,
        ),
        Work::Delete(d) => from_deletes(stage, d.steps.clone(), d.refusal.clone(), false),
        Work::Blocked(why) => StageReport::refused(stage, why.clone()),
        Work::Deferred { after: by, why } => StageReport {
            after,
            pending: true,
            deferred: Some(format!(
                "planned when its turn comes, after stage {by:?} has run (now: {why})"
            )),
            ..StageReport::empty(stage, StageOutcome::Planned)
        },
    }
}
