//! UDP forwarding of one host port: a single thread runs an event loop
//! over the host socket and one upstream socket per client (connected
//! to the container, so its answers come back on it and go out to that
//! client from the host socket). A client's socket closes after
//! [`IDLE`] without traffic either way, and all of them when the proxy
//! stops. A datagram that cannot be sent at once is dropped, as the
//! network may drop it.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};

use super::{Control, FIRST_TOKEN, WAKER};

const HOST: Token = Token(FIRST_TOKEN);
const CLIENTS: usize = FIRST_TOKEN + 1;
/// How long a client's upstream socket lives without traffic.
const IDLE: Duration = Duration::from_secs(90);
/// How often idle clients are looked for while there are any.
const SWEEP: Duration = Duration::from_secs(5);

struct Client {
    addr: SocketAddr,
    upstream: UdpSocket,
    last: Instant,
}

struct Proxy {
    poll: Poll,
    host: UdpSocket,
    target: SocketAddrV4,
    clients: Vec<Option<Client>>,
    by_addr: HashMap<SocketAddr, usize>,
    free: Vec<usize>,
    buf: Vec<u8>,
}

/// Runs the loop until it is stopped.
pub(super) fn serve(poll: Poll, host: UdpSocket, target: SocketAddrV4, control: Control) {
    let mut host = host;
    if poll
        .registry()
        .register(&mut host, HOST, Interest::READABLE)
        .is_err()
    {
        return;
    }
    let mut proxy = Proxy {
        poll,
        host,
        target,
        clients: Vec::new(),
        by_addr: HashMap::new(),
        free: Vec::new(),
        buf: vec![0u8; 65536],
    };
    let mut events = Events::with_capacity(64);
    let mut last_sweep = Instant::now();
    loop {
        let timeout = (!proxy.by_addr.is_empty()).then_some(SWEEP);
        if let Err(e) = proxy.poll.poll(&mut events, timeout) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if control.stopping() {
            // The host socket and every client's close as `proxy` drops.
            return;
        }
        for event in events.iter() {
            match event.token() {
                WAKER => {}
                HOST => proxy.relay_to_container(),
                Token(t) => proxy.relay_to_client(t - CLIENTS),
            }
        }
        if last_sweep.elapsed() >= SWEEP {
            proxy.close_idle();
            last_sweep = Instant::now();
        }
    }
}

impl Proxy {
    /// Datagrams from clients, each sent on its client's socket.
    fn relay_to_container(&mut self) {
        loop {
            let (n, addr) = match self.host.recv_from(&mut self.buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            let slot = match self.by_addr.get(&addr) {
                Some(&slot) => slot,
                None => match self.add_client(addr) {
                    Some(slot) => slot,
                    None => continue,
                },
            };
            if let Some(Some(c)) = self.clients.get_mut(slot) {
                c.last = Instant::now();
                let _ = c.upstream.send(&self.buf[..n]);
            }
        }
    }

    fn add_client(&mut self, addr: SocketAddr) -> Option<usize> {
        let mut upstream =
            UdpSocket::bind(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))).ok()?;
        upstream.connect(SocketAddr::V4(self.target)).ok()?;
        let slot = self.free.last().copied().unwrap_or(self.clients.len());
        self.poll
            .registry()
            .register(&mut upstream, Token(CLIENTS + slot), Interest::READABLE)
            .ok()?;
        if slot < self.clients.len() {
            self.free.pop();
        }
        let client = Client {
            addr,
            upstream,
            last: Instant::now(),
        };
        if slot == self.clients.len() {
            self.clients.push(Some(client));
        } else {
            self.clients[slot] = Some(client);
        }
        self.by_addr.insert(addr, slot);
        Some(slot)
    }

    /// The container's answers to one client.
    fn relay_to_client(&mut self, slot: usize) {
        let Some(Some(c)) = self.clients.get_mut(slot) else {
            return;
        };
        loop {
            match c.upstream.recv(&mut self.buf) {
                Ok(n) => {
                    c.last = Instant::now();
                    let _ = self.host.send_to(&self.buf[..n], c.addr);
                }
                // An ICMP error (nothing listens there) is reported once;
                // answers may still follow it.
                Err(e)
                    if e.kind() == io::ErrorKind::Interrupted
                        || e.kind() == io::ErrorKind::ConnectionRefused => {}
                // WouldBlock: all read.
                Err(_) => return,
            }
        }
    }

    fn close_idle(&mut self) {
        for slot in 0..self.clients.len() {
            let idle = self.clients[slot]
                .as_ref()
                .is_some_and(|c| c.last.elapsed() >= IDLE);
            if !idle {
                continue;
            }
            if let Some(mut c) = self.clients[slot].take() {
                let _ = self.poll.registry().deregister(&mut c.upstream);
                self.by_addr.remove(&c.addr);
                self.free.push(slot);
            }
        }
    }
}
