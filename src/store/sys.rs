//! The only unsafe code of the store: thin wrappers around syscalls that
//! neither `nix` nor `std` wrap. Each is short and says why it is sound.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE)`: starts writing the
/// file's dirty pages back without waiting for them, so that the flush
/// before a publish finds most of an ingest's data on disk already
/// instead of writing it all then. Durability still comes from that flush
/// (`syncfs`); this only moves the disk's work earlier.
pub fn start_writeback(fd: BorrowedFd) -> io::Result<()> {
    // SAFETY: a plain syscall on a descriptor the borrow keeps open; no
    // memory is passed.
    let rc = unsafe { libc::sync_file_range(fd.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `ioprio_set(IOPRIO_WHO_PROCESS, 0, IOPRIO_CLASS_IDLE)`: this process's
/// disk I/O waits for everyone else's (a background view build's, see
/// mount/kernel.rs). Neither libc nor rustix wraps it.
pub fn set_idle_io_priority() -> io::Result<()> {
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    const IOPRIO_CLASS_IDLE: libc::c_long = 3;
    // SAFETY: a plain syscall with integer arguments; no memory is passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            0 as libc::c_long,
            IOPRIO_CLASS_IDLE << 13,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
