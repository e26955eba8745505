//! Network records in the store: the networks (with their subnet,
//! gateway and bridge), each container's endpoints on them (and, while it
//! runs, the address it leases and the monitor holding the lease), and
//! the ports running containers publish.
//!
//! Leases are taken in IMMEDIATE transactions and a unique index on
//! (network, address) backs them, so two starts never get one address.

use std::collections::BTreeMap;

use rusqlite::{params, OptionalExtension, TransactionBehavior};
use serde::Serialize;

use super::NetworkError;
use crate::store::Store;

/// A network as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct Network {
    /// 64 hex digits.
    pub id: String,
    pub name: String,
    /// `bridge`, or `host` / `null` for the predefined `host` and `none`.
    pub driver: String,
    pub created_at: String,
    /// `172.18.0.0/16`; empty for host and none.
    pub subnet: String,
    pub gateway: String,
    pub ip_range: String,
    /// Subnet, gateway or range given by the user (Docker shows IPAM
    /// config only then... and always for bridge networks).
    pub ipam_given: bool,
    pub internal: bool,
    /// The Linux bridge's name.
    pub bridge: String,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

impl Network {
    pub fn short_id(&self) -> &str {
        &self.id[..12.min(self.id.len())]
    }
    /// One of Docker's three predefined networks.
    pub fn is_predefined(&self) -> bool {
        matches!(self.name.as_str(), "bridge" | "host" | "none")
    }
}

/// A container's membership of a network, and its lease while it runs.
#[derive(Debug, Clone, Serialize)]
pub struct Endpoint {
    pub network_id: String,
    pub container_id: String,
    pub endpoint_id: String,
    pub aliases: Vec<String>,
    /// `--link` entries as `NAME:ALIAS`, for inspect.
    pub links: Vec<String>,
    pub static_ip: String,
    pub static_mac: String,
    /// The leased address and MAC while the container runs.
    pub ip: Option<String>,
    pub mac: Option<String>,
    pub holder_pid: i32,
    pub holder_start: u64,
}

/// A published port of a running container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublishedPort {
    pub container_id: String,
    pub proto: String,
    pub container_port: u16,
    /// `0.0.0.0` for every address.
    pub host_ip: String,
    pub host_port: u16,
    /// The container's address the port forwards to.
    pub target_ip: String,
}

const NETWORK_COLUMNS: &str = "id, name, driver, created_at, subnet, gateway, ip_range, ipam_given, internal, bridge, labels, options";

fn network_from_row(r: &rusqlite::Row) -> rusqlite::Result<Network> {
    let labels: String = r.get(10)?;
    let options: String = r.get(11)?;
    Ok(Network {
        id: r.get(0)?,
        name: r.get(1)?,
        driver: r.get(2)?,
        created_at: r.get(3)?,
        subnet: r.get(4)?,
        gateway: r.get(5)?,
        ip_range: r.get(6)?,
        ipam_given: r.get(7)?,
        internal: r.get(8)?,
        bridge: r.get(9)?,
        labels: serde_json::from_str(&labels).unwrap_or_default(),
        options: serde_json::from_str(&options).unwrap_or_default(),
    })
}

pub fn insert_network(store: &Store, n: &Network) -> Result<(), NetworkError> {
    let r = store.conn().execute(
        &format!("INSERT INTO networks ({NETWORK_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"),
        params![
            n.id,
            n.name,
            n.driver,
            n.created_at,
            n.subnet,
            n.gateway,
            n.ip_range,
            n.ipam_given,
            n.internal,
            n.bridge,
            serde_json::to_string(&n.labels).unwrap_or_else(|_| "{}".into()),
            serde_json::to_string(&n.options).unwrap_or_else(|_| "{}".into()),
        ],
    );
    match r {
        Ok(_) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Err(NetworkError::Exists(n.name.clone()))
        }
        Err(e) => Err(e.into()),
    }
}

