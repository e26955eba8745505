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
                unpack_to_host(&buffer, std::path::Path::new(&args.destination), &args.source)?;
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

/// Unpacks into DEST if it is a directory, else as DEST itself. A FIFO
/// is made as one; a device node is never made on the host (a container
/// could otherwise leave, say, a 0666 node of the host's disk in the
/// directory of whoever copies from it): alone, it is an error, within a
/// directory, it is left out with a warning.
/// (`source` names the copy in that error.)
fn unpack_to_host(archive: &[u8], dest: &std::path::Path, source: &str) -> anyhow::Result<()> {
    let unpack = |dir: &std::path::Path| -> anyhow::Result<()> {
        let mut a = tar::Archive::new(archive);
        a.set_preserve_permissions(true);
        let mut entries = 0;
        let mut devices = Vec::new();
        for entry in a.entries()? {
            let mut entry = entry?;
            entries += 1;
            let kind = entry.header().entry_type();
            if kind.is_character_special() || kind.is_block_special() {
                devices.push(entry.path()?.display().to_string());
            } else if kind.is_fifo() {
                make_fifo(dir, &entry)?;
            } else {
                entry.unpack_in(dir)?;
            }
        }
        match devices.as_slice() {
            [_] if entries == 1 => {
                anyhow::bail!(
                    "{source} is a device node: strata cp does not make device nodes on the host"
                )
            }
            _ => {
                for device in devices {
                    eprintln!("strata cp: left out {device}: a device node (strata cp does not make device nodes on the host)");
                }
            }
        }
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

/// Makes the FIFO `entry` under `dir` (whose parent the archive made
/// before, inside `dir`), with the entry's mode.
fn make_fifo<R: std::io::Read>(dir: &std::path::Path, entry: &tar::Entry<R>) -> anyhow::Result<()> {
    use std::path::Component;
    let name = entry.path()?;
    if !name
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        anyhow::bail!("{}: not a plain path in the copy", name.display());
    }
    let path = dir.join(&name);
    let parent = path.parent().unwrap_or(dir);
    if !parent.canonicalize()?.starts_with(dir.canonicalize()?) {
        anyhow::bail!("{}: outside the destination", name.display());
    }
    let mode = nix::sys::stat::Mode::from_bits_truncate(entry.header().mode()?);
    nix::unistd::mkfifo(&path, mode).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    nix::sys::stat::fchmodat(
        None,
        &path,
        mode,
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(())
}
