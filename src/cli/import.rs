//! `strata import FILE|URL|- [REPOSITORY[:TAG]] [-c CHANGE]... [-m MESSAGE]`
use std::io::IsTerminal;
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
    /// A tarball (tar, tar.gz, tar.zst): a file, an http:// or https:// URL, or - for stdin
    pub file: String,
    /// Name for the image
    pub reference: Option<String>,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
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
    let id = if crate::archive::is_url(&args.file) {
        let client =
            super::registry_args::RegistryArgs { tls_verify: true }.client_options(&ctx.root)?;
        let download = crate::archive::open_url(&args.file, &client)?;
        // On a terminal, a bar of the download (the import reads as it
        // arrives); elsewhere only the ID, as Docker prints.
        let bar = if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(download.length.unwrap_or(0));
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "Importing [{bar:40}] {bytes}/{total_bytes}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        let mut reader = bar.wrap_read(download.response);
        let id = crate::archive::import_rootfs(&store, &mut reader, &options, &limits);
        bar.finish_and_clear();
        id?
    } else if args.file == "-" {
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
