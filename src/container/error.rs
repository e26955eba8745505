use std::path::PathBuf;

use crate::image::{ImageError, LayerError};
use crate::store::StoreError;

/// Errors of containers and volumes. Each names the container, path or
/// operation involved.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("No such container: {0}")]
    NotFound(String),
    #[error(
        "container name {name:?} is ambiguous: it matches {count} containers; give more of the ID"
    )]
    Ambiguous { name: String, count: usize },
    #[error("Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name.")]
    NameInUse { name: String, id: String },
    #[error("Invalid container name ({0}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidName(String),
    #[error("create {0}: {0:?} includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path")]
    InvalidVolumeName(String),
    #[error("container {id}: its view is mounted at {path}; strata umount it first")]
    ViewMounted { id: String, path: String },
    #[error("container {id} is {state}: {what}")]
    BadState {
        id: String,
        state: String,
        what: String,
    },
    #[error("You cannot remove a running container {0}. Stop the container before attempting removal or force remove")]
    RemoveRunning(String),
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("{0}")]
    Unsupported(String),
    /// Docker's daemon refuses an exec in a paused container.
    #[error("Container {0} is paused, unpause the container before exec")]
    ExecPaused(String),
    /// A flag's value Docker refuses, in Docker's words (which name the
    /// flag and the value).
    #[error("{0}")]
    Refused(String),
    #[error("mounting the container's view: {0}")]
    Mount(String),
    #[error("{message}")]
    Launch { code: i32, message: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{op}: {source}")]
    Sys { op: String, source: nix::Error },
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("container {id}: record is corrupt: {reason}")]
    Corrupt { id: String, reason: String },
    #[error("monitor of container {id}: {reason}")]
    Monitor { id: String, reason: String },
    #[error("the container's path {path:?} escapes its root or is not allowed here: {reason}")]
    UnsafePath { path: String, reason: String },
    #[error("No such volume: {0}")]
    NoSuchVolume(String),
    #[error("volume {name} is in use by container {container}")]
    VolumeInUse { name: String, container: String },
    #[error(transparent)]
    Network(#[from] crate::network::NetworkError),
    #[error(transparent)]
    Limit(#[from] super::launch::limits::LimitError),
    #[error(transparent)]
    Device(#[from] super::launch::devices::DeviceError),
    #[error(transparent)]
    Seccomp(#[from] super::launch::seccomp::SeccompError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ContainerError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ContainerError::Io {
            path: path.into(),
            source,
        }
    }
    pub fn sys(op: impl Into<String>, source: nix::Error) -> Self {
        ContainerError::Sys {
            op: op.into(),
            source,
        }
    }
}
