//! Remote layers: when containerd's unpacker prepares a layer's snapshot
//! it labels the Prepare with the snapshot it will commit
//! (`containerd.io/snapshot.ref`, the layer's chain ID) and, from the CRI
//! (or any client that annotates layers the same way), the image reference
//! and the layer's digest. strata then fetches the layer itself from the
//! registry into its store (its own pull path; credentials from the
//! Docker `config.json` `strata login` writes), commits it under the chain
//! ID and answers `already exists`, so containerd neither downloads nor
//! unpacks it. A compressed blob the store already holds (pulled before,
//! by containerd or by `strata pull`) costs nothing; a layer whose files
//! are stored costs its download and its index.
//!
//! The layer's chain ID is checked against the parent's and the layer's
//! diff_id before anything is recorded; any failure falls back to an
//! ordinary Prepare, so containerd downloads and applies the layer itself.

use std::collections::BTreeMap;

use rusqlite::OptionalExtension;

use super::mounts::Mount;
use super::records::{self, Kind, NewSnapshot};
use super::snapshots::Snapshotter;
use super::SnapshotterError;
use crate::digest::Digest;
use crate::image::{layer_info, record_layer, record_layer_blob};
use crate::reference::Reference;
use crate::registry::{fetch_layer, ClientOptions, RegistrySettings};

/// The snapshot containerd will commit the prepared one as.
pub const TARGET_LABEL: &str = "containerd.io/snapshot.ref";
/// The image the layer belongs to (CRI).
pub const IMAGE_LABEL: &str = "containerd.io/snapshot/cri.image-ref";
/// The layer's (compressed) digest (CRI).
pub const LAYER_LABEL: &str = "containerd.io/snapshot/cri.layer-digest";

/// containerd's chain ID of a layer with `diff_id` over the chain `parent`.
pub fn chain_id(parent: &str, diff_id: &Digest) -> String {
    if parent.is_empty() {
        diff_id.to_string()
    } else {
        Digest::of(format!("{parent} {diff_id}").as_bytes()).to_string()
    }
}

