//! Container integration tests: real namespaces, real mounts, the real
//! `strata` binary. Each test has its own store root and a guard that
//! kills and unmounts what it started.

mod cli_parity;
mod devices;
mod differences;
mod dockerd;
mod events;
mod faults;
mod files;
mod hangs;
mod harness;
mod health_oracle;
mod host_users;
mod image_rules;
mod init;
mod isolation;
mod lifecycle;
mod limits;
mod netns;
mod network;
mod network_oracle;
mod network_proxy;
mod renames;
mod restart;
mod rootless;
mod run_flags;
mod seccomp;
mod stdio;
mod terminals;
