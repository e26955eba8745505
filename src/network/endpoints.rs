//! A container's membership of networks, as the container commands need
//! it: checked and recorded at `create`, `network connect` and
//! `disconnect` (also while it runs), forgotten at `rm`, collected after
//! a monitor died, and read for `inspect`, `port`, `ps` and the files
//! and variables of its start.

use std::net::Ipv4Addr;

use nix::sched::CloneFlags;

use super::bridge::ensure_bridge;
use super::config::{format_mac, parse_mac, NetworkConfig};
use super::firewall::sync_firewall;
use super::ipam::{allocate, collect_dead_leases, holder_alive, mac_for, parse_subnet};
use super::manage::ensure_predefined;
use super::netlink::Netlink;
use super::records::{
    container_endpoints, container_published, delete_endpoint, delete_published, find_network,
    get_network_by_id, insert_endpoint, runtime, set_lease, Endpoint, Network, PublishedPort,
};
use super::NetworkError;
use crate::store::Store;

/// The endpoint a new container gets (checked before anything is made).
pub struct PlannedEndpoint {
    network: Network,
    aliases: Vec<String>,
    static_ip: String,
    static_mac: String,
}

fn new_id() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

fn check_static(
    network: &Network,
    ip: &str,
    mac: &str,
    aliases: &[String],
) -> Result<(), NetworkError> {
    let user_defined = network.name != "bridge";
    if !ip.is_empty() {
        if !user_defined {
            return Err(NetworkError::Invalid(
                "user specified IP address is supported on user defined networks only".into(),
            ));
        }
        let addr: Ipv4Addr = ip
            .parse()
            .map_err(|_| NetworkError::Invalid(format!("invalid IPv4 address: {ip}")))?;
        let subnet = parse_subnet(&network.subnet)?;
        if !network.ipam_given {
            return Err(NetworkError::Invalid(
                "user specified IP address is supported only when connecting to networks with user configured subnets".into(),
            ));
        }
        if !subnet.contains(&addr) {
            return Err(NetworkError::Invalid(format!(
                "invalid address {ip}: it does not belong to any of network {}'s subnets",
                network.name
            )));
        }
    }
    if !mac.is_empty() {
        parse_mac(mac)?;
    }
    if !aliases.is_empty() && !user_defined {
        return Err(NetworkError::Invalid(
            "network-scoped alias is supported only for containers in user defined networks".into(),
        ));
    }
    Ok(())
}

/// Checks a new container's network (`network` is the network's name
/// or ID, `bridge` for the default).
pub fn plan_endpoint(
    store: &Store,
    network: &str,
    config: &NetworkConfig,
) -> Result<PlannedEndpoint, NetworkError> {
    ensure_predefined(store)?;
    let found = find_network(store, network)?;
    match found.driver.as_str() {
        "bridge" => {}
        _ => {
            return Err(NetworkError::Invalid(format!(
                "network {} cannot be joined this way: use --network {}",
                found.name, found.name
            )))
        }
    }
    check_static(&found, &config.ip, &config.mac, &config.aliases)?;
    if !config.links.is_empty() && found.name != "bridge" {
        // Docker resolves links on user networks through its DNS; strata
        // writes them to the hosts file on the default bridge only.
        return Err(NetworkError::Invalid(
            "--link is supported on the default bridge network only; on user-defined networks containers find each other by name".into(),
        ));
    }
    Ok(PlannedEndpoint {
        network: found,
        aliases: config.aliases.clone(),
        static_ip: config.ip.clone(),
        static_mac: config.mac.clone(),
    })
}

/// Records the endpoint [`plan_endpoint`] checked.
pub fn record_endpoint(
    store: &Store,
    container_id: &str,
    links: &[String],
    planned: PlannedEndpoint,
) -> Result<(), NetworkError> {
    let mut aliases = planned.aliases;
    if planned.network.name != "bridge" {
        aliases.push(container_id[..12.min(container_id.len())].to_string());
    }
    // Part of the container's record, written as it is (Store::relaxed).
    store.relaxed(|| {
        insert_endpoint(
            store,
            &Endpoint {
                network_id: planned.network.id,
                container_id: container_id.into(),
                endpoint_id: new_id(),
                aliases,
                links: links.to_vec(),
                static_ip: planned.static_ip,
                static_mac: planned.static_mac,
                ip: None,
                mac: None,
                holder_pid: 0,
                holder_start: 0,
            },
        )
    })
}

