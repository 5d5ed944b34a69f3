//! `push-container-manifest` and `status`: what to publish and where (shared), and what only a
//! push takes.

use std::time::Duration;

use camino::Utf8PathBuf;
use clap::Args;

use super::{ConnectArgs, parse_seconds};
use crate::annotations::{Annotation, Annotations};
use crate::plan::{MissingArch, Policy};
use crate::platform::Arch;
use crate::push::{BuildInputs, Inputs, PushRequest, RecordKey};
use crate::reference::{Repository, Tag};
use crate::source::ImageSource;
use crate::store::{BuildsUrl, StoreOptions};

/// What to publish and where: shared by push-container-manifest and status.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["artifact", "images"])))]
pub struct PlanArgs {
    /// Repository to push to: host[:port]/path.
    #[arg(long, value_name = "REPO")]
    pub repo: Repository,

    /// Tag to point at the index; repeat for several.
    #[arg(long = "tag", value_name = "TAG", required = true)]
    pub tags: Vec<Tag>,

    /// Artifact name under images.<ARTIFACT> in meta.json (e.g. ostree).
    #[arg(long, value_name = "ARTIFACT", requires = "metajsonname")]
    pub artifact: Option<String>,

    /// Key under which meta.json records the push (e.g. base-oscontainer).
    #[arg(long, value_name = "KEY")]
    pub metajsonname: Option<String>,

    /// Publish these images instead of a build's artifact (repeat, one per arch):
    /// oci-archive:PATH[:NAME], oci:DIR[:NAME] or docker://REPO:TAG|REPO@DIGEST.
    /// No meta.json is read or written.
    #[arg(long = "image", value_name = "SOURCE", conflicts_with_all = ["metajsonname", "arches"])]
    pub images: Vec<ImageSource>,

    /// Publish Docker schema 2 manifests and a Docker manifest list instead of OCI.
    #[arg(long)]
    pub v2s2: bool,

    /// An annotation on the index, KEY=VALUE; repeat for several. VALUE may name fields of
    /// the build record: {buildid}, {version} (ostree-version), {name}, {build-timestamp}
    /// (coreos-assembler.build-timestamp, the latest of the arches). With annotations, a tag
    /// whose index carries other annotations is out of date. Not with --v2s2.
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    pub annotations: Vec<Annotation>,

    /// Another repository of the same registry that may hold the blobs: they are mounted
    /// from it instead of uploaded. Repeatable; repositories the records name are tried too.
    #[arg(long = "mount-from", value_name = "REPO")]
    pub mount_from: Vec<Repository>,

    /// Build ID, or `latest` for the first entry of builds/builds.json.
    #[arg(long, default_value = "latest", value_name = "ID")]
    pub build: String,

    /// Limit to these arches (default: every arch of the build); repeat for several.
    #[arg(long = "arch", value_name = "ARCH")]
    pub arches: Vec<Arch>,

    /// Push manifests and the index to every tag even when the registry already matches.
    #[arg(long)]
    pub force: bool,

    /// What to do with arches a tag holds that this build does not provide.
    #[arg(long, value_enum, default_value_t = MissingArch::Refuse, value_name = "POLICY")]
    pub missing_arch: MissingArch,

    /// Directory holding builds/ (default: the current directory).
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub workdir: Utf8PathBuf,

    #[command(flatten)]
    pub store: StoreArgs,

    #[command(flatten)]
    pub connect: ConnectArgs,

    /// If another run is working on the same build, wait for it instead of failing.
    #[arg(long)]
    pub wait_lock: bool,

    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Where builds are read from when they are not under --workdir: a build store.
#[derive(Debug, Args, Default)]
pub struct StoreArgs {
    /// Read builds.json, meta.json and the archives from this build store instead of
    /// WORKDIR/builds, by range and only what is needed: s3://BUCKET/PATH, https://...,
    /// http://... (loopback, or with --tls-verify=false) or file:///DIR. A meta.json under
    /// WORKDIR/builds is used (and written) instead of the store's when present.
    #[arg(long, value_name = "URL")]
    pub builds_url: Option<String>,

    /// AWS config file with the credentials for s3:// (as cosa buildfetch takes it); default
    /// $AWS_CONFIG_FILE, else the AWS_* environment variables.
    #[arg(long, value_name = "PATH")]
    pub aws_config_file: Option<Utf8PathBuf>,

    /// Endpoint of an S3-compatible store (addressed path-style), e.g. http://127.0.0.1:9000.
    #[arg(long, value_name = "URL")]
    pub s3_endpoint: Option<String>,

