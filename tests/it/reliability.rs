//! The fault matrix: registry faults injected by the proxy in front of a real registry, and
//! what reprise must do about each (ride it out, or fail loudly having recorded nothing).

use std::time::Duration;

use crate::support::check::{expected_platforms, platforms_of};
use crate::support::env::Env;
use crate::support::proxy::{Action, Fault, Match, Recorded};
use crate::support::skopeo::inspect_json;
use reprise_fixtures::{self as fixtures, BuildSpec};

fn served(requests: &[Recorded], method: &str, path_part: &str, status: u16) -> usize {
    requests
        .iter()
        .filter(|r| r.method == method && r.path.contains(path_part) && r.status == status)
        .count()
}

#[test]
fn a_503_twice_on_a_tag_head_a_429_on_upload_start_and_a_reset_mid_blob_are_ridden_out() {
    let env = Env::new();
    env.proxy
        .inject(Fault::status("HEAD", "/manifests/stable", 503).times(2));
    env.proxy.inject(
        Fault::status("POST", "/blobs/uploads/", 429)
            .retry_after(1)
            .times(1),
    );
    env.proxy
        .inject(Fault::reset_after("PUT", "/blobs/uploads/", 512).times(1));

    let run = env.push(&["stable"], &["--retry-delay", "0.01"]).ok();

    assert_eq!(run.outcome(), "pushed");
    let requests = env.proxy.requests();
    assert_eq!(served(&requests, "HEAD", "/manifests/stable", 503), 2);
    assert_eq!(served(&requests, "POST", "/blobs/uploads/", 429), 1);
    assert_eq!(
        served(&requests, "PUT", "/blobs/uploads/", 0),
        1,
        "one reset"
    );
    // The backoff alone would pause ~10 ms; the registry asked for 1 s and got it.
    assert!(
        run.stderr.contains("retrying in 1s (Retry-After: 1s)"),
        "{}",
        run.stderr
    );
    assert_eq!(
        env.tag_platforms("stable"),
        expected_platforms(&env.written)
    );
    assert_eq!(env.tag_digest("stable"), Some(run.index_digest()));
    for w in &env.written {
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&w.meta).unwrap()).unwrap();
        assert_eq!(
            meta["base-oscontainer"]["digest"],
            w.manifest_digest.as_str()
        );
    }
}

#[test]
fn a_throttled_manifest_push_waits_as_long_as_the_registry_asks() {
    let env = Env::new();
    env.proxy.inject(
        Fault::status("PUT", "/manifests/stable", 429)
            .retry_after(2)
            .times(1),
    );
    let run = env.push(&["stable"], &["--retry-delay", "0.01"]).ok();
    assert_eq!(
        served(&env.proxy.requests(), "PUT", "/manifests/stable", 429),
        1
    );
    assert!(
        run.stderr.contains("retrying in 2s (Retry-After: 2s)"),
        "{}",
        run.stderr
    );
    assert_eq!(env.tag_digest("stable"), Some(run.index_digest()));
}

#[test]
fn stale_reads_for_two_seconds_after_each_tag_write_are_waited_out() {
    let env = Env::new();
    for tag in ["stable", "40"] {
        env.proxy.inject(Fault::stale_reads_for(
            &format!("/manifests/{tag}"),
            Duration::from_secs(2),
        ));
    }
    let run = env.push(&["stable", "40"], &[]).ok();
    assert_eq!(run.outcome(), "pushed");
    let requests = env.proxy.requests();
    // "stable" is read back first, within its window; by the time "40" is, its window may
    // have closed, so only "stable" is sure to have seen a stale read.
    {
        let tag = "stable";
        let path = format!("/manifests/{tag}");
        let put = requests
            .iter()
            .position(|r| r.method == "PUT" && r.path.ends_with(&path))
            .expect("tag written");
        let after: Vec<u16> = requests[put + 1..]
            .iter()
            .filter(|r| r.method == "HEAD" && r.path.ends_with(&path))
            .map(|r| r.status)
            .collect();
        assert_eq!(after.first(), Some(&404), "{tag}: a stale read was served");
        assert_eq!(after.last(), Some(&200), "{tag}: then the real one");
    }
    for tag in ["stable", "40"] {
        assert_eq!(env.tag_digest(tag), Some(run.index_digest()));
    }
    assert_eq!(run.report["arches"].as_array().unwrap().len(), 4);
    for w in &env.written {
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&w.meta).unwrap()).unwrap();
        assert_eq!(
            meta["base-oscontainer"]["manifest-list-digest"],
            run.index_digest().as_str()
        );
    }
}

