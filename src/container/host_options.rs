//! The run/create flags that shape the container's process and its
//! mounts beyond its resource limits: `--ulimit`, `--shm-size`,
//! `--tmpfs`, `--device`, `--sysctl` and `--log-driver`/`--log-opt`.
//! Parsed and checked here with Docker 20.10's rules and messages,
//! stored in the spec, shown by `inspect` under Docker's HostConfig names;
//! `launch::setup` applies them.

use std::collections::BTreeMap;

use nix::sys::resource::Resource;
use serde::{Deserialize, Serialize};

use super::error::ContainerError;
use super::spec::NetworkMode;

/// Docker's default size of /dev/shm (64 MiB).
pub const DEFAULT_SHM_SIZE: i64 = 64 * 1024 * 1024;

/// One `--ulimit NAME=SOFT[:HARD]`, as Docker's HostConfig.Ulimits shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ulimit {
    pub name: String,
    pub hard: i64,
    pub soft: i64,
}

/// One `--device HOST[:CONTAINER[:PERMS]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeviceMapping {
    pub path_on_host: String,
    pub path_in_container: String,
    pub cgroup_permissions: String,
}

/// An I/O error as Go words it: `no such file or directory`.
fn os_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or_default();
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_lowercase().chain(chars).collect())
        .unwrap_or_default()
}

/// `--log-driver` and `--log-opt`, as HostConfig.LogConfig.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LogConfig {
    #[serde(rename = "Type")]
    pub driver: String,
    pub config: BTreeMap<String, String>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            driver: "json-file".into(),
            config: BTreeMap::new(),
        }
    }
}

impl LogConfig {
    /// Whether the container's output is logged (`none` keeps nothing).
    pub fn keeps_logs(&self) -> bool {
        self.driver != "none"
    }

    /// The json-file rotation: the size at which the log is rotated
    /// (`max-size`, None: never) and how many files are kept in all
    /// (`max-file`, 1 by default).
    pub fn rotation(&self) -> (Option<u64>, usize) {
        let size = self
            .config
            .get("max-size")
            .and_then(|s| super::resources::parse_bytes(s).ok())
            .filter(|s| *s > 0)
            .map(|s| s as u64);
        let files = self
            .config
            .get("max-file")
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(1);
        (size, files)
    }
}

/// The options of this kind a container was created with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostOptions {
    /// Sorted by name, as Docker shows them.
    pub ulimits: Vec<Ulimit>,
    /// Bytes of /dev/shm.
    pub shm_size: i64,
    /// Mount point to its options (Docker's `Tmpfs` map).
    pub tmpfs: BTreeMap<String, String>,
    pub devices: Vec<DeviceMapping>,
    pub sysctls: BTreeMap<String, String>,
    pub log_config: LogConfig,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            ulimits: Vec::new(),
            shm_size: DEFAULT_SHM_SIZE,
            tmpfs: BTreeMap::new(),
            devices: Vec::new(),
            sysctls: BTreeMap::new(),
            log_config: LogConfig::default(),
        }
    }
}

/// The flags as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct HostFlags {
    pub ulimits: Vec<String>,
    pub shm_size: Option<String>,
    pub tmpfs: Vec<String>,
    pub devices: Vec<String>,
    pub sysctls: Vec<String>,
    pub log_driver: Option<String>,
    pub log_opts: Vec<String>,
}

fn invalid(value: &str, flag: &str, reason: impl std::fmt::Display) -> ContainerError {
    ContainerError::Refused(format!(
        "invalid argument \"{value}\" for \"--{flag}\" flag: {reason}"
    ))
}

/// Docker's ulimit names and the resources they set.
pub const ULIMITS: [(&str, Resource); 15] = [
    ("core", Resource::RLIMIT_CORE),
    ("cpu", Resource::RLIMIT_CPU),
    ("data", Resource::RLIMIT_DATA),
    ("fsize", Resource::RLIMIT_FSIZE),
    ("locks", Resource::RLIMIT_LOCKS),
    ("memlock", Resource::RLIMIT_MEMLOCK),
    ("msgqueue", Resource::RLIMIT_MSGQUEUE),
    ("nice", Resource::RLIMIT_NICE),
    ("nofile", Resource::RLIMIT_NOFILE),
    ("nproc", Resource::RLIMIT_NPROC),
    ("rss", Resource::RLIMIT_RSS),
    ("rtprio", Resource::RLIMIT_RTPRIO),
    ("rttime", Resource::RLIMIT_RTTIME),
    ("sigpending", Resource::RLIMIT_SIGPENDING),
    ("stack", Resource::RLIMIT_STACK),
];

