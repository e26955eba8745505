//! `strata create [OPTIONS] IMAGE [COMMAND] [ARG...]`
use super::Context;
use crate::container::{create_container, CreateOptions, NetworkMode};

/// The flags `create` and `run` share.
#[derive(clap::Args, Debug, Clone)]
pub struct ContainerFlags {
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables (KEY=VALUE, or KEY to pass the caller's)
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<std::path::PathBuf>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short, long)]
    pub user: Option<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Bind mount a volume (SRC:DST[:ro], NAME:DST[:ro] or DST)
    #[arg(short, long = "volume", value_name = "VOLUME")]
    pub volume: Vec<String>,
    /// Connect a container to a network: host or none
    #[arg(long, default_value = "host")]
    pub network: String,
    /// Publish a container's port(s) to the host (not supported yet)
    #[arg(short, long = "publish")]
    pub publish: Vec<String>,
    /// Mount the container's root filesystem as read only
    #[arg(long)]
    pub read_only: bool,
    /// Run an init inside the container that forwards signals and reaps processes
    /// (the launcher itself stays as pid 1: nothing is needed from the image)
    #[arg(long)]
    pub init: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Keep STDIN open
    #[arg(short, long)]
    pub interactive: bool,
    /// Automatically remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    /// Give extended privileges to this container
    #[arg(long)]
    pub privileged: bool,
    /// Add Linux capabilities
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Security options (no-new-privileges)
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// Set meta data on a container
    #[arg(short, long = "label")]
    pub label: Vec<String>,
    /// Signal to stop the container
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long = "stop-timeout")]
    pub stop_timeout: Option<u32>,
    /// Print help
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// The image
    pub image: String,
    /// The command and its arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

impl ContainerFlags {
    pub fn options(&self) -> anyhow::Result<CreateOptions> {
        let network: NetworkMode = self
            .network
            .parse()
            .map_err(|e: String| anyhow::anyhow!(e))?;
        Ok(CreateOptions {
            image: self.image.clone(),
            name: self.name.clone(),
            cmd: self.command.clone(),
            entrypoint: self.entrypoint.clone(),
            env: self.env.clone(),
            env_files: self.env_file.clone(),
            working_dir: self.workdir.clone(),
            user: self.user.clone(),
            hostname: self.hostname.clone(),
            network,
            read_only: self.read_only,
            init: self.init,
            tty: self.tty,
            interactive: self.interactive,
            auto_remove: self.rm,
            privileged: self.privileged,
            cap_add: self.cap_add.clone(),
            cap_drop: self.cap_drop.clone(),
            security_opts: self.security_opt.clone(),
            volumes: self.volume.clone(),
            publish: self.publish.clone(),
            labels: self
                .label
                .iter()
                .map(|l| {
                    l.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .unwrap_or((l.clone(), String::new()))
                })
                .collect(),
            stop_signal: self.stop_signal.clone(),
            stop_timeout: self.stop_timeout,
        })
    }
}

#[derive(clap::Args, Debug)]
#[command(disable_help_flag = true)]
pub struct Args {
    #[command(flatten)]
    pub flags: ContainerFlags,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    let store = ctx.open_store()?;
    let options = args.flags.options().map_err(super::tool_failure)?;
    let container =
        create_container(&store, &options).map_err(|e| super::tool_failure(e.into()))?;
    outln!("{}", container.id);
    Ok(0)
}
