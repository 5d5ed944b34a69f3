//! Tests for the fixture generator itself: it is deterministic, the checked-in `fixtures/demo`
//! is exactly what it writes, and its archives are internally consistent OCI layouts that
//! skopeo accepts. The other integration tests trust these fixtures, so they are checked here
//! independently of the reprise library.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use serde_json::Value;

use crate::support::skopeo::skopeo;
use reprise_fixtures::{
    self as fixtures, BuildSpec, TarOrder, WrittenArch, sha256_digest, sha256_hex,
};

fn demo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/demo")
}

/// Every file under `root`, by path relative to it.
fn files_under(root: &Path) -> BTreeSet<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.insert(path.strip_prefix(root).expect("under root").to_owned());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

fn read_json(bytes: &[u8], what: &str) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// One archive's entries, with the header fields the generator promises to pin.
struct Entry {
    data: Vec<u8>,
    is_dir: bool,
    mode: u32,
    mtime: u64,
    uid: u64,
    gid: u64,
    user: Vec<u8>,
    group: Vec<u8>,
}

fn read_tar(data: impl Read) -> Vec<(String, Entry)> {
    let mut archive = tar::Archive::new(data);
    let mut out = Vec::new();
    for entry in archive.entries().expect("tar entries") {
        let mut entry = entry.expect("tar entry");
        let header = entry.header().clone();
        let name = String::from_utf8(entry.path_bytes().into_owned()).expect("UTF-8 name");
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("entry data");
        out.push((
            name,
            Entry {
                data,
                is_dir: header.entry_type().is_dir(),
                mode: header.mode().expect("mode"),
                mtime: header.mtime().expect("mtime"),
                uid: header.uid().expect("uid"),
                gid: header.gid().expect("gid"),
                user: header.username_bytes().unwrap_or_default().to_vec(),
                group: header.groupname_bytes().unwrap_or_default().to_vec(),
            },
        ));
    }
    out
}

fn assert_deterministic_headers(entries: &[(String, Entry)], what: &str) {
    for (name, e) in entries {
        let mode = if e.is_dir { 0o755 } else { 0o644 };
        assert_eq!(e.mode, mode, "{what}: {name} mode");
        assert_eq!(
            (e.mtime, e.uid, e.gid),
            (0, 0, 0),
            "{what}: {name} mtime/uid/gid"
        );
        assert!(
            e.user.is_empty() && e.group.is_empty(),
            "{what}: {name} has owner names"
        );
    }
}

