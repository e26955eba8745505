//! strata-init: a tiny, tini-like pid 1. Runs the command given after
//! `--`, forwards the signals a container receives to it, reaps every
//! orphan that the kernel reparents to it, and exits with the command's
//! status (128+N if a signal N ended it).
//!
//! `strata run --init` does not need this program (its launcher stays as
//! pid 1 and runs the same loop, `strata::container::launch::init`); it is for
//! images and runtimes that want an init binary of their own.
#![deny(unsafe_code)]

use std::os::unix::process::CommandExt;

use nix::unistd::Pid;
use strata::container::launch::init;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--") {
        args.remove(0);
    }
    if args.is_empty() {
        eprintln!("strata-init: usage: strata-init -- COMMAND [ARG...]");
        std::process::exit(125);
    }
    // Blocked before the command exists, so no signal and no exit is
    // missed; the command gets the mask this process started with.
    let mask = match init::block_init_signals() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("strata-init: blocking signals: {e}");
            std::process::exit(125);
        }
    };
    let mut command = std::process::Command::new(&args[0]);
    command.args(&args[1..]);
    // The one unsafe call of this program: pre_exec.
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the forked child before exec and only
    // makes async-signal-safe system calls (sigprocmask, setpgid,
    // isatty, tcsetpgrp).
    unsafe {
        command.pre_exec(move || init::prepare_command(&mask).map_err(std::io::Error::from));
    }
    let child = match command.spawn() {
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
    std::process::exit(init::supervise(child));
}
