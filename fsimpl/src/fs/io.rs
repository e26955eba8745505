//! Open files and the kernel-side I/O mode of each inode.
//!
//! The kernel allows one I/O mode per inode at a time: passthrough to one
//! backing file shared by every open, or cached I/O through the daemon.
//! Once a backing file is attached to an inode, every later open of it must
//! pass through to that same file until the last such open is released:
//! the kernel fails any other open with `EIO`, direct-I/O opens included
//! (`fuse_file_io_open`, Linux 6.9 and later). This module keeps that
//! per-inode state and guarantees:
//! - every regular file of a mount with an upper layer is passed through: to its lower file (store or
//!   layer file) for a read-only open of a file not copied up, else to its
//!   upper file. One `BackingId` per inode, shared by its opens and
//!   released with the last one (on a mount without an upper layer, kept
//!   until the kernel forgets the inode: see `kept_open`); reads, writes
//!   and mmap go straight to the backing file;
//! - a lower file of a writable mount may be copied up while opens pass
//!   through to its lower file. An open that then needs the upper file (for
//!   writing, or any open after the copy-up) cannot be served through that
//!   inode: the daemon gives the upper file a new inode number for later
//!   lookups ([`Union::renumber`]) and answers the open `ESTALE`. The kernel
//!   then walks the path again with `LOOKUP_REVAL`, finds the new number,
//!   drops the old dentry and opens the new inode, which passes through to
//!   the upper file. Opens made before the copy-up keep reading the lower
//!   content (as with fuse-overlayfs, and overlayfs before Linux 4.19); an
//!   open that walks no path (reopening `/proc/PID/fd/N` of one of them)
//!   cannot be redirected and fails with `ESTALE` while they last. Once
//!   they are closed, the old number is an upper inode like any other;
//! - when the kernel refuses passthrough (or the mount was made with
//!   `passthrough: false`), everything is cached; lower opens keep the page
//!   cache (`FOPEN_KEEP_CACHE`);
//! - a mount without an upper layer that serves reads itself (no
//!   passthrough: rootless mounts, a snapshotter's lower, `passthrough:
//!   false`) answers its first OPEN `ENOSYS`: the kernel
//!   then opens and releases its files without a request (it never sends
//!   OPEN again on the connection) and keeps their page cache, and READs
//!   come with file handle 0, served from the inode's lower file
//!   ([`StrataFs::op_read_ino`]). A read of every file costs one request
//!   per file (its first READ) instead of an OPEN, a READ and a RELEASE,
//!   and a second read costs none. (With passthrough a read-only mount
//!   keeps its opens: passthrough's backing file is attached per open.)
//!
//! [`Union::renumber`]: crate::union::Union::renumber

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use fuser::{BackingId, Errno, FileHandle};
use rustix::fs::FileType as HostType;

use super::stats::IoCounters;
use super::{lock, read, write, StrataFs};
use crate::tree::{NodeId, NodeKind};
use crate::union::{errno, Obj, OpResult};
use crate::xattr;

/// How long an open waits for a release already on its way (see
/// `lower_attached`).
const RELEASE_GRACE: Duration = Duration::from_millis(10);

/// How many lower files a mount without an upper layer keeps open for
/// READs by inode.
const BY_INO_FILES: usize = 256;

/// How many backing files a mount without an upper layer keeps
/// registered for inodes that have no open (see `kept_open`).
const KEPT_BACKING: usize = 16_384;

/// Which file backs an open inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum BackingKey {
    Lower(u32),
    Upper((u64, u64)),
}

pub(super) struct OpenFile {
    ino: u64,
    /// `None` for the empty marker files of the layer view.
    pub(super) file: Option<File>,
    /// Keeps the inode's backing file registered while this open lives.
    _backing: Option<Arc<BackingId>>,
    /// Counted in the inode's cached opens.
    cached: bool,
}

/// The kernel-side I/O mode of one inode.
#[derive(Default)]
pub(super) struct InodeIo {
    backing: Option<(BackingKey, Weak<BackingId>)>,
    cached: u32,
}

/// How one open is served.
pub(super) enum Io {
    Passthrough(Arc<BackingId>),
    Cached,
}

/// A new open, registered.
pub(super) struct Opened {
    pub fh: u64,
    pub io: Io,
    /// Served from a lower file.
    pub lower: bool,
}

/// Why an open cannot share its inode's current backing file.
enum Conflict {
    /// A lower file is attached and this open needs the upper file.
    LowerAttached,
    /// The upper file is attached: the inode was copied up after this open
    /// resolved it to its lower file.
    CopiedUp,
}

impl StrataFs {
    pub(super) fn open_file(&self, fh: FileHandle) -> OpResult<Arc<OpenFile>> {
        read(&self.files).get(&fh.0).cloned().ok_or(Errno::EBADF)
    }

