//! `strata pause CONTAINER...` and `strata unpause CONTAINER...`
use super::Context;
use crate::container::pause_container;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn run(args: Args, ctx: &Context, paused: bool) -> anyhow::Result<i32> {
    let store = ctx.open_store()?;
    super::for_each_name(&args.containers, |name| {
        pause_container(&store, name, paused).map(|_| name.to_string())
    })
}
