//! Mounting: [`MountConfig`] says what to mount, [`serve`] mounts it and
//! serves requests until it is unmounted, [`spawn`] does the same on a
//! background thread, [`unmount`] detaches a mount from outside.
//!
//! `serve` calls its `ready` callback once the kernel has completed the
//! FUSE handshake, i.e. once the mount point answers; a daemon uses it to
//! tell its parent that the mount is usable. Requests are served by
//! [`MountConfig::threads`] threads, each on its own cloned `/dev/fuse`
//! descriptor.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::fs::stats::{IoCounters, IoStats};
use crate::fs::StrataFs;
use crate::layer::Layer;
use crate::source::{LayerSource, MemorySource};
use crate::tree::Tree;
use crate::union::Union;
use crate::upper::{Upper, UpperError};
use crate::{fusermount, privilege};

/// Why a mount failed.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("invalid mount configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Upper(#[from] UpperError),
    #[error("mounting on {path}")]
    Mount {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("serving {path}")]
    Serve {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("unmounting {path}")]
    Unmount {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What to mount and how.
#[derive(Debug, Clone)]
pub struct MountConfig {
    /// The read-only layers, bottom first, merged whole at mount.
    pub layers: Vec<Layer>,
    /// Instead of `layers`: a source the merged tree is read from one
    /// directory at a time, as the kernel asks (mount cost independent of
    /// the image's size).
    pub source: Option<Arc<dyn LayerSource>>,
    /// The writable upper directory (overlayfs conventions), if any.
    pub upper: Option<PathBuf>,
    /// Accepted for fuse-overlayfs compatibility and checked to be a
    /// directory; copy-up uses `O_TMPFILE` in the upper directory instead.
    pub work: Option<PathBuf>,
    /// Mount read-only (`MS_RDONLY`); implied when there is no upper.
    pub read_only: bool,
    /// Let users other than the mounting one in (`allow_other`).
    pub allow_other: bool,
    /// Device files do not open as devices (`nodev`).
    pub nodev: bool,
    /// Set-user/group-ID bits are ignored on exec (`nosuid`).
    pub nosuid: bool,
    /// The `source` column of /proc/mounts.
    pub fsname: String,
    /// Show `merged/` plus one directory per layer, named by
    /// [`MountConfig::layer_names`] (the `--layers` view); read-only.
    pub layer_view: bool,
    pub layer_names: Vec<String>,
    /// Threads serving requests.
    pub threads: usize,
    /// Use FUSE passthrough where the kernel offers it (the default); when
    /// false the daemon serves all file I/O (for kernels where passthrough
    /// misbehaves, and to test that path).
    pub passthrough: bool,
    /// Empty files (absolute paths inside the mount, root-owned, 0644)
    /// created in the upper directory before the mount answers, where
    /// they are missing and their parent directory exists: the mount
    /// points of files a container bind-mounts (/etc/hostname, ...),
    /// made without a round trip through the kernel for each.
    pub create_files: Vec<PathBuf>,
    /// Directory redirects, as overlayfs's `redirect_dir` option.
    pub redirect_dir: RedirectDir,
    /// Run once the mount exists and before any request is served, in
    /// the serving process while it is still single-threaded: an ordinary
    /// user's daemon for a container's view enters the container's user
    /// namespace there (so it sees the upper directory's owners as the
    /// container does), after `fusermount3` mounted in the user's own.
    pub before_serving: Option<BeforeServing>,
    /// The owner (uid, gid) of what callers create, whoever they are:
    /// for a daemon in a user namespace serving a mount of the initial
    /// one, whose callers' ids are not mapped where it runs.
    pub caller_ids: Option<(u32, u32)>,
}

/// The hook of [`MountConfig::before_serving`].
#[derive(Clone)]
pub struct BeforeServing(pub Arc<dyn Fn() -> std::io::Result<()> + Send + Sync>);

impl std::fmt::Debug for BeforeServing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BeforeServing(..)")
    }
}

/// What a mount does with overlayfs directory redirects (the values of
/// overlayfs's `redirect_dir` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RedirectDir {
    /// Renaming a merged directory gives it a redirect; redirects in the
    /// upper directory and in lower layers are followed (the default).
    #[default]
    On,
    /// Redirects are followed; renaming a merged directory fails with
    /// `EXDEV` (so `mv` copies it).
    Follow,
    /// Redirects are neither made nor followed: a renamed directory shows
    /// only what its own layer holds.
    NoFollow,
}

