//! What the real release pipelines meet: tags that hold a bare image manifest, lists that must
//! not mix OCI and Docker media types, and archives shaped like the ones coreos-assembler's
//! `ostree container encapsulate` writes. Against a real registry, through the proxy.

mod support;

use serde_json::Value;
use support::env::{Env, skopeo, validate};
use support::fixtures::DEMO_ID;

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// The demo repository straight at the registry, bypassing the proxy's records.
fn direct(env: &Env) -> String {
    format!("{}/fedora/fedora-coreos", env.registry.host())
}

/// Puts the x86_64 image of the demo build at `tag` as a bare image manifest, the way a
/// per-arch push leaves a tag, and checks it kept its digest.
fn bare_x86_64_at(env: &Env, tag: &str) -> String {
    let w = env.arch(DEMO_ID, "x86_64");
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci-archive:{}", w.archive.display()),
        &format!("docker://{}:{tag}", direct(env)),
    ]);
    let digest = env.tag_digest(tag).expect("the tag was written");
    assert_eq!(
        digest, w.manifest_digest,
        "skopeo kept the manifest as it is"
    );
    digest
}

#[test]
fn a_tag_holding_the_bare_image_is_replaced_by_an_index() {
    let env = Env::new();
    let bare = bare_x86_64_at(&env, "stable");
    let digest_file = env.dir().join("digest");
    env.proxy.clear();
    // status shows what the tag holds and that an index replaces it.
    let status = env.reprise(&env.command_args(
        "status",
        &env.repo(),
        &["stable", "40"],
        &["--arch", "x86_64"],
    ));
    assert_eq!(
        status.report["tags"][0]["single_image"]["platform"],
        "linux/amd64"
    );
    assert_eq!(status.report["tags"][0]["action"], "push");
    assert_eq!(env.proxy.writes(), vec![]);
    let run = env
        .push(
            &["stable", "40"],
            &[
                "--arch",
                "x86_64",
                "--write-digest-to-file",
                digest_file.to_str().unwrap(),
            ],
        )
        .ok();
    assert_eq!(run.outcome(), "pushed", "{:#}", run.report);
    validate("report.schema.json", &run.report);
    assert_eq!(run.report["index_source"]["kind"], "built");
    let index = run.index_digest();
    assert_ne!(index, bare);
    let tags = run.report["tags"].as_array().unwrap();
    assert_eq!(tags[0]["before"], bare.as_str());
    assert_eq!(tags[0]["action"], "push");
    assert_eq!(tags[0]["single_image"]["platform"], "linux/amd64");
    assert!(
        run.stderr.contains("single image manifest"),
        "{}",
        run.stderr
    );

    // Every tag ends at one index, which lists the image.
    for tag in ["stable", "40"] {
        assert_eq!(
            env.tag_digest(tag).as_deref(),
            Some(index.as_str()),
            "{tag}"
        );
    }
    let stored: Value = serde_json::from_slice(&env.stored(":stable").unwrap()).unwrap();
    assert_eq!(stored["mediaType"], OCI_INDEX);
    assert_eq!(stored["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(stored["manifests"][0]["digest"], bare.as_str());
    // The record and the digest file name that index, never the bare manifest.
    let rec = env.record(env.arch(DEMO_ID, "x86_64"));
    assert_eq!(rec["manifest-list-digest"], index.as_str());
    assert_eq!(rec["digest"], bare.as_str());
    assert_eq!(std::fs::read_to_string(&digest_file).unwrap(), index);

    env.proxy.clear();
    let again = env.push(&["stable", "40"], &["--arch", "x86_64"]).ok();
    assert_eq!(again.outcome(), "noop");
    assert_eq!(env.proxy.writes(), vec![]);
}

#[test]
fn a_bare_image_at_every_tag_is_never_reused_even_when_the_record_names_it() {
    let env = Env::new();
    let bare = bare_x86_64_at(&env, "stable");
    // What the bug left behind: a record claiming the bare manifest is the list.
    let w = env.arch(DEMO_ID, "x86_64");
    let mut meta: Value = serde_json::from_slice(&std::fs::read(&w.meta).unwrap()).unwrap();
    meta[support::env::KEY] = serde_json::json!({
        "image": env.repo(),
        "digest": bare,
        "manifest-list-digest": bare,
        "tags": ["stable"],
    });
    std::fs::write(&w.meta, serde_json::to_vec_pretty(&meta).unwrap()).unwrap();
    env.proxy.clear();
    let run = env.push(&["stable"], &["--arch", "x86_64"]).ok();
    assert_eq!(run.outcome(), "pushed");
    let index = run.index_digest();
    assert_ne!(index, bare);
    assert_eq!(env.record(w)["manifest-list-digest"], index.as_str());
    let stored: Value = serde_json::from_slice(&env.stored(":stable").unwrap()).unwrap();
    assert_eq!(stored["mediaType"], OCI_INDEX);
}
