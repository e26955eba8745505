//! `start`: launches a created or exited container under a new monitor.
//!
//! The calling process forks twice (the middle process starts a new
//! session and exits at once), so the monitor is detached from the
//! caller's terminal and is no child of the caller. The caller must be
//! single-threaded (the `strata` command is) and closes its store
//! connection across the fork. The monitor tells the
//! caller over a pipe when the container started and, if the caller
//! stays, how it exited. An attached caller connects to the monitor's
//! attach socket before the container runs and relays through it
//! (`monitor/attach.rs`), like any later `attach`.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

use nix::sys::wait::waitpid;
use nix::unistd::ForkResult;

use super::attach::AttachOptions;
use super::error::ContainerError;
use super::monitor::attach::{relay, RelayOptions, Relayed};
use super::monitor::liveness::lookup;
use super::monitor::run::{run_monitor, Attach};
use super::records::{get_container, update_state};
use super::spec::Status;
use super::sys;
use crate::store::Store;

/// A started container and the pipe its monitor reports on.
pub struct Started {
    pub id: String,
    pub pid: i32,
    status: BufReader<File>,
    /// The attached caller's connection to the monitor.
    stream: Option<UnixStream>,
}

/// How a container's first process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    /// It never ran: the code and message Docker would give.
    Failed(i32, String),
    /// The attached caller detached (ctrl-p ctrl-q); it still runs.
    Detached,
}

/// Starts the container; with `attached`, the caller is attached to it
/// before it runs (see [`Started::relay_and_wait`]).
pub fn start_container(
    store: &mut Store,
    name_or_id: &str,
    attached: bool,
) -> Result<Started, ContainerError> {
    let container = lookup(store, name_or_id)?;
    if let Ok(Some(view)) = crate::mount::container_view(store, &container.id) {
        return Err(ContainerError::ViewMounted {
            id: container.short_id().into(),
            path: view.display().to_string(),
        });
    }
    match container.state.status {
        Status::Running | Status::Paused | Status::Restarting => {
            return Err(ContainerError::BadState {
                id: container.short_id().into(),
                state: container.state.status.as_str().into(),
                what: "it is already running".into(),
            })
        }
        Status::Removing | Status::Dead => {
            return Err(ContainerError::BadState {
                id: container.short_id().into(),
                state: container.state.status.as_str().into(),
                what: "cannot start".into(),
            })
        }
        Status::Created | Status::Exited => {}
    }
    // Started by the user: the restart policy applies again, counted
    // from zero (Docker resets its restart manager).
    update_state(store, &container.id, |s| {
        s.manually_stopped = false;
        s.restart_count = 0;
        s.restart_delay_ms = 0;
        Ok(())
    })?;
    let (status_r, status_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| ContainerError::sys("pipe", e))?;
    let root = store.root().to_path_buf();
    let id = container.id.clone();
    store.close_connection()?;
    let forked = sys::fork();
    if forked.is_err() {
        store.reopen()?;
    }
    match forked.map_err(|e| ContainerError::sys("fork", e))? {
        ForkResult::Child => {
            drop(status_r);
            detach_and_monitor(&root, &id, attached, status_w)
        }
        ForkResult::Parent { child } => {
            drop(status_w);
            let _ = waitpid(child, None);
        }
    }
    let mut status = BufReader::new(File::from(status_r));
    let mut line = String::new();
    let mut stream = None;
    // This process opens the store again once the monitor has opened it
    // (`opened`) or has gone. Opened at once, the two opens raced for
    // the WAL index, which the first opener of a store no process holds
    // open rebuilds, and the monitor, on the start's critical path,
    // slept in SQLite's busy handler (1 to 3 ms; 1 start in 30 at load
    // 2, every start under `perf trace`).
    let first = next_status_line(&mut status, &mut line);
    store.reopen()?;
    first?;
    if line.trim_end() == "opened" {
        next_status_line(&mut status, &mut line)?;
    }
    while let Some(monitor) = line.trim_end().strip_prefix("listening ") {
        let dir = super::records::container_dir(store, &id);
        match super::monitor::attach::connect(&dir) {
            Ok(s) => stream = Some(s),
            Err(e) => {
                // The monitor sees the status pipe close and gives up
                // without launching; wait until it has recorded that, so
                // the caller's error and the record agree.
                drop(status);
                wait_gone(monitor.parse().unwrap_or(0));
                return Err(ContainerError::io(
                    dir.join(super::monitor::attach::SOCKET_NAME),
                    e,
                ));
            }
        }
        next_status_line(&mut status, &mut line)?;
    }
    let line = line.trim_end();
    if let Some(pid) = line.strip_prefix("started ") {
        return Ok(Started {
            id,
            pid: pid.parse().unwrap_or(0),
            status,
            stream,
        });
    }
    if let Some(rest) = line.strip_prefix("failed ") {
        let (code, message) = rest.split_once(' ').unwrap_or((rest, ""));
        return Err(ContainerError::Launch {
            code: code.parse().unwrap_or(125),
            message: message.to_string(),
        });
    }
    let state = get_container(store, &id)
        .map(|c| c.state.error)
        .unwrap_or_default();
    Err(ContainerError::Monitor {
        id,
        reason: if state.is_empty() {
            "exited before starting the container".into()
        } else {
            state
        },
    })
}

