//! `strata commit [-a AUTHOR] [-m MESSAGE] [-c CHANGE] CONTAINER [REPOSITORY[:TAG]]`
use super::Context;
use crate::container::{commit_container, CommitOptions};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short, long)]
    pub author: Option<String>,
    /// Commit message
    #[arg(short, long)]
    pub message: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long = "change")]
    pub change: Vec<String>,
    /// Pause container during commit (accepted; strata commits without pausing)
    #[arg(short, long, default_value_t = true)]
    pub pause: bool,
    pub container: String,
    pub reference: Option<String>,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    let store = ctx.open_store()?;
    let options = CommitOptions {
        reference: args.reference,
        author: args.author,
        message: args.message,
        changes: args.change,
    };
    let id = commit_container(&store, &args.container, &options)?;
    outln!("{id}");
    Ok(0)
}
