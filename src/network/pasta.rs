//! Networking of an ordinary user's container through `pasta` (Debian's
//! `passt`), as rootless podman does it (docs/rootless.md): the monitor,
//! root in the container's user namespace, makes the container's network
//! namespace and starts pasta on it. pasta copies the host's addresses
//! and routes into the namespace, carries the container's connections
//! out through ordinary sockets of the user's, maps connections to the
//! gateway address to the host's loopback, and listens on the host for
//! each published port (`-p`). It runs until the monitor stops it, by
//! pid, when the container exits.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::config::PortBinding;
use super::error::NetworkError;

/// Whether `pasta` is on PATH.
pub fn available() -> bool {
    program().is_some()
}

fn program() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join("pasta"))
        .find(|p| p.is_file())
}

/// A running pasta, stopped on drop.
pub struct Pasta {
    pid: nix::unistd::Pid,
    pidfile: PathBuf,
}

/// pasta's port option for one binding: `-t [IP/]HOST:CONTAINER` (`-u`
/// for udp). A binding without a host port gets a free one of the
/// host's, and one with a range the first free port in it, chosen here.
fn port_args(b: &PortBinding) -> Result<[String; 2], NetworkError> {
    let flag = if b.proto == "udp" { "-u" } else { "-t" };
    let host_port = if b.host_port == 0 {
        free_port(&b.host_ip, &b.proto, 0)?
    } else if b.host_port_end > b.host_port {
        (b.host_port..=b.host_port_end)
            .find(|p| free_port(&b.host_ip, &b.proto, *p).is_ok())
            .ok_or_else(|| NetworkError::PortAllocated {
                container: String::new(),
                addr: format!("{}:{}-{}", b.host_ip, b.host_port, b.host_port_end),
            })?
    } else {
        b.host_port
    };
    let mut spec = String::new();
    if !b.host_ip.is_empty() {
        spec.push_str(&b.host_ip);
        spec.push('/');
    }
    spec.push_str(&format!("{host_port}:{}", b.container_port));
    Ok([flag.to_string(), spec])
}

/// `port` if it is free on `ip` (0: any free port).
fn free_port(ip: &str, proto: &str, port: u16) -> Result<u16, NetworkError> {
    let ip = if ip.is_empty() { "0.0.0.0" } else { ip };
    let bound = if proto == "udp" {
        std::net::UdpSocket::bind((ip, port)).and_then(|s| s.local_addr())
    } else {
        std::net::TcpListener::bind((ip, port)).and_then(|s| s.local_addr())
    };
    bound
        .map(|a| a.port())
        .map_err(|e| NetworkError::io(format!("a free host port on {ip}"), e))
}

impl Pasta {
    /// Starts pasta on the network namespace `netns` (a descriptor of
    /// this process) with the published `ports`; returns once pasta has
    /// configured the namespace and listens on the host. Its pid goes to
    /// `pidfile`.
    pub fn start(
        netns: BorrowedFd,
        ports: &[PortBinding],
        pidfile: &Path,
    ) -> Result<Pasta, NetworkError> {
        let Some(pasta) = program() else {
            return Err(NetworkError::Invalid(
                "rootless: pasta is not installed (Debian's passt package)".into(),
            ));
        };
        // pasta needs the tap device, which a host may keep to root.
        if let Err(e) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
        {
            return Err(NetworkError::Invalid(format!(
                "rootless: /dev/net/tun: {e} (pasta needs it open to every user, mode 0666 as Debian sets it)"
            )));
        }
        // pasta opens the namespace as its own descriptor (opening
        // /proc/PID/ns/net of this process, root in the namespace with
        // every capability, is a ptrace check that pasta, keeping only
        // a few, fails): a copy without close-on-exec, closed once pasta
        // has started.
        let inherited = netns
            .try_clone_to_owned()
            .map_err(|e| NetworkError::io("a copy of the network namespace's descriptor", e))?;
        nix::fcntl::fcntl(
            inherited.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        )
        .map_err(|e| NetworkError::sys("fcntl(F_SETFD) of the network namespace", e))?;
        let netns_path = format!("/proc/self/fd/{}", inherited.as_raw_fd());
        let _ = std::fs::remove_file(pidfile);
        let mut command = Command::new(&pasta);
        // Root in the user namespace: pasta would change to nobody.
        command.args(["--config-net", "--quiet", "--runas", "0:0"]);
        command.arg("--pid").arg(pidfile);
        let (mut tcp, mut udp) = (false, false);
        for b in ports {
            let [flag, spec] = port_args(b)?;
            tcp |= flag == "-t";
            udp |= flag == "-u";
            command.args([flag, spec]);
        }
        // Nothing else is forwarded into the namespace (pasta's default
        // forwards every port bound there), nor from it to the host's
        // ports, except connections to the gateway address.
        if !tcp {
            command.args(["-t", "none"]);
        }
        if !udp {
            command.args(["-u", "none"]);
        }
        command.args(["-T", "none", "-U", "none"]);
        command.arg("--netns").arg(&netns_path);
        let out = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| NetworkError::io(pasta.display().to_string(), e))?;
        drop(inherited);
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            return Err(NetworkError::Invalid(format!(
                "rootless: pasta failed: {}",
                why.lines()
                    .rfind(|l| !l.trim().is_empty() && !l.contains("to syslog"))
                    .unwrap_or("no message")
                    .trim()
            )));
        }
        let pid = std::fs::read_to_string(pidfile)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .ok_or_else(|| {
                NetworkError::Invalid(format!(
                    "rootless: pasta started but left no pid in {}",
                    pidfile.display()
                ))
            })?;
        Ok(Pasta {
            pid: nix::unistd::Pid::from_raw(pid),
            pidfile: pidfile.to_path_buf(),
        })
    }
}

impl Drop for Pasta {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.pid, nix::sys::signal::Signal::SIGTERM);
        let _ = std::fs::remove_file(&self.pidfile);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(ip: &str, host: u16, end: u16, container: u16, proto: &str) -> PortBinding {
        PortBinding {
            host_ip: ip.into(),
            host_port: host,
            host_port_end: end,
            container_port: container,
            proto: proto.into(),
        }
    }

    #[test]
    fn bindings_become_pasta_port_options() {
        assert_eq!(
            port_args(&binding("127.0.0.1", 8080, 0, 80, "tcp")).unwrap(),
            ["-t", "127.0.0.1/8080:80"]
        );
        assert_eq!(
            port_args(&binding("", 5353, 0, 53, "udp")).unwrap(),
            ["-u", "5353:53"]
        );
        let [flag, spec] = port_args(&binding("127.0.0.1", 0, 0, 80, "tcp")).unwrap();
        assert_eq!(flag, "-t");
        assert!(
            spec.starts_with("127.0.0.1/") && spec.ends_with(":80"),
            "{spec}"
        );
    }
}
