//! Command-line definitions (clap) and their conversion into requests. Nothing here does
//! any work; flags mirror `cosa push-container-manifest` where they overlap.

use std::time::Duration;

use camino::Utf8PathBuf;
use clap::{Args, Parser, Subcommand};

use crate::plan::{MissingArch, Policy};
use crate::platform::Arch;
use crate::push::{BuildInputs, Inputs, PushRequest};
use crate::reference::{Reference, Repository, Tag};
use crate::registry::ConnectOptions;
use crate::release::RunRequest;
use crate::source::ImageSource;

#[derive(Debug, Parser)]
#[command(
    name = "reprise",
    version,
    about = "Publish multi-arch container images from build records, idempotently",
    long_about = "reprise reads coreos-assembler build records (builds/<id>/<arch>/meta.json), \
works out the image index each tag should hold, compares it with what the registry holds, and \
does the least work that makes them equal: nothing, a meta.json update, or a push.",
    after_help = "Logs and progress go to stderr, data (--json, inspect) to stdout. RUST_LOG \
overrides -v; NO_COLOR turns colour off."
)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// No summary on stderr; only errors (and --json output on stdout).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Whether the command prints machine-readable output on stdout.
    pub fn json(&self) -> bool {
        match &self.command {
            Command::PushContainerManifest(a) => a.plan.json,
            Command::Status(a) => a.plan.json,
            Command::Run(a) => a.json,
            Command::Inspect(a) => a.json,
            Command::Completions { .. } | Command::Man { .. } => false,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Push a build's per-arch images as one multi-arch index to tags, and record it in each
    /// arch's meta.json (a drop-in for `cosa push-container-manifest`).
    #[command(after_help = "\
Examples:
  reprise push-container-manifest --repo quay.io/fedora/fedora-coreos \\
      --tag stable --tag 40 --artifact ostree --metajsonname base-oscontainer
  reprise push-container-manifest --repo 127.0.0.1:5000/fcos --tag stable \\
      --artifact ostree --metajsonname base-oscontainer --build latest --dry-run --json
  reprise push-container-manifest --repo quay.io/example/tools --tag latest --v2s2 \\
      --image docker://quay.io/example/tools:x86_64-6864566 \\
      --image oci-archive:tools-aarch64.ociarchive

Exit status: 0 converged, 1 error, 2 usage, 3 refused by --missing-arch.")]
    PushContainerManifest(PushArgs),

    /// Run a whole release from one config: plan every stage, then apply them in order,
    /// stopping at the first that fails or is refused; a rerun skips what is done.
    #[command(after_help = "\
Examples:
  reprise run --config release.toml --dry-run
  reprise run --config release.toml --build 40.20261101.3.0 --json

Exit status: 0 converged, 1 error (a stage failed), 2 usage, 3 a stage was refused by \
its missing-arch policy.")]
    Run(RunArgs),

    /// Show what push-container-manifest would do for each tag and arch, changing nothing;
    /// with --check, exit 4 when anything is pending.
    #[command(after_help = "\
Examples:
  reprise status --repo quay.io/fedora/fedora-coreos --tag stable \\
      --artifact ostree --metajsonname base-oscontainer
  reprise status --check --repo quay.io/fedora/fedora-coreos --tag stable \\
      --artifact ostree --metajsonname base-oscontainer || echo drift

Exit status: 0 nothing pending (or pending without --check), 1 error, 2 usage,
3 the push would be refused by --missing-arch, 4 --check found work pending.")]
    Status(StatusArgs),

    /// Print what a tag or digest holds: each platform's digest, size and media type.
    #[command(after_help = "\
Examples:
  reprise inspect quay.io/fedora/fedora-coreos:stable
  reprise inspect quay.io/fedora/fedora-coreos:stable --json \\
      --meta builds/latest/x86_64/meta.json --metajsonname base-oscontainer

Exit status: 0 shown (and, with --meta, the record matches), 1 error, 2 usage,
4 --meta given and its record does not match.")]
    Inspect(InspectArgs),

    /// Print a shell completion script to stdout.
    #[command(after_help = "Example:\n  reprise completions bash > /etc/bash_completion.d/reprise")]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },

    /// Print the man page (roff) of reprise or one of its commands to stdout.
    #[command(after_help = "Example:\n  reprise man push-container-manifest | man -l -")]
    Man {
        /// A command name; the top-level page when left out.
        command: Option<String>,
    },
}

/// How to reach registries; accepted by every command that talks to one.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Registry credentials (containers auth.json format). Without it: $REGISTRY_AUTH_FILE,
    /// then the container tools' usual auth files and credential helpers.
    #[arg(long, value_name = "PATH")]
    pub authfile: Option<Utf8PathBuf>,

    /// Verify TLS certificates (default). =false also allows plain HTTP. Registries on
    /// loopback are spoken to over plain HTTP unless this is given as =true or with --cert-dir.
    #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    pub tls_verify: Option<bool>,

    /// Directory of extra CA certificates (*.crt) to trust, as podman and skopeo take it.
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<Utf8PathBuf>,

    /// Seconds to keep reading a written tag back until it shows the pushed digest.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub verify_timeout: u64,

    /// Times to retry a request that failed transiently (network, 408, 429, 5xx).
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub retry_times: u32,

    /// Seconds before the first retry; doubles (with jitter) for each further one.
    #[arg(long, default_value = "1", value_name = "SECONDS", value_parser = parse_seconds)]
    pub retry_delay: Duration,

    /// How many blobs are checked for or uploaded at once.
    #[arg(long, default_value_t = 4, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
}

