//! Images in the store: recording, listing, resolving a user's name for
//! an image, tagging and removing.

use rusqlite::{params, OptionalExtension, Transaction};

use super::oci::ImageConfig;
use crate::digest::Digest;
use crate::reference::{familiar, Reference};
use crate::store::{Store, StoreError};

/// Errors of image records. Each names the image or reference involved.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("No such image: {0}")]
    NotFound(String),
    #[error("{0}")]
    Reference(#[from] crate::reference::ReferenceError),
    #[error("image {name:?} is ambiguous: it matches {count} images; give more of the ID")]
    Ambiguous { name: String, count: usize },
    #[error("conflict: unable to remove repository reference {name:?} (must force) - container {container} is using its referenced image {image}")]
    InUseByContainer {
        name: String,
        container: String,
        image: String,
    },
    #[error("conflict: unable to delete {image} (must be forced) - image is referenced in multiple repositories")]
    MultipleRepositories { image: String },
    #[error("conflict: unable to delete {image} (cannot be forced) - image is being used by running container {container}")]
    InUseRunning { image: String, container: String },
    #[error(
        "conflict: unable to delete {image} - image is mounted at {mountpoint}; unmount it first"
    )]
    Mounted { image: String, mountpoint: String },
    #[error("image {image}: layer {diff_id} is not in the store")]
    MissingLayer { image: String, diff_id: String },
    #[error("image {image}: config is invalid: {reason}")]
    BadConfig { image: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn db(e: rusqlite::Error) -> ImageError {
    ImageError::Store(StoreError::Db {
        path: "strata.db".into(),
        source: e,
    })
}

/// An image as listed.
#[derive(Debug, Clone)]
pub struct ImageRecord {
    pub id: Digest,
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    pub created: Option<String>,
    pub size: u64,
    pub added_at: i64,
    pub last_tag_time: Option<String>,
    /// Full references (`docker.io/library/debian:latest`), sorted.
    pub tags: Vec<String>,
    /// Full `repo@digest` references, sorted.
    pub repo_digests: Vec<String>,
}

impl ImageRecord {
    pub fn familiar_tags(&self) -> Vec<String> {
        self.tags.iter().map(|t| familiar(t)).collect()
    }
    pub fn familiar_repo_digests(&self) -> Vec<String> {
        self.repo_digests.iter().map(|t| familiar(t)).collect()
    }
}

/// What a new image consists of; its layers must already be recorded.
#[derive(Debug, Clone)]
pub struct NewImage {
    pub config_digest: Digest,
    pub manifest_digest: Digest,
    pub config: ImageConfig,
    pub tags: Vec<Reference>,
    pub repo_digests: Vec<Reference>,
}

/// A tag that moved away from another image when a new image took it.
#[derive(Debug, Clone)]
pub struct MovedTag {
    pub name: String,
    pub from: Digest,
}

/// Records an image and its tags in `tx`. Returns the tags that moved
/// from other images (which may now be dangling).
pub fn record_image(tx: &Transaction, image: &NewImage) -> Result<Vec<MovedTag>, ImageError> {
    let id = image.config_digest;
    let id_text = id.to_string();
    let exists = tx
        .query_row("SELECT 1 FROM images WHERE id = ?1", [&id_text], |_| Ok(()))
        .optional()
        .map_err(db)?;
    if exists.is_none() {
        let mut size = 0u64;
        let mut layer_ids = Vec::new();
        for diff_id in &image.config.rootfs.diff_ids {
            let row: Option<(i64, i64)> = tx
                .query_row(
                    "SELECT id, content_size FROM layers WHERE diff_id = ?1",
                    [diff_id.to_string()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(db)?;
            let (layer_id, content) = row.ok_or_else(|| ImageError::MissingLayer {
                image: id_text.clone(),
                diff_id: diff_id.to_string(),
            })?;
            size += content as u64;
            layer_ids.push(layer_id);
        }
        tx.execute(
            "INSERT INTO images(id, manifest_digest, config_digest, created, size, added_at) VALUES (?1, ?2, ?3, ?4, ?5, strftime('%s','now'))",
            params![id_text, image.manifest_digest.to_string(), image.config_digest.to_string(), image.config.created, size as i64],
        )
        .map_err(db)?;
        for (position, layer_id) in layer_ids.iter().enumerate() {
            tx.execute(
                "INSERT INTO image_layers(image_id, position, layer_id) VALUES (?1, ?2, ?3)",
                params![id_text, position as i64, layer_id],
            )
            .map_err(db)?;
        }
    }
    let mut moved = Vec::new();
    for tag in &image.tags {
        if let Some(m) = set_tag(tx, &tag.to_string(), &id)? {
            moved.push(m);
        }
    }
    for reference in &image.repo_digests {
        tx.execute(
            "INSERT OR REPLACE INTO repo_digests(name, image_id) VALUES (?1, ?2)",
            params![reference.to_string(), id_text],
        )
        .map_err(db)?;
    }
    Ok(moved)
}

/// Points a tag at an image; returns where it pointed before, if elsewhere.
pub fn set_tag(tx: &Transaction, name: &str, id: &Digest) -> Result<Option<MovedTag>, ImageError> {
    let previous: Option<String> = tx
        .query_row("SELECT image_id FROM tags WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()
        .map_err(db)?;
    tx.execute(
        "INSERT OR REPLACE INTO tags(name, image_id) VALUES (?1, ?2)",
        params![name, id.to_string()],
    )
    .map_err(db)?;
    tx.execute(
        "UPDATE images SET last_tag_time = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE id = ?1",
        [id.to_string()],
    )
    .map_err(db)?;
    Ok(match previous {
        Some(p) if p != id.to_string() => Some(MovedTag {
            name: name.to_string(),
            from: p.parse().map_err(|_| ImageError::NotFound(p))?,
        }),
        _ => None,
    })
}

/// Every image, newest first.
pub fn list_images(store: &Store) -> Result<Vec<ImageRecord>, ImageError> {
    let conn = store.conn();
    let mut stmt = conn
        .prepare(
            "SELECT id, manifest_digest, config_digest, created, size, added_at, last_tag_time FROM images",
        )
        .map_err(db)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, Option<String>>(6)?,
            ))
        })
        .map_err(db)?;
    let mut images = Vec::new();
    for row in rows {
        let (id, manifest, config, created, size, added_at, last_tag_time) = row.map_err(db)?;
        let parse = |s: &str| {
            s.parse::<Digest>()
                .map_err(|_| ImageError::NotFound(s.to_string()))
        };
        images.push(ImageRecord {
            id: parse(&id)?,
            manifest_digest: parse(&manifest)?,
            config_digest: parse(&config)?,
            created,
            size: size as u64,
            added_at,
            last_tag_time,
            tags: names(store, "tags", &id)?,
            repo_digests: names(store, "repo_digests", &id)?,
        });
    }
    images.sort_by(|a, b| {
        (b.created.as_deref().unwrap_or(""), b.added_at)
            .cmp(&(a.created.as_deref().unwrap_or(""), a.added_at))
    });
    Ok(images)
}

