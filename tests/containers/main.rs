//! Container integration tests: real namespaces, real mounts, the real
//! `strata` binary. Each test has its own store root and a guard that
//! kills and unmounts what it started.

mod faults;
mod files;
mod harness;
mod init;
mod isolation;
mod lifecycle;
mod renames;
mod stdio;
mod terminals;
