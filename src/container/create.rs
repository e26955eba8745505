//! `create`: a container record and its directory, from an image and the
//! user's flags. Nothing runs yet.

use std::collections::BTreeMap;

use super::error::ContainerError;
use super::launch::caps::{container_set, parse_cap};
use super::launch::seccomp;
use super::records::{
    container_dir, insert_container, insert_with_generated_name, new_id, validate_name, Container,
};
use super::spec::{now_rfc3339, ContainerSpec, ContainerState, MountSpec, NetworkMode};
use super::volume::create_volume;
use crate::image::{image_config, resolve_image};
use crate::store::Store;

/// What `create` and `run` take from the command line.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub image: String,
    pub name: Option<String>,
    /// Arguments after the image (replace the image's Cmd when non-empty).
    pub cmd: Vec<String>,
    /// `--entrypoint`; `Some("")` clears the image's.
    pub entrypoint: Option<String>,
    pub env: Vec<String>,
    pub env_files: Vec<std::path::PathBuf>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub network: NetworkMode,
    pub read_only: bool,
    pub init: bool,
    pub tty: bool,
    pub interactive: bool,
    pub auto_remove: bool,
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub security_opts: Vec<String>,
    pub volumes: Vec<String>,
    /// Ports, addresses, DNS and hosts settings (`-p`, `--ip`, ...).
    pub net: crate::network::NetworkConfig,
    /// `--link NAME[:ALIAS]`.
    pub links: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<u32>,
    /// `-m`, `--cpus`, `--pids-limit`, ... (checked here).
    pub resources: super::resources::Resources,
    /// `--ulimit`, `--shm-size`, `--tmpfs`, `--device`, `--sysctl`,
    /// `--log-driver`, `--log-opt` as given (checked here).
    pub host: super::host_options::HostFlags,
    /// `--restart` (parsed by the caller; refused here with `--rm`).
    pub restart: super::spec::RestartPolicy,
    /// `--health-*` and `--no-healthcheck`, merged over the image's
    /// HEALTHCHECK; None: the image's as it is.
    pub healthcheck: Option<super::spec::HealthConfig>,
}

/// Merges `KEY=VALUE` lists: later keys replace earlier ones in place.
pub fn merge_env(base: &[String], overrides: &[String]) -> Vec<String> {
    let mut out: Vec<String> = base.to_vec();
    for item in overrides {
        let key = item.split('=').next().unwrap_or(item);
        match out.iter_mut().find(|e| e.split('=').next() == Some(key)) {
            Some(slot) => *slot = item.clone(),
            None => out.push(item.clone()),
        }
    }
    out
}

/// `-e KEY` takes the value from the caller's environment (and is
/// dropped if unset), as Docker does.
fn expand_env(items: &[String]) -> Vec<String> {
    items
        .iter()
        .filter_map(|e| {
            if e.contains('=') {
                Some(e.clone())
            } else {
                std::env::var(e).ok().map(|v| format!("{e}={v}"))
            }
        })
        .collect()
}

fn read_env_file(path: &std::path::Path) -> Result<Vec<String>, ContainerError> {
    let text = std::fs::read_to_string(path).map_err(|e| ContainerError::io(path, e))?;
    Ok(text
        .lines()
        .map(str::trim_start)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}

/// Parses `-v SRC:DST[:ro|rw]` (a host path when SRC starts with `/` or
/// `.`, a named volume otherwise) or `-v DST` (an anonymous volume).
pub fn parse_volume(spec: &str) -> Result<MountSpec, ContainerError> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, destination, mode) = match parts.as_slice() {
        [dst] => ("", *dst, ""),
        [src, dst] => (*src, *dst, ""),
        [src, dst, mode] => (*src, *dst, *mode),
        _ => {
            return Err(ContainerError::Invalid(format!(
                "invalid volume specification: {spec:?}"
            )))
        }
    };
    if !destination.starts_with('/') {
        return Err(ContainerError::Invalid(format!(
            "invalid volume specification: {spec:?}: the container path must be absolute"
        )));
    }
    if destination.trim_matches('/').is_empty() {
        return Err(ContainerError::Invalid(format!(
            "invalid volume specification: {spec:?}: destination can't be '/'"
        )));
    }
    let read_only = match mode {
        "" | "rw" => false,
        "ro" => true,
        other => {
            return Err(ContainerError::Invalid(format!(
                "invalid mode {other:?} in volume specification {spec:?}"
            )))
        }
    };
    if source.starts_with('/') || source.starts_with('.') {
        let path = std::path::absolute(source).map_err(|e| ContainerError::io(source, e))?;
        Ok(MountSpec {
            kind: "bind".into(),
            source: path.to_string_lossy().into(),
            destination: destination.into(),
            read_only,
            anonymous: false,
        })
    } else {
        Ok(MountSpec {
            kind: "volume".into(),
            source: source.into(),
            destination: destination.into(),
            read_only,
            anonymous: source.is_empty(),
        })
    }
}

