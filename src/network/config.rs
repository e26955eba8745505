//! What a container asks of the network, fixed at `create`: addresses,
//! aliases, DNS settings, extra hosts, links and published ports, parsed
//! from Docker's flag syntax.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::NetworkError;

/// A container's network settings (kept in its spec).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct NetworkConfig {
    /// `--ip`.
    pub ip: String,
    /// `--mac-address`.
    pub mac: String,
    /// `--network-alias`.
    pub aliases: Vec<String>,
    /// `--dns`, `--dns-search`, `--dns-option`.
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
    /// `--add-host NAME:IP` as given (`host-gateway` kept as is).
    pub extra_hosts: Vec<String>,
    /// `--domainname`.
    pub domainname: String,
    /// `-p`, one binding per port (ranges expanded).
    pub ports: Vec<PortBinding>,
    /// `-P`.
    pub publish_all: bool,
    /// Exposed ports (`80/tcp`): the image's, `--expose`, and `-p`'s.
    pub exposed: Vec<String>,
    /// `--link NAME[:ALIAS]`, with the linked container's full ID.
    pub links: Vec<Link>,
}

/// `--link`: another container, and the name this one knows it by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub container_id: String,
    pub name: String,
    pub alias: String,
}

/// One `-p` binding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortBinding {
    /// Empty: every address of the host.
    pub host_ip: String,
    /// 0: any free port (or the first free of a range up to
    /// `host_port_end`).
    pub host_port: u16,
    #[serde(default)]
    pub host_port_end: u16,
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub proto: String,
}

impl PortBinding {
    /// Docker's key: `80/tcp`.
    pub fn port_key(&self) -> String {
        format!("{}/{}", self.container_port, self.proto)
    }
}

fn invalid(message: String) -> NetworkError {
    NetworkError::Invalid(message)
}

fn parse_port(text: &str, spec: &str) -> Result<u16, NetworkError> {
    text.parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| invalid(format!("invalid port {text:?} in -p {spec:?}")))
}

/// `N` or `N-M`.
fn parse_range(text: &str, spec: &str) -> Result<(u16, u16), NetworkError> {
    match text.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (parse_port(a, spec)?, parse_port(b, spec)?);
            if b < a {
                return Err(invalid(format!(
                    "invalid port range {text:?} in -p {spec:?}"
                )));
            }
            Ok((a, b))
        }
        None => {
            let p = parse_port(text, spec)?;
            Ok((p, p))
        }
    }
}