#[test]
fn a_tag_stale_for_ever_fails_with_tag_expected_and_observed_and_records_nothing() {
    let env = Env::new();
    let first = env.push(&["stable"], &[]).ok();
    // A newer build (other manifests, so another index) for the same tag.
    let newer = BuildSpec::demo_with_id("40.20261102.3.0");
    let newer_written = fixtures::add_build(env.dir(), &newer).unwrap();
    let newer_metas: Vec<Vec<u8>> = newer_written
        .iter()
        .map(|w| std::fs::read(&w.meta).unwrap())
        .collect();
    let planned = env.push(&["stable"], &["--dry-run"]).ok();
    let expected = planned.index_digest();
    assert_ne!(expected, first.index_digest());

    env.proxy
        .inject(Fault::stale_reads_forever("/manifests/stable"));
    let run = env.push(&["stable"], &["--verify-timeout", "3"]);

    assert_eq!(run.code, 1, "{}", run.stderr);
    let line = run.stderr.trim();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(line.contains(":stable"), "{line}");
    assert!(line.contains(&expected), "expected digest: {line}");
    assert!(
        line.contains(&first.index_digest()),
        "observed digest: {line}"
    );
    // The registry does hold the new index: only the read-back never showed it.
    assert_eq!(env.tag_digest("stable"), Some(expected));
    let after: Vec<Vec<u8>> = newer_written
        .iter()
        .map(|w| std::fs::read(&w.meta).unwrap())
        .collect();
    assert_eq!(after, newer_metas, "no meta.json changed");
}

#[test]
fn an_arch_manifest_the_registry_will_not_serve_by_digest_is_never_recorded() {
    let env = Env::new();
    let metas = env.metas();
    let s390x = env.written.iter().find(|w| w.arch == "s390x").unwrap();
    env.proxy.inject(Fault::stale_reads_forever(&format!(
        "/manifests/{}",
        s390x.manifest_digest
    )));
    let run = env.push(&["stable"], &["--verify-timeout", "2"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("@{}", s390x.manifest_digest))
            && run.stderr.contains("nothing (404)"),
        "{}",
        run.stderr
    );
    assert_eq!(env.metas(), metas, "no meta.json changed");
}

#[test]
fn persistent_503_on_a_blob_upload_fails_after_the_retries_and_records_nothing() {
    let env = Env::new();
    env.proxy
        .inject(Fault::status("POST", "/blobs/uploads/", 503));
    let metas = env.metas();
    let run = env.push(
        &["stable"],
        &["--retry-times", "3", "--retry-delay", "0.01", "--jobs", "1"],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("HTTP 503"), "{}", run.stderr);
    // Small blobs move several at once: the upload that failed the run was tried 1 + 3
    // times, and none more.
    assert!(run.stderr.contains("(retry 3 of 3)"), "{}", run.stderr);
    assert!(!run.stderr.contains("(retry 4 of"), "{}", run.stderr);
    let requests = env.proxy.requests();
    assert!(served(&requests, "POST", "/blobs/uploads/", 503) >= 4);
    assert!(
        !requests.iter().any(|r| r.method == "PUT"),
        "no manifest or tag written: {requests:?}"
    );
    assert_eq!(env.metas(), metas);
}

