//! The container's upper directory, in overlayfs conventions: what
//! changed (for `diff`), and the changes as a layer tar with OCI
//! whiteouts (for `commit`). Walks never follow symlinks; cost is
//! proportional to the changes, not the image.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::{sys, ContainerError};
use crate::digest::Digest;
use crate::image::image_layer_ids;
use crate::store::Store;

const OPAQUE: &[u8] = b"trusted.overlay.opaque";

pub fn set_xattr(path: &Path, name: &[u8], value: &[u8]) -> Result<(), ContainerError> {
    sys::lsetxattr(path, name, value).map_err(|e| ContainerError::io(path, e.into()))
}

pub fn set_opaque(path: &Path) -> Result<(), ContainerError> {
    set_xattr(path, OPAQUE, b"y")
}

pub fn is_opaque(path: &Path) -> bool {
    matches!(sys::lgetxattr(path, OPAQUE), Ok(Some(v)) if v == b"y")
}

fn is_whiteout(meta: &std::fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// What happened to a path, as `docker diff` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ChangeKind {
    #[serde(rename = "C")]
    Changed,
    #[serde(rename = "A")]
    Added,
    #[serde(rename = "D")]
    Deleted,
}

impl ChangeKind {
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Changed => 'C',
            ChangeKind::Added => 'A',
            ChangeKind::Deleted => 'D',
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    pub kind: ChangeKind,
    /// Absolute path inside the container.
    pub path: String,
}

/// An image's merged tree (whiteouts and opaque directories applied),
/// read from the store only along the paths asked about, so `diff` costs
/// O(changes), not O(image).
pub struct ImagePaths(strata_fs::tree::Tree);

impl ImagePaths {
    pub fn open(store: &Store, image: &Digest) -> Result<ImagePaths, ContainerError> {
        let rows = image_layer_ids(store, image)?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let source = crate::image::StoreSource::open(store, rows)?;
        let tree = strata_fs::tree::Tree::lazy(std::sync::Arc::new(source))
            .map_err(|e| ContainerError::io("strata.db", e))?;
        Ok(ImagePaths(tree))
    }

    /// Whether the image has `rel` (relative, no leading `/`).
    pub fn contains(&self, rel: &[u8]) -> Result<bool, ContainerError> {
        Ok(self
            .0
            .lookup_path(rel)
            .map_err(|e| ContainerError::io("strata.db", e))?
            .is_some())
    }
}

/// Mount targets the launcher creates when the image lacks them (Docker
/// keeps these in its "init" layer); they are not changes of the container.
const LAUNCHER_PATHS: &[&[u8]] = &[
    b"proc",
    b"dev",
    b"sys",
    b"etc/hostname",
    b"etc/hosts",
    b"etc/resolv.conf",
];

fn launcher_made(rel: &[u8], meta: &std::fs::Metadata, in_image: bool) -> bool {
    LAUNCHER_PATHS.contains(&rel) && !in_image && (meta.is_dir() || meta.len() == 0)
}

/// Lists the changes recorded in `upper`, sorted by path.
pub fn list_changes(upper: &Path, image: &ImagePaths) -> Result<Vec<Change>, ContainerError> {
    let mut out = Vec::new();
    walk(upper, Vec::new(), &mut |rel, meta, _| {
        let in_image = image.contains(rel)?;
        if launcher_made(rel, meta, in_image) {
            return Ok(());
        }
        let path = format!("/{}", String::from_utf8_lossy(rel));
        let kind = if is_whiteout(meta) {
            ChangeKind::Deleted
        } else if in_image {
            ChangeKind::Changed
        } else {
            ChangeKind::Added
        };
        out.push(Change { kind, path });
        Ok(())
    })?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

type Visit<'a> = dyn FnMut(&[u8], &std::fs::Metadata, &Path) -> Result<(), ContainerError> + 'a;

/// Visits every entry below `dir` (parents before children), by lstat.
fn walk(dir: &Path, rel: Vec<u8>, visit: &mut Visit) -> Result<(), ContainerError> {
    let base = if rel.is_empty() {
        dir.to_path_buf()
    } else {
        dir.join(std::ffi::OsStr::from_bytes(&rel))
    };
    let mut names: Vec<Vec<u8>> = std::fs::read_dir(&base)
        .map_err(|e| ContainerError::io(&base, e))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().as_bytes().to_vec())
        .collect();
    names.sort();
    for name in names {
        let mut child = rel.clone();
        if !child.is_empty() {
            child.push(b'/');
        }
        child.extend_from_slice(&name);
        let path = dir.join(std::ffi::OsStr::from_bytes(&child));
        let meta = std::fs::symlink_metadata(&path).map_err(|e| ContainerError::io(&path, e))?;
        visit(&child, &meta, &path)?;
        if meta.is_dir() {
            walk(dir, child, visit)?;
        }
    }
    Ok(())
}