    /// Opens `ino` for `flags` (copying it up for writing), chooses how the
    /// kernel serves the open and registers it. `ESTALE` means: look the
    /// path up again (see the module comment).
    pub(super) fn op_open(
        &self,
        ino: u64,
        flags: i32,
        open_backing: impl Fn(&File) -> std::io::Result<BackingId>,
    ) -> OpResult<Opened> {
        if let Some(opened) = self.kept_open(ino) {
            return Ok(opened);
        }
        // Checked first: `lower_attached` may wait.
        let needs_upper = flags & libc::O_ACCMODE != libc::O_RDONLY
            || flags & libc::O_TRUNC != 0
            || matches!(self.union.resolve(ino)?, Obj::Upper(_));
        if needs_upper && self.lower_attached(ino) {
            return Err(self.move_to_new_inode(ino));
        }
        let mut retried = false;
        loop {
            let (file, key) = self.op_open_file(ino, flags)?;
            let lower = matches!(key, BackingKey::Lower(_));
            match self.register_open(ino, key, file, &open_backing) {
                Ok((fh, io)) => return Ok(Opened { fh, io, lower }),
                // Attached between the check above and now.
                Err(Conflict::LowerAttached) => return Err(self.move_to_new_inode(ino)),
                // Open it again: it resolves to the upper file now.
                Err(Conflict::CopiedUp) if !retried => retried = true,
                Err(Conflict::CopiedUp) => return Err(Errno::ESTALE),
            }
        }
    }

    /// An open of a mount without an upper layer whose inode kept its
    /// backing file from an earlier open: nothing can change the file
    /// (no copy-up), so every open of the inode passes through to that
    /// same file and the open costs neither an open of the store file
    /// nor a `FUSE_DEV_IOC_BACKING_OPEN`. The backing file is kept from
    /// the inode's first open until the kernel forgets the inode
    /// ([`StrataFs::forget_backing`]), at most `KEPT_BACKING` of them.
    fn kept_open(&self, ino: u64) -> Option<Opened> {
        if self.union.writable() {
            return None;
        }
        let id = lock(&self.kept).get(&ino).cloned()?;
        IoCounters::count(&self.stats.lower_passthrough_opens);
        IoCounters::count(&self.stats.kept_backing_opens);
        let fh = self.new_fh();
        write(&self.files).insert(
            fh,
            Arc::new(OpenFile {
                ino,
                file: None,
                _backing: Some(id.clone()),
                cached: false,
            }),
        );
        Some(Opened {
            fh,
            io: Io::Passthrough(id),
            lower: true,
        })
    }

    /// Keeps the backing file of a lower open of a mount without an
    /// upper layer for the inode's later opens (see `kept_open`).
    fn keep_backing(&self, ino: u64, id: &Arc<BackingId>) {
        if self.union.writable() {
            return;
        }
        let mut kept = lock(&self.kept);
        // The kernel forgets inodes it evicts; this bounds the backing
        // files of inodes it keeps.
        if kept.len() >= KEPT_BACKING {
            kept.clear();
        }
        kept.insert(ino, id.clone());
    }

    /// The kernel forgot `ino`: drop the backing file kept for it, and
    /// its state (which `release_open` leaves while the backing is kept).
    pub(super) fn forget_backing(&self, ino: u64) {
        if self.union.writable() {
            return;
        }
        lock(&self.kept).remove(&ino);
        let mut table = lock(&self.io);
        let unused = table.get(&ino).is_some_and(|state| {
            state.cached == 0
                && state
                    .backing
                    .as_ref()
                    .is_none_or(|(_, w)| w.strong_count() == 0)
        });
        if unused {
            table.remove(&ino);
        }
    }

    /// Whether a lower file is attached to `ino` as passthrough backing.
    /// The kernel detaches it before it sends the RELEASE of the last
    /// lower open, so a file closed just before this open may still be
    /// attached by the daemon's account: wait for such a release a moment
    /// rather than move the file to a new inode for nothing.
    fn lower_attached(&self, ino: u64) -> bool {
        let attached = |table: &mut HashMap<u64, InodeIo>| {
            table.get(&ino).is_some_and(|state| {
                matches!(&state.backing, Some((BackingKey::Lower(_), w)) if w.strong_count() > 0)
            })
        };
        let mut table = lock(&self.io);
        if !attached(&mut table) {
            return false;
        }
        let (mut table, _) = self
            .released
            .wait_timeout_while(table, RELEASE_GRACE, attached)
            .unwrap_or_else(|p| p.into_inner());
        attached(&mut table)
    }

    /// Copies `ino` up (whole: the retried open truncates if it asks to),
    /// gives its upper file a new inode number for later lookups, and
    /// returns the `ESTALE` that makes the kernel look the path up again.
    fn move_to_new_inode(&self, ino: u64) -> Errno {
        if let Err(e) = self.union.copy_up(ino, true) {
            return e;
        }
        self.union.renumber(ino);
        IoCounters::count(&self.stats.relookups);
        tracing::debug!(ino, "copied-up file has a lower backing attached: relookup");
        Errno::ESTALE
    }

