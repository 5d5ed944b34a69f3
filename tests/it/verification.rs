//! Bad bytes publish nothing: a layer that does not match its digest, or an archive whose
//! sha256 is not the one meta.json records, makes reprise exit 1 with one line naming the
//! archive, with no manifest and no tag written (blob sessions may have been opened: blobs
//! move while the archive is still being checked) and no meta.json changed.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use crate::support::env::Env;
use crate::support::run::Run;
use reprise_fixtures::{BuildSpec, DEMO_ID};
use serde_json::Value;

const ARCH: &str = "aarch64";
/// Big enough that uploads are under way well before a check of the archive could end.
const LAYER: u64 = 3 << 20;

fn env() -> Env {
    let mut spec = BuildSpec::demo_with_id(DEMO_ID);
    for a in &mut spec.arches {
        a.layer_size = LAYER;
    }
    Env::with_builds(&[spec])
}

fn edit_meta(path: &Path, edit: impl FnOnce(&mut Value)) {
    let mut doc: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    edit(&mut doc);
    std::fs::write(path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
}

/// Flips the last byte of `ARCH`'s own layer inside its archive, and makes meta.json record
/// the archive as it now is: only the layer's digest is wrong. Returns the layer's digest.
fn corrupt_layer(env: &Env) -> String {
    let w = env.arch(DEMO_ID, ARCH);
    let digest = w.layer_digests.last().unwrap().clone();
    let name = format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
    let (offset, size) = {
        let mut tar = tar::Archive::new(std::fs::File::open(&w.archive).unwrap());
        let entry = tar
            .entries_with_seek()
            .unwrap()
            .map(Result::unwrap)
            .find(|e| e.path().unwrap().to_str().unwrap().trim_start_matches("./") == name)
            .expect("the layer is in the archive");
        (entry.raw_file_position(), entry.size())
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&w.archive)
        .unwrap();
    let at = offset + size - 1;
    let mut byte = [0u8];
    file.seek(SeekFrom::Start(at)).unwrap();
    std::io::Read::read_exact(&mut file, &mut byte).unwrap();
    file.seek(SeekFrom::Start(at)).unwrap();
    file.write_all(&[byte[0] ^ 0xff]).unwrap();
    drop(file);
    let sha = reprise_fixtures::sha256_digest(&std::fs::read(&w.archive).unwrap());
    edit_meta(&w.meta, |m| {
        m["images"]["ostree"]["sha256"] = Value::from(sha.trim_start_matches("sha256:"));
    });
    digest
}

/// Exit 1, one line holding every `needles`, no manifest or tag written, no meta.json
/// changed.
fn publishes_nothing(env: &Env, extra: &[&str], needles: &[&str]) -> Run {
    let metas = env.metas();
    let run = env.push(&["stable"], extra);
    assert_eq!(run.code, 1, "exit status; stderr:\n{}", run.stderr);
    let text = run.stderr.trim();
    assert_eq!(text.lines().count(), 1, "one line:\n{text}");
    for needle in needles {
        assert!(text.contains(needle), "{needle:?} not in: {text}");
    }
    let manifest_writes: Vec<_> = env
        .proxy
        .writes()
        .into_iter()
        .filter(|w| w.path.contains("/manifests/"))
        .collect();
    assert_eq!(manifest_writes, vec![], "no manifest or tag written");
    assert_eq!(env.metas(), metas, "no meta.json changed");
    assert_eq!(env.tag_digest("stable"), None);
    run
}

/// Whether the registry holds `digest` in the demo repository, asked straight, not through
/// the proxy.
fn registry_has_blob(env: &Env, digest: &str) -> bool {
    let url = format!(
        "http://{}/blobs/{digest}",
        env.direct_repo().replacen('/', "/v2/", 1)
    );
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-I", &url])
        .output()
        .expect("run curl");
    match String::from_utf8_lossy(&out.stdout).as_ref() {
        "200" => true,
        "404" => false,
        other => panic!("HEAD {url}: {other}"),
    }
}

#[test]
fn a_layer_that_does_not_match_its_digest_publishes_no_manifest_and_no_tag() {
    let env = env();
    let digest = corrupt_layer(&env);
    publishes_nothing(
        &env,
        &[],
        &["ostree.aarch64.ociarchive", "does not match its digest"],
    );
    assert!(
        !registry_has_blob(&env, &digest),
        "the bad layer was never committed"
    );
}

#[test]
fn a_bad_layer_sent_in_chunks_is_never_committed() {
    let env = env();
    let digest = corrupt_layer(&env);
    publishes_nothing(
        &env,
        &["--chunk-size", "256KiB"],
        &["ostree.aarch64.ociarchive", "does not match its digest"],
    );
    assert!(
        !registry_has_blob(&env, &digest),
        "the bad layer was never committed"
    );
}

#[test]
fn an_archive_whose_sha256_is_not_the_recorded_one_publishes_no_manifest_and_no_tag() {
    let env = env();
    edit_meta(&env.arch(DEMO_ID, ARCH).meta, |m| {
        m["images"]["ostree"]["sha256"] = Value::from("0".repeat(64));
    });
    publishes_nothing(&env, &[], &["ostree.aarch64.ociarchive", "sha256 is"]);
}

#[test]
fn a_first_push_reads_each_archive_byte_once() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    for chunks in [None, Some("256KiB")] {
        let env = &env();
        let mut args = vec!["--tag", "stable"];
        args.extend(chunks.iter().flat_map(|c| ["--chunk-size", c]));
        let prepared = rt
            .block_on(reprise::push::prepare(&env.push_request(&args)))
            .unwrap();
        let counters: Vec<_> = prepared
            .images
            .iter()
            .map(|img| match &img.origin {
                reprise::apply::Origin::Local { archive, .. } => archive.read_counter(),
                reprise::apply::Origin::Registry { .. } => unreachable!(),
            })
            .collect();
        let before: Vec<u64> = counters
            .iter()
            .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
            .collect();
        let report = rt.block_on(prepared.apply()).unwrap();
        assert_eq!(report.outcome, reprise::plan::Outcome::Pushed);
        for ((counter, before), w) in counters.iter().zip(before).zip(&env.written) {
            let read = counter.load(std::sync::atomic::Ordering::Relaxed) - before;
            // The one pass reads the file once; nothing is read a second time to send it.
            assert_eq!(read, w.archive_size, "{} ({chunks:?})", w.arch);
        }
    }
}
