//! `commit`'s layer: the container's changes (`upper::layer_changes`) as
//! an OCI layer tar. Upper objects are read from the upper directory
//! (never following symlinks), carried lower objects (a renamed
//! directory's contents) from the image's tree, their content from the
//! store's files; whiteouts become `.wh.` entries, opaque directories get
//! `.wh..wh..opq`, repeated objects hard links, xattrs PAX records.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use strata_fs::tree::{Node, NodeKind};
use strata_fs::LayerChangeKind;

use super::upper::{join, layer_changes, ImagePaths};
use crate::container::error::ContainerError;

type Builder<'a> = tar::Builder<&'a mut dyn Write>;

/// Writes the changes of `upper` over `image` as a layer tar to `out`.
pub fn write_changes_tar(
    upper: &Path,
    image: &ImagePaths,
    out: &mut dyn Write,
) -> Result<(), ContainerError> {
    write_layer_tar(upper, image, layer_changes(upper, image)?, out)
}

/// Writes `changes` (of `upper` over `image`, as `strata_fs::layer_changes`
/// lists them) as a layer tar to `out`: for a caller that filters the
/// list itself, or not at all (a containerd snapshot's upper directory,
/// which no launcher wrote into).
pub fn write_layer_tar(
    upper: &Path,
    image: &ImagePaths,
    changes: Vec<strata_fs::LayerChange>,
    out: &mut dyn Write,
) -> Result<(), ContainerError> {
    let mut builder: Builder = tar::Builder::new(out);
    builder.mode(tar::HeaderMode::Complete);
    for change in changes {
        let rel = change.path.as_slice();
        let name = String::from_utf8_lossy(rel).into_owned();
        let host = upper.join(std::ffi::OsStr::from_bytes(rel));
        let io = |e: std::io::Error| ContainerError::io(&host, e);
        match &change.kind {
            LayerChangeKind::Whiteout => {
                let (dir, base) = strata_fs::tree::split_parent(rel);
                let marker = join(dir, &[b".wh.", base].concat());
                append_marker(&mut builder, &marker).map_err(io)?;
            }
            LayerChangeKind::Opaque => {
                append_marker(&mut builder, &join(rel, b".wh..wh..opq")).map_err(io)?;
            }
            LayerChangeKind::Link(target) | LayerChangeKind::KeptLink(target) => {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Link);
                h.set_mode(0o644);
                h.set_size(0);
                let target = String::from_utf8_lossy(target).into_owned();
                builder.append_link(&mut h, &name, &target).map_err(io)?;
            }
            LayerChangeKind::Upper => append_upper(&mut builder, &host, &name)?,
            LayerChangeKind::Lower(id) => {
                let node = image.tree().node(*id).ok_or_else(|| {
                    ContainerError::io(
                        format!("image path /{name}"),
                        std::io::Error::other("vanished from the image's tree"),
                    )
                })?;
                append_lower(&mut builder, node, &name)?;
            }
        }
    }
    builder.finish().map_err(|e| ContainerError::io(upper, e))?;
    Ok(())
}

/// An empty marker file (`.wh.NAME`, `.wh..wh..opq`).
fn append_marker(builder: &mut Builder, path: &[u8]) -> std::io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(0);
    h.set_mode(0o644);
    let path = String::from_utf8_lossy(path).into_owned();
    builder.append_data(&mut h, path, std::io::empty())
}

/// The object at `host` in the upper directory, as `name`.
fn append_upper(builder: &mut Builder, host: &Path, name: &str) -> Result<(), ContainerError> {
    let io = |e: std::io::Error| ContainerError::io(host, e);
    let meta = std::fs::symlink_metadata(host).map_err(io)?;
    let ft = meta.file_type();
    let times = (meta.mtime().max(0) as u64, meta.uid(), meta.gid());
    let mut h = header(meta.mode(), times);
    let xattrs = strata_fs::upper::visible_xattrs(host).map_err(io)?;
    if ft.is_socket() {
        return Ok(()); // sockets are not carried in layers
    }
    append_xattrs(builder, &xattrs).map_err(io)?;
    if ft.is_dir() {
        h.set_entry_type(tar::EntryType::Directory);
        builder
            .append_data(&mut h, format!("{name}/"), std::io::empty())
            .map_err(io)
    } else if ft.is_symlink() {
        let target = std::fs::read_link(host).map_err(io)?;
        h.set_entry_type(tar::EntryType::Symlink);
        builder.append_link(&mut h, name, &target).map_err(io)
    } else if ft.is_file() {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(host)
            .map_err(io)?;
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(meta.len());
        builder.append_data(&mut h, name, file).map_err(io)
    } else {
        let kind = if ft.is_char_device() {
            tar::EntryType::Char
        } else if ft.is_block_device() {
            tar::EntryType::Block
        } else {
            tar::EntryType::Fifo
        };
        h.set_entry_type(kind);
        set_device(&mut h, meta.rdev()).map_err(io)?;
        builder
            .append_data(&mut h, name, std::io::empty())
            .map_err(io)
    }
}

