//! `-o type=local,dest=DIR` and `-o type=tar,dest=FILE`: the target
//! stage's files instead of an image. The tree is read from the store's
//! index; file contents are copied from the store's files. Paths come
//! from the image: a local export never writes through a symlink.

use std::io::Write;
use std::path::Path;

use super::error::BuildError;
use super::execute::Output;
use super::state::State;
use super::tree::{EntryKind, StateTree, TreeEntry};
use crate::store::Store;

pub fn export_state(store: &Store, state: &State, output: &Output) -> Result<(), BuildError> {
    let tree = StateTree::open(store, state)?;
    let entries = tree.walk("/", false)?;
    match output {
        Output::Local(dir) => export_local(dir, &entries),
        Output::Tar(file) if file.as_os_str() == "-" => {
            let stdout = std::io::stdout();
            write_tar(&mut stdout.lock(), &entries)
        }
        Output::Tar(file) => {
            let f = std::fs::File::create(file).map_err(|e| BuildError::io(file, e))?;
            let mut w = std::io::BufWriter::new(f);
            write_tar(&mut w, &entries)?;
            w.flush().map_err(|e| BuildError::io(file, e))
        }
    }
}

pub(super) fn write_tar(out: &mut dyn Write, entries: &[TreeEntry]) -> Result<(), BuildError> {
    let mut b = tar::Builder::new(out);
    let fail = |p: &str, e: std::io::Error| BuildError::io(p, e);
    for e in entries.iter().filter(|e| !e.rel.is_empty()) {
        let mut h = tar::Header::new_gnu();
        h.set_mode(e.mode);
        h.set_uid(e.uid as u64);
        h.set_gid(e.gid as u64);
        h.set_mtime(e.mtime.max(0) as u64);
        h.set_size(0);
        match &e.kind {
            EntryKind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                b.append_data(&mut h, format!("{}/", e.rel), std::io::empty())
                    .map_err(|err| fail(&e.rel, err))?;
            }
            EntryKind::File(size, backing) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(*size);
                match backing {
                    Some(p) => {
                        let f = std::fs::File::open(p).map_err(|err| BuildError::io(p, err))?;
                        b.append_data(&mut h, &e.rel, f)
                            .map_err(|err| fail(&e.rel, err))?;
                    }
                    None => b
                        .append_data(&mut h, &e.rel, std::io::empty())
                        .map_err(|err| fail(&e.rel, err))?,
                }
            }
            EntryKind::Symlink(t) => {
                h.set_entry_type(tar::EntryType::Symlink);
                b.append_link(&mut h, &e.rel, t)
                    .map_err(|err| fail(&e.rel, err))?;
            }
            EntryKind::CharDevice(rdev) | EntryKind::BlockDevice(rdev) => {
                h.set_entry_type(if matches!(e.kind, EntryKind::CharDevice(_)) {
                    tar::EntryType::Char
                } else {
                    tar::EntryType::Block
                });
                h.set_device_major(nix::sys::stat::major(*rdev) as u32)
                    .map_err(|err| fail(&e.rel, err))?;
                h.set_device_minor(nix::sys::stat::minor(*rdev) as u32)
                    .map_err(|err| fail(&e.rel, err))?;
                b.append_data(&mut h, &e.rel, std::io::empty())
                    .map_err(|err| fail(&e.rel, err))?;
            }
            EntryKind::Fifo => {
                h.set_entry_type(tar::EntryType::Fifo);
                b.append_data(&mut h, &e.rel, std::io::empty())
                    .map_err(|err| fail(&e.rel, err))?;
            }
        }
    }
    b.finish().map_err(|e| fail("tar", e))
}

/// Whether a path below `dir` goes through a symlink (an existing one in
/// the destination, or one the export made).
fn through_symlink(dir: &Path, rel: &str) -> bool {
    let mut p = dir.to_path_buf();
    for c in rel.split('/').filter(|c| !c.is_empty()) {
        p.push(c);
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
            return true;
        }
    }
    false
}

fn export_local(dir: &Path, entries: &[TreeEntry]) -> Result<(), BuildError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::create_dir_all(dir).map_err(|e| BuildError::io(dir, e))?;
    for e in entries.iter().filter(|e| !e.rel.is_empty()) {
        let parent = e.rel.rsplit_once('/').map_or("", |(p, _)| p);
        let target = dir.join(&e.rel);
        if through_symlink(dir, parent) {
            return Err(BuildError::io(
                &target,
                std::io::Error::other("a parent directory is a symlink; not followed"),
            ));
        }
        let io = |err: std::io::Error| BuildError::io(&target, err);
        match &e.kind {
            EntryKind::Dir => match std::fs::create_dir(&target) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists && target.is_dir() => {}
                Err(err) => return Err(io(err)),
            },
            EntryKind::File(_, backing) => {
                let mut out = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .mode(0o600)
                    .open(&target)
                    .map_err(io)?;
                if let Some(p) = backing {
                    let mut src = std::fs::File::open(p).map_err(|err| BuildError::io(p, err))?;
                    std::io::copy(&mut src, &mut out).map_err(io)?;
                }
                out.set_permissions(std::fs::Permissions::from_mode(e.mode & 0o7777))
                    .map_err(io)?;
            }
            EntryKind::Symlink(t) => std::os::unix::fs::symlink(t, &target).map_err(io)?,
            // Device nodes and fifos are not exported to a directory.
            _ => continue,
        }
    }
    // Directory modes last, so writing into them was allowed.
    for e in entries
        .iter()
        .filter(|e| !e.rel.is_empty() && e.kind == EntryKind::Dir)
    {
        let _ = std::fs::set_permissions(
            dir.join(&e.rel),
            std::fs::Permissions::from_mode(e.mode & 0o7777),
        );
    }
    Ok(())
}
