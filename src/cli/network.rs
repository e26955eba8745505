//! `strata network create|ls|inspect|rm|connect|disconnect|prune`
use std::collections::BTreeMap;

use clap::Subcommand;

use super::output::print_formatted;
use super::{Context, ExitError};
use crate::container::{monitor::liveness::lookup, Status};
use crate::network::{
    self,
    inspect::{inspect_network, list_rows},
    ConnectOptions, ConnectTarget, CreateNetwork,
};

#[derive(Subcommand, Debug)]
#[command(defer = true)]
pub enum NetworkCommand {
    /// Create a network
    Create {
        /// Driver to manage the network (bridge)
        #[arg(short, long, default_value = "bridge")]
        driver: String,
        /// Subnet in CIDR format (e.g. 172.30.0.0/16)
        #[arg(long)]
        subnet: Option<String>,
        /// IPv4 gateway for the subnet
        #[arg(long)]
        gateway: Option<String>,
        /// Allocate container addresses from a sub-range
        #[arg(long = "ip-range")]
        ip_range: Option<String>,
        /// Restrict external access to the network
        #[arg(long)]
        internal: bool,
        /// Set metadata on a network
        #[arg(long)]
        label: Vec<String>,
        /// Set driver specific options (com.docker.network.bridge.name=NAME)
        #[arg(short, long = "opt")]
        opt: Vec<String>,
        name: String,
    },
    /// List networks
    #[command(alias = "list")]
    Ls {
        /// Only display network IDs
        #[arg(short, long)]
        quiet: bool,
        /// Filter output: name=, id=, driver=, label=, type=custom|builtin
        #[arg(short, long = "filter")]
        filter: Vec<String>,
        /// Format output: table, json, or a Go-style template
        #[arg(long)]
        format: Option<String>,
        /// Do not truncate the output
        #[arg(long)]
        no_trunc: bool,
    },
    /// Display detailed information on one or more networks
    Inspect {
        /// Format output using a custom template (a Go template)
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove one or more networks
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Connect a container to a network (also a running one)
    Connect {
        /// Add a network-scoped alias for the container
        #[arg(long)]
        alias: Vec<String>,
        /// IPv4 address (networks with --subnet)
        #[arg(long)]
        ip: Option<String>,
        network: String,
        container: String,
    },
    /// Disconnect a container from a network
    Disconnect {
        /// Force the container to disconnect from a network
        #[arg(short, long)]
        force: bool,
        network: String,
        container: String,
    },
    /// Remove all unused networks
    Prune {
        /// Do not prompt for confirmation
        #[arg(short, long)]
        force: bool,
    },
}

fn pairs(items: &[String]) -> BTreeMap<String, String> {
    items
        .iter()
        .map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .unwrap_or((l.clone(), String::new()))
        })
        .collect()
}

fn failed() -> anyhow::Error {
    ExitError {
        code: 1,
        message: String::new(),
    }
    .into()
}

fn target(store: &crate::store::Store, name: &str) -> anyhow::Result<ConnectTarget> {
    let c = lookup(store, name)?;
    let running = matches!(c.state.status, Status::Running | Status::Paused).then_some((
        c.state.pid,
        c.state.monitor_pid,
        c.state.monitor_start,
    ));
    Ok(ConnectTarget { id: c.id, running })
}

fn filter_matches(
    row: &serde_json::Value,
    n: &network::Network,
    filter: &str,
) -> anyhow::Result<bool> {
    let (key, value) = filter
        .split_once('=')
        .ok_or_else(|| anyhow::anyhow!("bad format of filter (expected name=value): {filter}"))?;
    Ok(match key {
        "name" => n.name.contains(value),
        "id" => n.id.starts_with(value),
        "driver" => n.driver == value,
        "label" => match value.split_once('=') {
            Some((k, v)) => n.labels.get(k).is_some_and(|x| x == v),
            None => n.labels.contains_key(value),
        },
        "type" => match value {
            "custom" => !n.is_predefined(),
            "builtin" => n.is_predefined(),
            _ => anyhow::bail!("invalid filter: 'type'='{value}'"),
        },
        "scope" => value == "local",
        _ => anyhow::bail!("invalid filter '{key}'"),
    } && row.is_object())
}

pub fn run(command: NetworkCommand, ctx: &Context) -> anyhow::Result<i32> {
    let store = ctx.open_store()?;
    match command {
        NetworkCommand::Create {
            driver,
            subnet,
            gateway,
            ip_range,
            internal,
            label,
            opt,
            name,
        } => {
            let request = CreateNetwork {
                name,
                driver,
                subnet,
                gateway,
                ip_range,
                internal,
                labels: pairs(&label),
                options: pairs(&opt),
            };
            outln!("{}", network::create_network(&store, &request)?.id);
        }
        NetworkCommand::Ls {
            quiet,
            filter,
            format,
            no_trunc,
        } => {
            let mut rows = Vec::new();
            for (n, mut row) in list_rows(&store)? {
                let mut keep = true;
                for f in &filter {
                    keep &= filter_matches(&row, &n, f)?;
                }
                if !keep {
                    continue;
                }
                if !no_trunc {
                    row["ID"] = serde_json::json!(n.short_id());
                }
                rows.push(row);
            }
            if quiet {
                rows.iter()
                    .for_each(|r| outln!("{}", r["ID"].as_str().unwrap_or("")));
                return Ok(0);
            }
            let headers = |f: &str| match f {
                "ID" => Some("NETWORK ID".to_string()),
                "CreatedAt" => Some("CREATED AT".to_string()),
                _ => None,
            };
            print_formatted(
                format.as_deref(),
                &rows,
                "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}",
                &headers,
            )?;
        }
        NetworkCommand::Inspect { format, names } => {
            let template = super::output::inspect_template(format.as_deref())?;
            let mut out = Vec::new();
            let mut bad = false;
            for n in &names {
                match inspect_network(&store, n) {
                    Ok(v) => out.push(v),
                    Err(e) => {
                        errln!("Error response from daemon: {e}");
                        bad = true;
                    }
                }
            }
            super::output::print_inspected(template.as_ref(), &out)?;
            if bad {
                return Err(failed());
            }
        }
        NetworkCommand::Rm { names } => {
            return super::for_each_name(&names, |n| {
                network::remove_network(&store, n).map(|_| n.to_string())
            });
        }
        NetworkCommand::Connect {
            alias,
            ip,
            network: net,
            container,
        } => {
            let t = target(&store, &container)?;
            let options = ConnectOptions {
                aliases: alias,
                ip: ip.unwrap_or_default(),
            };
            network::connect(&store, &net, &t, &options)
                .map_err(|e| super::DaemonError(e.to_string()))?;
        }
        NetworkCommand::Disconnect {
            force: _,
            network: net,
            container,
        } => {
            let t = target(&store, &container)?;
            network::disconnect(&store, &net, &t).map_err(|e| super::DaemonError(e.to_string()))?;
        }
        NetworkCommand::Prune { force: _ } => {
            let removed = network::prune_networks(&store)?;
            if !removed.is_empty() {
                outln!("Deleted Networks:");
                removed.iter().for_each(|n| outln!("{n}"));
            }
        }
    }
    Ok(0)
}