/// The resource a ulimit name sets.
pub fn ulimit_resource(name: &str) -> Option<Resource> {
    ULIMITS.iter().find(|(n, _)| *n == name).map(|(_, r)| *r)
}

/// `--ulimit NAME=SOFT[:HARD]` (go-units' `ParseUlimit`): -1 is
/// unlimited; the hard limit defaults to the soft one.
pub fn parse_ulimit(text: &str) -> Result<Ulimit, ContainerError> {
    let bad = |reason: String| invalid(text, "ulimit", reason);
    let (name, limits) = text
        .split_once('=')
        .ok_or_else(|| bad(format!("invalid ulimit argument: {text}")))?;
    if !ULIMITS.iter().any(|(n, _)| *n == name) {
        return Err(bad(format!("invalid ulimit type: {name}")));
    }
    let number = |s: &str| {
        s.parse::<i64>()
            .map_err(|_| bad(format!("strconv.ParseInt: parsing \"{s}\": invalid syntax")))
    };
    let (soft, hard) = match limits.split_once(':') {
        Some((s, h)) => (number(s)?, number(h)?),
        None => {
            let s = number(limits)?;
            (s, s)
        }
    };
    if hard != -1 && soft > hard {
        return Err(bad(format!(
            "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
        )));
    }
    Ok(Ulimit {
        name: name.to_string(),
        hard,
        soft,
    })
}

/// `--sysctl K=V`: only the namespaced ones Docker's client allows
/// (`ValidateSysctl`): IPC (`kernel.msg*`, `kernel.sem`, `kernel.shm*`,
/// `fs.mqueue.*`) and `net.*`, the latter only with a network namespace
/// of the container's own (runc refuses it in the host's).
pub fn check_sysctl(text: &str, network: &NetworkMode) -> Result<(String, String), ContainerError> {
    const IPC: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let not_allowed = || invalid(text, "sysctl", format!("sysctl '{text}' is not allowed"));
    let (key, value) = text.split_once('=').ok_or_else(not_allowed)?;
    if key.contains('/') || key.split('.').any(|part| part.is_empty() || part == "..") {
        return Err(not_allowed());
    }
    let allowed = IPC.contains(&key) || key.starts_with("fs.mqueue.") || key.starts_with("net.");
    if !allowed {
        return Err(not_allowed());
    }
    if key.starts_with("net.") && matches!(network, NetworkMode::Host | NetworkMode::Container(_)) {
        let which = if *network == NetworkMode::Host {
            "host"
        } else {
            "another container's"
        };
        return Err(ContainerError::Refused(format!(
            "sysctl \"{key}\" not allowed in {which} network namespace"
        )));
    }
    Ok((key.to_string(), value.to_string()))
}

/// `--tmpfs PATH[:OPTIONS]`.
pub fn parse_tmpfs(text: &str) -> Result<(String, String), ContainerError> {
    let (path, options) = text.split_once(':').unwrap_or((text, ""));
    if !path.starts_with('/') {
        return Err(ContainerError::Refused(format!(
            "invalid mount path for --tmpfs {text}: mount path must be absolute"
        )));
    }
    if path.split('/').any(|c| c == "..") {
        return Err(ContainerError::Refused(format!(
            "invalid mount path for --tmpfs {text}: mount path must not contain '..'"
        )));
    }
    for option in options.split(',').filter(|o| !o.is_empty()) {
        if tmpfs_option(option).is_none() {
            return Err(ContainerError::Refused(format!(
                "invalid tmpfs option {option:?} for --tmpfs {text}"
            )));
        }
    }
    Ok((path.to_string(), options.to_string()))
}

/// What one tmpfs option is: a mount flag to set or clear, or data for
/// the filesystem (`size=`, `mode=`, `uid=`, `gid=`, `nr_inodes=`,
/// `nr_blocks=`).
pub enum TmpfsOption {
    Set(nix::mount::MsFlags),
    Clear(nix::mount::MsFlags),
    Data,
}

