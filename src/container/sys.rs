//! The only unsafe code of the container module: thin wrappers around
//! syscalls that neither `nix` nor `std` wrap safely. Each is short and
//! says why it is sound.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::unistd::ForkResult;

/// `fork(2)`. The caller must be single-threaded or only call
/// async-signal-safe functions in the child until it execs; strata forks
/// its launcher children from single-threaded processes (the CLI, or the
/// monitor before it starts any thread).
pub fn fork() -> Result<ForkResult, Errno> {
    // SAFETY: see above; every caller upholds single-threadedness.
    unsafe { nix::unistd::fork() }
}

/// `clone3(2)` used as [`fork`], with the same contract: the child
/// starts in the cgroup open at `cgroup` (`CLONE_INTO_CGROUP`, so nothing
/// has to move it there later) and, with `new_pid_ns`, as pid 1 of a new
/// pid namespace. glibc's cached thread id is the parent's in the child:
/// glibc itself reads the real one where it matters (raise and abort, as
/// after vfork, since 2.34), and the child uses no pthread mutex that
/// records its owner (Rust's locks are plain futexes).
pub fn fork_into(cgroup: BorrowedFd, new_pid_ns: bool) -> Result<ForkResult, Errno> {
    clone_child(Some(cgroup), new_pid_ns)
}

/// [`fork_into`] without a cgroup: the child is pid 1 of a new pid
/// namespace, and the caller's own children stay in its namespace (no
/// `setns` back, which a rootless monitor may not do).
pub fn fork_new_pid_ns() -> Result<ForkResult, Errno> {
    clone_child(None, true)
}

fn clone_child(cgroup: Option<BorrowedFd>, new_pid_ns: bool) -> Result<ForkResult, Errno> {
    #[repr(C)]
    #[derive(Default)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    let mut flags = if cgroup.is_some() {
        CLONE_INTO_CGROUP
    } else {
        0
    };
    if new_pid_ns {
        flags |= libc::CLONE_NEWPID as u64;
    }
    let args = CloneArgs {
        flags,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.map_or(0, |fd| fd.as_raw_fd() as u64),
        ..CloneArgs::default()
    };
    // SAFETY: no stack is given, so like fork(2) the child continues on a
    // copy of the caller's; `args` outlives the call; see above for the
    // single-threadedness the caller guarantees.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match Errno::result(rc)? {
        0 => Ok(ForkResult::Child),
        pid => Ok(ForkResult::Parent {
            child: nix::unistd::Pid::from_raw(pid as i32),
        }),
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_V3: u32 = 0x2008_0522;

/// `capset(2)` for the calling thread with 64-bit masks.
pub fn capset(effective: u64, permitted: u64, inheritable: u64) -> Result<(), Errno> {
    let mut header = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: effective as u32,
            permitted: permitted as u32,
            inheritable: inheritable as u32,
        },
        CapData {
            effective: (effective >> 32) as u32,
            permitted: (permitted >> 32) as u32,
            inheritable: (inheritable >> 32) as u32,
        },
    ];
    // SAFETY: header and data are valid, properly laid-out structures of
    // the sizes capset(2) v3 expects (one header, two data elements) and
    // live for the duration of the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    };
    Errno::result(rc).map(drop)
}

/// Removes one capability from the bounding set (`PR_CAPBSET_DROP`).
pub fn capbset_drop(cap: u32) -> Result<(), Errno> {
    // SAFETY: PR_CAPBSET_DROP takes an integer argument; no pointers.
    let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
    Errno::result(rc).map(drop)
}

/// Whether `cap` is in the bounding set (`PR_CAPBSET_READ`).
pub fn capbset_read(cap: u32) -> Result<bool, Errno> {
    // SAFETY: PR_CAPBSET_READ takes an integer argument; no pointers.
    let rc = unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) };
    Errno::result(rc).map(|r| r == 1)
}

/// Clears the ambient set (`PR_CAP_AMBIENT_CLEAR_ALL`).
pub fn cap_ambient_clear() -> Result<(), Errno> {
    // SAFETY: integer arguments only.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    Errno::result(rc).map(drop)
}

/// Sets FD_CLOEXEC on every descriptor from `first` up
/// (`close_range(first, ~0, CLOSE_RANGE_CLOEXEC)`), so exec closes them.
pub fn cloexec_from(first: u32) -> Result<(), Errno> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only changes flags of
    // descriptors; no memory is passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    Errno::result(rc).map(drop)
}