/// `rm`: the container's endpoints and port rows go (relaxed, as the
/// container's own row: see Store::relaxed).
pub fn forget_container(store: &Store, container_id: &str) -> Result<(), NetworkError> {
    let had_ports = runtime(store, |tx| {
        tx.execute(
            "DELETE FROM endpoints WHERE container_id = ?1",
            [container_id],
        )?;
        delete_published(tx, container_id)
    })?;
    if had_ports > 0 {
        sync_firewall(store)?;
    }
    Ok(())
}

/// After a monitor died: its leases and ports are released (if no live
/// process holds them).
pub fn collect_container(store: &Store, container_id: &str) -> Result<(), NetworkError> {
    // pasta's ports (no target address) have no firewall rules, and an
    // ordinary user has no firewall to change.
    let bridged = container_published(store, container_id)?
        .iter()
        .any(|p| !p.target_ip.is_empty());
    runtime(store, |tx| {
        for e in container_endpoints(store, container_id)? {
            if e.ip.is_some() && !holder_alive(e.holder_pid, e.holder_start) {
                set_lease(tx, &e.network_id, container_id, None)?;
            }
        }
        delete_published(tx, container_id)
    })?;
    if bridged {
        sync_firewall(store)?;
    }
    Ok(())
}

/// A container's networks with its endpoints, in the order it joined.
pub fn container_networks(
    store: &Store,
    container_id: &str,
) -> Result<Vec<(Network, Endpoint)>, NetworkError> {
    container_endpoints(store, container_id)?
        .into_iter()
        .map(|e| Ok((get_network_by_id(store, &e.network_id)?, e)))
        .collect()
}

/// The container's address on its first network while it runs, with
/// the network's gateway.
pub fn container_address(
    store: &Store,
    container_id: &str,
) -> Result<Option<(String, String)>, NetworkError> {
    for (n, e) in container_networks(store, container_id)? {
        if let Some(ip) = e.ip {
            return Ok(Some((ip, n.gateway)));
        }
    }
    Ok(None)
}

pub fn published_ports(
    store: &Store,
    container_id: &str,
) -> Result<Vec<PublishedPort>, NetworkError> {
    container_published(store, container_id)
}

/// What `network connect` takes.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    pub aliases: Vec<String>,
    pub ip: String,
}

/// The container being connected: its ID and, if it runs, its pid 1
/// and its monitor (the lease's holder).
pub struct ConnectTarget {
    pub id: String,
    pub running: Option<(i32, i32, u64)>,
}

/// `network connect`: records the endpoint; on a running container also
/// leases an address and adds an interface (`ethN`) in its namespace.
pub fn connect(
    store: &Store,
    network: &str,
    target: &ConnectTarget,
    options: &ConnectOptions,
) -> Result<(), NetworkError> {
    ensure_predefined(store)?;
    let network = find_network(store, network)?;
    if network.driver != "bridge" {
        return Err(NetworkError::Invalid(format!(
            "container cannot be disconnected from host network or connected to host network (network {})",
            network.name
        )));
    }
    let existing = container_endpoints(store, &target.id)?;
    if existing.iter().any(|e| e.network_id == network.id) {
        return Err(NetworkError::AlreadyAttached {
            container: target.id[..12].to_string(),
            network: network.name,
        });
    }
    check_static(&network, &options.ip, "", &options.aliases)?;
    let planned = PlannedEndpoint {
        network: network.clone(),
        aliases: options.aliases.clone(),
        static_ip: options.ip.clone(),
        static_mac: String::new(),
    };
    record_endpoint(store, &target.id, &[], planned)?;
    let Some((pid, holder, holder_start)) = target.running else {
        return Ok(());
    };
    let attached = attach_running(
        store,
        &network,
        &target.id,
        existing.len(),
        pid,
        (holder, holder_start),
        &options.ip,
    );
    if let Err(e) = attached {
        let _ = runtime(store, |tx| set_lease(tx, &network.id, &target.id, None));
        delete_endpoint(store, &network.id, &target.id)?;
        return Err(e);
    }
    Ok(())
}

