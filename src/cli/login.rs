//! `strata login [-u USER] [-p PASS | --password-stdin] [SERVER]`
use std::io::{BufRead, IsTerminal, Write};

use super::registry_args::RegistryArgs;
use super::{Context, ExitError};
use crate::registry::{normalize_server, Credentials};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Username
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password
    #[arg(short, long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Take the password from stdin
    #[arg(long)]
    pub password_stdin: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Registry server (default: Docker Hub)
    pub server: Option<String>,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    let server = normalize_server(args.server.as_deref());
    if args.password.is_some() {
        errln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
    }
    let username = match args.username {
        Some(u) => u,
        None if args.password_stdin => {
            return Err(ExitError {
                code: 1,
                message: "Must provide --username with --password-stdin".into(),
            }
            .into())
        }
        None => prompt("Username: ", true)?,
    };
    let password = match (args.password, args.password_stdin) {
        (Some(p), _) => p,
        (None, true) => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => prompt("Password: ", false)?,
    };
    if username.is_empty() || password.is_empty() {
        return Err(ExitError {
            code: 1,
            message: "username and password are required".into(),
        }
        .into());
    }
    let credentials = Credentials { username, password };
    crate::registry::login(
        &server,
        &credentials,
        &args.registry.client_options(&ctx.root)?,
    )?;
    outln!("Login Succeeded");
    Ok(0)
}

/// Asks on the terminal; without echo for a password.
fn prompt(label: &str, echo: bool) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        anyhow::bail!("cannot perform an interactive login from a non TTY device");
    }
    out!("{label}");
    std::io::stdout().flush()?;
    let saved = if echo {
        None
    } else {
        nix::sys::termios::tcgetattr(&stdin).ok()
    };
    if let Some(original) = &saved {
        let mut quiet = original.clone();
        quiet
            .local_flags
            .remove(nix::sys::termios::LocalFlags::ECHO);
        let _ = nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, &quiet);
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(original) = &saved {
        let _ = nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, original);
        outln!();
    }
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}
