//! strata-init: a tiny pid 1 for `strata run --init`. Runs the command
//! given after `--`, forwards the signals a container receives to it,
//! reaps every orphan that the kernel reparents to pid 1, and exits with
//! the command's status (128+N if a signal N ended it).
#![deny(unsafe_code)]

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

const FORWARDED: &[Signal] = &[
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCONT,
];

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--") {
        args.remove(0);
    }
    if args.is_empty() {
        eprintln!("strata-init: usage: strata-init -- COMMAND [ARG...]");
        std::process::exit(125);
    }
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(*s);
    }
    set.add(Signal::SIGCHLD);
    // Spawned before blocking, so the command starts with a clean mask;
    // anything that exited meanwhile is reaped right after blocking.
    let child = match std::process::Command::new(&args[0])
        .args(&args[1..])
        .spawn()
    {
        Ok(c) => Pid::from_raw(c.id() as i32),
        Err(e) => {
            eprintln!("strata-init: {}: {e}", args[0]);
            std::process::exit(if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            });
        }
    };
    if let Err(e) = set.thread_block() {
        eprintln!("strata-init: blocking signals: {e}");
        std::process::exit(125);
    }
    reap(child);
    loop {
        let sig = match set.wait() {
            Ok(s) => s,
            Err(_) => continue,
        };
        if sig != Signal::SIGCHLD {
            let _ = nix::sys::signal::kill(child, sig);
            continue;
        }
        reap(child);
    }
}

/// Reaps every exited process; exits with the command's status once it
/// has ended.
fn reap(child: Pid) {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == child => std::process::exit(code),
            Ok(WaitStatus::Signaled(pid, s, _)) if pid == child => {
                std::process::exit(128 + s as i32)
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => continue,
        }
    }
}
