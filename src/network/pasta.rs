//! Networking of an ordinary user's container through `pasta` (Debian's
//! `passt`), as rootless podman does it (docs/rootless.md): the monitor,
//! root in the container's user namespace, makes the container's network
//! namespace and starts pasta on it. pasta copies the host's addresses
//! and routes into the namespace, carries the container's connections
//! out through ordinary sockets of the user's, maps connections to the
//! gateway address to the host's loopback, and listens on the host for
//! each published port (`-p`). It runs in the foreground as the
//! monitor's child until the monitor stops it when the container exits,
//! and dies with the monitor (parent-death signal) if the monitor is
//! killed; the monitor records its pid and start time (`pasta.process`)
//! so that the next command collects one left over all the same.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::config::PortBinding;
use super::error::NetworkError;
use super::records::PublishedPort;

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

/// A running pasta, this process's child, stopped on drop.
pub struct Pasta {
    child: Child,
    published: Vec<PublishedPort>,
}

/// pasta's port option for one binding: `-t [IP/]HOST:CONTAINER` (`-u`
/// for udp), and the host port. A binding without a host port gets a
/// free one of the host's, and one with a range the first free port in
/// it, chosen here.
fn port_args(b: &PortBinding) -> Result<([String; 2], u16), NetworkError> {
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
    Ok(([flag.to_string(), spec], host_port))
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
    /// configured the namespace and listens on the host. pasta tells it
    /// through `ready_file` (removed then, with its log beside it, named
    /// `.log`). pasta dies with the thread that starts it.
    pub fn start(
        netns: BorrowedFd,
        ports: &[PortBinding],
        ready_file: &Path,
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
        let _ = std::fs::remove_file(ready_file);
        // pasta's messages, for the one line of a failure.
        let log_path = ready_file.with_extension("log");
        let log = std::fs::File::create(&log_path)
            .map_err(|e| NetworkError::io(log_path.display().to_string(), e))?;
        let mut command = Command::new(&pasta);
        // In the foreground, pasta stays this process's child and dies
        // with it (below); it writes its pid to `ready_file` once the
        // namespace is configured and the ports listen. Root in the user
        // namespace: pasta would change to nobody.
        command.args(["--config-net", "--quiet", "--foreground", "--runas", "0:0"]);
        command.arg("--pid").arg(ready_file);
        let (mut tcp, mut udp) = (false, false);
        let mut published = Vec::new();
        for b in ports {
            let ([flag, spec], host_port) = port_args(b)?;
            // As rootless podman shows them: every address is 0.0.0.0;
            // pasta has no address in the container to forward to.
            published.push(PublishedPort {
                container_id: String::new(),
                proto: b.proto.clone(),
                container_port: b.container_port,
                host_ip: if b.host_ip.is_empty() {
                    "0.0.0.0".into()
                } else {
                    b.host_ip.clone()
                },
                host_port,
                target_ip: String::new(),
            });
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
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // A monitor killed with -9 takes its pasta with it.
        super::sys::die_with_parent(&mut command);
        let child = command
            .spawn()
            .map_err(|e| NetworkError::io(pasta.display().to_string(), e))?;
        drop(inherited);
        let mut pasta = Pasta { child, published };
        pasta.wait_ready(ready_file, &log_path)?;
        let _ = std::fs::remove_file(ready_file);
        let _ = std::fs::remove_file(&log_path);
        Ok(pasta)
    }

    /// The host ports pasta listens on (no container id, no target
    /// address).
    pub fn published(&self) -> &[PublishedPort] {
        &self.published
    }

    /// pasta's pid.
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap_or(0)
    }

    /// Waits until pasta has written its pid to `ready_file` (it is then
    /// ready); an exit before that is pasta's failure, told by the last
    /// line of its `log`.
    fn wait_ready(&mut self, ready_file: &Path, log: &Path) -> Result<(), NetworkError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut pause = Duration::from_micros(500);
        loop {
            let written = std::fs::read_to_string(ready_file).unwrap_or_default();
            if written.trim().parse::<u32>().ok() == Some(self.child.id()) {
                return Ok(());
            }
            if !matches!(self.child.try_wait(), Ok(None)) {
                let why = std::fs::read_to_string(log).unwrap_or_default();
                let _ = std::fs::remove_file(log);
                return Err(NetworkError::Invalid(format!(
                    "rootless: pasta failed: {}",
                    why.lines()
                        .rfind(|l| !l.trim().is_empty() && !l.contains("to syslog"))
                        .unwrap_or("no message")
                        .trim()
                )));
            }
            if Instant::now() >= deadline {
                return Err(NetworkError::Invalid(format!(
                    "rootless: pasta did not configure the container's network within {} s",
                    READY_TIMEOUT.as_secs()
                )));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }
}

/// How long pasta may take to configure a namespace.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

impl Drop for Pasta {
    /// Stops pasta and reaps it (it holds the host's ports until then).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
            (["-t".to_string(), "127.0.0.1/8080:80".to_string()], 8080)
        );
        assert_eq!(
            port_args(&binding("", 5353, 0, 53, "udp")).unwrap(),
            (["-u".to_string(), "5353:53".to_string()], 5353)
        );
        let ([flag, spec], port) = port_args(&binding("127.0.0.1", 0, 0, 80, "tcp")).unwrap();
        assert!(port > 0);
        assert_eq!(flag, "-t");
        assert!(
            spec.starts_with("127.0.0.1/") && spec.ends_with(":80"),
            "{spec}"
        );
    }
}
