//! One image manifest, two formats: the Docker schema 2 manifest and the OCI image manifest
//! that describe the same config and layers, and the conversion between them.
//!
//! A list never mixes the two (Quay refuses such a list as "manifest invalid"), so every
//! manifest a list names is put in the list's format: `--v2s2` converts OCI images to Docker
//! schema 2, an OCI index converts a Docker image (a `docker://` source, an entry carried from
//! an old Docker list) to OCI. The conversion is a pure function of the manifest's bytes, so
//! the converted digest is known before anything is pushed and a rerun computes the same one.
//! Blobs are untouched: a Docker image config is the same JSON as an OCI one, and gzip or plain
//! tar layers are the same bytes under another media type. A layer the other format has no
//! media type for (zstd in Docker schema 2) is refused rather than mislabelled. Annotations
//! have no place in Docker schema 2 and are left out; foreign-layer URLs are kept.

use serde::Serialize;

use crate::archive::{BlobRef, DOCKER_MANIFEST, Image, OCI_MANIFEST};
use crate::index::Format;
use crate::reference::Digest;

pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// OCI layer media type ↔ Docker schema 2 layer media type.
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
        "layer {digest} is {media_type}, which a Docker schema 2 manifest cannot express (gzip or plain tar layers only)"
    )]
    Layer { digest: Digest, media_type: String },
    #[error("layer {digest} is {media_type}, which has no OCI image layer media type")]
    OciLayer { digest: Digest, media_type: String },
    #[error("the image config is {0}, not an image config")]
    Config(String),
    #[error("the manifest is {0}, not an OCI or Docker image manifest")]
    Manifest(String),
    #[error("the image manifest is not valid: {0}")]
    Invalid(String),
}

/// A manifest in the format asked for: its exact bytes and the blobs it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub bytes: Vec<u8>,
    pub digest: Digest,
    pub media_type: String,
    pub config: BlobRef,
    pub layers: Vec<BlobRef>,
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

/// The image manifest media type of `format`.
pub fn manifest_media_type(format: Format) -> &'static str {
    match format {
        Format::Oci => OCI_MANIFEST,
        Format::Docker => DOCKER_MANIFEST,
    }
}

/// The format an image manifest (or list) media type belongs to, if either.
pub fn format_of(media_type: &str) -> Option<Format> {
    if media_type.starts_with("application/vnd.oci.") {
        Some(Format::Oci)
    } else if media_type.starts_with("application/vnd.docker.") {
        Some(Format::Docker)
    } else {
        None
    }
}

/// `layer`'s media type in `to`, from either format's name for it.
fn layer_media_type(layer: &BlobRef, to: Format) -> Result<&'static str, Error> {
    let pair = LAYERS
        .iter()
        .find(|(oci, docker)| *oci == layer.media_type || *docker == layer.media_type);
    match (pair, to) {
        (Some((_, docker)), Format::Docker) => Ok(docker),
        (Some((oci, _)), Format::Oci) => Ok(oci),
        (None, Format::Docker) => Err(Error::Layer {
            digest: layer.digest.clone(),
            media_type: layer.media_type.clone(),
        }),
        (None, Format::Oci) => Err(Error::OciLayer {
            digest: layer.digest.clone(),
            media_type: layer.media_type.clone(),
        }),
    }
}

/// The image manifest `bytes` in `to`: unchanged (same bytes, same digest) when it already is
/// in that format, otherwise the manifest of `to` naming the same config and layers.
pub fn convert_manifest(bytes: &[u8], to: Format) -> Result<Manifest, Error> {
    let media_type = crate::index::media_type_of(bytes);
    if media_type != OCI_MANIFEST && media_type != DOCKER_MANIFEST {
        return Err(Error::Manifest(media_type));
    }
    let parsed: oci_spec::image::ImageManifest =
        serde_json::from_slice(bytes).map_err(|e| Error::Invalid(e.to_string()))?;
    let blob = |d: &oci_spec::image::Descriptor| -> Result<BlobRef, Error> {
        Ok(BlobRef {
            digest: Digest::parse(d.digest().as_ref())
                .map_err(|e| Error::Invalid(e.to_string()))?,
            size: d.size(),
            media_type: d.media_type().to_string(),
        })
    };
    let config = blob(parsed.config())?;
    let layers = parsed
        .layers()
        .iter()
        .map(blob)
        .collect::<Result<Vec<_>, _>>()?;
    if media_type == manifest_media_type(to) {
        return Ok(Manifest {
            digest: Digest::of(bytes),
            bytes: bytes.to_vec(),
            media_type,
            config,
            layers,
        });
    }
    if config.media_type != OCI_CONFIG && config.media_type != DOCKER_CONFIG {
        return Err(Error::Config(config.media_type));
    }
    let config = BlobRef {
        media_type: match to {
            Format::Oci => OCI_CONFIG,
            Format::Docker => DOCKER_CONFIG,
        }
        .to_owned(),
        ..config
    };
    let mut converted = Vec::with_capacity(layers.len());
    for (layer, desc) in layers.iter().zip(parsed.layers()) {
        converted.push((
            BlobRef {
                media_type: layer_media_type(layer, to)?.to_owned(),
                ..layer.clone()
            },
            desc.urls().clone().unwrap_or_default(),
        ));
    }
    let doc = ManifestDoc {
        schema_version: 2,
        media_type: manifest_media_type(to),
        config: DescriptorDoc {
            media_type: &config.media_type,
            size: config.size,
            digest: &config.digest,
            urls: Vec::new(),
        },
        layers: converted
            .iter()
            .map(|(l, urls)| DescriptorDoc {
                media_type: &l.media_type,
                size: l.size,
                digest: &l.digest,
                urls: urls.clone(),
            })
            .collect(),
    };
    let bytes =
        serde_json::to_vec(&doc).map_err(|e| Error::Invalid(format!("serialising: {e}")))?;
    Ok(Manifest {
        digest: Digest::of(&bytes),
        bytes,
        media_type: manifest_media_type(to).to_owned(),
        config,
        layers: converted.into_iter().map(|(l, _)| l).collect(),
    })
}

