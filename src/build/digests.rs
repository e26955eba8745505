//! The content digests of context files, remembered by their stat
//! (device, inode, size, mtime and ctime in nanoseconds) in the store's
//! `build_file_digests` table, so a rebuild hashes only what changed.
//!
//! A COPY source reads what is remembered below it with one range query
//! ([`KnownDigests::load`]), so an unchanged context costs a directory
//! walk (getdents and an lstat per file) and no hashing nor per-file SQL.
//!
//! When a row is trusted: writing a file changes its ctime (which no
//! user can set) and a rename gives another inode, so a row whose stat
//! matches names the same content, with one exception, the one git calls
//! "racy": a write in the same clock tick as the stat that was recorded
//! leaves every field equal. So a digest is remembered only when the
//! file's ctime (the time of its last change, whatever its mtime says)
//! is at least [`RACY_MARGIN_NS`] older than the clock after hashing; a file changed just before a build is hashed
//! again by the next build too, and remembered by the one after. Rows of
//! paths no longer there are harmless and bounded by the contexts built;
//! `builder prune -a` empties the table.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rusqlite::params;

use super::error::BuildError;
use crate::digest::Digest;
use crate::store::Store;

/// How much older than the clock a file's times must be for its digest
/// to be remembered (larger than any filesystem's timestamp tick).
pub const RACY_MARGIN_NS: i64 = 2_000_000_000;

/// (dev, ino, size, mtime_ns, ctime_ns).
type StatKey = (i64, i64, i64, i64, i64);

fn stat_key(meta: &std::fs::Metadata) -> StatKey {
    (
        meta.dev() as i64,
        meta.ino() as i64,
        meta.len() as i64,
        meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
    )
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The digests remembered for the files at and below one path.
#[derive(Default)]
pub struct KnownDigests {
    rows: HashMap<Vec<u8>, (StatKey, [u8; 32])>,
}

impl KnownDigests {
    /// Everything remembered for `top` and the paths below it, in one
    /// query (a range of the table's primary key).
    pub fn load(store: &Store, top: &Path) -> Result<KnownDigests, BuildError> {
        let exact = top.as_os_str().as_bytes().to_vec();
        let base = exact.strip_suffix(b"/").unwrap_or(&exact);
        // Paths below `base` sort between `base/` and `base0` ('0' follows
        // '/' in byte order).
        let mut from = base.to_vec();
        from.push(b'/');
        let mut to = base.to_vec();
        to.push(b'0');
        let mut stmt = store.conn().prepare_cached(
            "SELECT path, dev, ino, size, mtime_ns, ctime_ns, digest FROM build_file_digests
              WHERE path = ?1 OR (path >= ?2 AND path < ?3)",
        )?;
        let mut rows = HashMap::new();
        let mut found = stmt.query(params![exact, from, to])?;
        while let Some(r) = found.next()? {
            let digest: Vec<u8> = r.get(6)?;
            let Ok(digest) = <[u8; 32]>::try_from(digest.as_slice()) else {
                continue;
            };
            rows.insert(
                r.get::<_, Vec<u8>>(0)?,
                (
                    (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?),
                    digest,
                ),
            );
        }
        Ok(KnownDigests { rows })
    }

    /// The digest of the regular file at `path` (with `meta` its lstat):
    /// remembered when its stat has not changed, else hashed (and
    /// remembered unless it changed while read, or too recently).
    pub fn file_digest(
        &self,
        store: &Store,
        path: &Path,
        meta: &std::fs::Metadata,
    ) -> Result<Digest, BuildError> {
        let key = stat_key(meta);
        let name = path.as_os_str().as_bytes();
        if let Some((known, digest)) = self.rows.get(name) {
            if *known == key {
                return Ok(Digest::from_bytes(*digest));
            }
        }
        let digest = super::instructions::hash_file(path).map_err(|e| BuildError::io(path, e))?;
        let settled = now_ns() - key.4 >= RACY_MARGIN_NS;
        let unchanged = std::fs::symlink_metadata(path).is_ok_and(|after| stat_key(&after) == key);
        if settled && unchanged {
            let _ = store
                .conn()
                .prepare_cached(
                    "INSERT OR REPLACE INTO build_file_digests(path, dev, ino, size, mtime_ns, ctime_ns, digest)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .and_then(|mut s| {
                    s.execute(params![name, key.0, key.1, key.2, key.3, key.4, &digest.bytes()[..]])
                });
        }
        Ok(digest)
    }
}

/// Forgets every remembered digest.
pub fn forget_all(store: &Store) -> Result<(), BuildError> {
    store.conn().execute("DELETE FROM build_file_digests", [])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remember(store: &Store, path: &str) {
        store
            .conn()
            .execute(
                "INSERT INTO build_file_digests(path, dev, ino, size, mtime_ns, ctime_ns, digest)
                 VALUES (?1, 1, 2, 3, 4, 5, ?2)",
                params![path.as_bytes(), &[7u8; 32][..]],
            )
            .unwrap();
    }

    #[test]
    fn one_query_loads_a_path_and_everything_below_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for p in [
            "/c/src",
            "/c/src/a",
            "/c/src/d/b",
            "/c/srcx",
            "/c/src0",
            "/c/sr",
        ] {
            remember(&store, p);
        }
        let known = KnownDigests::load(&store, Path::new("/c/src")).unwrap();
        let mut names: Vec<String> = known
            .rows
            .keys()
            .map(|k| String::from_utf8(k.clone()).unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["/c/src", "/c/src/a", "/c/src/d/b"]);
    }

    #[test]
    fn a_file_changed_just_now_is_hashed_but_not_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "content").unwrap();
        let meta = std::fs::symlink_metadata(&file).unwrap();
        let known = KnownDigests::default();
        let digest = known.file_digest(&store, &file, &meta).unwrap();
        assert_eq!(digest, Digest::of(b"content"));
        // Its ctime is within the racy margin: a write in the same clock
        // tick would leave the stat unchanged, so nothing is remembered.
        let rows: i64 = store
            .conn()
            .query_row("SELECT count(*) FROM build_file_digests", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 0);
    }
}
