//! A container's resource limits (`-m`, `--cpus`, `--pids-limit`, ...):
//! what the user asked for, in Docker's units, checked against what the
//! host has. Stored in the spec (and shown by `inspect` as Docker's
//! HostConfig shows them); `launch::limits` writes them to the cgroups.

use serde::{Deserialize, Serialize};

use super::error::ContainerError;

/// Docker's smallest memory limit and reservation (6 MiB).
pub const MIN_MEMORY: i64 = 6 * 1024 * 1024;

/// The limits, as Docker's HostConfig names them (0 or empty: unset).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Resources {
    /// `-m`: bytes.
    pub memory: i64,
    /// `--memory-swap`: memory plus swap, bytes; -1 unlimited.
    pub memory_swap: i64,
    /// `--memory-reservation`: the soft limit, bytes.
    pub memory_reservation: i64,
    pub oom_kill_disable: bool,
    /// `--cpus`, in billionths of a CPU.
    pub nano_cpus: i64,
    pub cpu_shares: i64,
    /// `--cpu-period`/`--cpu-quota`, microseconds.
    pub cpu_period: i64,
    pub cpu_quota: i64,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    /// `--pids-limit`: `None` unset, a value <= 0 unlimited.
    pub pids_limit: Option<i64>,
}

impl Resources {
    /// Whether any limit is set (a container without one needs none of
    /// the controllers' cgroups).
    pub fn any(&self) -> bool {
        *self != Resources::default()
    }

    /// The CFS period and quota the limits come to (`--cpus` as Docker
    /// turns it into a quota of a 100 ms period), if any.
    pub fn cfs(&self) -> (Option<i64>, Option<i64>) {
        if self.nano_cpus > 0 {
            let period = 100_000;
            return (Some(period), Some(self.nano_cpus * period / 1_000_000_000));
        }
        let period = (self.cpu_period > 0).then_some(self.cpu_period);
        let quota = (self.cpu_quota != 0).then_some(self.cpu_quota);
        (period, quota)
    }

    /// Checks the limits as Docker's daemon does at create (and update),
    /// with its messages, and fills in its defaults (swap: twice the
    /// memory). `host_cpus` is the number of CPUs online.
    pub fn check(&mut self, host_cpus: usize) -> Result<(), ContainerError> {
        let bad = |m: &str| Err(ContainerError::Invalid(m.to_string()));
        if self.memory != 0 && self.memory < MIN_MEMORY {
            return bad("Minimum memory limit allowed is 6MB");
        }
        if self.memory_reservation != 0 && self.memory_reservation < MIN_MEMORY {
            return bad("Minimum memory reservation allowed is 6MB");
        }
        if self.memory > 0 && self.memory_reservation > 0 && self.memory < self.memory_reservation {
            return bad(
                "Minimum memory limit can not be less than memory reservation limit, see usage",
            );
        }
        if self.memory_swap > 0 && self.memory == 0 {
            return bad(
                "You should always set the Memory limit when using Memoryswap limit, see usage",
            );
        }
        if self.memory_swap > 0 && self.memory_swap < self.memory {
            return bad("Minimum memoryswap limit should be larger than memory limit, see usage");
        }
        if self.memory > 0 && self.memory_swap == 0 {
            self.memory_swap = self.memory * 2;
        }
        if self.nano_cpus < 0 {
            return bad("Range of CPUs is from 0.01 to the number of CPUs available");
        }
        if self.nano_cpus > 0 {
            if self.cpu_period > 0 {
                return bad("Conflicting options: Nano CPUs and CPU Period cannot both be set");
            }
            if self.cpu_quota > 0 {
                return bad("Conflicting options: Nano CPUs and CPU Quota cannot both be set");
            }
            if self.nano_cpus < 10_000_000 || self.nano_cpus > host_cpus as i64 * 1_000_000_000 {
                return Err(ContainerError::Invalid(format!(
                    "Range of CPUs is from 0.01 to {host_cpus}.00, as there are only {host_cpus} CPUs available"
                )));
            }
        }
        if self.cpu_period != 0 && !(1000..=1_000_000).contains(&self.cpu_period) {
            return bad("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)");
        }
        if self.cpu_quota > 0 && self.cpu_quota < 1000 {
            return bad("CPU cfs quota can not be less than 1ms (i.e. 1000)");
        }
        if self.cpu_shares < 0 {
            return bad("invalid CPU shares: must be positive");
        }
        for (list, what) in [
            (&self.cpuset_cpus, "cpuset.cpus"),
            (&self.cpuset_mems, "cpuset.mems"),
        ] {
            if !list.is_empty() && parse_list(list).is_none() {
                return Err(ContainerError::Invalid(format!(
                    "Invalid value {list} for {what}"
                )));
            }
        }
        Ok(())
    }

