//! `strata ps [-a] [-q] [-l] [-n N] [-s] [--no-trunc] [--filter F] [--format F]`
use serde_json::{json, Value};

use super::output::{human_duration, human_size, parse_time, print_formatted, since};
use super::Context;
use crate::container::{container_dir, list_reconciled, Container, Status};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Only display container IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Show the latest created container (includes all states)
    #[arg(short, long)]
    pub latest: bool,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long = "last")]
    pub last: Option<usize>,
    /// Display total file sizes
    #[arg(short, long)]
    pub size: bool,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Filter output: status=, name=, id=, ancestor=, exited=, label=
    #[arg(short, long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Format output: table, json, or a Go-style template
    #[arg(long)]
    pub format: Option<String>,
}

/// Docker's STATUS column.
pub fn status_text(c: &Container) -> String {
    let ago = |t: &str| {
        parse_time(t).map(|t| (chrono::Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
    };
    match c.state.status {
        Status::Created => "Created".into(),
        Status::Running | Status::Paused => {
            let up = ago(&c.state.started_at)
                .map(human_duration)
                .unwrap_or_default();
            if c.state.status == Status::Paused {
                format!("Up {up} (Paused)")
            } else {
                match c.state.health.as_ref().map(|h| h.status.as_str()) {
                    Some("starting") => format!("Up {up} (health: starting)"),
                    Some(status) if !status.is_empty() => format!("Up {up} ({status})"),
                    _ => format!("Up {up}"),
                }
            }
        }
        Status::Exited => {
            let when = ago(&c.state.finished_at)
                .map(|s| format!(" {} ago", human_duration(s)))
                .unwrap_or_default();
            format!("Exited ({}){when}", c.state.exit_code)
        }
        Status::Restarting => {
            // Docker's: the last exit code, and since when it waits.
            let when = ago(&c.state.finished_at)
                .map(|s| format!(" {} ago", human_duration(s)))
                .unwrap_or_default();
            format!("Restarting ({}){when}", c.state.exit_code)
        }
        Status::Removing => "Removal In Progress".into(),
        Status::Dead => "Dead".into(),
    }
}

/// The COMMAND column as Docker's daemon writes it: the path, then each
/// argument, in single quotes if it holds a space (nothing escaped); the
/// client then cuts it and quotes it as Go's `strconv.Quote` does.
fn command_text(argv: &[String]) -> String {
    let Some((path, args)) = argv.split_first() else {
        return String::new();
    };
    if args.is_empty() {
        return path.clone();
    }
    let args: Vec<String> = args
        .iter()
        .map(|a| {
            if a.contains(' ') {
                format!("'{a}'")
            } else {
                a.clone()
            }
        })
        .collect();
    format!("{path} {}", args.join(" "))
}

fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

fn matches(c: &Container, filter: &str) -> anyhow::Result<bool> {
    let (key, value) = filter
        .split_once('=')
        .ok_or_else(|| anyhow::anyhow!("bad format of filter (expected name=value): {filter}"))?;
    Ok(match key {
        "status" => c.state.status.as_str() == value,
        "name" => c.name.contains(value.trim_start_matches('/')),
        "id" => c.id.starts_with(value),
        "ancestor" => {
            c.spec.image_name == value
                || c.image_id
                    .trim_start_matches("sha256:")
                    .starts_with(value.trim_start_matches("sha256:"))
        }
        "exited" => {
            c.state.status == Status::Exited && value.parse::<i32>().ok() == Some(c.state.exit_code)
        }
        "label" => match value.split_once('=') {
            Some((k, v)) => c.spec.labels.get(k).is_some_and(|x| x == v),
            None => c.spec.labels.contains_key(value),
        },
        other => anyhow::bail!("invalid filter '{other}'"),
    })
}

fn row(
    c: &Container,
    ctx: &Context,
    store: &crate::store::Store,
    no_trunc: bool,
    size: bool,
) -> Value {
    let command = command_text(&c.spec.argv());
    let command = if no_trunc {
        command
    } else {
        ellipsis(&command, 20)
    };
    let size_text = if size {
        let upper = crate::container::launch::userns::size_of_any_owner(
            &container_dir_of(ctx, &c.id).join("upper"),
            crate::container::volume::dir_size,
        );
        // As Docker's: the writable layer, and it with the image's size.
        let image = c
            .image_id
            .parse::<crate::digest::Digest>()
            .ok()
            .and_then(|id| crate::image::get_image(store, &id).ok())
            .map_or(0, |i| i.size);
        format!(
            "{} (virtual {})",
            human_size(upper),
            human_size(upper + image)
        )
    } else {
        String::new()
    };
    json!({
        "ID": if no_trunc { c.id.clone() } else { c.short_id().to_string() },
        "Image": c.spec.image_name,
        "Command": crate::template::quote(&command),
        "CreatedAt": c.created_at,
        "RunningFor": since(Some(&c.created_at)),
        "Status": status_text(c),
        "State": c.state.status.as_str(),
        "Names": c.name,
        "Ports": crate::container::monitor::net::ports_column(store, c),
        "Size": size_text,
        "Labels": c.spec.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
        "Mounts": c.spec.mounts.iter().map(|m| m.source.clone()).collect::<Vec<_>>().join(","),
        "Networks": networks_column(store, c),
    })
}

/// The names of the container's networks.
fn networks_column(store: &crate::store::Store, c: &Container) -> String {
    use crate::container::NetworkMode;
    match &c.spec.network {
        NetworkMode::Host => "host".into(),
        NetworkMode::None => "none".into(),
        NetworkMode::Pasta | NetworkMode::Slirp4netns(_) => {
            crate::container::monitor::net::user_mode_name(&c.spec.network).into()
        }
        NetworkMode::Container(_) => String::new(),
        _ => crate::network::container_networks(store, &c.id)
            .unwrap_or_default()
            .into_iter()
            .map(|(n, _)| n.name)
            .collect::<Vec<_>>()
            .join(","),
    }
}

fn container_dir_of(ctx: &Context, id: &str) -> std::path::PathBuf {
    ctx.root.join("containers").join(id)
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    let store = ctx.open_store()?;
    let _ = container_dir;
    let mut containers = list_reconciled(&store)?;
    containers.sort_by(|a, b| b.created_at.cmp(&a.created_at));
    let limit = if args.latest { Some(1) } else { args.last };
    if limit.is_none()
        && !args.all
        && !args
            .filters
            .iter()
            .any(|f| f.starts_with("status=") || f.starts_with("exited="))
    {
        containers.retain(|c| {
            matches!(
                c.state.status,
                Status::Running | Status::Paused | Status::Restarting
            )
        });
    }
    for f in &args.filters {
        let mut kept = Vec::new();
        for c in containers {
            if matches(&c, f)? {
                kept.push(c);
            }
        }
        containers = kept;
    }
    if let Some(n) = limit {
        containers.truncate(n);
    }
    if args.quiet {
        for c in &containers {
            outln!(
                "{}",
                if args.no_trunc {
                    c.id.as_str()
                } else {
                    c.short_id()
                }
            );
        }
        return Ok(0);
    }
    let values: Vec<Value> = containers
        .iter()
        .map(|c| row(c, ctx, &store, args.no_trunc, args.size))
        .collect();
    let mut table = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}".to_string();
    if args.size {
        table.push_str("\t{{.Size}}");
    }
    let headers = |f: &str| {
        Some(
            match f {
                "ID" => "CONTAINER ID",
                "RunningFor" => "CREATED",
                "CreatedAt" => "CREATED AT",
                _ => return None,
            }
            .to_string(),
        )
    };
    print_formatted(args.format.as_deref(), &values, &table, &headers)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::{ContainerSpec, ContainerState};

    #[test]
    fn status_texts_like_docker() {
        let mut c = Container {
            id: "a".repeat(64),
            name: "x".into(),
            image_id: String::new(),
            created_at: String::new(),
            spec: ContainerSpec::default(),
            state: ContainerState::default(),
        };
        assert_eq!(status_text(&c), "Created");
        c.state.status = Status::Exited;
        c.state.exit_code = 3;
        c.state.finished_at = (chrono::Utc::now() - chrono::Duration::seconds(125)).to_rfc3339();
        assert_eq!(status_text(&c), "Exited (3) 2 minutes ago");
        c.state.status = Status::Running;
        c.state.started_at = (chrono::Utc::now() - chrono::Duration::seconds(3)).to_rfc3339();
        assert_eq!(status_text(&c), "Up 3 seconds");
        c.state.status = Status::Paused;
        assert_eq!(status_text(&c), "Up 3 seconds (Paused)");
        c.state.status = Status::Running;
        let mut health = crate::container::spec::Health {
            status: "starting".into(),
            ..Default::default()
        };
        c.state.health = Some(health.clone());
        assert_eq!(status_text(&c), "Up 3 seconds (health: starting)");
        health.status = "unhealthy".into();
        c.state.health = Some(health);
        assert_eq!(status_text(&c), "Up 3 seconds (unhealthy)");
        c.state.status = Status::Restarting;
        c.state.exit_code = 1;
        c.state.finished_at = (chrono::Utc::now() - chrono::Duration::seconds(2)).to_rfc3339();
        assert_eq!(status_text(&c), "Restarting (1) 2 seconds ago");
        assert_eq!(
            ellipsis("sh -c 'sleep 1000; echo done'", 20),
            "sh -c 'sleep 1000; …"
        );
    }

    #[test]
    fn command_column_quotes_as_docker() {
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // Docker 20.10's outputs for the same commands.
        let cases: [(&[&str], &str); 4] = [
            (
                &["sh", "-c", "i=0; while true; do i=$((i+1)); done"],
                r#""sh -c 'i=0; while true; do i=$((i+1)); done'""#,
            ),
            (&["echo", "hi there", "a\"b"], r#""echo 'hi there' a\"b""#),
            (&["sleep", "1000"], r#""sleep 1000""#),
            (
                &["", "a b", "it's", "$x", "a\\b", ""],
                r#"" 'a b' it's $x a\\b ""#,
            ),
        ];
        for (a, expected) in cases {
            assert_eq!(
                crate::template::quote(&command_text(&argv(a))),
                expected,
                "{a:?}"
            );
        }
        assert_eq!(
            crate::template::quote(&ellipsis(
                &command_text(&argv(&["sh", "-c", "i=0; while true; do i=$((i+1)); done"])),
                20
            )),
            "\"sh -c 'i=0; while t…\""
        );
    }
}
