//! Write-behind: an ingest returns once its rows are committed, and its new
//! files reach the disk behind it.
//!
//! Flushing an ingest's data before its rows (two `syncfs`) made a pull of
//! one big layer wait for the disk to write every byte: 350 MB at the
//! 160-250 MB/s of the disk here. Docker, podman and skopeo do not wait for
//! it at all, and after a power loss may serve zero-length files. strata
//! commits first and flushes behind, and never serves what did not reach
//! the disk:
//!
//! 1. The publish commits its rows together with a *batch* row in
//!    `unflushed`: this boot's id and the digests of the files and blobs it
//!    added. No `syncfs` on the ingest's path.
//! 2. A detached `strata __flush ID` (started by the publish) takes the
//!    flock of `locks/flushed`, runs `syncfs` and writes `ID` there (and
//!    fdatasyncs it): every batch up to `ID` is on disk, since each was
//!    committed before that flush began. Later publishes drop those rows.
//!    `strata system sync` does the same, waiting, for every batch so far.
//! 3. Within one boot nothing more is needed: the page cache holds what the
//!    disk does not yet. Every process that opens the store looks for
//!    batches of another boot that `locks/flushed` does not cover (the
//!    machine went down before their flush) and verifies their objects
//!    against their digests. What lost its content is removed with what
//!    names it: the images and build-cache entries using a damaged layer
//!    (an image a container uses keeps its rows and is reported damaged by
//!    fsck), so pulling, loading or building it again restores it.
//!
//! Where no flusher program is set (the library without the `strata`
//! binary, as in unit tests) or the boot id cannot be read, publishing
//! flushes before it commits, as it always did.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nix::fcntl::{Flock, FlockArg};
use rusqlite::{OptionalExtension, Transaction, TransactionBehavior};

use super::{Store, StoreError};
use crate::digest::Digest;

/// The id of the last batch known to be on disk, in decimal, padded to
/// [`SEQ_WIDTH`]; its flock serialises flushers and recovery.
const FLUSHED: &str = "locks/flushed";
const SEQ_WIDTH: usize = 20;

static FLUSHER: OnceLock<PathBuf> = OnceLock::new();
/// The flushers this process started and has not reaped yet.
static FLUSHERS: std::sync::Mutex<Vec<std::process::Child>> = std::sync::Mutex::new(Vec::new());

/// Makes publishes write behind, flushed by `program __flush ID` (the
/// `strata` binary sets itself at start).
pub fn set_flusher_program(program: PathBuf) {
    let _ = FLUSHER.set(program);
}

/// This boot's id, or None where it cannot be read.
fn boot_id() -> Option<String> {
    static BOOT: OnceLock<Option<String>> = OnceLock::new();
    BOOT.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    })
    .clone()
}

/// What a publish needs to write behind: the flusher and the boot id.
pub(super) struct WriteBehind {
    program: PathBuf,
    boot: String,
}

/// Whether publishes write behind (see the module header), and with what.
pub(super) fn write_behind() -> Option<WriteBehind> {
    Some(WriteBehind {
        program: FLUSHER.get()?.clone(),
        boot: boot_id()?,
    })
}

fn flushed_path(root: &Path) -> PathBuf {
    root.join(FLUSHED)
}

fn open_flushed(root: &Path, create: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .mode(0o600)
        .open(flushed_path(root))
}

/// The last batch id on disk, as `locks/flushed` says (0 if never).
fn read_seq(file: &File) -> i64 {
    let mut buf = [0u8; SEQ_WIDTH];
    match file.read_at(&mut buf, 0) {
        Ok(n) => std::str::from_utf8(&buf[..n])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0),
        Err(_) => 0,
    }
}

fn write_seq(file: &File, seq: i64) -> io::Result<()> {
    file.write_all_at(format!("{seq:0width$}", width = SEQ_WIDTH).as_bytes(), 0)?;
    file.sync_data()
}

fn concat(digests: impl Iterator<Item = Digest>) -> Vec<u8> {
    let mut out = Vec::new();
    for d in digests {
        out.extend_from_slice(d.bytes());
    }
    out
}

fn split(bytes: &[u8]) -> Vec<Digest> {
    bytes
        .chunks_exact(32)
        .filter_map(|c| <[u8; 32]>::try_from(c).ok())
        .map(Digest::from_bytes)
        .collect()
}

