//! fedora-coreos-pipeline's calls of `cosa push-container-manifest`, run with reprise as
//! written, against a real registry that wants a password, through the recording proxy:
//!
//! - the release job's "Push Containers" stage (jobs/release.Jenkinsfile): for each artifact
//!   the x86_64 build has, in parallel, one push per configured repository, with
//!   `--auth=FILE --repo= --tag= --artifact= --metajsonname= --build= [--v2s2]`;
//! - the "Push Manifest" stage of jobs/build-cosa.Jenkinsfile and
//!   jobs/build-fcos-buildroot.Jenkinsfile: per-arch images from a staging repository,
//!   `--image=docker://STAGING:ARCH-COMMIT`;
//! - utils.groovy's `push_manifest`: `--image=docker://REPO@DIGEST` with
//!   `--write-digest-to-file`, credentials from `REGISTRY_AUTH_FILE`;
//! - an artifact built for x86_64 only (kubevirt): skipped arches, `--arch`, the arch policy,
//!   and the same rule in `status`, `inspect --meta` and `reprise run`.
//!
//! Every record written is checked against coreos-assembler's rules (`support::cosa`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::support::check::{expected_platforms, oci_arch, platforms_of, read_json, validate};
use crate::support::cosa;
use crate::support::env::Env;
use crate::support::proxy::{Fault, Gate, Recorded};
use crate::support::registry::Options;
use crate::support::run::{Run, output_ok};
use base64::Engine as _;
use reprise_fixtures::{self as fixtures, BuildSpec, WrittenArch};
use serde_json::Value;

const USER: &str = "releng";
const PASSWORD: &str = "pipeline-Pa55word-for-tests";
const VERSION: &str = fixtures::DEMO_ID;
const STREAM: &str = "stable";
/// The short commit the build jobs tag staging images with.
const COMMIT: &str = "6864566";

const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A cosa working directory with the demo build, a registry behind htpasswd with the proxy in
/// front, and an auth file that holds the password (for the proxy, which reprise talks to,
/// and the registry itself, which skopeo reads directly).
struct World {
    env: Env,
    authfile: PathBuf,
}

impl World {
    fn new() -> World {
        let env = Env::with_registry(
            &Options {
                htpasswd: Some((USER.into(), PASSWORD.into())),
                ..Options::default()
            },
            &[BuildSpec::demo()],
        );
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
        let body = format!(
            r#"{{"auths":{{"{}":{{"auth":"{auth}"}},"{}":{{"auth":"{auth}"}}}}}}"#,
            env.proxy.host(),
            env.registry.host()
        );
        let authfile = env.dir().join("registry-secret.json");
        std::fs::write(&authfile, body).unwrap();
        World { env, authfile }
    }

    /// `path` of the registry, as reprise addresses it (through the proxy).
    fn repo(&self, path: &str) -> String {
        self.env.repo_named(path)
    }

    /// `path` of the registry, addressed directly (setup and independent reads).
    fn direct(&self, path: &str) -> String {
        self.env.direct_named(path)
    }

    /// Adds `artifact` to the demo build for `arches`: an archive of its own in each arch
    /// directory and an `images.<artifact>` entry in that arch's meta.json, as cosa leaves an
    /// artifact built for some arches only.
    fn add_artifact(&self, artifact: &str, arches: &[&str]) -> Vec<WrittenArch> {
        let scratch = tempfile::tempdir().unwrap();
        let spec = BuildSpec {
            name: format!("{}-{artifact}", fixtures::DEMO_NAME),
            artifact: artifact.to_owned(),
            arches: arches.iter().map(|a| fixtures::ArchSpec::new(a)).collect(),
            ..BuildSpec::demo()
        };
        let written = fixtures::write_tree(scratch.path(), &[spec]).unwrap();
        written
            .into_iter()
            .map(|mut w| {
                let dest_dir = self.env.arch(VERSION, &w.arch).meta.parent().unwrap();
                let dest = dest_dir.join(w.archive.file_name().unwrap());
                std::fs::copy(&w.archive, &dest).unwrap();
                let scratch_meta = read_json(&w.meta);
                let entry = scratch_meta["images"][artifact].clone();
                let meta_path = dest_dir.join("meta.json");
                let mut meta = read_json(&meta_path);
                meta["images"][artifact] = entry;
                write_cosa_json(&meta_path, &meta);
                w.archive = dest;
                w.meta = meta_path;
                w
            })
            .collect()
    }

