//! `strata inspect [-f FORMAT] NAME...`
use super::output::Template;
use super::{Context, ExitError};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Format the output using a Go-style template
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
    let template = args.format.as_deref().map(Template::parse).transpose()?;
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
                outln!("{}", t.render(v)?);
            }
        }
        None => outln!("{}", serde_json::to_string_pretty(&found)?),
    }
    for name in &missing {
        errln!("Error: No such object: {name}");
    }
    Ok(if missing.is_empty() { 0 } else { 1 })
}
