//! What the snapshotter can fail with. The first four variants are
//! containerd's error classes (errdefs) and travel as the matching gRPC
//! codes, so containerd and its clients see `already exists`, `not found`,
//! `failed precondition` and `invalid argument` as from any snapshotter.

use std::path::{Path, PathBuf};

use crate::container::ContainerError;
use crate::image::{ImageError, LayerError};
use crate::registry::RegistryError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotterError {
    #[error("snapshot {0}: already exists")]
    AlreadyExists(String),
    #[error("{0}: not found")]
    NotFound(String),
    #[error("snapshot {key}: {reason}")]
    FailedPrecondition { key: String, reason: String },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("snapshot {key}: mount at {}: {reason}", path.display())]
    Mount {
        key: String,
        path: PathBuf,
        reason: String,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("snapshot {key}: record is corrupt: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("remote layer {digest} of {reference}: {reason}")]
    Remote {
        reference: String,
        digest: String,
        reason: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

impl SnapshotterError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        SnapshotterError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn precondition(key: &str, reason: impl Into<String>) -> Self {
        SnapshotterError::FailedPrecondition {
            key: key.to_string(),
            reason: reason.into(),
        }
    }

    /// The gRPC status code containerd maps back to its error class.
    pub fn code(&self) -> tonic::Code {
        match self {
            SnapshotterError::AlreadyExists(_) => tonic::Code::AlreadyExists,
            SnapshotterError::NotFound(_) => tonic::Code::NotFound,
            SnapshotterError::FailedPrecondition { .. } => tonic::Code::FailedPrecondition,
            SnapshotterError::InvalidArgument(_) => tonic::Code::InvalidArgument,
            _ => tonic::Code::Unknown,
        }
    }
}
