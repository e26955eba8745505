//! The fuser [`Filesystem`] implementation. Each FUSE method only unpacks
//! its request, calls one `op_*` function returning `Result<_, Errno>`, and
//! replies; the work is in [`crate::union`] and [`crate::ops`], open files
//! in [`io`], directory listings in [`dir`].

mod dir;
mod io;
pub(crate) mod stats;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use rustix::fs::FileType as HostType;

use crate::ops::{Caller, NewKind, SetAttr};
use crate::union::{errno, Obj, OpResult, Union};

use dir::DirEntryInfo;
use io::{BackingKey, InodeIo, Io, OpenFile, Opened};
use stats::IoCounters;

/// The figures of a statfs reply, in `ReplyStatfs::statfs` order.
struct StatfsReply(u64, u64, u64, u64, u64, u32, u32, u32);

/// The mounted filesystem.
pub(crate) struct StrataFs {
    union: Union,
    files: RwLock<HashMap<u64, Arc<OpenFile>>>,
    dirs: RwLock<HashMap<u64, Arc<Vec<DirEntryInfo>>>>,
    io: Mutex<HashMap<u64, InodeIo>>,
    /// Signalled when an open is released.
    released: Condvar,
    next_fh: AtomicU64,
    passthrough: AtomicBool,
    /// Whether to ask the kernel for passthrough at all.
    want_passthrough: bool,
    /// A mount without an upper layer and without passthrough (rootless,
    /// a snapshotter's lower, `passthrough: false`) answers OPEN with
    /// ENOSYS: nothing can change its files, so the kernel then opens and
    /// closes them without a request, keeps their page cache, and sends
    /// READs with file handle 0, served by inode ([`io`]).
    no_open: bool,
    /// A mount without an upper layer answers its first OPENDIR `ENOSYS`:
    /// its directories never change, so the kernel then opens and
    /// releases them without a request and caches their listings
    /// (`FOPEN_CACHE_DIR`, `FOPEN_KEEP_CACHE`, file handle 0, as the
    /// daemon would have answered).
    no_opendir: bool,
    /// The backing files a mount without an upper layer keeps for the
    /// inodes the kernel knows ([`io`]: `kept_open`), a bounded set.
    kept: Mutex<HashMap<u64, Arc<fuser::BackingId>>>,
    /// Lower files opened for READs by inode (`no_open`), a bounded set.
    by_ino: Mutex<HashMap<u64, Arc<std::fs::File>>>,
    stats: Arc<IoCounters>,
    /// [`crate::MountConfig::caller_ids`].
    caller_ids: Option<(u32, u32)>,
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

/// The kernel's 32-bit device encoding to a host `dev_t`.
fn host_dev(rdev: u32) -> u64 {
    let major = (rdev >> 8) & 0xfff;
    let minor = (rdev & 0xff) | ((rdev >> 12) & 0xfff00);
    libc::makedev(major, minor)
}

impl StrataFs {
    pub fn new(union: Union, want_passthrough: bool, stats: Arc<IoCounters>) -> StrataFs {
        StrataFs {
            no_open: false,
            no_opendir: false,
            kept: Mutex::new(HashMap::new()),
            by_ino: Mutex::new(HashMap::new()),
            union,
            files: RwLock::new(HashMap::new()),
            dirs: RwLock::new(HashMap::new()),
            io: Mutex::new(HashMap::new()),
            released: Condvar::new(),
            next_fh: AtomicU64::new(1),
            passthrough: AtomicBool::new(false),
            want_passthrough,
            stats,
            caller_ids: None,
        }
    }

    /// Gives what callers create the owner `ids`, whoever they are.
    pub fn set_caller_ids(&mut self, ids: Option<(u32, u32)>) {
        self.caller_ids = ids;
    }

    /// Who asks for `req`, as new objects' owner.
    fn caller(&self, req: &Request) -> Caller {
        let (uid, gid) = self.caller_ids.unwrap_or((req.uid(), req.gid()));
        Caller {
            uid,
            gid,
            pid: req.pid(),
        }
    }

