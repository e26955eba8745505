//! Kernel image mounts: `strata mount IMAGE` as root, served by the
//! kernel's overlayfs with no daemon (docs/fs.md, "Kernel image mounts").
//!
//! The first such mount of an image is served by FUSE and starts a
//! detached builder of its *view* (`views/<hex>/`, see store/views.rs);
//! the mounts after it are the kernel's. The view is the merged tree of its layers as real directories,
//! symlinks, devices and fifos with the image's owners, modes, times and
//! extended attributes, where every non-empty regular file is an empty
//! sparse file of its size marked `trusted.overlay.metacopy` and
//! redirected (`trusted.overlay.redirect`) to a short name in `data/`, a
//! hard link to the store file with its content. The mount is then one
//! read-only overlayfs with `meta/` as its layer and `data/` as a
//! data-only layer (Linux 6.5; the `lowerdir+` and `datadir+` keys this
//! mount passes, 6.8): lookups and listings are the
//! kernel's, and reads go straight to the store files, whose page cache
//! every mount and container of the same content shares.
//!
//! Why `data/` and not `files/` itself: a redirect to `/<hh>/<hex>` is
//! 67 bytes, which with the metacopy mark no longer fits in an ext4
//! inode and costs every file a 4 KiB xattr block; a short name fits.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use strata_fs::tree::{NodeId, NodeKind, Tree};

use super::MountError;
use crate::digest::Digest;
use crate::image::{image_layer_ids, StoreSource};
use crate::store::{views, Store};

/// What a view needs the kernel to have: overlayfs with data-only layers
/// (6.5) taken as `lowerdir+`/`datadir+` keys (6.8), and the right to
/// mount it and to write `trusted.` xattrs
/// (root in the initial user namespace).
pub fn usable() -> bool {
    rustix::process::geteuid().is_root() && !crate::container::launch::userns::is_rootless()
}

fn io_err(path: &Path) -> impl Fn(rustix::io::Errno) -> MountError + '_ {
    move |e| MountError::Io {
        path: path.display().to_string(),
        source: e.into(),
    }
}

/// The image's view if it has a complete one.
pub fn existing_view(store: &Store, image: &Digest) -> Option<PathBuf> {
    let dir = views::base(store.root()).join(image.hex());
    dir.join("data").is_dir().then_some(dir)
}

/// Whether a live process is building the image's view.
fn building(store: &Store, image: &Digest) -> bool {
    let prefix = format!(".tmp-{}-", image.hex());
    let Ok(dir) = std::fs::read_dir(views::base(store.root())) else {
        return false;
    };
    dir.flatten().any(|item| {
        let name = item.file_name().to_string_lossy().to_string();
        name.starts_with(&prefix) && views::classify(&name).is_live_build()
    })
}

/// `views/<hex>.failed`: why the image's view could not be built (its
/// mounts stay strata-fs's; no builder is started again).
fn failure_marker(store: &Store, image: &Digest) -> PathBuf {
    views::base(store.root()).join(format!("{}.failed", image.hex()))
}

/// Starts a detached builder of the image's view (`strata __build-view`)
/// unless one is at work or a build failed: the mount that asked is
/// served by FUSE meanwhile, and the mounts after the build by the
/// kernel.
pub fn start_builder(store: &Store, image: &Digest) {
    if building(store, image) || failure_marker(store, image).exists() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let spawned =
        crate::store::spawn_detached(&exe, store.root(), &["__build-view", &image.to_string()]);
    if let Err(e) = spawned {
        tracing::info!("cannot start the view builder of {}: {e}", image.short());
    }
}

/// `strata __build-view IMAGE`: builds the image's view at a low CPU and
/// I/O priority, so that it does not slow what the user is doing.
pub fn run_builder(store: &Store, image: &Digest) -> Result<(), MountError> {
    let _ = rustix::process::setpriority_process(None, 10);
    let _ = crate::store::sys::set_idle_io_priority();
    ensure_view(store, image).map(|_| ()).inspect_err(|e| {
        // Remembered, so that every mount does not try again.
        let _ = std::fs::write(failure_marker(store, image), format!("{e}\n"));
    })
}

