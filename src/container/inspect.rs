//! `inspect` of a container, in the shape of Docker's: State, Config,
//! HostConfig, Mounts, and where its filesystem lives (GraphDriver).

use serde_json::{json, Value};

use super::error::ContainerError;
use super::launch::rootfs::RootfsDirs;
use super::monitor::liveness::lookup;
use super::monitor::logs::log_path;
use super::records::container_dir;
use super::spec::{Status, ZERO_TIME};
use super::volume::volume_data_dir;
use crate::store::Store;

/// Docker's `HostConfig.SecurityOpt`: what was asked for (the default
/// seccomp profile shows as nothing; a profile file as its JSON).
fn security_opt(spec: &super::spec::ContainerSpec) -> Vec<String> {
    let mut opts = Vec::new();
    if spec.no_new_privileges {
        opts.push("no-new-privileges".to_string());
    }
    if !spec.seccomp_profile.is_empty() {
        opts.push(format!("seccomp={}", spec.seccomp_profile));
    }
    opts
}

/// Where the container's /etc file `name` is kept once it has started
/// (`monitor::prepare` writes it there); "" before, as Docker shows a
/// created container's.
fn etc_file_path(dir: &std::path::Path, name: &str) -> String {
    let path = dir.join(name);
    if path.is_file() {
        path.to_string_lossy().into_owned()
    } else {
        String::new()
    }
}

