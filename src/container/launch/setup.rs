//! The launcher: what happens between fork and exec in a container's
//! first process (and, in part, in `exec`). The logic is written against
//! [`Syscalls`] so tests can check the exact sequence with a fake.
//!
//! Guarantees: the root is a private bind mount of the container's mount,
//! entered with pivot_root and the old root detached (never a bare
//! chroot); no mount target that is a symlink in the image is used;
//! capabilities outside the container's set are dropped from every set
//! before exec; the container's seccomp filter is on before exec (see
//! [`setup_process`] for when).

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use serde::{Deserialize, Serialize};

use super::caps::CapSet;
use super::passwd::ExecUser;
use super::seccomp::Program;
use super::syscalls::{DeviceNode, FileKind, Syscalls};
use crate::container::error::ContainerError;
use crate::container::host_options::{
    tmpfs_option, ulimit_resource, DeviceMapping, TmpfsOption, Ulimit, DEFAULT_SHM_SIZE,
};
use crate::container::spec::NetworkMode;

/// The files of /etc the container gets from strata, as Docker provides
/// them: bind-mounted from the container's directory.
pub const ETC_FILES: [&str; 3] = ["hostname", "hosts", "resolv.conf"];

/// Docker's masked paths: hidden behind /dev/null (files) or an empty
/// read-only tmpfs (directories).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// One bind mount into the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindMount {
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub destination: String,
    pub read_only: bool,
    /// Whether the source is a directory (else a file).
    pub directory: bool,
    /// Remount it `nodev`, so that no device node the container makes
    /// there opens (volumes and binds of an unprivileged container; not
    /// strata's own /etc files, which cannot hold one).
    pub nodev: bool,
}

/// Everything the container's first process needs, computed before fork.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaunchPlan {
    /// The container's mount (already mounted) on the host.
    pub rootfs: PathBuf,
    pub hostname: String,
    pub network: NetworkMode,
    pub read_only: bool,
    /// Binds: /etc/hostname, /etc/hosts, /etc/resolv.conf, volumes.
    pub binds: Vec<BindMount>,
    pub privileged: bool,
    pub caps: u64,
    pub no_new_privileges: bool,
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    /// `--init`: the launcher stays as pid 1 and runs `argv` as its child
    /// (see `launch/init.rs`).
    pub init: bool,
    /// Bytes of /dev/shm (`--shm-size`).
    pub shm_size: i64,
    /// `--tmpfs`: mount points and their options.
    pub tmpfs: Vec<(String, String)>,
    /// `--device`: host device nodes bound in.
    pub devices: Vec<DeviceMapping>,
    /// `--sysctl`: written in the container's namespaces.
    pub sysctls: Vec<(String, String)>,
    /// `--ulimit`.
    pub ulimits: Vec<Ulimit>,
}

/// Where and why the launch failed, and the exit code Docker would give.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct LaunchError {
    pub exit_code: i32,
    pub message: String,
}

/// The tool failed (125), e.g. the root could not be mounted.
impl From<ContainerError> for LaunchError {
    fn from(e: ContainerError) -> LaunchError {
        LaunchError {
            exit_code: 125,
            message: e.to_string(),
        }
    }
}

impl LaunchError {
    pub fn at(step: impl std::fmt::Display, errno: Errno) -> LaunchError {
        LaunchError {
            exit_code: 125,
            message: format!("{step}: {}", errno.desc()),
        }
    }
}

/// Makes sure `path` (absolute, inside the container) can be a mount
/// target: each component that exists must not be a symlink; missing ones
/// are created (directories, and the last one as a file if `file`).
pub fn prepare_target(
    sys: &dyn Syscalls,
    root: &Path,
    path: &str,
    file: bool,
) -> Result<PathBuf, LaunchError> {
    let components: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if components.contains(&"..") {
        return Err(LaunchError {
            exit_code: 125,
            message: format!("mount target {path:?} contains \"..\""),
        });
    }
    let mut current = root.to_path_buf();
    for (i, c) in components.iter().enumerate() {
        current.push(c);
        let last = i + 1 == components.len();
        match sys
            .lstat_kind(&current)
            .map_err(|e| LaunchError::at(format!("lstat {}", current.display()), e))?
        {
            Some(FileKind::Symlink) => {
                return Err(LaunchError {
                    exit_code: 125,
                    message: format!(
                        "mount target {path:?} is a symlink in the image (at /{}): refused",
                        components[..=i].join("/")
                    ),
                })
            }
            Some(FileKind::Dir) if last && file => {
                return Err(LaunchError {
                    exit_code: 125,
                    message: format!("mount target {path:?} is a directory, expected a file"),
                })
            }
            Some(FileKind::Dir) => {}
            Some(_) if !last => {
                return Err(LaunchError {
                    exit_code: 125,
                    message: format!(
                        "mount target {path:?}: /{} is not a directory",
                        components[..=i].join("/")
                    ),
                })
            }
            Some(_) if !file => {
                return Err(LaunchError {
                    exit_code: 125,
                    message: format!("mount target {path:?} is not a directory"),
                })
            }
            Some(_) => {}
            None if last && file => sys
                .create_file(&current, 0o644)
                .map_err(|e| LaunchError::at(format!("create {}", current.display()), e))?,
            None => sys
                .mkdir(&current, 0o755)
                .map_err(|e| LaunchError::at(format!("mkdir {}", current.display()), e))?,
        }
    }
    Ok(current)
}