/// Checks one written arch from the bytes on disk alone, the way a consumer would read it, and
/// returns the archive's blobs by digest.
fn check_arch(build: &BuildSpec, w: &WrittenArch) -> BTreeMap<String, Vec<u8>> {
    let what = w.archive.display().to_string();
    let archive_bytes = fs::read(&w.archive).expect("archive");

    // meta.json describes the archive file, with cosa's key order.
    let meta_bytes = fs::read(&w.meta).expect("meta.json");
    let meta = read_json(&meta_bytes, "meta.json");
    let keys: Vec<&str> = meta
        .as_object()
        .expect("meta object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "buildid",
            "name",
            "ostree-version",
            "coreos-assembler.basearch",
            "coreos-assembler.meta-stamp",
            "images"
        ]
    );
    assert_eq!(meta["buildid"], build.id.as_str());
    assert_eq!(meta["coreos-assembler.basearch"], w.arch.as_str());
    let image = &meta["images"][build.artifact.as_str()];
    let file_name = w.archive.file_name().unwrap().to_str().unwrap();
    assert_eq!(
        file_name,
        format!("{}-{}-ostree.{}.ociarchive", build.name, build.id, w.arch)
    );
    assert_eq!(image["path"], file_name);
    assert_eq!(image["sha256"], sha256_hex(&archive_bytes).as_str());
    assert_eq!(image["size"], archive_bytes.len() as u64);
    assert_eq!(image["skip-compression"], true);
    assert_eq!(w.archive_sha256, sha256_hex(&archive_bytes));
    assert_eq!(w.archive_size, archive_bytes.len() as u64);
    assert!(
        !meta_bytes.ends_with(b"\n"),
        "meta.json has no trailing newline"
    );

    // The archive is an OCI layout in the order the spec asks for.
    let entries = read_tar(&archive_bytes[..]);
    assert_deterministic_headers(&entries, &what);
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    let n = names.len();
    let blob_entries = match build.tar_order {
        TarOrder::IndexFirst => {
            assert_eq!(
                names[..4],
                ["oci-layout", "index.json", "blobs/", "blobs/sha256/"],
                "{what}"
            );
            &entries[4..]
        }
        TarOrder::Lexical => {
            let mut sorted = names.clone();
            sorted.sort_unstable();
            assert_eq!(names, sorted, "{what}: entries in path order");
            assert_eq!(names[..2], ["blobs/", "blobs/sha256/"], "{what}");
            assert_eq!(names[n - 2..], ["index.json", "oci-layout"], "{what}");
            &entries[2..n - 2]
        }
    };
    let find = |name: &str| &entries.iter().find(|(n, _)| n == name).unwrap().1.data;
    assert_eq!(find("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#);
    let mut blobs = BTreeMap::new();
    for (name, entry) in blob_entries {
        let hex = name
            .strip_prefix("blobs/sha256/")
            .unwrap_or_else(|| panic!("{what}: unexpected entry {name}"));
        assert_eq!(
            hex,
            sha256_hex(&entry.data),
            "{what}: {name} is not named by its digest"
        );
        blobs.insert(format!("sha256:{hex}"), entry.data.clone());
    }
    let blob = |digest: &Value, size: &Value| -> &Vec<u8> {
        let digest = digest.as_str().expect("digest string");
        let data = blobs
            .get(digest)
            .unwrap_or_else(|| panic!("{what}: no blob {digest}"));
        assert_eq!(
            size.as_u64(),
            Some(data.len() as u64),
            "{what}: size of {digest}"
        );
        data
    };

    let index = read_json(find("index.json"), "index.json");
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], fixtures::INDEX_MEDIA_TYPE);
    let listed = index["manifests"].as_array().expect("manifests");
    assert_eq!(listed.len(), 1, "{what}: one manifest");
    let desc = &listed[0];
    assert_eq!(desc["mediaType"], fixtures::MANIFEST_MEDIA_TYPE);
    assert_eq!(desc["digest"], w.manifest_digest.as_str());
    assert_eq!(
        desc["annotations"]["org.opencontainers.image.ref.name"],
        "latest"
    );
    let manifest_bytes = blob(&desc["digest"], &desc["size"]);
    assert_eq!(w.manifest_size, manifest_bytes.len() as u64);

    let manifest = read_json(manifest_bytes, "manifest");
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(manifest["mediaType"], fixtures::MANIFEST_MEDIA_TYPE);
    assert_eq!(manifest["config"]["mediaType"], fixtures::CONFIG_MEDIA_TYPE);
    assert_eq!(manifest["config"]["digest"], w.config_digest.as_str());
    let config = read_json(
        blob(&manifest["config"]["digest"], &manifest["config"]["size"]),
        "config",
    );
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(
        layers.len(),
        build.layers,
        "{what}: base, chunks and arch layer"
    );
    let mut diff_ids = Vec::new();
    let mut layer_digests = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        let blob_bytes = blob(&layer["digest"], &layer["size"]);
        let mut tar_bytes = Vec::new();
        if build.gzip {
            assert_eq!(layer["mediaType"], fixtures::LAYER_MEDIA_TYPE);
            GzDecoder::new(&blob_bytes[..])
                .read_to_end(&mut tar_bytes)
                .expect("layer is gzip");
        } else {
            assert_eq!(layer["mediaType"], fixtures::PLAIN_LAYER_MEDIA_TYPE);
            tar_bytes.clone_from(blob_bytes);
        }
        assert_deterministic_headers(&read_tar(&tar_bytes[..]), &format!("{what} layer"));
        // rpm-ostree names what each chunk holds; the base and arch layers hold no chunk.
        let chunk = i > 0 && i + 1 < layers.len();
        assert_eq!(
            layer["annotations"][fixtures::COMPONENTS_ANNOTATION].is_string(),
            chunk,
            "{what}: layer {i} annotations"
        );
        diff_ids.push(Value::from(sha256_digest(&tar_bytes)));
        layer_digests.push(layer["digest"].as_str().unwrap().to_owned());
    }
    assert_eq!(layer_digests, w.layer_digests);
    // Manifest, config and every layer, nothing unreferenced.
    assert_eq!(
        blobs.len(),
        2 + build.layers,
        "{what}: blobs {:?}",
        blobs.keys()
    );

    let (arch, variant) = fixtures::oci_platform(&w.arch).unwrap();
    assert_eq!(config["architecture"], arch);
    assert_eq!(config["os"], "linux");
    assert_eq!(config.get("variant").and_then(Value::as_str), variant);
    assert_eq!(config["rootfs"]["type"], "layers");
    assert_eq!(config["rootfs"]["diff_ids"], Value::from(diff_ids.clone()));
    let labels = &config["config"]["Labels"];
    assert_eq!(
        labels["org.opencontainers.image.version"],
        build.version.as_str()
    );
    if build.ostree_labels {
        let commit = labels["ostree.commit"].as_str().expect("ostree.commit");
        assert!(
            commit.len() == 64 && commit.bytes().all(|b| b.is_ascii_hexdigit()),
            "{commit}"
        );
        assert_eq!(labels["ostree.bootable"], "true");
        assert_eq!(labels["containers.bootc"], "1");
        assert_eq!(labels["ostree.final-diffid"], *diff_ids.last().unwrap());
    } else {
        assert!(labels.get("ostree.commit").is_none());
    }
    for (key, value) in &build.labels {
        assert_eq!(labels[key.as_str()], value.as_str(), "{what}: label {key}");
    }
    blobs
}

