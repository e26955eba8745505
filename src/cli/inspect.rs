//! `strata inspect [-f FORMAT] NAME...`
use super::output::template_error;
use super::{Context, ExitError};
use crate::template::Template;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Format output using a custom template: a Go template
    /// ('{{.State.Running}}', '{{range .Config.Env}}{{println .}}{{end}}', '{{json .Config}}')
    #[arg(short, long)]
    pub format: Option<String>,
    /// Only inspect objects of this type (image or container)
    #[arg(long = "type", value_name = "TYPE")]
    pub kind: Option<String>,
    #[arg(required = true)]
    pub names: Vec<String>,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    let store = ctx.open_store()?;
    if let Some(kind) = args.kind.as_deref() {
        if kind != "image" && kind != "container" {
            return Err(ExitError {
                code: 1,
                message: format!("unknown type {kind:?}: strata inspects images and containers"),
            }
            .into());
        }
    }
    // Docker: a template that does not parse is a usage error (64).
    let template = args
        .format
        .as_deref()
        .filter(|f| !f.is_empty())
        .map(Template::parse)
        .transpose()
        .map_err(|e| template_error(e, 64))?;
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for name in &args.names {
        // Containers first, as Docker does.
        if args.kind.as_deref() != Some("image") {
            if let Ok(v) = crate::container::inspect_container(&store, name) {
                found.push(v);
                continue;
            }
            if args.kind.as_deref() == Some("container") {
                missing.push(name.clone());
                continue;
            }
        }
        match crate::image::resolve_image(&store, name) {
            Ok(id) => found.push(crate::image::inspect::inspect_image(&store, &id)?),
            Err(crate::image::ImageError::NotFound(_)) => missing.push(name.clone()),
            Err(e) => return Err(e.into()),
        }
    }
    match &template {
        Some(t) => {
            for v in &found {
                println!("{}", t.execute(v).map_err(|e| template_error(e, 1))?);
            }
        }
        None => println!("{}", serde_json::to_string_pretty(&found)?),
    }
    for name in &missing {
        eprintln!("Error: No such object: {name}");
    }
    Ok(if missing.is_empty() { 0 } else { 1 })
}
