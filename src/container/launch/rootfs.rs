//! The container's root filesystem: an image's layers plus the
//! container's upper directory, mounted at `<container>/rootfs`.
//!
//! The provider is pluggable ([`RootfsProvider`]). [`FuseProvider`] (the
//! default) serves the strata-fs mount from the monitor. [`OverlayProvider`]
//! (`STRATA_ROOTFS=overlay`, or no /dev/fuse) uses the kernel's overlayfs
//! over per-layer directories extracted once from the store under
//! `<root>/layer-dirs/` (private to the store's owner; see
//! `store/layer_dirs.rs` for the names and the per-layer lock). Device
//! nodes of an image are never created on the host: they are left out of
//! the extracted layers (only overlayfs whiteouts, char 0/0, are made).
//! Either way the root is mounted `nodev` but not `nosuid` (set-user-ID
//! programs work inside, as under Docker; the mount point is out of other
//! users' reach, see docs/store.md), and the upper directory follows the
//! overlayfs conventions (whiteout = char device 0/0, opaque directory =
//! `trusted.overlay.opaque=y`), which is what `diff` and `commit` read.

use std::collections::HashSet;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::{Mode, SFlag};

use crate::container::error::ContainerError;
use crate::digest::Digest;
use crate::image::{image_layer_ids, layer_entries, Kind};
use crate::store::layer_dirs::{self, LayerLock};
use crate::store::permissions::create_private_dir;
use crate::store::Store;

/// The directories of one container's filesystem.
#[derive(Debug, Clone)]
pub struct RootfsDirs {
    pub upper: PathBuf,
    pub work: PathBuf,
    pub mountpoint: PathBuf,
}

impl RootfsDirs {
    pub fn of(container_dir: &Path) -> RootfsDirs {
        RootfsDirs {
            upper: container_dir.join("upper"),
            work: container_dir.join("work"),
            mountpoint: container_dir.join("rootfs"),
        }
    }
}

/// A mounted root; unmounting it is explicit (errors are reported).
pub trait MountedRoot: Send {
    fn path(&self) -> &Path;
    /// The mount point is now `path` (a directory above it was renamed).
    fn moved_to(&mut self, path: PathBuf);
    fn unmount(self: Box<Self>) -> Result<(), ContainerError>;
}

/// Mounts an image's layers with a container's upper directory.
pub trait RootfsProvider {
    fn mount(
        &self,
        store: &Store,
        image: &Digest,
        dirs: &RootfsDirs,
    ) -> Result<Box<dyn MountedRoot>, ContainerError>;
}

/// The strata-fs FUSE mount, served by threads of the calling process
/// (the container's monitor): layers straight from the store, nothing
/// extracted.
pub struct FuseProvider;

struct FuseMount {
    path: PathBuf,
    handle: strata_fs::MountHandle,
}

impl MountedRoot for FuseMount {
    fn path(&self) -> &Path {
        &self.path
    }
    fn moved_to(&mut self, path: PathBuf) {
        self.handle.set_mountpoint(path.clone());
        self.path = path;
    }
    fn unmount(self: Box<Self>) -> Result<(), ContainerError> {
        let path = self.path.clone();
        self.handle
            .unmount()
            .map_err(|e| ContainerError::Unsupported(format!("unmount {}: {e}", path.display())))
    }
}