fn by_arch(written: &[WrittenArch]) -> BTreeMap<&str, &WrittenArch> {
    written.iter().map(|w| (w.arch.as_str(), w)).collect()
}

#[test]
fn demo_fixture_is_reproducible() {
    let tmp = tempfile::tempdir().expect("tempdir");
    fixtures::write_tree(tmp.path(), &[BuildSpec::demo()]).expect("write demo");
    // Only builds/ is generated; the demo's release.toml sits beside it, written by hand.
    let fresh = files_under(&tmp.path().join("builds"));
    let checked_in = files_under(&demo_dir().join("builds"));

    assert_eq!(
        fresh, checked_in,
        "fixtures/demo has different files; regenerate it (see fixtures/README.md)"
    );
    for rel in &fresh {
        let a = fs::read(tmp.path().join("builds").join(rel)).unwrap();
        let b = fs::read(demo_dir().join("builds").join(rel)).unwrap();
        assert!(
            a == b,
            "fixtures/demo/builds/{} differs from a fresh generation; regenerate it (see fixtures/README.md)",
            rel.display()
        );
    }
}

#[test]
fn generation_is_deterministic() {
    let specs = [
        BuildSpec::demo_with_id("41.20261201.1.0"),
        BuildSpec::demo(),
    ];
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let wa = fixtures::write_tree(a.path(), &specs).unwrap();
    let wb = fixtures::write_tree(b.path(), &specs).unwrap();

    let files = files_under(a.path());
    assert_eq!(files, files_under(b.path()));
    for rel in &files {
        assert_eq!(
            fs::read(a.path().join(rel)).unwrap(),
            fs::read(b.path().join(rel)).unwrap(),
            "{}",
            rel.display()
        );
    }
    let digests = |w: &[WrittenArch]| -> Vec<String> {
        w.iter().map(|w| w.manifest_digest.clone()).collect()
    };
    assert_eq!(digests(&wa), digests(&wb));
    // Nothing but builds.json, meta.json and the archives: temp files are gone.
    assert_eq!(files.len(), 1 + 2 * 2 * 4, "{files:?}");
}

