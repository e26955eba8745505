//! `strata logout [SERVER]`
use super::registry_args::RegistryArgs;
use super::Context;
use crate::registry::normalize_server;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Registry server (default: Docker Hub)
    pub server: Option<String>,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    let server = normalize_server(args.server.as_deref());
    let options = RegistryArgs { tls_verify: true }.client_options(&ctx.root)?;
    if crate::registry::logout(&server, &options)? {
        outln!("Removing login credentials for {server}");
    } else {
        outln!("Not logged in to {server}");
    }
    Ok(0)
}
