//! The mounts behind active snapshots and views. The parents' layers are
//! shown by a read-only strata-fs mount at `snapshots/<id>/rootfs`,
//! served by a daemon of its own (`strata __snapshot-mount`, this binary
//! re-executed in a session of its own), so a container keeps its root
//! filesystem when the snapshotter restarts or dies.
//!
//! - A view is a read-only bind of that mount.
//! - An active snapshot is a kernel overlay mount: `lowerdir` that mount,
//!   `upperdir`/`workdir` plain directories on the store's disk
//!   (`snapshots/<id>/upper`, `work`); with no parents, a bind of the
//!   upper directory (and no daemon). containerd's diff applier writes
//!   such a snapshot's upper directory directly, at disk speed (for an
//!   overlay it applies into `upperdir`, making overlayfs whiteouts), and
//!   Commit reads the upper directory with the same overlayfs conventions
//!   strata-fs keeps (docs/snapshotter.md says why not a writable FUSE
//!   mount).
//!
//! A daemon that died leaves a dead mount (ENOTCONN): [`ensure_mounted`]
//! detaches it and starts a new daemon on the same directory.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::records::{self, Kind, Snapshot};
use super::SnapshotterError;
use crate::image::StoreSource;
use crate::store::Store;

/// The name of the hidden command that serves one snapshot's mount.
pub const DAEMON_COMMAND: &str = "__snapshot-mount";

/// A mount as containerd's `types.Mount` carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub kind: String,
    pub source: PathBuf,
    pub options: Vec<String>,
}

/// Where the snapshots' directories live.
pub fn snapshots_dir(store: &Store) -> PathBuf {
    store.root().join("snapshots")
}

/// A snapshot's directory: `upper/` and `work/` (active only), `rootfs/`
/// (the mount point of its parents' layers) and `mount.log` (its daemon's
/// log).
pub fn snapshot_dir(store: &Store, id: i64) -> PathBuf {
    snapshots_dir(store).join(id.to_string())
}

/// What containerd mounts for `snapshot`.
pub fn mounts_of(store: &Store, snapshot: &Snapshot) -> Vec<Mount> {
    let dir = snapshot_dir(store, snapshot.id);
    let bind = |source: PathBuf, mode: &str| Mount {
        kind: "bind".into(),
        source,
        options: vec!["rbind".into(), mode.into()],
    };
    match (snapshot.kind, snapshot.parent_id) {
        (Kind::Active, None) => vec![bind(dir.join("upper"), "rw")],
        (Kind::Active, Some(_)) => {
            let option = |name: &str, path: PathBuf| format!("{name}={}", path.display());
            vec![Mount {
                kind: "overlay".into(),
                source: PathBuf::from("overlay"),
                // index=off as containerd's own overlayfs snapshotter;
                // metacopy=off so that every changed file's data is in
                // the upper directory that Commit reads.
                options: vec![
                    "index=off".into(),
                    "metacopy=off".into(),
                    option("workdir", dir.join("work")),
                    option("upperdir", dir.join("upper")),
                    option("lowerdir", dir.join("rootfs")),
                ],
            }]
        }
        _ => vec![bind(dir.join("rootfs"), "ro")],
    }
}

/// Makes the directories of a new snapshot (upper and work directories
/// for an active one).
pub fn create_dirs(store: &Store, id: i64, kind: Kind) -> Result<(), SnapshotterError> {
    let dir = snapshot_dir(store, id);
    let mut wanted = vec![dir.join("rootfs")];
    if kind == Kind::Active {
        wanted.push(dir.join("upper"));
        wanted.push(dir.join("work"));
    }
    for path in wanted {
        std::fs::create_dir_all(&path).map_err(|e| SnapshotterError::io(&path, e))?;
    }
    Ok(())
}

/// Whether `pid` is a live daemon serving `mountpoint`.
pub fn daemon_alive(pid: i64, mountpoint: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    args.contains(&DAEMON_COMMAND.as_bytes())
        && args.contains(&mountpoint.as_os_str().as_encoded_bytes())
}

