//! The bad-input catalog: each broken input makes reprise exit 1 with one line naming the
//! file (or flag) and the problem, change no file, and send no write to the registry (bad
//! bytes inside an archive, found while blobs already move: no manifest or tag write).
//!
//! Each case starts from a good generated build tree and breaks one thing in it, so the
//! fixture is visible right in the test.

use std::io::Read;
use std::path::Path;

use crate::support::env::Env;
use crate::support::run::Run;
use serde_json::Value;

const ARCH: &str = "aarch64";

/// Exit 1, one line that holds every `needles`, no registry write, every meta.json as it
/// was before the run.
fn fails_cleanly(env: &Env, args: &[&str], needles: &[&str]) -> Run {
    let run = fails_publishing_nothing(env, args, needles);
    assert_eq!(env.proxy.writes(), vec![], "no registry write");
    run
}

/// [`fails_cleanly`] for bad bytes found while blobs already move: blob sessions may have
/// been opened, but no manifest or tag is written.
fn fails_publishing_nothing(env: &Env, args: &[&str], needles: &[&str]) -> Run {
    let metas = env.metas();
    let run = env.push(&["stable"], args);
    assert_eq!(run.code, 1, "exit status; stderr:\n{}", run.stderr);
    let text = run.stderr.trim();
    eprintln!("reprise said: {text}");
    assert_eq!(text.lines().count(), 1, "one line:\n{text}");
    for needle in needles {
        assert!(text.contains(needle), "{needle:?} not in: {text}");
    }
    let published: Vec<_> = env
        .proxy
        .writes()
        .into_iter()
        .filter(|w| w.path.contains("/manifests/"))
        .collect();
    assert_eq!(published, vec![], "no manifest or tag written");
    assert_eq!(env.metas(), metas, "no meta.json changed");
    run
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut Value)) {
    let mut doc: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    edit(&mut doc);
    std::fs::write(path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
}

fn builds_json(env: &Env) -> std::path::PathBuf {
    env.dir().join("builds").join("builds.json")
}

fn archive_of(env: &Env) -> std::path::PathBuf {
    env.written
        .iter()
        .find(|w| w.arch == ARCH)
        .unwrap()
        .archive
        .clone()
}

/// Replaces the arch's archive with `bytes` and makes meta.json describe it (sha256, size),
/// so only the archive's content is wrong.
fn replace_archive(env: &Env, bytes: &[u8]) {
    std::fs::write(archive_of(env), bytes).unwrap();
    let sha = reprise_fixtures::sha256_digest(bytes);
    edit_json(&env.meta_path(ARCH), |m| {
        let img = &mut m["images"]["ostree"];
        img["sha256"] = Value::from(sha.trim_start_matches("sha256:"));
        img["size"] = Value::from(bytes.len() as u64);
    });
}

/// The arch's archive as (name, bytes) entries, in order.
fn archive_entries(env: &Env) -> Vec<(String, Vec<u8>)> {
    let file = std::fs::File::open(archive_of(env)).unwrap();
    let mut tar = tar::Archive::new(file);
    let mut out = Vec::new();
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        out.push((name, bytes));
    }
    out
}

/// A tar of regular files; `name` goes into the header as raw bytes, so unsafe names can be
/// written too (the tar crate's path setters refuse them).
fn tar_of(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, bytes) in entries {
        let mut header = tar::Header::new_ustar();
        raw_name(&mut header, name);
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        builder.append(&header, bytes.as_slice()).unwrap();
    }
    builder.into_inner().unwrap()
}

fn raw_name(header: &mut tar::Header, name: &str) {
    let field = &mut header.as_old_mut().name;
    field.fill(0);
    field[..name.len()].copy_from_slice(name.as_bytes());
}

fn rewrite_index_json(env: &Env, edit: impl FnOnce(&mut Value)) {
    let mut entries = archive_entries(env);
    let index = entries
        .iter_mut()
        .find(|(n, _)| n.trim_start_matches("./") == "index.json")
        .unwrap();
    let mut doc: Value = serde_json::from_slice(&index.1).unwrap();
    edit(&mut doc);
    index.1 = serde_json::to_vec(&doc).unwrap();
    replace_archive(env, &tar_of(&entries));
}

#[test]
fn truncated_meta_json() {
    let env = Env::new();
    let path = env.meta_path(ARCH);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    fails_cleanly(&env, &[], &["aarch64/meta.json", "invalid JSON"]);
}

