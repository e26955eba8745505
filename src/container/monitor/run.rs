//! The monitor: one process per running container, detached from the
//! terminal that started it. It mounts the container's root, launches
//! the container's first process, copies its output to the log (and to
//! an attached client), waits for it, records the exit status and time,
//! and unmounts. It reports to the starting command through a status
//! pipe: `opened` once it has opened the store, for an attached start
//! `listening PID` (its own pid), then `started PID`, then `exit CODE`
//! (or `failed CODE MESSAGE`).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use super::liveness;
use super::logs::{log_path, LogWriter};
use super::prepare::{prepare_launch, Prepared};
use super::restart;
use super::retire::{delete_retired, move_out};
use super::stdio_hub::{
    make_stdio, start_copiers, ChildStdio, Copiers, Hub, Outputs, OUTPUT_GRACE,
};
use crate::container::error::ContainerError;
use crate::container::events::{record_container_event, record_volume_event};
use crate::container::launch::rootfs::{default_provider, MountedRoot, RootfsDirs};
use crate::container::launch::setup::{
    exec_error, resolve_program, setup_process, setup_rootfs, LaunchError,
};
use crate::container::launch::syscalls::Host;
use crate::container::launch::{affinity, cgroup, devices, init, limits, userns};
use crate::container::records::{container_dir, get_container, update_state, Container};
use crate::container::spec::{now_rfc3339, Status};
use crate::container::sys;
use crate::digest::Digest;
use crate::store::Store;
use nix::sched::CpuSet;

/// The status pipe's descriptor number in the monitor.
pub const STATUS_FD: i32 = 3;

/// How the container's stdio is wired.
pub struct Attach {
    /// The starting command attaches: launch only once it has connected
    /// to the socket.
    pub attached: bool,
    /// How a health check runs its command in the container (the exec
    /// path, handed in by the verb that starts the monitor).
    pub probe: Option<super::health::Probe>,
}

/// Writes one status line; a gone reader is not an error.
fn report(status: &mut Option<File>, line: &str) {
    if let Some(f) = status {
        let _ = f.write_all(format!("{line}\n").as_bytes());
    }
}

/// The monitor's body; never returns.
pub fn run_monitor(root: &Path, id: &str, attach: Attach, status: OwnedFd) -> ! {
    let mut status = Some(File::from(status));
    // The monitor never uses the client's descriptors: clients attach
    // through the socket (so one can detach and another attach later).
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..2 {
            let _ = nix::unistd::dup2(null.as_raw_fd(), fd);
        }
    }
    // The monitor's own diagnostics.
    let log = root.join("containers").join(id).join("monitor.log");
    if let Ok(f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    {
        let _ = nix::unistd::dup2(f.as_raw_fd(), 2);
    }
    let code = match enter_rootless().and_then(|()| monitor(root, id, &attach, &mut status)) {
        Ok(None) => 0,
        Ok(Some(delay)) => {
            // The restart policy runs the container again (the starting
            // command has its exit already).
            drop(status);
            let relaunch = Store::open(root)
                .ok()
                .is_some_and(|store| restart::wait_back_off(&store, id, delay));
            if !relaunch {
                sys::exit_now(0);
            }
            let e = restart::relaunch(root, id);
            if let Ok(store) = Store::open(root) {
                let _ = record_early_failure(&store, id, &e);
            }
            1
        }
        Err(e) => {
            // A start that failed early leaves the cgroup made for it.
            cgroup::remove(id);
            // Recorded (and a --rm container removed) before the
            // starting command hears of it, so the two agree.
            let retired = Store::open(root)
                .ok()
                .and_then(|store| record_early_failure(&store, id, &e));
            report(
                &mut status,
                &format!("failed 125 {}", e.to_string().replace('\n', " ")),
            );
            delete_retired(retired);
            1
        }
    };
    sys::exit_now(code)
}

