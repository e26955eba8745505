//! `strata kill [-s SIGNAL] CONTAINER...`
use super::{Context, ExitError};
use crate::container::{kill_container, parse_signal};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Signal to send to the container
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    let store = ctx.open_store()?;
    let signal = parse_signal(&args.signal)?;
    let mut failed = 0;
    for name in &args.containers {
        match kill_container(&store, name, signal) {
            Ok(_) => println!("{name}"),
            Err(e) => {
                eprintln!("Error response from daemon: {e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(ExitError {
            code: 1,
            message: String::new(),
        }
        .into());
    }
    Ok(0)
}
