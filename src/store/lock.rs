//! The gc lock and ingest leases.
//!
//! Ingests hold `locks/gc.lock` shared, garbage collection exclusively.
//! So that a stuck ingest cannot hold gc (and `rmi`, `prune`) for ever,
//! each ingest also holds a lease, `locks/lease-<hex>`: its pid and start
//! time, and a progress stamp (the file's mtime, touched as bytes
//! arrive). gc waits while some lease is alive and progressing; when the
//! lock is still held but every lease's process is gone or has made no
//! progress for `stalled_ingest` seconds (`{"gc": {"stalled_ingest": 600}}`
//! in the root's `config.json`), gc revokes those leases (deletes their
//! files) and proceeds. A revoked ingest fails at its publish, which
//! checks its lease inside the transaction that would record its rows.
//!
//! `locks/gc.gate` keeps new ingests out meanwhile: an ingest takes it
//! shared only while it takes the lock and writes its lease; gc holds it
//! exclusively for its whole run. So every holder of the lock gc sees has
//! a lease, and none starts while gc proceeds without the lock. The
//! argument is in docs/store.md.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};

use super::StoreError;

/// A held flock on `locks/gc.lock` (and, for gc, `locks/gc.gate`);
/// released on drop.
pub struct GcLock {
    _lock: Option<Flock<File>>,
    _gate: Option<Flock<File>>,
    revoked: usize,
}

fn open_lock_file(root: &Path, name: &str) -> Result<(PathBuf, File), StoreError> {
    let path = root.join("locks").join(name);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::io(&path, e))?;
    Ok((path, file))
}

fn flock(root: &Path, name: &str, arg: FlockArg) -> Result<Flock<File>, StoreError> {
    let (path, file) = open_lock_file(root, name)?;
    Flock::lock(file, arg).map_err(|(_, e)| StoreError::io(&path, e.into()))
}

/// The flock, or None when another holds it.
fn try_flock(root: &Path, name: &str, arg: FlockArg) -> Result<Option<Flock<File>>, StoreError> {
    let (path, file) = open_lock_file(root, name)?;
    match Flock::lock(file, arg) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(StoreError::io(&path, e.into())),
    }
}

/// Held while a process makes a new database a WAL database and creates
/// its schema (see `Store::open`); released on drop.
pub(super) fn init_lock(root: &Path) -> Result<Flock<File>, StoreError> {
    flock(root, "init.lock", FlockArg::LockExclusive)
}

/// Whether the SQLite database at `path` is already in WAL mode: its
/// header's read and write format versions (bytes 18 and 19) are 2.
pub(super) fn is_wal_database(path: &Path) -> bool {
    use std::io::Read;
    let mut header = [0u8; 20];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut header))
        .is_ok()
        && header[18] == 2
        && header[19] == 2
}

const LOCK: &str = "gc.lock";
const GATE: &str = "gc.gate";
const LEASE_PREFIX: &str = "lease-";

/// How often gc looks at the leases while the lock is held.
const POLL: Duration = Duration::from_millis(100);

impl GcLock {
    /// For an ingest: the lock shared (waiting while gc runs), and a
    /// lease written before anyone can see the lock held.
    pub(super) fn for_ingest(root: &Path) -> Result<(GcLock, Lease), StoreError> {
        let gate = flock(root, GATE, FlockArg::LockShared)?;
        let lock = flock(root, LOCK, FlockArg::LockShared)?;
        let lease = Lease::create(root)?;
        drop(gate);
        Ok((
            GcLock {
                _lock: Some(lock),
                _gate: None,
                revoked: 0,
            },
            lease,
        ))
    }

