//! `strata import FILE|- [REPOSITORY[:TAG]] [-c CHANGE]... [-m MESSAGE]`
use std::path::Path;

use super::{Context, ExitError};
use crate::archive::ImportOptions;
use crate::image::Limits;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Apply a Dockerfile instruction to the image config (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR)
    #[arg(short, long = "change", value_name = "CHANGE")]
    pub changes: Vec<String>,
    /// Set the commit message for the imported image
    #[arg(short, long)]
    pub message: Option<String>,
    /// Set the platform (os/arch) of the image
    #[arg(long)]
    pub platform: Option<String>,
    /// A tarball (tar, tar.gz, tar.zst), or - for stdin
    pub file: String,
    /// Name for the image
    pub reference: Option<String>,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    if args.file.starts_with("http://") || args.file.starts_with("https://") {
        return Err(ExitError {
            code: 1,
            message: format!(
                "importing from a URL is not supported: {}; download it and import the file",
                args.file
            ),
        }
        .into());
    }
    let platform = match &args.platform {
        Some(p) => {
            let (os, arch) = p.split_once('/').ok_or_else(|| ExitError {
                code: 1,
                message: format!("invalid platform {p:?}: expected os/arch"),
            })?;
            Some((os.to_string(), arch.to_string()))
        }
        None => None,
    };
    let store = ctx.open_store()?;
    let limits = Limits::for_root(&ctx.root).map_err(|m| ExitError {
        code: 1,
        message: m,
    })?;
    let options = ImportOptions {
        reference: args.reference.clone(),
        changes: args.changes.clone(),
        message: args.message.clone(),
        source: args.file.clone(),
        platform,
    };
    let id = if args.file == "-" {
        crate::archive::import_rootfs(&store, &mut std::io::stdin().lock(), &options, &limits)?
    } else {
        let path = Path::new(&args.file);
        let mut file = std::fs::File::open(path).map_err(|e| ExitError {
            code: 1,
            message: format!("open {}: {e}", path.display()),
        })?;
        crate::archive::import_rootfs(&store, &mut file, &options, &limits)?
    };
    outln!("{id}");
    Ok(0)
}
