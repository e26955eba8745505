//! `stats`: CPU, memory, network, block I/O and pids of containers,
//! sampled once or again and again. CPU comes from the container's cgroup where there is
//! one, else from the processes' own counters; memory from the
//! processes' resident sets (strata makes no memory cgroup, see launch/cgroup.rs).

use std::time::{Duration, Instant};

use super::error::ContainerError;
use super::launch::cgroup;
use super::monitor::liveness::list_reconciled;
use super::records::Container;
use super::spec::{NetworkMode, Status};
use super::top::container_pids;
use crate::store::Store;

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ContainerStats {
    pub id: String,
    pub name: String,
    pub cpu_percent: f64,
    pub memory_usage: u64,
    pub memory_limit: u64,
    pub net_rx: u64,
    pub net_tx: u64,
    pub block_read: u64,
    pub block_write: u64,
    pub pids: u64,
}

fn ticks_per_second() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64
}

/// CPU time of the container in nanoseconds.
fn cpu_nanos(c: &Container) -> u64 {
    if let Some(n) = cgroup::cpu_nanos(&c.id) {
        return n;
    }
    let ticks = ticks_per_second();
    container_pids(c.state.pid)
        .iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .filter_map(|s| {
            let rest = s.get(s.rfind(')')? + 1..)?.to_string();
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .sum::<u64>()
        * (1_000_000_000 / ticks)
}

fn status_field(pid: i32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix(key)
                    .map(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
            })
        })
        .flatten()
        .unwrap_or(0)
}

fn io_field(pid: i32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key).and_then(|v| v.trim().parse().ok()))
        })
        .unwrap_or(0)
}

fn memory_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")
                    .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
            })
        })
        .unwrap_or(0)
        * 1024
}

/// Bytes received and sent on the container's interfaces (all but lo),
/// from its own network namespace. With `--network host` the container
/// has none of its own: 0 and 0, as Docker reports (the host's counters
/// are not the container's).
fn network(c: &Container) -> (u64, u64) {
    if c.spec.network == NetworkMode::Host {
        return (0, 0);
    }
    let pid = c.state.pid;
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
    text.lines()
        .skip(2)
        .filter_map(|l| l.split_once(':'))
        .filter(|(name, _)| name.trim() != "lo")
        .map(|(_, v)| {
            let f: Vec<u64> = v
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            (
                f.first().copied().unwrap_or(0),
                f.get(8).copied().unwrap_or(0),
            )
        })
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
}

/// Samples containers' usage, one call after another: CPU is what each
/// used since the sampler's previous call (none on the first).
#[derive(Debug, Default)]
pub struct StatsSampler {
    names: Vec<String>,
    all: bool,
    previous: std::collections::HashMap<String, (u64, Instant)>,
}

impl StatsSampler {
    /// Samples the containers named (whatever their state), or else the
    /// running and paused ones, or every one with `all`.
    pub fn new(names: &[String], all: bool) -> StatsSampler {
        StatsSampler {
            names: names.to_vec(),
            all,
            previous: Default::default(),
        }
    }

    /// One sample, newest container first (or in the order named); a
    /// container that is not running counts zero everywhere.
    pub fn sample(&mut self, store: &Store) -> Result<Vec<ContainerStats>, ContainerError> {
        let mut containers = list_reconciled(store)?;
        if self.names.is_empty() {
            containers.retain(|c| self.all || is_running(c));
            containers.sort_by(|a, b| b.created_at.cmp(&a.created_at));
        } else {
            let mut named = Vec::new();
            for n in &self.names {
                let id = super::monitor::liveness::lookup(store, n)?.id;
                if let Some(c) = containers.iter().find(|c| c.id == id) {
                    named.push(c.clone());
                }
            }
            containers = named;
        }
        let limit = memory_total();
        let now = Instant::now();
        let mut out = Vec::with_capacity(containers.len());
        for c in &containers {
            if !is_running(c) {
                self.previous.remove(&c.id);
                out.push(ContainerStats {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    ..Default::default()
                });
                continue;
            }
            let cpu = cpu_nanos(c);
            let cpu_percent = match self.previous.get(&c.id) {
                Some(&(before, at)) if now > at => {
                    cpu.saturating_sub(before) as f64 / (now - at).as_nanos() as f64 * 100.0
                }
                _ => 0.0,
            };
            self.previous.insert(c.id.clone(), (cpu, now));
            let pids = container_pids(c.state.pid);
            let (rx, tx) = network(c);
            out.push(ContainerStats {
                id: c.id.clone(),
                name: c.name.clone(),
                cpu_percent,
                memory_usage: pids.iter().map(|p| status_field(*p, "VmRSS:") * 1024).sum(),
                memory_limit: limit,
                net_rx: rx,
                net_tx: tx,
                block_read: pids.iter().map(|p| io_field(*p, "read_bytes:")).sum(),
                block_write: pids.iter().map(|p| io_field(*p, "write_bytes:")).sum(),
                pids: cgroup::pids(&c.id).unwrap_or(pids.len() as u64),
            });
        }
        self.previous
            .retain(|id, _| containers.iter().any(|c| &c.id == id));
        Ok(out)
    }
}

fn is_running(c: &Container) -> bool {
    matches!(c.state.status, Status::Running | Status::Paused) && c.state.pid > 0
}

/// One sample of the containers [`StatsSampler::new`] selects, CPU
/// measured over half a second.
pub fn container_stats(
    store: &Store,
    names: &[String],
    all: bool,
) -> Result<Vec<ContainerStats>, ContainerError> {
    let mut sampler = StatsSampler::new(names, all);
    sampler.sample(store)?;
    std::thread::sleep(Duration::from_millis(500));
    sampler.sample(store)
}
