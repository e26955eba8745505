//! The container side of networking: the few calls `create`, the
//! monitor, `prepare` and `inspect` make into [`crate::network`], kept
//! here so the lifecycle files need one line each.

use std::collections::BTreeMap;

use crate::container::error::ContainerError;
use crate::container::records::{find_container, get_container, Container};
use crate::container::spec::{NetworkMode, Status};
use crate::network::{self, Link, NetworkConfig, PlannedEndpoint, Sandbox};
use crate::store::Store;

/// Checks a new container's network flags; fills in the image's exposed
/// ports and resolves `--link` names. Nothing is recorded yet.
pub fn plan_network(
    store: &Store,
    mode: &NetworkMode,
    config: &NetworkConfig,
    links: &[String],
    image_exposed: Option<&BTreeMap<String, serde_json::Value>>,
) -> Result<(NetworkMode, NetworkConfig, Option<PlannedEndpoint>), ContainerError> {
    let mut config = config.clone();
    let mode = match mode {
        NetworkMode::Container(other) => {
            NetworkMode::Container(find_container(store, other.trim_start_matches('/'))?.id)
        }
        other => other.clone(),
    };
    let mode = &mode;
    for key in image_exposed.into_iter().flat_map(|m| m.keys()) {
        let key = if key.contains('/') {
            key.clone()
        } else {
            format!("{key}/tcp")
        };
        if !config.exposed.contains(&key) {
            config.exposed.push(key);
        }
    }
    for b in &config.ports {
        let key = b.port_key();
        if !config.exposed.contains(&key) {
            config.exposed.push(key);
        }
    }
    let own_namespace = mode.is_bridged() || mode.is_user_mode();
    if !own_namespace
        && (!config.ports.is_empty() || config.publish_all)
        && *mode != NetworkMode::None
    {
        // Docker ignores -p with --network host (with a warning) and
        // refuses it with container:.
        if matches!(mode, NetworkMode::Container(_)) {
            return Err(ContainerError::Invalid(
                "conflicting options: port publishing and the container type network mode".into(),
            ));
        }
        eprintln!("WARNING: Published ports are discarded when using host network mode");
        config.ports.clear();
        config.publish_all = false;
    }
    if matches!(mode, NetworkMode::Container(_))
        && (!config.dns.is_empty() || !config.extra_hosts.is_empty() || !config.mac.is_empty())
    {
        return Err(ContainerError::Invalid(
            "conflicting options: dns, add-host or mac-address and the network mode".into(),
        ));
    }
    for l in links {
        let (name, alias) = l.split_once(':').unwrap_or((l, l));
        let target = find_container(store, name.trim_start_matches('/'))
            .map_err(|_| ContainerError::Invalid(format!("could not get container for {name}")))?;
        config.links.push(Link {
            container_id: target.id.clone(),
            name: target.name.clone(),
            alias: alias.trim_start_matches('/').to_string(),
        });
    }
    let planned = match mode.network_name() {
        Some(name) => Some(network::plan_endpoint(store, name, &config)?),
        None => None,
    };
    Ok((mode.clone(), config, planned))
}

/// Records what [`plan_network`] checked, once the container exists.
pub fn record_network(
    store: &Store,
    id: &str,
    config: &NetworkConfig,
    planned: Option<PlannedEndpoint>,
) -> Result<(), ContainerError> {
    if let Some(planned) = planned {
        let links: Vec<String> = config
            .links
            .iter()
            .map(|l| format!("{}:{}", l.name, l.alias))
            .collect();
        network::record_endpoint(store, id, &links, planned)?;
    }
    Ok(())
}

/// `--network container:NAME`: the running container whose namespace is
/// joined.
pub fn joined_container(store: &Store, id: &str) -> Result<Container, ContainerError> {
    let other = super::liveness::lookup(store, id)?;
    if other.state.status != Status::Running && other.state.status != Status::Paused {
        return Err(ContainerError::BadState {
            id: other.short_id().into(),
            state: other.state.status.as_str().into(),
            what: "cannot join the network namespace of a container that is not running".into(),
        });
    }
    Ok(other)
}

