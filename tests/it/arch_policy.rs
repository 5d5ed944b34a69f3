//! Never drop an arch by accident: the missing-arch policy, remote index shapes, `--v2s2`,
//! `--image` sources and a second repository, against a real registry.

use crate::support::check::{expected_platforms, oci_arch, platforms_of, validate};
use crate::support::env::Env;
use crate::support::registry::Registry;
use crate::support::skopeo::{copy_all, inspect_json, skopeo};
use reprise_fixtures::{BuildSpec, DEMO_ID};

const NEXT_ID: &str = "40.20261102.1.0";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// `stable` holds the 4-arch demo build; the latest build is a newer one without aarch64.
fn four_published_then_a_build_without_aarch64() -> (Env, String) {
    let mut env = Env::new();
    let first = env.push(&["stable"], &[]).ok().index_digest();
    let mut next = BuildSpec::demo_with_id(NEXT_ID);
    next.arches.retain(|a| a.arch != "aarch64");
    env.add_build(&next);
    env.proxy.clear();
    (env, first)
}

#[test]
fn missing_arch_is_refused_by_default_and_nothing_is_written() {
    let (env, first) = four_published_then_a_build_without_aarch64();
    let metas = env.metas();
    let run = env.push(&["stable"], &[]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(run.outcome(), "refused");
    validate("report.schema.json", &run.report);
    let line = run.stderr.lines().find(|l| l.contains("refusing")).unwrap();
    assert!(
        line.contains("aarch64") && line.contains("stable"),
        "{line}"
    );
    assert_eq!(env.proxy.writes(), vec![]);
    assert_eq!(env.metas(), metas);
    assert_eq!(env.tag_digest("stable"), Some(first));
}

#[test]
fn keep_carries_the_old_aarch64_into_a_hybrid_index() {
    let (env, _) = four_published_then_a_build_without_aarch64();
    let old_aarch64 = env.arch(DEMO_ID, "aarch64").clone();
    let old_meta = std::fs::read(&old_aarch64.meta).unwrap();
    let run = env.push(&["stable"], &["--missing-arch", "keep"]).ok();
    assert_eq!(run.outcome(), "pushed");
    validate("report.schema.json", &run.report);
    let carried = run.report["carried"].as_array().unwrap();
    assert_eq!(carried.len(), 1, "{carried:?}");
    assert_eq!(carried[0]["digest"], old_aarch64.manifest_digest.as_str());
    assert_eq!(carried[0]["platform"], "linux/arm64");

    let index = inspect_json(&format!("{}:stable", env.repo()));
    let mut want = expected_platforms(&env.of_build(NEXT_ID));
    want.push(("arm64".into(), old_aarch64.manifest_digest.clone()));
    want.sort();
    assert_eq!(platforms_of(&index), want);
    // The carried arch's own record belongs to the old build and is not touched.
    assert_eq!(std::fs::read(&old_aarch64.meta).unwrap(), old_meta);
    for w in env.of_build(NEXT_ID) {
        assert_eq!(env.record(&w)["manifest-list-digest"], run.index_digest());
    }
    env.proxy.clear();
    let again = env.push(&["stable"], &["--missing-arch", "keep"]).ok();
    assert_eq!(again.outcome(), "noop");
    assert_eq!(env.proxy.writes(), vec![]);
}

#[test]
fn drop_publishes_exactly_this_builds_arches() {
    let (env, _) = four_published_then_a_build_without_aarch64();
    let run = env.push(&["stable"], &["--missing-arch", "drop"]).ok();
    validate("report.schema.json", &run.report);
    let dropped = run.report["dropped"].as_array().unwrap();
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert_eq!(dropped[0]["platform"], "linux/arm64");
    let index = inspect_json(&format!("{}:stable", env.repo()));
    assert_eq!(
        platforms_of(&index),
        expected_platforms(&env.of_build(NEXT_ID))
    );
}

#[test]
fn a_tag_holding_one_image_weighs_its_platform_and_is_replaced_by_the_index() {
    let env = Env::new();
    let s390x = env.arch(DEMO_ID, "s390x");
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci-archive:{}", s390x.archive.display()),
        &format!("docker://{}:stable", env.direct_repo()),
    ]);
    let run = env.push(
        &["stable"],
        &["--arch", "x86_64", "--arch", "aarch64", "--arch", "ppc64le"],
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(run.report["refusal"]["missing"][0]["arch"], "s390x");
    assert_eq!(env.proxy.writes(), vec![]);
    // With every arch, the single image is replaced by the full index.
    let run = env.push(&["stable"], &[]).ok();
    assert_eq!(
        run.report["tags"][0]["reason"],
        "holds a single image manifest, not an index"
    );
    assert_eq!(
        run.report["tags"][0]["single_image"]["platform"],
        "linux/s390x"
    );
    validate("report.schema.json", &run.report);
    let index = inspect_json(&format!("{}:stable", env.repo()));
    assert_eq!(platforms_of(&index), expected_platforms(&env.written));
}

