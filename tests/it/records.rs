//! meta.json records next to coreos-assembler's own writers: reprise re-reads each file under
//! cosa's lock at record time, so what others wrote while it pushed survives; it waits for a
//! flufl.lock holder, breaks only a dead one, gives up past its bound; and it honours
//! `coreos-assembler.delayed-meta-merge`. Against a real registry, through the proxy.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::env::{Env, KEY};
use crate::support::proxy::{Fault, Gate};
use crate::support::run::Run;
use serde_json::{Map, Value};

const STAMP: &str = "coreos-assembler.meta-stamp";

/// Takes a lock the way flufl.lock's `Lock.lock()` does (claim file named
/// `<lockfile>|<getfqdn>|<pid>|<random>` holding its own name, mtime pushed a lifetime ahead,
/// hard link to the lock file), prints its pid, then either exits at once without unlocking
/// (`die`) or holds until its stdin closes and unlocks as `Lock.unlock()` does (`hold`).
const FLUFL_HOLDER: &str = r#"
import os, random, socket, sys, time
lockfile, mode = sys.argv[1], sys.argv[2]
claim = "|".join((lockfile, socket.getfqdn(), str(os.getpid()), str(random.randint(0, sys.maxsize))))
with open(claim, "w") as f:
    f.write(claim)
t = time.time() + 52 * 7 * 24 * 3600
os.utime(claim, (t, t))
os.link(claim, lockfile)
print(os.getpid(), flush=True)
if mode == "die":
    os._exit(0)
sys.stdin.read()
if os.stat(lockfile).st_nlink == 2 and open(lockfile).read() == claim:
    os.unlink(lockfile)
os.unlink(claim)
"#;

fn lock_of(meta: &Path) -> PathBuf {
    meta.parent().unwrap().join(".meta.json.lock")
}

/// Another process holding `meta`'s lock through the flufl.lock protocol.
struct FluflHolder {
    child: Child,
    pid: u32,
}

impl FluflHolder {
    fn start(meta: &Path, mode: &str) -> FluflHolder {
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(FLUFL_HOLDER)
            .arg(lock_of(meta))
            .arg(mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run python3");
        // The pid line comes once the link is made: the lock is held from here on.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let pid = line.trim().parse().expect("holder printed its pid");
        FluflHolder { child, pid }
    }

    /// Holds the lock until `release`.
    fn hold(meta: &Path) -> FluflHolder {
        FluflHolder::start(meta, "hold")
    }

    /// Takes the lock and exits without unlocking; returns the dead holder's pid.
    fn die_holding(meta: &Path) -> u32 {
        let mut h = FluflHolder::start(meta, "die");
        assert!(h.child.wait().unwrap().success());
        h.pid
    }

    fn release(mut self) {
        drop(self.child.stdin.take());
        // A waiting reprise may take the lock the moment it is free, so its absence is not
        // asserted here; the holder's exit status says it unlocked without error.
        assert!(
            self.child.wait().unwrap().success(),
            "holder unlocked cleanly"
        );
    }
}

/// reprise running in the background, with its stderr read line by line.
struct Background {
    child: Child,
    stderr: BufReader<std::process::ChildStderr>,
    stdout: ChildStdout,
    seen: String,
}

impl Background {
    fn push(env: &Env, tags: &[&str], extra: &[&str]) -> Background {
        let mut child = env
            .command(&env.push_args(tags, extra))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run reprise");
        Background {
            stderr: BufReader::new(child.stderr.take().unwrap()),
            stdout: child.stdout.take().unwrap(),
            child,
            seen: String::new(),
        }
    }

    /// Reads stderr until a line contains `needle`; false if reprise exited first.
    fn wait_for_stderr(&mut self, needle: &str) -> bool {
        let mut line = String::new();
        loop {
            line.clear();
            if self.stderr.read_line(&mut line).unwrap() == 0 {
                return false;
            }
            self.seen.push_str(&line);
            if line.contains(needle) {
                return true;
            }
        }
    }

    fn finish(mut self) -> Run {
        let mut rest = String::new();
        self.stderr.read_to_string(&mut rest).unwrap();
        let mut stdout = Vec::new();
        self.stdout.read_to_end(&mut stdout).unwrap();
        let status = self.child.wait().unwrap();
        Run::from(Output {
            status,
            stdout,
            stderr: (self.seen + &rest).into_bytes(),
        })
    }
}

fn read_map(path: &Path) -> Map<String, Value> {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Every claim or lock file left in the arch directories of `env`'s builds.
/// No lock file or claim is left beside any meta.json.
fn assert_no_lock_leftovers(env: &Env) {
    let left = lock_leftovers(env);
    assert!(left.is_empty(), "{left:?}");
}

fn lock_leftovers(env: &Env) -> Vec<String> {
    env.written
        .iter()
        .flat_map(|w| std::fs::read_dir(w.meta.parent().unwrap()).unwrap())
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".lock"))
        .collect()
}

fn assert_recorded(env: &Env) {
    for w in &env.written {
        crate::support::cosa::assert_readable(
            &serde_json::from_slice(&std::fs::read(&w.meta).unwrap()).unwrap(),
        );
        let rec = env.record(w);
        assert_eq!(rec["digest"], w.manifest_digest.as_str(), "{}", w.arch);
        assert_eq!(rec["image"], env.repo().as_str());
    }
}

