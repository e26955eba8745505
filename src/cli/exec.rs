//! `strata exec [-d] [-i] [-t] [--detach-keys KEYS] [-e K=V] [-w DIR] [-u USER] CONTAINER COMMAND [ARG...]`
use super::{Context, ExitError};
use crate::container::{exec_in_container, ContainerError, ExecOptions};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Detached mode: run command in the background
    #[arg(short, long)]
    pub detach: bool,
    /// Keep STDIN open
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Override the key sequence for detaching a container (e.g. ctrl-a,x; default: detachKeys in ~/.docker/config.json or $DOCKER_CONFIG/config.json, else ctrl-p,ctrl-q)
    #[arg(long, value_name = "KEYS")]
    pub detach_keys: Option<String>,
    /// Set environment variables
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short, long)]
    pub user: Option<String>,
    /// Give extended privileges to the command
    #[arg(long)]
    pub privileged: bool,
    pub container: String,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    let detach_keys = super::detach_keys(args.detach_keys.as_deref())?;
    let store = ctx.open_store()?;
    let options = ExecOptions {
        cmd: args.command,
        detach: args.detach,
        interactive: args.interactive,
        tty: args.tty,
        env: args.env,
        working_dir: args.workdir,
        user: args.user,
        privileged: args.privileged,
        detach_keys,
        ..Default::default()
    };
    let raw = if args.tty && !args.detach {
        super::terminal::RawMode::enter()
    } else {
        None
    };
    let result = exec_in_container(&store, &args.container, &options);
    drop(raw);
    match result {
        Ok(code) => Ok(code),
        Err(ContainerError::Launch { code, message }) => Err(ExitError { code, message }.into()),
        Err(e @ ContainerError::ExecPaused(_)) => Err(super::DaemonError(e.to_string()).into()),
        Err(e) => Err(e.into()),
    }
}
