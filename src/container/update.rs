//! `update`: changes a container's resource limits (and restart policy)
//! after create. The spec is rewritten; a running (or paused)
//! container's cgroups get the new limits at once, a stopped one has
//! them at its next start.

use super::error::ContainerError;
use super::launch::{cgroup, limits};
use super::monitor::liveness::lookup;
use super::records::update_spec;
use super::resources::Resources;
use super::spec::{RestartPolicy, Status};
use crate::store::Store;

/// What `update` changes: limits set in `resources` (0, empty or `None`
/// leave a limit as it is) and the restart policy.
#[derive(Debug, Clone, Default)]
pub struct UpdateOptions {
    pub resources: Resources,
    /// `--restart`: stored; the monitor reads it when the container
    /// next exits.
    pub restart: Option<RestartPolicy>,
}

/// Updates one container; returns the limits it now has.
pub fn update_container(
    store: &Store,
    name_or_id: &str,
    options: &UpdateOptions,
) -> Result<Resources, ContainerError> {
    let c = lookup(store, name_or_id)?;
    if options.restart.as_ref().is_some_and(|p| !p.is_none()) && c.spec.auto_remove {
        // Docker's daemon refuses it in these words.
        return Err(ContainerError::Unsupported(format!(
            "Cannot update container {}: Restart policy cannot be updated because AutoRemove is enabled for the container",
            c.id
        )));
    }
    let changes = &options.resources;
    if changes.any() && super::launch::userns::is_rootless() {
        return Err(super::create::needs_delegated_cgroup(
            super::create::LIMITS_NEED,
        ));
    }
    let mut resources = c.spec.resources.clone();
    if changes.memory > 0
        && changes.memory_swap == 0
        && resources.memory_swap > 0
        && changes.memory > resources.memory_swap
    {
        return Err(ContainerError::Invalid(
            "Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time".into(),
        ));
    }
    resources.merge(changes);
    if changes.memory > 0 && changes.memory_swap == 0 && c.spec.resources.memory_swap == 0 {
        // Docker's default (twice the memory) follows a new memory limit.
        resources.memory_swap = 0;
    }
    limits::check(&mut resources)?;
    if matches!(c.state.status, Status::Running | Status::Paused) && c.state.pid > 0 {
        limits::apply(&c.id, &resources, &cgroup::procs(&c.id))?;
    }
    let restart = options.restart.clone();
    let stored = resources.clone();
    update_spec(store, &c.id, move |spec| {
        spec.resources = stored;
        if let Some(policy) = restart {
            spec.restart_policy = policy;
        }
        Ok(())
    })?;
    Ok(resources)
}
