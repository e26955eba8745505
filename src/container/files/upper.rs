//! The container's upper directory, in overlayfs conventions: what
//! changed (for `diff`) and the image it changed (`ImagePaths`). The
//! changes come from `strata_fs::layer_changes`, the same list `commit`
//! writes as a layer (`changes_tar`): a renamed directory (a redirect in
//! the upper directory) counts as everything it shows at its new path.
//! Walks never follow symlinks; cost is proportional to the changes and
//! the renamed directories' contents, not the image.

use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::container::error::ContainerError;
use crate::container::sys;
use crate::digest::Digest;
use crate::image::image_layer_ids;
use crate::store::Store;

const OPAQUE: &[u8] = b"trusted.overlay.opaque";

pub fn set_xattr(path: &Path, name: &[u8], value: &[u8]) -> Result<(), ContainerError> {
    sys::lsetxattr(path, name, value).map_err(|e| ContainerError::io(path, e.into()))
}

pub fn set_opaque(path: &Path) -> Result<(), ContainerError> {
    set_xattr(path, OPAQUE, b"y")
}

/// Whether the upper directory `path` is opaque (hides the lower ones).
pub fn is_opaque(path: &Path) -> bool {
    matches!(sys::lgetxattr(path, OPAQUE), Ok(Some(v)) if v == b"y")
}

/// What happened to a path, as `docker diff` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ChangeKind {
    #[serde(rename = "C")]
    Changed,
    #[serde(rename = "A")]
    Added,
    #[serde(rename = "D")]
    Deleted,
}

impl ChangeKind {
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Changed => 'C',
            ChangeKind::Added => 'A',
            ChangeKind::Deleted => 'D',
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Change {
    pub kind: ChangeKind,
    /// Absolute path inside the container.
    pub path: String,
}

/// An image's merged tree (whiteouts and opaque directories applied),
/// read from the store only along the paths asked about, so `diff` costs
/// O(changes), not O(image).
pub struct ImagePaths(strata_fs::tree::Tree);

impl ImagePaths {
    pub fn open(store: &Store, image: &Digest) -> Result<ImagePaths, ContainerError> {
        let rows = image_layer_ids(store, image)?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        ImagePaths::of_layers(store, rows)
    }

    /// The merged tree of the stored layers `rows` (row ids, bottom first).
    pub fn of_layers(store: &Store, rows: Vec<i64>) -> Result<ImagePaths, ContainerError> {
        let source = crate::image::StoreSource::open(store, rows)?;
        let tree = strata_fs::tree::Tree::lazy(std::sync::Arc::new(source))
            .map_err(|e| ContainerError::io("strata.db", e))?;
        Ok(ImagePaths(tree))
    }

    /// Whether the image has `rel` (relative, no leading `/`).
    pub fn contains(&self, rel: &[u8]) -> Result<bool, ContainerError> {
        Ok(self.lookup(rel)?.is_some())
    }

    /// The node at `rel`, if the image has it.
    pub fn lookup(&self, rel: &[u8]) -> Result<Option<strata_fs::tree::NodeId>, ContainerError> {
        self.0
            .lookup_path(rel)
            .map_err(|e| ContainerError::io("strata.db", e))
    }

    /// Reads the whole tree from the store now, for a forked child of a
    /// multithreaded process (a build's rootless RUN step): such a child
    /// must not call SQLite, whose process-wide mutexes (its allocator's,
    /// a database file's lock table) another thread may have held at the
    /// fork, forever in the child.
    pub fn load_all(&self) -> Result<(), ContainerError> {
        let tree = &self.0;
        let mut dirs = vec![0];
        while let Some(dir) = dirs.pop() {
            let children = tree
                .children(dir)
                .map_err(|e| ContainerError::io("strata.db", e))?;
            for (_, id) in children.unwrap_or_default() {
                if tree.is_dir(*id) {
                    dirs.push(*id);
                }
            }
        }
        Ok(())
    }

