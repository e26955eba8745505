//! What a container is made of (its spec, fixed at `create`) and what it
//! is doing (its state, updated by the monitor and the commands). Both are
//! stored as JSON in the `containers` table.

use serde::{Deserialize, Serialize};

/// Network mode, as `--network` names it: the host's namespace, a new
/// one with only loopback, a network (the default `bridge` or a
/// user-defined one, by name or ID), or another container's namespace.
/// Stored as Docker's string (`host`, `none`, `bridge`, `NAME`,
/// `container:ID`); `default` is the default bridge.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum NetworkMode {
    Host,
    None,
    /// `default`: the default bridge, not named by the user.
    #[default]
    Default,
    /// A network by name or ID (`bridge` included).
    Network(String),
    /// `container:NAME|ID`: stored with the other container's full ID.
    Container(String),
}

impl NetworkMode {
    /// Whether the container gets a namespace of its own with a veth on
    /// a bridge.
    pub fn is_bridged(&self) -> bool {
        matches!(self, NetworkMode::Default | NetworkMode::Network(_))
    }

    /// The network the container joins at start, if any: `bridge` for
    /// the default.
    pub fn network_name(&self) -> Option<&str> {
        match self {
            NetworkMode::Default => Some("bridge"),
            NetworkMode::Network(n) => Some(n),
            _ => None,
        }
    }
}

impl From<String> for NetworkMode {
    fn from(s: String) -> Self {
        match s.as_str() {
            "host" => NetworkMode::Host,
            "none" => NetworkMode::None,
            "default" | "" => NetworkMode::Default,
            _ => match s.strip_prefix("container:") {
                Some(c) => NetworkMode::Container(c.to_string()),
                None => NetworkMode::Network(s),
            },
        }
    }
}

impl From<NetworkMode> for String {
    fn from(m: NetworkMode) -> String {
        m.to_string()
    }
}

impl std::fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetworkMode::Host => f.write_str("host"),
            NetworkMode::None => f.write_str("none"),
            NetworkMode::Default => f.write_str("default"),
            NetworkMode::Network(n) => f.write_str(n),
            NetworkMode::Container(c) => write!(f, "container:{c}"),
        }
    }
}

impl std::str::FromStr for NetworkMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "container:" {
            return Err(
                "invalid network mode \"container:\": a container name or ID is needed".into(),
            );
        }
        Ok(NetworkMode::from(s.to_string()))
    }
}

/// One mount into the container: a host directory or a named volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    /// "bind" or "volume".
    pub kind: String,
    /// Host path (bind) or volume name (volume).
    pub source: String,
    /// Absolute path inside the container.
    pub destination: String,
    pub read_only: bool,
    /// An anonymous volume created for the image's VOLUME entry.
    #[serde(default)]
    pub anonymous: bool,
}

/// The container's configuration, fixed at creation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ContainerSpec {
    /// The image as the user named it.
    pub image_name: String,
    /// Entrypoint and cmd after flags were applied.
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub hostname: String,
    pub network: NetworkMode,
    /// Addresses, aliases, DNS, extra hosts, links and published ports.
    #[serde(default)]
    pub net: crate::network::NetworkConfig,
    pub read_only: bool,
    pub init: bool,
    pub tty: bool,
    pub interactive: bool,
    pub auto_remove: bool,
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub no_new_privileges: bool,
    /// `--security-opt seccomp=`: empty for the default profile,
    /// `builtin`, `unconfined`, or a profile's JSON (read at create).
    #[serde(default)]
    pub seccomp_profile: String,
    pub mounts: Vec<MountSpec>,
    pub stop_signal: String,
    pub stop_timeout: Option<u32>,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Memory, CPU and pids limits (`-m`, `--cpus`, ...).
    #[serde(default)]
    pub resources: super::resources::Resources,
    /// Ulimits, /dev/shm's size, tmpfs mounts, devices, sysctls and the
    /// log driver (`--ulimit`, `--shm-size`, ...).
    #[serde(default)]
    pub host: super::host_options::HostOptions,
    /// `--restart` as given to `update` (`no`, `always`, `on-failure:N`,
    /// `unless-stopped`); empty: none.
    #[serde(default)]
    pub restart_policy: String,
}

