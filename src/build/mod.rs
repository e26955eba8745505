//! `strata build`: Dockerfiles to images, on strata's own parts.
//!
//! - `parse.rs` reads the Dockerfile (directives, continuations,
//!   here-documents; every error names `Dockerfile:LINE`); `expand.rs`
//!   expands variables as Docker's shell lexer does; `args.rs` scopes
//!   ARGs; `plan.rs` splits stages and picks the ones the target needs.
//! - `execute.rs` runs the plan: each instruction is a step whose result
//!   is a [`State`] (an image config whose blob is stored, its layers
//!   pinned by a cache entry: `cache.rs`, `state.rs`); `instructions/`
//!   has one file per family. RUN is a container from the launcher
//!   (`container::create_container`, `start_container`) whose upper
//!   directory becomes the layer; COPY and ADD write their layer from the
//!   context (`context.rs`, `ignore.rs`) straight into the store
//!   (`layer.rs`), reading the parent's tree from the index (`tree.rs`)
//!   and never unpacking it.
//! - `schedule.rs` builds stages that do not depend on each other at
//!   the same time.
//! - `progress.rs` shows what happens; `export.rs` writes `-o` outputs;
//!   `interrupt.rs` turns Ctrl-C into a clean failure.
//!
//! See docs/build.md.

pub mod args;
pub mod cache;
pub mod context;
pub mod digests;
mod error;
mod execute;
pub mod expand;
mod export;
pub mod ignore;
mod instructions;
mod interrupt;
pub mod layer;
pub mod parse;
pub mod plan;
pub mod progress;
mod schedule;
pub mod state;
pub mod tree;

pub use cache::{prune as prune_cache, usage as cache_usage, CacheUsage, PruneReport};
pub use error::BuildError;
pub use execute::{build, check, BuildOptions, BuildOutcome, CheckReport, Output};
pub use progress::{PlainProgress, Progress, QuietProgress, TtyProgress};
pub use state::State;

/// Downloads a context archive (`strata build URL`).
pub fn download_context(url: &str) -> Result<Vec<u8>, String> {
    instructions::download(url, None).map(|f| f.data)
}

/// A Go duration (`24h`, `90m`, `30s`) in nanoseconds.
pub fn parse_duration(text: &str) -> Option<i64> {
    instructions::duration_ns(text)
}