impl RootfsProvider for FuseProvider {
    fn mount(
        &self,
        store: &Store,
        image: &Digest,
        dirs: &RootfsDirs,
    ) -> Result<Box<dyn MountedRoot>, ContainerError> {
        for d in [&dirs.upper, &dirs.work, &dirs.mountpoint] {
            std::fs::create_dir_all(d).map_err(|e| ContainerError::io(d, e))?;
        }
        let rows = image_layer_ids(store, image)?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let source = crate::image::StoreSource::open(store, rows)?;
        let mut config = strata_fs::MountConfig::lazy(std::sync::Arc::new(source));
        config.upper = Some(dirs.upper.clone());
        config.work = Some(dirs.work.clone());
        config.read_only = false;
        // Set-user-ID programs of the image work as under Docker;
        // device nodes do not (the container's /dev is its own tmpfs).
        config.nosuid = false;
        config.fsname = format!("strata:{}", image.short());
        // The files the launcher bind-mounts over (see monitor/prepare.rs).
        config.create_files = super::setup::ETC_FILES
            .iter()
            .map(|name| Path::new("/etc").join(name))
            .collect();
        let handle = strata_fs::spawn(config, &dirs.mountpoint).map_err(|e| {
            ContainerError::Unsupported(format!("mount {}: {e}", dirs.mountpoint.display()))
        })?;
        Ok(Box::new(FuseMount {
            path: dirs.mountpoint.clone(),
            handle,
        }))
    }
}

/// The provider in use: strata-fs (FUSE) by default; kernel overlayfs
/// over materialised layers with `STRATA_ROOTFS=overlay` (or when
/// /dev/fuse is missing).
pub fn default_provider() -> Box<dyn RootfsProvider> {
    if uses_overlay() {
        Box::new(OverlayProvider)
    } else {
        Box::new(FuseProvider)
    }
}

/// Whether containers get the kernel overlayfs fallback rather than
/// strata-fs (what [`default_provider`] chooses).
pub fn uses_overlay() -> bool {
    let wanted = std::env::var("STRATA_ROOTFS").unwrap_or_default();
    wanted == "overlay" || (wanted.is_empty() && !Path::new("/dev/fuse").exists())
}

/// Kernel overlayfs over materialised layer directories.
pub struct OverlayProvider;

struct OverlayMount {
    path: PathBuf,
}

impl MountedRoot for OverlayMount {
    fn path(&self) -> &Path {
        &self.path
    }
    fn moved_to(&mut self, path: PathBuf) {
        self.path = path;
    }
    fn unmount(self: Box<Self>) -> Result<(), ContainerError> {
        unmount_path(&self.path)
    }
}

/// Detaches whatever is mounted at `path` (no error if nothing is).
pub fn unmount_path(path: &Path) -> Result<(), ContainerError> {
    match nix::mount::umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(ContainerError::sys(
            format!("unmount {}", path.display()),
            e,
        )),
    }
}

/// Whether something is mounted exactly at `path` (host mount namespace).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let wanted = path.to_string_lossy();
    text.lines().any(|l| {
        l.split(' ')
            .nth(4)
            .is_some_and(|m| unescape_mount_path(m) == wanted)
    })
}

