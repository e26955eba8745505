//! Networking of an ordinary user's container through `pasta` (Debian's
//! `passt`), as rootless podman does it (docs/rootless.md): the monitor,
//! root in the container's user namespace, makes the container's network
//! namespace and starts pasta on it. pasta copies the host's addresses
//! and routes into the namespace, carries the container's connections
//! out through ordinary sockets of the user's, maps connections to the
//! gateway address to the host's loopback, and listens on the host for
//! each published port (`-p`). It runs as a [`Helper`] (`helper.rs`):
//! the monitor's child in the foreground until the monitor stops it when
//! the container exits, gone with a monitor killed with -9; the monitor
//! records its pid and start time (`pasta.process`) so that the next
//! command collects one left over all the same. A container without
//! published ports starts as soon as pasta has configured its namespace
//! (`NamespaceWatch`), not when pasta is done starting.

use std::os::fd::BorrowedFd;
use std::path::Path;
use std::process::Command;

use netlink_packet_route::AddressFamily;

use super::config::PortBinding;
use super::error::NetworkError;
use super::helper::{self, Helper, Readiness, StartFiles};
use super::netlink::Netlink;
use super::records::PublishedPort;

/// Whether `pasta` is on PATH.
pub fn available() -> bool {
    helper::program("pasta").is_some()
}

/// pasta's port option for one binding: `-t [IP/]HOST:CONTAINER` (`-u`
/// for udp), and the host port (see [`helper::choose_host_port`]).
fn port_args(b: &PortBinding) -> Result<([String; 2], u16), NetworkError> {
    let flag = if b.proto == "udp" { "-u" } else { "-t" };
    let host_port = helper::choose_host_port(b)?;
    let mut spec = String::new();
    if !b.host_ip.is_empty() {
        spec.push_str(&b.host_ip);
        spec.push('/');
    }
    spec.push_str(&format!("{host_port}:{}", b.container_port));
    Ok(([flag.to_string(), spec], host_port))
}

/// The host addresses pasta listens on for a binding on `host_ip`: the
/// address given, or for none both `0.0.0.0` and `::` where the host can
/// listen on IPv6 (pasta binds both families then), listed as Docker
/// 20.10 lists such a port.
fn listened_addresses(host_ip: &str, ipv6: bool) -> Vec<&str> {
    match (host_ip, ipv6) {
        ("", true) => vec!["0.0.0.0", "::"],
        ("", false) => vec!["0.0.0.0"],
        (ip, _) => vec![ip],
    }
}

/// Tells when pasta has configured a namespace: it copies the host's
/// addresses and routes into it first thing (IPv4, then IPv6), then
/// spends ~14 ms more on its own tables and socket pools before it
/// writes its pid file. The namespace is configured once it has the
/// default route of each family the host has one of; a host with
/// neither leaves only the pid file to tell.
struct NamespaceWatch {
    netlink: Netlink,
    families: Vec<AddressFamily>,
}

impl NamespaceWatch {
    fn new(netns: BorrowedFd) -> Option<NamespaceWatch> {
        let mut host = Netlink::open().ok()?;
        let families: Vec<AddressFamily> = [AddressFamily::Inet, AddressFamily::Inet6]
            .into_iter()
            .filter(|f| host.has_default_route(*f).unwrap_or(false))
            .collect();
        if families.is_empty() {
            return None;
        }
        let netlink = Netlink::open_in(netns).ok()?;
        Some(NamespaceWatch { netlink, families })
    }

    fn configured(&mut self) -> bool {
        let Self { netlink, families } = self;
        families
            .iter()
            .all(|f| netlink.has_default_route(*f).unwrap_or(false))
    }
}

/// Starts pasta on the network namespace `netns` (a descriptor of this
/// process) with the published `ports`, and returns at once: pasta
/// takes ~20 ms to configure the namespace and listen on the host,
/// while the caller mounts the container's root; [`Helper::ready`]
/// waits for it. pasta tells it through `pasta.pid` in the container's
/// directory `dir` (removed then, with its log, `pasta.log`). pasta dies
/// with the thread that starts it.
pub fn start(netns: BorrowedFd, ports: &[PortBinding], dir: &Path) -> Result<Helper, NetworkError> {
    let pasta = helper::require("pasta", "passt")?;
    helper::check_tun("pasta")?;
    let mut command = Command::new(&pasta);
    // In the foreground, pasta stays this process's child and dies with
    // it; it writes its pid to `ready_file` once the namespace is
    // configured and the ports listen. Root in the user namespace:
    // pasta would change to nobody.
    command.args(["--config-net", "--quiet", "--foreground", "--runas", "0:0"]);
    let (mut tcp, mut udp) = (false, false);
    let mut published: Vec<PublishedPort> = Vec::new();
    let ipv6 = super::proxy::ipv6_listenable();
    for b in ports {
        let ([flag, spec], host_port) = port_args(b)?;
        for ip in listened_addresses(&b.host_ip, ipv6) {
            published.push(helper::published_port(b, ip, host_port));
        }
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
    let mut files = StartFiles::new();
    let ready_file = files.add(dir.join("pasta.pid")).to_path_buf();
    command.arg("--pid").arg(&ready_file);
    let (inherited, netns_path) = helper::inheritable(netns, "the network namespace")?;
    command.arg("--netns").arg(&netns_path);
    // Without published ports nothing waits for pasta's listening
    // sockets: the container may start once its namespace is configured.
    let mut watch = match ports.is_empty() {
        true => NamespaceWatch::new(netns),
        false => None,
    };
    let mut pasta = Helper::spawn("pasta", command, &mut files, dir.join("pasta.log"))?;
    drop(inherited);
    let pid = pasta.pid();
    pasta.ready_later(
        move || {
            let written = std::fs::read_to_string(&ready_file).unwrap_or_default();
            if written.trim().parse::<i32>().ok() == Some(pid) {
                Readiness::Ready
            } else if watch.as_mut().is_some_and(NamespaceWatch::configured) {
                Readiness::Usable
            } else {
                Readiness::NotYet
            }
        },
        files,
    );
    pasta.set_published(published);
    Ok(pasta)
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

    #[test]
    fn a_port_without_an_address_is_listed_on_both_families() {
        assert_eq!(listened_addresses("", true), ["0.0.0.0", "::"]);
        assert_eq!(listened_addresses("", false), ["0.0.0.0"]);
        assert_eq!(listened_addresses("127.0.0.1", true), ["127.0.0.1"]);
    }
}
