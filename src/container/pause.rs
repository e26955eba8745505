//! `pause` / `unpause`: the cgroup freezer where present, else SIGSTOP /
//! SIGCONT to every process of the container's pid namespace. An
//! ordinary user's containers have no cgroup of their own: `pause` fails
//! with one line for them, as rootless podman's does without a delegated
//! cgroup v2 (signals are no freeze: a process sees them).

use nix::sys::signal::Signal;

use super::error::ContainerError;
use super::launch::cgroup;
use super::monitor::liveness::lookup;
use super::records::{update_state, Container};
use super::spec::Status;
use super::top::container_pids;
use crate::store::Store;

pub fn pause_container(
    store: &Store,
    name_or_id: &str,
    paused: bool,
) -> Result<Container, ContainerError> {
    let c = lookup(store, name_or_id)?;
    let (from, to) = if paused {
        (Status::Running, Status::Paused)
    } else {
        (Status::Paused, Status::Running)
    };
    if c.state.status != from {
        let what = if paused {
            "is not running"
        } else {
            "is not paused"
        };
        return Err(ContainerError::BadState {
            id: c.short_id().into(),
            state: c.state.status.as_str().into(),
            what: what.into(),
        });
    }
    if paused && super::launch::userns::is_rootless() {
        return Err(super::create::needs_delegated_cgroup(
            "pause needs the freezer of",
        ));
    }
    if !cgroup::freeze(&c.id, paused) {
        let signal = if paused {
            Signal::SIGSTOP
        } else {
            Signal::SIGCONT
        };
        for pid in container_pids(c.state.pid) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
        }
    }
    update_state(store, &c.id, |s| {
        if s.status == from {
            s.status = to;
        }
        Ok(())
    })?;
    let action = if paused { "pause" } else { "unpause" };
    super::events::record_container_event(store, &c, action, &[]);
    Ok(c)
}
