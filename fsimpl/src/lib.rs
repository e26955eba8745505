//! strata-fs: the FUSE union filesystem. Knows layers and files; knows
//! nothing of SQLite, registries or containers.
#![deny(unsafe_code)]

pub mod layer;

pub use layer::{Entry, EntryKind, Layer};
