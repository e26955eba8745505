//! The gc lock: ingests hold it shared, garbage collection exclusively.

use std::fs::{File, OpenOptions};
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use super::StoreError;

/// A held flock on `locks/gc.lock`; released on drop.
pub struct GcLock {
    _lock: Flock<File>,
}

impl GcLock {
    fn take(root: &Path, arg: FlockArg) -> Result<GcLock, StoreError> {
        let path = root.join("locks/gc.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| StoreError::io(&path, e))?;
        let lock = Flock::lock(file, arg).map_err(|(_, e)| StoreError::io(&path, e.into()))?;
        Ok(GcLock { _lock: lock })
    }

    pub fn shared(root: &Path) -> Result<GcLock, StoreError> {
        Self::take(root, FlockArg::LockShared)
    }

    pub fn exclusive(root: &Path) -> Result<GcLock, StoreError> {
        Self::take(root, FlockArg::LockExclusive)
    }
}
