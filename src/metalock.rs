//! The lock coreos-assembler takes around every meta.json write: `<dir>/.<file>.lock`, held
//! with flufl.lock's link-based protocol, so cosa's writers and reprise exclude each other.
//!
//! Owns that protocol and nothing else: making a claim file, hard-linking it to the lock path
//! and checking the link count, waiting for a holder up to a bound, breaking a lock whose
//! holder is provably gone, and unlocking. What is done under the lock belongs to `builds`.
//!
//! The protocol, as flufl.lock implements it (and coreos-assembler uses it):
//! - The claim file is named `<lockfile>|<host>|<pid>|<random>` and holds exactly its own name.
//!   `<host>` is Python's `socket.getfqdn()`; the random part tells two claims of one process
//!   apart.
//! - The claim's mtime is set into the future by the holder's lifetime; the lock file is the
//!   same inode, so its mtime is the holder's expiry. cosa uses a lifetime of 52 weeks.
//! - `link(claim, lockfile)` succeeding takes the lock; on EEXIST the lock is ours only if the
//!   lock file has two links and names our claim (an NFS link whose reply was lost).
//! - Unlocking removes the lock file only if it still names our claim, then the claim.
//!
//! Where reprise departs from flufl.lock's `lock()`, it does so towards safety: it never breaks
//! a lock because its lifetime expired (cosa's never does in practice), only one whose holder
//! is on this host and no longer running; and it breaks by renaming the lock file aside and
//! checking what it moved, so it cannot delete a lock someone else took in between.

use std::fs::{self, FileTimes, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use camino::{Utf8Path, Utf8PathBuf};

/// How long to wait for another writer before giving up.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The lifetime coreos-assembler gives its locks (`LOCK_DEFAULT_LIFETIME`). A flufl.lock
/// client breaks a lock once its lifetime is over, so a shorter one could let cosa break a
/// lock reprise still holds.
pub const LIFETIME: Duration = Duration::from_secs(52 * 7 * 24 * 60 * 60);

/// flufl.lock's separator between the parts of a claim file name on POSIX.
const SEP: char = '|';

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{lockfile} is held by {holder}; gave up waiting after {}s", bound.as_secs_f64())]
    Timeout {
        lockfile: Utf8PathBuf,
        holder: HolderDesc,
        /// The bound that was reached (the wait was at least this long).
        bound: Duration,
    },
    #[error("{path}: {source}")]
    Io {
        path: Utf8PathBuf,
        source: io::Error,
    },
}

fn io_err(path: &Utf8Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

/// Who holds a lock, as its claim says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub host: String,
    pub pid: u32,
    /// The claim file's path, as the lock file holds it.
    claim: String,
}

impl Holder {
    /// Parses a lock file's content: `<lockfile>|<host>|<pid>|<random>`. Split from the right,
    /// so a `|` in the directory part does not matter.
    fn parse(content: &str) -> Option<Holder> {
        let claim = content.trim();
        let mut parts = claim.rsplitn(4, SEP);
        let random = parts.next()?;
        let pid = parts.next()?.parse().ok()?;
        let host = parts.next()?.to_owned();
        parts.next()?;
        random.parse::<u64>().ok()?;
        Some(Holder {
            host,
            pid,
            claim: claim.to_owned(),
        })
    }
}

/// A holder for an error message: parsed, or the raw content when it is not a flufl claim.
#[derive(Debug, Clone)]
pub enum HolderDesc {
    Claim(Holder),
    Unreadable(String),
    /// The lock came and went between attempts and was never seen.
    Unknown,
}

impl std::fmt::Display for HolderDesc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HolderDesc::Claim(h) => write!(f, "pid {} on host {}", h.pid, h.host),
            HolderDesc::Unreadable(raw) => {
                write!(
                    f,
                    "an unrecognised claim {:?}",
                    raw.chars().take(200).collect::<String>()
                )
            }
            HolderDesc::Unknown => write!(f, "other writers"),
        }
    }
}

/// `<dir>/.<name>.lock` for `<dir>/<name>`, as cosa's `get_lock_path`.
pub fn lock_path(file: &Utf8Path) -> Utf8PathBuf {
    let dir = file.parent().unwrap_or(Utf8Path::new(""));
    dir.join(format!(".{}.lock", file.file_name().unwrap_or_default()))
}

/// A held lock; dropping it unlocks.
#[derive(Debug)]
pub struct MetaLock {
    lockfile: Utf8PathBuf,
    claim: Utf8PathBuf,
    /// False while waiting: dropping then only removes the claim.
    held: bool,
}