impl ConnectArgs {
    pub fn options(&self) -> ConnectOptions {
        ConnectOptions {
            tls_verify: self.tls_verify.unwrap_or(true),
            loopback_http: self.tls_verify.is_none() && self.cert_dir.is_none(),
            cert_dir: self.cert_dir.clone(),
            authfile: self.authfile.clone(),
            verify_timeout: Duration::from_secs(self.verify_timeout),
            retry_times: self.retry_times,
            retry_delay: self.retry_delay,
            jobs: usize::from(self.jobs),
        }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The release config: stages in order (see schemas/release.schema.json).
    #[arg(long, default_value = "release.toml", value_name = "PATH")]
    pub config: Utf8PathBuf,

    /// Build ID, or `latest` for the first entry of builds/builds.json.
    #[arg(long, default_value = "latest", value_name = "ID")]
    pub build: String,

    /// Directory holding builds/ (default: the current directory).
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub workdir: Utf8PathBuf,

    /// Write every stage's tags even when the registry already matches.
    #[arg(long)]
    pub force: bool,

    #[command(flatten)]
    pub connect: ConnectArgs,

    /// Seconds to wait for another writer (e.g. a cosa command) holding a meta.json lock.
    #[arg(long, default_value = "60", value_name = "SECONDS", value_parser = parse_seconds)]
    pub lock_timeout: Duration,

    /// Plan every stage and print the release plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

impl RunArgs {
    pub fn into_request(self) -> RunRequest {
        RunRequest {
            connect: self.connect.options(),
            config: self.config,
            workdir: self.workdir,
            build: self.build,
            force: self.force,
            dry_run: self.dry_run,
            lock_timeout: self.lock_timeout,
        }
    }
}

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
    pub connect: ConnectArgs,

    /// If another run is working on the same build, wait for it instead of failing.
    #[arg(long)]
    pub wait_lock: bool,

    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
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

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// What to read: REPO:TAG or REPO@sha256:... (a docker:// prefix is accepted).
    #[arg(value_name = "REF", value_parser = parse_reference)]
    pub reference: Reference,

    /// Also say whether this meta.json's record matches what the tag holds.
    #[arg(long, value_name = "PATH", requires = "metajsonname")]
    pub meta: Option<Utf8PathBuf>,

    /// The key of the record in --meta (e.g. base-oscontainer).
    #[arg(long, value_name = "KEY")]
    pub metajsonname: Option<String>,

    #[command(flatten)]
    pub connect: ConnectArgs,

    /// Print JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn parse_reference(s: &str) -> Result<Reference, String> {
    Reference::parse(s.strip_prefix("docker://").unwrap_or(s)).map_err(|e| e.to_string())
}

impl PushArgs {
    pub fn into_request(self) -> PushRequest {
        let mut req = self.plan.into_request();
        req.write_digest_to_file = self.write_digest_to_file;
        req.dry_run = self.dry_run;
        if let Inputs::Build(build) = &mut req.inputs {
            build.lock_timeout = self.lock_timeout;
        }
        req
    }
}

impl PlanArgs {
    /// The request this describes; it writes nothing until a caller applies it.
    pub fn into_request(self) -> PushRequest {
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
        PushRequest {
            workdir: self.workdir,
            repo: self.repo,
            tags,
            // clap guarantees exactly one of --artifact and --image, and --metajsonname
            // with --artifact.
            inputs: match self.artifact {
                Some(artifact) => Inputs::Build(BuildInputs {
                    build: self.build,
                    artifact,
                    metajsonname: self.metajsonname.unwrap_or_default(),
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
        }
    }
}

/// A non-negative number of seconds, fractions allowed ("0.5").
fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("{s:?} is not a usable number of seconds"))
}
