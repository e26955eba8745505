//! `strata cp CONTAINER:SRC HOSTDEST|-` and `strata cp HOSTSRC|- CONTAINER:DEST`
use super::{Context, ExitError};
use crate::container::{copy_from_container, copy_host_path_into_container, copy_into_container};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Source: CONTAINER:PATH, a host path, or - (a tar on stdin)
    pub source: String,
    /// Destination: CONTAINER:PATH, a host path, or - (a tar on stdout)
    pub destination: String,
}

fn split(arg: &str) -> Option<(&str, &str)> {
    if arg.starts_with('/') || arg.starts_with('.') {
        return None;
    }
    arg.split_once(':')
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    let store = ctx.open_store()?;
    match (split(&args.source), split(&args.destination)) {
        (Some((container, path)), None) => {
            if args.destination == "-" {
                copy_from_container(&store, container, path, &mut std::io::stdout().lock())?;
            } else {
                let mut buffer = Vec::new();
                copy_from_container(&store, container, path, &mut buffer)?;
                unpack_to_host(&buffer, std::path::Path::new(&args.destination))?;
            }
        }
        (None, Some((container, path))) => {
            if args.source == "-" {
                copy_into_container(&store, container, path, &mut std::io::stdin().lock())?;
            } else {
                copy_host_path_into_container(
                    &store,
                    container,
                    std::path::Path::new(&args.source),
                    path,
                )?;
            }
        }
        _ => {
            return Err(ExitError { code: 1, message: "copying between containers or between host paths is not supported; one side must be CONTAINER:PATH".into() }.into())
        }
    }
    Ok(0)
}

/// Unpacks into DEST if it is a directory, else as DEST itself.
fn unpack_to_host(archive: &[u8], dest: &std::path::Path) -> anyhow::Result<()> {
    let unpack = |dir: &std::path::Path| -> anyhow::Result<()> {
        let mut a = tar::Archive::new(archive);
        a.set_preserve_permissions(true);
        a.unpack(dir)?;
        Ok(())
    };
    if dest.is_dir() {
        return unpack(dest);
    }
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let staging = parent.join(format!(".strata-cp-{:08x}", rand::random::<u32>()));
    std::fs::create_dir(&staging)?;
    let result = unpack(&staging).and_then(|()| {
        let mut entries = std::fs::read_dir(&staging)?.collect::<Result<Vec<_>, _>>()?;
        let first = entries
            .pop()
            .ok_or_else(|| anyhow::anyhow!("nothing to copy"))?;
        let source = if entries.is_empty() {
            first.path()
        } else {
            staging.clone()
        };
        std::fs::rename(source, dest)?;
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&staging);
    result
}
