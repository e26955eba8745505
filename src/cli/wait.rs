//! `strata wait CONTAINER...`: prints each container's exit code.
use super::Context;
use crate::container::wait_container;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    let store = ctx.open_store()?;
    super::for_each_name(&args.containers, |name| wait_container(&store, name))
}