impl WriteBehind {
    /// In the publish's transaction: drops the batches already flushed and
    /// records this one; returns its id for [`WriteBehind::start_flusher`].
    pub(super) fn record(
        &self,
        tx: &Transaction,
        root: &Path,
        files: impl Iterator<Item = Digest>,
        blobs: impl Iterator<Item = Digest>,
    ) -> Result<i64, StoreError> {
        let db = |e| StoreError::db(&root.join("strata.db"), e);
        let path = flushed_path(root);
        let file = open_flushed(root, true).map_err(|e| StoreError::io(&path, e))?;
        tx.execute("DELETE FROM unflushed WHERE id <= ?1", [read_seq(&file)])
            .map_err(db)?;
        tx.execute(
            "INSERT INTO unflushed(boot_id, files, blobs) VALUES (?1, ?2, ?3)",
            rusqlite::params![self.boot, concat(files), concat(blobs)],
        )
        .map_err(db)?;
        Ok(tx.last_insert_rowid())
    }

    /// Starts the detached flusher for batch `id`, committed by now, and
    /// says whether it started. If it cannot start, flushes here; a flush
    /// that fails leaves the batch to be verified after a crash, as if its
    /// flusher had been killed.
    pub(super) fn start_flusher(&self, root: &Path, id: i64) -> bool {
        match super::spawn_detached(&self.program, root, &["__flush", &id.to_string()]) {
            Ok(child) => {
                // No thread waits for it: a thread of its own in a process
                // that forks later (a build's RUN steps) could hold a
                // lock the child would then wait on for ever. Flushers
                // that ended are reaped at the next start instead (the
                // snapshotter lives long); a command's own are reparented
                // when it exits.
                let mut running = FLUSHERS.lock().unwrap_or_else(|p| p.into_inner());
                running.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_)) | Err(_)));
                running.push(child);
                true
            }
            Err(_) => {
                if let Err(e) = flush_through(root, id) {
                    eprintln!("strata: warning: flushing the store: {e}");
                }
                false
            }
        }
    }
}

/// Makes every batch up to `id` durable (the detached flusher's work, and
/// `system sync`'s): waits for any flusher in progress, then flushes the
/// filesystem unless a flush since covered `id`, and checkpoints the
/// database (still holding the lock, so a `system sync` after an ingest
/// returns once its flusher has written everything it will). A store
/// removed meanwhile (`locks/flushed` gone) needs nothing.
pub fn flush_through(root: &Path, id: i64) -> Result<(), StoreError> {
    let path = flushed_path(root);
    let file = match open_flushed(root, false) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::io(&path, e)),
    };
    let lock = Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| StoreError::io(&path, e.into()))?;
    if read_seq(&lock) >= id {
        return Ok(());
    }
    nix::unistd::syncfs(lock.as_raw_fd()).map_err(|e| StoreError::io(root, e.into()))?;
    write_seq(&lock, id).map_err(|e| StoreError::io(&path, e))?;
    checkpoint_behind(root);
    Ok(())
}

/// After a flush: copies what the WAL holds into the database, without
/// waiting for anyone (a `PASSIVE` checkpoint: what readers still use
/// stays in the WAL for the next one). The publish that started this
/// flusher left it the checkpoint its commit would have run (stage.rs).
/// The database is opened only if it is there, never created, so a store
/// removed meanwhile stays removed; any failure leaves the checkpoint to
/// the next commit past `WAL_AUTOCHECKPOINT` pages.
fn checkpoint_behind(root: &Path) {
    use rusqlite::{config::DbConfig, Connection, OpenFlags};
    let Ok(conn) = Connection::open_with_flags(
        root.join("strata.db"),
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    ) else {
        return;
    };
    // As in every command: its close neither checkpoints nor removes the
    // WAL (Store::open).
    let _ = conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true);
    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
}

/// `strata system sync`: waits until everything ingested so far is on
/// disk; returns how many batches were waiting.
pub fn sync_all(store: &Store) -> Result<usize, StoreError> {
    let db = |e| store.db_err(e);
    let (count, last): (i64, Option<i64>) = store
        .conn()
        .query_row("SELECT COUNT(*), MAX(id) FROM unflushed", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(db)?;
    let Some(last) = last else {
        return Ok(0);
    };
    let path = flushed_path(store.root());
    open_flushed(store.root(), true).map_err(|e| StoreError::io(&path, e))?;
    flush_through(store.root(), last)?;
    super::stage::remove_spent(store.root(), false);
    store
        .conn()
        .execute("DELETE FROM unflushed WHERE id <= ?1", [last])
        .map_err(db)?;
    Ok(count as usize)
}

/// At every open: verifies what batches of an earlier boot left unflushed
/// (see the module header). Costs one query when there is nothing to do.
pub(super) fn recover_if_needed(store: &Store) -> Result<(), StoreError> {
    let boots: Vec<String> = {
        let mut stmt = store
            .conn()
            .prepare_cached("SELECT DISTINCT boot_id FROM unflushed")
            .map_err(|e| store.db_err(e))?;
        let rows = stmt
            .query_map([], |r| r.get(0))
            .map_err(|e| store.db_err(e))?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| store.db_err(e))?
    };
    if boots.is_empty() {
        return Ok(());
    }
    let boot = boot_id().unwrap_or_default();
    if boots.iter().all(|b| *b == boot) {
        return Ok(());
    }
    let recovered = recover(store, &boot)?;
    if let Some(message) = recovered.message() {
        eprintln!("strata: warning: {message}");
    }
    Ok(())
}

