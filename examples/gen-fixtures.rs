//! Writes a deterministic coreos-assembler build tree with tiny OCI archives, using the same
//! generator as the tests (the `reprise-fixtures` crate, `crates/fixtures`).
//!
//! With only `--out` it writes the demo tree checked in as `fixtures/demo`:
//!
//! ```text
//! cargo run --example gen-fixtures -- --out fixtures/demo
//! cargo run --example gen-fixtures -- --out /tmp/big --arches x86_64 --layer-size 1073741824
//! cargo run --example gen-fixtures -- --out /tmp/cosa --encapsulated   # 64 layers, ostree labels
//! ```

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;

use reprise_fixtures::{self as fixtures, ArchSpec, BuildSpec, TarOrder};

#[derive(Parser)]
#[command(about = "Write a deterministic cosa build tree with tiny OCI archives")]
struct Args {
    /// Directory to write `builds/` into.
    #[arg(long)]
    out: PathBuf,
    /// Build id.
    #[arg(long, default_value = fixtures::DEMO_ID)]
    id: String,
    /// ostree-version; defaults to the build id, as on FCOS.
    #[arg(long)]
    version: Option<String>,
    /// cosa basearches, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = fixtures::DEMO_ARCHES.map(String::from))]
    arches: Vec<String>,
    /// Payload bytes in each arch-specific layer.
    #[arg(long, default_value_t = fixtures::DEMO_LAYER_SIZE)]
    layer_size: u64,
    /// Salt for every arch's own layer.
    #[arg(long, default_value = fixtures::DEMO_SALT)]
    salt: String,
    /// A different salt for one arch (ARCH=SALT), e.g. to change only that arch's layer.
    #[arg(long = "salt-of", value_name = "ARCH=SALT", value_parser = parse_salt_of)]
    salt_of: Vec<(String, String)>,
    /// Put the build in front of an existing builds.json instead of writing a new one.
    #[arg(long)]
    add: bool,
    /// Shape the archives like rpm-ostree's `ostree container encapsulate` output: 64 layers,
    /// the ostree labels, containers/image's tar order (each can still be set on its own).
    #[arg(long)]
    encapsulated: bool,
    /// Layers per image (at least 2: the shared base, chunks, the arch layer).
    #[arg(long)]
    layers: Option<usize>,
    /// Write plain tar layers instead of gzip.
    #[arg(long)]
    no_gzip: bool,
    /// Add the labels `ostree container encapsulate` sets (ostree.commit, ostree.bootable, ...).
    #[arg(long)]
    ostree_labels: bool,
    /// One more config label (KEY=VALUE, repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Tar entries in path order, blobs first, as containers/image writes an oci-archive.
    #[arg(long)]
    lexical: bool,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

fn parse_salt_of(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(a, salt)| (a.to_owned(), salt.to_owned()))
        .ok_or_else(|| format!("{s:?} is not ARCH=SALT"))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let shape = if args.encapsulated {
        BuildSpec::encapsulated(&args.id)
    } else {
        BuildSpec::demo_with_id(&args.id)
    };
    let build = BuildSpec {
        layers: args.layers.unwrap_or(shape.layers),
        gzip: !args.no_gzip,
        ostree_labels: args.ostree_labels || shape.ostree_labels,
        labels: args.labels,
        tar_order: if args.lexical {
            TarOrder::Lexical
        } else {
            shape.tar_order
        },
        version: args.version.unwrap_or_else(|| args.id.clone()),
        arches: args
            .arches
            .iter()
            .map(|arch| ArchSpec {
                arch: arch.clone(),
                salt: args
                    .salt_of
                    .iter()
                    .find(|(a, _)| a == arch)
                    .map_or_else(|| args.salt.clone(), |(_, s)| s.clone()),
                layer_size: args.layer_size,
            })
            .collect(),
        ..shape
    };
    let written = if args.add {
        fixtures::add_build(&args.out, &build)
    } else {
        fixtures::write_tree(&args.out, std::slice::from_ref(&build))
    }
    .with_context(|| format!("writing build {} under {}", build.id, args.out.display()))?;
    for arch in written {
        println!(
            "{} {:<8} {} {:>12} bytes {}",
            arch.build_id,
            arch.arch,
            arch.manifest_digest,
            arch.archive_size,
            arch.archive.display()
        );
    }
    Ok(())
}
