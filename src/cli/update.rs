//! `strata update [OPTIONS] CONTAINER...`
use super::create::ResourceFlags;
use super::Context;
use crate::container::spec::RestartPolicy;
use crate::container::{update_container, UpdateOptions};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub resources: ResourceFlags,
    /// Restart policy to apply when a container exits (no, always,
    /// on-failure[:N], unless-stopped)
    #[arg(long)]
    pub restart: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    let resources = args.resources.resources().map_err(super::tool_failure)?;
    if resources.oom_kill_disable {
        // As Docker's update, which has no such flag.
        return Err(super::tool_failure(anyhow::anyhow!(
            "unknown flag: --oom-kill-disable"
        )));
    }
    if !resources.any() && args.restart.is_none() {
        return Err(super::tool_failure(anyhow::anyhow!(
            "you must provide one or more flags when using this command"
        )));
    }
    let restart = args
        .restart
        .as_deref()
        .map(str::parse::<RestartPolicy>)
        .transpose()
        // Docker's client refuses it with exit 1 (not a flag error).
        .map_err(|message| super::ExitError { code: 1, message })?;
    let options = UpdateOptions { resources, restart };
    let store = ctx.open_store()?;
    super::for_each_name(&args.containers, |name| {
        update_container(&store, name, &options).map(|_| name.to_string())
    })
}