/// A node of the image's tree (a renamed directory's lower content), as
/// `name`; a regular file's content is its store file.
fn append_lower(builder: &mut Builder, node: &Node, name: &str) -> Result<(), ContainerError> {
    let io = |e: std::io::Error| ContainerError::io(format!("image path /{name}"), e);
    let mut h = header(
        node.mode,
        (node.mtime_sec.max(0) as u64, node.uid, node.gid),
    );
    let xattrs: Vec<(Vec<u8>, Vec<u8>)> = node
        .xattrs
        .iter()
        .map(|(n, v)| (n.to_vec(), v.to_vec()))
        .collect();
    append_xattrs(builder, &xattrs).map_err(io)?;
    match &node.kind {
        NodeKind::Dir { .. } => {
            h.set_entry_type(tar::EntryType::Directory);
            builder
                .append_data(&mut h, format!("{name}/"), std::io::empty())
                .map_err(io)
        }
        NodeKind::File { size, backing } => {
            let backing = backing
                .as_ref()
                .ok_or_else(|| io(std::io::Error::other("file without content")))?;
            let file = std::fs::File::open(backing).map_err(|e| ContainerError::io(backing, e))?;
            let len = file
                .metadata()
                .map_err(|e| ContainerError::io(backing, e))?
                .len();
            if len != *size {
                return Err(ContainerError::io(
                    backing,
                    std::io::Error::other(format!("size {len}, the image says {size}")),
                ));
            }
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(*size);
            builder.append_data(&mut h, name, file).map_err(io)
        }
        NodeKind::Symlink { target } => {
            h.set_entry_type(tar::EntryType::Symlink);
            let target = std::ffi::OsStr::from_bytes(target);
            builder.append_link(&mut h, name, target).map_err(io)
        }
        NodeKind::CharDevice { rdev } | NodeKind::BlockDevice { rdev } => {
            h.set_entry_type(if matches!(node.kind, NodeKind::CharDevice { .. }) {
                tar::EntryType::Char
            } else {
                tar::EntryType::Block
            });
            set_device(&mut h, *rdev).map_err(io)?;
            builder
                .append_data(&mut h, name, std::io::empty())
                .map_err(io)
        }
        NodeKind::Fifo => {
            h.set_entry_type(tar::EntryType::Fifo);
            builder
                .append_data(&mut h, name, std::io::empty())
                .map_err(io)
        }
    }
}

fn header(mode: u32, (mtime, uid, gid): (u64, u32, u32)) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mode(mode & 0o7777);
    h.set_uid(uid.into());
    h.set_gid(gid.into());
    h.set_mtime(mtime);
    h.set_size(0);
    h
}

fn set_device(h: &mut tar::Header, rdev: u64) -> std::io::Result<()> {
    h.set_device_major(nix::sys::stat::major(rdev) as u32)?;
    h.set_device_minor(nix::sys::stat::minor(rdev) as u32)
}

/// A PAX header with the next entry's xattrs (`SCHILY.xattr.NAME`), which
/// the store's ingest reads back.
fn append_xattrs(builder: &mut Builder, xattrs: &[(Vec<u8>, Vec<u8>)]) -> std::io::Result<()> {
    if xattrs.is_empty() {
        return Ok(());
    }
    let mut data = Vec::new();
    for (name, value) in xattrs {
        let key = [b"SCHILY.xattr.", name.as_slice()].concat();
        // "LEN KEY=VALUE\n", LEN counting its own digits.
        let rest = 1 + key.len() + 1 + value.len() + 1;
        let mut len = rest + 1;
        while len.to_string().len() + rest != len {
            len = len.to_string().len() + rest;
        }
        data.extend_from_slice(format!("{len} ").as_bytes());
        data.extend_from_slice(&key);
        data.push(b'=');
        data.extend_from_slice(value);
        data.push(b'\n');
    }
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    builder.append_data(&mut h, "PaxHeaders/xattrs", data.as_slice())
}
