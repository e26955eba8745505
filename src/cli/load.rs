//! `strata load [-i FILE|DIR] [-q]`
use std::io::IsTerminal;
use std::path::PathBuf;

use super::{Context, ExitError};
use crate::image::Limits;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Read from a tar archive file or an OCI layout directory, instead of stdin
    #[arg(short, long)]
    pub input: Option<PathBuf>,
    /// Suppress the load output
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    let store = ctx.open_store()?;
    let limits = Limits::for_root(&ctx.root).map_err(|m| ExitError {
        code: 1,
        message: m,
    })?;
    let report = match &args.input {
        Some(path) if path.is_dir() => crate::archive::load_directory(&store, path, &limits)?,
        Some(path) => {
            let mut file = std::fs::File::open(path).map_err(|e| ExitError {
                code: 1,
                message: format!("open {}: {e}", path.display()),
            })?;
            crate::archive::load_archive(&store, &mut file, &limits)?
        }
        None => {
            let mut stdin = std::io::stdin();
            if stdin.is_terminal() {
                return Err(ExitError {
                    code: 1,
                    message: "requested load from stdin, but stdin is empty".into(),
                }
                .into());
            }
            crate::archive::load_archive(&store, &mut stdin, &limits)?
        }
    };
    if !args.quiet {
        for moved in &report.moved {
            outln!(
                "The image {} already exists, renaming the old one with ID {} to empty string",
                crate::reference::familiar(&moved.name),
                moved.from
            );
        }
    }
    for image in &report.images {
        if image.tags.is_empty() {
            outln!("Loaded image ID: {}", image.id);
        }
        for tag in &image.tags {
            outln!("Loaded image: {}", tag.familiar());
        }
    }
    Ok(0)
}
