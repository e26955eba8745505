//! The terminal of `exec -t`: the first child passes the master end on
//! to the caller and keeps a copy (so a detached exec keeps running, its
//! output read and discarded, as Docker's daemon does); the caller
//! relays it to its own terminal, resizes it on SIGWINCH and, with `-i`,
//! forwards its input until the detach keys.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sys::wait::{waitpid, WaitStatus};

use super::attach::DetachScanner;
use crate::container::error::ContainerError;
use crate::container::sys;

/// In the first child: takes the terminal's master from the process and
/// passes it to the caller, keeping a copy.
pub(in crate::container) fn pass_terminal(
    from_process: OwnedFd,
    to_caller: OwnedFd,
) -> Option<(OwnedFd, OwnedFd)> {
    let master = sys::receive_fd(from_process.as_fd()).ok().flatten()?;
    sys::send_fd(to_caller.as_fd(), master.as_fd()).ok()?;
    Some((master, to_caller))
}

/// In the first child: waits for the process; its exit code. With a
/// terminal, once the caller has gone (detached), drains the terminal's
/// output so the process never blocks on a full terminal.
pub(in crate::container) fn wait_process(
    child: nix::unistd::Pid,
    terminal: Option<(OwnedFd, OwnedFd)>,
) -> i32 {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::wait::WaitPidFlag;
    let mut caller_gone = false;
    let mut buf = [0u8; 4096];
    loop {
        match waitpid(child, terminal.is_some().then_some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, c)) => return c,
            Ok(WaitStatus::Signaled(_, s, _)) => return 128 + s as i32,
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return 125,
        }
        let Some((master, caller)) = &terminal else {
            continue;
        };
        let watched = if caller_gone {
            PollFd::new(master.as_fd(), PollFlags::POLLIN)
        } else {
            PollFd::new(caller.as_fd(), PollFlags::POLLIN)
        };
        let mut fds = [watched];
        if poll(&mut fds, PollTimeout::from(200u16)).unwrap_or(0) == 0 {
            continue;
        }
        if caller_gone {
            // EIO once the process has closed it: wait without polling.
            if nix::unistd::read(master.as_raw_fd(), &mut buf).is_err() {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        } else {
            caller_gone = true;
        }
    }
}

/// How a terminal relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::container) enum Relayed {
    Ended,
    Detached,
}

/// Copies the terminal's output to stdout and (with detach keys, i.e.
/// `-i`) stdin to it until the process closes it or the keys are typed;
/// resizes it with the caller's terminal (SIGWINCH).
pub(in crate::container) fn relay_terminal(
    master: OwnedFd,
    detach_keys: Option<Vec<u8>>,
) -> Result<Relayed, ContainerError> {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let mut set = SigSet::empty();
    set.add(Signal::SIGWINCH);
    let mut old = SigSet::empty();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old))
        .map_err(|e| ContainerError::sys("sigprocmask", e))?;
    let result = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC)
        .map_err(|e| ContainerError::sys("signalfd", e))
        .and_then(|signals| copy_terminal(master, detach_keys, &signals));
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    result
}

fn copy_terminal(
    master: OwnedFd,
    detach_keys: Option<Vec<u8>>,
    signals: &nix::sys::signalfd::SignalFd,
) -> Result<Relayed, ContainerError> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    // The input thread says "detached" by closing its end of this pipe.
    let (detached_r, detached_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| ContainerError::sys("pipe", e))?;
    match detach_keys {
        Some(keys) => {
            let input = master
                .try_clone()
                .map_err(|e| ContainerError::io("terminal", e))?;
            std::thread::Builder::new()
                .name("exec-stdin".into())
                .spawn(move || forward_input(input, keys, detached_w))
                .map_err(|e| ContainerError::io("exec input thread", e))?;
        }
        // Never detaches: keep the write end open.
        None => std::mem::forget(detached_w),
    }
    let mut buf = [0u8; 32 * 1024];
    let mut stdout = std::io::stdout();
    loop {
        let mut fds = [
            PollFd::new(master.as_fd(), PollFlags::POLLIN),
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
            PollFd::new(detached_r.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(ContainerError::sys("poll", e)),
            Ok(_) => {}
        }
        let ready = |f: &PollFd| f.any().unwrap_or(true);
        let (output, resized, detached) = (ready(&fds[0]), ready(&fds[1]), ready(&fds[2]));
        if detached {
            return Ok(Relayed::Detached);
        }
        if resized {
            let _ = signals.read_signal();
            if let Ok((rows, cols)) = sys::window_size(std::io::stdout().as_fd())
                .or_else(|_| sys::window_size(std::io::stdin().as_fd()))
            {
                let _ = sys::set_window_size(master.as_fd(), rows, cols);
            }
        }
        if output {
            let n = match nix::unistd::read(master.as_raw_fd(), &mut buf) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                // EIO: the process (and all it started) closed the terminal.
                Err(_) => 0,
            };
            if n == 0
                || stdout
                    .write_all(&buf[..n])
                    .and_then(|_| stdout.flush())
                    .is_err()
            {
                return Ok(Relayed::Ended);
            }
        }
    }
}

/// The input thread: stdin to the terminal until its end or the detach
/// keys (then `detached` is closed).
fn forward_input(terminal: OwnedFd, keys: Vec<u8>, detached: OwnedFd) {
    let mut scanner = DetachScanner::new(keys);
    let mut out = File::from(terminal);
    let mut buf = [0u8; 4096];
    loop {
        let n = match nix::unistd::read(0, &mut buf) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => 0,
        };
        if n == 0 {
            // End of input: the process keeps the terminal; no detach.
            std::mem::forget(detached);
            return;
        }
        let (data, detach) = scanner.scan(&buf[..n]);
        if !data.is_empty() && out.write_all(&data).is_err() {
            std::mem::forget(detached);
            return;
        }
        if detach {
            drop(detached);
            return;
        }
    }
}
