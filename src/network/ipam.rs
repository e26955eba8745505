//! Address management: the pools networks take their subnets from (as
//! Docker's: 172.17.0.0/16 for the default bridge, then one /16 per
//! network up to 172.31.0.0/16, then /20s of 192.168.0.0/16), never
//! overlapping another network or a route the host has; and the leases
//! of addresses inside a network.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::records::{leases, set_lease, Network};
use super::NetworkError;

/// Docker's default address pools, in order.
pub fn default_pools() -> impl Iterator<Item = Ipv4Net> {
    let big = (17u8..=31).filter_map(|b| Ipv4Net::new(Ipv4Addr::new(172, b, 0, 0), 16).ok());
    let small = (0u8..16).filter_map(|i| Ipv4Net::new(Ipv4Addr::new(192, 168, i * 16, 0), 20).ok());
    big.chain(small)
}

pub fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The first default pool that overlaps none of `taken` (other
/// networks' subnets and the host's routes).
pub fn choose_pool(taken: &[Ipv4Net]) -> Result<Ipv4Net, NetworkError> {
    default_pools()
        .find(|p| !taken.iter().any(|t| overlaps(p, t)))
        .ok_or(NetworkError::NoPool)
}

pub fn parse_subnet(text: &str) -> Result<Ipv4Net, NetworkError> {
    let net: Ipv4Net = text.parse().map_err(|_| {
        NetworkError::Invalid(format!(
            "invalid subnet {text:?}: expected an IPv4 CIDR such as 172.30.0.0/16"
        ))
    })?;
    if net.prefix_len() > 30 {
        return Err(NetworkError::Invalid(format!(
            "subnet {text} is too small: at most /30"
        )));
    }
    Ok(net.trunc())
}

/// Whether a process with this pid and start time (clock ticks since
/// boot, field 22 of /proc/PID/stat) still exists.
pub fn holder_alive(pid: i32, start: u64) -> bool {
    if pid <= 0 {
        return false;
    }
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(close) = text.rfind(')') else {
        return false;
    };
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    if matches!(fields.first(), Some(&"Z") | Some(&"X")) {
        return false;
    }
    fields.get(19).and_then(|f| f.parse::<u64>().ok()) == Some(start)
}

/// Clears the leases on `network` whose holder is gone (a monitor killed
/// with SIGKILL); returns the containers whose leases were collected.
pub fn collect_dead_leases(
    conn: &rusqlite::Connection,
    network_id: &str,
) -> Result<Vec<String>, NetworkError> {
    let mut collected = Vec::new();
    for (container, _, pid, start) in leases(conn, network_id)? {
        if !holder_alive(pid, start) {
            set_lease(conn, network_id, &container, None)?;
            collected.push(container);
        }
    }
    Ok(collected)
}

/// Picks an address on `network` for a lease: `wanted` if given (it must
/// be inside the subnet and free), else the lowest free one of the
/// range (or subnet), never the network, broadcast or gateway address.
/// Runs inside the caller's IMMEDIATE transaction.
pub fn allocate(
    conn: &rusqlite::Connection,
    network: &Network,
    wanted: Option<Ipv4Addr>,
) -> Result<Ipv4Addr, NetworkError> {
    let subnet = parse_subnet(&network.subnet)?;
    let gateway: Option<Ipv4Addr> = network.gateway.parse().ok();
    let used: std::collections::HashSet<Ipv4Addr> = leases(conn, &network.id)?
        .into_iter()
        .filter_map(|(_, ip, _, _)| ip.parse().ok())
        .collect();
    let usable =
        |ip: Ipv4Addr| ip != subnet.network() && ip != subnet.broadcast() && Some(ip) != gateway;
    if let Some(ip) = wanted {
        if !subnet.contains(&ip) || !usable(ip) {
            return Err(NetworkError::Invalid(format!(
                "invalid address {ip}: it does not belong to any of network {}'s subnets, or is its gateway",
                network.name
            )));
        }
        if used.contains(&ip) {
            return Err(NetworkError::AddressInUse {
                ip: ip.to_string(),
                network: network.name.clone(),
            });
        }
        return Ok(ip);
    }
    let range = if network.ip_range.is_empty() {
        subnet
    } else {
        parse_subnet(&network.ip_range)?
    };
    (u32::from(range.network())..=u32::from(range.broadcast()))
        .map(Ipv4Addr::from)
        .find(|ip| usable(*ip) && !used.contains(ip))
        .ok_or_else(|| NetworkError::Exhausted(network.name.clone()))
}

/// Docker's MAC for an address: 02:42 and the address's four bytes.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_skip_what_is_taken() {
        let first = choose_pool(&[]).unwrap();
        assert_eq!(first.to_string(), "172.17.0.0/16");
        let taken = vec![
            "172.17.0.0/16".parse().unwrap(),
            "172.18.5.0/24".parse().unwrap(),
        ];
        assert_eq!(choose_pool(&taken).unwrap().to_string(), "172.19.0.0/16");
        let all: Vec<Ipv4Net> = vec![
            "172.16.0.0/12".parse().unwrap(),
            "192.168.0.0/16".parse().unwrap(),
        ];
        assert!(matches!(choose_pool(&all), Err(NetworkError::NoPool)));
        assert_eq!(
            mac_for(Ipv4Addr::new(172, 17, 0, 2)),
            [2, 0x42, 172, 17, 0, 2]
        );
        assert!(parse_subnet("10.1.2.3/24").unwrap().to_string() == "10.1.2.0/24");
        assert!(parse_subnet("10.1.2.3").is_err());
    }
}
