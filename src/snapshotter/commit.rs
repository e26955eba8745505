//! Commit: an active snapshot becomes a committed one whose content is a
//! strata layer. The daemon of the parents' mount is stopped, and the
//! snapshot's upper directory (written by containerd's applier or through
//! its kernel overlay mount, overlayfs conventions) is read from disk: its
//! changes over the parents' layers are written as a layer tar
//! (overlayfs whiteouts become OCI ones, a renamed directory carries its
//! contents) and ingested like any pulled or loaded layer: each file's
//! content stored once, rows in SQLite; a layer with the same diff_id
//! already stored is not stored again. The row
//! turns committed in the publish transaction, so a crash leaves either
//! the active snapshot (upper directory intact) or the committed one.

use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom};

use rusqlite::params;

use super::mounts;
use super::records::{self, Kind};
use super::snapshots::{dir_usage, Snapshotter};
use super::SnapshotterError;
use crate::container::files::changes_tar::write_layer_tar;
use crate::container::files::upper::ImagePaths;
use crate::image::{ingest_layer, record_layer, Limits};

impl Snapshotter {
    pub fn commit(
        &mut self,
        name: &str,
        key: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), SnapshotterError> {
        if name.is_empty() {
            return Err(SnapshotterError::InvalidArgument(
                "snapshot name must not be empty".into(),
            ));
        }
        let s = records::get(&self.store, key)?;
        if s.kind != Kind::Active {
            return Err(SnapshotterError::precondition(key, "is not active"));
        }
        if records::find(&self.store, name)?.is_some() {
            return Err(SnapshotterError::AlreadyExists(name.to_string()));
        }
        mounts::stop_mount(&self.store, &s)?;
        let dir = mounts::snapshot_dir(&self.store, s.id);
        let upper = dir.join("upper");
        let usage = dir_usage(&upper)?;
        let tmp = self.store.tmp_dir();
        let mut tar = tempfile_in(&tmp)?;
        // The parents' merged tree: a directory renamed in the mount (a
        // redirect in the upper directory) is written with its contents.
        let parents = ImagePaths::of_layers(
            &self.store,
            records::parent_layers(&self.store, s.parent_id)?,
        )?;
        let changes = strata_fs::layer_changes(&upper, parents.tree()).map_err(|e| match e {
            strata_fs::upper::UpperError::Io { path, source } => {
                SnapshotterError::io(&path, source)
            }
        })?;
        write_layer_tar(&upper, &parents, changes, &mut tar)?;
        tar.seek(SeekFrom::Start(0))
            .map_err(|e| SnapshotterError::io(&tmp, e))?;
        let mut staging = self.store.begin_staging()?;
        let limits =
            Limits::for_root(self.store.root()).map_err(SnapshotterError::InvalidArgument)?;
        let layer = ingest_layer(&self.store, &mut staging, &mut tar, &limits)?;
        let encoded = records::encode_labels(labels);
        staging.publish(&self.store, |tx| -> Result<(), SnapshotterError> {
            let layer_id = record_layer(tx, &layer)?;
            let now = records::now_ns();
            let changed = tx
                .execute(
                    "UPDATE snapshots SET key = ?2, kind = 3, layer_id = ?3, labels = ?4, \
                     size = ?5, inodes = ?6, pid = NULL, created_ns = ?7, updated_ns = ?7 \
                     WHERE id = ?1 AND kind = 2",
                    params![s.id, name, layer_id, encoded, usage.size, usage.inodes, now],
                )
                .map_err(|e| match e {
                    rusqlite::Error::SqliteFailure(f, _)
                        if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                    {
                        SnapshotterError::AlreadyExists(name.to_string())
                    }
                    e => SnapshotterError::Store(self.store.db_err(e)),
                })?;
            if changed != 1 {
                return Err(SnapshotterError::precondition(key, "is not active"));
            }
            Ok(())
        })?;
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!("{}: {e} (Cleanup removes it)", dir.display());
        }
        Ok(())
    }
}

/// An anonymous temporary file in the store's staging directory.
pub(super) fn tempfile_in(dir: &std::path::Path) -> Result<std::fs::File, SnapshotterError> {
    let path = dir.join(format!("snapshot-{:016x}.tar", rand::random::<u64>()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| SnapshotterError::io(&path, e))?;
    let _ = std::fs::remove_file(&path);
    Ok(file)
}
