//! `strata create [OPTIONS] IMAGE [COMMAND] [ARG...]`
use super::pull::{pull_with_progress, PullOutput};
use super::registry_args::RegistryArgs;
use super::Context;
use crate::container::spec::{HealthConfig, RestartPolicy};
use crate::container::{create_container, CreateOptions, NetworkMode, Resources};
use crate::network::{self, NetworkConfig};
use crate::reference::Reference;
use crate::registry::PullOptions;

// The flags `create` and `run` share.
// (Not a doc comment: clap would make it the about of every command that
// flattens this struct, see `defer` in tree.rs.)
#[derive(clap::Args, Debug, Clone)]
pub struct ContainerFlags {
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables (KEY=VALUE, or KEY to pass the caller's)
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<std::path::PathBuf>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short, long)]
    pub user: Option<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Bind mount a volume (SRC:DST[:ro], NAME:DST[:ro] or DST)
    #[arg(short, long = "volume", value_name = "VOLUME")]
    pub volume: Vec<String>,
    /// Connect a container to a network: bridge (the default), host, none,
    /// a user-defined network's name or ID, or container:NAME|ID; for an
    /// ordinary user pasta (the default where installed), slirp4netns[:OPTIONS]
    /// (allow_host_loopback=true|false, cidr=CIDR, mtu=N), host or none
    #[arg(long, alias = "net", value_name = "NETWORK")]
    pub network: Option<String>,
    /// Add a network-scoped alias for the container (user-defined networks)
    #[arg(long = "network-alias", alias = "net-alias", value_name = "ALIAS")]
    pub network_alias: Vec<String>,
    /// IPv4 address (e.g. 172.30.100.104; user-defined networks with --subnet)
    #[arg(long, value_name = "ADDRESS")]
    pub ip: Option<String>,
    /// Container MAC address (e.g. 92:d0:c6:0a:29:33)
    #[arg(long = "mac-address", value_name = "MAC")]
    pub mac_address: Option<String>,
    /// Publish a container's port(s) to the host: [IP:][HOSTPORT:]CONTAINERPORT[/tcp|udp], ranges allowed
    #[arg(short, long = "publish", value_name = "PORT")]
    pub publish: Vec<String>,
    /// Publish all exposed ports to free host ports
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Expose a port or a range of ports
    #[arg(long, value_name = "PORT")]
    pub expose: Vec<String>,
    /// Add link to another container (NAME[:ALIAS]; default bridge network)
    #[arg(long, value_name = "NAME[:ALIAS]")]
    pub link: Vec<String>,
    /// Set custom DNS servers
    #[arg(long, value_name = "IP")]
    pub dns: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long = "dns-search", value_name = "DOMAIN")]
    pub dns_search: Vec<String>,
    /// Set DNS options
    #[arg(long = "dns-option", alias = "dns-opt", value_name = "OPTION")]
    pub dns_option: Vec<String>,
    /// Add a custom host-to-IP mapping (NAME:IP, IP may be host-gateway)
    #[arg(long = "add-host", value_name = "NAME:IP")]
    pub add_host: Vec<String>,
    /// Container NIS domain name
    #[arg(long)]
    pub domainname: Option<String>,
    /// Mount the container's root filesystem as read only
    #[arg(long)]
    pub read_only: bool,
    /// Run an init inside the container that forwards signals and reaps processes
    /// (the launcher itself stays as pid 1: nothing is needed from the image)
    #[arg(long)]
    pub init: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Keep STDIN open
    #[arg(short, long)]
    pub interactive: bool,
    /// Automatically remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    /// Give extended privileges to this container
    #[arg(long)]
    pub privileged: bool,
    /// Add Linux capabilities
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Security options: no-new-privileges, seccomp=unconfined, seccomp=PROFILE.json
    /// (a profile in Docker's format; the default is Docker's default profile)
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// Set meta data on a container
    #[arg(short, long = "label")]
    pub label: Vec<String>,
    /// Read in a line delimited file of labels
    #[arg(long = "label-file", value_name = "FILE")]
    pub label_file: Vec<std::path::PathBuf>,
    #[command(flatten)]
    pub resources: ResourceFlags,
    #[command(flatten)]
    pub host: HostArgs,
    /// Restart policy to apply when a container exits: no, always,
    /// on-failure[:N] (at most N restarts), unless-stopped (default "no")
    #[arg(long, value_name = "POLICY")]
    pub restart: Option<String>,
    /// Command to run to check health
    #[arg(long = "health-cmd", value_name = "STRING")]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h) (default 0s: 30s)
    #[arg(
        long = "health-interval",
        value_name = "DURATION",
        allow_hyphen_values = true
    )]
    pub health_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h) (default 0s: 30s)
    #[arg(
        long = "health-timeout",
        value_name = "DURATION",
        allow_hyphen_values = true
    )]
    pub health_timeout: Option<String>,
    /// Consecutive failures needed to report unhealthy (default 0: 3)
    #[arg(
        long = "health-retries",
        value_name = "INT",
        allow_hyphen_values = true
    )]
    pub health_retries: Option<i64>,
    /// Start period for the container to initialize before starting
    /// health-retries countdown (ms|s|m|h) (default 0s)
    #[arg(
        long = "health-start-period",
        value_name = "DURATION",
        allow_hyphen_values = true
    )]
    pub health_start_period: Option<String>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long = "no-healthcheck")]
    pub no_healthcheck: bool,
    /// Signal to stop the container
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long = "stop-timeout")]
    pub stop_timeout: Option<u32>,
    /// Pull image before running: missing (when not stored; the default), always, never
    #[arg(long, value_name = "POLICY", default_value = "missing")]
    pub pull: String,
    /// Print help
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// The image
    pub image: String,
    /// The command and its arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

