//! `strata export [-o FILE] CONTAINER`
use std::io::Write;

use super::{Context, ExitError};
use crate::container::export_container;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    pub output: Option<std::path::PathBuf>,
    pub container: String,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    let store = ctx.open_store()?;
    match &args.output {
        Some(path) => {
            let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
            export_container(&store, &args.container, &mut file)?;
            file.flush()?;
        }
        None => {
            use std::io::IsTerminal;
            if std::io::stdout().is_terminal() {
                return Err(ExitError {
                    code: 1,
                    message: "cowardly refusing to save to a terminal. Use the -o flag or redirect"
                        .into(),
                }
                .into());
            }
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            export_container(&store, &args.container, &mut out)?;
            out.flush()?;
        }
    }
    Ok(0)
}
