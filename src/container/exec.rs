//! `exec`: runs another process in a running container. The caller (the
//! strata command, single-threaded) forks; the child joins the
//! container's ipc, uts, net, pid and mount namespaces and forks again so
//! the grandchild is inside the pid namespace; that one takes the
//! container's capabilities, user and working directory and execs.
//!
//! With `-t` the grandchild opens its terminal in the container's own
//! devpts (it has joined the mount namespace, so `tty` names
//! /dev/pts/N), owned by the exec's user, and sends the master end to the
//! first child, which passes it to the caller and keeps a copy: when the
//! caller detaches (the detach keys), the first child reads and discards
//! the terminal's output until the process exits, as Docker's daemon does.
//! A detached exec (`-d -t`) gets its terminal too: the caller hands the
//! master to the container's monitor (over its attach socket), which
//! keeps it open and discards the output, so the process neither gets a
//! hangup nor blocks.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use nix::sched::CloneFlags;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::ForkResult;

use super::create::merge_env;
use super::error::ContainerError;
use super::events::record_container_event;
use super::launch::caps::container_set;
use super::launch::seccomp::{cache_dir as seccomp_cache, container_program};
use super::launch::setup::{set_ulimit, setup_process, LaunchError};
use super::launch::syscalls::Host;
use super::launch::{cgroup, devices};
use super::monitor::attach::{connect_socket, hand_over_terminal, SOCKET_NAME};
use super::monitor::exec_terminal::{pass_terminal, relay_terminal, wait_process, Relayed};
use super::monitor::liveness::{lookup, process_start_time};
use super::monitor::prepare::{process_env, resolve_container_user};
use super::monitor::run::{exec_process, open_terminal};
use super::records::container_dir;
use super::spec::Status;
use super::sys;
use crate::store::Store;

#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub cmd: Vec<String>,
    pub detach: bool,
    pub interactive: bool,
    pub tty: bool,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub privileged: bool,
    /// With `-i -t`, these keys detach (see [`super::monitor::attach::parse_detach_keys`]).
    pub detach_keys: Vec<u8>,
    /// Where the process's stdout and stderr go (a health probe's pipe);
    /// None: the caller's.
    pub output: Option<std::sync::Arc<OwnedFd>>,
    /// Killed after this long (a health probe's timeout): the result is
    /// then [`TIMED_OUT`].
    pub timeout: Option<std::time::Duration>,
}

/// The exit code [`exec_in_container`] gives a process it killed at its
/// timeout (Docker's health log says -1 too).
pub const TIMED_OUT: i32 = -1;

/// Runs the command; returns its exit code (0 at once with `detach`).
/// Records Docker's `exec_create`, `exec_start` and (unless detached)
/// `exec_die` events.
pub fn exec_in_container(
    store: &Store,
    name_or_id: &str,
    options: &ExecOptions,
) -> Result<i32, ContainerError> {
    let c = lookup(store, name_or_id)?;
    if c.state.status == Status::Paused {
        // Docker's daemon names the container as it was asked for.
        return Err(ContainerError::ExecPaused(name_or_id.to_string()));
    }
    let exec_id = super::records::new_id();
    let code = run_exec(store, &c, options, &exec_id)?;
    if !options.detach {
        record_container_event(
            store,
            &c,
            "exec_die",
            &[("execID", exec_id), ("exitCode", code.to_string())],
        );
    }
    Ok(code)
}