impl MetaLock {
    /// Takes the lock guarding `file` (see [`lock_path`]), waiting up to `timeout` for
    /// another holder to let go.
    pub fn acquire(file: &Utf8Path, timeout: Duration) -> Result<MetaLock, Error> {
        let lockfile = absolute(&lock_path(file))?;
        let claim = Utf8PathBuf::from(format!(
            "{lockfile}{SEP}{}{SEP}{}{SEP}{}",
            hostname(),
            std::process::id(),
            random_u63()
        ));
        write_claim(&claim)?;
        let mut lock = MetaLock {
            lockfile,
            claim,
            held: false,
        };
        // From here on, dropping `lock` on an error path unlinks the claim.
        lock.wait(timeout)?;
        lock.held = true;
        Ok(lock)
    }

    pub fn lockfile(&self) -> &Utf8Path {
        &self.lockfile
    }

    fn wait(&self, timeout: Duration) -> Result<(), Error> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(10);
        let mut last_seen = HolderDesc::Unknown;
        let mut announced = false;
        let mut breaks = 0;
        loop {
            let mut broke = false;
            match fs::hard_link(&self.claim, &self.lockfile) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if self.holds() {
                        return Ok(());
                    }
                    if let Some(content) = read_lock(&self.lockfile)? {
                        last_seen = match Holder::parse(&content) {
                            Some(h) if provably_gone(&h) => {
                                self.break_stale(&h)?;
                                broke = true;
                                HolderDesc::Claim(h)
                            }
                            Some(h) => HolderDesc::Claim(h),
                            None => HolderDesc::Unreadable(content),
                        };
                    }
                }
                // flufl.lock retries these: a claim not yet visible, or a stale NFS handle.
                Err(e) if is_gone(&e) => {}
                Err(e) => return Err(io_err(&self.lockfile)(e)),
            }
            // A break is followed by an attempt right away, deadline or not; breaks are
            // bounded so the loop is.
            if broke && breaks < 8 {
                breaks += 1;
                continue;
            }
            let waited = start.elapsed();
            if waited >= timeout {
                return Err(Error::Timeout {
                    lockfile: self.lockfile.clone(),
                    holder: last_seen,
                    bound: timeout,
                });
            }
            if !announced {
                announced = true;
                tracing::warn!(
                    "waiting up to {}s for {}, held by {last_seen}",
                    timeout.as_secs_f64(),
                    self.lockfile
                );
            }
            // Jittered so several waiters do not retry in step.
            let jitter = Duration::from_micros(random_u63() % 10_000);
            std::thread::sleep((pause + jitter).min(timeout - waited));
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// flufl.lock's test for ownership: the lock file has exactly two links (it and our claim)
    /// and names our claim.
    fn holds(&self) -> bool {
        let linked = fs::metadata(&self.lockfile).is_ok_and(|m| m.nlink() == 2);
        linked
            && read_lock(&self.lockfile)
                .ok()
                .flatten()
                .is_some_and(|c| c == self.claim.as_str())
    }

    /// Removes a lock whose holder is gone. The lock file is first renamed aside, so what is
    /// removed is exactly what was looked at: if someone took the lock in between, the rename
    /// moved their live lock, which is then put back.
    fn break_stale(&self, holder: &Holder) -> Result<(), Error> {
        let aside = Utf8PathBuf::from(format!(
            "{}{SEP}breaking{SEP}{}{SEP}{}",
            self.lockfile,
            std::process::id(),
            random_u63()
        ));
        match fs::rename(&self.lockfile, &aside) {
            Ok(()) => {}
            Err(e) if is_gone(&e) => return Ok(()),
            Err(e) => return Err(io_err(&self.lockfile)(e)),
        }
        let moved = read_lock(&aside)?;
        if moved.as_deref().map(str::trim) != Some(holder.claim.as_str()) {
            if let Err(e) = fs::hard_link(&aside, &self.lockfile) {
                tracing::error!(
                    "{}: could not put back a lock taken while breaking a stale one: {e}",
                    self.lockfile
                );
            }
            let _ = fs::remove_file(&aside);
            return Ok(());
        }
        remove_if_present(&aside)?;
        // The dead holder's claim; only ever a sibling claim of this very lock file, whatever
        // the lock file's content says.
        let claim = Utf8Path::new(&holder.claim);
        if claim.parent() == self.lockfile.parent()
            && claim
                .file_name()
                .zip(self.lockfile.file_name())
                .is_some_and(|(c, l)| c.starts_with(&format!("{l}{SEP}")))
        {
            remove_if_present(claim)?;
        }
        tracing::warn!(
            "broke the stale lock {}: its holder, pid {} on this host ({}), is no longer running",
            self.lockfile,
            holder.pid,
            holder.host
        );
        Ok(())
    }
}

