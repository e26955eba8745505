//! `strata images` / `strata image ls`
use serde_json::{json, Value};

use super::output::{human_size, print_formatted, since};
use super::{Context, ExitError};
use crate::image::{list_images, resolve_image, ImageRecord};
use crate::reference::{familiar, Reference};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Show all images (strata keeps no intermediate images, so the same as without)
    #[arg(short, long)]
    pub all: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Show digests
    #[arg(long)]
    pub digests: bool,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Filter output: dangling=true|false, reference=PATTERN, before=IMAGE, since=IMAGE, label=KEY[=VALUE]
    #[arg(short, long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Format output: table, json, or a Go-style template such as '{{.Repository}}:{{.Tag}}'
    #[arg(long)]
    pub format: Option<String>,
    /// Only images of this repository (and tag)
    pub repository: Option<String>,
}

/// One row of the listing: an image under one of its names.
struct Row<'a> {
    image: &'a ImageRecord,
    repository: String,
    tag: String,
    digest: String,
}

fn rows(image: &ImageRecord) -> Vec<Row<'_>> {
    let digest_for = |repo: &str| {
        image
            .repo_digests
            .iter()
            .find(|d| d.starts_with(&format!("{repo}@")))
            .and_then(|d| d.split_once('@').map(|(_, d)| d.to_string()))
            .unwrap_or_else(|| "<none>".into())
    };
    let mut out = Vec::new();
    for tag in &image.tags {
        if let Ok(r) = Reference::parse(tag) {
            out.push(Row {
                image,
                repository: r.familiar_repository(),
                tag: r.tag.clone().unwrap_or_default(),
                digest: digest_for(&r.repository()),
            });
        }
    }
    if out.is_empty() {
        let mut repos: Vec<String> = image
            .repo_digests
            .iter()
            .filter_map(|d| d.split_once('@').map(|(r, _)| r.to_string()))
            .collect();
        repos.dedup();
        for repo in repos {
            out.push(Row {
                image,
                repository: familiar(&repo),
                tag: "<none>".into(),
                digest: digest_for(&repo),
            });
        }
    }
    if out.is_empty() {
        out.push(Row {
            image,
            repository: "<none>".into(),
            tag: "<none>".into(),
            digest: "<none>".into(),
        });
    }
    out
}

/// `path.Match`-style glob: `*` and `?` do not cross `/`.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    fn m(p: &[u8], t: &[u8]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some(b'*') => (0..=t.len())
                .take_while(|&i| i == 0 || t[i - 1] != b'/')
                .any(|i| m(&p[1..], &t[i..])),
            Some(b'?') => !t.is_empty() && t[0] != b'/' && m(&p[1..], &t[1..]),
            Some(&c) => !t.is_empty() && t[0] == c && m(&p[1..], &t[1..]),
        }
    }
    m(pattern.as_bytes(), text.as_bytes())
}

struct Filters {
    dangling: Option<bool>,
    references: Vec<String>,
    before: Option<String>,
    since: Option<String>,
    labels: Vec<(String, Option<String>)>,
}

