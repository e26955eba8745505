//! `network create`, `rm`, `prune`, and the predefined networks
//! (`bridge`, `host`, `none`), made on first use.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::bridge::{delete_bridge, ensure_bridge};
use super::firewall::sync_firewall;
use super::ipam::{choose_pool, collect_dead_leases, parse_subnet};
use super::netlink::Netlink;
use super::records::{
    delete_network, find_network, insert_network, leases, list_networks, runtime, Network,
};
use super::NetworkError;
use crate::store::Store;

/// The default bridge's Linux name.
pub const DEFAULT_BRIDGE: &str = "strata0";

/// What `network create` takes.
#[derive(Debug, Clone, Default)]
pub struct CreateNetwork {
    pub name: String,
    pub driver: String,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn new_id() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Subnets in use: other networks' and the host's routes.
fn taken_subnets(store: &Store) -> Result<Vec<Ipv4Net>, NetworkError> {
    let mut taken: Vec<Ipv4Net> = list_networks(store)?
        .iter()
        .filter_map(|n| n.subnet.parse().ok())
        .collect();
    let mut netlink = Netlink::open()?;
    for (dest, len) in netlink.ipv4_routes()? {
        if let Ok(net) = Ipv4Net::new(dest, len) {
            taken.push(net);
        }
    }
    Ok(taken)
}

/// Makes `bridge`, `host` and `none` if the store has none yet.
pub fn ensure_predefined(store: &Store) -> Result<(), NetworkError> {
    let has: i64 = store.conn().query_row(
        "SELECT count(*) FROM networks WHERE name = 'bridge'",
        [],
        |r| r.get(0),
    )?;
    if has > 0 {
        return Ok(());
    }
    let pool = choose_pool(&taken_subnets(store)?)?;
    let gateway = pool.hosts().next().unwrap_or(pool.network());
    let options: BTreeMap<String, String> = [
        ("com.docker.network.bridge.default_bridge", "true"),
        ("com.docker.network.bridge.enable_icc", "true"),
        ("com.docker.network.bridge.enable_ip_masquerade", "true"),
        ("com.docker.network.bridge.host_binding_ipv4", "0.0.0.0"),
        ("com.docker.network.bridge.name", DEFAULT_BRIDGE),
        ("com.docker.network.driver.mtu", "1500"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let networks = [
        (
            "none",
            "null",
            String::new(),
            String::new(),
            String::new(),
            BTreeMap::new(),
        ),
        (
            "host",
            "host",
            String::new(),
            String::new(),
            String::new(),
            BTreeMap::new(),
        ),
        (
            "bridge",
            "bridge",
            pool.to_string(),
            gateway.to_string(),
            DEFAULT_BRIDGE.to_string(),
            options,
        ),
    ];
    for (name, driver, subnet, gateway, bridge, options) in networks {
        let n = Network {
            id: new_id(),
            name: name.into(),
            driver: driver.into(),
            created_at: now(),
            subnet,
            gateway,
            ip_range: String::new(),
            ipam_given: false,
            internal: false,
            bridge,
            labels: BTreeMap::new(),
            options,
        };
        match insert_network(store, &n) {
            Ok(()) | Err(NetworkError::Exists(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Docker's rule for network names.
fn validate_name(name: &str) -> Result<(), NetworkError> {
    let mut chars = name.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(NetworkError::Invalid(format!(
            "invalid network name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )));
    }
    Ok(())
}

/// `network create`: records the network and makes its bridge.
pub fn create_network(store: &Store, request: &CreateNetwork) -> Result<Network, NetworkError> {
    ensure_predefined(store)?;
    validate_name(&request.name)?;
    if !request.driver.is_empty() && request.driver != "bridge" {
        return Err(NetworkError::Invalid(format!(
            "plugin {:?} not found: strata has only the bridge driver",
            request.driver
        )));
    }
    if find_network(store, &request.name).is_ok_and(|n| n.name == request.name) {
        return Err(NetworkError::Exists(request.name.clone()));
    }
    let given = request.subnet.is_some();
    let subnet = match &request.subnet {
        Some(s) => {
            let net = parse_subnet(s)?;
            if let Some(other) = list_networks(store)?.into_iter().find(|n| {
                n.subnet
                    .parse::<Ipv4Net>()
                    .is_ok_and(|o| super::ipam::overlaps(&o, &net))
            }) {
                return Err(NetworkError::Invalid(format!(
                    "Pool overlaps with other one on this address space: {net} overlaps network {}",
                    other.name
                )));
            }
            net
        }
        None => {
            if request.gateway.is_some() || request.ip_range.is_some() {
                return Err(NetworkError::Invalid(
                    "--gateway and --ip-range need --subnet".into(),
                ));
            }
            choose_pool(&taken_subnets(store)?)?
        }
    };
    let gateway = match &request.gateway {
        Some(g) => {
            let ip: Ipv4Addr = g
                .parse()
                .map_err(|_| NetworkError::Invalid(format!("invalid gateway {g:?}")))?;
            if !subnet.contains(&ip) || ip == subnet.network() || ip == subnet.broadcast() {
                return Err(NetworkError::Invalid(format!(
                    "gateway {ip} is not a host address of subnet {subnet}"
                )));
            }
            ip
        }
        None => subnet.hosts().next().unwrap_or(subnet.network()),
    };
    let ip_range = match &request.ip_range {
        Some(r) => {
            let range = parse_subnet(r)?;
            if !subnet.contains(&range.network()) || !subnet.contains(&range.broadcast()) {
                return Err(NetworkError::Invalid(format!(
                    "ip range {range} is not inside subnet {subnet}"
                )));
            }
            range.to_string()
        }
        None => String::new(),
    };
    let id = new_id();
    let bridge = request
        .options
        .get("com.docker.network.bridge.name")
        .cloned()
        .unwrap_or_else(|| format!("br-{}", &id[..12]));
    if bridge.is_empty()
        || bridge.len() > 15
        || bridge.contains('/')
        || bridge.contains(char::is_whitespace)
    {
        return Err(NetworkError::Invalid(format!(
            "invalid bridge name {bridge:?}: at most 15 characters, no '/' or spaces"
        )));
    }
    if list_networks(store)?.iter().any(|n| n.bridge == bridge) {
        return Err(NetworkError::Invalid(format!(
            "bridge name {bridge} is used by another network"
        )));
    }
    let network = Network {
        id,
        name: request.name.clone(),
        driver: "bridge".into(),
        created_at: now(),
        subnet: subnet.to_string(),
        gateway: gateway.to_string(),
        ip_range,
        ipam_given: given,
        internal: request.internal,
        bridge,
        labels: request.labels.clone(),
        options: request.options.clone(),
    };
    insert_network(store, &network)?;
    let made = Netlink::open().and_then(|mut nl| ensure_bridge(&mut nl, &network));
    match made {
        Ok((_, created)) => {
            if created {
                if let Err(e) = sync_firewall(store) {
                    let _ = Netlink::open().and_then(|mut nl| delete_bridge(&mut nl, &network));
                    delete_network(store, &network.id)?;
                    return Err(e);
                }
            }
        }
        Err(e) => {
            delete_network(store, &network.id)?;
            return Err(e);
        }
    }
    Ok(network)
}

/// Whether any running container holds an address on the network (dead
/// holders' leases are collected first).
fn in_use(store: &Store, network: &Network) -> Result<bool, NetworkError> {
    runtime(store, |tx| {
        collect_dead_leases(tx, &network.id)?;
        Ok(!leases(tx, &network.id)?.is_empty())
    })
}

/// `network rm`: refused for predefined networks and while a running
/// container uses it; stopped containers lose their endpoint on it.
pub fn remove_network(store: &Store, name_or_id: &str) -> Result<Network, NetworkError> {
    let network = find_network(store, name_or_id)?;
    if network.is_predefined() {
        return Err(NetworkError::Predefined { name: network.name });
    }
    if in_use(store, &network)? {
        return Err(NetworkError::InUse {
            name: network.name.clone(),
            id: network.id.clone(),
        });
    }
    delete_network(store, &network.id)?;
    let mut netlink = Netlink::open()?;
    delete_bridge(&mut netlink, &network)?;
    sync_firewall(store)?;
    Ok(network)
}

/// `network prune`: removes every user-defined network no running
/// container uses; returns their names.
pub fn prune_networks(store: &Store) -> Result<Vec<String>, NetworkError> {
    let mut removed = Vec::new();
    for n in list_networks(store)? {
        if n.is_predefined() || in_use(store, &n)? {
            continue;
        }
        removed.push(remove_network(store, &n.id)?.name);
    }
    Ok(removed)
}
