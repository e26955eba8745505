//! The mounts behind active snapshots and views: each is a strata-fs
//! mount served by its own daemon (`strata __snapshot-mount`, this binary
//! re-executed in a session of its own), so a container keeps its root
//! filesystem when the snapshotter restarts or dies. An active snapshot
//! is writable over `snapshots/<id>/upper` (overlayfs conventions); a view
//! is read-only. Mounts hands containerd a bind of the mount point, which
//! containerd's mount code, its diff applier and `ctr run` use unchanged.
//!
//! A daemon that died leaves a dead mount (ENOTCONN): [`ensure_mounted`]
//! detaches it and starts a new daemon on the same directory.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
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

/// A snapshot's directory: `upper/` (active only), `rootfs/` (the mount
/// point) and `mount.log` (its daemon's log).
pub fn snapshot_dir(store: &Store, id: i64) -> PathBuf {
    snapshots_dir(store).join(id.to_string())
}

/// What containerd mounts for `snapshot`.
pub fn mounts_of(store: &Store, snapshot: &Snapshot) -> Vec<Mount> {
    let mode = if snapshot.kind == Kind::Active {
        "rw"
    } else {
        "ro"
    };
    vec![Mount {
        kind: "bind".into(),
        source: snapshot_dir(store, snapshot.id).join("rootfs"),
        options: vec!["rbind".into(), mode.into()],
    }]
}

/// Makes the directories of a new snapshot (an upper directory for an
/// active one).
pub fn create_dirs(store: &Store, id: i64, kind: Kind) -> Result<(), SnapshotterError> {
    let dir = snapshot_dir(store, id);
    let mut wanted = vec![dir.join("rootfs")];
    if kind == Kind::Active {
        wanted.push(dir.join("upper"));
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
pub fn ensure_mounted(store: &Store, snapshot: &Snapshot) -> Result<(), SnapshotterError> {
    let dir = snapshot_dir(store, snapshot.id);
    let mountpoint = dir.join("rootfs");
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
    let upper = (snapshot.kind == Kind::Active).then(|| dir.join("upper"));
    let pid = spawn_daemon(store, snapshot, &mountpoint, upper.as_deref(), &layers)?;
    records::set_pid(store, snapshot.id, Some(pid as i64))
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
    upper: Option<&Path>,
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
    if let Some(upper) = upper {
        command.arg("--upper").arg(upper);
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
    pub upper: Option<PathBuf>,
    pub layers: Vec<i64>,
}

/// The daemon: mounts the layers (bottom first) under the upper directory
/// if any, says `ready` (or `error: ...`) on stdout, serves until
/// unmounted.
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
    if let Some(upper) = &plan.upper {
        config.upper = Some(upper.clone());
        config.read_only = false;
        // A container's root: set-user-ID programs and device nodes work
        // as on overlayfs.
        config.nosuid = false;
        config.nodev = false;
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
