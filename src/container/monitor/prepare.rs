//! Turning a container's record into a [`LaunchPlan`] once its root is
//! mounted: the user from the image's own passwd and group files (read
//! inside the root), the environment, hostname, the /etc files Docker
//! provides, and the bind mounts.

use std::io::Read;
use std::os::fd::AsFd;
use std::path::Path;

use crate::container::launch::caps::{container_set, CapSet};
use crate::container::launch::passwd::{resolve_user, ExecUser};
use crate::container::launch::seccomp::{cache_dir as seccomp_cache, container_program, Program};
use crate::container::launch::setup::{BindMount, LaunchError, LaunchPlan, ETC_FILES};
use crate::container::records::Container;
use crate::container::spec::NetworkMode;
use crate::container::spec::DEFAULT_PATH;
use crate::container::sys;
use crate::container::volume::volume_data_dir;
use crate::network::etc_files::DEFAULT_HOSTS;
use crate::store::Store;

/// A plan and the identity the process takes.
pub struct Prepared {
    pub plan: LaunchPlan,
    pub user: ExecUser,
    pub caps: CapSet,
    /// The compiled seccomp filter (none when unconfined or privileged).
    pub seccomp: Option<Program>,
}

fn fail(message: impl Into<String>) -> LaunchError {
    LaunchError {
        exit_code: 125,
        message: message.into(),
    }
}

/// Why a file of the container could not be read.
#[derive(Debug)]
pub enum InRootError {
    /// Not a regular file (a FIFO would block the monitor for ever, a
    /// device is not the monitor's to open).
    NotRegular(String),
    Other(String),
}

impl std::fmt::Display for InRootError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InRootError::NotRegular(s) | InRootError::Other(s) => f.write_str(s),
        }
    }
}

fn file_kind(mode: u32) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFIFO => "a FIFO",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        libc::S_IFSOCK => "a socket",
        libc::S_IFDIR => "a directory",
        libc::S_IFLNK => "a symbolic link",
        _ => "not a regular file",
    }
}

/// Reads a regular file of the container by its path inside the root; a
/// missing file reads as empty. Symlinks resolve inside the root (never
/// out of it). The file is looked at through an `O_PATH` descriptor
/// before it is opened, and opened non-blocking: anything but a regular
/// file is refused without being opened.
pub fn read_in_root(root: &Path, path: &str) -> Result<String, InRootError> {
    let other = |e: String| InRootError::Other(format!("{path}: {e}"));
    let dir = std::fs::File::open(root).map_err(|e| other(format!("{}: {e}", root.display())))?;
    let regular = |fd: &std::os::fd::OwnedFd| -> Result<(), InRootError> {
        let st = nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(fd))
            .map_err(|e| other(e.desc().into()))?;
        if st.st_mode & libc::S_IFMT == libc::S_IFREG {
            Ok(())
        } else {
            Err(InRootError::NotRegular(format!(
                "{path} is {} in the image, not a regular file",
                file_kind(st.st_mode)
            )))
        }
    };
    match sys::open_in_root(dir.as_fd(), path, libc::O_PATH, 0) {
        Ok(fd) => regular(&fd)?,
        Err(nix::errno::Errno::ENOENT) => return Ok(String::new()),
        Err(e) => return Err(other(e.desc().into())),
    }
    let flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY;
    match sys::open_in_root(dir.as_fd(), path, flags, 0) {
        Ok(fd) => {
            // It may have changed since it was looked at.
            regular(&fd)?;
            let mut text = String::new();
            std::fs::File::from(fd)
                .take(4 << 20)
                .read_to_string(&mut text)
                .map_err(|e| other(e.to_string()))?;
            Ok(text)
        }
        Err(nix::errno::Errno::ENOENT) => Ok(String::new()),
        Err(e) => Err(other(e.desc().into())),
    }
}

/// Whether `name` (a user or group part of `--user`) must be looked up
/// by name.
fn is_name(name: Option<&str>) -> bool {
    name.is_some_and(|n| !n.is_empty() && n.parse::<u32>().is_err())
}

/// The user a container (or an exec with `user`) runs as. A passwd or
/// group file that is not a regular file counts as absent unless a name
/// must be looked up in it: then the container cannot start (125).
pub fn resolve_container_user(root: &Path, user: &str) -> Result<ExecUser, LaunchError> {
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (Some(u), Some(g)),
        None => (Some(user), None),
    };
    let read = |path: &str, needed: bool| match read_in_root(root, path) {
        Ok(text) => Ok(text),
        Err(InRootError::NotRegular(why)) if !needed => {
            tracing::warn!("{why}: ignored");
            Ok(String::new())
        }
        Err(e @ InRootError::NotRegular(_)) => Err(fail(format!(
            "unable to find user {user}: refusing to read {e}"
        ))),
        Err(e) => Err(fail(e.to_string())),
    };
    let passwd = read("/etc/passwd", is_name(user_part))?;
    let group = read("/etc/group", is_name(group_part))?;
    resolve_user(user, &passwd, &group).map_err(|e| LaunchError {
        exit_code: 126,
        message: e.to_string(),
    })
}

