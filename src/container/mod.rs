//! Containers: records, lifecycle, the launcher, the monitor, logs, exec,
//! copying, changes and commit, volumes.
//!
//! Rooms (docs/containers.md, "Where the code is"):
//! - one file per lifecycle verb at the top (`create.rs`, `start.rs`,
//!   `kill.rs`, ...): each returns data; the CLI formats it;
//! - [`monitor`]: the per-container process and what talks to it;
//! - [`launch`]: what runs between fork and exec (the only unsafe code is
//!   in [`sys`]; the launcher's calls go through
//!   [`launch::syscalls::Syscalls`]);
//! - [`files`]: the container's tree as the host reads and writes it;
//! - the shared ground the others read: [`records`], [`spec`],
//!   [`resources`], `error`,
//!   [`sys`], [`volume`].
//!
//! Imports point one way: verbs -> `monitor/` -> `launch/` -> `files/` ->
//! shared ground. This file only re-exports the public face; nothing in
//! the module imports through it.

mod attach;
mod boot;
mod commit;
mod create;
mod error;
pub mod events;
mod exec;
pub mod files;
pub mod fs;
pub mod host_options;
mod inspect;
mod kill;
pub mod launch;
pub mod monitor;
mod pause;
pub mod records;
mod remove;
pub mod resources;
pub mod spec;
mod start;
mod stats;
pub mod sys;
pub mod top;
mod update;
pub mod volume;

pub use attach::{attach_container, AttachEnd, AttachOptions};
pub use boot::{boot_containers, Booted};
pub use commit::{commit_container, CommitOptions};
pub use create::{create_container, merge_env, parse_volume, CreateOptions};
pub use error::ContainerError;
pub use exec::{exec_in_container, ExecOptions};
pub use fs::{
    container_changes, copy_from_container, copy_host_path_into_container, copy_into_container,
    export_container, tar_host_path,
};
pub use inspect::inspect_container;
pub use kill::{kill_container, parse_signal, stop_container, wait_container};
pub use monitor::attach::parse_detach_keys;
pub use monitor::liveness::{list_reconciled, lookup};
pub use pause::pause_container;
pub use records::{container_dir, rename_container, Container};
pub use remove::remove_container;
pub use resources::Resources;
pub use spec::{ContainerSpec, ContainerState, MountSpec, NetworkMode, Status, DEFAULT_PATH};
pub use start::{
    exec_monitors, monitor_main, monitors_exec, restart_container, start_container, Exit, Started,
};
pub use stats::{container_stats, ContainerStats, StatsSampler};
pub use update::{update_container, UpdateOptions};
