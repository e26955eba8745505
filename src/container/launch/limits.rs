//! Resource limits written to the container's cgroups: memory, pids,
//! cpu (shares and CFS quota) and cpuset.
//!
//! Each controller is taken from its v1 hierarchy where one is mounted
//! (`/sys/fs/cgroup/<controller>/strata/<id>`), else from the unified
//! hierarchy where the controller is available there (it is enabled in
//! `strata/`'s `cgroup.subtree_control` and the limits written to the
//! container's unified cgroup). A limit that no hierarchy can apply is
//! an error, never skipped. Only containers with limits get these
//! cgroups (a v1 memory cgroup costs ~17 ms to make).

use std::path::{Path, PathBuf};

use crate::container::error::ContainerError;
use crate::container::resources::{parse_list, Resources};

use super::cgroup::{unified_root, BASE};

/// The v1 controllers limits use (beside the freezer, cpuacct and pids
/// hierarchies `cgroup` uses for pause and stats).
pub const LIMIT_CONTROLLERS: &[&str] = &["memory", "cpu", "cpuset", "pids"];

/// A limit the host could not apply, naming the file and the cause.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("cannot apply {what}: {reason}")]
    Unsupported { what: String, reason: String },
    #[error("{what}: writing {value:?} to {}: {source}", path.display())]
    Write {
        what: String,
        path: PathBuf,
        value: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Unavailable(String),
}

