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
    /// `pasta`: a namespace of its own, connected through pasta (an
    /// ordinary user's default where pasta is installed; network/pasta.rs).
    Pasta,
    /// `slirp4netns[:OPTIONS]`: a namespace of its own, connected through
    /// slirp4netns (network/slirp4netns.rs); podman's option list as
    /// given, checked when parsed.
    Slirp4netns(String),
}

impl NetworkMode {
    /// Whether the container gets a namespace of its own with a veth on
    /// a bridge.
    pub fn is_bridged(&self) -> bool {
        matches!(self, NetworkMode::Default | NetworkMode::Network(_))
    }

    /// Whether the container gets a namespace of its own connected by a
    /// user-mode helper (pasta or slirp4netns: an ordinary user's).
    pub fn is_user_mode(&self) -> bool {
        matches!(self, NetworkMode::Pasta | NetworkMode::Slirp4netns(_))
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
            "pasta" => NetworkMode::Pasta,
            "slirp4netns" => NetworkMode::Slirp4netns(String::new()),
            "default" | "" => NetworkMode::Default,
            _ => match (s.strip_prefix("container:"), s.strip_prefix("slirp4netns:")) {
                (Some(c), _) => NetworkMode::Container(c.to_string()),
                (None, Some(options)) => NetworkMode::Slirp4netns(options.to_string()),
                (None, None) => NetworkMode::Network(s),
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
            NetworkMode::Pasta => f.write_str("pasta"),
            NetworkMode::Slirp4netns(o) if o.is_empty() => f.write_str("slirp4netns"),
            NetworkMode::Slirp4netns(o) => write!(f, "slirp4netns:{o}"),
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
        let mode = NetworkMode::from(s.to_string());
        if let NetworkMode::Slirp4netns(options) = &mode {
            crate::network::slirp4netns::parse_options(options)?;
        }
        Ok(mode)
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
    /// `--restart` (`run`, `create`, `update`), carried out by the
    /// monitor. Records written before it was typed hold a string
    /// (`on-failure:3`, or empty for none): still read.
    #[serde(default, deserialize_with = "RestartPolicy::deserialize_compat")]
    pub restart_policy: RestartPolicy,
    /// The health check (the image's HEALTHCHECK merged with the
    /// `--health-*` flags), as Docker's `Config.Healthcheck`.
    #[serde(default)]
    pub healthcheck: Option<HealthConfig>,
}

/// Docker's `Healthcheck` (durations in nanoseconds, 0 for the
/// default): `Test` is `["NONE"]`, `["CMD", arg...]` or
/// `["CMD-SHELL", command]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    #[serde(default)]
    pub test: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interval: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_period: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

impl HealthConfig {
    /// The command a probe runs, or None (no check, or `NONE`).
    pub fn probe_argv(&self) -> Option<Vec<String>> {
        match self.test.split_first() {
            Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => Some(rest.to_vec()),
            Some((kind, rest)) if kind == "CMD-SHELL" && !rest.is_empty() => Some(
                ["/bin/sh", "-c", &rest.join(" ")]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            ),
            _ => None,
        }
    }

    /// Fields not set here come from `base` (Docker merges the image's
    /// check into the container's this way).
    pub fn merged_over(mut self, base: &HealthConfig) -> HealthConfig {
        if self.test.is_empty() {
            self.test = base.test.clone();
        }
        for (mine, theirs) in [
            (&mut self.interval, base.interval),
            (&mut self.timeout, base.timeout),
            (&mut self.start_period, base.start_period),
            (&mut self.retries, base.retries),
        ] {
            if *mine == 0 {
                *mine = theirs;
            }
        }
        self
    }
}

/// Docker's `State.Health`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    /// `starting`, `healthy` or `unhealthy`.
    pub status: String,
    pub failing_streak: u32,
    /// The last five probes, oldest first.
    pub log: Vec<HealthLog>,
}

/// One probe's result.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthLog {
    pub start: String,
    pub end: String,
    pub exit_code: i32,
    pub output: String,
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
    /// `stop` or `kill` ended the container (or asked to): its restart
    /// policy does not restart it, nor does `system boot` an
    /// `unless-stopped` one, until it is started again (Docker's
    /// `HasBeenManuallyStopped`).
    #[serde(default)]
    pub manually_stopped: bool,
    /// The restart policy's last back-off delay (`monitor/restart.rs`).
    #[serde(default)]
    pub restart_delay_ms: u64,
    /// With a health check: its state (`monitor/health.rs`).
    #[serde(default)]
    pub health: Option<Health>,
}

/// Docker's default PATH for a container whose image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The current time as Docker prints it (RFC 3339 with nanoseconds).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// `--restart`: Docker's restart policy (`HostConfig.RestartPolicy`).
/// Parsed here, in one place, for `run`, `create` and `update`; carried
/// out by the monitor (`monitor/restart.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RestartPolicy {
    /// `no`, `always`, `unless-stopped` or `on-failure` (empty: `no`).
    pub name: String,
    /// For `on-failure:N`; 0 means no limit.
    pub maximum_retry_count: u32,
}

impl RestartPolicy {
    /// `no` (or never set).
    pub fn is_none(&self) -> bool {
        self.name.is_empty() || self.name == "no"
    }

    pub fn is_always(&self) -> bool {
        self.name == "always"
    }

    pub fn is_unless_stopped(&self) -> bool {
        self.name == "unless-stopped"
    }

    pub fn is_on_failure(&self) -> bool {
        self.name == "on-failure"
    }

    /// Reads the typed policy, or the string an older record holds.
    fn deserialize_compat<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Stored {
            Typed(RestartPolicy),
            Text(String),
        }
        match Stored::deserialize(d)? {
            Stored::Typed(p) => Ok(p),
            Stored::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl std::fmt::Display for RestartPolicy {
    /// As `--restart` spells it: `no`, `always`, `on-failure:3`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.name.as_str(), self.maximum_retry_count) {
            ("", _) => f.write_str("no"),
            ("on-failure", n) if n > 0 => write!(f, "on-failure:{n}"),
            (name, _) => f.write_str(name),
        }
    }
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

    #[test]
    fn old_records_with_a_string_policy_still_read() {
        let old = r#"{"image_name":"x","entrypoint":[],"cmd":[],"env":[],"working_dir":"/",
            "user":"","hostname":"","network":"default","read_only":false,"init":false,
            "tty":false,"interactive":false,"auto_remove":false,"privileged":false,
            "cap_add":[],"cap_drop":[],"no_new_privileges":false,"mounts":[],
            "stop_signal":"SIGTERM","stop_timeout":null,"restart_policy":"on-failure:3"}"#;
        let spec: super::ContainerSpec = serde_json::from_str(old).unwrap();
        assert_eq!(spec.restart_policy.to_string(), "on-failure:3");
        let empty = old.replace("on-failure:3", "");
        let spec: super::ContainerSpec = serde_json::from_str(&empty).unwrap();
        assert!(spec.restart_policy.is_none());
        let round = serde_json::to_string(&spec).unwrap();
        let again: super::ContainerSpec = serde_json::from_str(&round).unwrap();
        assert_eq!(again, spec);
    }
}
