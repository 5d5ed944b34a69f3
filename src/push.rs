//! `push-container-manifest` from end to end: take the request's turn on the build, read its
//! inputs (`crate::desired`), observe the tags, plan, apply, report, and write
//! `--write-digest-to-file`.
//!
//! Owns the order of those steps and the request that drives them; what each step does
//! belongs to its own module.

use camino::{Utf8Path, Utf8PathBuf};

use crate::annotations::Annotations;
use crate::apply::{self, Apply, ArchImage};
use crate::blocking::{self, TaskFailed};
use crate::builds;
use crate::desired::{self, Loaded, Target};
use crate::index;
use crate::observe;
use crate::plan::{self, Outcome, Policy};
use crate::reference::{Repository, Tag};
use crate::referrers::{self, Orphaned};
use crate::registry::{self, Client, ConnectOptions};
use crate::report::{Report, Skipped};

pub use crate::desired::{BuildInputs, Inputs, RecordKey};
pub use crate::source::ImageSource;

#[derive(Debug, Clone)]
pub struct PushRequest {
    /// Holds `builds/`; relative `--image` paths are read from here too.
    pub workdir: Utf8PathBuf,
    pub repo: Repository,
    pub tags: Vec<Tag>,
    pub inputs: Inputs,
    pub policy: Policy,
    pub write_digest_to_file: Option<Utf8PathBuf>,
    pub connect: ConnectOptions,
    pub dry_run: bool,
    /// Publish Docker schema 2 manifests and a Docker manifest list instead of OCI.
    pub v2s2: bool,
    /// Wait for another run on the same build to finish instead of failing at once.
    pub wait_lock: bool,
    /// Repositories of the same registry to mount blobs from when they hold them
    /// (`--mount-from`); those the records name are tried too.
    pub mount_from: Vec<Repository>,
    /// `--builds-url`: the build store builds are read from instead of `workdir/builds`.
    pub builds_url: Option<crate::store::BuildsUrl>,
    /// Annotations for the index (`--annotation`); none means annotations are not compared.
    pub annotations: Annotations,
}

