//! `--builds-url http://…`: builds read from a real HTTP server (nginx) by range, records kept
//! in the working directory when the pipeline fetched them there, and a read-only store that
//! must take a record failing before any registry write.

use std::path::{Path, PathBuf};

use crate::support::check::validate;
use crate::support::env::Env;
use crate::support::nginx::Nginx;
use crate::support::proxy::{Fault, Proxy};
use crate::support::run::Run;
use reprise_fixtures::{BuildSpec, WrittenArch};

/// A working directory holding only the build's meta.json files, as `cosa buildfetch`
/// without `--artifact` leaves it.
fn records_only(env: &Env) -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let metas = env
        .written
        .iter()
        .map(|w| copy_meta(env.dir(), dir.path(), w))
        .collect();
    (dir, metas)
}

fn copy_meta(store: &Path, work: &Path, w: &WrittenArch) -> PathBuf {
    let rel = w.meta.strip_prefix(store).unwrap();
    let to = work.join(rel);
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(&w.meta, &to).unwrap();
    to
}

fn from_store(nginx: &Nginx, workdir: &Path) -> Vec<String> {
    vec![
        "--builds-url".into(),
        nginx.url("builds"),
        "--workdir".into(),
        workdir.display().to_string(),
    ]
}

/// `push-container-manifest` from `nginx` with `workdir`, keeping what it learns about
/// archives in `cache` (its `XDG_CACHE_HOME`).
fn push_from(env: &Env, nginx: &Nginx, workdir: &Path, cache: &Path) -> Run {
    let extra = from_store(nginx, workdir);
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let mut cmd = env.command(&env.push_args(&["stable"], &extra));
    cmd.env("XDG_CACHE_HOME", cache);
    Run::of(&mut cmd)
}

/// The demo build with layers of 2 MiB, so the archives dwarf their headers as real ones do.
pub(crate) fn sized_demo() -> BuildSpec {
    let mut build = BuildSpec::demo();
    for arch in &mut build.arches {
        arch.layer_size = 2 << 20;
    }
    build
}

/// The file name of `w`'s archive, as the store's URLs and nginx's log end with it.
pub(crate) fn archive_name(w: &WrittenArch) -> String {
    w.archive.file_name().unwrap().to_str().unwrap().to_owned()
}

fn archives_size(env: &Env) -> u64 {
    env.written
        .iter()
        .map(|w| std::fs::metadata(&w.archive).unwrap().len())
        .sum()
}

#[test]
fn http_store_push_and_noop_record_in_the_workdir() {
    let build = sized_demo();
    let env = Env::with_builds(&[build]);
    let nginx = Nginx::serve(env.dir());
    let (work, metas) = records_only(&env);
    let cache = tempfile::tempdir().unwrap();
    let store_metas = env.metas();

    let run = push_from(&env, &nginx, work.path(), cache.path()).ok();
    assert_eq!(run.outcome(), "pushed");
    validate("report.schema.json", &run.report);
    for (w, meta) in env.written.iter().zip(&metas) {
        let record = crate::support::check::read_json(meta)[crate::support::env::KEY].clone();
        assert_eq!(record["digest"], w.manifest_digest.as_str(), "{}", w.arch);
    }
    assert_eq!(
        env.metas(),
        store_metas,
        "the store's meta.json files untouched"
    );
    let served = nginx.served();
    assert!(
        served
            .iter()
            .all(|s| s.method == "GET" || s.method == "HEAD")
    );
    let pushed = nginx.bytes_served(".ociarchive");
    // Each archive read once (headers, JSON documents, then one pass that checks it and
    // sends its blobs): within 2% of the archives' size.
    let size = archives_size(&env);
    eprintln!("first push from nginx: {pushed} archive bytes served of {size}");
    assert!(
        pushed >= size && pushed * 100 <= size * 102,
        "{pushed} of {size}"
    );
    assert!(
        served
            .iter()
            .any(|s| s.status == 206 && s.range.starts_with("bytes=")),
        "archives are read by range: {served:?}"
    );

    nginx.clear();
    env.proxy.clear();
    let records = metas
        .iter()
        .map(|m| std::fs::read(m).unwrap())
        .collect::<Vec<_>>();
    let again = push_from(&env, &nginx, work.path(), cache.path()).ok();
    assert_eq!(again.outcome(), "noop");
    assert_eq!(env.proxy.writes(), vec![], "a no-op writes nothing");
    let after = metas
        .iter()
        .map(|m| std::fs::read(m).unwrap())
        .collect::<Vec<_>>();
    assert_eq!(after, records, "records byte-identical");
    assert_eq!(
        nginx.bytes_served(".ociarchive"),
        0,
        "a no-op reads no archive byte"
    );

    // On a machine that has not checked these archives, a no-op reads their tar headers and
    // JSON documents: kilobytes, never a layer.
    nginx.clear();
    let fresh = tempfile::tempdir().unwrap();
    let elsewhere = push_from(&env, &nginx, work.path(), fresh.path()).ok();
    assert_eq!(elsewhere.outcome(), "noop");
    let headers = nginx.bytes_served(".ociarchive");
    assert!(headers > 0 && headers < 64 << 10, "{headers}");
}