#[test]
fn v2s2_publishes_a_docker_manifest_list_and_reruns_as_a_noop() {
    let env = Env::new();
    let run = env.push(&["stable"], &["--v2s2"]).ok();
    assert_eq!(run.outcome(), "pushed");
    validate("report.schema.json", &run.report);
    let index = inspect_json(&format!("{}:stable", env.repo()));
    assert_eq!(index["mediaType"], DOCKER_LIST);
    for entry in index["manifests"].as_array().unwrap() {
        assert_eq!(entry["mediaType"], DOCKER_MANIFEST);
    }
    // Each arch's record holds the Docker manifest's digest, which is what the list names.
    let listed: Vec<(String, String)> = platforms_of(&index);
    for w in &env.written {
        let rec = env.record(w);
        assert_ne!(rec["digest"], w.manifest_digest.as_str(), "converted");
        let pair = (
            oci_arch(&w.arch).to_owned(),
            rec["digest"].as_str().unwrap().to_owned(),
        );
        assert!(listed.contains(&pair), "{pair:?} not in {listed:?}");
        let manifest = inspect_json(&format!("{}@{}", env.repo(), pair.1));
        assert_eq!(manifest["mediaType"], DOCKER_MANIFEST);
        assert_eq!(
            manifest["config"]["mediaType"],
            "application/vnd.docker.container.image.v1+json"
        );
        assert_eq!(manifest["config"]["digest"], w.config_digest.as_str());
        assert_eq!(
            manifest["layers"][1]["mediaType"],
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
    }
    env.proxy.clear();
    assert_eq!(env.push(&["stable"], &["--v2s2"]).ok().outcome(), "noop");
    assert_eq!(env.proxy.writes(), vec![]);

    copy_all(&format!("{}:stable", env.repo()), "dir");
}

#[test]
fn the_same_mapping_as_a_docker_list_is_up_to_date_without_v2s2() {
    let env = Env::new();
    env.push(&["stable"], &[]).ok();
    // Another tool's Docker list naming the same OCI manifests.
    let index = inspect_json(&format!("{}:stable", env.repo()));
    let docker = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_LIST,
        "manifests": index["manifests"],
    });
    env.put_manifest("stable", &serde_json::to_vec(&docker).unwrap(), DOCKER_LIST);
    env.proxy.clear();
    let run = env.push(&["stable"], &[]).ok();
    assert_eq!(run.report["tags"][0]["action"], "unchanged");
    assert_eq!(env.proxy.writes(), vec![]);
}

/// `--image` args for the demo build: x86_64 and aarch64 from `src_repo` in a registry (put
/// there by skopeo), ppc64le as an oci-archive, s390x as an oci directory.
fn image_args(env: &Env, src_host_repo: &str, proxied_src: &str) -> Vec<String> {
    for arch in ["x86_64", "aarch64"] {
        let w = env.arch(DEMO_ID, arch);
        skopeo(&[
            "copy",
            "--dest-tls-verify=false",
            &format!("oci-archive:{}", w.archive.display()),
            &format!("docker://{src_host_repo}:{arch}"),
        ]);
    }
    let layout = env.dir().join("s390x-layout");
    skopeo(&[
        "copy",
        &format!(
            "oci-archive:{}",
            env.arch(DEMO_ID, "s390x").archive.display()
        ),
        &format!("oci:{}:latest", layout.display()),
    ]);
    vec![
        "--image".into(),
        format!("docker://{proxied_src}:x86_64"),
        "--image".into(),
        format!("docker://{proxied_src}:aarch64"),
        "--image".into(),
        format!(
            "oci-archive:{}",
            env.arch(DEMO_ID, "ppc64le").archive.display()
        ),
        "--image".into(),
        format!("oci:{}:latest", layout.display()),
    ]
}