fn names(store: &Store, table: &str, id: &str) -> Result<Vec<String>, ImageError> {
    let mut stmt = store
        .conn()
        .prepare_cached(&format!(
            "SELECT name FROM {table} WHERE image_id = ?1 ORDER BY name"
        ))
        .map_err(db)?;
    let rows = stmt
        .query_map([id], |r| r.get::<_, String>(0))
        .map_err(db)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db)
}

/// One image by ID.
pub fn get_image(store: &Store, id: &Digest) -> Result<ImageRecord, ImageError> {
    list_images(store)?
        .into_iter()
        .find(|i| i.id == *id)
        .ok_or_else(|| ImageError::NotFound(id.to_string()))
}

/// Resolves what a user typed (`name[:tag]`, `name@digest`, a full or
/// short image ID, `sha256:<id>`) to an image ID, as Docker does: a
/// reference first, then an ID prefix.
pub fn resolve_image(store: &Store, name: &str) -> Result<Digest, ImageError> {
    let conn = store.conn();
    if let Ok(digest) = name.parse::<Digest>() {
        if conn
            .query_row(
                "SELECT 1 FROM images WHERE id = ?1",
                [digest.to_string()],
                |_| Ok(()),
            )
            .optional()
            .map_err(db)?
            .is_some()
        {
            return Ok(digest);
        }
    }
    if let Ok(reference) = Reference::parse(name) {
        if let Some(digest) = reference.digest {
            let by_name: Option<String> = conn
                .query_row(
                    "SELECT image_id FROM repo_digests WHERE name = ?1",
                    [reference.with_digest(digest).to_string()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db)?;
            let found = match by_name {
                Some(id) => Some(id),
                None => conn
                    .query_row(
                        "SELECT id FROM images WHERE manifest_digest = ?1 LIMIT 1",
                        [digest.to_string()],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(db)?,
            };
            if let Some(id) = found {
                return id
                    .parse()
                    .map_err(|_| ImageError::NotFound(name.to_string()));
            }
        } else {
            let found: Option<String> = conn
                .query_row(
                    "SELECT image_id FROM tags WHERE name = ?1",
                    [reference.to_string()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db)?;
            if let Some(id) = found {
                return id
                    .parse()
                    .map_err(|_| ImageError::NotFound(name.to_string()));
            }
        }
    }
    let prefix = name.strip_prefix("sha256:").unwrap_or(name);
    if !prefix.is_empty()
        && prefix.len() <= 64
        && prefix
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        let mut stmt = conn
            .prepare("SELECT id FROM images WHERE id >= ?1 AND id < ?2")
            .map_err(db)?;
        let low = format!("sha256:{prefix}");
        let high = format!("sha256:{prefix}\u{10ffff}");
        let ids = stmt
            .query_map([low, high], |r| r.get::<_, String>(0))
            .map_err(db)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db)?;
        match ids.len() {
            0 => {}
            1 => {
                return ids[0]
                    .parse()
                    .map_err(|_| ImageError::NotFound(name.to_string()))
            }
            count => {
                return Err(ImageError::Ambiguous {
                    name: name.to_string(),
                    count,
                })
            }
        }
    }
    Err(ImageError::NotFound(name.to_string()))
}

/// Reads and parses an image's config.
pub fn image_config(store: &Store, id: &Digest) -> Result<(ImageConfig, Vec<u8>), ImageError> {
    let record = get_image(store, id)?;
    let bytes = store.read_blob(&record.config_digest)?;
    let config: ImageConfig =
        serde_json::from_slice(&bytes).map_err(|e| ImageError::BadConfig {
            image: id.to_string(),
            reason: e.to_string(),
        })?;
    Ok((config, bytes))
}

/// The row ids of an image's layers, bottom first.
pub fn image_layer_ids(store: &Store, id: &Digest) -> Result<Vec<(i64, Digest)>, ImageError> {
    let mut stmt = store
        .conn()
        .prepare_cached(
            "SELECT l.id, l.diff_id FROM image_layers il JOIN layers l ON l.id = il.layer_id WHERE il.image_id = ?1 ORDER BY il.position",
        )
        .map_err(db)?;
    let rows = stmt
        .query_map([id.to_string()], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })
        .map_err(db)?;
    let mut out = Vec::new();
    for row in rows {
        let (layer, diff) = row.map_err(db)?;
        out.push((
            layer,
            diff.parse()
                .map_err(|_| ImageError::NotFound(diff.clone()))?,
        ));
    }
    Ok(out)
}

