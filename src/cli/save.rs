//! `strata save [-o FILE] [--format docker-archive|oci-archive|oci-dir] IMAGE...`
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use super::{Context, ExitError};
use crate::archive::SaveFormat;

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Format {
    DockerArchive,
    OciArchive,
    OciDir,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Write to a file (a directory for oci-dir), instead of stdout
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Archive format
    #[arg(long, value_enum, default_value = "docker-archive")]
    pub format: Format,
    #[arg(required = true)]
    pub images: Vec<String>,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    let store = ctx.open_store()?;
    let format = match args.format {
        Format::DockerArchive => SaveFormat::DockerArchive,
        Format::OciArchive => SaveFormat::OciArchive,
        Format::OciDir => SaveFormat::OciDir,
    };
    // Resolve every name first, so a typo fails before anything is written.
    for name in &args.images {
        crate::image::resolve_image(&store, name)?;
    }
    if format == SaveFormat::OciDir {
        let dir = args.output.ok_or_else(|| ExitError {
            code: 1,
            message: "--format oci-dir needs -o DIR".into(),
        })?;
        crate::archive::save_images(&store, &args.images, format, None, Some(&dir))?;
        return Ok(0);
    }
    match args.output {
        // A device, FIFO or socket (`-o /dev/null`), or a symlink: written
        // in place, as Docker writes it. Only a regular file (or a new
        // one) is replaced atomically, through a partial file beside it.
        Some(path) if !replaced_whole(&path) => {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| ExitError {
                    code: 1,
                    message: format!("open {}: {e}", path.display()),
                })?;
            if file.metadata().is_ok_and(|m| m.is_file()) {
                file.set_len(0)?;
            }
            let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
            crate::archive::save_images(&store, &args.images, format, Some(&mut out), None)?;
            out.flush()?;
        }
        Some(path) => {
            let file_name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "archive".into());
            let tmp = path.with_file_name(format!(".{file_name}.strata-partial"));
            let result = (|| -> anyhow::Result<()> {
                let file = std::fs::File::create(&tmp).map_err(|e| ExitError {
                    code: 1,
                    message: format!("create {}: {e}", path.display()),
                })?;
                let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
                crate::archive::save_images(&store, &args.images, format, Some(&mut out), None)?;
                let file = out.into_inner().map_err(|e| e.into_error())?;
                file.sync_all()?;
                std::fs::rename(&tmp, &path)?;
                Ok(())
            })();
            if result.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            result?;
        }
        None => {
            let stdout = std::io::stdout();
            if stdout.is_terminal() {
                return Err(ExitError {
                    code: 1,
                    message: "cowardly refusing to save to a terminal. Use the -o flag or redirect"
                        .into(),
                }
                .into());
            }
            let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
            crate::archive::save_images(&store, &args.images, format, Some(&mut out), None)?;
            out.flush()?;
        }
    }
    Ok(0)
}

/// Whether `-o PATH` is written to a partial file and renamed over PATH:
/// when PATH does not exist or is a regular file (not a symlink).
fn replaced_whole(path: &std::path::Path) -> bool {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => meta.is_file(),
        Err(_) => true,
    }
}
