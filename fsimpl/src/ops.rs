//! Namespace and metadata operations of the union: what each FUSE request
//! does to the upper directory. Every function here returns
//! `Result<_, Errno>` and is called by one method of [`crate::fs`].
//!
//! Creation over a whiteout removes the whiteout first; a directory made
//! where a lower object was deleted is marked opaque; removing a name that a
//! lower layer provides leaves a whiteout; renaming away from such a name
//! uses `RENAME_WHITEOUT`, so the lower object never shows through.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::SystemTime;

use fuser::{Errno, FileAttr, TimeOrNow};
use rustix::fs::{
    AtFlags, FileType as HostType, Gid, Mode, OFlags, RenameFlags, Timespec, Timestamps, Uid,
};

use crate::mount::RedirectDir;
use crate::tree::NodeId;
use crate::union::{errno, stat_attr, Obj, OpResult, Probe, Union, UpperInode};
use crate::upper;
use crate::xattr;

/// Who asks for a new object: the owner it gets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

/// The attribute changes of one setattr request.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeOrNow>,
    pub mtime: Option<TimeOrNow>,
}

/// What a new object is.
pub(crate) enum NewKind<'a> {
    Dir,
    Node { host_type: HostType, rdev: u64 },
    Symlink { target: &'a [u8] },
}

fn name_os(name: &[u8]) -> &OsStr {
    OsStr::from_bytes(name)
}

impl Union {
    fn upper_obj(&self, ino: u64) -> OpResult<Arc<UpperInode>> {
        let u = self.copy_up(ino, true)?;
        if u.host_type != HostType::Directory {
            return Err(Errno::ENOTDIR);
        }
        Ok(u)
    }

    /// Whether the lower directory merged into `dir` has `name`.
    fn lower_has(&self, dir: &UpperInode, name: &[u8]) -> OpResult<bool> {
        match dir.lower {
            Some(d) => Ok(self.tree.lookup(d, name).map_err(errno)?.is_some()),
            None => Ok(false),
        }
    }

    /// The upper parent for a new `name`, with any whiteout removed.
    fn prepare_create(&self, parent: u64, name: &[u8]) -> OpResult<Arc<UpperInode>> {
        let p = self.upper_obj(parent)?;
        match self.probe(&Obj::Upper(p.clone()), name)? {
            Probe::Absent => Ok(p),
            Probe::Whiteout => {
                rustix::fs::unlinkat(&p.fd, name_os(name), AtFlags::empty()).map_err(errno)?;
                Ok(p)
            }
            Probe::Lower(_) | Probe::Upper { .. } => Err(Errno::EEXIST),
        }
    }

    /// Owner and mode of a new object as the kernel would choose them
    /// (setgid directories pass on their group, and their bit to subdirs).
    fn new_owner(
        &self,
        parent: &UpperInode,
        caller: Caller,
        mode: u32,
        is_dir: bool,
    ) -> OpResult<(u32, u32, u32)> {
        let st = rustix::fs::fstat(&parent.fd).map_err(errno)?;
        let mut mode = mode & 0o7777;
        let gid = if st.st_mode & libc::S_ISGID != 0 {
            if is_dir {
                mode |= libc::S_ISGID;
            }
            st.st_gid
        } else {
            caller.gid
        };
        if !is_dir && mode & libc::S_ISGID != 0 && caller.uid != 0 && !in_group(caller, gid) {
            mode &= !libc::S_ISGID;
        }
        Ok((caller.uid, gid, mode))
    }

