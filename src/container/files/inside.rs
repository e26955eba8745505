//! File commands (`cp`, `diff`, `commit`, `export`) on an ordinary user's
//! container (docs/rootless.md). Its files are not the user's to read
//! from the host: the upper directory holds files of subordinate ids
//! (the container's uid 1000 is `subuid_start + 999` there), and a
//! running container's FUSE root is a mount of its user namespace, closed
//! to processes outside it. So the work runs in a forked child inside a
//! user namespace with the container's id maps, where every owner reads
//! as the container sees it and the child, root there, may read them:
//!
//! - [`Place::Container`]: a running container's own user namespace
//!   (its pid 1's), where `/proc/PID/root` (its root with its volumes)
//!   and the monitor's mount of its root answer;
//! - [`Place::Fresh`]: a new user namespace with the user's maps and a
//!   private mount namespace, for a stopped container (its view is
//!   mounted there, gone with the child) and for reading an upper
//!   directory.
//!
//! The child reports its error as one line on a pipe; data goes through
//! pipes the caller makes, read or written by the parent while the child
//! works.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};

use nix::sched::CloneFlags;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use crate::container::error::ContainerError;
use crate::container::launch::userns;
use crate::container::sys;

/// Which user namespace the child enters.
pub enum Place {
    /// The running container's whose pid 1 is this.
    Container(i32),
    /// A new one with the user's maps, and a private mount namespace.
    Fresh,
}

/// A child working inside; [`Inside::wait`] gives its outcome.
pub struct Inside {
    pid: Pid,
    errors: File,
}

/// Forks a child that enters `place` and runs `work`. The caller's copy
/// of whatever `work` owns (a pipe's end) is closed in the parent.
pub fn spawn(
    place: Place,
    work: impl FnOnce() -> Result<(), ContainerError>,
) -> Result<Inside, ContainerError> {
    let user_ns = match place {
        Place::Container(pid) => {
            let path = format!("/proc/{pid}/ns/user");
            Some(File::open(&path).map_err(|e| ContainerError::io(&path, e))?)
        }
        Place::Fresh => None,
    };
    let maps = userns::current_maps();
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| ContainerError::sys("pipe", e))?;
    match sys::fork().map_err(|e| ContainerError::sys("fork", e))? {
        ForkResult::Child => {
            drop(err_r);
            let entered = match &user_ns {
                Some(ns) => nix::sched::setns(ns.as_fd(), CloneFlags::CLONE_NEWUSER).map_err(|e| {
                    ContainerError::sys("setns into the container's user namespace", e)
                }),
                None => userns::enter(&maps),
            };
            let outcome = entered.and_then(|()| work());
            if let Err(e) = outcome {
                let line = e.to_string().replace('\n', " ");
                let _ = File::from(err_w).write_all(line.as_bytes());
                sys::exit_now(1);
            }
            sys::exit_now(0)
        }
        ForkResult::Parent { child } => {
            drop(work);
            drop(err_w);
            Ok(Inside {
                pid: child,
                errors: File::from(err_r),
            })
        }
    }
}

impl Inside {
    /// Waits for the child; its error, if it had one.
    pub fn wait(mut self) -> Result<(), ContainerError> {
        let mut message = String::new();
        let _ = self.errors.read_to_string(&mut message);
        let status = loop {
            match waitpid(self.pid, None) {
                Err(nix::errno::Errno::EINTR) => continue,
                other => break other,
            }
        };
        match status {
            Ok(WaitStatus::Exited(_, 0)) if message.is_empty() => Ok(()),
            _ if !message.is_empty() => Err(ContainerError::Unsupported(message)),
            other => Err(ContainerError::Unsupported(format!(
                "rootless: the child working in the container's user namespace ended with {other:?}"
            ))),
        }
    }
}

/// A pipe whose ends close on exec.
pub fn pipe() -> Result<(File, File), ContainerError> {
    let (r, w): (OwnedFd, OwnedFd) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| ContainerError::sys("pipe", e))?;
    Ok((File::from(r), File::from(w)))
}

/// Runs `work` inside `place`, writing into a pipe that the parent copies
/// to `out` as it comes.
pub fn run_writing(
    place: Place,
    out: &mut dyn Write,
    work: impl FnOnce(&mut dyn Write) -> Result<(), ContainerError>,
) -> Result<(), ContainerError> {
    let (mut reader, writer) = pipe()?;
    let child = spawn(place, move || {
        let mut writer = std::io::BufWriter::with_capacity(1 << 20, writer);
        work(&mut writer)?;
        writer
            .flush()
            .map_err(|e| ContainerError::io("the pipe to strata", e))
    })?;
    let copied = std::io::copy(&mut reader, out);
    drop(reader);
    let done = child.wait();
    done?;
    copied
        .map(|_| ())
        .map_err(|e| ContainerError::io("the output", e))
}

/// Runs `work` inside `place`, reading from a pipe that the parent fills
/// from `input`.
pub fn run_reading(
    place: Place,
    input: &mut dyn Read,
    work: impl FnOnce(&mut dyn Read) -> Result<(), ContainerError>,
) -> Result<(), ContainerError> {
    let (reader, mut writer) = pipe()?;
    let child = spawn(place, move || {
        let mut reader = std::io::BufReader::with_capacity(1 << 20, reader);
        work(&mut reader)
    })?;
    // A child that stopped reading (it failed) closes the pipe: its
    // error says why, not the broken pipe.
    let _ = std::io::copy(input, &mut writer);
    drop(writer);
    child.wait()
}

/// Runs `work` inside `place` and returns what it made, sent back as JSON.
pub fn run_returning<T: serde::Serialize + serde::de::DeserializeOwned>(
    place: Place,
    work: impl FnOnce() -> Result<T, ContainerError>,
) -> Result<T, ContainerError> {
    let mut text = Vec::new();
    run_writing(place, &mut text, |out| {
        let value = work()?;
        serde_json::to_writer(out, &value)
            .map_err(|e| ContainerError::io("the pipe to strata", e.into()))
    })?;
    serde_json::from_slice(&text).map_err(|e| {
        ContainerError::Unsupported(format!("rootless: a malformed answer from the child: {e}"))
    })
}
