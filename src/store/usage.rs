//! Disk usage (`system df`), with what deduplication saves.

use super::{Store, StoreError};

#[derive(Debug, Default, Clone)]
pub struct DiskUsage {
    pub images: u64,
    pub images_active: u64,
    /// Bytes on disk for images: file contents and blobs.
    pub images_size: u64,
    /// Bytes that removing every image no container uses would free.
    pub images_reclaimable: u64,
    pub containers: u64,
    pub containers_active: u64,
    pub containers_size: u64,
    pub volumes: u64,
    pub volumes_size: u64,
    /// Regular-file bytes of every layer, as layer stores would keep them.
    pub logical_bytes: u64,
    /// Regular-file bytes actually stored (each content once).
    pub stored_bytes: u64,
    pub stored_files: u64,
    pub file_references: u64,
    /// Layer directories extracted by the overlayfs fallback.
    pub layer_dirs: u64,
    pub layer_dirs_size: u64,
    /// What `gc` would free of them (those no container's image uses).
    pub layer_dirs_reclaimable: u64,
    /// Kernel image mounts' views (`views/`, docs/fs.md), complete or
    /// being built, and the disk they take of their own ([`super::views::view_size`]).
    pub views: u64,
    pub views_size: u64,
    /// What `gc` would free of them: views of images that are gone and
    /// builds whose process died.
    pub views_reclaimable: u64,
}

pub fn dir_size(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if let Ok(items) = std::fs::read_dir(&dir) {
            for item in items.flatten() {
                if let Ok(meta) = item.path().symlink_metadata() {
                    if meta.is_dir() {
                        stack.push(item.path());
                    } else {
                        total += meta.blocks() * 512;
                    }
                }
            }
        }
    }
    total
}

/// What deduplication does for the store's layers: their regular files'
/// bytes as layer stores would keep them, and as stored (each content
/// once). Four index queries; no walk of the disk.
#[derive(Debug, Default, Clone, Copy)]
pub struct Deduplication {
    pub logical_bytes: u64,
    pub stored_bytes: u64,
    pub stored_files: u64,
    pub file_references: u64,
}

pub fn deduplication(store: &Store) -> Result<Deduplication, StoreError> {
    let u = disk_usage_counts(store)?;
    Ok(Deduplication {
        logical_bytes: u.logical_bytes,
        stored_bytes: u.stored_bytes,
        stored_files: u.stored_files,
        file_references: u.file_references,
    })
}

/// The figures of [`disk_usage`] that come from the index alone.
fn disk_usage_counts(store: &Store) -> Result<DiskUsage, StoreError> {
    let conn = store.conn();
    let one = |sql: &str| -> Result<u64, StoreError> {
        conn.query_row(sql, [], |r| r.get::<_, Option<i64>>(0))
            .map(|v| v.unwrap_or(0) as u64)
            .map_err(|e| store.db_err(e))
    };
    Ok(DiskUsage {
        images: one("SELECT COUNT(*) FROM images")?,
        images_active: one("SELECT COUNT(DISTINCT image_id) FROM containers")?,
        containers: one("SELECT COUNT(*) FROM containers")?,
        logical_bytes: one("SELECT SUM(content_size) FROM layers")?,
        stored_bytes: one("SELECT SUM(size) FROM files")?,
        stored_files: one("SELECT COUNT(*) FROM files")?,
        file_references: one("SELECT COUNT(*) FROM entries WHERE kind = 0")?,
        ..Default::default()
    })
}

pub fn disk_usage(store: &Store) -> Result<DiskUsage, StoreError> {
    disk_usage_sized(store, &|paths| paths.iter().map(|p| dir_size(p)).collect())
}

/// [`disk_usage`], with the directories' sizes ([`dir_size`] of each
/// path) measured by `sizes` (an ordinary user's walks them in a user
/// namespace: see `userns::sizes_of_any_owner`).
pub fn disk_usage_sized(
    store: &Store,
    sizes: &dyn Fn(&[std::path::PathBuf]) -> Vec<u64>,
) -> Result<DiskUsage, StoreError> {
    let conn = store.conn();
    let one = |sql: &str| -> Result<u64, StoreError> {
        conn.query_row(sql, [], |r| r.get::<_, Option<i64>>(0))
            .map(|v| v.unwrap_or(0) as u64)
            .map_err(|e| store.db_err(e))
    };
    let mut u = disk_usage_counts(store)?;
    let blobs = one("SELECT SUM(size) FROM blobs")?;
    u.images_size = u.stored_bytes + blobs;
    let active_files = one(
        "SELECT SUM(size) FROM files WHERE digest IN (SELECT file_digest FROM entries WHERE layer_id IN
           (SELECT layer_id FROM image_layers WHERE image_id IN (SELECT image_id FROM containers)))",
    )?;
    u.images_reclaimable = u.stored_bytes.saturating_sub(active_files);
    let mut walked = vec![store.root().join("containers")];
    if let Ok(items) = std::fs::read_dir(store.root().join("volumes")) {
        walked.extend(items.flatten().map(|item| item.path()));
    }
    let walked_sizes = sizes(&walked);
    u.containers_size = walked_sizes.first().copied().unwrap_or(0);
    u.volumes = walked.len() as u64 - 1;
    u.volumes_size = walked_sizes.iter().skip(1).sum();
    if let Ok(items) = std::fs::read_dir(super::gc::layer_dirs(store)) {
        let used = super::gc::layers_of_containers(store)?;
        for item in items.flatten() {
            let name = item.file_name().to_string_lossy().into_owned();
            if !matches!(
                super::layer_dirs::classify(&name),
                super::layer_dirs::Entry::Layer(_)
            ) {
                continue;
            }
            let size = dir_size(&item.path());
            u.layer_dirs += 1;
            u.layer_dirs_size += size;
            if !used.contains(&name) {
                u.layer_dirs_reclaimable += size;
            }
        }
    }
    if let Ok(items) = std::fs::read_dir(super::views::base(store.root())) {
        use super::views::{classify, view_size, Entry};
        let images = super::views::image_hexes(store)?;
        for item in items.flatten() {
            let name = item.file_name().to_string_lossy().into_owned();
            let entry = classify(&name);
            if matches!(entry, Entry::Failed(_) | Entry::Other) {
                continue;
            }
            let unused = entry.is_unused(&images);
            let size = view_size(&item.path());
            u.views += 1;
            u.views_size += size;
            if unused {
                u.views_reclaimable += size;
            }
        }
    }
    Ok(u)
}
