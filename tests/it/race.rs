//! Two writers on one tag: runs of different builds publishing `stable` at once, interleaved
//! at the proxy (requests held at gates until the other writer has acted), never by sleeping.
//! Whatever the interleaving, no record names a tag its run does not hold, and a run that
//! stops says which digest the other writer put there.

use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::support::check::read_json;
use crate::support::env::{Env, KEY};
use crate::support::proxy::{Fault, Gate};
use crate::support::run::Run;
use reprise_fixtures::BuildSpec;

const FIRST: &str = "40.20261101.3.0";
const SECOND: &str = "40.20261102.1.0";
const THIRD: &str = "40.20261103.1.0";
/// Long enough for a debug build on a loaded machine; a gate that times out fails the test.
const WAIT: Duration = Duration::from_secs(120);

/// Three builds of the demo, each with its own index (the version label differs).
fn env() -> Env {
    Env::with_builds(&[
        BuildSpec::demo_with_id(THIRD),
        BuildSpec::demo_with_id(SECOND),
        BuildSpec::demo_with_id(FIRST),
    ])
}

/// `push-container-manifest --build BUILD --tag stable --json` through the proxy, started.
fn spawn(env: &Env, build: &str) -> Child {
    let args = env.push_args(&["stable"], &["--build", build, "--retry-delay", "0.01"]);
    env.command(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start reprise")
}

fn finish(child: Child) -> Run {
    Run::from(child.wait_with_output().expect("wait for reprise"))
}

/// Waits for `n` requests at `gate`; if they do not come, stops `runs` and fails with what
/// each printed, so a run that ended early (or hangs) says why.
fn arrived(gate: &Gate, n: u32, runs: &mut [Child], what: &str) {
    if gate.wait_arrived(n, WAIT) {
        return;
    }
    let said: Vec<String> = runs
        .iter_mut()
        .map(|child| {
            let ended = child.try_wait().ok().flatten();
            let _ = child.kill();
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            format!("exit {ended:?}:\n{stderr}")
        })
        .collect();
    panic!("{what}: not within {WAIT:?}\n{}", said.join("\n---\n"));
}

/// `build` pushed to `stable` straight at the registry by another run: the other writer.
fn other_writer(env: &Env, build: &str) -> String {
    env.push_to(&env.direct_repo(), &["stable"], &["--build", build])
        .ok()
        .index_digest()
}

fn hold(env: &Env, method: &str, skip: u32) -> Arc<Gate> {
    let gate = Gate::new();
    env.proxy.inject(
        Fault::hold(method, "/manifests/stable", &gate)
            .after(skip)
            .times(1),
    );
    gate
}

/// Every record of `builds` that names `stable` names what `stable` holds. (A run that
/// finished before another writer took the tag cannot know: only runs still publishing
/// are held to it.)
fn no_record_claims_a_tag_it_does_not_hold(env: &Env, builds: &[&str]) {
    let held = env.tag_digest("stable").expect("stable exists");
    for w in env
        .written
        .iter()
        .filter(|w| builds.contains(&w.build_id.as_str()))
    {
        let record = &read_json(&w.meta)[KEY];
        let claims = record["tags"]
            .as_array()
            .is_some_and(|tags| tags.iter().any(|t| t == "stable"));
        if claims {
            assert_eq!(
                record["manifest-list-digest"], held,
                "{}/{} claims stable",
                w.build_id, w.arch
            );
        }
    }
}

fn records_of(env: &Env, build: &str) -> Vec<serde_json::Value> {
    env.of_build(build)
        .iter()
        .map(|w| read_json(&w.meta)[KEY].clone())
        .collect()
}

#[test]
fn of_two_runs_writing_one_tag_the_overwritten_one_stops_naming_the_winner() {
    let env = env();
    let puts = Gate::new();
    env.proxy
        .inject(Fault::hold("PUT", "/manifests/stable", &puts));
    let mut runs = [spawn(&env, FIRST), spawn(&env, SECOND)];
    // Both planned and checked stable, and now wait to write it.
    arrived(&puts, 2, &mut runs, "both runs reach the tag write");
    // From here on a read of stable is a read-back: hold those until both writes landed.
    let reads = Gate::new();
    env.proxy
        .inject(Fault::hold("HEAD", "/manifests/stable", &reads));
    puts.release(1);
    arrived(&reads, 1, &mut runs, "the first writer reads back");
    puts.release(1);
    arrived(&reads, 2, &mut runs, "the second writer reads back");
    reads.open();

    let [first, second] = runs.map(finish);
    let (winner, loser) = match (first.code, second.code) {
        (0, 1) => (first, second),
        (1, 0) => (second, first),
        codes => panic!(
            "one run wins, one stops: {codes:?}\n{}\n{}",
            first.stderr, second.stderr
        ),
    };
    let won = winner.index_digest();
    assert_eq!(env.tag_digest("stable"), Some(won.clone()));
    assert!(
        loser.stderr.contains(&won) && loser.stderr.contains(":stable"),
        "{}",
        loser.stderr
    );
    no_record_claims_a_tag_it_does_not_hold(&env, &[FIRST, SECOND]);
    let recorded: Vec<_> = [FIRST, SECOND]
        .iter()
        .flat_map(|b| records_of(&env, b))
        .filter(|r| !r.is_null())
        .collect();
    assert_eq!(
        recorded.len(),
        4,
        "the winner's four arches, and only those"
    );
    assert!(
        recorded
            .iter()
            .all(|r| r["manifest-list-digest"] == won.as_str())
    );
}

#[test]
fn a_tag_moved_after_the_plan_is_planned_anew_and_moved_again_stops_the_run() {
    let env = env();
    // Let the run's first read of stable (its plan) by; hold the check before the write.
    let check = hold(&env, "HEAD", 1);
    let mut run = [spawn(&env, FIRST)];
    arrived(&check, 1, &mut run, "the run checks stable before writing");
    other_writer(&env, SECOND);
    // Let the new plan's read by; hold the check after it.
    let again = hold(&env, "HEAD", 1);
    check.open();
    arrived(&again, 1, &mut run, "the run planned anew and checks again");
    let third = other_writer(&env, THIRD);
    again.open();

    let [run] = run;
    let run = finish(run);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let text = run.stderr.trim();
    assert!(
        text.contains(":stable") && text.contains(&third) && text.contains("planned anew"),
        "{text}"
    );
    assert_eq!(env.tag_digest("stable"), Some(third));
    assert!(
        !env.proxy
            .writes()
            .iter()
            .any(|w| w.method == "PUT" && w.path.ends_with("/manifests/stable")),
        "the run never wrote stable"
    );
    assert!(
        records_of(&env, FIRST).iter().all(|r| r.is_null()),
        "nothing recorded"
    );
}

#[test]
fn a_tag_moved_once_after_the_plan_is_planned_anew_and_published() {
    let env = env();
    let check = hold(&env, "HEAD", 1);
    let mut run = [spawn(&env, FIRST)];
    arrived(&check, 1, &mut run, "the run checks stable before writing");
    let second = other_writer(&env, SECOND);
    check.open();

    let [run] = run;
    let run = finish(run).ok();
    // The report shows what the new plan saw there.
    let stable = &run.report["tags"][0];
    assert_eq!(stable["before"], second.as_str(), "{:#}", run.report);
    assert_eq!(env.tag_digest("stable"), Some(run.index_digest()));
    assert!(run.stderr.contains("planning anew"), "{}", run.stderr);
    no_record_claims_a_tag_it_does_not_hold(&env, &[FIRST]);
}
