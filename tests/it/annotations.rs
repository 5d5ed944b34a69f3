//! Annotations on the index (`--annotation`, a release stage's `annotations`), against a real
//! registry: what the published index carries (read back with skopeo), that a rerun is a
//! no-op, that a changed value pushes a new index, and that a Docker list refuses them.

use crate::support::check::{read_json, validate};
use crate::support::env::Env;
use crate::support::skopeo::inspect_json;
use reprise_fixtures::DEMO_ID;
use serde_json::Value;

const VERSION: &str = "org.opencontainers.image.version";
const CREATED: &str = "org.opencontainers.image.created";

/// Gives each arch's meta.json a `coreos-assembler.build-timestamp`, as cosa records it, one
/// minute apart in the order written; returns the latest.
fn stamp_build_times(env: &Env) -> String {
    let mut latest = String::new();
    for (i, w) in env.written.iter().enumerate() {
        let mut meta = read_json(&w.meta);
        latest = format!("2026-11-01T10:{i:02}:00Z");
        meta["coreos-assembler.build-timestamp"] = Value::String(latest.clone());
        std::fs::write(&w.meta, serde_json::to_vec_pretty(&meta).unwrap()).unwrap();
    }
    latest
}

fn annotation_args(pairs: &[&str]) -> Vec<String> {
    pairs
        .iter()
        .flat_map(|p| ["--annotation".to_owned(), (*p).to_owned()])
        .collect()
}

fn push_annotated(env: &Env, tags: &[&str], pairs: &[&str]) -> crate::support::run::Run {
    let args = annotation_args(pairs);
    let extra: Vec<&str> = args.iter().map(String::as_str).collect();
    env.push(tags, &extra)
}

#[test]
fn an_annotation_with_a_build_record_field_is_on_the_published_index() {
    let env = Env::new();
    let latest = stamp_build_times(&env);
    let asked = [
        "org.opencontainers.image.version={version}",
        "org.opencontainers.image.created={build-timestamp}",
    ];
    let run = push_annotated(&env, &["stable", "40"], &asked).ok();
    validate("report.schema.json", &run.report);
    assert_eq!(run.outcome(), "pushed");
    assert_eq!(run.report["annotations"][VERSION], DEMO_ID);
    assert_eq!(run.report["annotations"][CREATED], latest.as_str());

    // What an independent client reads at each tag.
    for tag in ["stable", "40"] {
        let index = inspect_json(&format!("{}:{tag}", env.direct_repo()));
        assert_eq!(index["annotations"][VERSION], DEMO_ID, "{tag}");
        assert_eq!(index["annotations"][CREATED], latest.as_str(), "{tag}");
        assert_eq!(index["manifests"].as_array().map(Vec::len), Some(4));
    }
    assert!(
        run.stderr
            .contains(&format!("annotation {CREATED}={latest}")),
        "{}",
        run.stderr
    );

    // A rerun builds the same bytes: one read per tag, no write.
    env.proxy.clear();
    let again = push_annotated(&env, &["stable", "40"], &asked).ok();
    assert_eq!(again.outcome(), "noop");
    assert_eq!(again.index_digest(), run.index_digest());
    assert_eq!(env.proxy.writes(), vec![]);
    let requests = env.proxy.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(requests.iter().all(|r| r.method == "HEAD"), "{requests:?}");
}

#[test]
fn changing_an_annotation_value_pushes_a_new_index() {
    let env = Env::new();
    let first = push_annotated(&env, &["stable"], &["org.example.channel=testing"]).ok();
    let second = push_annotated(&env, &["stable"], &["org.example.channel=stable"]).ok();
    validate("report.schema.json", &second.report);
    assert_eq!(second.outcome(), "pushed");
    assert_ne!(second.index_digest(), first.index_digest());
    assert_eq!(second.report["tags"][0]["reason"], "annotations differ");
    assert_eq!(
        env.tag_digest("stable").as_deref(),
        Some(second.index_digest().as_str())
    );
    let index = inspect_json(&format!("{}:stable", env.direct_repo()));
    assert_eq!(index["annotations"]["org.example.channel"], "stable");
    // The records follow the new index.
    for w in &env.written {
        assert_eq!(
            env.record(w)["manifest-list-digest"],
            second.index_digest().as_str()
        );
    }
}

#[test]
fn without_annotations_those_on_the_remote_index_are_not_compared() {
    let env = Env::new();
    let annotated = push_annotated(&env, &["stable"], &["org.example.channel=testing"]).ok();
    env.proxy.clear();
    let plain = env.push(&["stable"], &[]).ok();
    assert_eq!(plain.outcome(), "noop");
    assert_eq!(plain.index_digest(), annotated.index_digest());
    assert_eq!(env.proxy.writes(), vec![]);
}

#[test]
fn v2s2_with_an_annotation_exits_2_in_one_line_before_any_request() {
    let env = Env::new();
    let metas = env.metas();
    let run = env.push(&["stable"], &["--v2s2", "--annotation", "k=v"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(run.stderr.trim_end().lines().count(), 1, "{}", run.stderr);
    assert!(run.stderr.contains("--v2s2"), "{}", run.stderr);
    assert_eq!(env.proxy.requests(), vec![]);
    assert_eq!(env.metas(), metas);
}

#[test]
fn a_release_stage_publishes_its_annotations_and_reruns_as_a_noop() {
    let env = Env::new();
    let latest = stamp_build_times(&env);
    let config = env.release_config(&format!(
        r#"
[vars]
stream = "stable"

[[stage]]
name = "base"
kind = "container-manifest"
artifact = "ostree"
metajsonname = "base-oscontainer"
repo = "{}"
tags = ["{{stream}}"]
annotations = {{ "{VERSION}" = "{{version}}", "{CREATED}" = "{{build-timestamp}}", "org.example.stream" = "{{stream}}" }}
"#,
        env.repo()
    ));
    let run_args = || {
        vec![
            "run".to_owned(),
            "--config".to_owned(),
            config.display().to_string(),
            "--json".to_owned(),
        ]
    };
    let run = env.reprise(&run_args()).ok();
    validate("report.schema.json", &run.report);
    let index = inspect_json(&format!("{}:stable", env.direct_repo()));
    assert_eq!(index["annotations"][VERSION], DEMO_ID);
    assert_eq!(index["annotations"][CREATED], latest.as_str());
    assert_eq!(index["annotations"]["org.example.stream"], "stable");

    env.proxy.clear();
    let again = env.reprise(&run_args()).ok();
    assert_eq!(
        again.report["release"]["outcome"], "noop",
        "{:#}",
        again.report
    );
    assert_eq!(env.proxy.writes(), vec![]);
}
