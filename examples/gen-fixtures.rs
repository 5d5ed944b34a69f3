//! Writes a deterministic coreos-assembler build tree with tiny OCI archives, using the same
//! generator as the tests (`tests/support/fixtures.rs`).
//!
//! With only `--out` it writes the demo tree checked in as `fixtures/demo`:
//!
//! ```text
//! cargo run --example gen-fixtures -- --out fixtures/demo
//! cargo run --example gen-fixtures -- --out /tmp/big --arches x86_64 --layer-size 1073741824
//! ```

#[path = "../tests/support/fixtures.rs"]
mod fixtures;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;

use fixtures::{ArchSpec, BuildSpec};

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
}

fn parse_salt_of(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(a, salt)| (a.to_owned(), salt.to_owned()))
        .ok_or_else(|| format!("{s:?} is not ARCH=SALT"))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let build = BuildSpec {
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
        ..BuildSpec::demo_with_id(&args.id)
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
