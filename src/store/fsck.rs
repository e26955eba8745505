//! `strata fsck`: verifies every file and blob against its digest, every
//! row against its file, every layer recipe against the files it names,
//! every image against its config, and every containerd snapshot record
//! (`strata snapshotter`) against its layer, parent and directories.

use std::io::Read;

use super::gc::walk_objects;
use super::{Store, StoreError};
use crate::digest::{Digest, Hasher};

#[derive(Debug, Default, Clone)]
pub struct FsckReport {
    pub files_checked: u64,
    pub blobs_checked: u64,
    pub layers_checked: u64,
    pub images_checked: u64,
    pub snapshots_checked: u64,
    /// Damage: each a one-line description naming the object.
    pub problems: Vec<String>,
    /// Not damage (gc removes these): unreferenced objects, stale staging.
    pub notes: Vec<String>,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

pub(super) fn hash_file(path: &std::path::Path) -> std::io::Result<(Digest, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let len = hasher.len();
    Ok((hasher.finish(), len))
}

pub fn fsck(store: &Store) -> Result<FsckReport, StoreError> {
    let mut report = FsckReport::default();
    let conn = store.conn();
    let db = |e| store.db_err(e);
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(db)?;
    if integrity != "ok" {
        report
            .problems
            .push(format!("database: integrity check: {integrity}"));
    }
    let fk_violations: i64 = conn
        .query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
        .map_err(db)?;
    if fk_violations > 0 {
        report.problems.push(format!(
            "database: {fk_violations} rows reference missing rows"
        ));
    }
    for (table, dir_of) in [("files", true), ("blobs", false)] {
        let rows: Vec<(String, i64)> = {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT CASE typeof(digest) WHEN 'blob' THEN 'sha256:' || lower(hex(digest)) ELSE digest END, size FROM {table}"
                ))
                .map_err(db)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db)?;
            rows.collect::<Result<_, _>>().map_err(db)?
        };
        for (digest_text, size) in rows {
            let Ok(digest) = digest_text.parse::<Digest>() else {
                report
                    .problems
                    .push(format!("{table}: row with invalid digest {digest_text:?}"));
                continue;
            };
            let path = if dir_of {
                store.file_path(&digest)
            } else {
                store.blob_path(&digest)
            };
            match hash_file(&path) {
                Ok((actual, len)) => {
                    if actual != digest {
                        report.problems.push(format!(
                            "{}: content does not match {digest} (is {actual})",
                            path.display()
                        ));
                    } else if len != size as u64 {
                        report.problems.push(format!(
                            "{}: {len} bytes, the index says {size}",
                            path.display()
                        ));
                    }
                }
                Err(e) => report.problems.push(format!("{}: {e}", path.display())),
            }
            if dir_of {
                report.files_checked += 1;
            } else {
                report.blobs_checked += 1;
            }
        }
    }
    // Layers: every file a recipe names must be indexed.
    let files = super::gc::indexed_files(store)?;
    {
        let mut stmt = conn
            .prepare("SELECT diff_id, recipe, tar_size FROM layers")
            .map_err(db)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map_err(db)?;
        for row in rows {
            let (diff_id, recipe, tar_size) = row.map_err(db)?;
            report.layers_checked += 1;
            // Streamed: a large layer's raw headers never are all in memory.
            let mut total = 0u64;
            let checked = crate::image::recipe::Segments::new(recipe).and_then(|segments| {
                for segment in segments {
                    match segment? {
                        crate::image::recipe::Segment::Raw(b) => total += b.len() as u64,
                        crate::image::recipe::Segment::File { digest, size } => {
                            total += size;
                            if !files.contains(&digest.to_string()) {
                                report.problems.push(format!("layer {diff_id}: names file {digest}, which is not in the store"));
                            }
                        }
                    }
                }
                Ok(())
            });
            match checked {
                Ok(()) if total != tar_size as u64 => report.problems.push(format!(
                    "layer {diff_id}: recipe rebuilds {total} bytes, expected {tar_size}"
                )),
                Ok(()) => {}
                Err(e) => report
                    .problems
                    .push(format!("layer {diff_id}: recipe: {e}")),
            }
        }
    }
    // Images: config and manifest present, layers match the config's diff_ids.
    {
        let mut stmt = conn
            .prepare("SELECT id, config_digest, manifest_digest FROM images")
            .map_err(db)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(db)?;
        for row in rows {
            let (id, config, _manifest) = row.map_err(db)?;
            report.images_checked += 1;
            let Ok(config_digest) = config.parse::<Digest>() else {
                continue;
            };
            let Ok(bytes) = std::fs::read(store.blob_path(&config_digest)) else {
                report
                    .problems
                    .push(format!("image {id}: config blob {config} is missing"));
                continue;
            };
            let Ok(parsed) = serde_json::from_slice::<crate::image::oci::ImageConfig>(&bytes)
            else {
                report
                    .problems
                    .push(format!("image {id}: config is not valid"));
                continue;
            };
            let mut layers = conn
                .prepare_cached("SELECT l.diff_id FROM image_layers il JOIN layers l ON l.id = il.layer_id WHERE il.image_id = ?1 ORDER BY il.position")
                .map_err(db)?;
            let stored: Vec<String> = layers
                .query_map([&id], |r| r.get(0))
                .map_err(db)?
                .collect::<Result<_, _>>()
                .map_err(db)?;
            let expected: Vec<String> = parsed
                .rootfs
                .diff_ids
                .iter()
                .map(|d| d.to_string())
                .collect();
            if stored != expected {
                report.problems.push(format!(
                    "image {id}: layers do not match its config's diff_ids"
                ));
            }
        }
    }
    check_snapshots(store, &mut report)?;
    // Not damage: objects without rows, leftover staging.
    let unreferenced = walk_objects(&store.root().join("files"), true)
        .into_iter()
        .filter(|(_, d)| !files.contains(d))
        .count();
    if unreferenced > 0 {
        report.notes.push(format!("{unreferenced} unindexed files (left by an interrupted ingest; `strata system prune` removes them)"));
    }
    if let Ok(dir) = std::fs::read_dir(store.tmp_dir()) {
        // A published staging's emptied directories (`spent-*`) are
        // waiting for the flusher to remove them: not an ingest's.
        let stale = dir
            .flatten()
            .filter(|e| {
                !e.file_name()
                    .to_string_lossy()
                    .starts_with(super::stage::SPENT)
            })
            .count();
        if stale > 0 {
            report.notes.push(format!("{stale} staging directories in tmp/ (in progress, or left by an interrupted ingest)"));
        }
    }
    Ok(report)
}

