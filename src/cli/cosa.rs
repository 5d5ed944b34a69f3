//! coreos-assembler's option spelling for `push-container-manifest`: cosa parses its command
//! line with Python's argparse, which takes any unique prefix of a long option, and the
//! pipelines rely on it (`--auth=FILE` for `--authfile`). Owns rewriting such prefixes into
//! full option names before clap parses; clap then sees exact names only. The other commands
//! are reprise's own and stay strict: nothing here touches them.
//!
//! clap's `infer_long_args` is not used, for two reasons. It reports an ambiguous prefix as an
//! unknown argument without naming the candidates. And reprise has options cosa does not
//! (`--retry-times`, `--tls-verify`, `--workdir`, `--verbose`, `--missing-arch`, ...), which
//! would make prefixes ambiguous that are unique among cosa's options (`--r`, `--t`, `--w`,
//! `--v`, `--m`) and so break a command line that works with cosa. Here a prefix that is
//! unique among cosa's options always means cosa's option, whatever reprise adds later; any
//! other prefix must be unique among reprise's options of the command, and an ambiguous one
//! is a usage error naming every candidate.

use std::ffi::OsString;

/// The command that takes cosa's spellings.
pub const COMMAND: &str = "push-container-manifest";

/// Every long option of `cosa push-container-manifest` (its `parse_args`), `--help` included.
pub const COSA_OPTIONS: [&str; 12] = [
    "repo",
    "tag",
    "authfile",
    "v2s2",
    "force",
    "write-digest-to-file",
    "image",
    "artifact",
    "build",
    "arch",
    "metajsonname",
    "help",
];

/// What a long option as typed names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// One option, by its full name.
    Option(String),
    /// A prefix of several options, none of which it names exactly.
    Ambiguous(Vec<String>),
    /// No option starts with it; left for clap to report.
    Unknown,
}

/// How argparse reads `--typed`, with cosa's options taking precedence: an exact name, else
/// the one cosa option it is a prefix of, else the one option of `options` it is a prefix of.
pub fn resolve(typed: &str, options: &[&str]) -> Resolved {
    if options.contains(&typed) {
        return Resolved::Option(typed.to_owned());
    }
    let starting = |set: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = set
            .iter()
            .filter(|o| o.starts_with(typed))
            .map(|o| (*o).to_owned())
            .collect();
        v.sort();
        v.dedup();
        v
    };
    // Only cosa options reprise really has can be chosen; a test holds that it has them all.
    let cosa: Vec<&str> = COSA_OPTIONS
        .iter()
        .copied()
        .filter(|o| options.contains(o))
        .collect();
    if let [one] = starting(&cosa).as_slice() {
        return Resolved::Option(one.clone());
    }
    let mut all = starting(options);
    match all.len() {
        0 => Resolved::Unknown,
        1 => Resolved::Option(all.remove(0)),
        _ => Resolved::Ambiguous(all),
    }
}

/// Rewrites the long options of a `push-container-manifest` command line to their full names
/// (`--auth=f` becomes `--authfile=f`); any other command line is returned as it is. `root` is
/// the built top-level command, for the option names and the usage in an error.
pub fn expand(args: Vec<OsString>, root: &clap::Command) -> Result<Vec<OsString>, clap::Error> {
    // The top level takes flags only (-v, -q, --help, --version), so the first word that is
    // not one is the command.
    let Some(at) = args.iter().skip(1).position(|a| {
        let s = a.to_string_lossy();
        s == "--" || !s.starts_with('-')
    }) else {
        return Ok(args);
    };
    let at = at + 1;
    if args[at].to_str() != Some(COMMAND) {
        return Ok(args);
    }
    let Some(sub) = root.find_subcommand(COMMAND) else {
        return Ok(args);
    };
    let names: Vec<&str> = sub
        .get_arguments()
        .flat_map(|a| {
            let aliases = a.get_all_aliases().unwrap_or_default();
            a.get_long().into_iter().chain(aliases)
        })
        .collect();

    let mut out: Vec<OsString> = args[..=at].to_vec();
    let mut rest = args[at + 1..].iter();
    for arg in rest.by_ref() {
        let Some(long) = arg.to_str().and_then(|s| s.strip_prefix("--")) else {
            out.push(arg.clone());
            continue;
        };
        if long.is_empty() {
            // `--` ends the options; everything after it is passed on as it is.
            out.push(arg.clone());
            break;
        }
        let (typed, value) = match long.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (long, None),
        };
        match resolve(typed, &names) {
            Resolved::Option(name) => {
                let mut full = OsString::from(format!("--{name}"));
                if let Some(value) = value {
                    full.push("=");
                    full.push(value);
                }
                out.push(full);
            }
            Resolved::Ambiguous(candidates) => {
                let msg = format!(
                    "option --{typed} is ambiguous: it could be {}; spell more of it",
                    either(&candidates)
                );
                let mut sub = sub.clone();
                return Err(sub.error(clap::error::ErrorKind::UnknownArgument, msg));
            }
            Resolved::Unknown => out.push(arg.clone()),
        }
    }
    out.extend(rest.cloned());
    Ok(out)
}

/// `--a, --b or --c`.
fn either(names: &[String]) -> String {
    let listed: Vec<String> = names.iter().map(|n| format!("--{n}")).collect();
    match listed.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => listed.join(""),
    }
}
