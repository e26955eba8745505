//! The content store: one root directory holding a SQLite index, the exact
//! bytes of manifests and configs (`blobs/`), every regular file's content
//! once (`files/`), and staging space (`tmp/`).
//!
//! Guarantees: nothing becomes visible under `blobs/` or `files/` before it
//! was hashed and written; a row never names a file that is not already
//! published (publish = write to `tmp/`, rename, commit the SQLite
//! transaction with a batch row, then flush behind it: `flush.rs`; after
//! a crash before that flush, the next process verifies the batch's
//! objects and removes whatever names one that lost its content). Ingests hold the gc lock shared and
//! garbage collection holds it exclusively, so gc never removes what an
//! ingest in progress is about to reference. The store is its owner's:
//! other users may reach `mounts/` (image mounts) and nothing else
//! (`permissions.rs`). See docs/store.md.

mod error;
mod flush;
mod fsck;
mod gc;
pub mod layer_dirs;
mod lock;
pub mod permissions;
mod schema;
mod stage;
pub(crate) mod sys;
mod usage;
pub mod views;

pub use error::StoreError;
pub use flush::{flush_through, set_flusher_program, sync_all, Recovery};
pub use fsck::{fsck, FsckReport};
pub use gc::{collect_garbage, GcReport};
pub use lock::GcLock;
pub use schema::SCHEMA_VERSION;
pub use stage::{remove_spent, StagedFile, Staging};
pub use usage::{deduplication, dir_size, disk_usage, disk_usage_sized, Deduplication, DiskUsage};

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::Connection;

use crate::digest::Digest;

/// The WAL pages past which a commit checkpoints them into the database
/// (SQLite's `wal_autocheckpoint`; a publish that a flusher follows leaves
/// it to the flusher: flush.rs, `flush_through`).
const WAL_AUTOCHECKPOINT: u32 = 256;

/// An open store root.
pub struct Store {
    root: PathBuf,
    conn: Connection,
}

/// Starts `program --root ROOT ARGS...` (this binary's hidden helper
/// commands: the flusher, a view's builder) detached: its own process
/// group, no stdio. No thread waits for it (the flusher's are reaped at
/// the next start, see flush.rs); a command's helpers are reparented when
/// it exits.
pub(crate) fn spawn_detached(
    program: &Path,
    root: &Path,
    args: &[&str],
) -> std::io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    Command::new(program)
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
}

/// Where the content of the regular file with this digest lives in the
/// store at `root`.
pub fn file_path_in(root: &Path, digest: &Digest) -> PathBuf {
    // One allocation: this runs for every file of every mounted directory.
    let hex = digest.hex();
    let root = root.as_os_str();
    let mut path = std::ffi::OsString::with_capacity(root.len() + 76);
    path.push(root);
    path.push("/files/");
    path.push(&hex[..2]);
    path.push("/");
    path.push(&hex);
    PathBuf::from(path)
}

