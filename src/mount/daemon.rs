//! The mount daemon: `strata __mount-daemon`, started by [`super::mount_image`].
//! It detaches from the terminal's session, builds the image's tree,
//! mounts it, tells its parent `ready` on stdout (or `error: ...`), and
//! serves until unmounted; then it forgets the mount and exits.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;

use super::{forget_mount, image_mount_config, record_mount, MountError, MountOptions};
use crate::digest::Digest;
use crate::store::Store;

pub fn run_daemon(
    root: &Path,
    image: &Digest,
    mountpoint: &Path,
    options: &MountOptions,
) -> Result<(), MountError> {
    let _ = nix::unistd::setsid();
    let result = serve(root, image, mountpoint, options);
    if let Err(e) = &result {
        // The parent may still be waiting for the handshake.
        let _ = writeln!(std::io::stdout(), "error: {}", with_causes(e));
        tracing::error!("{e}");
    }
    result
}

/// `e` and its causes on one line: "mounting on X: fusermount3: ...".
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        line.push_str(": ");
        line.push_str(&c.to_string());
        cause = c.source();
    }
    line
}

fn serve(
    root: &Path,
    image: &Digest,
    mountpoint: &Path,
    options: &MountOptions,
) -> Result<(), MountError> {
    let start = std::time::Instant::now();
    let store = Store::open(root)?;
    // A mount row is ephemeral (a stale one is reaped), so it needs no fsync.
    store
        .conn()
        .execute_batch("PRAGMA synchronous=NORMAL")
        .map_err(|e| MountError::Store(store.db_err(e)))?;
    let config = image_mount_config(&store, image, options)?;
    tracing::info!("layers read from the store in {:?}", start.elapsed());
    let mut recorded: Result<(), MountError> = Ok(());
    strata_fs::serve(config, mountpoint, || {
        recorded = record_mount(
            &store,
            mountpoint,
            image,
            options.container.as_deref(),
            std::process::id(),
        );
        tracing::info!("mount ready in {:?}", start.elapsed());
        let mut out = std::io::stdout();
        let _ = writeln!(
            out,
            "{}",
            if recorded.is_ok() {
                "ready"
            } else {
                "error: cannot record the mount"
            }
        );
        let _ = out.flush();
        // Nothing more goes to the parent: stdout becomes /dev/null.
        if let Ok(null) = std::fs::File::open("/dev/null") {
            let _ = nix::unistd::dup2(null.as_raw_fd(), 1);
        }
        if recorded.is_err() {
            let _ = strata_fs::unmount(mountpoint);
        }
    })?;
    recorded?;
    forget_mount(&store, mountpoint)?;
    tracing::info!("unmounted {}", mountpoint.display());
    Ok(())
}
