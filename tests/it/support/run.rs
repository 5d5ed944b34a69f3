//! Running programs from the tests: the one way to start the reprise binary that cargo built
//! for this test run, what a finished run left behind ([`Run`]), and running any other tool
//! (skopeo, openssl, curl) so that its failure shows its stderr.
//!
//! It knows nothing of registries or build trees; `env` puts a run in a test world.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// What reprise reads from its environment that a test must set on purpose, never inherit from
/// whoever runs the tests: credentials, the log filter and the crash points.
const AMBIENT: [&str; 4] = [
    "REGISTRY_AUTH_FILE",
    "RUST_LOG",
    "REPRISE_FAIL_AT",
    "REPRISE_FAIL_LOG",
];

/// reprise in `dir`, not yet started, with none of the [`AMBIENT`] variables.
pub fn reprise(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_reprise"));
    cmd.current_dir(dir);
    for var in AMBIENT {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs `cmd` and insists it succeeds; a failure shows the command's stderr.
pub fn output_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: exit {:?}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A finished reprise run: its exit code, stdout (and the JSON report in it, if any) and
/// stderr.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    /// stdout parsed as JSON; `Null` when it is not JSON (no `--json`, or an early failure).
    pub report: Value,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            report: serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Runs `cmd` (a [`reprise`] command) to the end.
    pub fn of(cmd: &mut Command) -> Run {
        Run::from(cmd.output().expect("run reprise"))
    }

    /// Asserts the run succeeded, showing its stderr if not.
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "reprise failed:\n{}", self.stderr);
        self
    }

    pub fn outcome(&self) -> &str {
        self.report["outcome"].as_str().unwrap_or("<none>")
    }

    pub fn index_digest(&self) -> String {
        self.report["index_digest"]
            .as_str()
            .expect("index_digest")
            .to_owned()
    }
}
