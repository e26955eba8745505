//! `strata build [OPTIONS] PATH | - | URL` (also `strata image build`)
//! and `strata builder prune`.
use std::collections::BTreeMap;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use super::output::human_size;
use super::{Context, ExitError};
use crate::build::{
    BuildError, BuildOptions, Output, PlainProgress, Progress, QuietProgress, TtyProgress,
};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Name and optionally a tag in the 'name:tag' format (several allowed)
    #[arg(short, long = "tag", value_name = "NAME[:TAG]")]
    pub tag: Vec<String>,
    /// Name of the Dockerfile (default: 'PATH/Dockerfile'; '-' reads it from stdin)
    #[arg(short, long = "file", value_name = "FILE")]
    pub file: Option<String>,
    /// Set build-time variables (KEY=VALUE, or KEY to take the value from the environment)
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_arg: Vec<String>,
    /// Set the target build stage to build
    #[arg(long)]
    pub target: Option<String>,
    /// Do not use cache when building the image
    #[arg(long)]
    pub no_cache: bool,
    /// Always attempt to pull a newer version of the base images
    #[arg(long)]
    pub pull: bool,
    /// Suppress the build output and print the image ID on success
    #[arg(short, long)]
    pub quiet: bool,
    /// Write the image ID to the file
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// Set metadata for an image (KEY=VALUE)
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// Networking mode for the RUN instructions: default (the default bridge, as `run`), bridge, host, none, or a network's name
    #[arg(long, default_value = "default")]
    pub network: String,
    /// Set the platform (only this host's is supported)
    #[arg(long)]
    pub platform: Option<String>,
    /// Type of progress output: auto, plain, tty, quiet
    #[arg(long, default_value = "auto")]
    pub progress: String,
    /// Output destination instead of an image: type=local,dest=DIR or type=tar,dest=FILE
    #[arg(short, long = "output", value_name = "type=local,dest=DIR")]
    pub output: Option<String>,
    /// Secret to expose to RUN --mount=type=secret: id=ID,src=FILE
    #[arg(long = "secret", value_name = "id=ID,src=FILE")]
    pub secret: Vec<String>,
    /// Check the Dockerfile (parse, expand, validate) and print warnings; build nothing
    #[arg(long)]
    pub check: bool,
    /// The build context: a directory, '-' (a Dockerfile or a tar context on stdin), or an http(s) URL of a tar
    #[arg(value_name = "PATH | URL | -")]
    pub context: String,
}

#[derive(clap::Subcommand, Debug)]
#[command(defer = true)]
pub enum BuilderCommand {
    /// Remove build cache
    Prune(PruneArgs),
    /// Build an image from a Dockerfile
    Build(Box<Args>),
}

#[derive(clap::Args, Debug)]
pub struct PruneArgs {
    /// Remove all build cache, not just what no image uses
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Provide filter values (until=DURATION, e.g. until=24h)
    #[arg(long, value_name = "FILTER")]
    pub filter: Vec<String>,
}

fn usage(message: String) -> anyhow::Error {
    ExitError { code: 125, message }.into()
}

/// A directory removed on drop (an extracted context).
struct ScratchDir(PathBuf);
impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn is_tar(data: &[u8]) -> bool {
    data.len() >= 262 && &data[257..262] == b"ustar"
}