impl Drop for MetaLock {
    /// flufl.lock's `unlock()`: remove the lock file only if it is still ours, then the claim.
    fn drop(&mut self) {
        if self.held && self.holds() {
            if let Err(e) = remove_if_present(&self.lockfile) {
                tracing::error!("unlocking: {e}");
            }
        } else if self.held && self.lockfile_names_someone_else() {
            tracing::error!(
                "{} was broken by another process while reprise held it",
                self.lockfile
            );
        }
        if let Err(e) = remove_if_present(&self.claim) {
            tracing::error!("removing lock claim: {e}");
        }
    }
}

impl MetaLock {
    fn lockfile_names_someone_else(&self) -> bool {
        read_lock(&self.lockfile)
            .ok()
            .flatten()
            .is_some_and(|c| c.trim() != self.claim.as_str())
    }
}

/// Only a holder on this host whose process no longer exists is provably gone. A holder on
/// another host, or whose pid is alive (even if it is someone else by now), or this very
/// process, is waited for.
fn provably_gone(holder: &Holder) -> bool {
    holder.host == hostname() && holder.pid != std::process::id() && !pid_alive(holder.pid)
}

fn pid_alive(pid: u32) -> bool {
    // 0 and negative pids name process groups; never "gone".
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return true;
    };
    // Signal 0 sends nothing; it only checks that the pid exists. EPERM means it exists but
    // belongs to someone else.
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(e) => e != rustix::io::Errno::SRCH,
    }
}

/// Writes a claim file holding its own name, with its mtime (and so the lock's expiry, once
/// linked) set `LIFETIME` ahead, as flufl.lock's `_write` and `_touch` do.
fn write_claim(claim: &Utf8Path) -> Result<(), Error> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(claim)
        .map_err(io_err(claim))?;
    f.write_all(claim.as_str().as_bytes())
        .map_err(io_err(claim))?;
    let expiry = SystemTime::now() + LIFETIME;
    f.set_times(FileTimes::new().set_accessed(expiry).set_modified(expiry))
        .map_err(io_err(claim))
}

/// The lock file's content; `None` when there is no lock file.
fn read_lock(lockfile: &Utf8Path) -> Result<Option<String>, Error> {
    match fs::read(lockfile) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if is_gone(&e) => Ok(None),
        Err(e) => Err(io_err(lockfile)(e)),
    }
}

fn remove_if_present(path: &Utf8Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Err(e) if !is_gone(&e) => Err(io_err(path)(e)),
        _ => Ok(()),
    }
}

/// ENOENT, or ESTALE which NFS servers return for a file removed meanwhile.
fn is_gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
        || e.raw_os_error() == Some(rustix::io::Errno::STALE.raw_os_error())
}

/// flufl.lock writes the claim's absolute-or-not path as given; an absolute one lets any
/// process that breaks the lock find the claim whatever its working directory.
fn absolute(path: &Utf8Path) -> Result<Utf8PathBuf, Error> {
    let abs = std::path::absolute(path).map_err(io_err(path))?;
    Utf8PathBuf::from_path_buf(abs).map_err(|p| Error::Io {
        path: path.to_owned(),
        source: io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not UTF-8", p.display()),
        ),
    })
}

/// A random number in flufl.lock's range (0..=sys.maxsize).
fn random_u63() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish() & (i64::MAX as u64)
}

/// The host name flufl.lock puts in claims: Python's `socket.getfqdn()`, which resolves the
/// node name to an address and takes the name that address resolves back to, or keeps the
/// node name when either lookup fails. Computed once.
pub fn hostname() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        let node = node_name();
        reverse_resolved(&node).unwrap_or(node)
    })
}

fn node_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// The name the node name's first address resolves back to (getaddrinfo, then getnameinfo
/// with NI_NAMEREQD), as Python's `gethostbyaddr(name)[0]`.
fn reverse_resolved(name: &str) -> Option<String> {
    let addr = dns_lookup::lookup_host(name).ok()?.next()?;
    dns_lookup::lookup_addr(&addr)
        .ok()
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests;
