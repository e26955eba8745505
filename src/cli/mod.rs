//! Argument parsing (clap derive) and output. Each command lives in its
//! own file, parses its flags, makes one library call and prints the
//! result the way Docker does.

/// `println!`/`print!` for commands: output to a closed pipe ends the
/// process quietly, as it ends Docker's client (see
/// [`streams::write_stdout`]), instead of panicking.
macro_rules! outln {
    () => {
        $crate::cli::streams::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::streams::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::streams::write_stdout(format_args!($($arg)*))
    };
}
/// `eprintln!`/`eprint!` likewise for stderr.
macro_rules! errln {
    () => {
        $crate::cli::streams::write_stderr(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::streams::write_stderr(format_args!("{}\n", format_args!($($arg)*)))
    };
}
macro_rules! errout {
    ($($arg:tt)*) => {
        $crate::cli::streams::write_stderr(format_args!($($arg)*))
    };
}

pub mod output;
pub mod streams;

mod build;
mod fsck;
mod history;
mod images;
mod import;
mod inspect;
mod load;
mod mount;
mod prune;
mod rmi;
mod save;
mod system;
mod tag;
// Registry commands (issue 4).
mod login;
mod logout;
mod pull;
mod push;
mod registry_args;
mod search;

// Containers (issue 5).
mod attach;
mod commit;
mod cp;
mod create;
mod diff;
mod exec;
mod export;
mod kill;
mod logs;
mod network;
mod pause;
mod port;
mod ps;
mod rename;
mod rm;
mod run;
mod start;
mod stats;
mod stop;
mod terminal;
mod top;
mod update;
mod volume;
mod wait;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::store::Store;

/// strata: container images as directories, one store for everything.
#[derive(Parser, Debug)]
#[command(
    name = "strata",
    version,
    about,
    propagate_version = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    /// Store root (default /var/lib/strata for root, $XDG_DATA_HOME/strata otherwise)
    #[arg(long, global = true, env = "STRATA_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Log level: error, warn, info, debug, trace
    #[arg(long, global = true, default_value = "warn", value_name = "LEVEL")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List images
    #[command(alias = "image-ls")]
    Images(images::Args),
    /// Manage images
    #[command(subcommand)]
    Image(ImageCommand),
    /// Load images from a tar archive or an OCI layout (stdin by default)
    Load(load::Args),
    /// Save images to a docker-archive, an OCI archive or an OCI directory
    Save(save::Args),
    /// Create a one-layer image from a root filesystem tarball
    Import(import::Args),
    /// Build an image from a Dockerfile
    Build(build::Args),
    /// Manage builds (build, prune the build cache)
    #[command(subcommand)]
    Builder(build::BuilderCommand),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(tag::Args),
    /// Remove one or more images
    Rmi(rmi::Args),
    /// Show the history of an image
    History(history::Args),
    /// Return low-level information on images (a JSON array)
    Inspect(inspect::Args),
    /// Verify every object in the store against its digest
    Fsck(fsck::Args),
    /// Remove layers, files and blobs nothing references, and stale staging
    Gc,
    /// Download an image from a registry
    Pull(pull::Args),
    /// Upload an image to a registry
    Push(push::Args),
    /// Log in to a registry
    Login(login::Args),
    /// Log out from a registry
    Logout(logout::Args),
    /// Search a registry for images
    Search(search::Args),
    /// Manage strata's store
    #[command(subcommand)]
    System(SystemCommand),
    /// Create and run a new container from an image
    Run(run::Args),
    /// Create a new container
    Create(create::Args),
    /// Start one or more stopped containers
    Start(start::Args),
    /// Stop one or more running containers
    Stop(stop::Args),
    /// Restart one or more containers
    Restart(stop::Args),
    /// Kill one or more running containers
    Kill(kill::Args),
    /// Remove one or more containers
    Rm(rm::Args),
    /// Pause all processes within one or more containers
    Pause(pause::Args),
    /// Unpause all processes within one or more containers
    Unpause(pause::Args),
    /// Block until one or more containers stop, then print their exit codes
    Wait(wait::Args),
    /// Rename a container
    Rename(rename::Args),
    /// Update configuration (resource limits, restart policy) of one or more containers
    Update(update::Args),
    /// List containers
    Ps(ps::Args),
    /// Fetch the logs of a container
    Logs(logs::Args),
    /// Display the running processes of a container
    Top(top::Args),
    /// Execute a command in a running container
    Exec(exec::Args),
    /// Attach local standard input, output, and error streams to a running container
    Attach(attach::Args),
    /// Display a live stream of container(s) resource usage statistics
    Stats(stats::Args),
    /// Copy files/folders between a container and the local filesystem
    Cp(cp::Args),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(diff::Args),
    /// Create a new image from a container's changes
    Commit(commit::Args),
    /// Export a container's filesystem as a tar archive
    Export(export::Args),
    /// Manage volumes
    #[command(subcommand)]
    Volume(volume::VolumeCommand),
    /// Manage networks
    #[command(subcommand)]
    Network(network::NetworkCommand),
    /// List port mappings or a specific mapping for the container
    Port(port::Args),
    /// (internal) A container's monitor process
    #[command(name = "__monitor", hide = true)]
    Monitor {
        #[arg(long)]
        attached: bool,
        #[arg(long)]
        detached: bool,
        id: String,
    },
    /// Mount an image as a read-only directory (without arguments: list mounts)
    Mount(mount::Args),
    /// Unmount image mounts and stop their daemons
    #[command(alias = "unmount")]
    Umount(mount::UmountArgs),
    /// Internal: the daemon behind `strata mount`
    #[command(name = "__mount-daemon", hide = true)]
    MountDaemon(mount::DaemonArgs),
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// List images
    #[command(alias = "list")]
    Ls(images::Args),
    /// Remove one or more images
    #[command(alias = "remove")]
    Rm(rmi::Args),
    /// Remove unused images
    Prune(prune::ImageArgs),
    /// Show the history of an image
    History(history::Args),
    /// Display detailed information on one or more images
    Inspect(inspect::Args),
    /// Load images from an archive
    Load(load::Args),
    /// Save images to an archive
    Save(save::Args),
    /// Import a root filesystem tarball as an image
    Import(import::Args),
    /// Build an image from a Dockerfile
    Build(build::Args),
    /// Tag an image
    Tag(tag::Args),
    /// Download an image from a registry
    Pull(pull::Args),
    /// Upload an image to a registry
    Push(push::Args),
}

