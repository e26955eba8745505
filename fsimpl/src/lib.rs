//! strata-fs: the FUSE union filesystem. Knows layers and files; knows
//! nothing of SQLite, registries or containers.
//!
//! Entry points: build [`Layer`]s (from the store, or with
//! [`load_dir_layer`] from plain directories) or give a [`LayerSource`]
//! that answers one directory at a time, describe the mount with
//! [`MountConfig`], then [`serve`] (blocking, with a readiness callback) or
//! [`spawn`] (background thread); [`unmount`] detaches a mount from outside.
//! [`list_changes`] reads what a container changed from its upper directory;
//! [`layer_changes`] turns that into the entries of a layer (renamed
//! directories carry their lower contents).
//! See docs/fs.md for the upper-directory conventions.
#![deny(unsafe_code)]
#![deny(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod changes;
pub mod dirlayer;
mod fs;
pub mod fusermount;
pub mod layer;
mod lazy;
mod mount;
mod ops;
pub mod privilege;
pub mod redirect;
pub mod source;
pub mod tree;
mod union;
pub mod upper;
mod xattr;

pub use changes::{layer_changes, LayerChange, LayerChangeKind};
pub use dirlayer::{load_dir_layer, LayerError};
pub use fs::stats::IoStats;
pub use layer::{Entry, EntryKind, Layer};
pub use mount::{
    cleanup_dead_mount, serve, spawn, unmount, BeforeServing, FsError, MountConfig, MountHandle,
    RedirectDir,
};
pub use source::{DirPart, LayerProbe, LayerSource, MemorySource};
pub use upper::{list_changes, Change, ChangeKind};
