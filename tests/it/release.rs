//! `reprise run` against a real registry, through the recording proxy: a whole release from
//! the demo config, its reruns, and each stage kind's own promises.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::check::validate;
use crate::support::env::Env;
use crate::support::proxy::{Fault, Recorded};
use crate::support::run::Run;
use crate::support::skopeo::inspect_raw;
use reprise_fixtures::{self as fixtures, BuildSpec};
use serde_json::Value;

const DEMO_VERSION: &str = fixtures::DEMO_ID;

/// `reprise run` on top of the shared test world.
trait ReleaseEnv {
    fn run(&self, config: &Path, extra: &[&str]) -> Run;
    /// What a tag holds, read by an independent client: (digest of the raw bytes, JSON).
    fn tag_state(&self, tag: &str) -> Option<(String, Value)>;
    fn digest_at(&self, tag: &str) -> Option<String>;
}

impl ReleaseEnv for Env {
    fn run(&self, config: &Path, extra: &[&str]) -> Run {
        let mut args = vec![
            "run".to_owned(),
            "--config".to_owned(),
            config.display().to_string(),
            "--json".to_owned(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        self.reprise(&args)
    }

    fn tag_state(&self, tag: &str) -> Option<(String, Value)> {
        let bytes = inspect_raw(&format!("{}:{tag}", self.repo()))?;
        let digest = fixtures::sha256_digest(&bytes);
        Some((digest, serde_json::from_slice(&bytes).expect("JSON")))
    }

    fn digest_at(&self, tag: &str) -> Option<String> {
        self.tag_state(tag).map(|(d, _)| d)
    }
}

/// A release report's parts.
trait ReleaseRun {
    fn release_outcome(&self) -> &str;
    fn stage(&self, name: &str) -> &Value;
    /// Every stage's outcome, in order.
    fn outcomes(&self) -> Vec<String>;
}

impl ReleaseRun for Run {
    fn release_outcome(&self) -> &str {
        self.report["release"]["outcome"]
            .as_str()
            .unwrap_or("<none>")
    }

    fn stage(&self, name: &str) -> &Value {
        self.report["stages"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == name))
            .unwrap_or_else(|| panic!("no stage {name} in {:#}", self.report))
    }

    fn outcomes(&self) -> Vec<String> {
        self.report["stages"]
            .as_array()
            .map(|s| {
                s.iter()
                    .map(|s| s["outcome"].as_str().unwrap_or("?").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn arch_tag(arch: &str) -> String {
    format!("{DEMO_VERSION}-{arch}")
}

/// Registry writes that touch one tag (its manifest path).
fn writes_to(writes: &[Recorded], tag: &str) -> usize {
    let suffix = format!("/manifests/{tag}");
    writes.iter().filter(|r| r.path.ends_with(&suffix)).count()
}

#[test]
fn first_run_does_every_stage_and_a_rerun_runs_no_program_and_writes_nothing() {
    let env = Env::new();
    // The build jobs put each arch on a staging tag; the release's clean-up deletes them.
    env.run(&env.demo_build_jobs_config(), &[]).ok();
    let config = env.demo_release_config();
    let run = env.run(&config, &[]).ok();
    validate("report.schema.json", &run.report);
    assert_eq!(run.release_outcome(), "pushed");
    assert_eq!(
        run.outcomes(),
        ["pushed", "pushed", "pushed", "pushed", "ran", "deleted"]
    );

    // per-arch: each arch's own manifest at <version>-<arch>.
    for w in &env.written {
        assert_eq!(
            env.digest_at(&arch_tag(&w.arch)).as_deref(),
            Some(w.manifest_digest.as_str()),
            "{}",
            w.arch
        );
    }
    // base: one index at both tags, recorded in meta.json.
    let (index, body) = env.tag_state("stable").expect("stable");
    assert_eq!(body["manifests"].as_array().map(Vec::len), Some(4));
    assert_eq!(env.digest_at(DEMO_VERSION).as_deref(), Some(index.as_str()));
    assert_eq!(run.stage("base")["push"]["index_digest"], index.as_str());
    for w in &env.written {
        let meta: Value = serde_json::from_slice(&std::fs::read(&w.meta).unwrap()).unwrap();
        assert_eq!(
            meta["base-oscontainer"]["manifest-list-digest"],
            index.as_str()
        );
    }
    // promote: latest is byte for byte what stable holds.
    assert_eq!(env.digest_at("latest").as_deref(), Some(index.as_str()));
    assert_eq!(run.stage("promote")["from"]["digest"], index.as_str());
    // mirror: the index and every manifest it lists, readable in the other repository.
    let mirror = env.repo_named("mirror/fedora-coreos");
    let copied = inspect_raw(&format!("{mirror}:stable")).expect("mirror:stable");
    assert_eq!(fixtures::sha256_digest(&copied), index);
    for w in &env.written {
        let child = inspect_raw(&format!("{mirror}@{}", w.manifest_digest));
        assert!(child.is_some(), "{} in the mirror", w.arch);
    }
    // cloud: the program ran once per arch and recorded under cosa's lock.
    for w in &env.written {
        let meta: Value = serde_json::from_slice(&std::fs::read(&w.meta).unwrap()).unwrap();
        assert!(meta["demo-uploads"][0]["image"].is_string(), "{}", w.arch);
        assert!(
            run.stderr
                .contains(&format!("[cloud/{0}] uploading {0}", w.arch)),
            "output streamed behind [stage/arch]: {}",
            run.stderr
        );
    }
    // cleanup: the staging tags are gone.
    for w in &env.written {
        let staging = env.repo_named("fedora/fedora-coreos-staging");
        assert_eq!(
            inspect_raw(&format!("{staging}:{}", arch_tag(&w.arch))),
            None
        );
    }

    let metas = env.metas();
    env.proxy.clear();
    let again = env.run(&config, &[]).ok();
    validate("report.schema.json", &again.report);
    assert_eq!(again.release_outcome(), "noop");
    assert_eq!(again.outcomes(), ["noop"; 6]);
    assert!(
        !again.stderr.contains("[cloud/"),
        "no program ran: {}",
        again.stderr
    );
    let runs = again.stage("cloud")["runs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(runs.len(), 4);
    assert!(
        runs.iter()
            .all(|r| r["outcome"] == "done" && r["attempts"] == serde_json::json!([]))
    );
    assert_eq!(env.proxy.writes(), vec![], "a rerun must not write");
    assert!(
        !env.proxy.requests().is_empty(),
        "the rerun did read the registry"
    );
    assert_eq!(env.metas(), metas, "every meta.json byte-identical");
}

#[test]
fn a_release_that_failed_in_its_second_stage_resumes_there() {
    let env = Env::new();
    let config = env.demo_release_config();
    env.proxy
        .inject(Fault::status("PUT", "/manifests/stable", 500));
    let metas = env.metas();
    let failed = env.run(&config, &["--retry-times", "1", "--retry-delay", "0.01"]);
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    validate("report.schema.json", &failed.report);
    assert_eq!(failed.release_outcome(), "failed");
    assert_eq!(
        failed.outcomes(),
        [
            "pushed", "failed", "not-run", "not-run", "not-run", "not-run"
        ]
    );
    let error = failed.stage("base")["error"].as_str().unwrap_or("");
    assert!(error.contains("HTTP 500"), "{error}");
    assert!(failed.stderr.contains("error:"), "{}", failed.stderr);
    assert_eq!(
        writes_to(&env.proxy.writes(), "latest"),
        0,
        "stage 3 never ran"
    );
    assert_eq!(env.digest_at("latest"), None);
    assert_eq!(
        env.metas(),
        metas,
        "no record of a push that did not happen"
    );

    env.proxy.clear_faults();
    env.proxy.clear();
    let resumed = env.run(&config, &[]).ok();
    validate("report.schema.json", &resumed.report);
    assert_eq!(
        resumed.outcomes(),
        ["noop", "pushed", "pushed", "pushed", "ran", "noop"]
    );
    let writes = env.proxy.writes();
    for w in &env.written {
        assert_eq!(writes_to(&writes, &arch_tag(&w.arch)), 0, "{writes:?}");
    }
    assert!(
        writes
            .iter()
            .all(|r| !r.path.contains("/v2/fedora/fedora-coreos/blobs/")),
        "every blob of the release repository was pushed by the first run: {writes:?}"
    );
    let index = env.digest_at("stable").expect("stable");
    assert_eq!(env.digest_at("latest"), Some(index));
}

#[test]
fn arch_tags_publish_the_arches_that_built_while_the_index_stage_refuses() {
    let env = Env::new();
    let config = env.demo_release_config();
    env.run(&config, &[]).ok();
    let stable_before = env.digest_at("stable").expect("stable");

    // A newer build without s390x: the tags hold s390x, so the index stage must refuse.
    let mut spec = BuildSpec::demo_with_id("40.20261102.3.0");
    spec.arches.retain(|a| a.arch != "s390x");
    let newer = fixtures::add_build(env.dir(), &spec).expect("add build");
    env.proxy.clear();

    let run = env.run(&config, &[]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    validate("report.schema.json", &run.report);
    assert_eq!(run.release_outcome(), "refused");
    assert_eq!(
        run.outcomes(),
        [
            "pushed", "refused", "not-run", "not-run", "not-run", "not-run"
        ]
    );
    assert_eq!(run.report["release"]["build"], "40.20261102.3.0");
    assert!(run.stderr.contains("s390x"), "{}", run.stderr);

    for w in &newer {
        let tag = format!("40.20261102.3.0-{}", w.arch);
        assert_eq!(
            env.digest_at(&tag).as_deref(),
            Some(w.manifest_digest.as_str()),
            "{tag}"
        );
    }
    assert_eq!(env.digest_at("40.20261102.3.0-s390x"), None);
    assert_eq!(
        env.digest_at("stable"),
        Some(stable_before),
        "never dropped"
    );
    let writes = env.proxy.writes();
    assert_eq!(writes_to(&writes, "stable"), 0, "{writes:?}");
    assert_eq!(writes_to(&writes, "latest"), 0, "{writes:?}");
}

fn copy_config(env: &Env, from: &str) -> PathBuf {
    env.release_config(&format!(
        r#"
[[stage]]
name = "promote"
kind = "copy-tag"
repo = "{}"
from = "{from}"
to = ["latest"]
"#,
        env.repo()
    ))
}

#[test]
fn copy_tag_is_a_noop_when_the_target_already_holds_the_source_digest() {
    let env = Env::new();
    env.push(&["stable", "latest"], &[]).ok();
    let stable = env.digest_at("stable").expect("stable");
    let config = copy_config(&env, "stable");
    env.proxy.clear();

    let run = env.run(&config, &[]).ok();
    validate("report.schema.json", &run.report);
    assert_eq!(run.outcomes(), ["noop"]);
    let tag = &run.stage("promote")["tags"][0];
    assert_eq!(tag["action"], "unchanged");
    assert_eq!(tag["before"], stable.as_str());
    assert_eq!(env.proxy.writes(), vec![]);
}

#[test]
fn copy_tag_reads_the_written_tag_back_until_it_shows_the_copy() {
    let env = Env::new();
    env.push(&["stable"], &[]).ok();
    let stable = env.digest_at("stable").expect("stable");
    let config = copy_config(&env, "stable");
    // After the PUT, reads of latest answer the old state (404) for a while.
    env.proxy.inject(Fault::stale_reads_for(
        "/manifests/latest",
        Duration::from_millis(500),
    ));
    env.proxy.clear();

    let run = env.run(&config, &[]).ok();
    validate("report.schema.json", &run.report);
    assert_eq!(run.outcomes(), ["pushed"]);
    let seen: Vec<Recorded> = env
        .proxy
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/manifests/latest"))
        .collect();
    let put = seen
        .iter()
        .position(|r| r.method == "PUT")
        .expect("latest was written");
    let after: Vec<u16> = seen[put + 1..].iter().map(|r| r.status).collect();
    assert!(after.contains(&404), "a stale read was served: {seen:?}");
    assert_eq!(
        after.last(),
        Some(&200),
        "read until it showed the copy: {seen:?}"
    );
    assert_eq!(env.digest_at("latest"), Some(stable));
}

#[test]
fn copy_tag_fails_when_the_copy_never_reads_back() {
    let env = Env::new();
    env.push(&["stable"], &[]).ok();
    let config = copy_config(&env, "stable");
    env.proxy
        .inject(Fault::stale_reads_forever("/manifests/latest"));
    let run = env.run(&config, &["--verify-timeout", "1"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    validate("report.schema.json", &run.report);
    assert_eq!(run.outcomes(), ["failed"]);
    let error = run.stage("promote")["error"].as_str().unwrap_or("");
    assert!(error.contains("still resolves to"), "{error}");
}

#[test]
fn copy_tag_from_an_absent_tag_fails_before_anything_is_written() {
    let env = Env::new();
    let text = std::fs::read_to_string(env.demo_release_config()).unwrap();
    let config = env.release_config(&text.replace("from = \"{stream}\"", "from = \"nightly\""));
    let metas = env.metas();
    let run = env.run(&config, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("stage \"promote\"") && run.stderr.contains(":nightly does not exist"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.stderr);
    assert_eq!(
        env.proxy.writes(),
        vec![],
        "planning comes before any write"
    );
    assert_eq!(env.metas(), metas);
}

#[test]
fn dry_run_plans_every_stage_as_the_earlier_ones_leave_the_registry() {
    let env = Env::new();
    let config = env.demo_release_config();
    let metas = env.metas();
    let run = env.run(&config, &["--dry-run"]).ok();
    validate("report.schema.json", &run.report);
    assert_eq!(run.release_outcome(), "planned");
    assert_eq!(run.outcomes(), ["planned"; 6]);
    // stable does not exist yet: promote is planned against what base will write.
    let base_index = run.stage("base")["push"]["index_digest"].clone();
    let promote = run.stage("promote");
    assert_eq!(promote["after"], serde_json::json!(["base"]));
    assert_eq!(promote["from"]["digest"], base_index);
    assert_eq!(promote["tags"][0]["action"], "push");
    assert_eq!(env.proxy.writes(), vec![]);
    assert_eq!(env.metas(), metas);
}

#[test]
fn an_unknown_variable_fails_before_any_request() {
    let env = Env::new();
    let text = std::fs::read_to_string(env.demo_release_config()).unwrap();
    let config = env.release_config(&text.replace("from = \"{stream}\"", "from = \"{strem}\""));
    let run = env.run(&config, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("stage \"promote\": from: unknown variable {strem}"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.stderr);
    assert_eq!(env.proxy.requests(), vec![]);
}

#[test]
fn the_demo_configs_follow_their_schema() {
    for (name, stages) in [("release.toml", 6), ("build-jobs.toml", 1)] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/demo")
            .join(name);
        let text = std::fs::read_to_string(path).unwrap();
        let config: toml::Value = toml::from_str(&text).unwrap();
        let json = serde_json::to_value(config).unwrap();
        validate("release.schema.json", &json);
        assert_eq!(
            json["stage"].as_array().map(Vec::len),
            Some(stages),
            "{name}"
        );
    }
}

#[test]
fn a_container_manifest_stage_with_v2s2_publishes_a_docker_manifest_list() {
    let env = Env::new();
    let config = env.release_config(&format!(
        r#"
[[stage]]
name = "base"
kind = "container-manifest"
artifact = "ostree"
metajsonname = "base-oscontainer"
repo = "{}"
tags = ["stable"]
v2s2 = true
"#,
        env.repo()
    ));
    let run = env.run(&config, &[]).ok();
    validate("report.schema.json", &run.report);
    assert_eq!(run.outcomes(), ["pushed"]);
    let (_, index) = env.tag_state("stable").expect("stable");
    assert_eq!(
        index["mediaType"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    env.proxy.clear();
    assert_eq!(env.run(&config, &[]).ok().outcomes(), ["noop"]);
    assert_eq!(env.proxy.writes(), vec![]);
}