    /// The image's merged tree.
    pub fn tree(&self) -> &strata_fs::tree::Tree {
        &self.0
    }
}

/// Mount targets the launcher creates when the image lacks them (Docker
/// keeps these in its "init" layer); they are not changes of the container.
const LAUNCHER_PATHS: &[&[u8]] = &[
    b"proc",
    b"dev",
    b"sys",
    b"etc/hostname",
    b"etc/hosts",
    b"etc/resolv.conf",
];

/// Whether the change at `rel` is one of the launcher's mount targets (an
/// upper directory or empty file the image lacks).
pub fn launcher_made(
    upper: &Path,
    change: &strata_fs::LayerChange,
    image: &ImagePaths,
) -> Result<bool, ContainerError> {
    let rel = change.path.as_slice();
    if change.kind != strata_fs::LayerChangeKind::Upper || !LAUNCHER_PATHS.contains(&rel) {
        return Ok(false);
    }
    let path = upper.join(std::ffi::OsStr::from_bytes(rel));
    let meta = std::fs::symlink_metadata(&path).map_err(|e| ContainerError::io(&path, e))?;
    Ok((meta.is_dir() || meta.len() == 0) && !image.contains(rel)?)
}

/// The changes layer of `upper` over `image` (see `strata_fs::layer_changes`),
/// without the launcher's mount targets.
pub fn layer_changes(
    upper: &Path,
    image: &ImagePaths,
) -> Result<Vec<strata_fs::LayerChange>, ContainerError> {
    let changes = strata_fs::layer_changes(upper, image.tree()).map_err(|e| match e {
        strata_fs::upper::UpperError::Io { path, source } => ContainerError::io(path, source),
    })?;
    let mut out = Vec::with_capacity(changes.len());
    for change in changes {
        if !launcher_made(upper, &change, image)? {
            out.push(change);
        }
    }
    Ok(out)
}

/// Lists the changes recorded in `upper`, sorted by path, as Docker's
/// naive diff of the two trees does: every path the changes layer holds is
/// `C` where the image has it and `A` where not (a renamed directory:
/// `A` for the new path and all it shows); a whiteout is `D`; in a
/// directory the layer holds whole (renamed, or opaque) each image child
/// it does not show is `D` (only the child, not what is below it).
pub fn list_changes(upper: &Path, image: &ImagePaths) -> Result<Vec<Change>, ContainerError> {
    use strata_fs::LayerChangeKind as K;
    let changes = layer_changes(upper, image)?;
    let carried: HashSet<&[u8]> = changes
        .iter()
        .filter(|c| !matches!(c.kind, K::Whiteout | K::Opaque | K::KeptLink(_)))
        .map(|c| c.path.as_slice())
        .collect();
    let show = |rel: &[u8]| format!("/{}", String::from_utf8_lossy(rel));
    let mut out = Vec::new();
    for change in &changes {
        let rel = change.path.as_slice();
        let in_image = image.lookup(rel)?;
        match change.kind {
            K::Opaque | K::KeptLink(_) => continue,
            K::Whiteout => out.push(Change {
                kind: ChangeKind::Deleted,
                path: show(rel),
            }),
            K::Upper | K::Lower(_) | K::Link(_) => out.push(Change {
                kind: if in_image.is_some() {
                    ChangeKind::Changed
                } else {
                    ChangeKind::Added
                },
                path: show(rel),
            }),
        }
        let Some(dir) = in_image.filter(|_| change.complete) else {
            continue;
        };
        let tree = image.tree();
        let children = tree
            .children(dir)
            .map_err(|e| ContainerError::io("strata.db", e))?
            .unwrap_or(&[]);
        for (name, _) in children {
            let child = join(rel, name);
            if !carried.contains(child.as_slice()) {
                out.push(Change {
                    kind: ChangeKind::Deleted,
                    path: show(&child),
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out.dedup();
    drop_unchanged_dirs(upper, image, &mut out)?;
    Ok(out)
}

/// Leaves out `C` for a directory copied up only to hold changes that are
/// not reported (the launcher's mount targets): as Docker's naive diff, a
/// directory is changed when its mode or owner differs, or something below
/// it changed (its times do not count).
fn drop_unchanged_dirs(
    upper: &Path,
    image: &ImagePaths,
    out: &mut Vec<Change>,
) -> Result<(), ContainerError> {
    use std::os::unix::fs::MetadataExt;
    let mut keep = vec![true; out.len()];
    for (i, change) in out.iter().enumerate() {
        if change.kind != ChangeKind::Changed {
            continue;
        }
        let below = format!("{}/", change.path);
        // Sorted by path: what is below `below` starts where it would be.
        let first = out.partition_point(|c| c.path.as_str() < below.as_str());
        if out.get(first).is_some_and(|c| c.path.starts_with(&below)) {
            continue;
        }
        let rel = change.path.trim_start_matches('/').as_bytes();
        let host = upper.join(std::ffi::OsStr::from_bytes(rel));
        let Ok(meta) = std::fs::symlink_metadata(&host) else {
            continue;
        };
        let Some(id) = image.lookup(rel)?.filter(|n| image.tree().is_dir(*n)) else {
            continue;
        };
        let Some(node) = image.tree().node(id) else {
            continue;
        };
        if meta.is_dir()
            && meta.mode() & 0o7777 == node.mode
            && (meta.uid(), meta.gid()) == (node.uid, node.gid)
        {
            keep[i] = false;
        }
    }
    let mut flags = keep.into_iter();
    out.retain(|_| flags.next().unwrap_or(true));
    Ok(())
}

/// `dir/name` (`name` alone at the root).
pub fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        name.to_vec()
    } else {
        [dir, b"/", name].concat()
    }
}
