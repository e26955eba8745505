//! The content digests of context files, remembered by their stat
//! (device, inode, size, mtime and ctime in nanoseconds) in the store's
//! `build_file_digests` table, so a rebuild hashes only what changed.
//!
//! A COPY source reads what is remembered below it with one range query
//! ([`KnownDigests::load`]), so an unchanged context costs a directory
//! walk (getdents per directory, an `fstatat` by name per file) and no
//! hashing nor per-file SQL.
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

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rusqlite::params;

use super::context::{lstat, Stat};
use super::error::BuildError;
use crate::digest::Digest;
use crate::store::Store;

/// How much older than the clock a file's times must be for its digest
/// to be remembered (larger than any filesystem's timestamp tick).
pub const RACY_MARGIN_NS: i64 = 2_000_000_000;

/// (dev, ino, size, mtime_ns, ctime_ns).
type StatKey = (i64, i64, i64, i64, i64);

fn stat_key(stat: &Stat) -> StatKey {
    (
        stat.dev() as i64,
        stat.ino() as i64,
        stat.size() as i64,
        stat.mtime_ns(),
        stat.ctime_ns(),
    )
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The digests remembered for the files at and below one path (the
/// walk's top), by their names relative to it: one arena of names and
/// rows sorted by name, looked up by binary search (no per-row
/// allocation nor hashing of 9,000 absolute paths).
#[derive(Default)]
pub struct KnownDigests {
    /// The top's path, without a trailing `/`.
    top: Vec<u8>,
    names: Vec<u8>,
    rows: Vec<Known>,
}

struct Known {
    name: std::ops::Range<usize>,
    stat: StatKey,
    digest: [u8; 32],
}

impl KnownDigests {
    /// Everything remembered for `top` and the paths below it, in one
    /// query (a range of the table's primary key, in its order).
    pub fn load(store: &Store, top: &Path) -> Result<KnownDigests, BuildError> {
        let exact = top.as_os_str().as_bytes();
        let base = exact.strip_suffix(b"/").unwrap_or(exact);
        // Paths below `base` sort between `base/` and `base0` ('0' follows
        // '/' in byte order).
        let mut from = base.to_vec();
        from.push(b'/');
        let mut to = base.to_vec();
        to.push(b'0');
        let mut stmt = store.conn().prepare_cached(
            "SELECT path, dev, ino, size, mtime_ns, ctime_ns, digest FROM build_file_digests
              WHERE path = ?1 OR (path >= ?2 AND path < ?3) ORDER BY path",
        )?;
        let mut known = KnownDigests {
            top: base.to_vec(),
            ..KnownDigests::default()
        };
        let mut found = stmt.query(params![base, from, to])?;
        while let Some(r) = found.next()? {
            let Some(digest) = r
                .get_ref(6)?
                .as_blob()
                .ok()
                .and_then(|d| <[u8; 32]>::try_from(d).ok())
            else {
                continue;
            };
            let Ok(path) = r.get_ref(0)?.as_blob() else {
                continue;
            };
            // The top itself is "", the rest "name/..." (the rows come in
            // the byte order of their paths, which is that of these names).
            let name = match path.strip_prefix(base) {
                Some(b"") => &b""[..],
                Some(rest) => match rest.strip_prefix(b"/") {
                    Some(rest) => rest,
                    None => continue,
                },
                None => continue,
            };
            let start = known.names.len();
            known.names.extend_from_slice(name);
            known.rows.push(Known {
                name: start..known.names.len(),
                stat: (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?),
                digest,
            });
        }
        Ok(known)
    }

    fn find(&self, rel: &str) -> Option<&Known> {
        self.rows
            .binary_search_by(|k| self.names[k.name.clone()].cmp(rel.as_bytes()))
            .ok()
            .map(|i| &self.rows[i])
    }

    /// The digest of the regular file `rel` (relative to the top; `""`
    /// for the top itself) at `path`, with `stat` its lstat: remembered
    /// when its stat has not changed, else hashed (and remembered unless
    /// it changed while read, or too recently).
    pub fn file_digest(
        &self,
        store: &Store,
        rel: &str,
        path: &Path,
        stat: &Stat,
    ) -> Result<Digest, BuildError> {
        let key = stat_key(stat);
        if let Some(known) = self.find(rel) {
            if known.stat == key {
                return Ok(Digest::from_bytes(known.digest));
            }
        }
        let digest = super::instructions::hash_file(path).map_err(|e| BuildError::io(path, e))?;
        let settled = now_ns() - key.4 >= RACY_MARGIN_NS;
        let unchanged = lstat(path).is_ok_and(|after| stat_key(&after) == key);
        if settled && unchanged {
            let mut name = self.top.clone();
            if !rel.is_empty() {
                name.push(b'/');
                name.extend_from_slice(rel.as_bytes());
            }
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
        let names: Vec<String> = known
            .rows
            .iter()
            .map(|k| String::from_utf8(known.names[k.name.clone()].to_vec()).unwrap())
            .collect();
        assert_eq!(names, ["", "a", "d/b"]);
        assert!(known.find("d/b").is_some());
        assert!(known.find("d").is_none());
    }

    #[test]
    fn names_are_found_whatever_their_byte_order() {
        // '-' and '.' sort before '/', '0' after it: the rows come in the
        // order of their absolute paths, the lookups by names below the
        // top, and both orders must agree for the binary search.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let names = [
            "a-b",
            "a.b",
            "a/b",
            "a/b/c",
            "a0",
            "a",
            "b",
            "\u{e9}t\u{e9}",
        ];
        for n in names {
            remember(&store, &format!("/c/src/{n}"));
        }
        let known = KnownDigests::load(&store, Path::new("/c/src/")).unwrap();
        for n in names {
            assert!(known.find(n).is_some(), "{n}");
        }
        assert!(known.find("").is_none());
        assert!(known.find("a/").is_none());
    }

    #[test]
    fn a_file_changed_just_now_is_hashed_but_not_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "content").unwrap();
        let stat = lstat(&file).unwrap();
        let known = KnownDigests::load(&store, &file).unwrap();
        let digest = known.file_digest(&store, "", &file, &stat).unwrap();
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
