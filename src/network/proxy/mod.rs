//! The userland proxy: the monitor binds every published host port
//! before the container starts (so a port in use is an error then, and
//! nothing else can take it while the container runs) and forwards what
//! reaches the socket to the container: loopback connections, and those
//! from containers through the host's address (the DNAT rules take the
//! rest, see `firewall.rs`).
//!
//! Each bound port has one thread running an event loop (`mio`, epoll)
//! over its socket and everything it carries, so a connection costs no
//! thread: TCP connections are copied with splice(2) through a pipe in
//! each direction, without passing through user memory (`tcp.rs`); UDP
//! by datagram, one upstream socket per client (`udp.rs`).

mod tcp;
mod udp;

use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

use mio::{Poll, Token, Waker};

use super::NetworkError;

/// A bound host port.
pub enum Bound {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

/// A host port held for a container, and where it forwards to (the
/// container's IPv4 address, also for a host port on IPv6, as Docker's
/// proxy does for a container without IPv6).
pub struct Listener {
    pub bound: Bound,
    pub host: SocketAddr,
    pub target: SocketAddrV4,
}

/// Binds `ip:port` (port 0: the kernel picks a free one). An IPv6
/// socket is IPv6-only, so `[::]:P` and `0.0.0.0:P` are two bindings,
/// as Docker makes them.
pub fn bind(proto: &str, ip: IpAddr, port: u16) -> io::Result<(Bound, u16)> {
    let addr = match ip {
        IpAddr::V4(ip) => SocketAddrV4::new(ip, port),
        IpAddr::V6(ip) => return bind_v6(proto, SocketAddrV6::new(ip, port, 0, 0)),
    };
    if proto == "udp" {
        let s = UdpSocket::bind(addr)?;
        let port = s.local_addr()?.port();
        Ok((Bound::Udp(s), port))
    } else {
        let s = TcpListener::bind(addr)?;
        let port = s.local_addr()?.port();
        Ok((Bound::Tcp(s), port))
    }
}

fn bind_v6(proto: &str, addr: SocketAddrV6) -> io::Result<(Bound, u16)> {
    use nix::sys::socket::{self as s, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn6};
    let kind = if proto == "udp" {
        SockType::Datagram
    } else {
        SockType::Stream
    };
    let fd = s::socket(AddressFamily::Inet6, kind, SockFlag::SOCK_CLOEXEC, None)?;
    s::setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    if proto != "udp" {
        // As std's TcpListener::bind: a port in TIME_WAIT can be taken.
        s::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    }
    s::bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrIn6::from(addr),
    )?;
    if proto == "udp" {
        let u = UdpSocket::from(fd);
        let port = u.local_addr()?.port();
        return Ok((Bound::Udp(u), port));
    }
    s::listen(&fd, s::Backlog::MAXCONN)?;
    let l = TcpListener::from(fd);
    let port = l.local_addr()?.port();
    Ok((Bound::Tcp(l), port))
}

/// Whether this host can listen on IPv6 (Docker's test before it binds
/// `[::]` beside `0.0.0.0`): false where IPv6 is disabled or absent.
pub fn ipv6_listenable() -> bool {
    TcpListener::bind(SocketAddrV6::new(std::net::Ipv6Addr::LOCALHOST, 0, 0, 0)).is_ok()
}

/// The event loop's token for its waker; the loops number their
/// sockets from [`FIRST_TOKEN`].
const WAKER: Token = Token(0);
const FIRST_TOKEN: usize = 1;

/// What an event loop is told by [`Running::stop`], and how it answers.
struct Control {
    stopped: Arc<AtomicBool>,
    /// Dropped by the loop once the host port is closed.
    _port_closed: Sender<()>,
}

impl Control {
    fn stopping(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }
}

/// The running proxy of one listener.
pub struct Running {
    stopped: Arc<AtomicBool>,
    waker: Waker,
    closed: Receiver<()>,
}

impl Running {
    /// Stops accepting and waits until the host port is closed: the
    /// port is free for another container once this returns. TCP
    /// connections already proxied go on until either end closes (the
    /// loop ends with the last); UDP clients are dropped.
    pub fn stop(self) {
        if self.signal() {
            // Err: the loop dropped its sender (the port is closed).
            let _ = self.closed.recv();
        }
    }

    fn signal(&self) -> bool {
        self.stopped.store(true, Ordering::SeqCst);
        self.waker.wake().is_ok()
    }
}

impl Drop for Running {
    /// A proxy dropped without [`Running::stop`] stops too, without
    /// waiting.
    fn drop(&mut self) {
        self.signal();
    }
}

/// Starts forwarding on a thread of its own.
pub fn start(listener: Listener) -> Result<Running, NetworkError> {
    let setup = |e| NetworkError::io("setting up the port proxy", e);
    let poll = Poll::new().map_err(setup)?;
    let waker = Waker::new(poll.registry(), WAKER).map_err(setup)?;
    let stopped = Arc::new(AtomicBool::new(false));
    let (closed, closed_rx) = channel();
    let control = Control {
        stopped: stopped.clone(),
        _port_closed: closed,
    };
    let target = listener.target;
    let name = format!("proxy-{}", listener.host.port());
    let spawned = match listener.bound {
        Bound::Tcp(l) => {
            l.set_nonblocking(true).map_err(setup)?;
            let l = mio::net::TcpListener::from_std(l);
            std::thread::Builder::new()
                .name(name)
                .spawn(move || tcp::serve(poll, l, target, control))
        }
        Bound::Udp(u) => {
            u.set_nonblocking(true).map_err(setup)?;
            let u = mio::net::UdpSocket::from_std(u);
            std::thread::Builder::new()
                .name(name)
                .spawn(move || udp::serve(poll, u, target, control))
        }
    };
    spawned.map_err(|e| NetworkError::io("spawning the port proxy", e))?;
    Ok(Running {
        stopped,
        waker,
        closed: closed_rx,
    })
}
