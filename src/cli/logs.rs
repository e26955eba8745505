//! `strata logs [-f] [-t] [--tail N] [--since T] [--until T] CONTAINER`
use std::io::Write;

use super::output::parse_when;
use super::Context;
use crate::container::monitor::logs::{log_path, read_logs, LogOptions};
use crate::container::{container_dir, lookup, Status};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Follow log output
    #[arg(short, long)]
    pub follow: bool,
    /// Show timestamps
    #[arg(short, long)]
    pub timestamps: bool,
    /// Number of lines to show from the end of the logs ("all" for all)
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show logs since a timestamp (RFC 3339) or relative (e.g. 42m)
    #[arg(long)]
    pub since: Option<String>,
    /// Show logs before a timestamp (RFC 3339) or relative (e.g. 42m)
    #[arg(long)]
    pub until: Option<String>,
    pub container: String,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    let store = ctx.open_store()?;
    let container = lookup(&store, &args.container)?;
    if !container.spec.host.log_config.keeps_logs() {
        // Docker's daemon refuses this (exit 1): its words, its prefix.
        return Err(super::DaemonError(
            "configured logging driver does not support reading".into(),
        )
        .into());
    }
    let options = LogOptions {
        follow: args.follow,
        tail: if args.tail == "all" {
            None
        } else {
            Some(
                args.tail
                    .parse()
                    .map_err(|_| anyhow::anyhow!("invalid --tail {:?}", args.tail))?,
            )
        },
        since: args.since.as_deref().map(parse_when).transpose()?,
        until: args.until.as_deref().map(parse_when).transpose()?,
    };
    let path = log_path(&container_dir(&store, &container.id));
    let id = container.id.clone();
    let mut running = || {
        lookup(&store, &id)
            .map(|c| matches!(c.state.status, Status::Running | Status::Paused))
            .unwrap_or(false)
    };
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    read_logs(&path, &options, &mut running, &mut |line| {
        let text = if args.timestamps {
            format!("{} {}", line.time, line.log)
        } else {
            line.log.clone()
        };
        let written = if line.stream == "stderr" {
            stderr.lock().write_all(text.as_bytes())
        } else {
            let mut out = stdout.lock();
            out.write_all(text.as_bytes()).and_then(|_| out.flush())
        };
        // A closed pipe ends the command as it ends Docker's client.
        let ok = written.is_ok();
        super::streams::end_if_broken_pipe(written);
        ok
    })?;
    Ok(0)
}
