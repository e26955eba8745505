//! A mount's layers read from the store one directory at a time: the
//! [`strata_fs::LayerSource`] behind every image and container mount, so
//! that mounting costs the same for a 10-file and a 100,000-file image.
//!
//! It holds its own read-only SQLite connection (the FUSE threads share it
//! behind a mutex) and answers with indexed range queries (see
//! [`super::dir_index`]). The rows it reads cannot change while it is in
//! use: a mount pins its image, so neither `rmi` nor `gc` removes them.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use super::dir_index::{children_range, dir_len};
use super::entry::Kind;
use super::layer_db::{entry_from_row, fs_entry, ENTRY_COLUMNS};
use super::LayerError;
use crate::store::{Store, StoreError};

/// The layers of one image, bottom first, as a lazy source.
#[derive(Debug)]
pub struct StoreSource {
    conn: Mutex<Connection>,
    root: PathBuf,
    /// `layers.id` of each layer, bottom first.
    layers: Vec<i64>,
    totals: (u64, u64),
}

fn db(e: rusqlite::Error) -> io::Error {
    io::Error::other(format!("strata.db: {e}"))
}

impl StoreSource {
    /// A source over the given layer rows (bottom first) of `store`.
    pub fn open(store: &Store, layers: Vec<i64>) -> Result<StoreSource, LayerError> {
        let path = store.root().join("strata.db");
        let fail = |e| LayerError::Store(StoreError::db(&path, e));
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(fail)?;
        conn.busy_timeout(Duration::from_secs(60)).map_err(fail)?;
        // Reads map the database instead of copying pages in with pread,
        // and keep up to 64 MiB of decoded pages: a full walk of a large
        // image revisits the same index and table pages directory after
        // directory.
        conn.execute_batch("PRAGMA mmap_size = 1073741824; PRAGMA cache_size = -65536;")
            .map_err(fail)?;
        let mut totals = (0, 0);
        for id in &layers {
            let (bytes, count): (i64, i64) = store
                .conn()
                .query_row(
                    "SELECT content_size, entry_count FROM layers WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(fail)?;
            totals.0 += bytes as u64;
            totals.1 += count as u64;
        }
        Ok(StoreSource {
            conn: Mutex::new(conn),
            root: store.root().to_path_buf(),
            layers,
            totals,
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn layer_id(&self, layer: usize) -> io::Result<i64> {
        self.layers
            .get(layer)
            .copied()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no layer {layer}")))
    }

    fn root(&self) -> &Path {
        &self.root
    }
}

/// Selects `columns` of the rows of `table` (which has `dir_len` and
/// `path`) directly inside the directory whose [`children_range`] is
/// `range` (`None`: the root) with one range of `index`, in `order` (an
/// `ORDER BY` clause or nothing), mapped by `map`. The index is named:
/// without statistics SQLite would rather scan the layer's whole
/// primary-key range.
#[allow(clippy::too_many_arguments)]
fn select_in<T>(
    conn: &Connection,
    columns: &str,
    table: &str,
    index: &str,
    order: &str,
    layer: i64,
    range: Option<&(Vec<u8>, Vec<u8>)>,
    map: impl FnMut(&rusqlite::Row) -> rusqlite::Result<T>,
) -> io::Result<Vec<T>> {
    let rows = match range {
        None => {
            let sql = format!(
                "SELECT {columns} FROM {table} INDEXED BY {index} WHERE layer_id = ?1 AND dir_len = 0 {order}"
            );
            let mut stmt = conn.prepare_cached(&sql).map_err(db)?;
            let rows = stmt.query_map(params![layer], map).map_err(db)?;
            rows.collect::<Result<Vec<T>, _>>()
        }
        Some((lo, hi)) => {
            let sql = format!(
                "SELECT {columns} FROM {table} INDEXED BY {index}
                 WHERE layer_id = ?1 AND dir_len = ?2 AND path >= ?3 AND path < ?4 {order}"
            );
            let mut stmt = conn.prepare_cached(&sql).map_err(db)?;
            let rows = stmt
                .query_map(params![layer, lo.len() as i64, lo, hi], map)
                .map_err(db)?;
            rows.collect::<Result<Vec<T>, _>>()
        }
    };
    rows.map_err(db)
}

impl strata_fs::LayerSource for StoreSource {
    fn layer_count(&self) -> usize {
        self.layers.len()
    }

    fn read_dir(&self, layer: usize, dir: &[u8]) -> io::Result<strata_fs::DirPart> {
        let id = self.layer_id(layer)?;
        let conn = self.conn();
        // One read transaction for the four queries (one snapshot, one
        // WAL read lock instead of four).
        let tx = conn.unchecked_transaction().map_err(db)?;
        let part = read_dir_in(&tx, self.root(), id, dir)?;
        tx.finish().map_err(db)?;
        Ok(part)
    }

    fn entry(&self, layer: usize, path: &[u8]) -> io::Result<Option<strata_fs::Entry>> {
        if path.is_empty() {
            // A `.` entry (stored before ingest skipped it) is ignored, as
            // Docker's layer application ignores it: the root keeps its
            // defaults in every layer.
            return Ok(None);
        }
        let id = self.layer_id(layer)?;
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {ENTRY_COLUMNS} FROM entries WHERE layer_id = ?1 AND path = ?2"
            ))
            .map_err(db)?;
        let entry = stmt
            .query_row(params![id, path], entry_from_row)
            .optional()
            .map_err(db)?;
        Ok(entry.map(|e| fs_entry(self.root(), e)))
    }

    fn hardlinks(&self, layer: usize) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let id = self.layer_id(layer)?;
        let conn = self.conn();
        let mut stmt = conn
            // The literal kind lets SQLite use the partial index (which it
            // would not pick unprompted over the primary key).
            .prepare_cached(
                "SELECT path, link_target FROM entries INDEXED BY entries_hardlinks
                 WHERE layer_id = ?1 AND kind = 3",
            )
            .map_err(db)?;
        const _: () = assert!(Kind::Hardlink as i64 == 3);
        let rows = stmt
            .query_map(params![id], |r| {
                Ok((
                    r.get(0)?,
                    r.get::<_, Option<Vec<u8>>>(1)?.unwrap_or_default(),
                ))
            })
            .map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)
    }