/// The image's view, built now if it has none. Returns `views/<hex>`.
pub fn ensure_view(store: &Store, image: &Digest) -> Result<PathBuf, MountError> {
    if let Some(dir) = existing_view(store, image) {
        return Ok(dir);
    }
    let base = views::ensure_base(store.root())?;
    let dir = base.join(image.hex());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = base.join(format!(
        ".tmp-{}-{}-{nanos}",
        image.hex(),
        std::process::id()
    ));
    let built = build(store, image, &tmp);
    if let Err(e) = built {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    match std::fs::rename(&tmp, &dir) {
        Ok(()) => {
            // The rename itself, durable before a mount relies on it.
            if let Ok(d) = std::fs::File::open(&base) {
                let _ = d.sync_all();
            }
            Ok(dir)
        }
        // Another mount built it meanwhile: keep that one.
        Err(_) if dir.join("data").is_dir() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(dir)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(MountError::Io {
                path: dir.display().to_string(),
                source: e,
            })
        }
    }
}

/// A directory being filled: its node, an fd, its path and the children
/// still to make.
struct Frame {
    node: NodeId,
    fd: OwnedFd,
    path: PathBuf,
    children: Vec<(Box<[u8]>, NodeId)>,
    next: usize,
}

/// Writes the view of `image` into `dir` (which must not exist), flushed.
fn build(store: &Store, image: &Digest, dir: &Path) -> Result<(), MountError> {
    let started = std::time::Instant::now();
    let rows = image_layer_ids(store, image)?
        .iter()
        .map(|(id, _)| *id)
        .collect();
    let tree =
        Tree::lazy(std::sync::Arc::new(StoreSource::open(store, rows)?)).map_err(io_std(dir))?;
    crate::store::permissions::create_private_dir(dir)?;
    let meta = dir.join("meta");
    let data = dir.join("data");
    for d in [&meta, &data] {
        std::fs::create_dir(d).map_err(io_std(d))?;
    }
    let data_fd = open_dir(&data)?;
    let mut builder = Builder {
        tree: &tree,
        data_fd,
        data: &data,
        links: HashMap::new(),
        linked: HashMap::new(),
        files: 0,
    };
    let mut stack = vec![builder.frame(0, open_dir(&meta)?, meta.clone())?];
    while let Some(top) = stack.last_mut() {
        let Some((name, id)) = top.children.get(top.next).cloned() else {
            let done = stack.pop().expect("a frame");
            builder.finish_dir(&done)?;
            continue;
        };
        top.next += 1;
        let path = top.path.join(std::ffi::OsStr::from_bytes(&name));
        if let Some(fd) = builder.make(&top.fd, &name, &path, id)? {
            let frame = builder.frame(id, fd, path)?;
            stack.push(frame);
        }
    }
    let flush = open_dir(dir)?;
    rustix::fs::syncfs(&flush).map_err(io_err(dir))?;
    tracing::info!(
        "view of {} built in {:?}: {} files",
        image.short(),
        started.elapsed(),
        builder.files
    );
    Ok(())
}

fn io_std(path: &Path) -> impl Fn(std::io::Error) -> MountError + '_ {
    move |e| MountError::Io {
        path: path.display().to_string(),
        source: e,
    }
}

fn open_dir(path: &Path) -> Result<OwnedFd, MountError> {
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_err(path))
}

struct Builder<'a> {
    tree: &'a Tree,
    data_fd: OwnedFd,
    data: &'a Path,
    /// Store file → its name in `data/`.
    links: HashMap<PathBuf, String>,
    /// Hard-linked nodes made so far → their first path.
    linked: HashMap<NodeId, PathBuf>,
    files: u64,
}

