//! Named crash points between the steps of a run that change state, for crash-safety tests.
//!
//! Compiled in only with the `fail-points` feature. With it, a run whose
//! `REPRISE_FAIL_AT` names a point aborts the process there (no unwinding, no destructors:
//! as close to `kill -9` as a process can do to itself), and every point reached is appended
//! to the file `REPRISE_FAIL_LOG` names, so a test can enumerate them. Without the feature,
//! [`hit`] is an empty inline function.

/// Marks the point `name` (e.g. `after-manifest:x86_64`).
#[cfg(feature = "fail-points")]
pub fn hit(name: &str) {
    use std::io::Write as _;
    if let Some(log) = std::env::var_os("REPRISE_FAIL_LOG")
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
    {
        let _ = writeln!(f, "{name}");
    }
    if std::env::var("REPRISE_FAIL_AT").is_ok_and(|at| at == name) {
        eprintln!("reprise: fail point {name}: aborting");
        std::process::abort();
    }
}

#[cfg(not(feature = "fail-points"))]
#[inline(always)]
pub fn hit(_name: &str) {}
