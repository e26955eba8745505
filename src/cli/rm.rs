//! `strata rm [-f] [-v] CONTAINER...`
use super::Context;
use crate::container::remove_container;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short, long)]
    pub force: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short, long)]
    pub volumes: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    let store = ctx.open_store()?;
    super::for_each_name(&args.containers, |name| {
        remove_container(&store, name, args.force, args.volumes).map(|_| name.to_string())
    })
}
