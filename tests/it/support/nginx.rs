//! Owns a real HTTP server with range support (nginx from Debian, package `nginx-light` or
//! `nginx`) serving a directory on loopback, as a build store reached over HTTP, and the
//! count of what it served, read from its access log.
//!
//! It is ready when its master process says it started the worker (by then its socket is
//! listening); a start that lost its port to another test is retried.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use tempfile::TempDir;

const BINARY: &str = "/usr/sbin/nginx";
/// Picking a port by binding :0 and releasing it races with other tests, so a start that loses
/// the race is retried.
const START_ATTEMPTS: u32 = 5;

pub struct Nginx {
    child: Child,
    addr: SocketAddr,
    dir: TempDir,
}

/// One request nginx answered, as its access log line says.
#[derive(Debug, Clone)]
pub struct Served {
    pub method: String,
    pub uri: String,
    /// The `Range` header sent, `-` for none.
    pub range: String,
    pub status: u16,
    /// Body bytes sent.
    pub bytes: u64,
}

impl Nginx {
    /// nginx serving `root` read-only at `http://ADDR/`.
    pub fn serve(root: &Path) -> Nginx {
        let dir = tempfile::tempdir().expect("nginx dir");
        for _ in 0..START_ATTEMPTS {
            if let Some((child, addr)) = start(&dir, root) {
                return Nginx { child, addr, dir };
            }
        }
        panic!("nginx did not start in {START_ATTEMPTS} attempts");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request answered so far. nginx has one worker and logs a request in the same
    /// step that sends its last byte, so once a request sent after them is answered, every
    /// earlier one is in the log.
    pub fn served(&self) -> Vec<Served> {
        self.barrier();
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        log.lines()
            .map(parse_line)
            .filter(|s| s.uri != "/.barrier")
            .collect()
    }

    /// Body bytes served for objects whose path ends with `suffix` (e.g. `.ociarchive`).
    pub fn bytes_served(&self, suffix: &str) -> u64 {
        self.served()
            .iter()
            .filter(|s| s.uri.ends_with(suffix))
            .map(|s| s.bytes)
            .sum()
    }

    /// Forgets what was served so far.
    pub fn clear(&self) {
        std::fs::write(self.log_path(), b"").expect("truncate the access log");
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("access.log")
    }
}

impl Nginx {
    /// One request of its own, answered (404), on a new connection.
    fn barrier(&self) {
        use std::io::{Read as _, Write as _};
        let mut conn = std::net::TcpStream::connect(self.addr).expect("connect to nginx");
        conn.write_all(b"GET /.barrier HTTP/1.0\r\nHost: x\r\n\r\n")
            .expect("barrier request");
        let mut answer = Vec::new();
        conn.read_to_end(&mut answer).expect("barrier answer");
        assert!(
            answer.starts_with(b"HTTP/1.1 404"),
            "nginx answered the barrier"
        );
    }
}

/// Starts nginx on a port that was free a moment ago; `None` if it lost the port to another
/// test and exited. Ready once the master says it started its worker: the socket is bound and
/// listening by then.
fn start(dir: &TempDir, root: &Path) -> Option<(Child, SocketAddr)> {
    let addr = super::registry::free_loopback_addr();
    let d = dir.path().display();
    let conf = dir.path().join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off;\nuser root;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log stderr notice;\nevents {{ worker_connections 64; }}\n\
             http {{\n  log_format counted '$request_method $uri \"$http_range\" $status $body_bytes_sent';\n\
             access_log {d}/access.log counted;\n  client_body_temp_path {d}/body;\n\
             server {{\n    listen {addr};\n    root {};\n    location / {{ limit_except GET {{ deny all; }} }}\n  }}\n}}\n",
            root.display()
        ),
    )
    .expect("nginx.conf");
    let mut child = Command::new(BINARY)
        .args(["-e", "stderr", "-p"])
        .arg(dir.path())
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {BINARY} (scripts/install-deps.sh installs it): {e}"));
    let stderr = child.stderr.take().expect("stderr");
    if !super::ready_on(stderr, "start worker process") {
        let _ = child.wait();
        return None;
    }
    Some((child, addr))
}

fn parse_line(line: &str) -> Served {
    let (head, rest) = line.split_once(" \"").expect("log line");
    let (range, tail) = rest.split_once("\" ").expect("log line");
    let (method, uri) = head.split_once(' ').expect("log line");
    let mut nums = tail.split(' ');
    let status = nums.next().and_then(|n| n.parse().ok()).expect("status");
    let bytes = nums.next().and_then(|n| n.parse().ok()).expect("bytes");
    Served {
        method: method.to_owned(),
        uri: uri.to_owned(),
        range: range.to_owned(),
        status,
        bytes,
    }
}

impl Drop for Nginx {
    /// A fast shutdown (SIGTERM), in which the master stops its worker too.
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let _ = self.child.wait();
    }
}