/// Splits `PORT[/PROTO]` and checks the protocol.
pub fn split_proto<'a>(text: &'a str, spec: &str) -> Result<(&'a str, String), NetworkError> {
    let (port, proto) = text.split_once('/').unwrap_or((text, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if proto != "tcp" && proto != "udp" {
        return Err(invalid(format!(
            "invalid protocol {proto:?} in {spec:?}: tcp or udp"
        )));
    }
    Ok((port, proto))
}

/// Parses `-p [IP:][HOSTPORT:]CONTAINERPORT[/PROTO]` with ranges
/// (`8000-8001:80-81`, or a host range for one container port).
pub fn parse_publish(spec: &str) -> Result<Vec<PortBinding>, NetworkError> {
    let (rest, proto) = split_proto(spec, spec)?;
    let parts: Vec<&str> = rest.rsplitn(3, ':').collect();
    let (ip, host, container) = match parts.as_slice() {
        [c] => ("", "", *c),
        [c, h] => ("", *h, *c),
        [c, h, ip] => (*ip, *h, *c),
        _ => return Err(invalid(format!("invalid port specification: {spec:?}"))),
    };
    // An IPv6 address as Docker takes it: `[::1]:8080:80` or `::1:8080:80`.
    let ip = match ip.strip_prefix('[') {
        Some(inner) => inner
            .strip_suffix(']')
            .ok_or_else(|| invalid(format!("invalid IP address {ip:?} in -p {spec:?}")))?,
        None => ip,
    };
    if !ip.is_empty() && ip.parse::<IpAddr>().is_err() {
        return Err(invalid(format!("invalid IP address {ip:?} in -p {spec:?}")));
    }
    let (c_start, c_end) = parse_range(container, spec)?;
    let host_range = if host.is_empty() {
        None
    } else {
        Some(parse_range(host, spec)?)
    };
    let count = c_end - c_start;
    let mut out = Vec::new();
    for i in 0..=count {
        let (host_port, host_port_end) = match host_range {
            None => (0, 0),
            Some((h, h_end)) if count == 0 => (h, if h_end > h { h_end } else { 0 }),
            Some((h, h_end)) if h_end - h == count => (h + i, 0),
            Some(_) => {
                return Err(invalid(format!(
                    "invalid ranges in -p {spec:?}: the host and container ranges differ in size"
                )))
            }
        };
        out.push(PortBinding {
            host_ip: ip.to_string(),
            host_port,
            host_port_end,
            container_port: c_start + i,
            proto: proto.clone(),
        });
    }
    Ok(out)
}

/// Parses `--expose PORT[/PROTO]` or a range, to `80/tcp` keys.
pub fn parse_expose(spec: &str) -> Result<Vec<String>, NetworkError> {
    let (port, proto) = split_proto(spec, spec)?;
    let (a, b) = parse_range(port, spec)?;
    Ok((a..=b).map(|p| format!("{p}/{proto}")).collect())
}

/// Checks `--add-host NAME:IP` (IP may be `host-gateway`).
pub fn check_extra_host(spec: &str) -> Result<(), NetworkError> {
    let Some((name, ip)) = spec.split_once(':') else {
        return Err(invalid(format!(
            "invalid argument {spec:?} for \"--add-host\" flag: bad format for add-host: {spec:?}"
        )));
    };
    if name.is_empty() || (ip != "host-gateway" && ip.parse::<IpAddr>().is_err()) {
        return Err(invalid(format!(
            "invalid argument {spec:?} for \"--add-host\" flag: invalid IP address in add-host: {ip:?}"
        )));
    }
    Ok(())
}

/// Checks `--mac-address`.
pub fn parse_mac(text: &str) -> Result<[u8; 6], NetworkError> {
    let bytes: Vec<u8> = text
        .split(':')
        .filter_map(|b| {
            (b.len() == 2)
                .then(|| u8::from_str_radix(b, 16).ok())
                .flatten()
        })
        .collect();
    match <[u8; 6]>::try_from(bytes) {
        Ok(mac) if text.split(':').count() == 6 => Ok(mac),
        _ => Err(invalid(format!("{text} is not a valid mac address"))),
    }
}

pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(spec: &str) -> (String, u16, u16, String) {
        let b = parse_publish(spec).unwrap();
        assert_eq!(b.len(), 1, "{spec}");
        let b = &b[0];
        (
            b.host_ip.clone(),
            b.host_port,
            b.container_port,
            b.proto.clone(),
        )
    }

    #[test]
    fn publish_specs_like_docker() {
        assert_eq!(one("80"), ("".into(), 0, 80, "tcp".into()));
        assert_eq!(one("8080:80"), ("".into(), 8080, 80, "tcp".into()));
        assert_eq!(
            one("127.0.0.1:8080:80/udp"),
            ("127.0.0.1".into(), 8080, 80, "udp".into())
        );
        assert_eq!(
            one("127.0.0.1::80"),
            ("127.0.0.1".into(), 0, 80, "tcp".into())
        );
        let r = parse_publish("8000-8002:80-82").unwrap();
        assert_eq!(
            r.iter()
                .map(|b| (b.host_port, b.container_port))
                .collect::<Vec<_>>(),
            vec![(8000, 80), (8001, 81), (8002, 82)]
        );
        // IPv6 host addresses, bracketed or not, as Docker's parser.
        assert_eq!(one("[::1]:7070:80"), ("::1".into(), 7070, 80, "tcp".into()));
        assert_eq!(one("::1:7070:80"), ("::1".into(), 7070, 80, "tcp".into()));
        assert_eq!(one("[::]::53/udp"), ("::".into(), 0, 53, "udp".into()));
        let r = parse_publish("9000-9005:80").unwrap();
        assert_eq!((r[0].host_port, r[0].host_port_end), (9000, 9005));
        for bad in [
            "",
            "x",
            "80/sctp",
            "8000-8001:80-83",
            "1.2.3:80:80",
            "0",
            "70000",
            "[::1:80:80",
            "[nope]:80:80",
        ] {
            assert!(parse_publish(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn extra_hosts_and_macs() {
        assert!(check_extra_host("db:10.0.0.2").is_ok());
        assert!(check_extra_host("gw:host-gateway").is_ok());
        assert!(check_extra_host("db").is_err());
        assert!(check_extra_host("db:nope").is_err());
        assert_eq!(
            format_mac(parse_mac("02:42:ac:11:00:02").unwrap()),
            "02:42:ac:11:00:02"
        );
        assert!(parse_mac("02:42:ac:11:00").is_err());
        assert_eq!(parse_expose("80-81/udp").unwrap(), vec!["80/udp", "81/udp"]);
    }
}
