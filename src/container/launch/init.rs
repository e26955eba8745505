//! The container's init (`run --init`), tini-like: reaps every process
//! the kernel reparents to it, forwards the signals a container receives
//! to the command, and ends with the command's status (128+N if signal N
//! ended it).
//!
//! `run --init` does not exec a helper binary: the launcher's own pid-1
//! process stays as init (bubblewrap's approach). It forks after all of
//! the set-up (root, credentials, capabilities, no-new-privileges, the
//! seccomp filter), so
//! init holds nothing the command does not; it is made non-dumpable and
//! closes every descriptor but 0-2. Being the already-running launcher,
//! it needs nothing from the image (no libc, no file to bind-mount), so
//! it works in a busybox-static or scratch image. `tools/strata-init` is
//! the same loop as a standalone program.
//!
//! The signals are blocked before the fork (so none is lost between fork
//! and the loop) and waited for with `sigwait`; a blocked signal reaches
//! a pid namespace's init even when its disposition is the default.

use nix::errno::Errno;
use nix::sys::signal::{kill, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// The signals init passes on to the command (tini's, Docker's init's).
pub const FORWARDED: &[Signal] = &[
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCONT,
];

/// The forwarded signals and SIGCHLD: what init waits for.
pub fn init_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(*s);
    }
    set.add(Signal::SIGCHLD);
    set
}

/// Blocks [`init_signals`] in the calling thread; call before forking the
/// command. Returns the previous mask (for the command to restore).
pub fn block_init_signals() -> Result<SigSet, Errno> {
    let mut old = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&init_signals()), Some(&mut old))?;
    Ok(old)
}

/// In the forked command, before exec: its own process group (in the
/// foreground of the terminal, if stdin is one, as tini does) so that a
/// terminal's ^C reaches it once, then the signal mask `mask`.
pub fn prepare_command(mask: &SigSet) -> Result<(), Errno> {
    // Blocked, SIGTTOU cannot stop a background process calling tcsetpgrp.
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&SigSet::all()), None)?;
    nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0))?;
    if nix::unistd::isatty(0).unwrap_or(false) {
        crate::container::sys::foreground_on_stdin()?;
    }
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(mask), None)
}

/// Rewrites the calling process's command line, as /proc/PID/cmdline
/// (and so `ps`) shows it, to `args`: written over the original argument
/// strings through /proc/self/mem (what setproctitle does, without
/// needing any capability), cut to fit and padded with NULs.
pub fn show_command_line(args: &[&str]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let invalid = || std::io::Error::from(std::io::ErrorKind::InvalidData);
    // Fields after the parenthesised name start at field 3 (state);
    // arg_start and arg_end are fields 48 and 49.
    let after_name = stat.rsplit_once(") ").ok_or_else(invalid)?.1;
    let fields: Vec<&str> = after_name.split(' ').collect();
    let field = |n: usize| -> std::io::Result<u64> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(invalid)
    };
    let (start, end) = (field(48)?, field(49)?);
    let len = usize::try_from(end.saturating_sub(start)).map_err(|_| invalid())?;
    if len == 0 {
        return Err(invalid());
    }
    let mut text = args.join("\0").into_bytes();
    text.truncate(len - 1);
    text.resize(len, 0);
    std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/mem")?
        .write_all_at(&text, start)
}

/// Init's loop, with [`init_signals`] blocked: forwards the signals to
/// `command`, reaps whatever exits, and returns the command's exit code
/// once it has ended.
pub fn supervise(command: Pid) -> i32 {
    let set = init_signals();
    loop {
        if let Some(code) = reap(command) {
            return code;
        }
        match set.wait() {
            Ok(Signal::SIGCHLD) | Err(_) => {}
            // A command already gone is reaped on the next round.
            Ok(sig) => {
                let _ = kill(command, sig);
            }
        }
    }
}

/// Reaps every process that has exited; the command's exit code if it
/// was among them.
fn reap(command: Pid) -> Option<i32> {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == command => return Some(code),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == command => {
                return Some(128 + sig as i32)
            }
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return None,
            Err(Errno::EINTR) => continue,
            Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_signals_and_sigchld_are_waited_for() {
        let set = init_signals();
        for s in FORWARDED {
            assert!(set.contains(*s));
        }
        assert!(set.contains(Signal::SIGCHLD));
        assert!(!set.contains(Signal::SIGKILL));
        assert!(!set.contains(Signal::SIGTTOU));
    }
}
