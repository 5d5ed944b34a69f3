//! The human summary of a release, for stderr: one heading per stage, then what it did or
//! would do, tag by tag, arch by arch.

use std::fmt::Write as _;

use super::config::Kind;
use super::report::{Report, StageOutcome, StageReport};
use crate::plan::TagAction;
use crate::reference::Digest;
use crate::report::Report as PushReport;

fn outcome_word(o: StageOutcome) -> &'static str {
    match o {
        StageOutcome::Noop => "nothing to do",
        StageOutcome::Recorded => "recorded (registry already up to date)",
        StageOutcome::Pushed => "pushed",
        StageOutcome::Ran => "ran",
        StageOutcome::Deleted => "deleted",
        StageOutcome::Planned => "plan (dry run, nothing changed)",
        StageOutcome::Refused => "refused",
        StageOutcome::Failed => "failed",
        StageOutcome::NotRun => "not run",
        StageOutcome::NotSelected => "not selected",
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
        let mut word = outcome_word(r.outcome).to_owned();
        if r.check {
            word = if self.pending() {
                "work pending (--check)".into()
            } else {
                "done, nothing pending (--check)".into()
            };
        }
        let _ = writeln!(
            out,
            "reprise: release {} on build {}: {word}",
            r.config, r.build,
        );
        let count = self.stages.len();
        for (i, s) in self.stages.iter().enumerate() {
            let place = match s.repos.as_slice() {
                [] => String::new(),
                [one] => format!(", {one}"),
                [first, rest @ ..] => format!(", {first} and {} more", rest.len()),
            };
            let _ = writeln!(
                out,
                "  [{}/{count}] {} ({}{place}): {}",
                i + 1,
                s.name,
                s.kind.as_str(),
                outcome_word(s.outcome)
            );
            stage_lines(&mut out, s, &r.config);
        }
        out
    }
}

/// The lines under one stage's heading.
fn stage_lines(out: &mut String, s: &StageReport, config: &str) {
    if !s.after.is_empty() {
        let _ = writeln!(out, "      planned as left by stage {}", s.after.join(", "));
    }
    if let Some(e) = &s.error {
        let _ = writeln!(out, "      error: {e}");
    }
    if let Some(d) = &s.deferred {
        let _ = writeln!(out, "      {d}");
    }
    if let Some(why) = &s.refusal
        && s.push.is_none()
    {
        let _ = writeln!(out, "      refused: {why}");
    }
    match &s.push {
        Some(push) => {
            for p in std::iter::once(push).chain(&s.additional_pushes) {
                push_lines(out, p, config);
            }
        }
        None => tag_lines(out, s),
    }
    run_lines(out, s);
    delete_lines(out, s);
}

/// A container-manifest stage's lines: the push report's, indented under the stage.
fn push_lines(out: &mut String, push: &PushReport, config: &str) {
    // Its first line repeats the outcome said above, except for a refusal, whose one line
    // is the reason.
    let human = push.human();
    let skip = usize::from(push.refusal.is_none());
    let _ = writeln!(out, "      {}", push.repo);
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
        let _ = writeln!(out, "      from {} = {}", from.reference, from.digest);
    }
    let several = s.repos.len() > 1 || s.kind == Kind::CopyTag;
    for t in &s.tags {
        let action = match t.action {
            TagAction::Push if s.outcome == StageOutcome::Planned => "would push",
            TagAction::Push => "pushed",
            TagAction::Unchanged => "unchanged",
        };
        let name = if several {
            t.repo.tagged(&t.tag).to_string()
        } else {
            t.tag.to_string()
        };
        let _ = writeln!(
            out,
            "      tag {name:<28} {} -> {}  {action} ({})",
            short(&t.before),
            short(&t.after),
            t.reason
        );
    }
    for r in &s.referrers {
        let done = match (r.missing, s.outcome) {
            (0, _) => "all there".to_owned(),
            (n, StageOutcome::Planned) => format!("{n} to copy"),
            (n, _) => format!("{n} copied"),
        };
        let _ = writeln!(
            out,
            "      referrers at {}: {}, {done}",
            r.repo, r.referrers
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
    let moved = s.uploaded.blobs + s.uploaded.mounted + s.skipped_blobs > 0;
    if s.outcome == StageOutcome::Pushed && s.kind != Kind::ContainerManifest && moved {
        let _ = writeln!(
            out,
            "      uploaded {} blobs ({} bytes), mounted {}, {} already present",
            s.uploaded.blobs, s.uploaded.bytes, s.uploaded.mounted, s.skipped_blobs
        );
    }
}

/// A command stage's lines: each run, whether it was done and why.
fn run_lines(out: &mut String, s: &StageReport) {
    for r in &s.runs {
        let who = r.arch.as_ref().map_or("once", |a| a.as_str());
        let seen = r
            .after
            .as_ref()
            .or(r.before.as_ref())
            .map(|p| p.value.as_str());
        let took: f64 = r.attempts.iter().map(|a| a.seconds).sum();
        let what = match r.outcome {
            "done" => "done, not run".to_owned(),
            "would-run" => "would run".to_owned(),
            "ran" => format!("ran in {took:.1} s ({} attempt(s))", r.attempts.len()),
            "failed" => format!("failed after {} attempt(s)", r.attempts.len()),
            other => other.to_owned(),
        };
        match seen {
            Some(v) => {
                let _ = writeln!(out, "      {who:<8} {what}: {v}");
            }
            None => {
                let _ = writeln!(out, "      {who:<8} {what}");
            }
        }
    }
}

/// A delete-tags stage's lines: each tag and what happened to it.
fn delete_lines(out: &mut String, s: &StageReport) {
    for d in &s.deletes {
        let what = match (&d.before, d.deleted_by) {
            (None, _) => "already gone".to_owned(),
            (Some(_), Some(by)) => format!("deleted (by {by})"),
            (Some(_), None) if s.outcome == StageOutcome::Planned => "would delete".to_owned(),
            (Some(_), None) => "kept".to_owned(),
        };
        let _ = writeln!(out, "      {} {}  {what}", d.tag, short(&d.before));
    }
}
