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
use std::io;
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::layer::{Entry, EntryKind, Layer};
use crate::lazy::Lazy;
use crate::source::LayerSource;

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
    /// `children` set once: at build, or on first use in a lazy tree from
    /// the `layers` (indices, top first) that contribute this directory.
    Dir {
        children: OnceLock<DirChildren>,
        layers: Box<[u32]>,
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

impl NodeKind {
    /// A directory whose children are already known (listed by name).
    pub fn dir(children: Vec<Child>) -> NodeKind {
        NodeKind::Dir {
            children: OnceLock::from(DirChildren::sorted(children)),
            layers: Box::new([]),
        }
    }
}

/// The entries of a directory: sorted by name, for lookups, and the order
/// a listing (readdir) shows them in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirChildren {
    sorted: Box<[Child]>,
    /// Indices into `sorted` in listing order; empty: listed by name.
    listing: Box<[u32]>,
}

impl DirChildren {
    /// Children listed by name.
    pub fn sorted(mut children: Vec<Child>) -> DirChildren {
        children.sort_by(|a, b| a.0.cmp(&b.0));
        DirChildren {
            sorted: children.into_boxed_slice(),
            listing: Box::default(),
        }
    }

    /// Children listed in the order given (each name once).
    pub fn listed(children: Vec<Child>) -> DirChildren {
        let mut order: Vec<u32> = (0..children.len() as u32).collect();
        order.sort_by(|a, b| children[*a as usize].0.cmp(&children[*b as usize].0));
        if order.iter().enumerate().all(|(i, o)| i as u32 == *o) {
            return DirChildren::sorted(children);
        }
        // `order[k]` is the listed position of the k-th name in sorted
        // order; the listing maps listed positions back to sorted ones.
        let mut listing = vec![0u32; children.len()];
        for (k, o) in order.iter().enumerate() {
            listing[*o as usize] = k as u32;
        }
        let mut slots: Vec<Option<Child>> = children.into_iter().map(Some).collect();
        let sorted = order
            .iter()
            .filter_map(|o| slots[*o as usize].take())
            .collect();
        DirChildren {
            sorted,
            listing: listing.into_boxed_slice(),
        }
    }

    /// Sorted by name.
    pub fn by_name(&self) -> &[Child] {
        &self.sorted
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// The entry at position `i` of the listing.
    pub fn listed_at(&self, i: usize) -> Option<&Child> {
        match self.listing.get(i) {
            Some(k) => self.sorted.get(*k as usize),
            None if self.listing.is_empty() => self.sorted.get(i),
            None => None,
        }
    }

    /// The entries in listing order.
    pub fn listing(&self) -> impl Iterator<Item = &Child> {
        (0..self.len()).filter_map(|i| self.listed_at(i))
    }
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
    pub xattrs: Vec<Xattr>,
    /// Set at build, or on first [`Tree::nlink`] in a lazy tree.
    pub(crate) nlink: OnceLock<u32>,
}

/// The immutable merged tree. Built whole ([`Tree::build`]) or one
/// directory at a time as it is read ([`Tree::lazy`]); either way a node,
/// once it exists, never changes or moves, so its number is its inode for
/// the life of the mount.
pub struct Tree {
    nodes: boxcar::Vec<Node>,
    /// Names beyond the first of hard-linked nodes: (parent, name).
    extra_links: HashMap<NodeId, Vec<Link>>,
    lazy: Option<Lazy>,
    /// Bytes of regular files and number of entries, for statfs.
    totals: (u64, u64),
}

impl std::fmt::Debug for Tree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tree")
            .field("nodes", &self.nodes.count())
            .field("lazy", &self.lazy.is_some())
            .finish()
    }
}

impl Tree {
    /// Merges `layers` (bottom first).
    pub fn build(layers: &[Layer]) -> Tree {
        let mut builder = Builder::new();
        for layer in layers {
            builder.apply_layer(b"", layer, Mode::Merge);
        }
        builder.finish(totals(layers))
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
        builder.finish(totals(layers))
    }