#[test]
fn a_404_on_a_tag_means_absent_but_a_403_fails_without_retry_or_write() {
    let env = Env::new();
    env.proxy
        .inject(Fault::status("HEAD", "/manifests/stable", 403));
    let metas = env.metas();
    let run = env.push(&["stable"], &["--retry-delay", "0.01"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("access denied"), "{}", run.stderr);
    let requests = env.proxy.requests();
    assert_eq!(
        served(&requests, "HEAD", "/manifests/stable", 403),
        1,
        "not retried"
    );
    assert_eq!(env.proxy.writes(), vec![]);
    assert_eq!(env.metas(), metas);
}

/// "stable" holds the demo build's index; a newer build makes reprise fetch it by digest,
/// and the proxy serves `body` for that fetch.
fn fetch_of_stable_served_as(content_type: &str, body: Vec<u8>) -> (Env, crate::support::run::Run) {
    let env = Env::new();
    let first = env.push(&["stable"], &[]).ok();
    let newer = BuildSpec::demo_with_id("40.20261102.3.0");
    fixtures::add_build(env.dir(), &newer).unwrap();
    env.proxy.clear();
    env.proxy.inject(Fault::respond(
        "GET",
        &format!("/manifests/{}", first.index_digest()),
        content_type,
        body,
    ));
    let run = env.push(&["stable"], &[]);
    (env, run)
}

#[test]
fn a_remote_index_over_4_mib_is_refused_without_any_write() {
    let mut body = br#"{"schemaVersion":2,"manifests":[],"annotations":{"pad":""#.to_vec();
    body.extend(std::iter::repeat_n(b'x', 4 << 20));
    body.extend(br#""}}"#);
    let (env, run) = fetch_of_stable_served_as("application/vnd.oci.image.index.v1+json", body);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let line = run.stderr.trim();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(
        line.contains(":stable") || line.contains("@sha256:"),
        "{line}"
    );
    assert!(line.contains("over the 4194304-byte limit"), "{line}");
    assert_eq!(env.proxy.writes(), vec![]);
}

#[test]
fn a_remote_index_that_is_not_json_is_refused_without_any_write() {
    let env = Env::new();
    // Something in front of the registry answers every manifest read with an HTML page (and
    // no digest header), consistently, so the digest checks pass and the parse must catch it.
    let html = Fault::respond(
        "GET",
        "/manifests/",
        "text/html",
        b"<html>gw</html>".to_vec(),
    );
    env.proxy.inject(html);
    let head = Fault::respond(
        "HEAD",
        "/manifests/",
        "text/html",
        b"<html>gw</html>".to_vec(),
    );
    env.proxy.inject(head);
    let run = env.push(&["stable"], &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let line = run.stderr.trim();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(line.contains(":stable") && line.contains("JSON"), "{line}");
    assert_eq!(env.proxy.writes(), vec![]);
}

fn hold_build_lock(env: &Env) -> std::fs::File {
    let path = env
        .dir()
        .join("builds")
        .join(fixtures::DEMO_ID)
        .join(".reprise.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap();
    file.try_lock().expect("lock is free before the run");
    file
}

#[test]
fn a_second_runner_on_the_same_build_fails_at_once_without_touching_anything() {
    let env = Env::new();
    let metas = env.metas();
    let held = hold_build_lock(&env);
    let run = env.push(&["stable"], &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let line = run.stderr.trim();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(
        line.contains(".reprise.lock") && line.contains("another reprise run"),
        "{line}"
    );
    assert_eq!(env.proxy.requests(), vec![], "nothing sent");
    assert_eq!(env.metas(), metas);
    // A dry run changes nothing, so it does not need the lock.
    assert_eq!(
        env.push(&["stable"], &["--dry-run"]).ok().outcome(),
        "planned"
    );
    drop(held);
    assert_eq!(env.push(&["stable"], &[]).ok().outcome(), "pushed");
}

#[test]
fn with_wait_lock_a_second_runner_waits_its_turn() {
    use std::io::BufRead as _;
    let env = Env::new();
    let held = hold_build_lock(&env);
    let mut child = env
        .command(&env.push_args(&["stable"], &["--wait-lock"]))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let waiting = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("reprise says it is waiting");
    assert!(waiting.contains("waiting for it"), "{waiting}");
    assert_eq!(env.proxy.requests(), vec![], "nothing sent while waiting");
    drop(held);
    let status = child.wait().unwrap();
    assert!(status.success(), "{:?}", rx.try_iter().collect::<Vec<_>>());
    assert!(env.tag_digest("stable").is_some());
}

#[test]
fn a_release_run_on_a_build_another_run_holds_fails_at_once() {
    let env = Env::new();
    let config = env.demo_release_config();
    let metas = env.metas();
    let _held = hold_build_lock(&env);
    let run = env.reprise(&[
        "run".into(),
        "--config".into(),
        config.display().to_string(),
    ]);
    let stderr = &run.stderr;
    assert_eq!(run.code, 1, "{stderr}");
    assert!(
        stderr.contains(".reprise.lock") && stderr.contains("another reprise run"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert_eq!(env.proxy.requests(), vec![], "nothing sent");
    assert_eq!(env.metas(), metas);
}

#[test]
fn a_401_on_a_blob_put_mid_upload_starts_the_upload_over_with_a_fresh_token() {
    let env = Env::new();
    env.proxy
        .inject(Fault::status("PUT", "/blobs/uploads/", 401).times(1));
    let run = env
        .push(&["stable"], &["--retry-delay", "0.01", "--jobs", "1", "-v"])
        .ok();
    assert_eq!(run.outcome(), "pushed");
    let requests = env.proxy.requests();
    assert_eq!(served(&requests, "PUT", "/blobs/uploads/", 401), 1);
    // A token running out is routine: said at -v, and the upload restarts at once.
    assert!(
        run.stderr.contains("asked for credentials again"),
        "{}",
        run.stderr
    );
    let index = inspect_json(&format!("{}:stable", env.repo()));
    assert_eq!(platforms_of(&index), expected_platforms(&env.written));
}

#[test]
fn a_blob_the_registry_lost_before_the_manifest_is_found_missing_and_moved_again() {
    let env = Env::new();
    let x86 = env.arch(fixtures::DEMO_ID, "x86_64").clone();
    let config_hex = x86.config_digest.trim_start_matches("sha256:").to_owned();
    // The config's upload is answered 201 by the proxy and never reaches the registry, which
    // then refuses the manifest naming it (MANIFEST_BLOB_UNKNOWN, the registry's own answer).
    env.proxy.inject(
        Fault::new(
            Match::new("PUT", &config_hex),
            Action::Respond {
                code: 201,
                content_type: "text/plain".into(),
                body: Vec::new().into(),
            },
        )
        .times(1),
    );
    let run = env.push(&["stable"], &[]).ok();
    assert_eq!(run.outcome(), "pushed");
    let requests = env.proxy.requests();
    let manifest = format!("/manifests/{}", x86.manifest_digest);
    assert_eq!(served(&requests, "PUT", &manifest, 400), 1, "{requests:#?}");
    assert_eq!(served(&requests, "PUT", &manifest, 201), 1);
    assert_eq!(
        requests
            .iter()
            .filter(|r| r.method == "PUT" && r.path.contains(&config_hex))
            .count(),
        2,
        "the config went up again"
    );
    // The registry serves the manifest, and the config it names.
    let pulled = inspect_json(&format!("{}@{}", env.direct_repo(), x86.manifest_digest));
    assert_eq!(pulled["config"]["digest"], x86.config_digest.as_str());
    let config = crate::support::skopeo::skopeo(&[
        "inspect",
        "--config",
        "--tls-verify=false",
        &format!("docker://{}@{}", env.direct_repo(), x86.manifest_digest),
    ]);
    assert!(config.status.success(), "skopeo reads the config back");

    env.proxy.clear();
    let again = env.push(&["stable"], &[]).ok();
    assert_eq!(again.outcome(), "noop");
    assert_eq!(env.proxy.writes(), vec![]);
}
