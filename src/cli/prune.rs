//! `strata image prune` and `strata system prune`
use std::io::{BufRead, Write};

use super::output::human_size;
use super::Context;
use crate::image::RemovalEvent;

#[derive(clap::Args, Debug)]
pub struct ImageArgs {
    /// Remove all images no container uses, not just dangling ones
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
}

#[derive(clap::Args, Debug)]
pub struct SystemArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
}

pub(super) fn confirm(warning: &str) -> anyhow::Result<bool> {
    errout!("{warning}\nAre you sure you want to continue? [y/N] ");
    std::io::stderr().flush()?;
    let stdin = std::io::stdin();
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "Yes"))
}

fn print_report(report: &crate::image::prune::PruneReport) {
    let lines: Vec<String> = report
        .events
        .iter()
        .map(|e| match e {
            RemovalEvent::Untagged(n) => format!("untagged: {n}"),
            RemovalEvent::Deleted(d) => format!("deleted: {d}"),
        })
        .collect();
    if !lines.is_empty() {
        outln!("Deleted Images:");
        for l in lines {
            outln!("{l}");
        }
        outln!();
    }
    outln!("Total reclaimed space: {}", human_size(report.bytes_freed));
}

pub fn run_image(args: ImageArgs, ctx: &Context) -> anyhow::Result<i32> {
    let warning = if args.all {
        "WARNING! This will remove all images without at least one container associated to them."
    } else {
        "WARNING! This will remove all dangling images."
    };
    if !args.force && !confirm(warning)? {
        return Ok(0);
    }
    let store = ctx.open_store()?;
    crate::mount::reap_dead_mounts(&store)?;
    let report = crate::image::prune::prune_images(&store, args.all)?;
    print_report(&report);
    Ok(0)
}

pub fn run_system(args: SystemArgs, ctx: &Context) -> anyhow::Result<i32> {
    let warning = format!(
        "WARNING! This will remove:\n  - all stopped containers\n  - all {} images\n  - all build cache\n  - unreferenced files and blobs in the store\n  - staging left by interrupted commands",
        if args.all { "unused" } else { "dangling" }
    );
    if !args.force && !confirm(&warning)? {
        return Ok(0);
    }
    let store = ctx.open_store()?;
    crate::mount::reap_dead_mounts(&store)?;
    prune_stopped_containers(&store)?;
    let cache = crate::build::prune_cache(&store, true, None)?;
    if cache.entries > 0 {
        println!("Deleted build cache objects: {}\n", cache.entries);
    }
    let mut report = crate::image::prune::prune_images(&store, args.all)?;
    report.bytes_freed += cache.bytes_freed;
    print_report(&report);
    Ok(0)
}

/// Removes every container that is not running (Docker's `container prune`).
fn prune_stopped_containers(store: &crate::store::Store) -> anyhow::Result<()> {
    use crate::container::spec::Status;
    let mut removed = Vec::new();
    for c in crate::container::list_reconciled(store)? {
        if matches!(
            c.state.status,
            Status::Created | Status::Exited | Status::Dead
        ) {
            crate::container::remove_container(store, &c.id, false, false)?;
            removed.push(c.id);
        }
    }
    if !removed.is_empty() {
        outln!("Deleted Containers:");
        for id in &removed {
            outln!("{id}");
        }
        outln!();
    }
    Ok(())
}