fn attach_running(
    store: &Store,
    network: &Network,
    container_id: &str,
    index: usize,
    pid: i32,
    holder: (i32, u64),
    static_ip: &str,
) -> Result<(), NetworkError> {
    let mut netlink = Netlink::open()?;
    let (bridge, created) = ensure_bridge(&mut netlink, network)?;
    if created {
        sync_firewall(store)?;
    }
    let wanted = static_ip.parse::<Ipv4Addr>().ok();
    let ip = runtime(store, |tx| {
        collect_dead_leases(tx, &network.id)?;
        let ip = allocate(tx, network, wanted)?;
        set_lease(
            tx,
            &network.id,
            container_id,
            Some((
                &ip.to_string(),
                &format_mac(mac_for(ip)),
                holder.0,
                holder.1,
            )),
        )?;
        Ok(ip)
    })?;
    let path = format!("/proc/{pid}/ns/net");
    let netns = std::fs::File::open(&path).map_err(|e| NetworkError::io(&path, e))?;
    let interface = format!("eth{index}");
    let veth = format!("veth{:07x}", rand::random::<u32>() & 0x0fff_ffff);
    netlink.create_veth(
        &veth,
        bridge,
        &interface,
        std::os::fd::AsFd::as_fd(&netns),
        mac_for(ip),
    )?;
    let prefix = parse_subnet(&network.subnet)?.prefix_len();
    std::thread::scope(|s| {
        s.spawn(|| -> Result<(), NetworkError> {
            nix::sched::setns(std::os::fd::AsFd::as_fd(&netns), CloneFlags::CLONE_NEWNET)
                .map_err(|e| NetworkError::sys("setns(net)", e))?;
            let mut inside = Netlink::open()?;
            let index = inside.link_index(&interface)?.ok_or_else(|| {
                NetworkError::netlink(
                    interface.clone(),
                    std::io::Error::from_raw_os_error(libc::ENODEV),
                )
            })?;
            inside.add_address(index, ip, prefix, &format!("adding {ip} to {interface}"))?;
            inside.set_up(index, &format!("bringing {interface} up"))
        })
        .join()
        .map_err(|_| NetworkError::Invalid("the network thread panicked".into()))?
    })
}

/// `network disconnect`: removes the endpoint; on a running container
/// also its interface and lease.
pub fn disconnect(
    store: &Store,
    network: &str,
    target: &ConnectTarget,
) -> Result<(), NetworkError> {
    let network = find_network(store, network)?;
    let endpoints = container_endpoints(store, &target.id)?;
    if !endpoints.iter().any(|e| e.network_id == network.id) {
        return Err(NetworkError::NotAttached {
            container: target.id[..12].to_string(),
            network: network.name,
        });
    }
    if let (Some((pid, _, _)), Some(position)) = (
        target.running,
        endpoints.iter().position(|e| e.network_id == network.id),
    ) {
        let path = format!("/proc/{pid}/ns/net");
        if let Ok(netns) = std::fs::File::open(&path) {
            let interface = format!("eth{position}");
            let _ = std::thread::scope(|s| {
                s.spawn(|| -> Result<(), NetworkError> {
                    nix::sched::setns(std::os::fd::AsFd::as_fd(&netns), CloneFlags::CLONE_NEWNET)
                        .map_err(|e| NetworkError::sys("setns(net)", e))?;
                    let mut inside = Netlink::open()?;
                    if let Some(index) = inside.link_index(&interface)? {
                        inside.delete_link(index, &format!("deleting {interface}"))?;
                    }
                    Ok(())
                })
                .join()
            });
        }
    }
    delete_endpoint(store, &network.id, &target.id)
}
