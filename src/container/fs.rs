//! Access to a container's files from the host: `cp` both ways, `export`,
//! `diff`, `commit`. Container paths are resolved inside the container's
//! root (openat2 RESOLVE_IN_ROOT), and trees are walked through directory
//! fds without following symlinks (see `fdwalk`).

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::error::ContainerError;
use super::files::fdwalk::{tar_dir, tar_entry, untar_into, Links};
use super::files::inside::{self, Place};
use super::files::upper::{list_changes, Change, ImagePaths};
use super::launch::rootfs::{MountedRoot, RootfsDirs};
use super::launch::userns;
use super::monitor::liveness::lookup;
use super::records::{container_dir, Container};
use super::spec::Status;
use super::sys;
use crate::digest::Digest;
use crate::store::Store;

/// A container's root, opened as a directory; a stopped container's is
/// mounted for the duration and unmounted on drop.
pub struct RootAccess {
    pub dir: OwnedFd,
    /// Declared after `dir`, so dropped after it: the view is unmounted
    /// once this command holds nothing in it open. (Unmounting first
    /// only detached the busy mount, and its daemon served on until the
    /// descriptor closed, after `unmount` had waited 5 s for it.)
    _mounted: Option<UnmountOnDrop>,
}

struct UnmountOnDrop(Option<Box<dyn MountedRoot>>);

impl Drop for UnmountOnDrop {
    fn drop(&mut self) {
        if let Some(m) = self.0.take() {
            let _ = m.unmount();
        }
    }
}

fn image_of(c: &Container) -> Result<Digest, ContainerError> {
    c.image_id.parse().map_err(|_| ContainerError::Corrupt {
        id: c.id.clone(),
        reason: format!("image id {}", c.image_id),
    })
}

/// Opens the container's root. A stopped container's root is mounted
/// with kernel overlayfs (same upper-directory conventions as strata-fs):
/// serving strata-fs from this same process and reading through it
/// hangs after some container histories (not yet understood; see the
/// report), so offline access does not use it for now. `with_mounts`: for a running container,
/// its whole view (volumes included) through /proc/PID/root; otherwise
/// the container's own filesystem.
pub fn open_root(
    store: &Store,
    c: &Container,
    with_mounts: bool,
) -> Result<RootAccess, ContainerError> {
    let running = is_running(c);
    let dirs = RootfsDirs::of(&container_dir(store, &c.id));
    let (path, mounted): (PathBuf, Option<Box<dyn MountedRoot>>) = if running && with_mounts {
        (PathBuf::from(format!("/proc/{}/root", c.state.pid)), None)
    } else if running
        && c.state.monitor_pid > 0
        && !strata_fs::privilege::in_initial_user_namespace()
    {
        // An ordinary user's container: its root is mounted in its
        // monitor's mount namespace only (files/inside.rs).
        let mut path = PathBuf::from(format!("/proc/{}/root", c.state.monitor_pid));
        path.push(
            dirs.mountpoint
                .strip_prefix("/")
                .unwrap_or(&dirs.mountpoint),
        );
        (path, None)
    } else if running {
        (dirs.mountpoint.clone(), None)
    } else {
        match crate::mount::container_view(store, &c.id).ok().flatten() {
            // The user's own `strata mount CONTAINER`: use it, leave it mounted.
            Some(view) => (view, None),
            None => {
                let view = crate::mount::mount_container(store, c)
                    .map_err(|e| ContainerError::Mount(e.to_string()))?;
                let m: Box<dyn MountedRoot> = Box::new(DaemonRoot {
                    root: store.root().to_path_buf(),
                    mountpoint: view.clone(),
                });
                (view, Some(m))
            }
        }
    };
    let mounted = mounted.map(|m| UnmountOnDrop(Some(m)));
    let dir = File::open(&path).map_err(|e| ContainerError::io(&path, e))?;
    Ok(RootAccess {
        dir: dir.into(),
        _mounted: mounted,
    })
}

fn is_running(c: &Container) -> bool {
    matches!(c.state.status, Status::Running | Status::Paused) && c.state.pid > 0
}

/// Where the child doing an ordinary user's file command works
/// (files/inside.rs): in a running container's user namespace, else in a
/// new one with the user's maps.
fn place_of(c: &Container) -> Place {
    if is_running(c) {
        Place::Container(c.state.pid)
    } else {
        Place::Fresh
    }
}

fn resolve(root: &RootAccess, path: &str, flags: i32) -> Result<OwnedFd, ContainerError> {
    sys::open_in_root(root.dir.as_fd(), path, flags, 0)
        .map_err(|e| ContainerError::io(format!("container path {path}"), e.into()))
}

