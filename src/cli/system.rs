//! `strata system df`
use super::output::{human_size, tabulate};
use super::Context;

#[derive(clap::Args, Debug)]
pub struct DfArgs {
    /// Show detailed information on space usage
    #[arg(short, long)]
    pub verbose: bool,
}

pub fn run_df(_args: DfArgs, ctx: &Context) -> anyhow::Result<i32> {
    let store = ctx.open_store()?;
    let usage = crate::store::disk_usage(&store)?;
    let cache = crate::build::cache_usage(&store)?;
    let pct = |part: u64, whole: u64| (part * 100).checked_div(whole).unwrap_or(0);
    let rows = vec![
        vec![
            "TYPE".into(),
            "TOTAL".into(),
            "ACTIVE".into(),
            "SIZE".into(),
            "RECLAIMABLE".into(),
        ],
        vec![
            "Images".into(),
            usage.images.to_string(),
            usage.images_active.to_string(),
            human_size(usage.images_size),
            format!(
                "{} ({}%)",
                human_size(usage.images_reclaimable),
                pct(usage.images_reclaimable, usage.images_size)
            ),
        ],
        vec![
            "Containers".into(),
            usage.containers.to_string(),
            usage.containers_active.to_string(),
            human_size(usage.containers_size),
            format!(
                "{} ({}%)",
                human_size(usage.containers_size),
                pct(usage.containers_size, usage.containers_size.max(1)).min(100)
            ),
        ],
        vec![
            "Local Volumes".into(),
            usage.volumes.to_string(),
            "0".into(),
            human_size(usage.volumes_size),
            human_size(usage.volumes_size),
        ],
        vec![
            "Build Cache".into(),
            cache.entries.to_string(),
            cache.active.to_string(),
            human_size(cache.size),
            human_size(cache.reclaimable),
        ],
    ];
    out!("{}", tabulate(&rows));
    outln!();
    outln!(
        "Deduplication: {} of layer content stored in {} ({} files for {} references); {} saved",
        human_size(usage.logical_bytes),
        human_size(usage.stored_bytes),
        usage.stored_files,
        usage.file_references,
        human_size(usage.logical_bytes.saturating_sub(usage.stored_bytes)),
    );
    if usage.layer_dirs > 0 {
        outln!(
            "Extracted layers (overlayfs fallback): {} directories, {}; {} reclaimable by strata gc",
            usage.layer_dirs,
            human_size(usage.layer_dirs_size),
            human_size(usage.layer_dirs_reclaimable),
        );
    }
    Ok(0)
}
