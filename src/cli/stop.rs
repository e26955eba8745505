//! `strata stop [-t N] CONTAINER...` and `strata restart [-t N] CONTAINER...`
use super::{Context, ExitError};
use crate::container::{restart_container, stop_container};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Seconds to wait before killing the container
    #[arg(short = 't', long = "time", alias = "timeout")]
    pub time: Option<u32>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    each(&args, ctx, false)
}

pub fn run_restart(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    each(&args, ctx, true)
}

fn each(args: &Args, ctx: &Context, restart: bool) -> anyhow::Result<i32> {
    let mut store = ctx.open_store()?;
    let mut failed = 0;
    for name in &args.containers {
        let result = if restart {
            restart_container(&mut store, name, args.time).map(drop)
        } else {
            stop_container(&store, name, args.time).map(drop)
        };
        match result {
            Ok(()) => outln!("{name}"),
            Err(e) => {
                errln!("Error response from daemon: {e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(ExitError {
            code: 1,
            message: String::new(),
        }
        .into());
    }
    Ok(0)
}