impl Snapshotter {
    /// Prepare as containerd's unpacker calls it: when a committed
    /// snapshot of the target chain already sits on the same parent, or a
    /// remote layer strata can fetch, the answer is `already exists` (and
    /// containerd finds the committed snapshot by Walk, by its
    /// `containerd.io/snapshot.ref` label and parent); anything else is an
    /// ordinary Prepare.
    pub fn prepare_or_fetch(
        &mut self,
        key: &str,
        parent: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<Mount>, SnapshotterError> {
        if let Some(target) = labels.get(TARGET_LABEL) {
            let parent_row = match parent {
                "" => None,
                p => records::find(&self.store, p)?,
            };
            if parent.is_empty()
                || parent_row
                    .as_ref()
                    .is_some_and(|p| p.kind == Kind::Committed)
            {
                let parent_id = parent_row.as_ref().map(|p| p.id);
                if self.committed_target(target, parent_id)? {
                    return Err(SnapshotterError::AlreadyExists(target.clone()));
                }
                if let (Some(image), Some(digest)) =
                    (labels.get(IMAGE_LABEL), labels.get(LAYER_LABEL))
                {
                    match self.fetch_remote(key, parent_id, target, image, digest, labels) {
                        Ok(()) => return Err(SnapshotterError::AlreadyExists(target.clone())),
                        Err(e) => tracing::warn!(
                            "snapshot {target}: {e}; containerd will download and apply the layer"
                        ),
                    }
                }
            }
        }
        self.prepare(key, parent, labels)
    }

    /// Whether a committed snapshot over `parent_id` is labelled as the
    /// chain `target`.
    fn committed_target(
        &self,
        target: &str,
        parent_id: Option<i64>,
    ) -> Result<bool, SnapshotterError> {
        Ok(records::list(&self.store)?.iter().any(|s| {
            s.kind == Kind::Committed
                && s.parent_id == parent_id
                && s.labels.get(TARGET_LABEL).map(String::as_str) == Some(target)
        }))
    }

    /// The chain ID of the committed chain ending at `parent_id`.
    fn chain_of(&self, parent_id: Option<i64>) -> Result<String, SnapshotterError> {
        let mut chain = String::new();
        for layer in records::parent_layers(&self.store, parent_id)? {
            let diff_id: String = self
                .store
                .conn()
                .query_row("SELECT diff_id FROM layers WHERE id = ?1", [layer], |r| {
                    r.get(0)
                })
                .map_err(|e| SnapshotterError::Store(self.store.db_err(e)))?;
            let diff_id: Digest = diff_id.parse().map_err(|_| SnapshotterError::Corrupt {
                key: format!("layer #{layer}"),
                reason: format!("diff_id {diff_id:?}"),
            })?;
            chain = chain_id(&chain, &diff_id);
        }
        Ok(chain)
    }

    /// Fetches layer `digest` of `image` (unless the store already holds
    /// its blob) and commits it as `name` over `parent_id`, labelled as
    /// `target`, after checking that its chain ID is `target`.
    pub fn fetch_remote(
        &mut self,
        name: &str,
        parent_id: Option<i64>,
        target: &str,
        image: &str,
        digest: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), SnapshotterError> {
        let remote = |reason: String| SnapshotterError::Remote {
            reference: image.to_string(),
            digest: digest.to_string(),
            reason,
        };
        let reference = Reference::parse(image).map_err(|e| remote(e.to_string()))?;
        let blob: Digest = digest.parse().map_err(|_| remote("not a digest".into()))?;
        let parent_chain = self.chain_of(parent_id)?;
        let known = self.stored_layer_of_blob(&blob)?;
        let store = &self.store;
        let new_row = |layer_id: i64, diff_id: &Digest, size: u64, inodes: u64| {
            let chain = chain_id(&parent_chain, diff_id);
            if chain != target {
                return Err(remote(format!("its chain ID is {chain}, not {target}")));
            }
            Ok(NewSnapshot {
                key: name,
                kind: Kind::Committed,
                parent_id,
                layer_id: Some(layer_id),
                labels,
                size: size as i64,
                inodes: inodes as i64,
            })
        };
        if let Some((layer_id, diff_id, size, inodes)) = known {
            let row = new_row(layer_id, &diff_id, size, inodes)?;
            records::insert(store.conn(), &row).map_err(|e| unique(store, e, name))?;
            return Ok(());
        }
        let settings =
            RegistrySettings::for_root(store.root()).map_err(SnapshotterError::InvalidArgument)?;
        let options = settings.apply(ClientOptions::default());
        let fetched = fetch_layer(store, &reference, &blob, &options)?;
        let layer = &fetched.layer;
        let entry_count = layer.entries.len() as u64;
        let source = reference.repository();
        fetched
            .staging
            .publish(store, |tx| -> Result<(), SnapshotterError> {
                let layer_id = record_layer(tx, layer)?;
                record_layer_blob(
                    tx,
                    &blob,
                    &layer.diff_id,
                    &fetched.descriptor.media_type,
                    fetched.descriptor.size,
                    Some(&source),
                )?;
                let row = new_row(layer_id, &layer.diff_id, layer.content_size, entry_count)?;
                records::insert(tx, &row).map_err(|e| unique(store, e, name))?;
                Ok(())
            })
    }

    /// The stored layer a compressed blob is known to hold: row id,
    /// diff_id, content size and entry count.
    fn stored_layer_of_blob(
        &self,
        blob: &Digest,
    ) -> Result<Option<(i64, Digest, u64, u64)>, SnapshotterError> {
        let diff_id: Option<String> = self
            .store
            .conn()
            .query_row(
                "SELECT diff_id FROM layer_blobs WHERE digest = ?1",
                [blob.to_string()],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| SnapshotterError::Store(self.store.db_err(e)))?;
        let Some(diff_id) = diff_id.and_then(|d| d.parse::<Digest>().ok()) else {
            return Ok(None);
        };
        Ok(layer_info(&self.store, &diff_id)?
            .map(|l| (l.id, diff_id, l.content_size, l.entry_count)))
    }
}

fn unique(store: &crate::store::Store, e: rusqlite::Error, key: &str) -> SnapshotterError {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            SnapshotterError::AlreadyExists(key.to_string())
        }
        e => SnapshotterError::Store(store.db_err(e)),
    }
}
