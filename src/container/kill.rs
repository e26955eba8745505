//! `kill [-s SIGNAL]` and the waiting that `stop` and `rm -f` need.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::error::ContainerError;
use super::events::record_container_event;
use super::launch::cgroup;
use super::monitor::liveness::{lookup, reconcile};
use super::records::{get_container, update_state, Container};
use super::spec::Status;
use crate::store::Store;

/// Parses `KILL`, `SIGKILL`, `sigkill` or `9`.
pub fn parse_signal(name: &str) -> Result<Signal, ContainerError> {
    if let Ok(n) = name.parse::<i32>() {
        return Signal::try_from(n)
            .map_err(|_| ContainerError::Invalid(format!("invalid signal: {name}")));
    }
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse::<Signal>()
        .map_err(|_| ContainerError::Invalid(format!("invalid signal: {name}")))
}

fn ensure_running(c: &Container) -> Result<(), ContainerError> {
    let running = matches!(c.state.status, Status::Running | Status::Paused) && c.state.pid > 0;
    if running || c.state.status == Status::Restarting {
        Ok(())
    } else {
        Err(ContainerError::BadState {
            id: c.short_id().into(),
            state: c.state.status.as_str().into(),
            what: "is not running".into(),
        })
    }
}

/// Sends a signal to the container's pid 1.
pub fn kill_container(
    store: &Store,
    name_or_id: &str,
    signal: Signal,
) -> Result<Container, ContainerError> {
    let c = lookup(store, name_or_id)?;
    ensure_running(&c)?;
    signal_container(store, &c, signal)?;
    Ok(c)
}

/// Records Docker's `kill` event (`signal=N`), marks the container as
/// stopped by the user (its restart policy ends, as Docker's does) and
/// signals its pid 1. A container waiting to restart has no process: the
/// mark is enough, its monitor sees it and records the exit.
fn signal_container(store: &Store, c: &Container, signal: Signal) -> Result<(), ContainerError> {
    record_container_event(store, c, "kill", &[("signal", (signal as i32).to_string())]);
    let (pid, status) = update_state(store, &c.id, |s| {
        s.manually_stopped = true;
        Ok((s.pid, s.status))
    })?;
    if pid <= 0 || !matches!(status, Status::Running | Status::Paused) {
        return Ok(());
    }
    if status == Status::Paused && signal == Signal::SIGKILL {
        // A frozen process dies only once thawed.
        cgroup::freeze(&c.id, false);
    }
    match nix::sys::signal::kill(Pid::from_raw(pid), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(ContainerError::sys(format!("kill {}", c.state.pid), e)),
    }
}

/// Waits until the record says the container is no longer running (the
/// monitor recorded its exit), or `timeout` passes. Returns whether it did.
pub fn wait_not_running(
    store: &Store,
    id: &str,
    timeout: Duration,
) -> Result<bool, ContainerError> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    loop {
        let c = match get_container(store, id).map(|c| reconcile(store, c)) {
            Ok(Ok(Some(c))) => c,
            // Removed (`--rm`) by its monitor, or as its monitor died.
            Ok(Ok(None)) | Err(ContainerError::NotFound(_)) => return Ok(true),
            Ok(Err(e)) | Err(e) => return Err(e),
        };
        if !matches!(
            c.state.status,
            Status::Running | Status::Paused | Status::Restarting
        ) {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Sends `signal` and waits for the monitor to record the exit.
pub fn kill_and_wait(
    store: &Store,
    c: &Container,
    signal: Signal,
    timeout: Duration,
) -> Result<(), ContainerError> {
    signal_container(store, c, signal)?;
    if !wait_stopped(store, c, signal, timeout)? {
        return Err(ContainerError::Monitor {
            id: c.short_id().into(),
            reason: "did not record the container's exit in time".into(),
        });
    }
    Ok(())
}

/// [`wait_not_running`], and if a restart that was under way when the
/// container was marked stopped runs it again meanwhile (a new pid 1),
/// `signal` goes to that one too.
fn wait_stopped(
    store: &Store,
    c: &Container,
    signal: Signal,
    timeout: Duration,
) -> Result<bool, ContainerError> {
    let deadline = Instant::now() + timeout;
    let mut signalled = c.state.pid;
    loop {
        let slice = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(100));
        if wait_not_running(store, &c.id, slice)? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        let now = get_container(store, &c.id)?;
        if now.state.status == Status::Running && now.state.pid > 0 && now.state.pid != signalled {
            signalled = now.state.pid;
            let _ = nix::sys::signal::kill(Pid::from_raw(signalled), signal);
        }
    }
}

/// `stop [-t N]`: the stop signal, then SIGKILL after the grace period.
pub fn stop_container(
    store: &Store,
    name_or_id: &str,
    timeout: Option<u32>,
) -> Result<Container, ContainerError> {
    let c = lookup(store, name_or_id)?;
    if !matches!(
        c.state.status,
        Status::Running | Status::Paused | Status::Restarting
    ) {
        return Ok(c);
    }
    let signal = parse_signal(&c.spec.stop_signal).unwrap_or(Signal::SIGTERM);
    let grace = Duration::from_secs(timeout.or(c.spec.stop_timeout).unwrap_or(10) as u64);
    if c.state.status == Status::Paused {
        cgroup::freeze(&c.id, false);
    }
    signal_container(store, &c, signal)?;
    if !wait_stopped(store, &c, signal, grace)? {
        kill_and_wait(store, &c, Signal::SIGKILL, Duration::from_secs(30))?;
    }
    record_container_event(store, &c, "stop", &[]);
    Ok(c)
}

/// `wait`: blocks until the container is not running; its exit code.
pub fn wait_container(store: &Store, name_or_id: &str) -> Result<i32, ContainerError> {
    let c = lookup(store, name_or_id)?;
    wait_not_running(store, &c.id, Duration::from_secs(u64::MAX / 4))?;
    match get_container(store, &c.id) {
        Ok(c) => Ok(c.state.exit_code),
        // Removed (--rm) after exiting: the monitor no longer has a record.
        Err(ContainerError::NotFound(_)) => Ok(0),
        Err(e) => Err(e),
    }
}
