//! `network inspect` and `network ls` data, in Docker's shapes.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::ipam::collect_dead_leases;
use super::records::{find_network, list_networks, network_endpoints, runtime, Network};
use super::NetworkError;
use crate::store::Store;

/// Docker's `network inspect` object.
pub fn inspect_network(store: &Store, name_or_id: &str) -> Result<Value, NetworkError> {
    super::manage::ensure_predefined(store)?;
    let n = find_network(store, name_or_id)?;
    runtime(store, |tx| collect_dead_leases(tx, &n.id).map(drop))?;
    let mut containers = BTreeMap::new();
    for e in network_endpoints(store, &n.id)? {
        let Some(ip) = &e.ip else { continue };
        let name: String = store
            .conn()
            .query_row(
                "SELECT name FROM containers WHERE id = ?1",
                [&e.container_id],
                |r| r.get(0),
            )
            .unwrap_or_default();
        let prefix = n.subnet.split_once('/').map(|(_, p)| p).unwrap_or("32");
        containers.insert(
            e.container_id.clone(),
            json!({
                "Name": name,
                "EndpointID": e.endpoint_id,
                "MacAddress": e.mac.clone().unwrap_or_default(),
                "IPv4Address": format!("{ip}/{prefix}"),
                "IPv6Address": "",
            }),
        );
    }
    Ok(network_json(&n, json!(containers)))
}

fn network_json(n: &Network, containers: Value) -> Value {
    let config: Value = if n.subnet.is_empty() {
        json!([])
    } else if n.name == "bridge" {
        json!([{"Subnet": n.subnet}])
    } else {
        let mut c = json!({"Subnet": n.subnet});
        if !n.ip_range.is_empty() {
            c["IPRange"] = json!(n.ip_range);
        }
        c["Gateway"] = json!(n.gateway);
        json!([c])
    };
    json!({
        "Name": n.name,
        "Id": n.id,
        "Created": n.created_at,
        "Scope": "local",
        "Driver": n.driver,
        "EnableIPv6": false,
        "IPAM": {
            "Driver": "default",
            "Options": if n.is_predefined() { Value::Null } else { json!({}) },
            "Config": config,
        },
        "Internal": n.internal,
        "Attachable": false,
        "Ingress": false,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Containers": containers,
        "Options": n.options,
        "Labels": n.labels,
    })
}

/// The rows of `network ls`, as `--format` fields.
pub fn list_rows(store: &Store) -> Result<Vec<(Network, Value)>, NetworkError> {
    super::manage::ensure_predefined(store)?;
    let mut networks = list_networks(store)?;
    networks.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(networks
        .into_iter()
        .map(|n| {
            let labels = n
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            let created = chrono::DateTime::parse_from_rfc3339(&n.created_at)
                .map(|t| {
                    t.with_timezone(&chrono::Utc)
                        .format("%Y-%m-%d %H:%M:%S%.9f +0000 UTC")
                        .to_string()
                })
                .unwrap_or_default();
            let row = json!({
                "CreatedAt": created,
                "Driver": n.driver,
                "ID": n.id,
                "IPv6": "false",
                "Internal": n.internal.to_string(),
                "Labels": labels,
                "Name": n.name,
                "Scope": "local",
            });
            (n, row)
        })
        .collect())
}
