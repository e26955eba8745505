//! `strata volume create|ls|inspect|rm|prune`
use clap::Subcommand;
use serde_json::json;

use super::output::{human_size, print_formatted};
use super::{Context, ExitError};
use crate::container::volume::{
    create_volume, inspect_volume, list_volumes, prune_volumes, remove_volume,
};

#[derive(Subcommand, Debug)]
#[command(defer = true)]
pub enum VolumeCommand {
    /// Create a volume
    Create {
        /// Set metadata for a volume
        #[arg(short, long = "label")]
        label: Vec<String>,
        name: Option<String>,
    },
    /// List volumes
    #[command(alias = "list")]
    Ls {
        #[arg(short, long)]
        quiet: bool,
        #[arg(long)]
        format: Option<String>,
    },
    /// Display detailed information on one or more volumes
    Inspect {
        /// Format output using a custom template (a Go template)
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove one or more volumes
    #[command(alias = "remove")]
    Rm {
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove unused volumes (anonymous ones; all unused with -a)
    Prune {
        #[arg(short, long)]
        all: bool,
        #[arg(short, long)]
        force: bool,
    },
}

pub fn run(command: VolumeCommand, ctx: &Context) -> anyhow::Result<i32> {
    let store = ctx.open_store()?;
    match command {
        VolumeCommand::Create { label, name } => {
            let labels = label
                .iter()
                .map(|l| {
                    l.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .unwrap_or((l.clone(), String::new()))
                })
                .collect();
            outln!("{}", create_volume(&store, name.as_deref(), &labels)?.name);
        }
        VolumeCommand::Ls { quiet, format } => {
            let volumes = list_volumes(&store)?;
            if quiet {
                volumes.iter().for_each(|v| outln!("{}", v.name));
                return Ok(0);
            }
            let values: Vec<_> = volumes.iter().map(|v| json!({"Driver": v.driver, "Name": v.name, "Mountpoint": v.mountpoint, "Scope": v.scope})).collect();
            let headers = |f: &str| {
                if f == "Name" {
                    Some("VOLUME NAME".to_string())
                } else {
                    None
                }
            };
            print_formatted(
                format.as_deref(),
                &values,
                "table {{.Driver}}\t{{.Name}}",
                &headers,
            )?;
        }
        VolumeCommand::Inspect { format, names } => {
            let template = super::output::inspect_template(format.as_deref())?;
            let mut out = Vec::new();
            let mut failed = false;
            for n in &names {
                match inspect_volume(&store, n) {
                    Ok(v) => out.push(serde_json::to_value(v)?),
                    Err(e) => {
                        errln!("Error response from daemon: {e}");
                        failed = true;
                    }
                }
            }
            super::output::print_inspected(template.as_ref(), &out)?;
            if failed {
                return Err(ExitError {
                    code: 1,
                    message: String::new(),
                }
                .into());
            }
        }
        VolumeCommand::Rm { force, names } => {
            let mut failed = false;
            for n in &names {
                match remove_volume(&store, n, force) {
                    Ok(()) => outln!("{n}"),
                    Err(e) => {
                        errln!("Error response from daemon: {e}");
                        failed = true;
                    }
                }
            }
            if failed {
                return Err(ExitError {
                    code: 1,
                    message: String::new(),
                }
                .into());
            }
        }
        VolumeCommand::Prune { all, force: _ } => {
            let (removed, bytes) = prune_volumes(&store, all)?;
            if !removed.is_empty() {
                outln!("Deleted Volumes:");
                removed.iter().for_each(|n| outln!("{n}"));
                outln!();
            }
            outln!("Total reclaimed space: {}", human_size(bytes));
        }
    }
    Ok(0)
}
