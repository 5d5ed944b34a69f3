//! Deterministic coreos-assembler build trees for tests: `builds/builds.json`, each arch's
//! `meta.json`, and a tiny but real OCI archive per arch, laid out the way `cosa` and
//! `skopeo copy ... oci-archive:` leave them.
//!
//! Everything is a pure function of the specs, down to tar headers and gzip headers, so the
//! same spec always produces byte-identical files and a checked-in tree can be compared with a
//! fresh one. The module stands alone (no dependency on the reprise library) so that it
//! describes the formats independently of the code under test.
//!
//! Every image has at least two gzip layers: a base layer that is the same blob for every arch
//! of every build (so registries see cross-arch and cross-build blob sharing), and an arch
//! layer whose payload is pseudo-random bytes derived from (name, arch, salt) only. The payload
//! is streamed through a temp file, so a 1 GiB layer never has to fit in memory.
//!
//! [`BuildSpec::encapsulated`] shapes a build like the archives coreos-assembler gets from
//! `rpm-ostree`/`ostree container encapsulate`: dozens of tiny chunk layers between those two
//! (annotated `ostree.components`), the ostree labels on the config, and the tar entries in the
//! order containers/image's `oci-archive:` writer walks the layout directory (`blobs/` first,
//! `index.json` and `oci-layout` last). Those options default to the demo's shape, which they
//! leave byte for byte as it was.

#![allow(dead_code)]

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use flate2::{Compression, GzBuilder};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const DEMO_ID: &str = "40.20261101.3.0";
pub const DEMO_NAME: &str = "fedora-coreos";
pub const DEMO_ARTIFACT: &str = "ostree";
pub const DEMO_ARCHES: [&str; 4] = ["x86_64", "aarch64", "ppc64le", "s390x"];
pub const DEMO_SALT: &str = "demo";
/// Small enough that the checked-in demo archives stay around 10 KiB each.
pub const DEMO_LAYER_SIZE: u64 = 1536;

/// A fixed `coreos-assembler.meta-stamp` (nanoseconds), since cosa's real value is the clock.
pub const META_STAMP: u64 = 1_761_955_200_000_000_000;
/// A fixed builds.json `timestamp`, for the same reason.
pub const BUILDS_TIMESTAMP: &str = "2026-11-01T00:00:00Z";

pub const OCI_LAYOUT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const PLAIN_LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
/// The layer annotation rpm-ostree's chunking puts on each chunk, naming what it holds.
pub const COMPONENTS_ANNOTATION: &str = "ostree.components";
/// The most layers rpm-ostree's chunking makes by default, and what `encapsulated` uses.
pub const ENCAPSULATED_LAYERS: usize = 64;
/// Payload bytes of each chunk layer: tiny, so a 64-layer build stays fast to push.
pub const CHUNK_SIZE: u64 = 64;
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
pub const REF_NAME: &str = "latest";

/// Above this, layers are gzip "stored" blocks: random payload does not compress anyway, and
/// deflating a 1 GiB layer would dominate test time.
pub const STORED_ABOVE: u64 = 1 << 20;

/// The one file of the shared base layer; constant so its blob is identical everywhere.
const BASE_OS_RELEASE: &str =
    "NAME=\"Reprise Fixture\"\nID=reprise-fixture\nVERSION_ID=1\nVARIANT_ID=coreos\n";
const PAYLOAD_PATH: &str = "usr/share/reprise/payload";
const CHUNK_DIR: &str = "usr/share/reprise/chunks/";

/// One arch of a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchSpec {
    /// cosa basearch: x86_64, aarch64, ppc64le, s390x or riscv64.
    pub arch: String,
    /// Changing it changes only this arch's own layer, hence its config and manifest digests.
    pub salt: String,
    /// Bytes of payload in the arch-specific layer.
    pub layer_size: u64,
}

