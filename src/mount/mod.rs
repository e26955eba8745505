//! Image mounts: `strata mount IMAGE [DIR]` serves an image read-only
//! through strata-fs from a background daemon (this binary re-executed),
//! records the mount in SQLite (which pins the image against removal and
//! gc), and `strata umount` stops it.
//!
//! As root, a read-only image mount is the kernel's instead once the
//! image has a view (its first mount starts building it): overlayfs over
//! the view, no daemon (`kernel.rs`); its row has pid 0.
//!
//! A daemon that dies leaves a dead mount (ENOTCONN) and a stale row: the
//! next command that looks at mounts ([`reap_dead_mounts`]) detaches it and
//! drops the row.

mod daemon;
pub mod kernel;

pub use daemon::run_daemon;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rusqlite::params;

use crate::digest::Digest;
use crate::image::{fs_layer, image_layer_ids, resolve_image, ImageError, LayerError, StoreSource};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("{path}: already mounted (image {image})")]
    AlreadyMounted { path: String, image: String },
    #[error("{0}: not a strata mount")]
    NotMounted(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("mount daemon for {path} failed: {reason}")]
    Daemon { path: String, reason: String },
    #[error("kernel mount on {path} failed: {reason}")]
    Kernel { path: String, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Fs(#[from] strata_fs::FsError),
}

/// A live mount as recorded. `pid` is the mount daemon's, 0 for a kernel
/// mount (no daemon).
#[derive(Debug, Clone)]
pub struct MountRecord {
    pub mountpoint: PathBuf,
    pub image: Option<Digest>,
    pub pid: i32,
    pub created_at: String,
    /// The container whose view this is (`strata mount CONTAINER`).
    pub container: Option<String>,
}

fn db(store: &Store) -> impl Fn(rusqlite::Error) -> MountError + '_ {
    move |e| MountError::Store(store.db_err(e))
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> MountError + '_ {
    move |e| MountError::Io {
        path: path.display().to_string(),
        source: e,
    }
}

/// Every recorded mount (after reaping dead ones).
pub fn list_mounts(store: &Store) -> Result<Vec<MountRecord>, MountError> {
    reap_dead_mounts(store)?;
    recorded(store)
}

fn recorded(store: &Store) -> Result<Vec<MountRecord>, MountError> {
    let mut stmt = store
        .conn()
        .prepare("SELECT mountpoint, image_id, pid, created_at, container FROM mounts ORDER BY created_at")
        .map_err(db(store))?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
            ))
        })
        .map_err(db(store))?;
    let mut out = Vec::new();
    for row in rows {
        let (mountpoint, image, pid, created_at, container) = row.map_err(db(store))?;
        out.push(MountRecord {
            mountpoint: PathBuf::from(mountpoint),
            image: image.and_then(|i| i.parse().ok()),
            pid: pid as i32,
            created_at,
            container,
        });
    }
    Ok(out)
}

/// Whether `pid` is a live strata mount daemon.
fn daemon_alive(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| c.split(|&b| b == 0).any(|arg| arg == b"__mount-daemon"))
        .unwrap_or(false)
}

impl MountRecord {
    /// What serves it: `overlay` (the kernel) or `fuse` (a daemon).
    pub fn driver(&self) -> Driver {
        if self.pid == 0 {
            Driver::Overlay
        } else {
            Driver::Fuse
        }
    }
}

/// Detaches mounts whose daemon died and forgets them, and forgets kernel
/// mounts someone else unmounted. Returns the mount points it cleaned.
pub fn reap_dead_mounts(store: &Store) -> Result<Vec<PathBuf>, MountError> {
    let mut cleaned = Vec::new();
    for record in recorded(store)? {
        if record.driver() == Driver::Overlay {
            if !is_mountpoint(&record.mountpoint) {
                forget_mount(store, &record.mountpoint)?;
                cleaned.push(record.mountpoint);
            }
            continue;
        }
        if daemon_alive(record.pid) {
            continue;
        }
        let _ = strata_fs::cleanup_dead_mount(&record.mountpoint);
        if is_mountpoint(&record.mountpoint) {
            let _ = strata_fs::unmount(&record.mountpoint);
        }
        store
            .conn()
            .execute(
                "DELETE FROM mounts WHERE mountpoint = ?1",
                [record.mountpoint.to_string_lossy()],
            )
            .map_err(db(store))?;
        tracing::warn!(
            "cleaned up the dead mount at {} (its daemon {} died)",
            record.mountpoint.display(),
            record.pid
        );
        cleaned.push(record.mountpoint);
    }
    Ok(cleaned)
}

