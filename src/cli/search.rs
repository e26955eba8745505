//! `strata search [--limit N] [--format ...] [--no-trunc] [REGISTRY/]TERM`
use super::output::tabulate;
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
    /// Output format: table (default) or json
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
    if args.format.as_deref() == Some("json") {
        for r in &results {
            outln!("{}", serde_json::to_string(r)?);
        }
        return Ok(0);
    }
    let mut rows = vec![vec![
        "NAME".to_string(),
        "DESCRIPTION".into(),
        "STARS".into(),
        "OFFICIAL".into(),
    ]];
    for r in results {
        let mut description = r.description.replace('\n', " ");
        if !args.no_trunc && description.chars().count() > 45 {
            description = description.chars().take(44).collect::<String>() + "…";
        }
        rows.push(vec![
            r.name,
            description,
            r.stars.to_string(),
            if r.official {
                "[OK]".into()
            } else {
                String::new()
            },
        ]);
    }
    out!("{}", tabulate(&rows));
    Ok(0)
}