    fn meta(&self, arch: &str) -> Value {
        read_json(&self.env.arch(VERSION, arch).meta)
    }

    /// skopeo, authenticated with the world's auth file; insists it succeeds.
    fn skopeo(&self, args: &[&str]) -> Output {
        output_ok(
            Command::new("skopeo")
                .args(args)
                .env("REGISTRY_AUTH_FILE", &self.authfile),
        )
    }

    /// What `reference` (path:tag or path@digest) holds, read directly: (digest, JSON).
    fn stored(&self, reference: &str) -> (String, Value) {
        let out = self.skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{}", self.direct(reference)),
        ]);
        let json = serde_json::from_slice(&out.stdout).expect("a manifest is JSON");
        (fixtures::sha256_digest(&out.stdout), json)
    }

    /// Copies a local archive to `path:tag` of the registry (directly), as a build job's
    /// per-arch push does; returns the manifest digest the registry stored.
    fn stage(&self, archive: &Path, reference: &str) -> String {
        let digestfile = self.env.dir().join("staged.digest");
        self.skopeo(&[
            "copy",
            "--dest-tls-verify=false",
            "--digestfile",
            &digestfile.display().to_string(),
            &format!("oci-archive:{}", archive.display()),
            &format!("docker://{}", self.direct(reference)),
        ]);
        std::fs::read_to_string(digestfile)
            .unwrap()
            .trim()
            .to_owned()
    }

    /// Every blob and manifest the tag's index names can be copied out by skopeo.
    fn copy_all_out(&self, reference: &str) {
        let dest = tempfile::tempdir().unwrap();
        self.skopeo(&[
            "copy",
            "--all",
            "--src-tls-verify=false",
            &format!("docker://{}", self.direct(reference)),
            &format!("dir:{}", dest.path().join("copy").display()),
        ]);
    }
}

/// As cosa writes meta.json: 4-space indentation, no trailing newline.
fn write_cosa_json(path: &Path, value: &Value) {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    serde::Serialize::serialize(value, &mut ser).unwrap();
    std::fs::write(path, out).unwrap();
}

fn args(words: &[&str]) -> Vec<String> {
    words.iter().map(|s| (*s).to_owned()).collect()
}

/// Requests that moved blob bytes (upload sessions' PATCH, and PUTs that end an upload).
fn blob_uploads(writes: &[Recorded]) -> Vec<&Recorded> {
    writes
        .iter()
        .filter(|r| r.method == "PATCH" || (r.method == "PUT" && r.path.contains("/blobs/")))
        .collect()
}

// ---------------------------------------------------------------------------------------
// jobs/release.Jenkinsfile, stage "Push Containers"

/// One entry of the pipeline config's `registry_repos.<name>` list.
struct RepoConfig {
    path: &'static str,
    tags: Vec<String>,
    v2s2: bool,
}

/// One entry of the release job's `push_containers` map, with its configured repositories.
struct PushContainer {
    configname: &'static str,
    artifact: &'static str,
    metajsonname: &'static str,
    repos: Vec<RepoConfig>,
}

/// The release job's map (`legacy_oscontainer` included: no build here has that artifact,
/// so the job leaves it out), each with two repositories, tags as config.yaml spells them
/// after `${STREAM}`/`${VERSION}` substitution.
fn push_containers() -> Vec<PushContainer> {
    let tags = |ts: &[&str]| ts.iter().map(|t| (*t).to_owned()).collect::<Vec<_>>();
    vec![
        PushContainer {
            configname: "oscontainer",
            artifact: "ostree",
            metajsonname: "base-oscontainer",
            repos: vec![
                RepoConfig {
                    path: "fedora/fedora-coreos",
                    tags: tags(&[STREAM, VERSION]),
                    v2s2: false,
                },
                RepoConfig {
                    path: "someorg/someimage",
                    tags: tags(&[STREAM]),
                    v2s2: false,
                },
            ],
        },
        PushContainer {
            configname: "kubevirt",
            artifact: "kubevirt",
            metajsonname: "kubevirt",
            repos: vec![
                RepoConfig {
                    path: "fedora/fedora-coreos-kubevirt",
                    tags: tags(&[STREAM]),
                    v2s2: true,
                },
                RepoConfig {
                    path: "someorg/kubevirt",
                    tags: tags(&[STREAM]),
                    v2s2: false,
                },
            ],
        },
        PushContainer {
            configname: "extensions",
            artifact: "extensions-container",
            metajsonname: "extensions-container",
            repos: vec![
                RepoConfig {
                    path: "openshift/rhel-coreos-extensions",
                    tags: tags(&["stable-extensions", &format!("{VERSION}-extensions")]),
                    v2s2: false,
                },
                RepoConfig {
                    path: "mirror/rhel-coreos-extensions",
                    tags: tags(&["stable-extensions"]),
                    v2s2: false,
                },
            ],
        },
        PushContainer {
            configname: "legacy_oscontainer",
            artifact: "legacy-oscontainer",
            metajsonname: "oscontainer",
            repos: vec![RepoConfig {
                path: "openshift/rhel-coreos-dev",
                tags: tags(&["stable-legacy"]),
                v2s2: false,
            }],
        },
    ]
}