fn mount(
    sys: &dyn Syscalls,
    src: &str,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), LaunchError> {
    sys.mount(src, target, fstype, flags, data).map_err(|e| {
        LaunchError::at(
            format!("mount {} on {}", fstype.unwrap_or(src), target.display()),
            e,
        )
    })
}

/// Builds the container's root: new namespaces, private propagation, the
/// root bind-mounted onto itself, /proc, /dev, /sys, the binds, then
/// pivot_root, masked and read-only paths, and hostname and network.
pub fn setup_rootfs(sys: &dyn Syscalls, plan: &LaunchPlan) -> Result<(), LaunchError> {
    let mut flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    if plan.network == NetworkMode::None {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    sys.unshare(flags)
        .map_err(|e| LaunchError::at("unshare", e))?;
    mount(
        sys,
        "none",
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )?;
    let root = plan.rootfs.as_path();
    let root_str = root.to_string_lossy().to_string();
    mount(
        sys,
        &root_str,
        root,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?;

    let proc_ = prepare_target(sys, root, "/proc", false)?;
    mount(
        sys,
        "proc",
        &proc_,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV,
        None,
    )?;
    let mut nodes = setup_dev(sys, root, plan.privileged, plan.shm_size)?;
    let sys_dir = prepare_target(sys, root, "/sys", false)?;
    let sys_flags =
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV | MsFlags::MS_RDONLY;
    if sys
        .mount("sysfs", &sys_dir, Some("sysfs"), sys_flags, None)
        .is_err()
    {
        // Not allowed in the host's network namespace everywhere: bind
        // the host's /sys instead, read-only.
        mount(
            sys,
            "/sys",
            &sys_dir,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )?;
        mount(
            sys,
            "none",
            &sys_dir,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | sys_flags,
            None,
        )?;
    }
    for bind in &plan.binds {
        let target = prepare_target(sys, root, &bind.destination, !bind.directory)?;
        let source = bind.source.to_string_lossy().to_string();
        mount(
            sys,
            &source,
            &target,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )?;
        // The container holds CAP_MKNOD, as under Docker (whose device
        // cgroup then refuses the node it makes): here a node it makes
        // in a volume or bind opens nothing.
        let mut set = MsFlags::empty();
        if bind.read_only {
            set |= MsFlags::MS_RDONLY;
        }
        if bind.nodev {
            set |= MsFlags::MS_NODEV;
        }
        remount_bind(sys, &target, set, MsFlags::empty())?;
    }
    for (destination, options) in &plan.tmpfs {
        mount_tmpfs(sys, root, destination, options)?;
    }
    for device in &plan.devices {
        add_device(sys, root, &mut nodes, device)?;
    }
    nodes.close(sys)?;
    sys.pivot_into(root)
        .map_err(|e| LaunchError::at("pivot_root", e))?;
    // In the container's new ipc and network namespaces, before /proc/sys
    // is made read-only.
    for (key, value) in &plan.sysctls {
        sys.write_sysctl(key, value)
            .map_err(|e| LaunchError::at(format!("writing sysctl {key}={value}"), e))?;
    }
    for limit in &plan.ulimits {
        set_ulimit(sys, limit)?;
    }
    if !plan.privileged {
        mask_paths(sys)?;
    }
    if plan.read_only {
        remount_bind(sys, Path::new("/"), MsFlags::MS_RDONLY, MsFlags::empty())?;
    }
    sys.sethostname(&plan.hostname)
        .map_err(|e| LaunchError::at("sethostname", e))?;
    if plan.network == NetworkMode::None || plan.network.is_user_mode() {
        sys.loopback_up()
            .map_err(|e| LaunchError::at("bringing lo up", e))?;
    }
    Ok(())
}

/// Changes the flags of the bind mount at `target`: `set` added, `clear`
/// taken away, the others kept. A bind remount replaces every per-mount
/// flag, so without this it would drop the source's `nosuid`, `nodev` or
/// `noexec` (the root's `nodev`, for `--read-only`).
fn remount_bind(
    sys: &dyn Syscalls,
    target: &Path,
    set: MsFlags,
    clear: MsFlags,
) -> Result<(), LaunchError> {
    let have = sys
        .mount_flags(target)
        .map_err(|e| LaunchError::at(format!("statvfs {}", target.display()), e))?;
    let want = (have | set) & !clear;
    if want == have {
        return Ok(());
    }
    mount(
        sys,
        "none",
        target,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | want,
        None,
    )
}

/// The devices of every container's /dev (Docker's set).
const DEVICES: [(&str, u64, u64); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// /dev: a tmpfs with [`DEVICES`], the links to /proc and the pts, shm
/// and mqueue mounts. It is `nodev` (but for `--privileged`); its
/// devices are the container's own, made where they can open and bound
/// in ([`NodeStage`]): a device node the container makes in /dev opens
/// nothing. Returns the stage, for `--device`'s nodes.
fn setup_dev(
    sys: &dyn Syscalls,
    root: &Path,
    privileged: bool,
    shm_size: i64,
) -> Result<NodeStage, LaunchError> {
    let dev = prepare_target(sys, root, "/dev", false)?;
    let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME;
    if !privileged {
        flags |= MsFlags::MS_NODEV;
    }
    mount(
        sys,
        "tmpfs",
        &dev,
        Some("tmpfs"),
        flags,
        Some("mode=755,size=65536k"),
    )?;
    let mut nodes = NodeStage::open(sys, &dev);
    for (name, major, minor) in DEVICES {
        let path = dev.join(name);
        let node = DeviceNode::char_666(major, minor);
        if privileged {
            sys.mknod(&path, &node)
                .map_err(|e| LaunchError::at(format!("mknod {}", path.display()), e))?;
            continue;
        }
        sys.create_file(&path, 0o666)
            .map_err(|e| LaunchError::at(format!("create {}", path.display()), e))?;
        if !nodes.place(sys, &node, &path)? {
            bind_host_device(sys, name, (major, minor), &path)?;
        }
    }
    for (target, link) in [
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
        ("pts/ptmx", "ptmx"),
        ("/proc/kcore", "core"),
    ] {
        sys.symlink(target, &dev.join(link))
            .map_err(|e| LaunchError::at(format!("symlink /dev/{link}"), e))?;
    }
    let pts = dev.join("pts");
    sys.mkdir(&pts, 0o755)
        .map_err(|e| LaunchError::at("mkdir /dev/pts", e))?;
    mount(
        sys,
        "devpts",
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )?;
    let shm = dev.join("shm");
    sys.mkdir(&shm, 0o1777)
        .map_err(|e| LaunchError::at("mkdir /dev/shm", e))?;
    let locked = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let shm_size = if shm_size > 0 {
        shm_size
    } else {
        DEFAULT_SHM_SIZE
    };
    mount(
        sys,
        "shm",
        &shm,
        Some("tmpfs"),
        locked,
        Some(&format!("mode=1777,size={shm_size}")),
    )?;
    let mqueue = dev.join("mqueue");
    sys.mkdir(&mqueue, 0o755)
        .map_err(|e| LaunchError::at("mkdir /dev/mqueue", e))?;
    mount(sys, "mqueue", &mqueue, Some("mqueue"), locked, None)?;
    Ok(nodes)
}

/// `--tmpfs PATH[:OPTIONS]`: a tmpfs with Docker's default flags
/// (`nosuid,nodev,noexec`), changed by the options given.
fn mount_tmpfs(
    sys: &dyn Syscalls,
    root: &Path,
    destination: &str,
    options: &str,
) -> Result<(), LaunchError> {
    let target = prepare_target(sys, root, destination, false)?;
    let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let mut data = Vec::new();
    for option in options.split(',').filter(|o| !o.is_empty()) {
        match tmpfs_option(option) {
            Some(TmpfsOption::Set(f)) => flags |= f,
            Some(TmpfsOption::Clear(f)) => flags &= !f,
            Some(TmpfsOption::Data) => data.push(option),
            None => {
                return Err(LaunchError {
                    exit_code: 125,
                    message: format!("invalid tmpfs option {option:?} for {destination}"),
                })
            }
        }
    }
    let data = data.join(",");
    mount(
        sys,
        "tmpfs",
        &target,
        Some("tmpfs"),
        flags,
        (!data.is_empty()).then_some(data.as_str()),
    )
}

/// `--device`: a node like the host's (type, numbers, mode and owner,
/// as runc makes it), which must still be a device, at its place in the
/// container, made by `nodes` with device access (the container's /dev
/// and root are `nodev`); where mknod is refused, the host's node bound
/// in.
fn add_device(
    sys: &dyn Syscalls,
    root: &Path,
    nodes: &mut NodeStage,
    device: &DeviceMapping,
) -> Result<(), LaunchError> {
    let host = Path::new(&device.path_on_host);
    let node = match sys.device_stat(host) {
        Ok(Some(node)) => node,
        Ok(None) => {
            return Err(LaunchError {
                exit_code: 125,
                message: format!(
                    "error gathering device information while adding custom device {:?}: not a device node",
                    device.path_on_host
                ),
            })
        }
        Err(e) => {
            return Err(LaunchError::at(
                format!(
                    "error gathering device information while adding custom device {:?}",
                    device.path_on_host
                ),
                e,
            ))
        }
    };
    let target = prepare_target(sys, root, &device.path_in_container, true)?;
    if nodes.place(sys, &node, &target)? {
        return Ok(());
    }
    bind_with_device_access(sys, &device.path_on_host, &target)
}

/// Binds the host's node `host` onto `target` (an empty file the caller
/// made), with device access even if the host's mount of it is `nodev`.
fn bind_with_device_access(
    sys: &dyn Syscalls,
    host: &str,
    target: &Path,
) -> Result<(), LaunchError> {
    mount(sys, host, target, None, MsFlags::MS_BIND, None)?;
    remount_bind(sys, target, MsFlags::empty(), MsFlags::MS_NODEV)
}

/// Where a container's device nodes are made: a tmpfs with device
/// access at `/dev/.strata-nodes`, in the container's own mount
/// namespace, detached and removed before pivot_root. Each node made
/// there is bound onto its place, so the container's `/dev/null` is a
/// node of its own, as Docker's are: a `chmod` or `chown` of it inside
/// changes that node, never the host's. Where mknod is refused (a user
/// namespace: rootless), the caller binds the host's node instead, which
/// the container cannot change either, its owner being none of the
/// namespace's.
struct NodeStage {
    /// The directory, once made (removed at close).
    dir: Option<PathBuf>,
    /// Its tmpfs is mounted and mknod works there: nodes are made.
    mounted: bool,
    /// Nodes made so far (each named by its number).
    made: usize,
}

impl NodeStage {
    fn open(sys: &dyn Syscalls, dev: &Path) -> NodeStage {
        let dir = dev.join(".strata-nodes");
        let mut stage = NodeStage {
            dir: None,
            mounted: false,
            made: 0,
        };
        if sys.mkdir(&dir, 0o700).is_err() {
            return stage;
        }
        stage.dir = Some(dir.clone());
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
        stage.mounted = sys
            .mount(
                "tmpfs",
                &dir,
                Some("tmpfs"),
                flags,
                Some("mode=700,size=4k"),
            )
            .is_ok();
        stage
    }

    /// Makes `node` and binds it onto `target` (an existing file): false
    /// if nodes cannot be made here, and nothing was done.
    fn place(
        &mut self,
        sys: &dyn Syscalls,
        node: &DeviceNode,
        target: &Path,
    ) -> Result<bool, LaunchError> {
        let Some(dir) = self.dir.as_ref().filter(|_| self.mounted) else {
            return Ok(false);
        };
        let made = dir.join(self.made.to_string());
        match sys.mknod(&made, node) {
            Ok(()) => {}
            Err(Errno::EPERM) => {
                self.unmount(sys)?;
                return Ok(false);
            }
            Err(e) => return Err(LaunchError::at(format!("mknod {}", made.display()), e)),
        }
        self.made += 1;
        let source = made.to_string_lossy().to_string();
        mount(sys, &source, target, None, MsFlags::MS_BIND, None)?;
        Ok(true)
    }

    /// Detaches the tmpfs (the nodes bound from it keep it).
    fn unmount(&mut self, sys: &dyn Syscalls) -> Result<(), LaunchError> {
        if let (Some(dir), true) = (&self.dir, self.mounted) {
            sys.umount_detach(dir)
                .map_err(|e| LaunchError::at(format!("umount {}", dir.display()), e))?;
        }
        self.mounted = false;
        Ok(())
    }

    /// Leaves no trace in the container's /dev.
    fn close(mut self, sys: &dyn Syscalls) -> Result<(), LaunchError> {
        self.unmount(sys)?;
        if let Some(dir) = self.dir.take() {
            sys.rmdir(&dir)
                .map_err(|e| LaunchError::at(format!("rmdir {}", dir.display()), e))?;
        }
        Ok(())
    }
}

/// `--ulimit`: setrlimit in the first process (inherited by the command).
pub fn set_ulimit(sys: &dyn Syscalls, limit: &Ulimit) -> Result<(), LaunchError> {
    let resource = ulimit_resource(&limit.name).ok_or_else(|| LaunchError {
        exit_code: 125,
        message: format!("invalid ulimit type: {}", limit.name),
    })?;
    sys.set_rlimit(resource, limit.soft, limit.hard)
        .map_err(|e| LaunchError::at(format!("setting ulimit {}", limit.name), e))
}

/// Binds the host's `/dev/<name>`, which must be the character device
/// `numbers`, onto `target` ([`bind_with_device_access`]).
fn bind_host_device(
    sys: &dyn Syscalls,
    name: &str,
    numbers: (u64, u64),
    target: &Path,
) -> Result<(), LaunchError> {
    let host = format!("/dev/{name}");
    match sys.char_device(Path::new(&host)) {
        Ok(Some(found)) if found == numbers => {}
        Ok(_) => {
            return Err(LaunchError {
                exit_code: 125,
                message: format!(
                    "{host}: not the character device {}:{} on this host",
                    numbers.0, numbers.1
                ),
            })
        }
        Err(e) => return Err(LaunchError::at(format!("stat {host}"), e)),
    }
    bind_with_device_access(sys, &host, target)
}

/// Masks Docker's masked paths and makes its read-only paths read-only.
/// Runs after pivot_root, so the paths are the container's.
fn mask_paths(sys: &dyn Syscalls) -> Result<(), LaunchError> {
    for path in MASKED_PATHS {
        let p = Path::new(path);
        match sys.lstat_kind(p) {
            Ok(Some(FileKind::Dir)) => {
                mount(sys, "tmpfs", p, Some("tmpfs"), MsFlags::MS_RDONLY, None)?;
            }
            Ok(Some(FileKind::Symlink)) | Ok(None) | Err(_) => {}
            Ok(Some(_)) => mount(sys, "/dev/null", p, None, MsFlags::MS_BIND, None)?,
        }
    }
    for path in READONLY_PATHS {
        let p = Path::new(path);
        if matches!(sys.lstat_kind(p), Ok(Some(FileKind::Dir | FileKind::File))) {
            mount(sys, path, p, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
            let flags = MsFlags::MS_BIND
                | MsFlags::MS_REMOUNT
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC
                | MsFlags::MS_REC;
            mount(sys, "none", p, None, flags, None)?;
        }
    }
    Ok(())
}

/// A seccomp filter [`setup_process`] left for the caller to load as its
/// last step before exec (or, with `--init`, before init forks).
#[must_use = "the seccomp filter must be loaded before exec"]
pub struct PendingFilter<'a>(Option<&'a Program>);

impl PendingFilter<'_> {
    pub fn load(self, sys: &dyn Syscalls) -> Result<(), LaunchError> {
        match self.0 {
            Some(program) => load_filter(sys, program),
            None => Ok(()),
        }
    }
}

fn load_filter(sys: &dyn Syscalls, program: &Program) -> Result<(), LaunchError> {
    sys.load_seccomp(program)
        .map_err(|e| LaunchError::at("loading the seccomp filter", e))
}

/// Sets the process up to run as the container's process: capabilities
/// (bounding set first, then the others), user and groups,
/// no-new-privileges, the working directory, the seccomp filter.
///
/// Loading a filter takes no_new_privs or CAP_SYS_ADMIN. With
/// no_new_privs the filter is returned for the caller to load last, so
/// that none of the launcher's own calls is filtered. Without, it is
/// loaded here, after the working directory is made and before the
/// process gives up its capabilities (what runc does): the filter must
/// then allow setgroups, setresgid, setresuid, capset, prctl and
/// sched_setaffinity, as Docker's does.
pub fn setup_process<'a>(
    sys: &dyn Syscalls,
    caps: CapSet,
    user: &ExecUser,
    no_new_privileges: bool,
    working_dir: &str,
    seccomp: Option<&'a Program>,
) -> Result<PendingFilter<'a>, LaunchError> {
    let last = sys.last_cap();
    for cap in 0..=last {
        if !caps.contains(cap) {
            sys.capbset_drop(cap).map_err(|e| {
                LaunchError::at(
                    format!("dropping capability {cap} from the bounding set"),
                    e,
                )
            })?;
        }
    }
    let dir = if working_dir.is_empty() {
        "/"
    } else {
        working_dir
    };
    let path = Path::new(dir);
    if sys.chdir(path).is_err() {
        prepare_target(sys, Path::new("/"), dir, false).map_err(|e| LaunchError {
            exit_code: 126,
            message: e.message,
        })?;
        sys.chdir(path).map_err(|e| LaunchError {
            exit_code: 126,
            message: format!(
                "chdir to cwd ({dir:?}) set in config.json failed: {}",
                e.desc()
            ),
        })?;
    }
    let pending = match seccomp {
        Some(program) if !no_new_privileges => {
            load_filter(sys, program)?;
            PendingFilter(None)
        }
        other => PendingFilter(other),
    };
    sys.set_ids(user.uid, user.gid, &user.groups)
        .map_err(|e| LaunchError::at("setting user and groups", e))?;
    // Root keeps the container's set; any other user starts with none
    // effective or permitted (the kernel clears them on setuid anyway).
    let (effective, permitted) = if user.uid == 0 {
        (caps.0, caps.0)
    } else {
        (0, 0)
    };
    sys.capset(effective, permitted, 0)
        .map_err(|e| LaunchError::at("capset", e))?;
    sys.ambient_clear()
        .map_err(|e| LaunchError::at("clearing ambient capabilities", e))?;
    if no_new_privileges {
        sys.set_no_new_privs()
            .map_err(|e| LaunchError::at("no_new_privs", e))?;
    }
    Ok(pending)
}

