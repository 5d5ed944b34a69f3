//! `push-container-manifest` from end to end: read the inputs (a build's records and
//! archives, or images named with `--image`), work out the desired index, observe the tags,
//! plan, apply, report.

use camino::{Utf8Path, Utf8PathBuf};

use crate::apply::{self, Apply, ArchImage, Origin};
use crate::archive::{self, Archive};
use crate::builds::{self, BuildsDir, Meta};
use crate::index::{self, Entry};
use crate::observe;
use crate::plan::{self, DesiredArch, Outcome, Policy};
use crate::platform::Arch;
use crate::reference::{Repository, Tag};
use crate::registry::{self, Client, ConnectOptions};
use crate::report::{Report, SkipReason, Skipped};
use crate::source::ImageSource;

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
}

/// What is published.
#[derive(Debug, Clone)]
pub enum Inputs {
    /// Each arch's artifact from a build's records, recorded back into its meta.json.
    Build(BuildInputs),
    /// Images named directly (`--image`); no build record is read or written.
    Images(Vec<ImageSource>),
}

#[derive(Debug, Clone)]
pub struct BuildInputs {
    /// A build ID, or `latest`.
    pub build: String,
    /// The artifact under `images.<artifact>` in meta.json (e.g. `ostree`).
    pub artifact: String,
    /// The meta.json key the push is recorded under (e.g. `base-oscontainer`).
    pub metajsonname: String,
    /// Only these arches; empty means every arch of the build.
    pub arches: Vec<Arch>,
    /// How long recording waits for another writer's lock on a meta.json.
    pub lock_timeout: std::time::Duration,
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
    #[error(transparent)]
    Lock(#[from] crate::runlock::Error),
    #[error("{0}")]
    Input(String),
    /// An arch asked for by name (`--arch`, a stage's `arches`) lacks the artifact.
    #[error("{path}: no artifact \"images.{artifact}\" for {arch}, which was asked for by name")]
    NoArtifact {
        path: Utf8PathBuf,
        artifact: String,
        arch: Arch,
    },
    /// No arch of the build has the artifact, so there is nothing to publish.
    #[error("build {build} has no artifact \"images.{artifact}\" for any of its arches ({arches})")]
    NoArtifactAnywhere {
        build: String,
        artifact: String,
        arches: String,
    },
    #[error("{what}: {source}; {hint}")]
    Convert {
        what: String,
        source: crate::v2s2::Error,
        hint: &'static str,
    },
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
}

/// Reads the inputs, observes the tags and plans. Sends no write request.
pub async fn prepare(req: &PushRequest) -> Result<Prepared, Error> {
    let Loaded {
        desired,
        images,
        skipped,
    } = match &req.inputs {
        Inputs::Build(build) => {
            let (req, build) = (req.clone(), build.clone());
            tokio::task::spawn_blocking(move || load_build(&req, &build))
                .await
                .map_err(|e| Error::Input(e.to_string()))??
        }
        Inputs::Images(sources) => load_images(req, sources).await?,
    };
    let own = index::build_with(
        desired.format,
        desired.arches.iter().map(|a| a.entry.clone()).collect(),
        Vec::new(),
    );

    let client = Client::connect(&req.repo, &req.connect).await?;
    let mut observed = observe::observe(&client, &req.repo, &req.tags, &own.digest).await?;
    observe::read_carry_sources(&client, &desired, &req.policy, &mut observed).await?;
    let plan = plan::plan(&desired, &observed, &req.policy);
    Ok(Prepared {
        req: req.clone(),
        desired,
        images,
        skipped,
        client,
        plan,
    })
}

impl Prepared {
    /// `--mount-from`, then every other repository the records say this build was pushed
    /// to (the record's `image` and its `additional-images`), on the same registry.
    fn mount_sources(&self) -> Vec<Repository> {
        let mut out: Vec<Repository> = Vec::new();
        let recorded = self
            .desired
            .arches
            .iter()
            .filter_map(|a| a.existing_record.as_ref());
        let named = recorded.flat_map(|rec| {
            let extra = rec
                .get("additional-images")
                .and_then(serde_json::Value::as_array)
                .into_iter()
                .flatten();
            std::iter::once(rec).chain(extra).filter_map(|e| {
                e.get("image")
                    .and_then(serde_json::Value::as_str)
                    .and_then(|s| Repository::parse(s).ok())
            })
        });
        for repo in self.req.mount_from.iter().cloned().chain(named) {
            if repo != self.req.repo
                && repo.registry() == self.req.repo.registry()
                && !out.contains(&repo)
            {
                out.push(repo);
            }
        }
        out
    }

