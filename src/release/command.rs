//! `command` stages: a program run once or per arch, skipped when its `done-when` already
//! holds, and trusted only when `done-when` holds after it exits 0. Owns evaluating
//! `done-when` (a meta.json pointer, a file, a check program) and running a program: argv
//! with no shell, in its own process group (a timeout kills the whole group), output
//! streamed to stderr a line at a time behind `[stage/arch]`, retried on a non-zero exit.
//!
//! No meta.json lock is held while a program runs: the program may write meta.json itself,
//! under coreos-assembler's lock. meta.json is read without a lock, since every writer
//! replaces it whole (rename).

use std::process::Stdio;
use std::time::{Duration, Instant};

use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};

use super::config::{DoneWhen, Invocation};
use crate::platform::Arch;

/// How long a program gets between SIGTERM and SIGKILL when its time is up.
const TERM_GRACE: Duration = Duration::from_secs(10);
/// How long output is still read after the program exits (a child it left behind may hold
/// the pipe open).
const DRAIN_GRACE: Duration = Duration::from_secs(5);
/// What a report quotes of a value: enough to recognise it.
const QUOTE_MAX: usize = 120;

/// Why a command stage could not decide or run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {message}")]
    Meta { path: Utf8PathBuf, message: String },
    #[error("cannot run {program:?}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

/// Whether `done-when` holds, and what it saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Predicate {
    pub holds: bool,
    /// What was read: the value at the pointer (abridged), the file, the check's exit.
    pub value: String,
}

/// Takes and lets go of the lock of each meta.json, without waiting: a lock whose holder is
/// provably gone (a dead process on this host, such as a reprise killed while recording) is
/// broken on the way, as reprise does whenever it needs one. A live holder is left alone;
/// the program will wait for it.
pub async fn clear_stale_locks(metas: Vec<Utf8PathBuf>) {
    let cleared = tokio::task::spawn_blocking(move || {
        for meta in &metas {
            if let Ok(lock) = crate::metalock::MetaLock::acquire(meta, Duration::ZERO) {
                drop(lock);
            }
        }
    })
    .await;
    if let Err(e) = cleared {
        tracing::debug!("clearing stale meta.json locks: {e}");
    }
}

/// How one attempt of a program ended.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    /// The exit status; `None` when a signal ended it.
    pub exit: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub seconds: f64,
}

impl Attempt {
    pub fn succeeded(&self) -> bool {
        self.exit == Some(0) && !self.timed_out
    }

    fn describe(&self, timeout: Option<Duration>) -> String {
        match (self.timed_out, self.exit, self.signal) {
            (true, _, _) => format!(
                "was killed after its timeout of {}",
                timeout.map_or_else(String::new, |t| format!("{t:?}"))
            ),
            (_, Some(code), _) => format!("exited with status {code}"),
            (_, None, Some(sig)) => format!("was killed by signal {sig}"),
            (_, None, None) => "ended without a status".to_owned(),
        }
    }
}

/// The label output lines and messages carry: `stage/arch`, or `stage`.
pub fn label(stage: &str, arch: Option<&Arch>) -> String {
    match arch {
        Some(a) => format!("{stage}/{a}"),
        None => stage.to_owned(),
    }
}

/// Evaluates `done-when` as things are now. A check program's output is streamed under
/// `[label check]`.
pub async fn evaluate(
    done: &DoneWhen,
    workdir: &Utf8Path,
    label: &str,
    timeout: Option<Duration>,
) -> Result<Predicate, Error> {
    match done {
        DoneWhen::Meta { pointer, metas } => {
            let metas = metas.clone();
            let pointer = pointer.clone();
            tokio::task::spawn_blocking(move || meta_holds(&pointer, &metas))
                .await
                .map_err(|e| Error::Io {
                    what: "reading meta.json".into(),
                    source: std::io::Error::other(e.to_string()),
                })?
        }
        DoneWhen::File(path) => {
            let full = workdir.join(path);
            let exists = tokio::fs::try_exists(&full)
                .await
                .map_err(|source| Error::Io {
                    what: format!("checking {full}"),
                    source,
                })?;
            Ok(Predicate {
                holds: exists,
                value: format!("{path} {}", if exists { "exists" } else { "is absent" }),
            })
        }
        DoneWhen::Check(argv) => {
            let attempt = run(&format!("{label} check"), argv, &[], workdir, timeout).await?;
            Ok(Predicate {
                holds: attempt.succeeded(),
                value: format!("{} {}", argv[0], attempt.describe(timeout)),
            })
        }
    }
}