impl ArchSpec {
    /// An arch with the demo salt and layer size.
    pub fn new(arch: &str) -> ArchSpec {
        ArchSpec {
            arch: arch.to_owned(),
            salt: DEMO_SALT.to_owned(),
            layer_size: DEMO_LAYER_SIZE,
        }
    }
}

/// One build: an entry of builds.json and a `builds/<id>/` directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSpec {
    pub id: String,
    /// cosa's `name`, e.g. "fedora-coreos".
    pub name: String,
    /// `ostree-version`, also the image's `org.opencontainers.image.version` label.
    pub version: String,
    /// The key under `images` in meta.json.
    pub artifact: String,
    pub arches: Vec<ArchSpec>,
    /// Layers per image, at least 2: the shared base layer, `layers - 2` chunk layers of
    /// [`CHUNK_SIZE`] bytes each (derived from name, arch, salt and position, annotated
    /// `ostree.components`), then the arch layer. The demo has 2.
    pub layers: usize,
    /// gzip layers (the default, as rpm-ostree writes them); `false` writes plain tar layers.
    pub gzip: bool,
    /// Add the labels `ostree container encapsulate` puts on the config: `ostree.commit`
    /// (derived from name, id, arch and salt), `ostree.bootable`, `containers.bootc` and
    /// `ostree.final-diffid`.
    pub ostree_labels: bool,
    /// More config labels, after all the others, in this order.
    pub labels: Vec<(String, String)>,
    /// The order of the archive's tar entries.
    pub tar_order: TarOrder,
}

/// Where the small JSON entries sit in an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TarOrder {
    /// `oci-layout` and `index.json` first, then the blobs: what a streaming reader likes
    /// (the demo).
    #[default]
    IndexFirst,
    /// Sorted by path, directories before their contents, as containers/image's
    /// `oci-archive:` writer walks the layout directory: `blobs/`, `blobs/sha256/`, every
    /// blob, then `index.json` and `oci-layout`.
    Lexical,
}

impl BuildSpec {
    /// The checked-in `fixtures/demo` build: four arches with tiny layers.
    pub fn demo() -> BuildSpec {
        BuildSpec::demo_with_id(DEMO_ID)
    }

    /// The demo build under another id (and the same version), e.g. for "a newer build" tests.
    /// With the same name and salts its arch layers are the same blobs as the demo's; only the
    /// configs (version label) and so the manifests differ.
    pub fn demo_with_id(id: &str) -> BuildSpec {
        BuildSpec {
            id: id.to_owned(),
            name: DEMO_NAME.to_owned(),
            version: id.to_owned(),
            artifact: DEMO_ARTIFACT.to_owned(),
            arches: DEMO_ARCHES.iter().map(|a| ArchSpec::new(a)).collect(),
            layers: 2,
            gzip: true,
            ostree_labels: false,
            labels: Vec::new(),
            tar_order: TarOrder::IndexFirst,
        }
    }

    /// The demo build shaped like coreos-assembler's real ostree archives (see the module
    /// head): [`ENCAPSULATED_LAYERS`] gzip layers per arch, the ostree labels, and the tar
    /// order of containers/image.
    pub fn encapsulated(id: &str) -> BuildSpec {
        BuildSpec {
            layers: ENCAPSULATED_LAYERS,
            ostree_labels: true,
            tar_order: TarOrder::Lexical,
            ..BuildSpec::demo_with_id(id)
        }
    }

    /// The spec of one arch, for tweaking its salt or size; panics if the build lacks it.
    pub fn arch_mut(&mut self, arch: &str) -> &mut ArchSpec {
        self.arches
            .iter_mut()
            .find(|a| a.arch == arch)
            .unwrap_or_else(|| panic!("build {} has no arch {arch}", self.id))
    }
}

