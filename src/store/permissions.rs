//! Who may reach what in the store (see docs/store.md, "Who may read
//! what").
//!
//! The root is 0711: other users may pass through it to `mounts/`, where
//! `strata mount IMAGE` puts image mounts (read-only, `nosuid,nodev`)
//! that they may read, but may not list it. Every other entry at the top
//! level is private to the store's owner: directories 0700, files 0600.
//! Nothing below a private directory can be reached by another user,
//! whatever its own mode and the umask it was made with, so containers'
//! mounts, upper directories, volumes, logs, sockets, staging and the
//! overlayfs fallback's layer directories need no care of their own.
//!
//! New entries are made with these modes (umask can only take bits
//! away); [`secure_root`] runs at every open and tightens what an older
//! version (or another tool) made wider: a stat of each top-level entry,
//! and a chmod only where one is needed.

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::AtFlags;
use nix::sys::stat::{fchmod, fchmodat, fstat, fstatat, FchmodatFlags, Mode};

use super::StoreError;

/// The mode of a store root strata creates.
pub const ROOT_MODE: u32 = 0o711;
/// The one top-level directory other users may enter (and list).
pub const PUBLIC_DIR: &str = "mounts";
/// The mode of `mounts/` when strata creates it.
pub const PUBLIC_DIR_MODE: u32 = 0o755;
/// A private directory's mode.
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// A private file's mode.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// Creates `path` (its parents as usual) as a private directory, or
/// leaves it as it is when it exists.
pub fn create_private_dir(path: &Path) -> Result<(), StoreError> {
    create_dir_with_mode(path, PRIVATE_DIR_MODE)
}

/// Creates `path` with exactly `mode` (whatever the umask) unless it
/// exists; its missing parents get the usual modes.
pub fn create_dir_with_mode(path: &Path, mode: u32) -> Result<(), StoreError> {
    if path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| StoreError::io(parent, e))?;
    }
    match std::fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => {
            // The umask may have taken bits away (from 0711 or 0755).
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| StoreError::io(path, e))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(e) => Err(StoreError::io(path, e)),
    }
}

/// Creates the empty file `path` as a private file unless it exists
/// (SQLite then gives its journal files the same mode).
pub fn create_private_file(path: &Path) -> Result<(), StoreError> {
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE_MODE)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::io(path, e)),
    }
}

/// Makes the store at `root` (created if missing) reachable by its owner
/// alone, but for `mounts/`: the root loses group and other read and
/// write bits (0755 becomes 0711; a narrower root stays as it is), and
/// each top-level entry but `mounts/` every group and other bit. Returns
/// the paths it changed. Works from the root's descriptor: one listing
/// and a stat per entry (a chmod only where one is needed).
pub fn secure_root(root: &Path) -> Result<Vec<PathBuf>, StoreError> {
    use nix::fcntl::OFlag;
    let mut changed = Vec::new();
    if !root.exists() {
        create_dir_with_mode(root, ROOT_MODE)?;
    }
    let sys = |e: nix::errno::Errno| StoreError::io(root, e.into());
    let mut dir = nix::dir::Dir::open(
        root,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys)?;
    let fd = dir.as_raw_fd();
    let mode = fstat(fd).map_err(sys)?.st_mode & 0o7777;
    if mode & 0o066 != 0 {
        fchmod(fd, Mode::from_bits_truncate(mode & !0o066)).map_err(|e| chmod_error(root, e))?;
        changed.push(root.to_path_buf());
    }
    let mut names = Vec::new();
    for entry in dir.iter() {
        let entry = entry.map_err(sys)?;
        let name = entry.file_name();
        if name != c"." && name != c".." {
            names.push(name.to_owned());
        }
    }
    for name in names {
        let name = if name.as_bytes() == PUBLIC_DIR.as_bytes() {
            // Image mounts are reachable there; its daemons' logs are not.
            c"mounts/logs".to_owned()
        } else {
            name
        };
        if tighten(fd, &name).map_err(|e| chmod_error(&root.join(os_str(&name)), e))? {
            changed.push(root.join(os_str(&name)));
        }
    }
    Ok(changed)
}

fn os_str(name: &std::ffi::CStr) -> &std::ffi::OsStr {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::OsStr::from_bytes(name.to_bytes())
}

/// Takes every group and other bit off `name` in the directory `dir`
/// (following a symlink the owner put there); false if it had none, or
/// is gone (a journal SQLite removed meanwhile).
fn tighten(dir: RawFd, name: &std::ffi::CStr) -> Result<bool, nix::errno::Errno> {
    let mode = match fstatat(Some(dir), name, AtFlags::empty()) {
        Ok(st) => st.st_mode & 0o7777,
        Err(nix::errno::Errno::ENOENT) => return Ok(false),
        Err(e) => return Err(e),
    };
    if mode & 0o077 == 0 {
        return Ok(false);
    }
    match fchmodat(
        Some(dir),
        name,
        Mode::from_bits_truncate(mode & !0o077),
        FchmodatFlags::FollowSymlink,
    ) {
        Ok(()) => Ok(true),
        Err(nix::errno::Errno::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

fn chmod_error(path: &Path, e: nix::errno::Errno) -> StoreError {
    StoreError::io(
        path,
        std::io::Error::other(format!("cannot make it private to its owner: {}", e.desc())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_new_root_is_0711_and_its_entries_private() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("a/store");
        secure_root(&root).unwrap();
        assert_eq!(mode(&root), 0o711);
        create_private_dir(&root.join("containers")).unwrap();
        assert_eq!(mode(&root.join("containers")), 0o700);
        create_dir_with_mode(&root.join("mounts"), PUBLIC_DIR_MODE).unwrap();
        assert_eq!(mode(&root.join("mounts")), 0o755);
        create_private_file(&root.join("strata.db")).unwrap();
        assert_eq!(mode(&root.join("strata.db")), 0o600);
    }

    #[test]
    fn an_old_wide_store_is_tightened_and_a_narrow_root_kept() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        for d in ["containers", "volumes", "mounts/logs", "layer-dirs", "tmp"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("strata.db"), b"").unwrap();
        let all = [
            "",
            "containers",
            "volumes",
            "mounts",
            "mounts/logs",
            "layer-dirs",
            "tmp",
        ];
        for p in all {
            std::fs::set_permissions(root.join(p), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::set_permissions(
            root.join("strata.db"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let changed = secure_root(&root).unwrap();
        assert_eq!(changed.len(), 7, "{changed:?}");
        assert_eq!(mode(&root), 0o711);
        for p in ["containers", "volumes", "mounts/logs", "layer-dirs", "tmp"] {
            assert_eq!(mode(&root.join(p)), 0o700, "{p}");
        }
        assert_eq!(mode(&root.join("mounts")), 0o755);
        assert_eq!(mode(&root.join("strata.db")), 0o600);
        // Nothing left to change: an open costs stats, no chmod.
        assert!(secure_root(&root).unwrap().is_empty());
        // A root its owner made narrower stays so.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(secure_root(&root).unwrap().is_empty());
        assert_eq!(mode(&root), 0o700);
    }
}