    /// For gc: keeps new ingests out, then waits for the ingests in
    /// progress, or revokes the leases of those whose process is gone or
    /// that made no progress for the configured bound.
    pub fn exclusive(root: &Path) -> Result<GcLock, StoreError> {
        let stalled_after = stalled_ingest_bound(root)?;
        let gate = flock(root, GATE, FlockArg::LockExclusive)?;
        loop {
            if let Some(lock) = try_flock(root, LOCK, FlockArg::LockExclusiveNonblock)? {
                // No ingest runs: what leases remain are of dead processes.
                for lease in read_leases(root) {
                    let _ = std::fs::remove_file(&lease.path);
                }
                return Ok(GcLock {
                    _lock: Some(lock),
                    _gate: Some(gate),
                    revoked: 0,
                });
            }
            let leases = read_leases(root);
            let live = leases
                .iter()
                .filter(|l| l.alive() && !l.stalled(stalled_after))
                .count();
            // A holder without a lease (an older strata) cannot be
            // revoked: wait for it.
            if live == 0 && !leases.is_empty() {
                for lease in &leases {
                    tracing::warn!(
                        "revoking the lease of ingest process {} ({}): {}",
                        lease.pid,
                        lease.path.display(),
                        if lease.alive() { "no progress" } else { "gone" }
                    );
                    let _ = std::fs::remove_file(&lease.path);
                }
                return Ok(GcLock {
                    _lock: None,
                    _gate: Some(gate),
                    revoked: leases.len(),
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// The lock exclusively, at once, or None while an ingest (or gc)
    /// holds it.
    pub fn try_exclusive(root: &Path) -> Result<Option<GcLock>, StoreError> {
        let Some(gate) = try_flock(root, GATE, FlockArg::LockExclusiveNonblock)? else {
            return Ok(None);
        };
        Ok(
            try_flock(root, LOCK, FlockArg::LockExclusiveNonblock)?.map(|lock| GcLock {
                _lock: Some(lock),
                _gate: Some(gate),
                revoked: 0,
            }),
        )
    }

    /// How many leases gc revoked to proceed (0 when it holds the lock).
    pub fn revoked(&self) -> usize {
        self.revoked
    }
}

/// An ingest's lease: removed when the ingest ends.
pub struct Lease {
    path: PathBuf,
    file: File,
    last_touch: AtomicU64,
}

impl Lease {
    fn create(root: &Path) -> Result<Lease, StoreError> {
        let path = root
            .join("locks")
            .join(format!("{LEASE_PREFIX}{:016x}", rand::random::<u64>()));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| StoreError::io(&path, e))?;
        let pid = std::process::id();
        let start = process_start_time(pid as i32).unwrap_or(0);
        file.write_all(format!("{pid} {start}\n").as_bytes())
            .map_err(|e| StoreError::io(&path, e))?;
        Ok(Lease {
            path,
            file,
            last_touch: AtomicU64::new(now_secs()),
        })
    }

    /// Stamps progress (at most once a second).
    pub fn touch(&self) {
        let now = now_secs();
        if self.last_touch.swap(now, Ordering::Relaxed) != now {
            let _ = self.file.set_modified(SystemTime::now());
        }
    }

    /// Whether gc has not revoked the lease.
    pub fn is_held(&self) -> bool {
        self.path.exists()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A lease as gc reads it.
struct LeaseFile {
    path: PathBuf,
    pid: i32,
    start: u64,
    modified: Option<SystemTime>,
}

impl LeaseFile {
    fn alive(&self) -> bool {
        process_start_time(self.pid) == Some(self.start)
    }

    fn stalled(&self, bound: Duration) -> bool {
        self.modified
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age > bound)
    }
}

fn read_leases(root: &Path) -> Vec<LeaseFile> {
    let Ok(items) = std::fs::read_dir(root.join("locks")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items.flatten() {
        if !item.file_name().to_string_lossy().starts_with(LEASE_PREFIX) {
            continue;
        }
        let path = item.path();
        // No lease is written while gc looks (the gate): one without a
        // pid is of a process that died writing it.
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let mut fields = text.split_whitespace();
        let (pid, start) = match (fields.next(), fields.next()) {
            (Some(p), Some(s)) => (p.parse().unwrap_or(0), s.parse().unwrap_or(0)),
            _ => (0, 0),
        };
        out.push(LeaseFile {
            modified: item.metadata().and_then(|m| m.modified()).ok(),
            path,
            pid,
            start,
        });
    }
    out
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The start time of a process (field 22 of /proc/PID/stat), or None if
/// there is no such (live) process.
fn process_start_time(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if matches!(fields.first(), Some(&"Z") | Some(&"X")) {
        return None;
    }
    fields.get(19)?.parse().ok()
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct ConfigFile {
    gc: GcSettings,
}

#[derive(serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct GcSettings {
    /// Seconds without progress after which an ingest's lease no longer
    /// holds gc.
    stalled_ingest: u64,
}

impl Default for GcSettings {
    fn default() -> Self {
        GcSettings {
            stalled_ingest: 600,
        }
    }
}

/// `gc.stalled_ingest` from the root's `config.json` (600 s by default).
fn stalled_ingest_bound(root: &Path) -> Result<Duration, StoreError> {
    let path = root.join("config.json");
    let corrupt = |what: String| StoreError::Corrupt {
        path: path.clone(),
        what,
    };
    let settings = match std::fs::read(&path) {
        Ok(data) => {
            serde_json::from_slice::<ConfigFile>(&data)
                .map_err(|e| corrupt(e.to_string()))?
                .gc
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => GcSettings::default(),
        Err(e) => return Err(StoreError::io(&path, e)),
    };
    if settings.stalled_ingest == 0 {
        return Err(corrupt(
            "gc.stalled_ingest must be at least 1 second".into(),
        ));
    }
    Ok(Duration::from_secs(settings.stalled_ingest))
}
