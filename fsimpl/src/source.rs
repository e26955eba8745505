//! Lazy input of a mount: a [`LayerSource`] answers, per layer, what one
//! directory holds, so the merged tree is built one directory at a time as
//! the kernel asks for it (see [`crate::tree::Tree::lazy`]) instead of all
//! at once. The store implements it over SQLite; [`MemorySource`] over
//! in-memory [`Layer`]s (tests, plain directories).
//!
//! Paths are as in [`crate::layer`]: relative, no leading `/`, `b""` for
//! the root.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io;

use crate::layer::{Entry, EntryKind, Layer};
use crate::tree::split_parent;

/// What one layer holds directly inside one directory.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DirPart {
    /// Entries whose parent is the directory (`path` is the full path),
    /// in the order the layer holds them (the store: the layer tar's
    /// order, which is the order their files were written in). A mount
    /// lists a directory in this order, top layer first, then the names
    /// the implied directories add.
    pub entries: Vec<Entry>,
    /// Names of subdirectories the layer implies (it has entries,
    /// whiteouts or opaque markers below them) without an entry of their
    /// own; they merge like directories without metadata.
    pub implicit_dirs: Vec<Vec<u8>>,
    /// Names whited out in the directory (they hide lower layers only).
    pub whiteouts: Vec<Vec<u8>>,
    /// The layer marks the directory opaque: lower layers add nothing.
    pub opaque: bool,
    /// Subdirectories that are renamed merged directories: name and
    /// redirect as stored (see [`Layer::redirects`]).
    pub redirects: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What one layer has at one path, as following a redirect needs it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LayerProbe {
    /// `Some(true)` a directory (explicit or implied), `Some(false)`
    /// another object, `None` nothing.
    pub is_dir: Option<bool>,
    /// The name is whited out in this layer (hides the layers below).
    pub whiteout: bool,
    /// The directory is opaque in this layer.
    pub opaque: bool,
    /// The directory's redirect, as stored.
    pub redirect: Option<Vec<u8>>,
}

/// Read access to a mount's layers, numbered bottom first.
pub trait LayerSource: Send + Sync + std::fmt::Debug {
    fn layer_count(&self) -> usize;
    /// What layer `layer` holds directly inside directory `dir`.
    fn read_dir(&self, layer: usize, dir: &[u8]) -> io::Result<DirPart>;
    /// The entry at `path` in `layer` (`b""`: the layer's root directory).
    fn entry(&self, layer: usize, path: &[u8]) -> io::Result<Option<Entry>>;
    /// Every hard link of `layer`: (path, target).
    fn hardlinks(&self, layer: usize) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>>;
    /// Total bytes of regular files and number of entries, for statfs.
    fn totals(&self) -> (u64, u64);
    /// What `layer` has at `path` (not the root). Used only to follow
    /// redirects; by default it reads the parent directory.
    fn probe(&self, layer: usize, path: &[u8]) -> io::Result<LayerProbe> {
        let (dir, name) = split_parent(path);
        let part = self.read_dir(layer, dir)?;
        let entry = part
            .entries
            .iter()
            .find(|e| split_parent(&e.path).1 == name);
        let is_dir = match entry {
            Some(e) => Some(e.kind == EntryKind::Dir),
            None => part
                .implicit_dirs
                .iter()
                .any(|n| n.as_slice() == name)
                .then_some(true),
        };
        let opaque = is_dir == Some(true) && self.read_dir(layer, path)?.opaque;
        Ok(LayerProbe {
            is_dir,
            whiteout: part.whiteouts.iter().any(|n| n.as_slice() == name),
            opaque,
            redirect: part
                .redirects
                .into_iter()
                .find(|(n, _)| n.as_slice() == name)
                .map(|(_, v)| v),
        })
    }
}

/// The directories a layer implies: every proper ancestor of its entries,
/// whiteouts and opaque directories, and the opaque directories
/// themselves, that has no entry of its own (the root excluded).
pub fn implicit_dirs<'a>(
    entries: impl IntoIterator<Item = &'a [u8]>,
    whiteouts: impl IntoIterator<Item = &'a [u8]>,
    opaque_dirs: impl IntoIterator<Item = &'a [u8]>,
) -> BTreeSet<Vec<u8>> {
    let mut explicit = std::collections::HashSet::new();
    let mut implied = BTreeSet::new();
    let add_ancestors = |path: &[u8], implied: &mut BTreeSet<Vec<u8>>| {
        let mut dir = split_parent(path).0;
        while !dir.is_empty() && implied.insert(dir.to_vec()) {
            dir = split_parent(dir).0;
        }
    };
    for path in entries {
        explicit.insert(path.to_vec());
        add_ancestors(path, &mut implied);
    }
    for path in whiteouts {
        add_ancestors(path, &mut implied);
    }
    for path in opaque_dirs {
        if !path.is_empty() {
            implied.insert(path.to_vec());
            add_ancestors(path, &mut implied);
        }
    }
    implied.retain(|p| !explicit.contains(p));
    implied
}

