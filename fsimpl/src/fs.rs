//! The fuser [`Filesystem`] implementation. Each FUSE method only unpacks
//! its request, calls one `op_*` function returning `Result<_, Errno>`, and
//! replies; the work is in [`crate::union`] and [`crate::ops`].
//!
//! Open files: the kernel allows one I/O mode per inode at a time, either
//! passthrough to one backing file shared by every open, or cached I/O
//! through the daemon. This module keeps that per-inode state:
//! - a file that cannot change under its opens (a lower file of a
//!   read-only mount, or an upper file) is passed through: a `BackingId`
//!   per inode, shared by its opens and released with the last one, so
//!   reads, writes and mmap go straight to the backing file;
//! - a lower file of a writable mount may be copied up while open, and the
//!   later opens must then reach the upper file, which passthrough to the
//!   lower backing would forbid: such opens are cached (the daemon reads,
//!   `FOPEN_KEEP_CACHE`), and the inode stays cached until they close;
//! - when the kernel refuses passthrough, everything is cached.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::SystemTime;

use fuser::{
    BackingId, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use rustix::fs::FileType as HostType;

use crate::ops::{Caller, NewKind, SetAttr};
use crate::tree::NodeKind;
use crate::union::{errno, host_file_type, node_file_type, Obj, OpResult, Union};
use crate::upper;
use crate::xattr;

/// Which file backs an open inode.
#[derive(Debug, Clone, PartialEq, Eq)]
enum BackingKey {
    Lower(u32),
    Upper((u64, u64)),
}

struct OpenFile {
    ino: u64,
    /// `None` for the empty marker files of the layer view.
    file: Option<File>,
    /// Keeps the inode's backing file registered while this open lives.
    _backing: Option<Arc<BackingId>>,
    /// Counted in the inode's cached opens.
    cached: bool,
}

/// The kernel-side I/O mode of one inode.
#[derive(Default)]
struct InodeIo {
    backing: Option<(BackingKey, Weak<BackingId>)>,
    cached: u32,
}

/// How one open is served.
enum Io {
    Passthrough(Arc<BackingId>),
    Cached,
}

/// One listed entry: (next offset, ino, kind, name).
type Listed = (u64, u64, FileType, Vec<u8>);

/// The figures of a statfs reply, in `ReplyStatfs::statfs` order.
struct StatfsReply(u64, u64, u64, u64, u64, u32, u32, u32);

struct DirEntryInfo {
    name: Vec<u8>,
    kind: FileType,
    ino: u64,
}

/// The mounted filesystem.
pub(crate) struct StrataFs {
    union: Union,
    files: RwLock<HashMap<u64, Arc<OpenFile>>>,
    dirs: RwLock<HashMap<u64, Arc<Vec<DirEntryInfo>>>>,
    io: Mutex<HashMap<u64, InodeIo>>,
    next_fh: AtomicU64,
    passthrough: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|p| p.into_inner())
}

fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
        pid: req.pid(),
    }
}

/// The kernel's 32-bit device encoding to a host `dev_t`.
fn host_dev(rdev: u32) -> u64 {
    let major = (rdev >> 8) & 0xfff;
    let minor = (rdev & 0xff) | ((rdev >> 12) & 0xfff00);
    libc::makedev(major, minor)
}

impl StrataFs {
    pub fn new(union: Union) -> StrataFs {
        StrataFs {
            union,
            files: RwLock::new(HashMap::new()),
            dirs: RwLock::new(HashMap::new()),
            io: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            passthrough: AtomicBool::new(false),
        }
    }

    fn new_fh(&self) -> u64 {
        self.next_fh.fetch_add(1, Ordering::Relaxed)
    }

    fn open_file(&self, fh: FileHandle) -> OpResult<Arc<OpenFile>> {
        read(&self.files).get(&fh.0).cloned().ok_or(Errno::EBADF)
    }