/// What a recovery found and did.
#[derive(Debug, Default)]
pub struct Recovery {
    pub batches: usize,
    pub objects_checked: usize,
    pub lost_objects: usize,
    /// Tags (or ids) of the images removed.
    pub removed_images: Vec<String>,
    /// Ids of damaged images kept for the containers using them.
    pub kept_images: Vec<String>,
}

impl Recovery {
    fn message(&self) -> Option<String> {
        if self.lost_objects == 0 {
            return None;
        }
        let mut text = format!(
            "the machine went down before {} new files or blobs of a recent pull, load, build or commit reached the disk",
            self.lost_objects
        );
        if !self.removed_images.is_empty() {
            text.push_str(&format!(
                "; removed image(s) {} (pull, load or build them again)",
                self.removed_images.join(", ")
            ));
        }
        if !self.kept_images.is_empty() {
            text.push_str(&format!(
                "; image(s) {} stay for their containers but are damaged (`strata fsck` lists the files)",
                self.kept_images.join(", ")
            ));
        }
        Some(text)
    }
}

fn recover(store: &Store, boot: &str) -> Result<Recovery, StoreError> {
    let root = store.root();
    let db = |e| store.db_err(e);
    let path = flushed_path(root);
    let file = open_flushed(root, true).map_err(|e| StoreError::io(&path, e))?;
    let flushed = Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| StoreError::io(&path, e.into()))?;
    // No ingest may name a file while it is being judged.
    let _gc = store.lock_exclusive()?;
    let done = read_seq(&flushed);
    store
        .conn()
        .execute("DELETE FROM unflushed WHERE id <= ?1", [done])
        .map_err(db)?;
    type Batch = (i64, Vec<u8>, Vec<u8>);
    let batches: Vec<Batch> = {
        let mut stmt = store
            .conn()
            .prepare("SELECT id, files, blobs FROM unflushed WHERE boot_id != ?1")
            .map_err(db)?;
        let rows = stmt
            .query_map([boot], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)?
    };
    let mut report = Recovery {
        batches: batches.len(),
        ..Recovery::default()
    };
    if batches.is_empty() {
        return Ok(report);
    }
    let mut lost_files = Vec::new();
    let mut lost_blobs = Vec::new();
    for (_, files, blobs) in &batches {
        // Objects removed since (rmi, gc) are not looked for.
        for digest in split(files) {
            let size: Option<i64> = store
                .conn()
                .query_row(
                    "SELECT size FROM files WHERE digest = ?1",
                    [&digest.bytes()[..]],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db)?;
            let Some(size) = size else { continue };
            report.objects_checked += 1;
            if !intact(&store.file_path(&digest), &digest, Some(size)) {
                lost_files.push(digest);
            }
        }
        for digest in split(blobs) {
            if !store.has_blob(&digest)? {
                continue;
            }
            report.objects_checked += 1;
            if !intact(&store.blob_path(&digest), &digest, None) {
                lost_blobs.push(digest);
            }
        }
    }
    report.lost_objects = lost_files.len() + lost_blobs.len();
    // Nothing may serve what lost its content: the objects go first.
    for digest in &lost_files {
        let _ = std::fs::remove_file(store.file_path(digest));
    }
    for digest in &lost_blobs {
        let _ = std::fs::remove_file(store.blob_path(digest));
    }
    let tx =
        Transaction::new_unchecked(store.conn(), TransactionBehavior::Immediate).map_err(db)?;
    if report.lost_objects > 0 {
        remove_what_names(&tx, &lost_files, &lost_blobs, &mut report).map_err(db)?;
    }
    for (id, _, _) in &batches {
        tx.execute("DELETE FROM unflushed WHERE id = ?1", [id])
            .map_err(db)?;
    }
    tx.commit().map_err(db)?;
    // The removals above reach the disk before anything else is ingested.
    nix::unistd::syncfs(flushed.as_raw_fd()).map_err(|e| StoreError::io(root, e.into()))?;
    Ok(report)
}