fn run_exec(
    store: &Store,
    c: &super::records::Container,
    options: &ExecOptions,
    exec_id: &str,
) -> Result<i32, ContainerError> {
    if c.state.status == Status::Paused {
        return Err(ContainerError::ExecPaused(c.id.clone()));
    }
    if c.state.status != Status::Running {
        return Err(ContainerError::BadState {
            id: c.short_id().into(),
            state: c.state.status.as_str().into(),
            what: "is not running".into(),
        });
    }
    if options.cmd.is_empty() {
        return Err(ContainerError::Invalid("no command specified".into()));
    }
    let command = options.cmd.join(" ");
    let id_attr = [("execID", exec_id.to_string())];
    record_container_event(store, c, &format!("exec_create: {command}"), &id_attr);
    record_container_event(store, c, &format!("exec_start: {command}"), &id_attr);
    let pid = c.state.pid;
    let root = std::path::PathBuf::from(format!("/proc/{pid}/root"));
    let user_spec = options.user.as_deref().unwrap_or(&c.spec.user);
    let read_hostname = || {
        std::fs::read_to_string(format!("/proc/{pid}/root/etc/hostname"))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let mut hostname = String::new();
    let resolved = if crate::container::launch::userns::is_rootless() {
        // A rootless container's root is a FUSE mount of its user
        // namespace, closed to processes outside it: its /etc/passwd is
        // read from inside that namespace (files/inside.rs).
        let place = crate::container::files::inside::Place::Container(pid);
        crate::container::files::inside::run_returning(place, || {
            let user =
                resolve_container_user(&root, user_spec).map_err(|e| ContainerError::Launch {
                    code: e.exit_code,
                    message: e.message,
                })?;
            Ok((user, read_hostname()))
        })
        .map(|(user, name)| {
            hostname = name;
            user
        })
        .map_err(|e| LaunchError {
            exit_code: 126,
            message: e.to_string(),
        })
    } else {
        hostname = read_hostname();
        resolve_container_user(&root, user_spec)
    };
    let user = match resolved {
        Ok(user) => user,
        Err(e) => {
            return Err(ContainerError::Launch {
                code: e.exit_code,
                message: e.message,
            })
        }
    };
    // An ordinary user's exec gets its capabilities when it joins the
    // container's user namespace, not from this process (it has none).
    let container_set = if crate::container::launch::userns::is_rootless() {
        super::launch::caps::container_set_in_user_namespace
    } else {
        container_set
    };
    let caps = container_set(
        c.spec.privileged || options.privileged,
        &c.spec.cap_add,
        &c.spec.cap_drop,
    )?;
    // The container's filter, as its first process has it (Docker's
    // `exec --privileged` does not lift it either).
    let seccomp = container_program(
        &c.spec.seccomp_profile,
        c.spec.privileged,
        container_set(c.spec.privileged, &c.spec.cap_add, &c.spec.cap_drop)?,
        &seccomp_cache(store.root()),
    )?;
    let env = process_env(
        &merge_env(&c.spec.env, &options.env),
        &hostname,
        options.tty,
        &user.home,
    );
    let workdir = options
        .working_dir
        .clone()
        .unwrap_or_else(|| c.spec.working_dir.clone());
    let mut namespaces = Vec::new();
    // A rootless container's namespaces belong to its user namespace:
    // join that first (its owner holds every capability there).
    let user_ns = format!("/proc/{pid}/ns/user");
    if std::fs::metadata(&user_ns).map(|m| m.ino()).ok()
        != std::fs::metadata("/proc/self/ns/user")
            .map(|m| m.ino())
            .ok()
    {
        namespaces.push((
            File::open(&user_ns).map_err(|e| ContainerError::io(&user_ns, e))?,
            CloneFlags::CLONE_NEWUSER,
        ));
    }
    for (name, flag) in [
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("net", CloneFlags::CLONE_NEWNET),
        ("pid", CloneFlags::CLONE_NEWPID),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ] {
        let path = format!("/proc/{pid}/ns/{name}");
        namespaces.push((
            File::open(&path).map_err(|e| ContainerError::io(&path, e))?,
            flag,
        ));
    }
    // A detached exec's terminal goes to the monitor: reach it before
    // anything starts, so a monitor that cannot take it fails the exec.
    let monitor = if options.tty && options.detach {
        let dir = container_dir(store, &c.id);
        let socket =
            connect_socket(&dir).map_err(|e| ContainerError::io(dir.join(SOCKET_NAME), e))?;
        Some(socket)
    } else {
        None
    };
    let console = if options.tty {
        Some(socketpair().map_err(|e| ContainerError::sys("socketpair", e))?)
    } else {
        None
    };
    let terminal_size = sys::window_size(std::io::stdout().as_fd())
        .or_else(|_| sys::window_size(std::io::stdin().as_fd()))
        .ok()
        .filter(|(r, c)| *r > 0 && *c > 0);
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| ContainerError::sys("pipe", e))?;
    let (pid_r, pid_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| ContainerError::sys("pipe", e))?;
    let (mine, theirs) = match console {
        Some((a, b)) => (Some(a), Some(b)),
        None => (None, None),
    };
    let child = match sys::fork().map_err(|e| ContainerError::sys("fork", e))? {
        ForkResult::Child => {
            drop(err_r);
            drop(pid_r);
            drop(mine);
            let setup = ExecSetup {
                namespaces,
                console: theirs,
                terminal_size,
                owner: (user.uid, user.gid),
                interactive: options.interactive,
                detach: options.detach,
                output: options.output.clone(),
                devices_cgroup: Some(c.id.clone()),
            };
            join_and_run(
                setup,
                err_w,
                pid_w,
                |e| {
                    // The container's ulimits, as runc gives an exec.
                    for limit in &c.spec.host.ulimits {
                        set_ulimit(&Host, limit)?;
                    }
                    setup_process(
                        &Host,
                        caps,
                        &user,
                        c.spec.no_new_privileges,
                        &workdir,
                        seccomp.as_ref(),
                    )?
                    .load(&Host)?;
                    exec_process(&options.cmd, e).map(|never| match never {})
                },
                &env,
            )
        }
        ForkResult::Parent { child } => child,
    };
    drop(err_w);
    drop(pid_w);
    drop(theirs);
    let mut inner_pid = String::new();
    let _ = File::from(pid_r).read_to_string(&mut inner_pid);
    let inner = inner_pid.trim().parse::<i32>().ok();
    let running = inner.map(|p| {
        cgroup::join(&c.id, p);
        RunningExec::note(store, &c.id, exec_id, p)
    });
    // The terminal comes before the exec (or the error pipe says why not).
    let master = match &mine {
        Some(socket) => sys::receive_fd(socket.as_fd()).ok().flatten(),
        None => None,
    };
    let mut message = Vec::new();
    let _ = File::from(err_r).read_to_end(&mut message);
    if !message.is_empty() {
        let _ = waitpid(child, None);
        let e: LaunchError = serde_json::from_slice(&message).unwrap_or_else(|_| LaunchError {
            exit_code: 126,
            message: String::from_utf8_lossy(&message).into(),
        });
        // Docker's exec exits 126 for any command it could not start,
        // a missing one included (`run` says 127 for that).
        return Err(ContainerError::Launch {
            code: if e.exit_code == 127 { 126 } else { e.exit_code },
            message: e.message,
        });
    }
    if options.detach {
        if let (Some(monitor), Some(master)) = (&monitor, &master) {
            hand_over_terminal(monitor, master.as_fd())
                .map_err(|e| ContainerError::io("the monitor's attach socket", e))?;
        }
        let _ = waitpid(child, None);
        return Ok(0);
    }
    if let Some(master) = master {
        let keys = options.interactive.then(|| options.detach_keys.clone());
        if relay_terminal(master, keys)? == Relayed::Detached {
            // The first child keeps the terminal and the process running.
            return Ok(0);
        }
    }
    drop(mine);
    let status = loop {
        if let Some(timeout) = options.timeout {
            break wait_with_timeout(child, inner, timeout);
        }
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => break Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => break Ok(128 + sig as i32),
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => break Err(ContainerError::sys("waitpid", e)),
        }
    };
    if let Some(Some(note)) = running {
        note.forget();
    }
    status
}

