//! `strata push [-q] [--compression-format gzip|zstd] NAME[:TAG]`
use std::io::IsTerminal;

use super::output::human_size;
use super::registry_args::{LayerBars, RegistryArgs};
use super::Context;
use crate::reference::Reference;
use crate::registry::{PushCompression, PushEvent, PushOptions};

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum CompressionFormat {
    Gzip,
    Zstd,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Suppress verbose output
    #[arg(short, long)]
    pub quiet: bool,
    /// Compress layers in this format, reusing only blobs already in it
    /// (default: reuse any blob the registry has or can mount; gzip new ones)
    #[arg(long, value_enum)]
    pub compression_format: Option<CompressionFormat>,
    /// Maximum number of layers uploaded at once
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_concurrent_uploads: u16,
    /// Upload chunk size in bytes: larger blobs go in several PATCH requests
    #[arg(long, hide = true, default_value_t = 16 << 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub chunk_size: u64,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// NAME[:TAG]
    pub name: String,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    let reference = Reference::parse(&args.name)?;
    let options = PushOptions {
        client: args.registry.client_options(&ctx.root)?,
        compression: args.compression_format.map(|f| match f {
            CompressionFormat::Gzip => PushCompression::Gzip,
            CompressionFormat::Zstd => PushCompression::Zstd,
        }),
        max_concurrent_uploads: args.max_concurrent_uploads as usize,
        chunk_size: args.chunk_size as usize,
    };
    let store = ctx.open_store()?;
    if !args.quiet {
        outln!(
            "The push refers to repository [{}]",
            reference.familiar_repository()
        );
    }
    let bars = (!args.quiet && std::io::stdout().is_terminal()).then(LayerBars::new);
    let quiet = args.quiet;
    let observer = |event: PushEvent| {
        if quiet {
            return;
        }
        // (layer, status, whether it is a final status worth a plain line)
        let (id, status, last) = match event {
            PushEvent::Preparing { diff_id } => (diff_id, "Preparing".to_string(), false),
            PushEvent::Pushing {
                diff_id,
                done,
                total,
            } if total > 0 => {
                if let Some(bars) = &bars {
                    bars.update(&diff_id.short(), "Pushing", Some((done.min(total), total)));
                }
                return;
            }
            PushEvent::Pushing { diff_id, done, .. } => {
                (diff_id, format!("Pushing {}", human_size(done)), false)
            }
            PushEvent::Exists { diff_id } => (diff_id, "Layer already exists".to_string(), true),
            PushEvent::Mounted { diff_id, from } => (diff_id, format!("Mounted from {from}"), true),
            PushEvent::Pushed { diff_id } => (diff_id, "Pushed".to_string(), true),
        };
        match &bars {
            Some(bars) => bars.update(&id.short(), &status, None),
            None if last => outln!("{}: {status}", id.short()),
            None => {}
        }
    };
    let result = crate::registry::push(&store, &reference, &options, &observer);
    if let Some(bars) = &bars {
        bars.finish();
    }
    let outcome = result?;
    if args.quiet {
        outln!("{}", outcome.reference);
    } else {
        let tag = outcome.reference.tag.clone().unwrap_or_default();
        outln!("{tag}: digest: {} size: {}", outcome.digest, outcome.size);
    }
    Ok(0)
}
