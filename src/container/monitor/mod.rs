//! The monitor room: the per-container process and what talks to it.
//! [`run`] is the monitor itself (one process per running container: it
//! mounts the root, prepares and launches the first process, holds its
//! network, copies its output, records its exit and cleans up).
//! [`prepare`] turns the record into a launch plan once the root is
//! mounted; [`net`] is the container's side of networking; [`stdio_hub`]
//! and [`logs`] carry the container's output; [`attach`] is the attach
//! socket's protocol and client relay, [`exec_terminal`] the terminal of
//! `exec -t`; [`liveness`] checks, for every command, that a "running"
//! record still has its monitor; [`retire`] removes a container's files
//! (for `rm`, `--rm` and a dead monitor's `--rm` container); [`restart`]
//! carries out the restart policy, [`health`] runs the health check.
//!
//! This room reads `launch/`, `files/` and the shared ground; it imports
//! nothing from the verbs.

pub mod attach;
pub(super) mod exec_terminal;
pub mod health;
pub mod liveness;
pub mod logs;
pub mod net;
pub mod prepare;
pub mod restart;
pub mod retire;
pub mod run;
pub mod stdio_hub;