/// What was written for one arch of one build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenArch {
    pub build_id: String,
    pub arch: String,
    /// `<root>/builds/<id>/<arch>/meta.json`.
    pub meta: PathBuf,
    /// `<root>/builds/<id>/<arch>/<name>-<id>-ostree.<arch>.ociarchive`.
    pub archive: PathBuf,
    /// "sha256:<hex>" of the image manifest.
    pub manifest_digest: String,
    pub manifest_size: u64,
    /// "sha256:<hex>" of the image config.
    pub config_digest: String,
    /// "sha256:<hex>" of each layer blob, in manifest order: the shared base first, then the
    /// chunk layers, then the arch layer.
    pub layer_digests: Vec<String>,
    /// Plain hex, as meta.json records it.
    pub archive_sha256: String,
    pub archive_size: u64,
}

/// Writes `<root>/builds/builds.json` listing `builds` (first element = newest, as cosa keeps
/// it) and, for each build and arch, `<root>/builds/<id>/<arch>/meta.json` plus the archive.
pub fn write_tree(root: &Path, builds: &[BuildSpec]) -> io::Result<Vec<WrittenArch>> {
    let mut ids = HashSet::new();
    for build in builds {
        if !ids.insert(build.id.as_str()) {
            return Err(invalid(format!("build {} is listed twice", build.id)));
        }
    }
    let builds_dir = root.join("builds");
    let mut written = Vec::new();
    for build in builds {
        written.extend(write_build(&builds_dir, build)?);
    }
    // Last, as cosa only lists a build once its files are complete.
    let list: Vec<Value> = builds.iter().map(builds_entry).collect();
    let doc = json!({
        "schema-version": "1.0.0",
        "builds": list,
        "timestamp": BUILDS_TIMESTAMP,
    });
    write_pretty_json(&builds_dir.join("builds.json"), &doc)?;
    Ok(written)
}

/// Writes one build and puts it first in an existing builds.json (creating the file if there
/// is none), replacing any entry with the same id the way cosa's `insert_build` does. Every
/// other key of builds.json, including its timestamp, is left as it was.
pub fn add_build(root: &Path, build: &BuildSpec) -> io::Result<Vec<WrittenArch>> {
    let builds_dir = root.join("builds");
    let path = builds_dir.join("builds.json");
    let mut doc = match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice::<Value>(&bytes)
            .map_err(|e| invalid(format!("{}: {e}", path.display())))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => json!({
            "schema-version": "1.0.0",
            "builds": [],
            "timestamp": BUILDS_TIMESTAMP,
        }),
        Err(e) => return Err(e),
    };
    let written = write_build(&builds_dir, build)?;
    let list = doc
        .get_mut("builds")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| invalid(format!("{}: no \"builds\" list", path.display())))?;
    list.retain(|b| b.get("id").and_then(Value::as_str) != Some(build.id.as_str()));
    list.insert(0, builds_entry(build));
    write_pretty_json(&path, &doc)?;
    Ok(written)
}

/// The archive's file name inside its arch directory, as cosa names it.
pub fn archive_name(name: &str, id: &str, arch: &str) -> String {
    format!("{name}-{id}-ostree.{arch}.ociarchive")
}

/// The OCI `architecture` and `variant` of a cosa basearch.
pub fn oci_platform(arch: &str) -> io::Result<(&'static str, Option<&'static str>)> {
    Ok(match arch {
        "x86_64" => ("amd64", None),
        "aarch64" => ("arm64", Some("v8")),
        "ppc64le" => ("ppc64le", None),
        "s390x" => ("s390x", None),
        "riscv64" => ("riscv64", None),
        _ => return Err(invalid(format!("unknown basearch {arch:?}"))),
    })
}

/// The arch layer's payload: `len` pseudo-random bytes that depend only on (name, arch, salt)
/// and not on how the reader is driven.
pub fn payload(name: &str, arch: &str, salt: &str, len: u64) -> impl Read + use<> {
    let mut seed = Sha256::new();
    // NUL separators keep ("ab", "c") and ("a", "bc") apart.
    for part in ["reprise-fixture-payload", name, arch, salt] {
        seed.update(part.as_bytes());
        seed.update([0u8]);
    }
    let seed = seed.finalize();
    let mut state = [0u8; 8];
    state.copy_from_slice(&seed[..8]);
    Payload {
        state: u64::from_le_bytes(state),
        word: [0; 8],
        used: 8,
        remaining: len,
    }
}

