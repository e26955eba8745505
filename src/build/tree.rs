//! The file tree of a build state, read from the store's index along the
//! paths asked about (nothing is unpacked): whether a COPY destination
//! is a directory, the owner of a parent, `/etc/passwd` for `--chown`,
//! the files a `COPY --from` takes. Symlinks resolve inside the tree's
//! root, as they would inside the container.

use std::sync::Arc;

use strata_fs::tree::{NodeId, NodeKind, Tree};

use super::error::BuildError;
use super::state::State;
use crate::store::Store;

/// One path of a state's tree.
#[derive(Debug, Clone)]
pub struct TreeEntry {
    /// Relative to where the walk started (`""` for itself).
    pub rel: String,
    pub kind: EntryKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// Size and the store file holding the content (none if empty).
    File(u64, Option<std::path::PathBuf>),
    Dir,
    Symlink(String),
    CharDevice(u64),
    BlockDevice(u64),
    Fifo,
}

pub struct StateTree {
    tree: Option<Tree>,
}

const MAX_LINKS: usize = 40;

impl StateTree {
    /// The tree of `scratch` (nothing but the root).
    pub fn empty() -> StateTree {
        StateTree { tree: None }
    }

    pub fn open(store: &Store, state: &State) -> Result<StateTree, BuildError> {
        let rows = state.layer_rows(store)?;
        if rows.is_empty() {
            return Ok(StateTree { tree: None });
        }
        let source = crate::image::StoreSource::open(store, rows)?;
        let tree = Tree::lazy(Arc::new(source)).map_err(|e| BuildError::io("strata.db", e))?;
        Ok(StateTree { tree: Some(tree) })
    }

    fn io(e: std::io::Error) -> BuildError {
        BuildError::io("strata.db", e)
    }

    /// Resolves an absolute path, following symlinks (the last one too
    /// when `follow_last`) inside the root. `None` if it does not exist.
    pub fn resolve(
        &self,
        path: &str,
        follow_last: bool,
    ) -> Result<Option<(String, NodeId)>, BuildError> {
        let Some(tree) = &self.tree else {
            return Ok(if path.trim_matches('/').is_empty() {
                Some((String::new(), 0))
            } else {
                None
            });
        };
        let mut resolved: Vec<String> = Vec::new();
        let mut pending: Vec<String> = split(path);
        pending.reverse();
        let mut node: NodeId = 0;
        let mut links = 0;
        while let Some(c) = pending.pop() {
            if c == ".." {
                resolved.pop();
                node = tree
                    .lookup_path(resolved.join("/").as_bytes())
                    .map_err(Self::io)?
                    .unwrap_or(0);
                continue;
            }
            let Some(child) = tree.lookup(node, c.as_bytes()).map_err(Self::io)? else {
                return Ok(None);
            };
            let n = tree
                .node(child)
                .ok_or_else(|| BuildError::Invalid("tree node".into()))?;
            if let NodeKind::Symlink { target } = &n.kind {
                if pending.is_empty() && !follow_last {
                    resolved.push(c);
                    return Ok(Some((resolved.join("/"), child)));
                }
                links += 1;
                if links > MAX_LINKS {
                    return Err(BuildError::Invalid(format!(
                        "{path}: too many levels of symbolic links"
                    )));
                }
                let target = String::from_utf8_lossy(target).into_owned();
                if target.starts_with('/') {
                    resolved.clear();
                    node = 0;
                }
                let mut parts = split(&target);
                parts.reverse();
                pending.extend(parts);
                continue;
            }
            resolved.push(c);
            node = child;
        }
        Ok(Some((resolved.join("/"), node)))
    }

    /// The entry at an absolute path (symlinks followed when `follow`).
    pub fn stat(&self, path: &str, follow: bool) -> Result<Option<TreeEntry>, BuildError> {
        match self.resolve(path, follow)? {
            Some((_, id)) => Ok(self.entry(id, String::new())),
            None => Ok(None),
        }
    }

    pub fn is_dir(&self, path: &str) -> Result<bool, BuildError> {
        Ok(matches!(
            self.stat(path, true)?,
            Some(TreeEntry {
                kind: EntryKind::Dir,
                ..
            })
        ))
    }

    /// A regular file's content (symlinks followed); `None` if missing.
    pub fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, BuildError> {
        match self.stat(path, true)? {
            Some(TreeEntry {
                kind: EntryKind::File(_, Some(backing)),
                ..
            }) => Ok(Some(
                std::fs::read(&backing).map_err(|e| BuildError::io(&backing, e))?,
            )),
            Some(TreeEntry {
                kind: EntryKind::File(_, None),
                ..
            }) => Ok(Some(Vec::new())),
            _ => Ok(None),
        }
    }

    fn entry(&self, id: NodeId, rel: String) -> Option<TreeEntry> {
        let Some(tree) = &self.tree else {
            return (id == 0).then_some(TreeEntry {
                rel,
                kind: EntryKind::Dir,
                mode: 0o755,
                uid: 0,
                gid: 0,
                mtime: 0,
            });
        };
        let n = tree.node(id)?;
        let kind = match &n.kind {
            NodeKind::File { size, backing } => EntryKind::File(*size, backing.clone()),
            NodeKind::Dir { .. } => EntryKind::Dir,
            NodeKind::Symlink { target } => {
                EntryKind::Symlink(String::from_utf8_lossy(target).into_owned())
            }
            NodeKind::CharDevice { rdev } => EntryKind::CharDevice(*rdev),
            NodeKind::BlockDevice { rdev } => EntryKind::BlockDevice(*rdev),
            NodeKind::Fifo => EntryKind::Fifo,
        };
        Some(TreeEntry {
            rel,
            kind,
            mode: n.mode,
            uid: n.uid,
            gid: n.gid,
            mtime: n.mtime_sec,
        })
    }

    /// The entry at `path` (the last symlink followed when `follow`) and,
    /// for a directory, everything below it, parents first.
    pub fn walk(&self, path: &str, follow: bool) -> Result<Vec<TreeEntry>, BuildError> {
        let Some((_, id)) = self.resolve(path, follow)? else {
            return Ok(vec![]);
        };
        let mut out = Vec::new();
        self.walk_node(id, String::new(), &mut out)?;
        Ok(out)
    }

    fn walk_node(
        &self,
        id: NodeId,
        rel: String,
        out: &mut Vec<TreeEntry>,
    ) -> Result<(), BuildError> {
        let Some(entry) = self.entry(id, rel.clone()) else {
            return Ok(());
        };
        let is_dir = entry.kind == EntryKind::Dir;
        out.push(entry);
        let Some(tree) = &self.tree else {
            return Ok(());
        };
        if !is_dir {
            return Ok(());
        }
        let children: Vec<(String, NodeId)> = tree
            .children(id)
            .map_err(Self::io)?
            .unwrap_or(&[])
            .iter()
            .map(|(name, child)| (String::from_utf8_lossy(name).into_owned(), *child))
            .collect();
        for (name, child) in children {
            let child_rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            self.walk_node(child, child_rel, out)?;
        }
        Ok(())
    }
}

fn split(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_string)
        .collect()
}
