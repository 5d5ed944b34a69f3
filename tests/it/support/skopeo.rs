//! skopeo, the independent client the tests read back (and set up) registries with, so that
//! what reprise wrote is checked by code that is not reprise's. Registries here are plain HTTP
//! on loopback unless a test says otherwise.

use std::process::{Command, Output};

use super::run::output_ok;

/// Runs skopeo with `args` and insists it succeeds.
pub fn skopeo(args: &[&str]) -> Output {
    output_ok(Command::new("skopeo").args(args))
}

/// The manifest bytes `reference` (`host/path:tag` or `host/path@sha256:…`) resolves to, as
/// `skopeo inspect --raw` reads them, or `None` when the registry has no such manifest. Any
/// other failure fails the test.
pub fn inspect_raw(reference: &str) -> Option<Vec<u8>> {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .output()
        .expect("run skopeo");
    if out.status.success() {
        return Some(out.stdout);
    }
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("manifest unknown") || err.contains("not found"),
        "skopeo inspect {reference}: {err}"
    );
    None
}

/// Copies everything `reference` (a tag's index) names with `skopeo copy --all` into a
/// fresh `TRANSPORT:` destination (`oci` or `dir`): an independent client proving every
/// blob and manifest is there.
pub fn copy_all(reference: &str, transport: &str) {
    let dest = tempfile::tempdir().expect("tempdir");
    skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{reference}"),
        &format!("{transport}:{}", dest.path().join("copy").display()),
    ]);
}

/// `skopeo inspect --raw` of `reference`, parsed; the manifest must exist and be JSON.
pub fn inspect_json(reference: &str) -> serde_json::Value {
    let bytes = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ])
    .stdout;
    serde_json::from_slice(&bytes).expect("skopeo printed JSON")
}
