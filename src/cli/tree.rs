//! The command tree, as Docker's client lays it out: every verb at the
//! top level (`strata run`) and in its management group (`strata
//! container run`), the groups' own verbs (`container ls`, `image
//! prune`, `system info`), and the commands of strata's own (`mount`,
//! `fsck`, `gc`).
//!
//! A verb shared by the top level and a group is declared once, on one
//! line of a [`verbs!`] list: its help text, its argument type and the
//! function that runs it. The list makes the clap enum and its dispatch.

use clap::{Parser, Subcommand};

use super::*;

/// Declares a list of verbs: a clap subcommand enum and its `run`.
macro_rules! verbs {
    (
        $(#[$enum_meta:meta])*
        pub enum $name:ident {
            $( $(#[$meta:meta])* $verb:ident($args:ty) => $handler:expr, )*
        }
    ) => {
        $(#[$enum_meta])*
        // Made once per process, from the command line: its size does
        // not matter, boxing the arguments would only add noise.
        #[allow(clippy::large_enum_variant)]
        #[derive(Subcommand, Debug)]
        #[command(defer = true)] // see `Command`
        pub enum $name {
            $( $(#[$meta])* $verb($args), )*
        }

        impl $name {
            pub fn run(self, ctx: &Context) -> anyhow::Result<i32> {
                match self {
                    $( $name::$verb(a) => ($handler)(a, ctx), )*
                }
            }
        }
    };
}

verbs! {
    /// Container verbs: `strata VERB` and `strata container VERB`.
    pub enum ContainerVerb {
        /// Create and run a new container from an image
        Run(run::Args) => run::run,
        /// Create a new container
        Create(create::Args) => create::run,
        /// Start one or more stopped containers
        Start(start::Args) => start::run,
        /// Stop one or more running containers
        Stop(stop::Args) => stop::run,
        /// Restart one or more containers
        Restart(stop::Args) => stop::run_restart,
        /// Kill one or more running containers
        Kill(kill::Args) => kill::run,
        /// Remove one or more containers
        Rm(rm::Args) => rm::run,
        /// Pause all processes within one or more containers
        Pause(pause::Args) => |a, ctx| pause::run(a, ctx, true),
        /// Unpause all processes within one or more containers
        Unpause(pause::Args) => |a, ctx| pause::run(a, ctx, false),
        /// Block until one or more containers stop, then print their exit codes
        Wait(wait::Args) => wait::run,
        /// Rename a container
        Rename(rename::Args) => rename::run,
        /// Fetch the logs of a container
        Logs(logs::Args) => logs::run,
        /// Display the running processes of a container
        Top(top::Args) => top::run,
        /// Execute a command in a running container
        Exec(exec::Args) => exec::run,
        /// Attach local standard input, output, and error streams to a running container
        Attach(attach::Args) => attach::run,
        /// Display a live stream of container(s) resource usage statistics
        Stats(stats::Args) => stats::run,
        /// Copy files/folders between a container and the local filesystem
        Cp(cp::Args) => cp::run,
        /// Inspect changes to files or directories on a container's filesystem
        Diff(diff::Args) => diff::run,
        /// Create a new image from a container's changes
        Commit(commit::Args) => commit::run,
        /// Export a container's filesystem as a tar archive
        Export(export::Args) => export::run,
        /// List port mappings or a specific mapping for the container
        Port(port::Args) => port::run,
        /// Update configuration (resource limits, restart policy) of one or more containers
        Update(update::Args) => update::run,
    }
}

verbs! {
    /// `strata container ...`: the container verbs and the group's own.
    pub enum ContainerCommand {
        /// List containers
        #[command(alias = "list", alias = "ps")]
        Ls(ps::Args) => ps::run,
        /// Display detailed information on one or more containers
        Inspect(inspect::KindArgs) => inspect::run_containers,
        /// Remove all stopped containers
        Prune(prune::ContainerArgs) => prune::run_containers,
        #[command(flatten)]
        Verb(ContainerVerb) => ContainerVerb::run,
    }
}

verbs! {
    /// Image verbs: `strata VERB` and `strata image VERB`.
    pub enum ImageVerb {
        /// Build an image from a Dockerfile
        Build(build::Args) => build::run,
        /// Show the history of an image
        History(history::Args) => history::run,
        /// Create a one-layer image from a root filesystem tarball (a file, a URL or -)
        Import(import::Args) => import::run,
        /// Load images from a tar archive or an OCI layout (stdin by default)
        Load(load::Args) => load::run,
        /// Download an image from a registry
        Pull(pull::Args) => pull::run,
        /// Upload an image to a registry
        Push(push::Args) => push::run,
        /// Save images to a docker-archive, an OCI archive or an OCI directory
        Save(save::Args) => save::run,
        /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
        Tag(tag::Args) => tag::run,
    }
}

verbs! {
    /// `strata image ...`: the image verbs and the group's own.
    pub enum ImageCommand {
        /// List images
        #[command(alias = "list", alias = "images")]
        Ls(images::Args) => images::run,
        /// Remove one or more images
        #[command(alias = "remove", alias = "rmi")]
        Rm(rmi::Args) => rmi::run,
        /// Display detailed information on one or more images
        Inspect(inspect::KindArgs) => inspect::run_images,
        /// Remove unused images
        Prune(prune::ImageArgs) => prune::run_image,
        #[command(flatten)]
        Verb(ImageVerb) => ImageVerb::run,
    }
}

verbs! {
    /// `strata system ...`
    pub enum SystemCommand {
        /// Show disk usage, and the bytes saved by deduplication
        Df(system::DfArgs) => system::run_df,
        /// Display system-wide information
        Info(system::InfoArgs) => system::run_info,
        /// Remove unused data: stopped containers, dangling (or all unused) images, unreferenced objects
        Prune(prune::SystemArgs) => prune::run_system,
        /// Get real time events from the store's event log (the last 10,000 are kept)
        Events(events::Args) => events::run,
        /// Start the containers whose restart policy says so after a reboot
        /// (always, unless-stopped unless stopped by the user, on-failure after a failure)
        Boot(system::BootArgs) => system::run_boot,
        /// Wait until every image pulled, loaded, built or committed so far
        /// is on disk (they are flushed in the background otherwise)
        Sync(system::SyncArgs) => system::run_sync,
    }
}

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
    pub root: Option<std::path::PathBuf>,
    /// Log level: error, warn, info, debug, trace
    #[arg(long, global = true, default_value = "warn", value_name = "LEVEL")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

/// Every subcommand enum is `defer`red: clap builds a subcommand's
/// arguments only when that subcommand is parsed (or its help shown), not
/// the whole tree at every start (~1.5 ms of each command's start). A
/// flattened `Args` struct must not have a doc comment: built late, it
/// would replace the about of the commands that flatten it (the test
/// below checks).
#[derive(Subcommand, Debug)]
#[command(defer = true)]
pub enum Command {
    /// Manage containers
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Manage images
    #[command(subcommand)]
    Image(ImageCommand),
    /// Manage strata's store and show what it holds
    #[command(subcommand)]
    System(SystemCommand),
    /// Manage volumes
    #[command(subcommand)]
    Volume(volume::VolumeCommand),
    /// Manage networks
    #[command(subcommand)]
    Network(network::NetworkCommand),
    /// Manage builds (build, prune the build cache)
    #[command(subcommand)]
    Builder(build::BuilderCommand),
    #[command(flatten)]
    ContainerVerbs(ContainerVerb),
    /// List containers
    Ps(ps::Args),
    #[command(flatten)]
    ImageVerbs(ImageVerb),
    /// List images
    #[command(alias = "image-ls")]
    Images(images::Args),
    /// Remove one or more images
    Rmi(rmi::Args),
    /// Return low-level information on containers and images (a JSON array)
    Inspect(inspect::Args),
    /// Display system-wide information
    Info(system::InfoArgs),
    /// Show the strata version information
    Version(system::VersionArgs),
    /// Get real time events from the store's event log (the last 10,000 are kept)
    Events(events::Args),
    /// Log in to a registry
    Login(login::Args),
    /// Log out from a registry
    Logout(logout::Args),
    /// Search a registry for images
    Search(search::Args),
    /// Verify every object in the store against its digest
    Fsck(fsck::Args),
    /// Remove layers, files and blobs nothing references, and stale staging
    Gc,
    /// Mount an image as a read-only directory (without arguments: list mounts)
    Mount(mount::Args),
    /// Unmount image mounts and stop their daemons
    #[command(alias = "unmount")]
    Umount(mount::UmountArgs),
    /// (internal) A container's monitor process
    #[command(name = "__monitor", hide = true)]
    Monitor {
        #[arg(long)]
        attached: bool,
        #[arg(long)]
        detached: bool,
        id: String,
    },
    /// Internal: the daemon behind `strata mount`
    #[command(name = "__mount-daemon", hide = true)]
    MountDaemon(mount::DaemonArgs),
    /// Internal: builds an image's view for kernel mounts (docs/fs.md)
    #[command(name = "__build-view", hide = true)]
    BuildView { image: String },
    /// Serve the store to containerd as a snapshotter (a long-running service)
    Snapshotter(snapshotter::Args),
    /// Internal: the daemon behind a containerd snapshot's mount
    #[command(name = "__snapshot-mount", hide = true)]
    SnapshotMount(snapshotter::MountArgs),
    /// Internal: flushes the store behind an ingest (docs/store.md)
    #[command(name = "__flush", hide = true)]
    Flush { batch: i64 },
}

impl Command {
    pub fn run(self, ctx: &Context) -> anyhow::Result<i32> {
        match self {
            Command::Container(c) => c.run(ctx),
            Command::Image(c) => c.run(ctx),
            Command::System(c) => c.run(ctx),
            Command::Volume(c) => volume::run(c, ctx),
            Command::Network(c) => network::run(c, ctx),
            Command::Builder(c) => build::run_builder(c, ctx),
            Command::ContainerVerbs(v) => v.run(ctx),
            Command::Ps(a) => ps::run(a, ctx),
            Command::ImageVerbs(v) => v.run(ctx),
            Command::Images(a) => images::run(a, ctx),
            Command::Rmi(a) => rmi::run(a, ctx),
            Command::Inspect(a) => inspect::run(a, ctx),
            Command::Info(a) => system::run_info(a, ctx),
            Command::Version(a) => system::run_version(a, ctx),
            Command::Events(a) => events::run(a, ctx),
            Command::Login(a) => login::run(a, ctx),
            Command::Logout(a) => logout::run(a, ctx),
            Command::Search(a) => search::run(a, ctx),
            Command::Fsck(a) => fsck::run(a, ctx),
            Command::Gc => fsck::run_gc(ctx),
            Command::Mount(a) => mount::run(a, ctx),
            Command::Umount(a) => mount::run_umount(a, ctx),
            Command::Monitor { attached, id, .. } => {
                crate::container::monitor_main(&ctx.root, &id, attached)
            }
            Command::MountDaemon(a) => mount::run_daemon(a, ctx),
            Command::BuildView { image } => mount::run_build_view(&image, ctx),
            Command::Snapshotter(a) => snapshotter::run(a, ctx),
            Command::SnapshotMount(a) => snapshotter::run_mount(a, ctx),
            Command::Flush { batch } => system::run_flush(batch, ctx),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// What `strata ARGS --help` prints, on one wide line per entry.
    fn help(args: &[&str]) -> String {
        let cmd = Cli::command().term_width(10_000);
        let argv = ["strata"].iter().chain(args).chain(&["--help"]);
        match cmd.try_get_matches_from(argv) {
            Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => e.to_string(),
            other => panic!("strata {args:?} --help: {other:?}"),
        }
    }

    /// The commands a help text lists, with their abouts.
    fn listed(help: &str) -> Vec<(String, String)> {
        help.lines()
            .skip_while(|l| !l.starts_with("Commands:"))
            .skip(1)
            .take_while(|l| !l.is_empty())
            .filter_map(|l| {
                let l = l.trim();
                let (name, about) = l.split_once(' ')?;
                Some((name.to_string(), about.trim().to_string()))
            })
            .collect()
    }

    /// A subcommand's own help starts with the about its parent lists:
    /// building a deferred subcommand (the parent's listing is made
    /// before) replaces nothing, as a flattened struct's doc comment would.
    #[test]
    fn every_command_keeps_its_about_once_built() {
        let mut todo = vec![Vec::<String>::new()];
        let mut seen = 0;
        while let Some(path) = todo.pop() {
            let args: Vec<&str> = path.iter().map(String::as_str).collect();
            for (name, about) in listed(&help(&args)) {
                let mut sub = path.clone();
                sub.push(name);
                let args: Vec<&str> = sub.iter().map(String::as_str).collect();
                let own = help(&args);
                assert!(
                    own.starts_with(&about),
                    "strata {sub:?}: listed as {about:?}, its help: {own:?}"
                );
                seen += 1;
                todo.push(sub);
            }
        }
        assert!(seen > 100, "only {seen} commands");
    }
}