    fn totals(&self) -> (u64, u64) {
        self.totals
    }
}

/// What layer row `id` holds directly inside `dir` (see
/// [`strata_fs::LayerSource::read_dir`]).
fn read_dir_in(
    conn: &Connection,
    root: &Path,
    id: i64,
    dir: &[u8],
) -> io::Result<strata_fs::DirPart> {
    let range = children_range(dir);
    // Where a child's name starts in its path.
    let start = range.as_ref().map_or(0, |(lo, _)| lo.len());
    // In the layer's order (`seq`): the order its files were written to
    // the store, which is the order a mount lists them in.
    let entries = select_in(
        conn,
        ENTRY_COLUMNS,
        "entries",
        "entries_by_dir",
        "ORDER BY seq",
        id,
        range.as_ref(),
        entry_from_row,
    )?
    .into_iter()
    .map(|e| fs_entry(root, e))
    .collect();
    let implicit_dirs = select_in(
        conn,
        "path",
        "implicit_dirs",
        "implicit_dirs_by_dir",
        "",
        id,
        range.as_ref(),
        |r| r.get::<_, Vec<u8>>(0),
    )?
    .into_iter()
    .map(|p| p[start..].to_vec())
    .collect();
    // Whiteouts are few: the layer's whiteouts below `dir`, filtered.
    let below: Vec<Vec<u8>> = match &range {
        None => conn
            .prepare_cached("SELECT path FROM whiteouts WHERE layer_id = ?1")
            .map_err(db)?
            .query_map(params![id], |r| r.get(0))
            .map_err(db)?
            .collect::<Result<_, _>>(),
        Some((lo, hi)) => conn
            .prepare_cached(
                "SELECT path FROM whiteouts WHERE layer_id = ?1 AND path >= ?2 AND path < ?3",
            )
            .map_err(db)?
            .query_map(params![id, lo, hi], |r| r.get(0))
            .map_err(db)?
            .collect::<Result<_, _>>(),
    }
    .map_err(db)?;
    let whiteouts = below
        .into_iter()
        .filter(|p| dir_len(p) == start as i64)
        .map(|p| p[start..].to_vec())
        .collect();
    // A root opaque marker (stored before ingest dropped it) has no
    // effect, as in overlayfs: lower layers stay visible.
    let opaque = !dir.is_empty()
        && conn
            .prepare_cached("SELECT 1 FROM opaque_dirs WHERE layer_id = ?1 AND path = ?2")
            .map_err(db)?
            .query_row(params![id, dir], |_| Ok(()))
            .optional()
            .map_err(db)?
            .is_some();
    // OCI layers have no redirects.
    Ok(strata_fs::DirPart {
        entries,
        implicit_dirs,
        whiteouts,
        opaque,
        redirects: Vec::new(),
    })
}
