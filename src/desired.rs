//! Inputs → Desired: reads what a push publishes (a build's records and archives, or images
//! named with `--image`) into the [`Desired`] state that [`crate::plan`] compares with the
//! registry, the images to push, and the arches a build leaves out.
//!
//! Owns what is published and from where: the build's arches and their artifacts, the
//! checks an input must pass before anything is sent (size, platform, record slot), and
//! where else a build's blobs may already be (its records' repositories, for mounts). It
//! reads only local files, archive headers and JSON documents, and for `--image docker://`
//! one manifest and config; it never reads a layer, observes a tag or writes anything.
//! The [`Desired`] type itself is the plan's input and lives in [`crate::plan`].

use std::fmt;

use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

use crate::annotations::{self, Annotations, ArchFields, BuildFields};
use crate::apply::{ArchImage, Origin};
use crate::archive::{self, Archive};
use crate::blocking::{self, TaskFailed};
use crate::builds::{self, Build, BuildsDir, Meta};
use crate::index::{self, Entry};
use crate::plan::{Desired, DesiredArch};
use crate::platform::{Arch, Platform};
use crate::reference::{Digest, Repository, Tag};
use crate::registry::{self, Client, ConnectOptions};
use crate::source::ImageSource;
use crate::store::BuildsUrl;

mod from;
pub use from::meta_at;
pub(crate) use from::{ArchMeta, BuildSource};

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
    /// The meta.json key the push is recorded under (e.g. `base-oscontainer`); `None` when
    /// the build's images are published without a record (a release's `arch-tags` stage).
    pub metajsonname: Option<RecordKey>,
    /// Only these arches; empty means every arch of the build.
    pub arches: Vec<Arch>,
    /// How long recording waits for another writer's lock on a meta.json.
    pub lock_timeout: std::time::Duration,
}

/// The meta.json key a push is recorded under (`--metajsonname`, e.g. `base-oscontainer`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordKey(String);

