//! Rootless containers: the user namespace an ordinary user's container
//! runs in (docs/rootless.md). The monitor enters it before anything else
//! (so its FUSE daemon, the container's mount and every process it
//! launches are inside): container root is the user, container ids
//! 1..=N are the user's subordinate ids from /etc/subuid and /etc/subgid,
//! written by the setuid `newuidmap`/`newgidmap` (Debian's `uidmap`) as
//! podman does. With no subordinate range only root is mapped, and a
//! warning says that files of other owners show as nobody.
//!
//! The store needs no chown: its files are the user's, the index keeps
//! the image's owners, and the FUSE daemon, root in the namespace,
//! presents them there.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sched::CloneFlags;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Gid, Pid, Uid};

use crate::container::error::ContainerError;
use crate::container::sys;

/// Whether this process runs containers rootless: it is not root.
pub fn is_rootless() -> bool {
    !nix::unistd::geteuid().is_root()
}

/// One line of a uid or gid map: `count` ids from `inside` in the
/// namespace are `outside` onwards on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// The user and group maps of a rootless container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMaps {
    pub uids: Vec<IdRange>,
    pub gids: Vec<IdRange>,
}

impl IdMaps {
    /// Root is the user; 1..=N the subordinate range, where there is one.
    fn of(uid: u32, gid: u32, subuid: Option<(u32, u32)>, subgid: Option<(u32, u32)>) -> IdMaps {
        let map = |own: u32, sub: Option<(u32, u32)>| {
            let mut ranges = vec![IdRange {
                inside: 0,
                outside: own,
                count: 1,
            }];
            if let Some((start, count)) = sub {
                ranges.push(IdRange {
                    inside: 1,
                    outside: start,
                    count,
                });
            }
            ranges
        };
        IdMaps {
            uids: map(uid, subuid),
            gids: map(gid, subgid),
        }
    }

    /// Whether only root is mapped (no subordinate ids).
    pub fn single(&self) -> bool {
        self.uids.len() == 1 || self.gids.len() == 1
    }
}

/// The maps for the calling user, from /etc/subuid and /etc/subgid.
pub fn current_maps() -> IdMaps {
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    let name = nix::unistd::User::from_uid(Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_default();
    let group = nix::unistd::Group::from_gid(Gid::from_raw(gid))
        .ok()
        .flatten()
        .map(|g| g.name)
        .unwrap_or_default();
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    // newgidmap checks /etc/subgid against the user's name, as newuidmap.
    let subgid = subordinate_range(&read("/etc/subgid"), &name, uid)
        .or_else(|| subordinate_range(&read("/etc/subgid"), &group, gid));
    IdMaps::of(
        uid,
        gid,
        subordinate_range(&read("/etc/subuid"), &name, uid),
        subgid,
    )
}

/// The first `NAME:START:COUNT` line of a subordinate-id file for the
/// user `name` or its numeric id.
fn subordinate_range(text: &str, name: &str, id: u32) -> Option<(u32, u32)> {
    text.lines().find_map(|line| {
        let mut fields = line.trim().split(':');
        let who = fields.next()?;
        let start = fields.next()?.parse().ok()?;
        let count: u32 = fields.next()?.parse().ok()?;
        let matches = (!name.is_empty() && who == name) || who == id.to_string();
        (matches && count > 0).then_some((start, count))
    })
}

/// The warning a user without subordinate ids sees once per start.
pub fn single_id_warning() -> &'static str {
    "WARNING: no subordinate ids for this user in /etc/subuid and /etc/subgid: \
     only root is mapped in the container, files of other owners show as nobody \
     (see docs/rootless.md)"
}

/// Moves this (single-threaded) process into a new user namespace with
/// `maps`, then into a mount namespace of its own whose mounts do not
/// propagate to the host's. It is root there, with every capability.
pub fn enter(maps: &IdMaps) -> Result<(), ContainerError> {
    enter_user_namespace(maps)?;
    nix::sched::unshare(CloneFlags::CLONE_NEWNS)
        .map_err(|e| ContainerError::sys("unshare(CLONE_NEWNS)", e))?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(|e| ContainerError::sys("making / a slave mount", e))
}

