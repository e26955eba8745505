//! The monitor's side of a container's stdio. The container gets a
//! terminal (`-t`), or pipes for its output and, with `-i`, a pipe for
//! its input, whose write end the monitor keeps (so `attach` can write to
//! it later, as with Docker's `run -d -i`). The monitor never hands the
//! container a client's own descriptors.
//!
//! Output goes to the log and to every client attached through the
//! socket (`attach.rs` describes the protocol). A client's input goes to
//! the container; the first client of an attached start (`run -i`,
//! `start -a -i`) closes the container's input when its own ends
//! (Docker's StdinOnce), later ones do not.
//!
//! The monitor also keeps the terminals of detached `exec -t` processes
//! (handed over through the socket): it holds their master ends open
//! and reads and discards their output, so they never see a hangup or
//! block on a full terminal. An exec's output is not logged (as with
//! Docker).
//!
//! When the container's pid 1 has exited, the end of its pid namespace
//! has killed every process in the container, so its output normally
//! ends at once. A process outside the container can still hold the
//! output open (say, one that opened `/proc/PID/fd/1`): the copiers then
//! get a grace period (Docker's two seconds), drain what is buffered and
//! stop, so the container's end never waits on it ([`Copiers::finish`]).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::attach::{
    parse_size, read_frame, write_frame, CLOSE_STDIN, HELLO, RESIZE, SOCKET_NAME, STDERR, STDIN,
    STDOUT, TERMINAL,
};
use super::logs::{LineSplitter, LogWriter};
use crate::container::error::ContainerError;
use crate::container::sys;

/// The container's side of its stdio.
pub enum ChildStdio {
    Pipes {
        stdin: OwnedFd,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    /// With `-t` the container's first process opens its terminal in the
    /// container's own devpts (so `tty` names it) and sends the master
    /// end to the monitor over this socket.
    Terminal { console: OwnedFd },
}

/// The monitor's ends of the container's output.
pub enum Outputs {
    Pipes {
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    /// The terminal's master is still to come over `console`.
    Console {
        console: OwnedFd,
    },
    Pty {
        master: OwnedFd,
    },
}

/// What the monitor's threads share: the container's input, its
/// terminal, the attached clients.
pub struct Hub {
    /// The container's input (the pipe's write end or the terminal's
    /// master); `None` without -i, or once closed.
    input: Mutex<Option<File>>,
    /// The terminal's master, to resize it (once the container sent it).
    terminal: Mutex<Option<OwnedFd>>,
    tty: bool,
    interactive: bool,
    /// The last terminal size a client gave.
    size: Mutex<Option<(u16, u16)>>,
    clients: Mutex<Vec<(u64, UnixStream)>>,
    next_client: AtomicU64,
    /// Whether the next client is the one an attached start waits for.
    awaiting_first: AtomicBool,
    first_arrived: (Mutex<bool>, Condvar),
}

fn errno(op: &str) -> impl Fn(nix::Error) -> ContainerError + '_ {
    move |e| ContainerError::sys(op, e)
}

/// Makes the container's stdio: a terminal with `tty`, else pipes (and
/// an input pipe with `interactive`, /dev/null without).
pub fn make_stdio(
    tty: bool,
    interactive: bool,
) -> Result<(ChildStdio, Arc<Hub>, Outputs), ContainerError> {
    let (child, input, outputs) = if tty {
        let (mine, theirs) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .map_err(errno("socketpair"))?;
        (
            ChildStdio::Terminal { console: theirs },
            None,
            Outputs::Console { console: mine },
        )
    } else {
        let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(errno("pipe"));
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let (stdin, input) = if interactive {
            let (r, w) = pipe()?;
            (r, Some(File::from(w)))
        } else {
            let null = File::open("/dev/null").map_err(|e| ContainerError::io("/dev/null", e))?;
            (OwnedFd::from(null), None)
        };
        let child = ChildStdio::Pipes {
            stdin,
            stdout: out_w,
            stderr: err_w,
        };
        let outputs = Outputs::Pipes {
            stdout: out_r,
            stderr: err_r,
        };
        (child, input, outputs)
    };
    let hub = Arc::new(Hub {
        input: Mutex::new(input),
        terminal: Mutex::new(None),
        tty,
        interactive,
        size: Mutex::new(None),
        clients: Mutex::new(Vec::new()),
        next_client: AtomicU64::new(0),
        awaiting_first: AtomicBool::new(false),
        first_arrived: (Mutex::new(false), Condvar::new()),
    });
    Ok((child, hub, outputs))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Hub {
    /// Listens on the container directory's attach socket; with
    /// `attached`, the first client is the starting command's (see
    /// [`Hub::wait_first_client`]).
    pub fn listen(
        self: &Arc<Self>,
        container_dir: &Path,
        attached: bool,
    ) -> Result<PathBuf, ContainerError> {
        self.awaiting_first.store(attached, Ordering::SeqCst);
        let path = container_dir.join(SOCKET_NAME);
        let _ = std::fs::remove_file(&path);
        let dir = File::open(container_dir).map_err(|e| ContainerError::io(container_dir, e))?;
        let short = format!("/proc/self/fd/{}/{SOCKET_NAME}", dir.as_raw_fd());
        let listener = UnixListener::bind(short).map_err(|e| ContainerError::io(&path, e))?;
        let hub = Arc::clone(self);
        std::thread::Builder::new()
            .name("attach-listener".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    let hub = Arc::clone(&hub);
                    let _ = std::thread::Builder::new()
                        .name("attach-client".into())
                        .spawn(move || hub.serve(stream));
                }
            })
            .map_err(|e| ContainerError::io("attach listener thread", e))?;
        Ok(path)
    }

