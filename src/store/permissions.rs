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

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

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
/// the paths it changed.
pub fn secure_root(root: &Path) -> Result<Vec<std::path::PathBuf>, StoreError> {
    let mut changed = Vec::new();
    if !root.exists() {
        create_dir_with_mode(root, ROOT_MODE)?;
    }
    let mode = mode_of(root)?;
    if mode & 0o066 != 0 {
        chmod(root, mode & !0o066)?;
        changed.push(root.to_path_buf());
    }
    let entries = std::fs::read_dir(root).map_err(|e| StoreError::io(root, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(root, e))?;
        if entry.file_name() == PUBLIC_DIR {
            // Image mounts are reachable there; its daemons' logs are not.
            let logs = entry.path().join("logs");
            if tighten(&logs)? {
                changed.push(logs);
            }
            continue;
        }
        let path = entry.path();
        if tighten(&path)? {
            changed.push(path);
        }
    }
    Ok(changed)
}

/// Takes every group and other bit off `path` (following a symlink the
/// owner put there); false if it had none, or is gone.
fn tighten(path: &Path) -> Result<bool, StoreError> {
    let mode = match std::fs::metadata(path) {
        Ok(m) => m.permissions().mode() & 0o7777,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(StoreError::io(path, e)),
    };
    if mode & 0o077 == 0 {
        return Ok(false);
    }
    match chmod(path, mode & !0o077) {
        Ok(()) => Ok(true),
        // A journal SQLite removed meanwhile.
        Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

fn mode_of(path: &Path) -> Result<u32, StoreError> {
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .map_err(|e| StoreError::io(path, e))
}

fn chmod(path: &Path, mode: u32) -> Result<(), StoreError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| {
        StoreError::io(
            path,
            std::io::Error::new(
                e.kind(),
                format!("cannot make it private to its owner (chmod {mode:o}): {e}"),
            ),
        )
    })
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
