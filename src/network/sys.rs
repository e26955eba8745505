//! The only unsafe code of the network module: a thin wrapper that
//! neither `nix` nor `std` offers safely.
#![allow(unsafe_code)]

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Makes the program `command` starts die (SIGKILL) when the thread that
/// starts it ends, as a monitor killed with -9 does (`PR_SET_PDEATHSIG`,
/// kept across the exec of a program without set-id bits or file
/// capabilities). A parent already gone when the child sets it is seen
/// by the parent pid having changed: the child then does not exec
/// (the spawn fails).
pub fn die_with_parent(command: &mut Command) {
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec and makes
    // only async-signal-safe system calls (prctl, getppid); it
    // allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)?;
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::from(nix::errno::Errno::ESRCH));
            }
            Ok(())
        });
    }
}
