//! strata's nftables table, `ip strata`: masquerading for each network
//! with outbound access, isolation of internal networks and between
//! networks, and DNAT for published ports. No other table is touched.
//!
//! The table is rebuilt whole from the store (networks and published
//! ports) in one atomic `nft -j` batch, under a lock, whenever it must
//! change: when a bridge is made or a network removed, and when a
//! container that publishes ports starts or stops. Whatever the order of
//! concurrent rebuilds, the last one reads every committed change, and a
//! rebuild also drops what a killed monitor left. Containers that publish
//! nothing never run `nft`.
//!
//! Loopback traffic to a published port (`127.0.0.1:PORT`) cannot be
//! DNATed to another namespace without `route_localnet`; as with Docker,
//! it goes to the userland proxy (`proxy/`), which also holds the host
//! port. Traffic arriving from a bridge (a container reaching a published
//! port through the host's address) is left to the proxy too, so replies
//! take the same path back (hairpin).

use serde_json::{json, Value};

use super::records::{all_published, list_networks, Network, PublishedPort};
use super::NetworkError;
use crate::store::Store;

pub const TABLE: &str = "strata";

fn rule(chain: &str, expr: Vec<Value>) -> Value {
    json!({"add": {"rule": {"family": "ip", "table": TABLE, "chain": chain, "expr": expr}}})
}

fn matches(left: Value, op: &str, right: Value) -> Value {
    json!({"match": {"op": op, "left": left, "right": right}})
}

fn field(protocol: &str, name: &str) -> Value {
    json!({"payload": {"protocol": protocol, "field": name}})
}

fn prefix(cidr: &str) -> Value {
    let (addr, len) = cidr.split_once('/').unwrap_or((cidr, "32"));
    json!({"prefix": {"addr": addr, "len": len.parse::<u32>().unwrap_or(32)}})
}

fn meta(key: &str) -> Value {
    json!({"meta": {"key": key}})
}

fn base_chain(name: &str, kind: &str, hook: &str, prio: i32) -> Value {
    json!({"add": {"chain": {"family": "ip", "table": TABLE, "name": name, "type": kind, "hook": hook, "prio": prio, "policy": "accept"}}})
}

/// The whole table for these networks and ports, as one nft JSON batch
/// (deleting the old table first).
pub fn ruleset(networks: &[Network], ports: &[PublishedPort]) -> Value {
    let table = json!({"family": "ip", "name": TABLE});
    let mut cmds = vec![
        json!({"add": {"table": table}}),
        json!({"delete": {"table": table}}),
        json!({"add": {"table": table}}),
        base_chain("prerouting", "nat", "prerouting", -100),
        base_chain("output", "nat", "output", -100),
        base_chain("postrouting", "nat", "postrouting", 100),
        base_chain("forward", "filter", "forward", 0),
        json!({"add": {"chain": {"family": "ip", "table": TABLE, "name": "ports"}}}),
        rule(
            "prerouting",
            vec![
                matches(
                    json!({"fib": {"result": "type", "flags": ["daddr"]}}),
                    "==",
                    json!("local"),
                ),
                json!({"jump": {"target": "ports"}}),
            ],
        ),
        rule(
            "output",
            vec![
                matches(field("ip", "daddr"), "!=", prefix("127.0.0.0/8")),
                matches(
                    json!({"fib": {"result": "type", "flags": ["daddr"]}}),
                    "==",
                    json!("local"),
                ),
                json!({"jump": {"target": "ports"}}),
            ],
        ),
    ];
    let bridged: Vec<&Network> = networks
        .iter()
        .filter(|n| n.driver == "bridge" && !n.bridge.is_empty() && !n.subnet.is_empty())
        .collect();
    for n in &bridged {
        if n.internal {
            // Nothing in or out but between the network's own members.
            cmds.push(rule(
                "forward",
                vec![
                    matches(meta("iifname"), "==", json!(n.bridge)),
                    matches(meta("oifname"), "!=", json!(n.bridge)),
                    json!({"drop": null}),
                ],
            ));
            cmds.push(rule(
                "forward",
                vec![
                    matches(meta("oifname"), "==", json!(n.bridge)),
                    matches(meta("iifname"), "!=", json!(n.bridge)),
                    json!({"drop": null}),
                ],
            ));
            continue;
        }
        cmds.push(rule(
            "postrouting",
            vec![
                matches(field("ip", "saddr"), "==", prefix(&n.subnet)),
                matches(meta("oifname"), "!=", json!(n.bridge)),
                json!({"masquerade": null}),
            ],
        ));
        // Networks do not reach each other (Docker's isolation).
        for other in bridged.iter().filter(|o| o.id != n.id) {
            cmds.push(rule(
                "forward",
                vec![
                    matches(meta("iifname"), "==", json!(n.bridge)),
                    matches(meta("oifname"), "==", json!(other.bridge)),
                    json!({"drop": null}),
                ],
            ));
        }
    }
    let bridges: Vec<Value> = bridged.iter().map(|n| json!(n.bridge)).collect();
    // The table is `ip` (IPv4): a host port on IPv6 is served by the
    // proxy alone, as Docker's docker-proxy serves it for a container
    // without IPv6.
    for p in ports.iter().filter(|p| !p.host_ip.contains(':')) {
        let mut expr = Vec::new();
        if !bridges.is_empty() {
            expr.push(matches(meta("iifname"), "!=", json!({"set": bridges})));
        }
        if p.host_ip != "0.0.0.0" && !p.host_ip.is_empty() {
            expr.push(matches(field("ip", "daddr"), "==", json!(p.host_ip)));
        }
        expr.push(matches(field(&p.proto, "dport"), "==", json!(p.host_port)));
        expr.push(json!({"dnat": {"addr": p.target_ip, "port": p.container_port}}));
        cmds.push(rule("ports", expr));
    }
    json!({"nftables": cmds})
}

/// Rebuilds the table from the store (see the module's header).
pub fn sync_firewall(store: &Store) -> Result<(), NetworkError> {
    let lock_path = store.root().join("network.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| NetworkError::io(&lock_path, e))?;
    let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| NetworkError::sys("flock network.lock", e))?;
    let networks = list_networks(store)?;
    let mut ports = all_published(store.conn())?;
    // pasta's ports (an ordinary user's, no target address) are pasta's
    // own listening sockets.
    ports.retain(|p| !p.target_ip.is_empty());
    let batch = ruleset(&networks, &ports).to_string();
    nftables::helper::apply_ruleset_raw(&batch, None::<&str>, std::iter::empty::<&str>())
        .map_err(|e| NetworkError::Firewall(e.to_string()))?;
    Ok(())
}

/// Removes strata's table (when the last network with a bridge goes).
pub fn delete_table() -> Result<(), NetworkError> {
    let table = json!({"family": "ip", "name": TABLE});
    let batch = json!({"nftables": [{"add": {"table": table}}, {"delete": {"table": table}}]});
    nftables::helper::apply_ruleset_raw(
        &batch.to_string(),
        None::<&str>,
        std::iter::empty::<&str>(),
    )
    .map_err(|e| NetworkError::Firewall(e.to_string()))?;
    Ok(())
}