    /// Sets owner and mode of the new `name` and returns it interned.
    fn finish_new(
        &self,
        p: &UpperInode,
        name: &[u8],
        owner: (u32, u32, u32),
        is_symlink: bool,
    ) -> OpResult<FileAttr> {
        let (uid, gid, mode) = owner;
        rustix::fs::chownat(
            &p.fd,
            name_os(name),
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(errno)?;
        if !is_symlink {
            rustix::fs::chmodat(
                &p.fd,
                name_os(name),
                Mode::from_raw_mode(mode),
                AtFlags::empty(),
            )
            .map_err(errno)?;
        }
        self.intern_name(p, name)
    }

    fn intern_name(&self, p: &UpperInode, name: &[u8]) -> OpResult<FileAttr> {
        let fd = open_path(&p.fd, name)?;
        let st = rustix::fs::fstat(&fd).map_err(errno)?;
        let (ino, _) = self.intern(fd, &st, None);
        Ok(stat_attr(ino, &st))
    }

    pub fn op_make(
        &self,
        caller: Caller,
        parent: u64,
        name: &[u8],
        mode: u32,
        kind: NewKind,
    ) -> OpResult<FileAttr> {
        let p = self.prepare_create(parent, name)?;
        let cname = name_os(name);
        let is_dir = matches!(kind, NewKind::Dir);
        let owner = self.new_owner(&p, caller, mode, is_dir)?;
        match kind {
            NewKind::Dir => {
                rustix::fs::mkdirat(&p.fd, cname, Mode::from_raw_mode(0o700)).map_err(errno)?;
                if self.lower_has(&p, name)? {
                    let fd = open_path(&p.fd, name)?;
                    upper::set_opaque(&fd).map_err(errno)?;
                }
            }
            NewKind::Node { host_type, rdev } => {
                rustix::fs::mknodat(&p.fd, cname, host_type, Mode::from_raw_mode(0o600), rdev)
                    .map_err(errno)?;
                if host_type == HostType::CharacterDevice && rdev == 0 {
                    upper::mark_device(&p.fd, name).map_err(errno)?;
                }
            }
            NewKind::Symlink { target } => {
                rustix::fs::symlinkat(name_os(target), &p.fd, cname).map_err(errno)?;
            }
        }
        let is_symlink = matches!(kind, NewKind::Symlink { .. });
        self.finish_new(&p, name, owner, is_symlink)
    }

    /// Creates the empty regular file `path` (inside the mount, absolute)
    /// owned by root with `mode`, unless it exists or its parent is not
    /// an existing directory: what `create` from the kernel would do,
    /// without the kernel. Holds no inode references afterwards.
    pub fn create_missing_file(&self, path: &std::path::Path, mode: u32) -> OpResult<()> {
        let names: Vec<&[u8]> = path
            .components()
            .filter_map(|c| match c {
                std::path::Component::Normal(n) => Some(n.as_bytes()),
                _ => None,
            })
            .collect();
        let Some((name, dirs)) = names.split_last() else {
            return Ok(());
        };
        let mut held = Vec::new();
        let result = (|| {
            let mut parent = fuser::INodeNo::ROOT.0;
            for dir in dirs {
                let attr = self.lookup(parent, dir)?;
                held.push(attr.ino.0);
                if attr.kind != fuser::FileType::Directory {
                    return Err(Errno::ENOTDIR);
                }
                parent = attr.ino.0;
            }
            match self.lookup(parent, name) {
                Ok(attr) => {
                    held.push(attr.ino.0);
                    return Ok(());
                }
                Err(e) if e == Errno::ENOENT => {}
                Err(e) => return Err(e),
            }
            let root = Caller {
                uid: 0,
                gid: 0,
                pid: 0,
            };
            let (attr, _file) = self.op_create(root, parent, name, mode, libc::O_WRONLY)?;
            held.push(attr.ino.0);
            Ok(())
        })();
        for ino in held.into_iter().rev() {
            self.forget(ino, 1);
        }
        result
    }

    /// Creates and opens a regular file; `flags` are the open flags.
    pub fn op_create(
        &self,
        caller: Caller,
        parent: u64,
        name: &[u8],
        mode: u32,
        flags: i32,
    ) -> OpResult<(FileAttr, File)> {
        let p = self.prepare_create(parent, name)?;
        let owner = self.new_owner(&p, caller, mode, false)?;
        // The descriptor doubles as the passthrough backing file, which
        // serves every later open of the inode: always read-write; the
        // kernel enforces the caller's access mode on its own file.
        let _ = flags;
        let fd = rustix::fs::openat(
            &p.fd,
            name_os(name),
            OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::RDWR,
            Mode::from_raw_mode(0o600),
        )
        .map_err(errno)?;
        let attr = self.finish_new(&p, name, owner, false)?;
        Ok((attr, File::from(fd)))
    }

    pub fn op_link(&self, ino: u64, newparent: u64, newname: &[u8]) -> OpResult<FileAttr> {
        let src = self.copy_up(ino, true)?;
        if src.host_type == HostType::Directory {
            return Err(Errno::EPERM);
        }
        let p = self.prepare_create(newparent, newname)?;
        rustix::fs::linkat(
            rustix::fs::CWD,
            xattr::proc_path(&src.fd),
            &p.fd,
            name_os(newname),
            AtFlags::SYMLINK_FOLLOW,
        )
        .map_err(errno)?;
        let fd = open_path(&p.fd, newname)?;
        let st = rustix::fs::fstat(&fd).map_err(errno)?;
        let (ino, _) = self.intern(fd, &st, None);
        Ok(stat_attr(ino, &st))
    }

    pub fn op_unlink(&self, parent: u64, name: &[u8]) -> OpResult<()> {
        let p = self.upper_obj(parent)?;
        match self.probe(&Obj::Upper(p.clone()), name)? {
            Probe::Absent | Probe::Whiteout => Err(Errno::ENOENT),
            Probe::Lower(n) => {
                if self.tree.is_dir(n) {
                    return Err(Errno::EISDIR);
                }
                upper::make_whiteout(&p.fd, name).map_err(errno)
            }
            Probe::Upper { st, lower, .. } => {
                if HostType::from_raw_mode(st.st_mode) == HostType::Directory {
                    return Err(Errno::EISDIR);
                }
                rustix::fs::unlinkat(&p.fd, name_os(name), AtFlags::empty()).map_err(errno)?;
                if lower.is_some() {
                    upper::make_whiteout(&p.fd, name).map_err(errno)?;
                }
                Ok(())
            }
        }
    }

    /// Fails with ENOTEMPTY unless the directory `probe` is empty in the
    /// merged view; returns its upper descriptor if it has one.
    fn check_empty_dir(&self, probe: &Probe) -> OpResult<Option<OwnedFd>> {
        match probe {
            Probe::Absent | Probe::Whiteout => Err(Errno::ENOENT),
            Probe::Lower(n) => match self.tree.children(*n).map_err(errno)? {
                None => Err(Errno::ENOTDIR),
                Some([]) => Ok(None),
                Some(_) => Err(Errno::ENOTEMPTY),
            },
            Probe::Upper {
                fd,
                st,
                lower,
                dir_lower,
            } => {
                if HostType::from_raw_mode(st.st_mode) != HostType::Directory {
                    return Err(Errno::ENOTDIR);
                }
                let names = upper::read_names(fd).map_err(errno)?;
                if names.iter().any(|n| !n.whiteout) {
                    return Err(Errno::ENOTEMPTY);
                }
                if let Some(l) = self.merged_lower(fd, st, *lower, *dir_lower)? {
                    let hidden = |child: &[u8]| names.iter().any(|n| n.name == child);
                    let children = self.tree.children(l).map_err(errno)?.unwrap_or(&[]);
                    if children.iter().any(|(c, _)| !hidden(c)) {
                        return Err(Errno::ENOTEMPTY);
                    }
                }
                let dup = fd.try_clone().map_err(errno)?;
                Ok(Some(dup))
            }
        }
    }

    pub fn op_rmdir(&self, parent: u64, name: &[u8]) -> OpResult<()> {
        let p = self.upper_obj(parent)?;
        let probe = self.probe(&Obj::Upper(p.clone()), name)?;
        let upper_dir = self.check_empty_dir(&probe)?;
        if let Some(fd) = upper_dir {
            upper::clear_whiteouts(&fd).map_err(errno)?;
            rustix::fs::unlinkat(&p.fd, name_os(name), AtFlags::REMOVEDIR).map_err(errno)?;
        }
        if self.lower_has(&p, name)? {
            upper::make_whiteout(&p.fd, name).map_err(errno)?;
        }
        Ok(())
    }

    /// The upper object a probe found, copying a lower one up, with the
    /// lower directory it merges (if any). Merged directories answer EXDEV
    /// unless `allow_merged` (a rename, which gives them a redirect).
    fn probe_to_upper(
        &self,
        probe: &Probe,
        allow_merged: bool,
    ) -> OpResult<(Arc<UpperInode>, Option<NodeId>)> {
        match probe {
            Probe::Lower(n) => {
                let is_dir = self.tree.is_dir(*n);
                if is_dir && !allow_merged {
                    return Err(Errno::EXDEV);
                }
                Ok((self.copy_up(*n as u64 + 1, true)?, is_dir.then_some(*n)))
            }
            Probe::Upper {
                fd,
                st,
                lower,
                dir_lower,
            } => {
                let merged = self.merged_lower(fd, st, *lower, *dir_lower)?;
                if merged.is_some() && !allow_merged {
                    return Err(Errno::EXDEV);
                }
                let dup = fd.try_clone().map_err(errno)?;
                Ok((UpperInode::detached(dup, st), merged))
            }
            Probe::Absent | Probe::Whiteout => Err(Errno::ENOENT),
        }
    }

    pub fn op_rename(
        &self,
        parent: u64,
        name: &[u8],
        newparent: u64,
        newname: &[u8],
        flags: u32,
    ) -> OpResult<()> {
        let flags = RenameFlags::from_bits(flags).ok_or(Errno::EINVAL)?;
        if flags.contains(RenameFlags::WHITEOUT) {
            return Err(Errno::EINVAL);
        }
        let sp = self.upper_obj(parent)?;
        let dp = self.upper_obj(newparent)?;
        let src = self.probe(&Obj::Upper(sp.clone()), name)?;
        let dst = self.probe(&Obj::Upper(dp.clone()), newname)?;
        let exists = |p: &Probe| matches!(p, Probe::Lower(_) | Probe::Upper { .. });
        if !exists(&src) {
            return Err(Errno::ENOENT);
        }
        if same_object(&src, &dst) {
            return Ok(());
        }
        if flags.contains(RenameFlags::EXCHANGE) {
            return self.rename_exchange(&sp, name, &dp, newname, &src, &dst);
        }
        if flags.contains(RenameFlags::NOREPLACE) && exists(&dst) {
            return Err(Errno::EEXIST);
        }
        let src_dir = self.probe_is_dir(&src);
        if exists(&dst) {
            match (src_dir, self.probe_is_dir(&dst)) {
                (true, false) => return Err(Errno::ENOTDIR),
                (false, true) => return Err(Errno::EISDIR),
                (true, true) => {
                    if let Some(fd) = self.check_empty_dir(&dst)? {
                        upper::clear_whiteouts(&fd).map_err(errno)?;
                    }
                }
                (false, false) => {}
            }
        }
        let redirects = self.redirect_dir == RedirectDir::On;
        let (src_u, src_merged) = self.probe_to_upper(&src, redirects)?;
        if src_dir && matches!(dst, Probe::Whiteout) {
            rustix::fs::unlinkat(&dp.fd, name_os(newname), AtFlags::empty()).map_err(errno)?;
        }
        let rflags = if self.lower_has(&sp, name)? {
            RenameFlags::WHITEOUT
        } else {
            RenameFlags::empty()
        };
        rustix::fs::renameat_with(&sp.fd, name_os(name), &dp.fd, name_os(newname), rflags)
            .map_err(errno)?;
        if let Some(l) = src_merged {
            // A merged directory keeps showing its lower directory.
            upper::set_redirect(&src_u.fd, &self.tree.path(l)).map_err(errno)?;
        } else if src_dir && self.lower_has(&dp, newname)? {
            upper::set_opaque(&src_u.fd).map_err(errno)?;
        }
        Ok(())
    }

    fn probe_is_dir(&self, p: &Probe) -> bool {
        match p {
            Probe::Lower(n) => self.tree.is_dir(*n),
            Probe::Upper { st, .. } => HostType::from_raw_mode(st.st_mode) == HostType::Directory,
            _ => false,
        }
    }

    fn rename_exchange(
        &self,
        sp: &UpperInode,
        name: &[u8],
        dp: &UpperInode,
        newname: &[u8],
        src: &Probe,
        dst: &Probe,
    ) -> OpResult<()> {
        if !matches!(dst, Probe::Lower(_) | Probe::Upper { .. }) {
            return Err(Errno::ENOENT);
        }
        let (a, _) = self.probe_to_upper(src, false)?;
        let (b, _) = self.probe_to_upper(dst, false)?;
        rustix::fs::renameat_with(
            &sp.fd,
            name_os(name),
            &dp.fd,
            name_os(newname),
            RenameFlags::EXCHANGE,
        )
        .map_err(errno)?;
        if a.host_type == HostType::Directory && self.lower_has(dp, newname)? {
            upper::set_opaque(&a.fd).map_err(errno)?;
        }
        if b.host_type == HostType::Directory && self.lower_has(sp, name)? {
            upper::set_opaque(&b.fd).map_err(errno)?;
        }
        Ok(())
    }

    /// Applies a setattr; `open_file` is the handle the request names, if
    /// any and writable (used for truncation).
    pub fn op_setattr(
        &self,
        ino: u64,
        set: SetAttr,
        open_file: Option<&File>,
    ) -> OpResult<FileAttr> {
        let u = self.copy_up(ino, set.size != Some(0))?;
        let path = xattr::proc_path(&u.fd);
        if set.uid.is_some() || set.gid.is_some() {
            rustix::fs::chownat(
                &u.fd,
                "",
                set.uid.map(Uid::from_raw),
                set.gid.map(Gid::from_raw),
                AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(errno)?;
        }
        if let Some(mode) = set.mode {
            if u.host_type != HostType::Symlink {
                rustix::fs::chmodat(
                    rustix::fs::CWD,
                    &path,
                    Mode::from_raw_mode(mode & 0o7777),
                    AtFlags::empty(),
                )
                .map_err(errno)?;
            }
        }
        if let Some(size) = set.size {
            match open_file {
                Some(f) => f.set_len(size).map_err(errno)?,
                None => {
                    let f = std::fs::OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(errno)?;
                    f.set_len(size).map_err(errno)?;
                }
            }
        }
        if set.atime.is_some() || set.mtime.is_some() {
            let times = Timestamps {
                last_access: timespec(set.atime),
                last_modification: timespec(set.mtime),
            };
            let r = rustix::fs::utimensat(&u.fd, "", &times, AtFlags::EMPTY_PATH);
            match r {
                Ok(()) => {}
                Err(e) if u.host_type != HostType::Symlink => {
                    tracing::debug!(error = %e, "utimensat(AT_EMPTY_PATH) failed, using /proc path");
                    rustix::fs::utimensat(rustix::fs::CWD, &path, &times, AtFlags::empty())
                        .map_err(errno)?
                }
                Err(e) => return Err(errno(e)),
            }
        }
        self.attr(ino)
    }

    pub fn op_readlink(&self, ino: u64) -> OpResult<Vec<u8>> {
        match self.resolve(ino)? {
            Obj::Lower(n) => match &self.tree.node(n).ok_or(Errno::ESTALE)?.kind {
                crate::tree::NodeKind::Symlink { target } => Ok(target.to_vec()),
                _ => Err(Errno::EINVAL),
            },
            Obj::Upper(u) => {
                let target = rustix::fs::readlinkat(&u.fd, "", Vec::new()).map_err(errno)?;
                Ok(target.into_bytes())
            }
        }
    }

    pub fn op_getxattr(&self, ino: u64, name: &[u8]) -> OpResult<Vec<u8>> {
        if upper::is_reserved_xattr(name) {
            return Err(Errno::ENODATA);
        }
        match self.resolve(ino)? {
            Obj::Lower(n) => {
                let node = self.tree.node(n).ok_or(Errno::ESTALE)?;
                node.xattrs
                    .iter()
                    .find(|(k, _)| **k == *name)
                    .map(|(_, v)| v.to_vec())
                    .ok_or(Errno::ENODATA)
            }
            Obj::Upper(u) => {
                if u.host_type == HostType::Symlink {
                    return Err(Errno::ENODATA);
                }
                xattr::get(&xattr::proc_path(&u.fd), name, true)
                    .map_err(errno)?
                    .ok_or(Errno::ENODATA)
            }
        }
    }

    /// The NUL-separated attribute names of `ino`.
    pub fn op_listxattr(&self, ino: u64) -> OpResult<Vec<u8>> {
        let names: Vec<Vec<u8>> = match self.resolve(ino)? {
            Obj::Lower(n) => {
                let node = self.tree.node(n).ok_or(Errno::ESTALE)?;
                node.xattrs.iter().map(|(k, _)| k.to_vec()).collect()
            }
            Obj::Upper(u) => {
                if u.host_type == HostType::Symlink {
                    Vec::new()
                } else {
                    let raw = xattr::list_names(&xattr::proc_path(&u.fd), true).map_err(errno)?;
                    raw.split(|b| *b == 0)
                        .filter(|n| !n.is_empty())
                        .map(|n| n.to_vec())
                        .collect()
                }
            }
        };
        let mut out = Vec::new();
        for n in names.iter().filter(|n| !upper::is_reserved_xattr(n)) {
            out.extend_from_slice(n);
            out.push(0);
        }
        Ok(out)
    }

    pub fn op_setxattr(&self, ino: u64, name: &[u8], value: &[u8], flags: i32) -> OpResult<()> {
        if upper::is_reserved_xattr(name) {
            return Err(Errno::EPERM);
        }
        let u = self.copy_up(ino, true)?;
        if u.host_type == HostType::Symlink {
            return Err(Errno::EPERM);
        }
        let flags = rustix::fs::XattrFlags::from_bits(flags as u32).ok_or(Errno::EINVAL)?;
        xattr::set(&xattr::proc_path(&u.fd), name, value, flags).map_err(errno)
    }

    pub fn op_removexattr(&self, ino: u64, name: &[u8]) -> OpResult<()> {
        if upper::is_reserved_xattr(name) {
            return Err(Errno::ENODATA);
        }
        if let Obj::Lower(n) = self.resolve(ino)? {
            let node = self.tree.node(n).ok_or(Errno::ESTALE)?;
            if !node.xattrs.iter().any(|(k, _)| **k == *name) {
                return Err(Errno::ENODATA);
            }
        }
        let u = self.copy_up(ino, true)?;
        if u.host_type == HostType::Symlink {
            return Err(Errno::ENODATA);
        }
        xattr::remove(&xattr::proc_path(&u.fd), name).map_err(errno)
    }
}

fn same_object(a: &Probe, b: &Probe) -> bool {
    match (a, b) {
        (Probe::Lower(x), Probe::Lower(y)) => x == y,
        (Probe::Upper { st: x, .. }, Probe::Upper { st: y, .. }) => {
            x.st_dev == y.st_dev && x.st_ino == y.st_ino
        }
        _ => false,
    }
}

pub(crate) fn open_path(dir: &OwnedFd, name: &[u8]) -> OpResult<OwnedFd> {
    rustix::fs::openat(
        dir,
        name_os(name),
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno)
}

fn timespec(t: Option<TimeOrNow>) -> Timespec {
    match t {
        None => Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        Some(TimeOrNow::Now) => Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_NOW,
        },
        Some(TimeOrNow::SpecificTime(t)) => {
            let (sec, nsec) = match t.duration_since(SystemTime::UNIX_EPOCH) {
                Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
                Err(e) => {
                    let d = e.duration();
                    let mut sec = -(d.as_secs() as i64);
                    let mut nsec = d.subsec_nanos();
                    if nsec > 0 {
                        sec -= 1;
                        nsec = 1_000_000_000 - nsec;
                    }
                    (sec, nsec)
                }
            };
            Timespec {
                tv_sec: sec,
                tv_nsec: nsec as _,
            }
        }
    }
}

/// Whether the calling process is in group `gid` (from /proc/PID/status).
fn in_group(caller: Caller, gid: u32) -> bool {
    if caller.gid == gid {
        return true;
    }
    let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", caller.pid)) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .is_some_and(|groups| groups.split_whitespace().any(|g| g.parse() == Ok(gid)))
}