/// For an ordinary user, moves the monitor (still single-threaded) into
/// the container's user namespace and a mount namespace of its own, so
/// that it mounts the container's root with its own FUSE daemon and
/// launches the container there (docs/rootless.md).
fn enter_rootless() -> Result<(), ContainerError> {
    if !userns::is_rootless() {
        return Ok(());
    }
    // Mounting FUSE inside a user namespace opens /dev/fuse directly.
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
    {
        return Err(ContainerError::Unsupported(format!(
            "rootless: /dev/fuse: {e} (rootless containers need /dev/fuse open to every user, mode 0666 as Debian sets it)"
        )));
    }
    userns::enter(&userns::current_maps())
}

/// Records a start that failed before [`fail_launch`] could; removes a
/// `--rm` container. Returns the directory [`move_out`] moved away.
fn record_early_failure(store: &Store, id: &str, e: &ContainerError) -> Option<std::path::PathBuf> {
    let _ = update_state(store, id, |s| {
        s.status = if s.started_at.is_empty() {
            Status::Created
        } else {
            Status::Exited
        };
        s.error = e.to_string();
        s.exit_code = 125;
        s.pid = 0;
        s.monitor_pid = 0;
        Ok(())
    });
    let container = get_container(store, id).ok()?;
    if !container.spec.auto_remove {
        return None;
    }
    move_out(store, &container, true).ok().flatten()
}

