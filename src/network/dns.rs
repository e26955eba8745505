//! The DNS server at 127.0.0.11 in each container's namespace on a
//! user-defined network, as Docker's embedded server: the monitor binds
//! it inside the container's namespace (port 53, UDP and TCP) and
//! answers from the store: the names, network aliases and ID prefixes
//! (12 digits or more) of the running containers that share a
//! user-defined network with the asking container. Other names are
//! forwarded, from the host's namespace, to the container's `--dns`
//! servers or else the host's resolvers (loopback ones included, since
//! the forwarding socket is the host's), over the protocol the question
//! came by. A UDP answer larger than the client takes (512 bytes, or its
//! EDNS size) is sent truncated (TC) so that the client asks again over
//! TCP; an upstream's truncated answer is passed on as it is.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{rdata::A, RData, Record, RecordType};

use crate::store::Store;

/// Where the server listens inside the container.
pub const DNS_ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

/// How long an upstream gets to answer, and a TCP client to send.
const TIMEOUT: Duration = Duration::from_secs(3);

/// The server's sockets, bound inside the container's namespace.
pub struct DnsSockets {
    pub udp: UdpSocket,
    pub tcp: TcpListener,
}

/// Binds 127.0.0.11:53 (UDP and TCP); the caller is in the container's
/// namespace with loopback up.
pub fn bind_in_namespace() -> std::io::Result<DnsSockets> {
    let address = SocketAddrV4::new(DNS_ADDRESS, 53);
    Ok(DnsSockets {
        udp: UdpSocket::bind(address)?,
        tcp: TcpListener::bind(address)?,
    })
}

/// The names containers on this container's user-defined networks
/// answer to, with their addresses.
fn lookup(store: &Store, container_id: &str, name: &str) -> Vec<Ipv4Addr> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty() {
        return Vec::new();
    }
    let sql = "SELECT e2.ip, c.name, c.id, e2.aliases, n.name FROM endpoints e1
        JOIN endpoints e2 ON e1.network_id = e2.network_id
        JOIN networks n ON n.id = e1.network_id
        JOIN containers c ON c.id = e2.container_id
        WHERE e1.container_id = ?1 AND e2.ip IS NOT NULL AND n.name != 'bridge'";
    let Ok(mut stmt) = store.conn().prepare_cached(sql) else {
        return Vec::new();
    };
    let rows = stmt.query_map([container_id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
        ))
    });
    let Ok(rows) = rows else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (ip, cname, id, aliases, network) in rows.flatten() {
        let aliases: Vec<String> = serde_json::from_str(&aliases).unwrap_or_default();
        // `name` or `name.network`, as Docker answers both.
        let bare = name
            .strip_suffix(&format!(".{}", network.to_ascii_lowercase()))
            .unwrap_or(&name);
        let hit = cname.eq_ignore_ascii_case(bare)
            || aliases.iter().any(|a| a.eq_ignore_ascii_case(bare))
            || (bare.len() >= 12 && id.starts_with(bare));
        if let (true, Ok(ip)) = (hit, ip.parse::<Ipv4Addr>()) {
            if !out.contains(&ip) {
                out.push(ip);
            }
        }
    }
    out
}

/// Serves both sockets until they fail (the container's namespace is
/// gone, or the monitor exits): TCP on a thread of its own (and one per
/// connection), UDP on the calling thread. `upstreams`: where other
/// names go.
pub fn serve(sockets: DnsSockets, root: PathBuf, container_id: String, upstreams: Vec<SocketAddr>) {
    let DnsSockets { udp, tcp } = sockets;
    {
        let (root, id, ups) = (root.clone(), container_id.clone(), upstreams.clone());
        let _ = std::thread::Builder::new()
            .name("dns-tcp".into())
            .spawn(move || serve_tcp(tcp, root, id, ups));
    }
    serve_udp(udp, root, container_id, upstreams);
}

fn serve_udp(socket: UdpSocket, root: PathBuf, container_id: String, upstreams: Vec<SocketAddr>) {
    let Ok(store) = Store::open(&root) else {
        return;
    };
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, client) = match socket.recv_from(&mut buf) {
            Ok((0, _)) => return,
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let packet = buf[..n].to_vec();
        let Ok(request) = Message::from_vec(&packet) else {
            continue;
        };
        match answer_locally(&store, &container_id, &request) {
            Some(reply) => {
                if let Some(bytes) = udp_bytes(reply, &request) {
                    let _ = socket.send_to(&bytes, client);
                }
            }
            None => {
                let (Ok(reply_to), ups) = (socket.try_clone(), upstreams.clone()) else {
                    continue;
                };
                let _ = std::thread::Builder::new()
                    .name("dns-forward".into())
                    .spawn(move || {
                        let reply =
                            forward_udp(&packet, &ups).unwrap_or_else(|| servfail(&request));
                        let _ = reply_to.send_to(&reply, client);
                    });
            }
        }
    }
}

