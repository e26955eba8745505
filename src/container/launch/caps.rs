//! Capabilities: names, Docker's default set, and `--cap-add`,
//! `--cap-drop`, `--privileged` applied to it.

use crate::container::error::ContainerError;

/// Capability names by number (linux/capability.h), without `CAP_`.
pub const NAMES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Docker's default capabilities (moby `oci/caps/defaults.go`).
pub const DOCKER_DEFAULT: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// A set of capabilities as a bit mask (bit N = capability N).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CapSet(pub u64);

impl CapSet {
    pub fn contains(self, cap: u32) -> bool {
        self.0 & (1 << cap) != 0
    }
    pub fn names(self) -> Vec<String> {
        (0..NAMES.len() as u32)
            .filter(|c| self.contains(*c))
            .map(|c| format!("CAP_{}", NAMES[c as usize]))
            .collect()
    }
    /// Every capability this build knows, capped at what the kernel knows.
    pub fn all(last_cap: u32) -> CapSet {
        let top = last_cap.min(NAMES.len() as u32 - 1);
        CapSet(if top >= 63 {
            u64::MAX
        } else {
            (1u64 << (top + 1)) - 1
        })
    }
}

/// The calling process's permitted set (what it can hand on at most).
pub fn own_permitted() -> CapSet {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapPrm:").map(|v| v.trim().to_string()))
        })
        .and_then(|v| u64::from_str_radix(&v, 16).ok())
        .map(CapSet)
        .unwrap_or(CapSet(u64::MAX))
}

/// Parses `CAP_SYS_ADMIN`, `sys_admin` or `SYS_ADMIN` into its number.
pub fn parse_cap(name: &str) -> Result<u32, ContainerError> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    NAMES
        .iter()
        .position(|n| *n == bare)
        .map(|p| p as u32)
        .ok_or_else(|| ContainerError::Invalid(format!("unknown capability: {name:?}")))
}

/// The set a container gets: Docker's default (or all when privileged),
/// plus `add`, minus `drop`; `ALL` works in either list as in Docker.
pub fn effective_set(
    privileged: bool,
    add: &[String],
    drop: &[String],
    last_cap: u32,
) -> Result<CapSet, ContainerError> {
    let all = CapSet::all(last_cap);
    if privileged {
        return Ok(all);
    }
    let mut set = 0u64;
    for name in DOCKER_DEFAULT {
        set |= 1 << parse_cap(name)?;
    }
    if drop.iter().any(|d| d.eq_ignore_ascii_case("all")) {
        set = 0;
    }
    for d in drop.iter().filter(|d| !d.eq_ignore_ascii_case("all")) {
        set &= !(1 << parse_cap(d)?);
    }
    for a in add {
        if a.eq_ignore_ascii_case("all") {
            set = all.0;
        } else {
            set |= 1 << parse_cap(a)?;
        }
    }
    Ok(CapSet(set & all.0))
}

/// The set a container's processes get on this host: [`effective_set`]
/// for the kernel's capabilities, within what strata itself holds
/// (`--privileged` in a restricted environment gets what strata holds).
pub fn container_set(
    privileged: bool,
    add: &[String],
    drop: &[String],
) -> Result<CapSet, ContainerError> {
    let set = container_set_in_user_namespace(privileged, add, drop)?;
    Ok(CapSet(set.0 & own_permitted().0))
}

/// [`container_set`] for a process that is about to join an ordinary
/// user's container's user namespace (`exec`), where it will hold every
/// capability: not limited by the capabilities it has now (none, which
/// left `exec`'s processes with none at all, unlike the container's
/// first process).
pub fn container_set_in_user_namespace(
    privileged: bool,
    add: &[String],
    drop: &[String],
) -> Result<CapSet, ContainerError> {
    let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    effective_set(privileged, add, drop, last_cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_set_is_dockers() {
        let set = effective_set(false, &[], &[], 40).unwrap();
        assert_eq!(set.0, 0x00000000a80425fb, "Docker's CapBnd");
        assert_eq!(set.names().len(), 14);
    }

    #[test]
    fn add_drop_privileged() {
        let set = effective_set(false, &["sys_admin".into()], &["CAP_NET_RAW".into()], 40).unwrap();
        assert!(set.contains(21));
        assert!(!set.contains(13));
        assert_eq!(effective_set(false, &[], &["ALL".into()], 40).unwrap().0, 0);
        assert_eq!(
            effective_set(false, &["CHOWN".into()], &["all".into()], 40)
                .unwrap()
                .0,
            1
        );
        assert_eq!(effective_set(true, &[], &[], 40).unwrap().0, (1 << 41) - 1);
        assert_eq!(effective_set(true, &[], &[], 37).unwrap().0, (1 << 38) - 1);
        assert!(effective_set(false, &["NOPE".into()], &[], 40).is_err());
    }
}
