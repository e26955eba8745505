//! `strata port CONTAINER [PRIVATE_PORT[/PROTO]]`
use super::{Context, ExitError};
use crate::container::monitor::liveness::lookup;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The container
    pub container: String,
    /// Only this port (PORT or PORT/PROTO)
    pub port: Option<String>,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    let store = ctx.open_store()?;
    let c = lookup(&store, &args.container)?;
    let ports = crate::network::published_ports(&store, &c.id)?;
    let wanted = args.port.as_deref().map(|p| {
        let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
        (port.to_string(), proto.to_ascii_lowercase())
    });
    let mut shown = 0;
    for p in &ports {
        match &wanted {
            Some((port, proto)) => {
                if p.container_port.to_string() == *port && p.proto == *proto {
                    outln!("{}:{}", p.host_ip, p.host_port);
                    shown += 1;
                }
            }
            None => {
                outln!(
                    "{}/{} -> {}:{}",
                    p.container_port,
                    p.proto,
                    p.host_ip,
                    p.host_port
                );
                shown += 1;
            }
        }
    }
    if let (Some(requested), 0) = (&args.port, shown) {
        return Err(ExitError {
            code: 1,
            message: format!(
                "No public port '{}' published for {}",
                if requested.contains('/') {
                    requested.clone()
                } else {
                    format!("{requested}/tcp")
                },
                c.short_id()
            ),
        }
        .into());
    }
    Ok(0)
}