/// `cp CONTAINER:SRC -`: writes SRC (a file, symlink or directory) as a
/// tar stream to `out`, named by its last component.
pub fn copy_from_container(
    store: &Store,
    name_or_id: &str,
    src: &str,
    out: &mut dyn Write,
) -> Result<(), ContainerError> {
    let c = lookup(store, name_or_id)?;
    if userns::is_rootless() {
        return inside::run_writing(place_of(&c), out, |out| {
            copy_from_container(store, name_or_id, src, out)
        });
    }
    let root = open_root(store, &c, true)?;
    let trimmed = src.trim_end_matches('/');
    let (parent, base) = match trimmed.rsplit_once('/') {
        Some((p, b)) => (if p.is_empty() { "/" } else { p }, b),
        None => ("/", trimmed),
    };
    let mut tar = tar::Builder::new(out);
    if base.is_empty() || base == "." {
        let dir = resolve(
            &root,
            if trimmed.is_empty() { "/" } else { trimmed },
            libc::O_RDONLY | libc::O_DIRECTORY,
        )?;
        let st = nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(&dir))
            .map_err(|e| ContainerError::io(src, e.into()))?;
        tar_dir(&mut tar, &mut Links::new(), dir.as_fd(), &st, ".")?;
    } else {
        let parent_fd = resolve(&root, parent, libc::O_RDONLY | libc::O_DIRECTORY)?;
        tar_entry(
            &mut tar,
            &mut Links::new(),
            parent_fd.as_fd(),
            base.as_bytes(),
            base,
        )?;
    }
    tar.finish().map_err(|e| ContainerError::io(src, e))?;
    Ok(())
}

/// `cp - CONTAINER:DEST`: extracts a tar stream into the directory DEST
/// of the container.
pub fn copy_into_container(
    store: &Store,
    name_or_id: &str,
    dest: &str,
    input: &mut dyn std::io::Read,
) -> Result<(), ContainerError> {
    let c = lookup(store, name_or_id)?;
    if userns::is_rootless() {
        return inside::run_reading(place_of(&c), input, |input| {
            copy_into_container(store, name_or_id, dest, input)
        });
    }
    let root = open_root(store, &c, true)?;
    let dir = resolve(&root, dest, libc::O_RDONLY | libc::O_DIRECTORY)?;
    untar_into(input, dir.as_fd())
}

/// Copies a host path into a tar stream (for `cp HOST CONTAINER:DEST`),
/// named by its last component.
pub fn tar_host_path(src: &Path, out: &mut dyn Write) -> Result<(), ContainerError> {
    let name = src
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    tar_host_path_as(src, &name, out)
}

/// Copies a host path into a tar stream under `name`; a directory with
/// everything below it, symlinks as symlinks.
fn tar_host_path_as(src: &Path, name: &Path, out: &mut dyn Write) -> Result<(), ContainerError> {
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    let meta = std::fs::symlink_metadata(src).map_err(|e| ContainerError::io(src, e))?;
    if meta.is_dir() {
        tar.append_dir_all(name, src)
            .map_err(|e| ContainerError::io(src, e))?;
    } else if !meta.is_file() && !meta.is_symlink() {
        // A FIFO or a device node, written as the container walk writes
        // them (the tar crate names such a file by its source path,
        // absolute here, and fails).
        use std::os::unix::ffi::OsStrExt;
        let parent = src
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let dir = std::fs::File::open(parent).map_err(|e| ContainerError::io(parent, e))?;
        let file_name = src.file_name().unwrap_or_default();
        tar_entry(
            &mut tar,
            &mut Links::new(),
            dir.as_fd(),
            file_name.as_bytes(),
            &name.to_string_lossy(),
        )?;
    } else {
        tar.append_path_with_name(src, name)
            .map_err(|e| ContainerError::io(src, e))?;
    }
    tar.finish().map_err(|e| ContainerError::io(src, e))
}

