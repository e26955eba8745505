//! The distribution-spec client: pull, push, login/logout and search
//! against OCI registries (Docker Hub, distribution, Harbor, Zot, ...).
//!
//! Guarantees: every manifest, config and layer is verified against its
//! digest and size before it is used or recorded; a layer is streamed from
//! the network into the store (decompressed, hashed and staged on the
//! way) without a temporary copy of the blob; nothing partial is ever
//! listed, because an image is recorded only after all of its layers.
//! Credentials never follow a redirect to another host.

mod auth;
mod blob;
pub mod client;
mod compress;
pub mod credentials;
mod error;
mod layer;
mod login;
pub mod manifest;
mod pull;
mod push;
mod search;
mod settings;
mod upload;

pub use client::{ClientOptions, RegistryClient};
pub use credentials::Credentials;
pub use error::RegistryError;
pub use layer::{fetch_layer, FetchedLayer};
pub use login::{login, logout, normalize_server};
pub use manifest::Platform;
pub use pull::{list_tags, pull, pull_image, PullEvent, PullOptions, PullOutcome};
pub use push::{push, PushCompression, PushEvent, PushOptions, PushOutcome};
pub use search::{search, SearchResult};
pub use settings::RegistrySettings;
