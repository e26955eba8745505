//! Loading a plain directory as a read-only [`Layer`].
//!
//! Understands both whiteout conventions, so a `stratafs` lower directory
//! may come from an extracted OCI layer or from an overlayfs upper:
//! - OCI: `dir/.wh.NAME` removes `dir/NAME`, `dir/.wh..wh..opq` makes `dir`
//!   opaque;
//! - overlayfs: a character device 0/0 removes its own path, the xattr
//!   `trusted.overlay.opaque=y` makes a directory opaque, and
//!   `trusted.overlay.redirect` marks a renamed merged directory (an old
//!   upper directory used as a lower layer): the layers below are read at
//!   the redirect, absolute or relative (see [`crate::redirect`]).
//!
//! Files sharing an inode become one file entry plus hard-link entries.
//! Regular files are backed by their own path (absolute), so the mount can
//! pass them through to the kernel. Directories given here are trusted
//! (they are named by the operator, not taken from an image).

use std::collections::HashMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::layer::{Entry, EntryKind, Layer};
use crate::redirect::{Redirect, REDIRECT_XATTR};
use crate::tree::{OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::xattr;

/// Why a directory could not be read as a layer.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("reading layer directory {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("layer directory {0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("{path}: {source}")]
    Redirect {
        path: PathBuf,
        #[source]
        source: crate::redirect::InvalidRedirect,
    },
}

/// The overlayfs opaque xattr, also written by strata's upper directories.
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// Prefix of the xattrs overlayfs reserves; never shown through a mount.
pub const OVERLAY_XATTR_PREFIX: &[u8] = b"trusted.overlay.";

/// Reads the directory `root` (recursively) into a layer.
pub fn load_dir_layer(root: &Path) -> Result<Layer, LayerError> {
    let root = std::path::absolute(root).map_err(|source| LayerError::Io {
        path: root.to_path_buf(),
        source,
    })?;
    let meta = fs::symlink_metadata(&root).map_err(|source| LayerError::Io {
        path: root.clone(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(LayerError::NotADirectory(root));
    }
    let mut loader = Loader {
        layer: Layer::default(),
        inodes: HashMap::new(),
    };
    loader.add(&root, Vec::new(), &meta)?;
    loader.walk(&root, Vec::new())?;
    Ok(loader.layer)
}

struct Loader {
    layer: Layer,
    /// (dev, ino) of multiply-linked files → first path seen.
    inodes: HashMap<(u64, u64), Vec<u8>>,
}

impl Loader {
    fn walk(&mut self, dir: &Path, rel: Vec<u8>) -> Result<(), LayerError> {
        let io_err = |source| LayerError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut names: Vec<_> = fs::read_dir(dir)
            .map_err(io_err)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io_err)?;
        names.sort();
        for name in names {
            let bytes = name.as_bytes();
            let path = dir.join(&name);
            if bytes == OPAQUE_MARKER {
                self.layer.opaque_dirs.push(rel.clone());
                continue;
            }
            if let Some(hidden) = bytes.strip_prefix(WHITEOUT_PREFIX) {
                self.layer.whiteouts.push(join(&rel, hidden));
                continue;
            }
            let meta = fs::symlink_metadata(&path).map_err(|source| LayerError::Io {
                path: path.clone(),
                source,
            })?;
            let child = join(&rel, bytes);
            if meta.file_type().is_char_device() && meta.rdev() == 0 && !is_marked_device(&path)? {
                self.layer.whiteouts.push(child);
                continue;
            }
            self.add(&path, child.clone(), &meta)?;
            if meta.is_dir() {
                self.walk(&path, child)?;
            }
        }
        Ok(())
    }

    fn add(&mut self, path: &Path, rel: Vec<u8>, meta: &fs::Metadata) -> Result<(), LayerError> {
        let io_err = |source| LayerError::Io {
            path: path.to_path_buf(),
            source,
        };
        let ft = meta.file_type();
        let mut xattrs = xattr::list_path(path, false).map_err(io_err)?;
        if ft.is_dir()
            && xattrs
                .iter()
                .any(|(n, v)| n == OVERLAY_OPAQUE_XATTR.as_bytes() && v == b"y")
        {
            self.layer.opaque_dirs.push(rel.clone());
        }
        let redirect = xattrs
            .iter()
            .find(|(n, _)| n == REDIRECT_XATTR.as_bytes())
            .map(|(_, v)| v.clone());
        if let Some(value) = redirect.filter(|_| ft.is_dir() && !rel.is_empty()) {
            Redirect::parse(&value).map_err(|source| LayerError::Redirect {
                path: path.to_path_buf(),
                source,
            })?;
            self.layer.redirects.push((rel.clone(), value));
        }
        xattrs.retain(|(n, _)| !crate::upper::is_reserved_xattr(n));
        let kind = if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_file() {
            let key = (meta.dev(), meta.ino());
            match self.inodes.get(&key) {
                Some(first) if meta.nlink() > 1 => EntryKind::Hardlink {
                    target: first.clone(),
                },
                _ => {
                    if meta.nlink() > 1 {
                        self.inodes.insert(key, rel.clone());
                    }
                    EntryKind::File {
                        size: meta.size(),
                        backing: path.to_path_buf(),
                    }
                }
            }
        } else if ft.is_symlink() {
            let target = fs::read_link(path).map_err(io_err)?;
            EntryKind::Symlink {
                target: target.as_os_str().as_bytes().to_vec(),
            }
        } else if ft.is_char_device() {
            EntryKind::CharDevice {
                major: libc::major(meta.rdev()),
                minor: libc::minor(meta.rdev()),
            }
        } else if ft.is_block_device() {
            EntryKind::BlockDevice {
                major: libc::major(meta.rdev()),
                minor: libc::minor(meta.rdev()),
            }
        } else if ft.is_fifo() {
            EntryKind::Fifo
        } else {
            tracing::warn!(path = %path.display(), "socket skipped in layer");
            return Ok(());
        };
        self.layer.entries.push(Entry {
            path: rel,
            kind,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            mtime_sec: meta.mtime(),
            mtime_nsec: meta.mtime_nsec() as u32,
            xattrs,
        });
        Ok(())
    }
}

/// A character device 0/0 carrying strata's device marker is a device.
fn is_marked_device(path: &Path) -> Result<bool, LayerError> {
    let marker = xattr::get(path, crate::upper::DEVICE_MARKER_XATTR.as_bytes(), false);
    marker
        .map(|m| m.is_some())
        .map_err(|source| LayerError::Io {
            path: path.to_path_buf(),
            source,
        })
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        name.to_vec()
    } else {
        [dir, b"/", name].concat()
    }
}
