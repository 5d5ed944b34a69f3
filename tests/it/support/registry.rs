//! Owns a real Docker Distribution registry (`docker-registry serve`, Debian package
//! `docker-registry`) running on loopback with throw-away storage, for integration tests.

use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

const BINARY: &str = "docker-registry";
/// Picking a port by binding :0 and releasing it races with other tests, so a start that loses
/// the race is retried.
const START_ATTEMPTS: u32 = 5;
const READY_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Registry {
    child: Child,
    addr: SocketAddr,
    log: Arc<Log>,
    // Held so the storage outlives the process; deleted on drop after the child is gone.
    _dir: TempDir,
}

/// Lines plus a condvar, so tests can wait for a line instead of polling.
#[derive(Default)]
struct Log {
    lines: Mutex<Vec<String>>,
    grew: Condvar,
}

enum Outcome {
    Ready,
    /// Both output pipes closed before the readiness line: the process died (usually the port
    /// was taken in the meantime).
    Exited,
}

/// How a test registry is set up beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Require HTTP basic auth (htpasswd, bcrypt) for this user and password.
    pub htpasswd: Option<(String, String)>,
    /// Serve TLS with this certificate and key (PEM files).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Require bearer tokens from this token service (`auth: token`).
    pub token: Option<TokenAuth>,
    /// Refuse DELETE (405), as a registry with `storage.delete` off does.
    pub deletes_disabled: bool,
}

/// The registry's `auth: token` settings: where clients get tokens, and whose signature it
/// trusts (`rootcertbundle`, PEM certificates).
#[derive(Debug, Clone)]
pub struct TokenAuth {
    pub realm: String,
    pub service: String,
    pub issuer: String,
    pub rootcertbundle: PathBuf,
}

impl Registry {
    /// Starts a registry on 127.0.0.1 with a free random port and a fresh temp storage dir.
    pub fn start() -> Registry {
        Registry::start_with(&Options::default())
    }

    pub fn start_with(options: &Options) -> Registry {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last_log = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let (registry, outcome) = Registry::spawn(deadline, options);
            match outcome {
                Outcome::Ready => return registry,
                Outcome::Exited => last_log = registry.log_lines(),
            }
        }
        panic!(
            "docker-registry exited before listening, {START_ATTEMPTS} times; last log:\n{}",
            last_log.join("\n")
        );
    }

    fn spawn(deadline: Instant, options: &Options) -> (Registry, Outcome) {
        let dir = tempfile::Builder::new()
            .prefix("reprise-registry-")
            .tempdir()
            .expect("create registry temp dir");
        let addr = free_loopback_addr();
        let storage = dir.path().join("storage");
        let config = dir.path().join("config.yml");
        let mut yaml = config_yaml(&storage.to_string_lossy(), addr);
        if options.deletes_disabled {
            yaml = yaml.replace("  delete:\n    enabled: true\n", "");
        }
        if let Some((cert, key)) = &options.tls {
            yaml.push_str(&format!(
                "  tls:\n    certificate: {:?}\n    key: {:?}\n",
                cert.display().to_string(),
                key.display().to_string()
            ));
        }
        if let Some((user, password)) = &options.htpasswd {
            let file = dir.path().join("htpasswd");
            let hash = bcrypt::hash(password, 4).expect("bcrypt a test password");
            std::fs::write(&file, format!("{user}:{hash}\n")).expect("write htpasswd");
            yaml.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: reprise-test\n    path: {:?}\n",
                file.display().to_string()
            ));
        }
        if let Some(token) = &options.token {
            yaml.push_str(&format!(
                "auth:\n  token:\n    realm: {:?}\n    service: {:?}\n    issuer: {:?}\n    rootcertbundle: {:?}\n",
                token.realm,
                token.service,
                token.issuer,
                token.rootcertbundle.display().to_string()
            ));
        }
        std::fs::write(&config, yaml).expect("write registry config");

        let mut child = match Command::new(BINARY)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(e) if e.kind() == ErrorKind::NotFound => panic!(
                "`{BINARY}` not found: install the Debian package `docker-registry` \
                 (apt-get install docker-registry; the project's .ci/run does this)"
            ),
            Err(e) => panic!("spawn {BINARY}: {e}"),
        };

        let log = Arc::new(Log::default());
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("registry stdout is piped");
        let stderr = child.stderr.take().expect("registry stderr is piped");
        pump(stdout, Arc::clone(&log), tx.clone());
        pump(stderr, Arc::clone(&log), tx);

        let mut registry = Registry {
            child,
            addr,
            log,
            _dir: dir,
        };
        let ready = format!("listening on {addr}");
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(remaining) {
                Ok(line) if is_ready_line(&line, &ready) => return (registry, Outcome::Ready),
                Ok(_) => {}
                Err(RecvTimeoutError::Disconnected) => return (registry, Outcome::Exited),
                Err(RecvTimeoutError::Timeout) => {
                    let _ = registry.child.kill();
                    panic!(
                        "docker-registry did not log `{ready}` within {READY_TIMEOUT:?}; log:\n{}",
                        registry.log_lines().join("\n")
                    );
                }
            }
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// "127.0.0.1:PORT"
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Every line the registry printed so far: its application log (stderr) and its access log
    /// (stdout), interleaved in the order they were read.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lines.lock().expect("registry log lock").clone()
    }

    /// Waits until at least `count` log lines contain `needle` (the log is read on another
    /// thread, so a request's access-log line may lag its response), or `timeout` passes.
    /// Returns the matching lines either way.
    pub fn wait_for_log(&self, needle: &str, count: usize, timeout: Duration) -> Vec<String> {
        let matching = |lines: &Vec<String>| -> Vec<String> {
            lines
                .iter()
                .filter(|l| l.contains(needle))
                .cloned()
                .collect()
        };
        let lines = self.log.lines.lock().expect("registry log lock");
        let (lines, _) = self
            .log
            .grew
            .wait_timeout_while(lines, timeout, |lines| matching(lines).len() < count)
            .expect("registry log lock");
        matching(&lines)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The port is released before the server binds it; each `start` retries if someone else
/// wins.
pub fn free_loopback_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free loopback port")
}

fn config_yaml(storage: &str, addr: SocketAddr) -> String {
    // The fixed secret silences the "No HTTP secret provided" warning; storage deletion lets
    // tests exercise DELETE.
    format!(
        "version: 0.1\n\
         log:\n  level: info\n\
         storage:\n  filesystem:\n    rootdirectory: {storage:?}\n  delete:\n    enabled: true\n\
         http:\n  addr: {addr}\n  secret: reprise-test-secret\n"
    )
}

/// `listening on 127.0.0.1:5000` must not match port 50000.
fn is_ready_line(line: &str, ready: &str) -> bool {
    line.match_indices(ready).any(|(at, _)| {
        !line[at + ready.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    })
}

/// Ends by itself when the pipe closes, i.e. when the registry exits.
fn pump(pipe: impl Read + Send + 'static, log: Arc<Log>, tx: Sender<String>) {
    thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = String::from_utf8_lossy(&buf).trim_end().to_string();
            log.lines
                .lock()
                .expect("registry log lock")
                .push(line.clone());
            log.grew.notify_all();
            // Nobody listens once `start` has returned; the Vec is what matters then.
            let _ = tx.send(line);
        }
    });
}
