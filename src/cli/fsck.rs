//! `strata fsck`
use super::{Context, ExitError};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print only problems
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    let store = ctx.open_store()?;
    let report = crate::store::fsck(&store)?;
    for p in &report.problems {
        outln!("DAMAGED: {p}");
    }
    if !args.quiet {
        for n in &report.notes {
            outln!("note: {n}");
        }
        outln!(
            "checked {} files, {} blobs, {} layers, {} images, {} snapshots: {}",
            report.files_checked,
            report.blobs_checked,
            report.layers_checked,
            report.images_checked,
            report.snapshots_checked,
            if report.is_clean() {
                "clean".to_string()
            } else {
                format!("{} problems", report.problems.len())
            }
        );
    }
    if report.is_clean() {
        Ok(0)
    } else {
        Err(ExitError {
            code: 1,
            message: format!(
                "store {} is damaged: {} problems",
                ctx.root.display(),
                report.problems.len()
            ),
        }
        .into())
    }
}

/// `strata gc`
pub fn run_gc(ctx: &Context) -> anyhow::Result<i32> {
    let store = ctx.open_store()?;
    crate::mount::reap_dead_mounts(&store)?;
    crate::container::monitor::liveness::reap_dead_monitors(&store)?;
    let report = crate::store::collect_garbage(&store)?;
    outln!(
        "removed {} layers, {} files, {} blobs, {} extracted layer directories; {} freed",
        report.layers_removed.len(),
        report.files_removed,
        report.blobs_removed,
        report.layer_dirs_removed,
        super::output::human_size(report.bytes_freed)
    );
    Ok(0)
}