/// "sha256:<hex>" of some bytes.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Ids, names and arches become path components, so they must not be able to leave `root`.
fn check_component(what: &str, value: &str) -> io::Result<()> {
    if value.is_empty() || value == "." || value == ".." || value.contains(['/', '\\', '\0']) {
        return Err(invalid(format!(
            "{what} {value:?} is not a plain file name"
        )));
    }
    Ok(())
}

fn builds_entry(build: &BuildSpec) -> Value {
    let arches: Vec<&str> = build.arches.iter().map(|a| a.arch.as_str()).collect();
    json!({ "id": build.id, "arches": arches })
}

/// Python's `json.dump(data, f, indent=4)`: four-space indent, ": " and no trailing newline.
fn write_pretty_json(path: &Path, value: &Value) -> io::Result<()> {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    serde::Serialize::serialize(value, &mut ser).map_err(io::Error::other)?;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(path, out)
}

fn write_build(builds_dir: &Path, build: &BuildSpec) -> io::Result<Vec<WrittenArch>> {
    check_component("build id", &build.id)?;
    check_component("name", &build.name)?;
    if build.layers < 2 {
        return Err(invalid(format!(
            "build {} asks for {} layers; an image has at least the base and the arch layer",
            build.id, build.layers
        )));
    }
    let mut seen = HashSet::new();
    for arch in &build.arches {
        oci_platform(&arch.arch)?;
        if !seen.insert(arch.arch.as_str()) {
            return Err(invalid(format!(
                "build {} lists arch {} twice",
                build.id, arch.arch
            )));
        }
    }
    let base = base_layer(build.gzip)?;
    build
        .arches
        .iter()
        .map(|arch| {
            write_arch(
                &builds_dir.join(&build.id).join(&arch.arch),
                build,
                arch,
                &base,
            )
        })
        .collect()
}

