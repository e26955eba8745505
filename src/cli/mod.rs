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
mod events;
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
mod snapshotter;

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

use clap::Parser;

use crate::store::Store;

mod tree;
pub use tree::{
    Cli, Command, ContainerCommand, ContainerVerb, ImageCommand, ImageVerb, SystemCommand,
};

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

/// An error that Docker's daemon reports and its client prints as
/// `Error response from daemon: MESSAGE` (exit 1). strata has no daemon:
/// the library call plays its part, and the CLI prints the same line
/// where Docker's client would (as [`for_each_name`] does for each
/// object), so what a user or a script matches in Docker's output
/// matches in strata's. Errors Docker's client finds itself (flags,
/// templates, `No such container` of commands that look up first) stay
/// `Error: MESSAGE`.
#[derive(Debug)]
pub struct DaemonError(pub String);

impl std::fmt::Display for DaemonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for DaemonError {}

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
    // Ingests write behind, flushed by this binary (docs/store.md).
    if let Ok(exe) = std::env::current_exe() {
        crate::store::set_flusher_program(exe);
    }
    let ctx = Context {
        root: cli.root.clone().unwrap_or_else(default_root),
    };
    match cli.command.run(&ctx) {
        Ok(code) => code,
        Err(e) => {
            streams::end_if_output_closed(&e);
            if let Some(daemon) = e.downcast_ref::<DaemonError>() {
                errln!("Error response from daemon: {daemon}");
                return 1;
            }
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
/// detached by strata-fs (every unmount) is noise, so fuser logs errors
/// only; the TLS verifier's error line says what strata's own error
/// (one line, naming the host) says again, so it is left out.
fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(format!(
        "{level},fuser=error,netlink_packet_route=error,rustls_platform_verifier=off"
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