/// Finds the program to run as `execvp` would, in the container's PATH,
/// and explains failures with Docker's exit codes (127 not found, 126 not
/// executable).
pub fn resolve_program(argv0: &str, env: &[String]) -> Result<PathBuf, LaunchError> {
    use std::os::unix::fs::PermissionsExt;
    if argv0.is_empty() {
        return Err(LaunchError {
            exit_code: 127,
            message: "no command specified".into(),
        });
    }
    if argv0.contains('/') {
        return Ok(PathBuf::from(argv0));
    }
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(crate::container::spec::DEFAULT_PATH);
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(argv0);
        if let Ok(meta) = std::fs::metadata(&candidate) {
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    Err(LaunchError {
        exit_code: 127,
        message: format!("exec: \"{argv0}\": executable file not found in $PATH"),
    })
}

/// The exit code and message for a failed execve.
pub fn exec_error(program: &Path, errno: Errno) -> LaunchError {
    let code = match errno {
        Errno::ENOENT | Errno::ENOTDIR => 127,
        _ => 126,
    };
    LaunchError {
        exit_code: code,
        message: format!(
            "exec: \"{}\": {}",
            program.display(),
            errno.desc().to_lowercase()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::super::syscalls::Recorder;
    use super::*;

    fn plan() -> LaunchPlan {
        LaunchPlan {
            rootfs: "/r".into(),
            hostname: "box".into(),
            network: NetworkMode::None,
            read_only: true,
            binds: vec![BindMount {
                source: "/c/hosts".into(),
                destination: "/etc/hosts".into(),
                read_only: false,
                directory: false,
                nodev: true,
            }],
            privileged: false,
            caps: 0,
            no_new_privileges: true,
            argv: vec!["sh".into()],
            env: vec![],
            working_dir: "/".into(),
            init: false,
            shm_size: DEFAULT_SHM_SIZE,
            tmpfs: vec![],
            devices: vec![],
            sysctls: vec![],
            ulimits: vec![],
        }
    }

    #[test]
    fn host_options_are_applied_before_pivot_or_before_the_mask() {
        let sys = Recorder::with_files(&[
            ("/r/proc", FileKind::Dir),
            ("/r/etc", FileKind::Dir),
            ("/proc/sys", FileKind::Dir),
        ]);
        let mut plan = plan();
        plan.shm_size = 10 << 20;
        plan.tmpfs = vec![("/run".into(), "rw,exec,size=1m".into())];
        plan.devices = vec![DeviceMapping {
            path_on_host: "/dev/null".into(),
            path_in_container: "/dev/mynull".into(),
            cgroup_permissions: "r".into(),
        }];
        plan.sysctls = vec![("kernel.shmmax".into(), "1000000".into())];
        plan.ulimits = vec![Ulimit {
            name: "nofile".into(),
            soft: 100,
            hard: 200,
        }];
        setup_rootfs(&sys, &plan).unwrap();
        let calls = sys.calls();
        let pos = |prefix: &str| {
            calls
                .iter()
                .position(|c| c.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} in {calls:#?}"))
        };
        assert!(calls
            .iter()
            .any(|c| c.starts_with("mount shm /r/dev/shm tmpfs")
                && c.ends_with("mode=1777,size=10485760")));
        // Docker's nosuid,nodev,noexec, less what the options lift.
        assert!(
            calls
                .iter()
                .any(|c| c == "mount tmpfs /r/run tmpfs MS_NOSUID | MS_NODEV size=1m"),
            "{calls:#?}"
        );
        // --device's node is made beside /dev's six and bound in, before
        // the stage goes.
        assert!(
            pos("create /r/dev/mynull") < pos("mknod /r/dev/.strata-nodes/6 c 1:3 666 0:0"),
            "{calls:#?}"
        );
        assert!(
            pos("mknod /r/dev/.strata-nodes/6")
                < pos("mount /r/dev/.strata-nodes/6 /r/dev/mynull - MS_BIND -")
        );
        assert!(
            pos("mount /r/dev/.strata-nodes/6 /r/dev/mynull") < pos("umount /r/dev/.strata-nodes")
        );
        assert!(pos("umount /r/dev/.strata-nodes") < pos("rmdir /r/dev/.strata-nodes"));
        assert!(pos("rmdir /r/dev/.strata-nodes") < pos("pivot_root"));
        assert!(pos("mount tmpfs /r/run") < pos("pivot_root"));
        assert!(pos("pivot_root") < pos("sysctl kernel.shmmax=1000000"));
        assert!(pos("sysctl kernel.shmmax=1000000") < pos("mount none /proc/sys - MS_RDONLY"));
        assert!(pos("rlimit RLIMIT_NOFILE 100 200") > pos("pivot_root"));
    }

    #[test]
    fn rootfs_sequence_is_private_bind_pivot_then_mask() {
        let sys = Recorder::with_files(&[
            ("/r/proc", FileKind::Dir),
            ("/r/etc", FileKind::Dir),
            ("/proc/kcore", FileKind::File),
            ("/proc/sys", FileKind::Dir),
            ("/proc/acpi", FileKind::Dir),
        ]);
        setup_rootfs(&sys, &plan()).unwrap();
        let calls = sys.calls();
        let pos = |prefix: &str| {
            calls
                .iter()
                .position(|c| c.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} in {calls:#?}"))
        };
        assert!(
            calls[0].contains("CLONE_NEWNS")
                && calls[0].contains("CLONE_NEWNET")
                && calls[0].contains("CLONE_NEWIPC")
        );
        assert!(
            calls[1].starts_with("mount none / - MS_REC | MS_PRIVATE"),
            "{}",
            calls[1]
        );
        assert!(
            calls[2].starts_with("mount /r /r - MS_BIND | MS_REC"),
            "{}",
            calls[2]
        );
        assert!(pos("mount proc /r/proc proc") < pos("pivot_root /r"));
        assert!(pos("mkdir /r/dev ") < pos("mount tmpfs /r/dev tmpfs"));
        assert!(pos("create /r/etc/hosts") < pos("mount /c/hosts /r/etc/hosts"));
        assert!(pos("pivot_root /r") < pos("mount /dev/null /proc/kcore"));
        assert!(pos("mount tmpfs /proc/acpi tmpfs MS_RDONLY") > pos("pivot_root"));
        assert!(calls
            .iter()
            .any(|c| c.starts_with("mount none /proc/sys - MS_RDONLY")));
        assert!(calls
            .iter()
            .any(|c| c.starts_with("mount none / - MS_RDONLY | MS_REMOUNT | MS_BIND")));
        // /dev is nodev; its devices are the container's own, made on a
        // tmpfs with device access and bound in, never the host's nodes.
        assert!(calls
            .iter()
            .any(|c| c.starts_with("mount tmpfs /r/dev tmpfs MS_NOSUID | MS_NODEV")));
        assert!(calls.contains(
            &"mount tmpfs /r/dev/.strata-nodes tmpfs MS_NOSUID | MS_NOEXEC mode=700,size=4k"
                .to_string()
        ));
        for (i, (dev, major, minor)) in DEVICES.iter().enumerate() {
            let made = format!("mknod /r/dev/.strata-nodes/{i} c {major}:{minor} 666 0:0");
            let bind = format!("mount /r/dev/.strata-nodes/{i} /r/dev/{dev} - MS_BIND -");
            assert!(
                pos(&format!("create /r/dev/{dev} 666")) < pos(&made),
                "{dev}"
            );
            assert!(pos(&made) < pos(&bind), "{dev}");
        }
        assert!(!calls
            .iter()
            .any(|c| c.starts_with("mount /dev/") && c.contains(" /r/")));
        assert!(pos("umount /r/dev/.strata-nodes") < pos("rmdir /r/dev/.strata-nodes"));
        // Binds are remounted nodev.
        assert!(
            pos("mount /c/hosts /r/etc/hosts - MS_BIND | MS_REC")
                < pos("mount none /r/etc/hosts - MS_NODEV | MS_REMOUNT | MS_BIND")
        );
        assert!(calls
            .iter()
            .any(|c| c.contains("devpts") && c.contains("newinstance")));
        assert_eq!(calls.last().unwrap(), "loopback_up");
    }

    #[test]
    fn remounts_keep_the_flags_they_do_not_change() {
        // mknod refused (a user namespace), so the host's nodes are bound
        // in; its /dev mounted nodev: the bound devices get device access.
        let sys = Recorder::with_files(&[("/r/etc", FileKind::Dir)]);
        sys.mknod_refused.set(true);
        sys.mount_flags.borrow_mut().extend([
            (
                PathBuf::from("/r/dev/null"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            ),
            // A bind whose source is nosuid, noexec; and a root that is
            // nodev, made read-only.
            (
                PathBuf::from("/r/etc/hosts"),
                MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            ),
            (PathBuf::from("/"), MsFlags::MS_NODEV),
        ]);
        let mut plan = plan();
        plan.read_only = true;
        plan.binds[0].read_only = true;
        setup_rootfs(&sys, &plan).unwrap();
        let calls = sys.calls();
        for wanted in [
            "mount none /r/dev/null - MS_NOSUID | MS_NOEXEC | MS_REMOUNT | MS_BIND -",
            "mount none /r/etc/hosts - MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_REMOUNT | MS_BIND -",
            "mount none / - MS_RDONLY | MS_NODEV | MS_REMOUNT | MS_BIND -",
        ] {
            assert!(calls.iter().any(|c| c == wanted), "{wanted} not in {calls:#?}");
        }
        // Nothing to change, no remount.
        assert!(!calls
            .iter()
            .any(|c| c.starts_with("mount none /r/dev/zero")));
    }

    #[test]
    fn privileged_dev_is_made_by_mknod_and_binds_not_marked_nodev_keep_device_access() {
        let sys = Recorder::with_files(&[("/r/etc", FileKind::Dir)]);
        let mut plan = plan();
        plan.privileged = true;
        plan.binds[0].nodev = false;
        setup_rootfs(&sys, &plan).unwrap();
        let calls = sys.calls();
        assert!(calls
            .iter()
            .any(|c| c.starts_with("mount tmpfs /r/dev tmpfs MS_NOSUID | MS_STRICTATIME")));
        assert!(calls.contains(&"mknod /r/dev/null c 1:3 666 0:0".to_string()));
        assert!(!calls
            .iter()
            .any(|c| c.starts_with("mount none /r/etc/hosts")));
    }

    /// The launcher's calls for a container with `--device /dev/sdz:/dev/xvda`
    /// (a block device of group 6's, mode 0660, in the fake), mknod
    /// refused or not.
    fn calls_with_a_device(mknod_refused: bool) -> Vec<String> {
        let sys = Recorder::with_files(&[("/r/etc", FileKind::Dir)]);
        sys.mknod_refused.set(mknod_refused);
        let mut plan = plan();
        plan.devices = vec![DeviceMapping {
            path_on_host: "/dev/sdz".into(),
            path_in_container: "/dev/xvda".into(),
            cgroup_permissions: "rwm".into(),
        }];
        setup_rootfs(&sys, &plan).unwrap();
        sys.calls()
    }

    #[test]
    fn where_mknod_is_refused_the_hosts_nodes_are_bound_in() {
        let calls = calls_with_a_device(true);
        for dev in ["null", "zero", "full", "random", "urandom", "tty"] {
            let bind = format!("mount /dev/{dev} /r/dev/{dev} - MS_BIND -");
            assert!(calls.contains(&bind), "{bind} not in {calls:#?}");
        }
        assert!(calls.contains(&"mount /dev/sdz /r/dev/xvda - MS_BIND -".to_string()));
        // The stage went at the first refusal, and leaves no directory.
        let umount = calls
            .iter()
            .position(|c| c == "umount /r/dev/.strata-nodes")
            .unwrap();
        assert!(
            umount
                < calls
                    .iter()
                    .position(|c| c == "mount /dev/null /r/dev/null - MS_BIND -")
                    .unwrap()
        );
        assert_eq!(
            calls.iter().filter(|c| c.starts_with("umount ")).count(),
            1,
            "{calls:#?}"
        );
        assert!(calls.contains(&"rmdir /r/dev/.strata-nodes".to_string()));
    }

    #[test]
    fn a_device_gets_the_host_nodes_type_mode_and_owner() {
        let calls = calls_with_a_device(false);
        assert!(
            calls.contains(&"mknod /r/dev/.strata-nodes/6 b 8:0 660 0:6".to_string()),
            "{calls:#?}"
        );
        assert!(calls.contains(&"mount /r/dev/.strata-nodes/6 /r/dev/xvda - MS_BIND -".to_string()));
        // Its bind keeps the stage's flags (device access): no remount.
        assert!(!calls
            .iter()
            .any(|c| c.starts_with("mount none /r/dev/xvda")));
    }

    #[test]
    fn symlinked_mount_targets_are_refused() {
        let sys = Recorder::with_files(&[("/r/proc", FileKind::Symlink)]);
        let err = setup_rootfs(&sys, &plan()).unwrap_err();
        assert!(err.message.contains("symlink"), "{err}");
        assert!(!sys.calls().iter().any(|c| c.contains("proc proc")));
        let sys = Recorder::with_files(&[("/r/etc", FileKind::Symlink)]);
        assert!(prepare_target(&sys, Path::new("/r"), "/etc/hosts", true).is_err());
        assert!(prepare_target(&sys, Path::new("/r"), "/a/../../x", false).is_err());
    }

    #[test]
    fn process_drops_every_other_capability_before_switching_user() {
        let sys = Recorder::with_files(&[]);
        let caps = super::super::caps::effective_set(false, &[], &[], 40).unwrap();
        let user = ExecUser {
            uid: 1000,
            gid: 1000,
            groups: vec![10],
            home: "/".into(),
        };
        let _ = setup_process(&sys, caps, &user, true, "/work", None).unwrap();
        let calls = sys.calls();
        let drops: Vec<&String> = calls
            .iter()
            .filter(|c| c.starts_with("capbset_drop"))
            .collect();
        assert_eq!(drops.len(), 41 - 14);
        assert!(
            calls.contains(&"capbset_drop 21".to_string()),
            "SYS_ADMIN dropped"
        );
        assert!(!calls.contains(&"capbset_drop 0".to_string()), "CHOWN kept");
        let ids = calls
            .iter()
            .position(|c| c.starts_with("set_ids 1000 1000 [10]"))
            .unwrap();
        assert!(
            calls
                .iter()
                .position(|c| c.starts_with("capbset_drop"))
                .unwrap()
                < ids
        );
        assert_eq!(calls[ids + 1], "capset 0x0 0x0 0x0");
        assert!(calls.contains(&"ambient_clear".to_string()));
        assert_eq!(calls.last().unwrap(), "no_new_privs");
        assert!(calls.contains(&"mkdir /work 755".to_string()));

        let root = ExecUser {
            uid: 0,
            gid: 0,
            groups: vec![],
            home: "/root".into(),
        };
        let sys = Recorder::with_files(&[]);
        let _ = setup_process(&sys, caps, &root, false, "/", None).unwrap();
        assert!(sys
            .calls()
            .contains(&format!("capset {:#x} {:#x} 0x0", caps.0, caps.0)));
        assert!(!sys.calls().contains(&"no_new_privs".to_string()));
    }

    #[test]
    fn seccomp_goes_on_last_with_no_new_privs_else_before_giving_up_privileges() {
        let program = Program {
            bpf: vec![0; 16],
            flags: 0,
        };
        let caps = super::super::caps::effective_set(false, &[], &[], 40).unwrap();
        let user = ExecUser {
            uid: 1000,
            gid: 1000,
            groups: vec![],
            home: "/".into(),
        };
        // With no_new_privs: nothing filtered before the caller's exec.
        let sys = Recorder::with_files(&[]);
        let pending = setup_process(&sys, caps, &user, true, "/", Some(&program)).unwrap();
        assert!(!sys.calls().iter().any(|c| c.starts_with("seccomp")));
        pending.load(&sys).unwrap();
        let calls = sys.calls();
        assert_eq!(calls[calls.len() - 2], "no_new_privs");
        assert_eq!(calls.last().unwrap(), "seccomp 2");
        // Without: loaded while the process still has CAP_SYS_ADMIN,
        // after the working directory and before the user and caps.
        let sys = Recorder::with_files(&[]);
        let pending = setup_process(&sys, caps, &user, false, "/", Some(&program)).unwrap();
        let calls = sys.calls();
        let at = |p: &str| calls.iter().position(|c| c.starts_with(p)).unwrap();
        assert!(at("chdir /") < at("seccomp 2"));
        assert!(at("seccomp 2") < at("set_ids"));
        assert!(at("seccomp 2") < at("capset"));
        pending.load(&sys).unwrap();
        assert_eq!(
            sys.calls()
                .iter()
                .filter(|c| c.starts_with("seccomp"))
                .count(),
            1
        );
    }

    #[test]
    fn exit_codes_like_docker() {
        assert_eq!(
            resolve_program("definitely-not-here", &["PATH=/nonexistent".into()])
                .unwrap_err()
                .exit_code,
            127
        );
        assert_eq!(exec_error(Path::new("/x"), Errno::ENOENT).exit_code, 127);
        assert_eq!(exec_error(Path::new("/x"), Errno::EACCES).exit_code, 126);
    }
}
