//! `--builds-url s3://…`: builds read from a real S3-compatible server (s3s-fs) with SigV4
//! credentials, records written back into the store's meta.json by conditional write, and a
//! writer that changes meta.json between that read and write losing nothing.

use std::path::Path;

use crate::support::check::validate;
use crate::support::env::{Env, KEY};
use crate::support::proxy::Proxy;
use crate::support::run::Run;
use crate::support::s3::S3;
use reprise::builds::Record;
use reprise::reference::{Digest, Repository, Tag};
use reprise::store::{BuildsUrl, Store, StoreOptions};
use serde_json::Value;

/// `push-container-manifest --builds-url s3://builds` (the bucket is the test world's
/// `builds/` directory) from an empty working directory, keeping its archive cache in `cache`.
fn push_from(env: &Env, s3: &S3, cache: &Path) -> Run {
    push_via(env, s3, &s3.endpoint(), cache)
}

/// [`push_from`] through `endpoint`, a proxy in front of `s3` that counts what it serves.
fn push_via(env: &Env, s3: &S3, endpoint: &str, cache: &Path) -> Run {
    let work = tempfile::tempdir().unwrap();
    let extra = ["--builds-url", "s3://builds", "--workdir"];
    let mut args = env.push_args(&["stable"], &extra);
    args.push(work.path().display().to_string());
    let mut cmd = env.command(&args);
    s3.configure_at(&mut cmd, endpoint);
    cmd.env("XDG_CACHE_HOME", cache);
    Run::of(&mut cmd)
}

/// `status --check` of the build in `s3` through `endpoint`.
fn status_via(env: &Env, s3: &S3, endpoint: &str, cache: &Path) -> Run {
    let work = tempfile::tempdir().unwrap();
    let extra = [
        "--check",
        "--builds-url",
        "s3://builds",
        "--workdir",
        work.path().to_str().unwrap(),
    ];
    let mut cmd = env.command(&env.command_args("status", &env.repo(), &["stable"], &extra));
    s3.configure_at(&mut cmd, endpoint);
    cmd.env("XDG_CACHE_HOME", cache);
    Run::of(&mut cmd)
}

#[test]
fn s3_first_push_fetches_each_archive_byte_once_and_a_noop_fetches_none() {
    let build = crate::store_http::sized_demo();
    let env = Env::with_builds(&[build]);
    let s3 = S3::serve(env.dir());
    // Counted at the wire: a proxy in front of the S3 server (SigV4 signs the Host header,
    // which the proxy keeps).
    let front = Proxy::start(s3.addr());
    let endpoint = format!("http://{}", front.host());
    let cache = tempfile::tempdir().unwrap();

    let run = push_via(&env, &s3, &endpoint, cache.path()).ok();
    assert_eq!(run.outcome(), "pushed");
    let fetched = front.bytes_served(".ociarchive");
    let size: u64 = env.written.iter().map(|w| w.archive_size).sum();
    eprintln!("first push from S3: {fetched} archive bytes fetched of {size}");
    assert!(
        fetched >= size && fetched * 100 <= size * 102,
        "{fetched} of {size}"
    );
    // The report says what the run read: the archives, builds.json and the meta.json files.
    let reported = run.report["store"]["bytes_read"].as_u64().unwrap();
    assert!(
        reported > fetched && reported < fetched + (64 << 10),
        "{reported} reported, {fetched} archive bytes"
    );

    front.clear();
    env.proxy.clear();
    let metas = env.metas();
    let again = push_via(&env, &s3, &endpoint, cache.path()).ok();
    assert_eq!(again.outcome(), "noop");
    assert_eq!(env.proxy.writes(), vec![], "a no-op writes nothing");
    assert_eq!(env.metas(), metas, "records byte-identical");
    assert_eq!(front.bytes_served(".ociarchive"), 0, "no archive byte read");
    let reported = again.report["store"]["bytes_read"].as_u64().unwrap();
    assert!(
        reported < 64 << 10,
        "builds.json and the records only: {reported}"
    );
    // Each archive is only asked whether it is there (a HEAD, no body), as a local no-op
    // opens each file.
    let archive_reads: Vec<_> = front
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with(".ociarchive") && r.method != "HEAD")
        .collect();
    assert_eq!(archive_reads, vec![], "no archive read");

    let status = status_via(&env, &s3, &endpoint, cache.path());
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert_eq!(
        front.bytes_served(".ociarchive"),
        0,
        "status reads none either"
    );
    assert_eq!(env.metas(), metas);
}

