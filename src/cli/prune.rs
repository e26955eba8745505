//! `strata container prune`, `strata image prune` and `strata system prune`
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
pub struct ContainerArgs {
    /// Provide filter values: until=TIMESTAMP|DURATION, label=KEY[=VALUE], label!=KEY[=VALUE]
    #[arg(long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
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

fn print_report(report: &crate::image::prune::PruneReport, cache_entries: u64) {
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
    if cache_entries > 0 {
        outln!("Deleted build cache objects: {cache_entries}\n");
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
    print_report(&report, 0);
    Ok(0)
}

pub fn run_system(args: SystemArgs, ctx: &Context) -> anyhow::Result<i32> {
    let warning = format!(
        "WARNING! This will remove:\n  - all stopped containers\n  - all {} images\n  - all {}build cache\n  - unreferenced files and blobs in the store\n  - staging left by interrupted commands",
        if args.all { "unused" } else { "dangling" },
        if args.all { "" } else { "dangling " }
    );
    if !args.force && !confirm(&warning)? {
        return Ok(0);
    }
    let store = ctx.open_store()?;
    crate::mount::reap_dead_mounts(&store)?;
    let containers_freed = prune_stopped_containers(
        &store,
        &ContainerFilter {
            until: None,
            labels: Vec::new(),
        },
    )?;
    let mut report = crate::image::prune::prune_images(&store, args.all)?;
    // As Docker: the dangling build cache (entries whose result no image
    // is, after the images above went), all of it with -a.
    let cache = crate::build::prune_cache(&store, args.all, None)?;
    report.bytes_freed += cache.bytes_freed + containers_freed;
    print_report(&report, cache.entries);
    Ok(0)
}

/// Which stopped containers a prune removes: Docker's `until=` and
/// `label=`/`label!=` filters, all of which must hold.
struct ContainerFilter {
    until: Option<chrono::DateTime<chrono::Utc>>,
    labels: Vec<(String, Option<String>, bool)>,
}

impl ContainerFilter {
    fn parse(filters: &[String]) -> anyhow::Result<ContainerFilter> {
        let mut f = ContainerFilter {
            until: None,
            labels: Vec::new(),
        };
        for filter in filters {
            let (key, value, negated) = match filter.split_once("!=") {
                Some((k, v)) => (k, v, true),
                None => match filter.split_once('=') {
                    Some((k, v)) => (k, v, false),
                    None => anyhow::bail!("bad format of filter (expected name=value): {filter}"),
                },
            };
            match (key, negated) {
                ("until", false) => f.until = Some(super::output::parse_when(value)?),
                ("label", _) => {
                    let (k, v) = match value.split_once('=') {
                        Some((k, v)) => (k.to_string(), Some(v.to_string())),
                        None => (value.to_string(), None),
                    };
                    f.labels.push((k, v, negated));
                }
                _ => anyhow::bail!("invalid filter '{key}'"),
            }
        }
        Ok(f)
    }

    fn matches(&self, c: &crate::container::Container) -> bool {
        if let Some(until) = self.until {
            if super::output::parse_time(&c.created_at).is_some_and(|t| t >= until) {
                return false;
            }
        }
        self.labels.iter().all(|(k, v, negated)| {
            let has = match (c.spec.labels.get(k), v) {
                (Some(actual), Some(v)) => actual == v,
                (Some(_), None) => true,
                (None, _) => false,
            };
            has != *negated
        })
    }
}

pub fn run_containers(args: ContainerArgs, ctx: &Context) -> anyhow::Result<i32> {
    let filter = ContainerFilter::parse(&args.filters)?;
    if !args.force && !confirm("WARNING! This will remove all stopped containers.")? {
        return Ok(0);
    }
    let store = ctx.open_store()?;
    let bytes = prune_stopped_containers(&store, &filter)?;
    outln!("Total reclaimed space: {}", human_size(bytes));
    Ok(0)
}

/// Removes every container that is not running (Docker's `container
/// prune`), lists them, and returns the bytes their writable layers held.
fn prune_stopped_containers(
    store: &crate::store::Store,
    filter: &ContainerFilter,
) -> anyhow::Result<u64> {
    use crate::container::spec::Status;
    let mut removed = Vec::new();
    let mut bytes = 0;
    for c in crate::container::list_reconciled(store)? {
        if matches!(
            c.state.status,
            Status::Created | Status::Exited | Status::Dead
        ) && filter.matches(&c)
        {
            let upper = crate::container::container_dir(store, &c.id).join("upper");
            let size = crate::container::launch::userns::size_of_any_owner(
                &upper,
                crate::container::volume::dir_size,
            );
            crate::container::remove_container(store, &c.id, false, false)?;
            bytes += size;
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
    Ok(bytes)
}
