//! Images named directly with `--image`, in the transports container tools use:
//! `oci-archive:PATH[:NAME]`, `oci:DIR[:NAME]` and `docker://REF`.
//!
//! Owns parsing those names and nothing else: reading a local layout is `archive`'s job and
//! reading a remote image is `registry`'s.

use std::fmt;
use std::str::FromStr;

use camino::{Utf8Path, Utf8PathBuf};

use crate::archive;
use crate::reference::{Digest, Reference};
use crate::registry::{Client, Error};

/// Where one `--image` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// A tar of an OCI layout, as coreos-assembler writes per arch.
    OciArchive {
        path: Utf8PathBuf,
        name: Option<String>,
    },
    /// An OCI layout directory.
    OciDir {
        path: Utf8PathBuf,
        name: Option<String>,
    },
    /// An image already in a registry (one platform's manifest, by tag or digest).
    Registry(Reference),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--image {input:?}: {why}")]
pub struct ParseError {
    pub input: String,
    pub why: String,
}

impl ImageSource {
    /// A local path relative to `base` (the working directory); other sources unchanged.
    pub fn resolved(&self, base: &Utf8Path) -> ImageSource {
        match self {
            ImageSource::OciArchive { path, name } => ImageSource::OciArchive {
                path: base.join(path),
                name: name.clone(),
            },
            ImageSource::OciDir { path, name } => ImageSource::OciDir {
                path: base.join(path),
                name: name.clone(),
            },
            other => other.clone(),
        }
    }
}

/// `PATH[:NAME]`: the first colon ends the path, as container tools read it.
fn path_and_name(rest: &str) -> (Utf8PathBuf, Option<String>) {
    // `oci-archive://builds/...` is how coreos-assembler's own examples spell a relative
    // path; read the two slashes as nothing rather than as the root.
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    match rest.split_once(':') {
        Some((path, name)) if !name.is_empty() => (path.into(), Some(name.to_owned())),
        Some((path, _)) => (path.into(), None),
        None => (rest.into(), None),
    }
}

impl FromStr for ImageSource {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<ImageSource, ParseError> {
        let fail = |why: String| ParseError {
            input: s.to_owned(),
            why,
        };
        let source = if let Some(rest) = s.strip_prefix("oci-archive:") {
            let (path, name) = path_and_name(rest);
            ImageSource::OciArchive { path, name }
        } else if let Some(rest) = s.strip_prefix("oci:") {
            let (path, name) = path_and_name(rest);
            ImageSource::OciDir { path, name }
        } else if let Some(rest) = s.strip_prefix("docker://") {
            ImageSource::Registry(Reference::parse(rest).map_err(|e| fail(e.to_string()))?)
        } else {
            return Err(fail(
                "expected oci-archive:PATH, oci:DIR or docker://REPO:TAG (or @sha256:...)".into(),
            ));
        };
        match &source {
            ImageSource::OciArchive { path, .. } | ImageSource::OciDir { path, .. }
                if path.as_str().is_empty() =>
            {
                Err(fail("the path is empty".into()))
            }
            _ => Ok(source),
        }
    }
}

impl fmt::Display for ImageSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (transport, path, name) = match self {
            ImageSource::Registry(r) => return write!(f, "docker://{r}"),
            ImageSource::OciArchive { path, name } => ("oci-archive", path, name),
            ImageSource::OciDir { path, name } => ("oci", path, name),
        };
        write!(f, "{transport}:{path}")?;
        if let Some(name) = name {
            write!(f, ":{name}")?;
        }
        Ok(())
    }
}

/// The single-platform image `r` names in a registry, read as an [`archive::Image`], or
/// `None` on 404. An index is an error: a source image must be one platform's manifest.
pub(crate) async fn fetch_image(
    client: &Client,
    r: &Reference,
) -> Result<Option<archive::Image>, Error> {
    let target = r.to_string();
    let protocol = |message: String| Error::Protocol {
        target: target.clone(),
        message,
    };
    let Some(fetched) = client.fetch_manifest(r).await? else {
        return Ok(None);
    };
    let config = match crate::index::parse_remote(&fetched.bytes, None) {
        Ok(crate::index::Parsed::Image { config }) => config,
        Ok(crate::index::Parsed::Index(_)) => {
            return Err(protocol(
                "is an index, not one platform's image; name a per-arch tag or digest".into(),
            ));
        }
        Err(e) => return Err(protocol(e.to_string())),
    };
    let parsed: oci_spec::image::ImageManifest = serde_json::from_slice(&fetched.bytes)
        .map_err(|e| protocol(format!("image manifest is not valid: {e}")))?;
    let blob = |d: &oci_spec::image::Descriptor| -> Result<archive::BlobRef, Error> {
        Ok(archive::BlobRef {
            digest: Digest::parse(d.digest().as_ref())
                .map_err(|e| protocol(format!("image manifest: {e}")))?,
            size: d.size(),
            media_type: d.media_type().to_string(),
        })
    };
    let config_ref = blob(parsed.config())?;
    let layers = parsed
        .layers()
        .iter()
        .map(blob)
        .collect::<Result<Vec<_>, _>>()?;
    let platform = client
        .fetch_platform(r.repository(), &config)
        .await?
        .filter(crate::platform::Platform::is_real)
        .ok_or_else(|| protocol("its image config names no os and architecture".into()))?;
    let media_type = parsed
        .media_type()
        .as_ref()
        .map(|m| m.to_string())
        .unwrap_or_else(|| archive::OCI_MANIFEST.to_owned());
    Ok(Some(archive::Image {
        manifest: fetched.bytes.to_vec(),
        manifest_digest: fetched.digest,
        media_type,
        platform,
        config: config_ref,
        layers,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_transport_parses_and_prints_back() {
        for s in [
            "oci-archive:builds/40/x86_64/a.ociarchive",
            "oci-archive:/abs/a.ociarchive:latest",
            "oci:/tmp/layout",
            "oci:layout:v1",
            "docker://quay.io/fedora/fedora-coreos:40-x86_64",
            "docker://127.0.0.1:5000/a/b@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            let parsed: ImageSource = s.parse().unwrap();
            assert_eq!(parsed.to_string(), s);
        }
    }

    #[test]
    fn cosa_style_double_slash_is_a_relative_path() {
        let parsed: ImageSource = "oci-archive://builds/40/x86_64/a.ociarchive"
            .parse()
            .unwrap();
        assert_eq!(
            parsed,
            ImageSource::OciArchive {
                path: "builds/40/x86_64/a.ociarchive".into(),
                name: None
            }
        );
    }

    #[test]
    fn bad_sources_say_what_was_expected() {
        for s in [
            "quay.io/a/b:1",
            "oci-archive:",
            "docker://quay.io/a/b:sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "docker://quay.io/a/b",
        ] {
            let err = s.parse::<ImageSource>().unwrap_err().to_string();
            assert!(err.starts_with(&format!("--image {s:?}")), "{err}");
        }
    }
}