pub fn inspect_container(store: &Store, name_or_id: &str) -> Result<Value, ContainerError> {
    let c = lookup(store, name_or_id)?;
    let dir = container_dir(store, &c.id);
    let dirs = RootfsDirs::of(&dir);
    let s = &c.state;
    let time = |t: &str| {
        if t.is_empty() {
            ZERO_TIME.to_string()
        } else {
            t.to_string()
        }
    };
    let argv = c.spec.argv();
    let r = &c.spec.resources;
    let mounts: Vec<Value> = c
        .spec
        .mounts
        .iter()
        .map(|m| {
            let source = if m.kind == "volume" { volume_data_dir(store, &m.source).to_string_lossy().into_owned() } else { m.source.clone() };
            let mut v = json!({"Type": m.kind, "Source": source, "Destination": m.destination, "Mode": if m.read_only { "ro" } else { "" }, "RW": !m.read_only, "Propagation": "rprivate"});
            if m.kind == "volume" {
                v["Name"] = json!(m.source);
                v["Driver"] = json!("local");
            }
            v
        })
        .collect();
    let mut value = json!({
        "Id": c.id,
        "Created": c.created_at,
        "Path": argv.first().cloned().unwrap_or_default(),
        "Args": argv.iter().skip(1).collect::<Vec<_>>(),
        "State": {
            "Status": s.status.as_str(),
            // Docker counts a container waiting to restart as running.
            "Running": matches!(s.status, Status::Running | Status::Paused | Status::Restarting),
            "Paused": s.status == Status::Paused,
            "Restarting": s.status == Status::Restarting,
            "OOMKilled": s.oom_killed,
            "Dead": s.status == Status::Dead,
            "Pid": s.pid,
            "ExitCode": s.exit_code,
            "Error": s.error,
            "StartedAt": time(&s.started_at),
            "FinishedAt": time(&s.finished_at),
        },
        "Image": c.image_id,
        "LogPath": if c.spec.host.log_config.keeps_logs() { log_path(&dir).to_string_lossy().into_owned() } else { String::new() },
        "Name": format!("/{}", c.name),
        "RestartCount": s.restart_count,
        "Driver": "strata",
        "Platform": "linux",
        "HostConfig": {
            "NetworkMode": c.spec.network.to_string(),
            "PortBindings": super::monitor::net::port_bindings(&c.spec.net),
            "PublishAllPorts": c.spec.net.publish_all,
            "Dns": c.spec.net.dns,
            "DnsOptions": c.spec.net.dns_options,
            "DnsSearch": c.spec.net.dns_search,
            "ExtraHosts": if c.spec.net.extra_hosts.is_empty() { Value::Null } else { json!(c.spec.net.extra_hosts) },
            "Links": if c.spec.net.links.is_empty() { Value::Null } else { json!(c.spec.net.links.iter().map(|l| format!("/{}:/{}/{}", l.name, c.name, l.alias)).collect::<Vec<_>>()) },
            "Privileged": c.spec.privileged,
            "ReadonlyRootfs": c.spec.read_only,
            "CapAdd": c.spec.cap_add,
            "CapDrop": c.spec.cap_drop,
            "SecurityOpt": security_opt(&c.spec),
            "AutoRemove": c.spec.auto_remove,
            "Init": c.spec.init,
            "Memory": r.memory,
            "MemoryReservation": r.memory_reservation,
            "MemorySwap": r.memory_swap,
            "MemorySwappiness": Value::Null,
            "OomKillDisable": r.oom_kill_disable,
            "NanoCpus": r.nano_cpus,
            "CpuShares": r.cpu_shares,
            "CpuPeriod": r.cpu_period,
            "CpuQuota": r.cpu_quota,
            "CpusetCpus": r.cpuset_cpus,
            "CpusetMems": r.cpuset_mems,
            "PidsLimit": r.pids_limit.filter(|p| *p > 0),
            "Binds": c.spec.mounts.iter().filter(|m| m.kind == "bind").map(|m| format!("{}:{}{}", m.source, m.destination, if m.read_only { ":ro" } else { "" })).collect::<Vec<_>>(),
        },
        "GraphDriver": {
            "Name": "strata",
            "Data": {
                "UpperDir": dirs.upper,
                "WorkDir": dirs.work,
                "MergedDir": dirs.mountpoint,
            }
        },
        "Mounts": mounts,
        "NetworkSettings": super::monitor::net::network_settings(store, &c)?,
        "Config": {
            "Hostname": if c.spec.hostname.is_empty() && c.spec.network.is_bridged() { c.short_id().to_string() } else { c.spec.hostname.clone() },
            "Domainname": c.spec.net.domainname,
            "ExposedPorts": if c.spec.net.exposed.is_empty() { Value::Null } else { Value::Object(c.spec.net.exposed.iter().map(|k| (k.clone(), json!({}))).collect()) },
            "User": c.spec.user,
            "Tty": c.spec.tty,
            "OpenStdin": c.spec.interactive,
            "Env": c.spec.env,
            "Cmd": c.spec.cmd,
            "Entrypoint": if c.spec.entrypoint.is_empty() { Value::Null } else { json!(c.spec.entrypoint) },
            "Image": c.spec.image_name,
            "WorkingDir": c.spec.working_dir,
            "Labels": c.spec.labels,
            "StopSignal": c.spec.stop_signal,
            "StopTimeout": c.spec.stop_timeout,
        },
    });
    let host = &c.spec.host;
    let extra = json!({
        "Ulimits": host.ulimits,
        "ShmSize": host.shm_size,
        "Tmpfs": if host.tmpfs.is_empty() { Value::Null } else { json!(host.tmpfs) },
        "Devices": host.devices,
        "Sysctls": if host.sysctls.is_empty() { Value::Null } else { json!(host.sysctls) },
        "LogConfig": host.log_config,
    });
    if let (Some(config), Value::Object(extra)) = (value["HostConfig"].as_object_mut(), extra) {
        config.extend(extra);
    }
    let top = json!({
        "HostnamePath": etc_file_path(&dir, "hostname"),
        "HostsPath": etc_file_path(&dir, "hosts"),
        "ResolvConfPath": etc_file_path(&dir, "resolv.conf"),
        "ExecIDs": super::exec::running_exec_ids(&dir),
    });
    if let (Some(all), Value::Object(top)) = (value.as_object_mut(), top) {
        all.extend(top);
    }
    if let Some(health) = &s.health {
        value["State"]["Health"] = json!(health);
    }
    if let Some(check) = &c.spec.healthcheck {
        value["Config"]["Healthcheck"] = json!(check);
    }
    let policy = &c.spec.restart_policy;
    value["HostConfig"]["RestartPolicy"] = json!({
        "Name": if policy.name.is_empty() { "no" } else { policy.name.as_str() },
        "MaximumRetryCount": policy.maximum_retry_count,
    });
    Ok(value)
}
