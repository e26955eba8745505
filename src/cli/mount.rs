//! `strata mount [--layers] [IMAGE [DIR]]`, `strata umount DIR|IMAGE...`
use std::path::PathBuf;

use super::output::tabulate;
use super::Context;
use crate::mount::MountOptions;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Show each layer as its own directory (<n>-<short diff_id>/) beside merged/
    #[arg(long)]
    pub layers: bool,
    /// Print only mount points when listing
    #[arg(short, long)]
    pub quiet: bool,
    /// What serves the mount: overlay (the kernel, over the image's view;
    /// root only), fuse (a strata daemon), or auto (overlay once the image
    /// has a view, which its first mount builds in the background)
    #[arg(long, value_name = "DRIVER", default_value_t = crate::mount::Driver::Auto)]
    pub driver: crate::mount::Driver,
    /// The container or image to mount; without it, list mounts
    pub image: Option<String>,
    /// Where to mount (default: a directory under the store root)
    pub dir: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct UmountArgs {
    /// Mount points or images
    #[arg(required = true)]
    pub targets: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct DaemonArgs {
    #[arg(long)]
    pub image: String,
    #[arg(long)]
    pub mountpoint: PathBuf,
    #[arg(long)]
    pub layers: bool,
    #[arg(long)]
    pub container: Option<String>,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    let store = ctx.open_store()?;
    let Some(image) = &args.image else {
        let mounts = crate::mount::list_mounts(&store)?;
        if args.quiet {
            for m in mounts {
                outln!("{}", m.mountpoint.display());
            }
            return Ok(0);
        }
        let mut rows = vec![vec![
            "IMAGE ID".to_string(),
            "DRIVER".into(),
            "PID".into(),
            "MOUNTPOINT".into(),
            "CONTAINER".into(),
        ]];
        for m in mounts {
            rows.push(vec![
                m.image.map(|d| d.short()).unwrap_or_default(),
                m.driver().to_string(),
                match m.driver() {
                    crate::mount::Driver::Overlay => "-".into(),
                    _ => m.pid.to_string(),
                },
                m.mountpoint.display().to_string(),
                m.container
                    .map(|c| c[..12.min(c.len())].to_string())
                    .unwrap_or_default(),
            ]);
        }
        out!("{}", tabulate(&rows));
        return Ok(0);
    };
    if !args.layers && args.dir.is_none() {
        if let Ok(container) = crate::container::lookup(&store, image) {
            if args.driver == crate::mount::Driver::Overlay {
                anyhow::bail!("--driver overlay: container views are served by FUSE only");
            }
            outln!(
                "{}",
                crate::mount::mount_container(&store, &container)?.display()
            );
            return Ok(0);
        }
    }
    let options = MountOptions {
        driver: args.driver,
        layers: args.layers,
        container: None,
    };
    let mountpoint = crate::mount::mount_image(&store, image, args.dir.as_deref(), &options)?;
    outln!("{}", mountpoint.display());
    Ok(0)
}

pub fn run_umount(args: UmountArgs, ctx: &Context) -> anyhow::Result<i32> {
    let store = ctx.open_store()?;
    let mut failed = false;
    for target in &args.targets {
        match crate::mount::unmount(&store, target) {
            Ok(done) => {
                for m in done {
                    outln!("{}", m.display());
                }
            }
            Err(e) => {
                errln!("Error: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

pub fn run_daemon(args: DaemonArgs, ctx: &Context) -> anyhow::Result<i32> {
    let image = args.image.parse()?;
    crate::mount::run_daemon(
        &ctx.root,
        &image,
        &args.mountpoint,
        &MountOptions {
            driver: crate::mount::Driver::Fuse,
            layers: args.layers,
            container: args.container,
        },
    )?;
    Ok(0)
}

pub fn run_build_view(image: &str, ctx: &Context) -> anyhow::Result<i32> {
    let store = ctx.open_store()?;
    crate::mount::kernel::run_builder(&store, &image.parse()?)?;
    Ok(0)
}
