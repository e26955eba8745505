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
