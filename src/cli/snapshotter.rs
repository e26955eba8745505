//! `strata snapshotter`: serve the store to containerd as a snapshotter
//! (and the hidden daemon behind each snapshot's mount).

use std::path::PathBuf;

use super::Context;
use crate::snapshotter::{self, DaemonPlan};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The unix socket to serve containerd's snapshots API on (name it in
    /// containerd's `proxy_plugins`)
    #[arg(long, value_name = "SOCKET", default_value = snapshotter::DEFAULT_ADDRESS)]
    pub address: PathBuf,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    snapshotter::serve(&ctx.root, &args.address)?;
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct MountArgs {
    #[arg(long)]
    pub mountpoint: PathBuf,
    /// The mount is an active snapshot's overlay lower directory
    #[arg(long)]
    pub overlay_lower: bool,
    /// Layer rows, bottom first
    #[arg(long = "layer")]
    pub layers: Vec<i64>,
}

pub fn run_mount(args: MountArgs, ctx: &Context) -> anyhow::Result<i32> {
    let plan = DaemonPlan {
        mountpoint: args.mountpoint,
        layers: args.layers,
        overlay_lower: args.overlay_lower,
    };
    snapshotter::run_daemon(&ctx.root, &plan)?;
    Ok(0)
}
