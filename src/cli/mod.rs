//! Command-line definitions (clap) and their conversion into requests: the top level and the
//! flags shared by every command that talks to a registry here, one file per command below.
//! Nothing here does any work; flags mirror `cosa push-container-manifest` where they overlap.
//!
//! `push-container-manifest` reads its command line the way cosa's argparse does (unique
//! prefixes of long options, see [`cosa`]; a single-valued option given twice takes the last
//! value), so the pipelines' command lines work unchanged. reprise's own commands (`status`,
//! `run`, `inspect`) are strict: full option names, each single-valued option at most once,
//! so a typo or a clash is an error rather than a guess.

pub mod cosa;
mod inspect;
mod push;
mod run;
#[cfg(test)]
mod tests;

pub use inspect::InspectArgs;
pub use push::{PlanArgs, PushArgs, StatusArgs};
pub use run::RunArgs;

use std::time::Duration;

use std::ffi::OsString;

use camino::Utf8PathBuf;
use clap::{Args, CommandFactory as _, Parser, Subcommand};

use crate::registry::ConnectOptions;

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

/// Parses the process's command line; on a usage error, prints it and exits 2.
pub fn parse() -> Cli {
    try_parse_from(std::env::args_os()).unwrap_or_else(|e| e.exit())
}

/// Parses `args` (the program name first), reading `push-container-manifest`'s long options
/// as cosa's argparse does.
pub fn try_parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let mut root = Cli::command();
    root.build();
    let args = cosa::expand(args.into_iter().map(Into::into).collect(), &root)?;
    let cli = Cli::try_parse_from(args)?;
    let checked = match &cli.command {
        Command::PushContainerManifest(a) => a.plan.check(),
        Command::Status(a) => a.plan.check(),
        Command::Inspect(a) => a.store.check(),
        _ => Ok(()),
    };
    if let Err(message) = checked {
        // A raw error prints as this one line, without the usage that clap adds to its own.
        return Err(clap::Error::raw(
            clap::error::ErrorKind::ArgumentConflict,
            format!("{message}\n"),
        ));
    }
    Ok(cli)
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
    #[command(
        args_override_self = true,
        after_help = "\
Examples:
  reprise push-container-manifest --repo quay.io/fedora/fedora-coreos \\
      --tag stable --tag 40 --artifact ostree --metajsonname base-oscontainer
  reprise push-container-manifest --auth=auth.json --repo=quay.io/fedora/fedora-coreos \\
      --tag=stable --artifact=ostree --metajsonname=base-oscontainer --build=latest \\
      --arch=x86_64 --arch=aarch64
  reprise push-container-manifest --repo 127.0.0.1:5000/fcos --tag stable \\
      --artifact ostree --metajsonname base-oscontainer --build latest --dry-run --json
  reprise push-container-manifest --repo quay.io/example/tools --tag latest --v2s2 \\
      --image docker://quay.io/example/tools:x86_64-6864566 \\
      --image docker://quay.io/example/tools:aarch64-6864566
  reprise push-container-manifest --repo quay.io/example/fedora-coreos --tag stable \\
      --image oci-archive://builds/40.20261101.3.0/x86_64/fcos.x86_64.ociarchive \\
      --image oci-archive://builds/40.20261101.3.0/aarch64/fcos.aarch64.ociarchive

Without --arch, an arch whose meta.json has no images.<ARTIFACT> (an artifact built for
some arches only) is skipped and reported, as coreos-assembler does; --missing-arch then
treats it like an arch the build does not have. An arch named with --arch must have it.

As with coreos-assembler, a long option may be shortened to any unique prefix (--auth for
--authfile, --meta for --metajsonname, --write-digest for --write-digest-to-file). A prefix
unique among cosa's own options always means cosa's option; an ambiguous one is an error
naming the candidates. A single-valued option given twice takes the last value.

