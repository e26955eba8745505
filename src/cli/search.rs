//! `strata search [--limit N] [--format ...] [--no-trunc] [REGISTRY/]TERM`
use serde_json::json;

use super::output::print_formatted;
use super::registry_args::RegistryArgs;
use super::Context;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Max number of search results
    #[arg(long, default_value_t = 25)]
    pub limit: usize,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Format output: table, json, or a Go template ('{{.Name}} {{.StarCount}}')
    #[arg(long)]
    pub format: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// [REGISTRY/]TERM
    pub term: String,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    let results = crate::registry::search(
        &args.term,
        args.limit,
        &args.registry.client_options(&ctx.root)?,
    )?;
    let rows: Vec<_> = results
        .into_iter()
        .map(|r| {
            let mut description = r.description.replace('\n', " ");
            if !args.no_trunc && description.chars().count() > 45 {
                description = description.chars().take(44).collect::<String>() + "…";
            }
            // Docker's search formatter: strings, "[OK]" when official.
            json!({
                "Name": r.name,
                "Description": description,
                "StarCount": r.stars.to_string(),
                "IsOfficial": if r.official { "[OK]" } else { "" },
                "IsAutomated": "",
            })
        })
        .collect();
    let headers = |field: &str| {
        Some(
            match field {
                "StarCount" => "STARS",
                "IsOfficial" => "OFFICIAL",
                "IsAutomated" => "AUTOMATED",
                _ => return None,
            }
            .to_string(),
        )
    };
    print_formatted(
        args.format.as_deref(),
        &rows,
        "table {{.Name}}\t{{.Description}}\t{{.StarCount}}\t{{.IsOfficial}}",
        &headers,
    )?;
    Ok(0)
}
