//! A running container's network, held by its monitor: the namespace,
//! the address leases, the veth pairs (which vanish with the namespace),
//! the published host ports and their proxies, and the DNS server. It
//! exists exactly while the container runs: [`Sandbox::release`] (or
//! drop) gives it all back; a monitor killed with SIGKILL leaves leases
//! and port rows that the next lease on the network, or the next command
//! that looks at the container, collects.
//!
//! The monitor calls, in order: [`Sandbox::prepare`] before it forks the
//! container's first process (which joins [`Sandbox::netns`]),
//! [`Sandbox::configure_in_background`] right after the fork (the veths
//! are made while the root is mounted), [`Sandbox::finish`] before the
//! process runs, [`Sandbox::release`] once it has exited.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::thread::JoinHandle;

use nix::sched::CloneFlags;

use super::bridge::ensure_bridge;
use super::config::{parse_mac, NetworkConfig};
use super::dns::DnsSockets;
use super::firewall::sync_firewall;
use super::ipam::{allocate, collect_dead_leases, mac_for, parse_subnet};
use super::netlink::Netlink;
use super::proxy::{self, Listener};
use super::records::{
    container_endpoints, delete_published, get_network_by_id, insert_published, runtime, set_lease,
    Network, PublishedPort,
};
use super::NetworkError;
use crate::store::Store;

/// One network the container is on while it runs.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub network: Network,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
    pub prefix: u8,
    /// Its name inside the container (`eth0`, `eth1`, ...).
    pub interface: String,
}

/// See the module's header.
pub struct Sandbox {
    root: PathBuf,
    container_id: String,
    netns: Option<OwnedFd>,
    attachments: Vec<Attachment>,
    listeners: Vec<Listener>,
    proxies: Vec<proxy::Running>,
    published: bool,
    dns: bool,
    upstreams: Vec<SocketAddr>,
    released: bool,
    /// An ordinary user's container's pasta or slirp4netns
    /// (network/helper.rs).
    helper: Option<super::helper::Helper>,
    /// Whether the helper's ports are recorded (they have no firewall
    /// rules).
    helper_published: bool,
}

fn sys(op: &'static str) -> impl Fn(nix::Error) -> NetworkError {
    move |e| NetworkError::sys(op, e)
}

/// A new network namespace, as a descriptor; the calling thread stays
/// in its own.
pub fn new_namespace() -> Result<OwnedFd, NetworkError> {
    let path = "/proc/thread-self/ns/net";
    let own = std::fs::File::open(path).map_err(|e| NetworkError::io(path, e))?;
    nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(sys("unshare(CLONE_NEWNET)"))?;
    let new = std::fs::File::open(path).map_err(|e| NetworkError::io(path, e));
    nix::sched::setns(own.as_fd(), CloneFlags::CLONE_NEWNET).map_err(sys("setns(net)"))?;
    Ok(OwnedFd::from(new?))
}

/// This process's start time, for the leases it holds.
fn own_start_time() -> u64 {
    let text = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    text.rfind(')')
        .and_then(|i| text[i + 1..].split_whitespace().nth(19)?.parse().ok())
        .unwrap_or(0)
}

impl Sandbox {
    /// No network of the container's own (host or none).
    pub fn none(root: PathBuf, container_id: &str) -> Sandbox {
        Sandbox {
            root,
            container_id: container_id.into(),
            netns: None,
            attachments: Vec::new(),
            listeners: Vec::new(),
            proxies: Vec::new(),
            published: false,
            dns: false,
            upstreams: Vec::new(),
            released: false,
            helper: None,
            helper_published: false,
        }
    }

