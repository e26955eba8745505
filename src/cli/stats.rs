//! `strata stats [-a] [--no-stream] [--no-trunc] [--format F] [CONTAINER...]`
//!
//! As Docker's client: without `--no-stream` the table is drawn again
//! every second, after clearing the screen (`ESC[2J ESC[H`, also when
//! the output is not a terminal, as Docker does), until interrupted, or
//! until no container is left to show when none was named and `-a` was
//! not given. Sizes in Docker's units: memory binary with four
//! significant digits (`816KiB / 23.54GiB`), I/O decimal with three,
//! percentages with two decimals.
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::output::{bytes_size, format_rows, human_size};
use super::Context;
use crate::container::{ContainerStats, StatsSampler};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Disable streaming stats and only pull the first result
    #[arg(long)]
    pub no_stream: bool,
    /// Do not truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Pretty-print stats using a Go template (table, json, '{{.Name}} {{.CPUPerc}}')
    #[arg(long)]
    pub format: Option<String>,
    pub containers: Vec<String>,
}

const TABLE: &str = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";

fn headers(field: &str) -> Option<String> {
    Some(
        match field {
            "ID" => "CONTAINER ID",
            "CPUPerc" => "CPU %",
            "MemUsage" => "MEM USAGE / LIMIT",
            "MemPerc" => "MEM %",
            "NetIO" => "NET I/O",
            "BlockIO" => "BLOCK I/O",
            "PIDs" => "PIDS",
            "Container" => "CONTAINER",
            _ => return None,
        }
        .to_string(),
    )
}

/// One row as Docker's stats formatter fills it.
fn row(s: &ContainerStats, no_trunc: bool) -> Value {
    let percent = |part: u64, whole: u64| {
        if whole == 0 {
            0.0
        } else {
            part as f64 * 100.0 / whole as f64
        }
    };
    json!({
        "ID": if no_trunc { s.id.clone() } else { s.id.chars().take(12).collect() },
        "Container": s.name,
        "Name": s.name,
        "CPUPerc": format!("{:.2}%", s.cpu_percent),
        "MemUsage": format!("{} / {}", bytes_size(s.memory_usage), bytes_size(s.memory_limit)),
        "MemPerc": format!("{:.2}%", percent(s.memory_usage, s.memory_limit)),
        "NetIO": format!("{} / {}", human_size(s.net_rx), human_size(s.net_tx)),
        "BlockIO": format!("{} / {}", human_size(s.block_read), human_size(s.block_write)),
        "PIDs": s.pids.to_string(),
    })
}

fn render(stats: &[ContainerStats], args: &Args) -> anyhow::Result<String> {
    let rows: Vec<Value> = stats.iter().map(|s| row(s, args.no_trunc)).collect();
    format_rows(args.format.as_deref(), &rows, TABLE, &headers)
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    let store = ctx.open_store()?;
    if args.no_stream {
        let stats = crate::container::container_stats(&store, &args.containers, args.all)?;
        out!("{}", render(&stats, &args)?);
        return Ok(0);
    }
    let mut sampler = StatsSampler::new(&args.containers, args.all);
    sampler.sample(&store)?;
    std::thread::sleep(Duration::from_millis(500));
    loop {
        let started = Instant::now();
        let stats = sampler.sample(&store)?;
        out!("\x1b[2J\x1b[H{}", render(&stats, &args)?);
        if stats.is_empty() && args.containers.is_empty() && !args.all {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_secs(1).saturating_sub(started.elapsed()));
    }
}
