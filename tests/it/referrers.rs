//! Signatures and attestations around a push, against a real registry (Docker Distribution
//! 2.8, which has no referrers API: the tag schema is the path taken). The referrers are made
//! by other clients (`support::referrers`): the oras Python SDK, and manifests built here
//! from the OCI specs.

use crate::support::check::validate;
use crate::support::env::{DEMO_REPO, Env};
use crate::support::referrers::{IN_TOTO, Made, Repo, Subject};
use crate::support::run::Run;
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
