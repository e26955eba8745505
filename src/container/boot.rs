//! `system boot`: after a reboot (or any loss of monitors), starts again
//! the containers Docker's daemon restarts when it starts: those whose
//! restart policy says so. `always` ones whatever happened to them,
//! `unless-stopped` ones unless the user stopped them, `on-failure` ones
//! whose last exit was a failure (within their retry count). Only
//! containers that ran before are considered, and none that still runs.

use super::error::ContainerError;
use super::monitor::liveness::list_reconciled;
use super::monitor::restart::should_restart;
use super::records::Container;
use super::spec::Status;
use super::start::start_container;
use crate::store::Store;

/// What `system boot` did with one container.
#[derive(Debug)]
pub struct Booted {
    pub container: Container,
    /// `None`: started; else why it could not be.
    pub error: Option<ContainerError>,
}

/// Whether `system boot` starts the container (its monitor is gone:
/// [`list_reconciled`] has recorded it exited).
pub fn wants_boot(c: &Container) -> bool {
    let s = &c.state;
    if s.status != Status::Exited || s.started_at.is_empty() {
        return false;
    }
    let policy = &c.spec.restart_policy;
    // A daemon's start restarts an `always` container the user stopped.
    let stopped = s.manually_stopped && !policy.is_always();
    should_restart(policy, s.exit_code, stopped, s.restart_count)
}

/// Starts every container [`wants_boot`] picks, oldest first.
pub fn boot_containers(store: &mut Store) -> Result<Vec<Booted>, ContainerError> {
    let mut chosen: Vec<Container> = list_reconciled(store)?
        .into_iter()
        .filter(wants_boot)
        .collect();
    chosen.sort_by(|a, b| a.created_at.cmp(&b.created_at));
    let mut out = Vec::new();
    for container in chosen {
        let error = start_container(store, &container.id, false).err();
        out.push(Booted { container, error });
    }
    Ok(out)
}
