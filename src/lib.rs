//! strata: a filesystem-centric container engine. Images live in one
//! deduplicating content store ([`store`]); layers are ingested entry by
//! entry ([`image`]); archives are loaded and saved ([`archive`]).
#![deny(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod archive;
pub mod build;
pub mod cli;
pub mod container;
pub mod digest;
pub mod duration;
pub mod events;
pub mod image;
pub mod mount;
pub mod network;
pub mod reference;
pub mod registry;
pub mod snapshotter;
pub mod store;
pub mod system;
pub mod template;
