//! Referrers made by clients other than reprise, for reprise to find and copy: a signature
//! pushed with the oras Python SDK (PyPI `oras`, which scripts/install-deps.sh installs into
//! target/test-deps/python), and attestations, SBOMs, referrers tag-schema indexes and
//! cosign-style `.sig` tags built here from the OCI specs and put with curl. Everything goes
//! straight to the registry, never through the proxy: it is set-up, not what a test measures.

use std::path::{Path, PathBuf};
use std::process::Command;

use reprise_fixtures::sha256_digest;
use serde_json::{Value, json};

use super::run::output_ok;
use super::skopeo::inspect_raw;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const NOTARY_SIGNATURE: &str = "application/vnd.cncf.notary.signature";
pub const IN_TOTO: &str = "application/vnd.in-toto+json";
pub const SPDX: &str = "application/spdx+json";

/// A manifest another manifest refers to: what a `subject` field names.
#[derive(Debug, Clone)]
pub struct Subject {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
}

impl Subject {
    /// What `reference` (`host/path:tag` or `host/path@sha256:…`) holds, read with skopeo.
    pub fn at(reference: &str) -> Subject {
        let bytes = inspect_raw(reference).unwrap_or_else(|| panic!("{reference} exists"));
        let doc: Value = serde_json::from_slice(&bytes).expect("a manifest is JSON");
        Subject {
            digest: sha256_digest(&bytes),
            size: bytes.len() as u64,
            media_type: doc["mediaType"].as_str().unwrap_or(OCI_MANIFEST).to_owned(),
        }
    }

    fn field(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.size})
    }

    /// The referrers tag schema's tag: `sha256-<hex>`.
    pub fn schema_tag(&self) -> String {
        self.digest.replace(':', "-")
    }

    /// cosign's tag with `suffix`: `sha256-<hex>.sig`.
    pub fn cosign_tag(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.schema_tag())
    }
}

/// A referrer put in a repository: its manifest's descriptor, as a referrers list gives it.
#[derive(Debug, Clone)]
pub struct Made {
    pub digest: String,
    pub descriptor: Value,
}

/// One registry repository, straight at the registry.
pub struct Repo {
    /// `127.0.0.1:PORT`
    pub host: String,
    pub path: String,
}

impl Repo {
    pub fn new(host: &str, path: &str) -> Repo {
        Repo {
            host: host.to_owned(),
            path: path.to_owned(),
        }
    }

    /// `host/path`, as skopeo and reprise name it.
    pub fn name(&self) -> String {
        format!("{}/{}", self.host, self.path)
    }

    fn url(&self, rest: &str) -> String {
        format!("http://{}/v2/{}/{rest}", self.host, self.path)
    }