#[test]
fn s3_store_push_records_back_into_the_store_and_a_rerun_is_a_noop() {
    let env = Env::new();
    let s3 = S3::serve(env.dir());
    let cache = tempfile::tempdir().unwrap();

    let run = push_from(&env, &s3, cache.path()).ok();
    assert_eq!(run.outcome(), "pushed");
    validate("report.schema.json", &run.report);
    for w in &env.written {
        let record = env.record(w);
        assert_eq!(record["digest"], w.manifest_digest.as_str(), "{}", w.arch);
        assert_eq!(record["manifest-list-digest"], run.index_digest().as_str());
    }

    let metas = env.metas();
    env.proxy.clear();
    let again = push_from(&env, &s3, cache.path()).ok();
    assert_eq!(again.outcome(), "noop");
    assert_eq!(env.proxy.writes(), vec![], "a no-op writes nothing");
    assert_eq!(env.metas(), metas, "records byte-identical");

    // inspect --meta reads the record back from the store.
    let w = &env.written[0];
    let rel = format!("{}/{}/meta.json", w.build_id, w.arch);
    let tagged = format!("{}:stable", env.repo());
    let mut cmd = env.command(&[
        "inspect".into(),
        tagged,
        "--meta".into(),
        rel,
        "--metajsonname".into(),
        KEY.into(),
        "--builds-url".into(),
        "s3://builds".into(),
        "--json".into(),
    ]);
    s3.configure(&mut cmd);
    let inspected = Run::of(&mut cmd);
    assert_eq!(inspected.code, 0, "{}", inspected.stderr);
    assert_eq!(
        inspected.report["meta"]["matches"], true,
        "{:#}",
        inspected.report
    );
    assert_eq!(
        inspected.report["meta"]["record_digest"],
        w.manifest_digest.as_str()
    );
}

#[test]
fn s3_store_with_wrong_credentials_names_their_source_and_never_the_secret() {
    let env = Env::new();
    let s3 = S3::serve(env.dir());
    let work = tempfile::tempdir().unwrap();
    let mut args = env.push_args(&["stable"], &["--builds-url", "s3://builds", "--workdir"]);
    args.push(work.path().display().to_string());
    let mut cmd = env.command(&args);
    s3.configure(&mut cmd);
    cmd.env("AWS_SECRET_ACCESS_KEY", "not-the-secret-at-all");
    let run = Run::of(&mut cmd);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("AWS_"), "{}", run.stderr);
    assert!(
        !run.stderr.contains("not-the-secret-at-all"),
        "{}",
        run.stderr
    );
    assert_eq!(env.proxy.writes(), vec![]);
}

