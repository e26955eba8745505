//! containerd's snapshot semantics over the store: Prepare, View, Mounts,
//! Stat, Update, Usage, Walk, Remove and Cleanup (Commit is in
//! `commit.rs`). Keys are unique across kinds; a parent must exist and be
//! committed; a snapshot with children cannot be removed; only labels are
//! mutable. Errors are containerd's classes (see `error.rs`).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::filter::{any_matches, Filter, SnapshotFields};
use super::mounts::{self, Mount};
use super::records::{self, Kind, NewSnapshot, Snapshot};
use super::SnapshotterError;
use crate::store::Store;

/// containerd's limit on one label (key and value together).
const MAX_LABEL: usize = 4096;

/// A snapshot as containerd's `Info` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub name: String,
    pub parent: String,
    pub kind: Kind,
    pub labels: BTreeMap<String, String>,
    pub created_ns: i64,
    pub updated_ns: i64,
}

impl Info {
    fn of(s: &Snapshot) -> Info {
        Info {
            name: s.key.clone(),
            parent: s.parent.clone().unwrap_or_default(),
            kind: s.kind,
            labels: s.labels.clone(),
            created_ns: s.created_ns,
            updated_ns: s.updated_ns,
        }
    }
}

/// Bytes and inodes a snapshot uses (containerd's `Usage`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub size: i64,
    pub inodes: i64,
}

/// The snapshotter: the store, plus the snapshots' directories.
pub struct Snapshotter {
    pub(super) store: Store,
}

fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), SnapshotterError> {
    for (k, v) in labels {
        if k.is_empty() {
            return Err(SnapshotterError::InvalidArgument(
                "label key must not be empty".into(),
            ));
        }
        if k.len() + v.len() > MAX_LABEL {
            return Err(SnapshotterError::InvalidArgument(format!(
                "label key and value length ({} bytes) greater than maximum size ({MAX_LABEL} bytes), key: {}",
                k.len() + v.len(),
                &k[..k.len().min(64)]
            )));
        }
    }
    Ok(())
}

impl Snapshotter {
    /// Opens the store at `root` and the snapshots' directory in it.
    pub fn open(root: &Path) -> Result<Snapshotter, SnapshotterError> {
        let store = Store::open(root)?;
        let dir = mounts::snapshots_dir(&store);
        // Private to the store's owner, as every top-level entry but
        // mounts/ (docs/store.md): containerd, the only client, is root.
        crate::store::permissions::create_private_dir(&dir)?;
        Ok(Snapshotter { store })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A new active snapshot over `parent`; returns its mounts.
    pub fn prepare(
        &mut self,
        key: &str,
        parent: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<Mount>, SnapshotterError> {
        self.create(Kind::Active, key, parent, labels)
    }

    /// A new read-only view of `parent`; returns its mounts.
    pub fn view(
        &mut self,
        key: &str,
        parent: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<Mount>, SnapshotterError> {
        self.create(Kind::View, key, parent, labels)
    }

    fn create(
        &mut self,
        kind: Kind,
        key: &str,
        parent: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<Mount>, SnapshotterError> {
        if key.is_empty() {
            return Err(SnapshotterError::InvalidArgument(
                "snapshot key must not be empty".into(),
            ));
        }
        check_labels(labels)?;
        if records::find(&self.store, key)?.is_some() {
            return Err(SnapshotterError::AlreadyExists(key.to_string()));
        }
        let parent_id = if parent.is_empty() {
            None
        } else {
            let p = records::find(&self.store, parent)?
                .ok_or_else(|| SnapshotterError::NotFound(format!("parent snapshot {parent}")))?;
            if p.kind != Kind::Committed {
                return Err(SnapshotterError::InvalidArgument(format!(
                    "parent {parent:?} is not committed snapshot"
                )));
            }
            Some(p.id)
        };
        let id = records::insert(
            self.store.conn(),
            &NewSnapshot {
                key,
                kind,
                parent_id,
                layer_id: None,
                labels,
                size: 0,
                inodes: 0,
            },
        )
        .map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _)
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                SnapshotterError::AlreadyExists(key.to_string())
            }
            e => SnapshotterError::Store(self.store.db_err(e)),
        })?;
        let made = mounts::create_dirs(&self.store, id, kind)
            .and_then(|()| records::get(&self.store, key))
            .and_then(|s| mounts::ensure_mounted(&self.store, &s).map(|()| s))
            .and_then(|s| mounts::set_root_attributes(&self.store, &s).map(|()| s));
        match made {
            Ok(s) => Ok(mounts::mounts_of(&self.store, &s)),
            Err(e) => {
                // Nothing half-made stays: no row, no directory.
                let _ = records::delete(&self.store, id);
                let _ = std::fs::remove_dir_all(mounts::snapshot_dir(&self.store, id));
                Err(e)
            }
        }
    }

    /// The mounts of an active snapshot or a view (remounted if its daemon
    /// died).
    pub fn mounts(&mut self, key: &str) -> Result<Vec<Mount>, SnapshotterError> {
        let s = records::get(&self.store, key)?;
        if s.kind == Kind::Committed {
            return Err(SnapshotterError::precondition(key, "not active or view"));
        }
        mounts::ensure_mounted(&self.store, &s)?;
        Ok(mounts::mounts_of(&self.store, &s))
    }