/// `pointer` present and not empty in every meta.json of `metas`.
fn meta_holds(pointer: &str, metas: &[(Arch, Utf8PathBuf)]) -> Result<Predicate, Error> {
    let mut seen = Vec::new();
    for (_, path) in metas {
        let fail = |message: String| Error::Meta {
            path: path.clone(),
            message,
        };
        let text = std::fs::read(path).map_err(|e| fail(format!("cannot read: {e}")))?;
        let doc: serde_json::Value =
            serde_json::from_slice(&text).map_err(|e| fail(format!("not valid JSON: {e}")))?;
        match doc.pointer(pointer) {
            Some(v) if !is_empty(v) => seen.push(quote(v)),
            Some(_) => {
                return Ok(Predicate {
                    holds: false,
                    value: format!("{pointer} is empty in {path}"),
                });
            }
            None => {
                return Ok(Predicate {
                    holds: false,
                    value: format!("{pointer} is absent in {path}"),
                });
            }
        }
    }
    Ok(Predicate {
        holds: true,
        value: match seen.as_slice() {
            [one] => format!("{pointer} = {one}"),
            _ => format!("{pointer} is set in {} meta.json files", seen.len()),
        },
    })
}

/// `null`, `""`, `[]` and `{}` are empty; `false` and `0` are values.
fn is_empty(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null => true,
        serde_json::Value::String(s) => s.is_empty(),
        serde_json::Value::Array(a) => a.is_empty(),
        serde_json::Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

fn quote(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.len() <= QUOTE_MAX {
        return s;
    }
    let mut end = QUOTE_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// What running one invocation (with its retries) came to.
#[derive(Debug, Clone)]
pub struct Ran {
    pub attempts: Vec<Attempt>,
    /// `done-when` after the last attempt that exited 0; `None` if none did.
    pub after: Option<Predicate>,
}

impl Ran {
    /// The stage's error, if this run failed it.
    pub fn failure(&self, inv: &Invocation, timeout: Option<Duration>) -> Option<String> {
        let program = &inv.argv[0];
        match (&self.after, self.attempts.last()) {
            (Some(p), _) if p.holds => None,
            (Some(p), _) => Some(format!(
                "{program} exited 0, but the metadata does not show it done: {}",
                p.value
            )),
            (None, Some(last)) => Some(format!(
                "{program} {} (attempt {} of {})",
                last.describe(timeout),
                self.attempts.len(),
                self.attempts.len()
            )),
            (None, None) => Some(format!("{program} did not run")),
        }
    }
}

/// Runs an invocation until it exits 0 or its retries are spent, then evaluates
/// `done-when`. A program that exits 0 is not run again, whatever `done-when` says: running
/// it again would not make the metadata say otherwise.
pub async fn run_invocation(
    inv: &Invocation,
    stage: &str,
    workdir: &Utf8Path,
    timeout: Option<Duration>,
    retries: u32,
    retry_delay: Duration,
) -> Result<Ran, Error> {
    let label = label(stage, inv.arch.as_ref());
    let mut attempts = Vec::new();
    let mut delay = retry_delay;
    for n in 0..=retries {
        if n > 0 {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(60));
        }
        tracing::info!("[{label}] running {}", inv.argv.join(" "));
        let attempt = run(&label, &inv.argv, &inv.env, workdir, timeout).await?;
        let ok = attempt.succeeded();
        if !ok && n < retries {
            tracing::warn!(
                "[{label}] {} {}; running it again (attempt {} of {})",
                inv.argv[0],
                attempt.describe(timeout),
                n + 2,
                retries + 1
            );
        }
        attempts.push(attempt);
        if ok {
            let after = evaluate(&inv.done_when, workdir, &label, timeout).await?;
            return Ok(Ran {
                attempts,
                after: Some(after),
            });
        }
    }
    Ok(Ran {
        attempts,
        after: None,
    })
}

/// Runs `argv` once in its own process group in `workdir`, stdin closed, each line of its
/// output written to stderr behind `[label]`. With a timeout, the group gets SIGTERM when it
/// is up and SIGKILL [`TERM_GRACE`] later.
pub async fn run(
    label: &str,
    argv: &[String],
    env: &[(String, String)],
    workdir: &Utf8Path,
    timeout: Option<Duration>,
) -> Result<Attempt, Error> {
    let start = Instant::now();
    let mut child = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|source| Error::Spawn {
            program: argv[0].clone(),
            source,
        })?;
    let pgid = child.id().and_then(|id| i32::try_from(id).ok());
    let readers = [
        child
            .stdout
            .take()
            .map(|o| stream_lines(label.to_owned(), o)),
        child
            .stderr
            .take()
            .map(|e| stream_lines(label.to_owned(), e)),
    ];
    let waited = match timeout {
        Some(t) => tokio::time::timeout(t, child.wait()).await.ok(),
        None => Some(child.wait().await),
    };
    let (status, timed_out) = match waited {
        Some(status) => (status, false),
        None => {
            tracing::warn!("[{label}] timed out; stopping its process group");
            signal_group(pgid, rustix::process::Signal::TERM);
            let status = match tokio::time::timeout(TERM_GRACE, child.wait()).await {
                Ok(status) => status,
                Err(_) => {
                    signal_group(pgid, rustix::process::Signal::KILL);
                    child.wait().await
                }
            };
            (status, true)
        }
    };
    let status = status.map_err(|source| Error::Io {
        what: format!("waiting for {}", argv[0]),
        source,
    })?;
    for reader in readers.into_iter().flatten() {
        if tokio::time::timeout(DRAIN_GRACE, reader).await.is_err() {
            tracing::debug!(
                "[{label}] output still open after the program exited; not read further"
            );
        }
    }
    use std::os::unix::process::ExitStatusExt as _;
    Ok(Attempt {
        exit: status.code(),
        signal: status.signal(),
        timed_out,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn signal_group(pgid: Option<i32>, signal: rustix::process::Signal) {
    if let Some(pid) = pgid.and_then(rustix::process::Pid::from_raw) {
        // The group may be gone already; nothing to do then.
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

/// Copies `out` to stderr a line at a time behind `[label]`; bytes that are not UTF-8 are
/// replaced, not dropped.
fn stream_lines(
    label: String,
    out: impl AsyncRead + Unpin + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut reader = BufReader::new(out);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line);
                    eprintln!("[{label}] {}", text.trim_end_matches(['\n', '\r']));
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_values_do_not_count_as_done() {
        use serde_json::json;
        for v in [json!(null), json!(""), json!([]), json!({})] {
            assert!(is_empty(&v), "{v}");
        }
        for v in [
            json!(false),
            json!(0),
            json!("x"),
            json!([1]),
            json!({"a": 1}),
        ] {
            assert!(!is_empty(&v), "{v}");
        }
    }

    #[test]
    fn a_long_value_is_abridged_on_a_char_boundary() {
        let v = serde_json::Value::String("é".repeat(200));
        let q = quote(&v);
        assert!(
            q.ends_with('…') && q.len() <= QUOTE_MAX + '…'.len_utf8(),
            "{q}"
        );
    }
}