/// `--security-opt` as Docker reads it: `no-new-privileges[=BOOL]`, and
/// `seccomp=unconfined|builtin|PROFILE.json` (a profile is read, checked
/// and compiled here, and kept in the spec; `KEY:VALUE` works too).
/// Returns no_new_privileges and the spec's seccomp value.
fn parse_security_opts(
    store: &Store,
    options: &CreateOptions,
) -> Result<(bool, String), ContainerError> {
    let mut no_new_privileges = false;
    let mut seccomp_profile = String::new();
    for opt in &options.security_opts {
        let (key, value) = match opt.split_once('=') {
            Some(kv) => kv,
            None if opt == "no-new-privileges" => (opt.as_str(), "true"),
            None => opt.split_once(':').unwrap_or((opt.as_str(), "")),
        };
        match (key, value) {
            ("no-new-privileges", "true") => no_new_privileges = true,
            ("no-new-privileges", "false") => no_new_privileges = false,
            ("seccomp", profile) if !profile.is_empty() => {
                let caps = container_set(options.privileged, &options.cap_add, &options.cap_drop)?;
                seccomp_profile =
                    seccomp::profile_option(profile, caps, &seccomp::cache_dir(store.root()))?;
            }
            (_, "") => {
                return Err(ContainerError::Invalid(format!(
                    "Invalid --security-opt: {opt:?}"
                )))
            }
            _ => {
                return Err(ContainerError::Unsupported(format!(
                    "security option {opt:?} is not supported"
                )))
            }
        }
    }
    Ok((no_new_privileges, seccomp_profile))
}