#[derive(Subcommand, Debug)]
pub enum SystemCommand {
    /// Show disk usage, and the bytes saved by deduplication
    Df(system::DfArgs),
    /// Remove unused data: stopped containers, dangling (or all unused) images, unreferenced objects
    Prune(prune::SystemArgs),
}

/// What every command gets: where the store is.
pub struct Context {
    pub root: PathBuf,
}

impl Context {
    pub fn open_store(&self) -> anyhow::Result<Store> {
        Ok(Store::open(&self.root)?)
    }
}

/// The default store root.
pub fn default_root() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/strata");
    }
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("strata");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/strata")
}

/// A failure with the exit status it should give (Docker: 125 when the
/// tool itself failed, 1 for ordinary command errors).
#[derive(Debug)]
pub struct ExitError {
    pub code: i32,
    pub message: String,
}

impl std::fmt::Display for ExitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}
impl std::error::Error for ExitError {}

/// Runs `op` for each name as Docker's multi-object commands do: prints
/// what `op` returns for each success, one `Error response from daemon:`
/// line for each failure, and fails (exit 1) if any failed.
pub fn for_each_name<T: std::fmt::Display, E: std::fmt::Display>(
    names: &[String],
    mut op: impl FnMut(&str) -> Result<T, E>,
) -> anyhow::Result<i32> {
    let mut failed = 0;
    for name in names {
        match op(name) {
            Ok(shown) => outln!("{shown}"),
            Err(e) => {
                errln!("Error response from daemon: {e}");
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

/// Parses the command line, runs the command, prints any error as one line
/// on stderr, and returns the exit status.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => 125,
            };
            streams::end_if_broken_pipe(e.print());
            return code;
        }
    };
    init_logging(&cli.log_level);
    let ctx = Context {
        root: cli.root.clone().unwrap_or_else(default_root),
    };
    match run(cli.command, &ctx) {
        Ok(code) => code,
        Err(e) => {
            streams::end_if_output_closed(&e);
            if let Some(exit) = e.downcast_ref::<ExitError>() {
                if !exit.message.is_empty() {
                    errln!("Error: {}", exit.message);
                }
                return exit.code;
            }
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            let mut line = chain.first().cloned().unwrap_or_default();
            for cause in chain.iter().skip(1) {
                if !line.contains(cause.as_str()) {
                    line.push_str(": ");
                    line.push_str(cause);
                }
            }
            errln!("Error: {}", line.replace('\n', " "));
            1
        }
    }
}

/// Logs go to stderr. fuser's own warning when it finds a mount already
/// detached by strata-fs (every unmount) is noise, so fuser logs errors only.
fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(format!(
        "{level},fuser=error,netlink_packet_route=error"
    ))
    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .with_target(false)
        .try_init();
}

