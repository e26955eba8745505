//! Layers in the store: recording an ingested layer, reading its entries
//! back (for the filesystem), and rebuilding its tar byte for byte.

use std::io::{self, Write};

use rusqlite::{params, OptionalExtension, Transaction};

use super::entry::{decode_xattrs, encode_xattrs, Kind, LayerEntry};
use super::ingest::IngestedLayer;
use super::recipe::{self, Segment};
use super::LayerError;
use crate::digest::Digest;
use crate::store::{Store, StoreError};

/// A stored layer's summary.
#[derive(Debug, Clone)]
pub struct LayerInfo {
    pub id: i64,
    pub diff_id: Digest,
    pub tar_size: u64,
    pub content_size: u64,
    pub entry_count: u64,
}

fn db(e: rusqlite::Error) -> LayerError {
    LayerError::Store(StoreError::Db {
        path: "strata.db".into(),
        source: e,
    })
}

/// Records an ingested layer (if a layer with its diff_id is not already
/// recorded) and returns its row id. Call inside the publish transaction
/// of the staging that holds its files.
pub fn record_layer(tx: &Transaction, layer: &IngestedLayer) -> Result<i64, LayerError> {
    if let Some(id) = tx
        .query_row(
            "SELECT id FROM layers WHERE diff_id = ?1",
            [layer.diff_id.to_string()],
            |r| r.get(0),
        )
        .optional()
        .map_err(db)?
    {
        return Ok(id);
    }
    tx.execute(
        "INSERT INTO layers(diff_id, tar_size, content_size, entry_count, recipe, created_at) VALUES (?1, ?2, ?3, ?4, ?5, strftime('%s','now'))",
        params![
            layer.diff_id.to_string(),
            layer.tar_size as i64,
            layer.content_size as i64,
            layer.entries.len() as i64,
            layer.recipe
        ],
    )
    .map_err(db)?;
    let id = tx.last_insert_rowid();
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO entries(layer_id, path, kind, mode, uid, gid, mtime_sec, mtime_nsec, size, file_digest, link_target, dev_major, dev_minor, xattrs, seq, dir_len)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        )
        .map_err(db)?;
    for (seq, e) in layer.entries.iter().enumerate() {
        insert
            .execute(params![
                id,
                e.path,
                e.kind as i64,
                e.mode,
                e.uid,
                e.gid,
                e.mtime_sec,
                e.mtime_nsec,
                e.size as i64,
                e.digest.map(|d| d.bytes().to_vec()),
                e.link_target,
                e.dev_major,
                e.dev_minor,
                encode_xattrs(&e.xattrs),
                seq as i64,
                super::dir_index::dir_len(&e.path)
            ])
            .map_err(db)?;
    }
    let mut whiteout = tx
        .prepare_cached("INSERT INTO whiteouts(layer_id, path) VALUES (?1, ?2)")
        .map_err(db)?;
    for path in &layer.whiteouts {
        whiteout.execute(params![id, path]).map_err(db)?;
    }
    let mut opaque = tx
        .prepare_cached("INSERT INTO opaque_dirs(layer_id, path) VALUES (?1, ?2)")
        .map_err(db)?;
    for path in &layer.opaque_dirs {
        opaque.execute(params![id, path]).map_err(db)?;
    }
    super::dir_index::insert_implicit_dirs(tx, id, layer.implicit_dirs.iter().map(Vec::as_slice))
        .map_err(db)?;
    if layer.compression != super::ingest::Compression::None {
        let media_type = match layer.compression {
            super::ingest::Compression::Gzip => super::oci::OCI_LAYER_GZIP,
            _ => super::oci::OCI_LAYER_ZSTD,
        };
        record_layer_blob(
            tx,
            &layer.blob_digest,
            &layer.diff_id,
            media_type,
            layer.blob_size,
            None,
        )?;
    }
    Ok(id)
}

/// Remembers that a compressed blob holds a layer (for push to skip or
/// mount it).
pub fn record_layer_blob(
    tx: &Transaction,
    digest: &Digest,
    diff_id: &Digest,
    media_type: &str,
    size: u64,
    source: Option<&str>,
) -> Result<(), LayerError> {
    tx.execute(
        "INSERT INTO layer_blobs(digest, diff_id, media_type, size, source) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(digest) DO UPDATE SET source = COALESCE(excluded.source, layer_blobs.source)",
        params![digest.to_string(), diff_id.to_string(), media_type, size as i64, source],
    )
    .map_err(db)?;
    Ok(())
}