#[test]
fn archive_digests_are_consistent() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let build = BuildSpec::demo();
    let written = fixtures::write_tree(tmp.path(), std::slice::from_ref(&build)).unwrap();

    assert_eq!(
        written.iter().map(|w| w.arch.as_str()).collect::<Vec<_>>(),
        ["x86_64", "aarch64", "ppc64le", "s390x"]
    );
    for w in &written {
        assert_eq!(w.build_id, build.id);
        check_arch(&build, w);
    }
    let builds_json = fs::read(tmp.path().join("builds/builds.json")).unwrap();
    assert!(!builds_json.ends_with(b"\n"));
    assert!(
        builds_json.starts_with(b"{\n    \"schema-version\": \"1.0.0\",\n    \"builds\": [\n"),
        "{}",
        String::from_utf8_lossy(&builds_json)
    );
    let doc = read_json(&builds_json, "builds.json");
    assert_eq!(
        doc["builds"],
        serde_json::json!([{"id": build.id, "arches": ["x86_64", "aarch64", "ppc64le", "s390x"]}])
    );
}

#[test]
fn large_layer_is_stored_and_still_consistent() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut build = BuildSpec::demo();
    build.arches.truncate(1);
    let size = fixtures::STORED_ABOVE * 3 + 7;
    build.arches[0].layer_size = size;
    let written = fixtures::write_tree(tmp.path(), std::slice::from_ref(&build)).unwrap();

    let blobs = check_arch(&build, &written[0]);
    let layer = &blobs[&written[0].layer_digests[1]];
    // Stored deflate adds a few bytes per 64 KiB block; real compression of random bytes would
    // not get far below the payload either, but it would take much longer.
    assert!(layer.len() as u64 > size, "layer {} bytes", layer.len());
    assert!((layer.len() as u64) < size + size / 100 + 4096);
    let mut tar_bytes = Vec::new();
    GzDecoder::new(&layer[..])
        .read_to_end(&mut tar_bytes)
        .unwrap();
    let entries = read_tar(&tar_bytes[..]);
    let (_, payload) = entries.last().unwrap();
    let mut expected = Vec::new();
    fixtures::payload(&build.name, "x86_64", &build.arches[0].salt, size)
        .read_to_end(&mut expected)
        .unwrap();
    assert!(
        payload.data == expected,
        "payload differs from the generator's stream"
    );
}

#[test]
fn payload_does_not_depend_on_read_sizes() {
    let whole = {
        let mut v = Vec::new();
        fixtures::payload("n", "x86_64", "s", 1001)
            .read_to_end(&mut v)
            .unwrap();
        v
    };
    let mut pieces = Vec::new();
    let mut reader = fixtures::payload("n", "x86_64", "s", 1001);
    for step in [1, 3, 7, 8, 13, 64, 1000].iter().cycle() {
        let mut buf = vec![0; *step];
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        pieces.extend_from_slice(&buf[..n]);
    }

    assert_eq!(whole.len(), 1001);
    assert_eq!(pieces, whole);
    let mut other = Vec::new();
    fixtures::payload("n", "x86_64", "t", 1001)
        .read_to_end(&mut other)
        .unwrap();
    assert_ne!(other, whole, "the salt changes the payload");
}