// Ulimits, /dev/shm, tmpfs mounts, devices, sysctls and logging.
// (Not a doc comment: clap would make it the about of every command that
// flattens this struct, see `defer` in tree.rs.)
#[derive(clap::Args, Debug, Clone, Default)]
pub struct HostArgs {
    /// Ulimit options (NAME=SOFT[:HARD], e.g. nofile=1024:2048; -1 unlimited)
    #[arg(long = "ulimit", value_name = "ULIMIT")]
    pub ulimit: Vec<String>,
    /// Size of /dev/shm (default 64m)
    #[arg(long = "shm-size", value_name = "BYTES")]
    pub shm_size: Option<String>,
    /// Mount a tmpfs directory (PATH[:OPTIONS], e.g. /run:rw,size=64m)
    #[arg(long = "tmpfs", value_name = "PATH[:OPTIONS]")]
    pub tmpfs: Vec<String>,
    /// Add a host device to the container (HOST[:CONTAINER[:PERMS]], PERMS of r, w, m; enforced by a devices cgroup)
    #[arg(long = "device", value_name = "DEVICE")]
    pub device: Vec<String>,
    /// Sysctl options (K=V; namespaced only: kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*, net.* with a network namespace of its own)
    #[arg(long = "sysctl", value_name = "K=V")]
    pub sysctl: Vec<String>,
    /// Logging driver for the container: json-file (the default) or none
    #[arg(long = "log-driver", value_name = "DRIVER")]
    pub log_driver: Option<String>,
    /// Log driver options: max-size=SIZE (rotate the json log at SIZE), max-file=N (keep N files)
    #[arg(long = "log-opt", value_name = "OPT")]
    pub log_opt: Vec<String>,
}

impl HostArgs {
    fn flags(&self) -> crate::container::host_options::HostFlags {
        crate::container::host_options::HostFlags {
            ulimits: self.ulimit.clone(),
            shm_size: self.shm_size.clone(),
            tmpfs: self.tmpfs.clone(),
            devices: self.device.clone(),
            sysctls: self.sysctl.clone(),
            log_driver: self.log_driver.clone(),
            log_opts: self.log_opt.clone(),
        }
    }
}

/// Docker's `--pull` policies for `run` and `create`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum PullPolicy {
    Missing,
    Always,
    Never,
}

// The resource limits `create`, `run` and `update` share.
// (Not a doc comment: clap would make it the about of every command that
// flattens this struct, see `defer` in tree.rs.)
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ResourceFlags {
    /// Memory limit (e.g. 512m, 1g)
    #[arg(short = 'm', long, value_name = "BYTES")]
    pub memory: Option<String>,
    /// Swap limit equal to memory plus swap: '-1' to enable unlimited swap
    #[arg(long = "memory-swap", value_name = "BYTES", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Memory soft limit
    #[arg(long = "memory-reservation", value_name = "BYTES")]
    pub memory_reservation: Option<String>,
    /// Disable OOM Killer
    #[arg(long = "oom-kill-disable")]
    pub oom_kill_disable: bool,
    /// Number of CPUs
    #[arg(long, value_name = "DECIMAL")]
    pub cpus: Option<String>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares", value_name = "INT")]
    pub cpu_shares: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) period
    #[arg(long = "cpu-period", value_name = "INT")]
    pub cpu_period: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) quota
    #[arg(long = "cpu-quota", value_name = "INT", allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus", value_name = "LIST")]
    pub cpuset_cpus: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-mems", value_name = "LIST")]
    pub cpuset_mems: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit", value_name = "INT", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
}

