//! The writable upper directory and its overlayfs conventions.
//!
//! What the upper directory holds is exactly what changed, so it can be read
//! with ordinary tools and by kernel overlayfs:
//! - a new or modified object is stored at its path (modified lower files
//!   are copied up whole, metadata and xattrs included, before the change);
//! - a deleted lower path is a whiteout: a character device 0/0;
//! - a directory that hides the lower directory at its path (it was
//!   deleted and made again) carries `trusted.overlay.opaque=y`;
//! - directories copied up only to hold a change keep the lower metadata.
//!
//! [`list_changes`] reads the changes back by walking the upper directory,
//! which costs O(changes), never a walk of the image.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat, XattrFlags};

use crate::dirlayer::{OVERLAY_OPAQUE_XATTR, OVERLAY_XATTR_PREFIX};
use crate::redirect::Redirect;
use crate::xattr;

/// Errors about the upper directory itself (mount time, change listing).
#[derive(Debug, thiserror::Error)]
pub enum UpperError {
    #[error("upper directory {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The root of the upper directory, held open for the whole mount.
#[derive(Debug)]
pub struct Upper {
    pub root: OwnedFd,
    pub path: PathBuf,
}

impl Upper {
    pub fn open(path: &Path) -> Result<Upper, UpperError> {
        let root = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| UpperError::Io {
            path: path.to_path_buf(),
            source: e.into(),
        })?;
        Ok(Upper {
            root,
            path: path.to_path_buf(),
        })
    }
}

/// Marks a character device 0/0 that a user made (`mknod c 0 0`) as a
/// device rather than a whiteout. Kernel overlayfs refuses to create such
/// devices (EPERM); strata keeps them, and only strata tells them apart.
pub const DEVICE_MARKER_XATTR: &str = "trusted.strata.device";

/// Whether `st` looks like a whiteout (character device 0/0); confirm with
/// [`is_whiteout_at`], which also checks for the device marker.
pub fn may_be_whiteout(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice && st.st_rdev == 0
}

/// Whether the object at `path` (stat `st`, not followed) is a whiteout.
pub fn is_whiteout_at(path: &Path, st: &Stat) -> io::Result<bool> {
    if !may_be_whiteout(st) {
        return Ok(false);
    }
    Ok(xattr::get(path, DEVICE_MARKER_XATTR.as_bytes(), false)?.is_none())
}

/// Whether the `O_PATH` descriptor `fd` (stat `st`) is a whiteout.
pub fn is_whiteout_fd(fd: impl AsFd, st: &Stat) -> io::Result<bool> {
    if !may_be_whiteout(st) {
        return Ok(false);
    }
    Ok(xattr::get(&xattr::proc_path(fd), DEVICE_MARKER_XATTR.as_bytes(), true)?.is_none())
}

/// Marks the new character device 0/0 `name` in `dir` as a device (see
/// [`DEVICE_MARKER_XATTR`]).
pub fn mark_device(dir: impl AsFd, name: &[u8]) -> io::Result<()> {
    let path = xattr::proc_path(dir).join(std::ffi::OsStr::from_bytes(name));
    let name = std::ffi::OsStr::new(DEVICE_MARKER_XATTR);
    Ok(rustix::fs::lsetxattr(
        &path,
        name,
        b"y",
        XattrFlags::empty(),
    )?)
}

pub fn make_whiteout(dir: impl AsFd, name: &[u8]) -> io::Result<()> {
    rustix::fs::mknodat(
        dir,
        std::ffi::OsStr::from_bytes(name),
        FileType::CharacterDevice,
        Mode::empty(),
        0,
    )?;
    Ok(())
}

/// The overlayfs redirect xattr: a renamed merged directory names the
/// lower directory it still shows (see [`crate::redirect`]).
pub use crate::redirect::REDIRECT_XATTR;

/// The redirect of a renamed merged directory, if it carries one.
pub fn redirect(fd: impl AsFd) -> io::Result<Option<Redirect>> {
    let v = xattr::get(&xattr::proc_path(fd), REDIRECT_XATTR.as_bytes(), true)?;
    Ok(v.map(|v| Redirect::parse(&v)).transpose()?)
}

pub fn set_redirect(fd: impl AsFd, lower_path: &[u8]) -> io::Result<()> {
    let value = [b"/", lower_path].concat();
    xattr::set(
        &xattr::proc_path(fd),
        REDIRECT_XATTR.as_bytes(),
        &value,
        XattrFlags::empty(),
    )
}

pub fn is_opaque(fd: impl AsFd) -> io::Result<bool> {
    let v = xattr::get(&xattr::proc_path(fd), OVERLAY_OPAQUE_XATTR.as_bytes(), true)?;
    Ok(v.as_deref() == Some(b"y"))
}

pub fn set_opaque(fd: impl AsFd) -> io::Result<()> {
    xattr::set(
        &xattr::proc_path(fd),
        OVERLAY_OPAQUE_XATTR.as_bytes(),
        b"y",
        XattrFlags::empty(),
    )
}

/// One name of an upper directory.
#[derive(Debug, Clone)]
pub struct UpperName {
    pub name: Vec<u8>,
    pub file_type: FileType,
    pub whiteout: bool,
}