/// The process environment: Docker's PATH default, HOSTNAME, TERM for a
/// terminal, then the container's, and HOME from passwd if unset.
pub fn process_env(env: &[String], hostname: &str, tty: bool, home: &str) -> Vec<String> {
    let has = |key: &str| env.iter().any(|e| e.split('=').next() == Some(key));
    let mut out = Vec::new();
    if !has("PATH") {
        out.push(format!("PATH={DEFAULT_PATH}"));
    }
    out.push(format!("HOSTNAME={hostname}"));
    if tty && !has("TERM") {
        out.push("TERM=xterm".into());
    }
    out.extend(env.iter().filter(|e| !e.starts_with("HOSTNAME=")).cloned());
    if !has("HOME") {
        out.push(format!("HOME={home}"));
    }
    out
}

fn host_hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Docker's resolv.conf for a container without the host's network
/// and without a network of strata's (`none`): the host's, minus
/// loopback nameservers (unreachable from there).
fn resolv_conf_isolated() -> String {
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    host.lines()
        .filter(|l| {
            let mut w = l.split_whitespace();
            !(w.next() == Some("nameserver")
                && w.next()
                    .is_some_and(|a| a.starts_with("127.") || a == "::1"))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Hostname, hosts, resolv.conf and extra variables (links) of the
/// container, by network mode: the host's files for `host`, the joined
/// container's for `container:`, files of its own otherwise.
fn network_files(
    store: &Store,
    container: &Container,
) -> Result<(String, [String; 3], Vec<String>), LaunchError> {
    let spec = &container.spec;
    let own_name = |default: String| {
        if spec.hostname.is_empty() {
            default
        } else {
            spec.hostname.clone()
        }
    };
    match &spec.network {
        NetworkMode::Host => {
            let hostname = own_name(host_hostname());
            let hosts =
                std::fs::read_to_string("/etc/hosts").unwrap_or_else(|_| DEFAULT_HOSTS.to_string());
            let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            Ok((
                hostname.clone(),
                [format!("{hostname}\n"), hosts, resolv],
                vec![],
            ))
        }
        NetworkMode::Pasta => {
            // pasta gives the namespace the host's addresses, routes and
            // resolvers.
            let hostname = own_name(container.short_id().to_string());
            let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            Ok((
                hostname.clone(),
                [format!("{hostname}\n"), DEFAULT_HOSTS.to_string(), resolv],
                vec![],
            ))
        }
        NetworkMode::Slirp4netns(options) => {
            // slirp4netns forwards DNS at its network's third address;
            // the host's search and options lines, `--dns*` as given.
            let options = crate::network::slirp4netns::parse_options(options).map_err(fail)?;
            let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            let host: String = std::iter::once(format!("nameserver {}\n", options.dns_address()))
                .chain(
                    host.lines()
                        .filter(|l| l.split_whitespace().next() != Some("nameserver"))
                        .map(|l| format!("{l}\n")),
                )
                .collect();
            let resolv = crate::network::etc_files::resolv_conf(&host, &spec.net, false);
            let hostname = own_name(container.short_id().to_string());
            Ok((
                hostname.clone(),
                [format!("{hostname}\n"), DEFAULT_HOSTS.to_string(), resolv],
                vec![],
            ))
        }
        NetworkMode::None => {
            let hostname = own_name(container.short_id().to_string());
            Ok((
                hostname.clone(),
                [
                    format!("{hostname}\n"),
                    DEFAULT_HOSTS.to_string(),
                    resolv_conf_isolated(),
                ],
                vec![],
            ))
        }
        NetworkMode::Container(other) => {
            let other =
                super::net::joined_container(store, other).map_err(|e| fail(e.to_string()))?;
            let dir = crate::container::records::container_dir(store, &other.id);
            let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
            let hostname = read("hostname").trim_end().to_string();
            Ok((
                hostname,
                [read("hostname"), read("hosts"), read("resolv.conf")],
                vec![],
            ))
        }
        NetworkMode::Default | NetworkMode::Network(_) => {
            let hostname = own_name(container.short_id().to_string());
            let (hosts, resolv, env) = super::net::etc_files(store, container, &hostname)
                .map_err(|e| fail(e.to_string()))?;
            Ok((
                hostname.clone(),
                [format!("{hostname}\n"), hosts, resolv],
                env,
            ))
        }
    }
}

/// What Docker accepts in a container's config at create and its runtime
/// (runc) refuses at start: a relative working directory, an environment
/// entry with a NUL byte or without a name, a mount over the root or on or
/// below /proc. Checked at start as Docker does (the image's config is
/// only read then); exit 125.
pub fn check_runnable(spec: &crate::container::spec::ContainerSpec) -> Result<(), LaunchError> {
    if !spec.working_dir.starts_with('/') {
        return Err(fail(format!(
            "the working directory '{}' is invalid, it needs to be an absolute path",
            crate::image::show_path(spec.working_dir.as_bytes())
        )));
    }
    for entry in &spec.env {
        if entry.contains('\0') {
            return Err(fail(format!(
                "environment variable {:?} contains a NUL byte",
                crate::image::show_path(entry.split('=').next().unwrap_or_default().as_bytes())
            )));
        }
        if entry.starts_with('=') {
            return Err(fail(format!(
                "environment variable name can't be empty: {:?}",
                crate::image::show_path(entry.as_bytes())
            )));
        }
    }
    for m in &spec.mounts {
        let components: Vec<&str> = m
            .destination
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        let reason = match components.first() {
            None => "a volume cannot be mounted over the container's root",
            Some(&"proc") if components.len() == 1 => {
                "/proc is the container's proc filesystem and cannot be mounted over"
            }
            Some(&"proc") => "a volume cannot be mounted inside /proc",
            _ => continue,
        };
        return Err(fail(format!(
            "invalid mount destination {:?}: {reason}",
            crate::image::show_path(m.destination.as_bytes())
        )));
    }
    Ok(())
}

/// Builds the plan for `container` whose root is mounted at `rootfs`.
pub fn prepare_launch(
    store: &Store,
    container: &Container,
    dir: &Path,
    rootfs: &Path,
) -> Result<Prepared, LaunchError> {
    let spec = &container.spec;
    check_runnable(spec)?;
    let (hostname, contents, link_env) = network_files(store, container)?;
    let user = resolve_container_user(rootfs, &spec.user)?;
    let caps = container_set(spec.privileged, &spec.cap_add, &spec.cap_drop)
        .map_err(|e| fail(e.to_string()))?;
    let seccomp = container_program(
        &spec.seccomp_profile,
        spec.privileged,
        caps,
        &seccomp_cache(store.root()),
    )
    .map_err(|e| fail(e.to_string()))?;
    let mut binds = Vec::new();
    for (name, content) in ETC_FILES.into_iter().zip(contents) {
        let path = dir.join(name);
        std::fs::write(&path, content).map_err(|e| fail(format!("{}: {e}", path.display())))?;
        binds.push(BindMount {
            source: path,
            destination: format!("/etc/{name}"),
            read_only: false,
            directory: false,
            nodev: false,
        });
    }
    for m in &spec.mounts {
        let source = if m.kind == "volume" {
            volume_data_dir(store, &m.source)
        } else {
            m.source.clone().into()
        };
        if m.kind == "bind" && !source.exists() {
            std::fs::create_dir_all(&source)
                .map_err(|e| fail(format!("{}: {e}", source.display())))?;
        }
        let directory = std::fs::metadata(&source)
            .map(|md| md.is_dir())
            .map_err(|e| fail(format!("{}: {e}", source.display())))?;
        binds.push(BindMount {
            source,
            destination: m.destination.clone(),
            read_only: m.read_only,
            directory,
            // --privileged: every device, as Docker gives it.
            nodev: !spec.privileged,
        });
    }
    let argv = spec.argv();
    let mut env = process_env(&spec.env, &hostname, spec.tty, &user.home);
    env.extend(link_env);
    Ok(Prepared {
        plan: LaunchPlan {
            rootfs: rootfs.to_path_buf(),
            hostname,
            network: spec.network.clone(),
            read_only: spec.read_only,
            binds,
            privileged: spec.privileged,
            caps: caps.0,
            no_new_privileges: spec.no_new_privileges,
            argv,
            env,
            working_dir: spec.working_dir.clone(),
            init: spec.init,
            shm_size: spec.host.shm_size,
            tmpfs: spec
                .host
                .tmpfs
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            devices: spec.host.devices.clone(),
            sysctls: spec
                .host
                .sysctls
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            ulimits: spec.host.ulimits.clone(),
        },
        user,
        caps,
        seccomp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_defaults_like_docker() {
        let env = process_env(&["A=1".into()], "box", true, "/root");
        assert_eq!(
            env,
            vec![
                format!("PATH={DEFAULT_PATH}"),
                "HOSTNAME=box".into(),
                "TERM=xterm".into(),
                "A=1".into(),
                "HOME=/root".into()
            ]
        );
        let env = process_env(&["PATH=/x".into(), "HOME=/h".into()], "b", false, "/root");
        assert_eq!(
            env,
            vec!["HOSTNAME=b".to_string(), "PATH=/x".into(), "HOME=/h".into()]
        );
    }
}