fn monitor(
    root: &Path,
    id: &str,
    attach: &Attach,
    status: &mut Option<File>,
) -> Result<Option<std::time::Duration>, ContainerError> {
    // Until the container runs (see launch/affinity.rs).
    let cpus = affinity::pin_to_this_cpu();
    let store = Store::open(root)?;
    // The starting command opens the store now (see start_container).
    report(status, "opened");
    // A relaunch that `stop` or `kill` overtook (during the back-off
    // or the exec) runs nothing.
    if ended_while_restarting(&store, id)? {
        return Ok(None);
    }
    let container = get_container(&store, id)?;
    let dir = container_dir(&store, id);
    let image: Digest = container
        .image_id
        .parse()
        .map_err(|_| ContainerError::Corrupt {
            id: id.into(),
            reason: format!("image id {}", container.image_id),
        })?;
    let dirs = RootfsDirs::of(&dir);
    let spec = &container.spec;
    let (child_stdio, hub, outputs) = make_stdio(spec.tty, spec.interactive)?;
    // Fork while single-threaded (the FUSE mount brings threads); the
    // child waits for its plan. It is born in the container's cgroup
    // where there is a unified hierarchy.
    let cgroup_dir = cgroup::prepare(&container.id);
    // Its network namespace (joined by the child), leases and host ports.
    let mut sandbox = super::net::sandbox_for(&store, &container)?;
    let mut waiting = fork_waiting_child(child_stdio, cgroup_dir, cpus, sandbox.netns())?;
    // The veths are made while the root is mounted.
    let configuring = sandbox.configure_in_background();
    let resources = spec.resources.clone();
    // `--device`'s devices cgroup (a device gone since create, or
    // permissions this host cannot enforce, fail the start).
    let device_rules = match devices::plan(&spec.host.devices, spec.privileged) {
        Ok(rules) => rules,
        Err(e) => {
            waiting.abandon();
            let e = LaunchError {
                exit_code: 125,
                message: e.to_string(),
            };
            return fail_launch(&store, &container, Box::new(NoMount), status, e).map(|()| None);
        }
    };
    if !waiting.in_cgroup || resources.any() || device_rules.is_some() {
        // Moving a process into a v1 cgroup waits for an RCU grace
        // period (~10 ms here): do it while the root is mounted. The
        // limits' cgroups and the devices cgroup are made and written
        // there too; a limit the host refuses fails the start.
        let (id, pid, in_cgroup) = (
            container.id.clone(),
            waiting.pid.as_raw(),
            waiting.in_cgroup,
        );
        waiting.cgroups = std::thread::Builder::new()
            .name("cgroups".into())
            .spawn(move || {
                if !in_cgroup {
                    cgroup::enter(&id, pid);
                }
                if let Some(rules) = &device_rules {
                    devices::apply(&id, rules, &[pid]).map_err(|e| e.to_string())?;
                }
                limits::apply(&id, &resources, &[pid]).map_err(|e| e.to_string())
            })
            .ok();
    }
    let mounted = match default_provider().mount(&store, &image, &dirs) {
        Ok(m) => m,
        Err(e) => {
            // As any failed launch: recorded, and with --rm removed.
            waiting.abandon();
            return fail_launch(&store, &container, Box::new(NoMount), status, e.into())
                .map(|()| None);
        }
    };
    let prepared = match prepare_launch(&store, &container, &dir, mounted.path()) {
        Ok(p) => p,
        Err(e) => {
            waiting.abandon();
            return fail_launch(&store, &container, mounted, status, e).map(|()| None);
        }
    };
    if let Err(e) = sandbox.finish(configuring) {
        waiting.abandon();
        let e = LaunchError {
            exit_code: 125,
            message: e.to_string(),
        };
        return fail_launch(&store, &container, mounted, status, e).map(|()| None);
    }
    let socket = match hub.listen(&dir, attach.attached) {
        Ok(path) => path,
        Err(e) => {
            waiting.abandon();
            return fail_launch(&store, &container, mounted, status, e.into()).map(|()| None);
        }
    };
    if attach.attached {
        // Nothing runs before the starting command has attached. If it
        // went away instead (it could not connect, or was killed), the
        // container does not start: `run` and `start -a` fail, and the
        // record says so, rather than the container running detached.
        report(status, &format!("listening {}", std::process::id()));
        if !hub.wait_first_client(status.as_ref()) {
            waiting.abandon();
            let _ = std::fs::remove_file(&socket);
            let gone = LaunchError {
                exit_code: 125,
                message: "the attaching client went away before the container started".into(),
            };
            return fail_launch(&store, &container, mounted, status, gone).map(|()| None);
        }
    }
    let mut mount_ns = None;
    let launched = std::time::Instant::now();
    let outcome = launch_and_wait(
        &store,
        &container,
        &dir,
        &prepared,
        waiting,
        &hub,
        outputs,
        status,
        &mut mount_ns,
        attach.probe,
    );
    let _ = std::fs::remove_file(&socket);
    // Host ports, leases and rules are free before the exit is reported;
    // a helper without host ports is reaped after it (`_stopped` lives to
    // the end of this function).
    let _stopped = sandbox.release();
    super::liveness::forget_helpers(&dir);
    // Read while the cgroups are still there; Docker reports the OOM
    // kill (`oom`) before the container's `die`.
    let oom_killed = limits::oom_killed(id);
    if let Ok(code) = &outcome {
        if oom_killed {
            record_container_event(&store, &container, "oom", &[]);
        }
        record_volume_mounts(&store, &container, "unmount");
        record_container_event(&store, &container, "die", &[("exitCode", code.to_string())]);
    }
    if let (true, Ok(code)) = (container.spec.auto_remove, &outcome) {
        return finish_removed(&store, &container, mounted, mount_ns, *code, status).map(|()| None);
    }
    drop(mount_ns);
    let unmounted = mounted.unmount();
    cgroup::remove(id);
    let code = match outcome {
        Ok(code) => code,
        Err(LaunchOutcome::Failed(e)) => {
            let mounted_gone: Box<dyn MountedRoot> = Box::new(NoMount);
            return fail_launch(&store, &container, mounted_gone, status, e).map(|()| None);
        }
        Err(LaunchOutcome::Error(e)) => return Err(e),
    };
    // The policy as it is now (`update --restart` may have changed it).
    let policy = get_container(&store, id)?.spec.restart_policy;
    let ran_for = launched.elapsed();
    let restart = update_state(&store, id, |s| {
        s.oom_killed = oom_killed;
        s.finished_at = now_rfc3339();
        if let Err(e) = &unmounted {
            s.error = e.to_string();
        }
        Ok(restart::decide(s, &policy, code, ran_for))
    })?;
    report(status, &format!("exit {code}"));
    Ok(restart)
}

