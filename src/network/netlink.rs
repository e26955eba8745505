//! rtnetlink on a plain blocking socket: the few requests strata makes
//! (links, addresses, routes), built and parsed by
//! `netlink-packet-route`. A socket works in the network namespace it
//! was opened in; open one per namespace.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use super::NetworkError;

/// A route-netlink socket in the namespace it was opened in.
pub struct Netlink {
    socket: Socket,
    seq: u32,
}

fn io(what: &str) -> impl Fn(std::io::Error) -> NetworkError + '_ {
    move |e| NetworkError::netlink(what, e)
}

impl Netlink {
    pub fn open() -> Result<Netlink, NetworkError> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(io("netlink socket"))?;
        socket.bind_auto().map_err(io("netlink bind"))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(io("netlink connect"))?;
        Ok(Netlink { socket, seq: 0 })
    }

    /// A socket in the network namespace `netns` (opened by a thread that
    /// joins it, so this one's namespace does not change).
    pub fn open_in(netns: BorrowedFd) -> Result<Netlink, NetworkError> {
        let ns = netns
            .try_clone_to_owned()
            .map_err(io("a copy of the network namespace"))?;
        std::thread::Builder::new()
            .name("netlink".into())
            .spawn(move || {
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                    NetworkError::netlink("joining the network namespace", e.into())
                })?;
                Netlink::open()
            })
            .map_err(io("spawning a thread"))?
            .join()
            .map_err(|_| NetworkError::Invalid("the netlink thread panicked".into()))?
    }

    fn send(&mut self, message: RouteNetlinkMessage, flags: u16) -> Result<u32, NetworkError> {
        self.seq += 1;
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket.send(&buf, 0).map_err(io("netlink send"))?;
        Ok(self.seq)
    }

    /// Reads replies to request `seq` until its ACK (or error), or the
    /// end of a dump; returns the messages.
    fn receive(&mut self, seq: u32, what: &str) -> Result<Vec<RouteNetlinkMessage>, NetworkError> {
        let mut out = Vec::new();
        loop {
            let (buf, _) = self
                .socket
                .recv_from_full()
                .map_err(|e| NetworkError::netlink(what, e))?;
            let mut offset = 0;
            while offset < buf.len() {
                let packet = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[offset..])
                    .map_err(|e| {
                        NetworkError::netlink(what, std::io::Error::other(e.to_string()))
                    })?;
                let len = packet.header.length as usize;
                if len == 0 {
                    return Ok(out);
                }
                offset += (len + 3) & !3;
                if packet.header.sequence_number != seq {
                    continue;
                }
                match packet.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(out),
                            Some(_) => Err(NetworkError::netlink(what, e.to_io())),
                        }
                    }
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::InnerMessage(m) => out.push(m),
                    _ => {}
                }
            }
        }
    }

    fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
        what: &str,
    ) -> Result<(), NetworkError> {
        let seq = self.send(message, NLM_F_REQUEST | NLM_F_ACK | flags)?;
        self.receive(seq, what).map(drop)
    }

    /// The index of the link named `name`, if there is one.
    pub fn link_index(&mut self, name: &str) -> Result<Option<u32>, NetworkError> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        let seq = self.send(RouteNetlinkMessage::GetLink(m), NLM_F_REQUEST | NLM_F_ACK)?;
        match self.receive(seq, "looking up a link") {
            Ok(replies) => Ok(replies.into_iter().find_map(|r| match r {
                RouteNetlinkMessage::NewLink(l) => Some(l.header.index),
                _ => None,
            })),
            Err(NetworkError::Netlink { source, .. })
                if source.raw_os_error() == Some(libc::ENODEV) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Creates a bridge, up, with `address/prefix` on it.
    pub fn create_bridge(&mut self, name: &str) -> Result<u32, NetworkError> {
        let mut m = LinkMessage::default();
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        m.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        self.request(
            RouteNetlinkMessage::NewLink(m),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("creating bridge {name}"),
        )?;
        self.link_index(name)?.ok_or_else(|| {
            NetworkError::netlink(format!("bridge {name}"), std::io::Error::other("vanished"))
        })
    }

    pub fn delete_link(&mut self, index: u32, what: &str) -> Result<(), NetworkError> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        self.request(RouteNetlinkMessage::DelLink(m), 0, what)
    }

    /// Brings link `index` up.
    pub fn set_up(&mut self, index: u32, what: &str) -> Result<(), NetworkError> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        self.request(RouteNetlinkMessage::SetLink(m), 0, what)
    }

    pub fn add_address(
        &mut self,
        index: u32,
        ip: Ipv4Addr,
        prefix: u8,
        what: &str,
    ) -> Result<(), NetworkError> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = prefix;
        m.header.index = index;
        m.attributes.push(AddressAttribute::Local(ip.into()));
        m.attributes.push(AddressAttribute::Address(ip.into()));
        if prefix < 31 {
            let mask = u32::MAX.checked_shl(32 - prefix as u32).unwrap_or(0);
            let broadcast = Ipv4Addr::from(u32::from(ip) | !mask);
            m.attributes.push(AddressAttribute::Broadcast(broadcast));
        }
        self.request(
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_CREATE | NLM_F_EXCL,
            what,
        )
    }

    /// A veth pair: `host_name` here, attached to `bridge` and up; its
    /// peer `peer_name` in the namespace `netns` (down), with `mac`.
    pub fn create_veth(
        &mut self,
        host_name: &str,
        bridge: u32,
        peer_name: &str,
        netns: BorrowedFd,
        mac: [u8; 6],
    ) -> Result<(), NetworkError> {
        // The peer cannot be brought up here: the kernel opens it before
        // the pair is linked (ENOTCONN). The caller does, inside.
        let mut peer = LinkMessage::default();
        peer.attributes
            .push(LinkAttribute::IfName(peer_name.to_string()));
        peer.attributes
            .push(LinkAttribute::NetNsFd(netns.as_raw_fd()));
        peer.attributes.push(LinkAttribute::Address(mac.to_vec()));
        let mut m = LinkMessage::default();
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        m.attributes
            .push(LinkAttribute::IfName(host_name.to_string()));
        m.attributes.push(LinkAttribute::Controller(bridge));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        self.request(
            RouteNetlinkMessage::NewLink(m),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("creating veth {host_name}"),
        )
    }

    /// A route to `destination/prefix` (0.0.0.0/0: the default route)
    /// through `gateway`.
    pub fn add_route(
        &mut self,
        destination: Ipv4Addr,
        prefix: u8,
        gateway: Ipv4Addr,
    ) -> Result<(), NetworkError> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.destination_prefix_length = prefix;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Boot;
        m.header.scope = RouteScope::Universe;
        m.header.kind = RouteType::Unicast;
        if prefix > 0 {
            m.attributes
                .push(RouteAttribute::Destination(RouteAddress::Inet(destination)));
        }
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        self.request(
            RouteNetlinkMessage::NewRoute(m),
            NLM_F_CREATE | NLM_F_EXCL,
            "adding the default route",
        )
    }

    /// Whether the main table has a default route of `family`
    /// (`AddressFamily::Inet` or `Inet6`).
    pub fn has_default_route(&mut self, family: AddressFamily) -> Result<bool, NetworkError> {
        let mut m = RouteMessage::default();
        m.header.address_family = family;
        let seq = self.send(RouteNetlinkMessage::GetRoute(m), NLM_F_REQUEST | NLM_F_DUMP)?;
        Ok(self.receive(seq, "listing routes")?.iter().any(|reply| {
            matches!(reply, RouteNetlinkMessage::NewRoute(r)
                if r.header.table == RouteHeader::RT_TABLE_MAIN
                    && r.header.destination_prefix_length == 0
                    && r.header.kind == RouteType::Unicast)
        }))
    }

    /// The IPv4 destinations of the main table's routes (for choosing
    /// a pool that overlaps none).
    pub fn ipv4_routes(&mut self) -> Result<Vec<(Ipv4Addr, u8)>, NetworkError> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        let seq = self.send(RouteNetlinkMessage::GetRoute(m), NLM_F_REQUEST | NLM_F_DUMP)?;
        let mut out = Vec::new();
        for reply in self.receive(seq, "listing routes")? {
            let RouteNetlinkMessage::NewRoute(r) = reply else {
                continue;
            };
            if r.header.table != RouteHeader::RT_TABLE_MAIN
                || r.header.destination_prefix_length == 0
            {
                continue;
            }
            for a in &r.attributes {
                if let RouteAttribute::Destination(RouteAddress::Inet(d)) = a {
                    out.push((*d, r.header.destination_prefix_length));
                }
            }
        }
        Ok(out)
    }
}
