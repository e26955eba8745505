//! Containers: records, lifecycle, the launcher, the monitor, logs, exec,
//! copying, changes and commit, volumes.
//!
//! Each command is a function in its own file (`container_start.rs`, ...)
//! that returns data; the CLI formats it. Syscalls the launcher makes go
//! through [`syscalls::Syscalls`]; the only unsafe code is in [`sys`].
//! See `launch.rs` for what a container's process gets, and `monitor.rs`
//! for the process that watches it.

mod affinity;
pub mod attach;
pub mod caps;
pub mod cgroup;
pub mod changes_tar;
mod container_commit;
mod container_create;
mod container_exec;
pub mod container_fs;
mod container_inspect;
mod container_kill;
mod container_pause;
mod container_remove;
mod container_start;
mod container_stats;
mod error;
mod exec_terminal;
mod fdwalk;
pub mod init;
pub mod launch;
pub mod liveness;
pub mod logs;
pub mod monitor;
pub mod net;
pub mod passwd;
pub mod prepare;
pub mod records;
pub mod rootfs;
pub mod seccomp;
pub mod spec;
pub mod stdio_hub;
pub mod sys;
pub mod syscalls;
pub mod top;
pub mod upper;
pub mod volume;

pub use attach::{attach_container, parse_detach_keys, AttachEnd, AttachOptions};
pub use container_commit::{commit_container, CommitOptions};
pub use container_create::{create_container, merge_env, parse_volume, CreateOptions};
pub use container_exec::{exec_in_container, ExecOptions};
pub use container_fs::{
    container_changes, copy_from_container, copy_into_container, export_container, tar_host_path,
};
pub use container_inspect::inspect_container;
pub use container_kill::{kill_container, parse_signal, stop_container, wait_container};
pub use container_pause::pause_container;
pub use container_remove::remove_container;
pub use container_start::{monitor_main, start_container, Exit, Started};
pub use container_stats::{container_stats, ContainerStats};
pub use error::ContainerError;
pub use liveness::{list_reconciled, lookup};
pub use records::{container_dir, rename_container, Container};
pub use spec::{ContainerSpec, ContainerState, MountSpec, NetworkMode, Status};

/// Docker's default PATH for a container whose image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
