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
pub mod release;
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

/// What a command reports: one push, or a release of several stages.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(untagged)]
pub enum Done {
    Push(Box<Report>),
    Release(release::Report),
}

impl Done {
    /// The human summary, several lines, for stderr.
    pub fn human(&self) -> String {
        match self {
            Done::Push(r) => r.human(),
            Done::Release(r) => r.human(),
        }
    }
}

/// Why a command did not finish with a report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Push(#[from] push::Error),
    #[error(transparent)]
    Release(#[from] release::Error),
}

/// Runs one command and returns its report.
pub async fn run(command: cli::Command) -> Result<Done, Error> {
    Ok(match command {
        cli::Command::PushContainerManifest(args) => {
            Done::Push(Box::new(push::push(&args.into_request()).await?))
        }
        cli::Command::Run(args) => Done::Release(release::run(&args.into_request()).await?),
    })
}

/// The exit status a finished run maps to.
pub fn exit_code(done: &Done) -> u8 {
    match done {
        Done::Push(report) => match report.outcome {
            Outcome::Refused => EXIT_REFUSED,
            _ => EXIT_OK,
        },
        Done::Release(report) => match report.release.outcome {
            release::StageOutcome::Refused => EXIT_REFUSED,
            release::StageOutcome::Failed => EXIT_ERROR,
            _ => EXIT_OK,
        },
    }
}