fn write_arch(
    dir: &Path,
    build: &BuildSpec,
    spec: &ArchSpec,
    base: &InMemoryLayer,
) -> io::Result<WrittenArch> {
    fs::create_dir_all(dir)?;
    let (oci_arch, variant) = oci_platform(&spec.arch)?;

    // An unnamed temp file in the target directory: same filesystem, and nothing is left
    // behind even if the process dies mid-way.
    let mut layer_file = tempfile::tempfile_in(dir)?;
    let arch_layer = {
        let level = if spec.layer_size > STORED_ABOVE {
            Compression::none()
        } else {
            Compression::default()
        };
        let out = BufWriter::new(&mut layer_file);
        let (out, layer) = write_layer(out, build.gzip.then_some(level), |tar| {
            for dir in ["usr/", "usr/share/", "usr/share/reprise/"] {
                append_dir(tar, dir)?;
            }
            let data = payload(&build.name, &spec.arch, &spec.salt, spec.layer_size);
            append_file(tar, PAYLOAD_PATH, spec.layer_size, data)
        })?;
        out.into_inner().map_err(|e| e.into_error())?;
        layer
    };
    layer_file.seek(SeekFrom::Start(0))?;
    let chunks = (1..build.layers - 1)
        .map(|i| chunk_layer(build, spec, i))
        .collect::<io::Result<Vec<_>>>()?;
    let layers: Vec<&Layer> = std::iter::once(&base.layer)
        .chain(chunks.iter().map(|c| &c.layer))
        .chain([&arch_layer])
        .collect();

    let mut config = json!({ "architecture": oci_arch, "os": "linux" });
    if let Some(variant) = variant {
        config["variant"] = json!(variant);
    }
    config["rootfs"] = json!({
        "type": "layers",
        "diff_ids": layers.iter().map(|l| l.diff_id.as_str()).collect::<Vec<_>>(),
    });
    let mut labels = json!({
        "ostree.linux": kernel_release(&build.version, &spec.arch),
        "org.opencontainers.image.version": build.version,
    });
    if build.ostree_labels {
        labels["ostree.commit"] = json!(ostree_commit(build, spec));
        labels["ostree.bootable"] = json!("true");
        labels["containers.bootc"] = json!("1");
        labels["ostree.final-diffid"] = json!(arch_layer.diff_id);
    }
    for (key, value) in &build.labels {
        labels[key.as_str()] = json!(value);
    }
    config["config"] = json!({ "Labels": labels });
    let config = serde_json::to_vec(&config).map_err(io::Error::other)?;
    let config_digest = sha256_digest(&config);

    let layer_media_type = if build.gzip {
        LAYER_MEDIA_TYPE
    } else {
        PLAIN_LAYER_MEDIA_TYPE
    };
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": CONFIG_MEDIA_TYPE,
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": layers.iter().enumerate().map(|(i, l)| {
            let mut desc = json!({
                "mediaType": layer_media_type,
                "digest": l.digest,
                "size": l.size,
            });
            if i > 0 && i < layers.len() - 1 {
                desc["annotations"] = json!({ COMPONENTS_ANNOTATION: chunk_name(i) });
            }
            desc
        }).collect::<Vec<_>>(),
    });
    let manifest = serde_json::to_vec(&manifest).map_err(io::Error::other)?;
    let manifest_digest = sha256_digest(&manifest);

    let index = json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [{
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": manifest_digest,
            "size": manifest.len(),
            "annotations": { REF_NAME_ANNOTATION: REF_NAME },
        }],
    });
    let index = serde_json::to_vec(&index).map_err(io::Error::other)?;

    let name = archive_name(&build.name, &build.id, &spec.arch);
    let archive = dir.join(&name);
    let file = File::create(&archive)?;
    let mut tar = tar::Builder::new(Hashing::new(BufWriter::new(file)));
    // Every blob but the arch layer (which is streamed from its temp file), by digest.
    let mut small: Vec<(&str, &[u8])> = vec![
        (config_digest.as_str(), config.as_slice()),
        (base.layer.digest.as_str(), base.bytes.as_slice()),
    ];
    small.extend(
        chunks
            .iter()
            .map(|c| (c.layer.digest.as_str(), c.bytes.as_slice())),
    );
    small.push((manifest_digest.as_str(), manifest.as_slice()));
    match build.tar_order {
        TarOrder::IndexFirst => {
            // Small metadata first so that a streaming reader meets index.json before any
            // big blob.
            append_bytes(&mut tar, "oci-layout", OCI_LAYOUT.as_bytes())?;
            append_bytes(&mut tar, "index.json", &index)?;
            append_dir(&mut tar, "blobs/")?;
            append_dir(&mut tar, "blobs/sha256/")?;
            let (last, first) = small.split_last().expect("config and manifest");
            for (digest, bytes) in first {
                append_bytes(&mut tar, &blob_path(digest), bytes)?;
            }
            append_file(
                &mut tar,
                &blob_path(&arch_layer.digest),
                arch_layer.size,
                &mut layer_file,
            )?;
            append_bytes(&mut tar, &blob_path(last.0), last.1)?;
        }
        TarOrder::Lexical => {
            append_dir(&mut tar, "blobs/")?;
            append_dir(&mut tar, "blobs/sha256/")?;
            let mut blobs: Vec<&str> = small.iter().map(|(d, _)| *d).collect();
            blobs.push(&arch_layer.digest);
            blobs.sort_unstable();
            blobs.dedup();
            for digest in blobs {
                match small.iter().find(|(d, _)| *d == digest) {
                    Some((_, bytes)) => append_bytes(&mut tar, &blob_path(digest), bytes)?,
                    None => append_file(
                        &mut tar,
                        &blob_path(digest),
                        arch_layer.size,
                        &mut layer_file,
                    )?,
                }
            }
            append_bytes(&mut tar, "index.json", &index)?;
            append_bytes(&mut tar, "oci-layout", OCI_LAYOUT.as_bytes())?;
        }
    }
    let (out, archive_sha256, archive_size) = tar.into_inner()?.finish();
    out.into_inner().map_err(|e| e.into_error())?;
    drop(layer_file);

    let meta = json!({
        "buildid": build.id,
        "name": build.name,
        "ostree-version": build.version,
        "coreos-assembler.basearch": spec.arch,
        "coreos-assembler.meta-stamp": META_STAMP,
        "images": {
            build.artifact.as_str(): {
                "path": name,
                "sha256": archive_sha256,
                "size": archive_size,
                "skip-compression": true,
            }
        },
    });
    let meta_path = dir.join("meta.json");
    write_pretty_json(&meta_path, &meta)?;

    Ok(WrittenArch {
        build_id: build.id.clone(),
        arch: spec.arch.clone(),
        meta: meta_path,
        archive,
        manifest_digest,
        manifest_size: manifest.len() as u64,
        config_digest,
        layer_digests: layers.iter().map(|l| l.digest.clone()).collect(),
        archive_sha256,
        archive_size,
    })
}