fn unescape_mount_path(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

impl RootfsProvider for OverlayProvider {
    fn mount(
        &self,
        store: &Store,
        image: &Digest,
        dirs: &RootfsDirs,
    ) -> Result<Box<dyn MountedRoot>, ContainerError> {
        for d in [&dirs.upper, &dirs.work, &dirs.mountpoint] {
            std::fs::create_dir_all(d).map_err(|e| ContainerError::io(d, e))?;
        }
        let mut lowers = Vec::new();
        for (layer_id, diff_id) in image_layer_ids(store, image)? {
            lowers.push(layer_dir(store, layer_id, &diff_id)?);
        }
        if lowers.is_empty() {
            let empty = layer_dirs::ensure_base(store.root())?.join("empty");
            create_private_dir(&empty)?;
            lowers.push(empty);
        }
        lowers.reverse();
        let lower = lowers
            .iter()
            .map(|p| p.to_string_lossy().to_string())
            .collect::<Vec<_>>()
            .join(":");
        let data = format!(
            "lowerdir={lower},upperdir={},workdir={},index=off,metacopy=off",
            dirs.upper.display(),
            dirs.work.display()
        );
        // Set-user-ID programs work as under Docker; device nodes do not
        // open (the container's /dev is its own).
        nix::mount::mount(
            Some("overlay"),
            &dirs.mountpoint,
            Some("overlay"),
            MsFlags::MS_NODEV,
            Some(data.as_str()),
        )
        .map_err(|e| {
            ContainerError::sys(format!("mount overlay on {}", dirs.mountpoint.display()), e)
        })?;
        Ok(Box::new(OverlayMount {
            path: dirs.mountpoint.clone(),
        }))
    }
}

/// The materialised directory of a stored layer, built on first use
/// under the layer's lock (see `store/layer_dirs.rs`): a second start of
/// the same fresh image waits for the first extraction and uses it.
fn layer_dir(store: &Store, layer_id: i64, diff_id: &Digest) -> Result<PathBuf, ContainerError> {
    let hex = diff_id.hex();
    let base = layer_dirs::ensure_base(store.root())?;
    let dir = base.join(&hex);
    let _lock = LayerLock::exclusive(store.root(), &hex)?;
    if dir.is_dir() {
        return Ok(dir);
    }
    let tmp = base.join(format!(".tmp-{hex}-{:08x}", rand::random::<u32>()));
    std::fs::create_dir(&tmp).map_err(|e| ContainerError::io(&tmp, e))?;
    let result = materialise(store, layer_id, &tmp).and_then(|()| {
        // Complete on disk before it has its name (a crash must not
        // leave a layer directory with files missing their data).
        let f = std::fs::File::open(&tmp).map_err(|e| ContainerError::io(&tmp, e))?;
        nix::unistd::syncfs(f.as_raw_fd()).map_err(|e| ContainerError::io(&tmp, e.into()))?;
        std::fs::rename(&tmp, &dir).map_err(|e| ContainerError::io(&dir, e))
    });
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    Ok(dir)
}

/// Writes a layer's entries into `dir` with overlayfs whiteouts. Entry
/// paths were validated at ingest (no `..`, no entry below a non-directory
/// of the same layer); each parent is still checked to be a real directory
/// created here before anything is written below it.
fn materialise(store: &Store, layer_id: i64, dir: &Path) -> Result<(), ContainerError> {
    let layer = crate::image::fs_layer(store, layer_id)?;
    let entries = layer_entries(store, layer_id)?;
    let mut dirs: HashSet<Vec<u8>> = HashSet::from([Vec::new()]);
    // Device nodes are never made on the host (see below).
    let mut left_out: HashSet<&[u8]> = HashSet::new();
    let mut dir_meta = Vec::new();
    let path_of = |p: &[u8]| dir.join(std::ffi::OsStr::from_encoded_bytes_unchecked_safe(p));
    // A `.` entry is ignored, as Docker ignores it (fs_layer leaves out a
    // root opaque marker likewise: overlayfs ignores it).
    for e in entries.iter().filter(|e| !e.path.is_empty()) {
        ensure_parents(dir, &e.path, &mut dirs)?;
        let target = path_of(&e.path);
        let io = |err| ContainerError::io(&target, err);
        match e.kind {
            Kind::Dir => {
                if !dirs.contains(&e.path) {
                    std::fs::create_dir(&target).map_err(io)?;
                    dirs.insert(e.path.clone());
                }
                dir_meta.push(e.clone());
                continue;
            }
            Kind::File => {
                let mut file = std::fs::File::create_new(&target).map_err(io)?;
                if let Some(digest) = e.digest {
                    let source = store.file_path(&digest);
                    let mut content = std::fs::File::open(&source)
                        .map_err(|err| ContainerError::io(&source, err))?;
                    std::io::copy(&mut content, &mut file).map_err(io)?;
                }
            }
            Kind::Symlink => {
                let link = e.link_target.clone().unwrap_or_default();
                symlink(
                    std::ffi::OsStr::from_encoded_bytes_unchecked_safe(&link),
                    &target,
                )
                .map_err(io)?;
            }
            Kind::Hardlink => {
                let link = e.link_target.clone().unwrap_or_default();
                if left_out.contains(link.as_slice()) {
                    continue;
                }
                std::fs::hard_link(path_of(&link), &target).map_err(io)?;
                continue;
            }
            Kind::CharDevice | Kind::BlockDevice => {
                // An image's device node would be a real device on the
                // host (and a char 0/0 an overlayfs whiteout): it is left
                // out, and the path is absent in the container. The
                // container's /dev is the launcher's own.
                tracing::debug!(
                    "layer {layer_id}: device node {} left out",
                    String::from_utf8_lossy(&e.path)
                );
                left_out.insert(&e.path);
                continue;
            }
            Kind::Fifo => {
                nix::sys::stat::mknod(&target, SFlag::S_IFIFO, Mode::from_bits_truncate(e.mode), 0)
                    .map_err(|err| ContainerError::io(&target, err.into()))?;
            }
        }
        apply_meta(&target, e, e.kind != Kind::Symlink)?;
    }
    for path in &layer.whiteouts {
        ensure_parents(dir, path, &mut dirs)?;
        let target = path_of(path);
        nix::sys::stat::mknod(&target, SFlag::S_IFCHR, Mode::empty(), 0)
            .map_err(|err| ContainerError::io(&target, err.into()))?;
    }
    for path in &layer.opaque_dirs {
        ensure_parents(dir, path, &mut dirs)?;
        let target = path_of(path);
        if !target.is_dir() {
            std::fs::create_dir(&target).map_err(|e| ContainerError::io(&target, e))?;
        }
        crate::container::files::upper::set_opaque(&target)?;
    }
    // Directory metadata last (deepest first), so writing into them does
    // not disturb their mtimes.
    dir_meta.sort_by_key(|e| std::cmp::Reverse(e.path.len()));
    for e in &dir_meta {
        apply_meta(&path_of(&e.path), e, true)?;
    }
    Ok(())
}

fn ensure_parents(
    dir: &Path,
    path: &[u8],
    dirs: &mut HashSet<Vec<u8>>,
) -> Result<(), ContainerError> {
    let mut prefix = Vec::new();
    let components: Vec<&[u8]> = path.split(|b| *b == b'/').collect();
    for c in &components[..components.len().saturating_sub(1)] {
        if !prefix.is_empty() {
            prefix.push(b'/');
        }
        prefix.extend_from_slice(c);
        if dirs.contains(&prefix) {
            continue;
        }
        let p = dir.join(std::ffi::OsStr::from_encoded_bytes_unchecked_safe(&prefix));
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(ContainerError::UnsafePath {
                    path: String::from_utf8_lossy(path).into(),
                    reason: "a parent is not a directory".into(),
                })
            }
            Err(_) => std::fs::create_dir(&p).map_err(|e| ContainerError::io(&p, e))?,
        }
        dirs.insert(prefix.clone());
    }
    Ok(())
}

