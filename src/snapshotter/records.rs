//! Snapshot records: one row of the `snapshots` table (schema migration 6)
//! per containerd snapshot. Keys are unique across kinds, as containerd's
//! own snapshotters keep them; a committed snapshot names the strata layer
//! that holds its content (which pins the layer against gc); children
//! name their parent by row id, so a parent cannot go while they exist.

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::SnapshotterError;
use crate::store::Store;

/// containerd's snapshot kinds, with its numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    View = 1,
    Active = 2,
    Committed = 3,
}

impl Kind {
    pub fn from_code(code: i64) -> Option<Kind> {
        match code {
            1 => Some(Kind::View),
            2 => Some(Kind::Active),
            3 => Some(Kind::Committed),
            _ => None,
        }
    }

    /// The name containerd's filters and `ctr snapshots ls` use.
    pub fn name(self) -> &'static str {
        match self {
            Kind::View => "view",
            Kind::Active => "active",
            Kind::Committed => "committed",
        }
    }
}

/// One snapshot as recorded.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub id: i64,
    pub key: String,
    pub kind: Kind,
    pub parent: Option<String>,
    pub parent_id: Option<i64>,
    pub layer_id: Option<i64>,
    pub labels: BTreeMap<String, String>,
    pub created_ns: i64,
    pub updated_ns: i64,
    pub size: i64,
    pub inodes: i64,
    /// The mount daemon serving an active snapshot or a view.
    pub pid: Option<i64>,
}

const COLUMNS: &str = "s.id, s.key, s.kind, p.key, s.parent_id, s.layer_id, s.labels, \
     s.created_ns, s.updated_ns, s.size, s.inodes, s.pid \
     FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent_id";

/// A row as read: the snapshot, its kind code and its labels as JSON
/// (checked and decoded by [`finish`]).
type RawRow = (Snapshot, i64, String);

fn from_row(r: &Row) -> rusqlite::Result<RawRow> {
    Ok((
        Snapshot {
            id: r.get(0)?,
            key: r.get(1)?,
            kind: Kind::View,
            parent: r.get(3)?,
            parent_id: r.get(4)?,
            layer_id: r.get(5)?,
            labels: BTreeMap::new(),
            created_ns: r.get(7)?,
            updated_ns: r.get(8)?,
            size: r.get(9)?,
            inodes: r.get(10)?,
            pid: r.get(11)?,
        },
        r.get(2)?,
        r.get(6)?,
    ))
}

fn finish((mut s, kind, labels): RawRow) -> Result<Snapshot, SnapshotterError> {
    s.kind = Kind::from_code(kind).ok_or_else(|| SnapshotterError::Corrupt {
        key: s.key.clone(),
        reason: format!("unknown kind {kind}"),
    })?;
    s.labels = serde_json::from_str(&labels).map_err(|e| SnapshotterError::Corrupt {
        key: s.key.clone(),
        reason: format!("labels: {e}"),
    })?;
    Ok(s)
}

pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

pub fn encode_labels(labels: &BTreeMap<String, String>) -> String {
    serde_json::to_string(labels).unwrap_or_else(|_| "{}".into())
}

fn db(store: &Store) -> impl Fn(rusqlite::Error) -> SnapshotterError + '_ {
    move |e| SnapshotterError::Store(store.db_err(e))
}

pub fn find(store: &Store, key: &str) -> Result<Option<Snapshot>, SnapshotterError> {
    find_in(store.conn(), key)
        .map_err(db(store))?
        .map(finish)
        .transpose()
}

fn find_in(conn: &Connection, key: &str) -> rusqlite::Result<Option<RawRow>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} WHERE s.key = ?1"))?
        .query_row([key], from_row)
        .optional()
}

/// The snapshot `key`, or containerd's not-found error naming it.
pub fn get(store: &Store, key: &str) -> Result<Snapshot, SnapshotterError> {
    find(store, key)?.ok_or_else(|| SnapshotterError::NotFound(format!("snapshot {key}")))
}

pub fn list(store: &Store) -> Result<Vec<Snapshot>, SnapshotterError> {
    let rows: Vec<RawRow> = {
        let mut stmt = store
            .conn()
            .prepare(&format!("SELECT {COLUMNS} ORDER BY s.id"))
            .map_err(db(store))?;
        let rows = stmt.query_map([], from_row).map_err(db(store))?;
        rows.collect::<Result<_, _>>().map_err(db(store))?
    };
    rows.into_iter().map(finish).collect()
}

/// The new row's fields.
pub struct NewSnapshot<'a> {
    pub key: &'a str,
    pub kind: Kind,
    pub parent_id: Option<i64>,
    pub layer_id: Option<i64>,
    pub labels: &'a BTreeMap<String, String>,
    pub size: i64,
    pub inodes: i64,
}

pub fn insert(conn: &Connection, new: &NewSnapshot) -> rusqlite::Result<i64> {
    let now = now_ns();
    conn.execute(
        "INSERT INTO snapshots(key, kind, parent_id, layer_id, labels, created_ns, updated_ns, size, inodes) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8)",
        params![
            new.key,
            new.kind as i64,
            new.parent_id,
            new.layer_id,
            encode_labels(new.labels),
            now,
            new.size,
            new.inodes
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

pub fn has_children(store: &Store, id: i64) -> Result<bool, SnapshotterError> {
    store
        .conn()
        .prepare_cached("SELECT 1 FROM snapshots WHERE parent_id = ?1 LIMIT 1")
        .and_then(|mut s| s.exists([id]))
        .map_err(db(store))
}

pub fn delete(store: &Store, id: i64) -> Result<(), SnapshotterError> {
    store
        .conn()
        .execute("DELETE FROM snapshots WHERE id = ?1", [id])
        .map_err(db(store))?;
    Ok(())
}

pub fn set_pid(store: &Store, id: i64, pid: Option<i64>) -> Result<(), SnapshotterError> {
    store
        .conn()
        .execute(
            "UPDATE snapshots SET pid = ?2 WHERE id = ?1",
            params![id, pid],
        )
        .map_err(db(store))?;
    Ok(())
}

pub fn set_labels(
    store: &Store,
    id: i64,
    labels: &BTreeMap<String, String>,
) -> Result<(), SnapshotterError> {
    store
        .conn()
        .execute(
            "UPDATE snapshots SET labels = ?2, updated_ns = ?3 WHERE id = ?1",
            params![id, encode_labels(labels), now_ns()],
        )
        .map_err(db(store))?;
    Ok(())
}

/// The layer rows under a snapshot whose parent is `parent_id`, bottom
/// first: the committed chain from the root down to that parent.
pub fn parent_layers(store: &Store, parent_id: Option<i64>) -> Result<Vec<i64>, SnapshotterError> {
    let mut layers = Vec::new();
    let mut next = parent_id;
    let mut seen = std::collections::HashSet::new();
    while let Some(id) = next {
        if !seen.insert(id) {
            return Err(SnapshotterError::Corrupt {
                key: format!("#{id}"),
                reason: "its parents form a cycle".into(),
            });
        }
        let (parent, layer): (Option<i64>, Option<i64>) = store
            .conn()
            .prepare_cached("SELECT parent_id, layer_id FROM snapshots WHERE id = ?1")
            .and_then(|mut s| s.query_row([id], |r| Ok((r.get(0)?, r.get(1)?))))
            .map_err(db(store))?;
        let layer = layer.ok_or_else(|| SnapshotterError::Corrupt {
            key: format!("#{id}"),
            reason: "a parent without a layer".into(),
        })?;
        layers.push(layer);
        next = parent;
    }
    layers.reverse();
    Ok(layers)
}
