//! Restart policies, carried out by the monitor (Docker's restart
//! manager): when the container's process exits, [`decide`] says whether
//! it runs again and after how long; the monitor records `restarting`,
//! waits ([`wait_back_off`]) and starts the container again by exec'ing
//! itself ([`relaunch`]), so each run gets a fresh, single-threaded
//! monitor that mounts, networks and cleans up exactly as `start`'s does.
//!
//! Docker's rules: `always` restarts whatever the exit, `unless-stopped`
//! too unless the user stopped it, `on-failure[:N]` after a non-zero exit
//! while fewer than N restarts were made (no limit without N); `stop` or
//! `kill` ends every policy until the container is started again
//! (`ContainerState::manually_stopped`). The delay is 100 ms, doubled at
//! each restart up to one minute, and back to 100 ms once the container
//! had run 10 s.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::container::error::ContainerError;
use crate::container::records::update_state;
use crate::container::spec::{ContainerState, RestartPolicy, Status};
use crate::container::sys;
use crate::store::Store;

/// The first delay, and the step.
const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest delay.
const MAX_DELAY: Duration = Duration::from_secs(60);
/// A run this long resets the delay.
const RESET_AFTER: Duration = Duration::from_secs(10);

/// Whether the policy restarts a container that exited with `exit_code`
/// after `restarts` restarts.
pub fn should_restart(
    policy: &RestartPolicy,
    exit_code: i32,
    manually_stopped: bool,
    restarts: u32,
) -> bool {
    if manually_stopped || policy.is_none() {
        return false;
    }
    if policy.is_always() || policy.is_unless_stopped() {
        return true;
    }
    policy.is_on_failure()
        && exit_code != 0
        && (policy.maximum_retry_count == 0 || restarts < policy.maximum_retry_count)
}

/// The next delay after `previous` (zero: none yet) for a run that
/// lasted `ran_for`.
pub fn next_delay(previous: Duration, ran_for: Duration) -> Duration {
    let previous = if ran_for >= RESET_AFTER {
        Duration::ZERO
    } else {
        previous
    };
    if previous.is_zero() {
        FIRST_DELAY
    } else {
        (previous * 2).min(MAX_DELAY)
    }
}

/// Records the exit of a run in `state` and decides: `Some(delay)` if the
/// container restarts (status `restarting`, one more restart counted), or
/// `None` (status `exited`, the monitor's pid cleared).
pub fn decide(
    state: &mut ContainerState,
    policy: &RestartPolicy,
    exit_code: i32,
    ran_for: Duration,
) -> Option<Duration> {
    state.exit_code = exit_code;
    state.pid = 0;
    if !should_restart(
        policy,
        exit_code,
        state.manually_stopped,
        state.restart_count,
    ) {
        state.status = Status::Exited;
        state.monitor_pid = 0;
        state.restart_delay_ms = 0;
        return None;
    }
    let delay = next_delay(Duration::from_millis(state.restart_delay_ms), ran_for);
    state.status = Status::Restarting;
    state.restart_count += 1;
    state.restart_delay_ms = delay.as_millis() as u64;
    Some(delay)
}

/// Waits out the back-off. Returns false (and records the container
/// exited) if `stop` or `kill` ended the policy meanwhile or the
/// container was removed.
pub fn wait_back_off(store: &Store, id: &str, delay: Duration) -> bool {
    let deadline = Instant::now() + delay;
    loop {
        let go_on = update_state(store, id, |s| {
            if s.manually_stopped {
                s.status = Status::Exited;
                s.monitor_pid = 0;
                s.restart_delay_ms = 0;
                return Ok(false);
            }
            Ok(true)
        });
        match go_on {
            Ok(true) => {}
            Ok(false) | Err(_) => return false,
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}

/// Starts the container again: this monitor execs itself (`STRATA_BIN`
/// if set, else its own binary) as a new monitor for the container,
/// keeping its pid and start time (so the record's monitor stays alive
/// for every command) and nothing else: no thread, no descriptor but a
/// status pipe that nobody reads (`/dev/null`). Returns only if the exec
/// failed.
pub fn relaunch(root: &Path, id: &str) -> ContainerError {
    use std::ffi::CString;
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let exe = std::env::var_os("STRATA_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/proc/self/exe".into());
    let null = match std::fs::OpenOptions::new().write(true).open("/dev/null") {
        Ok(f) => f,
        Err(e) => return ContainerError::io("/dev/null", e),
    };
    let status_fd = super::run::STATUS_FD;
    if null.as_raw_fd() == status_fd {
        // Opened there (the status pipe was closed): keep it open.
        let _ = std::os::fd::IntoRawFd::into_raw_fd(null);
    } else if let Err(e) = nix::unistd::dup2(null.as_raw_fd(), status_fd) {
        return ContainerError::sys("dup2", e);
    }
    if let Err(e) = nix::fcntl::fcntl(
        status_fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    ) {
        return ContainerError::sys("fcntl", e);
    }
    if let Err(e) = sys::cloexec_from(status_fd as u32 + 1) {
        return ContainerError::sys("close_range", e);
    }
    let args: Vec<CString> = [
        b"strata-monitor".as_slice(),
        b"--root",
        root.as_os_str().as_bytes(),
        b"__monitor",
        b"--detached",
        id.as_bytes(),
    ]
    .iter()
    .filter_map(|a| CString::new(*a).ok())
    .collect();
    let Ok(c_exe) = CString::new(exe.as_os_str().as_bytes()) else {
        return ContainerError::Invalid(format!("monitor binary {}", exe.display()));
    };
    match nix::unistd::execv(&c_exe, &args) {
        Err(e) => ContainerError::sys(format!("exec {}", exe.display()), e),
        Ok(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(s: &str) -> RestartPolicy {
        s.parse().unwrap()
    }

    #[test]
    fn policies_decide_as_docker() {
        assert!(!should_restart(&policy("no"), 1, false, 0));
        assert!(should_restart(&policy("always"), 0, false, 7));
        assert!(!should_restart(&policy("always"), 0, true, 0));
        assert!(should_restart(&policy("unless-stopped"), 0, false, 0));
        assert!(!should_restart(&policy("unless-stopped"), 1, true, 0));
        assert!(!should_restart(&policy("on-failure"), 0, false, 0));
        assert!(should_restart(&policy("on-failure"), 1, false, 100));
        assert!(should_restart(&policy("on-failure:5"), 1, false, 4));
        assert!(!should_restart(&policy("on-failure:5"), 1, false, 5));
    }

    #[test]
    fn back_off_doubles_and_resets() {
        let quick = Duration::from_millis(5);
        let mut d = next_delay(Duration::ZERO, quick);
        assert_eq!(d, Duration::from_millis(100));
        d = next_delay(d, quick);
        assert_eq!(d, Duration::from_millis(200));
        d = next_delay(d, quick);
        assert_eq!(d, Duration::from_millis(400));
        assert_eq!(
            next_delay(Duration::from_secs(50), quick),
            Duration::from_secs(60)
        );
        assert_eq!(
            next_delay(Duration::from_secs(3), Duration::from_secs(10)),
            Duration::from_millis(100)
        );
    }
}