/// Makes sure `snapshot` (active or view) is served: starts a daemon when
/// none is alive, after detaching a dead mount. Records the daemon's pid.
/// An active snapshot without parents needs none (its mount is a bind of
/// its upper directory).
pub fn ensure_mounted(store: &Store, snapshot: &Snapshot) -> Result<(), SnapshotterError> {
    let dir = snapshot_dir(store, snapshot.id);
    let mountpoint = dir.join("rootfs");
    if snapshot.kind == Kind::Active {
        // A snapshot made before active snapshots were overlays has no
        // work directory yet.
        let work = dir.join("work");
        std::fs::create_dir_all(&work).map_err(|e| SnapshotterError::io(&work, e))?;
        if snapshot.parent_id.is_none() {
            return Ok(());
        }
    }
    if let Some(pid) = snapshot.pid {
        if daemon_alive(pid, &mountpoint) && crate::mount::is_mountpoint(&mountpoint) {
            return Ok(());
        }
    }
    while crate::mount::is_mountpoint(&mountpoint) {
        // A dead daemon's mount (or one stacked by a crash): detach it.
        strata_fs::unmount(&mountpoint).map_err(|e| mount_error(snapshot, &mountpoint, e))?;
    }
    let layers = records::parent_layers(store, snapshot.parent_id)?;
    let pid = spawn_daemon(store, snapshot, &mountpoint, &layers)?;
    records::set_pid(store, snapshot.id, Some(pid as i64))
}

/// Gives a new active snapshot's upper directory, whose attributes the
/// overlay's root shows, the owner and mode of its parents' root (as
/// containerd's overlayfs snapshotter does), or 0755 at the root.
pub fn set_root_attributes(store: &Store, snapshot: &Snapshot) -> Result<(), SnapshotterError> {
    if snapshot.kind != Kind::Active {
        return Ok(());
    }
    let dir = snapshot_dir(store, snapshot.id);
    let (rootfs, upper) = (dir.join("rootfs"), dir.join("upper"));
    let mode = if snapshot.parent_id.is_some() {
        let meta = std::fs::metadata(&rootfs).map_err(|e| SnapshotterError::io(&rootfs, e))?;
        std::os::unix::fs::chown(&upper, Some(meta.uid()), Some(meta.gid()))
            .map_err(|e| SnapshotterError::io(&upper, e))?;
        meta.mode() & 0o7777
    } else {
        0o755
    };
    std::fs::set_permissions(&upper, std::fs::Permissions::from_mode(mode))
        .map_err(|e| SnapshotterError::io(&upper, e))
}

