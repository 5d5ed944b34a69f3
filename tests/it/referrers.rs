//! Signatures and attestations around a push, against a real registry (Docker Distribution
//! 2.8, which has no referrers API: the tag schema is the path taken). The referrers are made
//! by other clients (`support::referrers`): the oras Python SDK, and manifests built here
//! from the OCI specs.

use crate::support::check::validate;
use crate::support::env::{DEMO_REPO, Env};
use crate::support::proxy::Proxy;
use crate::support::referrers::{IN_TOTO, Made, Repo, SPDX, Subject};
use crate::support::registry::Registry;
use crate::support::run::Run;
use crate::support::skopeo::copy_all;
use reprise_fixtures::BuildSpec;
use serde_json::Value;

const NEXT_ID: &str = "40.20261102.1.0";

/// The demo repository, straight at the registry.
fn demo_repo(env: &Env) -> Repo {
    Repo::new(&env.registry.host(), DEMO_REPO)
}

/// `stable` (and `40`) hold the demo build's index, signed twice: by oras-py (listed in the
/// tag-schema index) and cosign-style (`.sig` tag). Then a newer build is the latest.
fn signed_twice_then_a_new_build() -> (Env, Subject, Made, String) {
    let mut env = Env::new();
    env.push(&["stable", "40"], &[]).ok();
    let repo = demo_repo(&env);
    let subject = Subject::at(&format!("{}:stable", repo.name()));
    let signature = repo.oras_signature(&subject, 1);
    repo.tag_schema(&subject, &[&signature]);
    let cosign = repo.cosign_signature(&subject);
    env.add_build(&BuildSpec::demo_with_id(NEXT_ID));
    env.proxy.clear();
    (env, subject, signature, cosign)
}

