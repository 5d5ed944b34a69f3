//! reprise publishes multi-arch container images from coreos-assembler-style build records,
//! idempotently: it computes the index each tag should hold, reads what the registry holds,
//! and does the least work that makes them equal.
//!
//! The binary is a thin shell over [`run`]; every module owns one concept (see each module's
//! first lines).

pub mod apply;
pub mod archive;
pub mod builds;
pub mod cli;
pub mod index;
pub mod observe;
pub mod plan;
pub mod platform;
pub mod push;
pub mod reference;
pub mod registry;
pub mod report;
pub mod source;
pub mod v2s2;

use plan::Outcome;
use report::Report;

/// Exit status: converged (pushed, recorded or nothing to do).
pub const EXIT_OK: u8 = 0;
/// Exit status: an error; nothing after the failing step was done.
pub const EXIT_ERROR: u8 = 1;
/// Exit status: bad usage (clap's own code for argument errors).
pub const EXIT_USAGE: u8 = 2;
/// Exit status: the missing-arch policy refused to publish.
pub const EXIT_REFUSED: u8 = 3;

/// Runs one command and returns its report.
pub async fn run(command: cli::Command) -> Result<Report, push::Error> {
    match command {
        cli::Command::PushContainerManifest(args) => push::push(&args.into_request()).await,
    }
}

/// The exit status a finished run maps to.
pub fn exit_code(report: &Report) -> u8 {
    match report.outcome {
        Outcome::Refused => EXIT_REFUSED,
        _ => EXIT_OK,
    }
}