/// Whether the object at `path` holds the content of `digest` (and `size`
/// bytes, when known).
fn intact(path: &Path, digest: &Digest, size: Option<i64>) -> bool {
    match super::fsck::hash_file(path) {
        Ok((actual, len)) => actual == *digest && size.is_none_or(|s| s as u64 == len),
        Err(_) => false,
    }
}

/// Removes the rows that name lost objects: the layers holding a lost
/// file, the images using such a layer or a lost blob (with their tags),
/// the build-cache entries using either; an image a container or mount
/// uses keeps its row, untagged. Then the rows of lost objects nothing
/// names any more.
fn remove_what_names(
    tx: &Transaction,
    files: &[Digest],
    blobs: &[Digest],
    report: &mut Recovery,
) -> rusqlite::Result<()> {
    tx.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS lost_files(digest BLOB PRIMARY KEY) WITHOUT ROWID;
         CREATE TEMP TABLE IF NOT EXISTS lost_blobs(digest TEXT PRIMARY KEY) WITHOUT ROWID;
         CREATE TEMP TABLE IF NOT EXISTS lost_layers(id INTEGER PRIMARY KEY);
         CREATE TEMP TABLE IF NOT EXISTS lost_images(id TEXT PRIMARY KEY) WITHOUT ROWID;
         DELETE FROM lost_files; DELETE FROM lost_blobs;
         DELETE FROM lost_layers; DELETE FROM lost_images;",
    )?;
    for d in files {
        tx.execute(
            "INSERT OR IGNORE INTO lost_files VALUES (?1)",
            [&d.bytes()[..]],
        )?;
    }
    for d in blobs {
        tx.execute(
            "INSERT OR IGNORE INTO lost_blobs VALUES (?1)",
            [d.to_string()],
        )?;
    }
    tx.execute_batch(
        "INSERT INTO lost_layers SELECT DISTINCT layer_id FROM entries
             WHERE file_digest IN (SELECT digest FROM lost_files);
         INSERT OR IGNORE INTO lost_images
             SELECT image_id FROM image_layers WHERE layer_id IN (SELECT id FROM lost_layers)
             UNION SELECT id FROM images WHERE manifest_digest IN (SELECT digest FROM lost_blobs)
                 OR config_digest IN (SELECT digest FROM lost_blobs);",
    )?;
    let images: Vec<(String, Option<String>, bool)> = {
        let mut stmt = tx.prepare(
            "SELECT i.id, (SELECT MIN(name) FROM tags t WHERE t.image_id = i.id),
                    EXISTS (SELECT 1 FROM containers c WHERE c.image_id = i.id)
                    OR EXISTS (SELECT 1 FROM mounts m WHERE m.image_id = i.id)
             FROM images i WHERE i.id IN (SELECT id FROM lost_images)",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    for (id, tag, used) in images {
        let name = tag.unwrap_or_else(|| id.clone());
        if used {
            report.kept_images.push(name);
        } else {
            report.removed_images.push(name);
        }
    }
    tx.execute_batch(
        "DELETE FROM tags WHERE image_id IN (SELECT id FROM lost_images);
         DELETE FROM repo_digests WHERE image_id IN (SELECT id FROM lost_images);
         DELETE FROM images WHERE id IN (SELECT id FROM lost_images)
             AND id NOT IN (SELECT image_id FROM containers)
             AND id NOT IN (SELECT image_id FROM mounts WHERE image_id IS NOT NULL);
         DELETE FROM build_cache WHERE config IN (SELECT digest FROM lost_blobs)
             OR key IN (SELECT key FROM build_cache_layers
                        WHERE layer_id IN (SELECT id FROM lost_layers));
         DELETE FROM layers WHERE id IN (SELECT id FROM lost_layers)
             AND id NOT IN (SELECT layer_id FROM image_layers
                            UNION SELECT layer_id FROM build_cache_layers
                            UNION SELECT layer_id FROM snapshots WHERE layer_id IS NOT NULL);
         DELETE FROM layer_blobs WHERE diff_id NOT IN (SELECT diff_id FROM layers);
         DELETE FROM files WHERE digest IN (SELECT digest FROM lost_files)
             AND digest NOT IN (SELECT file_digest FROM entries WHERE file_digest IS NOT NULL);
         DELETE FROM blobs WHERE digest IN (SELECT digest FROM lost_blobs)
             AND digest NOT IN (SELECT manifest_digest FROM images
                                UNION SELECT config_digest FROM images
                                UNION SELECT config FROM build_cache);",
    )?;
    Ok(())
}