/// One value to write: the flag it comes from, the file (v1 name, v2
/// name) and the value for each.
struct Setting {
    flag: &'static str,
    controller: &'static str,
    v1: (&'static str, String),
    v2: Option<(&'static str, String)>,
}

fn settings(r: &Resources) -> Vec<Setting> {
    let mut out = Vec::new();
    let max = |v: i64| {
        if v <= 0 {
            "max".to_string()
        } else {
            v.to_string()
        }
    };
    if r.memory > 0 {
        out.push(Setting {
            flag: "--memory",
            controller: "memory",
            v1: ("memory.limit_in_bytes", r.memory.to_string()),
            v2: Some(("memory.max", r.memory.to_string())),
        });
    }
    if r.memory_swap != 0 {
        let swap_only = if r.memory_swap < 0 {
            "max".to_string()
        } else {
            (r.memory_swap - r.memory).max(0).to_string()
        };
        out.push(Setting {
            flag: "--memory-swap",
            controller: "memory",
            v1: ("memory.memsw.limit_in_bytes", r.memory_swap.to_string()),
            v2: Some(("memory.swap.max", swap_only)),
        });
    }
    if r.memory_reservation > 0 {
        out.push(Setting {
            flag: "--memory-reservation",
            controller: "memory",
            v1: (
                "memory.soft_limit_in_bytes",
                r.memory_reservation.to_string(),
            ),
            v2: Some(("memory.low", r.memory_reservation.to_string())),
        });
    }
    if r.oom_kill_disable {
        out.push(Setting {
            flag: "--oom-kill-disable",
            controller: "memory",
            v1: ("memory.oom_control", "1".into()),
            v2: None,
        });
    }
    if r.cpu_shares > 0 {
        let weight = 1 + ((r.cpu_shares.clamp(2, 262_144) - 2) * 9999) / 262_142;
        out.push(Setting {
            flag: "--cpu-shares",
            controller: "cpu",
            v1: ("cpu.shares", r.cpu_shares.to_string()),
            v2: Some(("cpu.weight", weight.to_string())),
        });
    }
    let (period, quota) = r.cfs();
    if period.is_some() || quota.is_some() {
        let flag = if r.nano_cpus > 0 {
            "--cpus"
        } else {
            "--cpu-period/--cpu-quota"
        };
        let v2 = format!("{} {}", max(quota.unwrap_or(-1)), period.unwrap_or(100_000));
        if let Some(p) = period {
            out.push(Setting {
                flag,
                controller: "cpu",
                v1: ("cpu.cfs_period_us", p.to_string()),
                v2: Some(("cpu.max", v2.clone())),
            });
        }
        if let Some(q) = quota {
            out.push(Setting {
                flag,
                controller: "cpu",
                v1: ("cpu.cfs_quota_us", q.to_string()),
                v2: Some(("cpu.max", v2)),
            });
        }
    }
    if !r.cpuset_cpus.is_empty() {
        out.push(Setting {
            flag: "--cpuset-cpus",
            controller: "cpuset",
            v1: ("cpuset.cpus", r.cpuset_cpus.clone()),
            v2: Some(("cpuset.cpus", r.cpuset_cpus.clone())),
        });
    }
    if !r.cpuset_mems.is_empty() {
        out.push(Setting {
            flag: "--cpuset-mems",
            controller: "cpuset",
            v1: ("cpuset.mems", r.cpuset_mems.clone()),
            v2: Some(("cpuset.mems", r.cpuset_mems.clone())),
        });
    }
    if let Some(limit) = r.pids_limit {
        out.push(Setting {
            flag: "--pids-limit",
            controller: "pids",
            v1: ("pids.max", max(limit)),
            v2: Some(("pids.max", max(limit))),
        });
    }
    out
}

fn v1_root(controller: &str) -> Option<PathBuf> {
    let root = Path::new(BASE).join(controller);
    root.join("cgroup.procs").exists().then_some(root)
}

fn unified_has(controller: &str) -> Option<PathBuf> {
    let root = unified_root()?;
    let listed = std::fs::read_to_string(root.join("cgroup.controllers")).ok()?;
    listed
        .split_whitespace()
        .any(|c| c == controller)
        .then_some(root)
}

fn write(what: &str, path: PathBuf, value: &str) -> Result<(), LimitError> {
    std::fs::write(&path, value).map_err(|source| LimitError::Write {
        what: what.to_string(),
        path,
        value: value.to_string(),
        source,
    })
}

/// The CPUs and memory nodes the host offers (the root cpuset's, or
/// the online ones).
fn available(file: &str) -> String {
    let from = |p: PathBuf| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    v1_root("cpuset")
        .and_then(|r| from(r.join(file)))
        .or_else(|| unified_root().and_then(|r| from(r.join(format!("{file}.effective")))))
        .or_else(|| {
            let online = if file == "cpuset.cpus" { "cpu" } else { "node" };
            from(PathBuf::from(format!(
                "/sys/devices/system/{online}/online"
            )))
        })
        .unwrap_or_default()
}

/// Checks the limits against what this host has: requested CPUs and
/// memory nodes, and a hierarchy for each controller they need, as
/// Docker's daemon does at create.
pub fn check_host(r: &Resources) -> Result<(), LimitError> {
    for (list, file, what) in [
        (&r.cpuset_cpus, "cpuset.cpus", "CPUs"),
        (&r.cpuset_mems, "cpuset.mems", "memory nodes"),
    ] {
        if list.is_empty() {
            continue;
        }
        let have = available(file);
        let offered = parse_list(&have).unwrap_or_default();
        if !parse_list(list)
            .unwrap_or_default()
            .iter()
            .all(|n| offered.contains(n))
        {
            return Err(LimitError::Unavailable(format!(
                "Requested {what} are not available - requested {list}, available: {have}"
            )));
        }
    }
    for s in settings(r) {
        if v1_root(s.controller).is_some() {
            if s.v1.0 == "memory.memsw.limit_in_bytes"
                && !Path::new(BASE).join("memory").join(s.v1.0).exists()
                && r.memory_swap != r.memory * 2
            {
                return Err(LimitError::Unsupported {
                    what: s.flag.into(),
                    reason: "the kernel does not account swap (no memory.memsw.limit_in_bytes; boot with swapaccount=1)".into(),
                });
            }
            continue;
        }
        match (&s.v2, unified_has(s.controller)) {
            (Some(_), Some(_)) => {}
            (None, Some(_)) => {
                return Err(LimitError::Unsupported {
                    what: s.flag.into(),
                    reason: "cgroup v2 has no such setting".into(),
                })
            }
            (_, None) => {
                return Err(LimitError::Unsupported {
                    what: s.flag.into(),
                    reason: format!(
                        "no {} cgroup controller is mounted or enabled on this host",
                        s.controller
                    ),
                })
            }
        }
    }
    Ok(())
}

/// Checks limits as Docker's daemon does (and fills in its defaults),
/// then against what this host has.
pub fn check(r: &mut Resources) -> Result<(), ContainerError> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    r.check(cpus)?;
    Ok(check_host(r)?)
}

/// The container's cgroup for `controller`: v1 or unified, made if
/// needed (a v1 cpuset gets its parent's CPUs and nodes first: it takes
/// no process without them).
fn cgroup_for(controller: &str, id: &str) -> Result<(PathBuf, bool), LimitError> {
    let make = |dir: &Path| {
        std::fs::create_dir_all(dir).map_err(|e| LimitError::Unsupported {
            what: format!("the {controller} cgroup"),
            reason: format!("creating {}: {e}", dir.display()),
        })
    };
    if let Some(root) = v1_root(controller) {
        let parent = root.join("strata");
        let dir = parent.join(id);
        make(&dir)?;
        if controller == "cpuset" {
            for file in ["cpuset.cpus", "cpuset.mems"] {
                for (from, to) in [(&root, &parent), (&parent, &dir)] {
                    let mine = std::fs::read_to_string(to.join(file)).unwrap_or_default();
                    if mine.trim().is_empty() {
                        let theirs = std::fs::read_to_string(from.join(file)).unwrap_or_default();
                        write("cpuset", to.join(file), theirs.trim())?;
                    }
                }
            }
        }
        return Ok((dir, true));
    }
    let root = unified_has(controller).ok_or_else(|| LimitError::Unsupported {
        what: format!("the {controller} cgroup"),
        reason: "no such controller on this host".into(),
    })?;
    let parent = root.join("strata");
    let dir = parent.join(id);
    make(&dir)?;
    for level in [&root, &parent] {
        let enabled =
            std::fs::read_to_string(level.join("cgroup.subtree_control")).unwrap_or_default();
        if !enabled.split_whitespace().any(|c| c == controller) {
            write(
                controller,
                level.join("cgroup.subtree_control"),
                &format!("+{controller}"),
            )?;
        }
    }
    Ok((dir, false))
}

/// Writes the limits to the container's cgroups and, for v1 hierarchies,
/// moves `pids` into them (v2: they were born in the unified cgroup).
pub fn apply(id: &str, r: &Resources, pids: &[i32]) -> Result<(), LimitError> {
    let mut entered: Vec<PathBuf> = Vec::new();
    for s in settings(r) {
        let (dir, v1) = cgroup_for(s.controller, id)?;
        let (file, value) = if v1 {
            s.v1.clone()
        } else {
            s.v2.clone().ok_or_else(|| LimitError::Unsupported {
                what: s.flag.into(),
                reason: "cgroup v2 has no such setting".into(),
            })?
        };
        let path = dir.join(file);
        if file == "memory.memsw.limit_in_bytes" && !path.exists() {
            continue;
        }
        let written = write(s.flag, path, &value);
        // Lowering memory below memory+swap (or raising it above) is
        // refused until the other limit moved: try again after the rest.
        if let Err(e) = written {
            if !file.starts_with("memory.") || file == "memory.oom_control" {
                return Err(e);
            }
            let (other, other_value) = if file == "memory.limit_in_bytes" {
                ("memory.memsw.limit_in_bytes", r.memory_swap)
            } else {
                ("memory.limit_in_bytes", r.memory)
            };
            if other_value == 0 || !dir.join(other).exists() {
                return Err(e);
            }
            write(s.flag, dir.join(other), &other_value.to_string())?;
            write(s.flag, dir.join(file), &value)?;
        }
        if v1 && !entered.contains(&dir) {
            entered.push(dir);
        }
    }
    for dir in entered {
        for pid in pids {
            write(
                "joining the cgroup",
                dir.join("cgroup.procs"),
                &pid.to_string(),
            )?;
        }
    }
    Ok(())
}

/// Whether the kernel's OOM killer killed a process of the container.
pub fn oom_killed(id: &str) -> bool {
    let count = |path: PathBuf| {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("oom_kill "))
                    .and_then(|n| n.trim().parse::<u64>().ok())
            })
            .unwrap_or(0)
    };
    let v1 = Path::new(BASE)
        .join("memory/strata")
        .join(id)
        .join("memory.oom_control");
    let v2 = unified_root()
        .map(|r| r.join("strata").join(id).join("memory.events"))
        .unwrap_or_default();
    count(v1) + count(v2) > 0
}