impl MountConfig {
    /// A read-only image mount: nodev, nosuid, allow_other.
    pub fn new(layers: Vec<Layer>) -> MountConfig {
        MountConfig {
            layers,
            source: None,
            upper: None,
            work: None,
            read_only: true,
            allow_other: true,
            nodev: true,
            nosuid: true,
            fsname: "strata".to_string(),
            layer_view: false,
            layer_names: Vec::new(),
            threads: std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8)),
            passthrough: true,
            create_files: Vec::new(),
            redirect_dir: RedirectDir::On,
            before_serving: None,
            caller_ids: None,
        }
    }

    /// A read-only image mount whose tree is read lazily from `source`.
    pub fn lazy(source: Arc<dyn LayerSource>) -> MountConfig {
        MountConfig {
            source: Some(source),
            ..MountConfig::new(Vec::new())
        }
    }

    fn validate(&self) -> Result<(), FsError> {
        if self.layer_view && self.source.is_some() {
            return Err(FsError::Config(
                "the layer view needs whole layers, not a lazy source".into(),
            ));
        }
        if self.layer_view && self.upper.is_some() {
            return Err(FsError::Config(
                "the layer view is read-only: no upper directory".into(),
            ));
        }
        if self.layer_view && self.layer_names.len() != self.layers.len() {
            return Err(FsError::Config(format!(
                "{} layer names for {} layers",
                self.layer_names.len(),
                self.layers.len()
            )));
        }
        if self.layer_view
            && self
                .layer_names
                .iter()
                .any(|n| n.is_empty() || n.contains('/') || n == "merged")
        {
            return Err(FsError::Config(
                "layer names must be non-empty, without '/', not 'merged'".into(),
            ));
        }
        if let Some(work) = &self.work {
            if !work.is_dir() {
                return Err(FsError::Config(format!(
                    "work directory {} is not a directory",
                    work.display()
                )));
            }
        }
        if self.threads == 0 {
            return Err(FsError::Config("threads must be at least 1".into()));
        }
        Ok(())
    }

    /// The options of `fusermount3 -o` for this mount (an ordinary
    /// user's; see [`fit_to_privilege`]).
    fn fusermount_options(&self) -> String {
        let mut options = vec![
            format!("fsname={}", self.fsname.replace(',', "_")),
            "subtype=strata".to_string(),
            "default_permissions".to_string(),
        ];
        let read_only = self.read_only || self.upper.is_none();
        options.push(if read_only { "ro" } else { "rw" }.to_string());
        options.push(if self.nodev { "nodev" } else { "dev" }.to_string());
        options.push(if self.nosuid { "nosuid" } else { "suid" }.to_string());
        if self.allow_other {
            options.push("allow_other".to_string());
        }
        options.join(",")
    }

    fn fuser_config(&self) -> fuser::Config {
        use fuser::MountOption as O;
        let mut options = vec![
            O::FSName(self.fsname.clone()),
            O::Subtype("strata".into()),
            O::DefaultPermissions,
        ];
        options.push(if self.read_only || self.upper.is_none() {
            O::RO
        } else {
            O::RW
        });
        // fuser mounts nodev,nosuid unless told otherwise.
        options.push(if self.nodev { O::NoDev } else { O::Dev });
        options.push(if self.nosuid { O::NoSuid } else { O::Suid });
        let mut config = fuser::Config::default();
        config.mount_options = options;
        config.acl = if self.allow_other {
            fuser::SessionACL::All
        } else {
            fuser::SessionACL::Owner
        };
        config.n_threads = Some(self.threads);
        // Cloning a channel opens /dev/fuse, which may be root's alone.
        config.clone_fd = privilege::has_sys_admin();
        config
    }
}

/// Mounts `config` on `mountpoint`, calls `ready` once the mount answers,
/// serves until the mount is unmounted, then returns.
pub fn serve(config: MountConfig, mountpoint: &Path, ready: impl FnOnce()) -> Result<(), FsError> {
    serve_counted(config, mountpoint, Arc::default(), ready)
}

