//! Removing a container's files: its directory moved out of the way at
//! once and deleted later, its record, its anonymous volumes. Shared by
//! `rm`, the monitor (`--rm`) and [`super::liveness`] (a dead monitor's
//! `--rm` container).

use std::path::PathBuf;

use crate::container::error::ContainerError;
use crate::container::launch::rootfs::{is_mounted, unmount_path, RootfsDirs};
use crate::container::launch::userns;
use crate::container::records::{container_dir, delete_record, Container};
use crate::container::volume::remove_volume;
use crate::store::Store;

/// Unmounts anything left, deletes the directory and the record, and
/// with `volumes` the anonymous volumes.
pub fn remove_files(
    store: &Store,
    container: &Container,
    volumes: bool,
) -> Result<(), ContainerError> {
    let dir = container_dir(store, &container.id);
    let dirs = RootfsDirs::of(&dir);
    if is_mounted(&dirs.mountpoint) {
        unmount_path(&dirs.mountpoint)?;
    }
    let retired = move_out(store, container, volumes)?;
    // Left by a monitor that was killed.
    crate::container::launch::cgroup::remove(&container.id);
    delete_retired(retired);
    Ok(())
}

/// Moves the container's directory into the store's `tmp/` (as it is:
/// what is mounted below it moves along), deletes its record and, with
/// `volumes`, its anonymous volumes. Returns where the directory went,
/// for [`delete_retired`]: the container is gone for every command at
/// once, and a monitor deletes the tree only after it has reported the
/// exit (deleting files is slow on some disks: ext4 without a journal
/// discards each file's blocks synchronously). gc empties `tmp/`.
pub fn move_out(
    store: &Store,
    container: &Container,
    volumes: bool,
) -> Result<Option<PathBuf>, ContainerError> {
    let dir = container_dir(store, &container.id);
    let retired = store.tmp_dir().join(format!("removed-{}", container.id));
    let moved = match std::fs::rename(&dir, &retired) {
        Ok(()) => Some(retired),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(_) => match std::fs::remove_dir_all(&dir) {
            Ok(()) => None,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(ContainerError::io(&dir, e)),
        },
    };
    delete_record(store, &container.id)?;
    if volumes {
        for m in container
            .spec
            .mounts
            .iter()
            .filter(|m| m.kind == "volume" && m.anonymous)
        {
            remove_volume(store, &m.source, true)?;
        }
    }
    Ok(moved)
}

/// Deletes a tree [`move_out`] moved away; what remains (an error, a
/// killed process) is left to gc.
pub fn delete_retired(retired: Option<PathBuf>) {
    if let Some(dir) = retired {
        // A rootless container's files of other owners (subordinate ids)
        // are deleted from inside its user namespace.
        let _ = userns::remove_dir_of_any_owner(&dir);
    }
}
