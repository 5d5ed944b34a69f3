//! `reprise inspect`: what a tag or digest holds.

use camino::Utf8PathBuf;
use clap::Args;

use super::ConnectArgs;
use crate::reference::Reference;

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

    /// With --meta: the artifact the record is for (e.g. ostree). A meta.json without
    /// images.<ARTIFACT> (an artifact built for some arches only) expects no record, so it is
    /// reported as skipped rather than as a mismatch, as a push skips that arch.
    #[arg(long, value_name = "ARTIFACT", requires = "meta")]
    pub artifact: Option<String>,

    #[command(flatten)]
    pub connect: ConnectArgs,

    /// With --meta: where the meta.json is read from (--meta then names it under this URL,
    /// ID/ARCH/meta.json), and how to reach that store.
    #[command(flatten)]
    pub store: super::push::StoreArgs,

    /// Print JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn parse_reference(s: &str) -> Result<Reference, String> {
    Reference::parse(s.strip_prefix("docker://").unwrap_or(s)).map_err(|e| e.to_string())
}