fn mount_error(snapshot: &Snapshot, path: &Path, e: impl std::fmt::Display) -> SnapshotterError {
    SnapshotterError::Mount {
        key: snapshot.key.clone(),
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

fn spawn_daemon(
    store: &Store,
    snapshot: &Snapshot,
    mountpoint: &Path,
    layers: &[i64],
) -> Result<u32, SnapshotterError> {
    let log_path = snapshot_dir(store, snapshot.id).join("mount.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| SnapshotterError::io(&log_path, e))?;
    let exe = std::env::current_exe()
        .map_err(|e| SnapshotterError::io(Path::new("/proc/self/exe"), e))?;
    let mut command = Command::new(exe);
    command
        .arg("--root")
        .arg(store.root())
        .arg("--log-level")
        .arg(std::env::var("STRATA_LOG_LEVEL").unwrap_or_else(|_| "info".into()))
        .arg(DAEMON_COMMAND)
        .arg("--mountpoint")
        .arg(mountpoint);
    if snapshot.kind == Kind::Active {
        command.arg("--overlay-lower");
    }
    for layer in layers {
        command.arg("--layer").arg(layer.to_string());
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(|e| mount_error(snapshot, mountpoint, e))?;
    let pid = child.id();
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| mount_error(snapshot, mountpoint, "no handshake pipe"))?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| mount_error(snapshot, mountpoint, e))?;
    if line.trim_end() == "ready" {
        // The daemon outlives this process's interest in it; reap it from
        // a thread so it never lingers as a zombie here.
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        return Ok(pid);
    }
    let _ = child.wait();
    let reason = line
        .trim_end()
        .strip_prefix("error: ")
        .map(str::to_string)
        .unwrap_or_else(|| {
            std::fs::read_to_string(&log_path)
                .ok()
                .and_then(|l| l.lines().last().map(str::to_string))
                .unwrap_or_else(|| "the mount daemon exited before the mount was ready".into())
        });
    Err(mount_error(snapshot, mountpoint, reason))
}

/// Unmounts a snapshot's mount and waits (up to 2 s) for its daemon to
/// exit. A daemon whose mount something still holds (a container still
/// running on a bind of it) serves until that goes, then exits.
pub fn stop_mount(store: &Store, snapshot: &Snapshot) -> Result<(), SnapshotterError> {
    let mountpoint = snapshot_dir(store, snapshot.id).join("rootfs");
    while crate::mount::is_mountpoint(&mountpoint) {
        strata_fs::unmount(&mountpoint).map_err(|e| mount_error(snapshot, &mountpoint, e))?;
    }
    if let Some(pid) = snapshot.pid {
        let deadline = Instant::now() + Duration::from_secs(2);
        while daemon_alive(pid, &mountpoint) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if daemon_alive(pid, &mountpoint) {
            tracing::warn!(
                "snapshot {}: mount daemon {pid} still serves a reference to its detached mount",
                snapshot.key
            );
        }
    }
    Ok(())
}

/// What `__snapshot-mount` is told.
#[derive(Debug, Clone)]
pub struct DaemonPlan {
    pub mountpoint: PathBuf,
    pub layers: Vec<i64>,
    /// The mount is an active snapshot's overlay `lowerdir` (not a view).
    pub overlay_lower: bool,
}

/// The daemon: mounts the layers (bottom first) read-only, says `ready`
/// (or `error: ...`) on stdout, serves until unmounted.
pub fn run_daemon(root: &Path, plan: &DaemonPlan) -> Result<(), SnapshotterError> {
    let _ = nix::unistd::setsid();
    let result = serve(root, plan);
    if let Err(e) = &result {
        let _ = writeln!(std::io::stdout(), "error: {e}");
        tracing::error!("{e}");
    }
    result
}

fn serve(root: &Path, plan: &DaemonPlan) -> Result<(), SnapshotterError> {
    let store = Store::open(root)?;
    let source = StoreSource::open(&store, plan.layers.clone())?;
    drop(store);
    let mut config = strata_fs::MountConfig::lazy(std::sync::Arc::new(source));
    config.fsname = "strata-snapshot".into();
    // The lower directory of a container's root: set-user-ID programs and
    // device nodes work through the overlay as on containerd's overlayfs
    // snapshotter (a view is bound read-only, nosuid and nodev as before).
    if plan.overlay_lower {
        config.nosuid = false;
        config.nodev = false;
        // FUSE passthrough stacks the mount two deep, the kernel's limit:
        // overlayfs would refuse it as a lower directory ("maximum fs
        // stacking depth exceeded").
        config.passthrough = false;
    }
    strata_fs::serve(config, &plan.mountpoint, || {
        let mut out = std::io::stdout();
        let _ = writeln!(out, "ready");
        let _ = out.flush();
        if let Ok(null) = std::fs::File::open("/dev/null") {
            let _ = nix::unistd::dup2(null.as_raw_fd(), 1);
        }
    })
    .map_err(|e| SnapshotterError::Mount {
        key: String::new(),
        path: plan.mountpoint.clone(),
        reason: e.to_string(),
    })?;
    tracing::info!("unmounted {}", plan.mountpoint.display());
    Ok(())
}
