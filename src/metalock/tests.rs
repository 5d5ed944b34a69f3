//! Tests of the flufl.lock protocol as reprise implements it: claims, waiting, breaking a
//! lock whose holder is gone, and unlocking.

use super::*;

/// Claims name their host the way flufl.lock does, or a lock cosa left behind by a dead
/// process on this host would never be recognised as ours to break.
#[test]
fn hostname_is_what_pythons_getfqdn_says() {
    let out = std::process::Command::new("python3")
        .args(["-c", "import socket; print(socket.getfqdn())"])
        .output()
        .expect("python3 runs");
    assert!(out.status.success());
    assert_eq!(hostname(), String::from_utf8_lossy(&out.stdout).trim());
}

#[test]
fn a_pid_that_exists_is_alive_and_one_that_ended_is_not() {
    assert!(pid_alive(std::process::id()));
    let mut child = std::process::Command::new("true")
        .spawn()
        .expect("spawn true");
    let pid = child.id();
    child.wait().expect("wait");
    assert!(!pid_alive(pid));
    assert!(pid_alive(0), "0 names a process group, never gone");
}

fn meta_in(dir: &tempfile::TempDir) -> Utf8PathBuf {
    let path = Utf8PathBuf::from_path_buf(dir.path().join("meta.json")).unwrap();
    fs::write(&path, b"{}").unwrap();
    path
}

/// A pid that existed and has exited (reaped), so nothing runs under it now unless the
/// system has wrapped its pid space since.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// Lays a foreign claim the way flufl.lock does and links it to the lock path.
fn foreign_claim(meta: &Utf8Path, host: &str, pid: u32) -> Utf8PathBuf {
    let lockfile = absolute(&lock_path(meta)).unwrap();
    let claim = Utf8PathBuf::from(format!("{lockfile}|{host}|{pid}|12345"));
    fs::write(&claim, claim.as_str()).unwrap();
    fs::hard_link(&claim, &lockfile).unwrap();
    claim
}

fn entries(dir: &tempfile::TempDir) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn lock_path_is_cosas() {
    assert_eq!(
        lock_path(Utf8Path::new("builds/1/x86_64/meta.json")),
        "builds/1/x86_64/.meta.json.lock"
    );
    assert_eq!(
        lock_path(Utf8Path::new("builds/1/x86_64/meta.base-oscontainer.json")),
        "builds/1/x86_64/.meta.base-oscontainer.json.lock"
    );
}

#[test]
fn a_held_lock_is_a_flufl_claim_linked_to_the_lock_path() {
    let dir = tempfile::tempdir().unwrap();
    let meta = meta_in(&dir);
    let lock = MetaLock::acquire(&meta, Duration::ZERO).unwrap();
    let content = fs::read_to_string(lock.lockfile()).unwrap();
    let holder = Holder::parse(&content).expect("a flufl claim");
    assert_eq!(holder.pid, std::process::id());
    assert_eq!(holder.host, hostname());
    assert!(content.starts_with(&format!("{}|", lock.lockfile())));
    // The claim file is the lock file's other link, and holds its own name.
    assert_eq!(fs::metadata(lock.lockfile()).unwrap().nlink(), 2);
    assert_eq!(fs::read_to_string(&content).unwrap(), content);
    // Its mtime is the lock's expiry, a lifetime ahead.
    let mtime = fs::metadata(lock.lockfile()).unwrap().modified().unwrap();
    assert!(mtime > SystemTime::now() + LIFETIME - Duration::from_secs(3600));
    drop(lock);
    assert_eq!(
        entries(&dir),
        ["meta.json"],
        "unlock removes lock and claim"
    );
}

#[test]
fn a_live_holder_is_waited_for_then_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let meta = meta_in(&dir);
    // This process is alive: a claim naming it (not one of ours) is never broken.
    let claim = foreign_claim(&meta, hostname(), std::process::id());
    let err = MetaLock::acquire(&meta, Duration::from_millis(30)).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "held by pid {} on host {}",
            std::process::id(),
            hostname()
        )),
        "{msg}"
    );
    assert!(msg.contains(".meta.json.lock"), "{msg}");
    // The holder's lock and claim are untouched, and our claim is gone.
    assert_eq!(
        fs::read_to_string(lock_path(&meta)).unwrap(),
        claim.as_str()
    );
    assert_eq!(entries(&dir).len(), 3, "{:?}", entries(&dir));
}

