//! The only unsafe code of strata-tools: process creation.

use std::os::fd::OwnedFd;

/// Which side of a fork we are on.
pub enum Forked {
    /// The parent, with the child's pid.
    Parent(nix::unistd::Pid),
    Child,
}

/// `fork(2)`. Call only while the process has a single thread.
pub fn fork_single_threaded() -> nix::Result<Forked> {
    // SAFETY: callers fork before creating any thread (stratafs forks right
    // after parsing its arguments), so the child inherits no lock held by
    // another thread and may keep running ordinary Rust code.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { child } => Ok(Forked::Parent(child)),
        nix::unistd::ForkResult::Child => Ok(Forked::Child),
    }
}

/// A pipe whose ends are closed on exec.
pub fn pipe() -> nix::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
}
