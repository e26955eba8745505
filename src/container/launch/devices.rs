//! The container's device cgroup: what `--device HOST:CONTAINER:PERMS`
//! allows, enforced as Docker's runc enforces it on cgroup v1.
//!
//! A container with `--device` (and not `--privileged`) gets a v1
//! `devices` cgroup, `/sys/fs/cgroup/devices/strata/<id>`: everything
//! denied (`a` in `devices.deny`), then each `--device` allowed with its
//! PERMS, then runc's default list ([`DEFAULT_RULES`]: mknod of any
//! node, and null, zero, full, random, urandom, tty, console, ptmx, the
//! pts and tun/tap read, write and mknod). The rules are runc's, in
//! runc's order, so the outcome is Docker's: a default device stays
//! `rwm` whatever PERMS says (`--device /dev/null:/dev/x:r` can still be
//! written, under Docker too), another device opens only as PERMS says
//! (`Operation not permitted` otherwise).
//!
//! Containers without `--device` get no devices cgroup: every mount of
//! theirs that could hold a node is `nodev` (`setup.rs`), so the only
//! nodes that open are /dev's bound-in defaults, all `rwm` in the list
//! above; the cgroup would change nothing, and moving a process into a
//! v1 cgroup waits for an RCU grace period (~10 ms), at every start and
//! every `exec`.
//!
//! Where there is no v1 `devices` hierarchy (a pure cgroup v2 host, or
//! an ordinary user's store), strata loads no eBPF device program: a
//! PERMS without `r` or without `w` is refused at create and at start
//! ([`check_host`]), never silently widened. (A PERMS without `m` needs
//! nothing: runc's defaults allow mknod of every node anyway.)

use std::path::{Path, PathBuf};

use crate::container::host_options::DeviceMapping;

use super::cgroup::BASE;

/// A `--device` whose permissions cannot be enforced here, or a write
/// the kernel refused; each names the device or the file.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("--device {device}: cannot enforce the permissions {perms:?}: {reason}; use rwm (the default)")]
    Unenforceable {
        device: String,
        perms: String,
        reason: String,
    },
    #[error("error gathering device information while adding custom device {path:?}: {reason}")]
    Node { path: String, reason: String },
    #[error("the devices cgroup: creating {}: {source}", path.display())]
    Make {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the devices cgroup: writing {value:?} to {}: {source}", path.display())]
    Write {
        path: PathBuf,
        value: String,
        source: std::io::Error,
    },
}

/// One rule of a v1 `devices.allow`/`devices.deny`: `TYPE MAJOR:MINOR
/// ACCESS`, `None` for `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRule {
    /// `a` (all), `c` or `b`.
    pub kind: char,
    pub major: Option<u64>,
    pub minor: Option<u64>,
    pub access: String,
}

impl std::fmt::Display for DeviceRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let number = |n: Option<u64>| n.map_or("*".to_string(), |n| n.to_string());
        write!(
            f,
            "{} {}:{} {}",
            self.kind,
            number(self.major),
            number(self.minor),
            self.access
        )
    }
}

/// runc's `AllowedDevices` (libcontainer/specconv), appended after the
/// container's own rules: (type, major, minor, access).
pub const DEFAULT_RULES: [(char, Option<u64>, Option<u64>, &str); 12] = [
    ('c', None, None, "m"),
    ('b', None, None, "m"),
    ('c', Some(1), Some(3), "rwm"),    // null
    ('c', Some(1), Some(8), "rwm"),    // random
    ('c', Some(1), Some(7), "rwm"),    // full
    ('c', Some(5), Some(0), "rwm"),    // tty
    ('c', Some(1), Some(5), "rwm"),    // zero
    ('c', Some(1), Some(9), "rwm"),    // urandom
    ('c', Some(5), Some(1), "rwm"),    // console
    ('c', Some(136), None, "rwm"),     // pts
    ('c', Some(5), Some(2), "rwm"),    // ptmx
    ('c', Some(10), Some(200), "rwm"), // tun/tap
];

/// Whether the container gets a devices cgroup (see the module's notes).
pub fn wanted(devices: &[DeviceMapping], privileged: bool) -> bool {
    !privileged && !devices.is_empty()
}

/// Whether PERMS holds back reading or writing (what only a devices
/// cgroup can enforce).
fn restricts(perms: &str) -> bool {
    !(perms.contains('r') && perms.contains('w'))
}

fn hierarchy() -> Option<PathBuf> {
    let root = Path::new(BASE).join("devices");
    root.join("devices.allow").exists().then_some(root)
}

/// Refuses a `--device` whose PERMS this host cannot enforce: no v1
/// devices hierarchy, or not root (an ordinary user cannot write it).
pub fn check_host(devices: &[DeviceMapping], privileged: bool) -> Result<(), DeviceError> {
    if privileged {
        return Ok(());
    }
    let Some(device) = devices.iter().find(|d| restricts(&d.cgroup_permissions)) else {
        return Ok(());
    };
    let reason = if !nix::unistd::geteuid().is_root() {
        "an ordinary user's containers have no devices cgroup"
    } else if hierarchy().is_none() {
        "this host has no cgroup v1 devices controller (strata loads no eBPF device program for cgroup v2)"
    } else {
        return Ok(());
    };
    Err(DeviceError::Unenforceable {
        device: format!(
            "{}:{}:{}",
            device.path_on_host, device.path_in_container, device.cgroup_permissions
        ),
        perms: device.cgroup_permissions.clone(),
        reason: reason.into(),
    })
}

