//! `strata run [OPTIONS] IMAGE [COMMAND] [ARG...]`
use super::create::ContainerFlags;
use super::{Context, ExitError};
use crate::container::{create_container, start_container, ContainerError, Exit};

#[derive(clap::Args, Debug)]
#[command(disable_help_flag = true)]
pub struct Args {
    /// Run container in background and print container ID
    #[arg(short, long)]
    pub detach: bool,
    #[command(flatten)]
    pub flags: ContainerFlags,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    let store = ctx.open_store()?;
    let options = args.flags.options().map_err(super::tool_failure)?;
    if args.detach && options.auto_remove && options.interactive && options.tty {
        // fine: Docker allows it; nothing to check
    }
    let container =
        create_container(&store, &options).map_err(|e| super::tool_failure(e.into()))?;
    let attached = !args.detach;
    let raw = if attached && options.tty {
        super::terminal::RawMode::enter()
    } else {
        None
    };
    let started = match start_container(&store, &container.id, attached) {
        Ok(s) => s,
        Err(ContainerError::Launch { code, message }) => {
            drop(raw);
            return Err(ExitError { code, message }.into());
        }
        Err(e) => return Err(super::tool_failure(e.into())),
    };
    if args.detach {
        println!("{}", container.id);
        return Ok(0);
    }
    let exit = started.relay_and_wait(&store, options.interactive, options.tty);
    drop(raw);
    match exit.map_err(|e| super::tool_failure(e.into()))? {
        Exit::Code(code) => Ok(code),
        Exit::Failed(code, message) => Err(ExitError { code, message }.into()),
        Exit::Detached => Ok(0),
    }
}