#[test]
fn salt_changes_only_that_arch() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let plain = BuildSpec::demo();
    let mut salted = BuildSpec::demo();
    salted.arch_mut("aarch64").salt = "different".into();
    let wa = fixtures::write_tree(a.path(), &[plain]).unwrap();
    let wb = fixtures::write_tree(b.path(), &[salted]).unwrap();
    let (wa, wb) = (by_arch(&wa), by_arch(&wb));

    for arch in ["x86_64", "ppc64le", "s390x"] {
        assert_eq!(wa[arch].manifest_digest, wb[arch].manifest_digest, "{arch}");
        assert_eq!(wa[arch].archive_sha256, wb[arch].archive_sha256, "{arch}");
    }
    let (old, new) = (wa["aarch64"], wb["aarch64"]);
    assert_ne!(old.manifest_digest, new.manifest_digest);
    assert_ne!(old.config_digest, new.config_digest);
    assert_ne!(old.layer_digests[1], new.layer_digests[1]);
    let base: BTreeSet<&str> = wa
        .values()
        .chain(wb.values())
        .map(|w| w.layer_digests[0].as_str())
        .collect();
    assert_eq!(base.len(), 1, "base layer differs: {base:?}");
    let arch_layers: BTreeSet<&str> = wa.values().map(|w| w.layer_digests[1].as_str()).collect();
    assert_eq!(arch_layers.len(), 4, "arch layers are per arch");
}

#[test]
fn add_build_puts_the_newer_build_first() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let old = fixtures::write_tree(tmp.path(), &[BuildSpec::demo()]).unwrap();
    let before: BTreeMap<PathBuf, Vec<u8>> = files_under(tmp.path())
        .into_iter()
        .filter(|rel| !rel.ends_with("builds.json"))
        .map(|rel| {
            let data = fs::read(tmp.path().join(&rel)).unwrap();
            (rel, data)
        })
        .collect();
    let mut newer = BuildSpec::demo_with_id("41.20261201.1.0");
    newer.arches.truncate(2);
    let new = fixtures::add_build(tmp.path(), &newer).unwrap();

    let doc = read_json(
        &fs::read(tmp.path().join("builds/builds.json")).unwrap(),
        "builds.json",
    );
    let ids: Vec<&str> = doc["builds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["41.20261201.1.0", fixtures::DEMO_ID]);
    assert_eq!(
        doc["builds"][0]["arches"],
        serde_json::json!(["x86_64", "aarch64"])
    );
    assert_eq!(doc["timestamp"], fixtures::BUILDS_TIMESTAMP);
    for (rel, data) in &before {
        assert!(
            fs::read(tmp.path().join(rel)).unwrap() == *data,
            "{} changed",
            rel.display()
        );
    }
    for w in &new {
        check_arch(&newer, w);
    }
    // Same name and salts: identical layers, but the version label makes new manifests.
    let old = by_arch(&old);
    for w in &new {
        assert_eq!(w.layer_digests, old[w.arch.as_str()].layer_digests);
        assert_ne!(w.manifest_digest, old[w.arch.as_str()].manifest_digest);
    }

    // Adding it again replaces the entry rather than listing it twice.
    fixtures::add_build(tmp.path(), &newer).unwrap();
    let doc = read_json(
        &fs::read(tmp.path().join("builds/builds.json")).unwrap(),
        "builds.json",
    );
    assert_eq!(doc["builds"].as_array().unwrap().len(), 2);
}

#[test]
fn bad_specs_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut unknown = BuildSpec::demo();
    unknown.arches[0].arch = "mips".into();
    let mut twice = BuildSpec::demo();
    twice.arches[1].arch = "x86_64".into();
    let mut escaping = BuildSpec::demo();
    escaping.id = "../escape".into();

    for spec in [unknown, twice, escaping] {
        let err = fixtures::write_tree(tmp.path(), std::slice::from_ref(&spec)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{spec:?}");
    }
    let err = fixtures::write_tree(tmp.path(), &[BuildSpec::demo(), BuildSpec::demo()]);
    assert!(err.is_err(), "a build id listed twice");
}

