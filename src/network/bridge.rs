//! The Linux bridge behind a network: made when the network is created
//! (or first used in this namespace), with the gateway address on it;
//! IPv4 forwarding is turned on for networks with outbound access.

use std::net::Ipv4Addr;

use super::ipam::parse_subnet;
use super::netlink::Netlink;
use super::records::Network;
use super::NetworkError;

/// The bridge's index, and whether it was made now (the firewall then
/// needs the network's rules).
pub fn ensure_bridge(
    netlink: &mut Netlink,
    network: &Network,
) -> Result<(u32, bool), NetworkError> {
    if let Some(index) = netlink.link_index(&network.bridge)? {
        return Ok((index, false));
    }
    let index = match netlink.create_bridge(&network.bridge) {
        Ok(i) => i,
        // Another start made it meanwhile.
        Err(NetworkError::Netlink { source, .. })
            if source.raw_os_error() == Some(libc::EEXIST) =>
        {
            return netlink
                .link_index(&network.bridge)?
                .map(|i| (i, false))
                .ok_or_else(|| {
                    NetworkError::netlink(format!("bridge {}", network.bridge), source)
                });
        }
        Err(e) => return Err(e),
    };
    let subnet = parse_subnet(&network.subnet)?;
    let gateway: Ipv4Addr = network.gateway.parse().map_err(|_| NetworkError::Corrupt {
        id: network.id.clone(),
        reason: format!("gateway {:?}", network.gateway),
    })?;
    match netlink.add_address(
        index,
        gateway,
        subnet.prefix_len(),
        &format!("adding {gateway} to bridge {}", network.bridge),
    ) {
        Err(NetworkError::Netlink { source, .. })
            if source.raw_os_error() == Some(libc::EEXIST) => {}
        other => other?,
    }
    if !network.internal {
        let path = "/proc/sys/net/ipv4/ip_forward";
        if std::fs::read_to_string(path)
            .map(|v| v.trim() != "1")
            .unwrap_or(true)
        {
            std::fs::write(path, "1").map_err(|e| NetworkError::io(path, e))?;
        }
    }
    Ok((index, true))
}

/// Deletes the network's bridge if it exists here.
pub fn delete_bridge(netlink: &mut Netlink, network: &Network) -> Result<(), NetworkError> {
    if let Some(index) = netlink.link_index(&network.bridge)? {
        netlink.delete_link(index, &format!("deleting bridge {}", network.bridge))?;
    }
    Ok(())
}
