//! `reprise run`: a whole release from one config file.
//!
//! Owns the stages of a release and their order: read the config ([`config`]), expand its
//! templates with the build's variables, pick the stages asked for (`--only`, `--from`),
//! plan them, then apply them one by one, stopping at the first that fails or is refused.
//! Each stage decides "done" from the registry and the metadata, never from a journal of its
//! own, so a rerun skips what is done. Planning one stage is `release/stage.rs`'s, applying
//! the planned stages `release/execute.rs`'s; each kind has a file: `copy` (copy-tag, within
//! or across registries), `command` (programs and `done-when`), `delete` (delete-tags and its
//! safety checks), sharing `clients` (one registry client per host). The report is `report` (JSON) and `human` (stderr).
//!
//! `container-manifest` is exactly [`push::prepare`]/[`push::Prepared::apply`], once per
//! repository; `arch-tags` writes tags that must hold one given digest, decided by
//! [`tag_step`] and written through the registry client and [`apply::Apply`].
//!
//! Stages run in order, so a later stage may read a tag an earlier one writes. The plan made
//! before anything runs reads such a tag, for arch-tags and copy-tag stages, as the earlier
//! stage's plan leaves it (and says so; a container-manifest stage reads the registry as it
//! is); when it comes to applying, a stage is planned again, against the registry and the
//! metadata as they then are, whenever an earlier stage of the run changed something.
//!
//! A stage whose `needs` were not selected is planned (read-only) to see whether it is done;
//! if not, the stage that needs it is refused.

mod clients;
mod command;
pub mod config;
mod copy;
mod delete;
mod execute;
mod human;
mod report;
mod stage;
mod template;

use camino::{Utf8Path, Utf8PathBuf};

use crate::apply;
use crate::blocking::{self, TaskFailed};
use crate::builds;
use crate::plan::{Outcome, Policy, TagAction};
use crate::platform::Arch;
use crate::push::{self, BuildInputs, Inputs, PushRequest, RecordKey};
use crate::reference::{Digest, Repository, Tag};
use crate::registry::{self, ConnectOptions};

pub use config::{BuildVars, ConfigError, Kind, Stage, StageKind};
pub use report::{FromReport, Report, RunReport, StageOutcome, StageReport, Summary, TagReport};
use stage::{Overlay, Planned, Work, plan_stage};

/// What `reprise run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub config: Utf8PathBuf,
    pub workdir: Utf8PathBuf,
    pub build: String,
    pub connect: ConnectOptions,
    pub force: bool,
    pub dry_run: bool,
    /// `--check`: plan only (as a dry run), and say whether anything is pending.
    pub check: bool,
    /// `--only`: these stages (empty: all).
    pub only: Vec<String>,
    /// `--from`: this stage and those after it.
    pub from: Option<String>,
    /// How long recording waits for another writer's lock on a meta.json.
    pub lock_timeout: std::time::Duration,
    /// `--builds-url`: read the build from this store (overrides the config's `builds-url`).
    pub builds_url: Option<String>,
    /// How to reach a build store.
    pub store: crate::store::StoreOptions,
    /// The store opened from `builds_url` or the config's `builds-url`: [`run`] fills it in
    /// (callers leave it `None`).
    pub builds: Option<crate::store::BuildsUrl>,
}

