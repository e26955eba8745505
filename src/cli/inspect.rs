//! `strata inspect [-f FORMAT] [--type T] NAME...`, and `container
//! inspect` / `image inspect`, which look for one kind only.
use super::output::{inspect_template, print_inspected};
use super::{Context, ExitError};

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

// `container inspect` and `image inspect`.
// (Not a doc comment: clap would make it the about of every command that
// flattens this struct, see `defer` in tree.rs.)
#[derive(clap::Args, Debug)]
pub struct KindArgs {
    /// Format output using a custom template: a Go template
    #[arg(short, long)]
    pub format: Option<String>,
    #[arg(required = true)]
    pub names: Vec<String>,
}

pub fn run_containers(args: KindArgs, ctx: &Context) -> anyhow::Result<i32> {
    run(
        Args {
            format: args.format,
            kind: Some("container".into()),
            names: args.names,
        },
        ctx,
    )
}

pub fn run_images(args: KindArgs, ctx: &Context) -> anyhow::Result<i32> {
    run(
        Args {
            format: args.format,
            kind: Some("image".into()),
            names: args.names,
        },
        ctx,
    )
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
    let template = inspect_template(args.format.as_deref())?;
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
    print_inspected(template.as_ref(), &found)?;
    // Docker names what it looked for.
    let what = match args.kind.as_deref() {
        Some("container") => "container",
        Some("image") => "image",
        _ => "object",
    };
    for name in &missing {
        errln!("Error: No such {what}: {name}");
    }
    Ok(if missing.is_empty() { 0 } else { 1 })
}
