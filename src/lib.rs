//! reprise publishes multi-arch container images from coreos-assembler-style build records,
//! idempotently: it computes the index each tag should hold, reads what the registry holds,
//! and does the least work that makes them equal.
//!
//! The binary is a thin shell over [`run`]; every module owns one concept (see each module's
//! first lines).

pub mod annotations;
pub mod apply;
pub mod archive;
pub(crate) mod auth;
pub(crate) mod blocking;
pub mod builds;
pub mod cli;
pub(crate) mod desired;
pub(crate) mod failpoint;
pub mod fs;
pub mod hash;
pub mod index;
pub mod inspect;
pub mod media;
pub mod metalock;
pub(crate) mod observe;
pub mod plan;
pub mod platform;
pub mod progress;
pub mod push;
pub mod reference;
pub mod referrers;
pub mod registry;
pub mod release;
pub mod report;
pub(crate) mod runlock;
pub(crate) mod source;
pub mod store;
pub(crate) mod v2s2;

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
/// Exit status: `status --check` (or `inspect --meta`) found work pending or a mismatch.
pub const EXIT_PENDING: u8 = 4;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Push(#[from] push::Error),
    #[error(transparent)]
    Inspect(#[from] inspect::Error),
    #[error(transparent)]
    Release(#[from] release::Error),
    /// `reprise man NAME` for a command that does not exist.
    #[error("no command {0:?}")]
    NoCommand(String),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("rendering the man page: {0}")]
    Man(std::io::Error),
}

/// What a command produced.
pub enum Output {
    /// A push or its plan.
    Report(Report),
    /// `status`: the plan, and whether pending work is a failure (`--check`).
    Status {
        report: Report,
        check: bool,
    },
    /// `run`: a release of several stages.
    Release(release::Report),
    Inspection(inspect::Inspection),
    /// Generated text (completions, man page) for stdout.
    Text(Vec<u8>),
}

/// Runs one command.
pub async fn run(command: cli::Command) -> Result<Output, Error> {
    use clap::CommandFactory as _;
    match command {
        cli::Command::PushContainerManifest(args) => {
            Ok(Output::Report(push::push(&args.into_request()?).await?))
        }
        cli::Command::Run(args) => Ok(Output::Release(release::run(&args.into_request()).await?)),
        cli::Command::Status(args) => {
            let check = args.check;
            let report = push::push(&args.plan.into_request()?).await?;
            Ok(Output::Status { report, check })
        }
        cli::Command::Inspect(args) => {
            let connect = args.connect.options();
            let store = args.store.open(&connect)?;
            let meta = args
                .meta
                .zip(args.metajsonname)
                .map(|(path, key)| inspect::MetaQuery {
                    path,
                    key,
                    artifact: args.artifact,
                    store,
                });
            Ok(Output::Inspection(
                inspect::inspect(&args.reference, &connect, meta).await?,
            ))
        }
        cli::Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cli::Cli::command(), "reprise", &mut out);
            Ok(Output::Text(out))
        }
        cli::Command::Man { command } => {
            let mut cmd = cli::Cli::command();
            cmd.build();
            let page = match &command {
                None => cmd,
                Some(name) => cmd
                    .find_subcommand(name)
                    .cloned()
                    .ok_or_else(|| Error::NoCommand(name.clone()))?,
            };
            let mut out = Vec::new();
            clap_mangen::Man::new(page)
                .render(&mut out)
                .map_err(Error::Man)?;
            Ok(Output::Text(out))
        }
    }
}

/// The exit status a finished command maps to.
pub fn exit_code(output: &Output) -> u8 {
    match output {
        Output::Report(report) => report_code(report),
        Output::Status { report, check } => match report_code(report) {
            EXIT_OK if *check && report.pending() => EXIT_PENDING,
            code => code,
        },
        Output::Release(report) => match report.release.outcome {
            release::StageOutcome::Refused => EXIT_REFUSED,
            release::StageOutcome::Failed => EXIT_ERROR,
            _ if report.release.check && report.pending() => EXIT_PENDING,
            _ => EXIT_OK,
        },
        Output::Inspection(i) => match &i.meta {
            Some(m) if !m.matches => EXIT_PENDING,
            _ => EXIT_OK,
        },
        Output::Text(_) => EXIT_OK,
    }
}

fn report_code(report: &Report) -> u8 {
    match report.outcome {
        Outcome::Refused => EXIT_REFUSED,
        _ => EXIT_OK,
    }
}
