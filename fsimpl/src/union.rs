//! The union of the merged lower tree and the upper directory: inode
//! numbers, name resolution and copy-up.
//!
//! Inode numbers: node `n` of the lower [`Tree`] is inode `n + 1` (the root
//! is 1) for the life of the mount. Objects that exist only in the upper
//! directory get numbers from [`UPPER_INO_BASE`] up (a lazy tree keeps
//! adding nodes), allocated on first lookup and released when the kernel
//! forgets them. An object present in the upper
//! directory is held by an `O_PATH` descriptor ([`UpperInode`]), so renames
//! and hard links in the upper directory never invalidate it; a lower
//! object copied up keeps its inode number and gains such a descriptor,
//! except that a copied-up file whose lower file is still the kernel's
//! passthrough backing for that number is given a new number for later
//! lookups ([`Union::renumber`]; the old number keeps resolving to it).
//!
//! Invariants: a directory is lower-only exactly when the upper directory
//! has nothing at its path, so nothing below it is in the upper directory
//! either; a lower-only object sits at one of its tree paths (merged
//! directories are never renamed: rename answers EXDEV, like overlayfs).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{Errno, FileAttr, FileType, INodeNo};
use rustix::fs::{AtFlags, FileType as HostType, Mode, OFlags, Stat, Timespec, Timestamps};

use crate::mount::RedirectDir;
use crate::redirect::Redirect;
use crate::tree::{Node, NodeId, NodeKind, Tree};
use crate::upper::{self, Upper};
use crate::xattr;

/// An object present in the upper directory.
#[derive(Debug)]
pub(crate) struct UpperInode {
    /// `O_PATH | O_NOFOLLOW` descriptor of the object.
    pub fd: OwnedFd,
    /// For a merged directory: the lower directory shown through it.
    pub lower: Option<NodeId>,
    pub key: (u64, u64),
    pub host_type: HostType,
    nlookup: AtomicU64,
}

impl UpperInode {
    /// An upper object outside the inode table (for one operation).
    pub fn detached(fd: OwnedFd, st: &Stat) -> Arc<UpperInode> {
        Arc::new(UpperInode {
            fd,
            lower: None,
            key: (st.st_dev, st.st_ino),
            host_type: HostType::from_raw_mode(st.st_mode),
            nlookup: AtomicU64::new(0),
        })
    }
}

/// What an inode number stands for right now.
#[derive(Debug, Clone)]
pub(crate) enum Obj {
    Lower(NodeId),
    Upper(Arc<UpperInode>),
}

/// What a name in a directory resolves to, without counting a lookup.
#[derive(Debug)]
pub(crate) enum Probe {
    Absent,
    /// A whiteout hides the name (the lower object, if any, is gone).
    Whiteout,
    Lower(NodeId),
    Upper {
        fd: OwnedFd,
        st: Stat,
        /// The lower object at the same name, if the parent shows one.
        lower: Option<NodeId>,
        /// The lower directory the parent shows, if any (what a relative
        /// redirect is resolved in).
        dir_lower: Option<NodeId>,
    },
}

#[derive(Default)]
struct Table {
    by_ino: HashMap<u64, Arc<UpperInode>>,
    by_key: HashMap<(u64, u64), u64>,
}

pub(crate) struct Union {
    pub tree: Tree,
    pub upper: Option<Upper>,
    table: RwLock<Table>,
    next_ino: AtomicU64,
    copy_up_lock: Mutex<()>,
    /// Entry and attribute timeout given to the kernel.
    pub ttl: Duration,
    /// Whether renames make redirects and lookups follow them.
    pub redirect_dir: RedirectDir,
}

pub(crate) type OpResult<T> = Result<T, Errno>;

/// The first inode number of objects only in the upper directory; lower
/// nodes are numbered below it.
pub(crate) const UPPER_INO_BASE: u64 = 1 << 48;

pub(crate) fn errno(e: impl Into<std::io::Error>) -> Errno {
    Errno::from(e.into())
}