/// The name of chunk layer `i` (1-based, as it sits in the manifest after the base layer).
fn chunk_name(i: usize) -> String {
    format!("reprise-chunk-{i:02}")
}

/// Chunk layer `i` of one arch: one small file whose bytes depend on (name, arch, salt, i).
fn chunk_layer(build: &BuildSpec, spec: &ArchSpec, i: usize) -> io::Result<InMemoryLayer> {
    let name = chunk_name(i);
    let level = build.gzip.then_some(Compression::default());
    let (bytes, layer) = write_layer(Vec::new(), level, |tar| {
        for dir in ["usr/", "usr/share/", "usr/share/reprise/", CHUNK_DIR] {
            append_dir(tar, dir)?;
        }
        let salt = format!("{}\0{name}", spec.salt);
        let data = payload(&build.name, &spec.arch, &salt, CHUNK_SIZE);
        append_file(tar, &format!("{CHUNK_DIR}{name}"), CHUNK_SIZE, data)
    })?;
    Ok(InMemoryLayer { layer, bytes })
}

/// A stand-in for the ostree commit checksum: 64 hex digits from (name, id, arch, salt).
fn ostree_commit(build: &BuildSpec, spec: &ArchSpec) -> String {
    let mut h = Sha256::new();
    for part in [
        "reprise-fixture-commit",
        &build.name,
        &build.id,
        &spec.arch,
        &spec.salt,
    ] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    hex::encode(h.finalize())
}

/// Something plausible for the `ostree.linux` label; nothing reads it, it only has to look
/// like FCOS and differ per arch.
fn kernel_release(version: &str, arch: &str) -> String {
    let fedora = version.split('.').next().unwrap_or("40");
    format!("6.17.5-300.fc{fedora}.{arch}")
}

fn blob_path(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    format!("blobs/sha256/{hex}")
}

/// A compressed layer blob as the manifest and config describe it.
struct Layer {
    /// "sha256:<hex>" of the gzip blob.
    digest: String,
    size: u64,
    /// "sha256:<hex>" of the uncompressed tar.
    diff_id: String,
}

struct InMemoryLayer {
    layer: Layer,
    bytes: Vec<u8>,
}

fn base_layer(gzip: bool) -> io::Result<InMemoryLayer> {
    let level = gzip.then_some(Compression::default());
    let (bytes, layer) = write_layer(Vec::new(), level, |tar| {
        for dir in ["etc/", "usr/", "usr/lib/"] {
            append_dir(tar, dir)?;
        }
        append_bytes(tar, "usr/lib/os-release", BASE_OS_RELEASE.as_bytes())
    })?;
    Ok(InMemoryLayer { layer, bytes })
}