/// Where a running exec is noted for `inspect`'s `ExecIDs`: a file
/// `<container>/execs/<exec id>` holding the process's pid and start time
/// (so a recycled pid does not count). An attached exec removes its note
/// when the process ends; a detached one's stays until `ExecIDs` finds
/// the process gone (or the container is removed).
struct RunningExec(std::path::PathBuf);

impl RunningExec {
    fn note(store: &Store, id: &str, exec_id: &str, pid: i32) -> Option<RunningExec> {
        let start = process_start_time(pid)?;
        let dir = container_dir(store, id).join(EXECS_DIR);
        std::fs::create_dir_all(&dir).ok()?;
        let path = dir.join(exec_id);
        std::fs::write(&path, format!("{pid} {start}\n")).ok()?;
        Some(RunningExec(path))
    }

    fn forget(self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The directory of a container's running exec notes.
const EXECS_DIR: &str = "execs";

/// The IDs of the container's execs whose process is still running, as
/// Docker's `ExecIDs` (None when there is none, Docker's `null`).
pub fn running_exec_ids(container_dir: &std::path::Path) -> Option<Vec<String>> {
    let dir = container_dir.join(EXECS_DIR);
    let mut ids: Vec<(std::time::SystemTime, String)> = std::fs::read_dir(&dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let text = std::fs::read_to_string(entry.path()).ok()?;
            let (pid, start) = text.trim().split_once(' ')?;
            let pid: i32 = pid.parse().ok()?;
            let start: u64 = start.parse().ok()?;
            if process_start_time(pid) != Some(start) {
                let _ = std::fs::remove_file(entry.path());
                return None;
            }
            let made = entry.metadata().ok()?.modified().ok()?;
            Some((made, entry.file_name().to_string_lossy().into_owned()))
        })
        .collect();
    ids.sort();
    (!ids.is_empty()).then(|| ids.into_iter().map(|(_, id)| id).collect())
}

/// Waits for the first child (which passes on the process's status) for
/// up to `timeout`; then kills the process and gives [`TIMED_OUT`].
fn wait_with_timeout(
    child: nix::unistd::Pid,
    inner: Option<i32>,
    timeout: std::time::Duration,
) -> Result<i32, ContainerError> {
    use nix::sys::wait::WaitPidFlag;
    let deadline = std::time::Instant::now() + timeout;
    let mut pause = std::time::Duration::from_millis(1);
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(ContainerError::sys("waitpid", e)),
        }
        if std::time::Instant::now() >= deadline {
            // The process is the first child's child, in the container's
            // pid namespace; the first child exits when it does.
            if let Some(p) = inner {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = waitpid(child, None);
            return Ok(TIMED_OUT);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(std::time::Duration::from_millis(20));
    }
}

struct ExecSetup {
    namespaces: Vec<(File, CloneFlags)>,
    /// With a terminal: where the master end goes (to the caller).
    console: Option<OwnedFd>,
    terminal_size: Option<(u16, u16)>,
    /// The exec's uid and gid, who gets the terminal.
    owner: (u32, u32),
    interactive: bool,
    detach: bool,
    output: Option<std::sync::Arc<OwnedFd>>,
    /// The container's devices cgroup, joined first (before the
    /// namespaces, while /sys/fs/cgroup is the host's), so the process
    /// is under its device rules before it execs anything.
    devices_cgroup: Option<String>,
}

fn socketpair() -> nix::Result<(OwnedFd, OwnedFd)> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType};
    nix::sys::socket::socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
}

