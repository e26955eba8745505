//! The merged, immutable tree of a mount's read-only layers.
//!
//! [`Tree::build`] applies the layers bottom first: for each layer its
//! opaque directories are emptied, then its whiteouts remove paths, then its
//! entries are added (a directory over a directory merges metadata and keeps
//! the children; anything else replaces what was there), hard links last.
//! The result is compacted into a vector of [`Node`]s numbered in depth-first
//! order from the root (node 0); a node is one inode, so hard links share
//! one node and its `nlink` counts the names that reach it in the merged
//! tree. Once built the tree never changes, which is what lets the mount
//! hand the kernel long cache timeouts.
//!
//! [`Tree::build_layer_view`] builds the tree of `strata mount --layers`:
//! `merged/` plus one directory per layer that shows the layer as stored,
//! whiteouts and opaque markers as empty `.wh.NAME` / `.wh..wh..opq` files.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use crate::layer::{Entry, EntryKind, Layer};

/// Index of a node in a [`Tree`]; the root is 0.
pub type NodeId = u32;
/// A file name or other byte string, stored compactly.
pub type Bytes = Box<[u8]>;
/// An extended attribute: name and value.
pub type Xattr = (Bytes, Bytes);
/// A directory entry: name and node.
pub type Child = (Bytes, NodeId);
/// A name of a node: parent directory and name.
pub type Link = (NodeId, Bytes);

/// The OCI whiteout prefix and opaque marker, shown in the layer view.
pub const WHITEOUT_PREFIX: &[u8] = b".wh.";
pub const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// What a node is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// `backing` is `None` for the empty marker files of the layer view.
    File {
        size: u64,
        backing: Option<PathBuf>,
    },
    /// Children sorted by name.
    Dir {
        children: Vec<(Box<[u8]>, NodeId)>,
    },
    Symlink {
        target: Box<[u8]>,
    },
    CharDevice {
        rdev: u64,
    },
    BlockDevice {
        rdev: u64,
    },
    Fifo,
}

/// One inode of the merged tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The directory holding the first name of this node (the root: itself).
    pub parent: NodeId,
    pub name: Box<[u8]>,
    pub kind: NodeKind,
    /// Permission bits, mode & 0o7777.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_sec: i64,
    pub mtime_nsec: u32,
    pub nlink: u32,
    pub xattrs: Vec<Xattr>,
}

/// The immutable merged tree.
#[derive(Debug, Clone)]
pub struct Tree {
    nodes: Vec<Node>,
    /// Names beyond the first of hard-linked nodes: (parent, name).
    extra_links: HashMap<NodeId, Vec<Link>>,
}

impl Tree {
    /// Merges `layers` (bottom first).
    pub fn build(layers: &[Layer]) -> Tree {
        let mut builder = Builder::new();
        for layer in layers {
            builder.apply_layer(b"", layer, Mode::Merge);
        }
        builder.finish()
    }