/// Creates a container; returns its record.
pub fn create_container(
    store: &Store,
    options: &CreateOptions,
) -> Result<Container, ContainerError> {
    if let Some(dir) = options.working_dir.as_deref() {
        if !dir.is_empty() && !dir.starts_with('/') {
            return Err(ContainerError::Invalid(format!(
                "the working directory '{dir}' is invalid, it needs to be an absolute path"
            )));
        }
    }
    if options.auto_remove && !options.restart.is_none() {
        return Err(ContainerError::Invalid(
            "Conflicting options: --restart and --rm".into(),
        ));
    }
    let mut resources = options.resources.clone();
    super::launch::limits::check(&mut resources)?;
    let requested_network = rootless_checks(&options.network, &resources)?;
    let host = options.host.parse(&requested_network)?;
    super::launch::devices::check_host(&host.devices, options.privileged)?;
    let image_id = resolve_image(store, &options.image)?;
    let (config, _) = image_config(store, &image_id)?;
    if !config.os.is_empty() && config.os != "linux" {
        return Err(ContainerError::Unsupported(format!(
            "image operating system {:?} cannot be used on this platform",
            config.os
        )));
    }
    let run = config.config.unwrap_or_default();
    let (network, net, endpoint) = super::monitor::net::plan_network(
        store,
        &requested_network,
        &options.net,
        &options.links,
        run.exposed_ports.as_ref(),
    )?;
    let (entrypoint, cmd) = match &options.entrypoint {
        Some(e) => {
            let ep = if e.is_empty() {
                vec![]
            } else {
                vec![e.clone()]
            };
            (ep, options.cmd.clone())
        }
        None => {
            let cmd = if options.cmd.is_empty() {
                run.cmd.clone().unwrap_or_default()
            } else {
                options.cmd.clone()
            };
            (run.entrypoint.clone().unwrap_or_default(), cmd)
        }
    };
    if entrypoint.is_empty() && cmd.is_empty() {
        return Err(ContainerError::Invalid("no command specified".into()));
    }
    let mut env_overrides = Vec::new();
    for f in &options.env_files {
        env_overrides.extend(read_env_file(f)?);
    }
    env_overrides.extend(options.env.iter().cloned());
    let env = merge_env(
        &run.env.clone().unwrap_or_default(),
        &expand_env(&env_overrides),
    );
    for c in options
        .cap_add
        .iter()
        .chain(options.cap_drop.iter())
        .filter(|c| !c.eq_ignore_ascii_case("all"))
    {
        parse_cap(c)?;
    }
    let (no_new_privileges, seccomp_profile) = parse_security_opts(store, options)?;
    let mut mounts = Vec::new();
    for v in &options.volumes {
        mounts.push(parse_volume(v)?);
    }
    for dest in run
        .volumes
        .as_ref()
        .map(|v| v.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default()
    {
        if !mounts
            .iter()
            .any(|m| m.destination.trim_end_matches('/') == dest.trim_end_matches('/'))
        {
            mounts.push(MountSpec {
                kind: "volume".into(),
                source: String::new(),
                destination: dest,
                read_only: false,
                anonymous: true,
            });
        }
    }
    for m in mounts.iter_mut().filter(|m| m.kind == "volume") {
        let volume = create_volume(
            store,
            if m.source.is_empty() {
                None
            } else {
                Some(m.source.as_str())
            },
            &BTreeMap::new(),
        )?;
        m.source = volume.name;
    }
    let name = match &options.name {
        Some(n) => {
            let n = n.strip_prefix('/').unwrap_or(n);
            validate_name(n)?;
            Some(n.to_string())
        }
        None => None,
    };
    let healthcheck = merge_healthcheck(options.healthcheck.as_ref(), &run.extra)?;
    let mut labels = run.labels.clone().unwrap_or_default();
    labels.extend(options.labels.clone());
    let spec = ContainerSpec {
        image_name: options.image.clone(),
        entrypoint,
        cmd,
        env,
        working_dir: options
            .working_dir
            .clone()
            .or(run.working_dir.clone())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into()),
        user: options
            .user
            .clone()
            .or(run.user.clone())
            .unwrap_or_default(),
        hostname: options.hostname.clone().unwrap_or_default(),
        network,
        net,
        read_only: options.read_only,
        init: options.init,
        tty: options.tty,
        interactive: options.interactive,
        auto_remove: options.auto_remove,
        privileged: options.privileged,
        cap_add: options.cap_add.clone(),
        cap_drop: options.cap_drop.clone(),
        no_new_privileges,
        seccomp_profile,
        mounts,
        stop_signal: options
            .stop_signal
            .clone()
            .or(run.stop_signal.clone())
            .unwrap_or_else(|| "SIGTERM".into()),
        stop_timeout: options.stop_timeout,
        labels,
        resources,
        host,
        restart_policy: options.restart.clone(),
        healthcheck,
    };
    let mut container = Container {
        id: new_id(),
        name: name.clone().unwrap_or_default(),
        image_id: image_id.to_string(),
        created_at: now_rfc3339(),
        spec,
        state: ContainerState::default(),
    };
    let dir = container_dir(store, &container.id);
    for sub in ["upper", "work", "rootfs"] {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).map_err(|e| ContainerError::io(&d, e))?;
    }
    let inserted = match name {
        Some(_) => insert_container(store, &container),
        None => insert_with_generated_name(store, &mut container),
    };
    if let Err(e) = inserted {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e);
    }
    if let Err(e) =
        super::monitor::net::record_network(store, &container.id, &container.spec.net, endpoint)
    {
        let _ = super::records::delete_record(store, &container.id);
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e);
    }
    super::events::record_container_event(store, &container, "create", &[]);
    Ok(container)
}

/// The container's health check: the user's settings over the image's
/// HEALTHCHECK (its config's `Healthcheck`), checked as Docker's daemon
/// checks them. None when neither has one.
fn merge_healthcheck(
    user: Option<&super::spec::HealthConfig>,
    image: &BTreeMap<String, serde_json::Value>,
) -> Result<Option<super::spec::HealthConfig>, ContainerError> {
    let from_image: Option<super::spec::HealthConfig> = image
        .get("Healthcheck")
        .and_then(|v| serde_json::from_value(v.clone()).ok());
    let merged = match (user, from_image) {
        (Some(u), Some(i)) => u.clone().merged_over(&i),
        (Some(u), None) => u.clone(),
        (None, Some(i)) => i,
        (None, None) => return Ok(None),
    };
    const MILLISECOND: i64 = 1_000_000;
    for (name, value) in [
        ("Interval", merged.interval),
        ("Timeout", merged.timeout),
        ("StartPeriod", merged.start_period),
    ] {
        if value != 0 && value < MILLISECOND {
            return Err(ContainerError::Invalid(format!(
                "{name} in Healthcheck cannot be less than 1ms"
            )));
        }
    }
    if merged.retries < 0 {
        return Err(ContainerError::Invalid(
            "Retries in Healthcheck cannot be negative".into(),
        ));
    }
    Ok((!merged.test.is_empty()).then_some(merged))
}

