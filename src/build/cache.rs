//! The build cache, in the store (`build_cache` and `build_cache_layers`,
//! schema version 4). A step's key hashes its inputs: the parent state
//! (an image config digest, or `scratch`), the instruction after
//! expansion, the build arguments it sees and, for COPY and ADD, the
//! content digests and metadata of the sources. The value is the config
//! blob of the state the step produced; its rows pin that blob and every
//! layer of the state, so gc keeps them. `builder prune` removes entries
//! (and then gc what only they kept).

use rusqlite::{params, OptionalExtension, Transaction};

use super::error::BuildError;
use crate::digest::{Digest, Hasher};
use crate::store::Store;

/// Builds a cache key from the parts of a step, in order.
pub struct KeyBuilder(Hasher);

impl KeyBuilder {
    pub fn new(parent: Option<&Digest>, instruction: &str) -> KeyBuilder {
        let mut h = Hasher::new();
        h.update(b"strata-build-cache-v1\0");
        match parent {
            Some(d) => h.update(d.to_string().as_bytes()),
            None => h.update(b"scratch"),
        }
        h.update(b"\0");
        h.update(instruction.as_bytes());
        h.update(b"\0");
        KeyBuilder(h)
    }

    pub fn add(&mut self, part: &[u8]) {
        self.0.update(&(part.len() as u64).to_le_bytes());
        self.0.update(part);
    }

    pub fn finish(self) -> String {
        self.0.finish().hex()
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// How stale an entry's `last_used` may get before a cache hit writes
/// it again: a rebuild within this many seconds of the last one writes
/// nothing (`builder prune --filter until=` counts to the minute).
pub const LAST_USED_GRANULARITY: i64 = 60;

/// The state a step with this key produced before, if it is still stored.
pub fn lookup(store: &Store, key: &str) -> Result<Option<Digest>, BuildError> {
    let conn = store.conn();
    let found: Option<(String, i64)> = conn
        .prepare_cached("SELECT config, last_used FROM build_cache WHERE key = ?1")?
        .query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((config, last_used)) = found else {
        return Ok(None);
    };
    let Ok(digest) = config.parse::<Digest>() else {
        return Ok(None);
    };
    if !store.blob_path(&digest).exists() {
        return Ok(None);
    }
    let t = now();
    if t - last_used >= LAST_USED_GRANULARITY {
        // Best effort: a busy store only delays the last-used time.
        let _ = conn.execute(
            "UPDATE build_cache SET last_used = ?2 WHERE key = ?1",
            params![key, t],
        );
    }
    Ok(Some(digest))
}

/// Records that the step `key` produced the state `config` (whose layers
/// are `diff_ids`, all already recorded in `tx`).
pub fn record(
    tx: &Transaction,
    key: &str,
    config: &Digest,
    description: &str,
    size: u64,
    diff_ids: &[Digest],
) -> Result<(), BuildError> {
    let t = now();
    tx.execute(
        "INSERT OR REPLACE INTO build_cache(key, config, description, size, created_at, last_used)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        params![key, config.to_string(), description, size as i64, t],
    )?;
    for diff_id in diff_ids {
        // An entry that pinned fewer layers than its state has would be
        // broken by the next gc: a layer gone meanwhile (a concurrent
        // prune) fails the step instead.
        let layer: Option<i64> = tx
            .query_row(
                "SELECT id FROM layers WHERE diff_id = ?1",
                [diff_id.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        let Some(layer) = layer else {
            return Err(BuildError::Invalid(format!(
                "layer {diff_id} of the build state is no longer stored (removed by a prune meanwhile?)"
            )));
        };
        tx.execute(
            "INSERT OR IGNORE INTO build_cache_layers(key, layer_id) VALUES (?1, ?2)",
            params![key, layer],
        )?;
    }
    Ok(())
}

/// Whether every layer of a cached state is still stored (a cache entry
/// whose layer went is a miss, never a broken image).
pub fn layers_present(store: &Store, diff_ids: &[Digest]) -> Result<bool, BuildError> {
    let mut stmt = store
        .conn()
        .prepare_cached("SELECT 1 FROM layers WHERE diff_id = ?1")?;
    for diff_id in diff_ids {
        if !stmt.exists([diff_id.to_string()])? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// What the build cache holds.
#[derive(Debug, Default, Clone)]
pub struct CacheUsage {
    pub entries: u64,
    /// Entries whose state is an image's (or its ancestor's) right now.
    pub active: u64,
    /// Bytes of the layers steps made.
    pub size: u64,
    /// Bytes of layers only the cache keeps (freed by `builder prune -a`
    /// and gc).
    pub reclaimable: u64,
}

pub fn usage(store: &Store) -> Result<CacheUsage, BuildError> {
    let conn = store.conn();
    let (entries, size): (i64, Option<i64>) =
        conn.query_row("SELECT COUNT(*), SUM(size) FROM build_cache", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    let active: i64 = conn.query_row(
        "SELECT COUNT(*) FROM build_cache WHERE config IN (SELECT config_digest FROM images)",
        [],
        |r| r.get(0),
    )?;
    let reclaimable: Option<i64> = conn.query_row(
        "SELECT SUM(content_size) FROM layers WHERE id IN (SELECT layer_id FROM build_cache_layers)
           AND id NOT IN (SELECT layer_id FROM image_layers)",
        [],
        |r| r.get(0),
    )?;
    Ok(CacheUsage {
        entries: entries as u64,
        active: active as u64,
        size: size.unwrap_or(0) as u64,
        reclaimable: reclaimable.unwrap_or(0) as u64,
    })
}

/// What `builder prune` removed.
#[derive(Debug, Default, Clone)]
pub struct PruneReport {
    pub entries: u64,
    /// Bytes gc freed afterwards.
    pub bytes_freed: u64,
}

/// Removes cache entries: those last used before `until` (seconds since
/// the epoch) if given; without `all`, only entries whose state no image
/// is (Docker keeps the cache of tagged images' steps unless `-a`).
/// Then collects what nothing references any more.
pub fn prune(store: &Store, all: bool, until: Option<i64>) -> Result<PruneReport, BuildError> {
    let conn = store.conn();
    let cutoff = until.unwrap_or(i64::MAX);
    let removed = if all {
        conn.execute("DELETE FROM build_cache WHERE last_used < ?1", [cutoff])?
    } else {
        conn.execute(
            "DELETE FROM build_cache WHERE last_used < ?1
               AND config NOT IN (SELECT config_digest FROM images)",
            [cutoff],
        )?
    };
    let mut report = PruneReport {
        entries: removed as u64,
        bytes_freed: 0,
    };
    if all && until.is_none() {
        super::digests::forget_all(store)?;
        // The directories of `RUN --mount=type=cache` go too.
        let mounts = store.root().join("build-mounts");
        report.bytes_freed += crate::store::dir_size(&mounts);
        // A RUN of an ordinary user may have left files of its
        // subordinate ids there.
        let _ = crate::container::launch::userns::remove_dir_of_any_owner(&mounts);
    }
    if removed > 0 {
        let gc = crate::store::collect_garbage(store)?;
        report.bytes_freed += gc.bytes_freed;
    }
    Ok(report)
}