/// Whether this monitor was relaunched for a restart that `stop` or
/// `kill` has ended since (the record then says exited).
fn ended_while_restarting(store: &Store, id: &str) -> Result<bool, ContainerError> {
    update_state(store, id, |s| {
        if s.status == Status::Restarting && s.manually_stopped {
            s.status = Status::Exited;
            s.monitor_pid = 0;
            s.restart_delay_ms = 0;
            return Ok(true);
        }
        Ok(false)
    })
}

/// The end of a `--rm` container that ran: it is removed first (its
/// directory moved into the store's `tmp/` with the root still mounted
/// below it, its record and anonymous volumes deleted), the exit is
/// reported, and only then are the root unmounted, the cgroups removed
/// and the files deleted, none of which `run --rm` waits for.
fn finish_removed(
    store: &Store,
    container: &Container,
    mut mounted: Box<dyn MountedRoot>,
    mount_ns: Option<File>,
    code: i32,
    status: &mut Option<File>,
) -> Result<(), ContainerError> {
    let retired = move_out(store, container, true)?;
    if let Some(dir) = &retired {
        mounted.moved_to(RootfsDirs::of(dir).mountpoint);
    }
    report(status, &format!("exit {code}"));
    drop(mount_ns);
    let _ = mounted.unmount();
    cgroup::remove(&container.id);
    delete_retired(retired);
    Ok(())
}

/// Docker's `mount` and `unmount` events of the container's volumes.
fn record_volume_mounts(store: &Store, container: &Container, action: &str) {
    for m in container.spec.mounts.iter().filter(|m| m.kind == "volume") {
        let mut extra = vec![("container", container.id.clone())];
        if action == "mount" {
            extra.push(("destination", m.destination.clone()));
            extra.push(("read/write", (!m.read_only).to_string()));
            extra.push(("propagation", String::new()));
        }
        record_volume_event(store, &m.source, action, &extra);
    }
}

struct NoMount;
impl MountedRoot for NoMount {
    fn path(&self) -> &Path {
        Path::new("/")
    }
    fn moved_to(&mut self, _: std::path::PathBuf) {}
    fn unmount(self: Box<Self>) -> Result<(), ContainerError> {
        Ok(())
    }
}

fn fail_launch(
    store: &Store,
    container: &Container,
    mounted: Box<dyn MountedRoot>,
    status: &mut Option<File>,
    e: LaunchError,
) -> Result<(), ContainerError> {
    let _ = mounted.unmount();
    cgroup::remove(&container.id);
    // The network helper's record (net.rs): the helper, started before
    // the failure, ends with the monitor's sandbox.
    super::liveness::forget_helpers(&container_dir(store, &container.id));
    update_state(store, &container.id, |s| {
        s.status = if s.started_at.is_empty() {
            Status::Created
        } else {
            Status::Exited
        };
        s.exit_code = e.exit_code;
        s.error = e.message.clone();
        s.pid = 0;
        s.monitor_pid = 0;
        Ok(())
    })?;
    let retired = if container.spec.auto_remove {
        move_out(store, container, true)?
    } else {
        None
    };
    report(
        status,
        &format!("failed {} {}", e.exit_code, e.message.replace('\n', " ")),
    );
    delete_retired(retired);
    Ok(())
}

enum LaunchOutcome {
    Failed(LaunchError),
    Error(ContainerError),
}

impl From<ContainerError> for LaunchOutcome {
    fn from(e: ContainerError) -> Self {
        LaunchOutcome::Error(e)
    }
}