impl Store {
    /// Opens (creating if needed) the store at `root` and brings its schema
    /// up to date.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        // Private to the owner but for `mounts/` (see permissions.rs).
        permissions::secure_root(root)?;
        for dir in [
            "blobs",
            "blobs/sha256",
            "files",
            "tmp",
            "locks",
            "containers",
            "volumes",
        ] {
            permissions::create_private_dir(&root.join(dir))?;
        }
        permissions::create_dir_with_mode(
            &root.join(permissions::PUBLIC_DIR),
            permissions::PUBLIC_DIR_MODE,
        )?;
        let db_path = root.join("strata.db");
        permissions::create_private_file(&db_path)?;
        // Switching a new database to WAL upgrades a read lock to a write
        // lock inside one statement, and SQLite answers SQLITE_BUSY at once
        // there instead of waiting: commands started together on a fresh
        // root take turns until the file is a WAL database.
        let _first_open = if lock::is_wal_database(&db_path) {
            None
        } else {
            Some(lock::init_lock(root)?)
        };
        let conn = Connection::open(&db_path).map_err(|e| StoreError::db(&db_path, e))?;
        conn.busy_timeout(Duration::from_secs(60))
            .map_err(|e| StoreError::db(&db_path, e))?;
        conn.execute_batch(&format!(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; \
             PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT};"
        ))
        .map_err(|e| StoreError::db(&db_path, e))?;
        // Every command is a short process. Checkpointing at its close
        // costs two fsyncs, deleting the WAL a discard on some disks, and
        // recreating it in the next command a directory fsync: the WAL
        // stays instead, and the commit that takes it past 256 pages
        // checkpoints it. Nothing is less durable (commits are fsynced
        // in the WAL); the next process to open replays at most 1 MiB.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
            .map_err(|e| StoreError::db(&db_path, e))?;
        let mut store = Store {
            root: root.to_path_buf(),
            conn,
        };
        schema::migrate(&mut store.conn).map_err(|e| StoreError::db(&db_path, e))?;
        flush::recover_if_needed(&store)?;
        Ok(store)
    }

    /// Closes the connection until [`Store::reopen`]. A process must hold
    /// none when it forks a child that opens the store itself: SQLite's
    /// POSIX locks belong to the process but its lock bookkeeping to the
    /// address space, so the child would believe it holds its parent's
    /// locks. Meanwhile the store has an empty in-memory database.
    pub fn close_connection(&mut self) -> Result<(), StoreError> {
        let placeholder = Connection::open_in_memory().map_err(|e| self.db_err(e))?;
        let conn = std::mem::replace(&mut self.conn, placeholder);
        conn.close().map_err(|(_, e)| self.db_err(e))
    }

    /// Opens the connection [`Store::close_connection`] closed.
    pub fn reopen(&mut self) -> Result<(), StoreError> {
        *self = Store::open(&self.root)?;
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Runs `write` with `synchronous=NORMAL`, restoring `FULL` afterwards
    /// (also after an error): for rows that describe running processes
    /// only (container state, address leases, published ports). In WAL
    /// mode the database stays consistent through a crash; a power loss
    /// may drop the last such commits, when every process they describe
    /// is gone anyway and the next command reaps what the rows still
    /// claim. See docs/store.md ("Durability").
    pub fn relaxed<T, E: From<rusqlite::Error>>(
        &self,
        write: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        // Inside a transaction the level cannot change (SQLite refuses
        // it there): the enclosing transaction's commit decides.
        if !self.conn.is_autocommit() {
            return write();
        }
        self.conn.execute_batch("PRAGMA synchronous = NORMAL")?;
        let result = write();
        self.conn.execute_batch("PRAGMA synchronous = FULL")?;
        result
    }

    pub fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Where the content of the regular file with this digest lives.
    pub fn file_path(&self, digest: &Digest) -> PathBuf {
        file_path_in(&self.root, digest)
    }

    /// Where the blob (manifest, index, config) with this digest lives.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Reads a published blob, verifying it against its digest.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let path = self.blob_path(digest);
        let data = std::fs::read(&path).map_err(|e| StoreError::io(&path, e))?;
        if Digest::of(&data) != *digest {
            return Err(StoreError::Corrupt {
                path,
                what: format!("content does not match {digest}"),
            });
        }
        Ok(data)
    }

    /// Whether a regular file with this digest is published.
    pub fn has_file(&self, digest: &Digest) -> Result<bool, StoreError> {
        file_is_named(&self.conn, digest).map_err(|e| self.db_err(e))
    }

    /// Whether a blob with this digest is published.
    pub fn has_blob(&self, digest: &Digest) -> Result<bool, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM blobs WHERE digest = ?1")
            .map_err(|e| self.db_err(e))?;
        stmt.exists([digest.to_string()])
            .map_err(|e| self.db_err(e))
    }

    /// Wraps a SQLite error with the database path.
    pub fn db_err(&self, e: rusqlite::Error) -> StoreError {
        StoreError::db(&self.root.join("strata.db"), e)
    }

    /// Starts staging new content; holds the gc lock shared until the
    /// staging is published or dropped.
    pub fn begin_staging(&self) -> Result<Staging, StoreError> {
        Staging::new(self)
    }

    /// Takes the gc lock exclusively (waits for ingests in progress).
    pub fn lock_exclusive(&self) -> Result<GcLock, StoreError> {
        GcLock::exclusive(&self.root)
    }
}

/// Whether a row of `conn`'s files table names this content (what
/// [`Store::has_file`] asks, for a connection without a `Store`).
fn file_is_named(conn: &rusqlite::Connection, digest: &Digest) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM files WHERE digest = ?1")?
        .exists([&digest.bytes()[..]])
}