/// Moves this (single-threaded) process into a new user namespace with
/// `maps` and nothing else: it stays in its mount namespace (a FUSE
/// daemon whose mount is there: a copy of the mount in a namespace of
/// its own would keep the connection open after the user unmounts).
pub fn enter_user_namespace(maps: &IdMaps) -> Result<(), ContainerError> {
    if maps.single() {
        // A user may map their own ids without a helper.
        nix::sched::unshare(CloneFlags::CLONE_NEWUSER)
            .map_err(|e| ContainerError::sys("unshare(CLONE_NEWUSER)", e))?;
        write_proc("/proc/self/setgroups", "deny")?;
        write_proc("/proc/self/uid_map", &map_text(&maps.uids[..1]))?;
        write_proc("/proc/self/gid_map", &map_text(&maps.gids[..1]))?;
    } else {
        enter_with_helpers(maps)?;
    }
    Ok(())
}

fn write_proc(path: &str, text: &str) -> Result<(), ContainerError> {
    std::fs::write(path, text).map_err(|e| ContainerError::io(path, e))
}

fn map_text(ranges: &[IdRange]) -> String {
    ranges
        .iter()
        .map(|r| format!("{} {} {}\n", r.inside, r.outside, r.count))
        .collect()
}

/// The arguments of `newuidmap PID ...` / `newgidmap PID ...`.
fn helper_args(pid: Pid, ranges: &[IdRange]) -> Vec<String> {
    let mut args = vec![pid.as_raw().to_string()];
    for r in ranges {
        args.extend([r.inside, r.outside, r.count].map(|n| n.to_string()));
    }
    args
}

/// A child waits until this process has unshared its user namespace,
/// then writes its maps with newuidmap and newgidmap (which check
/// /etc/subuid and /etc/subgid); this process waits for it.
fn enter_with_helpers(maps: &IdMaps) -> Result<(), ContainerError> {
    let pipe = || {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| ContainerError::sys("pipe", e))
    };
    let (go_r, go_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let me = nix::unistd::getpid();
    match sys::fork().map_err(|e| ContainerError::sys("fork", e))? {
        ForkResult::Child => {
            drop(go_w);
            drop(err_r);
            helper_main(me, maps, go_r, err_w)
        }
        ForkResult::Parent { child } => {
            drop(go_r);
            drop(err_w);
            let unshared = nix::sched::unshare(CloneFlags::CLONE_NEWUSER);
            let mut go = File::from(go_w);
            if unshared.is_ok() {
                let _ = go.write_all(b"1");
            }
            drop(go);
            let mut message = String::new();
            let _ = File::from(err_r).read_to_string(&mut message);
            let status = waitpid(child, None);
            unshared.map_err(|e| ContainerError::sys("unshare(CLONE_NEWUSER)", e))?;
            match status {
                Ok(WaitStatus::Exited(_, 0)) => Ok(()),
                _ => Err(ContainerError::Unsupported(if message.is_empty() {
                    "rootless: writing the user namespace's id maps failed".into()
                } else {
                    format!("rootless: {}", message.trim())
                })),
            }
        }
    }
}

fn helper_main(target: Pid, maps: &IdMaps, go: OwnedFd, err: OwnedFd) -> ! {
    let mut byte = [0u8; 1];
    if !matches!(File::from(go).read(&mut byte), Ok(1)) {
        sys::exit_now(1);
    }
    let mut err = File::from(err);
    // The two helpers write different files: they run side by side (each
    // is a setuid program's start, most of a rootless start's own cost).
    let started = [("newuidmap", &maps.uids), ("newgidmap", &maps.gids)].map(|(tool, ranges)| {
        let child = Command::new(tool)
            .args(helper_args(target, ranges))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn();
        (tool, child)
    });
    // Both are waited for before a failure is told (none is left behind).
    let finished = started.map(|(tool, child)| (tool, child.and_then(|c| c.wait_with_output())));
    for (tool, outcome) in finished {
        let failure = match outcome {
            Ok(o) if o.status.success() => continue,
            Ok(o) => String::from_utf8_lossy(&o.stderr)
                .lines()
                .next()
                .unwrap_or("failed")
                .trim()
                .to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                "not found (install Debian's uidmap package)".to_string()
            }
            Err(e) => e.to_string(),
        };
        let _ = write!(err, "{tool}: {failure}");
        sys::exit_now(1);
    }
    sys::exit_now(0)
}

