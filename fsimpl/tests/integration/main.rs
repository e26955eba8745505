//! Integration tests of strata-fs on real FUSE mounts. Each test has its own
//! temporary directories and guards that unmount what it mounted and kill
//! (by pid) what it started. Outside CI a test that cannot use FUSE prints
//! why and passes; in CI (CI=true) it fails.

mod common;
mod concurrency;
mod lifecycle;
mod model;
mod oracle;
mod passthrough;
mod persistence;
mod redirects;