#[test]
fn skopeo_reads_the_archive() {
    let installed = Path::new("/usr/bin/skopeo");
    // scripts/install-deps.sh installs skopeo; a missing one is a broken setup, not a skip.
    assert!(
        installed.exists(),
        "{} is missing: run scripts/install-deps.sh",
        installed.display()
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let written = fixtures::write_tree(tmp.path(), &[BuildSpec::demo()]).unwrap();
    let w = written.iter().find(|w| w.arch == "aarch64").unwrap();
    let target = format!("oci-archive:{}", w.archive.display());
    let run = |args: &[&str]| -> Vec<u8> {
        let mut args = args.to_vec();
        args.push(&target);
        skopeo(&args).stdout
    };

    assert_eq!(
        sha256_digest(&run(&["inspect", "--raw"])),
        w.manifest_digest
    );
    assert_eq!(
        sha256_digest(&run(&["inspect", "--config", "--raw"])),
        w.config_digest
    );
    let info = read_json(&run(&["inspect"]), "skopeo inspect");
    assert_eq!(info["Architecture"], "arm64");
    assert_eq!(info["Digest"], w.manifest_digest.as_str());
    assert_eq!(info["Layers"], serde_json::json!(w.layer_digests));
}

#[test]
fn encapsulated_build_is_shaped_like_rpm_ostree_output() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut build = BuildSpec::encapsulated("41.20261201.1.0");
    build
        .labels
        .push(("rpmostree.inputhash".into(), "0123abcd".into()));
    let written = fixtures::write_tree(tmp.path(), std::slice::from_ref(&build)).unwrap();
    assert_eq!(build.layers, 64);
    for w in &written {
        check_arch(&build, w);
        assert_eq!(w.layer_digests.len(), 64);
    }
    // The base layer is shared; every chunk and arch layer is per arch.
    let all: Vec<&String> = written.iter().flat_map(|w| &w.layer_digests).collect();
    let distinct: BTreeSet<&String> = all.iter().copied().collect();
    assert_eq!(distinct.len(), 1 + 4 * 63);
    // Deterministic: the same spec gives the same bytes.
    let again = tempfile::tempdir().unwrap();
    fixtures::write_tree(again.path(), std::slice::from_ref(&build)).unwrap();
    for rel in files_under(tmp.path()) {
        assert!(
            fs::read(tmp.path().join(&rel)).unwrap() == fs::read(again.path().join(&rel)).unwrap(),
            "{}",
            rel.display()
        );
    }
    // skopeo reads it as the 64-layer image it is.
    let w = &written[0];
    let out = skopeo(&["inspect", &format!("oci-archive:{}", w.archive.display())]);
    let info = read_json(&out.stdout, "skopeo inspect");
    assert_eq!(info["Digest"], w.manifest_digest.as_str());
    assert_eq!(info["Layers"], serde_json::json!(w.layer_digests));
    assert_eq!(info["Labels"]["ostree.bootable"], "true");
}

#[test]
fn plain_tar_layers_are_their_own_diff_ids() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut build = BuildSpec::demo();
    build.gzip = false;
    build.layers = 3;
    build.arches.truncate(1);
    let written = fixtures::write_tree(tmp.path(), std::slice::from_ref(&build)).unwrap();
    check_arch(&build, &written[0]);
    let gz =
        fixtures::write_tree(tempfile::tempdir().unwrap().path(), &[BuildSpec::demo()]).unwrap();
    assert_ne!(written[0].layer_digests[0], gz[0].layer_digests[0]);
}

#[test]
fn fewer_than_two_layers_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut build = BuildSpec::demo();
    build.layers = 1;
    let err = fixtures::write_tree(tmp.path(), &[build]).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("1 layers"), "{err}");
}

#[test]
fn digests_are_sha256_in_lowercase_hex() {
    // The sha256 of "abc" from FIPS 180-2, appendix B.1.
    let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    assert_eq!(sha256_hex(b"abc"), abc);
    assert_eq!(sha256_digest(b"abc"), format!("sha256:{abc}"));
}
