//! `strata kill [-s SIGNAL] CONTAINER...`
use super::Context;
use crate::container::{kill_container, parse_signal};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Signal to send to the container
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    let store = ctx.open_store()?;
    let signal = parse_signal(&args.signal)?;
    super::for_each_name(&args.containers, |name| {
        kill_container(&store, name, signal).map(|_| name.to_string())
    })
}
