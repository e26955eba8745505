//! Networks: bridge networks and their address leases, veth pairs in
//! each container's namespace (netlink), published ports (an nftables
//! table of strata's own, `ip strata`, and a userland proxy), the DNS
//! server at 127.0.0.11, and the hosts and resolv.conf files. See
//! docs/network.md.
//!
//! Layers: `records` and `ipam` keep state in the store; `netlink`,
//! `bridge` and `firewall` change the kernel's; `sandbox` is what a
//! container's monitor holds while it runs; `manage` and `endpoints`
//! serve the commands.

mod bridge;
pub mod config;
pub mod dns;
mod endpoints;
mod error;
pub mod etc_files;
pub mod firewall;
mod helper;
pub mod inspect;
pub mod ipam;
mod manage;
pub mod netlink;
pub mod pasta;
mod proxy;
pub mod records;
mod sandbox;
pub mod slirp4netns;
mod sys;

pub use config::{
    check_extra_host, parse_expose, parse_mac, parse_publish, Link, NetworkConfig, PortBinding,
};
pub use endpoints::{
    collect_container, connect, container_address, container_networks, disconnect,
    forget_container, plan_endpoint, published_ports, record_endpoint, ConnectOptions,
    ConnectTarget, PlannedEndpoint,
};
pub use error::NetworkError;
pub use helper::Helper;
pub use manage::{
    create_network, ensure_predefined, prune_networks, remove_network, CreateNetwork,
    DEFAULT_BRIDGE,
};
pub use records::{
    find_network, list_networks, network_endpoints, Endpoint, Network, PublishedPort,
};
pub use sandbox::{new_namespace, Attachment, Sandbox};

/// The store's setting for the network of containers created without
/// `--network`: `"default-network"` in `<root>/settings.json` (e.g.
/// `{"default-network": "host"}`); None (the default bridge) without.
pub fn default_network(store: &crate::store::Store) -> Option<String> {
    let text = std::fs::read_to_string(store.root().join("settings.json")).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value
        .get("default-network")?
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}