Exit status: 0 converged, 1 error, 2 usage, 3 refused by --missing-arch."
    )]
    PushContainerManifest(PushArgs),

    /// Run a whole release from one config: plan every stage, then apply them in order,
    /// stopping at the first that fails or is refused; a rerun skips what is done.
    #[command(after_help = "\
Examples:
  reprise run --config release.toml --dry-run
  reprise run --config release.toml --build 40.20261101.3.0 --json
  reprise run --config release.toml --check || echo pending
  reprise run --config release.toml --only aws,gcp
  reprise run --config release.toml --from cleanup

Stage kinds: container-manifest, arch-tags, copy-tag (within or across registries),
command (a program, skipped when its done-when already holds) and delete-tags (refused
when a keep reference still needs the manifest). See schemas/release.schema.json.

Options are spelled in full and each single-valued option is given at most once; only
push-container-manifest also reads coreos-assembler's shortened spellings.

Exit status: 0 converged (or, with --check, nothing pending), 1 error (a stage failed), \
2 usage, 3 a stage was refused (its missing-arch policy, a keep reference, or needs not \
done), 4 --check found work pending.")]
    Run(RunArgs),

    /// Show what push-container-manifest would do for each tag and arch, changing nothing;
    /// with --check, exit 4 when anything is pending.
    #[command(after_help = "\
Examples:
  reprise status --repo quay.io/fedora/fedora-coreos --tag stable \\
      --artifact ostree --metajsonname base-oscontainer
  reprise status --check --repo quay.io/fedora/fedora-coreos --tag stable \\
      --artifact ostree --metajsonname base-oscontainer || echo drift

Options are spelled in full and each single-valued option is given at most once; only
push-container-manifest also reads coreos-assembler's shortened spellings.

Exit status: 0 nothing pending (or pending without --check), 1 error, 2 usage,
3 the push would be refused by --missing-arch, 4 --check found work pending.")]
    Status(StatusArgs),

    /// Print what a tag or digest holds: each platform's digest, size and media type.
    #[command(after_help = "\
Examples:
  reprise inspect quay.io/fedora/fedora-coreos:stable
  reprise inspect quay.io/fedora/fedora-coreos:stable --json \\
      --meta builds/latest/x86_64/meta.json --metajsonname base-oscontainer

Options are spelled in full and each single-valued option is given at most once; only
push-container-manifest also reads coreos-assembler's shortened spellings.

Exit status: 0 shown (and, with --meta, the record matches, or --artifact says none is
expected), 1 error, 2 usage, 4 --meta given and its record does not match.")]
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

    /// Verify TLS certificates (default). =false speaks plain HTTP to the registry, with no
    /// fallback either way, and checks no certificate where HTTPS remains (a token service).
    /// A registry on loopback is spoken to over plain HTTP unless this is =true or --cert-dir
    /// is given.
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

    /// How many blobs of 1 MiB or more are uploaded at once. Small requests (HEADs, smaller
    /// blobs, manifests, read-backs) go sixteen times as many at once.
    #[arg(long, default_value_t = 4, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,

    /// Blobs over twice this size are uploaded in chunks of it and resumed where the registry
    /// says it stopped after a failure; smaller ones in one request. Bytes, or with a KiB,
    /// MiB or GiB suffix.
    #[arg(long, default_value = "32MiB", value_name = "SIZE", value_parser = parse_size)]
    pub chunk_size: u64,
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
            chunk_size: self.chunk_size,
        }
    }
}

/// A positive number of bytes, optionally with a binary suffix ("256KiB", "32MiB", "1GiB").
fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => s.split_at(at),
        None => (s, ""),
    };
    let shift = match unit {
        "" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        _ => return Err(format!("{s:?}: the size's unit must be KiB, MiB or GiB")),
    };
    digits
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("{s:?} is not a usable size in bytes"))
}

/// A non-negative number of seconds, fractions allowed ("0.5").
fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("{s:?} is not a usable number of seconds"))
}