#[test]
fn a_corrupted_archive_in_the_store_publishes_nothing() {
    let env = Env::new();
    let nginx = Nginx::serve(env.dir());
    let (work, _) = records_only(&env);
    let cache = tempfile::tempdir().unwrap();
    // One byte in the middle of an archive (inside its largest layer), size unchanged.
    let bad = &env.written[2];
    let mut bytes = std::fs::read(&bad.archive).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&bad.archive, &bytes).unwrap();

    let run = push_from(&env, &nginx, work.path(), cache.path());
    assert_eq!(run.code, 1, "{}", run.stderr);
    let writes = env.proxy.writes();
    assert!(
        !writes.iter().any(|w| w.path.contains("/manifests/")),
        "no manifest or tag written: {writes:?}"
    );
    let name = archive_name(bad);
    assert!(run.stderr.contains(&name), "{}", run.stderr);
}

#[test]
fn http_store_that_must_take_a_record_fails_before_any_registry_write() {
    let env = Env::new();
    let nginx = Nginx::serve(env.dir());
    let work = tempfile::tempdir().unwrap();
    let extra = from_store(&nginx, work.path());
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let store_metas = env.metas();

    let run = env.push(&["stable"], &extra);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", run.stderr);
    assert!(lines[0].contains("read-only"), "{}", lines[0]);
    assert!(lines[0].contains(&nginx.url("builds/")), "{}", lines[0]);
    assert_eq!(
        env.proxy.writes(),
        vec![],
        "nothing written to the registry"
    );
    assert_eq!(env.metas(), store_metas);
}

#[test]
fn a_missing_archive_in_the_store_is_named_like_a_missing_file() {
    let env = Env::new();
    let nginx = Nginx::serve(env.dir());
    let (work, _) = records_only(&env);
    let gone = &env.written[1];
    std::fs::remove_file(&gone.archive).unwrap();
    let extra = from_store(&nginx, work.path());
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();

    let run = env.push(&["stable"], &extra);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let name = archive_name(gone);
    let line = run.stderr.trim();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(line.contains(&name) && line.contains("not found"), "{line}");
    assert_eq!(env.proxy.writes(), vec![]);
}