fn errno(op: &str) -> impl Fn(nix::Error) -> ContainerError + '_ {
    move |e| ContainerError::sys(op, e)
}

/// The container's first process, forked before the root is mounted and
/// waiting for its plan.
struct WaitingChild {
    pid: Pid,
    plan: File,
    errors: OwnedFd,
    /// Born in the container's (unified) cgroup.
    in_cgroup: bool,
    /// Else (or with limits) the thread putting it into the container's
    /// v1 cgroups and writing its limits; what went wrong, if anything.
    cgroups: Option<std::thread::JoinHandle<Result<(), String>>>,
    /// The monitor's CPUs before the start kept it to one.
    cpus: Option<CpuSet>,
}

impl WaitingChild {
    /// Nothing to launch after all: the child sees the plan pipe close
    /// and exits; reap it.
    fn abandon(self) {
        if let Some(t) = self.cgroups {
            let _ = t.join();
        }
        drop(self.plan);
        let _ = waitpid(self.pid, None);
    }
}

fn fork_waiting_child(
    child_stdio: ChildStdio,
    cgroup_dir: Option<OwnedFd>,
    cpus: Option<CpuSet>,
    netns: Option<std::os::fd::BorrowedFd>,
) -> Result<WaitingChild, ContainerError> {
    let (plan_r, plan_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(errno("pipe"))?;
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(errno("pipe"))?;
    // Pid 1 of a new pid namespace, in the container's cgroup. On older
    // kernels (no clone3 or CLONE_INTO_CGROUP), or with a cgroup that
    // takes no processes, a plain fork (the caller moves the child).
    let into_cgroup = cgroup_dir
        .as_ref()
        .and_then(|dir| match sys::fork_into(dir.as_fd(), true) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::debug!("clone3 into the container's cgroup: {e}");
                None
            }
        });
    let in_cgroup = into_cgroup.is_some();
    let forked = match into_cgroup {
        Some(r) => Ok(r),
        None => fork_in_new_pid_ns()?,
    };
    let child = match forked {
        Ok(ForkResult::Child) => {
            drop(plan_w);
            drop(err_r);
            drop(cgroup_dir);
            // The network namespace the monitor made (or another
            // container's).
            if let Some(ns) = netns {
                if nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).is_err() {
                    sys::exit_now(125);
                }
            }
            child_main(child_stdio, plan_r, err_w, cpus)
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => return Err(ContainerError::sys("fork", e)),
    };
    Ok(WaitingChild {
        pid: child,
        plan: File::from(plan_w),
        errors: err_r,
        in_cgroup,
        cgroups: None,
        cpus,
    })
}

/// Forks the first child of a new pid namespace (its pid 1); the caller
/// stays in its own namespace for later children (threads cannot be made
/// while the two differ).
fn fork_in_new_pid_ns() -> Result<nix::Result<ForkResult>, ContainerError> {
    match sys::fork_new_pid_ns() {
        Err(nix::errno::Errno::ENOSYS) => {}
        forked => return Ok(forked),
    }
    // Kernels without clone3.
    let own_pid_ns =
        File::open("/proc/self/ns/pid").map_err(|e| ContainerError::io("/proc/self/ns/pid", e))?;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWPID)
        .map_err(errno("unshare(CLONE_NEWPID)"))?;
    let forked = sys::fork();
    if !matches!(forked, Ok(ForkResult::Child)) {
        nix::sched::setns(own_pid_ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWPID)
            .map_err(errno("setns(pid)"))?;
    }
    Ok(forked)
}

/// What the monitor hands the waiting child.
#[derive(serde::Serialize, serde::Deserialize)]
struct ChildPlan {
    plan: crate::container::launch::setup::LaunchPlan,
    user: crate::container::launch::passwd::ExecUser,
    caps: u64,
    /// With a terminal: its size (the attached client's).
    terminal_size: Option<(u16, u16)>,
    /// The compiled seccomp filter, if any.
    seccomp: Option<crate::container::launch::seccomp::Program>,
}

