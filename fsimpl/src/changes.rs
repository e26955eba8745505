//! The layer a writable mount's changes make: what a layer must hold so
//! that, applied on the lower tree, it gives exactly the merged view of the
//! upper directory (what `commit` stores and `diff` reports).
//!
//! Mostly that is the upper directory itself: new and copied-up objects,
//! whiteouts for deletions, an opaque marker where a directory hides the
//! lower one. A renamed merged directory is the exception: it carries a
//! redirect and shows a lower directory from another path, and a layer
//! cannot rename. Such a directory is *complete* in the layer: the layer
//! holds everything it shows, its lower contents (read from the lower tree
//! at the redirect's source, O(size of that subtree)) merged with the
//! upper changes inside it, and an opaque marker hides whatever the lower
//! tree has at the new path (only when it has a directory there). The old
//! name's whiteout is an ordinary upper change. Inside a complete
//! directory everything is explicit, so whiteouts are left out and only
//! directories renamed from elsewhere need their own lower contents.
//!
//! The result is a list in layer order (parents before children, each
//! directory's opaque marker right after it). Objects reached twice (hard
//! links among the upper files, or a lower file whose node the layer
//! already carries) become links to their first path. A carried lower file
//! with other names the view still shows where the lower tree has them
//! gets those names too, as links at the end of the list (as a copy-up
//! links a file's other names), so the link survives the commit.
//!
//! Cost: one walk of the upper directory, one lookup in the lower tree per
//! upper directory, and a walk of the lower tree under each redirect.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Stat};

use crate::redirect::{join, Redirect};
use crate::tree::{NodeId, NodeKind, Tree};
use crate::upper::{is_whiteout_at, UpperError, REDIRECT_XATTR};
use crate::xattr;

/// What one entry of the layer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerChangeKind {
    /// The object at the same path in the upper directory (for a
    /// directory: only the directory itself).
    Upper,
    /// A node of the lower tree, carried because a renamed directory shows
    /// it here (for a directory: only the directory itself).
    Lower(NodeId),
    /// A hard link to the entry at this earlier path of the layer.
    Link(Vec<u8>),
    /// An unchanged name of a carried lower file, linked to its copy at
    /// this earlier path so the hard link survives (not a change to
    /// report: the name shows the same file as before).
    KeptLink(Vec<u8>),
    /// The lower path is deleted.
    Whiteout,
    /// The directory at this path hides the lower one (comes right after
    /// the directory's own entry).
    Opaque,
}

/// One entry of the changes layer; `path` is relative, without `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerChange {
    pub path: Vec<u8>,
    pub kind: LayerChangeKind,
    /// For directories: the layer holds all the directory shows (what the
    /// lower tree has at this path is hidden, here or by an ancestor).
    pub complete: bool,
}

/// The changes layer of the upper directory `upper` over the lower tree
/// `lower` (see the module doc).
pub fn layer_changes(upper: &Path, lower: &Tree) -> Result<Vec<LayerChange>, UpperError> {
    let mut walk = Walk {
        upper,
        lower,
        out: Vec::new(),
        upper_links: HashMap::new(),
        lower_links: HashMap::new(),
        other_names: Vec::new(),
    };
    let opaque = is_opaque(upper).map_err(at(upper))?;
    let dir = Dir {
        rel: Vec::new(),
        lower: (!opaque).then_some(0),
        complete: opaque,
    };
    if opaque {
        walk.push(Vec::new(), LayerChangeKind::Opaque, true);
    }
    walk.upper_dir(&dir)?;
    let mut out = walk.out;
    out.append(&mut walk.other_names);
    Ok(out)
}

/// An upper directory being walked.
struct Dir {
    rel: Vec<u8>,
    /// The lower directory it shows, if any.
    lower: Option<NodeId>,
    /// Whether the layer must hold all it shows.
    complete: bool,
}

