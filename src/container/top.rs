//! `top`: the processes of a container (those in its pid namespace), as
//! `ps -ef` prints them.

use std::os::unix::fs::MetadataExt;

use super::error::ContainerError;
use super::monitor::liveness::lookup;
use crate::store::Store;

fn pid_ns(pid: i32) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/pid"))
        .ok()
        .map(|m| m.ino())
}

/// Host pids of every process in the pid namespace of `pid1`.
pub fn container_pids(pid1: i32) -> Vec<i32> {
    let Some(ns) = pid_ns(pid1) else {
        return vec![];
    };
    let mut pids: Vec<i32> = std::fs::read_dir("/proc")
        .map(|it| {
            it.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .collect()
        })
        .unwrap_or_default();
    pids.retain(|p| pid_ns(*p) == Some(ns));
    pids.sort();
    pids
}

/// One row of `top`: UID PID PPID C STIME TTY TIME CMD.
pub fn container_top(
    store: &Store,
    name_or_id: &str,
) -> Result<(Vec<String>, Vec<Vec<String>>), ContainerError> {
    let c = lookup(store, name_or_id)?;
    if c.state.pid <= 0 {
        return Err(ContainerError::BadState {
            id: c.short_id().into(),
            state: c.state.status.as_str().into(),
            what: "is not running".into(),
        });
    }
    let titles = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
        .map(String::from)
        .to_vec();
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64;
    let boot = boot_time();
    let mut rows = Vec::new();
    for pid in container_pids(c.state.pid) {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        let uid = std::fs::metadata(format!("/proc/{pid}"))
            .map(|m| m.uid())
            .unwrap_or(0);
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmdline)
            .trim_end_matches('\0')
            .replace('\0', " ");
        let cpu_secs = (num(11) + num(12)) / ticks;
        let start = boot + num(19) / ticks;
        let stime = chrono::DateTime::from_timestamp(start as i64, 0)
            .map(|t| t.format("%H:%M").to_string())
            .unwrap_or_default();
        rows.push(vec![
            if uid == 0 {
                "root".into()
            } else {
                uid.to_string()
            },
            pid.to_string(),
            num(1).to_string(),
            "0".into(),
            stime,
            "?".into(),
            format!(
                "{:02}:{:02}:{:02}",
                cpu_secs / 3600,
                cpu_secs / 60 % 60,
                cpu_secs % 60
            ),
            cmd,
        ]);
    }
    Ok((titles, rows))
}

fn boot_time() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime ").and_then(|v| v.trim().parse().ok()))
        })
        .unwrap_or(0)
}
