//! TCP forwarding of one host port: a single thread runs an event loop
//! over the listening socket and every connection it carries. Each
//! connection is a client socket, a socket to the container (connected
//! without blocking) and one pipe per direction; bytes move with
//! splice(2), socket to pipe to socket. A direction that reaches end of
//! input is shut for writing on the other side once its pipe is empty
//! (half-close passes through); a connection ends when both directions
//! have, and its sockets and pipes close with it.

use std::io;
use std::net::{Shutdown, SocketAddr, SocketAddrV4};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use nix::errno::Errno;
use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};

use super::{Control, FIRST_TOKEN, WAKER};

const LISTENER: Token = Token(FIRST_TOKEN);
/// Connection `i` has the tokens `CONNECTIONS + 2i` (client) and
/// `CONNECTIONS + 2i + 1` (container).
const CONNECTIONS: usize = FIRST_TOKEN + 1;
/// A connection to the container not made in this time is given up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often late connections are looked for while there are any.
const SWEEP: Duration = Duration::from_secs(1);
/// A pipe that a single read filled is grown to this (bulk transfers
/// move fewer, larger chunks); short exchanges keep the default size.
const LARGE_PIPE: usize = 1 << 20;
/// After EMFILE/ENFILE, accepting is tried again after this long.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    capacity: usize,
}

impl Pipe {
    fn new() -> Option<Pipe> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ok()?;
        let capacity = fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&write),
            FcntlArg::F_GETPIPE_SZ,
        )
        .ok()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(4096);
        Some(Pipe {
            read,
            write,
            capacity,
        })
    }

    fn grow(&mut self) {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.write);
        if let Ok(n) = fcntl(fd, FcntlArg::F_SETPIPE_SZ(LARGE_PIPE as libc::c_int)) {
            self.capacity = usize::try_from(n).unwrap_or(self.capacity);
        }
    }
}

/// One direction of a connection: what was read and not yet written
/// is in its pipe.
#[derive(Default)]
struct Direction {
    pipe: Option<Pipe>,
    buffered: usize,
    /// The source reached its end (or failed).
    ended: bool,
    /// Nothing more moves this way.
    done: bool,
}