    /// Region of the s3:// bucket (default $AWS_REGION, else us-east-1).
    #[arg(long, value_name = "REGION")]
    pub s3_region: Option<String>,
}

impl StoreArgs {
    /// Opens the store named, if any, with the registry's TLS and retry settings.
    pub fn open(
        &self,
        connect: &crate::registry::ConnectOptions,
    ) -> Result<Option<BuildsUrl>, crate::store::Error> {
        let Some(url) = &self.builds_url else {
            return Ok(None);
        };
        BuildsUrl::open(url, &self.options(connect)).map(Some)
    }

    /// The S3 flags mean something only with a store to reach (`reprise run` may name it in
    /// its config instead).
    pub fn check(&self) -> Result<(), String> {
        let given = [
            ("--aws-config-file", self.aws_config_file.is_some()),
            ("--s3-endpoint", self.s3_endpoint.is_some()),
            ("--s3-region", self.s3_region.is_some()),
        ];
        match given.iter().find(|(_, set)| *set) {
            Some((flag, _)) if self.builds_url.is_none() => {
                Err(format!("{flag} needs --builds-url (an s3:// build store)"))
            }
            _ => Ok(()),
        }
    }

    /// How to reach a store: these flags, and the registry's TLS and retry settings.
    pub fn options(&self, connect: &crate::registry::ConnectOptions) -> StoreOptions {
        StoreOptions {
            tls_verify: connect.tls_verify,
            aws_config_file: self.aws_config_file.clone(),
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            retry_times: connect.retry_times,
            retry_delay: connect.retry_delay,
        }
    }
}

#[derive(Debug, Args)]
pub struct PushArgs {
    #[command(flatten)]
    pub plan: PlanArgs,

    /// Write the index digest to this file.
    #[arg(long, value_name = "PATH")]
    pub write_digest_to_file: Option<Utf8PathBuf>,

    /// Seconds to wait for another writer (e.g. a cosa command) holding a meta.json lock.
    #[arg(long, default_value = "60", value_name = "SECONDS", value_parser = parse_seconds)]
    pub lock_timeout: Duration,

    /// Plan and print the plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub plan: PlanArgs,

    /// Exit 4 when a push or record is pending (for pipelines that gate on drift).
    #[arg(long)]
    pub check: bool,
}

impl PushArgs {
    pub fn into_request(self) -> Result<PushRequest, crate::store::Error> {
        let mut req = self.plan.into_request()?;
        req.write_digest_to_file = self.write_digest_to_file;
        req.dry_run = self.dry_run;
        if let Inputs::Build(build) = &mut req.inputs {
            build.lock_timeout = self.lock_timeout;
        }
        Ok(req)
    }
}

impl PlanArgs {
    /// What clap cannot check about these arguments: annotations fit the list's format and
    /// the inputs, each key once. The error is one line.
    pub fn check(&self) -> Result<(), String> {
        self.store.check()?;
        let annotations = Annotations::new(self.annotations.clone());
        if annotations.is_empty() {
            return Ok(());
        }
        if self.v2s2 {
            return Err(
                "--annotation cannot be used with --v2s2: a Docker manifest list has no annotations"
                    .to_owned(),
            );
        }
        if let Some(key) = annotations.duplicate_key() {
            return Err(format!("--annotation {key} is given more than once"));
        }
        if let (false, Some(a)) = (self.images.is_empty(), annotations.needing_a_build()) {
            return Err(format!(
                "--annotation {a} names a field of the build record, and --image publishes no build"
            ));
        }
        Ok(())
    }

    /// The request this describes; it writes nothing until a caller applies it. Fails only on
    /// a `--builds-url` that cannot be opened.
    pub fn into_request(self) -> Result<PushRequest, crate::store::Error> {
        // A tag or arch named twice means it once; the first mention keeps its place.
        let mut tags: Vec<Tag> = Vec::with_capacity(self.tags.len());
        for t in self.tags {
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        let mut arches: Vec<Arch> = Vec::with_capacity(self.arches.len());
        for a in self.arches {
            if !arches.contains(&a) {
                arches.push(a);
            }
        }
        let connect = self.connect.options();
        let builds_url = self.store.open(&connect)?;
        Ok(PushRequest {
            workdir: self.workdir,
            repo: self.repo,
            tags,
            // clap guarantees exactly one of --artifact and --image, and --metajsonname
            // with --artifact.
            inputs: match self.artifact {
                Some(artifact) => Inputs::Build(BuildInputs {
                    build: self.build,
                    artifact,
                    metajsonname: self.metajsonname.map(RecordKey::new),
                    arches,
                    // Only a push records; it sets its own.
                    lock_timeout: crate::metalock::DEFAULT_TIMEOUT,
                }),
                None => Inputs::Images(self.images),
            },
            policy: Policy {
                force: self.force,
                missing_arch: self.missing_arch,
            },
            write_digest_to_file: None,
            connect,
            dry_run: true,
            v2s2: self.v2s2,
            wait_lock: self.wait_lock,
            mount_from: self.mount_from,
            builds_url,
            annotations: Annotations::new(self.annotations),
        })
    }
}
