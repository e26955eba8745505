//! save/load (docker-archive, OCI layout as a directory or a tar) and
//! import of root filesystem tarballs.
//!
//! Loading reads an archive in one pass, in whatever order its members
//! come: every large member is ingested as a layer as it streams past
//! (each layer is hashed anyway), small members are kept in memory, and
//! only then are the manifests read and every digest, size and diff_id
//! checked. Everything is staged and published in one transaction, so a
//! failed or interrupted load leaves no image, layer or row behind.

mod import;
mod load;
mod save;

pub use import::{import_rootfs, ImportOptions};
pub use load::{load_archive, load_directory, LoadReport, LoadedImage};
pub use save::{save_images, SaveFormat};

use crate::image::{ImageError, LayerError};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("reading archive: {0}")]
    Io(#[from] std::io::Error),
    #[error("{path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("layer {member}: {source}")]
    Layer { member: String, source: LayerError },
    #[error("invalid archive: {0}")]
    Invalid(String),
    /// An image (or platform) for another operating system: Docker's
    /// "cannot load windows image on linux".
    #[error("{0}")]
    ForeignOs(String),
    #[error("{0}")]
    Change(#[from] crate::image::changes::ChangeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Reference(#[from] crate::reference::ReferenceError),
}

impl From<LayerError> for ArchiveError {
    fn from(e: LayerError) -> Self {
        ArchiveError::Layer {
            member: "stream".into(),
            source: e,
        }
    }
}

pub use crate::image::publish::uncompressed_manifest;