pub fn tmpfs_option(option: &str) -> Option<TmpfsOption> {
    use nix::mount::MsFlags as F;
    Some(match option {
        "ro" => TmpfsOption::Set(F::MS_RDONLY),
        "rw" => TmpfsOption::Clear(F::MS_RDONLY),
        "exec" => TmpfsOption::Clear(F::MS_NOEXEC),
        "noexec" => TmpfsOption::Set(F::MS_NOEXEC),
        "suid" => TmpfsOption::Clear(F::MS_NOSUID),
        "nosuid" => TmpfsOption::Set(F::MS_NOSUID),
        "dev" => TmpfsOption::Clear(F::MS_NODEV),
        "nodev" => TmpfsOption::Set(F::MS_NODEV),
        "atime" => TmpfsOption::Clear(F::MS_NOATIME),
        "noatime" => TmpfsOption::Set(F::MS_NOATIME),
        "diratime" => TmpfsOption::Clear(F::MS_NODIRATIME),
        "nodiratime" => TmpfsOption::Set(F::MS_NODIRATIME),
        "relatime" => TmpfsOption::Set(F::MS_RELATIME),
        "strictatime" => TmpfsOption::Set(F::MS_STRICTATIME),
        "sync" => TmpfsOption::Set(F::MS_SYNCHRONOUS),
        "async" => TmpfsOption::Clear(F::MS_SYNCHRONOUS),
        _ => match option.split_once('=') {
            Some(("size" | "mode" | "uid" | "gid" | "nr_inodes" | "nr_blocks", v))
                if !v.is_empty() =>
            {
                TmpfsOption::Data
            }
            _ => return None,
        },
    })
}

/// `--device HOST[:CONTAINER[:PERMS]]` (the client's `parseDevice`):
/// PERMS a combination of r, w and m (default rwm); the host path must
/// be a character or block device (a directory of devices is not taken).
pub fn parse_device(text: &str) -> Result<DeviceMapping, ContainerError> {
    let bad = |reason: &str| invalid(text, "device", reason);
    let valid_perms = |p: &str| !p.is_empty() && p.chars().all(|c| "rwm".contains(c));
    let parts: Vec<&str> = text.split(':').collect();
    let (host, container, perms) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, p] if valid_perms(p) => (*h, *h, *p),
        [h, c] => (*h, *c, "rwm"),
        [h, c, p] => (*h, *c, *p),
        _ => return Err(bad("bad format")),
    };
    if !valid_perms(perms) {
        return Err(bad(&format!("bad mode specified: {perms}")));
    }
    if !container.starts_with('/') {
        return Err(bad(&format!("{container} is not an absolute path")));
    }
    if container.split('/').any(|c| c == "..") {
        return Err(bad(&format!("{container} must not contain '..'")));
    }
    use std::os::unix::fs::FileTypeExt;
    let kind = std::fs::metadata(host)
        .map_err(|e| {
            ContainerError::Refused(format!(
                "error gathering device information while adding custom device \"{host}\": {}",
                os_reason(&e)
            ))
        })?
        .file_type();
    if !(kind.is_char_device() || kind.is_block_device()) {
        return Err(ContainerError::Refused(format!(
            "error gathering device information while adding custom device \"{host}\": not a device node"
        )));
    }
    Ok(DeviceMapping {
        path_on_host: host.to_string(),
        path_in_container: container.to_string(),
        cgroup_permissions: perms.to_string(),
    })
}

/// `--log-driver` and `--log-opt`: json-file (Docker's default) with
/// `max-size` and `max-file`, or none (no options).
pub fn parse_log_config(
    driver: Option<&str>,
    opts: &[String],
) -> Result<LogConfig, ContainerError> {
    const DOCKERS: [&str; 11] = [
        "local",
        "syslog",
        "journald",
        "gelf",
        "fluentd",
        "awslogs",
        "splunk",
        "etwlogs",
        "gcplogs",
        "logentries",
        "loki",
    ];
    let driver = driver.unwrap_or("json-file");
    let mut config = BTreeMap::new();
    for opt in opts {
        let (k, v) = opt.split_once('=').ok_or_else(|| {
            ContainerError::Refused(format!("invalid key-value pair for --log-opt: {opt}"))
        })?;
        config.insert(k.to_string(), v.to_string());
    }
    match driver {
        "json-file" => {
            for (k, v) in &config {
                match k.as_str() {
                    "max-size" => {
                        super::resources::parse_bytes(v).map_err(|e| {
                            ContainerError::Refused(format!(
                                "failed to initialize logging driver: {e}"
                            ))
                        })?;
                    }
                    "max-file" => {
                        let n: i64 = v.parse().map_err(|_| {
                            ContainerError::Refused(format!(
                                "failed to initialize logging driver: strconv.Atoi: parsing \"{v}\": invalid syntax"
                            ))
                        })?;
                        if n < 1 {
                            return Err(ContainerError::Refused(
                                "failed to initialize logging driver: max-file cannot be less than 1".into(),
                            ));
                        }
                    }
                    _ => {
                        return Err(ContainerError::Refused(format!(
                            "unknown log opt '{k}' for json-file log driver"
                        )))
                    }
                }
            }
        }
        "none" if !config.is_empty() => {
            return Err(ContainerError::Refused(
                "invalid logging opts for driver none".into(),
            ))
        }
        "none" => {}
        d if DOCKERS.contains(&d) => {
            return Err(ContainerError::Unsupported(format!(
                "logging driver {d} is not supported by strata (json-file and none are)"
            )))
        }
        d => {
            return Err(ContainerError::Unsupported(format!(
                "error looking up logging plugin {d}: plugin \"{d}\" not found"
            )))
        }
    }
    Ok(LogConfig {
        driver: driver.to_string(),
        config,
    })
}