    /// The report of the plan alone: what a run would do (or why it refuses).
    pub fn planned(&self) -> Report {
        let report = match &self.plan {
            Ok(plan) => Report::new(&self.req, &self.desired, plan, Outcome::Planned, None),
            Err(refusal) => Report::refused(&self.req, &self.desired, refusal.clone()),
        };
        report.with_skipped(&self.skipped)
    }

    /// Applies the plan: uploads, pushes, verifies, records. A refusal changes nothing.
    pub async fn apply(self) -> Result<Report, Error> {
        let req = &self.req;
        let plan = match &self.plan {
            Ok(p) => p,
            Err(refusal) => {
                return Ok(Report::refused(req, &self.desired, refusal.clone())
                    .with_skipped(&self.skipped));
            }
        };
        let outcome = plan.outcome();
        let (metajsonname, lock_timeout) = match &req.inputs {
            Inputs::Build(b) => (b.metajsonname.as_str(), b.lock_timeout),
            // Direct images plan no records, so neither is ever used.
            Inputs::Images(_) => ("", crate::metalock::DEFAULT_TIMEOUT),
        };
        let mount_from = self.mount_sources();
        let stats = Apply {
            client: &self.client,
            repo: &req.repo,
            metajsonname,
            force: req.policy.force,
            lock_timeout,
            mount_from: &mount_from,
        }
        .run(plan, &self.images)
        .await?;
        if let Some(path) = &req.write_digest_to_file {
            write_digest_file(path, plan.index.digest.as_str())?;
        }
        Ok(Report::new(req, &self.desired, plan, outcome, Some(stats)).with_skipped(&self.skipped))
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
    if req.dry_run {
        return Ok(prepared.planned());
    }
    prepared.apply().await
}

/// Takes the run lock of the build's record key (see [`crate::runlock`]), waiting for it if
/// asked to: pushes of other keys of the same build may run at the same time.
pub async fn lock_build(
    req: &PushRequest,
    inputs: &BuildInputs,
) -> Result<crate::runlock::RunLock, Error> {
    let workdir = req.workdir.clone();
    let (build, key) = (inputs.build.clone(), inputs.metajsonname.clone());
    let wait = req.wait_lock;
    tokio::task::spawn_blocking(move || {
        let dir = BuildsDir::load(&workdir)?;
        let build_dir = dir.build_dir(dir.find(&build)?);
        let scope = crate::runlock::Scope::Key(&key);
        Ok(crate::runlock::acquire(&build_dir, scope, wait)?)
    })
    .await
    .map_err(|e| Error::Input(e.to_string()))?
}

fn write_digest_file(path: &Utf8Path, digest: &str) -> Result<(), Error> {
    crate::fs::write_atomic(path, digest.as_bytes()).map_err(|source| Error::DigestFile {
        path: path.to_owned(),
        source,
    })
}

fn format_of(req: &PushRequest) -> index::Format {
    if req.v2s2 {
        index::Format::Docker
    } else {
        index::Format::Oci
    }
}

/// The image as it is published: in the list's format (Docker schema 2 under `--v2s2`, OCI
/// otherwise), so a list never mixes the two.
fn publishable(
    req: &PushRequest,
    image: archive::Image,
    what: &str,
) -> Result<archive::Image, Error> {
    crate::v2s2::convert(&image, format_of(req)).map_err(|source| Error::Convert {
        what: what.to_owned(),
        source,
        hint: if req.v2s2 {
            "publish it without --v2s2"
        } else {
            "publish it with --v2s2"
        },
    })
}

/// The inputs of a push, read: what to publish, the images, and the arches left out.
struct Loaded {
    desired: plan::Desired,
    images: Vec<ArchImage>,
    skipped: Vec<Skipped>,
}

/// Reads builds.json, each selected arch's meta.json and the headers and JSON documents of
/// its archive. Never reads a layer.
///
/// As coreos-assembler does: without `--arch`, an arch whose meta.json has no
/// `images.<artifact>` is skipped (and reported), so an artifact built for some arches only
/// publishes those; an arch named with `--arch` must have it. A build where no arch has it is
/// an error, since there is nothing to publish.
fn load_build(req: &PushRequest, inputs: &BuildInputs) -> Result<Loaded, Error> {
    let dir = BuildsDir::load(&req.workdir)?;
    let build = dir.find(&inputs.build)?;
    let by_name = !inputs.arches.is_empty();
    let arches = if !by_name {
        build.arches.clone()
    } else {
        for a in &inputs.arches {
            if !build.arches.contains(a) {
                return Err(Error::Input(format!(
                    "requested architecture {a} is not in build {} (it has {})",
                    build.id,
                    crate::platform::join(&build.arches)
                )));
            }
        }
        inputs.arches.clone()
    };
    let mut desired_arches = Vec::new();
    let mut images = Vec::new();
    let mut skipped = Vec::new();
    for arch in arches {
        let meta_path = dir.arch_dir(build, &arch).join("meta.json");
        let meta = Meta::load(meta_path.clone())?;
        let Some(artifact) = meta.artifact(&inputs.artifact)? else {
            if by_name {
                return Err(Error::NoArtifact {
                    path: meta_path,
                    artifact: inputs.artifact.clone(),
                    arch,
                });
            }
            tracing::info!(%arch, artifact = %inputs.artifact, "skipped: no artifact");
            skipped.push(Skipped {
                arch,
                reason: SkipReason::NoArtifact,
            });
            continue;
        };
        let probe = builds::Record {
            image: req.repo.clone(),
            digest: crate::reference::Digest::of(b""),
            manifest_list_digest: crate::reference::Digest::of(b""),
            tags: req.tags.clone(),
        };
        meta.check_record_slot(&inputs.metajsonname, &probe)?;
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
        let image = publishable(req, image, artifact.path.as_str())?;
        desired_arches.push(DesiredArch {
            arch: arch.clone(),
            entry: Entry::of_image(&image),
            existing_record: meta.existing_record(&inputs.metajsonname)?,
        });
        images.push(ArchImage {
            arch,
            image,
            origin: Origin::Local {
                archive,
                sha256: Some(artifact.sha256),
            },
            meta_path: Some(meta_path),
        });
    }
    if desired_arches.is_empty() {
        return Err(Error::NoArtifactAnywhere {
            build: build.id.clone(),
            artifact: inputs.artifact.clone(),
            arches: crate::platform::join(&build.arches),
        });
    }
    Ok(Loaded {
        desired: plan::Desired {
            repo: req.repo.clone(),
            tags: req.tags.clone(),
            arches: desired_arches,
            format: format_of(req),
            records: true,
        },
        images,
        skipped,
    })
}

/// Reads each `--image` source: a local archive or layout (headers and JSON documents only),
/// or a registry image (manifest and config). The arch comes from the image's platform.
async fn load_images(req: &PushRequest, sources: &[ImageSource]) -> Result<Loaded, Error> {
    let mut desired_arches: Vec<DesiredArch> = Vec::new();
    let mut images: Vec<ArchImage> = Vec::new();
    for source in sources {
        let what = source.to_string();
        let (image, origin) = match source.resolved(&req.workdir) {
            ImageSource::OciArchive { path, name } | ImageSource::OciDir { path, name } => {
                let dir = matches!(source, ImageSource::OciDir { .. });
                let (archive, image) = tokio::task::spawn_blocking(move || {
                    let archive = if dir {
                        Archive::open_dir(&path)?
                    } else {
                        Archive::open(&path)?
                    };
                    let image = archive.image_named(name.as_deref())?;
                    Ok::<_, archive::Error>((archive, image))
                })
                .await
                .map_err(|e| Error::Input(e.to_string()))??;
                let origin = Origin::Local {
                    archive,
                    sha256: None,
                };
                (image, origin)
            }
            ImageSource::Registry(reference) => {
                let client = Client::connect(reference.repository(), &req.connect).await?;
                let image = client
                    .fetch_image(&reference)
                    .await?
                    .ok_or_else(|| Error::Input(format!("--image {what}: not found (404)")))?;
                let origin = Origin::Registry {
                    client,
                    repo: reference.repository().clone(),
                };
                (image, origin)
            }
        };
        let arch = image.platform.basearch().ok_or_else(|| {
            Error::Input(format!(
                "--image {what}: its platform {} is not one reprise publishes",
                image.platform
            ))
        })?;
        if let Some(other) = images.iter().position(|i| i.arch == arch) {
            return Err(Error::Input(format!(
                "--image {what} and --image {} are both {arch}; an index holds one image per platform",
                sources[other]
            )));
        }
        let image = publishable(req, image, &what)?;
        desired_arches.push(DesiredArch {
            arch: arch.clone(),
            entry: Entry::of_image(&image),
            existing_record: None,
        });
        images.push(ArchImage {
            arch,
            image,
            origin,
            meta_path: None,
        });
    }
    Ok(Loaded {
        desired: plan::Desired {
            repo: req.repo.clone(),
            tags: req.tags.clone(),
            arches: desired_arches,
            format: format_of(req),
            records: false,
        },
        images,
        skipped: Vec::new(),
    })
}
