//! `layer-dirs/`: layers the overlayfs fallback extracted (see
//! `container/rootfs.rs`), a cache that gc empties. Private to the
//! store's owner (0700), like every top-level entry but `mounts/`.
//!
//! Names:
//! - `<hex>/`: the complete extraction of the layer whose diff_id has
//!   that hex digest;
//! - `empty/`: the lower directory of an image without layers;
//! - `.tmp-<hex>-<random>/`: an extraction in progress (or killed),
//!   renamed to `<hex>/` once complete and flushed.
//!
//! Each layer has a lock, `locks/layer-<hex>.lock`, held exclusively by
//! whoever extracts the layer or removes its directory, so two starts of
//! a fresh image extract it once, and gc never removes a directory an
//! extraction is writing or a start is about to mount.
//! A lock file is removed only by its holder; whoever takes a lock checks
//! that the file it locked is still the one at the path, else tries
//! again.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use super::permissions::{create_private_dir, PRIVATE_FILE_MODE};
use super::StoreError;

/// The directory's name under the store root.
pub const NAME: &str = "layer-dirs";

/// `<root>/layer-dirs`.
pub fn base(root: &Path) -> PathBuf {
    root.join(NAME)
}

/// `<root>/layer-dirs`, created (private) if missing.
pub fn ensure_base(root: &Path) -> Result<PathBuf, StoreError> {
    let base = base(root);
    create_private_dir(&base)?;
    Ok(base)
}

/// What an entry of `layer-dirs/` is, by its name.
#[derive(Debug, PartialEq, Eq)]
pub enum Entry<'a> {
    /// A complete extraction (the hex of its diff_id).
    Layer(&'a str),
    Empty,
    /// An extraction in progress or killed, with its layer's hex when
    /// the name has one.
    Extraction(Option<&'a str>),
    Other,
}

/// A bare sha256 hex digest (64 hex digits): the names of `layer-dirs/`
/// and `views/` entries.
pub(super) fn is_hex_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Classifies an entry name of `layer-dirs/`.
pub fn classify(name: &str) -> Entry<'_> {
    if name == "empty" {
        return Entry::Empty;
    }
    if let Some(rest) = name.strip_prefix(".tmp-") {
        let hex = rest.split('-').next().filter(|h| is_hex_digest(h));
        return Entry::Extraction(hex);
    }
    if is_hex_digest(name) {
        return Entry::Layer(name);
    }
    Entry::Other
}

/// The layer whose lock file (in `locks/`) this is, by its name.
pub fn lock_file_layer(name: &str) -> Option<&str> {
    name.strip_prefix("layer-")
        .and_then(|n| n.strip_suffix(".lock"))
        .filter(|hex| is_hex_digest(hex))
}

fn lock_path(root: &Path, hex: &str) -> PathBuf {
    root.join("locks").join(format!("layer-{hex}.lock"))
}

/// A held lock on one layer's directory; released on drop.
pub struct LayerLock {
    path: PathBuf,
    lock: Flock<File>,
}

impl LayerLock {
    /// Waits for the lock of the layer with diff_id hex `hex`.
    pub fn exclusive(root: &Path, hex: &str) -> Result<LayerLock, StoreError> {
        let path = lock_path(root, hex);
        Self::take(root, hex, FlockArg::LockExclusive)?
            .ok_or_else(|| StoreError::io(&path, std::io::ErrorKind::WouldBlock.into()))
    }

    /// The lock if nobody holds it.
    pub fn try_exclusive(root: &Path, hex: &str) -> Result<Option<LayerLock>, StoreError> {
        Self::take(root, hex, FlockArg::LockExclusiveNonblock)
    }

    fn take(root: &Path, hex: &str, arg: FlockArg) -> Result<Option<LayerLock>, StoreError> {
        let path = lock_path(root, hex);
        create_private_dir(&root.join("locks"))?;
        loop {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .mode(PRIVATE_FILE_MODE)
                .open(&path)
                .map_err(|e| StoreError::io(&path, e))?;
            let lock = match Flock::lock(file, arg) {
                Ok(l) => l,
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => return Ok(None),
                Err((_, e)) => return Err(StoreError::io(&path, e.into())),
            };
            // Its holder may have removed the file between our open and
            // our lock: then the lock is on a file nobody else will see.
            let held = lock.metadata().map_err(|e| StoreError::io(&path, e))?;
            match std::fs::symlink_metadata(&path) {
                Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => {
                    return Ok(Some(LayerLock { path, lock }))
                }
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io(&path, e)),
            }
        }
    }

    /// Removes the lock file, then releases the lock (for gc, once the
    /// layer's directory is gone).
    pub fn remove(self) -> Result<(), StoreError> {
        let result = std::fs::remove_file(&self.path).map_err(|e| StoreError::io(&self.path, e));
        drop(self.lock);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "9ce5112eff99f8e2571fd92297a7f2773c4aeeb3fde453c9b8589095386a476c";

    #[test]
    fn names_are_classified() {
        assert_eq!(classify(HEX), Entry::Layer(HEX));
        assert_eq!(classify("empty"), Entry::Empty);
        assert_eq!(
            classify(&format!(".tmp-{HEX}-0a1b2c3d")),
            Entry::Extraction(Some(HEX))
        );
        assert_eq!(classify(".tmp-killed"), Entry::Extraction(None));
        assert_eq!(lock_file_layer(&format!("layer-{HEX}.lock")), Some(HEX));
        assert_eq!(lock_file_layer("gc.lock"), None);
        assert_eq!(classify("notes"), Entry::Other);
    }

    #[test]
    fn a_lock_excludes_others_and_survives_its_file_being_removed() {
        let dir = tempfile::tempdir().unwrap();
        let held = LayerLock::exclusive(dir.path(), HEX).unwrap();
        assert!(LayerLock::try_exclusive(dir.path(), HEX).unwrap().is_none());
        // A waiter blocks until the holder removes the file and lets go,
        // then locks a new file at the path.
        let root = dir.path().to_path_buf();
        let waiter = std::thread::spawn(move || {
            let l = LayerLock::exclusive(&root, HEX).unwrap();
            assert!(l.path.exists());
            l.remove().unwrap();
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        held.remove().unwrap();
        waiter.join().unwrap();
        let again = LayerLock::try_exclusive(dir.path(), HEX).unwrap();
        assert!(again.is_some());
    }
}