/// Reads the monitor's next status line into `line` (emptied first);
/// its length, 0 once the monitor has closed the pipe.
fn next_status_line(
    status: &mut BufReader<File>,
    line: &mut String,
) -> Result<usize, ContainerError> {
    line.clear();
    status
        .read_line(line)
        .map_err(|e| ContainerError::io("monitor status pipe", e))
}

/// `restart [-t N]`: stops the container (see `stop`), starts it again
/// detached and records Docker's `restart` event.
pub fn restart_container(
    store: &mut Store,
    name_or_id: &str,
    timeout: Option<u32>,
) -> Result<Started, ContainerError> {
    let c = super::kill::stop_container(store, name_or_id, timeout)?;
    let started = start_container(store, &c.id, false)?;
    super::events::record_container_event(store, &c, "restart", &[]);
    Ok(started)
}

/// Waits (up to 10 s) until process `pid` has exited.
fn wait_gone(pid: i32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while pid > 0
        && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

pub use super::monitor::run::STATUS_FD;

/// The binary whose hidden `__monitor` command every later monitor execs
/// (see [`exec_monitors`]).
static MONITOR_EXE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// Makes every monitor this process starts from now on exec `exe`'s
/// hidden `__monitor` command instead of running in the forked child. A
/// process that starts containers from several threads (a build running
/// stages at the same time) needs it: a forked copy of it would inherit
/// locks (malloc's, SQLite's) other threads held at the fork.
pub fn exec_monitors(exe: std::path::PathBuf) {
    let _ = MONITOR_EXE.set(exe);
}

/// Whether monitors are exec'd ([`exec_monitors`], or `STRATA_BIN`), so
/// that containers may be started from several threads.
pub fn monitors_exec() -> bool {
    MONITOR_EXE.get().is_some() || std::env::var_os("STRATA_BIN").is_some()
}

/// In the first child: a new session, then the monitor in a grandchild,
/// with the status pipe as fd 3. The grandchild runs the monitor as it is
/// (the caller holds no store connection, see [`Store::close_connection`],
/// and no thread); with `STRATA_BIN` set (or [`exec_monitors`]) it execs that binary's hidden
/// `__monitor` command instead (tests use it to run the monitor
/// elsewhere).
fn detach_and_monitor(root: &std::path::Path, id: &str, attached: bool, status: OwnedFd) -> ! {
    use std::os::fd::AsRawFd;
    if nix::unistd::setsid().is_err() {
        sys::exit_now(1);
    }
    match sys::fork() {
        Ok(ForkResult::Child) => {}
        _ => sys::exit_now(0),
    }
    if status.as_raw_fd() == STATUS_FD {
        std::mem::forget(status);
    } else if nix::unistd::dup2(status.as_raw_fd(), STATUS_FD).is_err() {
        sys::exit_now(125);
    } else {
        drop(status);
    }
    let exe = std::env::var_os("STRATA_BIN")
        .map(std::path::PathBuf::from)
        .or_else(|| MONITOR_EXE.get().cloned());
    match exe {
        Some(exe) => exec_monitor(&exe, root, id, attached),
        None => {
            // Nothing of the caller's but the status pipe stays open.
            let _ = sys::close_from(STATUS_FD as u32 + 1);
            let _ = nix::sys::prctl::set_name(c"strata-monitor");
            let short = &id[..id.len().min(12)];
            let _ = super::launch::init::show_command_line(&["strata-monitor", short]);
            monitor_main(root, id, attached)
        }
    }
}

/// Execs `exe`'s hidden `__monitor` command, keeping fd 3.
fn exec_monitor(exe: &std::path::Path, root: &std::path::Path, id: &str, attached: bool) -> ! {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let args: Vec<CString> = [
        b"strata-monitor".as_slice(),
        b"--root",
        root.as_os_str().as_bytes(),
        b"__monitor",
        if attached {
            b"--attached".as_slice()
        } else {
            b"--detached"
        },
        id.as_bytes(),
    ]
    .iter()
    .filter_map(|a| CString::new(*a).ok())
    .collect();
    let Ok(c_exe) = CString::new(exe.as_os_str().as_bytes()) else {
        sys::exit_now(125)
    };
    let _ = nix::fcntl::fcntl(
        STATUS_FD,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    );
    let _ = nix::unistd::execv(&c_exe, &args);
    sys::exit_now(125)
}

/// The monitor's entry point, with the status pipe as fd 3 (also the
/// hidden `__monitor` command's).
pub fn monitor_main(root: &std::path::Path, id: &str, attached: bool) -> ! {
    match sys::take_inherited_fd(STATUS_FD) {
        Some(status) => {
            let attach = Attach {
                attached,
                probe: Some(super::exec::health_probe),
            };
            run_monitor(root, id, attach, status)
        }
        None => sys::exit_now(125),
    }
}

impl Started {
    /// The attached caller's connection to the monitor, for a caller that
    /// reads the output frames itself (a build's RUN) instead of
    /// [`Started::relay_and_wait`]; then [`Started::wait`].
    pub fn take_stream(&mut self) -> Option<UnixStream> {
        self.stream.take()
    }

    /// For an attached start: relays the container's output to the
    /// caller's stdout and stderr and, with `stdin`, the caller's input
    /// to it; with a terminal, its size follows the caller's and the
    /// detach keys detach; without one (and with `sig_proxy`), SIGINT,
    /// SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 go to the
    /// container's pid 1. Then waits for the exit.
    pub fn relay_and_wait(
        mut self,
        store: &Store,
        tty: bool,
        client: &AttachOptions,
    ) -> Result<Exit, ContainerError> {
        if let Some(stream) = self.stream.take() {
            let options = RelayOptions {
                stdin: client.stdin,
                tty,
                detach_keys: client.detach_keys.clone(),
                signal_pid: if client.sig_proxy { self.pid } else { 0 },
            };
            if relay(stream, options)? == Relayed::Detached {
                return Ok(Exit::Detached);
            }
        }
        self.wait(store)
    }

    /// Waits until the monitor reports the exit (the caller stays
    /// attached). If the monitor vanished, the record says what happened.
    pub fn wait(mut self, store: &Store) -> Result<Exit, ContainerError> {
        let mut line = String::new();
        loop {
            if next_status_line(&mut self.status, &mut line)? == 0 {
                break;
            }
            let l = line.trim_end();
            if let Some(code) = l.strip_prefix("exit ") {
                return Ok(Exit::Code(code.parse().unwrap_or(125)));
            }
            if let Some(rest) = l.strip_prefix("failed ") {
                let (code, message) = rest.split_once(' ').unwrap_or((rest, ""));
                return Ok(Exit::Failed(
                    code.parse().unwrap_or(125),
                    message.to_string(),
                ));
            }
        }
        let c = lookup(store, &self.id)?;
        if c.state.status == Status::Exited {
            return Ok(Exit::Code(c.state.exit_code));
        }
        Err(ContainerError::Monitor {
            id: self.id,
            reason: "the monitor exited without reporting".into(),
        })
    }
}
