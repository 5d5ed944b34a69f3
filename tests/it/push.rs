//! `reprise push-container-manifest` against a real registry, through the recording proxy,
//! checked with an independent client (skopeo) where it matters.

use crate::support::check::{expected_platforms, platforms_of, validate};
use crate::support::env::{Env, KEY};
use crate::support::proxy::{Action, Fault, Match};
use crate::support::skopeo::{copy_all, inspect_json, skopeo};
use reprise_fixtures::{BuildSpec, DEMO_ID, sha256_digest};
use serde_json::Value;

/// An arch's record in the demo build's meta.json.
fn record(env: &Env, arch: &str) -> Value {
    env.record(env.arch(DEMO_ID, arch))
}

#[test]
fn first_push_publishes_every_arch_and_records_it() {
    let env = Env::new();
    let run = env.push(&["stable", "40"], &[]).ok();
    assert_eq!(run.outcome(), "pushed");
    validate("report.schema.json", &run.report);
    let digest = run.index_digest();

    for tag in ["stable", "40"] {
        let index = inspect_json(&format!("{}:{tag}", env.repo()));
        assert_eq!(
            index["mediaType"],
            "application/vnd.oci.image.index.v1+json"
        );
        assert_eq!(platforms_of(&index), expected_platforms(&env.written));
    }
    for w in &env.written {
        let rec = record(&env, &w.arch);
        validate("meta-record.schema.json", &rec);
        assert_eq!(rec["image"], env.repo());
        assert_eq!(rec["digest"], w.manifest_digest.as_str());
        assert_eq!(rec["manifest-list-digest"], digest.as_str());
        assert_eq!(rec["tags"], serde_json::json!(["stable", "40"]));
    }
    // An independent client can copy everything the index names.
    copy_all(&format!("{}:stable", env.repo()), "oci");
}

#[test]
fn noop_rerun_sends_no_write_and_changes_no_file() {
    let env = Env::new();
    let first = env.push(&["stable", "40"], &[]).ok();
    let metas = env.metas();
    env.proxy.clear();

    let again = env.push(&["stable", "40"], &[]).ok();
    assert_eq!(again.outcome(), "noop");
    validate("report.schema.json", &again.report);
    assert_eq!(again.index_digest(), first.index_digest());
    assert_eq!(env.proxy.writes(), vec![], "a no-op must not write");
    assert_eq!(env.metas(), metas, "every meta.json byte-identical");
}

#[test]
fn deleted_record_is_restored_without_registry_write() {
    let env = Env::new();
    let first = env.push(&["stable"], &[]).ok();
    let path = env.arch(DEMO_ID, "ppc64le").meta.clone();
    let with_record = std::fs::read(&path).unwrap();
    let mut meta: serde_json::Map<String, Value> = serde_json::from_slice(&with_record).unwrap();
    meta.remove(KEY);
    std::fs::write(&path, serde_json::to_vec_pretty(&meta).unwrap()).unwrap();
    env.proxy.clear();

    let run = env.push(&["stable"], &[]).ok();
    assert_eq!(run.outcome(), "recorded");
    validate("report.schema.json", &run.report);
    assert_eq!(env.proxy.writes(), vec![]);
    let rec = record(&env, "ppc64le");
    assert_eq!(rec["manifest-list-digest"], first.index_digest().as_str());
    let arches = run.report["arches"].as_array().unwrap();
    let written: Vec<&str> = arches
        .iter()
        .filter(|a| a["record"] == "written")
        .map(|a| a["arch"].as_str().unwrap())
        .collect();
    assert_eq!(written, ["ppc64le"]);
}

