//! `/etc/hosts`, `/etc/resolv.conf` and link variables, written as
//! Docker 20.10 writes them (checked against it by the oracle tests).

use super::config::NetworkConfig;

/// The lines every container's hosts file starts with.
pub const DEFAULT_HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n";

/// A linked container as the hosts file and variables need it.
pub struct LinkedContainer {
    pub alias: String,
    /// Its name, without the slash.
    pub name: String,
    pub id: String,
    pub ip: String,
    /// Its exposed ports (`80/tcp`).
    pub exposed: Vec<String>,
    /// Its environment (`KEY=VALUE`).
    pub env: Vec<String>,
}

/// The hosts file of a container with its own namespace: the defaults,
/// `--add-host` entries (`host-gateway` as `gateway`), links, then the
/// container's own address and name.
pub fn hosts_file(
    config: &NetworkConfig,
    hostname: &str,
    own_ip: Option<&str>,
    gateway: &str,
    links: &[LinkedContainer],
) -> String {
    let mut out = String::from(DEFAULT_HOSTS);
    for extra in &config.extra_hosts {
        if let Some((name, ip)) = extra.split_once(':') {
            let ip = if ip == "host-gateway" { gateway } else { ip };
            out.push_str(&format!("{ip}\t{name}\n"));
        }
    }
    for l in links {
        let short = &l.id[..12.min(l.id.len())];
        if l.alias == l.name {
            out.push_str(&format!("{}\t{} {}\n", l.ip, l.alias, short));
        } else {
            out.push_str(&format!("{}\t{} {} {}\n", l.ip, l.alias, short, l.name));
        }
    }
    if let Some(ip) = own_ip {
        if config.domainname.is_empty() {
            out.push_str(&format!("{ip}\t{hostname}\n"));
        } else {
            out.push_str(&format!(
                "{ip}\t{hostname}.{} {hostname}\n",
                config.domainname
            ));
        }
    }
    out
}

/// The resolv.conf of a container with its own namespace. On a
/// user-defined network the nameserver is the server at 127.0.0.11 and
/// `ndots:0` is added; elsewhere the host's nameservers minus loopback
/// ones (Google's if none remain). `--dns`, `--dns-search` and
/// `--dns-option` replace the host's lines of their kind.
pub fn resolv_conf(host: &str, config: &NetworkConfig, embedded_dns: bool) -> String {
    let lines_of = |key: &str| -> Vec<String> {
        host.lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some(key)).then(|| w.collect::<Vec<_>>().join(" "))
            })
            .collect()
    };
    let search: Vec<String> = if config.dns_search.is_empty() {
        lines_of("search")
    } else {
        vec![config.dns_search.join(" ")]
    };
    let mut options: Vec<String> = if config.dns_options.is_empty() {
        lines_of("options")
    } else {
        vec![config.dns_options.join(" ")]
    };
    let nameservers: Vec<String> = if embedded_dns {
        vec![super::dns::DNS_ADDRESS.to_string()]
    } else if !config.dns.is_empty() {
        config.dns.clone()
    } else {
        let mut ns: Vec<String> = lines_of("nameserver")
            .into_iter()
            .filter(|a| !(a.starts_with("127.") || a == "::1"))
            .collect();
        if ns.is_empty() {
            ns = vec!["8.8.8.8".into(), "8.8.4.4".into()];
        }
        ns
    };
    if embedded_dns && !options.iter().any(|o| o.contains("ndots:")) {
        options.push("ndots:0".into());
    }
    let mut out = String::new();
    for s in search.iter().filter(|s| !s.is_empty()) {
        out.push_str(&format!("search {s}\n"));
    }
    for n in &nameservers {
        out.push_str(&format!("nameserver {n}\n"));
    }
    let options = options.join(" ");
    if !options.is_empty() {
        out.push_str(&format!("options {options}\n"));
    }
    out
}