    pub fn stat(&self, key: &str) -> Result<Info, SnapshotterError> {
        Ok(Info::of(&records::get(&self.store, key)?))
    }

    /// Updates the labels of `info.name`: all of them (no field paths, or
    /// `labels`), or those named `labels.KEY` (a key absent from `info`
    /// is removed). Every other field is immutable.
    pub fn update(&mut self, info: &Info, fieldpaths: &[String]) -> Result<Info, SnapshotterError> {
        let s = records::get(&self.store, &info.name)?;
        check_labels(&info.labels)?;
        let mut labels = s.labels.clone();
        if fieldpaths.is_empty() {
            labels = info.labels.clone();
        }
        for path in fieldpaths {
            if path == "labels" {
                labels = info.labels.clone();
            } else if let Some(key) = path.strip_prefix("labels.") {
                match info.labels.get(key) {
                    Some(v) => labels.insert(key.to_string(), v.clone()),
                    None => labels.remove(key),
                };
            } else {
                return Err(SnapshotterError::InvalidArgument(format!(
                    "cannot update {path:?} field on snapshot {:?}",
                    info.name
                )));
            }
        }
        records::set_labels(&self.store, s.id, &labels)?;
        self.stat(&info.name)
    }

    /// What a snapshot uses: for a committed one, its content as it was
    /// committed; for an active one, its upper directory now; a view
    /// uses nothing of its own.
    pub fn usage(&self, key: &str) -> Result<Usage, SnapshotterError> {
        let s = records::get(&self.store, key)?;
        Ok(match s.kind {
            Kind::Committed => Usage {
                size: s.size,
                inodes: s.inodes,
            },
            Kind::Active => dir_usage(&mounts::snapshot_dir(&self.store, s.id).join("upper"))?,
            Kind::View => Usage::default(),
        })
    }

    /// Every snapshot that passes any of `filters` (containerd's syntax).
    pub fn walk(&self, filters: &[String]) -> Result<Vec<Info>, SnapshotterError> {
        let parsed = filters
            .iter()
            .map(|f| Filter::parse(f))
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = Vec::new();
        for s in records::list(&self.store)? {
            let parent = s.parent.clone().unwrap_or_default();
            let fields = SnapshotFields {
                name: &s.key,
                parent: &parent,
                kind: s.kind.name(),
                labels: &s.labels,
            };
            if any_matches(&parsed, &fields) {
                out.push(Info::of(&s));
            }
        }
        Ok(out)
    }

    /// Removes a snapshot without children: unmounts an active one or a
    /// view and deletes its directory. A committed snapshot's layer stays
    /// in the store until `gc` (or Cleanup) finds nothing uses it.
    pub fn remove(&mut self, key: &str) -> Result<(), SnapshotterError> {
        let s = records::get(&self.store, key)?;
        if records::has_children(&self.store, s.id)? {
            return Err(SnapshotterError::precondition(
                key,
                "cannot remove snapshot with child",
            ));
        }
        if s.kind != Kind::Committed {
            mounts::stop_mount(&self.store, &s)?;
        }
        records::delete(&self.store, s.id)?;
        let dir = mounts::snapshot_dir(&self.store, s.id);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                // The row is gone; Cleanup retries the directory.
                tracing::warn!("{}: {e}", dir.display());
            }
            _ => {}
        }
        Ok(())
    }

    /// Removes snapshot directories no record names (left by a crash
    /// between a row's removal and its directory's), detaching any mount
    /// still on them. Returns the directories removed.
    pub fn cleanup_directories(&mut self) -> Result<Vec<PathBuf>, SnapshotterError> {
        let known: std::collections::HashSet<String> = records::list(&self.store)?
            .iter()
            .map(|s| s.id.to_string())
            .collect();
        let dir = mounts::snapshots_dir(&self.store);
        let mut removed = Vec::new();
        let items = std::fs::read_dir(&dir).map_err(|e| SnapshotterError::io(&dir, e))?;
        for item in items.flatten() {
            let name = item.file_name().to_string_lossy().to_string();
            if known.contains(&name) || name.parse::<i64>().is_err() {
                continue;
            }
            let path = item.path();
            let rootfs = path.join("rootfs");
            while crate::mount::is_mountpoint(&rootfs) {
                if strata_fs::unmount(&rootfs).is_err() {
                    break;
                }
            }
            if crate::mount::is_mountpoint(&rootfs) {
                continue;
            }
            std::fs::remove_dir_all(&path).map_err(|e| SnapshotterError::io(&path, e))?;
            removed.push(path);
        }
        Ok(removed)
    }
}

/// Bytes (allocated blocks, as containerd's own snapshotters count) and
/// inodes below `dir`, each hard-linked inode once.
pub fn dir_usage(dir: &Path) -> Result<Usage, SnapshotterError> {
    let mut usage = Usage::default();
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let items = std::fs::read_dir(&d).map_err(|e| SnapshotterError::io(&d, e))?;
        for item in items {
            let item = item.map_err(|e| SnapshotterError::io(&d, e))?;
            let meta = item
                .path()
                .symlink_metadata()
                .map_err(|e| SnapshotterError::io(&item.path(), e))?;
            if seen.insert((meta.dev(), meta.ino())) {
                usage.inodes += 1;
                usage.size += meta.blocks() as i64 * 512;
            }
            if meta.is_dir() {
                stack.push(item.path());
            }
        }
    }
    Ok(usage)
}