impl ResourceFlags {
    /// The limits as the library takes them (sizes and CPUs parsed).
    pub fn resources(&self) -> anyhow::Result<Resources> {
        use crate::container::resources::{parse_bytes, parse_cpus, parse_swap};
        let size = |v: &Option<String>, parse: fn(&str) -> Result<i64, String>| {
            v.as_deref()
                .map(parse)
                .transpose()
                .map(Option::unwrap_or_default)
                .map_err(|e| anyhow::anyhow!(e))
        };
        Ok(Resources {
            memory: size(&self.memory, parse_bytes)?,
            memory_swap: size(&self.memory_swap, parse_swap)?,
            memory_reservation: size(&self.memory_reservation, parse_bytes)?,
            oom_kill_disable: self.oom_kill_disable,
            nano_cpus: size(&self.cpus, parse_cpus)?,
            cpu_shares: self.cpu_shares.unwrap_or_default(),
            cpu_period: self.cpu_period.unwrap_or_default(),
            cpu_quota: self.cpu_quota.unwrap_or_default(),
            cpuset_cpus: self.cpuset_cpus.clone().unwrap_or_default(),
            cpuset_mems: self.cpuset_mems.clone().unwrap_or_default(),
            pids_limit: self.pids_limit,
        })
    }
}

/// Reads `--label-file`s: KEY=VALUE lines, blank lines and `#` comments
/// skipped.
fn read_label_files(files: &[std::path::PathBuf]) -> anyhow::Result<Vec<String>> {
    let mut labels = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| anyhow::anyhow!("open {}: {e}", file.display()))?;
        labels.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from),
        );
    }
    Ok(labels)
}

impl ContainerFlags {
    /// Pulls the image as `--pull` says (by default when it is not in the
    /// store), with pull's progress on stderr, as Docker's client does.
    pub fn pull_image(&self, ctx: &Context, store: &crate::store::Store) -> anyhow::Result<()> {
        let policy = match self.pull.as_str() {
            "missing" => PullPolicy::Missing,
            "always" => PullPolicy::Always,
            "never" => PullPolicy::Never,
            other => anyhow::bail!(
                "invalid pull option: '{other}': must be one of \"always\", \"missing\" or \"never\""
            ),
        };
        if policy == PullPolicy::Never {
            return Ok(());
        }
        let missing = match crate::image::resolve_image(store, &self.image) {
            Ok(_) => false,
            Err(crate::image::ImageError::NotFound(_)) => true,
            Err(e) => return Err(e.into()),
        };
        if !missing && policy == PullPolicy::Missing {
            return Ok(());
        }
        let reference = Reference::parse(&self.image)?;
        if missing {
            errln!("Unable to find image '{}' locally", reference.familiar());
        }
        let options = PullOptions {
            client: RegistryArgs { tls_verify: true }.client_options(&ctx.root)?,
            platform: None,
            max_concurrent_downloads: 3,
        };
        pull_with_progress(
            store,
            &reference,
            &reference.familiar(),
            false,
            &options,
            PullOutput::Stderr,
        )
    }

    /// The network flags as the library takes them.
    fn network_config(&self) -> anyhow::Result<NetworkConfig> {
        let mut ports = Vec::new();
        for p in &self.publish {
            ports.extend(network::parse_publish(p)?);
        }
        let mut exposed = Vec::new();
        for e in &self.expose {
            exposed.extend(network::parse_expose(e)?);
        }
        for h in &self.add_host {
            network::check_extra_host(h)?;
        }
        if let Some(mac) = &self.mac_address {
            network::parse_mac(mac)?;
        }
        if let Some(ip) = &self.ip {
            ip.parse::<std::net::Ipv4Addr>()
                .map_err(|_| anyhow::anyhow!("invalid IPv4 address: {ip}"))?;
        }
        for d in &self.dns {
            d.parse::<std::net::IpAddr>()
                .map_err(|_| anyhow::anyhow!("{d} is not an ip address"))?;
        }
        Ok(NetworkConfig {
            ip: self.ip.clone().unwrap_or_default(),
            mac: self.mac_address.clone().unwrap_or_default(),
            aliases: self.network_alias.clone(),
            dns: self.dns.clone(),
            dns_search: self.dns_search.clone(),
            dns_options: self.dns_option.clone(),
            extra_hosts: self.add_host.clone(),
            domainname: self.domainname.clone().unwrap_or_default(),
            ports,
            publish_all: self.publish_all,
            exposed,
            links: Vec::new(),
        })
    }

