//! `strata rename CONTAINER NEW_NAME`
use super::Context;
use crate::container::rename_container;

#[derive(clap::Args, Debug)]
pub struct Args {
    pub container: String,
    pub new_name: String,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    let store = ctx.open_store()?;
    rename_container(&store, &args.container, &args.new_name)?;
    Ok(0)
}