#[allow(clippy::too_many_arguments)]
fn launch_and_wait(
    store: &Store,
    container: &Container,
    dir: &Path,
    prepared: &Prepared,
    waiting: WaitingChild,
    hub: &std::sync::Arc<Hub>,
    outputs: Outputs,
    status: &mut Option<File>,
    mount_ns: &mut Option<File>,
    probe: Option<super::health::Probe>,
) -> Result<i32, LaunchOutcome> {
    let WaitingChild {
        pid: child,
        mut plan,
        errors,
        in_cgroup,
        cgroups,
        cpus,
    } = waiting;
    // In its cgroups, under its limits, before it runs anything of the
    // container's.
    let entered = match cgroups {
        Some(t) => t
            .join()
            .unwrap_or_else(|_| Err("applying the resource limits failed".into())),
        None if !in_cgroup => {
            cgroup::enter(&container.id, child.as_raw());
            Ok(())
        }
        None => Ok(()),
    };
    if let Err(message) = entered {
        drop(plan);
        let _ = waitpid(child, None);
        return Err(LaunchOutcome::Failed(LaunchError {
            exit_code: 125,
            message,
        }));
    }
    let message = ChildPlan {
        plan: prepared.plan.clone(),
        user: prepared.user.clone(),
        caps: prepared.caps.0,
        terminal_size: hub.terminal_size(),
        seccomp: prepared.seccomp.clone(),
    };
    let _ = plan.write_all(
        serde_json::to_string(&message)
            .unwrap_or_default()
            .as_bytes(),
    );
    drop(plan);
    // With a terminal, the first process sends its master before it
    // execs (or fails; the error pipe then says why).
    let outputs = hub.receive_terminal(outputs);
    let mut message = Vec::new();
    let _ = File::from(errors).read_to_end(&mut message);
    // The command runs (or failed to). Holding the container's mount
    // namespace moves its teardown (an expedited RCU grace period) from
    // the exit of pid 1, which `run` waits for, to when the monitor lets
    // go of it. A command that is already gone has paid it.
    *mount_ns = File::open(format!("/proc/{}/ns/mnt", child.as_raw())).ok();
    if !message.is_empty() {
        let _ = waitpid(child, None);
        let e = serde_json::from_slice::<LaunchError>(&message).unwrap_or_else(|_| LaunchError {
            exit_code: 125,
            message: String::from_utf8_lossy(&message).into(),
        });
        return Err(LaunchOutcome::Failed(e));
    }
    // The log exists before anyone hears the container started, so an
    // `attach` or `logs` right after `run -d` finds it.
    let logging = &container.spec.host.log_config;
    let log = if logging.keeps_logs() {
        let (max_size, max_files) = logging.rotation();
        LogWriter::open_rotating(&log_path(dir), max_size, max_files)?
    } else {
        LogWriter::discard()
    };
    let me = std::process::id() as i32;
    let start = liveness::process_start_time(me).unwrap_or(0);
    update_state(store, &container.id, |s| {
        s.status = Status::Running;
        s.pid = child.as_raw();
        s.monitor_pid = me;
        s.monitor_start = start;
        s.started_at = now_rfc3339();
        // As Docker's: FinishedAt keeps the last run's end.
        s.exit_code = 0;
        s.oom_killed = false;
        s.error = String::new();
        Ok(())
    })?;
    record_volume_mounts(store, container, "mount");
    record_container_event(store, container, "start", &[]);
    // The CPUs come back before the start is reported, so nobody who has
    // heard of the container sees its monitor pinned.
    if let Some(cpus) = &cpus {
        affinity::restore_all_threads(cpus);
    }
    report(status, &format!("started {}", child.as_raw()));
    let copiers = match outputs? {
        Some(outputs) => start_copiers(hub, outputs, log),
        None => Copiers::default(),
    };
    let health = probe.and_then(|p| super::health::start_health_loop(store, container, p));
    let code = wait_exit(child)?;
    // A probe under way ends with the container (its pid namespace).
    if let Some(health) = health {
        drop(health);
        super::health::mark_stopped(store, &container.id);
    }
    copiers.finish(OUTPUT_GRACE);
    hub.hang_up();
    Ok(code)
}