#[test]
fn a_key_another_writer_changes_during_the_push_survives_the_record() {
    let env = Env::new();
    let gate = Gate::new();
    // The push stops at its tag write: inputs read and planned, nothing recorded yet.
    env.proxy
        .inject(Fault::hold("PUT", "/manifests/stable", &gate).times(1));
    let run = Background::push(&env, &["stable"], &[]);
    assert!(
        gate.wait_arrived(1, Duration::from_secs(120)),
        "reprise reached the tag write"
    );

    // Meanwhile a cosa writer records an upload in every meta.json, under cosa's lock.
    let amis = serde_json::json!([{ "name": "us-east-1", "hvm": "ami-0123456789" }]);
    let mut their_stamps = Vec::new();
    for w in &env.written {
        let meta = camino::Utf8PathBuf::from_path_buf(w.meta.clone()).unwrap();
        let _lock = reprise::metalock::MetaLock::acquire(&meta, Duration::from_secs(10)).unwrap();
        let mut json = read_map(&w.meta);
        json.insert("amis".to_owned(), amis.clone());
        let stamp = now_ns();
        json.insert(STAMP.to_owned(), stamp.into());
        their_stamps.push(stamp);
        let bytes = reprise::builds::to_cosa_json(&json).unwrap();
        reprise::builds::write_atomic(&meta, &bytes).unwrap();
    }
    gate.open();

    let run = run.finish().ok();
    assert_eq!(run.outcome(), "pushed");
    for (w, their_stamp) in env.written.iter().zip(their_stamps) {
        let json = read_map(&w.meta);
        assert_eq!(
            json["amis"], amis,
            "{}: the other writer's key survives",
            w.arch
        );
        assert!(json[STAMP].as_u64().unwrap() > their_stamp, "{}", w.arch);
        let keys: Vec<&str> = json.keys().map(String::as_str).collect();
        assert_eq!(
            keys.last(),
            Some(&KEY),
            "reprise's key appended, others in place"
        );
    }
    assert_recorded(&env);
    assert_no_lock_leftovers(&env);
}

#[test]
fn a_flufl_lock_held_by_another_process_is_waited_for() {
    let env = Env::new();
    let held = env.written[0].meta.clone();
    let holder = FluflHolder::hold(&held);
    let mut run = Background::push(&env, &["stable"], &[]);
    assert!(
        run.wait_for_stderr("waiting up to 60s"),
        "reprise says it waits:\n{}",
        run.seen
    );
    assert!(run.seen.contains(&format!("held by pid {}", holder.pid)));
    // Still waiting: nothing recorded anywhere yet.
    assert!(env.record(&env.written[0]).is_null());
    holder.release();

    let run = run.finish().ok();
    assert_eq!(run.outcome(), "pushed");
    assert_recorded(&env);
    assert_no_lock_leftovers(&env);
}

#[test]
fn a_lock_left_by_a_dead_process_on_this_host_is_broken_with_a_message() {
    let env = Env::new();
    let held = env.written[1].meta.clone();
    let dead = FluflHolder::die_holding(&held);
    assert!(lock_of(&held).exists());

    let run = env.push(&["stable"], &[]).ok();
    assert!(
        run.stderr.contains("broke the stale lock")
            && run.stderr.contains(&format!("pid {dead} on this host")),
        "{}",
        run.stderr
    );
    assert_recorded(&env);
    // The lock and the dead holder's claim are gone, and so are reprise's own.
    assert_no_lock_leftovers(&env);
}

#[test]
fn a_live_holder_past_the_bound_fails_the_run_and_nothing_is_recorded() {
    let env = Env::new();
    let held = env.written[2].meta.clone();
    let holder = FluflHolder::hold(&held);
    let before = env.metas();

    let run = env.push(&["stable"], &["--lock-timeout", "1"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let error: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.to_lowercase().contains("error"))
        .collect();
    assert_eq!(error.len(), 1, "{}", run.stderr);
    assert!(
        error[0].contains(".meta.json.lock is held by pid")
            && error[0].contains(&format!("pid {} on host", holder.pid)),
        "{}",
        error[0]
    );
    assert_eq!(
        env.metas(),
        before,
        "no meta.json written, not even the free ones"
    );

    // Once the holder lets go, a rerun only records: the registry already holds the tag.
    holder.release();
    env.proxy.clear();
    let rerun = env.push(&["stable"], &[]).ok();
    assert_eq!(rerun.outcome(), "recorded");
    assert!(env.proxy.writes().is_empty(), "{:?}", env.proxy.writes());
    assert_recorded(&env);
}

#[test]
fn with_delayed_merge_the_record_goes_to_meta_key_json_and_counts_as_done() {
    let env = Env::new();
    for w in &env.written {
        let mut json = read_map(&w.meta);
        json.insert(
            "coreos-assembler.delayed-meta-merge".to_owned(),
            Value::Bool(true),
        );
        let mut f = std::fs::File::create(&w.meta).unwrap();
        f.write_all(&reprise::builds::to_cosa_json(&json).unwrap())
            .unwrap();
    }
    let before = env.metas();

    assert_eq!(env.push(&["stable"], &[]).ok().outcome(), "pushed");
    assert_eq!(
        env.metas(),
        before,
        "meta.json itself is left to cosa's finalize"
    );
    let delayed: Vec<Map<String, Value>> = env
        .written
        .iter()
        .map(|w| read_map(&w.meta.with_file_name(format!("meta.{KEY}.json"))))
        .collect();
    for (w, json) in env.written.iter().zip(&delayed) {
        crate::support::cosa::assert_readable(&Value::Object(json.clone()));
        assert_eq!(json[KEY]["digest"], w.manifest_digest.as_str());
        assert_eq!(
            json["buildid"],
            w.build_id.as_str(),
            "a whole copy of meta.json"
        );
    }

    env.proxy.clear();
    assert_eq!(env.push(&["stable"], &[]).ok().outcome(), "noop");
    assert!(env.proxy.writes().is_empty());
}