pub fn list_networks(store: &Store) -> Result<Vec<Network>, NetworkError> {
    let mut stmt = store.conn().prepare(&format!(
        "SELECT {NETWORK_COLUMNS} FROM networks ORDER BY created_at"
    ))?;
    let rows = stmt.query_map([], network_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn get_network_by_id(store: &Store, id: &str) -> Result<Network, NetworkError> {
    store
        .conn()
        .query_row(
            &format!("SELECT {NETWORK_COLUMNS} FROM networks WHERE id = ?1"),
            [id],
            network_from_row,
        )
        .optional()?
        .ok_or_else(|| NetworkError::NotFound(id.to_string()))
}

/// Finds a network by name, full ID or unique ID prefix (names first,
/// as Docker does).
pub fn find_network(store: &Store, name_or_id: &str) -> Result<Network, NetworkError> {
    let by_name = store
        .conn()
        .query_row(
            &format!("SELECT {NETWORK_COLUMNS} FROM networks WHERE name = ?1 OR id = ?1"),
            [name_or_id],
            network_from_row,
        )
        .optional()?;
    if let Some(n) = by_name {
        return Ok(n);
    }
    if name_or_id.is_empty() || !name_or_id.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(NetworkError::NotFound(name_or_id.to_string()));
    }
    let mut stmt = store.conn().prepare(&format!(
        "SELECT {NETWORK_COLUMNS} FROM networks WHERE substr(id, 1, ?2) = ?1"
    ))?;
    let found: Vec<Network> = stmt
        .query_map(
            params![name_or_id, name_or_id.len() as i64],
            network_from_row,
        )?
        .collect::<Result<_, _>>()?;
    match found.len() {
        0 => Err(NetworkError::NotFound(name_or_id.to_string())),
        1 => Ok(found
            .into_iter()
            .next()
            .ok_or_else(|| NetworkError::NotFound(name_or_id.into()))?),
        n => Err(NetworkError::Ambiguous(name_or_id.to_string(), n)),
    }
}

pub fn delete_network(store: &Store, id: &str) -> Result<(), NetworkError> {
    store
        .conn()
        .execute("DELETE FROM endpoints WHERE network_id = ?1", [id])?;
    store
        .conn()
        .execute("DELETE FROM networks WHERE id = ?1", [id])?;
    Ok(())
}

const ENDPOINT_COLUMNS: &str = "network_id, container_id, endpoint_id, aliases, links, static_ip, static_mac, ip, mac, holder_pid, holder_start";

fn endpoint_from_row(r: &rusqlite::Row) -> rusqlite::Result<Endpoint> {
    let aliases: String = r.get(3)?;
    let links: String = r.get(4)?;
    Ok(Endpoint {
        network_id: r.get(0)?,
        container_id: r.get(1)?,
        endpoint_id: r.get(2)?,
        aliases: serde_json::from_str(&aliases).unwrap_or_default(),
        links: serde_json::from_str(&links).unwrap_or_default(),
        static_ip: r.get(5)?,
        static_mac: r.get(6)?,
        ip: r.get(7)?,
        mac: r.get(8)?,
        holder_pid: r.get(9)?,
        holder_start: r.get::<_, i64>(10)? as u64,
    })
}

/// Records that a container belongs to a network (at create, or
/// `network connect`).
pub fn insert_endpoint(store: &Store, e: &Endpoint) -> Result<(), NetworkError> {
    store.conn().execute(
        &format!("INSERT INTO endpoints ({ENDPOINT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, NULL, 0, 0)"),
        params![
            e.network_id,
            e.container_id,
            e.endpoint_id,
            serde_json::to_string(&e.aliases).unwrap_or_else(|_| "[]".into()),
            serde_json::to_string(&e.links).unwrap_or_else(|_| "[]".into()),
            e.static_ip,
            e.static_mac,
        ],
    )?;
    Ok(())
}

pub fn delete_endpoint(
    store: &Store,
    network_id: &str,
    container_id: &str,
) -> Result<(), NetworkError> {
    store.conn().execute(
        "DELETE FROM endpoints WHERE network_id = ?1 AND container_id = ?2",
        [network_id, container_id],
    )?;
    Ok(())
}

/// A container's endpoints, its first network first.
pub fn container_endpoints(
    store: &Store,
    container_id: &str,
) -> Result<Vec<Endpoint>, NetworkError> {
    let mut stmt = store.conn().prepare(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE container_id = ?1 ORDER BY rowid"
    ))?;
    let rows = stmt.query_map([container_id], endpoint_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn network_endpoints(store: &Store, network_id: &str) -> Result<Vec<Endpoint>, NetworkError> {
    let mut stmt = store.conn().prepare(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE network_id = ?1 ORDER BY rowid"
    ))?;
    let rows = stmt.query_map([network_id], endpoint_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Runs `f` in an IMMEDIATE transaction.
pub fn immediate<T>(
    store: &Store,
    f: impl FnOnce(&rusqlite::Transaction) -> Result<T, NetworkError>,
) -> Result<T, NetworkError> {
    let tx = rusqlite::Transaction::new_unchecked(store.conn(), TransactionBehavior::Immediate)?;
    let out = f(&tx)?;
    tx.commit()?;
    Ok(out)
}

/// [`immediate`] for rows that describe running containers only (leases,
/// published ports): committed without an fsync ([`Store::relaxed`]), as
/// container states are. A power loss kills every holder with them.
pub fn runtime<T>(
    store: &Store,
    f: impl FnOnce(&rusqlite::Transaction) -> Result<T, NetworkError>,
) -> Result<T, NetworkError> {
    store.relaxed(|| immediate(store, f))
}

/// Sets (or with `None`, clears) an endpoint's lease.
pub fn set_lease(
    conn: &rusqlite::Connection,
    network_id: &str,
    container_id: &str,
    lease: Option<(&str, &str, i32, u64)>,
) -> Result<(), NetworkError> {
    let (ip, mac, pid, start) = match lease {
        Some((ip, mac, pid, start)) => (Some(ip), Some(mac), pid, start as i64),
        None => (None, None, 0, 0),
    };
    conn.execute(
        "UPDATE endpoints SET ip = ?3, mac = ?4, holder_pid = ?5, holder_start = ?6 WHERE network_id = ?1 AND container_id = ?2",
        params![network_id, container_id, ip, mac, pid, start],
    )?;
    Ok(())
}

/// Addresses leased on a network, with their holders.
pub fn leases(
    conn: &rusqlite::Connection,
    network_id: &str,
) -> Result<Vec<(String, String, i32, u64)>, NetworkError> {
    let mut stmt = conn.prepare(
        "SELECT container_id, ip, holder_pid, holder_start FROM endpoints WHERE network_id = ?1 AND ip IS NOT NULL",
    )?;
    let rows = stmt.query_map([network_id], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, i64>(3)? as u64))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn insert_published(
    conn: &rusqlite::Connection,
    p: &PublishedPort,
) -> Result<(), NetworkError> {
    conn.execute(
        "INSERT OR REPLACE INTO published_ports (container_id, proto, container_port, host_ip, host_port, target_ip) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![p.container_id, p.proto, p.container_port, p.host_ip, p.host_port, p.target_ip],
    )?;
    Ok(())
}

fn published_from_row(r: &rusqlite::Row) -> rusqlite::Result<PublishedPort> {
    Ok(PublishedPort {
        container_id: r.get(0)?,
        proto: r.get(1)?,
        container_port: r.get(2)?,
        host_ip: r.get(3)?,
        host_port: r.get(4)?,
        target_ip: r.get(5)?,
    })
}

/// Every published port (of every running container).
pub fn all_published(conn: &rusqlite::Connection) -> Result<Vec<PublishedPort>, NetworkError> {
    let mut stmt = conn.prepare(
        "SELECT container_id, proto, container_port, host_ip, host_port, target_ip FROM published_ports ORDER BY host_port, proto",
    )?;
    let rows = stmt.query_map([], published_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn container_published(
    store: &Store,
    container_id: &str,
) -> Result<Vec<PublishedPort>, NetworkError> {
    let mut stmt = store.conn().prepare(
        "SELECT container_id, proto, container_port, host_ip, host_port, target_ip FROM published_ports WHERE container_id = ?1 ORDER BY container_port, proto, host_ip",
    )?;
    let rows = stmt.query_map([container_id], published_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn delete_published(
    conn: &rusqlite::Connection,
    container_id: &str,
) -> Result<usize, NetworkError> {
    Ok(conn.execute(
        "DELETE FROM published_ports WHERE container_id = ?1",
        [container_id],
    )?)
}
