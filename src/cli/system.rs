//! `strata system df`, `strata info` (`system info`), `strata version` and
//! `strata system boot`.
use serde_json::Value;

use super::output::{bytes_size, human_size};
use super::{Context, ExitError};
use crate::system::{system_info, version_info, SystemInfo, VersionInfo};
use crate::template::Template;

#[derive(clap::Args, Debug)]
pub struct DfArgs {
    /// Show detailed information on space usage
    #[arg(short, long)]
    pub verbose: bool,
    /// Format output: table, json, or a Go template ('{{.Type}} {{.Size}}')
    #[arg(long)]
    pub format: Option<String>,
}

pub fn run_df(args: DfArgs, ctx: &Context) -> anyhow::Result<i32> {
    let store = ctx.open_store()?;
    let usage = crate::store::disk_usage_sized(&store, &|paths| {
        crate::container::launch::userns::sizes_of_any_owner(paths, crate::store::dir_size)
    })?;
    let cache = crate::build::cache_usage(&store)?;
    let pct = |part: u64, whole: u64| (part * 100).checked_div(whole).unwrap_or(0);
    let row = |kind: &str, total: u64, active: u64, size: u64, reclaimable: String| {
        serde_json::json!({
            "Type": kind,
            "TotalCount": total.to_string(),
            "Active": active.to_string(),
            "Size": human_size(size),
            "Reclaimable": reclaimable,
        })
    };
    let rows = vec![
        row(
            "Images",
            usage.images,
            usage.images_active,
            usage.images_size,
            format!(
                "{} ({}%)",
                human_size(usage.images_reclaimable),
                pct(usage.images_reclaimable, usage.images_size)
            ),
        ),
        row(
            "Containers",
            usage.containers,
            usage.containers_active,
            usage.containers_size,
            format!(
                "{} ({}%)",
                human_size(usage.containers_size),
                pct(usage.containers_size, usage.containers_size.max(1)).min(100)
            ),
        ),
        row(
            "Local Volumes",
            usage.volumes,
            0,
            usage.volumes_size,
            human_size(usage.volumes_size),
        ),
        row(
            "Build Cache",
            cache.entries,
            cache.active,
            cache.size,
            human_size(cache.reclaimable),
        ),
    ];
    let headers = |field: &str| {
        Some(
            match field {
                "TotalCount" => "TOTAL",
                _ => return None,
            }
            .to_string(),
        )
    };
    super::output::print_formatted(
        args.format.as_deref(),
        &rows,
        "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}",
        &headers,
    )?;
    // strata's own lines follow Docker's table only.
    if !matches!(args.format.as_deref(), None | Some("table")) {
        return Ok(0);
    }

    outln!();
    outln!(
        "Deduplication: {} of layer content stored in {} ({} files for {} references); {} saved",
        human_size(usage.logical_bytes),
        human_size(usage.stored_bytes),
        usage.stored_files,
        usage.file_references,
        human_size(usage.logical_bytes.saturating_sub(usage.stored_bytes)),
    );
    if usage.layer_dirs > 0 {
        outln!(
            "Extracted layers (overlayfs fallback): {} directories, {}; {} reclaimable by strata gc",
            usage.layer_dirs,
            human_size(usage.layer_dirs_size),
            human_size(usage.layer_dirs_reclaimable),
        );
    }
    if usage.views > 0 {
        outln!(
            "Image views (kernel mounts): {} views, {}; {} reclaimable by strata gc",
            usage.views,
            human_size(usage.views_size),
            human_size(usage.views_reclaimable),
        );
    }
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    /// Format the output using the given Go template ('{{json .}}', '{{.ServerVersion}}')
    #[arg(short, long)]
    pub format: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct VersionArgs {
    /// Format the output using the given Go template ('{{json .}}', '{{.Server.Version}}')
    #[arg(short, long)]
    pub format: Option<String>,
}

/// `--format` for `info` and `version`, with Docker's errors: a template
/// that does not parse is `template parsing error: ...` (64), one that
/// fails is its own message (1), neither prefixed with `Error:`.
fn print_with_template(format: &str, value: &Value) -> anyhow::Result<i32> {
    let fail = |code: i32, message: String| -> anyhow::Error {
        errln!("{message}");
        ExitError {
            code,
            message: String::new(),
        }
        .into()
    };
    let template =
        Template::parse(format).map_err(|e| fail(64, format!("template parsing error: {e}")))?;
    let text = template
        .execute(value)
        .map_err(|e| fail(1, e.to_string()))?;
    outln!("{text}");
    Ok(0)
}

pub fn run_version(args: VersionArgs, _ctx: &Context) -> anyhow::Result<i32> {
    let version = version_info();
    if let Some(format) = args.format.as_deref().filter(|f| !f.is_empty()) {
        return print_with_template(format, &serde_json::to_value(&version)?);
    }
    out!("{}", version_text(&version));
    Ok(0)
}

/// Label and value lines aligned as Docker's tabwriter (minimum width
/// 20, padding 1) aligns them.
fn field(out: &mut String, indent: &str, label: &str, value: &str) {
    let cell = format!("{indent}{label}:");
    let width = (cell.chars().count() + 1).max(20);
    out.push_str(format!("{cell:<width$}{value}").trim_end());
    out.push('\n');
}

fn version_text(v: &VersionInfo) -> String {
    let mut out = String::from("Client:\n");
    field(&mut out, " ", "Version", &v.client.version);
    field(&mut out, " ", "Rust version", &v.client.rust_version);
    field(
        &mut out,
        " ",
        "OS/Arch",
        &format!("{}/{}", v.client.os, v.client.arch),
    );
    out.push_str("\nServer:\n");
    for c in &v.server.components {
        out.push_str(&format!(" {}:\n", c.name));
        field(&mut out, "  ", "Version", &c.version);
        if c.name == "Engine" {
            field(&mut out, "  ", "Rust version", &v.server.rust_version);
            field(
                &mut out,
                "  ",
                "OS/Arch",
                &format!("{}/{}", v.server.os, v.server.arch),
            );
            continue;
        }
        for (k, value) in &c.details {
            field(&mut out, "  ", k, value);
        }
    }
    out
}

pub fn run_info(args: InfoArgs, ctx: &Context) -> anyhow::Result<i32> {
    let store = ctx.open_store()?;
    let info = system_info(&store)?;
    if let Some(format) = args.format.as_deref().filter(|f| !f.is_empty()) {
        return print_with_template(format, &serde_json::to_value(&info)?);
    }
    out!("{}", info_text(&info));
    for w in &info.warnings {
        errln!("{w}");
    }
    Ok(0)
}

/// Docker 20.10's `info` layout (its Server part; strata is one
/// program), with the store's deduplication under the storage driver.
fn info_text(i: &SystemInfo) -> String {
    let mut lines = vec![
        "Server:".to_string(),
        format!(" Containers: {}", i.containers),
        format!("  Running: {}", i.containers_running),
        format!("  Paused: {}", i.containers_paused),
        format!("  Stopped: {}", i.containers_stopped),
        format!(" Images: {}", i.images),
        format!(" Server Version: {}", i.server_version),
        format!(" Storage Driver: {}", i.driver),
    ];
    for [k, v] in &i.driver_status {
        lines.push(format!("  {k}: {v}"));
    }
    let s = &i.store;
    lines.push(format!(
        "  Layer Files: {} ({})",
        s.layer_files,
        human_size(s.layer_file_bytes)
    ));
    lines.push(format!(
        "  Stored Files: {} ({})",
        s.stored_files,
        human_size(s.stored_bytes)
    ));
    lines.push(format!(
        "  Saved by Deduplication: {}",
        human_size(s.deduplication_saved_bytes)
    ));
    lines.push(format!("  Store Schema: {}", s.schema_version));
    lines.extend([
        format!(" Logging Driver: {}", i.logging_driver),
        format!(" Cgroup Driver: {}", i.cgroup_driver),
        format!(" Cgroup Version: {}", i.cgroup_version),
        " Plugins:".to_string(),
        format!("  Volume: {}", i.plugins.volume.join(" ")),
        format!("  Network: {}", i.plugins.network.join(" ")),
        format!("  Log: {}", i.plugins.log.join(" ")),
        format!(
            " Runtimes: {}",
            i.runtimes.keys().cloned().collect::<Vec<_>>().join(" ")
        ),
        format!(" Default Runtime: {}", i.default_runtime),
        format!(" Init Binary: {}", i.init_binary),
    ]);
    if !i.security_options.is_empty() {
        lines.push(" Security Options:".to_string());
        for option in &i.security_options {
            // name=seccomp,profile=default -> "seccomp" and "Profile: default"
            let mut name = "";
            let mut rest = Vec::new();
            for kv in option.split(',') {
                match kv.split_once('=') {
                    Some(("name", n)) => name = n,
                    Some((k, v)) => rest.push((k, v)),
                    None => {}
                }
            }
            lines.push(format!("  {name}"));
            for (k, v) in rest {
                let mut key = k.to_string();
                if let Some(first) = key.get_mut(0..1) {
                    first.make_ascii_uppercase();
                }
                lines.push(format!("   {key}: {v}"));
            }
        }
    }
    lines.extend([
        format!(" Kernel Version: {}", i.kernel_version),
        format!(" Operating System: {}", i.operating_system),
        format!(" OSType: {}", i.os_type),
        format!(" Architecture: {}", i.architecture),
        format!(" CPUs: {}", i.ncpu),
        format!(" Total Memory: {}", bytes_size(i.mem_total)),
        format!(" Name: {}", i.name),
        format!(" Strata Root Dir: {}", i.docker_root_dir),
        format!(" Registry: {}", i.index_server_address),
        " Labels:".to_string(),
        format!(" Experimental: {}", i.experimental_build),
        " Insecure Registries:".to_string(),
    ]);
    for cidr in &i.registry_config.insecure_registry_cidrs {
        lines.push(format!("  {cidr}"));
    }
    lines.push(format!(" Live Restore Enabled: {}", i.live_restore_enabled));
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

#[derive(clap::Args, Debug)]
pub struct BootArgs {}

/// `system boot`: run once at boot (docs/containers.md has a systemd
/// unit). Prints each container it started; a container that cannot be
/// started is reported and the others are still started (exit 1).
pub fn run_boot(_args: BootArgs, ctx: &Context) -> anyhow::Result<i32> {
    let mut store = ctx.open_store()?;
    let booted =
        crate::container::boot_containers(&mut store).map_err(|e| super::tool_failure(e.into()))?;
    let mut failed = 0;
    for b in booted {
        let name = &b.container.name;
        match b.error {
            None => outln!("{name}"),
            Some(e) => {
                errln!("Error response from daemon: {name}: {e}");
                failed += 1;
            }
        }
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

#[derive(clap::Args, Debug)]
pub struct SyncArgs {}

/// `system sync`: waits until everything pulled, loaded, built or
/// committed so far is on disk. Ingests return before their files are
/// flushed and a background flusher follows each (docs/store.md); this is
/// for scripts that must not lose an image to a power cut right after.
pub fn run_sync(_args: SyncArgs, ctx: &Context) -> anyhow::Result<i32> {
    let store = ctx.open_store()?;
    crate::store::sync_all(&store)?;
    Ok(0)
}

/// `__flush ID`: the background flusher a publish starts (docs/store.md),
/// which then checkpoints the database's WAL and removes the staging
/// directories publishes left it. It never creates the database (nor
/// opens the store), so a store removed meanwhile stays removed.
pub fn run_flush(batch: i64, ctx: &Context) -> anyhow::Result<i32> {
    crate::store::flush_through(&ctx.root, batch)?;
    crate::store::remove_spent(&ctx.root, true);
    Ok(0)
}
