use std::path::PathBuf;

use crate::store::StoreError;

/// Errors of networks, endpoints and published ports. Each names the
/// network, container, address or port involved; the messages follow
/// Docker's where Docker has one.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("network {0} not found")]
    NotFound(String),
    #[error("network with name {0} already exists")]
    Exists(String),
    #[error("network name {0:?} is ambiguous: it matches {1} networks; give more of the ID")]
    Ambiguous(String, usize),
    #[error("{0}")]
    Invalid(String),
    #[error("error while removing network: network {name} id {id} has active endpoints")]
    InUse { name: String, id: String },
    #[error("{name} is a pre-defined network and cannot be removed")]
    Predefined { name: String },
    #[error("container {container} is already attached to network {network}")]
    AlreadyAttached { container: String, network: String },
    #[error("container {container} is not connected to network {network}")]
    NotAttached { container: String, network: String },
    #[error("no available IPv4 addresses on network {0}")]
    Exhausted(String),
    #[error("address {ip} is already in use on network {network}")]
    AddressInUse { ip: String, network: String },
    #[error("could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network")]
    NoPool,
    #[error("driver failed programming external connectivity on endpoint {container}: Bind for {addr} failed: port is already allocated")]
    PortAllocated { container: String, addr: String },
    #[error("{what}: {source}")]
    Netlink {
        what: String,
        source: std::io::Error,
    },
    #[error("nftables (table ip strata): {0}")]
    Firewall(String),
    #[error("{op}: {source}")]
    Sys { op: String, source: nix::Error },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("network record {id}: {reason}")]
    Corrupt { id: String, reason: String },
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl NetworkError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        NetworkError::Io {
            path: path.into(),
            source,
        }
    }
    pub fn sys(op: impl Into<String>, source: nix::Error) -> Self {
        NetworkError::Sys {
            op: op.into(),
            source,
        }
    }
    pub fn netlink(what: impl Into<String>, source: std::io::Error) -> Self {
        NetworkError::Netlink {
            what: what.into(),
            source,
        }
    }
}