#[test]
fn meta_json_that_is_not_json() {
    let env = Env::new();
    std::fs::write(env.meta_path(ARCH), "buildid = 40\n").unwrap();
    fails_cleanly(&env, &[], &["aarch64/meta.json", "invalid JSON"]);
}

#[test]
fn truncated_builds_json() {
    let env = Env::new();
    let path = builds_json(&env);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    fails_cleanly(&env, &[], &["builds/builds.json", "invalid JSON"]);
}

#[test]
fn builds_json_that_is_not_json() {
    let env = Env::new();
    std::fs::write(builds_json(&env), "<html>").unwrap();
    fails_cleanly(&env, &[], &["builds/builds.json", "invalid JSON"]);
}

#[test]
fn builds_json_with_an_unknown_schema_version() {
    let env = Env::new();
    edit_json(&builds_json(&env), |b| {
        b["schema-version"] = Value::from("2.0.0");
    });
    fails_cleanly(&env, &[], &["builds/builds.json", "schema-version 2.0.0"]);
}

#[test]
fn unknown_build_id() {
    let env = Env::new();
    fails_cleanly(&env, &["--build", "39.20250101.0.0"], &["39.20250101.0.0"]);
}

/// Without --arch such an arch is skipped (tests/pipelines.rs); named with --arch, it is an
/// error, as in cosa.
#[test]
fn missing_artifact_key_for_an_arch_named_with_arch() {
    let env = Env::new();
    edit_json(&env.meta_path(ARCH), |m| {
        m["images"].as_object_mut().unwrap().remove("ostree");
    });
    fails_cleanly(
        &env,
        &["--arch", "x86_64", "--arch", ARCH],
        &["aarch64/meta.json", "images.ostree", "asked for by name"],
    );
}

#[test]
fn missing_archive() {
    let env = Env::new();
    std::fs::remove_file(archive_of(&env)).unwrap();
    fails_cleanly(&env, &[], &["ostree.aarch64.ociarchive", "No such file"]);
}

#[test]
fn archive_whose_sha256_is_not_the_recorded_one() {
    let env = Env::new();
    edit_json(&env.meta_path(ARCH), |m| {
        m["images"]["ostree"]["sha256"] = Value::from("0".repeat(64));
    });
    fails_publishing_nothing(&env, &[], &["ostree.aarch64.ociarchive", "sha256 is"]);
}

#[test]
fn archive_whose_size_is_not_the_recorded_one() {
    let env = Env::new();
    edit_json(&env.meta_path(ARCH), |m| {
        let size = m["images"]["ostree"]["size"].as_u64().unwrap();
        m["images"]["ostree"]["size"] = Value::from(size + 1);
    });
    fails_cleanly(&env, &[], &["ostree.aarch64.ociarchive", "records size"]);
}

#[test]
fn archive_that_is_not_a_tar() {
    let env = Env::new();
    replace_archive(&env, &b"PK\x03\x04 this is a zip, not a tar ".repeat(40));
    fails_cleanly(&env, &[], &["ostree.aarch64.ociarchive", "tar"]);
}

#[test]
fn archive_without_index_json() {
    let env = Env::new();
    let mut entries = archive_entries(&env);
    entries.retain(|(n, _)| n.trim_start_matches("./") != "index.json");
    replace_archive(&env, &tar_of(&entries));
    fails_cleanly(&env, &[], &["ostree.aarch64.ociarchive", "no index.json"]);
}

#[test]
fn index_json_listing_no_manifest() {
    let env = Env::new();
    rewrite_index_json(&env, |i| i["manifests"] = Value::Array(vec![]));
    fails_cleanly(
        &env,
        &[],
        &["ostree.aarch64.ociarchive", "lists 0 manifests"],
    );
}

#[test]
fn index_json_listing_two_manifests() {
    let env = Env::new();
    rewrite_index_json(&env, |i| {
        let first = i["manifests"][0].clone();
        i["manifests"].as_array_mut().unwrap().push(first);
    });
    fails_cleanly(
        &env,
        &[],
        &["ostree.aarch64.ociarchive", "lists 2 manifests"],
    );
}