impl ContainerSpec {
    /// The argv the container runs: entrypoint followed by cmd.
    pub fn argv(&self) -> Vec<String> {
        self.entrypoint
            .iter()
            .chain(self.cmd.iter())
            .cloned()
            .collect()
    }
}

/// Lifecycle status, named as Docker names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Removing => "removing",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }
}

/// What the container is doing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ContainerState {
    pub status: Status,
    /// The container's pid 1 as the host sees it.
    pub pid: i32,
    /// The monitor process and its start time (clock ticks since boot,
    /// from /proc/PID/stat) so a recycled pid is not mistaken for it.
    pub monitor_pid: i32,
    pub monitor_start: u64,
    pub exit_code: i32,
    pub error: String,
    pub started_at: String,
    pub finished_at: String,
    #[serde(default)]
    pub oom_killed: bool,
    #[serde(default)]
    pub restart_count: u32,
}

/// Docker's default PATH for a container whose image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The current time as Docker prints it (RFC 3339 with nanoseconds).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// `--restart`: Docker's restart policy (`HostConfig.RestartPolicy`).
/// Parsed here, in one place, for `run`, `create` and `update`; not yet
/// carried out by the monitor (docs/containers.md).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RestartPolicy {
    /// `no`, `always`, `unless-stopped` or `on-failure` (empty: `no`).
    pub name: String,
    /// For `on-failure:N`; 0 means no limit.
    pub maximum_retry_count: u32,
}

impl std::str::FromStr for RestartPolicy {
    type Err = String;
    /// As Docker 20.10's client and daemon check it: `NAME[:COUNT]`, a
    /// count only with `on-failure`, never negative.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.split(':');
        let name = parts.next().unwrap_or("").to_string();
        let count = parts.next();
        if parts.next().is_some() {
            return Err("invalid restart policy format".into());
        }
        let count = match count {
            None => None,
            Some(c) => Some(
                c.parse::<i64>()
                    .map_err(|_| "maximum retry count must be an integer".to_string())?,
            ),
        };
        match (name.as_str(), count) {
            ("" | "no" | "always" | "unless-stopped", None) => {}
            ("" | "no" | "always" | "unless-stopped", Some(_)) => {
                return Err(format!(
                    "maximum retry count cannot be used with restart policy '{name}'"
                ))
            }
            ("on-failure", Some(c)) if c < 0 => {
                return Err("maximum retry count cannot be negative".into())
            }
            ("on-failure", _) => {}
            _ => return Err(format!("invalid restart policy '{name}'")),
        }
        Ok(RestartPolicy {
            name: if name.is_empty() { "no".into() } else { name },
            maximum_retry_count: count.unwrap_or(0).clamp(0, u32::MAX as i64) as u32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::RestartPolicy;

    #[test]
    fn restart_policies_parse_as_docker() {
        let p: RestartPolicy = "on-failure:3".parse().unwrap();
        assert_eq!((p.name.as_str(), p.maximum_retry_count), ("on-failure", 3));
        assert_eq!("".parse::<RestartPolicy>().unwrap().name, "no");
        assert_eq!(
            "unless-stopped".parse::<RestartPolicy>().unwrap().name,
            "unless-stopped"
        );
        assert_eq!(
            "always:2".parse::<RestartPolicy>().unwrap_err(),
            "maximum retry count cannot be used with restart policy 'always'"
        );
        assert_eq!(
            "sometimes".parse::<RestartPolicy>().unwrap_err(),
            "invalid restart policy 'sometimes'"
        );
        assert!("on-failure:-1".parse::<RestartPolicy>().is_err());
        assert!("on-failure:x".parse::<RestartPolicy>().is_err());
        assert!("on-failure:1:2".parse::<RestartPolicy>().is_err());
    }
}