    /// `--network pasta` or `slirp4netns`: a new namespace (made in a
    /// thread of its own, since a rootless monitor may not go back to the
    /// host's), with the user-mode helper `start` starts on it, listening
    /// for the container's published ports.
    pub fn user_mode(
        store: &Store,
        container_id: &str,
        start: impl FnOnce(BorrowedFd) -> Result<super::helper::Helper, NetworkError>,
    ) -> Result<Sandbox, NetworkError> {
        let made = std::thread::Builder::new()
            .name("netns".into())
            .spawn(|| -> Result<OwnedFd, NetworkError> {
                nix::sched::unshare(CloneFlags::CLONE_NEWNET)
                    .map_err(sys("unshare(CLONE_NEWNET)"))?;
                let path = "/proc/thread-self/ns/net";
                let ns = std::fs::File::open(path).map_err(|e| NetworkError::io(path, e))?;
                Ok(OwnedFd::from(ns))
            })
            .map_err(|e| NetworkError::io("spawning a thread", e))?
            .join()
            .map_err(|_| NetworkError::Invalid("the netns thread panicked".into()))??;
        let mut sandbox = Sandbox::none(store.root().to_path_buf(), container_id);
        let helper = start(made.as_fd())?;
        sandbox.netns = Some(made);
        // Recorded for `port`, `ps` and `inspect` (no firewall rules:
        // the helper listens itself), and deleted on release.
        let rows: Vec<PublishedPort> = helper
            .published()
            .iter()
            .map(|p| PublishedPort {
                container_id: container_id.to_string(),
                ..p.clone()
            })
            .collect();
        sandbox.helper = Some(helper);
        if !rows.is_empty() {
            runtime(store, |tx| {
                delete_published(tx, container_id)?;
                for r in &rows {
                    insert_published(tx, r)?;
                }
                Ok(())
            })?;
            sandbox.helper_published = true;
        }
        Ok(sandbox)
    }

    /// The name and pid of the container's user-mode helper, if it has
    /// one.
    /// Waits for the user-mode helper's start (its failure, if it
    /// failed); nothing to wait for without one.
    pub fn helper_ready(&mut self) -> Result<(), NetworkError> {
        match &mut self.helper {
            Some(helper) => helper.ready(),
            None => Ok(()),
        }
    }

    pub fn helper_process(&self) -> Option<(&'static str, i32)> {
        self.helper.as_ref().map(|h| (h.name(), h.pid()))
    }

    /// `container:NAME`: the namespace of the process `pid`.
    pub fn join(root: PathBuf, container_id: &str, pid: i32) -> Result<Sandbox, NetworkError> {
        let path = format!("/proc/{pid}/ns/net");
        let fd = std::fs::File::open(&path).map_err(|e| NetworkError::io(&path, e))?;
        let mut s = Sandbox::none(root, container_id);
        s.netns = Some(OwnedFd::from(fd));
        Ok(s)
    }