/// What the monitor holds for the container's network (see
/// [`Sandbox`]).
pub fn sandbox_for(store: &Store, container: &Container) -> Result<Sandbox, ContainerError> {
    let root = store.root().to_path_buf();
    Ok(match &container.spec.network {
        NetworkMode::Host | NetworkMode::None => Sandbox::none(root, &container.id),
        NetworkMode::Pasta | NetworkMode::Slirp4netns(_) => {
            let dir = crate::container::records::container_dir(store, &container.id);
            let ports = &container.spec.net.ports;
            let mut sandbox = Sandbox::user_mode(store, &container.id, |netns| {
                match &container.spec.network {
                    NetworkMode::Slirp4netns(options) => {
                        let options = network::slirp4netns::parse_options(options)
                            .map_err(network::NetworkError::Invalid)?;
                        network::slirp4netns::start(netns, &options, ports, &dir)
                    }
                    _ => network::pasta::start(netns, ports, &dir),
                }
            })?;
            if let Some((name, pid)) = sandbox.helper_process() {
                if let Err(e) = super::liveness::record_helper(&dir, name, pid) {
                    // Gone before it could be recorded: a helper that
                    // failed at its start, whose own words say why.
                    sandbox.helper_ready()?;
                    return Err(e);
                }
            }
            sandbox
        }
        NetworkMode::Container(other) => {
            let other = joined_container(store, other)?;
            Sandbox::join(root, &container.id, other.state.pid)?
        }
        NetworkMode::Default | NetworkMode::Network(_) => {
            Sandbox::prepare(store, &container.id, &container.spec.net)?
        }
    })
}

/// The /etc files and extra variables of a container with its own
/// bridged namespace: (hosts, resolv.conf, link variables).
pub fn etc_files(
    store: &Store,
    container: &Container,
    hostname: &str,
) -> Result<(String, String, Vec<String>), ContainerError> {
    use network::etc_files::{hosts_file, link_env, resolv_conf, LinkedContainer};
    let net = &container.spec.net;
    let (own_ip, gateway) = match network::container_address(store, &container.id)? {
        Some((ip, gw)) => (Some(ip), gw),
        None => (None, String::new()),
    };
    let mut links = Vec::new();
    let mut env = Vec::new();
    for l in &net.links {
        let target = get_container(store, &l.container_id).map_err(|_| {
            ContainerError::Invalid(format!("Cannot link to /{}, as it does not exist", l.name))
        })?;
        let ip = match network::container_address(store, &target.id)? {
            Some((ip, _)) if target.state.status == Status::Running => ip,
            _ => {
                return Err(ContainerError::Invalid(format!(
                    "Cannot link to a non running container: /{} AS /{}/{}",
                    target.name, container.name, l.alias
                )))
            }
        };
        let linked = LinkedContainer {
            alias: l.alias.clone(),
            name: target.name.clone(),
            id: target.id.clone(),
            ip,
            exposed: target.spec.net.exposed.clone(),
            env: target.spec.env.clone(),
        };
        env.extend(link_env(&container.name, &linked));
        links.push(linked);
    }
    let hosts = hosts_file(net, hostname, own_ip.as_deref(), &gateway, &links);
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let embedded = matches!(&container.spec.network, NetworkMode::Network(n) if n != "bridge");
    let resolv = resolv_conf(&host_resolv, net, embedded);
    Ok((hosts, resolv, env))
}

