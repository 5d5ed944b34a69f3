//! `push-container-manifest` from end to end: read the build's records and archives
//! (inputs), work out the desired index, observe the tags, plan, apply, report.

use camino::{Utf8Path, Utf8PathBuf};

use crate::apply::{self, Apply, ArchImage};
use crate::archive::{self, Archive};
use crate::builds::{self, BuildsDir, Meta};
use crate::index::{self, Entry};
use crate::observe;
use crate::plan::{self, DesiredArch, Outcome, Policy};
use crate::platform::Arch;
use crate::reference::{Repository, Tag};
use crate::registry::{self, Client, ConnectOptions};
use crate::report::Report;

#[derive(Debug, Clone)]
pub struct PushRequest {
    pub workdir: Utf8PathBuf,
    pub repo: Repository,
    pub tags: Vec<Tag>,
    pub artifact: String,
    pub metajsonname: String,
    pub build: String,
    pub arches: Vec<Arch>,
    pub policy: Policy,
    pub write_digest_to_file: Option<Utf8PathBuf>,
    pub connect: ConnectOptions,
    pub dry_run: bool,
    /// Publish Docker schema 2 manifests and a Docker manifest list instead of OCI.
    pub v2s2: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Builds(#[from] builds::Error),
    #[error(transparent)]
    Archive(#[from] archive::Error),
    #[error(transparent)]
    Registry(#[from] registry::Error),
    #[error(transparent)]
    Observe(#[from] observe::Error),
    #[error(transparent)]
    Apply(#[from] apply::Error),
    #[error("{0}")]
    Input(String),
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
    pub client: Client,
    pub plan: Result<plan::Plan, plan::Refusal>,
}

/// Reads the inputs, observes the tags and plans. Sends no write request.
pub async fn prepare(req: &PushRequest) -> Result<Prepared, Error> {
    let loaded = {
        let req = req.clone();
        tokio::task::spawn_blocking(move || load_inputs(&req))
            .await
            .map_err(|e| Error::Input(e.to_string()))??
    };
    let (desired, images) = loaded;
    let own = index::build(desired.arches.iter().map(|a| a.entry.clone()).collect());

    let client = Client::new(&req.repo, &req.connect)?;
    let observed = observe::observe(&client, &req.repo, &req.tags, &own.digest).await?;
    let plan = plan::plan(&desired, &observed, &req.policy);
    Ok(Prepared {
        req: req.clone(),
        desired,
        images,
        client,
        plan,
    })
}

impl Prepared {
    /// The report of the plan alone: what a run would do (or why it refuses).
    pub fn planned(&self) -> Report {
        match &self.plan {
            Ok(plan) => Report::new(&self.req, &self.desired, plan, Outcome::Planned, None),
            Err(refusal) => Report::refused(&self.req, &self.desired, refusal.clone()),
        }
    }

    /// Applies the plan: uploads, pushes, verifies, records. A refusal changes nothing.
    pub async fn apply(self) -> Result<Report, Error> {
        let req = &self.req;
        let plan = match &self.plan {
            Ok(p) => p,
            Err(refusal) => return Ok(Report::refused(req, &self.desired, refusal.clone())),
        };
        let outcome = plan.outcome();
        let stats = Apply {
            client: &self.client,
            repo: &req.repo,
            metajsonname: &req.metajsonname,
            force: req.policy.force,
        }
        .run(plan, &self.images)
        .await?;
        if let Some(path) = &req.write_digest_to_file {
            write_digest_file(path, plan.index.digest.as_str())?;
        }
        Ok(Report::new(req, &self.desired, plan, outcome, Some(stats)))
    }
}

pub async fn push(req: &PushRequest) -> Result<Report, Error> {
    let prepared = prepare(req).await?;
    if req.dry_run {
        return Ok(prepared.planned());
    }
    prepared.apply().await
}

fn write_digest_file(path: &Utf8Path, digest: &str) -> Result<(), Error> {
    builds::write_atomic(path, digest.as_bytes()).map_err(|source| Error::DigestFile {
        path: path.to_owned(),
        source,
    })
}

/// Reads builds.json, each selected arch's meta.json and the headers and JSON documents of
/// its archive. Never reads a layer.
fn load_inputs(req: &PushRequest) -> Result<(plan::Desired, Vec<ArchImage>), Error> {
    let dir = BuildsDir::load(&req.workdir)?;
    let build = dir.find(&req.build)?;
    let arches = if req.arches.is_empty() {
        build.arches.clone()
    } else {
        for a in &req.arches {
            if !build.arches.contains(a) {
                return Err(Error::Input(format!(
                    "requested architecture {a} is not in build {} (it has {})",
                    build.id,
                    build
                        .arches
                        .iter()
                        .map(Arch::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        req.arches.clone()
    };
    let mut desired_arches = Vec::new();
    let mut images = Vec::new();
    for arch in arches {
        let meta_path = dir.arch_dir(build, &arch).join("meta.json");
        let meta = Meta::load(meta_path.clone())?;
        let artifact = meta.artifact(&req.artifact)?;
        let probe = builds::Record {
            image: req.repo.clone(),
            digest: crate::reference::Digest::of(b""),
            manifest_list_digest: crate::reference::Digest::of(b""),
            tags: req.tags.clone(),
        };
        meta.check_record_slot(&req.metajsonname, &probe)?;
        let actual_size = std::fs::metadata(&artifact.path)
            .map_err(|e| {
                Error::Input(format!(
                    "{}: archive {} for {arch}: {e}",
                    meta_path, artifact.path
                ))
            })?
            .len();
        if let Some(size) = artifact.size
            && size != actual_size
        {
            return Err(Error::Input(format!(
                "{}: is {actual_size} bytes but {meta_path} records size {size}",
                artifact.path
            )));
        }
        let archive = Archive::open(&artifact.path)?;
        let image = archive.image()?;
        if image.platform.basearch().as_ref() != Some(&arch) {
            return Err(Error::Input(format!(
                "{}: holds a {} image, but it is the {arch} artifact",
                artifact.path, image.platform
            )));
        }
        desired_arches.push(DesiredArch {
            arch: arch.clone(),
            entry: Entry {
                platform: image.platform.clone(),
                digest: image.manifest_digest.clone(),
                size: image.manifest.len() as u64,
                media_type: image.media_type.clone(),
            },
            existing_record: meta.get(&req.metajsonname).cloned(),
        });
        images.push(ArchImage {
            arch,
            archive,
            image,
            archive_sha256: artifact.sha256,
            meta_path,
        });
    }
    Ok((
        plan::Desired {
            repo: req.repo.clone(),
            tags: req.tags.clone(),
            arches: desired_arches,
            format: if req.v2s2 {
                index::Format::Docker
            } else {
                index::Format::Oci
            },
            records: true,
        },
        images,
    ))
}
