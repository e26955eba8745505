//! The monitor: one process per running container, detached from the
//! terminal that started it. It mounts the container's root, launches
//! the container's first process, copies its output to the log (and to
//! an attached client), waits for it, records the exit status and time,
//! and unmounts. It reports to the starting command through a status
//! pipe: `started PID`, then `exit CODE` (or `failed CODE MESSAGE`).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use super::launch::{exec_error, resolve_program, setup_process, setup_rootfs, LaunchError};
use super::logs::{log_path, LineSplitter, LogWriter};
use super::prepare::{prepare_launch, Prepared};
use super::records::{container_dir, get_container, update_state, Container};
use super::rootfs::{default_provider, MountedRoot, RootfsDirs};
use super::spec::{now_rfc3339, Status};
use super::syscalls::Host;
use super::{cgroup, init, liveness, sys, ContainerError};
use crate::digest::Digest;
use crate::store::Store;

/// How the container's stdio is wired.
pub struct Attach {
    /// The client's stdio (fds 0-2 of the monitor) is attached.
    pub attached: bool,
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
    if !attach.attached {
        if let Ok(null) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
        {
            for fd in 0..2 {
                let _ = nix::unistd::dup2(null.as_raw_fd(), fd);
            }
        }
        // The monitor's own diagnostics (a detached monitor has no terminal).
        let log = root.join("containers").join(id).join("monitor.log");
        if let Ok(f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = nix::unistd::dup2(f.as_raw_fd(), 2);
        }
    }
    let code = match monitor(root, id, &attach, &mut status) {
        Ok(()) => 0,
        Err(e) => {
            report(
                &mut status,
                &format!("failed 125 {}", e.to_string().replace('\n', " ")),
            );
            if let Ok(store) = Store::open(root) {
                let _ = update_state(&store, id, |s| {
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
            }
            1
        }
    };
    sys::exit_now(code)
}

fn monitor(
    root: &Path,
    id: &str,
    attach: &Attach,
    status: &mut Option<File>,
) -> Result<(), ContainerError> {
    let store = Store::open(root)?;
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
    let (child_stdio, monitor_stdio) = make_stdio(spec.tty, spec.interactive, attach.attached)?;
    // Fork while single-threaded (the FUSE mount brings threads); the
    // child waits for its plan.
    let waiting = fork_waiting_child(child_stdio)?;
    let mounted = match default_provider().mount(&store, &image, &dirs) {
        Ok(m) => m,
        Err(e) => {
            waiting.abandon();
            return Err(e);
        }
    };
    let prepared = match prepare_launch(&store, &container, &dir, mounted.path()) {
        Ok(p) => p,
        Err(e) => {
            waiting.abandon();
            return fail_launch(&store, &container, mounted, status, e);
        }
    };
    let outcome = launch_and_wait(
        &store,
        &container,
        &dir,
        &prepared,
        waiting,
        monitor_stdio,
        attach,
        status,
    );
    let unmounted = mounted.unmount();
    cgroup::remove(id);
    let code = match outcome {
        Ok(code) => code,
        Err(LaunchOutcome::Failed(e)) => {
            let mounted_gone: Box<dyn MountedRoot> = Box::new(NoMount);
            return fail_launch(&store, &container, mounted_gone, status, e);
        }
        Err(LaunchOutcome::Error(e)) => return Err(e),
    };
    update_state(&store, id, |s| {
        s.status = Status::Exited;
        s.exit_code = code;
        s.finished_at = now_rfc3339();
        s.pid = 0;
        s.monitor_pid = 0;
        if let Err(e) = &unmounted {
            s.error = e.to_string();
        }
        Ok(())
    })?;
    if container.spec.auto_remove {
        super::container_remove::remove_files(&store, &container, true)?;
    }
    report(status, &format!("exit {code}"));
    Ok(())
}

struct NoMount;
impl MountedRoot for NoMount {
    fn path(&self) -> &Path {
        Path::new("/")
    }
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
    if container.spec.auto_remove {
        super::container_remove::remove_files(store, container, true)?;
    }
    report(
        status,
        &format!("failed {} {}", e.exit_code, e.message.replace('\n', " ")),
    );
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

/// The container's side of its stdio.
struct ChildStdio {
    stdin: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
    tty: bool,
}

/// The monitor's side.
enum MonitorStdio {
    Pipes { stdout: OwnedFd, stderr: OwnedFd },
    Pty { master: OwnedFd },
}

fn errno(op: &str) -> impl Fn(nix::Error) -> ContainerError + '_ {
    move |e| ContainerError::sys(op, e)
}

fn make_stdio(
    tty: bool,
    interactive: bool,
    attached: bool,
) -> Result<(ChildStdio, MonitorStdio), ContainerError> {
    let null_in = || -> Result<OwnedFd, ContainerError> {
        Ok(File::open("/dev/null")
            .map_err(|e| ContainerError::io("/dev/null", e))?
            .into())
    };
    if tty {
        let pty = nix::pty::openpty(None, None).map_err(errno("openpty"))?;
        if let Ok((rows, cols)) = sys::window_size(std::io::stdout().as_fd()) {
            let _ = sys::set_window_size(pty.slave.as_fd(), rows, cols);
        }
        let slave = pty.slave;
        let child = ChildStdio {
            stdin: slave
                .try_clone()
                .map_err(|e| ContainerError::io("pty", e))?,
            stdout: slave
                .try_clone()
                .map_err(|e| ContainerError::io("pty", e))?,
            stderr: slave,
            tty: true,
        };
        return Ok((child, MonitorStdio::Pty { master: pty.master }));
    }
    let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(errno("pipe"))?;
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(errno("pipe"))?;
    let stdin = if interactive && attached {
        std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| ContainerError::io("stdin", e))?
    } else {
        null_in()?
    };
    Ok((
        ChildStdio {
            stdin,
            stdout: out_w,
            stderr: err_w,
            tty: false,
        },
        MonitorStdio::Pipes {
            stdout: out_r,
            stderr: err_r,
        },
    ))
}

/// The container's first process, forked before the root is mounted and
/// waiting for its plan.
struct WaitingChild {
    pid: Pid,
    plan: File,
    errors: OwnedFd,
}

impl WaitingChild {
    /// Nothing to launch after all: the child sees the plan pipe close
    /// and exits; reap it.
    fn abandon(self) {
        drop(self.plan);
        let _ = waitpid(self.pid, None);
    }
}

fn fork_waiting_child(child_stdio: ChildStdio) -> Result<WaitingChild, ContainerError> {
    let (plan_r, plan_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(errno("pipe"))?;
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(errno("pipe"))?;
    // The first child forked after this is pid 1 of a new pid namespace.
    // Afterwards the monitor returns to its own namespace for children
    // (threads cannot be made while the two differ).
    let own_pid_ns =
        File::open("/proc/self/ns/pid").map_err(|e| ContainerError::io("/proc/self/ns/pid", e))?;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWPID)
        .map_err(errno("unshare(CLONE_NEWPID)"))?;
    let forked = sys::fork();
    let child = match forked {
        Ok(ForkResult::Child) => {
            drop(plan_w);
            drop(err_r);
            child_main(child_stdio, plan_r, err_w)
        }
        Ok(ForkResult::Parent { child }) => Ok(child),
        Err(e) => Err(ContainerError::sys("fork", e)),
    };
    nix::sched::setns(own_pid_ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWPID)
        .map_err(errno("setns(pid)"))?;
    Ok(WaitingChild {
        pid: child?,
        plan: File::from(plan_w),
        errors: err_r,
    })
}

/// What the monitor hands the waiting child.
#[derive(serde::Serialize, serde::Deserialize)]
struct ChildPlan {
    plan: super::launch::LaunchPlan,
    user: super::passwd::ExecUser,
    caps: u64,
}

#[allow(clippy::too_many_arguments)]
fn launch_and_wait(
    store: &Store,
    container: &Container,
    dir: &Path,
    prepared: &Prepared,
    waiting: WaitingChild,
    monitor_stdio: MonitorStdio,
    attach: &Attach,
    status: &mut Option<File>,
) -> Result<i32, LaunchOutcome> {
    let spec = &container.spec;
    let WaitingChild {
        pid: child,
        mut plan,
        errors,
    } = waiting;
    cgroup::enter(&container.id, child.as_raw());
    let message = ChildPlan {
        plan: prepared.plan.clone(),
        user: prepared.user.clone(),
        caps: prepared.caps.0,
    };
    let _ = plan.write_all(
        serde_json::to_string(&message)
            .unwrap_or_default()
            .as_bytes(),
    );
    drop(plan);
    let mut message = Vec::new();
    let _ = File::from(errors).read_to_end(&mut message);
    if !message.is_empty() {
        let _ = waitpid(child, None);
        let e = serde_json::from_slice::<LaunchError>(&message).unwrap_or_else(|_| LaunchError {
            exit_code: 125,
            message: String::from_utf8_lossy(&message).into(),
        });
        return Err(LaunchOutcome::Failed(e));
    }
    let me = std::process::id() as i32;
    let start = liveness::process_start_time(me).unwrap_or(0);
    update_state(store, &container.id, |s| {
        s.status = Status::Running;
        s.pid = child.as_raw();
        s.monitor_pid = me;
        s.monitor_start = start;
        s.started_at = now_rfc3339();
        s.finished_at = String::new();
        s.exit_code = 0;
        s.error = String::new();
        Ok(())
    })?;
    report(status, &format!("started {}", child.as_raw()));
    let log = LogWriter::open(&log_path(dir))?;
    let copiers = start_copiers(monitor_stdio, log, attach.attached, spec.interactive);
    let code = wait_exit(child)?;
    for c in copiers {
        let _ = c.join();
    }
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

/// Copies output to the log and the attached client; with a terminal and
/// -i, the client's input to the terminal.
fn start_copiers(
    stdio: MonitorStdio,
    log: LogWriter,
    attached: bool,
    interactive: bool,
) -> Vec<std::thread::JoinHandle<()>> {
    let mut handles = Vec::new();
    let copy = |source: OwnedFd, stream: &'static str, client_fd: i32, log: LogWriter| {
        std::thread::Builder::new()
            .name(format!("copy-{stream}"))
            .spawn(move || {
                let mut source = File::from(source);
                let mut client = if attached {
                    client_output(client_fd)
                } else {
                    None
                };
                let mut buf = vec![0u8; 32 * 1024];
                let mut split = LineSplitter::default();
                loop {
                    match source.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            if let Some(c) = client.as_mut() {
                                if c.write_all(&buf[..n]).is_err() {
                                    client = None;
                                }
                            }
                            split.push(&buf[..n], |l| log.write(stream, l));
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        // EIO: the terminal's last holder closed it.
                        Err(_) => break,
                    }
                }
                split.finish(|l| log.write(stream, l));
            })
    };
    match stdio {
        MonitorStdio::Pipes { stdout, stderr } => {
            handles.extend(copy(stdout, "stdout", 1, log.clone()).ok());
            handles.extend(copy(stderr, "stderr", 2, log).ok());
        }
        MonitorStdio::Pty { master } => {
            if attached && interactive {
                if let Ok(input) = master.try_clone() {
                    // Not joined: it blocks on the client's input.
                    let _ =
                        std::thread::Builder::new()
                            .name("copy-stdin".into())
                            .spawn(move || {
                                let mut output = File::from(input);
                                let mut buf = [0u8; 4096];
                                loop {
                                    match std::io::stdin().lock().read(&mut buf) {
                                        Ok(0) | Err(_) => break,
                                        Ok(n) => {
                                            if output.write_all(&buf[..n]).is_err() {
                                                break;
                                            }
                                        }
                                    }
                                }
                            });
                }
            }
            handles.extend(copy(master, "stdout", 1, log).ok());
        }
    }
    handles
}

