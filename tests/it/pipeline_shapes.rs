//! What the real release pipelines meet: tags that hold a bare image manifest, lists that must
//! not mix OCI and Docker media types, and archives shaped like the ones coreos-assembler's
//! `ostree container encapsulate` writes. Against a real registry, through the proxy.

use crate::support::check::validate;
use crate::support::env::Env;
use crate::support::skopeo::{copy_all, inspect_json, skopeo};
use reprise_fixtures::{self as fixtures, DEMO_ID};
use serde_json::Value;

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Puts the x86_64 image of the demo build at `tag` as a bare image manifest, the way a
/// per-arch push leaves a tag, and checks it kept its digest.
fn bare_x86_64_at(env: &Env, tag: &str) -> String {
    let w = env.arch(DEMO_ID, "x86_64");
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci-archive:{}", w.archive.display()),
        &format!("docker://{}:{tag}", env.direct_repo()),
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
    meta[crate::support::env::KEY] = serde_json::json!({
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

const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const NEXT_ID: &str = "40.20261102.1.0";

/// Every media type a list and the manifests it names declare, read with skopeo.
fn media_types_under(env: &Env, reference: &str) -> Vec<String> {
    let list = inspect_json(reference);
    let mut out = vec![list["mediaType"].as_str().unwrap().to_owned()];
    for entry in list["manifests"].as_array().unwrap() {
        out.push(entry["mediaType"].as_str().unwrap().to_owned());
        let child = inspect_json(&format!(
            "{}@{}",
            env.repo(),
            entry["digest"].as_str().unwrap()
        ));
        assert_eq!(
            child["mediaType"], entry["mediaType"],
            "the entry says what the child is"
        );
        out.push(child["mediaType"].as_str().unwrap().to_owned());
        out.push(child["config"]["mediaType"].as_str().unwrap().to_owned());
        for layer in child["layers"].as_array().unwrap() {
            out.push(layer["mediaType"].as_str().unwrap().to_owned());
        }
    }
    out
}

#[test]
fn keep_under_v2s2_carries_an_oci_arch_as_docker_schema_2() {
    let mut env = Env::new();
    // stable holds the OCI index of the four-arch demo build.
    env.push(&["stable"], &[]).ok();
    let old_aarch64 = env.arch(DEMO_ID, "aarch64").clone();
    let mut next = fixtures::BuildSpec::demo_with_id(NEXT_ID);
    next.arches.retain(|a| a.arch != "aarch64");
    env.add_build(&next);
    env.proxy.clear();

    let args = ["--v2s2", "--missing-arch", "keep"];
    let run = env.push(&["stable"], &args).ok();
    assert_eq!(run.outcome(), "pushed");
    validate("report.schema.json", &run.report);
    let carried = &run.report["carried"][0];
    assert_eq!(carried["platform"], "linux/arm64");
    assert_eq!(
        carried["converted_from"],
        old_aarch64.manifest_digest.as_str()
    );
    let converted = carried["digest"].as_str().unwrap().to_owned();
    assert_ne!(converted, old_aarch64.manifest_digest);

    let reference = format!("{}:stable", env.repo());
    let types = media_types_under(&env, &reference);
    assert_eq!(types[0], DOCKER_LIST);
    for mt in &types {
        assert!(
            mt.starts_with("application/vnd.docker."),
            "{mt} in {types:?}"
        );
    }
    // The converted aarch64 manifest names the same blobs as the OCI one it replaces.
    let before = inspect_json(&format!("{}@{}", env.repo(), old_aarch64.manifest_digest));
    let after = inspect_json(&format!("{}@{converted}", env.repo()));
    assert_eq!(after["mediaType"], DOCKER_MANIFEST);
    assert_eq!(after["config"]["digest"], before["config"]["digest"]);
    let digests = |m: &Value| -> Vec<Value> {
        m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].clone())
            .collect()
    };
    assert_eq!(digests(&after), digests(&before));
    // Carrying moved no blob: the aarch64 blobs were already there.
    assert!(
        !env.proxy
            .writes()
            .iter()
            .any(|w| w.path.contains(&old_aarch64.layer_digests[1])),
        "the carried arch's own layer was not uploaded again"
    );
    copy_all(&reference, "dir");
    for w in env.of_build(NEXT_ID) {
        assert_eq!(env.record(&w)["manifest-list-digest"], run.index_digest());
    }

    env.proxy.clear();
    let again = env.push(&["stable"], &args).ok();
    assert_eq!(again.outcome(), "noop");
    assert_eq!(env.proxy.writes(), vec![]);
}

#[test]
fn a_docker_image_beside_oci_archives_is_published_as_oci() {
    let env = Env::new();
    let staging = env.direct_named("staging/fcos");
    // A Docker schema 2 image, as an older pipeline or `podman push --format v2s2` leaves it.
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--format",
        "v2s2",
        &format!(
            "oci-archive:{}",
            env.arch(DEMO_ID, "x86_64").archive.display()
        ),
        &format!("docker://{staging}:x86_64"),
    ]);
    let source = inspect_json(&format!("{staging}:x86_64"));
    assert_eq!(source["mediaType"], DOCKER_MANIFEST);
    let mut images: Vec<String> = vec![
        "--image".into(),
        format!("docker://{}:x86_64", env.repo_named("staging/fcos")),
    ];
    for arch in ["aarch64", "ppc64le", "s390x"] {
        images.push("--image".into());
        images.push(format!(
            "oci-archive:{}",
            env.arch(DEMO_ID, arch).archive.display()
        ));
    }
    env.proxy.clear();
    let run = env.push_images(&images).ok();
    assert_eq!(run.outcome(), "pushed");
    validate("report.schema.json", &run.report);
    let reference = format!("{}:stable", env.repo());
    let types = media_types_under(&env, &reference);
    assert_eq!(types[0], OCI_INDEX);
    for mt in &types {
        assert!(mt.starts_with("application/vnd.oci."), "{mt} in {types:?}");
    }
    let list = inspect_json(&reference);
    let x86 = list["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == "amd64")
        .unwrap();
    let converted = inspect_json(&format!(
        "{}@{}",
        env.repo(),
        x86["digest"].as_str().unwrap()
    ));
    assert_eq!(converted["mediaType"], OCI_MANIFEST);
    assert_eq!(converted["config"]["digest"], source["config"]["digest"]);
    assert_eq!(converted["layers"].as_array().unwrap().len(), 2);
    copy_all(&reference, "oci");

    env.proxy.clear();
    assert_eq!(env.push_images(&images).ok().outcome(), "noop");
    assert_eq!(env.proxy.writes(), vec![]);
}