/// In the first child: joins the namespaces, forks the process that
/// execs, reports its pid, and passes on its exit status.
fn join_and_run(
    setup: ExecSetup,
    err: OwnedFd,
    pid_report: OwnedFd,
    run: impl FnOnce(&[String]) -> Result<(), LaunchError>,
    env: &[String],
) -> ! {
    let fail = |err: &OwnedFd, e: LaunchError| -> ! {
        let _ = File::from(err.try_clone().unwrap_or_else(|_| sys::exit_now(125)))
            .write_all(serde_json::to_string(&e).unwrap_or_default().as_bytes());
        sys::exit_now(e.exit_code)
    };
    if let Some(id) = &setup.devices_cgroup {
        if let Err(e) = devices::join_self(id) {
            fail(
                &err,
                LaunchError {
                    exit_code: 126,
                    message: e.to_string(),
                },
            );
        }
    }
    for (ns, flag) in &setup.namespaces {
        if let Err(e) = nix::sched::setns(ns.as_fd(), *flag) {
            fail(&err, LaunchError::at("setns", e));
        }
    }
    if setup.detach {
        let _ = nix::unistd::setsid();
    }
    // The grandchild sends its terminal's master here.
    let terminal = match setup.console.as_ref().map(|_| socketpair()) {
        Some(Err(e)) => fail(&err, LaunchError::at("socketpair", e)),
        Some(Ok(pair)) => Some(pair),
        None => None,
    };
    match sys::fork() {
        Err(e) => fail(&err, LaunchError::at("fork", e)),
        Ok(ForkResult::Parent { child }) => {
            let _ = File::from(pid_report).write_all(child.as_raw().to_string().as_bytes());
            drop(err);
            let master = match (terminal, setup.console) {
                (Some((mine, theirs)), Some(caller)) => {
                    drop(theirs);
                    pass_terminal(mine, caller)
                }
                _ => None,
            };
            if setup.detach {
                // The caller hands the terminal on to the monitor.
                sys::exit_now(0);
            }
            sys::exit_now(wait_process(child, master))
        }
        Ok(ForkResult::Child) => {}
    }
    drop(pid_report);
    drop(setup.console);
    // A detached process outlives the first child, which exits at once.
    if !setup.detach {
        let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    }
    let _ = sys::reset_signals();
    if let Some((mine, theirs)) = terminal {
        drop(mine);
        let _ = nix::unistd::setsid();
        if let Err(e) = open_terminal(theirs.as_fd(), setup.terminal_size, setup.owner) {
            fail(&err, e);
        }
    } else if setup.detach {
        // Docker sends a detached exec's output nowhere; holding the
        // caller's would keep its reader waiting.
        let null = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null");
        if let Ok(null) = null {
            for fd in 0..3 {
                let _ = nix::unistd::dup2(null.as_raw_fd(), fd);
            }
        }
    } else if !setup.interactive {
        if let Ok(null) = File::open("/dev/null") {
            let _ = nix::unistd::dup2(null.as_raw_fd(), 0);
        }
    }
    if let Some(output) = &setup.output {
        for fd in 1..3 {
            let _ = nix::unistd::dup2(output.as_raw_fd(), fd);
        }
    }
    match run(env) {
        Ok(()) => sys::exit_now(0),
        Err(e) => fail(&err, e),
    }
}