/// `image` in `to`; an image already in that format is returned as it is.
pub fn convert(image: &Image, to: Format) -> Result<Image, Error> {
    if image.media_type == manifest_media_type(to) {
        return Ok(image.clone());
    }
    if image.media_type != OCI_MANIFEST && image.media_type != DOCKER_MANIFEST {
        return Err(Error::Manifest(image.media_type.clone()));
    }
    let m = convert_manifest(&image.manifest, to)?;
    Ok(Image {
        manifest: m.bytes,
        manifest_digest: m.digest,
        media_type: m.media_type,
        platform: image.platform.clone(),
        config: m.config,
        layers: m.layers,
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
        let a = convert(&oci, Format::Docker).unwrap();
        let b = convert(&oci, Format::Docker).unwrap();
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
        assert_eq!(convert(&a, Format::Docker).unwrap().manifest, a.manifest);
    }

    #[test]
    fn a_docker_manifest_converts_to_oci_deterministically_with_the_same_blobs() {
        let oci = oci_image("application/vnd.oci.image.layer.v1.tar+gzip");
        let docker = convert(&oci, Format::Docker).unwrap();
        let back = convert(&docker, Format::Oci).unwrap();
        assert_eq!(back.media_type, OCI_MANIFEST);
        assert_eq!(back.manifest_digest, Digest::of(&back.manifest));
        assert_eq!(
            convert(&docker, Format::Oci).unwrap().manifest,
            back.manifest,
            "the same bytes every time"
        );
        assert_eq!(back.config.digest, oci.config.digest);
        assert_eq!(back.config.media_type, OCI_CONFIG);
        assert_eq!(back.layers, oci.layers, "same blobs, OCI media types");
        let v: serde_json::Value = serde_json::from_slice(&back.manifest).unwrap();
        assert_eq!(v["mediaType"], OCI_MANIFEST);
        assert_eq!(v["config"]["mediaType"], OCI_CONFIG);
        assert_eq!(
            v["layers"][0]["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        // Round trips are stable: OCI -> Docker -> OCI -> Docker gives the first Docker bytes.
        assert_eq!(
            convert(&back, Format::Docker).unwrap().manifest,
            docker.manifest
        );
        // An OCI manifest converts to itself, byte for byte.
        assert_eq!(convert(&oci, Format::Oci).unwrap().manifest, oci.manifest);
        let same = convert_manifest(&oci.manifest, Format::Oci).unwrap();
        assert_eq!(
            (same.bytes, same.digest),
            (oci.manifest.clone(), oci.manifest_digest)
        );
    }

    #[test]
    fn a_layer_the_other_format_cannot_name_is_refused_by_name() {
        let oci = oci_image("application/vnd.oci.image.layer.v1.tar+gzip");
        let docker = convert(&oci, Format::Docker).unwrap();
        let odd = String::from_utf8(docker.manifest.clone()).unwrap().replace(
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "application/vnd.docker.image.rootfs.diff.tar.lz4",
        );
        let err = convert_manifest(odd.as_bytes(), Format::Oci).unwrap_err();
        assert!(matches!(err, Error::OciLayer { .. }), "{err}");
        assert!(err.to_string().contains("lz4"), "{err}");
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        assert!(convert_manifest(index, Format::Docker).is_err());
    }

    #[test]
    fn formats_are_told_apart_by_media_type() {
        assert_eq!(format_of(OCI_MANIFEST), Some(Format::Oci));
        assert_eq!(format_of(crate::index::OCI_INDEX), Some(Format::Oci));
        assert_eq!(format_of(DOCKER_MANIFEST), Some(Format::Docker));
        assert_eq!(format_of(crate::index::DOCKER_LIST), Some(Format::Docker));
        assert_eq!(format_of("application/vnd.in-toto+json"), None);
        assert_eq!(format_of(""), None);
    }

    #[test]
    fn zstd_layer_is_refused_by_name() {
        let oci = oci_image("application/vnd.oci.image.layer.v1.tar+zstd");
        let err = convert(&oci, Format::Docker).unwrap_err();
        assert!(matches!(err, Error::Layer { .. }));
        let msg = err.to_string();
        assert!(
            msg.contains("zstd") && msg.contains(d('1').as_str()),
            "{msg}"
        );
    }
}
