//! `strata pull [-q] [-a] [--platform os/arch[/variant]] NAME[:TAG|@DIGEST]`
use std::io::IsTerminal;

use super::registry_args::{LayerBars, RegistryArgs};
use super::Context;
use crate::reference::Reference;
use crate::registry::{PullEvent, PullOptions};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Download all tagged images in the repository
    #[arg(short = 'a', long)]
    pub all_tags: bool,
    /// Suppress verbose output
    #[arg(short, long)]
    pub quiet: bool,
    /// Set platform if server is multi-platform capable (os/arch[/variant])
    #[arg(long)]
    pub platform: Option<String>,
    /// Maximum number of layers downloaded at once
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_concurrent_downloads: u16,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// NAME[:TAG|@DIGEST]
    pub name: String,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    let loose = Reference::parse_loose(&args.name)?;
    if args.all_tags && (loose.tag.is_some() || loose.digest.is_some()) {
        anyhow::bail!("tag can't be used with --all-tags/-a");
    }
    let reference = if args.all_tags {
        loose.clone()
    } else {
        Reference::parse(&args.name)?
    };
    if !args.quiet && !args.all_tags && loose.tag.is_none() && loose.digest.is_none() {
        outln!("Using default tag: {}", crate::reference::DEFAULT_TAG);
    }
    let platform = args
        .platform
        .as_deref()
        .map(crate::registry::Platform::parse)
        .transpose()?;
    let options = PullOptions {
        client: args.registry.client_options(&ctx.root)?,
        platform,
        max_concurrent_downloads: args.max_concurrent_downloads as usize,
    };
    let store = ctx.open_store()?;
    let bars = (!args.quiet && std::io::stdout().is_terminal()).then(LayerBars::new);
    let quiet = args.quiet;
    let observer = |event: PullEvent| {
        if quiet {
            return;
        }
        match (&bars, event) {
            (_, PullEvent::Resolved { reference, .. }) => {
                let what = match (&reference.digest, &reference.tag) {
                    (Some(d), _) => d.to_string(),
                    (None, Some(t)) => t.clone(),
                    (None, None) => String::new(),
                };
                outln!("{what}: Pulling from {}", reference.path);
            }
            (Some(bars), PullEvent::AlreadyExists { digest }) => {
                bars.update(&digest.short(), "Already exists", None)
            }
            (None, PullEvent::AlreadyExists { digest }) => {
                outln!("{}: Already exists", digest.short())
            }
            (Some(bars), PullEvent::Waiting { digest }) => {
                bars.update(&digest.short(), "Waiting", None)
            }
            (
                Some(bars),
                PullEvent::Downloading {
                    digest,
                    done,
                    total,
                },
            ) => bars.update(&digest.short(), "Downloading", Some((done, total))),
            (Some(bars), PullEvent::PullComplete { digest }) => {
                bars.update(&digest.short(), "Pull complete", None)
            }
            (None, PullEvent::PullComplete { digest }) => {
                outln!("{}: Pull complete", digest.short())
            }
            (None, _) => {}
        }
    };
    let result = crate::registry::pull(&store, &reference, args.all_tags, &options, &observer);
    if let Some(bars) = &bars {
        bars.finish();
    }
    let outcomes = result?;
    if args.quiet {
        outln!(
            "{}",
            if args.all_tags {
                reference.repository()
            } else {
                reference.to_string()
            }
        );
        return Ok(0);
    }
    for outcome in &outcomes {
        outln!("Digest: {}", outcome.digest);
    }
    let newer = outcomes.iter().any(|o| !o.up_to_date);
    let shown = if args.all_tags {
        reference.familiar_repository()
    } else {
        reference.familiar()
    };
    if newer {
        outln!("Status: Downloaded newer image for {shown}");
    } else {
        outln!("Status: Image is up to date for {shown}");
    }
    outln!(
        "{}",
        if args.all_tags {
            reference.repository()
        } else {
            reference.to_string()
        }
    );
    Ok(0)
}