fn apply_meta(
    path: &Path,
    e: &crate::image::LayerEntry,
    chmod: bool,
) -> Result<(), ContainerError> {
    use nix::unistd::{fchownat, Gid, Uid};
    fchownat(
        None,
        path,
        Some(Uid::from_raw(e.uid)),
        Some(Gid::from_raw(e.gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|err| ContainerError::io(path, err.into()))?;
    if chmod {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(e.mode & 0o7777))
            .map_err(|err| ContainerError::io(path, err))?;
    }
    for (name, value) in &e.xattrs {
        let _ = crate::container::files::upper::set_xattr(path, name, value);
    }
    let time = nix::sys::time::TimeSpec::new(e.mtime_sec, e.mtime_nsec as i64);
    let _ = nix::sys::stat::utimensat(
        None,
        path,
        &time,
        &time,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    );
    Ok(())
}

/// Byte paths to `OsStr` without unsafe code.
trait FromBytes {
    fn from_encoded_bytes_unchecked_safe(b: &[u8]) -> &std::ffi::OsStr;
}
impl FromBytes for std::ffi::OsStr {
    fn from_encoded_bytes_unchecked_safe(b: &[u8]) -> &std::ffi::OsStr {
        use std::os::unix::ffi::OsStrExt;
        std::ffi::OsStr::from_bytes(b)
    }
}
