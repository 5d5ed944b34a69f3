//! Applying a planned release: the stages in order, each planned again when an earlier one
//! changed something, the first that fails or is refused stopping the rest. Each kind's
//! writes are its own file's (`copy`, `delete`, `command`, and [`push`] for
//! container-manifest); arch-tags tags are written here.

use crate::apply::{Apply, ArchImage, Stats};
use crate::plan::{Outcome, TagAction};
use crate::push;

use super::command;
use super::copy;
use super::delete;
use super::report::{self, RunReport, StageOutcome, StageReport};
use super::stage::{self, Overlay, Planned, TagsWork, Work, plan_stage};
use super::{BuildVars, RunRequest, Stage, StageError, StageKind, overall, push_request};

/// Applies the stages in order; the first that fails or is refused stops the rest.
pub(super) async fn apply_all(
    req: &RunRequest,
    build: &BuildVars,
    stages: &[Stage],
    selected: &[bool],
    plans: Vec<Option<Planned>>,
) -> (StageOutcome, Vec<StageReport>) {
    let mut reports: Vec<StageReport> = Vec::new();
    let mut changed = false;
    let mut stop: Option<StageOutcome> = None;
    for ((stage, planned), selected) in stages.iter().zip(plans).zip(selected) {
        if !selected {
            reports.push(StageReport::not_selected(stage));
            continue;
        }
        if stop.is_some() {
            reports.push(StageReport::not_run(stage));
            continue;
        }
        let report = match apply_stage(req, build, stage, planned, changed).await {
            Ok(r) => r,
            Err(e) => StageReport::failed(stage, e.to_string()),
        };
        match report.outcome {
            StageOutcome::Failed | StageOutcome::Refused => stop = Some(report.outcome),
            StageOutcome::Noop => {}
            _ => changed = true,
        }
        reports.push(report);
    }
    (stop.unwrap_or_else(|| overall(&reports)), reports)
}

/// Applies one stage; re-plans it first when an earlier stage of this run changed anything,
/// since its plan was made before that.
async fn apply_stage(
    req: &RunRequest,
    build: &BuildVars,
    stage: &Stage,
    planned: Option<Planned>,
    replan: bool,
) -> Result<StageReport, StageError> {
    let planned = match planned {
        Some(p) if !replan && !matches!(p.work, Work::Deferred { .. }) => p,
        _ => plan_stage(req, &build.buildid, stage, &Overlay::new()).await?,
    };
    match planned.work {
        Work::Push(pushes) => apply_pushes(req, &build.buildid, stage, pushes).await,
        Work::Tags(works) => {
            let mut reports = Vec::new();
            for w in works {
                let stats = write_tags(req, stage, &w).await?;
                reports.push((w, stats));
            }
            Ok(report::from_tags(
                stage,
                reports.iter().map(|(w, s)| (w, Some(s))),
                vec![],
            ))
        }
        Work::Copy(c) => {
            let targets = c.targets.clone();
            let (from, want) = (c.from.clone(), c.want.clone());
            let referrers = c.referrers_report();
            let stats = copy::apply(*c).await?;
            Ok(
                report::from_copy(stage, &from, &want, &targets, Some(stats), vec![])
                    .with_referrers(referrers),
            )
        }
        Work::Command(c) => apply_command(req, build, stage, c).await,
        Work::Delete(d) => {
            if let Some(why) = &d.refusal {
                return Ok(StageReport::refused(stage, why.clone()).with_deletes(d.steps.clone()));
            }
            let applied = delete::apply(*d).await?;
            Ok(report::from_deletes(
                stage,
                applied.steps,
                applied.refusal,
                true,
            ))
        }
        Work::Blocked(why) => Ok(StageReport::refused(stage, why)),
        Work::Deferred { why, .. } => Ok(StageReport::failed(stage, why)),
    }
}