impl PushRequest {
    /// What the inputs are published as: the part of the request reading them needs.
    pub(crate) fn target(&self) -> Target {
        Target {
            workdir: self.workdir.clone(),
            repo: self.repo.clone(),
            tags: self.tags.clone(),
            format: if self.v2s2 {
                index::Format::Docker
            } else {
                index::Format::Oci
            },
            builds_url: self.builds_url.clone(),
            annotations: self.annotations.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Builds(#[from] builds::Error),
    #[error(transparent)]
    Desired(#[from] desired::Error),
    #[error(transparent)]
    Registry(#[from] registry::Error),
    #[error(transparent)]
    Observe(#[from] observe::Error),
    #[error(transparent)]
    Apply(#[from] apply::Error),
    #[error(transparent)]
    Lock(#[from] crate::runlock::Error),
    #[error(transparent)]
    Task(#[from] TaskFailed),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error("writing {path}: {source}")]
    DigestFile {
        path: Utf8PathBuf,
        source: std::io::Error,
    },
}

/// A push worked out up to its plan: inputs read, tags observed, nothing changed yet.
/// `reprise run` prepares every stage before it applies the first one.
pub struct Prepared {
    pub req: PushRequest,
    pub desired: plan::Desired,
    pub images: Vec<ArchImage>,
    /// Arches of the build left out (an artifact some arches do not have).
    pub skipped: Vec<Skipped>,
    pub client: Client,
    pub plan: Result<plan::Plan, plan::Refusal>,
    /// Referrers of what the tags to be replaced hold, which stay with the old digest.
    pub orphans: Vec<Orphaned>,
}

/// Reads the inputs, observes the tags and plans. Sends no write request.
pub async fn prepare(req: &PushRequest) -> Result<Prepared, Error> {
    let Loaded {
        desired,
        images,
        skipped,
    } = desired::load(&req.target(), &req.inputs, &req.connect).await?;
    let client = Client::connect(&req.repo, &req.connect).await?;
    let plan = observe_and_plan(&client, req, &desired).await?;
    // Only a replacement can orphan anything, so a run that writes no tag reads nothing more.
    let orphans = match &plan {
        Ok(p) if p.pushes() => referrers::orphans(&client, &req.repo, p).await,
        _ => Vec::new(),
    };
    Ok(Prepared {
        req: req.clone(),
        desired,
        images,
        skipped,
        client,
        plan,
        orphans,
    })
}

/// Reads what the tags hold and plans against it.
async fn observe_and_plan(
    client: &Client,
    req: &PushRequest,
    desired: &plan::Desired,
) -> Result<Result<plan::Plan, plan::Refusal>, Error> {
    // The index this build alone makes: a tag that already holds it is known without
    // reading its body.
    let own = index::build_with(
        desired.format,
        desired.arches.iter().map(|a| a.entry.clone()).collect(),
        Vec::new(),
        desired.annotations.as_ref().unwrap_or(&Default::default()),
    );
    let mut observed = observe::observe(client, &req.repo, &req.tags, &own.digest).await?;
    observe::read_carry_sources(client, desired, &req.policy, &mut observed).await?;
    Ok(plan::plan(desired, &observed, &req.policy))
}

impl Prepared {
    /// The report of the plan alone: what a run would do (or why it refuses).
    pub fn planned(&self) -> Report {
        let report = match &self.plan {
            Ok(plan) => Report::new(&self.desired, plan, Outcome::Planned, None),
            Err(refusal) => Report::refused(&self.desired, refusal.clone()),
        };
        report
            .with_skipped(&self.skipped)
            .with_orphans(&self.orphans)
    }

    /// Applies the plan: uploads, pushes, verifies, records. A refusal changes nothing.
    ///
    /// Just before the tags are written they are read again, all at once: if another writer
    /// moved one since the plan, the run plans anew once (which may then refuse), and if one
    /// moved again it stops, naming the tag and what the other writer put there.
    pub async fn apply(self) -> Result<Report, Error> {
        let req = &self.req;
        let mut plan = match &self.plan {
            Ok(p) => p.clone(),
            Err(refusal) => return Ok(self.refused(refusal)),
        };
        // A read-only build store that must record fails before any registry write.
        check_records_writable(&plan, &self.images)?;
        let (metajsonname, lock_timeout) = match &req.inputs {
            Inputs::Build(b) => (
                b.metajsonname.as_ref().map(RecordKey::as_str),
                b.lock_timeout,
            ),
            // Direct images plan no records, so neither is ever used.
            Inputs::Images(_) => (None, crate::metalock::DEFAULT_TIMEOUT),
        };
        let mount_from = desired::mount_sources(&self.desired, &req.mount_from);
        let apply = Apply {
            client: &self.client,
            repo: &req.repo,
            metajsonname,
            force: req.policy.force,
            lock_timeout,
            mount_from: &mount_from,
        };
        let mut stats = apply::Stats::default();
        let moved = apply.push_content(&plan, &self.images, &mut stats).await?;
        if let Some((tag, found)) = moved.first() {
            tracing::warn!(
                "{}: another writer put {} there since the plan; planning anew",
                req.repo.tagged(tag),
                registry::found_text(found.as_ref())
            );
            plan = match observe_and_plan(&self.client, req, &self.desired).await? {
                Ok(p) => p,
                Err(refusal) => return Ok(self.refused(&refusal)),
            };
            check_records_writable(&plan, &self.images)?;
            let moved = apply.push_content(&plan, &self.images, &mut stats).await?;
            if let Some((tag, found)) = moved.into_iter().next() {
                return Err(Error::Apply(apply::Error::MovedAgain {
                    target: req.repo.tagged(&tag).to_string(),
                    found: registry::found_text(found.as_ref()),
                }));
            }
        }
        apply.publish(&plan, &self.images, &mut stats).await?;
        if let Some(path) = &req.write_digest_to_file {
            write_digest_file(path, plan.index.digest.as_str())?;
        }
        let outcome = plan.outcome();
        Ok(Report::new(&self.desired, &plan, outcome, Some(stats))
            .with_skipped(&self.skipped)
            .with_orphans(&self.orphans))
    }

    fn refused(&self, refusal: &plan::Refusal) -> Report {
        Report::refused(&self.desired, refusal.clone()).with_skipped(&self.skipped)
    }
}

pub async fn push(req: &PushRequest) -> Result<Report, Error> {
    // Held until the report is made; a dry run changes nothing and needs no turn, and
    // images named directly belong to no build.
    let _lock = match &req.inputs {
        Inputs::Build(b) if !req.dry_run => Some(lock_build(req, b).await?),
        _ => None,
    };
    let prepared = prepare(req).await?;
    let report = if req.dry_run {
        prepared.planned()
    } else {
        prepared.apply().await?
    };
    Ok(match &req.builds_url {
        Some(crate::store::BuildsUrl::Remote(store)) => Report {
            store: Some(crate::report::StoreRead {
                url: store.url().to_owned(),
                bytes_read: store.bytes_read(),
            }),
            ..report
        },
        _ => report,
    })
}

/// Takes the run lock of the build's record key (see `crate::runlock`), waiting for it if
/// asked to: pushes of other keys of the same build may run at the same time. Without a
/// record key, the whole build's.
pub async fn lock_build(
    req: &PushRequest,
    inputs: &BuildInputs,
) -> Result<crate::runlock::RunLock, Error> {
    let target = req.target();
    let (build, key) = (inputs.build.clone(), inputs.metajsonname.clone());
    let wait = req.wait_lock;
    blocking::run("taking the build's run lock", move || {
        let build_dir = desired::lock_dir(&target, &build)?;
        let scope = match &key {
            Some(key) => crate::runlock::Scope::Key(key.as_str()),
            None => crate::runlock::Scope::Build,
        };
        Ok(crate::runlock::acquire(&build_dir, scope, wait)?)
    })
    .await?
}

/// Fails before any registry write when a record the plan writes would have to go to a
/// build store that cannot take it (HTTP(S) is read-only).
fn check_records_writable(plan: &plan::Plan, images: &[ArchImage]) -> Result<(), Error> {
    for rec in plan.records_to_write() {
        let img = images.iter().find(|i| i.arch == rec.arch);
        if let Some(store) = img.and_then(|i| i.meta_store.as_ref())
            && !store.writable()
        {
            let path = img.and_then(|i| i.meta_path.as_ref());
            return Err(crate::store::Error::ReadOnly {
                url: path.map_or_else(|| store.url().to_owned(), |p| p.to_string()),
            }
            .into());
        }
    }
    Ok(())
}

fn write_digest_file(path: &Utf8Path, digest: &str) -> Result<(), Error> {
    crate::fs::write_atomic(path, digest.as_bytes()).map_err(|source| Error::DigestFile {
        path: path.to_owned(),
        source,
    })
}