    fn new_fh(&self) -> u64 {
        self.next_fh.fetch_add(1, Ordering::Relaxed)
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
                    self.union.tree.total_entries(),
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

/// The attributes of a negative entry: only the inode number (0) counts.
fn negative_entry() -> FileAttr {
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind: fuser::FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
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
        let passthrough = self.want_passthrough
            && config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            && config.set_max_stack_depth(2).is_ok();
        self.passthrough.store(passthrough, Ordering::Relaxed);
        // Passthrough needs an open per file to attach the backing file;
        // without it, a mount nothing can change needs no open at all.
        self.no_open = self.union.upper.is_none() && !passthrough;
        self.no_opendir = self.union.upper.is_none();
        let _ = config.set_max_write(1 << 20);
        tracing::info!(passthrough, "FUSE session initialised");
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.union.lookup(parent.0, name_bytes(name)) {
            // A negative entry (inode 0) the kernel keeps as long as a
            // positive one: every change of a name goes through the
            // kernel, which drops the entry, and the layers never change.
            // A program's search of PATH, or of library directories,
            // then asks once per name.
            Err(e) if e == Errno::ENOENT => {
                reply.entry(&self.union.ttl, &negative_entry(), Generation(0))
            }
            r => self.entry_reply(reply, r),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        if self.no_open {
            lock(&self.by_ino).remove(&ino.0);
        }
        self.forget_backing(ino.0);
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
            .op_make(self.caller(req), parent.0, name_bytes(name), mode, kind);
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
        let r = self.union.op_make(
            self.caller(req),
            parent.0,
            name_bytes(name),
            mode,
            NewKind::Dir,
        );
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
        let r = self.union.op_make(
            self.caller(req),
            parent.0,
            name_bytes(link_name),
            0o777,
            kind,
        );
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
        if self.no_open {
            // Once per connection: the kernel opens by itself from now on.
            IoCounters::count(&self.stats.opens_declined);
            reply.error(Errno::ENOSYS);
            return;
        }
        match self.op_open(ino.0, flags.0, |f| reply.open_backing(f)) {
            Ok(Opened {
                fh,
                io: Io::Passthrough(id),
                ..
            }) => reply.opened_passthrough(FileHandle(fh), FopenFlags::empty(), &id),
            Ok(Opened {
                fh,
                io: Io::Cached,
                lower,
            }) => {
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
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let data = if self.no_open && fh.0 == 0 {
            self.op_read_ino(ino.0, offset, size)
        } else {
            self.op_read(fh, offset, size)
        };
        match data {
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
        // Nothing to do at close: file data goes to the backing file (by
        // passthrough, or by the WRITEs the kernel sent before, including
        // the dirty pages it writes back itself before a FLUSH), and locks
        // are the kernel's. ENOSYS tells the kernel so once: it sends no
        // more FLUSH on this connection, saving a round trip per close
        // (a third of the requests of a cold read of every file).
        IoCounters::count(&self.stats.flushes);
        reply.error(Errno::ENOSYS);
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
        if self.no_opendir {
            // Once per connection: the kernel opens directories by itself
            // from now on.
            IoCounters::count(&self.stats.opendirs_declined);
            reply.error(Errno::ENOSYS);
            return;
        }
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
                .op_create(self.caller(req), parent.0, name_bytes(name), mode, flags)
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
        match self.register_created(attr.ino.0, key, file, |f| reply.open_backing(f)) {
            Ok(Opened {
                fh,
                io: Io::Passthrough(id),
                ..
            }) => reply.created_passthrough(
                &ttl,
                &attr,
                gen,
                FileHandle(fh),
                FopenFlags::empty(),
                &id,
            ),
            Ok(Opened {
                fh, io: Io::Cached, ..
            }) => reply.created(&ttl, &attr, gen, FileHandle(fh), FopenFlags::empty()),
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
