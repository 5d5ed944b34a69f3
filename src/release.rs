//! `reprise run`: a whole release from one config file.
//!
//! Owns the stages of a release and their order: read the config ([`config`]), expand its
//! templates with the build's variables, plan every stage, then apply them one by one,
//! stopping at the first that fails or is refused (planning one stage is
//! `release/stage.rs`'s). Each stage decides "done" by reading the registry (and, for
//! `container-manifest`, the records), so a rerun skips what is done.
//!
//! Stage kinds reuse the rest of reprise: `container-manifest` is exactly
//! [`push::prepare`]/[`push::Prepared::apply`]; `arch-tags` and `copy-tag` write tags that
//! must hold one given digest, decided by [`tag_step`] and written through the registry
//! client and [`apply::Apply`].
//!
//! Stages run in order, so a later stage may read a tag an earlier one writes. The plan made
//! before anything runs reads such a tag, for arch-tags and copy-tag stages, as the earlier
//! stage's plan leaves it (and says so; a container-manifest stage reads the registry as it
//! is);
//! when it comes to applying, a stage is planned again, against the registry as it then is,
//! whenever an earlier stage of the run changed something.

pub mod config;
mod report;
mod stage;
mod template;

use camino::{Utf8Path, Utf8PathBuf};

use crate::apply::{self, Apply, ArchImage, Stats};
use crate::blocking::{self, TaskFailed};
use crate::builds::{self, BuildsDir, Meta};
use crate::plan::{Outcome, Policy, TagAction};
use crate::platform::Arch;
use crate::push::{self, BuildInputs, Inputs, PushRequest, RecordKey};
use crate::reference::{Digest, Tag};
use crate::registry::{self, Client, ConnectOptions};

pub use config::{BuildVars, ConfigError, Kind, Stage, StageKind};
pub use report::{FromReport, Report, StageOutcome, StageReport, Summary, TagReport};
use stage::{Overlay, Planned, TagStep, Work, plan_stage};

/// What `reprise run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub config: Utf8PathBuf,
    pub workdir: Utf8PathBuf,
    pub build: String,
    pub connect: ConnectOptions,
    pub force: bool,
    pub dry_run: bool,
    /// How long recording waits for another writer's lock on a meta.json.
    pub lock_timeout: std::time::Duration,
}