    /// Opens the file behind `ino` for `flags`, copying it up for writing.
    fn op_open_file(&self, ino: u64, flags: i32) -> OpResult<(Option<File>, BackingKey)> {
        let write = flags & libc::O_ACCMODE != libc::O_RDONLY;
        let trunc = flags & libc::O_TRUNC != 0;
        if let Obj::Lower(n) = self.union.resolve(ino)? {
            if !write && !trunc {
                let node = self.union.tree.node(n).ok_or(Errno::ESTALE)?;
                let NodeKind::File { backing, .. } = &node.kind else {
                    return Err(Errno::EINVAL);
                };
                let file = match backing {
                    Some(path) => Some(File::open(path).map_err(errno)?),
                    None => None,
                };
                return Ok((file, BackingKey::Lower(n)));
            }
        }
        let u = self.union.copy_up(ino, !trunc)?;
        if u.host_type != HostType::RegularFile {
            return Err(Errno::EINVAL);
        }
        let path = xattr::proc_path(&u.fd);
        let read_write = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path);
        let file = match read_write {
            Ok(f) => f,
            // A read-only open still works if the daemon cannot write.
            Err(_) if !write && !trunc => File::open(&path).map_err(errno)?,
            Err(e) => return Err(errno(e)),
        };
        if trunc {
            file.set_len(0).map_err(errno)?;
        }
        Ok((Some(file), BackingKey::Upper(u.key)))
    }

    /// Chooses passthrough or cached I/O for a new open of `ino` and
    /// registers the open; returns its handle and mode.
    fn register_open(
        &self,
        ino: u64,
        key: BackingKey,
        file: Option<File>,
        open_backing: impl FnOnce(&File) -> std::io::Result<BackingId>,
    ) -> OpResult<(u64, Io)> {
        let mut table = lock(&self.io);
        let state = table.entry(ino).or_default();
        let mut io = Io::Cached;
        if let Some((k, weak)) = &state.backing {
            match weak.upgrade() {
                Some(id) if *k == key => io = Io::Passthrough(id),
                // Another backing file is attached: no other mode is allowed.
                Some(_) => return Err(Errno::EBUSY),
                None => state.backing = None,
            }
        }
        let may_change = matches!(key, BackingKey::Lower(_)) && self.union.writable();
        if state.backing.is_none()
            && state.cached == 0
            && !may_change
            && self.passthrough.load(Ordering::Relaxed)
        {
            if let Some(f) = &file {
                match open_backing(f) {
                    Ok(id) => {
                        let id = Arc::new(id);
                        state.backing = Some((key, Arc::downgrade(&id)));
                        io = Io::Passthrough(id);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "passthrough refused by the kernel; serving I/O in the daemon");
                        self.passthrough.store(false, Ordering::Relaxed);
                    }
                }
            }
        }
        let (backing, cached) = match &io {
            Io::Passthrough(id) => (Some(id.clone()), false),
            Io::Cached => {
                state.cached += 1;
                (None, true)
            }
        };
        let fh = self.new_fh();
        write(&self.files).insert(
            fh,
            Arc::new(OpenFile {
                ino,
                file,
                _backing: backing,
                cached,
            }),
        );
        Ok((fh, io))
    }

    fn release_open(&self, fh: u64) {
        let Some(open) = write(&self.files).remove(&fh) else {
            return;
        };
        let (ino, cached) = (open.ino, open.cached);
        drop(open);
        let mut table = lock(&self.io);
        if let Some(state) = table.get_mut(&ino) {
            if cached {
                state.cached = state.cached.saturating_sub(1);
            }
            let backing_gone = state
                .backing
                .as_ref()
                .is_none_or(|(_, w)| w.strong_count() == 0);
            if state.cached == 0 && backing_gone {
                table.remove(&ino);
            }
        }
    }

    fn op_read(&self, fh: FileHandle, offset: u64, size: u32) -> OpResult<Vec<u8>> {
        let open = self.open_file(fh)?;
        let Some(file) = &open.file else {
            return Ok(Vec::new());
        };
        let mut buf = vec![0u8; size as usize];
        let mut done = 0;
        while done < buf.len() {
            match file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(errno(e)),
            }
        }
        buf.truncate(done);
        Ok(buf)
    }

    fn op_write(&self, fh: FileHandle, offset: u64, data: &[u8], flags: i32) -> OpResult<u32> {
        let open = self.open_file(fh)?;
        let file = open.file.as_ref().ok_or(Errno::EBADF)?;
        let offset = if flags & libc::O_APPEND != 0 {
            file.metadata().map_err(errno)?.len()
        } else {
            offset
        };
        file.write_all_at(data, offset).map_err(errno)?;
        Ok(data.len() as u32)
    }

    /// The entries of a directory with an upper part, merged with the
    /// lower directory it shows (if any).
    fn op_snapshot(&self, ino: u64) -> OpResult<Option<Vec<DirEntryInfo>>> {
        let Obj::Upper(u) = self.union.resolve(ino)? else {
            return Ok(None);
        };
        if u.host_type != HostType::Directory {
            return Err(Errno::ENOTDIR);
        }
        let names = upper::read_names(&u.fd).map_err(errno)?;
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for n in names {
            seen.insert(n.name.clone());
            if !n.whiteout {
                out.push(DirEntryInfo {
                    kind: host_file_type(n.file_type),
                    name: n.name,
                    ino: u64::MAX,
                });
            }
        }
        if let Some(l) = u.lower {
            for (name, child) in self.union.tree.children(l).unwrap_or(&[]) {
                if seen.contains(&**name) {
                    continue;
                }
                let node = self.union.tree.node(*child).ok_or(Errno::EIO)?;
                out.push(DirEntryInfo {
                    name: name.to_vec(),
                    kind: node_file_type(&node.kind),
                    ino: *child as u64 + 1,
                });
            }
        }
        Ok(Some(out))
    }

    /// Entries of directory `ino` from position `offset` (0 and 1 are `.`
    /// and `..`): (next offset, ino, kind, name).
    fn op_entries(
        &self,
        ino: u64,
        fh: FileHandle,
        offset: u64,
        limit: usize,
    ) -> OpResult<Vec<Listed>> {
        let mut out = Vec::new();
        let parent = match self.union.resolve(ino)? {
            Obj::Lower(n) => self
                .union
                .tree
                .node(n)
                .map_or(ino, |node| node.parent as u64 + 1),
            Obj::Upper(_) => ino,
        };
        let mut pos = offset;
        while pos < 2 && out.len() < limit {
            let name: &[u8] = if pos == 0 { b"." } else { b".." };
            out.push((
                pos + 1,
                if pos == 0 { ino } else { parent },
                FileType::Directory,
                name.to_vec(),
            ));
            pos += 1;
        }
        let index = (pos - 2) as usize;
        let snapshot = read(&self.dirs).get(&fh.0).cloned();
        match snapshot {
            Some(entries) => {
                for (i, e) in entries
                    .iter()
                    .enumerate()
                    .skip(index)
                    .take(limit.saturating_sub(out.len()))
                {
                    out.push((i as u64 + 3, e.ino, e.kind, e.name.clone()));
                }
            }
            None => {
                let Obj::Lower(n) = self.union.resolve(ino)? else {
                    return Err(Errno::EBADF);
                };
                let children = self.union.tree.children(n).ok_or(Errno::ENOTDIR)?;
                for (i, (name, child)) in children
                    .iter()
                    .enumerate()
                    .skip(index)
                    .take(limit.saturating_sub(out.len()))
                {
                    let node = self.union.tree.node(*child).ok_or(Errno::EIO)?;
                    out.push((
                        i as u64 + 3,
                        *child as u64 + 1,
                        node_file_type(&node.kind),
                        name.to_vec(),
                    ));
                }
            }
        }
        Ok(out)
    }

    fn op_statfs(&self) -> OpResult<StatfsReply> {
        match &self.union.upper {
            Some(up) => {
                let s = rustix::fs::fstatvfs(&up.root).map_err(errno)?;
                Ok(StatfsReply(
                    s.f_blocks,
                    s.f_bfree,
                    s.f_bavail,
                    s.f_files,
                    s.f_ffree,
                    s.f_bsize as u32,
                    s.f_namemax as u32,
                    s.f_frsize as u32,
                ))
            }
            None => {
                let blocks = self.union.tree.total_size().div_ceil(4096);
                Ok(StatfsReply(
                    blocks,
                    0,
                    0,
                    self.union.tree.len() as u64,
                    0,
                    4096,
                    255,
                    4096,
                ))
            }
        }
    }

    fn entry_reply(&self, reply: ReplyEntry, r: OpResult<FileAttr>) {
        match r {
            Ok(attr) => reply.entry(&self.union.ttl, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }
}

fn name_bytes(name: &OsStr) -> &[u8] {
    name.as_bytes()
}

fn empty_reply(reply: ReplyEmpty, r: OpResult<()>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

fn xattr_reply(reply: ReplyXattr, size: u32, r: OpResult<Vec<u8>>) {
    match r {
        Ok(data) if size == 0 => reply.size(data.len() as u32),
        Ok(data) if data.len() > size as usize => reply.error(Errno::ERANGE),
        Ok(data) => reply.data(&data),
        Err(e) => reply.error(e),
    }
}

impl Filesystem for StrataFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let wanted = InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_CACHE_SYMLINKS
            | InitFlags::FUSE_ATOMIC_O_TRUNC;
        for flag in wanted.iter() {
            if config.add_capabilities(flag).is_err() {
                tracing::debug!(?flag, "kernel lacks capability");
            }
        }
        let passthrough = config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            && config.set_max_stack_depth(2).is_ok();
        self.passthrough.store(passthrough, Ordering::Relaxed);
        let _ = config.set_max_write(1 << 20);
        tracing::info!(passthrough, "FUSE session initialised");
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.entry_reply(reply, self.union.lookup(parent.0, name_bytes(name)));
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.union.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.union.attr(ino.0) {
            Ok(attr) => reply.attr(&self.union.ttl, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime,
            mtime,
        };
        let open = fh.and_then(|fh| self.open_file(fh).ok());
        let file = open.as_ref().and_then(|o| o.file.as_ref());
        match self.union.op_setattr(ino.0, set, file) {
            Ok(attr) => reply.attr(&self.union.ttl, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.union.op_readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let kind = NewKind::Node {
            host_type: HostType::from_raw_mode(mode),
            rdev: host_dev(rdev),
        };
        let r = self
            .union
            .op_make(caller(req), parent.0, name_bytes(name), mode, kind);
        self.entry_reply(reply, r);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let r = self
            .union
            .op_make(caller(req), parent.0, name_bytes(name), mode, NewKind::Dir);
        self.entry_reply(reply, r);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty_reply(reply, self.union.op_unlink(parent.0, name_bytes(name)));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty_reply(reply, self.union.op_rmdir(parent.0, name_bytes(name)));
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let kind = NewKind::Symlink {
            target: target.as_os_str().as_bytes(),
        };
        let r = self
            .union
            .op_make(caller(req), parent.0, name_bytes(link_name), 0o777, kind);
        self.entry_reply(reply, r);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let r = self.union.op_rename(
            parent.0,
            name_bytes(name),
            newparent.0,
            name_bytes(newname),
            flags.bits(),
        );
        empty_reply(reply, r);
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        self.entry_reply(
            reply,
            self.union.op_link(ino.0, newparent.0, name_bytes(newname)),
        );
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let (file, key) = match self.op_open_file(ino.0, flags.0) {
            Ok(r) => r,
            Err(e) => return reply.error(e),
        };
        let lower = matches!(key, BackingKey::Lower(_));
        match self.register_open(ino.0, key, file, |f| reply.open_backing(f)) {
            Ok((fh, Io::Passthrough(id))) => {
                reply.opened_passthrough(FileHandle(fh), FopenFlags::empty(), &id)
            }
            Ok((fh, Io::Cached)) => {
                let flags = if lower {
                    FopenFlags::FOPEN_KEEP_CACHE
                } else {
                    FopenFlags::empty()
                };
                reply.opened(FileHandle(fh), flags);
            }
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.op_read(fh, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.op_write(fh, offset, data, flags.0) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.release_open(fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let r = self.open_file(fh).and_then(|o| match &o.file {
            Some(f) if datasync => f.sync_data().map_err(errno),
            Some(f) => f.sync_all().map_err(errno),
            None => Ok(()),
        });
        empty_reply(reply, r);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.op_snapshot(ino.0) {
            Ok(Some(entries)) => {
                let fh = self.new_fh();
                write(&self.dirs).insert(fh, Arc::new(entries));
                reply.opened(FileHandle(fh), FopenFlags::empty());
            }
            Ok(None) => {
                let flags = if self.union.writable() {
                    FopenFlags::empty()
                } else {
                    FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE
                };
                reply.opened(FileHandle(0), flags);
            }
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        match self.op_entries(ino.0, fh, offset, 4096) {
            Ok(entries) => {
                for (next, child, kind, name) in entries {
                    if reply.add(INodeNo(child), next, kind, OsStr::from_bytes(&name)) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let entries = match self.op_entries(ino.0, fh, offset, 1024) {
            Ok(e) => e,
            Err(e) => return reply.error(e),
        };
        for (next, child, _kind, name) in entries {
            let dot = name == b"." || name == b"..";
            let attr = if dot {
                self.union.attr(child)
            } else {
                self.union.lookup(ino.0, &name)
            };
            let Ok(attr) = attr else { continue };
            if reply.add(
                attr.ino,
                next,
                OsStr::from_bytes(&name),
                &self.union.ttl,
                &attr,
                Generation(0),
            ) {
                if !dot {
                    self.union.forget(attr.ino.0, 1);
                }
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        write(&self.dirs).remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.op_statfs() {
            Ok(StatfsReply(b, bf, ba, f, ff, bs, nl, fr)) => {
                reply.statfs(b, bf, ba, f, ff, bs, nl, fr)
            }
            Err(e) => reply.error(e),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        empty_reply(
            reply,
            self.union
                .op_setxattr(ino.0, name_bytes(name), value, flags),
        );
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        xattr_reply(reply, size, self.union.op_getxattr(ino.0, name_bytes(name)));
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        xattr_reply(reply, size, self.union.op_listxattr(ino.0));
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty_reply(reply, self.union.op_removexattr(ino.0, name_bytes(name)));
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let (attr, file) =
            match self
                .union
                .op_create(caller(req), parent.0, name_bytes(name), mode, flags)
            {
                Ok(r) => r,
                Err(e) => return reply.error(e),
            };
        let key = match self.union.resolve(attr.ino.0) {
            Ok(Obj::Upper(u)) => BackingKey::Upper(u.key),
            _ => return reply.error(Errno::EIO),
        };
        let ttl = self.union.ttl;
        let gen = Generation(0);
        match self.register_open(attr.ino.0, key, Some(file), |f| reply.open_backing(f)) {
            Ok((fh, Io::Passthrough(id))) => reply.created_passthrough(
                &ttl,
                &attr,
                gen,
                FileHandle(fh),
                FopenFlags::empty(),
                &id,
            ),
            Ok((fh, Io::Cached)) => {
                reply.created(&ttl, &attr, gen, FileHandle(fh), FopenFlags::empty())
            }
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let r = self.open_file(fh).and_then(|o| {
            let f = o.file.as_ref().ok_or(Errno::EBADF)?;
            let flags = rustix::fs::FallocateFlags::from_bits_retain(mode as u32);
            rustix::fs::fallocate(f, flags, offset, length).map_err(errno)
        });
        empty_reply(reply, r);
    }
}