impl Builder<'_> {
    fn frame(&self, node: NodeId, fd: OwnedFd, path: PathBuf) -> Result<Frame, MountError> {
        let children = self
            .tree
            .dir_children(node)
            .map_err(io_std(&path))?
            .map(|c| c.listing().cloned().collect())
            .unwrap_or_default();
        Ok(Frame {
            node,
            fd,
            path,
            children,
            next: 0,
        })
    }

    /// Makes the child `name` of the directory `parent`; returns the fd of
    /// a directory made (its children and metadata come later).
    fn make(
        &mut self,
        parent: &OwnedFd,
        name: &[u8],
        path: &Path,
        id: NodeId,
    ) -> Result<Option<OwnedFd>, MountError> {
        let node = self
            .tree
            .node(id)
            .ok_or_else(|| MountError::Unsupported(format!("{}: no node", path.display())))?;
        let err = io_err(path);
        // Paths joined from the image's names are safe here, though the
        // rest of strata resolves image paths from directory fds: every
        // component but the last is a directory this build made (never a
        // symlink), names are single components (the store refuses `/`,
        // `.` and `..` at ingest), and `link` and `lsetxattr` do not
        // follow a last component that is a symlink.
        if !matches!(node.kind, NodeKind::Dir { .. }) && self.tree.nlink(id) > 1 {
            if let Some(first) = self.linked.get(&id) {
                rustix::fs::link(first, path).map_err(&err)?;
                return Ok(None);
            }
            self.linked.insert(id, path.to_path_buf());
        }
        let mode = Mode::from_raw_mode(node.mode & 0o7777);
        let (uid, gid) = (
            Some(rustix::fs::Uid::from_raw(node.uid)),
            Some(rustix::fs::Gid::from_raw(node.gid)),
        );
        let times = Timestamps {
            last_access: timespec(node.mtime_sec, node.mtime_nsec),
            last_modification: timespec(node.mtime_sec, node.mtime_nsec),
        };
        match &node.kind {
            NodeKind::Dir { .. } => {
                rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700)).map_err(&err)?;
                let fd = rustix::fs::openat(
                    parent,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(&err)?;
                return Ok(Some(fd));
            }
            NodeKind::File { size, backing } => {
                self.files += 1;
                let fd = rustix::fs::openat(
                    parent,
                    name,
                    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(&err)?;
                rustix::fs::fchown(&fd, uid, gid).map_err(&err)?;
                rustix::fs::fchmod(&fd, mode).map_err(&err)?;
                if let (true, Some(backing)) = (*size > 0, backing) {
                    rustix::fs::ftruncate(&fd, *size).map_err(&err)?;
                    let short = self.data_link(backing)?;
                    rustix::fs::fsetxattr(&fd, "trusted.overlay.metacopy", b"", XattrFlags::CREATE)
                        .map_err(&err)?;
                    rustix::fs::fsetxattr(
                        &fd,
                        "trusted.overlay.redirect",
                        format!("/{short}").as_bytes(),
                        XattrFlags::CREATE,
                    )
                    .map_err(&err)?;
                }
                set_xattrs(&fd, path, &node.xattrs)?;
                rustix::fs::futimens(&fd, &times).map_err(&err)?;
                return Ok(None);
            }
            NodeKind::Symlink { target } => {
                rustix::fs::symlinkat(&**target, parent, name).map_err(&err)?;
            }
            NodeKind::CharDevice { .. } | NodeKind::BlockDevice { .. } => {
                // A device node in the view would be a real device on the
                // host (and a char 0/0 an overlayfs whiteout): never made,
                // as the overlayfs fallback's layer directories never
                // make them. Such an image stays on strata-fs.
                return Err(MountError::Unsupported(format!(
                    "{}: the image has a device node, which strata never makes on the host",
                    String::from_utf8_lossy(&self.tree.path(id))
                )));
            }
            NodeKind::Fifo => {
                rustix::fs::mknodat(parent, name, FileType::Fifo, Mode::from_raw_mode(0o600), 0)
                    .map_err(&err)?;
            }
        }
        // A symlink, device or fifo: by name, without following it.
        rustix::fs::chownat(parent, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW).map_err(&err)?;
        if !matches!(node.kind, NodeKind::Symlink { .. }) {
            rustix::fs::chmodat(parent, name, mode, AtFlags::empty()).map_err(&err)?;
        }
        for (key, value) in node.xattrs.iter().filter(|(k, _)| kept(k)) {
            rustix::fs::lsetxattr(path, &**key, value, XattrFlags::empty()).map_err(&err)?;
        }
        rustix::fs::utimensat(parent, name, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(&err)?;
        Ok(None)
    }

    /// A directory's own metadata, once its children are made (making
    /// them changed its times).
    fn finish_dir(&self, frame: &Frame) -> Result<(), MountError> {
        let node = self
            .tree
            .node(frame.node)
            .ok_or_else(|| MountError::Unsupported(format!("{}: no node", frame.path.display())))?;
        let err = io_err(&frame.path);
        rustix::fs::fchown(
            &frame.fd,
            Some(rustix::fs::Uid::from_raw(node.uid)),
            Some(rustix::fs::Gid::from_raw(node.gid)),
        )
        .map_err(&err)?;
        rustix::fs::fchmod(&frame.fd, Mode::from_raw_mode(node.mode & 0o7777)).map_err(&err)?;
        set_xattrs(&frame.fd, &frame.path, &node.xattrs)?;
        let t = timespec(node.mtime_sec, node.mtime_nsec);
        rustix::fs::futimens(
            &frame.fd,
            &Timestamps {
                last_access: t,
                last_modification: t,
            },
        )
        .map_err(&err)
    }

    /// The name in `data/` of a hard link to `backing` (made once).
    fn data_link(&mut self, backing: &Path) -> Result<String, MountError> {
        if let Some(name) = self.links.get(backing) {
            return Ok(name.clone());
        }
        let name = format!("{:x}", self.links.len());
        rustix::fs::linkat(
            rustix::fs::CWD,
            backing,
            &self.data_fd,
            name.as_str(),
            AtFlags::empty(),
        )
        .map_err(io_err(&self.data.join(&name)))?;
        self.links.insert(backing.to_path_buf(), name.clone());
        Ok(name)
    }
}

