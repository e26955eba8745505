//! `rm [-f] [-v]`: removes a container's record and directory; `-f`
//! kills it first; `-v` removes its anonymous volumes.

use super::error::ContainerError;
use super::kill::kill_and_wait;
use super::monitor::liveness::{lookup, monitor_alive};
use super::monitor::retire::remove_files;
use super::records::Container;
use super::spec::Status;
use crate::store::Store;

/// Removes a container; returns its record as it was.
pub fn remove_container(
    store: &Store,
    name_or_id: &str,
    force: bool,
    volumes: bool,
) -> Result<Container, ContainerError> {
    let container = lookup(store, name_or_id)?;
    if let Ok(Some(view)) = crate::mount::container_view(store, &container.id) {
        if !force {
            return Err(ContainerError::ViewMounted {
                id: container.short_id().into(),
                path: view.display().to_string(),
            });
        }
        let _ = crate::mount::unmount(store, &view.to_string_lossy());
    }
    if matches!(
        container.state.status,
        Status::Running | Status::Paused | Status::Restarting
    ) {
        if !force {
            return Err(ContainerError::RemoveRunning(container.short_id().into()));
        }
        match kill_and_wait(
            store,
            &container,
            nix::sys::signal::Signal::SIGKILL,
            MONITOR_ANSWER,
        ) {
            Ok(()) => {}
            // A monitor that does not record the exit (stopped, or stuck)
            // is killed with what it runs; the files go below.
            Err(ContainerError::Monitor { .. }) => kill_monitor(&container),
            Err(e) => return Err(e),
        }
    }
    let fresh = super::records::get_container(store, &container.id);
    // With --rm the monitor may have removed it meanwhile.
    if let Ok(c) = fresh {
        remove_files(store, &c, volumes)?;
    }
    Ok(container)
}

/// How long `rm -f` waits for a monitor to record its container's exit
/// after SIGKILL (it takes milliseconds) before it kills the monitor.
const MONITOR_ANSWER: std::time::Duration = std::time::Duration::from_secs(10);

/// Kills a container's monitor (only if the recorded pid is still that
/// monitor: same start time, a `strata-monitor` command line, so a
/// recycled pid is never killed) and every process in its cgroups.
fn kill_monitor(container: &Container) {
    let pid = container.state.monitor_pid;
    let is_monitor = monitor_alive(container)
        && (std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| c.starts_with(b"strata-monitor"))
            || std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim_end() == "strata-monitor"));
    if is_monitor {
        let pid = nix::unistd::Pid::from_raw(pid);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while monitor_alive(container) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    super::launch::cgroup::kill_all(&container.id);
}
