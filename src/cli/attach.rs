//! `strata attach [--no-stdin] CONTAINER`: the container's output from
//! now on and, for a container created with -i, this terminal's input to
//! it, until it exits (its exit status is returned) or ctrl-p ctrl-q
//! detaches from a container with a terminal.
use super::{Context, ExitError};
use crate::container::{attach_container, lookup, AttachEnd, ContainerError};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Do not attach STDIN
    #[arg(long)]
    pub no_stdin: bool,
    pub container: String,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    let store = ctx.open_store()?;
    let c = lookup(&store, &args.container)?;
    let raw = if c.spec.tty && !args.no_stdin {
        super::terminal::RawMode::enter()
    } else {
        None
    };
    let end = attach_container(&store, &c.id, args.no_stdin);
    drop(raw);
    match end {
        Ok(AttachEnd::Exited(code)) => Ok(code),
        Ok(AttachEnd::Detached) => Ok(0),
        Err(ContainerError::BadState { .. }) => Err(ExitError {
            code: 1,
            message: "You cannot attach to a stopped container, start it first".into(),
        }
        .into()),
        Err(e) => Err(e.into()),
    }
}