    /// Leases an address on each of the container's networks (the
    /// bridges made if missing), binds its published ports, and makes
    /// its namespace.
    pub fn prepare(
        store: &Store,
        container_id: &str,
        config: &NetworkConfig,
    ) -> Result<Sandbox, NetworkError> {
        let mut sandbox = Sandbox::none(store.root().to_path_buf(), container_id);
        let endpoints = container_endpoints(store, container_id)?;
        let mut netlink = Netlink::open()?;
        let mut made_bridge = false;
        let pid = std::process::id() as i32;
        let start = own_start_time();
        for (i, endpoint) in endpoints.iter().enumerate() {
            let network = get_network_by_id(store, &endpoint.network_id)?;
            let (_, created) = ensure_bridge(&mut netlink, &network)?;
            made_bridge |= created;
            let wanted: Option<Ipv4Addr> = if endpoint.static_ip.is_empty() {
                None
            } else {
                Some(endpoint.static_ip.parse().map_err(|_| {
                    NetworkError::Invalid(format!("invalid address {:?}", endpoint.static_ip))
                })?)
            };
            let ip = runtime(store, |tx| {
                collect_dead_leases(tx, &network.id)?;
                let ip = allocate(tx, &network, wanted)?;
                let mac = if endpoint.static_mac.is_empty() {
                    mac_for(ip)
                } else {
                    parse_mac(&endpoint.static_mac)?
                };
                set_lease(
                    tx,
                    &network.id,
                    container_id,
                    Some((&ip.to_string(), &super::config::format_mac(mac), pid, start)),
                )?;
                Ok(ip)
            });
            let ip = match ip {
                Ok(ip) => ip,
                Err(e) => {
                    sandbox.release_records(store);
                    return Err(e);
                }
            };
            let mac = if endpoint.static_mac.is_empty() {
                mac_for(ip)
            } else {
                parse_mac(&endpoint.static_mac)?
            };
            let prefix = parse_subnet(&network.subnet)?.prefix_len();
            sandbox.dns |= i == 0 && network.name != "bridge";
            sandbox.attachments.push(Attachment {
                network,
                ip,
                mac,
                prefix,
                interface: format!("eth{i}"),
            });
        }
        if let Err(e) = sandbox.bind_ports(store, config) {
            sandbox.release_records(store);
            return Err(e);
        }
        if made_bridge || sandbox.published {
            if let Err(e) = sync_firewall(store) {
                sandbox.release_records(store);
                return Err(e);
            }
        }
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        sandbox.upstreams = if config.dns.is_empty() {
            super::dns::nameservers(&host_resolv)
        } else {
            config
                .dns
                .iter()
                .filter_map(|d| d.parse::<std::net::IpAddr>().ok())
                .map(|ip| SocketAddr::new(ip, 53))
                .collect()
        };
        match new_namespace() {
            Ok(fd) => sandbox.netns = Some(fd),
            Err(e) => {
                sandbox.release_records(store);
                return Err(e);
            }
        }
        Ok(sandbox)
    }

    /// Binds every published port (ports of `-P` and `-p` without a
    /// host port get free ones) and records them.
    fn bind_ports(&mut self, store: &Store, config: &NetworkConfig) -> Result<(), NetworkError> {
        let Some(first) = self.attachments.first() else {
            return Ok(());
        };
        let target_ip = first.ip;
        let mut bindings = config.ports.clone();
        if config.publish_all {
            for key in &config.exposed {
                let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
                let Ok(port) = port.parse::<u16>() else {
                    continue;
                };
                if !bindings
                    .iter()
                    .any(|b| b.container_port == port && b.proto == proto)
                {
                    bindings.push(super::config::PortBinding {
                        host_ip: String::new(),
                        host_port: 0,
                        host_port_end: 0,
                        container_port: port,
                        proto: proto.to_string(),
                    });
                }
            }
        }
        let mut rows = Vec::new();
        // Docker binds `[::]` beside `0.0.0.0` when the host can listen
        // on IPv6; the proxy takes that traffic to the container's IPv4
        // address.
        let v6 = bindings.iter().any(|b| b.host_ip.is_empty()) && proxy::ipv6_listenable();
        for b in &bindings {
            let ip: IpAddr = if b.host_ip.is_empty() {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            } else {
                b.host_ip.parse().map_err(|_| {
                    NetworkError::Invalid(format!("invalid host address {:?}", b.host_ip))
                })?
            };
            let last = if b.host_port_end > b.host_port {
                b.host_port_end
            } else {
                b.host_port
            };
            let mut bound = None;
            let mut error = None;
            for port in b.host_port..=last {
                match proxy::bind(&b.proto, ip, port) {
                    Ok(r) => {
                        bound = Some(r);
                        break;
                    }
                    Err(e) => error = Some((port, e)),
                }
            }
            let Some((socket, port)) = bound else {
                let (port, e) = error.unwrap_or((b.host_port, std::io::Error::other("no port")));
                return Err(self.bind_error(ip, port, &b.proto, e));
            };
            let mut held = vec![(ip, socket, port)];
            if b.host_ip.is_empty() && v6 {
                let any6 = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
                // The same port on IPv6; a port chosen by the kernel that
                // IPv6 has taken gets another one there (Docker 20.10
                // picks the two apart in every case).
                let again = proxy::bind(&b.proto, any6, port).or_else(|e| {
                    if b.host_port == 0 && e.kind() == std::io::ErrorKind::AddrInUse {
                        proxy::bind(&b.proto, any6, 0)
                    } else {
                        Err(e)
                    }
                });
                match again {
                    Ok((socket6, port6)) => held.push((any6, socket6, port6)),
                    Err(e) => return Err(self.bind_error(any6, port, &b.proto, e)),
                }
            }
            for (ip, socket, port) in held {
                self.listeners.push(Listener {
                    bound: socket,
                    host: SocketAddr::new(ip, port),
                    target: SocketAddrV4::new(target_ip, b.container_port),
                });
                rows.push(PublishedPort {
                    container_id: self.container_id.clone(),
                    proto: b.proto.clone(),
                    container_port: b.container_port,
                    host_ip: ip.to_string(),
                    host_port: port,
                    target_ip: target_ip.to_string(),
                });
            }
        }
        if rows.is_empty() {
            return Ok(());
        }
        runtime(store, |tx| {
            delete_published(tx, &self.container_id)?;
            for r in &rows {
                insert_published(tx, r)?;
            }
            Ok(())
        })?;
        self.published = true;
        Ok(())
    }