#[test]
fn images_from_archives_layouts_and_the_same_registry_are_published_and_mounted() {
    let env = Env::new();
    let metas = env.metas();
    let images = image_args(
        &env,
        &env.direct_named("staging/fcos"),
        &env.repo_named("staging/fcos"),
    );
    env.proxy.clear();
    let run = env.push_images(&images).ok();
    assert_eq!(run.outcome(), "pushed");
    validate("report.schema.json", &run.report);
    // x86_64's and aarch64's configs and own layers, and the base layer all arches share
    // (first needed by x86_64), come by mount; ppc64le's and s390x's config and own layer
    // are uploaded from disk; the base layer is then found present three times.
    assert_eq!(run.report["uploaded"]["mounted"], 5, "{:#}", run.report);
    assert_eq!(run.report["uploaded"]["blobs"], 4, "{:#}", run.report);
    assert_eq!(run.report["skipped_blobs"], 3, "{:#}", run.report);
    assert!(
        env.proxy
            .writes()
            .iter()
            .any(|w| w.method == "POST" && w.path.contains("mount=")),
        "a cross-repository mount was asked for"
    );
    let arches = run.report["arches"].as_array().unwrap();
    assert!(arches.iter().all(|a| a["record"] == "none"));
    let index = inspect_json(&format!("{}:stable", env.repo()));
    assert_eq!(platforms_of(&index), expected_platforms(&env.written));
    assert_eq!(env.metas(), metas, "--image never touches meta.json");

    env.proxy.clear();
    assert_eq!(env.push_images(&images).ok().outcome(), "noop");
    assert_eq!(env.proxy.writes(), vec![]);
}

#[test]
fn images_from_another_registry_are_copied_and_verified() {
    let env = Env::new();
    let other = Registry::start();
    let src = format!("{}/elsewhere/fcos", other.host());
    let images = image_args(&env, &src, &src);
    let run = env.push_images(&images).ok();
    // Nothing to mount from across registries: every blob is streamed, the shared base
    // layer once (3 for x86_64, then 2 each for the other arches).
    assert_eq!(run.report["uploaded"]["mounted"], 0);
    assert_eq!(run.report["uploaded"]["blobs"], 9, "{:#}", run.report);
    let index = inspect_json(&format!("{}:stable", env.repo()));
    assert_eq!(platforms_of(&index), expected_platforms(&env.written));
    // The copied images are complete: an independent client can pull every blob.
    copy_all(&format!("{}:stable", env.repo()), "oci");
}

#[test]
fn image_and_artifact_are_exclusive_and_a_bad_source_is_a_usage_error() {
    let env = Env::new();
    let run = env.push(&["stable"], &["--image", "oci:/nowhere"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let run = env.reprise(&[
        "push-container-manifest".into(),
        "--repo".into(),
        env.repo(),
        "--tag".into(),
        "stable".into(),
        "--image".into(),
        "quay.io/a/b:1".into(),
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("oci-archive:PATH"), "{}", run.stderr);
    assert_eq!(env.proxy.requests(), vec![]);
}

#[test]
fn two_images_of_one_arch_are_refused_before_any_request() {
    let env = Env::new();
    let archive = env.arch(DEMO_ID, "x86_64").archive.display().to_string();
    let run = env.push_images(&[
        "--image".into(),
        format!("oci-archive:{archive}"),
        "--image".into(),
        format!("oci-archive:{archive}"),
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("both x86_64"), "{}", run.stderr);
    assert_eq!(env.proxy.requests(), vec![]);
}

#[test]
fn a_second_repository_is_recorded_in_additional_images_once() {
    let env = Env::new();
    let mirror = env.repo_named("mirror/fedora-coreos");
    env.push(&["stable"], &[]).ok();
    let run = env.push_to(&mirror, &["stable"], &[]).ok();
    assert_eq!(run.outcome(), "pushed");
    for w in &env.written {
        crate::support::cosa::assert_readable(
            &serde_json::from_slice(&std::fs::read(&w.meta).unwrap()).unwrap(),
        );
        let rec = env.record(w);
        assert_eq!(rec["image"], env.repo());
        let extra = rec["additional-images"].as_array().unwrap();
        assert_eq!(extra.len(), 1);
        assert_eq!(extra[0]["image"], mirror.as_str());
        assert_eq!(extra[0]["digest"], w.manifest_digest.as_str());
    }
    let metas = env.metas();
    env.proxy.clear();
    assert_eq!(env.push(&["stable"], &[]).ok().outcome(), "noop");
    assert_eq!(
        env.push_to(&mirror, &["stable"], &[]).ok().outcome(),
        "noop"
    );
    assert_eq!(env.proxy.writes(), vec![]);
    assert_eq!(env.metas(), metas);
}