/// [`serve`], counting opens and I/O in `stats`.
fn serve_counted(
    mut config: MountConfig,
    mountpoint: &Path,
    stats: Arc<IoCounters>,
    ready: impl FnOnce(),
) -> Result<(), FsError> {
    config.validate()?;
    fit_to_privilege(&mut config);
    let start = Instant::now();
    let fuser_config = config.fuser_config();
    let mount_options = config.fusermount_options();
    let passthrough = config.passthrough;
    let fsname = config.fsname.clone();
    let tree = if config.layer_view {
        Tree::build_layer_view(&config.layers, &config.layer_names)
    } else {
        // Whole layers are served through the same lazy tree as a store
        // source, so there is one merge algorithm for every mount.
        let source = match config.source.clone() {
            Some(source) => source,
            None => {
                let mut layers = std::mem::take(&mut config.layers);
                if config.redirect_dir == RedirectDir::NoFollow {
                    layers.iter_mut().for_each(|l| l.redirects.clear());
                }
                Arc::new(MemorySource::new(layers))
            }
        };
        Tree::lazy(source).map_err(|source| FsError::Mount {
            path: mountpoint.to_path_buf(),
            source,
        })?
    };
    let upper = config.upper.as_deref().map(Upper::open).transpose()?;
    let create_files = std::mem::take(&mut config.create_files);
    let redirect_dir = config.redirect_dir;
    let before_serving = config.before_serving.take();
    let caller_ids = config.caller_ids;
    // The tree holds all the mount needs: free the layer lists.
    drop(config);
    let union = Union::new(tree, upper, redirect_dir).map_err(|source| FsError::Mount {
        path: mountpoint.to_path_buf(),
        source,
    })?;
    if union.writable() {
        for path in &create_files {
            if let Err(e) = union.create_missing_file(path, 0o644) {
                tracing::debug!(path = %path.display(), "not created before mounting: {e:?}");
            }
        }
    }
    raise_fd_limit();
    let mut fs = StrataFs::new(union, passthrough, stats);
    fs.set_caller_ids(caller_ids);
    let session = if privilege::has_sys_admin() {
        fuser::Session::new(fs, mountpoint, &fuser_config)
    } else {
        // fuser opens /dev/fuse itself before it would try fusermount3,
        // and /dev/fuse may be root's alone: go through fusermount3.
        fusermount::mount(mountpoint, &mount_options).and_then(|fd| {
            let acl = fuser_config.acl;
            fuser::Session::from_fd(fs, fd, acl, fuser_config)
        })
    }
    .map_err(|source| FsError::Mount {
        path: mountpoint.to_path_buf(),
        source,
    })?;
    if let Some(BeforeServing(hook)) = before_serving {
        // Dropping the session on failure unmounts what it mounted.
        hook().map_err(|source| FsError::Mount {
            path: mountpoint.to_path_buf(),
            source,
        })?;
    }
    tracing::info!(mountpoint = %mountpoint.display(), elapsed = ?start.elapsed(), "mount ready");
    ready();
    match session.run() {
        Ok(()) => Ok(()),
        // Once the mount is gone, a worker thread that lost the race with the
        // end of the session (its channel read failing other than ENODEV) is
        // not a failure of the mount.
        Err(source) if !is_mounted(mountpoint, &fsname) => {
            tracing::warn!(mountpoint = %mountpoint.display(), "session ended after unmount: {source}");
            Ok(())
        }
        Err(source) => Err(FsError::Serve {
            path: mountpoint.to_path_buf(),
            source,
        }),
    }
}

/// Drops what an ordinary user's mount cannot have (docs/rootless.md):
/// passthrough without `CAP_SYS_ADMIN` in the initial user namespace (reads
/// are then served by the daemon with the page cache kept), and
/// `allow_other` through fusermount3 unless /etc/fuse.conf allows it.
fn fit_to_privilege(config: &mut MountConfig) {
    if config.passthrough && !privilege::may_passthrough() {
        tracing::info!(
            "no CAP_SYS_ADMIN in the initial user namespace: reads served by the daemon"
        );
        config.passthrough = false;
    }
    if config.allow_other && !privilege::may_allow_other() {
        tracing::info!("mounting without allow_other (no user_allow_other in /etc/fuse.conf)");
        config.allow_other = false;
    }
}