/// A [`LayerSource`] over layers held in memory.
#[derive(Debug)]
pub struct MemorySource {
    layers: Vec<IndexedLayer>,
    totals: (u64, u64),
}

#[derive(Debug, Default)]
struct IndexedLayer {
    by_path: HashMap<Vec<u8>, Entry>,
    dirs: HashMap<Vec<u8>, DirPart>,
    hardlinks: Vec<(Vec<u8>, Vec<u8>)>,
    implied: HashSet<Vec<u8>>,
    whiteouts: HashSet<Vec<u8>>,
    redirects: HashMap<Vec<u8>, Vec<u8>>,
}

impl MemorySource {
    pub fn new(layers: Vec<Layer>) -> MemorySource {
        let mut bytes = 0;
        let mut count = 0;
        let indexed = layers
            .into_iter()
            .map(|layer| {
                let mut ix = IndexedLayer::default();
                let implied = implicit_dirs(
                    layer.entries.iter().map(|e| e.path.as_slice()),
                    layer.whiteouts.iter().map(Vec::as_slice),
                    layer.opaque_dirs.iter().map(Vec::as_slice),
                );
                for dir in implied {
                    let (parent, name) = split_parent(&dir);
                    let part = ix.dirs.entry(parent.to_vec()).or_default();
                    part.implicit_dirs.push(name.to_vec());
                    ix.implied.insert(dir);
                }
                for w in &layer.whiteouts {
                    let (parent, name) = split_parent(w);
                    let part = ix.dirs.entry(parent.to_vec()).or_default();
                    part.whiteouts.push(name.to_vec());
                    ix.whiteouts.insert(w.clone());
                }
                for (path, value) in layer.redirects {
                    let (parent, name) = split_parent(&path);
                    let part = ix.dirs.entry(parent.to_vec()).or_default();
                    part.redirects.push((name.to_vec(), value.clone()));
                    ix.redirects.insert(path, value);
                }
                for o in &layer.opaque_dirs {
                    ix.dirs.entry(o.clone()).or_default().opaque = true;
                }
                for e in layer.entries {
                    count += 1;
                    match &e.kind {
                        EntryKind::File { size, .. } => bytes += size,
                        EntryKind::Hardlink { target } => {
                            ix.hardlinks.push((e.path.clone(), target.clone()))
                        }
                        _ => {}
                    }
                    if !e.path.is_empty() {
                        let parent = split_parent(&e.path).0.to_vec();
                        ix.dirs.entry(parent).or_default().entries.push(e.clone());
                    }
                    ix.by_path.insert(e.path.clone(), e);
                }
                ix
            })
            .collect();
        MemorySource {
            layers: indexed,
            totals: (bytes, count),
        }
    }

    fn layer(&self, layer: usize) -> io::Result<&IndexedLayer> {
        self.layers
            .get(layer)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such layer"))
    }
}

impl LayerSource for MemorySource {
    fn layer_count(&self) -> usize {
        self.layers.len()
    }

    fn read_dir(&self, layer: usize, dir: &[u8]) -> io::Result<DirPart> {
        Ok(self
            .layer(layer)?
            .dirs
            .get(dir)
            .cloned()
            .unwrap_or_default())
    }

    fn entry(&self, layer: usize, path: &[u8]) -> io::Result<Option<Entry>> {
        Ok(self.layer(layer)?.by_path.get(path).cloned())
    }

    fn hardlinks(&self, layer: usize) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        Ok(self.layer(layer)?.hardlinks.clone())
    }

    fn totals(&self) -> (u64, u64) {
        self.totals
    }

    fn probe(&self, layer: usize, path: &[u8]) -> io::Result<LayerProbe> {
        let ix = self.layer(layer)?;
        let is_dir = match ix.by_path.get(path) {
            Some(e) => Some(e.kind == EntryKind::Dir),
            None => ix.implied.contains(path).then_some(true),
        };
        Ok(LayerProbe {
            is_dir,
            whiteout: ix.whiteouts.contains(path),
            opaque: is_dir == Some(true) && ix.dirs.get(path).is_some_and(|d| d.opaque),
            redirect: ix.redirects.get(path).cloned(),
        })
    }
}