/// A container-manifest stage: the push to each repository in order, the record's own
/// first. A later one is planned again once an earlier one changed something: its record
/// then lands in `additional-images`.
async fn apply_pushes(
    req: &RunRequest,
    build_id: &str,
    stage: &Stage,
    pushes: Vec<push::Prepared>,
) -> Result<StageReport, StageError> {
    let mut done = Vec::new();
    let mut changed = false;
    for prepared in pushes {
        let prepared = if changed {
            let repo = prepared.req.repo.clone();
            push::prepare(&push_request(req, build_id, stage, &repo)).await?
        } else {
            prepared
        };
        let report = prepared.apply().await?;
        changed |= report.outcome != Outcome::Noop;
        let stop = report.outcome == Outcome::Refused;
        done.push(report);
        if stop {
            break;
        }
    }
    Ok(StageReport::from_pushes(stage, done, vec![]))
}

/// A command stage: each invocation whose `done-when` did not hold when the stage was
/// planned, run and checked; the first that fails stops the stage.
async fn apply_command(
    req: &RunRequest,
    build: &BuildVars,
    stage: &Stage,
    work: stage::CommandWork,
) -> Result<StageReport, StageError> {
    let StageKind::Command {
        timeout, retries, ..
    } = &stage.kind
    else {
        return Ok(StageReport::failed(stage, "not a command stage".into()));
    };
    if work.runs.iter().any(|(_, before)| !before.holds) {
        // The program may write meta.json under coreos-assembler's lock, which never breaks a
        // lock before its lifetime (52 weeks) is out: clear any a dead process left first.
        let metas: Vec<_> = build.metas.iter().map(|(_, path)| path.clone()).collect();
        command::clear_stale_locks(metas).await;
    }
    let mut runs = Vec::new();
    let mut failure = None;
    // `before` is fresh: the stage was planned just now, or nothing has changed since the
    // release was planned (see apply_stage), so a check program is not run twice.
    for (inv, before) in work.runs {
        if failure.is_some() {
            runs.push(RunReport::not_run(&inv));
            continue;
        }
        let label = command::label(&stage.name, inv.arch.as_ref());
        if before.holds {
            runs.push(RunReport::done(&inv, before));
            continue;
        }
        let ran = command::run_invocation(
            &inv,
            &stage.name,
            &req.workdir,
            *timeout,
            *retries,
            req.connect.retry_delay,
        )
        .await?;
        failure = ran
            .failure(&inv, *timeout)
            .map(|e| format!("[{label}] {e}"));
        runs.push(RunReport::ran(&inv, before, ran));
    }
    Ok(report::from_runs(stage, runs, failure, true))
}

/// Writes the tags an arch-tags plan says to write in one repository: the images they name
/// first, then each tag, then reads every written tag back.
async fn write_tags(req: &RunRequest, stage: &Stage, w: &TagsWork) -> Result<Stats, StageError> {
    let to_write: Vec<&stage::TagStep> = w
        .steps
        .iter()
        .filter(|s| s.action == TagAction::Push)
        .collect();
    let mut stats = Stats::default();
    if to_write.is_empty() {
        return Ok(stats);
    }
    let pusher = Apply {
        client: &w.client,
        repo: &w.repo,
        metajsonname: None,
        force: req.force,
        lock_timeout: req.lock_timeout,
        mount_from: &[],
    };
    let wanted: Vec<&ArchImage> = w
        .images
        .iter()
        .filter(|img| to_write.iter().any(|s| s.arch.as_ref() == Some(&img.arch)))
        .collect();
    pusher.push_images(&wanted, &mut stats).await?;
    for s in &to_write {
        let Some(img) = w.images.iter().find(|i| Some(&i.arch) == s.arch.as_ref()) else {
            continue;
        };
        tracing::info!(tag = %s.tag, digest = %s.want, stage = %stage.name, "writing tag");
        w.client
            .put_manifest(
                &w.repo.tagged(&s.tag),
                &img.image.manifest,
                &img.image.media_type,
            )
            .await?;
        stats.pushed_manifests += 1;
    }
    // Never trust a tag that has not been read back.
    for s in &to_write {
        w.client.verify(&w.repo.tagged(&s.tag), &s.want).await?;
    }
    Ok(stats)
}
