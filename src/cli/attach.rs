//! `strata attach CONTAINER`: the container's output from now on, until
//! it exits; the exit status is the container's. (Output only: strata
//! hands a container's stdin only to the command that starts it.)
use std::io::Write;

use super::{Context, ExitError};
use crate::container::logs::{log_path, read_logs, LogOptions};
use crate::container::{container_dir, lookup, wait_container, Status};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Do not attach STDIN (the only mode)
    #[arg(long)]
    pub no_stdin: bool,
    pub container: String,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    let store = ctx.open_store()?;
    let c = lookup(&store, &args.container)?;
    if !matches!(c.state.status, Status::Running | Status::Paused) {
        return Err(ExitError {
            code: 1,
            message: "You cannot attach to a stopped container, start it first".into(),
        }
        .into());
    }
    let options = LogOptions {
        follow: true,
        tail: Some(0),
        since: None,
        until: None,
    };
    let id = c.id.clone();
    let mut running = || {
        lookup(&store, &id)
            .map(|c| matches!(c.state.status, Status::Running | Status::Paused))
            .unwrap_or(false)
    };
    read_logs(
        &log_path(&container_dir(&store, &c.id)),
        &options,
        &mut running,
        &mut |line| {
            let ok = if line.stream == "stderr" {
                std::io::stderr().write_all(line.log.as_bytes()).is_ok()
            } else {
                let mut out = std::io::stdout().lock();
                out.write_all(line.log.as_bytes())
                    .and_then(|_| out.flush())
                    .is_ok()
            };
            ok
        },
    )?;
    Ok(wait_container(&store, &c.id)?)
}