/// Whether something is mounted exactly at `path` (from /proc/self/mountinfo).
pub fn is_mountpoint(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let wanted = path.to_string_lossy();
    info.lines()
        .any(|l| l.split(' ').nth(4).map(unescape_mount_path).as_deref() == Some(&*wanted))
}

fn unescape_mount_path(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// What serves an image mount (`strata mount --driver`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Driver {
    /// The kernel's overlayfs once the image has a view (root, Linux
    /// 6.8+; its first mount is FUSE's and builds the view in the
    /// background), else FUSE.
    #[default]
    Auto,
    /// The kernel's overlayfs over the image's view; an error where it
    /// cannot be used.
    Overlay,
    /// strata-fs from a mount daemon.
    Fuse,
}

impl std::fmt::Display for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Driver::Auto => "auto",
            Driver::Overlay => "overlay",
            Driver::Fuse => "fuse",
        })
    }
}

/// Options of `strata mount`.
#[derive(Debug, Clone, Default)]
pub struct MountOptions {
    /// What serves the mount (a container's view and `--layers` are
    /// always FUSE's).
    pub driver: Driver,
    /// Show each layer as its own directory beside `merged/`.
    pub layers: bool,
    /// Mount this (stopped) container's writable view: the image's layers
    /// under its upper directory.
    pub container: Option<String>,
}

/// The layer directory names of the `--layers` view: `<n>-<short diff_id>`.
pub fn layer_names(diff_ids: &[Digest]) -> Vec<String> {
    diff_ids
        .iter()
        .enumerate()
        .map(|(i, d)| format!("{}-{}", i + 1, d.short()))
        .collect()
}

/// The strata-fs configuration for an image.
pub fn image_mount_config(
    store: &Store,
    image: &Digest,
    options: &MountOptions,
) -> Result<strata_fs::MountConfig, MountError> {
    let ids = image_layer_ids(store, image)?;
    let mut config = if options.layers {
        // The layer view shows every layer whole: read them all.
        let mut layers = Vec::with_capacity(ids.len());
        for (layer_id, _) in &ids {
            layers.push(fs_layer(store, *layer_id)?);
        }
        strata_fs::MountConfig::new(layers)
    } else {
        let rows = ids.iter().map(|(id, _)| *id).collect();
        strata_fs::MountConfig::lazy(std::sync::Arc::new(StoreSource::open(store, rows)?))
    };
    config.fsname = format!("strata:{}", image.short());
    if let Some(id) = &options.container {
        let dir = crate::container::container_dir(store, id);
        config.upper = Some(dir.join("upper"));
        config.read_only = false;
        // A container's files are its owner's alone (they are reached
        // through the private `containers/` too; see docs/store.md).
        config.allow_other = false;
        config.fsname = format!("strata:{}", &id[..12.min(id.len())]);
        if crate::container::launch::userns::is_rootless() {
            // The upper directory's files belong to the container's ids,
            // most of them subordinate ones: the daemon serves them from
            // the container's user namespace, so they show as the
            // container sees them (as the image's do) and those closed to
            // the user outside it can be served; what the user creates
            // through the view is container root's, as the user is there
            // (docs/rootless.md).
            let maps = crate::container::launch::userns::current_maps();
            config.before_serving =
                Some(strata_fs::BeforeServing(std::sync::Arc::new(move || {
                    crate::container::launch::userns::enter_user_namespace(&maps)
                        .map_err(|e| std::io::Error::other(e.to_string()))
                })));
            config.caller_ids = Some((0, 0));
        }
    }
    if options.layers {
        config.layer_view = true;
        config.layer_names = layer_names(&ids.iter().map(|(_, d)| *d).collect::<Vec<_>>());
    }
    Ok(config)
}

