//! Mounting as an ordinary user through the setuid `fusermount3`, as
//! libfuse does: it opens /dev/fuse (which may be root's alone), mounts
//! it on the mount point with the options given, and sends the open
//! descriptor back over a socket named by `_FUSE_COMMFD`. The session is
//! then served from that descriptor; `fusermount3 -u` unmounts.

use std::io::{self, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};

use rustix::net::{
    recvmsg, socketpair, AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags,
    SocketFlags, SocketType,
};

/// The setuid helper that mounts and unmounts FUSE for ordinary users.
pub const FUSERMOUNT: &str = "fusermount3";

/// Mounts a FUSE filesystem on `mountpoint` with `options` (as for
/// `fusermount3 -o`); returns the /dev/fuse descriptor to serve it from.
pub fn mount(mountpoint: &Path, options: &str) -> io::Result<OwnedFd> {
    // The helper's end must survive exec: no close-on-exec. The mounting
    // process spawns nothing else meanwhile.
    let (ours, theirs) = socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::empty(),
        None,
    )?;
    rustix::io::fcntl_setfd(&ours, rustix::io::FdFlags::CLOEXEC)?;
    let child = Command::new(FUSERMOUNT)
        .arg("-o")
        .arg(options)
        .arg("--")
        .arg(mountpoint)
        .env("_FUSE_COMMFD", theirs.as_raw_fd().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("running {FUSERMOUNT}: {e}")))?;
    drop(theirs);
    let received = receive_fd(&ours);
    drop(ours);
    let output = child.wait_with_output()?;
    match received {
        Ok(Some(fd)) if output.status.success() => Ok(fd),
        _ => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let reason = stderr.lines().next().unwrap_or("").trim();
            let hint = if reason.contains("/dev/fuse") {
                " (an ordinary user needs /dev/fuse mode 0666, as Debian sets it)"
            } else {
                ""
            };
            Err(io::Error::other(if reason.is_empty() {
                format!("{FUSERMOUNT} failed ({})", output.status)
            } else {
                format!("{reason}{hint}")
            }))
        }
    }
}

/// The one descriptor fusermount3 sends, if it sent one.
fn receive_fd(socket: &OwnedFd) -> io::Result<Option<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [IoSliceMut::new(&mut byte)];
    recvmsg(socket, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC)?;
    let mut received = None;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = message {
            for fd in fds {
                received.get_or_insert(fd);
            }
        }
    }
    Ok(received)
}

/// `fusermount3 -u -z MOUNTPOINT`: how an ordinary user detaches a FUSE
/// mount of their own.
pub fn unmount(mountpoint: &Path) -> io::Result<()> {
    let output = Command::new(FUSERMOUNT)
        .args(["-u", "-z", "--"])
        .arg(mountpoint)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("running {FUSERMOUNT}: {e}")))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(io::Error::other(
        stderr.lines().next().unwrap_or("failed").trim().to_string(),
    ))
}
