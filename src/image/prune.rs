//! `image prune`: removes dangling images (no tag), or with `all` every
//! image no container uses, then collects the garbage they leave.

use super::records::{list_images, ImageError, RemovalEvent};
use crate::reference::familiar;
use crate::store::{collect_garbage, Store};

#[derive(Debug, Default)]
pub struct PruneReport {
    pub events: Vec<RemovalEvent>,
    pub bytes_freed: u64,
}

pub fn prune_images(store: &Store, all: bool) -> Result<PruneReport, ImageError> {
    let mut report = PruneReport::default();
    let used: std::collections::HashSet<String> = {
        let mut stmt = store
            .conn()
            .prepare("SELECT image_id FROM containers UNION SELECT image_id FROM mounts WHERE image_id IS NOT NULL")
            .map_err(|e| ImageError::Store(store.db_err(e)))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| ImageError::Store(store.db_err(e)))?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| ImageError::Store(store.db_err(e)))?
    };
    for image in list_images(store)? {
        let id = image.id.to_string();
        if used.contains(&id) || (!all && !image.tags.is_empty()) {
            continue;
        }
        let tx = rusqlite::Transaction::new_unchecked(
            store.conn(),
            rusqlite::TransactionBehavior::Immediate,
        )
        .map_err(|e| ImageError::Store(store.db_err(e)))?;
        for name in image.tags.iter().chain(image.repo_digests.iter()) {
            report.events.push(RemovalEvent::Untagged(familiar(name)));
        }
        tx.execute("DELETE FROM tags WHERE image_id = ?1", [&id])
            .map_err(|e| ImageError::Store(store.db_err(e)))?;
        tx.execute("DELETE FROM images WHERE id = ?1", [&id])
            .map_err(|e| ImageError::Store(store.db_err(e)))?;
        tx.commit()
            .map_err(|e| ImageError::Store(store.db_err(e)))?;
        report.events.push(RemovalEvent::Deleted(id));
    }
    let gc = collect_garbage(store)?;
    report.bytes_freed = gc.bytes_freed;
    for layer in gc.layers_removed {
        report.events.push(RemovalEvent::Deleted(layer.to_string()));
    }
    Ok(report)
}
