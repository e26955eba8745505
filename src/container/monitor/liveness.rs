//! Is a container's monitor still there? Commands check before they trust
//! a "running" record: a monitor killed with SIGKILL leaves the record
//! saying running and its mount in place; the next command marks the
//! container exited with an error and cleans the mount.

use super::retire::remove_files;
use crate::container::error::ContainerError;
use crate::container::launch::cgroup;
use crate::container::launch::rootfs::{is_mounted, unmount_path, RootfsDirs};
use crate::container::records::{container_dir, get_container, update_state, Container};
use crate::container::spec::{now_rfc3339, Status};
use crate::store::Store;

/// The start time of a process (clock ticks since boot, field 22 of
/// /proc/PID/stat), or None if there is no such process.
pub fn process_start_time(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields resume after ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); field 22 is index 19.
    let state = fields.first()?;
    if *state == "Z" || *state == "X" {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Whether `pid` lives in a pid namespace other than this process's.
fn in_another_pid_namespace(pid: i32) -> bool {
    let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/pid")).ok();
    match (ns(&pid.to_string()), ns("self")) {
        (Some(theirs), Some(ours)) => theirs != ours,
        _ => false,
    }
}

/// Whether the monitor recorded in the state is alive.
pub fn monitor_alive(container: &Container) -> bool {
    let s = &container.state;
    s.monitor_pid > 0 && process_start_time(s.monitor_pid) == Some(s.monitor_start)
}

/// What [`reconcile`] records when a container's monitor died under it.
const MONITOR_DIED: &str = "the container's monitor process died unexpectedly";

/// Loads a container and repairs its record if its monitor died. A `--rm`
/// container whose monitor died is removed instead (its monitor would
/// have): `None`.
pub fn reconcile(store: &Store, container: Container) -> Result<Option<Container>, ContainerError> {
    let active = matches!(
        container.state.status,
        Status::Running | Status::Paused | Status::Restarting
    );
    if !active || monitor_alive(&container) {
        // Left by a strata that marked it dead but did not remove it.
        if container.spec.auto_remove
            && container.state.status == Status::Exited
            && container.state.error == MONITOR_DIED
            && !monitor_alive(&container)
        {
            remove_files(store, &container, true)?;
            return Ok(None);
        }
        return Ok(Some(container));
    }
    // The container's pid 1 dies with its monitor (parent-death signal);
    // make sure, then clean what the monitor would have. The recorded pid
    // may be another process's by now (pids are reused): it is killed
    // only while it is still in a pid namespace other than ours, as the
    // container's pid 1 is (a `--pid host` container's processes are
    // left to the cgroup sweep below).
    if container.state.pid > 0 && in_another_pid_namespace(container.state.pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(container.state.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let dirs = RootfsDirs::of(&container_dir(store, &container.id));
    if is_mounted(&dirs.mountpoint) {
        unmount_path(&dirs.mountpoint)?;
    }
    // A pasta or slirp4netns that outlived it (each dies with the
    // monitor; this is for one that did not).
    collect_helpers(&container_dir(store, &container.id));
    // The monitor is gone: whatever is left in its cgroups is an orphan.
    cgroup::kill_all(&container.id);
    cgroup::remove(&container.id);
    // Its address leases and published ports (the veths went with its
    // namespace).
    crate::network::collect_container(store, &container.id)?;
    update_state(store, &container.id, |s| {
        if matches!(
            s.status,
            Status::Running | Status::Paused | Status::Restarting
        ) {
            s.status = Status::Exited;
            s.exit_code = 255;
            s.error = MONITOR_DIED.into();
            s.finished_at = now_rfc3339();
            s.pid = 0;
            s.monitor_pid = 0;
        }
        Ok(())
    })?;
    let container = get_container(store, &container.id)?;
    if container.spec.auto_remove && container.state.status == Status::Exited {
        // As the monitor would have: the record, the directory and the
        // anonymous volumes.
        remove_files(store, &container, true)?;
        return Ok(None);
    }
    Ok(Some(container))
}

/// The user-mode network helpers a monitor may start (network/helper.rs);
/// each is recorded in the container's directory as `NAME.process`.
const HELPERS: [&str; 2] = ["pasta", "slirp4netns"];

/// The record of a container's helper `name` in its directory: its pid
/// and start time, so that a pid reused since is never taken for it.
fn helper_record(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    dir.join(format!("{name}.process"))
}

/// Records the container's network helper `name` (pasta, slirp4netns),
/// running as `pid`, with its start time in the container's directory
/// `dir`, for [`collect_helpers`].
pub fn record_helper(dir: &std::path::Path, name: &str, pid: i32) -> Result<(), ContainerError> {
    let start = process_start_time(pid).ok_or_else(|| {
        ContainerError::Unsupported(format!("rootless: {name} (pid {pid}) exited at its start"))
    })?;
    let path = helper_record(dir, name);
    let part = path.with_extension("process.part");
    std::fs::write(&part, format!("{pid} {start}\n"))
        .and_then(|()| std::fs::rename(&part, &path))
        .map_err(|e| ContainerError::io(path, e))
}

/// Removes the records of the helpers the monitor has stopped itself (a
/// stale record would do no harm: its start time matches nothing).
pub fn forget_helpers(dir: &std::path::Path) {
    for name in HELPERS {
        let _ = std::fs::remove_file(helper_record(dir, name));
    }
}

/// Kills (SIGKILL) each helper recorded in the container's directory
/// `dir` if that process still runs (same pid, same start time), and
/// removes the records.
pub fn collect_helpers(dir: &std::path::Path) {
    for name in HELPERS {
        let path = helper_record(dir, name);
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let mut fields = text.split_whitespace().map(str::parse::<u64>);
        if let (Some(Ok(pid)), Some(Ok(start))) = (fields.next(), fields.next()) {
            let pid = i32::try_from(pid).unwrap_or(0);
            if pid > 0 && process_start_time(pid) == Some(start) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let _ = std::fs::remove_file(&path);
    }
}

/// Finds a container by name or ID prefix and reconciles it.
pub fn lookup(store: &Store, name_or_id: &str) -> Result<Container, ContainerError> {
    let c = crate::container::records::find_container(store, name_or_id)?;
    reconcile(store, c)?.ok_or_else(|| ContainerError::NotFound(name_or_id.to_string()))
}

/// Every container, reconciled (`--rm` containers whose monitor died are
/// removed, and not listed).
pub fn list_reconciled(store: &Store) -> Result<Vec<Container>, ContainerError> {
    let mut out = Vec::new();
    for c in crate::container::records::list_containers(store)? {
        out.extend(reconcile(store, c)?);
    }
    Ok(out)
}

/// For `gc`: repairs every container of this store whose monitor died
/// (killing what is left in its cgroups and removing them), and removes
/// the cgroups of this store's removed containers (`tmp/removed-<id>`)
/// once they are empty. Cgroups are named by container id only, and
/// several stores share the machine's tree, so gc touches no cgroup it
/// cannot tie to a container of this store. Returns how many containers
/// were repaired.
pub fn reap_dead_monitors(store: &Store) -> Result<usize, ContainerError> {
    let mut repaired = 0;
    for c in crate::container::records::list_containers(store)? {
        let was_active = matches!(
            c.state.status,
            Status::Running | Status::Paused | Status::Restarting
        );
        let now = reconcile(store, c)?;
        // A removed container (--rm whose monitor died) was repaired too.
        if was_active && now.is_none_or(|c| c.state.monitor_pid == 0) {
            repaired += 1;
        }
    }
    if let Ok(items) = std::fs::read_dir(store.tmp_dir()) {
        for item in items.flatten() {
            let name = item.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_prefix("removed-") {
                if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                    cgroup::remove_if_empty(id);
                }
            }
        }
    }
    Ok(repaired)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper() -> std::process::Child {
        std::process::Command::new("sleep")
            .arg("100")
            .spawn()
            .unwrap()
    }

    fn gone(child: &mut std::process::Child) -> bool {
        for _ in 0..100 {
            if child.try_wait().unwrap().is_some() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        false
    }

    #[test]
    fn a_recorded_helper_is_killed_only_while_its_start_time_matches() {
        let dir = tempfile::tempdir().unwrap();
        let mut other = sleeper();
        let pid = i32::try_from(other.id()).unwrap();
        // The pid is another process's by now: a record with another
        // start time.
        let start = process_start_time(pid).unwrap();
        let record = helper_record(dir.path(), "pasta");
        std::fs::write(&record, format!("{pid} {}", start + 1)).unwrap();
        collect_helpers(dir.path());
        assert!(
            other.try_wait().unwrap().is_none(),
            "a recycled pid was killed"
        );
        assert!(!record.exists());
        // The process itself, whichever helper it is.
        for name in HELPERS {
            let mut helper = sleeper();
            let pid = i32::try_from(helper.id()).unwrap();
            record_helper(dir.path(), name, pid).unwrap();
            collect_helpers(dir.path());
            assert!(gone(&mut helper), "the recorded {name} still runs");
            assert!(!helper_record(dir.path(), name).exists());
        }
        let _ = other.kill();
        let _ = other.wait();
    }
}
