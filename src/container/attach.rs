//! `attach`: a client's terminal or pipes joined to a running container
//! through its monitor's attach socket (the protocol and the relay are in
//! `monitor/attach.rs`).

use super::error::ContainerError;
use super::kill::wait_container;
use super::monitor::attach::{
    connect, relay, RelayOptions, Relayed, DEFAULT_DETACH_KEYS, SOCKET_NAME,
};
use super::monitor::liveness::lookup;
use super::records::container_dir;
use super::spec::Status;
use crate::store::Store;

/// How `attach` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachEnd {
    /// The container exited with this code.
    Exited(i32),
    Detached,
}

/// What an attaching client asks for.
#[derive(Debug, Clone)]
pub struct AttachOptions {
    /// Forward the client's input (for a container made with -i).
    pub stdin: bool,
    /// With a terminal, these keys detach (see
    /// [`parse_detach_keys`](super::monitor::attach::parse_detach_keys)).
    pub detach_keys: Vec<u8>,
    /// Without a terminal, forward the client's signals to the
    /// container's pid 1 (Docker's `--sig-proxy`).
    pub sig_proxy: bool,
}

impl Default for AttachOptions {
    fn default() -> Self {
        AttachOptions {
            stdin: false,
            detach_keys: DEFAULT_DETACH_KEYS.to_vec(),
            sig_proxy: true,
        }
    }
}

/// `attach`: the container's output from now on, the client's input to
/// it (for a container with -i, with `options.stdin`), until it exits or
/// the client detaches.
pub fn attach_container(
    store: &Store,
    name_or_id: &str,
    options: &AttachOptions,
) -> Result<AttachEnd, ContainerError> {
    let c = lookup(store, name_or_id)?;
    if !matches!(c.state.status, Status::Running | Status::Paused) {
        return Err(ContainerError::BadState {
            id: c.short_id().into(),
            state: c.state.status.as_str().into(),
            what: "cannot attach to a stopped container, start it first".into(),
        });
    }
    let dir = container_dir(store, &c.id);
    super::events::record_container_event(store, &c, "attach", &[]);
    let stream = connect(&dir).map_err(|e| ContainerError::io(dir.join(SOCKET_NAME), e))?;
    let options = RelayOptions {
        stdin: c.spec.interactive && options.stdin,
        tty: c.spec.tty,
        detach_keys: options.detach_keys.clone(),
        signal_pid: if options.sig_proxy { c.state.pid } else { 0 },
    };
    match relay(stream, options)? {
        Relayed::Detached => Ok(AttachEnd::Detached),
        Relayed::Ended => Ok(AttachEnd::Exited(wait_container(store, &c.id)?)),
    }
}
