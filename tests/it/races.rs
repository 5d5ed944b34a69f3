//! Two release jobs (two builds, two machines) racing on one tag, held at the proxy so they
//! interleave: neither records a tag it does not hold, and the run that stops names what the
//! other put there.

use std::process::{Child, Stdio};
use std::time::Duration;

use crate::support::env::{Env, KEY};
use crate::support::proxy::{Fault, Gate};
use crate::support::run::{self, Run};
use reprise_fixtures::{self as fixtures, BuildSpec};
use serde_json::Value;

const OTHER_ID: &str = "40.20261102.3.0";

/// The other machine: its own working directory with its own build (other arch layers), on
/// the same registry through the same proxy.
struct OtherJob {
    work: tempfile::TempDir,
    written: Vec<fixtures::WrittenArch>,
}

impl OtherJob {
    fn new() -> OtherJob {
        let work = tempfile::tempdir().unwrap();
        let mut spec = BuildSpec::demo_with_id(OTHER_ID);
        for a in &mut spec.arches {
            a.salt = "the other job".into();
        }
        let written = fixtures::write_tree(work.path(), &[spec]).unwrap();
        OtherJob { work, written }
    }

    fn push(&self, env: &Env) -> Run {
        Run::of(run::reprise(self.work.path()).args(env.push_args(&["stable"], &[])))
    }

    fn records(&self) -> Vec<Value> {
        self.written
            .iter()
            .map(|w| {
                let meta: Value = serde_json::from_slice(&std::fs::read(&w.meta).unwrap()).unwrap();
                meta[KEY].clone()
            })
            .collect()
    }
}

fn start(env: &Env) -> Child {
    env.command(&env.push_args(&["stable"], &[]))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn the_run_whose_tag_moved_before_it_wrote_stops_and_names_the_other_digest() {
    let env = Env::new();
    let other = OtherJob::new();
    // This run's first HEAD of stable is its plan; the second, right before it writes, waits
    // at the gate until the other job has pushed and recorded.
    let gate = Gate::new();
    env.proxy.inject(
        Fault::hold("HEAD", "/manifests/stable", &gate)
            .skip(1)
            .times(1),
    );
    let mine = start(&env);
    assert!(
        gate.wait_arrived(1, Duration::from_secs(60)),
        "this run never got to its re-read"
    );
    let theirs = other.push(&env).ok();
    let their_index = theirs.index_digest();
    gate.open();
    let mine = Run::from(mine.wait_with_output().unwrap());

    assert_eq!(mine.code, 1, "{}", mine.stderr);
    assert!(
        mine.stderr.contains("moved while this run was pushing")
            && mine.stderr.contains(&their_index),
        "{}",
        mine.stderr
    );
    assert_eq!(
        env.tag_digest("stable").as_deref(),
        Some(their_index.as_str())
    );
    // Neither records a tag it does not hold.
    for w in &env.written {
        assert!(env.record(w).is_null(), "{} recorded nothing", w.arch);
    }
    for record in other.records() {
        assert_eq!(record["manifest-list-digest"], their_index.as_str());
        assert_eq!(record["tags"], serde_json::json!(["stable"]));
    }
    // A rerun plans against the other job's index and replaces it, on purpose.
    let again = env.push(&["stable"], &[]).ok();
    assert_eq!(again.outcome(), "pushed");
    assert_eq!(
        env.tag_digest("stable").as_deref(),
        Some(again.index_digest().as_str())
    );
}

#[test]
fn a_tag_moved_after_recording_is_reported_and_fails_the_run() {
    let env = Env::new();
    let other = OtherJob::new();
    // HEADs of stable by this run: plan, re-read before writing, read-back, read after
    // recording. The last waits until the other job has written over it.
    let gate = Gate::new();
    env.proxy.inject(
        Fault::hold("HEAD", "/manifests/stable", &gate)
            .skip(3)
            .times(1),
    );
    let mine = start(&env);
    assert!(
        gate.wait_arrived(1, Duration::from_secs(60)),
        "this run never read its tags after recording"
    );
    let theirs = other.push(&env).ok();
    let their_index = theirs.index_digest();
    gate.open();
    let mine = Run::from(mine.wait_with_output().unwrap());

    assert_eq!(mine.code, 1, "{}", mine.stderr);
    let moved = &mine.report["moved_after_record"];
    assert_eq!(moved[0]["tag"], "stable", "{}", mine.report);
    assert_eq!(moved[0]["now"], their_index.as_str());
    assert!(
        mine.stderr.contains("moved after it was recorded"),
        "{}",
        mine.stderr
    );
    crate::support::check::validate("report.schema.json", &mine.report);
}
