//! Open files and the kernel-side I/O mode of each inode.
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

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use fuser::{BackingId, Errno, FileHandle};
use rustix::fs::FileType as HostType;

use super::stats::IoCounters;
use super::{lock, read, write, StrataFs};
use crate::tree::NodeKind;
use crate::union::{errno, Obj, OpResult};
use crate::xattr;

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

impl StrataFs {
    pub(super) fn open_file(&self, fh: FileHandle) -> OpResult<Arc<OpenFile>> {
        read(&self.files).get(&fh.0).cloned().ok_or(Errno::EBADF)
    }

    /// Opens the file behind `ino` for `flags`, copying it up for writing.
    pub(super) fn op_open_file(
        &self,
        ino: u64,
        flags: i32,
    ) -> OpResult<(Option<File>, BackingKey)> {
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
    pub(super) fn register_open(
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
    }

    pub(super) fn op_read(&self, fh: FileHandle, offset: u64, size: u32) -> OpResult<Vec<u8>> {
        IoCounters::count(&self.stats.daemon_reads);
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