#[test]
fn blob_whose_bytes_do_not_match_its_digest() {
    let env = Env::new();
    let layer = env
        .written
        .iter()
        .find(|w| w.arch == ARCH)
        .unwrap()
        .layer_digests[1]
        .trim_start_matches("sha256:")
        .to_owned();
    let mut entries = archive_entries(&env);
    let blob = entries
        .iter_mut()
        .find(|(n, _)| n.ends_with(&layer))
        .unwrap();
    let last = blob.1.len() - 1;
    blob.1[last] ^= 0xff;
    replace_archive(&env, &tar_of(&entries));
    fails_publishing_nothing(
        &env,
        &[],
        &["ostree.aarch64.ociarchive", "does not match its digest"],
    );
}

#[test]
fn tar_entry_climbing_out_with_dot_dot() {
    let env = Env::new();
    let mut entries = archive_entries(&env);
    entries.push(("blobs/../../etc/cron.d/x".to_owned(), b"x".to_vec()));
    replace_archive(&env, &tar_of(&entries));
    fails_cleanly(&env, &[], &["ostree.aarch64.ociarchive", "contains '..'"]);
}

#[test]
fn tar_entry_with_an_absolute_path() {
    let env = Env::new();
    let mut entries = archive_entries(&env);
    entries.push(("/etc/passwd".to_owned(), b"x".to_vec()));
    replace_archive(&env, &tar_of(&entries));
    fails_cleanly(&env, &[], &["ostree.aarch64.ociarchive", "absolute path"]);
}

#[test]
fn tar_entry_that_is_a_symlink() {
    let env = Env::new();
    let entries = archive_entries(&env);
    let mut bytes = tar_of(&entries);
    // Rebuild with a symlink appended: blobs/sha256/evil -> /etc/shadow.
    bytes.truncate(bytes.len() - 1024);
    let mut builder = tar::Builder::new(bytes);
    let mut header = tar::Header::new_ustar();
    header.set_path("blobs/sha256/evil").unwrap();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_link_name("/etc/shadow").unwrap();
    header.set_size(0);
    header.set_cksum();
    builder.append(&header, std::io::empty()).unwrap();
    replace_archive(&env, &builder.into_inner().unwrap());
    fails_cleanly(&env, &[], &["ostree.aarch64.ociarchive", "is a link"]);
}

#[test]
fn artifact_path_escaping_the_arch_directory() {
    let env = Env::new();
    edit_json(&env.meta_path(ARCH), |m| {
        m["images"]["ostree"]["path"] = Value::from("../x86_64/elsewhere.ociarchive");
    });
    fails_cleanly(
        &env,
        &[],
        &["aarch64/meta.json", "../x86_64/elsewhere.ociarchive"],
    );
}

/// Malformed flags are usage errors: clap's exit status 2, the first line naming the flag and
/// the problem, and nothing read or sent.
fn usage_error(env: &Env, args: &[&str], needles: &[&str]) {
    let mut full: Vec<String> = vec![
        "push-container-manifest".into(),
        "--artifact".into(),
        "ostree".into(),
        "--metajsonname".into(),
        "base-oscontainer".into(),
    ];
    full.extend(args.iter().map(|s| (*s).to_owned()));
    let out = env.command(&full).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let first = stderr.lines().next().unwrap_or("");
    for needle in needles {
        assert!(first.contains(needle), "{needle:?} not in: {first}");
    }
    assert_eq!(env.proxy.requests(), vec![]);
}

#[test]
fn repo_with_a_digest_glued_on_with_a_colon() {
    let env = Env::new();
    let repo = format!("{}:sha256:{}", env.repo(), "a".repeat(64));
    usage_error(
        &env,
        &["--repo", &repo, "--tag", "stable"],
        &["--repo", "tag"],
    );
}

#[test]
fn repo_with_a_digest() {
    let env = Env::new();
    let repo = format!("{}@sha256:{}", env.repo(), "a".repeat(64));
    usage_error(
        &env,
        &["--repo", &repo, "--tag", "stable"],
        &["--repo", "digest"],
    );
}

#[test]
fn tag_that_is_a_digest() {
    let env = Env::new();
    let tag = format!("sha256:{}", "a".repeat(64));
    usage_error(&env, &["--repo", &env.repo(), "--tag", &tag], &["--tag"]);
}

#[test]
fn tag_with_a_slash() {
    let env = Env::new();
    usage_error(&env, &["--repo", &env.repo(), "--tag", "a/b"], &["--tag"]);
}