/// The release job's command for one repository, word for word.
fn release_push_args(world: &World, pc: &PushContainer, repo: &RepoConfig) -> Vec<String> {
    let mut words = vec![
        "push-container-manifest".to_owned(),
        format!("--auth=tmp/push-secret-{}", pc.metajsonname),
        format!("--repo={}", world.repo(repo.path)),
    ];
    words.extend(repo.tags.iter().map(|t| format!("--tag={t}")));
    words.push(format!("--artifact={}", pc.artifact));
    words.push(format!("--metajsonname={}", pc.metajsonname));
    words.push(format!("--build={VERSION}"));
    if repo.v2s2 {
        words.push("--v2s2".to_owned());
    }
    words
}

/// What the release job does in "Push Containers": keeps the artifacts the x86_64 build has,
/// then, for each in parallel, pushes to each repository in turn, copying the secret to
/// `tmp/push-secret-<metajsonname>` for the push and removing it after. Returns each push's
/// (config name, repository path, output), in config order.
fn run_push_containers(world: &World) -> Vec<(&'static str, &'static str, Run)> {
    let x86_64 = world.meta("x86_64");
    let artifacts = x86_64["images"].as_object().unwrap();
    let todo: Vec<PushContainer> = push_containers()
        .into_iter()
        .filter(|pc| artifacts.contains_key(pc.artifact))
        .collect();
    std::fs::create_dir_all(world.env.dir().join("tmp")).unwrap();
    type Job = (&'static str, &'static str, Vec<(&'static str, Command)>);
    let jobs: Vec<Job> = todo
        .iter()
        .map(|pc| {
            let commands = pc
                .repos
                .iter()
                .map(|repo| {
                    (
                        repo.path,
                        world.env.command(&release_push_args(world, pc, repo)),
                    )
                })
                .collect();
            (pc.configname, pc.metajsonname, commands)
        })
        .collect();
    let secret = world.authfile.clone();
    let dir = world.env.dir().to_owned();
    std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .into_iter()
            .map(|(name, key, commands)| {
                let (secret, dir) = (secret.clone(), dir.clone());
                scope.spawn(move || {
                    let copy = dir.join(format!("tmp/push-secret-{key}"));
                    commands
                        .into_iter()
                        .map(|(path, mut cmd)| {
                            std::fs::copy(&secret, &copy).unwrap();
                            let out = Run::of(&mut cmd);
                            std::fs::remove_file(&copy).unwrap();
                            (name, path, out)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a push thread"))
            .collect()
    })
}

#[test]
fn the_release_jobs_push_containers_loop_publishes_every_artifact_and_reruns_with_no_write() {
    let world = World::new();
    let ostree = world.env.of_build(VERSION);
    let kubevirt = world.add_artifact("kubevirt", &["x86_64"]);
    let extensions = world.add_artifact("extensions-container", &fixtures::DEMO_ARCHES);

    let first = run_push_containers(&world);
    assert_eq!(first.len(), 6, "three artifacts, two repositories each");
    for (key, path, out) in &first {
        assert_eq!(out.code, 0, "{key} to {path}:\n{}", out.stderr);
    }
    for (key, _, out) in &first {
        let stderr = &out.stderr;
        for arch in ["aarch64", "ppc64le", "s390x"] {
            let line = format!("{arch:<8} skipped: no artifact");
            assert_eq!(
                stderr.contains(&line),
                *key == "kubevirt",
                "{key}:\n{stderr}"
            );
        }
    }

    // What each repository's tags hold.
    for pc in push_containers().iter().take(3) {
        let written = match pc.artifact {
            "ostree" => &ostree,
            "kubevirt" => &kubevirt,
            _ => &extensions,
        };
        for repo in &pc.repos {
            let mut digests = Vec::new();
            for tag in &repo.tags {
                let (digest, index) = world.stored(&format!("{}:{tag}", repo.path));
                let want_type = if repo.v2s2 { DOCKER_LIST } else { OCI_INDEX };
                assert_eq!(index["mediaType"], want_type, "{}:{tag}", repo.path);
                let arches: Vec<String> =
                    platforms_of(&index).into_iter().map(|(a, _)| a).collect();
                let mut want: Vec<String> = written
                    .iter()
                    .map(|w| oci_arch(&w.arch).to_owned())
                    .collect();
                want.sort();
                assert_eq!(arches, want, "{}:{tag}", repo.path);
                if !repo.v2s2 {
                    assert_eq!(platforms_of(&index), expected_platforms(written));
                }
                digests.push(digest);
            }
            digests.dedup();
            assert_eq!(digests.len(), 1, "every tag of {} at one index", repo.path);
        }
    }

    // The records: cosa can read them, one primary image and one additional image per key,
    // each naming what its repository's tags hold.
    for arch in fixtures::DEMO_ARCHES {
        let meta = world.meta(arch);
        cosa::assert_readable(&meta);
        for pc in push_containers().iter().take(3) {
            let record = &meta[pc.metajsonname];
            if pc.artifact == "kubevirt" && arch != "x86_64" {
                assert_eq!(record, &Value::Null, "{arch} has no kubevirt, so no record");
                continue;
            }
            let [primary, second] = [&pc.repos[0], &pc.repos[1]];
            let extra = record["additional-images"].as_array().expect("a list");
            assert_eq!(extra.len(), 1, "{arch} {}: {record:#}", pc.metajsonname);
            for (entry, repo) in [(record, primary), (&extra[0], second)] {
                assert_eq!(entry["image"], world.repo(repo.path));
                let tags: Vec<&str> = repo.tags.iter().map(String::as_str).collect();
                assert_eq!(entry["tags"], serde_json::json!(tags));
                let (list_digest, index) = world.stored(&format!("{}:{}", repo.path, tags[0]));
                assert_eq!(entry["manifest-list-digest"], list_digest.as_str());
                let listed: Vec<(String, String)> = platforms_of(&index);
                assert!(
                    listed
                        .iter()
                        .any(|(a, d)| a == oci_arch(arch) && entry["digest"] == d.as_str()),
                    "{arch} {}: {entry:#} not in {listed:?}",
                    repo.path
                );
            }
        }
    }

    // The job again, as a retried release does: nothing is written anywhere.
    let metas = world.env.metas();
    world.env.proxy.clear();
    for (key, path, out) in run_push_containers(&world) {
        assert_eq!(out.code, 0, "rerun of {key} to {path}:\n{}", out.stderr);
        let stderr = &out.stderr;
        assert!(stderr.contains("nothing to do"), "{key} {path}:\n{stderr}");
    }
    assert_eq!(world.env.proxy.writes(), vec![], "the rerun sends no write");
    assert!(!world.env.proxy.requests().is_empty(), "the rerun did read");
    assert_eq!(world.env.metas(), metas, "no meta.json changed");
}

#[test]
fn pushes_of_different_artifacts_of_one_build_run_at_the_same_time() {
    let world = World::new();
    world.add_artifact("kubevirt", &["x86_64"]);
    let pcs = push_containers();
    let (os, kv) = (&pcs[0], &pcs[1]);
    std::fs::create_dir_all(world.env.dir().join("tmp")).unwrap();
    for key in [os.metajsonname, kv.metajsonname] {
        std::fs::copy(
            &world.authfile,
            world.env.dir().join(format!("tmp/push-secret-{key}")),
        )
        .unwrap();
    }

    // The ostree push is held at its first manifest write, holding its locks.
    let gate = Gate::new();
    let held_path = format!("/v2/{}/manifests/", os.repos[0].path);
    world
        .env
        .proxy
        .inject(Fault::hold("PUT", &held_path, &gate));
    let ostree = world
        .env
        .command(&release_push_args(&world, os, &os.repos[0]))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        gate.wait_arrived(1, Duration::from_secs(60)),
        "the ostree push reached its manifest write"
    );

    // Meanwhile the kubevirt push runs to the end, as the job's parallel branch does.
    let kubevirt = world
        .env
        .reprise(&release_push_args(&world, kv, &kv.repos[0]));
    assert_eq!(kubevirt.code, 0, "{}", kubevirt.stderr);
    // A second push of the same artifact of the build still waits its turn.
    let same = world
        .env
        .reprise(&release_push_args(&world, os, &os.repos[1]));
    assert_eq!(same.code, 1, "{}", same.stderr);
    assert!(
        same.stderr.contains("base-oscontainer of this build"),
        "{}",
        same.stderr
    );

    gate.open();
    Run::from(ostree.wait_with_output().unwrap()).ok();
    let x86_64 = world.meta("x86_64");
    cosa::assert_readable(&x86_64);
    assert_eq!(x86_64["kubevirt"]["image"], world.repo(kv.repos[0].path));
    assert_eq!(
        x86_64["base-oscontainer"]["image"],
        world.repo(os.repos[0].path)
    );
}

// ---------------------------------------------------------------------------------------
// jobs/build-cosa.Jenkinsfile and jobs/build-fcos-buildroot.Jenkinsfile, "Push Manifest"

/// Stages each demo arch's image at `staging:ARCH-COMMIT`, as the build jobs' per-arch
/// remote builds do, and returns the `--image=docker://…` words for them.
fn staged_images(world: &World, staging: &str) -> Vec<String> {
    fixtures::DEMO_ARCHES
        .iter()
        .map(|arch| {
            let archive = &world.env.arch(VERSION, arch).archive;
            world.stage(archive, &format!("{staging}:{arch}-{COMMIT}"));
            format!("--image=docker://{}:{arch}-{COMMIT}", world.repo(staging))
        })
        .collect()
}

#[test]
fn build_cosa_pushes_a_v2s2_list_of_staged_images_by_mount_and_reruns_with_no_write() {
    let world = World::new();
    let staging = "coreos-assembler/staging";
    let images = staged_images(&world, staging);
    let repo = world.repo("coreos-assembler/coreos-assembler");
    let auth = format!("--auth={}", world.authfile.display());
    // cosa push-container-manifest --v2s2 --auth=$REGISTRY_SECRET --tag ${gitref} \
    //     --repo ${params.CONTAINER_REGISTRY_REPO} ${images}
    let mut line = args(&["push-container-manifest", "--v2s2", &auth, "--tag", "main"]);
    line.extend(args(&["--repo", &repo]));
    line.extend(images.iter().cloned());

    world.env.reprise(&line).ok();
    let (_, list) = world.stored("coreos-assembler/coreos-assembler:main");
    assert_eq!(list["mediaType"], DOCKER_LIST);
    let entries = list["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), fixtures::DEMO_ARCHES.len());
    for e in entries {
        assert_eq!(e["mediaType"], DOCKER_MANIFEST, "{e}");
    }
    let writes = world.env.proxy.writes();
    assert_eq!(
        blob_uploads(&writes),
        Vec::<&Recorded>::new(),
        "no blob bytes moved"
    );
    assert!(
        writes
            .iter()
            .any(|r| r.method == "POST" && r.path.contains("mount=")),
        "blobs mounted from staging: {writes:?}"
    );
    world.copy_all_out("coreos-assembler/coreos-assembler:main");

    world.env.proxy.clear();
    let again = world.env.reprise(&line).ok();
    assert!(again.stderr.contains("nothing to do"), "{}", again.stderr);
    assert_eq!(world.env.proxy.writes(), vec![]);
}

#[test]
fn build_fcos_buildroot_pushes_an_oci_index_of_the_staged_manifests_as_they_are() {
    let world = World::new();
    let staging = "coreos/staging";
    let images = staged_images(&world, staging);
    let auth = format!("--auth={}", world.authfile.display());
    let repo = world.repo("coreos/fcos-buildroot");
    // cosa push-container-manifest --auth=$REGISTRY_SECRET --tag ${gitref} \
    //     --repo ${params.CONTAINER_REGISTRY_REPO} ${images}
    let mut line = args(&[
        "push-container-manifest",
        &auth,
        "--tag",
        "main",
        "--repo",
        &repo,
    ]);
    line.extend(images);
    world.env.reprise(&line).ok();
    let (_, index) = world.stored("coreos/fcos-buildroot:main");
    assert_eq!(index["mediaType"], OCI_INDEX);
    assert_eq!(
        platforms_of(&index),
        expected_platforms(&world.env.of_build(VERSION)),
        "the staged manifests, byte for byte"
    );
    world.env.proxy.clear();
    world.env.reprise(&line).ok();
    assert_eq!(world.env.proxy.writes(), vec![]);
}

// ---------------------------------------------------------------------------------------
// utils.groovy push_manifest

#[test]
fn push_manifest_by_digest_writes_the_digest_file_on_every_run() {
    let world = World::new();
    let path = "openshift-release-dev/ocp-v4.0-art-dev";
    let manifest_tag = "4.19-9.6";
    // build_remote_image: each arch pushed to REPO:TAG-ARCH, its digest written to a file.
    let digests: Vec<String> = fixtures::DEMO_ARCHES
        .iter()
        .map(|arch| {
            let archive = &world.env.arch(VERSION, arch).archive;
            world.stage(archive, &format!("{path}:{manifest_tag}-{arch}"))
        })
        .collect();
    let repo = world.repo(path);
    for (v2s2, tag) in [
        (false, manifest_tag.to_owned()),
        (true, format!("{manifest_tag}-v2s2")),
    ] {
        let digest_file = format!("{tag}.digestfile");
        // cosa push-container-manifest --tag ${manifest_tag} --repo ${repo} ${images} \
        //     --write-digest-to-file ${digest_file} [--v2s2]
        let mut line = args(&["push-container-manifest", "--tag", &tag, "--repo", &repo]);
        line.extend(
            digests
                .iter()
                .map(|d| format!("--image=docker://{repo}@{d}")),
        );
        line.extend(args(&["--write-digest-to-file", &digest_file]));
        if v2s2 {
            line.push("--v2s2".to_owned());
        }
        let run = |world: &World| {
            output_ok(
                world
                    .env
                    .command(&line)
                    .env("REGISTRY_AUTH_FILE", &world.authfile),
            );
            let file = world.env.dir().join(&digest_file);
            let written = std::fs::read_to_string(&file).expect("the digest file");
            // The job reads it, then removes it: `rm ${digest_file}`.
            std::fs::remove_file(&file).unwrap();
            written
        };
        let first = run(&world);
        let (stored, list) = world.stored(&format!("{path}:{tag}"));
        assert_eq!(first, stored, "exactly the tag's digest, no newline");
        let want_type = if v2s2 { DOCKER_LIST } else { OCI_INDEX };
        assert_eq!(list["mediaType"], want_type);
        if !v2s2 {
            let mut listed: Vec<String> = platforms_of(&list).into_iter().map(|(_, d)| d).collect();
            let mut given = digests.clone();
            listed.sort();
            given.sort();
            assert_eq!(listed, given, "the images named by digest");
        }
        // utils.groovy retries the step; a rerun writes nothing but the digest file.
        world.env.proxy.clear();
        assert_eq!(run(&world), first);
        assert_eq!(world.env.proxy.writes(), vec![], "{tag}: rerun");
    }
}

// ---------------------------------------------------------------------------------------
// An artifact built for x86_64 only

fn kubevirt_push(world: &World, repo: &str, extra: &[&str]) -> Run {
    let mut line = args(&[
        "push-container-manifest",
        &format!("--auth={}", world.authfile.display()),
        &format!("--repo={repo}"),
        "--tag=stable",
        "--artifact=kubevirt",
        "--metajsonname=kubevirt",
        &format!("--build={VERSION}"),
        "--json",
    ]);
    line.extend(args(extra));
    world.env.reprise(&line)
}

fn skipped_of(report: &Value) -> Vec<(String, String)> {
    report["skipped"]
        .as_array()
        .expect("skipped")
        .iter()
        .map(|s| {
            (
                s["arch"].as_str().unwrap().to_owned(),
                s["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn others_skipped() -> Vec<(String, String)> {
    ["aarch64", "ppc64le", "s390x"]
        .iter()
        .map(|a| ((*a).to_owned(), "no-artifact".to_owned()))
        .collect()
}

#[test]
fn an_artifact_built_for_x86_64_only_is_published_for_x86_64_and_says_what_it_skipped() {
    let world = World::new();
    let kubevirt = world.add_artifact("kubevirt", &["x86_64"]);
    let repo = world.repo("fedora/fedora-coreos-kubevirt");

    let status = world.env.reprise(&args(&[
        "status",
        "--authfile",
        &world.authfile.display().to_string(),
        "--repo",
        &repo,
        "--tag",
        "stable",
        "--artifact",
        "kubevirt",
        "--metajsonname",
        "kubevirt",
        "--json",
    ]));
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert_eq!(skipped_of(&status.report), others_skipped());
    validate("report.schema.json", &status.report);

    let run = kubevirt_push(&world, &repo, &[]).ok();
    assert_eq!(run.outcome(), "pushed");
    assert_eq!(skipped_of(&run.report), others_skipped());
    validate("report.schema.json", &run.report);
    for arch in ["aarch64", "ppc64le", "s390x"] {
        assert!(
            run.stderr
                .contains(&format!("{arch:<8} skipped: no artifact")),
            "{}",
            run.stderr
        );
    }
    let (_, index) = world.stored("fedora/fedora-coreos-kubevirt:stable");
    assert_eq!(platforms_of(&index), expected_platforms(&kubevirt));
    assert_eq!(world.meta("x86_64")["kubevirt"]["image"], repo);
    for arch in ["aarch64", "ppc64le", "s390x"] {
        assert_eq!(world.meta(arch).get("kubevirt"), None, "{arch}");
    }
    cosa::assert_readable(&world.meta("x86_64"));

    // inspect --meta: an arch without the artifact expects no record.
    let inspect = |arch: &str, artifact: &[&str]| {
        let meta = world.env.arch(VERSION, arch).meta.display().to_string();
        let mut line = args(&[
            "inspect",
            &format!("{repo}:stable"),
            "--authfile",
            &world.authfile.display().to_string(),
            "--meta",
            &meta,
            "--metajsonname",
            "kubevirt",
            "--json",
        ]);
        line.extend(args(artifact));
        world.env.reprise(&line)
    };
    let skipped = inspect("aarch64", &["--artifact", "kubevirt"]);
    assert_eq!(skipped.code, 0, "{}", skipped.stderr);
    assert_eq!(skipped.report["meta"]["skipped"], "no-artifact");
    assert_eq!(
        inspect("aarch64", &[]).code,
        4,
        "without --artifact, a missing record"
    );
    let x86_64 = inspect("x86_64", &["--artifact", "kubevirt"]);
    assert_eq!(x86_64.code, 0, "{}", x86_64.stderr);
    assert_eq!(x86_64.report["meta"]["matches"], true);
    assert_eq!(x86_64.report["meta"].get("skipped"), None);

    // Named with --arch, an arch without the artifact is an error, as in cosa.
    let metas = world.env.metas();
    world.env.proxy.clear();
    let named = kubevirt_push(&world, &repo, &["--arch", "aarch64"]);
    assert_eq!(named.code, 1, "{}", named.stderr);
    let line = named.stderr.trim();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(
        line.contains("aarch64/meta.json") && line.contains("images.kubevirt"),
        "{line}"
    );
    // And no arch with it at all: nothing to publish.
    let none = world.env.reprise(&args(&[
        "push-container-manifest",
        &format!("--auth={}", world.authfile.display()),
        &format!("--repo={repo}"),
        "--tag=stable",
        "--artifact=legacy-oscontainer",
        "--metajsonname=oscontainer",
    ]));
    assert_eq!(none.code, 1, "{}", none.stderr);
    let line = none.stderr.trim();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(
        line.contains("images.legacy-oscontainer") && line.contains("any of its arches"),
        "{line}"
    );
    assert_eq!(world.env.proxy.writes(), vec![]);
    assert_eq!(world.env.metas(), metas);
}

#[test]
fn a_skipped_arch_that_a_tag_holds_is_refused_or_kept_like_a_missing_one() {
    let world = World::new();
    let kubevirt = world.add_artifact("kubevirt", &["x86_64"]);
    let repo = world.repo("fedora/fedora-coreos-kubevirt");
    // The tag already holds four arches (say, from a build that had kubevirt everywhere).
    world
        .env
        .reprise(&args(&[
            "push-container-manifest",
            &format!("--auth={}", world.authfile.display()),
            &format!("--repo={repo}"),
            "--tag=stable",
            "--artifact=ostree",
            "--metajsonname=base-oscontainer",
        ]))
        .ok();
    let (before, held) = world.stored("fedora/fedora-coreos-kubevirt:stable");

    world.env.proxy.clear();
    let refused = kubevirt_push(&world, &repo, &[]);
    assert_eq!(refused.code, 3, "{}", refused.stderr);
    assert_eq!(refused.outcome(), "refused");
    assert_eq!(skipped_of(&refused.report), others_skipped());
    validate("report.schema.json", &refused.report);
    let missing: Vec<&str> = refused.report["refusal"]["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["arch"].as_str().unwrap())
        .collect();
    assert_eq!(missing.len(), 3, "{missing:?}");
    assert!(
        refused.stderr.contains("aarch64  skipped: no artifact"),
        "{}",
        refused.stderr
    );
    assert_eq!(world.env.proxy.writes(), vec![]);
    assert_eq!(
        world.stored("fedora/fedora-coreos-kubevirt:stable").0,
        before
    );

    let kept = kubevirt_push(&world, &repo, &["--missing-arch", "keep"]).ok();
    assert_eq!(kept.outcome(), "pushed");
    assert_eq!(kept.report["carried"].as_array().unwrap().len(), 3);
    let (_, index) = world.stored("fedora/fedora-coreos-kubevirt:stable");
    let mut want: Vec<(String, String)> = platforms_of(&held)
        .into_iter()
        .filter(|(a, _)| a != "amd64")
        .chain(expected_platforms(&kubevirt))
        .collect();
    want.sort();
    assert_eq!(
        platforms_of(&index),
        want,
        "x86_64 replaced, the others carried"
    );
    cosa::assert_readable(&world.meta("x86_64"));
}

#[test]
fn a_release_run_skips_the_arches_an_artifact_was_not_built_for() {
    let world = World::new();
    let kubevirt = world.add_artifact("kubevirt", &["x86_64"]);
    let config = world.env.dir().join("release.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[stage]]
name = "per-arch"
kind = "arch-tags"
artifact = "kubevirt"
repo = "{repo}"
tags = ["{{version}}"]

[[stage]]
name = "index"
kind = "container-manifest"
artifact = "kubevirt"
metajsonname = "kubevirt"
repo = "{repo}"
tags = ["stable"]
"#,
            repo = world.repo("fedora/fedora-coreos-kubevirt")
        ),
    )
    .unwrap();
    let run_args = args(&[
        "run",
        "--config",
        &config.display().to_string(),
        "--authfile",
        &world.authfile.display().to_string(),
        "--json",
    ]);
    let run = world.env.reprise(&run_args).ok();
    validate("report.schema.json", &run.report);
    let stages = run.report["stages"].as_array().unwrap();
    for stage in stages {
        assert_eq!(stage["outcome"], "pushed", "{stage:#}");
        assert_eq!(skipped_of(stage), others_skipped(), "{}", stage["name"]);
    }
    let tags: Vec<&str> = stages[0]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tag"].as_str().unwrap())
        .collect();
    assert_eq!(tags, [format!("{VERSION}-x86_64")]);
    let (digest, _) = world.stored(&format!("fedora/fedora-coreos-kubevirt:{VERSION}-x86_64"));
    assert_eq!(digest, kubevirt[0].manifest_digest);
    assert!(
        run.stderr.contains("aarch64  skipped: no artifact"),
        "{}",
        run.stderr
    );

    // An arch-tags stage that names an arch without the artifact fails, naming it.
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "tags = [\"{version}\"]",
        "tags = [\"{version}\"]\narches = [\"x86_64\", \"s390x\"]",
    );
    std::fs::write(&config, text).unwrap();
    let named = world.env.reprise(&run_args);
    assert_eq!(named.code, 1, "{}", named.stderr);
    assert!(
        named.stderr.contains("s390x/meta.json") && named.stderr.contains("images.kubevirt"),
        "{}",
        named.stderr
    );
}

#[test]
fn the_cosa_rules_reject_what_cosa_could_not_read() {
    // The check itself can fail: each of these breaks one rule of cosa's primary-image.
    let good = serde_json::json!({
        "image": "quay.io/a/b", "digest": "sha256:0", "manifest-list-digest": "sha256:1",
        "tags": ["stable"], "additional-images": [{ "image": "quay.io/c/d", "tags": ["x"] }]
    });
    assert!(cosa::violations(&serde_json::json!({ "kubevirt": good })).is_empty());
    for (what, bad) in [
        ("no image", serde_json::json!({ "digest": "sha256:0" })),
        (
            "tags not a list",
            serde_json::json!({ "image": "a", "tags": "stable" }),
        ),
        (
            "a tag not a string",
            serde_json::json!({ "image": "a", "tags": [1] }),
        ),
        (
            "a field cosa does not name",
            serde_json::json!({ "image": "a", "arch": "x" }),
        ),
        (
            "additional-images not a list",
            serde_json::json!({ "image": "a", "additional-images": {} }),
        ),
        (
            "an additional image without image",
            serde_json::json!({ "image": "a", "additional-images": [{}] }),
        ),
    ] {
        for key in cosa::PRIMARY_IMAGE_KEYS {
            let meta = serde_json::json!({ key: bad.clone() });
            assert!(!cosa::violations(&meta).is_empty(), "{what} under {key}");
        }
    }
}