    /// The layer view: `merged/` and one directory per layer, named by
    /// `names` (same order as `layers`, bottom first).
    pub fn build_layer_view(layers: &[Layer], names: &[String]) -> Tree {
        let mut builder = Builder::new();
        builder.make_dir_path(b"merged");
        for layer in layers {
            builder.apply_layer(b"merged", layer, Mode::Merge);
        }
        for (layer, name) in layers.iter().zip(names) {
            builder.make_dir_path(name.as_bytes());
            builder.apply_layer(name.as_bytes(), layer, Mode::Literal);
        }
        builder.finish()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn node(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(id as usize)
    }

    /// The child `name` of directory `dir`.
    pub fn lookup(&self, dir: NodeId, name: &[u8]) -> Option<NodeId> {
        let children = self.children(dir)?;
        children
            .binary_search_by(|(n, _)| (**n).cmp(name))
            .ok()
            .map(|i| children[i].1)
    }

    /// The node at a relative path (`a/b/c`), if any.
    pub fn lookup_path(&self, path: &[u8]) -> Option<NodeId> {
        components(path).try_fold(0, |dir, name| self.lookup(dir, name))
    }

    /// The sorted children of `dir`, `None` if it is not a directory.
    pub fn children(&self, dir: NodeId) -> Option<&[Child]> {
        match &self.node(dir)?.kind {
            NodeKind::Dir { children } => Some(children),
            _ => None,
        }
    }

    /// Every (parent, name) of a node, first name first.
    pub fn links(&self, id: NodeId) -> Vec<(NodeId, &[u8])> {
        let mut out = Vec::new();
        if let Some(node) = self.node(id) {
            out.push((node.parent, &*node.name));
        }
        if let Some(extra) = self.extra_links.get(&id) {
            out.extend(extra.iter().map(|(p, n)| (*p, &**n)));
        }
        out
    }

    /// The path of a node's first name, relative to the root.
    pub fn path(&self, mut id: NodeId) -> Vec<u8> {
        let mut parts = Vec::new();
        while id != 0 {
            let Some(node) = self.node(id) else { break };
            parts.push(&*node.name);
            id = node.parent;
        }
        parts.reverse();
        parts.join(&b'/')
    }

    /// Total size of the regular files, for statfs.
    pub fn total_size(&self) -> u64 {
        self.nodes
            .iter()
            .map(|n| match n.kind {
                NodeKind::File { size, .. } => size,
                _ => 0,
            })
            .sum()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Apply whiteouts and opaque markers.
    Merge,
    /// Keep them as `.wh.` files (layer view).
    Literal,
}

/// A node under construction: children in a map, ids never reused.
struct BuildNode {
    kind: BuildKind,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime_sec: i64,
    mtime_nsec: u32,
    xattrs: Vec<Xattr>,
}

enum BuildKind {
    Leaf(NodeKind),
    Dir(BTreeMap<Box<[u8]>, usize>),
}

struct Builder {
    nodes: Vec<BuildNode>,
}

impl Builder {
    fn new() -> Builder {
        Builder {
            nodes: vec![implicit_dir()],
        }
    }

    fn apply_layer(&mut self, prefix: &[u8], layer: &Layer, mode: Mode) {
        let base = self.make_dir_path(prefix);
        match mode {
            Mode::Merge => {
                for dir in &layer.opaque_dirs {
                    if let Some(id) = self.find(base, dir) {
                        if let BuildKind::Dir(children) = &mut self.nodes[id].kind {
                            children.clear();
                        }
                    }
                }
                for path in &layer.whiteouts {
                    self.remove(base, path);
                }
            }
            Mode::Literal => {
                for dir in &layer.opaque_dirs {
                    let path = join(dir, OPAQUE_MARKER);
                    self.insert(base, &path, marker_file());
                }
                for path in &layer.whiteouts {
                    let (dir, name) = split_parent(path);
                    let marked = join(dir, &[WHITEOUT_PREFIX, name].concat());
                    self.insert(base, &marked, marker_file());
                }
            }
        }
        let mut entries: Vec<&Entry> = layer.entries.iter().collect();
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        let (links, others): (Vec<&Entry>, Vec<&Entry>) = entries
            .into_iter()
            .partition(|e| matches!(e.kind, EntryKind::Hardlink { .. }));
        for entry in others {
            self.insert(base, &entry.path, build_node(entry));
        }
        for entry in links {
            let EntryKind::Hardlink { target } = &entry.kind else {
                continue;
            };
            match self.find(base, target) {
                Some(id) if !matches!(self.nodes[id].kind, BuildKind::Dir(_)) => {
                    self.link(base, &entry.path, id);
                }
                _ => tracing::warn!(
                    path = %String::from_utf8_lossy(&entry.path),
                    "hard link to a missing or non-file target ignored"
                ),
            }
        }
    }

    /// Walks `path` from `base`, creating missing directories (and
    /// replacing non-directories on the way) as tar extraction would.
    fn make_dir_path(&mut self, path: &[u8]) -> usize {
        self.make_dir_path_from(0, path)
    }

    fn make_dir_path_from(&mut self, base: usize, path: &[u8]) -> usize {
        let mut cur = base;
        for comp in components(path) {
            let existing = match &self.nodes[cur].kind {
                BuildKind::Dir(children) => children.get(comp).copied(),
                BuildKind::Leaf(_) => None,
            };
            cur = match existing {
                Some(id) if matches!(self.nodes[id].kind, BuildKind::Dir(_)) => id,
                _ => {
                    let id = self.push(implicit_dir());
                    self.attach(cur, comp, id);
                    id
                }
            };
        }
        cur
    }

    fn find(&self, base: usize, path: &[u8]) -> Option<usize> {
        let mut cur = base;
        for comp in components(path) {
            match &self.nodes[cur].kind {
                BuildKind::Dir(children) => cur = *children.get(comp)?,
                BuildKind::Leaf(_) => return None,
            }
        }
        Some(cur)
    }

    fn remove(&mut self, base: usize, path: &[u8]) {
        let (dir, name) = split_parent(path);
        if let Some(parent) = self.find(base, dir) {
            if let BuildKind::Dir(children) = &mut self.nodes[parent].kind {
                children.remove(name);
            }
        }
    }

    fn insert(&mut self, base: usize, path: &[u8], node: BuildNode) {
        let (dir, name) = split_parent(path);
        if name.is_empty() {
            // The layer's root directory: only its metadata applies.
            if let BuildKind::Dir(_) = node.kind {
                set_meta(&mut self.nodes[base], node);
            }
            return;
        }
        let parent = self.make_dir_path_from(base, dir);
        let existing = match &self.nodes[parent].kind {
            BuildKind::Dir(children) => children.get(name).copied(),
            BuildKind::Leaf(_) => None,
        };
        if let Some(id) = existing {
            let both_dirs = matches!(self.nodes[id].kind, BuildKind::Dir(_))
                && matches!(node.kind, BuildKind::Dir(_));
            if both_dirs {
                set_meta(&mut self.nodes[id], node);
                return;
            }
        }
        let id = self.push(node);
        self.attach(parent, name, id);
    }

    fn link(&mut self, base: usize, path: &[u8], target: usize) {
        let (dir, name) = split_parent(path);
        if name.is_empty() {
            return;
        }
        let parent = self.make_dir_path_from(base, dir);
        self.attach(parent, name, target);
    }

    fn push(&mut self, node: BuildNode) -> usize {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    fn attach(&mut self, parent: usize, name: &[u8], id: usize) {
        if let BuildKind::Dir(children) = &mut self.nodes[parent].kind {
            children.insert(name.into(), id);
        }
    }

    /// Renumbers the reachable nodes depth first and counts links.
    fn finish(mut self) -> Tree {
        const UNSEEN: u32 = u32::MAX;
        let mut new_id = vec![UNSEEN; self.nodes.len()];
        let mut order: Vec<(usize, NodeId, Box<[u8]>)> = Vec::new();
        let mut extra: Vec<(usize, NodeId, Box<[u8]>)> = Vec::new();
        let mut stack: Vec<(usize, NodeId, Box<[u8]>)> = vec![(0, 0, Box::from(&b""[..]))];
        while let Some((old, parent, name)) = stack.pop() {
            if new_id[old] != UNSEEN {
                extra.push((old, parent, name));
                continue;
            }
            let id = order.len() as NodeId;
            new_id[old] = id;
            if let BuildKind::Dir(children) = &self.nodes[old].kind {
                for (child_name, child) in children.iter().rev() {
                    stack.push((*child, id, child_name.clone()));
                }
            }
            order.push((old, parent, name));
        }
        let mut nodes = Vec::with_capacity(order.len());
        for (old, parent, name) in &order {
            let b = std::mem::replace(&mut self.nodes[*old], implicit_dir());
            let kind = match b.kind {
                BuildKind::Leaf(kind) => kind,
                BuildKind::Dir(children) => NodeKind::Dir {
                    children: children.into_iter().map(|(n, c)| (n, new_id[c])).collect(),
                },
            };
            nodes.push(Node {
                parent: *parent,
                name: name.clone(),
                kind,
                mode: b.mode,
                uid: b.uid,
                gid: b.gid,
                mtime_sec: b.mtime_sec,
                mtime_nsec: b.mtime_nsec,
                nlink: 1,
                xattrs: b.xattrs,
            });
        }
        let mut extra_links: HashMap<NodeId, Vec<Link>> = HashMap::new();
        for (old, parent, name) in extra {
            extra_links
                .entry(new_id[old])
                .or_default()
                .push((parent, name));
        }
        for (id, links) in &extra_links {
            nodes[*id as usize].nlink = 1 + links.len() as u32;
        }
        let subdirs: Vec<u32> = nodes
            .iter()
            .map(|n| match &n.kind {
                NodeKind::Dir { children } => children
                    .iter()
                    .filter(|(_, c)| matches!(nodes[*c as usize].kind, NodeKind::Dir { .. }))
                    .count() as u32,
                _ => 0,
            })
            .collect();
        for (node, sub) in nodes.iter_mut().zip(subdirs) {
            if let NodeKind::Dir { .. } = node.kind {
                node.nlink = 2 + sub;
            }
        }
        Tree { nodes, extra_links }
    }
}

fn implicit_dir() -> BuildNode {
    BuildNode {
        kind: BuildKind::Dir(BTreeMap::new()),
        mode: 0o755,
        uid: 0,
        gid: 0,
        mtime_sec: 0,
        mtime_nsec: 0,
        xattrs: Vec::new(),
    }
}

fn marker_file() -> BuildNode {
    BuildNode {
        kind: BuildKind::Leaf(NodeKind::File {
            size: 0,
            backing: None,
        }),
        mode: 0,
        ..implicit_dir()
    }
}

fn build_node(entry: &Entry) -> BuildNode {
    let kind = match &entry.kind {
        EntryKind::Dir => BuildKind::Dir(BTreeMap::new()),
        EntryKind::File { size, backing } => BuildKind::Leaf(NodeKind::File {
            size: *size,
            backing: Some(backing.clone()),
        }),
        EntryKind::Symlink { target } => BuildKind::Leaf(NodeKind::Symlink {
            target: target.as_slice().into(),
        }),
        EntryKind::CharDevice { major, minor } => BuildKind::Leaf(NodeKind::CharDevice {
            rdev: libc::makedev(*major, *minor),
        }),
        EntryKind::BlockDevice { major, minor } => BuildKind::Leaf(NodeKind::BlockDevice {
            rdev: libc::makedev(*major, *minor),
        }),
        EntryKind::Fifo => BuildKind::Leaf(NodeKind::Fifo),
        // Resolved separately; never built as a node.
        EntryKind::Hardlink { .. } => BuildKind::Leaf(NodeKind::Fifo),
    };
    BuildNode {
        kind,
        mode: entry.mode & 0o7777,
        uid: entry.uid,
        gid: entry.gid,
        mtime_sec: entry.mtime_sec,
        mtime_nsec: entry.mtime_nsec,
        xattrs: entry
            .xattrs
            .iter()
            .map(|(n, v)| (n.as_slice().into(), v.as_slice().into()))
            .collect(),
    }
}

fn set_meta(target: &mut BuildNode, from: BuildNode) {
    target.mode = from.mode;
    target.uid = from.uid;
    target.gid = from.gid;
    target.mtime_sec = from.mtime_sec;
    target.mtime_nsec = from.mtime_nsec;
    target.xattrs = from.xattrs;
}

fn components(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|b| *b == b'/').filter(|c| !c.is_empty())
}

/// `a/b/c` → (`a/b`, `c`); `c` → (``, `c`); `` → (``, ``).
pub(crate) fn split_parent(path: &[u8]) -> (&[u8], &[u8]) {
    let trimmed = path.strip_suffix(b"/").unwrap_or(path);
    match trimmed.iter().rposition(|b| *b == b'/') {
        Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
        None => (&b""[..], trimmed),
    }
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        name.to_vec()
    } else {
        [dir, b"/", name].concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, kind: EntryKind) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_sec: 0,
            mtime_nsec: 0,
            xattrs: vec![],
        }
    }

    fn file(path: &str) -> Entry {
        entry(
            path,
            EntryKind::File {
                size: 1,
                backing: PathBuf::from("/dev/null"),
            },
        )
    }

    fn names(tree: &Tree, dir: NodeId) -> Vec<String> {
        tree.children(dir)
            .unwrap_or(&[])
            .iter()
            .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
            .collect()
    }

    #[test]
    fn whiteout_and_opaque_apply_to_lower_layers_only() {
        let bottom = Layer {
            entries: vec![
                entry("d", EntryKind::Dir),
                file("d/a"),
                file("d/b"),
                file("x"),
            ],
            ..Layer::default()
        };
        let top = Layer {
            entries: vec![file("d/c")],
            whiteouts: vec![b"x".to_vec()],
            opaque_dirs: vec![b"d".to_vec()],
        };
        let tree = Tree::build(&[bottom, top]);
        assert_eq!(names(&tree, 0), vec!["d"]);
        let d = tree.lookup(0, b"d").unwrap();
        assert_eq!(names(&tree, d), vec!["c"]);
    }

    #[test]
    fn hardlinks_share_a_node_and_count_links() {
        let layer = Layer {
            entries: vec![
                file("a"),
                entry(
                    "b",
                    EntryKind::Hardlink {
                        target: b"a".to_vec(),
                    },
                ),
                entry(
                    "c",
                    EntryKind::Hardlink {
                        target: b"a".to_vec(),
                    },
                ),
            ],
            ..Layer::default()
        };
        let top = Layer {
            whiteouts: vec![b"c".to_vec()],
            ..Layer::default()
        };
        let tree = Tree::build(&[layer, top]);
        let a = tree.lookup(0, b"a").unwrap();
        assert_eq!(tree.lookup(0, b"b"), Some(a));
        assert_eq!(tree.node(a).unwrap().nlink, 2);
        assert_eq!(tree.links(a).len(), 2);
    }

    #[test]
    fn file_replaced_by_dir_and_dir_merge_keeps_children() {
        let bottom = Layer {
            entries: vec![file("p"), entry("q", EntryKind::Dir), file("q/1")],
            ..Layer::default()
        };
        let mut q = entry("q", EntryKind::Dir);
        q.mode = 0o700;
        let top = Layer {
            entries: vec![entry("p", EntryKind::Dir), q, file("q/2")],
            ..Layer::default()
        };
        let tree = Tree::build(&[bottom, top]);
        let p = tree.lookup(0, b"p").unwrap();
        assert!(matches!(tree.node(p).unwrap().kind, NodeKind::Dir { .. }));
        let qid = tree.lookup(0, b"q").unwrap();
        assert_eq!(tree.node(qid).unwrap().mode, 0o700);
        assert_eq!(names(&tree, qid), vec!["1", "2"]);
        assert_eq!(tree.path(tree.lookup(qid, b"2").unwrap()), b"q/2");
        assert_eq!(tree.node(0).unwrap().nlink, 4);
    }

    #[test]
    fn layer_view_shows_whiteouts_as_files() {
        let bottom = Layer {
            entries: vec![file("a")],
            ..Layer::default()
        };
        let top = Layer {
            whiteouts: vec![b"a".to_vec()],
            opaque_dirs: vec![b"".to_vec()],
            ..Layer::default()
        };
        let tree = Tree::build_layer_view(&[bottom, top], &["1-aa".into(), "2-bb".into()]);
        assert_eq!(names(&tree, 0), vec!["1-aa", "2-bb", "merged"]);
        let merged = tree.lookup(0, b"merged").unwrap();
        assert!(names(&tree, merged).is_empty());
        let l2 = tree.lookup(0, b"2-bb").unwrap();
        assert_eq!(names(&tree, l2), vec![".wh..wh..opq", ".wh.a"]);
    }
}
