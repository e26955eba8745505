//! Staging: new files and blobs are written under `tmp/stage-*/`, hashed
//! on the way, and published all at once.
//!
//! Publishing flushes the staged data with one `syncfs`, renames each
//! object to its final name, flushes the directories, and only then
//! commits the rows that name them. A crash before the commit leaves at
//! most unreferenced (but complete and verified) objects, which gc removes.

use std::collections::{BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use rusqlite::{Transaction, TransactionBehavior};

use super::{GcLock, Store, StoreError};
use crate::digest::{Digest, Hasher};

/// Files up to this size are hashed in memory before anything is written,
/// so content already in the store costs no write at all.
const SMALL_FILE: u64 = 1 << 20;
const COPY_BUFFER: usize = 1 << 20;

pub struct Staging {
    dir: PathBuf,
    files: HashMap<Digest, u64>,
    blobs: HashMap<Digest, (u64, Option<String>)>,
    next_part: u64,
    buffer: Vec<u8>,
    _dir_lock: Flock<File>,
    _gc: GcLock,
}

impl Staging {
    pub(super) fn new(store: &Store) -> Result<Staging, StoreError> {
        let gc = GcLock::shared(store.root())?;
        let dir = store
            .tmp_dir()
            .join(format!("stage-{:016x}", rand::random::<u64>()));
        std::fs::create_dir(&dir).map_err(|e| StoreError::io(&dir, e))?;
        let lock_path = dir.join(".lock");
        let file = File::create(&lock_path).map_err(|e| StoreError::io(&lock_path, e))?;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| StoreError::io(&lock_path, e.into()))?;
        Ok(Staging {
            dir,
            files: HashMap::new(),
            blobs: HashMap::new(),
            next_part: 0,
            buffer: Vec::new(),
            _dir_lock: lock,
            _gc: gc,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of distinct new files staged so far.
    pub fn staged_files(&self) -> usize {
        self.files.len()
    }

    /// Reads exactly `size` bytes of a regular file's content from `reader`,
    /// stages them unless the store (or this staging) already has them,
    /// and returns their digest.
    pub fn stage_file(
        &mut self,
        store: &Store,
        reader: &mut dyn Read,
        size: u64,
    ) -> Result<Digest, StoreError> {
        if size <= SMALL_FILE {
            self.buffer.clear();
            self.buffer.reserve(size as usize);
            let got = reader
                .take(size)
                .read_to_end(&mut self.buffer)
                .map_err(|e| StoreError::io(&self.dir, e))?;
            if got as u64 != size {
                return Err(truncated(&self.dir));
            }
            let digest = Digest::of(&self.buffer);
            if !self.files.contains_key(&digest) && !store.has_file(&digest)? {
                let path = self.dir.join(digest.hex());
                create_read_only(&path)?
                    .write_all(&self.buffer)
                    .map_err(|e| StoreError::io(&path, e))?;
                self.files.insert(digest, size);
            }
            return Ok(digest);
        }
        let part = self.dir.join(format!("part-{}", self.next_part));
        self.next_part += 1;
        let mut out = create_read_only(&part)?;
        let mut hasher = Hasher::new();
        let mut left = size;
        self.buffer.resize(COPY_BUFFER, 0);
        while left > 0 {
            let want = left.min(COPY_BUFFER as u64) as usize;
            let n = reader
                .read(&mut self.buffer[..want])
                .map_err(|e| StoreError::io(&part, e))?;
            if n == 0 {
                let _ = std::fs::remove_file(&part);
                return Err(truncated(&part));
            }
            hasher.update(&self.buffer[..n]);
            out.write_all(&self.buffer[..n])
                .map_err(|e| StoreError::io(&part, e))?;
            left -= n as u64;
        }
        drop(out);
        let digest = hasher.finish();
        if self.files.contains_key(&digest) || store.has_file(&digest)? {
            std::fs::remove_file(&part).map_err(|e| StoreError::io(&part, e))?;
        } else {
            let path = self.dir.join(digest.hex());
            std::fs::rename(&part, &path).map_err(|e| StoreError::io(&path, e))?;
            self.files.insert(digest, size);
        }
        Ok(digest)
    }

    /// Stages a blob (manifest, index, config) whose bytes are in memory.
    pub fn stage_blob(
        &mut self,
        store: &Store,
        data: &[u8],
        media_type: Option<&str>,
    ) -> Result<Digest, StoreError> {
        let digest = Digest::of(data);
        if !self.blobs.contains_key(&digest) && !store.has_blob(&digest)? {
            let path = self.dir.join(format!("blob-{}", digest.hex()));
            std::fs::write(&path, data).map_err(|e| StoreError::io(&path, e))?;
            self.blobs
                .insert(digest, (data.len() as u64, media_type.map(str::to_string)));
        }
        Ok(digest)
    }

    /// Moves everything `other` staged into this staging (renames within
    /// `tmp/`), so that content staged in parallel is published at once:
    /// one flush, one transaction.
    pub fn absorb(&mut self, other: Staging) -> Result<(), StoreError> {
        for (digest, size) in &other.files {
            if !self.files.contains_key(digest) {
                let (from, to) = (other.dir.join(digest.hex()), self.dir.join(digest.hex()));
                std::fs::rename(&from, &to).map_err(|e| StoreError::io(&to, e))?;
                self.files.insert(*digest, *size);
            }
        }
        for (digest, blob) in &other.blobs {
            if !self.blobs.contains_key(digest) {
                let name = format!("blob-{}", digest.hex());
                let (from, to) = (other.dir.join(&name), self.dir.join(&name));
                std::fs::rename(&from, &to).map_err(|e| StoreError::io(&to, e))?;
                self.blobs.insert(*digest, blob.clone());
            }
        }
        Ok(())
    }

    /// Flushes and renames every staged object into place, then runs
    /// `record` in one immediate transaction that also inserts the rows of
    /// the new files and blobs, and commits it.
    pub fn publish<T, E>(
        self,
        store: &Store,
        record: impl FnOnce(&Transaction) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let dir_file = File::open(&self.dir).map_err(|e| StoreError::io(&self.dir, e))?;
        nix::unistd::syncfs(dir_file.as_raw_fd())
            .map_err(|e| StoreError::io(&self.dir, e.into()))?;
        let mut touched: BTreeSet<PathBuf> = BTreeSet::new();
        for digest in self.files.keys() {
            let target = store.file_path(digest);
            let parent = target.parent().unwrap_or(store.root()).to_path_buf();
            if !touched.contains(&parent) {
                match std::fs::create_dir(&parent) {
                    Ok(()) => {
                        touched.insert(store.root().join("files"));
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(StoreError::io(&parent, e).into()),
                }
                touched.insert(parent);
            }
            let source = self.dir.join(digest.hex());
            std::fs::rename(&source, &target).map_err(|e| StoreError::io(&target, e))?;
        }
        for digest in self.blobs.keys() {
            let target = store.blob_path(digest);
            let source = self.dir.join(format!("blob-{}", digest.hex()));
            std::fs::rename(&source, &target).map_err(|e| StoreError::io(&target, e))?;
            touched.insert(store.root().join("blobs/sha256"));
        }
        for dir in &touched {
            fsync_dir(dir)?;
        }
        let conn = store.conn();
        let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
            .map_err(|e| store.db_err(e))?;
        {
            let mut insert_file = tx
                .prepare_cached("INSERT OR IGNORE INTO files(digest, size) VALUES (?1, ?2)")
                .map_err(|e| store.db_err(e))?;
            for (digest, size) in &self.files {
                insert_file
                    .execute(rusqlite::params![&digest.bytes()[..], *size as i64])
                    .map_err(|e| store.db_err(e))?;
            }
            let mut insert_blob = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO blobs(digest, size, media_type) VALUES (?1, ?2, ?3)",
                )
                .map_err(|e| store.db_err(e))?;
            for (digest, (size, media_type)) in &self.blobs {
                insert_blob
                    .execute(rusqlite::params![
                        digest.to_string(),
                        *size as i64,
                        media_type
                    ])
                    .map_err(|e| store.db_err(e))?;
            }
        }
        let value = record(&tx)?;
        tx.commit().map_err(|e| store.db_err(e))?;
        Ok(value)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn truncated(path: &Path) -> StoreError {
    StoreError::io(
        path,
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "stream ended inside a file's content",
        ),
    )
}

/// Creates a store file read-only (0444) from the start: the open
/// descriptor may still write it, and publishing needs no chmod.
fn create_read_only(path: &Path) -> Result<File, StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(path)
        .map_err(|e| StoreError::io(path, e))
}

/// fsync of a directory, so a rename into it is durable.
pub fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    let file = OpenOptions::new()
        .read(true)
        .open(dir)
        .map_err(|e| StoreError::io(dir, e))?;
    file.sync_all().map_err(|e| StoreError::io(dir, e))
}
