//! Building a [`Tree`] one directory at a time from a [`LayerSource`].
//!
//! A directory node carries the layers that contribute it (top first).
//! Loading it asks each of those layers what it holds directly inside the
//! directory and merges the answers the way [`Tree::build`] merges whole
//! layers: the topmost layer that has a name decides what it is; a
//! directory keeps collecting lower layers that also have a directory
//! there until one has something else, whites the name out, or the
//! directory is opaque in a layer; a whiteout hides the name in the layers
//! below its own. A directory's metadata is that of its topmost explicit
//! entry (0755 root:root when every layer only implies it).
//!
//! Hard links: every layer's links are read once, on the first load, and
//! each is resolved to the file of its own layer it names; every name of
//! that file shares one node. Its link count is the number of
//! those names that still reach it in the merged tree, counted when first
//! asked for.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::sync::{Mutex, MutexGuard, OnceLock};

use crate::layer::{Entry, EntryKind};
use crate::source::LayerSource;
use crate::tree::{leaf_kind, Child, Node, NodeId, NodeKind, Tree};

/// A hard-linked file: the layer and path of its entry.
type Key = (usize, Box<[u8]>);

pub(crate) struct Lazy {
    source: std::sync::Arc<dyn LayerSource>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    links: Option<LinkIndex>,
    node_of: HashMap<Key, NodeId>,
    key_of: HashMap<NodeId, Key>,
}

#[derive(Default)]
struct LinkIndex {
    /// Each hard-linked file and every path naming it (its own first).
    names: HashMap<Key, Vec<Box<[u8]>>>,
    /// What each link entry (layer, path) resolves to.
    resolved: HashMap<(usize, Box<[u8]>), Key>,
}

/// Hard links to hard links are followed this deep.
const MAX_LINK_CHAIN: usize = 16;

/// One name of the directory being loaded.
struct Candidate {
    /// What the topmost layer has; `None` for a directory it only implies.
    entry: Option<(usize, Entry)>,
    is_dir: bool,
    /// For directories: the layers that contribute it, top first.
    layers: Vec<u32>,
    /// Whether lower layers can still add to it.
    open: bool,
}

