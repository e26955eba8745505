//! Per-container cgroups (v1 hierarchies where mounted, else the unified
//! v2 one): the freezer for pause, memory and cpu accounting for stats.
//! All of it is optional; a container runs without cgroups if they
//! cannot be made.

use std::path::{Path, PathBuf};

/// The memory controller is left out on purpose: making a v1 memory
/// cgroup costs ~17 ms here, half of a container's whole start; memory
/// figures come from the processes' own counters instead (see stats).
const V1_CONTROLLERS: &[&str] = &["freezer", "cpuacct", "pids"];
const BASE: &str = "/sys/fs/cgroup";

fn v1_dir(controller: &str, id: &str) -> PathBuf {
    Path::new(BASE).join(controller).join("strata").join(id)
}

fn is_v2() -> bool {
    Path::new(BASE).join("cgroup.controllers").exists()
}

fn v2_dir(id: &str) -> PathBuf {
    Path::new(BASE).join("strata").join(id)
}

/// Creates the container's cgroups and moves `pid` into them. Returns the
/// directories made (so failures stay silent but visible in inspect).
pub fn enter(id: &str, pid: i32) -> Vec<PathBuf> {
    let mut made = Vec::new();
    let dirs: Vec<PathBuf> = if is_v2() {
        vec![v2_dir(id)]
    } else {
        V1_CONTROLLERS
            .iter()
            .filter(|c| Path::new(BASE).join(c).is_dir())
            .map(|c| v1_dir(c, id))
            .collect()
    };
    for dir in dirs {
        if std::fs::create_dir_all(&dir).is_ok()
            && std::fs::write(dir.join("cgroup.procs"), pid.to_string()).is_ok()
        {
            made.push(dir);
        }
    }
    made
}

/// Adds another process (an `exec`) to the container's cgroups.
pub fn join(id: &str, pid: i32) {
    for dir in existing(id) {
        let _ = std::fs::write(dir.join("cgroup.procs"), pid.to_string());
    }
}

fn existing(id: &str) -> Vec<PathBuf> {
    if is_v2() {
        return vec![v2_dir(id)]
            .into_iter()
            .filter(|d| d.is_dir())
            .collect();
    }
    V1_CONTROLLERS
        .iter()
        .map(|c| v1_dir(c, id))
        .filter(|d| d.is_dir())
        .collect()
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

/// Freezes or thaws the container; false when no freezer is available.
pub fn freeze(id: &str, frozen: bool) -> bool {
    if is_v2() {
        let f = v2_dir(id).join("cgroup.freeze");
        return std::fs::write(f, if frozen { "1" } else { "0" }).is_ok();
    }
    let f = v1_dir("freezer", id).join("freezer.state");
    if std::fs::write(&f, if frozen { "FROZEN" } else { "THAWED" }).is_err() {
        return false;
    }
    // The v1 freezer goes through FREEZING; wait for the final state.
    for _ in 0..200 {
        match std::fs::read_to_string(&f) {
            Ok(s) if s.trim() == (if frozen { "FROZEN" } else { "THAWED" }) => return true,
            Ok(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
            Err(_) => return false,
        }
    }
    false
}

/// Memory usage and limit in bytes, where accounted.
pub fn memory(id: &str) -> Option<(u64, u64)> {
    let read = |p: PathBuf| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    if is_v2() {
        let d = v2_dir(id);
        return Some((
            read(d.join("memory.current"))?,
            read(d.join("memory.max")).unwrap_or(u64::MAX),
        ));
    }
    let d = v1_dir("memory", id);
    Some((
        read(d.join("memory.usage_in_bytes"))?,
        read(d.join("memory.limit_in_bytes")).unwrap_or(u64::MAX),
    ))
}

/// Total CPU time in nanoseconds, where accounted.
pub fn cpu_nanos(id: &str) -> Option<u64> {
    if is_v2() {
        let text = std::fs::read_to_string(v2_dir(id).join("cpu.stat")).ok()?;
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
    let dir = if is_v2() {
        v2_dir(id)
    } else {
        v1_dir("pids", id)
    };
    std::fs::read_to_string(dir.join("pids.current"))
        .ok()?
        .trim()
        .parse()
        .ok()
}
