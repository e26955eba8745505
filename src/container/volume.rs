//! Named volumes: `<root>/volumes/<name>/_data`, recorded in the
//! `volumes` table. Anonymous volumes (for an image's VOLUME entries) get
//! a random 64-hex name and go with `rm -v` or `volume prune`.

use std::path::PathBuf;

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::error::ContainerError;
use super::records::{is_valid_name, list_containers};
use crate::store::Store;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Volume {
    pub name: String,
    pub driver: String,
    pub mountpoint: String,
    pub created_at: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub scope: String,
    #[serde(skip)]
    pub anonymous: bool,
}

pub fn volume_data_dir(store: &Store, name: &str) -> PathBuf {
    store.root().join("volumes").join(name).join("_data")
}

fn row_to_volume(store: &Store, r: &rusqlite::Row) -> rusqlite::Result<Volume> {
    let name: String = r.get(0)?;
    let labels: String = r.get(3)?;
    Ok(Volume {
        mountpoint: volume_data_dir(store, &name).to_string_lossy().into_owned(),
        name,
        driver: r.get(1)?,
        created_at: r.get(2)?,
        labels: serde_json::from_str(&labels).unwrap_or_default(),
        scope: "local".into(),
        anonymous: r.get::<_, i64>(4)? != 0,
    })
}

/// Creates a volume (or returns the existing one of that name, as Docker
/// does). `None` makes an anonymous volume with a random name.
pub fn create_volume(
    store: &Store,
    name: Option<&str>,
    labels: &std::collections::BTreeMap<String, String>,
) -> Result<Volume, ContainerError> {
    let (name, anonymous) = match name {
        Some(n) => {
            if !is_valid_name(n) {
                return Err(ContainerError::InvalidVolumeName(n.to_string()));
            }
            (n.to_string(), false)
        }
        None => (super::records::new_id(), true),
    };
    if let Ok(v) = inspect_volume(store, &name) {
        return Ok(v);
    }
    let dir = volume_data_dir(store, &name);
    std::fs::create_dir_all(&dir).map_err(|e| ContainerError::io(&dir, e))?;
    let labels_text =
        serde_json::to_string(labels).map_err(|e| ContainerError::Invalid(e.to_string()))?;
    store.conn().execute(
        "INSERT OR IGNORE INTO volumes(name, created_at, labels, anonymous) VALUES (?1, ?2, ?3, ?4)",
        params![name, chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true), labels_text, anonymous as i64],
    )?;
    super::events::record_volume_event(store, &name, "create", &[]);
    inspect_volume(store, &name)
}

pub fn inspect_volume(store: &Store, name: &str) -> Result<Volume, ContainerError> {
    store
        .conn()
        .query_row(
            "SELECT name, driver, created_at, labels, anonymous FROM volumes WHERE name = ?1",
            [name],
            |r| row_to_volume(store, r),
        )
        .optional()?
        .ok_or_else(|| ContainerError::NoSuchVolume(name.to_string()))
}

pub fn list_volumes(store: &Store) -> Result<Vec<Volume>, ContainerError> {
    let mut stmt = store
        .conn()
        .prepare("SELECT name, driver, created_at, labels, anonymous FROM volumes ORDER BY name")?;
    let rows = stmt.query_map([], |r| row_to_volume(store, r))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Names of containers (any state) that mount the volume.
pub fn volume_users(store: &Store, name: &str) -> Result<Vec<String>, ContainerError> {
    Ok(list_containers(store)?
        .into_iter()
        .filter(|c| {
            c.spec
                .mounts
                .iter()
                .any(|m| m.kind == "volume" && m.source == name)
        })
        .map(|c| c.id)
        .collect())
}

/// Removes a volume unless a container uses it (`force` only skips the
/// "no such volume" error, as in Docker).
pub fn remove_volume(store: &Store, name: &str, force: bool) -> Result<(), ContainerError> {
    if let Err(e) = inspect_volume(store, name) {
        return if force { Ok(()) } else { Err(e) };
    }
    if let Some(user) = volume_users(store, name)?.first() {
        return Err(ContainerError::VolumeInUse {
            name: name.to_string(),
            container: user.clone(),
        });
    }
    let dir = store.root().join("volumes").join(name);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ContainerError::io(&dir, e)),
    }
    store
        .conn()
        .execute("DELETE FROM volumes WHERE name = ?1", [name])?;
    super::events::record_volume_event(store, name, "destroy", &[]);
    Ok(())
}

/// Removes unused volumes: anonymous ones, or all with `all`. Returns the
/// names removed and the bytes reclaimed.
pub fn prune_volumes(store: &Store, all: bool) -> Result<(Vec<String>, u64), ContainerError> {
    let mut removed = Vec::new();
    let mut bytes = 0;
    for v in list_volumes(store)? {
        if (!all && !v.anonymous) || !volume_users(store, &v.name)?.is_empty() {
            continue;
        }
        bytes += dir_size(&store.root().join("volumes").join(&v.name));
        remove_volume(store, &v.name, false)?;
        removed.push(v.name);
    }
    Ok((removed, bytes))
}

pub fn dir_size(path: &std::path::Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|it| it.filter_map(|e| e.ok()).map(|e| dir_size(&e.path())).sum())
        .unwrap_or(0)
}
