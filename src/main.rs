use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use reprise::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let json = cli.command.json();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("reprise: cannot start the async runtime: {e}");
            return ExitCode::from(reprise::EXIT_ERROR);
        }
    };
    match runtime.block_on(reprise::run(cli.command)) {
        Ok(report) => {
            eprint!("{}", report.human());
            if json {
                let mut out = std::io::stdout().lock();
                let _ = serde_json::to_writer_pretty(&mut out, &report);
                let _ = writeln!(out);
            }
            ExitCode::from(reprise::exit_code(&report))
        }
        Err(e) => {
            eprintln!("reprise: error: {e}");
            ExitCode::from(reprise::EXIT_ERROR)
        }
    }
}

/// Logs go to stderr; stdout is for data. The HTTP stack stays quiet below -vvv so its
/// request dumps never reach a log by accident.
fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let default = format!("reprise={level},oci_client=warn,reqwest=warn,hyper=warn,warn");
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
