//! `strata rmi [-f] IMAGE...`
use super::Context;
use crate::image::RemovalEvent;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Force removal: untag from every repository, even if a container uses the image
    #[arg(short, long)]
    pub force: bool,
    /// Images: name[:tag], name@digest, full or short ID
    #[arg(required = true)]
    pub images: Vec<String>,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    let store = ctx.open_store()?;
    crate::mount::reap_dead_mounts(&store)?;
    let mut failed = 0;
    let mut removed_any = false;
    for name in &args.images {
        match crate::image::remove_image(&store, name, args.force) {
            Ok(events) => {
                for e in events {
                    match e {
                        RemovalEvent::Untagged(n) => outln!("Untagged: {n}"),
                        RemovalEvent::Deleted(id) => {
                            removed_any = true;
                            outln!("Deleted: {id}")
                        }
                    }
                }
            }
            Err(e) => {
                errln!("Error response from daemon: {e}");
                failed += 1;
            }
        }
    }
    if removed_any {
        let report = crate::store::collect_garbage(&store)?;
        for layer in report.layers_removed {
            outln!("Deleted: {layer}");
        }
    }
    Ok(if failed > 0 { 1 } else { 0 })
}