/// The names in the upper directory `dir` (an `O_PATH` descriptor).
pub fn read_names(dir: impl AsFd) -> io::Result<Vec<UpperName>> {
    let dir = dir.as_fd();
    let fd = rustix::fs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut out = Vec::new();
    for entry in rustix::fs::Dir::read_from(&fd)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let mut file_type = entry.file_type();
        let mut whiteout = false;
        if file_type == FileType::CharacterDevice || file_type == FileType::Unknown {
            let st = rustix::fs::statat(dir, entry.file_name(), AtFlags::SYMLINK_NOFOLLOW)?;
            file_type = FileType::from_raw_mode(st.st_mode);
            if may_be_whiteout(&st) {
                let path = xattr::proc_path(dir).join(std::ffi::OsStr::from_bytes(name));
                whiteout = is_whiteout_at(&path, &st)?;
            }
        }
        out.push(UpperName {
            name: name.to_vec(),
            file_type,
            whiteout,
        });
    }
    Ok(out)
}

/// Removes the whiteouts of an upper directory that is otherwise empty, so
/// it can be removed or replaced. Fails with ENOTEMPTY if something else is
/// in it.
pub fn clear_whiteouts(dir: impl AsFd) -> io::Result<()> {
    let dir = dir.as_fd();
    let names = read_names(dir)?;
    if names.iter().any(|n| !n.whiteout) {
        return Err(io::Error::from_raw_os_error(libc::ENOTEMPTY));
    }
    for n in names {
        rustix::fs::unlinkat(dir, std::ffi::OsStr::from_bytes(&n.name), AtFlags::empty())?;
    }
    Ok(())
}

/// Copies the content of `src` into `dst`: a reflink where the filesystem
/// shares extents, else `copy_file_range`, else plain reads and writes.
pub fn copy_data(src: &File, dst: &File) -> io::Result<()> {
    if rustix::fs::ioctl_ficlone(dst, src).is_ok() {
        return Ok(());
    }
    let mut copied_any = false;
    loop {
        match rustix::fs::copy_file_range(src, None, dst, None, 1 << 30) {
            Ok(0) => return Ok(()),
            Ok(_) => copied_any = true,
            Err(e)
                if !copied_any
                    && (e == rustix::io::Errno::XDEV
                        || e == rustix::io::Errno::INVAL
                        || e == rustix::io::Errno::NOSYS
                        || e == rustix::io::Errno::OPNOTSUPP) =>
            {
                break
            }
            Err(e) => return Err(e.into()),
        }
    }
    let mut buf = vec![0u8; 1 << 20];
    let (mut src, mut dst) = (src, dst);
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        dst.write_all(&buf[..n])?;
    }
}

/// What one upper-directory entry says about the merged tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    /// The path was deleted (whiteout).
    Deleted,
    /// A directory that hides everything below it in the lower layers.
    OpaqueDir,
    /// A directory present in the upper directory (new, or copied up to
    /// hold changes below it; compare with the lower tree to tell).
    Dir,
    /// A new or modified non-directory.
    Modified,
    /// A lower directory renamed here: it shows the lower directory at
    /// `from` (relative path; a relative redirect is resolved against the
    /// parent's lower path) merged with what is below it here. A layer
    /// must carry those lower contents: see [`crate::layer_changes`].
    RedirectedDir { from: Vec<u8> },
}

/// One change of an upper directory; `path` is relative, without `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub path: Vec<u8>,
    pub kind: ChangeKind,
}

/// Lists the changes an upper directory records, parents before children.
pub fn list_changes(upper: &Path) -> Result<Vec<Change>, UpperError> {
    let mut out = Vec::new();
    walk_changes(upper, Vec::new(), Some(Vec::new()), &mut out).map_err(|source| {
        UpperError::Io {
            path: upper.to_path_buf(),
            source,
        }
    })?;
    Ok(out)
}

/// `lower`: the lower path the directory `dir` shows, if any (what a
/// relative redirect below it is resolved against).
fn walk_changes(
    dir: &Path,
    rel: Vec<u8>,
    lower: Option<Vec<u8>>,
    out: &mut Vec<Change>,
) -> io::Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let child = crate::redirect::join(&rel, name.as_bytes());
        let st = rustix::fs::lstat(&path)?;
        if is_whiteout_at(&path, &st)? {
            out.push(Change {
                path: child,
                kind: ChangeKind::Deleted,
            });
        } else if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            let opaque = xattr::get(&path, OVERLAY_OPAQUE_XATTR.as_bytes(), false)?;
            let redirect = xattr::get(&path, REDIRECT_XATTR.as_bytes(), false)?;
            let natural = lower
                .as_deref()
                .map(|l| crate::redirect::join(l, name.as_bytes()));
            let (kind, shows) = match (opaque.as_deref(), redirect) {
                (Some(b"y"), _) => (ChangeKind::OpaqueDir, None),
                (_, Some(value)) => match Redirect::parse(&value)?.lower_path(lower.as_deref()) {
                    Some(from) => (ChangeKind::RedirectedDir { from: from.clone() }, Some(from)),
                    None => (ChangeKind::Dir, None),
                },
                _ => (ChangeKind::Dir, natural),
            };
            out.push(Change {
                path: child.clone(),
                kind,
            });
            walk_changes(&path, child, shows, out)?;
        } else {
            out.push(Change {
                path: child,
                kind: ChangeKind::Modified,
            });
        }
    }
    Ok(())
}

/// The xattrs of the upper object at `path` (not followed) that the mount
/// shows: all but the reserved ones.
pub fn visible_xattrs(path: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut all = xattr::list_path(path, false)?;
    all.retain(|(name, _)| !is_reserved_xattr(name));
    Ok(all)
}

/// Whether an xattr name is reserved by the overlay conventions (or the
/// device marker); such names never show through a mount.
pub fn is_reserved_xattr(name: &[u8]) -> bool {
    name.starts_with(OVERLAY_XATTR_PREFIX) || name == DEVICE_MARKER_XATTR.as_bytes()
}
