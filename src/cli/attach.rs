//! `strata attach [--no-stdin] [--detach-keys KEYS] [--sig-proxy=BOOL]
//! CONTAINER`: the container's output from now on and, for a container
//! created with -i, this terminal's input to it, until it exits (its exit
//! status is returned) or the detach keys (ctrl-p ctrl-q by default)
//! detach from a container with a terminal.
use super::{Context, ExitError};
use crate::container::{attach_container, lookup, AttachEnd, AttachOptions, ContainerError};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Do not attach STDIN
    #[arg(long)]
    pub no_stdin: bool,
    /// Override the key sequence for detaching a container (e.g. ctrl-a,x; default: detachKeys in ~/.docker/config.json or $DOCKER_CONFIG/config.json, else ctrl-p,ctrl-q)
    #[arg(long, value_name = "KEYS")]
    pub detach_keys: Option<String>,
    /// Proxy all received signals to the process
    #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1, default_missing_value = "true", require_equals = true, action = clap::ArgAction::Set)]
    pub sig_proxy: bool,
    pub container: String,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    let detach_keys = super::detach_keys(args.detach_keys.as_deref())?;
    let store = ctx.open_store()?;
    let c = lookup(&store, &args.container)?;
    let raw = if c.spec.tty && !args.no_stdin {
        super::terminal::RawMode::enter()
    } else {
        None
    };
    let options = AttachOptions {
        stdin: !args.no_stdin,
        detach_keys,
        sig_proxy: args.sig_proxy,
    };
    let end = attach_container(&store, &c.id, &options);
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