const ENCAPSULATED_ID: &str = "41.20261201.1.0";

/// A build shaped like coreos-assembler's ostree archives: 64 gzip layers per arch, the
/// ostree labels, blobs before index.json in the tar, directory entries included.
fn encapsulated() -> Env {
    Env::with_builds(&[fixtures::BuildSpec::encapsulated(ENCAPSULATED_ID)])
}

#[test]
fn a_64_layer_build_is_pushed_whole_and_reads_back_with_skopeo() {
    let env = encapsulated();
    let run = env.push(&["stable"], &[]).ok();
    assert_eq!(run.outcome(), "pushed");
    validate("report.schema.json", &run.report);
    // The shared base layer once, then each arch's config, 62 chunks and arch layer.
    assert_eq!(
        run.report["uploaded"]["blobs"],
        1 + 4 * 64,
        "{:#}",
        run.report
    );
    let index = inspect_json(&format!("{}:stable", env.repo()));
    assert_eq!(
        crate::support::check::platforms_of(&index),
        crate::support::check::expected_platforms(&env.written)
    );
    for w in &env.written {
        let manifest = inspect_json(&format!("{}@{}", env.repo(), w.manifest_digest));
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 64);
        let digests: Vec<&str> = layers
            .iter()
            .map(|l| l["digest"].as_str().unwrap())
            .collect();
        assert_eq!(
            digests, w.layer_digests,
            "{}: the archive's manifest as it is",
            w.arch
        );
        assert_eq!(
            layers[1]["annotations"]["ostree.components"], "reprise-chunk-01",
            "annotations kept"
        );
        assert_eq!(env.record(w)["manifest-list-digest"], run.index_digest());
    }
    copy_all(&format!("{}:stable", env.repo()), "oci");
}

#[test]
fn a_64_layer_build_reruns_as_a_noop_and_as_a_record_only_run() {
    let env = encapsulated();
    let unrecorded = env.metas();
    let first = env.push(&["stable", "41"], &[]).ok();
    let recorded = env.metas();
    assert_ne!(recorded, unrecorded);

    env.proxy.clear();
    let noop = env.push(&["stable", "41"], &[]).ok();
    assert_eq!(noop.outcome(), "noop");
    assert_eq!(env.proxy.writes(), vec![]);
    assert_eq!(env.metas(), recorded);

    // The registry is right but the records are gone (a pipeline that lost its workspace).
    for (w, bytes) in env.written.iter().zip(&unrecorded) {
        std::fs::write(&w.meta, bytes).unwrap();
    }
    env.proxy.clear();
    let rerun = env.push(&["stable", "41"], &[]).ok();
    assert_eq!(rerun.outcome(), "recorded");
    assert_eq!(env.proxy.writes(), vec![], "only meta.json is written");
    assert_eq!(rerun.report["uploaded"]["blobs"], 0);
    for w in &env.written {
        let rec = env.record(w);
        assert_eq!(rec["manifest-list-digest"], first.index_digest());
        assert_eq!(rec["digest"], w.manifest_digest.as_str());
    }
    assert_eq!(rerun.index_digest(), first.index_digest());
}

#[test]
fn plain_tar_layers_push_and_convert_to_docker_schema_2() {
    let mut build = fixtures::BuildSpec::demo();
    build.gzip = false;
    build.layers = 4;
    let env = Env::with_builds(&[build]);
    let run = env.push(&["stable"], &["--v2s2"]).ok();
    assert_eq!(run.outcome(), "pushed");
    let reference = format!("{}:stable", env.repo());
    for mt in media_types_under(&env, &reference) {
        assert!(
            mt == DOCKER_LIST
                || mt == DOCKER_MANIFEST
                || mt == "application/vnd.docker.container.image.v1+json"
                || mt == "application/vnd.docker.image.rootfs.diff.tar",
            "{mt}"
        );
    }
    copy_all(&reference, "dir");
    env.proxy.clear();
    assert_eq!(env.push(&["stable"], &["--v2s2"]).ok().outcome(), "noop");
    assert_eq!(env.proxy.writes(), vec![]);
}