#[test]
fn s3_record_write_back_keeps_a_key_another_writer_added_meanwhile() {
    let env = Env::new();
    let s3 = S3::serve(env.dir());
    let w = env.written[0].clone();
    let rel = w.meta.strip_prefix(env.dir().join("builds")).unwrap();
    let url = format!("s3://builds/{}", rel.display());
    let options = StoreOptions {
        tls_verify: true,
        endpoint: Some(s3.endpoint()),
        region: Some("us-east-1".into()),
        ..StoreOptions::default()
    };
    let record = Record {
        image: Repository::parse("quay.io/fedora/fedora-coreos").unwrap(),
        digest: Digest::parse(&w.manifest_digest).unwrap(),
        manifest_list_digest: Digest::parse(&w.manifest_digest).unwrap(),
        tags: vec![Tag::parse("stable").unwrap()],
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (changed, tries) = runtime.block_on(async move {
        tokio::task::spawn_blocking(move || {
            let store = open(
                &options,
                &[
                    ("AWS_ACCESS_KEY_ID", crate::support::s3::ACCESS_KEY),
                    ("AWS_SECRET_ACCESS_KEY", crate::support::s3::SECRET_KEY),
                ],
            );
            let url = camino::Utf8PathBuf::from(url);
            let mut tries = Vec::new();
            let changed =
                reprise::store::write_record_with(&store, &url, KEY, &record, |attempt| {
                    tries.push(attempt);
                    if attempt == 0 {
                        // Another tool adds its key between reprise's read and its write.
                        let (raw, etag) = store.get(&url).unwrap();
                        let mut meta: serde_json::Map<String, Value> =
                            serde_json::from_slice(&raw).unwrap();
                        meta.insert("other-tool".into(), Value::from("kept"));
                        let bytes = serde_json::to_vec(&meta).unwrap();
                        assert!(store.put_if_match(&url, bytes, &etag.unwrap()).unwrap());
                    }
                })
                .unwrap();
            (changed, tries)
        })
        .await
        .unwrap()
    });
    assert!(changed);
    assert_eq!(
        tries,
        vec![0, 1],
        "the conflict was seen and the write tried again"
    );
    let meta: Value = serde_json::from_slice(&std::fs::read(&w.meta).unwrap()).unwrap();
    assert_eq!(
        meta["other-tool"], "kept",
        "the other writer's key survives"
    );
    assert_eq!(
        meta[KEY]["digest"],
        w.manifest_digest.as_str(),
        "and so does the record"
    );
}

/// The store for `s3://builds` with these credentials, given as `--aws-config-file` does: the
/// test process's own environment is left alone.
fn open(options: &StoreOptions, vars: &[(&str, &str)]) -> Store {
    let text: String = vars
        .iter()
        .map(|(k, v)| format!("{}={v}\n", k.to_ascii_lowercase()))
        .collect();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), format!("[default]\n{text}")).unwrap();
    let options = StoreOptions {
        aws_config_file: Some(camino::Utf8PathBuf::from_path_buf(file.path().to_owned()).unwrap()),
        ..options.clone()
    };
    match BuildsUrl::open("s3://builds", &options).unwrap() {
        BuildsUrl::Remote(store) => store,
        BuildsUrl::Local(dir) => panic!("{dir}"),
    }
}

#[test]
fn a_release_reads_its_build_from_the_config_builds_url_and_records_back_there() {
    let env = Env::new();
    let s3 = S3::serve(env.dir());
    let cache = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let config = env.release_config(&format!(
        r#"builds-url = "s3://builds"

[[stage]]
name = "per-arch"
kind = "arch-tags"
artifact = "ostree"
repo = "{repo}"
tags = ["{{version}}"]

[[stage]]
name = "base"
kind = "container-manifest"
artifact = "ostree"
metajsonname = "{KEY}"
repo = "{repo}"
tags = ["stable"]
"#,
        repo = env.repo()
    ));
    let release = || {
        let mut cmd = env.command(&[
            "run".into(),
            "--config".into(),
            config.display().to_string(),
            "--workdir".into(),
            work.path().display().to_string(),
            "--json".into(),
        ]);
        s3.configure(&mut cmd);
        cmd.env("XDG_CACHE_HOME", cache.path());
        Run::of(&mut cmd)
    };
    let first = release().ok();
    validate("report.schema.json", &first.report);
    assert_eq!(
        first.report["release"]["outcome"], "pushed",
        "{:#}",
        first.report
    );
    for w in &env.written {
        // The records went back into the bucket's meta.json files.
        assert_eq!(
            env.record(w)["digest"],
            w.manifest_digest.as_str(),
            "{}",
            w.arch
        );
    }

    env.proxy.clear();
    let metas = env.metas();
    let again = release().ok();
    assert_eq!(
        again.report["release"]["outcome"], "noop",
        "{:#}",
        again.report
    );
    assert_eq!(env.proxy.writes(), vec![], "a rerun writes nothing");
    assert_eq!(env.metas(), metas);
}