/// Closes every descriptor from `first` up (`close_range(first, ~0, 0)`).
/// Only for a process about to run code that owns none of them (the
/// container's init): `OwnedFd`s still alive for them must never be used
/// or dropped afterwards.
pub fn close_from(first: u32) -> Result<(), Errno> {
    // SAFETY: close_range only closes descriptors; the caller guarantees
    // nothing uses them afterwards.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0) };
    Errno::result(rc).map(drop)
}

/// Makes the caller's process group the foreground group of the
/// terminal on fd 0 (`tcsetpgrp(0, getpgrp())`), without touching
/// std's stdin (which allocates; this runs between fork and exec).
pub fn foreground_on_stdin() -> Result<(), Errno> {
    // SAFETY: integer arguments only; fd 0 is not owned by Rust code here.
    let rc = unsafe { libc::tcsetpgrp(0, libc::getpgrp()) };
    Errno::result(rc).map(drop)
}

/// Sends `fd` over the Unix socket `socket` (SCM_RIGHTS), with one
/// byte of data.
pub fn send_fd(socket: BorrowedFd, fd: BorrowedFd) -> Result<(), Errno> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let fds = [fd.as_raw_fd()];
    let data = [std::io::IoSlice::new(b"t")];
    sendmsg::<()>(
        socket.as_raw_fd(),
        &data,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map(drop)
}

/// Receives a descriptor sent by [`send_fd`]; `None` if the peer closed
/// the socket without sending one.
pub fn receive_fd(socket: BorrowedFd) -> Result<Option<OwnedFd>, Errno> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut byte = [0u8; 1];
    let mut data = [std::io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = loop {
        match recvmsg::<()>(
            socket.as_raw_fd(),
            &mut data,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(Errno::EINTR) => continue,
            other => break other?,
        }
    };
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(fd) = fds.first() {
                // SAFETY: SCM_RIGHTS just installed this descriptor in
                // this process; nothing else owns it.
                return Ok(Some(unsafe { OwnedFd::from_raw_fd(*fd) }));
            }
        }
    }
    Ok(None)
}

/// Makes `fd` (a terminal) the controlling terminal of the calling
/// session leader (`TIOCSCTTY`).
pub fn set_controlling_terminal(fd: BorrowedFd) -> Result<(), Errno> {
    // SAFETY: TIOCSCTTY takes an integer argument; fd is a valid open fd.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) };
    Errno::result(rc).map(drop)
}

/// Sets a terminal's window size (`TIOCSWINSZ`).
pub fn set_window_size(fd: BorrowedFd, rows: u16, cols: u16) -> Result<(), Errno> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: size is a valid winsize that outlives the call.
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TIOCSWINSZ,
            &size as *const libc::winsize,
        )
    };
    Errno::result(rc).map(drop)
}

/// Reads a terminal's window size (`TIOCGWINSZ`).
pub fn window_size(fd: BorrowedFd) -> Result<(u16, u16), Errno> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: size is a valid, writable winsize that outlives the call.
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TIOCGWINSZ,
            &mut size as *mut libc::winsize,
        )
    };
    Errno::result(rc).map(|_| (size.ws_row, size.ws_col))
}

/// Brings the loopback interface up (`SIOCGIFFLAGS`/`SIOCSIFFLAGS`).
pub fn loopback_up() -> Result<(), Errno> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: req is a valid ifreq naming "lo"; the socket is open.
    let rc = unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCGIFFLAGS,
            &mut req as *mut libc::ifreq,
        )
    };
    Errno::result(rc)?;
    // SAFETY: after SIOCGIFFLAGS the union holds the flags member.
    unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
    // SAFETY: as above.
    let rc = unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCSIFFLAGS,
            &mut req as *mut libc::ifreq,
        )
    };
    Errno::result(rc).map(drop)
}

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_IN_ROOT: u64 = 0x10;