fn timespec(sec: i64, nsec: u32) -> Timespec {
    Timespec {
        tv_sec: sec,
        tv_nsec: nsec.min(999_999_999) as _,
    }
}

/// Whether an image's extended attribute goes into its view: all but
/// `trusted.overlay.*`, which overlayfs would take for its own (an image
/// could otherwise redirect a file to another image's content); the FUSE
/// mount does not show them either.
fn kept(name: &[u8]) -> bool {
    !name.starts_with(b"trusted.overlay.")
}

fn set_xattrs(
    fd: &impl AsFd,
    path: &Path,
    xattrs: &[strata_fs::tree::Xattr],
) -> Result<(), MountError> {
    for (key, value) in xattrs.iter().filter(|(k, _)| kept(k)) {
        rustix::fs::fsetxattr(fd, &**key, value, XattrFlags::empty()).map_err(io_err(path))?;
    }
    Ok(())
}

/// Mounts the view `view` read-only (`nosuid`, `nodev`) at `mountpoint`.
pub fn mount_view(image: &Digest, view: &Path, mountpoint: &Path) -> Result<(), MountError> {
    use rustix::mount::{
        fsconfig_create, fsconfig_set_string, fsmount, fsopen, move_mount, FsMountFlags,
        FsOpenFlags, MountAttrFlags, MoveMountFlags,
    };
    let err = |what: &'static str| {
        move |e: rustix::io::Errno| MountError::Kernel {
            path: mountpoint.display().to_string(),
            reason: format!("overlayfs {what}: {e}"),
        }
    };
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).map_err(err("fsopen"))?;
    let meta = view.join("meta");
    let data = view.join("data");
    let source = format!("strata:{}", image.short());
    for (key, value) in [
        ("source", source.as_str()),
        ("metacopy", "on"),
        ("redirect_dir", "follow"),
        ("lowerdir+", &*meta.to_string_lossy()),
        ("datadir+", &*data.to_string_lossy()),
    ] {
        fsconfig_set_string(&fs, key, value).map_err(err("option"))?;
    }
    fsconfig_create(&fs).map_err(err("create"))?;
    let mnt = fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_RDONLY
            | MountAttrFlags::MOUNT_ATTR_NOSUID
            | MountAttrFlags::MOUNT_ATTR_NODEV,
    )
    .map_err(err("fsmount"))?;
    move_mount(
        &mnt,
        "",
        rustix::fs::CWD,
        mountpoint,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(err("move_mount"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_images_own_overlay_xattrs_are_left_out() {
        assert!(!kept(b"trusted.overlay.redirect"));
        assert!(!kept(b"trusted.overlay.metacopy"));
        assert!(kept(b"user.x"));
        assert!(kept(b"security.capability"));
        assert!(kept(b"trusted.other"));
    }
}