/// Whether a FUSE mount named `fsname` is still mounted at `mountpoint`.
fn is_mounted(mountpoint: &Path, fsname: &str) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return true;
    };
    let wanted = mountpoint.to_string_lossy();
    info.lines().any(|line| {
        let mut fields = line.split(' ');
        let at = fields.nth(4).unwrap_or("");
        let source_matches = line
            .split(" - ")
            .nth(1)
            .and_then(|rest| rest.split(' ').nth(1))
            .is_some_and(|source| source == fsname);
        at == wanted && source_matches
    })
}

/// Detaches the mount at `mountpoint` (`umount2(MNT_DETACH)`, or for an
/// ordinary user `fusermount3 -u -z`); its daemon sees the session end
/// and `serve` returns.
pub fn unmount(mountpoint: &Path) -> Result<(), FsError> {
    let error = |source: std::io::Error| FsError::Unmount {
        path: mountpoint.to_path_buf(),
        source,
    };
    match rustix::mount::unmount(mountpoint, rustix::mount::UnmountFlags::DETACH) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::PERM && !privilege::has_sys_admin() => {
            fusermount::unmount(mountpoint).map_err(error)
        }
        Err(e) => Err(error(e.into())),
    }
}

/// Detects a mount whose daemon died (the mount point answers ENOTCONN)
/// and detaches it. Returns whether it did. Uses statfs, which always
/// reaches the daemon (stat may be answered from the attribute cache).
pub fn cleanup_dead_mount(mountpoint: &Path) -> Result<bool, FsError> {
    match rustix::fs::statfs(mountpoint) {
        Err(e) if e == rustix::io::Errno::NOTCONN => {
            unmount(mountpoint)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// A mount served by a background thread of this process.
#[derive(Debug)]
pub struct MountHandle {
    mountpoint: PathBuf,
    thread: Option<JoinHandle<Result<(), FsError>>>,
    stats: Arc<IoCounters>,
}

/// Mounts on a background thread and returns once the mount is ready.
pub fn spawn(config: MountConfig, mountpoint: &Path) -> Result<MountHandle, FsError> {
    let (tx, rx) = mpsc::channel();
    let mp = mountpoint.to_path_buf();
    let stats = Arc::<IoCounters>::default();
    let counters = stats.clone();
    let thread = std::thread::Builder::new()
        .name("strata-fs".into())
        .spawn(move || {
            serve_counted(config, &mp, counters, move || {
                let _ = tx.send(());
            })
        })
        .map_err(|source| FsError::Mount {
            path: mountpoint.to_path_buf(),
            source,
        })?;
    if rx.recv().is_ok() {
        return Ok(MountHandle {
            mountpoint: mountpoint.to_path_buf(),
            thread: Some(thread),
            stats,
        });
    }
    match thread.join() {
        Ok(Err(e)) => Err(e),
        _ => Err(FsError::Mount {
            path: mountpoint.to_path_buf(),
            source: std::io::Error::other("mount thread ended before the mount was ready"),
        }),
    }
}

impl MountHandle {
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Records that the mount point moved (a directory above it was
    /// renamed): [`MountHandle::unmount`] detaches it there.
    pub fn set_mountpoint(&mut self, mountpoint: PathBuf) {
        self.mountpoint = mountpoint;
    }

    /// How the mount has served file opens and I/O so far.
    pub fn io_stats(&self) -> IoStats {
        self.stats.snapshot()
    }

    /// Unmounts and waits for the serving threads to finish.
    pub fn unmount(mut self) -> Result<(), FsError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), FsError> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        unmount(&self.mountpoint)?;
        match thread.join() {
            Ok(r) => r,
            Err(_) => Err(FsError::Serve {
                path: self.mountpoint.clone(),
                source: std::io::Error::other("serving thread panicked"),
            }),
        }
    }
}

impl Drop for MountHandle {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!(error = %e, "unmount on drop failed");
        }
    }
}

/// One descriptor per upper object the kernel remembers: allow many.
fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::debug!(error = %e, "could not raise RLIMIT_NOFILE");
        }
    }
}
