//! Docker schema 2 for `--v2s2`: the Docker manifest that describes the same config and
//! layers as an OCI image manifest.
//!
//! The conversion is a pure function of the OCI manifest's bytes, so the Docker manifest's
//! digest is known before anything is pushed and a rerun computes the same one. Blobs are
//! untouched: a Docker image config is the same JSON as an OCI one, and gzip or plain tar
//! layers are the same bytes under another media type. A layer Docker schema 2 has no media
//! type for (zstd) is refused rather than mislabelled. Annotations have no place in Docker
//! schema 2 and are left out; foreign-layer URLs are kept.

use serde::Serialize;

use crate::archive::{BlobRef, DOCKER_MANIFEST, Image, OCI_MANIFEST};
use crate::reference::Digest;

pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// OCI layer media type → Docker schema 2 layer media type.
const LAYERS: &[(&str, &str)] = &[
    (
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
    ),
    (
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.docker.image.rootfs.diff.tar",
    ),
    (
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    ),
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error(
        "layer {digest} is {media_type}, which a Docker schema 2 manifest cannot express (gzip or plain tar layers only); push it without --v2s2"
    )]
    Layer { digest: Digest, media_type: String },
    #[error("the image config is {0}, not an OCI image config")]
    Config(String),
    #[error("the image manifest is {0}, not an OCI or Docker image manifest")]
    Manifest(String),
    #[error("the image manifest is not valid: {0}")]
    Invalid(String),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ManifestDoc<'a> {
    schema_version: u32,
    media_type: &'a str,
    config: DescriptorDoc<'a>,
    layers: Vec<DescriptorDoc<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DescriptorDoc<'a> {
    media_type: &'a str,
    size: u64,
    digest: &'a Digest,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    urls: Vec<String>,
}

/// The Docker schema 2 form of `image`. An image that already is Docker schema 2 is
/// returned as it is.
pub fn convert(image: &Image) -> Result<Image, Error> {
    if image.media_type == DOCKER_MANIFEST {
        return Ok(image.clone());
    }
    if image.media_type != OCI_MANIFEST {
        return Err(Error::Manifest(image.media_type.clone()));
    }
    let parsed: oci_spec::image::ImageManifest =
        serde_json::from_slice(&image.manifest).map_err(|e| Error::Invalid(e.to_string()))?;
    if image.config.media_type != OCI_CONFIG && image.config.media_type != DOCKER_CONFIG {
        return Err(Error::Config(image.config.media_type.clone()));
    }
    let mut layers = Vec::with_capacity(image.layers.len());
    for (layer, desc) in image.layers.iter().zip(parsed.layers()) {
        let docker = LAYERS
            .iter()
            .find(|(oci, docker)| *oci == layer.media_type || *docker == layer.media_type)
            .map(|(_, docker)| *docker)
            .ok_or_else(|| Error::Layer {
                digest: layer.digest.clone(),
                media_type: layer.media_type.clone(),
            })?;
        layers.push((
            BlobRef {
                digest: layer.digest.clone(),
                size: layer.size,
                media_type: docker.to_owned(),
            },
            desc.urls().clone().unwrap_or_default(),
        ));
    }
    let config = BlobRef {
        media_type: DOCKER_CONFIG.to_owned(),
        ..image.config.clone()
    };
    let doc = ManifestDoc {
        schema_version: 2,
        media_type: DOCKER_MANIFEST,
        config: DescriptorDoc {
            media_type: &config.media_type,
            size: config.size,
            digest: &config.digest,
            urls: Vec::new(),
        },
        layers: layers
            .iter()
            .map(|(l, urls)| DescriptorDoc {
                media_type: &l.media_type,
                size: l.size,
                digest: &l.digest,
                urls: urls.clone(),
            })
            .collect(),
    };
    let manifest =
        serde_json::to_vec(&doc).map_err(|e| Error::Invalid(format!("serialising: {e}")))?;
    Ok(Image {
        manifest_digest: Digest::of(&manifest),
        manifest,
        media_type: DOCKER_MANIFEST.to_owned(),
        platform: image.platform.clone(),
        config,
        layers: layers.into_iter().map(|(l, _)| l).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::Platform;

    fn d(c: char) -> Digest {
        Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap()
    }

    fn oci_image(layer_type: &str) -> Image {
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{c}","size":10}},"layers":[{{"mediaType":"{layer_type}","digest":"{l}","size":20,"annotations":{{"a":"b"}}}}],"annotations":{{"org.opencontainers.image.version":"40"}}}}"#,
            c = d('c'),
            l = d('1')
        );
        Image {
            manifest_digest: Digest::of(manifest.as_bytes()),
            manifest: manifest.into_bytes(),
            media_type: OCI_MANIFEST.to_owned(),
            platform: Platform::new("linux", "amd64", None),
            config: BlobRef {
                digest: d('c'),
                size: 10,
                media_type: OCI_CONFIG.to_owned(),
            },
            layers: vec![BlobRef {
                digest: d('1'),
                size: 20,
                media_type: layer_type.to_owned(),
            }],
        }
    }

    #[test]
    fn gzip_image_converts_deterministically_with_the_same_blobs() {
        let oci = oci_image("application/vnd.oci.image.layer.v1.tar+gzip");
        let a = convert(&oci).unwrap();
        let b = convert(&oci).unwrap();
        assert_eq!(a.manifest, b.manifest);
        assert_eq!(a.manifest_digest, Digest::of(&a.manifest));
        assert_ne!(a.manifest_digest, oci.manifest_digest);
        assert_eq!(a.media_type, DOCKER_MANIFEST);
        assert_eq!(a.config.digest, oci.config.digest);
        assert_eq!(a.config.media_type, DOCKER_CONFIG);
        assert_eq!(a.layers[0].digest, oci.layers[0].digest);
        assert_eq!(
            a.layers[0].media_type,
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
        let v: serde_json::Value = serde_json::from_slice(&a.manifest).unwrap();
        assert_eq!(v["mediaType"], DOCKER_MANIFEST);
        assert_eq!(v["config"]["mediaType"], DOCKER_CONFIG);
        assert!(v.get("annotations").is_none());
        assert!(v["layers"][0].get("annotations").is_none());
        // A Docker manifest converts to itself.
        assert_eq!(convert(&a).unwrap().manifest, a.manifest);
    }

    #[test]
    fn zstd_layer_is_refused_by_name() {
        let oci = oci_image("application/vnd.oci.image.layer.v1.tar+zstd");
        let err = convert(&oci).unwrap_err();
        assert!(matches!(err, Error::Layer { .. }));
        let msg = err.to_string();
        assert!(
            msg.contains("zstd") && msg.contains(d('1').as_str()),
            "{msg}"
        );
    }
}
