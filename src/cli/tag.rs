//! `strata tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]`
use super::Context;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The image to tag (name[:tag], ID or digest)
    pub source: String,
    /// The new reference
    pub target: String,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    let store = ctx.open_store()?;
    crate::image::tag_image(&store, &args.source, &args.target)?;
    Ok(0)
}