/// At start: the rules of the container's devices cgroup, or None when
/// it gets none (no `--device`, `--privileged`, or no hierarchy here
/// and nothing that needs one: [`check_host`] refuses the rest).
pub fn plan(
    devices: &[DeviceMapping],
    privileged: bool,
) -> Result<Option<Vec<DeviceRule>>, DeviceError> {
    if !wanted(devices, privileged) {
        return Ok(None);
    }
    check_host(devices, privileged)?;
    if hierarchy().is_none() || !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    rules(devices).map(Some)
}

/// The container's rules, runc's way: deny all, its devices with their
/// PERMS (the host's node, looked at now), then [`DEFAULT_RULES`].
pub fn rules(devices: &[DeviceMapping]) -> Result<Vec<DeviceRule>, DeviceError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = vec![DeviceRule {
        kind: 'a',
        major: None,
        minor: None,
        access: "rwm".into(),
    }];
    for d in devices {
        let node = |reason: String| DeviceError::Node {
            path: d.path_on_host.clone(),
            reason,
        };
        let meta = std::fs::metadata(&d.path_on_host).map_err(|e| node(e.to_string()))?;
        let kind = if meta.file_type().is_char_device() {
            'c'
        } else if meta.file_type().is_block_device() {
            'b'
        } else {
            return Err(node("not a device node".into()));
        };
        let rdev = meta.rdev();
        out.push(DeviceRule {
            kind,
            major: Some(nix::sys::stat::major(rdev)),
            minor: Some(nix::sys::stat::minor(rdev)),
            access: d.cgroup_permissions.clone(),
        });
    }
    out.extend(
        DEFAULT_RULES
            .iter()
            .map(|(kind, major, minor, access)| DeviceRule {
                kind: *kind,
                major: *major,
                minor: *minor,
                access: (*access).into(),
            }),
    );
    Ok(out)
}

/// The container's devices cgroup, whether or not it exists.
pub fn dir(id: &str) -> PathBuf {
    Path::new(BASE).join("devices").join("strata").join(id)
}

fn write(path: PathBuf, value: &str) -> Result<(), DeviceError> {
    std::fs::write(&path, value).map_err(|source| DeviceError::Write {
        path,
        value: value.to_string(),
        source,
    })
}

/// Makes the container's devices cgroup, writes `rules` (the first, the
/// deny-all, to `devices.deny`; one rule per write, as the kernel takes
/// them) and moves `pids` into it.
pub fn apply(id: &str, rules: &[DeviceRule], pids: &[i32]) -> Result<(), DeviceError> {
    let dir = dir(id);
    std::fs::create_dir_all(&dir).map_err(|source| DeviceError::Make {
        path: dir.clone(),
        source,
    })?;
    for (i, rule) in rules.iter().enumerate() {
        let file = if i == 0 && rule.kind == 'a' {
            "devices.deny"
        } else {
            "devices.allow"
        };
        write(dir.join(file), &rule.to_string())?;
    }
    for pid in pids {
        write(dir.join("cgroup.procs"), &pid.to_string())?;
    }
    Ok(())
}

/// Moves the calling process into the container's devices cgroup, if
/// it has one (an `exec`, before it forks the process that execs).
pub fn join_self(id: &str) -> Result<(), DeviceError> {
    let dir = dir(id);
    if !dir.is_dir() {
        return Ok(());
    }
    write(dir.join("cgroup.procs"), "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(perms: &str) -> DeviceMapping {
        DeviceMapping {
            path_on_host: "/dev/null".into(),
            path_in_container: "/dev/xnull".into(),
            cgroup_permissions: perms.into(),
        }
    }

    #[test]
    fn rules_are_runcs_in_its_order() {
        let rules: Vec<String> = rules(&[mapping("r")])
            .unwrap()
            .iter()
            .map(|r| r.to_string())
            .collect();
        assert_eq!(rules[0], "a *:* rwm");
        assert_eq!(rules[1], "c 1:3 r");
        assert_eq!(rules[2], "c *:* m");
        assert_eq!(rules[3], "b *:* m");
        assert_eq!(rules.last().unwrap(), "c 10:200 rwm");
        assert!(rules.contains(&"c 136:* rwm".to_string()));
        assert_eq!(rules.len(), 2 + DEFAULT_RULES.len());
    }

    #[test]
    fn only_read_or_write_restrictions_need_a_cgroup() {
        assert!(restricts("r"));
        assert!(restricts("wm"));
        assert!(!restricts("rw"));
        assert!(!restricts("rwm"));
        assert!(wanted(&[mapping("rwm")], false));
        assert!(!wanted(&[mapping("r")], true));
        assert!(!wanted(&[], false));
    }

    #[test]
    fn a_missing_node_is_named() {
        let mut m = mapping("r");
        m.path_on_host = "/nonexistent-device".into();
        let e = rules(&[m]).unwrap_err().to_string();
        assert!(e.contains("/nonexistent-device"), "{e}");
    }
}
