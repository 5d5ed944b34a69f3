//! Which certificate authorities a client trusts beyond the system's: `--cert-dir`, or the
//! per-registry directories podman and skopeo read.

use super::*;

/// `/etc/containers/certs.d/<host:port>` or `/etc/docker/certs.d/<host:port>`, where the
/// container tools look for a registry's CA certificates, if one exists.
pub(super) fn default_cert_dir(registry: &Repository) -> Option<Utf8PathBuf> {
    ["/etc/containers/certs.d", "/etc/docker/certs.d"]
        .iter()
        .map(|base| Utf8Path::new(base).join(registry.registry()))
        .find(|dir| dir.is_dir())
}

/// Every `*.crt` in `dir` (PEM CA certificates), as the container tools read a cert dir.
pub(super) fn load_cert_dir(dir: &Utf8Path) -> Result<Vec<Vec<u8>>, Error> {
    let fail = |path: &Utf8Path, detail: String| Error::CertDir {
        path: path.to_owned(),
        detail,
    };
    let entries = dir
        .read_dir_utf8()
        .map_err(|e| fail(dir, format!("cannot read the certificate directory: {e}")))?;
    let mut certs = Vec::new();
    let mut names: Vec<Utf8PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.into_path())
        .filter(|p| p.extension() == Some("crt"))
        .collect();
    names.sort();
    for path in names {
        let data = std::fs::read(&path).map_err(|e| fail(&path, e.to_string()))?;
        if !data.starts_with(b"-----BEGIN") {
            return Err(fail(&path, "not a PEM certificate".into()));
        }
        certs.push(data);
    }
    if certs.is_empty() {
        return Err(fail(dir, "holds no *.crt certificate".into()));
    }
    Ok(certs)
}
