//! Reading and writing a container's tree through directory fds, one name
//! at a time, never following a symlink: whatever the container does to
//! its tree meanwhile (a directory swapped for a symlink to `/`), a walk
//! stays inside the tree it started in.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fstatat, FileStat, Mode, SFlag};

use crate::container::error::ContainerError;

fn err(path: &str, e: nix::Error) -> ContainerError {
    ContainerError::io(path, e.into())
}

fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// Opens `name` (one component) in `dir` as a directory, refusing symlinks.
pub fn open_dir_at(dir: BorrowedFd, name: &[u8], shown: &str) -> Result<OwnedFd, ContainerError> {
    nix::fcntl::openat(
        Some(dir.as_raw_fd()),
        std::ffi::OsStr::from_bytes(name),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map(crate::container::sys::own_fd)
    .map_err(|e| err(shown, e))
}

fn names(dir: BorrowedFd, shown: &str) -> Result<Vec<Vec<u8>>, ContainerError> {
    let dup = nix::unistd::dup(dir.as_raw_fd()).map_err(|e| err(shown, e))?;
    let mut d = nix::dir::Dir::from_fd(dup).map_err(|e| err(shown, e))?;
    let mut out: Vec<Vec<u8>> = d
        .iter()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_bytes().to_vec())
        .filter(|n| n != b"." && n != b"..")
        .collect();
    out.sort();
    Ok(out)
}

fn header_for(st: &FileStat, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(st.st_uid as u64);
    h.set_gid(st.st_gid as u64);
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(0);
    h
}

/// The files of a walk with more than one link, by device and inode:
/// the path the first was written under. Later names of the same file
/// are written as hard links to it, as Docker's archives write them.
pub type Links = std::collections::HashMap<(u64, u64), String>;

/// Appends the entry `name` of `dir` (and, for a directory, everything
/// below it) to `tar` under `tar_path`.
pub fn tar_entry<W: Write>(
    tar: &mut tar::Builder<W>,
    links: &mut Links,
    dir: BorrowedFd,
    name: &[u8],
    tar_path: &str,
) -> Result<(), ContainerError> {
    let st = fstatat(
        Some(dir.as_raw_fd()),
        std::ffi::OsStr::from_bytes(name),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| err(tar_path, e))?;
    let io = |e: std::io::Error| ContainerError::io(tar_path, e);
    match kind(&st) {
        SFlag::S_IFDIR => {
            let sub = open_dir_at(dir, name, tar_path)?;
            tar_dir(tar, links, sub.as_fd(), &st, tar_path)?;
        }
        SFlag::S_IFREG => {
            if st.st_nlink > 1 {
                let key = (st.st_dev as u64, st.st_ino as u64);
                if let Some(first) = links.get(&key) {
                    let mut h = header_for(&st, tar::EntryType::Link);
                    h.set_size(0);
                    tar.append_link(&mut h, tar_path, first).map_err(io)?;
                    return Ok(());
                }
                links.insert(key, tar_path.to_string());
            }
            let fd = nix::fcntl::openat(
                Some(dir.as_raw_fd()),
                std::ffi::OsStr::from_bytes(name),
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| err(tar_path, e))?;
            let file: File = unsafe_free_file(fd);
            let real = file.metadata().map_err(io)?;
            let mut h = header_for(&st, tar::EntryType::Regular);
            h.set_size(real.len());
            tar.append_data(&mut h, tar_path, std::io::Read::take(file, real.len()))
                .map_err(io)?;
        }
        SFlag::S_IFLNK => {
            let target =
                nix::fcntl::readlinkat(Some(dir.as_raw_fd()), std::ffi::OsStr::from_bytes(name))
                    .map_err(|e| err(tar_path, e))?;
            let mut h = header_for(&st, tar::EntryType::Symlink);
            tar.append_link(&mut h, tar_path, std::path::Path::new(&target))
                .map_err(io)?;
        }
        SFlag::S_IFCHR | SFlag::S_IFBLK | SFlag::S_IFIFO => {
            let k = match kind(&st) {
                SFlag::S_IFCHR => tar::EntryType::Char,
                SFlag::S_IFBLK => tar::EntryType::Block,
                _ => tar::EntryType::Fifo,
            };
            let mut h = header_for(&st, k);
            h.set_device_major(nix::sys::stat::major(st.st_rdev) as u32)
                .map_err(io)?;
            h.set_device_minor(nix::sys::stat::minor(st.st_rdev) as u32)
                .map_err(io)?;
            tar.append_data(&mut h, tar_path, std::io::empty())
                .map_err(io)?;
        }
        _ => {} // sockets
    }
    Ok(())
}

