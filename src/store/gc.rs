//! Garbage collection: removes layers no image and no build-cache entry
//! uses, files no entry names, blobs no image or build-cache entry
//! names, stale staging directories, and the layer directories the
//! overlayfs fallback extracted (`layer-dirs/`) that no container's image
//! uses. The build cache itself goes with `builder prune`.

use std::collections::HashSet;

use rusqlite::Transaction;

use super::{Store, StoreError};
use crate::digest::Digest;

#[derive(Debug, Default, Clone)]
pub struct GcReport {
    pub layers_removed: Vec<Digest>,
    pub files_removed: u64,
    pub blobs_removed: u64,
    /// Extracted layer directories removed (overlayfs fallback).
    pub layer_dirs_removed: u64,
    /// Kernel mount views removed (their images are gone).
    pub views_removed: u64,
    pub bytes_freed: u64,
}

fn db(store: &Store) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| store.db_err(e)
}

/// Removes what nothing references. Takes the gc lock exclusively, so it
/// waits for ingests in progress (or revokes the leases of those that are
/// gone or stalled, see lock.rs) and no ingest starts meanwhile.
pub fn collect_garbage(store: &Store) -> Result<GcReport, StoreError> {
    let _lock = store.lock_exclusive()?;
    // An ingest that checked its lease in its publish transaction before
    // gc revoked it commits before this returns: its rows then protect
    // what it published (see lock.rs).
    Transaction::new_unchecked(store.conn(), rusqlite::TransactionBehavior::Immediate)
        .and_then(|tx| tx.commit())
        .map_err(db(store))?;
    let mut report = GcReport::default();
    // Staging left by killed processes. A live ingest's (one whose lease
    // gc revoked) stays: nothing names it, and the ingest fails clearly at
    // its publish rather than on a vanished directory.
    let tmp = store.tmp_dir();
    if let Ok(dir) = std::fs::read_dir(&tmp) {
        for item in dir.flatten() {
            let path = item.path();
            if staging_in_use(&path) {
                continue;
            }
            if item.file_name().to_string_lossy().starts_with("removed-") {
                // A removed container's directory whose monitor was
                // killed before it unmounted the root below it.
                let _ = nix::mount::umount2(&path.join("rootfs"), nix::mount::MntFlags::MNT_DETACH);
            }
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
    }
    // Before the files: a view holds links to the files its image uses.
    remove_unused_views(store, &mut report)?;
    let conn = store.conn();
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)
        .map_err(db(store))?;
    {
        let mut stmt = tx
            .prepare(
                "SELECT diff_id FROM layers WHERE id NOT IN (SELECT layer_id FROM image_layers UNION SELECT layer_id FROM build_cache_layers
                UNION SELECT layer_id FROM snapshots WHERE layer_id IS NOT NULL)",
            )
            .map_err(db(store))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(db(store))?;
        for row in rows {
            if let Ok(d) = row.map_err(db(store))?.parse() {
                report.layers_removed.push(d);
            }
        }
    }
    tx.execute(
        "DELETE FROM layers WHERE id NOT IN (SELECT layer_id FROM image_layers UNION SELECT layer_id FROM build_cache_layers
                UNION SELECT layer_id FROM snapshots WHERE layer_id IS NOT NULL)",
        [],
    )
    .map_err(db(store))?;
    tx.execute(
        "DELETE FROM layer_blobs WHERE diff_id NOT IN (SELECT diff_id FROM layers)",
        [],
    )
    .map_err(db(store))?;
    let dead_files: Vec<(Vec<u8>, i64)> = {
        let mut stmt = tx
            .prepare("SELECT digest, size FROM files WHERE digest NOT IN (SELECT file_digest FROM entries WHERE file_digest IS NOT NULL)")
            .map_err(db(store))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db(store))?;
        rows.collect::<Result<_, _>>().map_err(db(store))?
    };
    tx.execute(
        "DELETE FROM files WHERE digest NOT IN (SELECT file_digest FROM entries WHERE file_digest IS NOT NULL)",
        [],
    )
    .map_err(db(store))?;
    let dead_blobs: Vec<(String, i64)> = {
        let mut stmt = tx
            .prepare(
                "SELECT digest, size FROM blobs WHERE digest NOT IN (SELECT manifest_digest FROM images UNION SELECT config_digest FROM images UNION SELECT config FROM build_cache)",
            )
            .map_err(db(store))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db(store))?;
        rows.collect::<Result<_, _>>().map_err(db(store))?
    };
    tx.execute(
        "DELETE FROM blobs WHERE digest NOT IN (SELECT manifest_digest FROM images UNION SELECT config_digest FROM images UNION SELECT config FROM build_cache)",
        [],
    )
    .map_err(db(store))?;
    tx.commit().map_err(db(store))?;
    for (digest, size) in &dead_files {
        if let Ok(bytes) = <[u8; 32]>::try_from(digest.as_slice()) {
            let d = Digest::from_bytes(bytes);
            if std::fs::remove_file(store.file_path(&d)).is_ok() {
                report.files_removed += 1;
                report.bytes_freed += *size as u64;
            }
        }
    }
    for (digest, size) in &dead_blobs {
        if let Ok(d) = digest.parse::<Digest>() {
            if std::fs::remove_file(store.blob_path(&d)).is_ok() {
                report.blobs_removed += 1;
                report.bytes_freed += *size as u64;
            }
        }
    }
    // Files published by an ingest that was killed before its commit.
    let known = indexed_files(store)?;
    for (path, digest) in walk_objects(&store.root().join("files"), true) {
        if !known.contains(&digest) {
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if std::fs::remove_file(&path).is_ok() {
                report.files_removed += 1;
                report.bytes_freed += size;
            }
        }
    }
    let known_blobs: HashSet<String> = {
        let mut stmt = conn
            .prepare("SELECT digest FROM blobs")
            .map_err(db(store))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(db(store))?;
        rows.collect::<Result<_, _>>().map_err(db(store))?
    };
    for (path, digest) in walk_objects(&store.root().join("blobs/sha256"), false) {
        if !known_blobs.contains(&digest) {
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if std::fs::remove_file(&path).is_ok() {
                report.blobs_removed += 1;
                report.bytes_freed += size;
            }
        }
    }
    remove_unused_layer_dirs(store, &mut report)?;
    Ok(report)
}