    /// `--restart`, checked as Docker's client checks it (not with
    /// `--rm`).
    fn restart_policy(&self) -> anyhow::Result<RestartPolicy> {
        let policy: RestartPolicy = self
            .restart
            .as_deref()
            .unwrap_or("no")
            .parse()
            .map_err(|e: String| anyhow::anyhow!(e))?;
        if self.rm && !policy.is_none() {
            anyhow::bail!("Conflicting options: --restart and --rm");
        }
        Ok(policy)
    }

    /// The `--health-*` flags as Docker's client checks them; None if
    /// none was given (the image's HEALTHCHECK then applies as it is).
    fn healthcheck(&self) -> anyhow::Result<Option<HealthConfig>> {
        let duration = |flag: &str, value: &Option<String>| -> anyhow::Result<i64> {
            let Some(v) = value.as_deref() else {
                return Ok(0);
            };
            let (negative, magnitude) = match v.strip_prefix('-') {
                Some(m) => (true, m),
                None => (false, v),
            };
            let ns = if magnitude == "0" {
                Some(0)
            } else {
                crate::duration::go_duration_ns(magnitude)
            };
            match ns {
                None => anyhow::bail!(
                    "invalid argument \"{v}\" for \"--{flag}\" flag: time: invalid duration \"{v}\""
                ),
                Some(n) if negative && n > 0 => anyhow::bail!("--{flag} cannot be negative"),
                Some(n) => Ok(n),
            }
        };
        let interval = duration("health-interval", &self.health_interval)?;
        let timeout = duration("health-timeout", &self.health_timeout)?;
        let start_period = duration("health-start-period", &self.health_start_period)?;
        let retries = self.health_retries.unwrap_or(0);
        let any = self.health_cmd.is_some()
            || interval != 0
            || timeout != 0
            || start_period != 0
            || retries != 0;
        if self.no_healthcheck {
            if any {
                anyhow::bail!("--no-healthcheck conflicts with --health-* options");
            }
            return Ok(Some(HealthConfig {
                test: vec!["NONE".into()],
                ..Default::default()
            }));
        }
        if retries < 0 {
            anyhow::bail!("--health-retries cannot be negative");
        }
        if !any {
            return Ok(None);
        }
        Ok(Some(HealthConfig {
            test: match &self.health_cmd {
                Some(cmd) => vec!["CMD-SHELL".into(), cmd.clone()],
                None => Vec::new(),
            },
            interval,
            timeout,
            start_period,
            retries,
        }))
    }

    pub fn options(&self, store: &crate::store::Store) -> anyhow::Result<CreateOptions> {
        let network: NetworkMode = match &self.network {
            Some(n) => n.parse().map_err(|e: String| anyhow::anyhow!(e))?,
            None => match network::default_network(store) {
                Some(n) => n.parse().map_err(|e: String| anyhow::anyhow!(e))?,
                None => NetworkMode::Default,
            },
        };
        Ok(CreateOptions {
            image: self.image.clone(),
            name: self.name.clone(),
            cmd: self.command.clone(),
            entrypoint: self.entrypoint.clone(),
            env: self.env.clone(),
            env_files: self.env_file.clone(),
            working_dir: self.workdir.clone(),
            user: self.user.clone(),
            hostname: self.hostname.clone(),
            network,
            read_only: self.read_only,
            init: self.init,
            tty: self.tty,
            interactive: self.interactive,
            auto_remove: self.rm,
            privileged: self.privileged,
            cap_add: self.cap_add.clone(),
            cap_drop: self.cap_drop.clone(),
            security_opts: self.security_opt.clone(),
            volumes: self.volume.clone(),
            net: self.network_config()?,
            links: self.link.clone(),
            labels: read_label_files(&self.label_file)?
                .iter()
                .chain(&self.label)
                .map(|l| {
                    l.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .unwrap_or((l.clone(), String::new()))
                })
                .collect(),
            stop_signal: self.stop_signal.clone(),
            stop_timeout: self.stop_timeout,
            resources: self.resources.resources()?,
            host: self.host.flags(),
            restart: self.restart_policy()?,
            healthcheck: self.healthcheck()?,
        })
    }
}

#[derive(clap::Args, Debug)]
#[command(disable_help_flag = true)]
pub struct Args {
    #[command(flatten)]
    pub flags: ContainerFlags,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    let store = ctx.open_store()?;
    args.flags
        .pull_image(ctx, &store)
        .map_err(super::tool_failure)?;
    let options = args.flags.options(&store).map_err(super::tool_failure)?;
    let container =
        create_container(&store, &options).map_err(|e| super::tool_failure(e.into()))?;
    outln!("{}", container.id);
    Ok(0)
}
