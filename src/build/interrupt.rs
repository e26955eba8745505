//! Ctrl-C and termination during a build: SIGINT, SIGTERM and SIGHUP are
//! blocked for the build's duration and read from a signalfd, so a
//! signal ends the build between steps, or interrupts a RUN (whose
//! container is then removed), and every error path cleans up as for a
//! failed step: no container, mount or staging is left behind.
//!
//! Stages built at the same time share one [`Interrupt`]: a signal read
//! by any of them, or a stage's failure ([`Interrupt::cancel`]), stops
//! them all. Both make the wake pipe readable for good, so every RUN
//! waiting in poll(2) sees it.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::error::BuildError;

/// [`Interrupt::stopped`] when a sibling stage failed (no signal).
const CANCELLED: i32 = -1;

pub struct Interrupt {
    fd: SignalFd,
    old: SigSet,
    /// 0, the first signal's number, or [`CANCELLED`].
    stopped: AtomicI32,
    wake_read: OwnedFd,
    wake_write: OwnedFd,
}

impl Interrupt {
    pub fn install() -> Result<Interrupt, BuildError> {
        let mut set = SigSet::empty();
        for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
            set.add(s);
        }
        let (wake_read, wake_write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
                .map_err(|e| BuildError::io("pipe", e.into()))?;
        let mut old = SigSet::empty();
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old))
            .map_err(|e| BuildError::io("sigprocmask", e.into()))?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|e| BuildError::io("signalfd", e.into()))?;
        Ok(Interrupt {
            fd,
            old,
            stopped: AtomicI32::new(0),
            wake_read,
            wake_write,
        })
    }

    /// An error if a signal arrived or the build was cancelled.
    pub fn check(&self) -> Result<(), BuildError> {
        if let Ok(Some(info)) = self.fd.read_signal() {
            self.stop(info.ssi_signo as i32);
        }
        match self.stopped.load(Ordering::SeqCst) {
            0 => Ok(()),
            CANCELLED => Err(BuildError::Cancelled),
            signal => Err(BuildError::Interrupted(signal)),
        }
    }

    /// Stops every stage still building (one failed).
    pub fn cancel(&self) {
        self.stop(CANCELLED);
    }

    fn stop(&self, why: i32) {
        if self
            .stopped
            .compare_exchange(0, why, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            let _ = nix::unistd::write(&self.wake_write, b"x");
        }
    }

    /// For poll(2): readable when a signal is pending or the build was
    /// stopped; call [`Interrupt::check`] then.
    pub fn fds(&self) -> [BorrowedFd<'_>; 2] {
        [self.fd.as_fd(), self.wake_read.as_fd()]
    }
}

impl Drop for Interrupt {
    fn drop(&mut self) {
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&self.old), None);
    }
}
