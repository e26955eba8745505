//! `strata stats --no-stream [CONTAINER...]`
use serde_json::json;

use super::output::{human_size, print_formatted};
use super::{Context, ExitError};
use crate::container::container_stats;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Disable streaming stats and only pull the first result (the only mode)
    #[arg(long)]
    pub no_stream: bool,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Format output: table, json, or a Go-style template
    #[arg(long)]
    pub format: Option<String>,
    pub containers: Vec<String>,
}

/// Docker's binary sizes for memory ("1.5MiB").
fn binary_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.4}")
        .trim_end_matches('0')
        .trim_end_matches('.')
        .to_string()
        + UNITS[u]
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    if !args.no_stream {
        return Err(ExitError {
            code: 1,
            message: "strata stats only supports --no-stream".into(),
        }
        .into());
    }
    let store = ctx.open_store()?;
    let stats = container_stats(&store, &args.containers)?;
    let values: Vec<_> = stats
        .iter()
        .map(|s| {
            json!({
                "ID": if args.no_trunc { s.id.clone() } else { s.id[..12].to_string() },
                "Container": s.name,
                "Name": s.name,
                "CPUPerc": format!("{:.2}%", s.cpu_percent),
                "MemUsage": format!("{} / {}", binary_size(s.memory_usage), binary_size(s.memory_limit)),
                "MemPerc": format!("{:.2}%", if s.memory_limit > 0 { s.memory_usage as f64 * 100.0 / s.memory_limit as f64 } else { 0.0 }),
                "NetIO": format!("{} / {}", human_size(s.net_rx), human_size(s.net_tx)),
                "BlockIO": format!("{} / {}", human_size(s.block_read), human_size(s.block_write)),
                "PIDs": s.pids.to_string(),
            })
        })
        .collect();
    let table = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";
    let headers = |f: &str| {
        Some(
            match f {
                "ID" => "CONTAINER ID",
                "CPUPerc" => "CPU %",
                "MemUsage" => "MEM USAGE / LIMIT",
                "MemPerc" => "MEM %",
                "NetIO" => "NET I/O",
                "BlockIO" => "BLOCK I/O",
                _ => return None,
            }
            .to_string(),
        )
    };
    print_formatted(args.format.as_deref(), &values, table, &headers)?;
    Ok(0)
}