/// `tag SOURCE TARGET`.
pub fn tag_image(store: &Store, source: &str, target: &str) -> Result<(), ImageError> {
    let id = resolve_image(store, source)?;
    let target = Reference::parse(target)?;
    if target.digest.is_some() {
        return Err(ImageError::Reference(crate::reference::ReferenceError {
            input: target.to_string(),
            reason: "a tag cannot contain a digest",
        }));
    }
    let tx = Transaction::new_unchecked(store.conn(), rusqlite::TransactionBehavior::Immediate)
        .map_err(db)?;
    set_tag(&tx, &target.to_string(), &id)?;
    tx.commit().map_err(db)?;
    crate::events::record_image(store, &id.to_string(), &target.familiar(), "tag");
    Ok(())
}

/// What `rmi` did, in Docker's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemovalEvent {
    Untagged(String),
    Deleted(String),
}

/// Removes an image reference or an image (`rmi`). A name untags; the
/// image itself goes when no tag is left and no container uses it.
pub fn remove_image(
    store: &Store,
    name: &str,
    force: bool,
) -> Result<Vec<RemovalEvent>, ImageError> {
    let id = resolve_image(store, name)?.to_string();
    let removed = remove_image_records(store, name, force)?;
    for event in &removed {
        match event {
            RemovalEvent::Untagged(name) => crate::events::record_image(store, &id, name, "untag"),
            RemovalEvent::Deleted(_) => crate::events::record_image(store, &id, &id, "delete"),
        }
    }
    Ok(removed)
}