#[test]
fn only_the_drifted_tag_is_rewritten() {
    let env = Env::new();
    let first = env.push(&["stable", "40"], &[]).ok();
    // Point "40" at the x86_64 image alone, as if someone copied over it.
    let x86 = env.written.iter().find(|w| w.arch == "x86_64").unwrap();
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{}@{}", env.repo(), x86.manifest_digest),
        &format!("docker://{}:40", env.repo()),
    ]);
    env.proxy.clear();

    let run = env.push(&["stable", "40"], &[]).ok();
    assert_eq!(run.outcome(), "pushed");
    let tags = run.report["tags"].as_array().unwrap();
    assert_eq!(tags[0]["action"], "unchanged");
    assert_eq!(tags[1]["action"], "push");
    assert_eq!(tags[1]["before"], x86.manifest_digest.as_str());
    let tag_writes: Vec<_> = env
        .proxy
        .writes()
        .into_iter()
        .filter(|r| r.path.contains("/manifests/") && !r.path.contains("sha256:"))
        .collect();
    assert_eq!(tag_writes.len(), 1, "{tag_writes:?}");
    assert!(tag_writes[0].path.ends_with("/manifests/40"));
    assert_eq!(run.report["uploaded"]["blobs"], 0, "every blob was there");
    let index = inspect_json(&format!("{}:40", env.repo()));
    assert_eq!(platforms_of(&index), expected_platforms(&env.written));
    assert_eq!(run.index_digest(), first.index_digest());
}

#[test]
fn force_pushes_again_but_never_duplicates_records() {
    let env = Env::new();
    env.push(&["stable"], &[]).ok();
    let before = env.metas();
    env.proxy.clear();
    let run = env.push(&["stable"], &["--force"]).ok();
    assert_eq!(run.outcome(), "pushed");
    assert!(!env.proxy.writes().is_empty(), "--force writes");
    env.push(&["stable"], &["--force"]).ok();
    assert_eq!(env.metas(), before, "same records, no duplicates");
    for w in &env.written {
        let rec = record(&env, &w.arch);
        assert!(rec.get("additional-images").is_none(), "{rec}");
    }
}

#[test]
fn an_index_made_by_another_tool_with_the_same_mapping_is_left_alone() {
    let env = Env::new();
    env.push(&["stable"], &[]).ok();
    // Rewrite "stable" as a Docker manifest list with the entries in another order: same
    // platform → digest map, different bytes.
    let index = inspect_json(&format!("{}:stable", env.repo()));
    let mut manifests = index["manifests"].as_array().unwrap().clone();
    manifests.reverse();
    let foreign = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": manifests,
    });
    let bytes = serde_json::to_vec_pretty(&foreign).unwrap();
    env.put_manifest(
        "stable",
        &bytes,
        "application/vnd.docker.distribution.manifest.list.v2+json",
    );
    let foreign_digest = sha256_digest(&bytes);
    env.proxy.clear();

    let run = env.push(&["stable", "40"], &[]).ok();
    assert_eq!(
        run.index_digest(),
        foreign_digest,
        "the foreign index is reused"
    );
    let tags = run.report["tags"].as_array().unwrap();
    assert_eq!(tags[0]["action"], "unchanged");
    assert_eq!(tags[1]["action"], "push");
    // No blob or per-arch manifest was written: only the tag "40".
    let writes = env.proxy.writes();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert!(writes[0].path.ends_with("/manifests/40"));
    for w in &env.written {
        assert_eq!(
            record(&env, &w.arch)["manifest-list-digest"],
            foreign_digest.as_str()
        );
    }
    env.proxy.clear();
    assert_eq!(env.push(&["stable", "40"], &[]).ok().outcome(), "noop");
    assert_eq!(env.proxy.writes(), vec![]);
}

#[test]
fn dry_run_changes_nothing() {
    let env = Env::new();
    let metas = env.metas();
    let run = env.push(&["stable"], &["--dry-run"]).ok();
    assert_eq!(run.outcome(), "planned");
    validate("report.schema.json", &run.report);
    assert_eq!(run.report["tags"][0]["action"], "push");
    assert_eq!(env.proxy.writes(), vec![]);
    assert_eq!(env.metas(), metas);
}

