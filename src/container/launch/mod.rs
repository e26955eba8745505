//! The launch room: what runs between fork and exec in a container's first
//! process (and, in part, in `exec`). [`setup`] is the launcher proper:
//! the root (pivot_root into the container's mount, /dev, masked and
//! read-only paths, bind mounts), then the process (namespaces, user,
//! capabilities, no-new-privileges, seccomp). Its parts: [`rootfs`] (the
//! union mount the root comes from), [`caps`], [`seccomp`], [`passwd`]
//! (users from the image's own files), [`cgroup`], [`limits`] (resource
//! limits in the cgroups), [`devices`] (the devices cgroup of
//! `--device`), [`affinity`], [`init`]
//! (`run --init`), [`userns`] (the user namespace of a rootless
//! container), and [`syscalls`], the narrow trait the launcher's
//! calls go through so tests can record them.
//!
//! This room reads the shared ground (`records`, `spec`, `error`, `sys`)
//! and `files::upper` (the overlay conventions of the upper directory); it
//! imports nothing from `monitor/` or from the verbs.

pub(super) mod affinity;
pub mod caps;
pub mod cgroup;
pub mod devices;
pub mod init;
pub mod limits;
pub mod passwd;
pub mod rootfs;
pub mod seccomp;
pub mod setup;
pub mod syscalls;
pub mod userns;
