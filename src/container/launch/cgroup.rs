//! Per-container cgroups: the freezer for pause, CPU accounting and the
//! process count for stats. All of it is optional; a container runs
//! without cgroups if they cannot be made.
//!
//! Where a unified (v2) hierarchy is mounted (all of /sys/fs/cgroup, or
//! /sys/fs/cgroup/unified beside v1 hierarchies) the container's first
//! process is born in `<unified>/strata/<id>`: the monitor clones it
//! there (`clone3` with `CLONE_INTO_CGROUP`, see [`prepare`]). Moving a
//! running process instead, a write to `cgroup.procs`, waits for an RCU
//! grace period (~10 ms here, a third of a container's start). The v2
//! core offers what strata uses without any controller enabled:
//! `cgroup.freeze`, `cpu.stat`, `cgroup.procs`. Without a unified
//! hierarchy, the v1 freezer, cpuacct and pids hierarchies are used and
//! the process is moved into them ([`enter`]).
//!
//! No memory cgroup is made for a container without limits: making a v1
//! memory cgroup costs ~17 ms here; stats takes memory from the
//! processes' own counters. Limits (`-m`, `--cpus`, `--pids-limit`, ...)
//! have their own cgroups, made by [`super::limits`], and so has
//! `--device` ([`super::devices`]); they are removed and killed with the
//! rest here.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

const V1_CONTROLLERS: &[&str] = &["freezer", "cpuacct", "pids"];
pub(super) const BASE: &str = "/sys/fs/cgroup";

fn v1_dir(controller: &str, id: &str) -> PathBuf {
    Path::new(BASE).join(controller).join("strata").join(id)
}

/// The unified hierarchy's mount point, if there is one.
pub(super) fn unified_root() -> Option<PathBuf> {
    [BASE, "/sys/fs/cgroup/unified"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.join("cgroup.controllers").exists())
}

fn unified_dir(id: &str) -> Option<PathBuf> {
    unified_root().map(|root| root.join("strata").join(id))
}

/// The container's unified cgroup, if it has one.
fn unified_existing(id: &str) -> Option<PathBuf> {
    unified_dir(id).filter(|d| d.is_dir())
}

/// Creates the container's unified cgroup and opens it, for the first
/// process to be cloned into; `None` where there is no unified hierarchy
/// or it cannot be written.
pub fn prepare(id: &str) -> Option<OwnedFd> {
    let dir = unified_dir(id)?;
    std::fs::create_dir_all(&dir).ok()?;
    std::fs::File::open(&dir).ok().map(OwnedFd::from)
}

/// Creates the container's v1 cgroups and moves `pid` into them, for
/// hosts without a unified hierarchy. Returns the directories made (so
/// failures stay silent but visible).
pub fn enter(id: &str, pid: i32) -> Vec<PathBuf> {
    let mut made = Vec::new();
    for dir in V1_CONTROLLERS
        .iter()
        .filter(|c| Path::new(BASE).join(c).is_dir())
        .map(|c| v1_dir(c, id))
    {
        if std::fs::create_dir_all(&dir).is_ok()
            && std::fs::write(dir.join("cgroup.procs"), pid.to_string()).is_ok()
        {
            made.push(dir);
        }
    }
    made
}

/// Adds another process (an `exec`) to the container's cgroups (but
/// the devices cgroup, which the exec joined before it forked the
/// process: [`super::devices::join_self`]).
pub fn join(id: &str, pid: i32) {
    let devices = super::devices::dir(id);
    for dir in existing(id).into_iter().filter(|d| *d != devices) {
        let _ = std::fs::write(dir.join("cgroup.procs"), pid.to_string());
    }
}

fn existing(id: &str) -> Vec<PathBuf> {
    let mut controllers: Vec<&str> = V1_CONTROLLERS.to_vec();
    controllers.extend(super::limits::LIMIT_CONTROLLERS);
    controllers.push("devices");
    controllers.sort_unstable();
    controllers.dedup();
    let v1 = controllers.into_iter().map(|c| v1_dir(c, id));
    unified_existing(id)
        .into_iter()
        .chain(v1)
        .filter(|d| d.is_dir())
        .collect()
}

/// The processes in the container's cgroups (for `update` to move into
/// the cgroups of a new limit).
pub fn procs(id: &str) -> Vec<i32> {
    let mut pids: Vec<i32> = existing(id)
        .iter()
        .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|t| {
            t.lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Kills every process left in the container's cgroups (`cgroup.kill`
/// where the kernel has it, else each listed pid): after its monitor was
/// killed, nothing else will.
pub fn kill_all(id: &str) {
    for dir in existing(id) {
        if std::fs::write(dir.join("cgroup.kill"), "1").is_ok() {
            continue;
        }
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Removes the container's cgroups that hold no process (one try each).
pub fn remove_if_empty(id: &str) {
    for dir in existing(id) {
        let _ = std::fs::remove_dir(&dir);
    }
}

/// Removes the container's cgroups. The last processes of a pid
/// namespace may still be on their way out when pid 1 has been reaped,
/// so a busy cgroup is retried for a while.
pub fn remove(id: &str) {
    for dir in existing(id) {
        for _ in 0..100 {
            match std::fs::remove_dir(&dir) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                _ => break,
            }
        }
    }
}

/// Writes `value` to `file`, then waits (up to a second) until `check`
/// holds for what `state` reads: both freezers reach their final state
/// asynchronously.
fn set_and_wait(file: PathBuf, value: &str, state: PathBuf, check: impl Fn(&str) -> bool) -> bool {
    if std::fs::write(file, value).is_err() {
        return false;
    }
    for _ in 0..200 {
        match std::fs::read_to_string(&state) {
            Ok(s) if check(&s) => return true,
            Ok(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
            Err(_) => return false,
        }
    }
    false
}

/// Freezes or thaws the container; false when no freezer is available.
pub fn freeze(id: &str, frozen: bool) -> bool {
    if let Some(dir) = unified_existing(id) {
        let want = if frozen { "frozen 1" } else { "frozen 0" };
        return set_and_wait(
            dir.join("cgroup.freeze"),
            if frozen { "1" } else { "0" },
            dir.join("cgroup.events"),
            |events| events.lines().any(|l| l.trim() == want),
        );
    }
    let dir = v1_dir("freezer", id);
    let want = if frozen { "FROZEN" } else { "THAWED" };
    set_and_wait(
        dir.join("freezer.state"),
        want,
        dir.join("freezer.state"),
        |state| state.trim() == want,
    )
}

/// Total CPU time in nanoseconds, where accounted.
pub fn cpu_nanos(id: &str) -> Option<u64> {
    if let Some(dir) = unified_existing(id) {
        let text = std::fs::read_to_string(dir.join("cpu.stat")).ok()?;
        let usec: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("usage_usec "))?
            .trim()
            .parse()
            .ok()?;
        return Some(usec * 1000);
    }
    std::fs::read_to_string(v1_dir("cpuacct", id).join("cpuacct.usage"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Number of processes, where accounted.
pub fn pids(id: &str) -> Option<u64> {
    let read = |dir: PathBuf| {
        std::fs::read_to_string(dir.join("pids.current"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    if let Some(dir) = unified_existing(id) {
        // The pids controller is seldom enabled there; the core lists
        // the tasks (what pids.current counts).
        return read(dir.clone()).or_else(|| {
            let tasks = std::fs::read_to_string(dir.join("cgroup.threads")).ok()?;
            Some(tasks.lines().count() as u64)
        });
    }
    read(v1_dir("pids", id))
}