    /// Uploads `bytes` as a blob (POST, then one PUT with `?digest=`); returns its descriptor
    /// fields (digest, size).
    pub fn blob(&self, bytes: &[u8]) -> (String, u64) {
        let digest = sha256_digest(bytes);
        let started = output_ok(Command::new("curl").args([
            "-fsS",
            "-X",
            "POST",
            "-D",
            "-",
            "-o",
            "/dev/null",
            &self.url("blobs/uploads/"),
        ]));
        let headers = String::from_utf8_lossy(&started.stdout).into_owned();
        let location = headers
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("location")
                    .then(|| v.trim().to_owned())
            })
            .expect("the upload session has a Location");
        let location = if location.starts_with('/') {
            format!("http://{}{location}", self.host)
        } else {
            location
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let body = write_temp(bytes);
        output_ok(
            Command::new("curl")
                .args(["-fsS", "-X", "PUT", "-H"])
                .arg("Content-Type: application/octet-stream")
                .arg("--data-binary")
                .arg(format!("@{}", body.path().display()))
                .arg(format!("{location}{sep}digest={digest}")),
        );
        (digest, bytes.len() as u64)
    }

    /// Puts a manifest at `reference` (a tag, or its digest); returns its digest.
    pub fn put(&self, reference: &str, bytes: &[u8], media_type: &str) -> String {
        let body = write_temp(bytes);
        output_ok(
            Command::new("curl")
                .args(["-fsS", "-X", "PUT", "-H"])
                .arg(format!("Content-Type: {media_type}"))
                .arg("--data-binary")
                .arg(format!("@{}", body.path().display()))
                .arg(self.url(&format!("manifests/{reference}"))),
        );
        sha256_digest(bytes)
    }

    /// An artifact manifest (OCI image manifest with `artifactType`, the empty config and one
    /// layer holding `payload`) that refers to `subject`, put by digest: an attestation or
    /// an SBOM as the image spec 1.1 describes them.
    pub fn artifact(&self, subject: &Subject, artifact_type: &str, payload: &[u8]) -> Made {
        let (config, config_size) = self.blob(b"{}");
        let (layer, layer_size) = self.blob(payload);
        let annotations = json!({"org.opencontainers.image.created": "2026-11-01T00:00:00Z"});
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {"mediaType": EMPTY, "digest": config, "size": config_size, "data": "e30="},
            "layers": [{"mediaType": artifact_type, "digest": layer, "size": layer_size}],
            "subject": subject.field(),
            "annotations": annotations,
        });
        let bytes = serde_json::to_vec(&manifest).unwrap();
        let digest = self.put(&sha256_digest(&bytes), &bytes, OCI_MANIFEST);
        Made {
            descriptor: json!({
                "mediaType": OCI_MANIFEST,
                "digest": digest,
                "size": bytes.len(),
                "artifactType": artifact_type,
                "annotations": annotations,
            }),
            digest,
        }
    }

    /// A signature pushed by the oras Python SDK: a manifest with `subject`, its config of
    /// the Notation signature's media type, one layer. oras-py pushes to a tag, so it gets
    /// one of its own (`oras-<n>`); a referrers list names it by digest.
    pub fn oras_signature(&self, subject: &Subject, n: u32) -> Made {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("config.json"), b"{}").unwrap();
        std::fs::write(
            dir.path().join("signature.jws"),
            format!("{{\"signed\":\"{}\",\"n\":{n}}}", subject.digest),
        )
        .unwrap();
        let out = output_ok(
            Command::new("python3")
                .env("PYTHONPATH", oras_python_path())
                .current_dir(dir.path())
                .args(["-c", ORAS_PUSH])
                .args([
                    &self.host,
                    &format!("{}:oras-{n}", self.name()),
                    &subject.media_type,
                    &subject.digest,
                    &subject.size.to_string(),
                    NOTARY_SIGNATURE,
                ]),
        );
        let digest = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(digest.starts_with("sha256:"), "oras printed {digest:?}");
        // What the spec puts in a referrers list for it: artifactType from the config's
        // media type (oras-py sets no artifactType), and its annotations.
        let bytes = inspect_raw(&format!("{}@{digest}", self.name())).expect("pushed");
        let manifest: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(manifest["subject"]["digest"], subject.digest.as_str());
        let mut descriptor = json!({
            "mediaType": OCI_MANIFEST,
            "digest": digest,
            "size": bytes.len(),
            "artifactType": manifest["config"]["mediaType"],
        });
        if let Some(a) = manifest.get("annotations") {
            descriptor["annotations"] = a.clone();
        }
        Made { digest, descriptor }
    }

    /// The referrers tag schema's index for `subject`, listing `referrers`.
    pub fn tag_schema(&self, subject: &Subject, referrers: &[&Made]) -> String {
        let index = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": referrers.iter().map(|m| m.descriptor.clone()).collect::<Vec<_>>(),
        });
        let bytes = serde_json::to_vec(&index).unwrap();
        self.put(&subject.schema_tag(), &bytes, OCI_INDEX)
    }

    /// A cosign-style signature at `sha256-<hex>.sig`: an image manifest whose one layer is
    /// a simple-signing payload naming the subject, its signature in an annotation.
    pub fn cosign_signature(&self, subject: &Subject) -> String {
        let payload = json!({
            "critical": {
                "identity": {"docker-reference": self.name()},
                "image": {"docker-manifest-digest": subject.digest},
                "type": "cosign container image signature",
            },
            "optional": null,
        });
        let payload = serde_json::to_vec(&payload).unwrap();
        let (config, config_size) = self
            .blob(br#"{"architecture":"","config":{},"created":"0001-01-01T00:00:00Z","os":""}"#);
        let (layer, layer_size) = self.blob(&payload);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_size},
            "layers": [{
                "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                "digest": layer,
                "size": layer_size,
                "annotations": {"dev.cosignproject.cosign/signature": "MEUCIQD-not-a-real-signature"},
            }],
        });
        let bytes = serde_json::to_vec(&manifest).unwrap();
        self.put(&subject.cosign_tag("sig"), &bytes, OCI_MANIFEST)
    }
}

impl Repo {
    /// The digests the index at `subject`'s tag-schema tag lists, or `None` without one.
    pub fn listed(&self, subject: &Subject) -> Option<Vec<String>> {
        let bytes = inspect_raw(&format!("{}:{}", self.name(), subject.schema_tag()))?;
        let index: Value = serde_json::from_slice(&bytes).unwrap();
        Some(
            index["manifests"]
                .as_array()
                .expect("an index")
                .iter()
                .map(|d| d["digest"].as_str().unwrap().to_owned())
                .collect(),
        )
    }

    /// What `tag` holds (its digest), or `None`.
    pub fn tag_digest(&self, tag: &str) -> Option<String> {
        inspect_raw(&format!("{}:{tag}", self.name())).map(|b| sha256_digest(&b))
    }
}

/// Pushes with oras-py: argv is host, target, subject media type, digest, size, config type.
const ORAS_PUSH: &str = r#"
import sys, oras.provider, oras.oci
host, target, media_type, digest, size, config_type = sys.argv[1:]
registry = oras.provider.Registry(hostname=host, insecure=True)
subject = oras.oci.Subject(mediaType=media_type, digest=digest, size=int(size))
response = registry.push(
    target=target,
    files=["signature.jws:application/jose+json"],
    manifest_config="config.json:" + config_type,
    manifest_annotations={"org.opencontainers.image.created": "2026-11-01T00:00:00Z"},
    subject=subject,
    quiet=True,
)
response.raise_for_status()
print(response.headers["Docker-Content-Digest"])
"#;

/// Where scripts/install-deps.sh puts the oras SDK.
fn oras_python_path() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-deps/python");
    assert!(
        dir.join("oras").is_dir(),
        "the oras Python SDK is not in {}: run scripts/install-deps.sh",
        dir.display()
    );
    dir
}

fn write_temp(bytes: &[u8]) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), bytes).expect("write temp file");
    file
}