/// Removes the views (`views/`, see views.rs) of images that are gone,
/// and builds whose process is gone. A view of an existing image stays:
/// it is what its next `strata mount` mounts.
fn remove_unused_views(store: &Store, report: &mut GcReport) -> Result<(), StoreError> {
    use super::views::classify;
    let Ok(dir) = std::fs::read_dir(super::views::base(store.root())) else {
        return Ok(());
    };
    let images = super::views::image_hexes(store)?;
    for item in dir.flatten() {
        let name = item.file_name().to_string_lossy().to_string();
        if !classify(&name).is_unused(&images) {
            continue;
        }
        let path = item.path();
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if removed.is_ok() {
            report.views_removed += 1;
        }
    }
    Ok(())
}

/// Whether a staging directory's owner is alive (it holds the flock on
/// its `.lock`).
fn staging_in_use(dir: &std::path::Path) -> bool {
    let Ok(file) = std::fs::File::open(dir.join(".lock")) else {
        return false;
    };
    matches!(
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock),
        Err((_, nix::errno::Errno::EWOULDBLOCK))
    )
}

/// Where the overlayfs fallback extracts layers (see `layer_dirs.rs`).
pub fn layer_dirs(store: &Store) -> std::path::PathBuf {
    super::layer_dirs::base(store.root())
}

/// The diff_ids (hex) of the layers of every container's image: their
/// extracted directories may be in use, or soon.
pub(crate) fn layers_of_containers(store: &Store) -> Result<HashSet<String>, StoreError> {
    let mut stmt = store
        .conn()
        .prepare(
            "SELECT l.diff_id FROM layers l JOIN image_layers il ON il.layer_id = l.id
             WHERE il.image_id IN (SELECT image_id FROM containers)",
        )
        .map_err(db(store))?;
    let rows = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(db(store))?;
    let mut out = HashSet::new();
    for row in rows {
        let diff_id = row.map_err(db(store))?;
        out.insert(
            diff_id
                .strip_prefix("sha256:")
                .unwrap_or(&diff_id)
                .to_string(),
        );
    }
    Ok(out)
}

/// An extraction whose name names no layer (an older strata's) is taken
/// as killed once it is this old.
const STALE_EXTRACTION: std::time::Duration = std::time::Duration::from_secs(3600);