/// Docker's link variables for one link.
pub fn link_env(own_name: &str, link: &LinkedContainer) -> Vec<String> {
    let prefix = link.alias.to_ascii_uppercase().replace(['-', '.'], "_");
    let mut out = Vec::new();
    let mut ports: Vec<(u16, String)> = link
        .exposed
        .iter()
        .filter_map(|p| {
            let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
            Some((port.parse().ok()?, proto.to_string()))
        })
        .collect();
    ports.sort();
    out.push(format!("{prefix}_NAME=/{own_name}/{}", link.alias));
    if let Some((port, proto)) = ports.first() {
        out.push(format!("{prefix}_PORT={proto}://{}:{port}", link.ip));
    }
    for (port, proto) in &ports {
        let p = format!("{prefix}_PORT_{port}_{}", proto.to_ascii_uppercase());
        out.push(format!("{p}={proto}://{}:{port}", link.ip));
        out.push(format!("{p}_ADDR={}", link.ip));
        out.push(format!("{p}_PORT={port}"));
        out.push(format!("{p}_PROTO={proto}"));
    }
    for e in &link.env {
        let key = e.split('=').next().unwrap_or("");
        if !matches!(key, "HOME" | "HOSTNAME" | "PATH") && !key.is_empty() {
            out.push(format!("{prefix}_ENV_{e}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_like_docker() {
        let mut c = NetworkConfig {
            extra_hosts: vec!["foo:1.2.3.4".into(), "gw:host-gateway".into()],
            domainname: "example.com".into(),
            ..Default::default()
        };
        let link = LinkedContainer {
            alias: "dbalias".into(),
            name: "db".into(),
            id: "e17bc93c5bc63f90d38cdc0a4c3dd5daaa1916d6ad608ede34f3f6ad1b0aafd6".into(),
            ip: "172.17.0.2".into(),
            exposed: vec!["80/tcp".into()],
            env: vec!["PATH=/bin".into(), "FOO=bar".into(), "DBV=1".into()],
        };
        let hosts = hosts_file(
            &c,
            "h1",
            Some("172.17.0.3"),
            "172.17.0.1",
            std::slice::from_ref(&link),
        );
        assert!(hosts.ends_with("1.2.3.4\tfoo\n172.17.0.1\tgw\n172.17.0.2\tdbalias e17bc93c5bc6 db\n172.17.0.3\th1.example.com h1\n"), "{hosts}");
        let mut env = link_env("quirky_golick", &link);
        env.sort();
        assert_eq!(
            env,
            vec![
                "DBALIAS_ENV_DBV=1",
                "DBALIAS_ENV_FOO=bar",
                "DBALIAS_NAME=/quirky_golick/dbalias",
                "DBALIAS_PORT=tcp://172.17.0.2:80",
                "DBALIAS_PORT_80_TCP=tcp://172.17.0.2:80",
                "DBALIAS_PORT_80_TCP_ADDR=172.17.0.2",
                "DBALIAS_PORT_80_TCP_PORT=80",
                "DBALIAS_PORT_80_TCP_PROTO=tcp",
            ]
        );
        let host = "# comment\nnameserver 127.0.0.53\nsearch lan\noptions edns0\n";
        assert_eq!(
            resolv_conf(host, &c, true),
            "search lan\nnameserver 127.0.0.11\noptions edns0 ndots:0\n"
        );
        assert_eq!(
            resolv_conf(host, &c, false),
            "search lan\nnameserver 8.8.8.8\nnameserver 8.8.4.4\noptions edns0\n"
        );
        c.dns = vec!["9.9.9.9".into()];
        c.dns_search = vec!["a.b".into()];
        c.dns_options = vec!["ndots:2".into()];
        assert_eq!(
            resolv_conf(host, &c, false),
            "search a.b\nnameserver 9.9.9.9\noptions ndots:2\n"
        );
        assert_eq!(
            resolv_conf(host, &c, true),
            "search a.b\nnameserver 127.0.0.11\noptions ndots:2\n"
        );
    }
}