/// What resource limits need, for [`needs_delegated_cgroup`].
pub(super) const LIMITS_NEED: &str = "resource limits (--memory, --cpus, --pids-limit, ...) need";

/// The one-line error for what `needs` (`"pause needs the freezer of"`)
/// of a cgroup an ordinary user's container does not have: strata uses
/// no delegated cgroup for them yet, as rootless podman on a host
/// without a delegated cgroup v2 (docs/rootless.md).
pub(super) fn needs_delegated_cgroup(needs: &str) -> ContainerError {
    ContainerError::Unsupported(format!(
        "rootless: {needs} a delegated cgroup v2 subtree; none is used for ordinary users yet"
    ))
}

/// What an ordinary user's container may have (docs/rootless.md): no
/// resource limits (no delegated cgroup), the networks `none`, `host`,
/// `pasta` and `slirp4netns`; the default network becomes `pasta` where
/// pasta is installed, else `slirp4netns` where that is, else `none` with
/// a note, as rootless podman chooses. Root's containers may not ask for
/// `pasta` or `slirp4netns`. Returns the network mode to plan.
fn rootless_checks(
    network: &NetworkMode,
    resources: &super::resources::Resources,
) -> Result<NetworkMode, ContainerError> {
    use super::launch::userns;
    use crate::network::{pasta, slirp4netns};
    if !userns::is_rootless() {
        if network.is_user_mode() {
            let name = super::monitor::net::user_mode_name(network);
            return Err(ContainerError::Unsupported(format!(
                "--network {name} is for ordinary users' containers; root's use the bridge (--network default)"
            )));
        }
        return Ok(network.clone());
    }
    if resources.any() {
        return Err(needs_delegated_cgroup(LIMITS_NEED));
    }
    if userns::current_maps().single() {
        eprintln!("{}", userns::single_id_warning());
    }
    match network {
        NetworkMode::Host | NetworkMode::None => Ok(network.clone()),
        NetworkMode::Pasta if pasta::available() => Ok(NetworkMode::Pasta),
        NetworkMode::Slirp4netns(_) if slirp4netns::available() => Ok(network.clone()),
        NetworkMode::Pasta => Err(ContainerError::Unsupported(
            "rootless: --network pasta: pasta is not installed (Debian's passt package)".into(),
        )),
        NetworkMode::Slirp4netns(_) => Err(ContainerError::Unsupported(
            "rootless: --network slirp4netns: slirp4netns is not installed (Debian's slirp4netns package)".into(),
        )),
        NetworkMode::Default if pasta::available() => Ok(NetworkMode::Pasta),
        NetworkMode::Default if slirp4netns::available() => {
            Ok(NetworkMode::Slirp4netns(String::new()))
        }
        NetworkMode::Default => {
            eprintln!(
                "NOTE: neither pasta (Debian's passt package) nor slirp4netns is installed: rootless containers have no network by default; using --network none"
            );
            Ok(NetworkMode::None)
        }
        NetworkMode::Network(name) => Err(ContainerError::Unsupported(format!(
            "rootless: network {name:?} needs root; only --network pasta, slirp4netns, none and host work for ordinary users"
        ))),
        NetworkMode::Container(_) => Err(ContainerError::Unsupported(
            "rootless: --network container:... is not supported for ordinary users yet".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_merge_replaces_in_place() {
        let base = vec!["PATH=/bin".to_string(), "A=1".to_string()];
        assert_eq!(
            merge_env(&base, &["A=2".into(), "B=3".into()]),
            vec!["PATH=/bin", "A=2", "B=3"]
        );
    }

    #[test]
    fn volume_specs() {
        let m = parse_volume("/tmp:/data:ro").unwrap();
        assert_eq!(
            (
                m.kind.as_str(),
                m.source.as_str(),
                m.destination.as_str(),
                m.read_only
            ),
            ("bind", "/tmp", "/data", true)
        );
        let m = parse_volume("cache:/var/cache").unwrap();
        assert_eq!((m.kind.as_str(), m.source.as_str()), ("volume", "cache"));
        assert!(parse_volume("/data").unwrap().anonymous);
        assert!(parse_volume("a:relative").is_err());
        assert!(parse_volume("/a:/b:zz").is_err());
        assert!(parse_volume("/a:/").is_err());
    }
}
