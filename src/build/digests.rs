//! The content digests of context files, remembered by their stat
//! (device, inode, size, mtime and ctime in nanoseconds) in the store's
//! `build_file_digests` table, so a rebuild hashes only what changed: a
//! COPY of 9,000 unchanged files costs 9,000 lookups, not 300 MB of
//! hashing. Any change to a file's content changes its mtime and ctime,
//! so a stale row is never used (a touch rehashes, and finds the same
//! digest). Rows of paths no longer there are harmless and bounded by
//! the contexts built; `builder prune -a` empties the table.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rusqlite::{params, OptionalExtension};

use super::error::BuildError;
use crate::digest::Digest;
use crate::store::Store;

fn stat_key(meta: &std::fs::Metadata) -> (i64, i64, i64, i64, i64) {
    (
        meta.dev() as i64,
        meta.ino() as i64,
        meta.len() as i64,
        meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
    )
}

/// The digest of the regular file at `path` (with `meta` its lstat):
/// remembered when its stat has not changed, else hashed and remembered.
pub fn file_digest(
    store: &Store,
    path: &Path,
    meta: &std::fs::Metadata,
) -> Result<Digest, BuildError> {
    let key = stat_key(meta);
    let conn = store.conn();
    let name = path.as_os_str().as_bytes();
    let known: Option<(i64, i64, i64, i64, i64, Vec<u8>)> = conn
        .prepare_cached(
            "SELECT dev, ino, size, mtime_ns, ctime_ns, digest FROM build_file_digests WHERE path = ?1",
        )?
        .query_row([name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
        .optional()?;
    if let Some((dev, ino, size, mtime, ctime, digest)) = known {
        if (dev, ino, size, mtime, ctime) == key {
            if let Ok(bytes) = <[u8; 32]>::try_from(digest.as_slice()) {
                return Ok(Digest::from_bytes(bytes));
            }
        }
    }
    let digest = super::instructions::hash_file(path).map_err(|e| BuildError::io(path, e))?;
    // Remember it only if the file did not change while it was read.
    if let Ok(after) = std::fs::symlink_metadata(path) {
        if stat_key(&after) == key {
            let _ = conn
                .prepare_cached(
                    "INSERT OR REPLACE INTO build_file_digests(path, dev, ino, size, mtime_ns, ctime_ns, digest)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .and_then(|mut s| {
                    s.execute(params![name, key.0, key.1, key.2, key.3, key.4, &digest.bytes()[..]])
                });
        }
    }
    Ok(digest)
}

/// Forgets every remembered digest.
pub fn forget_all(store: &Store) -> Result<(), BuildError> {
    store.conn().execute("DELETE FROM build_file_digests", [])?;
    Ok(())
}