    /// Applies `update`'s changes (the fields set in `changes`) to these
    /// limits.
    pub fn merge(&mut self, changes: &Resources) {
        let pick = |old: &mut i64, new: i64| {
            if new != 0 {
                *old = new;
            }
        };
        pick(&mut self.memory, changes.memory);
        pick(&mut self.memory_swap, changes.memory_swap);
        pick(&mut self.memory_reservation, changes.memory_reservation);
        pick(&mut self.nano_cpus, changes.nano_cpus);
        pick(&mut self.cpu_shares, changes.cpu_shares);
        pick(&mut self.cpu_period, changes.cpu_period);
        pick(&mut self.cpu_quota, changes.cpu_quota);
        if changes.nano_cpus != 0 {
            self.cpu_period = 0;
            self.cpu_quota = 0;
        }
        if changes.cpu_period != 0 || changes.cpu_quota != 0 {
            self.nano_cpus = 0;
        }
        if !changes.cpuset_cpus.is_empty() {
            self.cpuset_cpus = changes.cpuset_cpus.clone();
        }
        if !changes.cpuset_mems.is_empty() {
            self.cpuset_mems = changes.cpuset_mems.clone();
        }
        if changes.pids_limit.is_some() {
            self.pids_limit = changes.pids_limit;
        }
    }
}

/// Parses a cpuset list (`0-2,4`) into its members; `None` if malformed.
pub fn parse_list(list: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in list.trim().split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                if a > b {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    Some(out)
}

/// Parses a size as Docker's `RAMInBytes` does: a number (decimals
/// allowed) with an optional unit b, k, m, g, t or p (binary, any case,
/// an optional trailing `b`): `512m`, `1.5g`, `100000`.
pub fn parse_bytes(text: &str) -> Result<i64, String> {
    let invalid = || format!("invalid size: '{text}'");
    let lower = text.trim().to_ascii_lowercase();
    let split = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(split);
    let number: f64 = number.parse().map_err(|_| invalid())?;
    let shift = match unit.strip_suffix('b').unwrap_or(unit) {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return Err(invalid()),
    };
    Ok((number * (1u64 << shift) as f64) as i64)
}

/// `--memory-swap`: a size, or -1 for unlimited.
pub fn parse_swap(text: &str) -> Result<i64, String> {
    if text.trim() == "-1" {
        return Ok(-1);
    }
    parse_bytes(text)
}

/// `--cpus 1.5` in billionths of a CPU.
pub fn parse_cpus(text: &str) -> Result<i64, String> {
    let cpus: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("invalid argument \"{text}\" for \"--cpus\" flag: failed to parse {text} as a rational number"))?;
    Ok((cpus * 1e9).round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_as_docker_reads_them() {
        assert_eq!(parse_bytes("32m"), Ok(32 << 20));
        assert_eq!(parse_bytes("1.5G"), Ok(3 << 29));
        assert_eq!(parse_bytes("100"), Ok(100));
        assert_eq!(parse_bytes("64kb"), Ok(64 << 10));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("12x").is_err());
        assert_eq!(parse_swap("-1"), Ok(-1));
        assert_eq!(parse_cpus("0.5"), Ok(500_000_000));
    }

    #[test]
    fn checks_follow_docker() {
        let mut r = Resources {
            memory: 32 << 20,
            ..Default::default()
        };
        r.check(2).unwrap();
        assert_eq!(r.memory_swap, 64 << 20);
        let mut r = Resources {
            memory: 1 << 20,
            ..Default::default()
        };
        assert!(r.check(2).is_err());
        let mut r = Resources {
            nano_cpus: 3_000_000_000,
            ..Default::default()
        };
        let e = r.check(2).unwrap_err().to_string();
        assert!(e.contains("only 2 CPUs available"), "{e}");
        let mut r = Resources {
            nano_cpus: 500_000_000,
            ..Default::default()
        };
        r.check(2).unwrap();
        assert_eq!(r.cfs(), (Some(100_000), Some(50_000)));
        assert_eq!(parse_list("0-2,4"), Some(vec![0, 1, 2, 4]));
        assert_eq!(parse_list("2-1"), None);
    }
}