    /// Waits until the starting command has attached (true), or has gone
    /// away (its end of `status` closed: false).
    pub fn wait_first_client(&self, status: Option<&File>) -> bool {
        let (arrived, signal) = &self.first_arrived;
        let mut done = lock(arrived);
        while !*done {
            let gone = status.is_none_or(|s| {
                let mut fds = [nix::poll::PollFd::new(
                    s.as_fd(),
                    nix::poll::PollFlags::empty(),
                )];
                nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).is_ok_and(|n| n > 0)
            });
            if gone {
                return false;
            }
            done = signal
                .wait_timeout(done, Duration::from_millis(100))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        true
    }

    fn serve(&self, stream: UnixStream) {
        let mut reader = stream;
        let Ok(writer) = reader.try_clone() else {
            return;
        };
        // The hello carries the client's terminal size.
        match read_frame(&mut reader) {
            Ok(Some((HELLO, size))) => self.resize(&size),
            Ok(Some((TERMINAL, _))) => return keep_terminal(&reader),
            _ => return,
        }
        let id = self.next_client.fetch_add(1, Ordering::SeqCst);
        lock(&self.clients).push((id, writer));
        let stdin_once = self.awaiting_first.swap(false, Ordering::SeqCst);
        if stdin_once {
            *lock(&self.first_arrived.0) = true;
            self.first_arrived.1.notify_all();
        }
        loop {
            match read_frame(&mut reader) {
                Ok(Some((STDIN, data))) => {
                    let mut input = lock(&self.input);
                    if let Some(f) = input.as_mut() {
                        if f.write_all(&data).is_err() {
                            *input = None;
                        }
                    }
                }
                Ok(Some((CLOSE_STDIN, _))) => {
                    if stdin_once && !self.tty {
                        *lock(&self.input) = None;
                    }
                }
                Ok(Some((RESIZE, size))) => self.resize(&size),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        lock(&self.clients).retain(|(i, _)| *i != id);
    }

    fn resize(&self, payload: &[u8]) {
        let Some((rows, cols)) = parse_size(payload) else {
            return;
        };
        *lock(&self.size) = Some((rows, cols));
        if let Some(terminal) = lock(&self.terminal).as_ref() {
            let _ = sys::set_window_size(terminal.as_fd(), rows, cols);
        }
    }

    /// The size the container's terminal starts with: the last a client
    /// gave.
    pub fn terminal_size(&self) -> Option<(u16, u16)> {
        *lock(&self.size)
    }

    /// With a terminal, takes its master from the container's first
    /// process (`None` if it failed before sending it).
    pub fn receive_terminal(&self, outputs: Outputs) -> Result<Option<Outputs>, ContainerError> {
        let Outputs::Console { console } = outputs else {
            return Ok(Some(outputs));
        };
        let Some(master) =
            sys::receive_fd(console.as_fd()).map_err(errno("receiving the terminal"))?
        else {
            return Ok(None);
        };
        let copy = |what| master.try_clone().map_err(|e| ContainerError::io(what, e));
        if self.interactive {
            *lock(&self.input) = Some(File::from(copy("terminal")?));
        }
        let terminal = copy("terminal")?;
        if let Some((rows, cols)) = self.terminal_size() {
            let _ = sys::set_window_size(terminal.as_fd(), rows, cols);
        }
        *lock(&self.terminal) = Some(terminal);
        Ok(Some(Outputs::Pty { master }))
    }

    /// Sends output to every client; a client that cannot take it is
    /// dropped.
    fn broadcast(&self, kind: u8, data: &[u8]) {
        lock(&self.clients).retain_mut(|(_, s)| write_frame(s, kind, data).is_ok());
    }

    /// Closes every client's connection (the container has exited and
    /// its output is all sent).
    pub fn hang_up(&self) {
        for (_, s) in lock(&self.clients).drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// In the client thread of a detached `exec -t`'s connection: takes the
/// terminal's master and reads (and discards) its output until every
/// process holding the terminal has closed it (EIO).
fn keep_terminal(stream: &UnixStream) {
    let Ok(Some(master)) = sys::receive_fd(stream.as_fd()) else {
        return;
    };
    let mut master = File::from(master);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match master.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// How long the copiers wait, once the container's pid 1 has exited,
/// for its output to end by itself (Docker waits as long for its
/// streams).
pub const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// The threads copying the container's output.
#[derive(Default)]
pub struct Copiers {
    /// Each thread sends one message here when it is done.
    done: Option<std::sync::mpsc::Receiver<()>>,
    count: usize,
    /// Dropping this write end tells the copiers to drain what is
    /// buffered and stop.
    stop: Option<OwnedFd>,
}

impl Copiers {
    /// Once the container's pid 1 has exited: waits up to `grace` for
    /// the output to end (its last holder closed it), then has the
    /// copiers read what is still buffered and stop, and waits for them.
    pub fn finish(mut self, grace: Duration) {
        let Some(done) = self.done.take() else {
            return;
        };
        let deadline = std::time::Instant::now() + grace;
        let mut finished = 0;
        while finished < self.count {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match done.recv_timeout(left) {
                Ok(()) => finished += 1,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
        drop(self.stop.take());
        while finished < self.count && done.recv().is_ok() {
            finished += 1;
        }
    }
}

/// Copies the container's output to the log and the clients until the
/// container closes it (or [`Copiers::finish`] stops them).
pub fn start_copiers(hub: &Arc<Hub>, outputs: Outputs, log: LogWriter) -> Copiers {
    // Without this pipe (none could be made) the copiers stop only at
    // the output's end.
    let (stop_r, stop_w) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok((r, w)) => (Some(Arc::new(r)), Some(w)),
        Err(e) => {
            tracing::warn!("pipe for the output copiers: {e}");
            (None, None)
        }
    };
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let mut count = 0;
    let mut copy = |source: OwnedFd, stream: &'static str, kind: u8, log: LogWriter| {
        let hub = Arc::clone(hub);
        let stop = stop_r.clone();
        let done = done_tx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("copy-{stream}"))
            .spawn(move || {
                let mut split = LineSplitter::default();
                copy_output(source, stop.as_deref(), |data| {
                    hub.broadcast(kind, data);
                    split.push(data, |l| log.write(stream, l));
                });
                split.finish(|l| log.write(stream, l));
                let _ = done.send(());
            });
        if spawned.is_ok() {
            count += 1;
        }
    };
    match outputs {
        Outputs::Pipes { stdout, stderr } => {
            copy(stdout, "stdout", STDOUT, log.clone());
            copy(stderr, "stderr", STDERR, log);
        }
        Outputs::Pty { master } => copy(master, "stdout", STDOUT, log),
        Outputs::Console { .. } => {}
    }
    Copiers {
        done: Some(done_rx),
        count,
        stop: stop_w,
    }
}

/// Reads `source` into `sink` until its end (EOF, or EIO once a
/// terminal's last holder closed it) or, once `stop` is readable (its
/// write end closed), until nothing more is buffered. Draining reads at
/// most [`DRAIN_LIMIT`] bytes, so a writer outside the container that
/// keeps writing cannot hold it.
fn copy_output(source: OwnedFd, stop: Option<&OwnedFd>, mut sink: impl FnMut(&[u8])) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut buf = vec![0u8; 32 * 1024];
    let mut drained: Option<usize> = None;
    loop {
        let mut fds = vec![PollFd::new(source.as_fd(), PollFlags::POLLIN)];
        match (stop, drained) {
            (Some(stop), None) => fds.push(PollFd::new(stop.as_fd(), PollFlags::POLLIN)),
            (_, Some(n)) if n >= DRAIN_LIMIT => return,
            _ => {}
        }
        let timeout = match drained {
            Some(_) => PollTimeout::ZERO,
            None => PollTimeout::NONE,
        };
        match poll(&mut fds, timeout) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
            Ok(_) => {}
        }
        let ready = |f: &PollFd| f.any().unwrap_or(true);
        if fds.get(1).is_some_and(ready) {
            // Told to stop: drain what is buffered from now on.
            drained = Some(0);
            continue;
        }
        if !ready(&fds[0]) {
            if drained.is_some() {
                return;
            }
            continue;
        }
        match nix::unistd::read(source.as_raw_fd(), &mut buf) {
            Ok(0) => return,
            Ok(n) => {
                sink(&buf[..n]);
                drained = drained.map(|d| d + n);
            }
            Err(nix::errno::Errno::EINTR) => {}
            // EIO: the terminal's last holder closed it.
            Err(_) => return,
        }
    }
}

/// The most a drain reads: a pipe holds no more (the default
/// `/proc/sys/fs/pipe-max-size`), a terminal much less.
const DRAIN_LIMIT: usize = 1 << 20;
