//! `strata rm [-f] [-v] CONTAINER...`
use super::{Context, ExitError};
use crate::container::remove_container;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short, long)]
    pub force: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short, long)]
    pub volumes: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    let store = ctx.open_store()?;
    let mut failed = 0;
    for name in &args.containers {
        match remove_container(&store, name, args.force, args.volumes) {
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
