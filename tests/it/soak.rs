//! The fault soak: pushes and whole releases with a fault drawn from the proxy's catalogue
//! (5xx, 429 with Retry-After, resets mid-body, stale reads, slow responses) or a crash at a
//! named point (as close to `kill -9` as a process gets), then a clean rerun, then a third run
//! that must have nothing to do. After each, the registry and every meta.json are checked:
//! the tags hold the index, the records name it once, no key of meta.json is lost or
//! reordered, every file is valid JSON.
//!
//! Seeded and reproducible: `REPRISE_SOAK_SEED` (default 1) and `REPRISE_SOAK_N`. CI runs a
//! short soak; the long one is run by hand:
//! `REPRISE_SOAK_N=200 cargo test --release --features fail-points --test it soak -- --ignored --nocapture`

use std::path::Path;
use std::time::Duration;

use crate::support::env::Env;
use crate::support::proxy::Fault;
use crate::support::run::Run;
use reprise_fixtures::BuildSpec;
use serde_json::Value;

/// xorshift64*: a few lines of reproducible randomness, enough to pick faults.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// What goes wrong in the first run of an iteration.
#[derive(Debug)]
enum Chaos {
    Proxy(Fault),
    Crash(&'static str),
}

const PATHS: [(&str, &str); 6] = [
    ("POST", "/blobs/uploads/"),
    ("PUT", "/blobs/uploads/"),
    ("HEAD", "/blobs/"),
    ("PUT", "/manifests/"),
    ("HEAD", "/manifests/"),
    ("GET", "/manifests/"),
];

const CRASH_POINTS: [&str; 7] = [
    "after-blobs:x86_64",
    "after-manifest:aarch64",
    "after-tag:stable",
    "after-tag:latest",
    "before-records",
    "after-record:ppc64le",
    "after-records",
];

fn draw(rng: &mut Rng) -> Chaos {
    let (method, path) = *rng.pick(&PATHS);
    let times = 1 + rng.below(3) as u32;
    match rng.below(7) {
        0 => Chaos::Proxy(Fault::status(method, path, 500).times(times)),
        1 => Chaos::Proxy(Fault::status(method, path, 503)),
        2 => Chaos::Proxy(Fault::status(method, path, 429).retry_after(0).times(times)),
        3 => Chaos::Proxy(
            Fault::reset_after("PUT", "/blobs/uploads/", 1 + rng.below(4000)).times(times),
        ),
        4 => Chaos::Proxy(Fault::stale_reads_for(
            "/manifests/",
            Duration::from_millis(50 + rng.below(300)),
        )),
        5 => Chaos::Proxy(Fault::delay(
            method,
            path,
            Duration::from_millis(rng.below(40)),
        )),
        _ => {
            let point: &&'static str = rng.pick(&CRASH_POINTS);
            Chaos::Crash(point)
        }
    }
}

/// A push of the build, or the demo's whole release.
#[derive(Clone, Copy, Debug)]
enum Job {
    Push,
    Release,
}

impl Job {
    fn args(self, env: &Env) -> Vec<String> {
        let mut args = match self {
            Job::Push => env.push_args(&["stable", "latest"], &[]),
            Job::Release => vec![
                "run".into(),
                "--config".into(),
                env.demo_release_config().display().to_string(),
                "--json".into(),
            ],
        };
        args.extend(["--retry-delay".into(), "0".into()]);
        args
    }

    fn run(self, env: &Env, crash: Option<&str>, retries: &str) -> Run {
        let mut args = self.args(env);
        args.extend(["--retry-times".into(), retries.into()]);
        let mut cmd = env.command(&args);
        if let Some(point) = crash {
            cmd.env("REPRISE_FAIL_AT", point);
        }
        Run::of(&mut cmd)
    }
}

/// Why an iteration did not converge, if it did not.
fn iteration(seed: u64, i: u64) -> Result<(), String> {
    let mut rng = Rng::new(seed ^ (i + 1).wrapping_mul(0x1000_0001));
    let env = Env::with_builds(&[BuildSpec::demo()]);
    let job = if rng.below(3) == 0 {
        Job::Release
    } else {
        Job::Push
    };
    let before: Vec<Vec<String>> = env.written.iter().map(|w| keys(&w.meta)).collect();
    let chaos = draw(&mut rng);
    let crash = match &chaos {
        Chaos::Proxy(f) => {
            env.proxy.inject(f.clone());
            None
        }
        Chaos::Crash(point) => Some(*point),
    };
    let faulty = job.run(&env, crash, "2");
    env.proxy.clear_faults();
    let clean = job.run(&env, None, "5");
    if clean.code != 0 {
        return Err(format!(
            "{job:?} after {chaos:?} (first exit {}): the clean rerun failed:\n{}",
            faulty.code, clean.stderr
        ));
    }
    env.proxy.clear();
    let third = job.run(&env, None, "5");
    let writes = env.proxy.writes();
    if third.code != 0 || !writes.is_empty() {
        return Err(format!(
            "{job:?} after {chaos:?}: the third run was not a no-op (exit {}, writes {writes:?})",
            third.code
        ));
    }
    check_state(&env, &before).map_err(|e| format!("{job:?} after {chaos:?}: {e}"))
}

/// meta.json's top-level keys, in order; the file must be valid JSON.
fn keys(path: &Path) -> Vec<String> {
    let text = std::fs::read(path).unwrap_or_default();
    match serde_json::from_slice::<Value>(&text) {
        Ok(Value::Object(map)) => map.keys().cloned().collect(),
        _ => vec!["<not a JSON object>".into()],
    }
}

fn check_state(env: &Env, before: &[Vec<String>]) -> Result<(), String> {
    let index = env.tag_digest("stable").ok_or("stable is absent")?;
    if env.tag_digest("latest").as_deref() != Some(index.as_str()) {
        return Err("latest does not hold what stable holds".into());
    }
    for (w, keys_before) in env.written.iter().zip(before) {
        let now = keys(&w.meta);
        // Every key that was there is still there, in the same order; new keys come after.
        if now.get(..keys_before.len()) != Some(keys_before.as_slice()) {
            return Err(format!("{}: keys {now:?}, were {keys_before:?}", w.arch));
        }
        let record = env.record(w);
        if record["manifest-list-digest"] != index.as_str() {
            return Err(format!("{}: record {record} does not name {index}", w.arch));
        }
        let tags: Vec<&str> = record["tags"]
            .as_array()
            .map(|t| t.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut unique = tags.clone();
        unique.sort_unstable();
        unique.dedup();
        if unique.len() != tags.len() || !tags.contains(&"stable") {
            return Err(format!("{}: record tags {tags:?}", w.arch));
        }
    }
    Ok(())
}

fn soak(n: u64) {
    let seed = std::env::var("REPRISE_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let mut lost = Vec::new();
    for i in 0..n {
        if let Err(e) = iteration(seed, i) {
            lost.push(format!("run {i}: {e}"));
        }
    }
    eprintln!(
        "{n} runs, {} converged, {} lost (seed {seed})",
        n - lost.len() as u64,
        lost.len()
    );
    assert!(lost.is_empty(), "{}", lost.join("\n\n"));
}

#[test]
fn a_short_fault_soak_converges() {
    soak(6);
}

#[test]
#[ignore = "long: REPRISE_SOAK_N runs (default 200), by hand"]
fn the_fault_soak_converges() {
    let n = std::env::var("REPRISE_SOAK_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    soak(n);
}