#[test]
fn a_dead_holder_on_this_host_is_broken() {
    let dir = tempfile::tempdir().unwrap();
    let meta = meta_in(&dir);
    let claim = foreign_claim(&meta, hostname(), dead_pid());
    let lock = MetaLock::acquire(&meta, Duration::ZERO).unwrap();
    assert!(!claim.exists(), "the dead holder's claim is cleaned up");
    let content = fs::read_to_string(lock.lockfile()).unwrap();
    assert_eq!(Holder::parse(&content).unwrap().pid, std::process::id());
    drop(lock);
    assert_eq!(entries(&dir), ["meta.json"]);
}

#[test]
fn a_dead_pid_on_another_host_is_not_proof_and_is_not_broken() {
    let dir = tempfile::tempdir().unwrap();
    let meta = meta_in(&dir);
    let claim = foreign_claim(&meta, "elsewhere.example.com", dead_pid());
    let err = MetaLock::acquire(&meta, Duration::ZERO).unwrap_err();
    assert!(err.to_string().contains("on host elsewhere.example.com"));
    assert_eq!(
        fs::read_to_string(lock_path(&meta)).unwrap(),
        claim.as_str()
    );
}

#[test]
fn a_lock_file_that_is_no_claim_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let meta = meta_in(&dir);
    fs::write(lock_path(&meta), "not a claim").unwrap();
    let err = MetaLock::acquire(&meta, Duration::ZERO).unwrap_err();
    assert!(
        err.to_string()
            .contains("unrecognised claim \"not a claim\"")
    );
    assert_eq!(fs::read_to_string(lock_path(&meta)).unwrap(), "not a claim");
}

#[test]
fn breaking_never_removes_a_lock_that_changed_hands() {
    let dir = tempfile::tempdir().unwrap();
    let meta = meta_in(&dir);
    let dead = Holder::parse(&format!(
        "{}|{}|{}|1",
        absolute(&lock_path(&meta)).unwrap(),
        hostname(),
        dead_pid()
    ))
    .unwrap();
    // Someone else took the lock after the dead holder's claim was read.
    let live = foreign_claim(&meta, hostname(), std::process::id());
    let breaker = MetaLock {
        lockfile: absolute(&lock_path(&meta)).unwrap(),
        claim: Utf8PathBuf::from(format!("{}|x|1|2", dir.path().display())),
        held: false,
    };
    breaker.break_stale(&dead).unwrap();
    assert_eq!(
        fs::read_to_string(lock_path(&meta)).unwrap(),
        live.as_str(),
        "the live lock is back in place"
    );
    assert_eq!(fs::metadata(lock_path(&meta)).unwrap().nlink(), 2);
    std::mem::forget(breaker);
}

#[test]
fn unlocking_a_lock_broken_meanwhile_leaves_the_new_holders_lock() {
    let dir = tempfile::tempdir().unwrap();
    let meta = meta_in(&dir);
    let lock = MetaLock::acquire(&meta, Duration::ZERO).unwrap();
    fs::remove_file(lock.lockfile()).unwrap();
    let other = foreign_claim(&meta, "elsewhere.example.com", 1);
    drop(lock);
    assert_eq!(
        fs::read_to_string(lock_path(&meta)).unwrap(),
        other.as_str()
    );
}

#[test]
fn claims_parse_from_the_right() {
    let h = Holder::parse("/a|b/.meta.json.lock|host.example.com|42|9876543210\n").unwrap();
    assert_eq!((h.host.as_str(), h.pid), ("host.example.com", 42));
    assert!(Holder::parse("/x/.meta.json.lock|host|notapid|1").is_none());
    assert!(Holder::parse("host|42|1").is_none());
}