/// `cp HOSTSRC CONTAINER:DEST`, with Docker's rules for the destination:
/// into DEST if it is a directory (as `DEST/<name of SRC>`, or SRC's
/// contents for `SRC/.`); otherwise SRC becomes DEST (a new file or
/// directory, or a file replaced), whose parent must exist. A directory
/// does not replace a file ("cannot copy directory"), and a file is not
/// copied to a missing `DEST/` ("no such directory"). Works on a stopped
/// container as on a running one.
pub fn copy_host_path_into_container(
    store: &Store,
    name_or_id: &str,
    src: &Path,
    dest: &str,
) -> Result<(), ContainerError> {
    let c = lookup(store, name_or_id)?;
    if userns::is_rootless() {
        // The child reads `src` with the user's own access to it.
        let child = inside::spawn(place_of(&c), || {
            copy_host_path_into_container(store, name_or_id, src, dest)
        })?;
        return child.wait();
    }
    let meta = std::fs::symlink_metadata(src).map_err(|e| ContainerError::io(src, e))?;
    let source_text = src.to_string_lossy();
    let contents_only = meta.is_dir() && (source_text.ends_with("/.") || source_text == ".");
    let root = open_root(store, &c, true)?;
    let dir_flags = libc::O_RDONLY | libc::O_DIRECTORY;
    let wants_directory = dest.ends_with('/') || dest.ends_with("/.");
    let mut archive = Vec::new();
    match sys::open_in_root(root.dir.as_fd(), dest, dir_flags, 0) {
        Ok(dir) => {
            if contents_only {
                tar_directory_contents(src, &mut archive)?;
            } else {
                tar_host_path(src, &mut archive)?;
            }
            return untar_into(&mut &archive[..], dir.as_fd());
        }
        Err(nix::errno::Errno::ENOTDIR) if meta.is_dir() => {
            return Err(ContainerError::Unsupported("cannot copy directory".into()));
        }
        Err(nix::errno::Errno::ENOTDIR | nix::errno::Errno::ENOENT) => {}
        Err(e) => {
            return Err(ContainerError::io(
                format!("container path {dest}"),
                e.into(),
            ))
        }
    }
    let trimmed = dest.trim_end_matches("/.").trim_end_matches('/');
    let (parent, base) = match trimmed.rsplit_once('/') {
        Some((p, b)) => (if p.is_empty() { "/" } else { p }, b),
        None => (".", trimmed),
    };
    let parent_dir = match sys::open_in_root(root.dir.as_fd(), parent, dir_flags, 0) {
        Ok(dir) => dir,
        Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR) => {
            return Err(ContainerError::Unsupported(format!(
                "Could not find the file {parent} in container {name_or_id}"
            )))
        }
        Err(e) => {
            return Err(ContainerError::io(
                format!("container path {parent}"),
                e.into(),
            ))
        }
    };
    if wants_directory && !meta.is_dir() {
        return Err(ContainerError::Unsupported("no such directory".into()));
    }
    if base.is_empty() || base == "." || base == ".." {
        return Err(ContainerError::Invalid(format!("cannot copy to {dest}")));
    }
    tar_host_path_as(src, Path::new(base), &mut archive)?;
    untar_into(&mut &archive[..], parent_dir.as_fd())
}

/// A host directory's entries (not the directory itself) as a tar.
fn tar_directory_contents(src: &Path, out: &mut dyn Write) -> Result<(), ContainerError> {
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    for entry in std::fs::read_dir(src).map_err(|e| ContainerError::io(src, e))? {
        let entry = entry.map_err(|e| ContainerError::io(src, e))?;
        let path = entry.path();
        let name = PathBuf::from(entry.file_name());
        let kind = entry
            .file_type()
            .map_err(|e| ContainerError::io(&path, e))?;
        if kind.is_dir() {
            tar.append_dir_all(&name, &path)
        } else {
            tar.append_path_with_name(&path, &name)
        }
        .map_err(|e| ContainerError::io(&path, e))?;
    }
    tar.finish().map_err(|e| ContainerError::io(src, e))
}

/// `export`: the container's filesystem (without volumes) as a tar.
pub fn export_container(
    store: &Store,
    name_or_id: &str,
    out: &mut dyn Write,
) -> Result<(), ContainerError> {
    let c = lookup(store, name_or_id)?;
    if userns::is_rootless() {
        return inside::run_writing(place_of(&c), out, |out| {
            export_container(store, name_or_id, out)
        });
    }
    let root = open_root(store, &c, false)?;
    let st = nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(&root.dir))
        .map_err(|e| ContainerError::io("/", e.into()))?;
    let mut tar = tar::Builder::new(out);
    tar_dir(&mut tar, &mut Links::new(), root.dir.as_fd(), &st, ".")?;
    tar.finish().map_err(|e| ContainerError::io("export", e))
}

/// `diff`: what the container changed, from its upper directory, as
/// Docker's naive diff lists it (see `upper::list_changes`).
pub fn container_changes(store: &Store, name_or_id: &str) -> Result<Vec<Change>, ContainerError> {
    let c = lookup(store, name_or_id)?;
    if userns::is_rootless() {
        // Its upper directory, read where its owners are the container's.
        return inside::run_returning(Place::Fresh, || container_changes(store, name_or_id));
    }
    let upper = RootfsDirs::of(&container_dir(store, &c.id)).upper;
    let image = ImagePaths::open(store, &image_of(&c)?)?;
    list_changes(&upper, &image)
}

/// A stopped container's view served by a strata mount daemon (the same
/// one `strata mount CONTAINER` starts) for the length of one command: the
/// layers are read from the store, never extracted.
struct DaemonRoot {
    root: PathBuf,
    mountpoint: PathBuf,
}

impl MountedRoot for DaemonRoot {
    fn path(&self) -> &Path {
        &self.mountpoint
    }

    fn moved_to(&mut self, path: PathBuf) {
        self.mountpoint = path;
    }

    fn unmount(self: Box<Self>) -> Result<(), ContainerError> {
        let store = Store::open(&self.root).map_err(|e| ContainerError::Mount(e.to_string()))?;
        crate::mount::unmount(&store, &self.mountpoint.to_string_lossy())
            .map(|_| ())
            .map_err(|e| ContainerError::Mount(e.to_string()))
    }
}