/// Whether the layer with diff_id hex `hex` is a layer of some
/// container's image.
fn layer_used_by_a_container(store: &Store, hex: &str) -> Result<bool, StoreError> {
    store
        .conn()
        .prepare_cached(
            "SELECT 1 FROM layers l JOIN image_layers il ON il.layer_id = l.id
             WHERE l.diff_id = ?1 AND il.image_id IN (SELECT image_id FROM containers)",
        )
        .and_then(|mut stmt| stmt.exists([format!("sha256:{hex}")]))
        .map_err(db(store))
}

/// Removes extracted layer directories whose layer is gone or used by no
/// container (a container's next start extracts them again), killed
/// extractions, and the locks of layers without a directory. Each is removed
/// under its layer's lock, and a layer's use is checked once the lock is
/// held: a start that holds it (extracting, or finding the directory) has
/// its container recorded already, and one that comes after waits and
/// extracts again.
fn remove_unused_layer_dirs(store: &Store, report: &mut GcReport) -> Result<(), StoreError> {
    use super::layer_dirs::{classify, Entry, LayerLock};
    let base = layer_dirs(store);
    let Ok(items) = std::fs::read_dir(&base) else {
        return Ok(());
    };
    let root = store.root();
    for item in items.flatten() {
        let name = item.file_name().to_string_lossy().into_owned();
        let path = item.path();
        match classify(&name) {
            Entry::Empty | Entry::Other => {}
            Entry::Layer(hex) => {
                let Some(lock) = LayerLock::try_exclusive(root, hex)? else {
                    continue;
                };
                if layer_used_by_a_container(store, hex)? {
                    continue;
                }
                let size = super::usage::dir_size(&path);
                if std::fs::remove_dir_all(&path).is_ok() {
                    report.layer_dirs_removed += 1;
                    report.bytes_freed += size;
                    lock.remove()?;
                }
            }
            Entry::Extraction(Some(hex)) => {
                // Nobody extracts it: the extraction was killed.
                if let Some(_lock) = LayerLock::try_exclusive(root, hex)? {
                    remove_extraction(&path, report);
                }
            }
            Entry::Extraction(None) => {
                let stale = item
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > STALE_EXTRACTION);
                if stale {
                    remove_extraction(&path, report);
                }
            }
        }
    }
    // Locks of layers that have no directory (any more).
    let locks = root.join("locks");
    for item in std::fs::read_dir(&locks).into_iter().flatten().flatten() {
        let name = item.file_name().to_string_lossy().into_owned();
        let Some(hex) = super::layer_dirs::lock_file_layer(&name) else {
            continue;
        };
        if !base.join(hex).exists() {
            if let Some(lock) = LayerLock::try_exclusive(root, hex)? {
                lock.remove()?;
            }
        }
    }
    Ok(())
}

fn remove_extraction(path: &std::path::Path, report: &mut GcReport) {
    let size = super::usage::dir_size(path);
    if std::fs::remove_dir_all(path).is_ok() {
        report.layer_dirs_removed += 1;
        report.bytes_freed += size;
    }
}

/// Every object file under `dir` (`files/<hh>/<hex>` when `nested`, else
/// `<hex>`), with its digest as text.
pub(crate) fn walk_objects(
    dir: &std::path::Path,
    nested: bool,
) -> Vec<(std::path::PathBuf, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    if nested {
        dirs = std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default();
    }
    for d in dirs {
        if let Ok(items) = std::fs::read_dir(&d) {
            for item in items.flatten() {
                let name = item.file_name().to_string_lossy().into_owned();
                out.push((item.path(), format!("sha256:{name}")));
            }
        }
    }
    out
}

/// The digests (as `sha256:<hex>`) of every file the index knows.
pub(crate) fn indexed_files(store: &Store) -> Result<HashSet<String>, StoreError> {
    let mut stmt = store
        .conn()
        .prepare("SELECT digest FROM files")
        .map_err(|e| store.db_err(e))?;
    let rows = stmt
        .query_map([], |r| r.get::<_, Vec<u8>>(0))
        .map_err(|e| store.db_err(e))?;
    let mut out = HashSet::new();
    for row in rows {
        out.insert(format!(
            "sha256:{}",
            hex::encode(row.map_err(|e| store.db_err(e))?)
        ));
    }
    Ok(out)
}