/// Docker's `NetworkSettings` of `inspect`.
pub fn network_settings(
    store: &Store,
    container: &Container,
) -> Result<serde_json::Value, ContainerError> {
    use serde_json::{json, Value};
    let running = matches!(container.state.status, Status::Running | Status::Paused);
    let mut ports = serde_json::Map::new();
    let publishes = container.spec.network.is_bridged() || container.spec.network.is_user_mode();
    if running && publishes {
        for key in &container.spec.net.exposed {
            ports.insert(key.clone(), Value::Null);
        }
        for p in network::published_ports(store, &container.id)? {
            let key = format!("{}/{}", p.container_port, p.proto);
            let entry = json!({"HostIp": p.host_ip, "HostPort": p.host_port.to_string()});
            match ports.get_mut(&key) {
                Some(Value::Array(list)) => list.push(entry),
                _ => {
                    ports.insert(key, json!([entry]));
                }
            }
        }
    }
    let mut networks = serde_json::Map::new();
    let mut primary: Option<Value> = None;
    let endpoints = match &container.spec.network {
        NetworkMode::Host => {
            networks.insert("host".into(), empty_endpoint());
            vec![]
        }
        NetworkMode::None => {
            networks.insert("none".into(), empty_endpoint());
            vec![]
        }
        NetworkMode::Pasta | NetworkMode::Slirp4netns(_) => {
            networks.insert(
                user_mode_name(&container.spec.network).into(),
                empty_endpoint(),
            );
            vec![]
        }
        _ => network::container_networks(store, &container.id)?,
    };
    for (n, e) in endpoints {
        let active = running && e.ip.is_some();
        let prefix: u32 = n
            .subnet
            .split_once('/')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(0);
        let links: Vec<String> = e
            .links
            .iter()
            .map(|l| {
                let (name, alias) = l.split_once(':').unwrap_or((l, l));
                format!("/{name}:/{}/{alias}", container.name)
            })
            .collect();
        let ipam = if e.static_ip.is_empty() {
            Value::Null
        } else {
            json!({"IPv4Address": e.static_ip})
        };
        let v = json!({
            "IPAMConfig": ipam,
            "Links": if links.is_empty() { Value::Null } else { json!(links) },
            "Aliases": if e.aliases.is_empty() { Value::Null } else { json!(e.aliases) },
            "NetworkID": n.id,
            "EndpointID": if active { e.endpoint_id.clone() } else { String::new() },
            "Gateway": if active { n.gateway.clone() } else { String::new() },
            "IPAddress": if active { e.ip.clone().unwrap_or_default() } else { String::new() },
            "IPPrefixLen": if active { prefix } else { 0 },
            "IPv6Gateway": "",
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "MacAddress": if active { e.mac.clone().unwrap_or_default() } else { String::new() },
            "DriverOpts": Value::Null,
        });
        // Docker fills the top-level fields from the default bridge's
        // endpoint only: a container on user-defined networks alone has
        // them empty.
        if n.name == "bridge" {
            primary = Some(v.clone());
        }
        networks.insert(n.name.clone(), v);
    }
    let p = primary.unwrap_or_else(empty_endpoint);
    let sandbox_key = if running && !matches!(container.spec.network, NetworkMode::Host) {
        format!("/proc/{}/ns/net", container.state.pid)
    } else {
        String::new()
    };
    Ok(json!({
        "Bridge": "",
        "SandboxID": if running { container.id.clone() } else { String::new() },
        "HairpinMode": false,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "Ports": ports,
        "SandboxKey": sandbox_key,
        "SecondaryIPAddresses": Value::Null,
        "SecondaryIPv6Addresses": Value::Null,
        "EndpointID": p["EndpointID"],
        "Gateway": p["Gateway"],
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "IPAddress": p["IPAddress"],
        "IPPrefixLen": p["IPPrefixLen"],
        "IPv6Gateway": "",
        "MacAddress": p["MacAddress"],
        "Networks": networks,
    }))
}

/// The network's name of a pasta or slirp4netns container (`ps`'s
/// NETWORKS, `inspect`'s `Networks`), as podman names it.
pub fn user_mode_name(mode: &NetworkMode) -> &'static str {
    match mode {
        NetworkMode::Slirp4netns(_) => "slirp4netns",
        _ => "pasta",
    }
}

fn empty_endpoint() -> serde_json::Value {
    serde_json::json!({
        "IPAMConfig": null, "Links": null, "Aliases": null, "NetworkID": "", "EndpointID": "",
        "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0, "MacAddress": "", "DriverOpts": null,
    })
}

/// Docker's `HostConfig.PortBindings`.
pub fn port_bindings(config: &NetworkConfig) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for b in &config.ports {
        let port = match (b.host_port, b.host_port_end) {
            (0, _) => String::new(),
            (p, e) if e > p => format!("{p}-{e}"),
            (p, _) => p.to_string(),
        };
        let entry = serde_json::json!({"HostIp": b.host_ip, "HostPort": port});
        match out.get_mut(&b.port_key()) {
            Some(serde_json::Value::Array(list)) => list.push(entry),
            _ => {
                out.insert(b.port_key(), serde_json::json!([entry]));
            }
        }
    }
    serde_json::Value::Object(out)
}

/// The `ps` PORTS column: published bindings while it runs, then the
/// exposed ports nothing publishes.
pub fn ports_column(store: &Store, container: &Container) -> String {
    let running = matches!(container.state.status, Status::Running | Status::Paused);
    let published = if running {
        network::published_ports(store, &container.id).unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut parts: Vec<String> = published
        .iter()
        .map(|p| {
            format!(
                "{}:{}->{}/{}",
                p.host_ip, p.host_port, p.container_port, p.proto
            )
        })
        .collect();
    if container.spec.network.is_bridged() || running {
        for key in &container.spec.net.exposed {
            if !published
                .iter()
                .any(|p| format!("{}/{}", p.container_port, p.proto) == *key)
            {
                parts.push(key.clone());
            }
        }
    }
    parts.join(", ")
}