    /// A host port that could not be bound, in Docker's words when it is
    /// taken (`Bind for 0.0.0.0:80 failed: port is already allocated`;
    /// IPv6 as Docker 20.10 writes it, `:::80`).
    fn bind_error(&self, ip: IpAddr, port: u16, proto: &str, e: std::io::Error) -> NetworkError {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            return NetworkError::PortAllocated {
                container: self.container_id[..12.min(self.container_id.len())].to_string(),
                addr: format!("{ip}:{port}"),
            };
        }
        NetworkError::io(format!("binding {ip}:{port}/{proto}"), e)
    }

    /// The namespace the container's first process joins, if it has one
    /// of strata's making (or another container's).
    pub fn netns(&self) -> Option<BorrowedFd<'_>> {
        self.netns.as_ref().map(|f| f.as_fd())
    }

    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    /// Makes the veths and configures the namespace on a thread: the
    /// host ends on their bridges, the container ends (`eth0`, ...)
    /// with their addresses, loopback, the default route through the
    /// first network's gateway (none on an internal network), and the
    /// DNS server's socket.
    pub fn configure_in_background(
        &self,
    ) -> Option<JoinHandle<Result<Option<DnsSockets>, NetworkError>>> {
        if self.attachments.is_empty() {
            return None;
        }
        let netns = self.netns.as_ref()?.try_clone().ok()?;
        let attachments = self.attachments.clone();
        let dns = self.dns;
        std::thread::Builder::new()
            .name("network".into())
            .spawn(move || configure(netns, &attachments, dns))
            .ok()
    }

    /// Waits for the configuration (the user-mode helper's, or the
    /// veths') and starts the proxies and the DNS server.
    pub fn finish(
        &mut self,
        configured: Option<JoinHandle<Result<Option<DnsSockets>, NetworkError>>>,
    ) -> Result<(), NetworkError> {
        if let Some(helper) = &mut self.helper {
            helper.ready()?;
        }
        let dns = match configured {
            Some(t) => t
                .join()
                .map_err(|_| NetworkError::Invalid("the network thread panicked".into()))??,
            None => None,
        };
        if let Some(socket) = dns {
            let (root, id, ups) = (
                self.root.clone(),
                self.container_id.clone(),
                self.upstreams.clone(),
            );
            std::thread::Builder::new()
                .name("dns".into())
                .spawn(move || super::dns::serve(socket, root, id, ups))
                .map_err(|e| NetworkError::io("spawning the DNS server", e))?;
        }
        for l in self.listeners.drain(..) {
            self.proxies.push(proxy::start(l)?);
        }
        Ok(())
    }

    /// Clears the leases and port rows (and the firewall's rules for
    /// them).
    fn release_records(&mut self, store: &Store) {
        let id = self.container_id.clone();
        let _ = runtime(store, |tx| {
            for e in container_endpoints(store, &id)? {
                set_lease(tx, &e.network_id, &id, None)?;
            }
            delete_published(tx, &id)?;
            Ok(())
        });
        if self.published {
            let _ = sync_firewall(store);
            self.published = false;
        }
    }

    /// Gives everything back: host ports first (so the next container
    /// can have them once the exit is reported), the leases and rules,
    /// then the namespace (and with it the veths). A user-mode helper
    /// without host ports is only stopped: the caller reaps it by
    /// dropping what this returns, after reporting the exit (its end
    /// takes ~25 ms that nothing needs to wait for).
    #[must_use = "dropping it waits for the stopped helper's end"]
    pub fn release(mut self) -> Option<super::helper::Helper> {
        let stopped = match self.helper.take() {
            Some(h) if h.published().is_empty() => Some(h.stop()),
            other => {
                self.helper = other;
                None
            }
        };
        self.release_now();
        stopped
    }

    fn release_now(&mut self) {
        if self.released {
            return;
        }
        self.released = true;
        for p in self.proxies.drain(..) {
            p.stop();
        }
        self.listeners.clear();
        self.helper = None;
        if !self.attachments.is_empty() || self.published || self.helper_published {
            if let Ok(store) = Store::open(&self.root) {
                self.release_records(&store);
            }
        }
        self.netns = None;
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.release_now();
    }
}