    /// Opens the file behind `ino` for `flags`, copying it up for writing.
    fn op_open_file(&self, ino: u64, flags: i32) -> OpResult<(Option<File>, BackingKey)> {
        let write = flags & libc::O_ACCMODE != libc::O_RDONLY;
        let trunc = flags & libc::O_TRUNC != 0;
        if let Obj::Lower(n) = self.union.resolve(ino)? {
            if !write && !trunc {
                return Ok((self.open_lower(n, Errno::EINVAL)?, BackingKey::Lower(n)));
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

    /// The backing file of lower node `n` opened for reading (None for a
    /// file without content); `not_file` if `n` is no regular file.
    fn open_lower(&self, n: NodeId, not_file: Errno) -> OpResult<Option<File>> {
        let node = self.union.tree.node(n).ok_or(Errno::ESTALE)?;
        let NodeKind::File { backing, .. } = &node.kind else {
            return Err(not_file);
        };
        backing
            .as_ref()
            .map(|path| File::open(path).map_err(errno))
            .transpose()
    }

    /// Registers the open of a file just created in the upper directory.
    pub(super) fn register_created(
        &self,
        ino: u64,
        key: BackingKey,
        file: File,
        open_backing: impl Fn(&File) -> std::io::Result<BackingId>,
    ) -> OpResult<Opened> {
        match self.register_open(ino, key, Some(file), open_backing) {
            Ok((fh, io)) => Ok(Opened {
                fh,
                io,
                lower: false,
            }),
            // A new file has no other opens: cannot happen.
            Err(_) => Err(Errno::EIO),
        }
    }

    /// Chooses passthrough or cached I/O for a new open of `ino` and
    /// registers the open; returns its handle and mode.
    fn register_open(
        &self,
        ino: u64,
        key: BackingKey,
        file: Option<File>,
        open_backing: impl Fn(&File) -> std::io::Result<BackingId>,
    ) -> Result<(u64, Io), Conflict> {
        let mut table = lock(&self.io);
        let state = table.entry(ino).or_default();
        let mut io = Io::Cached;
        if let Some((k, weak)) = &state.backing {
            match weak.upgrade() {
                Some(id) if *k == key => io = Io::Passthrough(id),
                Some(_) if matches!(k, BackingKey::Lower(_)) => {
                    return Err(Conflict::LowerAttached)
                }
                Some(_) => return Err(Conflict::CopiedUp),
                None => state.backing = None,
            }
        }
        if state.backing.is_none() && state.cached == 0 && self.passthrough.load(Ordering::Relaxed)
        {
            if let Some(f) = &file {
                match open_backing(f) {
                    Ok(id) => {
                        let id = Arc::new(id);
                        if matches!(key, BackingKey::Lower(_)) {
                            self.keep_backing(ino, &id);
                        }
                        state.backing = Some((key.clone(), Arc::downgrade(&id)));
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
        IoCounters::count(match (&io, &key) {
            (Io::Cached, _) => &self.stats.cached_opens,
            (Io::Passthrough(_), BackingKey::Lower(_)) => &self.stats.lower_passthrough_opens,
            (Io::Passthrough(_), BackingKey::Upper(_)) => &self.stats.upper_passthrough_opens,
        });
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

    /// Forgets the open `fh`, and its inode's backing file with its last
    /// open.
    pub(super) fn release_open(&self, fh: u64) {
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
        drop(table);
        self.released.notify_all();
    }

    pub(super) fn op_read(&self, fh: FileHandle, offset: u64, size: u32) -> OpResult<Vec<u8>> {
        IoCounters::count(&self.stats.daemon_reads);
        let open = self.open_file(fh)?;
        let Some(file) = &open.file else {
            return Ok(Vec::new());
        };
        read_full(file, offset, size)
    }

    /// A READ of a mount without an upper layer, whose files the kernel
    /// opens without asking (see `no_open`): the inode's lower file,
    /// kept open for the next READs of the same file.
    pub(super) fn op_read_ino(&self, ino: u64, offset: u64, size: u32) -> OpResult<Vec<u8>> {
        IoCounters::count(&self.stats.daemon_reads);
        let cached = lock(&self.by_ino).get(&ino).cloned();
        let file = match cached {
            Some(f) => f,
            None => {
                let Obj::Lower(n) = self.union.resolve(ino)? else {
                    return Err(Errno::EIO);
                };
                let Some(file) = self.open_lower(n, Errno::EISDIR)? else {
                    return Ok(Vec::new());
                };
                let file = Arc::new(file);
                let mut table = lock(&self.by_ino);
                // The kernel forgets inodes it evicts; this bounds the fds
                // of inodes it keeps.
                if table.len() >= BY_INO_FILES {
                    table.clear();
                }
                table.insert(ino, file.clone());
                file
            }
        };
        read_full(&file, offset, size)
    }

    pub(super) fn op_write(
        &self,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        flags: i32,
    ) -> OpResult<u32> {
        IoCounters::count(&self.stats.daemon_writes);
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
}

/// Reads up to `size` bytes at `offset` (fewer only at the end of the
/// file).
fn read_full(file: &File, offset: u64, size: u32) -> OpResult<Vec<u8>> {
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