/// Mounts an image read-only at `dir` (default `<root>/mounts/<short id>`)
/// from a background daemon; returns the mount point once it is ready.
pub fn mount_image(
    store: &Store,
    name: &str,
    dir: Option<&Path>,
    options: &MountOptions,
) -> Result<PathBuf, MountError> {
    reap_dead_mounts(store)?;
    let image = resolve_image(store, name)?;
    let mountpoint = match dir {
        Some(d) => d.to_path_buf(),
        None => store.root().join("mounts").join(if options.layers {
            format!("{}-layers", image.short())
        } else {
            image.short()
        }),
    };
    std::fs::create_dir_all(&mountpoint).map_err(io(&mountpoint))?;
    let mountpoint = mountpoint.canonicalize().map_err(io(&mountpoint))?;
    if let Some(existing) = recorded(store)?
        .into_iter()
        .find(|m| m.mountpoint == mountpoint)
    {
        return Err(MountError::AlreadyMounted {
            path: mountpoint.display().to_string(),
            image: existing.image.map(|d| d.short()).unwrap_or_default(),
        });
    }
    if is_mountpoint(&mountpoint) {
        return Err(MountError::AlreadyMounted {
            path: mountpoint.display().to_string(),
            image: "not strata's".into(),
        });
    }
    let plain = !options.layers && options.container.is_none();
    if options.driver == Driver::Overlay && !(plain && kernel::usable()) {
        return Err(MountError::Unsupported(if plain {
            "--driver overlay: a kernel image mount needs root outside a user namespace".into()
        } else {
            "--driver overlay: --layers and container views are served by FUSE only".into()
        }));
    }
    let view = match options.driver {
        Driver::Overlay => Some(kernel::ensure_view(store, &image)?),
        Driver::Auto if plain && kernel::usable() => {
            let view = kernel::existing_view(store, &image);
            if view.is_none() {
                kernel::start_builder(store, &image);
            }
            view
        }
        _ => None,
    };
    if let Some(view) = view {
        match kernel::mount_view(&image, &view, &mountpoint) {
            Ok(()) => {
                // The row is ephemeral (a stale one is reaped), so it
                // needs no fsync, as the FUSE daemon's.
                let _ = store.conn().execute_batch("PRAGMA synchronous=NORMAL");
                if let Err(e) = record_mount(store, &mountpoint, &image, None, 0) {
                    let _ = nix::mount::umount2(&mountpoint, nix::mount::MntFlags::MNT_DETACH);
                    return Err(e);
                }
                return Ok(mountpoint);
            }
            Err(e) if options.driver == Driver::Overlay => return Err(e),
            Err(e) => tracing::info!(
                "kernel mount of {} not made, serving it by FUSE: {e}",
                image.short()
            ),
        }
    }
    let logs = store.root().join("mounts/logs");
    crate::store::permissions::create_private_dir(&logs)?;
    let log_path = logs.join(format!(
        "{}.log",
        Digest::of(mountpoint.to_string_lossy().as_bytes()).short()
    ));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io(&log_path))?;
    let exe = std::env::current_exe().map_err(io(Path::new("/proc/self/exe")))?;
    let mut command = Command::new(exe);
    command
        .arg("--root")
        .arg(store.root())
        .arg("--log-level")
        .arg(std::env::var("STRATA_LOG_LEVEL").unwrap_or_else(|_| "info".into()))
        .arg("__mount-daemon")
        .arg("--image")
        .arg(image.to_string())
        .arg("--mountpoint")
        .arg(&mountpoint);
    if options.layers {
        command.arg("--layers");
    }
    if let Some(id) = &options.container {
        command.arg("--container").arg(id);
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(io(&mountpoint))?;
    let stdout = child.stdout.take().ok_or_else(|| MountError::Daemon {
        path: mountpoint.display().to_string(),
        reason: "no handshake pipe".into(),
    })?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(io(&mountpoint))?;
    match line.trim_end() {
        "ready" => Ok(mountpoint),
        other => {
            let _ = child.wait();
            let reason = other
                .strip_prefix("error: ")
                .map(str::to_string)
                .unwrap_or_else(|| {
                    std::fs::read_to_string(&log_path)
                        .ok()
                        .and_then(|l| l.lines().last().map(str::to_string))
                        .unwrap_or_else(|| "exited before the mount was ready".into())
                });
            Err(MountError::Daemon {
                path: mountpoint.display().to_string(),
                reason,
            })
        }
    }
}

/// Records a live mount (called by the daemon once it is ready).
pub fn record_mount(
    store: &Store,
    mountpoint: &Path,
    image: &Digest,
    container: Option<&str>,
    pid: u32,
) -> Result<(), MountError> {
    store
        .conn()
        .execute(
            "INSERT OR REPLACE INTO mounts(mountpoint, image_id, container, pid, created_at) VALUES (?1, ?2, ?3, ?4, strftime('%Y-%m-%dT%H:%M:%fZ','now'))",
            params![mountpoint.to_string_lossy(), image.to_string(), container, pid],
        )
        .map_err(db(store))?;
    Ok(())
}