    /// A tree that reads each directory from `source` the first time it is
    /// listed or searched: the cost of a mount does not grow with the
    /// image. Only the root's metadata is read here.
    pub fn lazy(source: std::sync::Arc<dyn LayerSource>) -> io::Result<Tree> {
        let count = source.layer_count();
        let mut root = Node {
            parent: 0,
            name: Box::default(),
            kind: NodeKind::Dir {
                children: OnceLock::new(),
                layers: (0..count as u32).rev().collect(),
            },
            ..default_dir_node()
        };
        for layer in (0..count).rev() {
            if let Some(e) = source.entry(layer, b"")? {
                if e.kind == EntryKind::Dir {
                    set_node_meta(&mut root, &e);
                    break;
                }
            }
        }
        let totals = source.totals();
        let nodes = boxcar::Vec::new();
        nodes.push(root);
        Ok(Tree {
            nodes,
            extra_links: HashMap::new(),
            lazy: Some(Lazy::new(source)),
            totals,
        })
    }

    /// Adds a node (lazy trees, while loading a directory).
    pub(crate) fn push(&self, node: Node) -> NodeId {
        self.nodes.push(node) as NodeId
    }

    pub fn node(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(id as usize)
    }

    /// Whether `id` names a node (in a lazy tree: one created so far).
    pub fn contains(&self, id: NodeId) -> bool {
        self.node(id).is_some()
    }

    pub fn is_dir(&self, id: NodeId) -> bool {
        matches!(self.node(id).map(|n| &n.kind), Some(NodeKind::Dir { .. }))
    }

    /// The sorted children of `dir`, `None` if it is not a directory.
    /// Reads the directory from the layers on first use in a lazy tree.
    pub fn children(&self, dir: NodeId) -> io::Result<Option<&[Child]>> {
        Ok(self.dir_children(dir)?.map(DirChildren::by_name))
    }

    /// The children of `dir` with their listing order (in a lazy tree:
    /// the order the layers hold them in, top layer first; see
    /// [`crate::source::DirPart::entries`]), `None` if it is not a
    /// directory.
    pub fn dir_children(&self, dir: NodeId) -> io::Result<Option<&DirChildren>> {
        static EMPTY: std::sync::LazyLock<DirChildren> =
            std::sync::LazyLock::new(|| DirChildren::sorted(Vec::new()));
        let Some(NodeKind::Dir { children, .. }) = self.node(dir).map(|n| &n.kind) else {
            return Ok(None);
        };
        if let Some(c) = children.get() {
            return Ok(Some(c));
        }
        match &self.lazy {
            Some(lazy) => {
                lazy.load_dir(self, dir)?;
                Ok(children.get())
            }
            None => Ok(Some(&EMPTY)),
        }
    }

    /// The child `name` of directory `dir`.
    pub fn lookup(&self, dir: NodeId, name: &[u8]) -> io::Result<Option<NodeId>> {
        Ok(self.child(dir, name)?.map(|(_, id)| *id))
    }

    /// The entry `name` of directory `dir`, its name borrowed from the tree.
    pub fn child(&self, dir: NodeId, name: &[u8]) -> io::Result<Option<&Child>> {
        let Some(children) = self.children(dir)? else {
            return Ok(None);
        };
        Ok(children
            .binary_search_by(|(n, _)| (**n).cmp(name))
            .ok()
            .map(|i| &children[i]))
    }

    /// The node at a relative path (`a/b/c`), if any.
    pub fn lookup_path(&self, path: &[u8]) -> io::Result<Option<NodeId>> {
        let mut cur = 0;
        for name in components(path) {
            match self.lookup(cur, name)? {
                Some(id) => cur = id,
                None => return Ok(None),
            }
        }
        Ok(Some(cur))
    }

    /// The node's link count: for files, the names in the merged tree
    /// (hard links share a node); for directories of a whole-built tree,
    /// 2 + subdirectories. A lazy tree's directories report 1, as
    /// overlayfs does for merged directories ("unknown" to `find`):
    /// counting subdirectories would read every child directory.
    pub fn nlink(&self, id: NodeId) -> u32 {
        let Some(node) = self.node(id) else { return 0 };
        if let Some(n) = node.nlink.get() {
            return *n;
        }
        let n = match &self.lazy {
            Some(_) if node.kind_is_dir() => 1,
            Some(lazy) => lazy.links(self, id).len().max(1) as u32,
            None => 1,
        };
        *node.nlink.get_or_init(|| n)
    }

    /// Every (parent, name) of a node, first name first.
    pub fn links(&self, id: NodeId) -> Vec<(NodeId, &[u8])> {
        let Some(node) = self.node(id) else {
            return Vec::new();
        };
        if let Some(lazy) = &self.lazy {
            let mut out = lazy.links(self, id);
            if out.is_empty() {
                out.push((node.parent, &*node.name));
            }
            return out;
        }
        let mut out = vec![(node.parent, &*node.name)];
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
        self.totals.0
    }