/// A tar (plain or gzip) unpacked into a new directory under the store.
fn unpack_context(data: &[u8], ctx: &Context) -> anyhow::Result<ScratchDir> {
    let dir = ctx
        .root
        .join("tmp")
        .join(format!("build-context-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir)?;
    let guard = ScratchDir(dir.clone());
    let reader: Box<dyn Read> = if data.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(data))
    } else {
        Box::new(data)
    };
    // unpack refuses entries that would land outside `dir`.
    tar::Archive::new(reader)
        .unpack(&dir)
        .map_err(|e| usage(format!("unable to prepare context: the tar archive: {e}")))?;
    Ok(guard)
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<i32> {
    let mut _scratch = None;
    let mut stdin_text: Option<String> = None;
    // The context.
    let context: Option<PathBuf> = if args.context == "-" {
        let mut data = Vec::new();
        std::io::stdin().read_to_end(&mut data)?;
        if is_tar(&data) || data.starts_with(&[0x1f, 0x8b]) {
            let dir = unpack_context(&data, ctx)?;
            let path = dir.0.clone();
            _scratch = Some(dir);
            Some(path)
        } else {
            stdin_text = Some(
                String::from_utf8(data)
                    .map_err(|_| usage("the Dockerfile on stdin is not UTF-8 text".into()))?,
            );
            None
        }
    } else if args.context.starts_with("http://") || args.context.starts_with("https://") {
        let fetched = crate::build::download_context(&args.context)
            .map_err(|e| usage(format!("unable to prepare context: {}: {e}", args.context)))?;
        if !(is_tar(&fetched) || fetched.starts_with(&[0x1f, 0x8b])) {
            return Err(usage(format!(
                "unable to prepare context: {} is not a tar archive",
                args.context
            )));
        }
        let dir = unpack_context(&fetched, ctx)?;
        let path = dir.0.clone();
        _scratch = Some(dir);
        Some(path)
    } else if args.context.starts_with("git@") || args.context.ends_with(".git") {
        return Err(usage(format!("unable to prepare context: {}: git contexts are not supported (clone it and build the directory)", args.context)));
    } else {
        let p = PathBuf::from(&args.context);
        if !p.is_dir() {
            return Err(usage(format!(
                "unable to prepare context: path {:?} not found",
                args.context
            )));
        }
        Some(p)
    };
    // The Dockerfile.
    let (text, name, path) = match args.file.as_deref() {
        Some("-") => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            (s, "Dockerfile".to_string(), None)
        }
        Some(f) => {
            let p = PathBuf::from(f);
            let candidates = [Some(p.clone()), context.as_ref().map(|c| c.join(f))];
            let found = candidates.into_iter().flatten().find(|c| c.is_file());
            let Some(found) = found else {
                return Err(usage(format!(
                    "unable to prepare context: the Dockerfile {f:?} cannot be found"
                )));
            };
            let text = std::fs::read_to_string(&found)
                .map_err(|e| usage(format!("{}: {e}", found.display())))?;
            let name = found
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "Dockerfile".into());
            (text, name, Some(found))
        }
        None => match (&stdin_text, &context) {
            (Some(t), _) => (t.clone(), "Dockerfile".to_string(), None),
            (None, Some(c)) => {
                let p = c.join("Dockerfile");
                let text = std::fs::read_to_string(&p).map_err(|e| {
                    usage(format!(
                        "unable to prepare context: unable to read {}: {e}",
                        p.display()
                    ))
                })?;
                (text, "Dockerfile".to_string(), Some(p))
            }
            (None, None) => return Err(usage("no Dockerfile".into())),
        },
    };
    let mut build_args = BTreeMap::new();
    for a in &args.build_arg {
        match a.split_once('=') {
            Some((k, v)) => {
                build_args.insert(k.to_string(), v.to_string());
            }
            None => {
                if let Ok(v) = std::env::var(a) {
                    build_args.insert(a.clone(), v);
                }
            }
        }
    }
    let mut tags = Vec::new();
    for t in &args.tag {
        tags.push(crate::reference::Reference::parse(t).map_err(|e| {
            usage(format!(
                "invalid argument {t:?} for \"-t, --tag\" flag: {e}"
            ))
        })?);
    }
    let labels = args
        .label
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.clone(), String::new()),
        })
        .collect();
    let network = match crate::container::NetworkMode::from(args.network.clone()) {
        crate::container::NetworkMode::Network(n) if n == "bridge" => {
            crate::container::NetworkMode::Default
        }
        crate::container::NetworkMode::Container(_) => {
            return Err(usage(format!(
                "network mode {:?} is not supported for builds (default, bridge, host, none or a network's name)",
                args.network
            )))
        }
        mode => mode,
    };
    let output = match &args.output {
        None => None,
        Some(spec) => Some(parse_output(spec)?),
    };
    let mut secrets = BTreeMap::new();
    for s in &args.secret {
        let mut id = None;
        let mut src = None;
        for part in s.split(',') {
            match part.split_once('=') {
                Some(("id", v)) => id = Some(v.to_string()),
                Some(("src" | "source", v)) => src = Some(v.to_string()),
                Some(("type", "file")) => {}
                _ => {
                    return Err(usage(format!(
                        "invalid secret {s:?}: id=ID,src=FILE is expected"
                    )))
                }
            }
        }
        let (Some(id), Some(src)) = (id, src) else {
            return Err(usage(format!(
                "invalid secret {s:?}: id=ID,src=FILE is expected"
            )));
        };
        let abs = std::path::absolute(Path::new(&src))?;
        secrets.insert(id, abs);
    }
    let options = BuildOptions {
        context,
        dockerfile_text: text,
        dockerfile_name: name,
        dockerfile_path: path,
        tags,
        build_args,
        target: args.target.clone(),
        no_cache: args.no_cache,
        pull: args.pull,
        labels,
        network,
        platform: args.platform.clone(),
        output,
        secrets,
    };
    let mut store = ctx.open_store()?;
    if args.check {
        let report = crate::build::check(&store, &options).map_err(into_exit)?;
        for w in &report.warnings {
            errln!("WARNING: {w}");
        }
        if report.warnings.is_empty() {
            outln!("Check complete, no warnings found.");
        } else {
            outln!(
                "Check complete, {} warnings have been found!",
                report.warnings.len()
            );
        }
        return Ok(0);
    }
    let mode = if args.quiet {
        "quiet"
    } else {
        args.progress.as_str()
    };
    let mut progress: Box<dyn Progress + Send> = match mode {
        "quiet" => Box::new(QuietProgress::default()),
        "plain" => Box::new(PlainProgress::new(std::io::stderr())),
        "tty" => Box::new(TtyProgress::new(terminal_width())),
        "auto" if std::io::stderr().is_terminal() => Box::new(TtyProgress::new(terminal_width())),
        "auto" => Box::new(PlainProgress::new(std::io::stderr())),
        other => {
            return Err(usage(format!(
                "invalid progress mode {other:?}: auto, plain, tty or quiet"
            )))
        }
    };
    // Stages may build at the same time, on threads: their RUN monitors
    // are exec'd, never a forked copy of this process.
    if let Ok(exe) = std::env::current_exe() {
        crate::container::exec_monitors(exe);
    }
    let outcome =
        crate::build::build(&mut store, &options, progress.as_mut()).map_err(into_exit)?;
    if let Some(id) = outcome.image_id {
        if let Some(f) = &args.iidfile {
            std::fs::write(f, id.to_string())?;
        }
        if args.quiet {
            outln!("{id}");
        }
    }
    Ok(0)
}

fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(100)
}

fn into_exit(e: BuildError) -> anyhow::Error {
    ExitError {
        code: e.exit_code(),
        message: e.to_string().replace('\n', " "),
    }
    .into()
}

fn parse_output(spec: &str) -> anyhow::Result<Output> {
    let mut kind = None;
    let mut dest = None;
    for part in spec.split(',') {
        match part.split_once('=') {
            Some(("type", v)) => kind = Some(v.to_string()),
            Some(("dest", v)) => dest = Some(v.to_string()),
            None if !spec.contains('=') => {
                // `-o DIR` is `type=local,dest=DIR`.
                kind = Some("local".into());
                dest = Some(part.to_string());
            }
            _ => {
                return Err(usage(format!(
                    "invalid output {spec:?}: type=local,dest=DIR or type=tar,dest=FILE"
                )))
            }
        }
    }
    let dest = dest.ok_or_else(|| usage(format!("invalid output {spec:?}: dest= is required")))?;
    match kind.as_deref() {
        Some("local") => Ok(Output::Local(PathBuf::from(dest))),
        Some("tar") => Ok(Output::Tar(PathBuf::from(dest))),
        other => Err(usage(format!(
            "output type {:?} is not supported (local or tar)",
            other.unwrap_or("")
        ))),
    }
}

pub fn run_builder(command: BuilderCommand, ctx: &Context) -> anyhow::Result<i32> {
    match command {
        BuilderCommand::Build(a) => run(*a, ctx),
        BuilderCommand::Prune(a) => run_prune(a, ctx),
    }
}

fn run_prune(args: PruneArgs, ctx: &Context) -> anyhow::Result<i32> {
    let mut until = None;
    for f in &args.filter {
        match f.split_once('=') {
            Some(("until", v)) => {
                let ns = crate::build::parse_duration(v).ok_or_else(|| {
                    usage(format!("invalid filter {f:?}: until=DURATION (e.g. 24h)"))
                })?;
                let now = chrono::Utc::now().timestamp();
                until = Some(now - ns / 1_000_000_000);
            }
            _ => {
                return Err(usage(format!(
                    "invalid filter {f:?}: only until= is supported"
                )))
            }
        }
    }
    let warning = if args.all {
        "WARNING! This will remove all build cache."
    } else {
        "WARNING! This will remove all dangling build cache."
    };
    if !args.force && !super::prune::confirm(warning)? {
        return Ok(0);
    }
    let store = ctx.open_store()?;
    let report = crate::build::prune_cache(&store, args.all, until).map_err(into_exit)?;
    outln!("Deleted build cache objects: {}", report.entries);
    outln!("Total reclaimed space: {}", human_size(report.bytes_freed));
    Ok(0)
}