/// Removes `dir` from inside a user namespace with the user's maps, where
/// files of the container's other owners (subordinate ids) can be
/// deleted; for `rm` of a rootless container.
pub fn remove_tree(dir: &Path) -> Result<(), ContainerError> {
    match sys::fork().map_err(|e| ContainerError::sys("fork", e))? {
        ForkResult::Child => {
            let removed = enter(&current_maps())
                .ok()
                .and_then(|()| std::fs::remove_dir_all(dir).ok());
            sys::exit_now(if removed.is_some() { 0 } else { 1 })
        }
        ForkResult::Parent { child } => match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, 0)) => Ok(()),
            _ => Err(ContainerError::io(
                dir,
                std::io::Error::other("cannot remove it inside the user namespace"),
            )),
        },
    }
}

/// `size` of each of `paths`, walked where all of the user's container
/// files can be read: for an ordinary user, in a child in a user
/// namespace with the user's maps (what its containers gave subordinate
/// owners, in directories closed to the user outside, is counted too).
/// Walked here where that child cannot run.
pub fn sizes_of_any_owner(paths: &[PathBuf], size: fn(&Path) -> u64) -> Vec<u64> {
    let here = || paths.iter().map(|p| size(p)).collect();
    if !is_rootless() || paths.is_empty() {
        return here();
    }
    let Ok((r, w)) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) else {
        return here();
    };
    match sys::fork() {
        Ok(ForkResult::Child) => {
            drop(r);
            if enter_user_namespace(&current_maps()).is_err() {
                sys::exit_now(1);
            }
            let text: String = paths.iter().map(|p| format!("{}\n", size(p))).collect();
            let written = File::from(w).write_all(text.as_bytes()).is_ok();
            sys::exit_now(if written { 0 } else { 1 })
        }
        Ok(ForkResult::Parent { child }) => {
            drop(w);
            let mut text = String::new();
            let _ = File::from(r).read_to_string(&mut text);
            let sizes: Vec<u64> = text.lines().filter_map(|l| l.parse().ok()).collect();
            match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, 0)) if sizes.len() == paths.len() => sizes,
                _ => here(),
            }
        }
        Err(_) => here(),
    }
}

/// [`sizes_of_any_owner`] of one path.
pub fn size_of_any_owner(path: &Path, size: fn(&Path) -> u64) -> u64 {
    sizes_of_any_owner(&[path.to_path_buf()], size)[0]
}

/// Removes `dir` with everything below it (nothing to do if it is gone);
/// for an ordinary user, a tree holding files of subordinate owners
/// (what its containers or RUN steps made) is removed from inside a user
/// namespace with its maps ([`remove_tree`]).
pub fn remove_dir_of_any_owner(dir: &Path) -> Result<(), ContainerError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(_) if is_rootless() => remove_tree(dir),
        Err(e) => Err(ContainerError::io(dir, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subordinate_ranges_match_by_name_or_id() {
        let text = "tests:100000:65536\nalice:165536:65536\n1003:231072:1000\nbad:x:1\n";
        assert_eq!(
            subordinate_range(text, "alice", 1002),
            Some((165536, 65536))
        );
        assert_eq!(subordinate_range(text, "carol", 1003), Some((231072, 1000)));
        assert_eq!(subordinate_range(text, "bob", 1004), None);
        assert_eq!(subordinate_range(text, "bad", 1), None);
        assert_eq!(subordinate_range("", "alice", 1002), None);
    }

    #[test]
    fn root_is_the_user_and_the_rest_subordinate() {
        let maps = IdMaps::of(1002, 1003, Some((165536, 65536)), Some((165536, 65536)));
        assert!(!maps.single());
        assert_eq!(map_text(&maps.uids), "0 1002 1\n1 165536 65536\n");
        assert_eq!(
            helper_args(Pid::from_raw(42), &maps.gids),
            ["42", "0", "1003", "1", "1", "165536", "65536"]
        );
        let single = IdMaps::of(1002, 1003, None, Some((165536, 65536)));
        assert!(single.single());
    }
}