    /// Number of entries of the layers, for statfs.
    pub fn total_entries(&self) -> u64 {
        self.totals.1
    }
}

impl Node {
    fn kind_is_dir(&self) -> bool {
        matches!(self.kind, NodeKind::Dir { .. })
    }

    /// A node for a layer entry (hard links are resolved by the caller).
    pub(crate) fn from_entry(parent: NodeId, name: &[u8], entry: &Entry, kind: NodeKind) -> Node {
        let mut node = Node {
            parent,
            name: name.into(),
            kind,
            ..default_dir_node()
        };
        set_node_meta(&mut node, entry);
        node
    }
}

/// A directory with default metadata (0755, root, epoch), children unset.
pub(crate) fn default_dir_node() -> Node {
    Node {
        parent: 0,
        name: Box::default(),
        kind: NodeKind::Dir {
            children: OnceLock::new(),
            layers: Box::new([]),
        },
        mode: 0o755,
        uid: 0,
        gid: 0,
        mtime_sec: 0,
        mtime_nsec: 0,
        xattrs: Vec::new(),
        nlink: OnceLock::new(),
    }
}

fn set_node_meta(node: &mut Node, e: &Entry) {
    node.mode = e.mode & 0o7777;
    node.uid = e.uid;
    node.gid = e.gid;
    node.mtime_sec = e.mtime_sec;
    node.mtime_nsec = e.mtime_nsec;
    node.xattrs = entry_xattrs(e);
}

fn entry_xattrs(e: &Entry) -> Vec<Xattr> {
    e.xattrs
        .iter()
        .map(|(n, v)| (n.as_slice().into(), v.as_slice().into()))
        .collect()
}

/// The node kind of a non-directory, non-link entry.
pub(crate) fn leaf_kind(kind: &EntryKind) -> NodeKind {
    match kind {
        EntryKind::File { size, backing } => NodeKind::File {
            size: *size,
            backing: Some(backing.clone()),
        },
        EntryKind::Symlink { target } => NodeKind::Symlink {
            target: target.as_slice().into(),
        },
        EntryKind::CharDevice { major, minor } => NodeKind::CharDevice {
            rdev: libc::makedev(*major, *minor),
        },
        EntryKind::BlockDevice { major, minor } => NodeKind::BlockDevice {
            rdev: libc::makedev(*major, *minor),
        },
        // Directories and hard links never reach here; a FIFO is harmless.
        EntryKind::Fifo | EntryKind::Dir | EntryKind::Hardlink { .. } => NodeKind::Fifo,
    }
}