/// Appends a directory (already opened) and its contents.
pub fn tar_dir<W: Write>(
    tar: &mut tar::Builder<W>,
    links: &mut Links,
    dir: BorrowedFd,
    st: &FileStat,
    tar_path: &str,
) -> Result<(), ContainerError> {
    if !tar_path.is_empty() && tar_path != "." {
        let mut h = header_for(st, tar::EntryType::Directory);
        tar.append_data(
            &mut h,
            format!("{}/", tar_path.trim_end_matches('/')),
            std::io::empty(),
        )
        .map_err(|e| ContainerError::io(tar_path, e))?;
    }
    for name in names(dir, tar_path)? {
        let child = if tar_path.is_empty() || tar_path == "." {
            String::from_utf8_lossy(&name).into_owned()
        } else {
            format!(
                "{}/{}",
                tar_path.trim_end_matches('/'),
                String::from_utf8_lossy(&name)
            )
        };
        match tar_entry(tar, links, dir, &name, &child) {
            Ok(()) => {}
            // Changed under us (removed, or swapped for a symlink): skip it.
            Err(ContainerError::Io { source, .. })
                if matches!(
                    source.raw_os_error(),
                    Some(libc::ENOENT) | Some(libc::ELOOP) | Some(libc::ENOTDIR)
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn unsafe_free_file(fd: std::os::fd::RawFd) -> File {
    // openat returned a fresh descriptor that nothing else owns.
    crate::container::sys::own_fd(fd).into()
}

/// The components of an archive path, `.` and empty ones left out; `..`
/// refused.
fn archive_components<'a>(path: &'a [u8], shown: &str) -> Result<Vec<&'a [u8]>, ContainerError> {
    let comps: Vec<&[u8]> = path
        .split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect();
    if comps.contains(&&b".."[..]) {
        return Err(ContainerError::UnsafePath {
            path: shown.to_string(),
            reason: "\"..\" in an archive path".into(),
        });
    }
    Ok(comps)
}

/// Opens the directories `comps` below `dir`, one at a time, never
/// following a symlink; with `make`, makes those missing (0755).
fn open_dirs(
    dir: BorrowedFd,
    comps: &[&[u8]],
    make: bool,
    shown: &str,
) -> Result<OwnedFd, ContainerError> {
    let mut parent: OwnedFd = nix::unistd::dup(dir.as_raw_fd())
        .map(crate::container::sys::own_fd)
        .map_err(|e| err(shown, e))?;
    for c in comps {
        if make {
            let _ = nix::sys::stat::mkdirat(
                Some(parent.as_raw_fd()),
                std::ffi::OsStr::from_bytes(c),
                Mode::from_bits_truncate(0o755),
            );
        }
        parent = open_dir_at(parent.as_fd(), c, shown)?;
    }
    Ok(parent)
}

/// Extracts a tar (from `cp` into a container) below `dir`, one name at a
/// time: directories are created or opened without following symlinks,
/// files are created without following symlinks (an existing symlink is
/// replaced, never written through); hard links link to an earlier entry
/// of the archive, found the same way; FIFOs and device nodes are made
/// (the container's root is `nodev`: its nodes do not open).
pub fn untar_into<R: std::io::Read>(archive: R, dir: BorrowedFd) -> Result<(), ContainerError> {
    let mut archive = tar::Archive::new(archive);
    for entry in archive
        .entries()
        .map_err(|e| ContainerError::io("archive", e))?
    {
        let mut entry = entry.map_err(|e| ContainerError::io("archive", e))?;
        let path = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&path).into_owned();
        let comps = archive_components(&path, &shown)?;
        if comps.is_empty() {
            continue;
        }
        let parent = open_dirs(dir, &comps[..comps.len() - 1], true, &shown)?;
        let name = std::ffi::OsStr::from_bytes(comps[comps.len() - 1]);
        let header = entry.header().clone();
        let mode = Mode::from_bits_truncate(header.mode().unwrap_or(0o644) & 0o7777);
        let p = Some(parent.as_raw_fd());
        match header.entry_type() {
            tar::EntryType::Directory => {
                let _ = nix::sys::stat::mkdirat(p, name, mode);
                open_dir_at(parent.as_fd(), comps[comps.len() - 1], &shown)?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                let _ = nix::unistd::unlinkat(p, name, nix::unistd::UnlinkatFlags::NoRemoveDir);
                nix::unistd::symlinkat(std::ffi::OsStr::from_bytes(&target), p, name)
                    .map_err(|e| err(&shown, e))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let _ = nix::unistd::unlinkat(p, name, nix::unistd::UnlinkatFlags::NoRemoveDir);
                let fd = nix::fcntl::openat(
                    p,
                    name,
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    mode,
                )
                .map_err(|e| err(&shown, e))?;
                let mut file = unsafe_free_file(fd);
                std::io::copy(&mut entry, &mut file).map_err(|e| ContainerError::io(&shown, e))?;
                let _ = nix::sys::stat::fchmod(file.as_raw_fd(), mode);
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                let target_shown = String::from_utf8_lossy(&target).into_owned();
                let target_comps = archive_components(&target, &target_shown)?;
                let Some((target_name, target_dirs)) = target_comps.split_last() else {
                    return Err(ContainerError::UnsafePath {
                        path: shown,
                        reason: "a hard link to nothing".into(),
                    });
                };
                let target_dir = open_dirs(dir, target_dirs, false, &target_shown)?;
                let _ = nix::unistd::unlinkat(p, name, nix::unistd::UnlinkatFlags::NoRemoveDir);
                nix::unistd::linkat(
                    Some(target_dir.as_raw_fd()),
                    std::ffi::OsStr::from_bytes(target_name),
                    p,
                    name,
                    AtFlags::empty(),
                )
                .map_err(|e| err(&format!("{shown} (a link to {target_shown})"), e))?;
            }
            kind @ (tar::EntryType::Fifo | tar::EntryType::Char | tar::EntryType::Block) => {
                let sflag = match kind {
                    tar::EntryType::Fifo => SFlag::S_IFIFO,
                    tar::EntryType::Char => SFlag::S_IFCHR,
                    _ => SFlag::S_IFBLK,
                };
                // (A FIFO's numbers are 0.)
                let dev = nix::sys::stat::makedev(
                    header.device_major().ok().flatten().unwrap_or(0).into(),
                    header.device_minor().ok().flatten().unwrap_or(0).into(),
                );
                let _ = nix::unistd::unlinkat(p, name, nix::unistd::UnlinkatFlags::NoRemoveDir);
                // With no umask, so the node gets its mode as made: a chmod
                // after would have to follow the name, which the container
                // could swap for a symlink meanwhile.
                let umask = nix::sys::stat::umask(Mode::empty());
                let made = nix::sys::stat::mknodat(p, name, sflag, mode, dev);
                nix::sys::stat::umask(umask);
                made.map_err(|e| err(&shown, e))?;
            }
            _ => {} // pax and GNU headers the reader already applied
        }
    }
    Ok(())
}