/// Looks a layer up by diff_id.
pub fn layer_info(store: &Store, diff_id: &Digest) -> Result<Option<LayerInfo>, LayerError> {
    store
        .conn()
        .query_row(
            "SELECT id, tar_size, content_size, entry_count FROM layers WHERE diff_id = ?1",
            [diff_id.to_string()],
            |r| {
                Ok(LayerInfo {
                    id: r.get(0)?,
                    diff_id: *diff_id,
                    tar_size: r.get::<_, i64>(1)? as u64,
                    content_size: r.get::<_, i64>(2)? as u64,
                    entry_count: r.get::<_, i64>(3)? as u64,
                })
            },
        )
        .optional()
        .map_err(db)
}

/// The columns [`entry_from_row`] reads, in its order.
pub(crate) const ENTRY_COLUMNS: &str = "path, kind, mode, uid, gid, mtime_sec, mtime_nsec, size, file_digest, link_target, dev_major, dev_minor, xattrs";

/// An `entries` row selected with [`ENTRY_COLUMNS`].
pub(crate) fn entry_from_row(r: &rusqlite::Row) -> rusqlite::Result<LayerEntry> {
    let kind: i64 = r.get(1)?;
    let digest: Option<Vec<u8>> = r.get(8)?;
    let xattrs: Option<Vec<u8>> = r.get(12)?;
    let digest = match digest {
        Some(d) => {
            let bytes: [u8; 32] = d.as_slice().try_into().map_err(|_| {
                rusqlite::Error::FromSqlConversionFailure(
                    8,
                    rusqlite::types::Type::Blob,
                    format!("a file digest of {} bytes", d.len()).into(),
                )
            })?;
            Some(Digest::from_bytes(bytes))
        }
        None => None,
    };
    Ok(LayerEntry {
        path: r.get(0)?,
        kind: Kind::from_code(kind).unwrap_or(Kind::File),
        mode: r.get(2)?,
        uid: r.get(3)?,
        gid: r.get(4)?,
        mtime_sec: r.get(5)?,
        mtime_nsec: r.get(6)?,
        size: r.get::<_, i64>(7)? as u64,
        digest,
        link_target: r.get(9)?,
        dev_major: r.get(10)?,
        dev_minor: r.get(11)?,
        xattrs: xattrs.and_then(|x| decode_xattrs(&x)).unwrap_or_default(),
    })
}

/// Reads a layer's entries, ordered by path (the table's key: no sort).
pub fn layer_entries(store: &Store, layer_id: i64) -> Result<Vec<LayerEntry>, LayerError> {
    let mut stmt = store
        .conn()
        .prepare_cached(&format!(
            "SELECT {ENTRY_COLUMNS} FROM entries WHERE layer_id = ?1 ORDER BY path"
        ))
        .map_err(db)?;
    let rows = stmt.query_map([layer_id], entry_from_row).map_err(db)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db)
}

fn paths(store: &Store, table: &str, layer_id: i64) -> Result<Vec<Vec<u8>>, LayerError> {
    let mut stmt = store
        .conn()
        .prepare_cached(&format!(
            "SELECT path FROM {table} WHERE layer_id = ?1 ORDER BY path"
        ))
        .map_err(db)?;
    let rows = stmt
        .query_map([layer_id], |r| r.get::<_, Vec<u8>>(0))
        .map_err(db)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db)
}

