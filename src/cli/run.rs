//! `reprise run`: a whole release from one config.

use std::time::Duration;

use camino::Utf8PathBuf;
use clap::Args;

use super::{ConnectArgs, parse_seconds};
use crate::release::RunRequest;

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

    /// Where the build is read from, when not under --workdir (overrides the config's
    /// `builds-url`), and how to reach that store.
    #[command(flatten)]
    pub store: super::push::StoreArgs,

    /// Seconds to wait for another writer (e.g. a cosa command) holding a meta.json lock.
    #[arg(long, default_value = "60", value_name = "SECONDS", value_parser = parse_seconds)]
    pub lock_timeout: Duration,

    /// Plan every stage and print, for each stage and arch, whether it is done and why;
    /// change nothing (check programs of `done-when` do run).
    #[arg(long)]
    pub dry_run: bool,

    /// Plan like --dry-run and exit 4 when any stage has work to do, 0 when the release is
    /// complete.
    #[arg(long, conflicts_with = "dry_run")]
    pub check: bool,

    /// Run only these stages (comma-separated or repeated); a stage whose `needs` are not
    /// done is refused.
    #[arg(long, value_name = "NAME[,NAME]", value_delimiter = ',')]
    pub only: Vec<String>,

    /// Run this stage and the ones after it.
    #[arg(long, value_name = "NAME", conflicts_with = "only")]
    pub from: Option<String>,

    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

impl RunArgs {
    pub fn into_request(self) -> RunRequest {
        let connect = self.connect.options();
        RunRequest {
            store: self.store.options(&connect),
            builds_url: self.store.builds_url,
            builds: None,
            connect,
            config: self.config,
            workdir: self.workdir,
            build: self.build,
            force: self.force,
            dry_run: self.dry_run,
            check: self.check,
            only: self.only,
            from: self.from,
            lock_timeout: self.lock_timeout,
        }
    }
}