/// The one orphaned entry of a report, checked against what was made.
fn orphaned<'a>(run: &'a Run, subject: &Subject, signature: &Made, cosign: &str) -> &'a Value {
    let entries = run.report["orphaned_referrers"].as_array().expect("a list");
    assert_eq!(entries.len(), 1, "{:#}", run.report);
    let o = &entries[0];
    assert_eq!(o["old"], subject.digest.as_str());
    assert_eq!(o["old_kind"], "index");
    assert_eq!(o["tags"], serde_json::json!(["stable", "40"]));
    assert_eq!(o["new_referrers"], serde_json::json!([]));
    let referrers = o["referrers"].as_array().unwrap();
    let found: Vec<(&str, &str, &str)> = referrers
        .iter()
        .map(|r| {
            (
                r["digest"].as_str().unwrap(),
                r["kind"].as_str().unwrap(),
                r["found"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            (signature.digest.as_str(), "signature", "tag-schema"),
            (cosign, "signature", "cosign-tag"),
        ]
    );
    assert_eq!(referrers[1]["tag"], subject.cosign_tag("sig").as_str());
    o
}

const WARNING: &str =
    "warning: stable, 40: the old index has 2 signatures; the new index has none — sign it";

#[test]
fn replacing_a_signed_index_warns_that_its_two_signatures_stay_behind() {
    let (env, subject, signature, cosign) = signed_twice_then_a_new_build();
    let run = env.push(&["stable", "40"], &[]).ok();
    validate("report.schema.json", &run.report);
    assert_eq!(run.outcome(), "pushed");
    assert_ne!(run.index_digest(), subject.digest);
    let o = orphaned(&run, &subject, &signature, &cosign);
    assert_eq!(o["new"], run.index_digest().as_str());
    assert!(run.stderr.contains(WARNING), "{}", run.stderr);
    // Nothing about them was written: the signatures stay with the old digest.
    let writes = env.proxy.writes();
    assert!(
        writes.iter().all(|w| !w.path.contains("sha256-")),
        "{writes:?}"
    );
}

#[test]
fn status_and_a_dry_run_show_what_a_replacement_would_orphan() {
    let (env, subject, signature, cosign) = signed_twice_then_a_new_build();
    let status = env.reprise(&env.command_args("status", &env.repo(), &["stable", "40"], &[]));
    assert_eq!(status.code, 0, "{}", status.stderr);
    validate("report.schema.json", &status.report);
    orphaned(&status, &subject, &signature, &cosign);
    assert!(status.stderr.contains(WARNING), "{}", status.stderr);

    let dry = env.push(&["stable", "40"], &["--dry-run"]).ok();
    orphaned(&dry, &subject, &signature, &cosign);
    assert_eq!(env.proxy.writes(), vec![]);
}

#[test]
fn a_noop_rerun_reads_no_referrers() {
    let (env, ..) = signed_twice_then_a_new_build();
    env.push(&["stable", "40"], &[]).ok();
    env.proxy.clear();
    let again = env.push(&["stable", "40"], &[]).ok();
    assert_eq!(again.outcome(), "noop");
    assert_eq!(again.report["orphaned_referrers"], serde_json::json!([]));
    let requests = env.proxy.requests();
    assert_eq!(requests.len(), 2, "one HEAD per tag: {requests:?}");
    assert!(requests.iter().all(|r| r.method == "HEAD"), "{requests:?}");
}

#[test]
fn an_unsigned_replacement_warns_of_nothing() {
    let mut env = Env::new();
    env.push(&["stable"], &[]).ok();
    env.add_build(&BuildSpec::demo_with_id(NEXT_ID));
    let run = env.push(&["stable"], &[]).ok();
    assert_eq!(run.outcome(), "pushed");
    assert_eq!(run.report["orphaned_referrers"], serde_json::json!([]));
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
}

#[test]
fn a_new_index_attested_before_the_tags_move_is_counted() {
    let mut env = Env::new();
    env.push(&["stable"], &[]).ok();
    let repo = demo_repo(&env);
    let old = Subject::at(&format!("{}:stable", repo.name()));
    let signature = repo.oras_signature(&old, 1);
    repo.tag_schema(&old, &[&signature]);
    // The new index is published under its own tag first and attested there.
    env.add_build(&BuildSpec::demo_with_id(NEXT_ID));
    env.push(&["candidate"], &[]).ok();
    let new = Subject::at(&format!("{}:candidate", repo.name()));
    let attestation = repo.artifact(
        &new,
        IN_TOTO,
        br#"{"_type":"https://in-toto.io/Statement/v1"}"#,
    );
    repo.tag_schema(&new, &[&attestation]);

    let run = env.push(&["stable"], &[]).ok();
    validate("report.schema.json", &run.report);
    let o = &run.report["orphaned_referrers"][0];
    assert_eq!(o["new"], new.digest.as_str());
    assert_eq!(o["new_referrers"][0]["digest"], attestation.digest.as_str());
    assert_eq!(o["new_referrers"][0]["kind"], "attestation");
    assert!(
        run.stderr.contains(
            "warning: stable: the old index has 1 signature; the new index has 1 attestation"
        ),
        "{}",
        run.stderr
    );
}

/// The demo build's index at `stable`, signed by oras-py and cosign-style, attested (both in
/// the tag-schema index), and its x86_64 manifest with an SBOM: what a copy must bring along.
struct Signed {
    subject: Subject,
    child: Subject,
    /// In the subject's tag-schema index.
    listed: Vec<String>,
    cosign: String,
    sbom: String,
}

fn signed_attested_and_with_an_sbom(env: &Env) -> Signed {
    env.push(&["stable"], &[]).ok();
    let repo = demo_repo(env);
    let subject = Subject::at(&format!("{}:stable", repo.name()));
    let signature = repo.oras_signature(&subject, 1);
    let statement = br#"{"_type":"https://in-toto.io/Statement/v1","predicateType":"https://slsa.dev/provenance/v1"}"#;
    let attestation = repo.artifact(&subject, IN_TOTO, statement);
    repo.tag_schema(&subject, &[&signature, &attestation]);
    let cosign = repo.cosign_signature(&subject);
    let x86 = &env
        .arch(reprise_fixtures::DEMO_ID, "x86_64")
        .manifest_digest;
    let child = Subject::at(&format!("{}@{x86}", repo.name()));
    let sbom = repo.artifact(&child, SPDX, br#"{"spdxVersion":"SPDX-2.3"}"#);
    repo.tag_schema(&child, &[&sbom]);
    Signed {
        subject,
        child,
        listed: vec![signature.digest, attestation.digest],
        cosign,
        sbom: sbom.digest,
    }
}

/// Every referrer of `s` is at `target`, checked by independent clients: each tag-schema
/// index lists them, the cosign tag holds the same manifest, and skopeo copies each one with
/// every blob it names.
fn assert_referrers_at(target: &Repo, s: &Signed) {
    assert_eq!(
        target.listed(&s.subject),
        Some(s.listed.clone()),
        "{}",
        target.name()
    );
    assert_eq!(
        target.listed(&s.child),
        Some(vec![s.sbom.clone()]),
        "{}",
        target.name()
    );
    assert_eq!(
        target.tag_digest(&s.subject.cosign_tag("sig")),
        Some(s.cosign.clone()),
        "{}",
        target.name()
    );
    for digest in s.listed.iter().chain([&s.cosign, &s.sbom]) {
        copy_all(&format!("{}@{digest}", target.name()), "oci");
    }
}

fn copy_config(env: &Env, to: &[String], referrers: Option<bool>) -> std::path::PathBuf {
    let to: Vec<String> = to.iter().map(|t| format!("{t:?}")).collect();
    let switch = referrers.map_or_else(String::new, |on| format!("referrers = {on}\n"));
    env.release_config(&format!(
        "[[stage]]\nname = \"promote\"\nkind = \"copy-tag\"\nfrom = \"{}:stable\"\nto = [{}]\n{switch}",
        env.repo(),
        to.join(", ")
    ))
}

fn run(env: &Env, config: &std::path::Path) -> Run {
    env.reprise(&[
        "run".into(),
        "--config".into(),
        config.display().to_string(),
        "--json".into(),
    ])
}

#[test]
fn copy_tag_brings_signatures_attestations_and_sboms_to_another_repository_and_registry() {
    let env = Env::new();
    let signed = signed_attested_and_with_an_sbom(&env);
    let second = Registry::start();
    let second_proxy = Proxy::start(second.addr());
    let mirror = format!("{}/mirror/fedora-coreos", env.proxy.host());
    let elsewhere = format!("{}/fedora/fedora-coreos", second_proxy.host());
    let config = copy_config(
        &env,
        &[format!("{mirror}:stable"), format!("{elsewhere}:stable")],
        None,
    );
    env.proxy.clear();
    let first = run(&env, &config).ok();
    validate("report.schema.json", &first.report);
    let stage = &first.report["stages"][0];
    assert_eq!(stage["outcome"], "pushed", "{:#}", first.report);
    let summary: Vec<(String, u64, u64)> = stage["referrers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["repo"].as_str().unwrap().to_owned(),
                r["referrers"].as_u64().unwrap(),
                r["missing"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(summary, [(mirror.clone(), 4, 4), (elsewhere.clone(), 4, 4)]);
    // On one registry the referrers' blobs are mounted; to the other they are streamed.
    let posts = env.proxy.writes();
    assert!(
        posts
            .iter()
            .any(|w| w.method == "POST" && w.path.contains("mount=")),
        "{posts:?}"
    );
    assert!(
        stage["uploaded"]["blobs"].as_u64().unwrap() > 0,
        "{stage:#}"
    );

    assert_referrers_at(
        &Repo::new(&env.registry.host(), "mirror/fedora-coreos"),
        &signed,
    );
    assert_referrers_at(&Repo::new(&second.host(), "fedora/fedora-coreos"), &signed);
    assert_eq!(
        Repo::new(&second.host(), "fedora/fedora-coreos").tag_digest("stable"),
        Some(signed.subject.digest.clone())
    );

    // A rerun finds everything there and writes nothing anywhere.
    env.proxy.clear();
    second_proxy.clear();
    let again = run(&env, &config).ok();
    validate("report.schema.json", &again.report);
    let stage = &again.report["stages"][0];
    assert_eq!(stage["outcome"], "noop", "{:#}", again.report);
    assert!(
        stage["referrers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["missing"] == 0 && r["referrers"] == 4)
    );
    assert_eq!(env.proxy.writes(), vec![]);
    assert_eq!(second_proxy.writes(), vec![]);
}

#[test]
fn copy_tag_with_referrers_false_copies_the_image_alone() {
    let env = Env::new();
    let signed = signed_attested_and_with_an_sbom(&env);
    let mirror = format!("{}/mirror/fedora-coreos", env.proxy.host());
    let config = copy_config(&env, &[format!("{mirror}:stable")], Some(false));
    env.proxy.clear();
    let run = run(&env, &config).ok();
    validate("report.schema.json", &run.report);
    assert!(
        run.report["stages"][0].get("referrers").is_none(),
        "{:#}",
        run.report
    );
    let target = Repo::new(&env.registry.host(), "mirror/fedora-coreos");
    assert_eq!(
        target.tag_digest("stable"),
        Some(signed.subject.digest.clone())
    );
    assert_eq!(target.listed(&signed.subject), None);
    assert_eq!(target.tag_digest(&signed.subject.cosign_tag("sig")), None);
    let requests = env.proxy.requests();
    assert!(
        requests
            .iter()
            .all(|r| !r.path.contains("sha256-") && !r.path.contains("/referrers/")),
        "{requests:?}"
    );
}

#[test]
fn copy_tag_within_one_repository_needs_no_referrer_copy_and_reads_none() {
    let env = Env::new();
    signed_attested_and_with_an_sbom(&env);
    let config = copy_config(&env, &[format!("{}:latest", env.repo())], None);
    env.proxy.clear();
    let run = run(&env, &config).ok();
    assert_eq!(run.report["stages"][0]["outcome"], "pushed");
    let requests = env.proxy.requests();
    assert!(
        requests
            .iter()
            .all(|r| !r.path.contains("sha256-") && !r.path.contains("/referrers/")),
        "the same digest in the same repository has its referrers already: {requests:?}"
    );
}

#[test]
fn a_target_cosign_tag_holding_another_signature_is_never_overwritten() {
    let env = Env::new();
    let signed = signed_attested_and_with_an_sbom(&env);
    // The mirror already holds the image, signed there by someone else.
    let target = Repo::new(&env.registry.host(), "mirror/fedora-coreos");
    let mirror = format!("{}/mirror/fedora-coreos", env.proxy.host());
    let seed = copy_config(&env, &[format!("{mirror}:stable")], Some(false));
    run(&env, &seed).ok();
    // Another cosign-style signature: its identity names the mirror.
    let theirs = target.cosign_signature(&signed.subject);
    assert_ne!(theirs, signed.cosign);
    let config = copy_config(&env, &[format!("{mirror}:stable")], None);
    env.proxy.clear();
    let run = run(&env, &config);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let line = run.stderr.trim_end();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(
        line.contains("refusing to overwrite") && line.contains(&signed.subject.cosign_tag("sig")),
        "{line}"
    );
    assert_eq!(
        env.proxy.writes(),
        vec![],
        "refused while planning, before any write"
    );
    assert_eq!(
        target.tag_digest(&signed.subject.cosign_tag("sig")),
        Some(theirs)
    );
}