/// A stored entry as the filesystem takes it; `files_root` is the store's
/// root (file contents live under `files/`).
pub(crate) fn fs_entry(files_root: &std::path::Path, e: LayerEntry) -> strata_fs::Entry {
    let kind = match e.kind {
        Kind::File => strata_fs::EntryKind::File {
            size: e.size,
            backing: e
                .digest
                .map(|d| crate::store::file_path_in(files_root, &d))
                .unwrap_or_default(),
        },
        Kind::Dir => strata_fs::EntryKind::Dir,
        Kind::Symlink => strata_fs::EntryKind::Symlink {
            target: e.link_target.unwrap_or_default(),
        },
        Kind::Hardlink => strata_fs::EntryKind::Hardlink {
            target: e.link_target.unwrap_or_default(),
        },
        Kind::CharDevice => strata_fs::EntryKind::CharDevice {
            major: e.dev_major,
            minor: e.dev_minor,
        },
        Kind::BlockDevice => strata_fs::EntryKind::BlockDevice {
            major: e.dev_major,
            minor: e.dev_minor,
        },
        Kind::Fifo => strata_fs::EntryKind::Fifo,
    };
    strata_fs::Entry {
        path: e.path,
        kind,
        mode: e.mode,
        uid: e.uid,
        gid: e.gid,
        mtime_sec: e.mtime_sec,
        mtime_nsec: e.mtime_nsec,
        xattrs: e.xattrs,
    }
}

/// A stored layer as the filesystem takes it (whole; mounts read
/// directories lazily through [`super::layer_source::StoreSource`]).
/// A `.` entry or a root opaque marker stored before ingest skipped them
/// is left out: Docker's layer application ignores both.
pub fn fs_layer(store: &Store, layer_id: i64) -> Result<strata_fs::Layer, LayerError> {
    let entries = layer_entries(store, layer_id)?
        .into_iter()
        .filter(|e| !e.path.is_empty())
        .map(|e| fs_entry(store.root(), e))
        .collect();
    let mut opaque_dirs = paths(store, "opaque_dirs", layer_id)?;
    opaque_dirs.retain(|p| !p.is_empty());
    Ok(strata_fs::Layer {
        entries,
        whiteouts: paths(store, "whiteouts", layer_id)?,
        opaque_dirs,
        redirects: Vec::new(),
    })
}

/// Writes a stored layer's uncompressed tar, byte for byte as it was
/// ingested, to `out`; returns the number of bytes written. File contents
/// are copied from the store; their sizes are checked as they go.
pub fn write_layer_tar(
    store: &Store,
    diff_id: &Digest,
    out: &mut dyn Write,
) -> Result<u64, LayerError> {
    let mut reader = open_layer_tar(store, diff_id)?;
    Ok(io::copy(&mut reader, out)?)
}

/// A reader over a stored layer's rebuilt tar (see [`write_layer_tar`]),
/// for writers that pull their input.
pub struct LayerReader {
    segments: recipe::Segments,
    current: Option<Box<dyn io::Read + Send>>,
    files_root: std::path::PathBuf,
}

/// Opens a stored layer's tar as a reader.
pub fn open_layer_tar(store: &Store, diff_id: &Digest) -> Result<LayerReader, LayerError> {
    let recipe: Vec<u8> = store
        .conn()
        .query_row(
            "SELECT recipe FROM layers WHERE diff_id = ?1",
            [diff_id.to_string()],
            |r| r.get(0),
        )
        .map_err(db)?;
    let segments = recipe::Segments::new(recipe).map_err(|e| LayerError::CorruptRecipe {
        diff_id: diff_id.to_string(),
        reason: e.to_string(),
    })?;
    Ok(LayerReader {
        segments,
        current: None,
        files_root: store.root().join("files"),
    })
}

impl io::Read for LayerReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(current) = self.current.as_mut() {
                let n = current.read(buf)?;
                if n > 0 {
                    return Ok(n);
                }
                self.current = None;
            }
            match self.segments.next_segment()? {
                None => return Ok(0),
                Some(Segment::Raw(bytes)) => self.current = Some(Box::new(io::Cursor::new(bytes))),
                Some(Segment::File { digest, size }) => {
                    let hex = digest.hex();
                    let path = self.files_root.join(&hex[..2]).join(&hex);
                    let file = std::fs::File::open(&path).map_err(|e| {
                        io::Error::new(e.kind(), format!("{}: {e}", path.display()))
                    })?;
                    let len = file.metadata()?.len();
                    if len != size {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("{}: {len} bytes, the layer needs {size}", path.display()),
                        ));
                    }
                    self.current = Some(Box::new(io::Read::take(file, size)));
                }
            }
        }
    }
}
