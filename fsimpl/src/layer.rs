//! The input of a mount: read-only layers described entry by entry.
//!
//! A [`Layer`] is what one image layer contributes: its entries (files,
//! directories, links, devices), the paths it whites out, and the
//! directories it makes opaque. Paths are relative byte strings without a
//! leading `/` (`b""` is the layer's root directory, `b"usr/bin/env"` a
//! file); they are already validated by whoever built the layer (no `..`,
//! no empty components). Whiteouts, opaque markers and redirects apply only
//! to the layers below the one that carries them, as the OCI image spec
//! (and overlayfs, for redirects) says.

use std::path::PathBuf;

/// What kind of object an entry is, with what that kind needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file whose content is the whole of `backing` (a read-only
    /// store file, or a file in a plain directory layer).
    File {
        size: u64,
        backing: PathBuf,
    },
    Dir,
    Symlink {
        target: Vec<u8>,
    },
    /// A hard link to another entry of the same layer (`target` is that
    /// entry's path); the two share one inode in the mount.
    Hardlink {
        target: Vec<u8>,
    },
    CharDevice {
        major: u32,
        minor: u32,
    },
    BlockDevice {
        major: u32,
        minor: u32,
    },
    Fifo,
}

/// One object of a layer with its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: Vec<u8>,
    pub kind: EntryKind,
    /// Permission bits including setuid, setgid and sticky (mode & 0o7777).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_sec: i64,
    pub mtime_nsec: u32,
    /// Extended attributes, name and value, in the order the layer gave them.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// One read-only layer of a mount.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layer {
    pub entries: Vec<Entry>,
    /// Paths removed from the layers below (`dir/name` for `dir/.wh.name`).
    pub whiteouts: Vec<Vec<u8>>,
    /// Directories whose lower contents are hidden (`dir` for
    /// `dir/.wh..wh..opq`; `b""` for the root).
    pub opaque_dirs: Vec<Vec<u8>>,
    /// Directories of this layer that are renamed merged directories: the
    /// path and its overlayfs redirect as stored (`/a/b` or a bare name,
    /// see [`crate::redirect`]). The layers below are read at the
    /// redirect instead of the path. Only plain directory layers (an old
    /// upper directory) carry them; OCI layers never do.
    pub redirects: Vec<(Vec<u8>, Vec<u8>)>,
}