pub fn forget_mount(store: &Store, mountpoint: &Path) -> Result<(), MountError> {
    store
        .conn()
        .execute(
            "DELETE FROM mounts WHERE mountpoint = ?1",
            [mountpoint.to_string_lossy()],
        )
        .map_err(db(store))?;
    Ok(())
}

/// Unmounts a mount point, or every mount of an image; waits for the
/// daemons to exit. Returns the mount points it unmounted.
pub fn unmount(store: &Store, target: &str) -> Result<Vec<PathBuf>, MountError> {
    // Mount rows are ephemeral: forgetting one needs no fsync.
    let _ = store.conn().execute_batch("PRAGMA synchronous=NORMAL");
    reap_dead_mounts(store)?;
    let mounts = recorded(store)?;
    let as_path = Path::new(target).canonicalize().ok();
    let mut chosen: Vec<MountRecord> = mounts
        .iter()
        .filter(|m| Some(&m.mountpoint) == as_path.as_ref())
        .cloned()
        .collect();
    if chosen.is_empty() {
        if let Ok(c) = crate::container::records::find_container(store, target) {
            chosen = mounts
                .iter()
                .filter(|m| m.container.as_deref() == Some(c.id.as_str()))
                .cloned()
                .collect();
        }
    }
    if chosen.is_empty() {
        if let Ok(image) = resolve_image(store, target) {
            chosen = mounts
                .into_iter()
                .filter(|m| m.image == Some(image))
                .collect();
        }
    }
    if chosen.is_empty() {
        return Err(MountError::NotMounted(target.to_string()));
    }
    let mut done = Vec::new();
    for m in chosen {
        if m.driver() == Driver::Overlay {
            nix::mount::umount2(&m.mountpoint, nix::mount::MntFlags::MNT_DETACH)
                .map_err(|e| io(&m.mountpoint)(e.into()))?;
            forget_mount(store, &m.mountpoint)?;
            done.push(m.mountpoint);
            continue;
        }
        strata_fs::unmount(&m.mountpoint)?;
        let pid = nix::unistd::Pid::from_raw(m.pid);
        for _ in 0..500 {
            if !daemon_alive(m.pid) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        if daemon_alive(m.pid) {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
        forget_mount(store, &m.mountpoint)?;
        done.push(m.mountpoint);
    }
    Ok(done)
}

/// Where a container's view is mounted by `strata mount CONTAINER`, if it is.
pub fn container_view(store: &Store, container_id: &str) -> Result<Option<PathBuf>, MountError> {
    reap_dead_mounts(store)?;
    Ok(recorded(store)?
        .into_iter()
        .find(|m| m.container.as_deref() == Some(container_id))
        .map(|m| m.mountpoint))
}

/// `strata mount CONTAINER`: a running container's mount point as its
/// monitor serves it; for a stopped one, its writable view (image layers
/// under its upper directory) from a mount daemon, until `strata umount`,
/// at the same place, `<root>/containers/<id>/rootfs`: private to the
/// store's owner, like everything of a container's (docs/store.md).
/// `start` and `rm` refuse a container whose view is mounted.
pub fn mount_container(
    store: &Store,
    container: &crate::container::Container,
) -> Result<PathBuf, MountError> {
    use crate::container::spec::Status;
    if matches!(container.state.status, Status::Running | Status::Paused) {
        if crate::container::launch::userns::is_rootless() {
            // Its root is a mount of its own user namespace, closed to
            // the user's processes outside it (docs/rootless.md).
            return Err(MountError::Unsupported(format!(
                "rootless: container {} is running: its root is mounted in its user namespace only; use `strata cp`, `export` or `exec`, or stop it first",
                container.short_id()
            )));
        }
        return Ok(crate::container::container_dir(store, &container.id).join("rootfs"));
    }
    if let Some(existing) = container_view(store, &container.id)? {
        return Ok(existing);
    }
    let dir = crate::container::launch::rootfs::RootfsDirs::of(&crate::container::container_dir(
        store,
        &container.id,
    ))
    .mountpoint;
    let image = container
        .image_id
        .parse::<Digest>()
        .map_err(|_| MountError::NotMounted(container.image_id.clone()))?;
    let options = MountOptions {
        container: Some(container.id.clone()),
        ..MountOptions::default()
    };
    mount_image(store, &image.to_string(), Some(&dir), &options)
}