impl HostFlags {
    /// Parses and checks every flag; `network` is the container's mode
    /// (for `net.*` sysctls).
    pub fn parse(&self, network: &NetworkMode) -> Result<HostOptions, ContainerError> {
        let mut ulimits: BTreeMap<String, Ulimit> = BTreeMap::new();
        for u in &self.ulimits {
            let parsed = parse_ulimit(u)?;
            ulimits.insert(parsed.name.clone(), parsed);
        }
        let shm_size = match &self.shm_size {
            None => DEFAULT_SHM_SIZE,
            Some(s) => {
                let bytes =
                    super::resources::parse_bytes(s).map_err(|e| invalid(s, "shm-size", e))?;
                if bytes <= 0 {
                    return Err(ContainerError::Refused(
                        "SHM size can not be less than 0".into(),
                    ));
                }
                bytes
            }
        };
        let mut tmpfs = BTreeMap::new();
        for t in &self.tmpfs {
            let (path, options) = parse_tmpfs(t)?;
            tmpfs.insert(path, options);
        }
        let devices = self
            .devices
            .iter()
            .map(|d| parse_device(d))
            .collect::<Result<Vec<_>, _>>()?;
        let mut sysctls = BTreeMap::new();
        for s in &self.sysctls {
            let (k, v) = check_sysctl(s, network)?;
            sysctls.insert(k, v);
        }
        Ok(HostOptions {
            ulimits: ulimits.into_values().collect(),
            shm_size,
            tmpfs,
            devices,
            sysctls,
            log_config: parse_log_config(self.log_driver.as_deref(), &self.log_opts)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulimits_as_docker_parses_them() {
        assert_eq!(
            parse_ulimit("nofile=100:200").unwrap(),
            Ulimit {
                name: "nofile".into(),
                soft: 100,
                hard: 200
            }
        );
        assert_eq!(parse_ulimit("core=-1").unwrap().hard, -1);
        let e = parse_ulimit("foo=1").unwrap_err().to_string();
        assert!(e.ends_with("invalid ulimit type: foo"), "{e}");
        let e = parse_ulimit("nofile=10:5").unwrap_err().to_string();
        assert!(
            e.ends_with("ulimit soft limit must be less than or equal to hard limit: 10 > 5"),
            "{e}"
        );
        assert!(parse_ulimit("nofile=abc").is_err());
    }

    #[test]
    fn only_namespaced_sysctls() {
        let bridge = NetworkMode::Default;
        assert!(check_sysctl("kernel.shmmax=1000000", &bridge).is_ok());
        assert!(check_sysctl("fs.mqueue.msg_max=20", &bridge).is_ok());
        assert!(check_sysctl("net.ipv4.ip_forward=1", &bridge).is_ok());
        let e = check_sysctl("kernel.hostname=x", &bridge)
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("sysctl 'kernel.hostname=x' is not allowed"),
            "{e}"
        );
        assert!(check_sysctl("kernel.shmmax", &bridge).is_err());
        assert!(check_sysctl("net.ipv4.ip_forward=1", &NetworkMode::Host).is_err());
        assert!(check_sysctl("net.ipv4.ip_forward=1", &NetworkMode::None).is_ok());
    }

    #[test]
    fn devices_tmpfs_and_logs() {
        let d = parse_device("/dev/null:/dev/mynull:r").unwrap();
        assert_eq!(d.path_in_container, "/dev/mynull");
        assert_eq!(d.cgroup_permissions, "r");
        assert_eq!(
            parse_device("/dev/null:rw").unwrap().path_in_container,
            "/dev/null"
        );
        assert!(parse_device("/dev/null:/x:rwz").is_err());
        assert!(parse_device("/etc/passwd").is_err());
        assert!(parse_tmpfs("/run:rw,size=1m").is_ok());
        assert!(parse_tmpfs("run").is_err());
        assert!(parse_tmpfs("/run:bogus").is_err());
        let log = parse_log_config(None, &["max-size=1k".into(), "max-file=3".into()]).unwrap();
        assert_eq!(log.rotation(), (Some(1024), 3));
        assert!(parse_log_config(Some("none"), &["max-size=1m".into()]).is_err());
        assert!(parse_log_config(None, &["foo=1".into()]).is_err());
        assert!(parse_log_config(Some("syslogx"), &[]).is_err());
    }
}
