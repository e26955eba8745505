//! `strata diff CONTAINER`: A/C/D lines.
use super::Context;
use crate::container::container_changes;

#[derive(clap::Args, Debug)]
pub struct Args {
    pub container: String,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    let store = ctx.open_store()?;
    for change in container_changes(&store, &args.container)? {
        outln!("{} {}", change.kind.letter(), change.path);
    }
    Ok(0)
}