/// A copy of the client's fd 1 or 2 (the monitor's own, when attached).
fn client_output(fd: i32) -> Option<File> {
    let owned = match fd {
        2 => std::io::stderr().as_fd().try_clone_to_owned(),
        _ => std::io::stdout().as_fd().try_clone_to_owned(),
    };
    owned.ok().map(File::from)
}

/// The container's first process, between fork and exec. With `--init`
/// it stays as the container's init once the command runs.
fn child_main(stdio: ChildStdio, plan: OwnedFd, err: OwnedFd) -> ! {
    let e = match child_setup(stdio, plan) {
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
fn child_setup(stdio: ChildStdio, plan: OwnedFd) -> Result<Pid, LaunchError> {
    use nix::sys::signal::Signal;
    let at = |what: &str| {
        let what = what.to_string();
        move |e: nix::Error| LaunchError::at(&what, e)
    };
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(at("PR_SET_PDEATHSIG"))?;
    sys::reset_signals().map_err(at("resetting signals"))?;
    let mut text = Vec::new();
    let _ = File::from(plan).read_to_end(&mut text);
    let Ok(ChildPlan { plan, user, caps }) = serde_json::from_slice::<ChildPlan>(&text) else {
        // The monitor gave up before launching.
        sys::exit_now(125);
    };
    nix::unistd::setsid().map_err(at("setsid"))?;
    if stdio.tty {
        sys::set_controlling_terminal(stdio.stdin.as_fd()).map_err(at("TIOCSCTTY"))?;
    }
    nix::unistd::dup2(stdio.stdin.as_raw_fd(), 0).map_err(at("dup2"))?;
    nix::unistd::dup2(stdio.stdout.as_raw_fd(), 1).map_err(at("dup2"))?;
    nix::unistd::dup2(stdio.stderr.as_raw_fd(), 2).map_err(at("dup2"))?;
    drop(stdio);
    setup_rootfs(&Host, &plan)?;
    if plan.init {
        // `ps` then shows what runs as pid 1 rather than the monitor's
        // command line (which names the store). Cosmetic.
        let mut shown = vec![INIT_NAME, "--"];
        shown.extend(plan.argv.iter().map(String::as_str));
        let _ = init::show_command_line(&shown);
        let _ = nix::sys::prctl::set_name(c"strata-init");
    }
    setup_process(
        &Host,
        super::caps::CapSet(caps),
        &user,
        plan.no_new_privileges,
        &plan.working_dir,
    )?;
    // setuid cleared the parent-death signal; set it again.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(at("PR_SET_PDEATHSIG"))?;
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
