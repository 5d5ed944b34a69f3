//! The work a push does, counted rather than timed: bytes read from archives, blobs and
//! bytes uploaded, blobs mounted. Speed itself is measured by bench/run.sh.

use crate::support::env::Env;
use reprise_fixtures::{BuildSpec, DEMO_ID};

const NEXT_ID: &str = "40.20261102.1.0";
/// Big enough that reading an archive whole could not hide among headers and JSON.
const LAYER: u64 = 4 << 20;

fn build(id: &str) -> BuildSpec {
    let mut spec = BuildSpec::demo_with_id(id);
    // Same version label as the demo build, so unchanged arches keep the same manifests.
    spec.version = DEMO_ID.to_owned();
    for a in &mut spec.arches {
        a.layer_size = LAYER;
    }
    spec
}

#[test]
fn a_noop_rerun_reads_no_archive_whole() {
    let env = Env::with_builds(&[build(DEMO_ID)]);
    env.push(&["stable", "40"], &[]).ok();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let req = env.push_request(&["--tag", "stable", "--tag", "40"]);
    let prepared = rt.block_on(reprise::push::prepare(&req)).unwrap();
    let counters: Vec<_> = prepared
        .images
        .iter()
        .map(|img| match &img.origin {
            reprise::apply::Origin::Local { archive, .. } => archive.read_counter(),
            reprise::apply::Origin::Registry { .. } => unreachable!(),
        })
        .collect();
    let report = rt.block_on(prepared.apply()).unwrap();
    assert_eq!(report.outcome, reprise::plan::Outcome::Noop);
    for (counter, w) in counters.iter().zip(&env.written) {
        let read = counter.load(std::sync::atomic::Ordering::Relaxed);
        // Tar headers, index.json, the manifest and the config: a few KiB of a 4 MiB archive.
        assert!(
            read < 64 << 10 && read * 50 < w.archive_size,
            "{}: read {read} of {} bytes",
            w.arch,
            w.archive_size
        );
    }
}

#[test]
fn a_push_with_one_changed_arch_uploads_only_that_archs_new_blobs() {
    let mut env = Env::with_builds(&[build(DEMO_ID)]);
    env.push(&["stable"], &[]).ok();
    let mut next = build(NEXT_ID);
    next.arch_mut("x86_64").salt = "changed".to_owned();
    let written = env.add_build(&next);
    env.proxy.clear();
    let run = env.push(&["stable"], &[]).ok();
    let x86 = written.iter().find(|w| w.arch == "x86_64").unwrap();
    let old = env.arch(DEMO_ID, "x86_64");
    // Only x86_64's config and own layer are new; everything else is found by HEAD.
    assert_eq!(run.report["uploaded"]["blobs"], 2, "{:#}", run.report);
    let uploads: Vec<String> = env
        .proxy
        .writes()
        .iter()
        .filter(|w| w.method == "PUT" && w.path.contains("/blobs/uploads/"))
        .map(|w| w.path.clone())
        .collect();
    assert_eq!(uploads.len(), 2, "{uploads:?}");
    let layer_hex = x86.layer_digests[1].trim_start_matches("sha256:");
    assert!(uploads.iter().any(|p| p.contains(layer_hex)), "{uploads:?}");
    assert_ne!(x86.manifest_digest, old.manifest_digest);
    // The other arches did not change at all.
    for arch in ["aarch64", "ppc64le", "s390x"] {
        let new = written.iter().find(|w| w.arch == arch).unwrap();
        assert_eq!(new.manifest_digest, env.arch(DEMO_ID, arch).manifest_digest);
    }
    let bytes = run.report["uploaded"]["bytes"].as_u64().unwrap();
    let layer_bytes = LAYER; // payload; the gzip layer is a little bigger
    assert!(
        bytes > layer_bytes && bytes < layer_bytes + (64 << 10),
        "{bytes}"
    );
}

#[test]
fn blobs_in_another_repository_of_the_registry_are_mounted_not_uploaded() {
    let env = Env::with_builds(&[build(DEMO_ID)]);
    env.push(&["stable"], &[]).ok();
    env.proxy.clear();
    // The records name the first repository, so its blobs are mounted from there.
    let mirror = env.repo_named("mirror/fedora-coreos");
    let run = env.push_to(&mirror, &["stable"], &[]).ok();
    assert_eq!(run.report["uploaded"]["blobs"], 0, "{:#}", run.report);
    assert_eq!(run.report["uploaded"]["bytes"], 0);
    // 4 configs, 4 arch layers and the shared base layer.
    assert_eq!(run.report["uploaded"]["mounted"], 9);
    let writes = env.proxy.writes();
    assert!(
        writes
            .iter()
            .filter(|w| w.method == "POST")
            .all(|w| w.path.contains("mount=")),
        "{writes:?}"
    );

    // --mount-from does the same where no record names the other repository: there the
    // image went with --image, which records nothing.
    let fresh = Env::with_builds(&[build(DEMO_ID)]);
    let staging = fresh.repo_named("staging/fedora-coreos");
    let archive = fresh.arch(DEMO_ID, "x86_64").archive.display().to_string();
    let pushed = fresh.reprise(&[
        "push-container-manifest".into(),
        "--repo".into(),
        staging.clone(),
        "--tag".into(),
        "x86_64".into(),
        "--image".into(),
        format!("oci-archive:{archive}"),
    ]);
    assert_eq!(pushed.code, 0, "{}", pushed.stderr);
    let explicit = fresh
        .push(&["stable"], &["--arch", "x86_64", "--mount-from", &staging])
        .ok();
    // x86_64's config, its own layer and the base layer.
    assert_eq!(
        explicit.report["uploaded"]["mounted"], 3,
        "{:#}",
        explicit.report
    );
    assert_eq!(explicit.report["uploaded"]["blobs"], 0);
}