/// A local answer as a UDP datagram: truncated, with no records, when it
/// is larger than the client takes (512 bytes or its EDNS payload size).
fn udp_bytes(mut reply: Message, request: &Message) -> Option<Vec<u8>> {
    let limit = request
        .extensions()
        .as_ref()
        .map_or(512, |e| usize::from(e.max_payload()).max(512));
    let bytes = reply.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    reply.take_answers();
    reply.set_truncated(true);
    reply.to_vec().ok()
}

fn serve_tcp(
    listener: TcpListener,
    root: PathBuf,
    container_id: String,
    upstreams: Vec<SocketAddr>,
) {
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => continue,
            Err(_) => return,
        };
        let (root, id, ups) = (root.clone(), container_id.clone(), upstreams.clone());
        let _ = std::thread::Builder::new()
            .name("dns-tcp-client".into())
            .spawn(move || serve_tcp_client(stream, &root, &id, &ups));
    }
}

/// Answers the length-prefixed messages of one TCP connection until the
/// client closes it or stays silent for longer than [`TIMEOUT`].
fn serve_tcp_client(
    mut stream: TcpStream,
    root: &Path,
    container_id: &str,
    upstreams: &[SocketAddr],
) {
    let Ok(store) = Store::open(root) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(TIMEOUT));
    while let Some(packet) = read_tcp_message(&mut stream) {
        let Ok(request) = Message::from_vec(&packet) else {
            return;
        };
        let reply = match answer_locally(&store, container_id, &request) {
            Some(reply) => reply.to_vec().ok(),
            None => forward_tcp(&packet, upstreams),
        }
        .unwrap_or_else(|| servfail(&request));
        if write_tcp_message(&mut stream, &reply).is_err() {
            return;
        }
    }
}

/// One DNS message of a TCP stream (RFC 1035 4.2.2: a two-byte length,
/// then the message); None at the end of the stream or on an error.
fn read_tcp_message(stream: &mut impl Read) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).ok()?;
    let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut message).ok()?;
    Some(message)
}

fn write_tcp_message(stream: &mut impl Write, message: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(message.len())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
    let mut out = Vec::with_capacity(message.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(message);
    stream.write_all(&out)
}

/// A reply for a name strata knows (A records; an empty answer for other
/// types of such a name), or None to forward.
fn answer_locally(store: &Store, container_id: &str, request: &Message) -> Option<Message> {
    let query = request.queries().first()?;
    if request.message_type() != MessageType::Query || request.queries().len() != 1 {
        return None;
    }
    let name = query.name().to_ascii();
    let addresses = lookup(store, container_id, &name);
    if addresses.is_empty() {
        return None;
    }
    let mut reply = Message::new();
    reply
        .set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(request.op_code())
        .set_recursion_desired(request.recursion_desired())
        .set_recursion_available(true)
        .set_response_code(ResponseCode::NoError)
        .add_query(query.clone());
    if query.query_type() == RecordType::A {
        for ip in addresses {
            reply.add_answer(Record::from_rdata(
                query.name().clone(),
                600,
                RData::A(A(ip)),
            ));
        }
    }
    Some(reply)
}

/// The first upstream's answer over UDP, as it came (a truncated one
/// too: the client then asks again over TCP).
fn forward_udp(packet: &[u8], upstreams: &[SocketAddr]) -> Option<Vec<u8>> {
    for upstream in upstreams {
        let Ok(s) = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)) else {
            continue;
        };
        let _ = s.set_read_timeout(Some(TIMEOUT));
        if s.connect(upstream).is_err() || s.send(packet).is_err() {
            continue;
        }
        let mut buf = vec![0u8; 65535];
        if let Ok(n) = s.recv(&mut buf) {
            buf.truncate(n);
            return Some(buf);
        }
    }
    None
}

/// The first upstream's answer over TCP.
fn forward_tcp(packet: &[u8], upstreams: &[SocketAddr]) -> Option<Vec<u8>> {
    upstreams.iter().find_map(|upstream| {
        let mut s = TcpStream::connect_timeout(upstream, TIMEOUT).ok()?;
        s.set_read_timeout(Some(TIMEOUT)).ok()?;
        s.set_write_timeout(Some(TIMEOUT)).ok()?;
        write_tcp_message(&mut s, packet).ok()?;
        read_tcp_message(&mut s)
    })
}

fn servfail(request: &Message) -> Vec<u8> {
    let mut failure = Message::error_msg(request.id(), request.op_code(), ResponseCode::ServFail);
    for q in request.queries() {
        failure.add_query(q.clone());
    }
    failure.to_vec().unwrap_or_default()
}

/// The nameservers of a resolv.conf text.
pub fn nameservers(resolv_conf: &str) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver"))
                .then(|| w.next())
                .flatten()
                .and_then(|a| a.parse::<std::net::IpAddr>().ok())
                .map(|ip| SocketAddr::new(ip, 53))
        })
        .collect()
}
