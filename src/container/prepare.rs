//! Turning a container's record into a [`LaunchPlan`] once its root is
//! mounted: the user from the image's own passwd and group files (read
//! inside the root), the environment, hostname, the /etc files Docker
//! provides, and the bind mounts.

use std::io::Read;
use std::os::fd::AsFd;
use std::path::Path;

use super::caps::{effective_set, CapSet};
use super::launch::{BindMount, LaunchError, LaunchPlan};
use super::passwd::{resolve_user, ExecUser};
use super::records::Container;
use super::spec::NetworkMode;
use super::volume::volume_data_dir;
use super::{sys, DEFAULT_PATH};
use crate::store::Store;

/// A plan and the identity the process takes.
pub struct Prepared {
    pub plan: LaunchPlan,
    pub user: ExecUser,
    pub caps: CapSet,
}

fn fail(message: impl Into<String>) -> LaunchError {
    LaunchError {
        exit_code: 125,
        message: message.into(),
    }
}

/// Reads a file of the container by its path inside the root; a missing
/// file reads as empty. Symlinks resolve inside the root.
pub fn read_in_root(root: &Path, path: &str) -> Result<String, LaunchError> {
    let dir = std::fs::File::open(root).map_err(|e| fail(format!("{}: {e}", root.display())))?;
    match sys::open_in_root(dir.as_fd(), path, libc::O_RDONLY, 0) {
        Ok(fd) => {
            let mut text = String::new();
            std::fs::File::from(fd)
                .take(4 << 20)
                .read_to_string(&mut text)
                .map_err(|e| fail(format!("{path}: {e}")))?;
            Ok(text)
        }
        Err(nix::errno::Errno::ENOENT) => Ok(String::new()),
        Err(e) => Err(fail(format!("{path}: {}", e.desc()))),
    }
}

/// The user a container (or an exec with `user`) runs as.
pub fn resolve_container_user(root: &Path, user: &str) -> Result<ExecUser, LaunchError> {
    let passwd = read_in_root(root, "/etc/passwd")?;
    let group = read_in_root(root, "/etc/group")?;
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

const DEFAULT_HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff00::1\tip6-allnodes\nff00::2\tip6-allrouters\n";

/// Docker's resolv.conf for a container without the host's network:
/// the host's, minus loopback nameservers (unreachable from there).
fn resolv_conf(network: NetworkMode) -> String {
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    if network == NetworkMode::Host {
        return host;
    }
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

/// The files of /etc the container gets from strata, as Docker provides
/// them: bind-mounted from the container's directory.
pub const ETC_FILES: [&str; 3] = ["hostname", "hosts", "resolv.conf"];

/// What Docker accepts in a container's config at create and its runtime
/// (runc) refuses at start: a relative working directory, an environment
/// entry with a NUL byte or without a name, a mount over the root or on or
/// below /proc. Checked at start as Docker does (the image's config is
/// only read then); exit 125.
pub fn check_runnable(spec: &super::spec::ContainerSpec) -> Result<(), LaunchError> {
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
    let hostname = if !spec.hostname.is_empty() {
        spec.hostname.clone()
    } else if spec.network == NetworkMode::Host {
        host_hostname()
    } else {
        container.short_id().to_string()
    };
    let user = resolve_container_user(rootfs, &spec.user)?;
    let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    let caps = effective_set(spec.privileged, &spec.cap_add, &spec.cap_drop, last_cap)
        .map_err(|e| fail(e.to_string()))?;
    // Nobody can hand on more than they hold (--privileged in a restricted
    // environment gets what strata itself holds).
    let caps = CapSet(caps.0 & super::caps::own_permitted().0);
    let hosts = if spec.network == NetworkMode::Host {
        std::fs::read_to_string("/etc/hosts").unwrap_or_else(|_| DEFAULT_HOSTS.to_string())
    } else {
        DEFAULT_HOSTS.to_string()
    };
    let mut binds = Vec::new();
    let contents = [format!("{hostname}\n"), hosts, resolv_conf(spec.network)];
    for (name, content) in ETC_FILES.into_iter().zip(contents) {
        let path = dir.join(name);
        std::fs::write(&path, content).map_err(|e| fail(format!("{}: {e}", path.display())))?;
        binds.push(BindMount {
            source: path,
            destination: format!("/etc/{name}"),
            read_only: false,
            directory: false,
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
        });
    }
    let argv = spec.argv();
    let env = process_env(&spec.env, &hostname, spec.tty, &user.home);
    Ok(Prepared {
        plan: LaunchPlan {
            rootfs: rootfs.to_path_buf(),
            hostname,
            network: spec.network,
            read_only: spec.read_only,
            binds,
            privileged: spec.privileged,
            caps: caps.0,
            no_new_privileges: spec.no_new_privileges,
            argv,
            env,
            working_dir: spec.working_dir.clone(),
            init: spec.init,
        },
        user,
        caps,
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