/// `openat2(dir, path, flags, mode)` with `RESOLVE_IN_ROOT`: the path,
/// symlinks included, is resolved as if `dir` were `/`, so it can never
/// name anything outside `dir`.
pub fn open_in_root(dir: BorrowedFd, path: &str, flags: i32, mode: u32) -> Result<OwnedFd, Errno> {
    let c_path = CString::new(path).map_err(|_| Errno::EINVAL)?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: mode as u64,
        resolve: RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    loop {
        // SAFETY: c_path is NUL-terminated, how is a valid open_how of the
        // size passed, and both outlive the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                c_path.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        match Errno::result(rc) {
            // SAFETY: a successful openat2 returns a new descriptor that
            // nothing else owns.
            Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `lsetxattr(2)`.
pub fn lsetxattr(path: &std::path::Path, name: &[u8], value: &[u8]) -> Result<(), Errno> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    let c_name = CString::new(name).map_err(|_| Errno::EINVAL)?;
    // SAFETY: both strings are NUL-terminated and outlive the call; value
    // is a valid slice of the length passed.
    let rc = unsafe {
        libc::lsetxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    Errno::result(rc).map(drop)
}

/// `lgetxattr(2)` into a buffer of up to 4 KiB; `None` if absent.
pub fn lgetxattr(path: &std::path::Path, name: &[u8]) -> Result<Option<Vec<u8>>, Errno> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    let c_name = CString::new(name).map_err(|_| Errno::EINVAL)?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: both strings are NUL-terminated; buf is writable for its
    // full length; all outlive the call.
    let rc = unsafe {
        libc::lgetxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    match Errno::result(rc) {
        Ok(n) => {
            buf.truncate(n as usize);
            Ok(Some(buf))
        }
        Err(Errno::ENODATA) | Err(Errno::ENOTSUP) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `_exit(2)`: ends the process at once, without running atexit handlers
/// or flushing buffers inherited from the parent across fork.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no Rust-managed state.
    unsafe { libc::_exit(code) }
}

/// Restores default dispositions for the signals Rust's runtime changes
/// (SIGPIPE is ignored by std) and unblocks every signal, so the
/// container's process starts as if exec'd by a shell.
pub fn reset_signals() -> Result<(), Errno> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in Signal::iterator() {
        if matches!(sig, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: installing SIG_DFL runs no handler code.
        let _ = unsafe { sigaction(sig, &default) };
    }
    nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&SigSet::empty()),
        None,
    )
}

/// Ends the process as a write to a closed pipe ends Docker's client: by
/// SIGPIPE, with its default action (Rust ignores the signal), quietly.
pub fn die_of_sigpipe() -> ! {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: installing SIG_DFL runs no handler code.
    let _ = unsafe { sigaction(Signal::SIGPIPE, &default) };
    let mut unblock = SigSet::empty();
    unblock.add(Signal::SIGPIPE);
    let _ = unblock.thread_unblock();
    let _ = nix::sys::signal::raise(Signal::SIGPIPE);
    // Not reached; should it be, the status a shell shows for SIGPIPE.
    exit_now(128 + libc::SIGPIPE)
}

/// Takes ownership of a descriptor inherited across exec at a known
/// number (the monitor's status pipe), if it is open.
pub fn take_inherited_fd(fd: i32) -> Option<OwnedFd> {
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).ok()?;
    // SAFETY: the descriptor is open (F_GETFD succeeded) and, by the
    // monitor's calling convention, nothing else in this process owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let _ = nix::fcntl::fcntl(
        owned.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    Some(owned)
}

/// Wraps a descriptor just returned by a successful open/dup call.
pub fn own_fd(fd: std::os::fd::RawFd) -> OwnedFd {
    // SAFETY: callers pass only descriptors freshly returned by the
    // kernel to them, which nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Loads a compiled seccomp filter on the calling thread
/// (`seccomp(SECCOMP_SET_MODE_FILTER, flags, prog)`): `bpf` is an array
/// of `struct sock_filter` in native byte order, as libseccomp exports
/// it. Needs no_new_privs or CAP_SYS_ADMIN; the kernel checks the
/// program.
pub fn load_seccomp_filter(bpf: &[u8], flags: u32) -> Result<(), Errno> {
    if bpf.is_empty() || !bpf.len().is_multiple_of(8) {
        return Err(Errno::EINVAL);
    }
    let mut filter: Vec<libc::sock_filter> = bpf
        .chunks_exact(8)
        .map(|i| libc::sock_filter {
            code: u16::from_ne_bytes([i[0], i[1]]),
            jt: i[2],
            jf: i[3],
            k: u32::from_ne_bytes([i[4], i[5], i[6], i[7]]),
        })
        .collect();
    let prog = libc::sock_fprog {
        len: u16::try_from(filter.len()).map_err(|_| Errno::EINVAL)?,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: `prog` points at `filter`, `len` entries long, both alive
    // for the call; the kernel copies the program and keeps no pointer.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::c_ulong::from(flags),
            &prog as *const libc::sock_fprog,
        )
    };
    Errno::result(rc).map(drop)
}
