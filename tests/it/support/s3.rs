//! Owns a real S3-compatible server, `s3s-fs` (crate `s3s-fs` 0.14.1, built by
//! `scripts/install-deps.sh` into `~/.cargo/bin`), on loopback: it checks SigV4 signatures,
//! serves range GETs and enforces `If-Match` on PUT. Each bucket is a directory under the root
//! it serves, and each object a file, so a test can lay a build tree out as a bucket directly.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub const ACCESS_KEY: &str = "reprise-test";
pub const SECRET_KEY: &str = "reprise-test-secret-key";
/// Picking a port by binding :0 and releasing it races with other tests, so a start that loses
/// the race is retried.
const START_ATTEMPTS: u32 = 5;

pub struct S3 {
    child: Child,
    addr: SocketAddr,
}

fn binary() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_default();
    let cached = Path::new(&home).join(".cargo/bin/s3s-fs");
    if cached.exists() {
        cached
    } else {
        PathBuf::from("s3s-fs")
    }
}

impl S3 {
    /// s3s-fs serving the directories under `root` as buckets.
    pub fn serve(root: &Path) -> S3 {
        for _ in 0..START_ATTEMPTS {
            if let Some(s3) = start(root) {
                return s3;
            }
        }
        panic!("s3s-fs did not start in {START_ATTEMPTS} attempts");
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The reprise arguments and environment that reach this server.
    pub fn configure(&self, cmd: &mut Command) {
        self.configure_at(cmd, &self.endpoint());
    }

    /// [`S3::configure`], through `endpoint` (a proxy in front of this server).
    pub fn configure_at(&self, cmd: &mut Command, endpoint: &str) {
        for var in [
            "AWS_CONFIG_FILE",
            "AWS_PROFILE",
            "AWS_SESSION_TOKEN",
            "AWS_ENDPOINT",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .args(["--s3-endpoint", endpoint, "--s3-region", "us-east-1"]);
    }
}

/// Ready once it says it is running: it has bound its socket by then.
fn start(root: &Path) -> Option<S3> {
    let addr = super::registry::free_loopback_addr();
    let mut child = Command::new(binary())
        .args(["--host", "127.0.0.1", "--port", &addr.port().to_string()])
        .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
        .arg(root)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting s3s-fs (scripts/install-deps.sh builds it): {e}"));
    let stdout = child.stdout.take().expect("stdout");
    if !super::ready_on(stdout, "server is running at") {
        let _ = child.wait();
        return None;
    }
    Some(S3 { child, addr })
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
