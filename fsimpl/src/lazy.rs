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
//! Redirects (a renamed merged directory of an old upper directory used
//! as a layer): a directory that carries one in some layer stops
//! collecting lower layers by its name there; the layers below are
//! searched at the redirect instead, as overlayfs's lookup does
//! ([`Lazy::follow`]). So a directory's layers may hold it at other paths
//! than its merged one: those directories keep the path in each layer (in
//! `State::paths`), and their children are read there. [`Tree::build`]
//! ignores redirects: it serves the layer view of store layers, which
//! never carry them.
//!
//! Hard links: every layer's links are read once, on the first load, and
//! each is resolved to the file of its own layer it names; every name of
//! that file shares one node. Its link count is the number of
//! those names that still reach it in the merged tree, counted when first
//! asked for (names under renamed directories count once those
//! directories have been read).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::sync::{Mutex, MutexGuard, OnceLock};

use crate::layer::{Entry, EntryKind};
use crate::redirect::{join, Redirect};
use crate::source::LayerSource;
use crate::tree::{leaf_kind, Child, DirChildren, Node, NodeId, NodeKind, Tree};

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
    /// Directories some layer holds at another path than the merged one
    /// (below a redirect): the path in each of their layers.
    paths: HashMap<NodeId, Box<[Box<[u8]>]>>,
    /// The same, by (layer, path in the layer).
    dirs_at: HashMap<(u32, Box<[u8]>), Vec<NodeId>>,
}

#[derive(Default)]
struct LinkIndex {
    /// Each hard-linked file and every path naming it (its own first).
    names: HashMap<Key, Vec<Box<[u8]>>>,
    /// What each link entry (layer, path) resolves to.
    resolved: HashMap<(usize, Box<[u8]>), Key>,
}

/// The names of a directory being loaded.
type Merged = BTreeMap<Vec<u8>, Candidate>;

/// Hard links to hard links are followed this deep.
const MAX_LINK_CHAIN: usize = 16;

/// Where one layer holds a directory: the layer and the path in it.
type LayerDir = (u32, Vec<u8>);

/// One name of the directory being loaded.
struct Candidate {
    /// What the topmost layer has; `None` for a directory it only implies.
    entry: Option<(usize, Entry)>,
    is_dir: bool,
    /// For directories: where the layers that contribute it hold it, top
    /// first (the path differs from the merged one below a redirect).
    stack: Vec<LayerDir>,
    /// Whether lower layers can still add to it by its name.
    open: bool,
}