impl RecordKey {
    pub fn new(key: impl Into<String>) -> RecordKey {
        RecordKey(key.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An arch of the build that a run leaves out. The missing-arch policy then treats it like an
/// arch the build does not have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub arch: Arch,
    pub reason: SkipReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SkipReason {
    /// Its meta.json has no `images.<artifact>`: an artifact built for some arches only
    /// (`kubevirt`), skipped as coreos-assembler skips it when no `--arch` is given.
    NoArtifact,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NoArtifact => "no artifact",
        }
    }
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
    Task(#[from] TaskFailed),
    /// `--arch` (or a stage's `arches`) names an arch the build does not have.
    #[error("requested architecture {arch} is not in build {build} (it has {has})")]
    ArchNotInBuild {
        arch: Arch,
        build: String,
        has: String,
    },
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
    /// The archive a meta.json names cannot be read (missing, or no permission).
    #[error("{meta}: archive {path} for {arch}: {source}")]
    ArchiveUnreadable {
        meta: Utf8PathBuf,
        path: Utf8PathBuf,
        arch: Arch,
        source: std::io::Error,
    },
    /// The archive is not the size its meta.json records (truncated, or another file).
    #[error("{path}: is {actual} bytes but {meta} records size {recorded}")]
    SizeMismatch {
        path: Utf8PathBuf,
        actual: u64,
        meta: Utf8PathBuf,
        recorded: u64,
    },
    /// An arch's artifact holds another platform's image.
    #[error("{path}: holds a {platform} image, but it is the {arch} artifact")]
    WrongPlatform {
        path: Utf8PathBuf,
        platform: Platform,
        arch: Arch,
    },
    /// A `docker://` image the registry answers 404 for.
    #[error("--image {image}: not found (404)")]
    ImageNotFound { image: String },
    /// An `--image` whose platform has no coreos basearch.
    #[error("--image {image}: its platform {platform} is not one reprise publishes")]
    UnknownPlatform { image: String, platform: Platform },
    /// Two `--image`s of one platform.
    #[error(
        "--image {image} and --image {other} are both {arch}; an index holds one image per platform"
    )]
    DuplicateArch {
        image: String,
        other: String,
        arch: Arch,
    },
    /// An annotation whose value cannot be worked out from the build records.
    #[error(transparent)]
    Annotation(#[from] annotations::Error),
    /// Annotations asked for on a Docker manifest list, which cannot carry them.
    #[error("a Docker manifest list (--v2s2) cannot carry annotations; publish an OCI index")]
    AnnotationsOnDockerList,
    /// An image that cannot be published in the list's format.
    #[error("{what}: {source}; {hint}")]
    Convert {
        what: String,
        source: crate::v2s2::Error,
        hint: &'static str,
    },
}

/// What the inputs are published as, and where relative paths are read from: the part of a
/// push request the loaders need.
#[derive(Debug, Clone)]
pub struct Target {
    /// Holds `builds/`; relative `--image` paths are read from here too.
    pub workdir: Utf8PathBuf,
    pub repo: Repository,
    pub tags: Vec<Tag>,
    /// OCI, or Docker schema 2 under `--v2s2`.
    pub format: index::Format,
    /// `--builds-url`: where builds.json and the archives are read from instead of
    /// `workdir/builds`.
    pub builds_url: Option<BuildsUrl>,
    /// The annotations asked for on the index (none: not compared).
    pub annotations: Annotations,
}

/// The inputs of a push, read: what to publish, the images, and the arches left out.
pub struct Loaded {
    pub desired: Desired,
    pub images: Vec<ArchImage>,
    pub skipped: Vec<Skipped>,
}

impl Loaded {
    /// The inputs read; `build` is what the build's records say for annotation values (none
    /// for `--image`).
    fn new(
        target: &Target,
        arches: Vec<(DesiredArch, ArchImage)>,
        records: bool,
        build: Option<&BuildFields>,
    ) -> Result<Loaded, Error> {
        let (arches, images) = arches.into_iter().unzip();
        Ok(Loaded {
            desired: Desired {
                repo: target.repo.clone(),
                tags: target.tags.clone(),
                arches,
                format: target.format,
                records,
                annotations: target.annotations.expand(build)?,
            },
            images,
            skipped: Vec::new(),
        })
    }
}

/// Reads `inputs`: a build on a blocking thread, `--image` sources one after another.
pub async fn load(
    target: &Target,
    inputs: &Inputs,
    connect: &ConnectOptions,
) -> Result<Loaded, Error> {
    if target.format == index::Format::Docker && !target.annotations.is_empty() {
        return Err(Error::AnnotationsOnDockerList);
    }
    match inputs {
        Inputs::Build(build) => {
            let (target, build) = (target.clone(), build.clone());
            blocking::run("reading the build's records", move || {
                load_build(&target, &build)
            })
            .await?
        }
        Inputs::Images(sources) => load_images(target, sources, connect).await,
    }
}

/// Reads builds.json, each selected arch's meta.json and the headers and JSON documents of
/// its archive. Never reads a layer.
///
/// As coreos-assembler does: without `--arch`, an arch whose meta.json has no
/// `images.<artifact>` is skipped (and reported), so an artifact built for some arches only
/// publishes those; an arch named with `--arch` must have it. A build where no arch has it is
/// an error, since there is nothing to publish.
pub fn load_build(target: &Target, inputs: &BuildInputs) -> Result<Loaded, Error> {
    let source = BuildSource::new(&target.workdir, target.builds_url.as_ref());
    let dir = source.builds_dir()?;
    let build = dir.find(&inputs.build)?;
    let by_name = !inputs.arches.is_empty();
    let mut loaded = Vec::new();
    let mut skipped = Vec::new();
    let mut fields = BuildFields {
        buildid: build.id.clone(),
        arches: Vec::new(),
    };
    let arches = select_arches(build, &inputs.arches)?;
    for (arch, read) in arches
        .iter()
        .cloned()
        .zip(read_arches(target, inputs, &source, &dir, build, &arches))
    {
        let (meta, image) = read?;
        fields.arches.push(ArchFields::of(&meta.meta));
        match image {
            Some(both) => loaded.push(both),
            None if by_name => {
                return Err(Error::NoArtifact {
                    path: meta.meta.path,
                    artifact: inputs.artifact.clone(),
                    arch,
                });
            }
            None => {
                tracing::info!(%arch, artifact = %inputs.artifact, "skipped: no artifact");
                skipped.push(Skipped {
                    arch,
                    reason: SkipReason::NoArtifact,
                });
            }
        }
    }
    if loaded.is_empty() {
        return Err(Error::NoArtifactAnywhere {
            build: build.id.clone(),
            artifact: inputs.artifact.clone(),
            arches: crate::platform::join(&build.arches),
        });
    }
    let records = inputs.metajsonname.is_some();
    Ok(Loaded {
        skipped,
        ..Loaded::new(target, loaded, records, Some(&fields))?
    })
}

/// One arch as published and as pushed, read by [`load_arch`].
type ArchRead = (DesiredArch, ArchImage);

/// What [`load_arch`] reads of each of `arches`, with its meta.json, in their order. The
/// arches are read side by side: from a build store each costs a few round trips.
fn read_arches(
    target: &Target,
    inputs: &BuildInputs,
    source: &BuildSource,
    dir: &BuildsDir,
    build: &Build,
    arches: &[Arch],
) -> Vec<Result<(ArchMeta, Option<ArchRead>), Error>> {
    // A store's requests run on the runtime this was called from.
    let runtime = tokio::runtime::Handle::try_current().ok();
    std::thread::scope(|scope| {
        let reads: Vec<_> = arches
            .iter()
            .map(|arch| {
                let runtime = runtime.clone();
                scope.spawn(move || {
                    let _entered = runtime.as_ref().map(|r| r.enter());
                    let meta = source.meta(dir, build, arch)?;
                    let image = load_arch(target, inputs, source, &meta, arch)?;
                    Ok((meta, image))
                })
            })
            .collect();
        reads
            .into_iter()
            .map(|read| read.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// The directory the run lock of `build` is taken in: the build's directory in the working
/// directory (made if the build is read from a store and only its lock lives here).
pub fn lock_dir(target: &Target, build: &str) -> Result<Utf8PathBuf, Error> {
    if target.builds_url.is_none() {
        let dir = BuildsDir::load(&target.workdir)?;
        return Ok(dir.build_dir(dir.find(build)?));
    }
    let source = BuildSource::new(&target.workdir, target.builds_url.as_ref());
    let id = source.builds_dir()?.find(build)?.id.clone();
    let dir = target.workdir.join("builds").join(id);
    std::fs::create_dir_all(&dir).map_err(|e| builds::Error {
        path: dir.clone(),
        kind: e.into(),
    })?;
    Ok(dir)
}

/// The arches to publish: those asked for by name, each of which the build must have, or
/// else every arch of the build.
fn select_arches(build: &Build, asked: &[Arch]) -> Result<Vec<Arch>, Error> {
    if asked.is_empty() {
        return Ok(build.arches.clone());
    }
    match asked.iter().find(|a| !build.arches.contains(a)) {
        Some(a) => Err(Error::ArchNotInBuild {
            arch: a.clone(),
            build: build.id.clone(),
            has: crate::platform::join(&build.arches),
        }),
        None => Ok(asked.to_vec()),
    }
}

/// One arch of a build: its artifact's archive, checked against meta.json and opened, and
/// its current record. `None` when its meta.json has no such artifact.
fn load_arch(
    target: &Target,
    inputs: &BuildInputs,
    source: &BuildSource,
    arch_meta: &ArchMeta,
    arch: &Arch,
) -> Result<Option<ArchRead>, Error> {
    let meta = &arch_meta.meta;
    let Some(artifact) = meta.artifact(&inputs.artifact)? else {
        return Ok(None);
    };
    let existing_record = match &inputs.metajsonname {
        Some(key) => {
            // Fails before anything is pushed if the record could not be written.
            let probe = builds::Record {
                image: target.repo.clone(),
                digest: Digest::of(b""),
                manifest_list_digest: Digest::of(b""),
                tags: target.tags.clone(),
            };
            meta.check_record_slot(key.as_str(), &probe)?;
            meta.existing_record(key.as_str())?
        }
        None => None,
    };
    let len = check_size(source, meta, &artifact, arch)?;
    let (archive, image) = source.archive_and_image(&artifact.path, &artifact.sha256, len)?;
    if image.platform.basearch().as_ref() != Some(arch) {
        return Err(Error::WrongPlatform {
            path: artifact.path,
            platform: image.platform,
            arch: arch.clone(),
        });
    }
    let image = publishable(target.format, image, artifact.path.as_str())?;
    let desired = DesiredArch {
        arch: arch.clone(),
        entry: Entry::of_image(&image),
        existing_record,
    };
    let image = ArchImage {
        arch: arch.clone(),
        image,
        origin: Origin::Local {
            archive,
            sha256: Some(artifact.sha256),
        },
        meta_path: Some(meta.path.clone()),
        meta_store: arch_meta.store.clone(),
    };
    Ok(Some((desired, image)))
}

/// The archive exists and, when meta.json records a size, has it. Returns its size.
fn check_size(
    source: &BuildSource,
    meta: &Meta,
    artifact: &builds::Artifact,
    arch: &Arch,
) -> Result<u64, Error> {
    let actual = source
        .archive_len(&artifact.path)
        .map_err(|source| Error::ArchiveUnreadable {
            meta: meta.path.clone(),
            path: artifact.path.clone(),
            arch: arch.clone(),
            source,
        })?;
    match artifact.size {
        Some(recorded) if recorded != actual => Err(Error::SizeMismatch {
            path: artifact.path.clone(),
            actual,
            meta: meta.path.clone(),
            recorded,
        }),
        _ => Ok(actual),
    }
}

/// Reads each `--image` source: a local archive or layout (headers and JSON documents only),
/// or a registry image (manifest and config). The arch comes from the image's platform.
pub async fn load_images(
    target: &Target,
    sources: &[ImageSource],
    connect: &ConnectOptions,
) -> Result<Loaded, Error> {
    let mut loaded: Vec<(DesiredArch, ArchImage)> = Vec::new();
    for source in sources {
        let what = source.to_string();
        let (image, origin) = read_image(source, &target.workdir, connect).await?;
        let arch = image
            .platform
            .basearch()
            .ok_or_else(|| Error::UnknownPlatform {
                image: what.clone(),
                platform: image.platform.clone(),
            })?;
        if let Some(other) = loaded.iter().position(|(_, i)| i.arch == arch) {
            return Err(Error::DuplicateArch {
                image: what,
                other: sources[other].to_string(),
                arch,
            });
        }
        let image = publishable(target.format, image, &what)?;
        let desired = DesiredArch {
            arch: arch.clone(),
            entry: Entry::of_image(&image),
            existing_record: None,
        };
        let image = ArchImage {
            arch,
            image,
            origin,
            meta_path: None,
            meta_store: None,
        };
        loaded.push((desired, image));
    }
    Loaded::new(target, loaded, false, None)
}

/// One `--image` source's image, and where its blobs are read from.
async fn read_image(
    source: &ImageSource,
    workdir: &Utf8Path,
    connect: &ConnectOptions,
) -> Result<(archive::Image, Origin), Error> {
    match source.resolved(workdir) {
        ImageSource::OciArchive { path, name } | ImageSource::OciDir { path, name } => {
            let dir = matches!(source, ImageSource::OciDir { .. });
            let (archive, image) = blocking::run("reading an --image archive", move || {
                let archive = if dir {
                    Archive::open_dir(&path)?
                } else {
                    Archive::open(&path)?
                };
                let image = archive.image_named(name.as_deref())?;
                Ok::<_, archive::Error>((archive, image))
            })
            .await??;
            let origin = Origin::Local {
                archive,
                sha256: None,
            };
            Ok((image, origin))
        }
        ImageSource::Registry(reference) => {
            let client = Client::connect(reference.repository(), connect).await?;
            let image = crate::source::fetch_image(&client, &reference)
                .await?
                .ok_or_else(|| Error::ImageNotFound {
                    image: source.to_string(),
                })?;
            let origin = Origin::Registry {
                client,
                repo: reference.repository().clone(),
            };
            Ok((image, origin))
        }
    }
}

/// The image as it is published: in the list's format (Docker schema 2 under `--v2s2`, OCI
/// otherwise), so a list never mixes the two.
fn publishable(
    format: index::Format,
    image: archive::Image,
    what: &str,
) -> Result<archive::Image, Error> {
    crate::v2s2::convert(&image, format).map_err(|source| Error::Convert {
        what: what.to_owned(),
        source,
        hint: convert_hint(format),
    })
}

/// What to do about an image that does not convert to `format`: publish it in the other one.
fn convert_hint(format: index::Format) -> &'static str {
    match format {
        index::Format::Docker => "publish it without --v2s2",
        index::Format::Oci => "publish it with --v2s2",
    }
}

/// Where the registry may already hold a push's blobs, so they are mounted instead of
/// uploaded: `mount_from` (`--mount-from`), then every other repository the records say this
/// build was pushed to (the record's `image` and its `additional-images`). Only
/// repositories of the same registry as `desired.repo`, each once, never `desired.repo`.
pub fn mount_sources(desired: &Desired, mount_from: &[Repository]) -> Vec<Repository> {
    let recorded = desired
        .arches
        .iter()
        .filter_map(|a| a.existing_record.as_ref())
        .flat_map(builds::record_images);
    let mut out: Vec<Repository> = Vec::new();
    for repo in mount_from.iter().cloned().chain(recorded) {
        if repo != desired.repo
            && repo.registry() == desired.repo.registry()
            && !out.contains(&repo)
        {
            out.push(repo);
        }
    }
    out
}

#[cfg(test)]
mod tests;