fn totals(layers: &[Layer]) -> (u64, u64) {
    let mut bytes = 0;
    let mut count = 0;
    for layer in layers {
        for e in &layer.entries {
            count += 1;
            if let EntryKind::File { size, .. } = e.kind {
                bytes += size;
            }
        }
    }
    (bytes, count)
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
                    let (dir, name) = split_parent(path);
                    if let Some(parent) = self.find(base, dir) {
                        if let BuildKind::Dir(children) = &mut self.nodes[parent].kind {
                            children.remove(name);
                        }
                    }
                }
                // A layer that carries a marker inside a directory has that
                // directory, as extracting its tar would create it.
                for dir in &layer.opaque_dirs {
                    self.make_dir_path_from(base, dir);
                }
                for path in &layer.whiteouts {
                    self.make_dir_path_from(base, split_parent(path).0);
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
            // A link names a file of its own layer (the store's ingest
            // checks this), never one of a lower layer.
            let in_layer = layer.entries.iter().any(|e| {
                e.path == *target && !matches!(e.kind, EntryKind::Dir | EntryKind::Hardlink { .. })
            });
            match self.find(base, target).filter(|_| in_layer) {
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
    fn finish(mut self, totals: (u64, u64)) -> Tree {
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
        let mut extra_links: HashMap<NodeId, Vec<Link>> = HashMap::new();
        for (old, parent, name) in extra {
            extra_links
                .entry(new_id[old])
                .or_default()
                .push((parent, name));
        }
        let is_dir: Vec<bool> = self
            .nodes
            .iter()
            .map(|n| matches!(n.kind, BuildKind::Dir(_)))
            .collect();
        let nodes = boxcar::Vec::with_capacity(order.len());
        for (id, (old, parent, name)) in order.iter().enumerate() {
            let b = std::mem::replace(&mut self.nodes[*old], implicit_dir());
            let (kind, nlink) = match b.kind {
                BuildKind::Leaf(kind) => {
                    let links = extra_links.get(&(id as NodeId)).map_or(0, Vec::len);
                    (kind, 1 + links as u32)
                }
                BuildKind::Dir(children) => {
                    let subdirs = children.values().filter(|c| is_dir[**c]).count() as u32;
                    let children = children.into_iter().map(|(n, c)| (n, new_id[c])).collect();
                    (NodeKind::dir(children), 2 + subdirs)
                }
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
                xattrs: b.xattrs,
                nlink: OnceLock::from(nlink),
            });
        }
        Tree {
            nodes,
            extra_links,
            lazy: None,
            totals,
        }
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
        other => BuildKind::Leaf(leaf_kind(other)),
    };
    BuildNode {
        kind,
        mode: entry.mode & 0o7777,
        uid: entry.uid,
        gid: entry.gid,
        mtime_sec: entry.mtime_sec,
        mtime_nsec: entry.mtime_nsec,
        xattrs: entry_xattrs(entry),
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
pub fn split_parent(path: &[u8]) -> (&[u8], &[u8]) {
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
    use crate::source::MemorySource;
    use rand::{Rng, SeedableRng};
    use std::sync::Arc;

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

    fn link(path: &str, target: &str) -> Entry {
        entry(
            path,
            EntryKind::Hardlink {
                target: target.as_bytes().to_vec(),
            },
        )
    }

    /// The same layers merged whole and lazily.
    fn both(layers: Vec<Layer>) -> [Tree; 2] {
        let eager = Tree::build(&layers);
        let lazy = Tree::lazy(Arc::new(MemorySource::new(layers))).unwrap();
        [eager, lazy]
    }

    fn names(tree: &Tree, dir: NodeId) -> Vec<String> {
        tree.children(dir)
            .unwrap()
            .unwrap_or(&[])
            .iter()
            .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
            .collect()
    }

    fn at(tree: &Tree, path: &str) -> NodeId {
        tree.lookup_path(path.as_bytes()).unwrap().unwrap()
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
            ..Layer::default()
        };
        for tree in both(vec![bottom, top]) {
            assert_eq!(names(&tree, 0), vec!["d"]);
            assert_eq!(names(&tree, at(&tree, "d")), vec!["c"]);
        }
    }

    #[test]
    fn hardlinks_share_a_node_and_count_links() {
        let layer = Layer {
            entries: vec![file("a"), link("b", "a"), link("c", "a")],
            ..Layer::default()
        };
        let top = Layer {
            whiteouts: vec![b"c".to_vec()],
            ..Layer::default()
        };
        for tree in both(vec![layer, top]) {
            let a = at(&tree, "a");
            assert_eq!(tree.lookup(0, b"b").unwrap(), Some(a));
            assert_eq!(tree.nlink(a), 2);
            assert_eq!(tree.links(a).len(), 2);
        }
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
        for tree in both(vec![bottom, top]) {
            let p = at(&tree, "p");
            assert!(tree.is_dir(p));
            let qid = at(&tree, "q");
            assert_eq!(tree.node(qid).unwrap().mode, 0o700);
            assert_eq!(names(&tree, qid), vec!["1", "2"]);
            assert_eq!(tree.path(at(&tree, "q/2")), b"q/2");
        }
        let [eager, lazy] = both(Vec::new());
        assert_eq!((eager.nlink(0), lazy.nlink(0)), (2, 1));
    }

    #[test]
    fn implied_directories_keep_lower_metadata() {
        let mut d = entry("d", EntryKind::Dir);
        d.mode = 0o711;
        let bottom = Layer {
            entries: vec![d, file("f")],
            ..Layer::default()
        };
        // `d/x` without `d`; `f/y` over the file `f`; a whiteout in `g`.
        let top = Layer {
            entries: vec![file("d/x"), file("f/y")],
            whiteouts: vec![b"g/z".to_vec()],
            ..Layer::default()
        };
        for tree in both(vec![bottom, top]) {
            assert_eq!(tree.node(at(&tree, "d")).unwrap().mode, 0o711);
            let f = at(&tree, "f");
            assert!(tree.is_dir(f));
            assert_eq!(tree.node(f).unwrap().mode, 0o755);
            assert_eq!(names(&tree, 0), vec!["d", "f", "g"]);
        }
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
        assert!(names(&tree, at(&tree, "merged")).is_empty());
        assert_eq!(
            names(&tree, at(&tree, "2-bb")),
            vec![".wh..wh..opq", ".wh.a"]
        );
    }

    /// A random layer over a small name space, so layers collide often:
    /// directories over files, whiteouts, opaque directories, hard links.
    fn random_layer(rng: &mut rand::rngs::StdRng, index: usize) -> Layer {
        const NAMES: [&str; 4] = ["a", "b", "c", "d"];
        let mut paths = std::collections::BTreeSet::new();
        let mut layer = Layer::default();
        for _ in 0..rng.gen_range(1..14) {
            let depth = rng.gen_range(1..4);
            let path: Vec<&str> = (0..depth)
                .map(|_| NAMES[rng.gen_range(0..NAMES.len())])
                .collect();
            let path = path.join("/");
            if !paths.insert(path.clone()) {
                continue;
            }
            match rng.gen_range(0..10) {
                0 => layer.whiteouts.push(path.into_bytes()),
                1 => layer.opaque_dirs.push(path.into_bytes()),
                2..=4 => {
                    let mut e = entry(&path, EntryKind::Dir);
                    e.mode = 0o700 + index as u32;
                    layer.entries.push(e);
                }
                5 => {
                    let mut e = entry(
                        &path,
                        EntryKind::Symlink {
                            target: b"x".to_vec(),
                        },
                    );
                    e.uid = index as u32;
                    layer.entries.push(e);
                }
                _ => {
                    let mut e = file(&path);
                    e.uid = index as u32;
                    layer.entries.push(e);
                }
            }
        }
        // Links to files of this layer, at fresh top-level names.
        let files: Vec<Vec<u8>> = layer
            .entries
            .iter()
            .filter(|e| matches!(e.kind, EntryKind::File { .. }))
            .map(|e| e.path.clone())
            .collect();
        for (i, target) in files.iter().enumerate().take(2) {
            let name = format!("l{index}{i}");
            layer
                .entries
                .push(link(&name, &String::from_utf8_lossy(target)));
        }
        // Drop entries below a non-directory of the same layer (a tar
        // cannot hold both) and markers under files.
        let leaves: Vec<Vec<u8>> = layer
            .entries
            .iter()
            .filter(|e| e.kind != EntryKind::Dir)
            .map(|e| e.path.clone())
            .collect();
        let under_leaf = |p: &[u8]| {
            leaves
                .iter()
                .any(|l| p.len() > l.len() && p.starts_with(l) && p[l.len()] == b'/')
        };
        layer.entries.retain(|e| !under_leaf(&e.path));
        let kept: Vec<Vec<u8>> = layer.entries.iter().map(|e| e.path.clone()).collect();
        layer.entries.retain(|e| match &e.kind {
            EntryKind::Hardlink { target } => kept.contains(target),
            _ => true,
        });
        layer.whiteouts.retain(|p| !under_leaf(p));
        layer
            .opaque_dirs
            .retain(|p| !under_leaf(p) && !leaves.contains(p));
        layer
    }

    /// Walks both trees in step, comparing every name, kind, metadata,
    /// link count and which names share a node.
    fn assert_same(
        a: &Tree,
        b: &Tree,
        dir_a: NodeId,
        dir_b: NodeId,
        ids: &mut HashMap<NodeId, NodeId>,
        path: &str,
    ) {
        let na = a.node(dir_a).unwrap();
        let nb = b.node(dir_b).unwrap();
        let kind = |n: &Node| match &n.kind {
            NodeKind::Dir { .. } => "dir".to_string(),
            other => format!("{other:?}"),
        };
        assert_eq!(kind(na), kind(nb), "kind of {path:?}");
        assert_eq!(
            (na.mode, na.uid, na.gid, &na.xattrs),
            (nb.mode, nb.uid, nb.gid, &nb.xattrs),
            "metadata of {path:?}"
        );
        if !a.is_dir(dir_a) {
            assert_eq!(a.nlink(dir_a), b.nlink(dir_b), "nlink of {path:?}");
        }
        if let Some(seen) = ids.insert(dir_a, dir_b) {
            assert_eq!(seen, dir_b, "hard link identity at {path:?}");
            return;
        }
        if !a.is_dir(dir_a) {
            return;
        }
        assert_eq!(names(a, dir_a), names(b, dir_b), "children of {path:?}");
        let ca = a.children(dir_a).unwrap().unwrap();
        let cb = b.children(dir_b).unwrap().unwrap();
        for ((name, x), (_, y)) in ca.iter().zip(cb) {
            let child = format!("{path}/{}", String::from_utf8_lossy(name));
            assert_same(a, b, *x, *y, ids, &child);
        }
    }

    fn show(layers: &[Layer]) -> String {
        let s = |p: &[u8]| String::from_utf8_lossy(p).into_owned();
        let mut out = String::new();
        for (i, l) in layers.iter().enumerate() {
            out += &format!("\nlayer {i}:");
            for e in &l.entries {
                let kind = match &e.kind {
                    EntryKind::Dir => "dir".to_string(),
                    EntryKind::File { .. } => "file".to_string(),
                    EntryKind::Hardlink { target } => format!("link->{}", s(target)),
                    EntryKind::Symlink { .. } => "symlink".to_string(),
                    other => format!("{other:?}"),
                };
                out += &format!(" {}={kind}", s(&e.path));
            }
            for w in &l.whiteouts {
                out += &format!(" WH:{}", s(w));
            }
            for o in &l.opaque_dirs {
                out += &format!(" OPQ:{}", s(o));
            }
        }
        out
    }

    fn listed(tree: &Tree, dir: NodeId) -> Vec<String> {
        let children = tree.dir_children(dir).unwrap().unwrap();
        let by_index: Vec<String> = (0..children.len())
            .map(|i| String::from_utf8_lossy(&children.listed_at(i).unwrap().0).into_owned())
            .collect();
        let by_iter: Vec<String> = children
            .listing()
            .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
            .collect();
        assert_eq!(by_index, by_iter);
        assert!(children.listed_at(children.len()).is_none());
        by_index
    }

    #[test]
    fn lazy_directories_list_in_the_layers_order() {
        let lower = Layer {
            entries: vec![
                file("d/zeta"),
                file("d/alpha"),
                file("d/gone"),
                file("d/mid"),
            ],
            ..Layer::default()
        };
        let upper = Layer {
            entries: vec![file("d/new"), file("d/alpha"), file("d/aaa"), file("b/x")],
            whiteouts: vec![b"d/gone".to_vec()],
            ..Layer::default()
        };
        let lazy = Tree::lazy(Arc::new(MemorySource::new(vec![lower, upper]))).unwrap();
        let d = at(&lazy, "d");
        assert_eq!(listed(&lazy, d), ["new", "alpha", "aaa", "zeta", "mid"]);
        // Lookups search by name.
        assert_eq!(names(&lazy, d), ["aaa", "alpha", "mid", "new", "zeta"]);
        assert_eq!(lazy.lookup(d, b"mid").unwrap(), Some(at(&lazy, "d/mid")));
        // Implied directories after the layer's own names; the root
        // merges `d` (both layers imply it) and `b` (the upper only).
        assert_eq!(listed(&lazy, 0), ["b", "d"]);
        // Already sorted: no listing kept.
        let sorted =
            DirChildren::listed(vec![(Box::from(&b"a"[..]), 1), (Box::from(&b"b"[..]), 2)]);
        assert_eq!(
            sorted,
            DirChildren::sorted(vec![(Box::from(&b"b"[..]), 2), (Box::from(&b"a"[..]), 1)])
        );
    }

    #[test]
    fn lazy_tree_matches_the_whole_merge() {
        let seed: u64 = std::env::var("STRATA_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(rand::random);
        eprintln!("lazy_tree_matches_the_whole_merge: STRATA_TEST_SEED={seed}");
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for round in 0..400 {
            let count = rng.gen_range(1..5);
            let layers: Vec<Layer> = (0..count).map(|i| random_layer(&mut rng, i)).collect();
            let [eager, lazy] = both(layers.clone());
            let mut ids = HashMap::new();
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                assert_same(&eager, &lazy, 0, 0, &mut ids, "");
            }));
            if result.is_err() {
                panic!(
                    "round {round} (seed {seed}) differs for layers {}",
                    show(&layers)
                );
            }
        }
    }
}