/// One layer's part of following a redirect (see [`Lazy::walk_layer`]).
struct Step {
    /// Where this layer holds the directory, if it does.
    found: Option<Vec<u8>>,
    /// The layers below add nothing.
    stop: bool,
    /// The path to look for in the layers below: from the root if
    /// `from_root`, else from the parent directory of each layer.
    name: Vec<Vec<u8>>,
    /// An absolute redirect was met in this layer.
    from_root: bool,
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
        let stack: Vec<LayerDir> = match state.paths.get(&dir) {
            Some(paths) => layers
                .iter()
                .zip(paths.iter())
                .map(|(l, p)| (*l, p.to_vec()))
                .collect(),
            None => layers.iter().map(|l| (*l, path.clone())).collect(),
        };
        let start = std::time::Instant::now();
        let (merged, listing) = self.merge(&stack, &state)?;
        // Nodes are made in name order (a hard-linked file's first name
        // is its first in name order, as in `Tree::build`), then listed in
        // the layers' order.
        let mut made: HashMap<Vec<u8>, NodeId> = HashMap::with_capacity(merged.len());
        for (name, cand) in merged {
            let id = self.make_node(tree, &mut state, dir, (&path, &name), cand)?;
            made.insert(name, id);
        }
        let mut out: Vec<Child> = Vec::with_capacity(made.len());
        for name in listing {
            if let Some(id) = made.remove(&name) {
                out.push((name.into_boxed_slice(), id));
            }
        }
        tracing::debug!(
            dir = %String::from_utf8_lossy(&path),
            children = out.len(),
            micros = start.elapsed().as_micros() as u64,
            "directory read from the layers"
        );
        let _ = children.set(DirChildren::listed(out));
        Ok(())
    }

    /// The names of the directory held at `stack` (top first), merged (see
    /// the module doc), and the order to list them in: each layer's names
    /// in the order the layer holds them, top layer first.
    fn merge(&self, stack: &[LayerDir], state: &State) -> io::Result<(Merged, Vec<Vec<u8>>)> {
        let mut merged: Merged = BTreeMap::new();
        let mut listing: Vec<Vec<u8>> = Vec::new();
        let mut hidden: HashSet<Vec<u8>> = HashSet::new();
        for (index, (layer, dir_path)) in stack.iter().enumerate() {
            let layer = *layer as usize;
            let mut part = self.source.read_dir(layer, dir_path)?;
            let redirects: HashMap<Vec<u8>, Vec<u8>> =
                std::mem::take(&mut part.redirects).into_iter().collect();
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
                let redirect = redirects.get(&name).filter(|_| is_dir);
                let here = || (layer as u32, join(dir_path, &name));
                let c = match merged.get_mut(&name) {
                    None if !hidden.contains(&name) => {
                        let c = Candidate {
                            entry: entry.map(|e| (layer, e)),
                            is_dir,
                            stack: if is_dir { vec![here()] } else { Vec::new() },
                            open: is_dir,
                        };
                        listing.push(name.clone());
                        merged.entry(name).or_insert(c)
                    }
                    Some(c) if c.open => {
                        if c.is_dir && is_dir {
                            c.stack.push(here());
                            if c.entry.is_none() {
                                c.entry = entry.map(|e| (layer, e));
                            }
                        } else {
                            c.open = false;
                        }
                        c
                    }
                    _ => continue,
                };
                if let Some(value) = redirect.filter(|_| c.open) {
                    // Renamed here: the layers below hold it elsewhere.
                    c.open = false;
                    c.stack.extend(self.follow(stack, index, value)?);
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
        Ok((merged, listing))
    }

    /// Where the layers below `parent[index]` hold a directory of that
    /// layer with redirect `value`, as overlayfs looks it up: a relative
    /// redirect names it in the parent directory of each layer below, an
    /// absolute one is walked from the root of every layer below; in each
    /// layer a whiteout or a non-directory ends the search, an opaque
    /// directory ends it after that layer, and redirects met on the way
    /// change what the next layers are asked for.
    fn follow(&self, parent: &[LayerDir], index: usize, value: &[u8]) -> io::Result<Vec<LayerDir>> {
        let (mut name, mut from_root) = match Redirect::parse(value)? {
            Redirect::Absolute(path) => (path, true),
            Redirect::Relative(name) => (vec![name], false),
        };
        let below_root =
            |layer: u32| -> Vec<LayerDir> { (0..layer).rev().map(|l| (l, Vec::new())).collect() };
        let mut queue: Vec<LayerDir> = if from_root {
            below_root(parent[index].0)
        } else {
            parent[index + 1..].to_vec()
        };
        let mut out = Vec::new();
        let mut i = 0;
        while let Some((layer, base)) = queue.get(i).cloned() {
            let base = if from_root { Vec::new() } else { base };
            let step = self.walk_layer(layer as usize, &base, &name)?;
            if let Some(found) = step.found {
                out.push((layer, found));
            }
            name = step.name;
            if step.stop {
                break;
            }
            if step.from_root {
                from_root = true;
                queue = below_root(layer);
                i = 0;
            } else {
                i += 1;
            }
        }
        Ok(out)
    }

    /// Walks `name` from `base` in one layer (overlayfs's lookup in one
    /// layer): returns where the layer holds the directory and what the
    /// layers below must look for.
    fn walk_layer(&self, layer: usize, base: &[u8], name: &[Vec<u8>]) -> io::Result<Step> {
        let mut cur = base.to_vec();
        let mut next: Vec<Vec<u8>> = Vec::new();
        let (mut stop, mut from_root) = (false, false);
        for (i, component) in name.iter().enumerate() {
            let path = join(&cur, component);
            let probe = self.source.probe(layer, &path)?;
            if probe.is_dir != Some(true) {
                // Missing here: the layers below are asked the same.
                // Whited out, or not a directory: nothing below either.
                next.extend(name[i..].iter().cloned());
                return Ok(Step {
                    found: None,
                    stop: stop || probe.whiteout || probe.is_dir.is_some(),
                    name: next,
                    from_root,
                });
            }
            cur = path;
            stop |= probe.whiteout;
            if probe.opaque {
                // Opaque wins over a redirect, as in overlayfs.
                stop = true;
                next.push(component.clone());
            } else if let Some(value) = probe.redirect {
                match Redirect::parse(&value)? {
                    Redirect::Absolute(path) => {
                        next = path;
                        from_root = true;
                        // An absolute redirect below an opaque directory
                        // still reaches the layers below (overlayfs too).
                        stop = probe.whiteout;
                    }
                    Redirect::Relative(n) => next.push(n),
                }
            } else {
                next.push(component.clone());
            }
        }
        Ok(Step {
            found: Some(cur),
            stop,
            name: next,
            from_root,
        })
    }

    fn make_node(
        &self,
        tree: &Tree,
        state: &mut State,
        parent: NodeId,
        (parent_path, name): (&[u8], &[u8]),
        cand: Candidate,
    ) -> io::Result<NodeId> {
        if cand.is_dir {
            let path = join(parent_path, name);
            let layers: Box<[u32]> = cand.stack.iter().map(|(l, _)| *l).collect();
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
                layers,
            };
            let id = tree.push(node);
            if cand.stack.iter().any(|(_, p)| *p != path) {
                // Below a redirect: remember where each layer holds it.
                for (layer, p) in &cand.stack {
                    let key = (*layer, p.clone().into_boxed_slice());
                    state.dirs_at.entry(key).or_default().push(id);
                }
                let paths = cand.stack.into_iter().map(|(_, p)| p.into()).collect();
                state.paths.insert(id, paths);
            }
            return Ok(id);
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
        let (layer, paths): (usize, Vec<Box<[u8]>>) = {
            let state = self.lock();
            let Some(key) = state.key_of.get(&id) else {
                return Vec::new();
            };
            let names = state.links.as_ref().and_then(|l| l.names.get(key));
            (key.0, names.cloned().unwrap_or_default())
        };
        let mut out: Vec<(NodeId, &'t [u8])> = Vec::new();
        for path in paths {
            let (dir, name) = crate::tree::split_parent(&path);
            let mut dirs: Vec<NodeId> = tree.lookup_path(dir).ok().flatten().into_iter().collect();
            // Directories read so far that show this layer's `dir` under
            // another name (renamed in a layer above).
            let key = (layer as u32, Box::<[u8]>::from(dir));
            dirs.extend(self.lock().dirs_at.get(&key).into_iter().flatten());
            for parent in dirs {
                if let Ok(Some((child_name, child))) = tree.child(parent, name) {
                    if *child == id && !out.contains(&(parent, &**child_name)) {
                        out.push((parent, &**child_name));
                    }
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
