//! The userland proxy: the monitor binds every published host port
//! before the container starts (so a port in use is an error then, and
//! nothing else can take it while the container runs) and forwards what
//! reaches the socket to the container: loopback connections, and those
//! from containers through the host's address (the DNAT rules take the
//! rest, see `firewall.rs`). TCP is copied with splice(2) through a
//! pipe, without passing through user memory; UDP by datagram, one
//! upstream socket per client.

use std::collections::HashMap;
use std::io;
use std::net::{
    IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener, TcpStream, UdpSocket,
};
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

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

/// The running proxy of one listener.
pub struct Running {
    socket: Arc<Bound>,
    stopped: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting and waits for the accept loop: the port is free
    /// for another container once this returns (connections already
    /// proxied go on until either end closes).
    pub fn stop(mut self) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        match &*self.socket {
            Bound::Tcp(l) => {
                let _ = nix::sys::socket::shutdown(
                    std::os::fd::AsRawFd::as_raw_fd(l),
                    nix::sys::socket::Shutdown::Both,
                );
            }
            Bound::Udp(s) => {
                let _ = nix::sys::socket::shutdown(
                    std::os::fd::AsRawFd::as_raw_fd(s),
                    nix::sys::socket::Shutdown::Both,
                );
            }
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts forwarding on a thread.
pub fn start(listener: Listener) -> Result<Running, NetworkError> {
    let socket = Arc::new(listener.bound);
    let target = listener.target;
    let s = socket.clone();
    let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stopped.clone();
    let thread = std::thread::Builder::new()
        .name(format!("proxy-{}", listener.host.port()))
        .spawn(move || match &*s {
            Bound::Tcp(l) => accept_loop(l, target),
            Bound::Udp(u) => udp_loop(u, target, &flag),
        })
        .map_err(|e| NetworkError::io("spawning the port proxy", e))?;
    Ok(Running {
        socket,
        stopped,
        thread: Some(thread),
    })
}

fn accept_loop(listener: &TcpListener, target: SocketAddrV4) {
    loop {
        let client = match listener.accept() {
            Ok((c, _)) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if e.raw_os_error() == Some(libc::EMFILE)
                    || e.raw_os_error() == Some(libc::ENFILE) =>
            {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
            Err(_) => return,
        };
        let _ = std::thread::Builder::new()
            .name("proxy-conn".into())
            .spawn(move || {
                if let Ok(upstream) =
                    TcpStream::connect_timeout(&SocketAddr::V4(target), Duration::from_secs(10))
                {
                    relay(client, upstream);
                }
            });
    }
}

/// Copies both ways until both directions end.
fn relay(client: TcpStream, upstream: TcpStream) {
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let back = std::thread::Builder::new()
        .name("proxy-back".into())
        .spawn(move || pump(&u2, &c2));
    pump(&client, &upstream);
    if let Ok(t) = back {
        let _ = t.join();
    }
}

/// Moves bytes from `from` to `to` with splice until end of input, then
/// shuts `to` for writing.
fn pump(from: &TcpStream, to: &TcpStream) {
    use nix::fcntl::{splice, SpliceFFlags};
    // Not SPLICE_F_MORE: into a socket it corks the data (as MSG_MORE),
    // so a short answer waited for the 200 ms cork timer; 60 requests
    // per second instead of thousands.
    let flags = SpliceFFlags::SPLICE_F_MOVE;
    let Ok((pipe_r, pipe_w)) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) else {
        return;
    };
    let _ = nix::fcntl::fcntl(
        std::os::fd::AsRawFd::as_raw_fd(&pipe_w),
        nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20),
    );
    loop {
        let n = match splice(from.as_fd(), None, pipe_w.as_fd(), None, 1 << 20, flags) {
            Ok(0) => break,
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        };
        let mut left = n;
        while left > 0 {
            match splice(pipe_r.as_fd(), None, to.as_fd(), None, left, flags) {
                Ok(0) => return,
                Ok(m) => left -= m,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => {
                    let _ = from.shutdown(std::net::Shutdown::Read);
                    return;
                }
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// How long a UDP client's upstream socket lives without traffic.
const UDP_IDLE: Duration = Duration::from_secs(90);

fn udp_loop(socket: &UdpSocket, target: SocketAddrV4, stopped: &std::sync::atomic::AtomicBool) {
    let clients: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>> = Arc::default();
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, client) = match socket.recv_from(&mut buf) {
            // A shut-down socket reads as empty.
            Ok(_) if stopped.load(std::sync::atomic::Ordering::SeqCst) => return,
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let existing = clients.lock().ok().and_then(|m| m.get(&client).cloned());
        let upstream = match existing {
            Some(u) => u,
            None => {
                let Ok(u) = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)) else {
                    continue;
                };
                if u.connect(target).is_err() {
                    continue;
                }
                let _ = u.set_read_timeout(Some(UDP_IDLE));
                let u = Arc::new(u);
                if let Ok(mut m) = clients.lock() {
                    m.insert(client, u.clone());
                }
                let (reply_to, back, table) = (socket.try_clone(), u.clone(), clients.clone());
                if let Ok(reply_to) = reply_to {
                    let _ = std::thread::Builder::new()
                        .name("proxy-udp".into())
                        .spawn(move || {
                            let mut buf = vec![0u8; 65536];
                            while let Ok(n) = back.recv(&mut buf) {
                                if reply_to.send_to(&buf[..n], client).is_err() {
                                    break;
                                }
                            }
                            if let Ok(mut m) = table.lock() {
                                m.remove(&client);
                            }
                        });
                }
                u
            }
        };
        let _ = upstream.send(&buf[..n]);
    }
}