/// Writes the changes in `upper` as an OCI layer tar: whiteouts become
/// `.wh.` entries, opaque directories get `.wh..wh..opq`. The launcher's
/// empty mount targets are left out (see [`LAUNCHER_PATHS`]).
pub fn write_changes_tar(upper: &Path, out: &mut dyn Write) -> Result<(), ContainerError> {
    write_tar(upper, out, true)
}

/// [`write_changes_tar`] keeping every entry: for an upper directory no
/// launcher wrote into (a containerd snapshot's).
pub fn write_upper_tar(upper: &Path, out: &mut dyn Write) -> Result<(), ContainerError> {
    write_tar(upper, out, false)
}

fn write_tar(
    upper: &Path,
    out: &mut dyn Write,
    skip_launcher_paths: bool,
) -> Result<(), ContainerError> {
    let mut builder = tar::Builder::new(out);
    builder.mode(tar::HeaderMode::Complete);
    let io = |p: &Path, e: std::io::Error| ContainerError::io(p, e);
    walk(upper, Vec::new(), &mut |rel, meta, path| {
        if skip_launcher_paths
            && LAUNCHER_PATHS.contains(&rel)
            && (meta.is_dir() || meta.len() == 0)
        {
            return Ok(());
        }
        let name = String::from_utf8_lossy(rel).to_string();
        if is_whiteout(meta) {
            let (parent, base) = match name.rsplit_once('/') {
                Some((p, b)) => (format!("{p}/"), b.to_string()),
                None => (String::new(), name.clone()),
            };
            let mut h = header(meta, tar::EntryType::Regular);
            h.set_size(0);
            h.set_mode(0o644);
            builder
                .append_data(&mut h, format!("{parent}.wh.{base}"), std::io::empty())
                .map_err(|e| io(path, e))?;
            return Ok(());
        }
        let ft = meta.file_type();
        if ft.is_dir() {
            let mut h = header(meta, tar::EntryType::Directory);
            builder
                .append_data(&mut h, format!("{name}/"), std::io::empty())
                .map_err(|e| io(path, e))?;
            if is_opaque(path) {
                let mut h = header(meta, tar::EntryType::Regular);
                h.set_size(0);
                h.set_mode(0o644);
                builder
                    .append_data(&mut h, format!("{name}/.wh..wh..opq"), std::io::empty())
                    .map_err(|e| io(path, e))?;
            }
        } else if ft.is_symlink() {
            let target = std::fs::read_link(path).map_err(|e| io(path, e))?;
            let mut h = header(meta, tar::EntryType::Symlink);
            builder
                .append_link(&mut h, &name, &target)
                .map_err(|e| io(path, e))?;
        } else if ft.is_file() {
            use std::os::unix::fs::OpenOptionsExt;
            let file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(path)
                .map_err(|e| io(path, e))?;
            let mut h = header(meta, tar::EntryType::Regular);
            h.set_size(meta.len());
            builder
                .append_data(&mut h, &name, file)
                .map_err(|e| io(path, e))?;
        } else {
            let kind = if ft.is_char_device() {
                tar::EntryType::Char
            } else if ft.is_block_device() {
                tar::EntryType::Block
            } else if ft.is_fifo() {
                tar::EntryType::Fifo
            } else {
                return Ok(()); // sockets are not carried in layers
            };
            let mut h = header(meta, kind);
            let rdev = meta.rdev();
            h.set_device_major(nix::sys::stat::major(rdev) as u32)
                .map_err(|e| io(path, e))?;
            h.set_device_minor(nix::sys::stat::minor(rdev) as u32)
                .map_err(|e| io(path, e))?;
            builder
                .append_data(&mut h, &name, std::io::empty())
                .map_err(|e| io(path, e))?;
        }
        Ok(())
    })?;
    builder.finish().map_err(|e| io(upper, e))?;
    Ok(())
}

fn header(meta: &std::fs::Metadata, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(meta.mode() & 0o7777);
    h.set_uid(meta.uid() as u64);
    h.set_gid(meta.gid() as u64);
    h.set_mtime(meta.mtime().max(0) as u64);
    h.set_size(0);
    h
}
