//! What strata is and what it runs on: the data behind `strata version`
//! and `strata info` (the CLI lays it out as Docker does). Field names
//! are Docker's where the meaning is the same, so `--format` templates
//! written for Docker work (`{{.ServerVersion}}`, `{{.Server.Version}}`,
//! `{{.CgroupVersion}}`); what strata has and Docker does not (the
//! store's deduplication) is added under names of its own, and what
//! strata does not have (an API, swarm, a daemon ID) is left out rather
//! than invented.

mod host;
mod info;
mod version;

pub use host::Host;
pub use info::{
    system_info, ContainerCounts, IndexConfig, Plugins, RegistryConfig, Runtime, StoreInfo,
    SystemInfo,
};
pub use version::{version_info, ClientVersion, Component, ServerVersion, VersionInfo};

/// What `info` could not read.
#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Container(#[from] crate::container::ContainerError),
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
}

/// strata's version (the crate's).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The compiler strata was built with (`rustc -V`, recorded by build.rs).
pub const RUST_VERSION: &str = env!("STRATA_RUSTC_VERSION");
