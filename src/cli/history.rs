//! `strata history IMAGE`
use serde_json::json;

use super::output::{human_size, print_formatted, since};
use super::Context;
use crate::image::inspect::image_history;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print sizes and dates in human readable format
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub human: bool,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Format output: table, json, or a template
    #[arg(long)]
    pub format: Option<String>,
    pub image: String,
}

/// Docker's `stringutils.Ellipsis`.
fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    let store = ctx.open_store()?;
    let id = crate::image::resolve_image(&store, &args.image)?;
    let rows = image_history(&store, &id)?;
    let id_text = |d: &Option<crate::digest::Digest>| match d {
        Some(d) if args.no_trunc => d.to_string(),
        Some(d) => d.short(),
        None => "<missing>".to_string(),
    };
    if args.quiet {
        for r in &rows {
            outln!("{}", id_text(&r.id));
        }
        return Ok(0);
    }
    let values: Vec<_> = rows
        .iter()
        .map(|r| {
            let created_by = r.created_by.replace('\t', " ");
            json!({
                "ID": id_text(&r.id),
                "CreatedSince": if args.human { since(r.created.as_deref()) } else { r.created.clone().unwrap_or_default() },
                "CreatedAt": r.created.clone().unwrap_or_default(),
                "CreatedBy": if args.no_trunc { created_by } else { ellipsis(&created_by, 45) },
                "Size": if args.human { human_size(r.size) } else { r.size.to_string() },
                "Comment": r.comment,
            })
        })
        .collect();
    print_formatted(
        args.format.as_deref(),
        &values,
        "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}",
        &|f| {
            Some(
                match f {
                    "ID" => "IMAGE",
                    "CreatedSince" => "CREATED",
                    "CreatedAt" => "CREATED AT",
                    "CreatedBy" => "CREATED BY",
                    _ => return None,
                }
                .into(),
            )
        },
    )?;
    Ok(0)
}