struct Walk<'a> {
    upper: &'a Path,
    lower: &'a Tree,
    out: Vec<LayerChange>,
    /// (dev, ino) of multiply-linked upper files → first path.
    upper_links: HashMap<(u64, u64), Vec<u8>>,
    /// Lower nodes already carried → first path.
    lower_links: HashMap<NodeId, Vec<u8>>,
    /// Links at the unchanged other names of carried lower files.
    other_names: Vec<LayerChange>,
}

impl Walk<'_> {
    fn push(&mut self, path: Vec<u8>, kind: LayerChangeKind, complete: bool) {
        self.out.push(LayerChange {
            path,
            kind,
            complete,
        });
    }

    fn host_path(&self, rel: &[u8]) -> PathBuf {
        if rel.is_empty() {
            self.upper.to_path_buf()
        } else {
            self.upper.join(std::ffi::OsStr::from_bytes(rel))
        }
    }

    fn upper_dir(&mut self, dir: &Dir) -> Result<(), UpperError> {
        let host = self.host_path(&dir.rel);
        let mut names: Vec<Vec<u8>> = std::fs::read_dir(&host)
            .and_then(|d| {
                d.map(|e| e.map(|e| e.file_name().as_bytes().to_vec()))
                    .collect::<Result<_, _>>()
            })
            .map_err(at(&host))?;
        names.sort();
        for name in &names {
            let rel = join(&dir.rel, name);
            let path = self.host_path(&rel);
            let st = rustix::fs::lstat(&path).map_err(|e| at(&path)(e.into()))?;
            if is_whiteout_at(&path, &st).map_err(at(&path))? {
                if !dir.complete {
                    self.push(rel, LayerChangeKind::Whiteout, false);
                }
                continue;
            }
            if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                let kind = self.upper_file_kind(&rel, &st);
                self.push(rel, kind, false);
                continue;
            }
            let natural = self.lower_child(dir.lower, name).map_err(at(&path))?;
            let shows = self
                .shown_lower(&path, dir.lower, natural)
                .map_err(at(&path))?;
            let complete = dir.complete || shows != natural;
            self.push(rel.clone(), LayerChangeKind::Upper, complete);
            if complete && !dir.complete && natural.is_some() {
                self.push(rel.clone(), LayerChangeKind::Opaque, true);
            }
            self.upper_dir(&Dir {
                rel,
                lower: shows,
                complete,
            })?;
        }
        if let (true, Some(lower)) = (dir.complete, dir.lower) {
            let upper_names: HashSet<&[u8]> = names.iter().map(Vec::as_slice).collect();
            let tree = self.lower;
            let children = tree.children(lower).map_err(at(&host))?.unwrap_or(&[]);
            for (name, node) in children {
                if !upper_names.contains(&**name) {
                    self.lower_subtree(join(&dir.rel, name), *node)
                        .map_err(at(&self.host_path(&join(&dir.rel, name))))?;
                }
            }
        }
        Ok(())
    }

    /// The lower directory `name` of `parent`, if it is one.
    fn lower_child(&self, parent: Option<NodeId>, name: &[u8]) -> io::Result<Option<NodeId>> {
        let Some(parent) = parent else {
            return Ok(None);
        };
        Ok(self
            .lower
            .lookup(parent, name)?
            .filter(|n| self.lower.is_dir(*n)))
    }

    /// The lower directory the upper directory at `path` shows, as the
    /// mount resolves it: none if opaque, its redirect's target if
    /// renamed, else the lower directory at its name (`natural`).
    fn shown_lower(
        &self,
        path: &Path,
        parent: Option<NodeId>,
        natural: Option<NodeId>,
    ) -> io::Result<Option<NodeId>> {
        if is_opaque(path)? {
            return Ok(None);
        }
        let Some(value) = xattr::get(path, REDIRECT_XATTR.as_bytes(), false)? else {
            return Ok(natural);
        };
        let target = match Redirect::parse(&value)? {
            Redirect::Absolute(components) => self.lower.lookup_path(&components.join(&b'/'))?,
            Redirect::Relative(name) => match parent {
                Some(p) => self.lower.lookup(p, &name)?,
                None => None,
            },
        };
        Ok(target.filter(|n| self.lower.is_dir(*n)))
    }

    fn upper_file_kind(&mut self, rel: &[u8], st: &Stat) -> LayerChangeKind {
        if st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            if let Some(first) = self.upper_links.get(&key) {
                return LayerChangeKind::Link(first.clone());
            }
            self.upper_links.insert(key, rel.to_vec());
        }
        LayerChangeKind::Upper
    }

    /// Carries the lower node `node` (and all below it) at `rel`.
    fn lower_subtree(&mut self, rel: Vec<u8>, node: NodeId) -> io::Result<()> {
        let Some(n) = self.lower.node(node) else {
            return Ok(());
        };
        match &n.kind {
            NodeKind::Dir { .. } => {
                self.push(rel.clone(), LayerChangeKind::Lower(node), true);
                let tree = self.lower;
                let children = tree.children(node)?.unwrap_or(&[]);
                for (name, child) in children {
                    self.lower_subtree(join(&rel, name), *child)?;
                }
            }
            _ => match self.lower_links.get(&node) {
                Some(first) => {
                    let first = first.clone();
                    self.push(rel, LayerChangeKind::Link(first), false);
                }
                None => {
                    self.lower_links.insert(node, rel.clone());
                    self.push(rel.clone(), LayerChangeKind::Lower(node), false);
                    self.link_other_names(node, &rel)?;
                }
            },
        }
        Ok(())
    }

    /// Gives the names of the hard-linked lower file `node` that the view
    /// still shows at their lower path (untouched by the upper directory)
    /// links to `carried`, its copy in the layer.
    fn link_other_names(&mut self, node: NodeId, carried: &[u8]) -> io::Result<()> {
        let tree = self.lower;
        if tree.nlink(node) < 2 {
            return Ok(());
        }
        for (parent, name) in tree.links(node) {
            let path = join(&tree.path(parent), name);
            if path != carried && self.shows_lower_path(&path)? {
                self.other_names.push(LayerChange {
                    path,
                    kind: LayerChangeKind::KeptLink(carried.to_vec()),
                    complete: false,
                });
            }
        }
        Ok(())
    }

    /// Whether the view shows the lower tree's object at `path` at that
    /// same path: nothing of the upper directory replaces it, and every
    /// upper directory on the way shows the lower directory at its own
    /// path.
    fn shows_lower_path(&self, path: &[u8]) -> io::Result<bool> {
        let mut lower = Some(0);
        let mut rel: Vec<u8> = Vec::new();
        let components: Vec<&[u8]> = path.split(|b| *b == b'/').collect();
        for (i, name) in components.iter().enumerate() {
            rel = join(&rel, name);
            let host = self.host_path(&rel);
            let st = match rustix::fs::lstat(&host) {
                Ok(st) => st,
                Err(rustix::io::Errno::NOENT) => return Ok(true),
                Err(e) => return Err(e.into()),
            };
            let last = i + 1 == components.len();
            if last || FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                return Ok(false);
            }
            let natural = self.lower_child(lower, name)?;
            if self.shown_lower(&host, lower, natural)? != natural {
                return Ok(false);
            }
            lower = natural;
        }
        Ok(false)
    }
}

/// Turns an I/O error into one naming `path`.
fn at(path: &Path) -> impl FnOnce(io::Error) -> UpperError {
    let path = path.to_path_buf();
    move |source| UpperError::Io { path, source }
}

fn is_opaque(path: &Path) -> io::Result<bool> {
    let v = xattr::get(
        path,
        crate::dirlayer::OVERLAY_OPAQUE_XATTR.as_bytes(),
        false,
    )?;
    Ok(v.as_deref() == Some(b"y"))
}
