//! Crash safety: a run killed at any step that changes state, then rerun without faults,
//! ends where a run that never crashed ends (same tags, same manifests, same records), and no
//! meta.json is ever invalid JSON, not even right after the crash.
//!
//! The named crash points need the `fail-points` feature (scripts/test.sh enables it); the
//! `kill -9` test needs nothing but the proxy.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use crate::support::check::read_json;
use crate::support::env::{Env, KEY};
use crate::support::proxy::{Fault, Gate};
use serde_json::Value;

const TAGS: [&str; 2] = ["stable", "40"];

/// What a run leaves behind, with the per-environment registry address taken out so two
/// environments can be compared.
#[derive(Debug, PartialEq)]
struct Converged {
    tags: Vec<(String, Option<String>)>,
    manifests_by_digest: Vec<(String, bool)>,
    metas: Vec<Value>,
}

fn converged(env: &Env) -> Converged {
    let tags = TAGS
        .iter()
        .map(|t| ((*t).to_owned(), env.tag_digest(t)))
        .collect();
    let manifests_by_digest = env
        .written
        .iter()
        .map(|w| {
            let stored = env.stored(&format!("@{}", w.manifest_digest)).is_some();
            (w.arch.clone(), stored)
        })
        .collect();
    let metas = env
        .written
        .iter()
        .map(|w| {
            let mut meta = read_json(&w.meta);
            let obj = meta.as_object_mut().expect("meta.json is an object");
            // The stamp is the clock; everything else must match byte for byte in meaning.
            obj.remove("coreos-assembler.meta-stamp");
            if let Some(rec) = obj.get_mut(KEY) {
                assert_eq!(rec["image"], env.repo().as_str());
                rec["image"] = Value::from("<repo>");
            }
            meta
        })
        .collect();
    Converged {
        tags,
        manifests_by_digest,
        metas,
    }
}

fn rerun_converges(env: &Env, expected: &Converged, context: &str) {
    let rerun = env.push(&TAGS, &[]);
    assert_eq!(rerun.code, 0, "{context}: rerun failed:\n{}", rerun.stderr);
    assert_eq!(&converged(env), expected, "{context}");
    // And it is really done: one more run is a no-op that writes nothing.
    env.proxy.clear();
    let again = env.push(&TAGS, &[]).ok();
    assert_eq!(again.outcome(), "noop", "{context}");
    assert_eq!(env.proxy.writes(), vec![], "{context}");
}

#[cfg(feature = "fail-points")]
#[test]
fn a_crash_at_every_fail_point_then_a_rerun_converges() {
    use crate::support::run::output_ok;

    // A run that never crashes, logging every fail point it passes.
    let reference = Env::new();
    let log = reference.dir().join("fail-points.log");
    output_ok(
        reference
            .command(&reference.push_args(&TAGS, &[]))
            .env("REPRISE_FAIL_LOG", &log),
    );
    let expected = converged(&reference);
    let points: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let arches = ["x86_64", "aarch64", "ppc64le", "s390x"];
    for step in ["after-blobs", "after-manifest", "after-record"] {
        for arch in arches {
            let point = format!("{step}:{arch}");
            assert!(points.contains(&point), "{point} not in {points:?}");
        }
    }
    for point in [
        "after-tag:stable",
        "after-tag:40",
        "before-records",
        "after-records",
    ] {
        assert!(
            points.iter().any(|p| p == point),
            "{point} not in {points:?}"
        );
    }
    assert_eq!(points.len(), 3 * 4 + 4, "{points:?}");

    for point in &points {
        let env = Env::new();
        let out = env
            .command(&env.push_args(&TAGS, &[]))
            .env("REPRISE_FAIL_AT", point)
            .output()
            .unwrap();
        assert_eq!(
            out.status.signal(),
            Some(6),
            "{point}: expected an abort; stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for w in &env.written {
            read_json(&w.meta);
        }
        rerun_converges(&env, &expected, point);
    }
}

#[test]
fn a_kill_9_during_a_blob_upload_then_a_rerun_converges() {
    let reference = Env::new();
    reference.push(&TAGS, &[]).ok();
    let expected = converged(&reference);

    let env = Env::new();
    // The first blob upload is held at the proxy, its body on the way, until the test
    // has killed the client in the act.
    let gate = Gate::new();
    env.proxy
        .inject(Fault::hold("PUT", "/blobs/uploads/", &gate).times(1));
    let mut child = env
        .command(&env.push_args(&TAGS, &[]))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let in_flight = gate.wait_arrived(1, Duration::from_secs(60));
    if !in_flight {
        let _ = child.kill();
    }
    assert!(in_flight, "the blob upload never started");
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9));
    for w in &env.written {
        read_json(&w.meta);
    }
    assert_eq!(
        env.tag_digest("stable"),
        None,
        "killed before any tag write"
    );

    env.proxy.clear_faults();
    rerun_converges(&env, &expected, "kill -9 mid-upload");
}