fn remove_image_records(
    store: &Store,
    name: &str,
    force: bool,
) -> Result<Vec<RemovalEvent>, ImageError> {
    let id = resolve_image(store, name)?;
    let id_text = id.to_string();
    let record = get_image(store, &id)?;
    let tx = Transaction::new_unchecked(store.conn(), rusqlite::TransactionBehavior::Immediate)
        .map_err(db)?;
    let mut events = Vec::new();
    let by_reference = Reference::parse(name).ok().filter(|r| {
        let full = r.to_string();
        record.tags.contains(&full) || record.repo_digests.contains(&full)
    });
    let container: Option<String> = tx
        .query_row(
            "SELECT id FROM containers WHERE image_id = ?1 LIMIT 1",
            [&id_text],
            |r| r.get(0),
        )
        .optional()
        .map_err(db)?;
    let mountpoint: Option<String> = tx
        .query_row(
            "SELECT mountpoint FROM mounts WHERE image_id = ?1 LIMIT 1",
            [&id_text],
            |r| r.get(0),
        )
        .optional()
        .map_err(db)?;
    if let Some(reference) = by_reference {
        let full = reference.to_string();
        let other_names = record.tags.len() + record.repo_digests.len() - 1;
        if let (Some(c), false, 0) = (&container, force, other_names) {
            return Err(ImageError::InUseByContainer {
                name: name.to_string(),
                container: c[..12.min(c.len())].to_string(),
                image: id.short(),
            });
        }
        tx.execute("DELETE FROM tags WHERE name = ?1", [&full])
            .map_err(db)?;
        tx.execute("DELETE FROM repo_digests WHERE name = ?1", [&full])
            .map_err(db)?;
        events.push(RemovalEvent::Untagged(familiar(&full)));
        // Docker also drops the repo digests of a repository once its last tag goes.
        let repo = reference.repository();
        let remaining_in_repo = record
            .tags
            .iter()
            .filter(|t| **t != full && t.starts_with(&format!("{repo}:")))
            .count();
        if remaining_in_repo == 0 {
            for d in record
                .repo_digests
                .iter()
                .filter(|d| d.starts_with(&format!("{repo}@")) && **d != full)
            {
                tx.execute("DELETE FROM repo_digests WHERE name = ?1", [d])
                    .map_err(db)?;
                events.push(RemovalEvent::Untagged(familiar(d)));
            }
        }
        let left: i64 = tx
            .query_row(
                "SELECT COUNT(*) FROM tags WHERE image_id = ?1",
                [&id_text],
                |r| r.get(0),
            )
            .map_err(db)?;
        if left > 0 || container.is_some() || mountpoint.is_some() {
            tx.commit().map_err(db)?;
            return Ok(events);
        }
    } else {
        let repos: std::collections::BTreeSet<String> = record
            .tags
            .iter()
            .filter_map(|t| Reference::parse(t).ok())
            .map(|r| r.repository())
            .collect();
        if repos.len() > 1 && !force {
            return Err(ImageError::MultipleRepositories { image: id.short() });
        }
        if let Some(c) = &container {
            if !force {
                return Err(ImageError::InUseByContainer {
                    name: name.to_string(),
                    container: c[..12.min(c.len())].to_string(),
                    image: id.short(),
                });
            }
        }
        if let Some(m) = &mountpoint {
            return Err(ImageError::Mounted {
                image: id.short(),
                mountpoint: m.clone(),
            });
        }
        for t in record.tags.iter().chain(record.repo_digests.iter()) {
            events.push(RemovalEvent::Untagged(familiar(t)));
        }
        tx.execute("DELETE FROM tags WHERE image_id = ?1", [&id_text])
            .map_err(db)?;
        tx.execute("DELETE FROM repo_digests WHERE image_id = ?1", [&id_text])
            .map_err(db)?;
        if container.is_some() {
            tx.commit().map_err(db)?;
            return Ok(events);
        }
    }
    tx.execute("DELETE FROM images WHERE id = ?1", [&id_text])
        .map_err(db)?;
    events.push(RemovalEvent::Deleted(id_text));
    tx.commit().map_err(db)?;
    Ok(events)
}