type LayerTar<W> = tar::Builder<Hashing<Compressor<Hashing<W>>>>;

/// A layer's tar stream on its way out: gzip-compressed, or written as it is.
enum Compressor<W: Write> {
    Gzip(flate2::write::GzEncoder<W>),
    Plain(W),
}

impl<W: Write> Compressor<W> {
    fn finish(self) -> io::Result<W> {
        match self {
            Compressor::Gzip(gz) => gz.finish(),
            Compressor::Plain(out) => Ok(out),
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Gzip(gz) => gz.write(buf),
            Compressor::Plain(out) => out.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Gzip(gz) => gz.flush(),
            Compressor::Plain(out) => out.flush(),
        }
    }
}

/// Writes a tar to `out`, gzip-compressed at `level` (plain with `None`), hashing it both
/// before (diff_id) and after (blob digest) compression in the same pass.
fn write_layer<W: Write>(
    out: W,
    level: Option<Compression>,
    fill: impl FnOnce(&mut LayerTar<W>) -> io::Result<()>,
) -> io::Result<(W, Layer)> {
    // Fixed gzip header (mtime 0, no file name, OS "unknown") so bytes do not depend on the
    // clock or the platform.
    let compressor = match level {
        Some(level) => Compressor::Gzip(GzBuilder::new().mtime(0).write(Hashing::new(out), level)),
        None => Compressor::Plain(Hashing::new(out)),
    };
    let mut tar = tar::Builder::new(Hashing::new(compressor));
    fill(&mut tar)?;
    let (compressor, diff_hex, _) = tar.into_inner()?.finish();
    let (out, digest_hex, size) = compressor.finish()?.finish();
    Ok((
        out,
        Layer {
            digest: format!("sha256:{digest_hex}"),
            size,
            diff_id: format!("sha256:{diff_hex}"),
        },
    ))
}

/// Headers carry nothing from the machine or the clock.
fn header(kind: tar::EntryType, size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(if kind == tar::EntryType::Directory {
        0o755
    } else {
        0o644
    });
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, path: &str) -> io::Result<()> {
    let mut header = header(tar::EntryType::Directory, 0);
    tar.append_data(&mut header, path, io::empty())
}

fn append_file<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    size: u64,
    data: impl Read,
) -> io::Result<()> {
    let mut header = header(tar::EntryType::Regular, size);
    // `take` guards against a reader longer than the header says, which would corrupt the tar.
    tar.append_data(&mut header, path, data.take(size))
}

fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, path: &str, data: &[u8]) -> io::Result<()> {
    append_file(tar, path, data.len() as u64, data)
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> Hashing<W> {
    fn new(inner: W) -> Hashing<W> {
        Hashing {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// The inner writer, the hex sha256 and the byte count.
    fn finish(self) -> (W, String, u64) {
        (self.inner, hex::encode(self.hasher.finalize()), self.len)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// splitmix64, served a byte at a time from the current word so that the stream does not
/// depend on the sizes of the reads.
struct Payload {
    state: u64,
    word: [u8; 8],
    used: usize,
    remaining: u64,
}

impl Payload {
    fn next_word(&mut self) -> [u8; 8] {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)).to_le_bytes()
    }
}

impl Read for Payload {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = usize::try_from(self.remaining).map_or(buf.len(), |r| r.min(buf.len()));
        let mut filled = 0;
        while filled < n {
            if self.used == self.word.len() {
                self.word = self.next_word();
                self.used = 0;
            }
            let take = (self.word.len() - self.used).min(n - filled);
            buf[filled..filled + take].copy_from_slice(&self.word[self.used..self.used + take]);
            self.used += take;
            filled += take;
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}
