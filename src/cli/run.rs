//! `strata run [OPTIONS] IMAGE [COMMAND] [ARG...]`
use super::create::ContainerFlags;
use super::{Context, ExitError};
use crate::container::{create_container, start_container, AttachOptions, ContainerError, Exit};

#[derive(clap::Args, Debug)]
#[command(disable_help_flag = true)]
pub struct Args {
    /// Run container in background and print container ID
    #[arg(short, long)]
    pub detach: bool,
    /// Override the key sequence for detaching a container (e.g. ctrl-a,x; default: detachKeys in ~/.docker/config.json or $DOCKER_CONFIG/config.json, else ctrl-p,ctrl-q)
    #[arg(long, value_name = "KEYS")]
    pub detach_keys: Option<String>,
    /// Proxy received signals to the process
    #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1, default_missing_value = "true", require_equals = true, action = clap::ArgAction::Set)]
    pub sig_proxy: bool,
    #[command(flatten)]
    pub flags: ContainerFlags,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    let detach_keys = super::detach_keys(args.detach_keys.as_deref())?;
    let mut store = ctx.open_store()?;
    let options = args.flags.options(&store).map_err(super::tool_failure)?;
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
    let started = match start_container(&mut store, &container.id, attached) {
        Ok(s) => s,
        Err(ContainerError::Launch { code, message }) => {
            drop(raw);
            return Err(ExitError { code, message }.into());
        }
        Err(e) => return Err(super::tool_failure(e.into())),
    };
    if args.detach {
        outln!("{}", container.id);
        return Ok(0);
    }
    let client = AttachOptions {
        stdin: options.interactive,
        detach_keys,
        sig_proxy: args.sig_proxy,
    };
    let exit = started.relay_and_wait(&store, options.tty, &client);
    drop(raw);
    match exit.map_err(|e| super::tool_failure(e.into()))? {
        Exit::Code(code) => Ok(code),
        Exit::Failed(code, message) => Err(ExitError { code, message }.into()),
        Exit::Detached => Ok(0),
    }
}