/// Snapshot records (schema migration 6, src/snapshotter/records.rs): a committed
/// snapshot names a layer, its parent is committed, an active snapshot
/// has its upper directory and a view or active one its mount point.
/// Directories no record names are notes (Cleanup removes them).
fn check_snapshots(store: &Store, report: &mut FsckReport) -> Result<(), StoreError> {
    let db = |e| store.db_err(e);
    type Row = (i64, String, i64, Option<i64>, Option<i64>);
    let rows: Vec<Row> = {
        let mut stmt = store
            .conn()
            .prepare(
                "SELECT s.id, s.key, s.kind, s.layer_id, p.kind FROM snapshots s \
                 LEFT JOIN snapshots p ON p.id = s.parent_id",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)?
    };
    let dir = store.root().join("snapshots");
    let mut known = std::collections::HashSet::new();
    for (id, key, kind, layer, parent_kind) in rows {
        report.snapshots_checked += 1;
        known.insert(id.to_string());
        let mut problem = |what: &str| report.problems.push(format!("snapshot {key}: {what}"));
        if parent_kind.is_some_and(|k| k != 3) {
            problem("its parent is not committed");
        }
        match kind {
            3 if layer.is_none() => problem("committed without a layer"),
            3 => {}
            1 | 2 => {
                if !dir.join(format!("{id}/rootfs")).is_dir() {
                    problem("its mount point is missing");
                }
                if kind == 2 && !dir.join(format!("{id}/upper")).is_dir() {
                    problem("its upper directory is missing");
                }
            }
            other => problem(&format!("unknown kind {other}")),
        }
    }
    let orphans = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            name.parse::<i64>().is_ok() && !known.contains(&name)
        })
        .count();
    if orphans > 0 {
        report.notes.push(format!(
            "{orphans} snapshot directories without a record (the snapshotter's Cleanup removes them)"
        ));
    }
    Ok(())
}