/// See [`Sandbox::configure_in_background`]. Runs on its own thread,
/// which enters the container's namespace half-way.
fn configure(
    netns: OwnedFd,
    attachments: &[Attachment],
    dns: bool,
) -> Result<Option<DnsSockets>, NetworkError> {
    let mut host = Netlink::open()?;
    for a in attachments {
        let bridge = host.link_index(&a.network.bridge)?.ok_or_else(|| {
            NetworkError::netlink(
                format!("bridge {}", a.network.bridge),
                std::io::Error::from_raw_os_error(libc::ENODEV),
            )
        })?;
        let veth = format!("veth{:07x}", rand::random::<u32>() & 0x0fff_ffff);
        host.create_veth(&veth, bridge, &a.interface, netns.as_fd(), a.mac)?;
    }
    nix::sched::setns(netns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(sys("setns(net)"))?;
    let mut inside = Netlink::open()?;
    if let Some(lo) = inside.link_index("lo")? {
        inside.set_up(lo, "bringing lo up")?;
    }
    for (i, a) in attachments.iter().enumerate() {
        let index = inside.link_index(&a.interface)?.ok_or_else(|| {
            NetworkError::netlink(
                a.interface.clone(),
                std::io::Error::from_raw_os_error(libc::ENODEV),
            )
        })?;
        inside.add_address(
            index,
            a.ip,
            a.prefix,
            &format!("adding {} to {}", a.ip, a.interface),
        )?;
        inside.set_up(index, &format!("bringing {} up", a.interface))?;
        if i == 0 && !a.network.internal {
            let gateway: Ipv4Addr =
                a.network
                    .gateway
                    .parse()
                    .map_err(|_| NetworkError::Corrupt {
                        id: a.network.id.clone(),
                        reason: format!("gateway {:?}", a.network.gateway),
                    })?;
            inside.add_route(Ipv4Addr::UNSPECIFIED, 0, gateway)?;
        }
    }
    if dns {
        return super::dns::bind_in_namespace().map(Some).map_err(|e| {
            NetworkError::io("binding 127.0.0.11:53 (UDP and TCP) in the container", e)
        });
    }
    Ok(None)
}
