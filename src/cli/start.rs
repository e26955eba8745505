//! `strata start [-a] [-i] [--detach-keys KEYS] [--sig-proxy=BOOL] CONTAINER...`
use super::{Context, ExitError};
use crate::container::{lookup, start_container, AttachOptions, ContainerError, Exit};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Attach STDOUT/STDERR and forward signals (the detach keys detach from a terminal)
    #[arg(short, long)]
    pub attach: bool,
    /// Attach container's STDIN
    #[arg(short, long)]
    pub interactive: bool,
    /// Override the key sequence for detaching a container (e.g. ctrl-a,x; default: detachKeys in ~/.docker/config.json or $DOCKER_CONFIG/config.json, else ctrl-p,ctrl-q)
    #[arg(long, value_name = "KEYS")]
    pub detach_keys: Option<String>,
    /// Proxy received signals to the process (attached, without a terminal)
    #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1, default_missing_value = "true", require_equals = true, action = clap::ArgAction::Set)]
    pub sig_proxy: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    let detach_keys = super::detach_keys(args.detach_keys.as_deref())?;
    let mut store = ctx.open_store()?;
    let attach = args.attach || args.interactive;
    if attach && args.containers.len() > 1 {
        return Err(ExitError {
            code: 1,
            message: "you cannot start and attach multiple containers at once".into(),
        }
        .into());
    }
    let mut failed = 0;
    for name in &args.containers {
        let tty = lookup(&store, name).map(|c| c.spec.tty).unwrap_or(false);
        let raw = if attach && tty {
            super::terminal::RawMode::enter()
        } else {
            None
        };
        match start_container(&mut store, name, attach) {
            Ok(started) if attach => {
                let client = AttachOptions {
                    stdin: args.interactive,
                    detach_keys: detach_keys.clone(),
                    sig_proxy: args.sig_proxy,
                };
                let exit = started.relay_and_wait(&store, tty, &client);
                drop(raw);
                return match exit? {
                    Exit::Code(code) => Ok(code),
                    Exit::Failed(code, message) => Err(ExitError { code, message }.into()),
                    Exit::Detached => Ok(0),
                };
            }
            Ok(_) => outln!("{name}"),
            Err(ContainerError::BadState { .. }) if !attach => outln!("{name}"),
            Err(e) => {
                drop(raw);
                errln!("Error response from daemon: {e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(ExitError {
            code: 1,
            message: "failed to start containers".into(),
        }
        .into());
    }
    Ok(0)
}