impl RunRequest {
    fn plans_only(&self) -> bool {
        self.dry_run || self.check
    }
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
    Stage {
        stage: String,
        source: Box<StageError>,
    },
    #[error("{flag}: {config} has no stage {name:?} (it has {known})")]
    NoStage {
        flag: &'static str,
        config: Utf8PathBuf,
        name: String,
        known: String,
    },
    #[error(transparent)]
    Lock(#[from] crate::runlock::Error),
    #[error(transparent)]
    Task(#[from] TaskFailed),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error(transparent)]
    Desired(#[from] crate::desired::Error),
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
    #[error(transparent)]
    Command(#[from] command::Error),
    #[error("no {arch} image was loaded for tag {tag}")]
    NoImage { arch: Arch, tag: Tag },
    #[error("{0} does not exist, so there is nothing to copy")]
    FromAbsent(String),
    #[error("{0} vanished while being copied")]
    Vanished(String),
    #[error("copying to {target}: {message}")]
    Copy { target: String, message: String },
    #[error(transparent)]
    Referrers(#[from] crate::referrers::Error),
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

/// Runs a release: plans the selected stages, then (unless only planning) applies them in
/// order.
pub async fn run(req: &RunRequest) -> Result<Report, Error> {
    let config = read_config(&req.config).await?;
    let mut resolved = req.clone();
    resolved.builds = match req.builds_url.as_ref().or(config.builds_url.as_ref()) {
        Some(url) => Some(crate::store::BuildsUrl::open(url, &req.store)?),
        None => None,
    };
    let req = &resolved;
    let build = {
        let (workdir, id, store) = (req.workdir.clone(), req.build.clone(), req.builds.clone());
        blocking::run("reading the build's records", move || {
            load_build(&workdir, store.as_ref(), &id)
        })
        .await??
    };
    // One run at a time per build, as for push-container-manifest; a plan needs no turn.
    let _lock = if req.plans_only() {
        None
    } else {
        Some(lock_build(req.workdir.join("builds").join(&build.buildid)).await?)
    };
    let stages = config::expand(&config, &build)?;
    let selected = select(req, &stages)?;
    let plans = plan_all(req, &build.buildid, &stages, &selected).await?;
    let (outcome, stages) = if req.plans_only() {
        dry_run_reports(&stages, &selected, &plans)
    } else {
        execute::apply_all(req, &build, &stages, &selected, plans).await
    };
    Ok(Report {
        release: Summary {
            config: req.config.to_string(),
            build: build.buildid,
            outcome,
            dry_run: req.plans_only(),
            check: req.check,
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
        // A build read from a store has only its lock (and maybe its records) here.
        std::fs::create_dir_all(&dir).map_err(|source| crate::runlock::Error::Io {
            path: dir.clone(),
            source,
        })?;
        crate::runlock::acquire(&dir, crate::runlock::Scope::Build, false)
    })
    .await?;
    Ok(locked?)
}

/// Which stages run: `--only`'s, or `--from`'s and those after it, or all. A name the
/// config does not have is an error.
fn select(req: &RunRequest, stages: &[Stage]) -> Result<Vec<bool>, Error> {
    let index_of = |flag: &'static str, name: &str| {
        stages
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| Error::NoStage {
                flag,
                config: req.config.clone(),
                name: name.to_owned(),
                known: stages
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    };
    let mut selected = vec![req.only.is_empty(); stages.len()];
    for name in &req.only {
        selected[index_of("--only", name)?] = true;
    }
    if let Some(name) = &req.from {
        let first = index_of("--from", name)?;
        for (i, s) in selected.iter_mut().enumerate() {
            *s = *s && i >= first;
        }
    }
    Ok(selected)
}

/// Plans every selected stage before anything is written, so a bad stage stops the release
/// early. Stages after a refused one are not planned (`None`), nor are stages not selected.
async fn plan_all(
    req: &RunRequest,
    build_id: &str,
    stages: &[Stage],
    selected: &[bool],
) -> Result<Vec<Option<Planned>>, Error> {
    let mut overlay = Overlay::new();
    let mut plans: Vec<Option<Planned>> = Vec::new();
    for (i, stage) in stages.iter().enumerate() {
        if !selected[i] || plans.iter().flatten().any(Planned::refused) {
            plans.push(None);
            continue;
        }
        let fail = |source| Error::Stage {
            stage: stage.name.clone(),
            source: Box::new(source),
        };
        let planned = match unmet_need(req, build_id, stages, selected, stage, &overlay)
            .await
            .map_err(fail)?
        {
            Some(why) => Planned {
                work: Work::Blocked(why),
                after: vec![],
            },
            None => match plan_stage(req, build_id, stage, &overlay).await {
                Ok(p) => p,
                // What a pending command will change is not known before it runs: a stage
                // after one is planned when its turn comes.
                Err(e) => match pending_command(&stages[..i], &plans) {
                    Some(after) => Planned {
                        work: Work::Deferred {
                            after: after.clone(),
                            why: e.to_string(),
                        },
                        after: vec![after],
                    },
                    None => return Err(fail(e)),
                },
            },
        };
        planned.project(stage, &mut overlay);
        plans.push(Some(planned));
    }
    Ok(plans)
}

/// The last earlier command stage with work to do, if any.
fn pending_command(before: &[Stage], plans: &[Option<Planned>]) -> Option<String> {
    before
        .iter()
        .zip(plans)
        .rev()
        .find(|(_, p)| {
            p.as_ref()
                .is_some_and(|p| matches!(p.work, Work::Command(_)) && p.has_work())
        })
        .map(|(s, _)| s.name.clone())
}

/// Why `stage` may not run: a stage it needs is not selected and not done. A need that
/// is selected runs before it (stages run in order), so only unselected needs are planned
/// here, read-only.
async fn unmet_need(
    req: &RunRequest,
    build_id: &str,
    stages: &[Stage],
    selected: &[bool],
    stage: &Stage,
    overlay: &Overlay,
) -> Result<Option<String>, StageError> {
    for need in &stage.needs {
        let Some(i) = stages.iter().position(|s| &s.name == need) else {
            continue;
        };
        if selected[i] {
            continue;
        }
        let read_only = RunRequest {
            dry_run: true,
            force: false,
            ..req.clone()
        };
        let planned = plan_stage(&read_only, build_id, &stages[i], overlay).await?;
        if planned.has_work() {
            return Ok(Some(format!(
                "needs stage {need:?}, which is not done; run it first (--only {need}) or \
                 drop --only/--from"
            )));
        }
    }
    Ok(None)
}

/// What a dry run reports: each stage's plan, and whether any was refused.
fn dry_run_reports(
    stages: &[Stage],
    selected: &[bool],
    plans: &[Option<Planned>],
) -> (StageOutcome, Vec<StageReport>) {
    let reports: Vec<StageReport> = stages
        .iter()
        .zip(plans)
        .zip(selected)
        .map(|((stage, planned), selected)| match planned {
            Some(p) => report::planned(stage, p),
            None if !selected => StageReport::not_selected(stage),
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

/// The release's outcome when every stage converged: the most any stage did.
fn overall(reports: &[StageReport]) -> StageOutcome {
    let did = |o| reports.iter().any(|r| r.outcome == o);
    [
        StageOutcome::Pushed,
        StageOutcome::Ran,
        StageOutcome::Deleted,
        StageOutcome::Recorded,
    ]
    .into_iter()
    .find(|o| did(*o))
    .unwrap_or(StageOutcome::Noop)
}

/// The build's variables, from builds.json and every arch's meta.json (read from `store`
/// when given). Command stages use the meta.json files of the working directory: their
/// programs run there.
fn load_build(
    workdir: &Utf8Path,
    store: Option<&crate::store::BuildsUrl>,
    id: &str,
) -> Result<BuildVars, Error> {
    let source = crate::desired::BuildSource::new(workdir, store);
    let dir = source.builds_dir()?;
    let build = dir.find(id)?;
    let mut names = Vec::new();
    let mut versions = Vec::new();
    let mut metas = Vec::new();
    for arch in &build.arches {
        let meta = source.meta(&dir, build, arch)?.meta;
        names.push(meta.str("name").map(str::to_owned));
        versions.push(meta.str("ostree-version").map(str::to_owned));
        let local = workdir.join("builds").join(&build.id).join(arch.as_str());
        let path = match store {
            Some(_) => local.join("meta.json"),
            None => meta.path.clone(),
        };
        metas.push((arch.clone(), path));
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
        metas,
    })
}

/// The push a container-manifest or arch-tags stage makes in one of its repositories.
fn push_request(req: &RunRequest, build_id: &str, stage: &Stage, repo: &Repository) -> PushRequest {
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
        repo: repo.clone(),
        tags: vec![],
        inputs: Inputs::Images(vec![]),
        policy: Policy {
            force: req.force,
            ..Policy::default()
        },
        write_digest_to_file: None,
        connect: req.connect.clone(),
        dry_run: req.plans_only(),
        v2s2: false,
        wait_lock: false,
        mount_from: vec![],
        builds_url: req.builds.clone(),
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
            // The repositories before this one in the stage's list hold the same blobs by
            // now: mount from them rather than upload again.
            push.mount_from = stage
                .repos
                .iter()
                .take_while(|r| *r != repo)
                .cloned()
                .collect();
        }
        StageKind::ArchTags {
            artifact, arches, ..
        } => {
            inputs.artifact = artifact.clone();
            inputs.arches = arches.clone();
        }
        StageKind::CopyTag { .. } | StageKind::Command { .. } | StageKind::DeleteTags { .. } => {}
    }
    push.inputs = Inputs::Build(inputs);
    push
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
