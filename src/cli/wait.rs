//! `strata wait CONTAINER...`: prints each container's exit code.
use super::{Context, ExitError};
use crate::container::wait_container;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    let store = ctx.open_store()?;
    let mut failed = 0;
    for name in &args.containers {
        match wait_container(&store, name) {
            Ok(code) => println!("{code}"),
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