/// Why a release did not start; once a stage has run, failures end up in the report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}: {source}")]
    Read {
        path: Utf8PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Builds(#[from] builds::Error),
    #[error("stage {stage:?}: {source}")]
    Stage { stage: String, source: StageError },
    #[error(transparent)]
    Lock(#[from] crate::runlock::Error),
    #[error(transparent)]
    Task(#[from] TaskFailed),
}

/// Why one stage could not be planned or applied.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(transparent)]
    Push(#[from] push::Error),
    #[error(transparent)]
    Registry(#[from] registry::Error),
    #[error(transparent)]
    Apply(#[from] apply::Error),
    #[error("no {arch} image was loaded for tag {tag}")]
    NoImage { arch: Arch, tag: Tag },
    #[error("{0} does not exist, so there is nothing to copy")]
    FromAbsent(String),
    #[error("{0} vanished while being copied")]
    Vanished(String),
}

/// The one rule for a tag that must hold exactly one digest (an arch's manifest, or what
/// another tag holds): up to date only when it already resolves to that digest. Compared by
/// digest, not by content: the point of these tags is that consumers pin the same digest.
pub fn tag_step(want: &Digest, have: Option<&Digest>, force: bool) -> (TagAction, &'static str) {
    match have {
        _ if force => (TagAction::Push, "--force"),
        Some(d) if d == want => (TagAction::Unchanged, "up to date"),
        Some(_) => (TagAction::Push, "holds another digest"),
        None => (TagAction::Push, "tag absent"),
    }
}

/// Runs a release: plans every stage, then (unless a dry run) applies them in order.
pub async fn run(req: &RunRequest) -> Result<Report, Error> {
    let config = read_config(&req.config).await?;
    let build = {
        let (workdir, id) = (req.workdir.clone(), req.build.clone());
        blocking::run("reading the build's records", move || {
            load_build(&workdir, &id)
        })
        .await??
    };
    // One run at a time per build, as for push-container-manifest; a dry run needs no turn.
    let _lock = if req.dry_run {
        None
    } else {
        Some(lock_build(req.workdir.join("builds").join(&build.buildid)).await?)
    };
    let stages = config::expand(&config, &build)?;
    let plans = plan_all(req, &build.buildid, &stages).await?;
    let (outcome, stages) = if req.dry_run {
        dry_run_reports(&stages, &plans)
    } else {
        apply_all(req, &build.buildid, &stages, plans).await
    };
    Ok(Report {
        release: Summary {
            config: req.config.to_string(),
            build: build.buildid,
            outcome,
            dry_run: req.dry_run,
        },
        stages,
    })
}

async fn read_config(path: &Utf8Path) -> Result<config::Config, Error> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
    Ok(config::parse(path, &text)?)
}

/// Takes the build's run lock (see [`crate::runlock`]), without waiting.
async fn lock_build(dir: Utf8PathBuf) -> Result<crate::runlock::RunLock, Error> {
    let locked = blocking::run("taking the build's run lock", move || {
        crate::runlock::acquire(&dir, crate::runlock::Scope::Build, false)
    })
    .await?;
    Ok(locked?)
}

/// Plans every stage before anything is written, so a bad stage stops the release early.
/// Stages after a refused one are not planned (`None`).
async fn plan_all(
    req: &RunRequest,
    build_id: &str,
    stages: &[Stage],
) -> Result<Vec<Option<Planned>>, Error> {
    let mut overlay = Overlay::new();
    let mut plans: Vec<Option<Planned>> = Vec::new();
    for stage in stages {
        if plans.iter().flatten().any(Planned::refused) {
            plans.push(None);
            continue;
        }
        let planned = plan_stage(req, build_id, stage, &overlay)
            .await
            .map_err(|source| Error::Stage {
                stage: stage.name.clone(),
                source,
            })?;
        planned.project(stage, &mut overlay);
        plans.push(Some(planned));
    }
    Ok(plans)
}

/// What a dry run reports: each stage's plan, and whether any was refused.
fn dry_run_reports(
    stages: &[Stage],
    plans: &[Option<Planned>],
) -> (StageOutcome, Vec<StageReport>) {
    let reports: Vec<StageReport> = stages
        .iter()
        .zip(plans)
        .map(|(stage, planned)| match planned {
            Some(p) => planned_report(stage, p),
            None => StageReport::not_run(stage),
        })
        .collect();
    let outcome = if reports.iter().any(|r| r.outcome == StageOutcome::Refused) {
        StageOutcome::Refused
    } else {
        StageOutcome::Planned
    };
    (outcome, reports)
}

/// Applies the stages in order; the first that fails or is refused stops the rest.
async fn apply_all(
    req: &RunRequest,
    build_id: &str,
    stages: &[Stage],
    plans: Vec<Option<Planned>>,
) -> (StageOutcome, Vec<StageReport>) {
    let mut reports: Vec<StageReport> = Vec::new();
    let mut changed = false;
    let mut stop: Option<StageOutcome> = None;
    for (stage, planned) in stages.iter().zip(plans) {
        if stop.is_some() {
            reports.push(StageReport::not_run(stage));
            continue;
        }
        let report = match apply_stage(req, build_id, stage, planned, changed).await {
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

/// The release's outcome when every stage converged: the most any stage did.
fn overall(reports: &[StageReport]) -> StageOutcome {
    let did = |o| reports.iter().any(|r| r.outcome == o);
    if did(StageOutcome::Pushed) {
        StageOutcome::Pushed
    } else if did(StageOutcome::Recorded) {
        StageOutcome::Recorded
    } else {
        StageOutcome::Noop
    }
}

/// The build's variables, from builds.json and every arch's meta.json.
fn load_build(workdir: &Utf8Path, id: &str) -> Result<BuildVars, builds::Error> {
    let dir = BuildsDir::load(workdir)?;
    let build = dir.find(id)?;
    let mut names = Vec::new();
    let mut versions = Vec::new();
    for arch in &build.arches {
        let meta = Meta::load(dir.arch_dir(build, arch).join("meta.json"))?;
        names.push(meta.str("name").map(str::to_owned));
        versions.push(meta.str("ostree-version").map(str::to_owned));
    }
    // Only a value every arch agrees on names the build.
    let agreed = |vals: Vec<Option<String>>| {
        let first = vals.first().cloned().flatten()?;
        vals.iter()
            .all(|v| v.as_deref() == Some(first.as_str()))
            .then_some(first)
    };
    Ok(BuildVars {
        buildid: build.id.clone(),
        arches: build.arches.clone(),
        name: agreed(names),
        version: agreed(versions),
    })
}

fn push_request(req: &RunRequest, build_id: &str, stage: &Stage) -> PushRequest {
    let mut inputs = BuildInputs {
        build: build_id.to_owned(),
        artifact: String::new(),
        // Only a container-manifest stage records; arch-tags reads the build's images only.
        metajsonname: None,
        arches: vec![],
        lock_timeout: req.lock_timeout,
    };
    let mut push = PushRequest {
        workdir: req.workdir.clone(),
        repo: stage.repo.clone(),
        tags: vec![],
        inputs: Inputs::Images(vec![]),
        policy: Policy {
            force: req.force,
            ..Policy::default()
        },
        write_digest_to_file: None,
        connect: req.connect.clone(),
        dry_run: req.dry_run,
        v2s2: false,
        wait_lock: false,
        mount_from: vec![],
        annotations: Default::default(),
    };
    match &stage.kind {
        StageKind::ContainerManifest {
            artifact,
            metajsonname,
            tags,
            arches,
            missing_arch,
            v2s2,
            annotations,
        } => {
            inputs.artifact = artifact.clone();
            inputs.metajsonname = Some(RecordKey::new(metajsonname.clone()));
            inputs.arches = arches.clone();
            push.tags = tags.clone();
            push.policy.missing_arch = *missing_arch;
            push.v2s2 = *v2s2;
            push.annotations = annotations.clone();
        }
        StageKind::ArchTags {
            artifact, arches, ..
        } => {
            inputs.artifact = artifact.clone();
            inputs.arches = arches.clone();
        }
        StageKind::CopyTag { .. } => {}
    }
    push.inputs = Inputs::Build(inputs);
    push
}

/// Applies one stage; re-plans it first when an earlier stage of this run changed anything,
/// since its plan was made before that.
async fn apply_stage(
    req: &RunRequest,
    build_id: &str,
    stage: &Stage,
    planned: Option<Planned>,
    replan: bool,
) -> Result<StageReport, StageError> {
    let planned = match planned {
        Some(p) if !replan => p,
        _ => plan_stage(req, build_id, stage, &Overlay::new()).await?,
    };
    match planned.work {
        Work::Push(prepared) => {
            let report = prepared.apply().await?;
            Ok(StageReport::from_push(stage, report, vec![]))
        }
        Work::Tags(t) => {
            let copy_of = t.source.as_ref().map(|(_, digest)| digest);
            let stats = write_tags(req, stage, &t.client, &t.steps, &t.images, copy_of).await?;
            Ok(
                StageReport::from_tags(stage, &t.steps, t.source.as_ref(), Some(stats), vec![])
                    .with_skipped(&t.skipped),
            )
        }
    }
}

/// Writes the tags a plan says to write: the images they name first (arch-tags) or the
/// manifest they copy (`copy_of`, copy-tag), then each tag, then reads every written tag back.
async fn write_tags(
    req: &RunRequest,
    stage: &Stage,
    client: &Client,
    steps: &[TagStep],
    images: &[ArchImage],
    copy_of: Option<&Digest>,
) -> Result<Stats, StageError> {
    let repo = &stage.repo;
    let to_write: Vec<&TagStep> = steps
        .iter()
        .filter(|s| s.action == TagAction::Push)
        .collect();
    let mut stats = Stats::default();
    if to_write.is_empty() {
        return Ok(stats);
    }
    let pusher = Apply {
        client,
        repo,
        metajsonname: None,
        force: req.force,
        lock_timeout: req.lock_timeout,
        mount_from: &[],
    };
    let wanted: Vec<&ArchImage> = images
        .iter()
        .filter(|img| to_write.iter().any(|s| s.arch.as_ref() == Some(&img.arch)))
        .collect();
    pusher.push_images(&wanted, &mut stats).await?;

    // copy-tag writes the source's own bytes, so the copy has the source's digest.
    let copied = match copy_of {
        Some(digest) => {
            let source = repo.digested(digest);
            let fetched = client
                .fetch_manifest(&source)
                .await?
                .ok_or_else(|| StageError::Vanished(source.to_string()))?;
            let media_type = crate::index::media_type_of(&fetched.bytes);
            Some((fetched.bytes.to_vec(), media_type))
        }
        None => None,
    };
    for s in &to_write {
        let (bytes, media_type) = match (&copied, &s.arch) {
            (Some((bytes, media_type)), _) => (bytes.as_slice(), media_type.as_str()),
            (None, Some(arch)) => match images.iter().find(|i| &i.arch == arch) {
                Some(img) => (img.image.manifest.as_slice(), img.image.media_type.as_str()),
                None => continue,
            },
            (None, None) => continue,
        };
        tracing::info!(tag = %s.tag, digest = %s.want, stage = %stage.name, "writing tag");
        client
            .put_manifest(&repo.tagged(&s.tag), bytes, media_type)
            .await?;
        stats.pushed_manifests += 1;
    }
    // Never trust a tag that has not been read back.
    for s in &to_write {
        client.verify(&repo.tagged(&s.tag), &s.want).await?;
    }
    Ok(stats)
}

fn planned_report(stage: &Stage, planned: &Planned) -> StageReport {
    match &planned.work {
        Work::Push(p) => StageReport::from_push(stage, p.planned(), planned.after.clone()),
        Work::Tags(t) => StageReport::from_tags(
            stage,
            &t.steps,
            t.source.as_ref(),
            None,
            planned.after.clone(),
        )
        .with_skipped(&t.skipped),
    }
}

impl From<Outcome> for StageOutcome {
    fn from(o: Outcome) -> StageOutcome {
        match o {
            Outcome::Noop => StageOutcome::Noop,
            Outcome::Recorded => StageOutcome::Recorded,
            Outcome::Pushed => StageOutcome::Pushed,
            Outcome::Planned => StageOutcome::Planned,
            Outcome::Refused => StageOutcome::Refused,
        }
    }
}

#[cfg(test)]
mod tests;