/// A health probe (`monitor/health.rs`): runs `argv` in the running
/// container as `exec` does, its output (stdout and stderr, the first
/// 4 KiB as Docker keeps) captured, killed after `timeout`. Returns the
/// exit code (126/127 and the message if it could not be started,
/// [`TIMED_OUT`]) and the output.
pub fn health_probe(
    store: &Store,
    id: &str,
    argv: &[String],
    timeout: std::time::Duration,
) -> (i32, String) {
    const KEEP: usize = 4096;
    let (read, write) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => return (TIMED_OUT, format!("pipe: {e}")),
    };
    let (sender, receiver) = std::sync::mpsc::channel();
    let reader = std::thread::Builder::new()
        .name("health-output".into())
        .spawn(move || {
            let mut kept = Vec::new();
            let mut buf = [0u8; 4096];
            let mut file = File::from(read);
            while let Ok(n) = file.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let room = KEEP.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
            let _ = sender.send(kept);
        });
    let options = ExecOptions {
        cmd: argv.to_vec(),
        output: Some(std::sync::Arc::new(write)),
        timeout: Some(timeout),
        ..Default::default()
    };
    let result = exec_in_container(store, id, &options);
    drop(options);
    // A process the probe left behind may hold the pipe: its output is
    // not waited for long.
    let output = match reader {
        Ok(_) => receiver
            .recv_timeout(std::time::Duration::from_secs(1))
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let output = String::from_utf8_lossy(&output).into_owned();
    match result {
        Ok(TIMED_OUT) => (
            TIMED_OUT,
            format!(
                "Health check exceeded timeout ({})",
                humantime_seconds(timeout)
            ),
        ),
        Ok(code) => (code, output),
        Err(ContainerError::Launch { code, message }) => (code, message),
        Err(e) => (TIMED_OUT, e.to_string()),
    }
}

/// A duration as Go prints whole and fractional seconds (`1s`, `200ms`).
fn humantime_seconds(d: std::time::Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{}ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}