/// Waits for the container's pid 1; its exit code as Docker reports it.
fn wait_exit(child: Pid) -> Result<i32, ContainerError> {
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(ContainerError::sys("waitpid", e)),
        }
    }
}

/// The container's first process, between fork and exec. With `--init`
/// it stays as the container's init once the command runs.
fn child_main(stdio: ChildStdio, plan: OwnedFd, err: OwnedFd, cpus: Option<CpuSet>) -> ! {
    let e = match child_setup(stdio, plan, cpus) {
        Ok(command) => {
            drop(err);
            become_init(command)
        }
        Err(e) => e,
    };
    let mut err = File::from(err);
    let _ = err.write_all(serde_json::to_string(&e).unwrap_or_default().as_bytes());
    sys::exit_now(e.exit_code)
}

use std::convert::Infallible as Never;

/// Sets the process up and execs the command; with `--init`, forks first
/// and returns (in the parent) the command's pid. In the forked command,
/// an error is that of the exec.
fn child_setup(stdio: ChildStdio, plan: OwnedFd, cpus: Option<CpuSet>) -> Result<Pid, LaunchError> {
    use nix::sys::signal::Signal;
    let at = |what: &str| {
        let what = what.to_string();
        move |e: nix::Error| LaunchError::at(&what, e)
    };
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(at("PR_SET_PDEATHSIG"))?;
    sys::reset_signals().map_err(at("resetting signals"))?;
    let mut text = Vec::new();
    let _ = File::from(plan).read_to_end(&mut text);
    let Ok(ChildPlan {
        plan,
        user,
        caps,
        terminal_size,
        seccomp,
    }) = serde_json::from_slice::<ChildPlan>(&text)
    else {
        // The monitor gave up before launching.
        sys::exit_now(125);
    };
    nix::unistd::setsid().map_err(at("setsid"))?;
    let console = match stdio {
        ChildStdio::Pipes {
            stdin,
            stdout,
            stderr,
        } => {
            nix::unistd::dup2(stdin.as_raw_fd(), 0).map_err(at("dup2"))?;
            nix::unistd::dup2(stdout.as_raw_fd(), 1).map_err(at("dup2"))?;
            nix::unistd::dup2(stderr.as_raw_fd(), 2).map_err(at("dup2"))?;
            None
        }
        ChildStdio::Terminal { console } => Some(console),
    };
    setup_rootfs(&Host, &plan)?;
    if let Some(console) = console {
        open_terminal(console.as_fd(), terminal_size, (user.uid, user.gid))?;
    }
    if plan.init {
        // `ps` then shows what runs as pid 1 rather than the monitor's
        // command line (which names the store). Cosmetic.
        let mut shown = vec![INIT_NAME, "--"];
        shown.extend(plan.argv.iter().map(String::as_str));
        let _ = init::show_command_line(&shown);
        let _ = nix::sys::prctl::set_name(c"strata-init");
    }
    let filter = setup_process(
        &Host,
        crate::container::launch::caps::CapSet(caps),
        &user,
        plan.no_new_privileges,
        &plan.working_dir,
        seccomp.as_ref(),
    )?;
    // setuid cleared the parent-death signal; set it again.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(at("PR_SET_PDEATHSIG"))?;
    // The monitor's CPUs, as they were before the start kept to one.
    if let Some(cpus) = &cpus {
        affinity::restore(cpus).map_err(at("restoring the CPU affinity"))?;
    }
    // With `--init`, init runs under the filter too (it makes only
    // calls Docker's profile allows: wait4, kill, rt_sigtimedwait).
    filter.load(&Host)?;
    if plan.init {
        let mask = init::block_init_signals().map_err(at("blocking signals"))?;
        match sys::fork().map_err(at("fork"))? {
            ForkResult::Parent { child } => return Ok(child),
            ForkResult::Child => {
                init::prepare_command(&mask).map_err(at("process group"))?;
            }
        }
    }
    match exec_process(&plan.argv, &plan.env)? {}
}