#[test]
fn one_changed_arch_fetches_only_that_archive_from_the_store() {
    let build = sized_demo();
    let mut env = Env::with_builds(std::slice::from_ref(&build));
    let nginx = Nginx::serve(env.dir());
    let (work, _) = records_only(&env);
    let cache = tempfile::tempdir().unwrap();
    push_from(&env, &nginx, work.path(), cache.path()).ok();

    // The next build: x86_64's own layer changed, the other arches rebuilt the same.
    let mut next = build;
    next.id = "40.20261102.1.0".to_owned();
    next.arch_mut("x86_64").salt = "changed".to_owned();
    let written = env.add_build(&next);
    for w in &written {
        copy_meta(env.dir(), work.path(), w);
    }
    nginx.clear();
    env.proxy.clear();
    let run = push_from(&env, &nginx, work.path(), cache.path()).ok();
    assert_eq!(run.outcome(), "pushed");
    // Its config and its own layer; the shared base layer is in the registry already.
    assert_eq!(run.report["uploaded"]["blobs"], 2, "{:#}", run.report);

    for w in &written {
        let name = archive_name(w);
        let fetched = nginx.bytes_served(&name);
        if w.arch == "x86_64" {
            // One pass over that archive: its new layer and config, the tiny shared base
            // layer (the archive's sha256 needs every byte), headers and JSON.
            assert!(
                fetched >= w.archive_size && fetched * 100 <= w.archive_size * 102,
                "{}: {fetched} of {}",
                w.arch,
                w.archive_size
            );
        } else {
            // Known from the first push's check (same bytes, same sha256): nothing fetched.
            assert_eq!(fetched, 0, "{}", w.arch);
        }
    }
}

#[test]
fn store_reads_ride_out_a_503_and_resume_a_download_cut_midway() {
    let build = sized_demo();
    let env = Env::with_builds(&[build]);
    let nginx = Nginx::serve(env.dir());
    let front = Proxy::start(nginx.addr());
    let (work, _) = records_only(&env);
    let cache = tempfile::tempdir().unwrap();
    let x86 = env.arch(reprise_fixtures::DEMO_ID, "x86_64").clone();
    let arm = env.arch(reprise_fixtures::DEMO_ID, "aarch64").clone();
    let x86_name = archive_name(&x86);
    let arm_name = archive_name(&arm);
    // x86_64's archive answers its first read with a 503; every read of aarch64's is cut
    // halfway through its archive, so only the one pass over it (the only read that long) is
    // cut, and its retry, from where the cut fell, is short enough to get through.
    front.inject(Fault::status("GET", &x86_name, 503).times(1));
    front.inject(Fault::cut_response_after(
        "GET",
        &arm_name,
        arm.archive_size / 2,
    ));

    let extra = [
        "--builds-url".to_owned(),
        format!("http://{}/builds", front.host()),
        "--workdir".to_owned(),
        work.path().display().to_string(),
        "--retry-delay".to_owned(),
        "0.05".to_owned(),
    ];
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let mut cmd = env.command(&env.push_args(&["stable"], &extra));
    cmd.env("XDG_CACHE_HOME", cache.path());
    let run = Run::of(&mut cmd).ok();
    assert_eq!(run.outcome(), "pushed");
    let answered: Vec<u16> = front
        .requests()
        .iter()
        .filter(|r| r.path.ends_with(&x86_name))
        .map(|r| r.status)
        .collect();
    assert!(answered.contains(&503), "{answered:?}");
    // The cut download went on from where it stopped rather than starting over: after the
    // pass's read from byte 0 was cut (every time, halfway into what it asked for), each
    // read went on from the byte the last one stopped at, to the archive's end.
    let whole = format!("bytes=0-{}", arm.archive_size - 1);
    let ranges: Vec<String> = nginx
        .served()
        .iter()
        .filter(|s| s.uri.ends_with(&arm_name) && s.method == "GET")
        .map(|s| s.range.clone())
        .collect();
    assert_eq!(
        ranges.iter().filter(|r| **r == whole).count(),
        1,
        "read from the start once: {ranges:?}"
    );
    let resumed: Vec<u64> = ranges
        .iter()
        .filter_map(|r| r.strip_prefix("bytes="))
        .filter_map(|r| r.strip_suffix(&format!("-{}", arm.archive_size - 1)))
        .filter_map(|from| from.parse().ok())
        // The cut falls at most halfway; windows of tar headers sit near the end.
        .filter(|from| *from > 0 && *from <= arm.archive_size / 2)
        .collect();
    assert!(
        !resumed.is_empty(),
        "a read from where the cut fell: {ranges:?}"
    );
}
