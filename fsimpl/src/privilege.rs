//! What the mounting process may do, for mounts made by an ordinary user
//! (docs/rootless.md): without `CAP_SYS_ADMIN` the kernel refuses
//! `mount(2)` and fuser goes through the setuid `fusermount3`, which
//! refuses `allow_other` unless /etc/fuse.conf says `user_allow_other`;
//! FUSE passthrough needs `CAP_SYS_ADMIN` in the initial user namespace,
//! even for a daemon that is root in a namespace of its own.

use std::path::Path;

/// Bit of `CAP_SYS_ADMIN` in the capability masks of /proc/self/status.
const CAP_SYS_ADMIN: u32 = 21;

/// Whether this process holds `CAP_SYS_ADMIN` in its own user namespace.
pub fn has_sys_admin() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_ADMIN) != 0)
}

/// Whether this process is in the initial user namespace (its uid map is
/// the identity over every id).
pub fn in_initial_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map")
        .map(|map| is_identity_map(&map))
        .unwrap_or(true)
}

fn is_identity_map(map: &str) -> bool {
    let fields: Vec<&str> = map.split_whitespace().collect();
    fields == ["0", "0", "4294967295"]
}

/// Whether the kernel will let this process's mounts use FUSE passthrough.
pub fn may_passthrough() -> bool {
    has_sys_admin() && in_initial_user_namespace()
}

/// Whether a mount by this process may let other users in: it mounts
/// with `mount(2)` itself, or fusermount3 allows it.
pub fn may_allow_other() -> bool {
    has_sys_admin() || fuse_conf_allows_other(Path::new("/etc/fuse.conf"))
}

/// Whether `fuse.conf` at `path` has a `user_allow_other` line.
fn fuse_conf_allows_other(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .map(|text| text.lines().any(|l| l.trim() == "user_allow_other"))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_full_identity_map_is_the_initial_namespace() {
        assert!(is_identity_map("         0          0 4294967295\n"));
        assert!(!is_identity_map("         0       1000          1\n"));
        assert!(!is_identity_map(
            "         0       1000          1\n         1     100000      65536\n"
        ));
    }

    #[test]
    fn user_allow_other_must_stand_on_its_own_line() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("fuse.conf");
        std::fs::write(&conf, "# user_allow_other\n#user_allow_other\n").unwrap();
        assert!(!fuse_conf_allows_other(&conf));
        std::fs::write(&conf, "mount_max = 1000\nuser_allow_other\n").unwrap();
        assert!(fuse_conf_allows_other(&conf));
        assert!(!fuse_conf_allows_other(&dir.path().join("missing")));
    }
}