fn parse_filters(args: &[String], ctx_store: &crate::store::Store) -> anyhow::Result<Filters> {
    let mut f = Filters {
        dangling: None,
        references: vec![],
        before: None,
        since: None,
        labels: vec![],
    };
    for raw in args {
        let (key, value) = raw.split_once('=').ok_or_else(|| ExitError {
            code: 1,
            message: format!("bad format of filter (expected name=value): {raw}"),
        })?;
        match key {
            "dangling" => {
                f.dangling = Some(match value {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => {
                        return Err(ExitError {
                            code: 1,
                            message: format!("invalid filter 'dangling={value}'"),
                        }
                        .into())
                    }
                })
            }
            "reference" => f.references.push(value.to_string()),
            "before" => f.before = Some(resolve_image(ctx_store, value)?.to_string()),
            "since" => f.since = Some(resolve_image(ctx_store, value)?.to_string()),
            "label" => f.labels.push(match value.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (value.to_string(), None),
            }),
            _ => {
                return Err(ExitError {
                    code: 1,
                    message: format!("invalid filter '{key}'"),
                }
                .into())
            }
        }
    }
    Ok(f)
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    let store = ctx.open_store()?;
    let filters = parse_filters(&args.filters, &store)?;
    let images = list_images(&store)?;
    let created_of = |id: &str| {
        images
            .iter()
            .find(|i| i.id.to_string() == id)
            .map(|i| (i.created.clone(), i.added_at))
    };
    let before = filters.before.as_deref().and_then(created_of);
    let since_img = filters.since.as_deref().and_then(created_of);
    let mut selected: Vec<Row> = Vec::new();
    for image in &images {
        let key = (image.created.clone(), image.added_at);
        if let Some(b) = &before {
            if key >= *b {
                continue;
            }
        }
        if let Some(s) = &since_img {
            if key <= *s {
                continue;
            }
        }
        if let Some(d) = filters.dangling {
            if d != image.tags.is_empty() {
                continue;
            }
        }
        if !filters.labels.is_empty() {
            let (config, _) = crate::image::image_config(&store, &image.id)?;
            let labels = config.config.and_then(|c| c.labels).unwrap_or_default();
            if !filters.labels.iter().all(|(k, v)| match v {
                Some(v) => labels.get(k) == Some(v),
                None => labels.contains_key(k),
            }) {
                continue;
            }
        }
        for row in rows(image) {
            if !filters.references.is_empty() {
                let name = format!("{}:{}", row.repository, row.tag);
                if !filters
                    .references
                    .iter()
                    .any(|p| glob_match(p, &row.repository) || glob_match(p, &name))
                {
                    continue;
                }
            }
            if let Some(repo) = &args.repository {
                let wanted = Reference::parse_loose(repo)?;
                if wanted.familiar_repository() != row.repository {
                    continue;
                }
                if let Some(tag) = &wanted.tag {
                    if *tag != row.tag {
                        continue;
                    }
                }
            }
            selected.push(row);
        }
    }
    let id_text = |image: &ImageRecord| {
        if args.no_trunc {
            image.id.to_string()
        } else {
            image.id.short()
        }
    };
    if args.quiet {
        let mut seen = std::collections::HashSet::new();
        for row in &selected {
            if seen.insert(row.image.id) {
                outln!("{}", id_text(row.image));
            }
        }
        return Ok(0);
    }
    let values: Vec<Value> = selected
        .iter()
        .map(|row| {
            let created_at = row
                .image
                .created
                .as_deref()
                .and_then(super::output::parse_time)
                .map(|t| t.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string())
                .unwrap_or_default();
            json!({
                "Containers": "N/A",
                "CreatedAt": created_at,
                "CreatedSince": since(row.image.created.as_deref()),
                "Digest": row.digest,
                "ID": id_text(row.image),
                "Repository": row.repository,
                "SharedSize": "N/A",
                "Size": human_size(row.image.size),
                "Tag": row.tag,
                "UniqueSize": "N/A",
                "VirtualSize": human_size(row.image.size),
            })
        })
        .collect();
    let default = if args.digests {
        "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    } else {
        "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    };
    print_formatted(args.format.as_deref(), &values, default, &|field| {
        Some(
            match field {
                "ID" => "IMAGE ID",
                "CreatedSince" => "CREATED",
                "CreatedAt" => "CREATED AT",
                "SharedSize" => "SHARED SIZE",
                "UniqueSize" => "UNIQUE SIZE",
                "VirtualSize" => "VIRTUAL SIZE",
                _ => return None,
            }
            .to_string(),
        )
    })?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match("deb*", "debian"));
        assert!(glob_match("*:latest", "debian:latest"));
        assert!(!glob_match("*", "a/b"));
        assert!(glob_match("a/*", "a/b"));
        assert!(glob_match("de?ian", "debian"));
    }
}