/// Opens the container's terminal in its own devpts (after pivot_root or
/// setns into its mount namespace, so `tty` inside names it), gives it
/// to `owner` (uid, gid) with mode 0620 as Docker does (so a non-root
/// user can reopen /dev/tty), makes it the controlling terminal (the
/// caller has started a session) and fds 0-2, and sends the master end
/// over `console`.
pub fn open_terminal(
    console: std::os::fd::BorrowedFd,
    size: Option<(u16, u16)>,
    owner: (u32, u32),
) -> Result<(), LaunchError> {
    use nix::fcntl::OFlag;
    let at = |what: &'static str| move |e: nix::Error| LaunchError::at(what, e);
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(at("opening /dev/ptmx"))?;
    nix::pty::grantpt(&master).map_err(at("grantpt"))?;
    nix::pty::unlockpt(&master).map_err(at("unlockpt"))?;
    let name = nix::pty::ptsname_r(&master).map_err(at("ptsname"))?;
    let slave = nix::fcntl::open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map(sys::own_fd)
    .map_err(at("opening the terminal"))?;
    let (uid, gid) = owner;
    nix::unistd::fchown(
        slave.as_raw_fd(),
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    )
    .map_err(at("chown of the terminal"))?;
    nix::sys::stat::fchmod(
        slave.as_raw_fd(),
        nix::sys::stat::Mode::from_bits_truncate(0o620),
    )
    .map_err(at("chmod of the terminal"))?;
    let (rows, cols) = size.unwrap_or((24, 80));
    sys::set_window_size(slave.as_fd(), rows, cols).map_err(at("TIOCSWINSZ"))?;
    sys::set_controlling_terminal(slave.as_fd()).map_err(at("TIOCSCTTY"))?;
    for fd in 0..3 {
        nix::unistd::dup2(slave.as_raw_fd(), fd).map_err(at("dup2"))?;
    }
    sys::send_fd(console, master.as_fd()).map_err(at("sending the terminal"))
}

/// What `ps` in the container shows as pid 1 with `--init`.
pub const INIT_NAME: &str = "strata-init";

/// Pid 1 with `--init`, once the command is forked: non-dumpable, holding
/// only fds 0-2, it runs init's loop and exits with the command's status.
fn become_init(command: Pid) -> ! {
    let _ = nix::sys::prctl::set_dumpable(false);
    // Every OwnedFd of this process has been dropped or is never used
    // again (`child_main` only exits from here).
    let _ = sys::close_from(3);
    sys::exit_now(init::supervise(command))
}

/// Closes every fd above 2 at exec and execs `argv` with `env`.
pub fn exec_process(argv: &[String], env: &[String]) -> Result<Never, LaunchError> {
    use std::ffi::CString;
    let program = resolve_program(argv.first().map(String::as_str).unwrap_or(""), env)?;
    let c_program =
        CString::new(program.to_string_lossy().as_bytes()).map_err(|_| LaunchError {
            exit_code: 127,
            message: "command contains NUL".into(),
        })?;
    let c_args: Vec<CString> = argv
        .iter()
        .filter_map(|a| CString::new(a.as_bytes()).ok())
        .collect();
    let c_env: Vec<CString> = env
        .iter()
        .filter_map(|a| CString::new(a.as_bytes()).ok())
        .collect();
    sys::cloexec_from(3).map_err(|e| LaunchError::at("close_range", e))?;
    let e = match nix::unistd::execve(&c_program, &c_args, &c_env) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    Err(exec_error(&program, e))
}
