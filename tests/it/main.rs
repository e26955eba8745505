//! strata's integration tests: one binary, a module per topic. Every test
//! gets its own store root and temporary directory, and cleans up what it
//! started. Tests that need root, FUSE or a peer tool fail in CI
//! (`CI=true`) when they cannot run, and skip with a message elsewhere.

mod common;

mod bad_input;
mod cli_parity;
mod crash;
mod formats;
mod image_commands;
mod import_url;
mod interop;
mod mount;
mod registry;
mod snapshotter;
mod templates;
mod write_behind;