impl Lazy {
    pub fn new(source: std::sync::Arc<dyn LayerSource>) -> Lazy {
        Lazy {
            source,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads directory `dir` from the layers and sets its children.
    pub fn load_dir(&self, tree: &Tree, dir: NodeId) -> io::Result<()> {
        let mut state = self.lock();
        let Some(node) = tree.node(dir) else {
            return Ok(());
        };
        let NodeKind::Dir { children, layers } = &node.kind else {
            return Ok(());
        };
        if children.get().is_some() {
            return Ok(());
        }
        if state.links.is_none() {
            state.links = Some(self.index_links()?);
        }
        let path = tree.path(dir);
        let start = std::time::Instant::now();
        let merged = self.merge(layers, &path, &state)?;
        let mut out: Vec<Child> = Vec::with_capacity(merged.len());
        for (name, cand) in merged {
            let id = self.make_node(tree, &mut state, dir, &name, cand)?;
            out.push((name.into_boxed_slice(), id));
        }
        tracing::debug!(
            dir = %String::from_utf8_lossy(&path),
            children = out.len(),
            micros = start.elapsed().as_micros() as u64,
            "directory read from the layers"
        );
        let _ = children.set(out.into_boxed_slice());
        Ok(())
    }

    /// The names of `path` in the given layers, merged (see the module doc).
    fn merge(
        &self,
        layers: &[u32],
        path: &[u8],
        state: &State,
    ) -> io::Result<BTreeMap<Vec<u8>, Candidate>> {
        let mut merged: BTreeMap<Vec<u8>, Candidate> = BTreeMap::new();
        let mut hidden: HashSet<Vec<u8>> = HashSet::new();
        for &layer in layers {
            let layer = layer as usize;
            let part = self.source.read_dir(layer, path)?;
            let implied = part.implicit_dirs.into_iter().map(|n| (n, None));
            let explicit = part
                .entries
                .into_iter()
                .map(|e| (crate::tree::split_parent(&e.path).1.to_vec(), Some(e)));
            for (name, entry) in explicit.chain(implied) {
                if let Some(Entry {
                    kind: EntryKind::Hardlink { .. },
                    path,
                    ..
                }) = &entry
                {
                    // A link whose target is missing is not there at all.
                    if !resolves(state, layer, path) {
                        continue;
                    }
                }
                let is_dir = entry.as_ref().is_none_or(|e| e.kind == EntryKind::Dir);
                match merged.get_mut(&name) {
                    None if !hidden.contains(&name) => {
                        merged.insert(
                            name,
                            Candidate {
                                entry: entry.map(|e| (layer, e)),
                                is_dir,
                                layers: if is_dir {
                                    vec![layer as u32]
                                } else {
                                    Vec::new()
                                },
                                open: is_dir,
                            },
                        );
                    }
                    Some(c) if c.open => {
                        if c.is_dir && is_dir {
                            c.layers.push(layer as u32);
                            if c.entry.is_none() {
                                c.entry = entry.map(|e| (layer, e));
                            }
                        } else {
                            c.open = false;
                        }
                    }
                    _ => {}
                }
            }
            for name in part.whiteouts {
                match merged.get_mut(&name) {
                    Some(c) => c.open = false,
                    None => {
                        hidden.insert(name);
                    }
                }
            }
            if part.opaque {
                break;
            }
        }
        Ok(merged)
    }

    fn make_node(
        &self,
        tree: &Tree,
        state: &mut State,
        parent: NodeId,
        name: &[u8],
        cand: Candidate,
    ) -> io::Result<NodeId> {
        if cand.is_dir {
            let mut node = match &cand.entry {
                Some((_, e)) => Node::from_entry(parent, name, e, NodeKind::dir(Vec::new())),
                None => Node {
                    parent,
                    name: name.into(),
                    ..crate::tree::default_dir_node()
                },
            };
            node.kind = NodeKind::Dir {
                children: OnceLock::new(),
                layers: cand.layers.into_boxed_slice(),
            };
            return Ok(tree.push(node));
        }
        let Some((layer, entry)) = cand.entry else {
            return Err(io::Error::other("a non-directory without an entry"));
        };
        let links = state.links.as_ref();
        let key: Option<Key> = match &entry.kind {
            EntryKind::Hardlink { .. } => links
                .and_then(|l| {
                    l.resolved
                        .get(&(layer, entry.path.clone().into_boxed_slice()))
                })
                .cloned(),
            _ => {
                let key: Key = (layer, entry.path.clone().into_boxed_slice());
                links
                    .is_some_and(|l| l.names.contains_key(&key))
                    .then_some(key)
            }
        };
        let Some(key) = key else {
            let node = Node::from_entry(parent, name, &entry, leaf_kind(&entry.kind));
            let _ = node.nlink.set(1);
            return Ok(tree.push(node));
        };
        if let Some(id) = state.node_of.get(&key) {
            return Ok(*id);
        }
        let target = if matches!(entry.kind, EntryKind::Hardlink { .. }) {
            self.source
                .entry(key.0, &key.1)?
                .ok_or_else(|| io::Error::other("hard link target vanished"))?
        } else {
            entry
        };
        let id = tree.push(Node::from_entry(
            parent,
            name,
            &target,
            leaf_kind(&target.kind),
        ));
        state.node_of.insert(key.clone(), id);
        state.key_of.insert(id, key);
        Ok(id)
    }

    /// Reads and resolves every layer's hard links.
    fn index_links(&self) -> io::Result<LinkIndex> {
        let mut index = LinkIndex::default();
        for layer in 0..self.source.layer_count() {
            for (path, target) in self.source.hardlinks(layer)? {
                let Some(key) = self.resolve_target(layer, &target)? else {
                    tracing::warn!(
                        path = %String::from_utf8_lossy(&path),
                        "hard link to a missing or non-file target ignored"
                    );
                    continue;
                };
                let names = index
                    .names
                    .entry(key.clone())
                    .or_insert_with(|| vec![key.1.clone()]);
                names.push(path.clone().into_boxed_slice());
                index.resolved.insert((layer, path.into_boxed_slice()), key);
            }
        }
        Ok(index)
    }

    /// The file entry a link in `layer` to `target` names: an entry of the
    /// same layer (the store's ingest only accepts those), links followed.
    fn resolve_target(&self, layer: usize, target: &[u8]) -> io::Result<Option<Key>> {
        let mut target = target.to_vec();
        for _ in 0..MAX_LINK_CHAIN {
            match self.source.entry(layer, &target)?.map(|e| e.kind) {
                Some(EntryKind::Hardlink { target: next }) => target = next,
                Some(EntryKind::Dir) | None => return Ok(None),
                Some(_) => return Ok(Some((layer, target.into_boxed_slice()))),
            }
        }
        Ok(None)
    }

    /// The names of hard-linked node `id` that reach it in the merged tree;
    /// empty for a node that is not hard-linked.
    pub fn links<'t>(&self, tree: &'t Tree, id: NodeId) -> Vec<(NodeId, &'t [u8])> {
        let paths: Vec<Box<[u8]>> = {
            let state = self.lock();
            let Some(key) = state.key_of.get(&id) else {
                return Vec::new();
            };
            state
                .links
                .as_ref()
                .and_then(|l| l.names.get(key))
                .cloned()
                .unwrap_or_default()
        };
        let mut out: Vec<(NodeId, &'t [u8])> = Vec::new();
        for path in paths {
            let (dir, name) = crate::tree::split_parent(&path);
            let Ok(Some(parent)) = tree.lookup_path(dir) else {
                continue;
            };
            if let Ok(Some((child_name, child))) = tree.child(parent, name) {
                if *child == id && !out.contains(&(parent, &**child_name)) {
                    out.push((parent, &**child_name));
                }
            }
        }
        // First name first, as eager trees list them.
        if let Some(node) = tree.node(id) {
            if let Some(i) = out
                .iter()
                .position(|(p, n)| *p == node.parent && *n == &*node.name)
            {
                out.swap(0, i);
            }
        }
        out
    }
}

fn resolves(state: &State, layer: usize, path: &[u8]) -> bool {
    state
        .links
        .as_ref()
        .is_some_and(|l| l.resolved.contains_key(&(layer, Box::from(path))))
}