fn run(command: Command, ctx: &Context) -> anyhow::Result<i32> {
    match command {
        Command::Images(a) | Command::Image(ImageCommand::Ls(a)) => images::run(a, ctx),
        Command::Load(a) | Command::Image(ImageCommand::Load(a)) => load::run(a, ctx),
        Command::Save(a) | Command::Image(ImageCommand::Save(a)) => save::run(a, ctx),
        Command::Import(a) | Command::Image(ImageCommand::Import(a)) => import::run(a, ctx),
        Command::Build(a) | Command::Image(ImageCommand::Build(a)) => build::run(a, ctx),
        Command::Builder(c) => build::run_builder(c, ctx),
        Command::Tag(a) | Command::Image(ImageCommand::Tag(a)) => tag::run(a, ctx),
        Command::Rmi(a) | Command::Image(ImageCommand::Rm(a)) => rmi::run(a, ctx),
        Command::History(a) | Command::Image(ImageCommand::History(a)) => history::run(a, ctx),
        Command::Inspect(a) | Command::Image(ImageCommand::Inspect(a)) => inspect::run(a, ctx),
        Command::Image(ImageCommand::Prune(a)) => prune::run_image(a, ctx),
        Command::Fsck(a) => fsck::run(a, ctx),
        Command::Gc => fsck::run_gc(ctx),
        Command::Pull(a) | Command::Image(ImageCommand::Pull(a)) => pull::run(a, ctx),
        Command::Push(a) | Command::Image(ImageCommand::Push(a)) => push::run(a, ctx),
        Command::Login(a) => login::run(a, ctx),
        Command::Logout(a) => logout::run(a, ctx),
        Command::Search(a) => search::run(a, ctx),
        Command::System(SystemCommand::Df(a)) => system::run_df(a, ctx),
        Command::System(SystemCommand::Prune(a)) => prune::run_system(a, ctx),
        Command::Run(a) => run::run(a, ctx),
        Command::Create(a) => create::run(a, ctx),
        Command::Start(a) => start::run(a, ctx),
        Command::Stop(a) => stop::run(a, ctx),
        Command::Restart(a) => stop::run_restart(a, ctx),
        Command::Kill(a) => kill::run(a, ctx),
        Command::Rm(a) => rm::run(a, ctx),
        Command::Pause(a) => pause::run(a, ctx, true),
        Command::Unpause(a) => pause::run(a, ctx, false),
        Command::Wait(a) => wait::run(a, ctx),
        Command::Rename(a) => rename::run(a, ctx),
        Command::Update(a) => update::run(a, ctx),
        Command::Ps(a) => ps::run(a, ctx),
        Command::Logs(a) => logs::run(a, ctx),
        Command::Top(a) => top::run(a, ctx),
        Command::Volume(c) => volume::run(c, ctx),
        Command::Network(c) => network::run(c, ctx),
        Command::Port(a) => port::run(a, ctx),
        Command::Exec(a) => exec::run(a, ctx),
        Command::Attach(a) => attach::run(a, ctx),
        Command::Stats(a) => stats::run(a, ctx),
        Command::Cp(a) => cp::run(a, ctx),
        Command::Diff(a) => diff::run(a, ctx),
        Command::Commit(a) => commit::run(a, ctx),
        Command::Export(a) => export::run(a, ctx),
        Command::Monitor { attached, id, .. } => {
            crate::container::monitor_main(&ctx.root, &id, attached)
        }
        Command::Mount(a) => mount::run(a, ctx),
        Command::Umount(a) => mount::run_umount(a, ctx),
        Command::MountDaemon(a) => mount::run_daemon(a, ctx),
    }
}

/// An error of strata itself rather than of the container: Docker's 125.
pub fn tool_failure(e: anyhow::Error) -> anyhow::Error {
    streams::end_if_output_closed(&e);
    let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    ExitError {
        code: 125,
        message: chain.join(": "),
    }
    .into()
}

/// The detach keys as bytes, as Docker's client chooses them: the
/// `--detach-keys` flag, else `detachKeys` in the client config
/// (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`, the file
/// `login` writes), else ctrl-p ctrl-q. An invalid spec, from either, is
/// a usage error (exit 125); a config file that cannot be read is only
/// warned about, as Docker does.
pub fn detach_keys(flag: Option<&str>) -> anyhow::Result<Vec<u8>> {
    let spec = match flag.filter(|f| !f.is_empty()) {
        Some(flag) => flag.to_string(),
        None => {
            let path = crate::registry::credentials::default_config_path();
            crate::registry::credentials::configured_detach_keys(&path)
                .unwrap_or_else(|e| {
                    errln!("WARNING: Error loading config file: {e}");
                    None
                })
                .unwrap_or_default()
        }
    };
    crate::container::parse_detach_keys(&spec).map_err(|e| {
        let message = match e {
            crate::container::ContainerError::Invalid(m) => m,
            other => other.to_string(),
        };
        ExitError { code: 125, message }.into()
    })
}