#[test]
fn digest_file_holds_the_index_digest() {
    let env = Env::new();
    let file = env.dir().join("digest");
    let run = env
        .push(
            &["stable"],
            &["--write-digest-to-file", file.to_str().unwrap()],
        )
        .ok();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), run.index_digest());
    // A bare file name is relative to the working directory, and reruns keep converging.
    let rerun = env
        .push(&["stable"], &["--write-digest-to-file", "digest.txt"])
        .ok();
    assert_eq!(rerun.outcome(), "noop");
    assert_eq!(
        std::fs::read_to_string(env.dir().join("digest.txt")).unwrap(),
        run.index_digest()
    );
}

#[test]
fn missing_arch_is_refused_by_default() {
    let env = Env::new();
    env.push(&["stable"], &[]).ok();
    env.proxy.clear();
    let metas = env.metas();
    let run = env.push(
        &["stable"],
        &["--arch", "x86_64", "--arch", "aarch64", "--arch", "ppc64le"],
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(run.outcome(), "refused");
    validate("report.schema.json", &run.report);
    assert!(
        run.stderr.contains("s390x") && run.stderr.contains("stable"),
        "{}",
        run.stderr
    );
    assert_eq!(env.proxy.writes(), vec![]);
    assert_eq!(env.metas(), metas);
}

#[test]
fn arch_not_in_the_build_is_an_error() {
    let mut spec = BuildSpec::demo();
    spec.arches.retain(|a| a.arch != "s390x");
    let env = Env::with_builds(&[spec]);
    let run = env.push(&["stable"], &["--arch", "s390x"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("s390x is not in build"),
        "{}",
        run.stderr
    );
    assert_eq!(env.proxy.requests(), vec![]);
}

#[test]
fn a_record_slot_holding_something_else_fails_before_any_write() {
    let env = Env::new();
    let path = env.arch(DEMO_ID, "s390x").meta.clone();
    let mut meta: serde_json::Map<String, Value> =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    meta.insert(KEY.to_owned(), Value::from("not a record"));
    std::fs::write(&path, serde_json::to_vec_pretty(&meta).unwrap()).unwrap();
    let metas = env.metas();
    let run = env.push(&["stable"], &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("s390x/meta.json") && run.stderr.contains("is not an object"),
        "{}",
        run.stderr
    );
    assert_eq!(
        run.stderr.trim().lines().count(),
        1,
        "one line: {}",
        run.stderr
    );
    assert_eq!(env.proxy.requests(), vec![]);
    assert_eq!(env.metas(), metas);
}

#[test]
fn transient_503s_on_reading_a_tag_are_ridden_out() {
    let env = Env::new();
    env.proxy
        .inject(Fault::status("HEAD", "/manifests/stable", 503).times(2));
    let run = env.push(&["stable"], &["--retry-delay", "0.05"]).ok();
    assert_eq!(run.outcome(), "pushed");
    let served_503 = env
        .proxy
        .requests()
        .iter()
        .filter(|r| r.status == 503)
        .count();
    assert_eq!(served_503, 2, "every injected fault was hit");
    assert!(run.stderr.contains("retrying"), "{}", run.stderr);
    let index = inspect_json(&format!("{}:stable", env.repo()));
    assert_eq!(platforms_of(&index), expected_platforms(&env.written));
}

#[test]
fn persistent_500_on_reading_a_tag_fails_without_any_write() {
    let env = Env::new();
    env.proxy.inject(Fault::new(
        Match {
            method: None,
            path_contains: Some("/manifests/stable".to_owned()),
        },
        Action::Status {
            code: 500,
            retry_after: None,
        },
    ));
    let metas = env.metas();
    let run = env.push(
        &["stable"],
        &["--retry-times", "2", "--retry-delay", "0.01"],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("HTTP 500"), "{}", run.stderr);
    assert_eq!(env.proxy.writes(), vec![], "a 500 is never read as absent");
    assert_eq!(env.metas(), metas);
}
