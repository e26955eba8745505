//! Ctrl-C and termination during a build: SIGINT, SIGTERM and SIGHUP are
//! blocked for the build's duration and read from a signalfd, so a
//! signal ends the build between steps, or interrupts a RUN (whose
//! container is then removed), and every error path cleans up as for a
//! failed step: no container, mount or staging is left behind.

use std::os::fd::{AsFd, BorrowedFd};

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::error::BuildError;

pub struct Interrupt {
    fd: SignalFd,
    old: SigSet,
}

impl Interrupt {
    pub fn install() -> Result<Interrupt, BuildError> {
        let mut set = SigSet::empty();
        for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
            set.add(s);
        }
        let mut old = SigSet::empty();
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old))
            .map_err(|e| BuildError::io("sigprocmask", e.into()))?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|e| BuildError::io("signalfd", e.into()))?;
        Ok(Interrupt { fd, old })
    }

    /// An error if a signal arrived.
    pub fn check(&self) -> Result<(), BuildError> {
        match self.fd.read_signal() {
            Ok(Some(info)) => Err(BuildError::Interrupted(info.ssi_signo as i32)),
            _ => Ok(()),
        }
    }

    /// For poll(2): readable when a signal is pending.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for Interrupt {
    fn drop(&mut self) {
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&self.old), None);
    }
}
