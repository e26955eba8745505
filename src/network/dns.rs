//! The DNS server at 127.0.0.11 in each container's namespace on a
//! user-defined network, as Docker's embedded server: the monitor binds
//! it inside the container's namespace (port 53, UDP) and answers from
//! the store: the names, network aliases and ID prefixes (12 digits or
//! more) of the running containers that share a user-defined network
//! with the asking container. Other names are forwarded, from the host's
//! namespace, to the container's `--dns` servers or else the host's
//! resolvers (loopback ones included, since the forwarding socket is the
//! host's).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{rdata::A, RData, Record, RecordType};

use crate::store::Store;

/// Where the server listens inside the container.
pub const DNS_ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

/// Binds 127.0.0.11:53; the caller is in the container's namespace
/// with loopback up.
pub fn bind_in_namespace() -> std::io::Result<UdpSocket> {
    UdpSocket::bind(SocketAddrV4::new(DNS_ADDRESS, 53))
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

/// Serves `socket` until it fails (the container's namespace is gone, or
/// the monitor exits). `upstreams`: where other names go.
pub fn serve(socket: UdpSocket, root: PathBuf, container_id: String, upstreams: Vec<SocketAddr>) {
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
                if let Ok(bytes) = reply.to_vec() {
                    let _ = socket.send_to(&bytes, client);
                }
            }
            None => {
                let (Ok(reply_to), ups) = (socket.try_clone(), upstreams.clone()) else {
                    continue;
                };
                let _ = std::thread::Builder::new()
                    .name("dns-forward".into())
                    .spawn(move || forward(&packet, &request, &ups, &reply_to, client));
            }
        }
    }
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

fn forward(
    packet: &[u8],
    request: &Message,
    upstreams: &[SocketAddr],
    reply_to: &UdpSocket,
    client: SocketAddr,
) {
    for upstream in upstreams {
        let Ok(s) = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)) else {
            continue;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
        if s.connect(upstream).is_err() || s.send(packet).is_err() {
            continue;
        }
        let mut buf = vec![0u8; 4096];
        if let Ok(n) = s.recv(&mut buf) {
            let _ = reply_to.send_to(&buf[..n], client);
            return;
        }
    }
    let mut failure = Message::error_msg(request.id(), request.op_code(), ResponseCode::ServFail);
    for q in request.queries() {
        failure.add_query(q.clone());
    }
    if let Ok(bytes) = failure.to_vec() {
        let _ = reply_to.send_to(&bytes, client);
    }
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