impl Union {
    pub fn new(
        tree: Tree,
        upper: Option<Upper>,
        redirect_dir: RedirectDir,
    ) -> std::io::Result<Union> {
        let next = UPPER_INO_BASE;
        let union = Union {
            tree,
            upper,
            table: RwLock::new(Table::default()),
            next_ino: AtomicU64::new(next),
            copy_up_lock: Mutex::new(()),
            ttl: Duration::from_secs(86400),
            redirect_dir,
        };
        if let Some(up) = &union.upper {
            let fd = rustix::fs::openat(
                &up.root,
                ".",
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let st = rustix::fs::fstat(&fd)?;
            let lower = if upper::is_opaque(&fd)? {
                None
            } else {
                Some(0)
            };
            union.insert(1, fd, &st, lower, 0);
        }
        Ok(union)
    }

    pub fn writable(&self) -> bool {
        self.upper.is_some()
    }

    /// Whether `ino` is a node of the lower tree.
    pub fn pinned(&self, ino: u64) -> bool {
        (1..UPPER_INO_BASE).contains(&ino) && self.tree.contains((ino - 1) as NodeId)
    }

    pub fn resolve(&self, ino: u64) -> OpResult<Obj> {
        if self.upper.is_some() {
            if let Some(u) = self.read_table().by_ino.get(&ino) {
                return Ok(Obj::Upper(u.clone()));
            }
        }
        if self.pinned(ino) {
            Ok(Obj::Lower((ino - 1) as NodeId))
        } else {
            Err(Errno::ESTALE)
        }
    }

    fn read_table(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_table(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|p| p.into_inner())
    }

    fn insert(
        &self,
        ino: u64,
        fd: OwnedFd,
        st: &Stat,
        lower: Option<NodeId>,
        nlookup: u64,
    ) -> Arc<UpperInode> {
        let key = (st.st_dev, st.st_ino);
        let inode = Arc::new(UpperInode {
            fd,
            lower,
            key,
            host_type: HostType::from_raw_mode(st.st_mode),
            nlookup: AtomicU64::new(nlookup),
        });
        let mut table = self.write_table();
        table.by_ino.insert(ino, inode.clone());
        table.by_key.insert(key, ino);
        inode
    }

    /// Gives an upper object its inode number, counting one kernel lookup.
    pub fn intern(&self, fd: OwnedFd, st: &Stat, merged: Option<NodeId>) -> (u64, Arc<UpperInode>) {
        let key = (st.st_dev, st.st_ino);
        let known = |table: &Table| {
            let ino = merged
                .map(|n| n as u64 + 1)
                .or_else(|| table.by_key.get(&key).copied())?;
            let existing = table.by_ino.get(&ino).filter(|e| e.key == key)?;
            existing.nlookup.fetch_add(1, Ordering::Relaxed);
            Some((ino, existing.clone()))
        };
        if let Some(found) = known(&self.read_table()) {
            return found;
        }
        // Check again and insert under one write lock, so two lookups of
        // the same new object cannot give it two inode numbers.
        let mut table = self.write_table();
        if let Some(found) = known(&table) {
            return found;
        }
        let ino = match merged {
            Some(n) => n as u64 + 1,
            None => self.next_ino.fetch_add(1, Ordering::Relaxed),
        };
        let inode = Arc::new(UpperInode {
            fd,
            lower: merged,
            key,
            host_type: HostType::from_raw_mode(st.st_mode),
            nlookup: AtomicU64::new(1),
        });
        table.by_ino.insert(ino, inode.clone());
        table.by_key.insert(key, ino);
        (ino, inode)
    }

    /// Stops giving `ino` to lookups of its upper object: the next lookup
    /// of any of its names gives the object a new inode number. `ino` itself
    /// keeps resolving to the object. Used when the kernel cannot open the
    /// upper file through `ino` (see `fs::io`).
    pub fn renumber(&self, ino: u64) {
        let mut table = self.write_table();
        let Some(key) = table.by_ino.get(&ino).map(|u| u.key) else {
            return;
        };
        if table.by_key.get(&key) == Some(&ino) {
            table.by_key.remove(&key);
        }
    }

    /// The kernel dropped `n` references to `ino`.
    pub fn forget(&self, ino: u64, n: u64) {
        if self.pinned(ino) || self.upper.is_none() {
            return;
        }
        let mut table = self.write_table();
        let drop_it = match table.by_ino.get(&ino) {
            Some(u) => {
                let prev = u
                    .nlookup
                    .fetch_sub(n.min(u.nlookup.load(Ordering::Relaxed)), Ordering::Relaxed);
                prev <= n
            }
            None => false,
        };
        if drop_it {
            if let Some(u) = table.by_ino.remove(&ino) {
                if table.by_key.get(&u.key) == Some(&ino) {
                    table.by_key.remove(&u.key);
                }
            }
        }
    }

    /// Resolves `name` in directory `parent` without counting a lookup.
    pub fn probe(&self, parent: &Obj, name: &[u8]) -> OpResult<Probe> {
        match parent {
            Obj::Lower(dir) => {
                if !self.tree.is_dir(*dir) {
                    return Err(Errno::ENOTDIR);
                }
                Ok(self
                    .tree
                    .lookup(*dir, name)
                    .map_err(errno)?
                    .map_or(Probe::Absent, Probe::Lower))
            }
            Obj::Upper(p) => {
                if p.host_type != HostType::Directory {
                    return Err(Errno::ENOTDIR);
                }
                let lower = match p.lower {
                    Some(d) => self.tree.lookup(d, name).map_err(errno)?,
                    None => None,
                };
                let opened = rustix::fs::openat(
                    &p.fd,
                    OsStr::from_bytes(name),
                    OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                );
                match opened {
                    Ok(fd) => {
                        let st = rustix::fs::fstat(&fd).map_err(errno)?;
                        if upper::is_whiteout_fd(&fd, &st).map_err(errno)? {
                            Ok(Probe::Whiteout)
                        } else {
                            Ok(Probe::Upper {
                                fd,
                                st,
                                lower,
                                dir_lower: p.lower,
                            })
                        }
                    }
                    Err(e) if e == rustix::io::Errno::NOENT => {
                        Ok(lower.map_or(Probe::Absent, Probe::Lower))
                    }
                    Err(e) => Err(errno(e)),
                }
            }
        }
    }

    /// Looks `name` up in `parent`, counting one kernel lookup.
    pub fn lookup(&self, parent: u64, name: &[u8]) -> OpResult<FileAttr> {
        let parent = self.resolve(parent)?;
        match self.probe(&parent, name)? {
            Probe::Absent | Probe::Whiteout => Err(Errno::ENOENT),
            Probe::Lower(n) => self.attr(n as u64 + 1),
            Probe::Upper {
                fd,
                st,
                lower,
                dir_lower,
            } => {
                let merged = self.merged_lower(&fd, &st, lower, dir_lower)?;
                let (ino, _) = self.intern(fd, &st, merged);
                Ok(stat_attr(ino, &st))
            }
        }
    }

    /// The lower directory an upper directory merges with, if any: none
    /// for an opaque directory; the redirect's target for a renamed one
    /// (a relative redirect names it in `dir_lower`, the lower directory
    /// of its parent); else the lower directory `lower` at its name.
    pub fn merged_lower(
        &self,
        fd: &OwnedFd,
        st: &Stat,
        lower: Option<NodeId>,
        dir_lower: Option<NodeId>,
    ) -> OpResult<Option<NodeId>> {
        if HostType::from_raw_mode(st.st_mode) != HostType::Directory
            || upper::is_opaque(fd).map_err(errno)?
        {
            return Ok(None);
        }
        let redirect = match self.redirect_dir {
            RedirectDir::NoFollow => None,
            _ => upper::redirect(fd).map_err(errno)?,
        };
        let target = match redirect {
            Some(Redirect::Absolute(path)) => {
                self.tree.lookup_path(&path.join(&b'/')).map_err(errno)?
            }
            Some(Redirect::Relative(name)) => match dir_lower {
                Some(d) => self.tree.lookup(d, &name).map_err(errno)?,
                None => None,
            },
            None => lower,
        };
        Ok(target.filter(|t| self.tree.is_dir(*t)))
    }

    pub fn attr(&self, ino: u64) -> OpResult<FileAttr> {
        match self.resolve(ino)? {
            Obj::Lower(n) => {
                let node = self.tree.node(n).ok_or(Errno::ESTALE)?;
                let mut attr = node_attr(ino, node, self.tree.nlink(n));
                if self.upper.is_some() && attr.nlink > 1 && attr.kind != FileType::Directory {
                    attr.nlink = self.visible_links(n);
                }
                Ok(attr)
            }
            Obj::Upper(u) => {
                let st = rustix::fs::fstat(&u.fd).map_err(errno)?;
                Ok(stat_attr(ino, &st))
            }
        }
    }

    /// How many names of the hard-linked lower node `n` the merged view
    /// still shows (some may have been removed through the mount).
    fn visible_links(&self, n: NodeId) -> u32 {
        let links = self.tree.links(n);
        links
            .iter()
            .filter(|(p, name)| self.dir_visible(*p) && self.shows_lower(*p, name, n))
            .count() as u32
    }

    /// Whether `name` in tree directory `dir` still resolves to node `n`.
    fn shows_lower(&self, dir: NodeId, name: &[u8], n: NodeId) -> bool {
        let Ok(parent) = self.resolve(dir as u64 + 1) else {
            return false;
        };
        matches!(self.probe(&parent, name), Ok(Probe::Lower(m)) if m == n)
    }

    /// Whether the lower directory `dir` is still part of the merged view.
    fn dir_visible(&self, dir: NodeId) -> bool {
        if dir == 0 {
            return true;
        }
        match self.resolve(dir as u64 + 1) {
            // Merged directories never move: present means visible.
            Ok(Obj::Upper(u)) => rustix::fs::fstat(&u.fd).is_ok_and(|st| st.st_nlink > 0),
            Ok(Obj::Lower(_)) => {
                let Some(node) = self.tree.node(dir) else {
                    return false;
                };
                self.dir_visible(node.parent) && self.shows_lower(node.parent, &node.name, dir)
            }
            Err(_) => false,
        }
    }

    /// Makes sure `ino` exists in the upper directory and returns it there.
    /// `with_data: false` skips copying file content (the caller truncates).
    pub fn copy_up(&self, ino: u64, with_data: bool) -> OpResult<Arc<UpperInode>> {
        if self.upper.is_none() {
            return Err(Errno::EROFS);
        }
        if let Obj::Upper(u) = self.resolve(ino)? {
            return Ok(u);
        }
        let node_id = (ino - 1) as NodeId;
        let node = self.tree.node(node_id).ok_or(Errno::ESTALE)?;
        for (parent, name) in self.tree.links(node_id) {
            let Ok(p) = self.copy_up(parent as u64 + 1, true) else {
                continue;
            };
            let _guard = self.copy_up_lock.lock().unwrap_or_else(|p| p.into_inner());
            if let Obj::Upper(u) = self.resolve(ino)? {
                return Ok(u);
            }
            match rustix::fs::statat(&p.fd, OsStr::from_bytes(name), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(_) => continue,
                Err(e) if e == rustix::io::Errno::NOENT => {}
                Err(e) => return Err(errno(e)),
            }
            let fd = copy_node(&p.fd, name, node, with_data).map_err(|e| {
                tracing::warn!(path = %String::from_utf8_lossy(&self.tree.path(node_id)), error = %e, "copy-up failed");
                errno(e)
            })?;
            let st = rustix::fs::fstat(&fd).map_err(errno)?;
            let merged = matches!(node.kind, NodeKind::Dir { .. }).then_some(node_id);
            let inode = self.insert(ino, fd, &st, merged, 0);
            drop(_guard);
            if merged.is_none() && self.tree.nlink(node_id) > 1 {
                self.link_other_names(node_id, (parent, name), &inode);
            }
            return Ok(inode);
        }
        Err(Errno::ENOENT)
    }

    /// After copying up a hard-linked lower file through one name, gives
    /// its other visible names the same upper file, so the upper directory
    /// keeps the link (overlayfs without `index` would break it).
    fn link_other_names(&self, node_id: NodeId, done: (NodeId, &[u8]), inode: &UpperInode) {
        for (parent, name) in self.tree.links(node_id) {
            if (parent, name) == done {
                continue;
            }
            let Ok(p) = self.copy_up(parent as u64 + 1, true) else {
                continue;
            };
            if !matches!(self.probe(&Obj::Upper(p.clone()), name), Ok(Probe::Lower(n)) if n == node_id)
            {
                continue;
            }
            let linked = rustix::fs::linkat(
                rustix::fs::CWD,
                xattr::proc_path(&inode.fd),
                &p.fd,
                OsStr::from_bytes(name),
                AtFlags::SYMLINK_FOLLOW,
            );
            if let Err(e) = linked {
                tracing::warn!(error = %e, "could not keep a hard link on copy-up");
            }
        }
    }
}

/// Creates `name` in the upper directory `parent` as a copy of `node`.
fn copy_node(
    parent: &OwnedFd,
    name: &[u8],
    node: &Node,
    with_data: bool,
) -> std::io::Result<OwnedFd> {
    let cname = OsStr::from_bytes(name);
    let mode = Mode::from_raw_mode(node.mode);
    let owner = (
        Some(rustix::fs::Uid::from_raw(node.uid)),
        Some(rustix::fs::Gid::from_raw(node.gid)),
    );
    let times = node_times(node);
    match &node.kind {
        NodeKind::File { backing, .. } => {
            let tmp = rustix::fs::openat(
                parent,
                ".",
                OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )?;
            let tmp = File::from(tmp);
            if let (true, Some(path)) = (with_data, backing) {
                upper::copy_data(&File::open(path)?, &tmp)?;
            }
            rustix::fs::fchown(&tmp, owner.0, owner.1)?;
            rustix::fs::fchmod(&tmp, mode)?;
            for (n, v) in &node.xattrs {
                rustix::fs::fsetxattr(
                    &tmp,
                    OsStr::from_bytes(n),
                    v,
                    rustix::fs::XattrFlags::empty(),
                )?;
            }
            rustix::fs::futimens(&tmp, &times)?;
            rustix::fs::linkat(
                rustix::fs::CWD,
                xattr::proc_path(tmp.as_fd()),
                parent,
                cname,
                AtFlags::SYMLINK_FOLLOW,
            )?;
        }
        NodeKind::Dir { .. } => {
            rustix::fs::mkdirat(parent, cname, Mode::from_raw_mode(0o700))?;
            rustix::fs::chownat(parent, cname, owner.0, owner.1, AtFlags::SYMLINK_NOFOLLOW)?;
            rustix::fs::chmodat(parent, cname, mode, AtFlags::empty())?;
        }
        NodeKind::Symlink { target } => {
            rustix::fs::symlinkat(OsStr::from_bytes(target), parent, cname)?;
            rustix::fs::chownat(parent, cname, owner.0, owner.1, AtFlags::SYMLINK_NOFOLLOW)?;
        }
        NodeKind::CharDevice { rdev } | NodeKind::BlockDevice { rdev } => {
            let t = if matches!(node.kind, NodeKind::CharDevice { .. }) {
                HostType::CharacterDevice
            } else {
                HostType::BlockDevice
            };
            rustix::fs::mknodat(parent, cname, t, mode, *rdev)?;
            if t == HostType::CharacterDevice && *rdev == 0 {
                upper::mark_device(parent, name)?;
            }
            rustix::fs::chownat(parent, cname, owner.0, owner.1, AtFlags::SYMLINK_NOFOLLOW)?;
            rustix::fs::chmodat(parent, cname, mode, AtFlags::empty())?;
        }
        NodeKind::Fifo => {
            rustix::fs::mknodat(parent, cname, HostType::Fifo, mode, 0)?;
            rustix::fs::chownat(parent, cname, owner.0, owner.1, AtFlags::SYMLINK_NOFOLLOW)?;
            rustix::fs::chmodat(parent, cname, mode, AtFlags::empty())?;
        }
    }
    let fd = rustix::fs::openat(
        parent,
        cname,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    if !matches!(node.kind, NodeKind::File { .. } | NodeKind::Symlink { .. }) {
        let path = xattr::proc_path(&fd);
        for (n, v) in &node.xattrs {
            xattr::set(&path, n, v, rustix::fs::XattrFlags::empty())?;
        }
    }
    rustix::fs::utimensat(parent, cname, &times, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(fd)
}

fn node_times(node: &Node) -> Timestamps {
    let t = Timespec {
        tv_sec: node.mtime_sec,
        tv_nsec: node.mtime_nsec as _,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

pub(crate) fn system_time(sec: i64, nsec: u32) -> SystemTime {
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec as u64, nsec)
    } else {
        UNIX_EPOCH - Duration::from_secs(sec.unsigned_abs()) + Duration::from_nanos(nsec as u64)
    }
}

pub(crate) fn node_file_type(kind: &NodeKind) -> FileType {
    match kind {
        NodeKind::File { .. } => FileType::RegularFile,
        NodeKind::Dir { .. } => FileType::Directory,
        NodeKind::Symlink { .. } => FileType::Symlink,
        NodeKind::CharDevice { .. } => FileType::CharDevice,
        NodeKind::BlockDevice { .. } => FileType::BlockDevice,
        NodeKind::Fifo => FileType::NamedPipe,
    }
}

pub(crate) fn host_file_type(t: HostType) -> FileType {
    match t {
        HostType::RegularFile => FileType::RegularFile,
        HostType::Directory => FileType::Directory,
        HostType::Symlink => FileType::Symlink,
        HostType::CharacterDevice => FileType::CharDevice,
        HostType::BlockDevice => FileType::BlockDevice,
        HostType::Fifo => FileType::NamedPipe,
        HostType::Socket => FileType::Socket,
        HostType::Unknown => FileType::RegularFile,
    }
}

pub(crate) fn node_attr(ino: u64, node: &Node, nlink: u32) -> FileAttr {
    let t = system_time(node.mtime_sec, node.mtime_nsec);
    let (size, rdev) = match &node.kind {
        NodeKind::File { size, .. } => (*size, 0),
        NodeKind::Dir { .. } => (4096, 0),
        NodeKind::Symlink { target } => (target.len() as u64, 0),
        NodeKind::CharDevice { rdev } | NodeKind::BlockDevice { rdev } => (0, *rdev as u32),
        NodeKind::Fifo => (0, 0),
    };
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: t,
        mtime: t,
        ctime: t,
        crtime: t,
        kind: node_file_type(&node.kind),
        perm: node.mode as u16,
        nlink,
        uid: node.uid,
        gid: node.gid,
        rdev,
        blksize: 4096,
        flags: 0,
    }
}

pub(crate) fn stat_attr(ino: u64, st: &Stat) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: st.st_size as u64,
        blocks: st.st_blocks as u64,
        atime: system_time(st.st_atime, st.st_atime_nsec as u32),
        mtime: system_time(st.st_mtime, st.st_mtime_nsec as u32),
        ctime: system_time(st.st_ctime, st.st_ctime_nsec as u32),
        crtime: system_time(st.st_ctime, st.st_ctime_nsec as u32),
        kind: host_file_type(HostType::from_raw_mode(st.st_mode)),
        perm: (st.st_mode & 0o7777) as u16,
        nlink: st.st_nlink as u32,
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: st.st_rdev as u32,
        blksize: st.st_blksize as u32,
        flags: 0,
    }
}
