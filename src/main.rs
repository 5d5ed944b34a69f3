use std::io::{IsTerminal as _, Write};
use std::process::ExitCode;

use reprise::Output;

fn main() -> ExitCode {
    let cli = reprise::cli::parse();
    init_logging(cli.verbose, cli.quiet);
    let (json, quiet) = (cli.json(), cli.quiet);
    reprise::progress::set_enabled(!quiet);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("reprise: cannot start the async runtime: {e}");
            return ExitCode::from(reprise::EXIT_ERROR);
        }
    };
    match runtime.block_on(reprise::run(cli.command)) {
        Ok(output) => {
            let code = reprise::exit_code(&output);
            let mut stdout = std::io::stdout().lock();
            let written = match &output {
                Output::Report(report) | Output::Status { report, .. } => {
                    if !quiet {
                        eprint!("{}", report.human());
                    }
                    json_out(json, &mut stdout, report)
                }
                Output::Release(report) => {
                    if !quiet {
                        eprint!("{}", report.human());
                    }
                    json_out(json, &mut stdout, report)
                }
                Output::Inspection(i) if json => json_out(true, &mut stdout, i),
                Output::Inspection(i) => stdout.write_all(i.table().as_bytes()),
                Output::Text(bytes) => stdout.write_all(bytes),
            };
            match written.and_then(|()| stdout.flush()) {
                Ok(()) => ExitCode::from(code),
                Err(e) => {
                    eprintln!("reprise: error: writing to stdout: {e}");
                    ExitCode::from(reprise::EXIT_ERROR)
                }
            }
        }
        Err(e) => {
            eprintln!("reprise: error: {e}");
            ExitCode::from(reprise::EXIT_ERROR)
        }
    }
}

/// Writes `value` as pretty JSON and a newline when `json` is on.
fn json_out(
    json: bool,
    out: &mut impl Write,
    value: &impl serde::Serialize,
) -> std::io::Result<()> {
    if !json {
        return Ok(());
    }
    serde_json::to_writer_pretty(&mut *out, value).map_err(std::io::Error::from)?;
    writeln!(out)
}

/// Logs go to stderr; stdout is for data. The HTTP libraries stay at warn at every -v level,
/// so their request dumps reach a log only when RUST_LOG asks for them by name. The TLS
/// libraries are silent: a failed handshake is reported by reprise itself, once, with what to
/// do about it. Colour only on a terminal, never with NO_COLOR set.
fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let default = format!(
        "reprise={level},reqwest=warn,hyper=warn,\
         rustls=off,rustls_platform_verifier=off,warn"
    );
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_target(false)
        .init();
}