impl Direction {
    /// Moves what it can from `from` to `to`, until one of them would
    /// block or the direction is done.
    fn pump(&mut self, from: &TcpStream, to: &TcpStream) {
        let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
        while !self.done {
            if self.buffered > 0 {
                let Some(pipe) = &self.pipe else { return };
                // Not SPLICE_F_MORE: into a socket it corks the data (as
                // MSG_MORE), so a short answer waited for the 200 ms
                // cork timer.
                match splice(
                    pipe.read.as_fd(),
                    None,
                    to.as_fd(),
                    None,
                    self.buffered,
                    flags,
                ) {
                    Ok(n) => self.buffered = self.buffered.saturating_sub(n),
                    Err(Errno::EINTR) => {}
                    Err(Errno::EAGAIN) => return,
                    Err(_) => {
                        // The receiver is gone: stop reading its sender.
                        let _ = from.shutdown(Shutdown::Read);
                        self.done = true;
                        self.pipe = None;
                    }
                }
                continue;
            }
            if self.ended {
                let _ = to.shutdown(Shutdown::Write);
                self.done = true;
                return;
            }
            if self.pipe.is_none() {
                self.pipe = Pipe::new();
            }
            let Some(pipe) = &mut self.pipe else {
                self.ended = true;
                continue;
            };
            // The pipe is empty: EAGAIN can only be the socket's.
            match splice(
                from.as_fd(),
                None,
                pipe.write.as_fd(),
                None,
                pipe.capacity,
                flags,
            ) {
                Ok(0) => self.ended = true,
                Ok(n) => {
                    self.buffered = n;
                    if n >= pipe.capacity && pipe.capacity < LARGE_PIPE {
                        pipe.grow();
                    }
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return,
                Err(_) => self.ended = true,
            }
        }
    }
}

struct Connection {
    client: TcpStream,
    upstream: TcpStream,
    /// Since when the connection to the container is being made.
    connecting: Option<Instant>,
    outbound: Direction,
    inbound: Direction,
}

impl Connection {
    /// Whether the connection to the container is made (Ok(false):
    /// not yet), as mio says to find out after a writable event.
    fn check_connected(&self) -> io::Result<bool> {
        if let Some(e) = self.upstream.take_error()? {
            return Err(e);
        }
        match self.upstream.peer_addr() {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn pump(&mut self) {
        self.outbound.pump(&self.client, &self.upstream);
        self.inbound.pump(&self.upstream, &self.client);
    }

    fn finished(&self) -> bool {
        self.outbound.done && self.inbound.done
    }
}

struct Proxy {
    poll: Poll,
    target: SocketAddrV4,
    listener: Option<TcpListener>,
    connections: Vec<Option<Connection>>,
    free: Vec<usize>,
    open: usize,
    /// How many connections to the container are being made, and when
    /// the late ones were last looked for.
    connecting: usize,
    last_sweep: Instant,
    accept_paused: Option<Instant>,
}

/// Runs the loop until it is stopped and its last connection ended.
pub(super) fn serve(poll: Poll, listener: TcpListener, target: SocketAddrV4, control: Control) {
    let mut listener = listener;
    if poll
        .registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .is_err()
    {
        return;
    }
    let mut proxy = Proxy {
        poll,
        target,
        listener: Some(listener),
        connections: Vec::new(),
        free: Vec::new(),
        open: 0,
        connecting: 0,
        last_sweep: Instant::now(),
        accept_paused: None,
    };
    let mut control = Some(control);
    let mut events = Events::with_capacity(256);
    loop {
        if let Err(e) = proxy.poll.poll(&mut events, proxy.timeout()) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        for event in events.iter() {
            match event.token() {
                WAKER => {}
                LISTENER => proxy.accept(),
                Token(t) => proxy.on_event((t - CONNECTIONS) / 2),
            }
        }
        if control.as_ref().is_some_and(Control::stopping) {
            // Closing the host port, then telling `stop` it is free.
            proxy.listener = None;
            proxy.accept_paused = None;
            control = None;
        }
        proxy.on_timers();
        if proxy.listener.is_none() && proxy.open == 0 {
            return;
        }
    }
}

impl Proxy {
    fn timeout(&self) -> Option<Duration> {
        if self.accept_paused.is_some() {
            Some(ACCEPT_RETRY)
        } else if self.connecting > 0 {
            Some(SWEEP)
        } else {
            None
        }
    }

    fn accept(&mut self) {
        let Some(listener) = self.listener.take() else {
            return;
        };
        loop {
            match listener.accept() {
                Ok((client, _)) => self.open_connection(client),
                Err(e)
                    if e.raw_os_error() == Some(libc::EMFILE)
                        || e.raw_os_error() == Some(libc::ENFILE) =>
                {
                    // Out of descriptors: the connection waits in the
                    // backlog; try again shortly.
                    self.accept_paused = Some(Instant::now());
                    break;
                }
                Err(e)
                    if e.kind() == io::ErrorKind::Interrupted
                        || e.kind() == io::ErrorKind::ConnectionAborted => {}
                // WouldBlock: all taken.
                Err(_) => break,
            }
        }
        self.listener = Some(listener);
    }

    fn open_connection(&mut self, mut client: TcpStream) {
        // Refused by the container (or no descriptor): the client's
        // socket closes here.
        let Ok(mut upstream) = TcpStream::connect(SocketAddr::V4(self.target)) else {
            return;
        };
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let slot = self.free.pop().unwrap_or(self.connections.len());
        let token = CONNECTIONS + 2 * slot;
        let both = Interest::READABLE | Interest::WRITABLE;
        let registry = self.poll.registry();
        if registry.register(&mut client, Token(token), both).is_err()
            || registry
                .register(&mut upstream, Token(token + 1), both)
                .is_err()
        {
            let _ = registry.deregister(&mut client);
            if slot < self.connections.len() {
                self.free.push(slot);
            }
            return;
        }
        let connection = Connection {
            client,
            upstream,
            connecting: Some(Instant::now()),
            outbound: Direction::default(),
            inbound: Direction::default(),
        };
        if slot == self.connections.len() {
            self.connections.push(Some(connection));
        } else {
            self.connections[slot] = Some(connection);
        }
        self.open += 1;
        self.connecting += 1;
    }

    fn on_event(&mut self, slot: usize) {
        let Some(Some(c)) = self.connections.get_mut(slot) else {
            return;
        };
        if c.connecting.is_some() {
            match c.check_connected() {
                Ok(true) => {
                    c.connecting = None;
                    self.connecting -= 1;
                }
                Ok(false) => return,
                Err(_) => {
                    self.close(slot);
                    return;
                }
            }
        }
        c.pump();
        if c.finished() {
            self.close(slot);
        }
    }

    fn close(&mut self, slot: usize) {
        let Some(mut c) = self.connections.get_mut(slot).and_then(Option::take) else {
            return;
        };
        let registry = self.poll.registry();
        let _ = registry.deregister(&mut c.client);
        let _ = registry.deregister(&mut c.upstream);
        if c.connecting.is_some() {
            self.connecting -= 1;
        }
        self.free.push(slot);
        self.open -= 1;
    }

    /// Accepting again after EMFILE; connections to the container that
    /// took too long are given up.
    fn on_timers(&mut self) {
        if let Some(since) = self.accept_paused {
            if since.elapsed() >= ACCEPT_RETRY {
                self.accept_paused = None;
                self.accept();
            }
        }
        if self.connecting == 0 || self.last_sweep.elapsed() < SWEEP {
            return;
        }
        self.last_sweep = Instant::now();
        let late: Vec<usize> = self
            .connections
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let since = c.as_ref()?.connecting?;
                (since.elapsed() >= CONNECT_TIMEOUT).then_some(i)
            })
            .collect();
        for slot in late {
            self.close(slot);
        }
    }
}
