//! Running a plan: each needed stage in order, each instruction a step
//! whose result (a [`State`]) is found in the cache or made and stored;
//! then the target's state becomes the image (or is exported).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::args::{parse_arg, platform_matches, platform_string, BuildArgs};
use super::cache::{self, KeyBuilder};
use super::context::BuildContext;
use super::error::BuildError;
use super::expand::{expand_word, Vars};
use super::interrupt::Interrupt;
use super::parse::{parse_dockerfile, Instruction, Keyword};
use super::plan::{plan, Plan, StageRef};
use super::progress::{Progress, Reports, SharedProgress};
use super::state::{commit_state, publish_image, State, Step};
use crate::container::NetworkMode;
use crate::digest::Digest;
use crate::reference::Reference;
use crate::store::Store;

/// `-o`: what to export instead of (or besides) making an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// `type=local,dest=DIR`: the target stage's files into DIR.
    Local(PathBuf),
    /// `type=tar,dest=FILE` (`-` for stdout): the files as a tar.
    Tar(PathBuf),
}

/// Everything a build takes.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The context directory; `None` for a Dockerfile alone (`-`).
    pub context: Option<PathBuf>,
    /// The Dockerfile's text and the name errors give it.
    pub dockerfile_text: String,
    pub dockerfile_name: String,
    /// Where the Dockerfile is (for `<Dockerfile>.dockerignore`).
    pub dockerfile_path: Option<PathBuf>,
    pub tags: Vec<Reference>,
    /// `--build-arg` values (those given as `K` already resolved).
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub no_cache: bool,
    pub pull: bool,
    pub labels: BTreeMap<String, String>,
    pub network: NetworkMode,
    pub platform: Option<String>,
    pub output: Option<Output>,
    /// `--secret id=ID,src=FILE`.
    pub secrets: BTreeMap<String, PathBuf>,
}

/// What a build made.
#[derive(Debug, Clone, Default)]
pub struct BuildOutcome {
    /// The image (none when only exported).
    pub image_id: Option<Digest>,
    pub steps: usize,
    pub cached: usize,
    pub warnings: Vec<String>,
}

/// What `--check` found.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    pub stages: usize,
    pub target: String,
    pub warnings: Vec<String>,
}

/// The running build's state, shared by the instructions (see
/// `instructions/`).
pub struct Builder<'a> {
    pub(super) store: &'a mut Store,
    pub(super) context: &'a BuildContext,
    pub(super) options: &'a BuildOptions,
    pub(super) file: String,
    pub(super) escape: char,
    pub(super) args: &'a BuildArgs,
    pub(super) plan: &'a Plan,
    pub(super) progress: &'a dyn Reports,
    pub(super) interrupt: &'a Interrupt,
    /// Each built stage's final state, by index.
    pub(super) built: Vec<Option<State>>,
    pub(super) steps: usize,
    pub(super) cached: usize,
    // The stage being built.
    pub(super) stage: usize,
    step: usize,
    total: usize,
    pub(super) state: State,
    /// The stage's declared ARGs and their values, in order.
    pub(super) stage_args: Vec<(String, Option<String>)>,
    /// CMD was set in this stage (ENTRYPOINT then keeps it).
    pub(super) cmd_set: bool,
}

fn at(file: &str, line: usize, message: impl Into<String>) -> BuildError {
    BuildError::At {
        file: file.to_string(),
        line,
        message: message.into(),
    }
}

/// Parses, plans and checks without building: the errors a build would
/// meet before its first step, and the warnings.
pub fn check(store: &Store, options: &BuildOptions) -> Result<CheckReport, BuildError> {
    let (dockerfile, plan, args) = prepare(options)?;
    let mut warnings = dockerfile.warnings.clone();
    warnings.extend(syntax_warning(&dockerfile.directives.syntax));
    let escape = dockerfile.directives.escape;
    let file = options.dockerfile_name.clone();
    for &i in &plan.needed {
        let stage = &plan.stages[i];
        if stage.base_stage.is_none() && stage.base != "scratch" && !options.pull {
            if let Err(e) = crate::image::resolve_image(store, &stage.base) {
                warnings.push(format!(
                    "{file}:{}: FROM {}: {e} (a build would pull it)",
                    stage.from.line, stage.base
                ));
            }
        }
        for ins in &stage.instructions {
            check_instruction(ins, escape, &file)?;
            if ins.keyword == Keyword::Arg {
                for (name, _) in parse_arg(ins, escape, &file)? {
                    let _ = args.given(&name);
                }
            }
        }
    }
    let unused = args.unconsumed();
    if !unused.is_empty() {
        warnings.push(format!(
            "one or more build-args {unused:?} were not consumed"
        ));
    }
    Ok(CheckReport {
        stages: plan.needed.len(),
        target: plan.stages[plan.target].label(),
        warnings,
    })
}

/// What every instruction must satisfy before it runs.
fn check_instruction(ins: &Instruction, escape: char, file: &str) -> Result<(), BuildError> {
    let allowed: &[&str] = match ins.keyword {
        Keyword::Copy => &["from", "chown", "chmod", "link", "parents", "exclude"],
        Keyword::Add => &["chown", "chmod", "link", "checksum", "keep-git-dir", "from"],
        Keyword::Run => &["mount", "network", "security"],
        Keyword::Healthcheck => &[
            "interval",
            "timeout",
            "start-period",
            "start-interval",
            "retries",
        ],
        _ => &[],
    };
    for (name, _) in &ins.flags {
        if !allowed.contains(&name.as_str()) {
            return Err(at(
                file,
                ins.line,
                format!("{}: unknown flag: --{name}", ins.keyword.name()),
            ));
        }
    }
    let t = ins.args.trim_start();
    if matches!(
        ins.keyword,
        Keyword::Run | Keyword::Cmd | Keyword::Entrypoint | Keyword::Shell
    ) && t.starts_with("[\"")
        && ins.json_args().is_none()
    {
        return Err(at(
            file,
            ins.line,
            format!(
                "{}: malformed JSON in the exec form: {}",
                ins.keyword.name(),
                ins.args
            ),
        ));
    }
    if ins.keyword == Keyword::Shell && ins.json_args().is_none() {
        return Err(at(
            file,
            ins.line,
            "SHELL requires the arguments to be in JSON form",
        ));
    }
    if matches!(ins.keyword, Keyword::Copy | Keyword::Add) {
        let words = super::expand::split_words(&ins.args, escape);
        if words.len() + ins.heredocs.len() < 2 && ins.json_args().is_none_or(|a| a.len() < 2) {
            return Err(at(
                file,
                ins.line,
                format!("{} requires at least two arguments, but only one was provided. Destination could not be determined", ins.keyword.name()),
            ));
        }
    }
    Ok(())
}

fn syntax_warning(syntax: &Option<String>) -> Option<String> {
    syntax.as_ref().map(|s| {
        format!("# syntax={s}: strata uses its built-in Dockerfile frontend (no external frontend is fetched)")
    })
}

fn prepare(
    options: &BuildOptions,
) -> Result<(super::parse::Dockerfile, Plan, BuildArgs), BuildError> {
    let host = super::args::Platform::host();
    if let Some(p) = &options.platform {
        for one in p.split(',') {
            if !platform_matches(&host, one.trim()) {
                return Err(BuildError::Invalid(format!(
                    "platform {one:?} is not supported: strata builds for this host's platform only ({})",
                    platform_string(&host)
                )));
            }
        }
    }
    let dockerfile = parse_dockerfile(&options.dockerfile_name, &options.dockerfile_text)?;
    let args = BuildArgs::new(options.build_args.clone(), host);
    let plan = plan(
        &dockerfile,
        &options.dockerfile_name,
        options.target.as_deref(),
        &args,
    )?;
    for &i in &plan.needed {
        for ins in &plan.stages[i].instructions {
            check_instruction(ins, dockerfile.directives.escape, &options.dockerfile_name)?;
        }
    }
    Ok((dockerfile, plan, args))
}

/// Builds: every needed stage (those that do not depend on each other
/// at the same time, see `schedule.rs`), then the target's image (tagged)
/// or its export. Nothing is tagged when a step fails; every container a
/// RUN made is gone either way.
pub fn build(
    store: &mut Store,
    options: &BuildOptions,
    progress: &mut (dyn Progress + Send),
) -> Result<BuildOutcome, BuildError> {
    let interrupt = Interrupt::install()?;
    let (dockerfile, plan, args) = prepare(options)?;
    let progress = SharedProgress::new(progress);
    let mut warnings = dockerfile.warnings.clone();
    warnings.extend(syntax_warning(&dockerfile.directives.syntax));
    for w in &warnings {
        progress.warning(w);
    }
    let scratch_dir;
    let context = match &options.context {
        Some(dir) => BuildContext::open(dir, options.dockerfile_path.as_deref())?,
        None => {
            scratch_dir = tempfile_dir(store)?;
            BuildContext::empty(scratch_dir.path())
        }
    };
    let shared = Shared {
        context: &context,
        options,
        file: options.dockerfile_name.clone(),
        escape: dockerfile.directives.escape,
        args: &args,
        plan: &plan,
        progress: &progress,
        interrupt: &interrupt,
    };
    let id = progress
        .vertex(&("[internal] load build definition from ".to_string() + &options.dockerfile_name));
    progress.note(
        id,
        &format!(
            "transferring dockerfile: {}B done",
            options.dockerfile_text.len()
        ),
    );
    progress.done(id);
    let stages = super::schedule::build_stages(store, &shared)?;
    let mut b = Builder::new(store, &shared, stages.built);
    b.steps = stages.steps;
    b.cached = stages.cached;
    let unused = args.unconsumed();
    if !unused.is_empty() {
        let w = format!("One or more build-args {unused:?} were not consumed");
        b.progress.warning(&w);
        warnings.push(w);
    }
    let mut target = b.built[plan.target]
        .clone()
        .ok_or_else(|| BuildError::Invalid("the target stage was not built".into()))?;
    if !options.labels.is_empty() {
        target = b.apply_labels(target)?;
    }
    let mut outcome = BuildOutcome {
        image_id: None,
        steps: b.steps,
        cached: b.cached,
        warnings,
    };
    if let Some(output) = &options.output {
        let id = b.vertex("exporting to client".into());
        super::export::export_state(b.store, &target, output)?;
        b.progress.done(id);
        return Ok(outcome);
    }
    let id = b.vertex("exporting to image".into());
    let (image, _) = publish_image(b.store, &target, options.tags.clone())?;
    b.progress.note(id, &format!("writing image {image} done"));
    for t in &options.tags {
        b.progress.note(id, &format!("naming to {t} done"));
    }
    b.progress.done(id);
    outcome.image_id = Some(image);
    Ok(outcome)
}

/// What the builders of all stages share (each has its own store
/// connection).
pub(super) struct Shared<'a> {
    pub context: &'a BuildContext,
    pub options: &'a BuildOptions,
    pub file: String,
    pub escape: char,
    pub args: &'a BuildArgs,
    pub plan: &'a Plan,
    pub progress: &'a dyn Reports,
    pub interrupt: &'a Interrupt,
}

/// A directory under the store's `tmp/`, removed on drop.
fn tempfile_dir(store: &Store) -> Result<TempDir, BuildError> {
    let path = store
        .tmp_dir()
        .join(format!("build-empty-{:016x}", rand::random::<u64>()));
    std::fs::create_dir(&path).map_err(|e| BuildError::io(&path, e))?;
    Ok(TempDir(path))
}

struct TempDir(PathBuf);
impl TempDir {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl<'a> Builder<'a> {
    /// A builder on `store`, given the stages built so far.
    pub(super) fn new(
        store: &'a mut Store,
        shared: &Shared<'a>,
        built: Vec<Option<State>>,
    ) -> Builder<'a> {
        let host = &shared.args.platform;
        Builder {
            store,
            context: shared.context,
            options: shared.options,
            file: shared.file.clone(),
            escape: shared.escape,
            args: shared.args,
            plan: shared.plan,
            progress: shared.progress,
            interrupt: shared.interrupt,
            built,
            steps: 0,
            cached: 0,
            stage: 0,
            step: 0,
            total: 0,
            state: State::scratch(&host.os, &host.architecture, host.variant.clone()),
            stage_args: vec![],
            cmd_set: false,
        }
    }

    /// A new progress vertex.
    pub(super) fn vertex(&mut self, name: String) -> usize {
        self.progress.vertex(&name)
    }

    fn step_label(&self) -> String {
        let stage = &self.plan.stages[self.stage];
        if self.plan.stages.len() == 1 {
            format!("{}/{}", self.step, self.total)
        } else {
            format!("{} {}/{}", stage.label(), self.step, self.total)
        }
    }

    pub(super) fn build_stage(&mut self, index: usize) -> Result<(), BuildError> {
        let stage = &self.plan.stages[index];
        self.stage = index;
        self.step = 1;
        self.total = stage.instructions.len() + 1;
        self.stage_args.clear();
        self.cmd_set = false;
        self.interrupt.check()?;
        let from_text = format!("FROM {}", stage.from.text);
        let id = self.vertex(format!("[{}] {}", self.step_label(), from_text));
        let state = match self.base_state(index) {
            Ok(s) => s,
            Err(e) => {
                self.progress.error(id, &e.to_string());
                return Err(e);
            }
        };
        self.progress.done(id);
        self.state = state;
        self.state.ensure_path();
        // ONBUILD triggers of the base run first.
        let triggers = self.state.run().on_build.unwrap_or_default();
        if !triggers.is_empty() {
            self.state.run_mut().on_build = None;
            let line = stage.from.line;
            for trigger in triggers {
                let parsed = parse_dockerfile(&self.file, &trigger).map_err(|e| {
                    at(
                        &self.file,
                        line,
                        format!("ONBUILD trigger {trigger:?} of the base image: {e}"),
                    )
                })?;
                for mut ins in parsed.instructions {
                    ins.line = line;
                    if matches!(
                        ins.keyword,
                        Keyword::From | Keyword::Onbuild | Keyword::Maintainer
                    ) {
                        return Err(at(
                            &self.file,
                            line,
                            format!("{} isn't allowed as an ONBUILD trigger", ins.keyword.name()),
                        ));
                    }
                    self.dispatch(&ins)?;
                }
            }
        }
        let instructions = self.plan.stages[index].instructions.clone();
        for ins in &instructions {
            self.step += 1;
            self.dispatch(ins)?;
        }
        self.built[index] = Some(self.state.clone());
        Ok(())
    }

    /// The state a stage starts from: an earlier stage, scratch, or an
    /// image (pulled when missing or with `--pull`).
    fn base_state(&mut self, index: usize) -> Result<State, BuildError> {
        let stage = &self.plan.stages[index];
        if let Some(p) = &stage.platform {
            if !platform_matches(&self.args.platform, p) {
                return Err(at(
                    &self.file,
                    stage.from.line,
                    format!(
                        "FROM --platform={p}: strata builds for this host's platform only ({})",
                        platform_string(&self.args.platform)
                    ),
                ));
            }
        }
        if let Some(b) = stage.base_stage {
            return self.built[b].clone().ok_or_else(|| {
                at(
                    &self.file,
                    stage.from.line,
                    format!("stage {} was not built", stage.base),
                )
            });
        }
        if stage.base.eq_ignore_ascii_case("scratch") {
            let p = &self.args.platform;
            return Ok(State::scratch(&p.os, &p.architecture, p.variant.clone()));
        }
        let id = self.base_image(&stage.base, stage.from.line)?;
        State::load(self.store, &id)
    }

    /// A base image by name: local unless `--pull`, else pulled.
    pub(super) fn base_image(&mut self, name: &str, line: usize) -> Result<Digest, BuildError> {
        if !self.options.pull {
            if let Ok(id) = crate::image::resolve_image(self.store, name) {
                return Ok(id);
            }
        }
        let reference = Reference::parse(name).map_err(|e| {
            at(
                &self.file,
                line,
                format!("FROM {name}: invalid reference: {e}"),
            )
        })?;
        let options = crate::registry::PullOptions::default();
        let pulled = crate::registry::pull(self.store, &reference, false, &options, &|_| {});
        match pulled {
            Ok(outcomes) => outcomes
                .first()
                .map(|o| o.image_id)
                .ok_or_else(|| at(&self.file, line, format!("FROM {name}: nothing was pulled"))),
            Err(e) => {
                // With --pull, a local copy still serves when the registry
                // cannot be reached (as Docker falls back).
                if let Ok(id) = crate::image::resolve_image(self.store, name) {
                    self.progress.warning(&format!(
                        "FROM {name}: pull failed, using the local image: {e}"
                    ));
                    return Ok(id);
                }
                Err(at(
                    &self.file,
                    line,
                    format!("FROM {name}: no such image here, and pulling it failed: {e}"),
                ))
            }
        }
    }

    /// The variables an instruction sees: the stage's ARGs, overridden
    /// by the environment.
    pub(super) fn vars(&self) -> Vars {
        let mut vars: Vars = self
            .stage_args
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect();
        for e in self.state.env() {
            if let Some((k, v)) = e.split_once('=') {
                vars.insert(k.to_string(), v.to_string());
            }
        }
        vars
    }

    /// ARG values a RUN gets in its environment (not overridden by ENV),
    /// sorted by name; proxies included.
    pub(super) fn run_args(&self) -> Vec<(String, String)> {
        let env: Vec<String> = self
            .state
            .env()
            .iter()
            .map(|e| e.split('=').next().unwrap_or("").to_string())
            .collect();
        let mut out: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in &self.stage_args {
            if let Some(v) = v {
                if !env.contains(k) {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
        for (k, v) in self.args.proxies() {
            out.entry(k).or_insert(v);
        }
        out.into_iter().collect()
    }

    /// Expands one word for instruction `ins`.
    pub(super) fn expand(&self, ins: &Instruction, text: &str) -> Result<String, BuildError> {
        expand_word(text, &self.vars(), self.escape).map_err(|e| {
            at(
                &self.file,
                ins.line,
                format!("{} {}: {e}", ins.keyword.name(), ins.args),
            )
        })
    }

    pub(super) fn error_at(&self, ins: &Instruction, message: impl Into<String>) -> BuildError {
        at(&self.file, ins.line, message)
    }

    /// The shell for shell forms: SHELL's, or `/bin/sh -c`.
    pub(super) fn shell(&self) -> Vec<String> {
        self.state
            .run()
            .shell
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }

    /// Runs one step: shows it, takes its result from the cache when the
    /// key is there (unless `--no-cache`), else runs `work`.
    pub(super) fn step(
        &mut self,
        ins: &Instruction,
        key: String,
        work: impl FnOnce(&mut Self, &str, usize) -> Result<State, BuildError>,
    ) -> Result<(), BuildError> {
        self.interrupt.check()?;
        let shown = format!(
            "[{}] {} {}",
            self.step_label(),
            ins.keyword.name(),
            ins.text
        );
        let id = self.vertex(shown);
        self.steps += 1;
        if !self.options.no_cache {
            if let Some(digest) = cache::lookup(self.store, &key)? {
                let state = State::load(self.store, &digest)?;
                if cache::layers_present(self.store, &state.config.rootfs.diff_ids)? {
                    self.state = state;
                    self.cached += 1;
                    self.progress.cached(id);
                    return Ok(());
                }
            }
        }
        match work(self, &key, id) {
            Ok(state) => {
                self.state = state;
                self.progress.done(id);
                Ok(())
            }
            Err(e) => {
                self.progress.error(id, &e.to_string());
                Err(e)
            }
        }
    }

    /// A step that only changes the config: `change` edits a copy of it.
    pub(super) fn metadata_step(
        &mut self,
        ins: &Instruction,
        history_text: String,
        change: impl FnOnce(&mut crate::image::oci::RunConfig, &mut crate::image::oci::ImageConfig),
    ) -> Result<(), BuildError> {
        self.metadata_step_as(ins, history_text, "#(nop)  ", change)
    }

    /// [`Builder::metadata_step`] with the history's `#(nop)` prefix given.
    pub(super) fn metadata_step_as(
        &mut self,
        ins: &Instruction,
        history_text: String,
        nop: &str,
        change: impl FnOnce(&mut crate::image::oci::RunConfig, &mut crate::image::oci::ImageConfig),
    ) -> Result<(), BuildError> {
        let mut config = self.state.config.clone();
        let mut run = config.config.take().unwrap_or_default();
        change(&mut run, &mut config);
        config.config = Some(run);
        let canonical = serde_json::to_string(&config.config).unwrap_or_default();
        let mut key = KeyBuilder::new(self.state.id.as_ref(), &history_text);
        key.add(canonical.as_bytes());
        key.add(config.author.clone().unwrap_or_default().as_bytes());
        let key = key.finish();
        let created_by = format!("{} {nop}{history_text}", self.shell().join(" "));
        self.step(ins, key, move |b, key, _| {
            commit_state(
                b.store,
                config,
                None,
                Step {
                    created_by,
                    comment: None,
                    cache_key: key,
                    description: &history_text,
                },
            )
        })
    }

    /// `--label`s given to the build: one more metadata state.
    fn apply_labels(&mut self, state: State) -> Result<State, BuildError> {
        let mut config = state.config.clone();
        let run = config.config.get_or_insert_with(Default::default);
        let labels = run.labels.get_or_insert_with(Default::default);
        for (k, v) in &self.options.labels {
            labels.insert(k.clone(), v.clone());
        }
        let text = format!(
            "LABEL {}",
            self.options
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let key = {
            let mut k = KeyBuilder::new(state.id.as_ref(), &text);
            k.add(b"--label");
            k.finish()
        };
        if let Some(d) = cache::lookup(self.store, &key)? {
            if !self.options.no_cache {
                return State::load(self.store, &d);
            }
        }
        let created_by = format!("{} #(nop)  {text}", self.shell().join(" "));
        commit_state(
            self.store,
            config,
            None,
            Step {
                created_by,
                comment: None,
                cache_key: &key,
                description: &text,
            },
        )
    }

    /// Resolves `--from=VALUE` to a state: an earlier stage's, or an
    /// image's (pulled if missing).
    pub(super) fn state_of_from_flag(
        &mut self,
        ins: &Instruction,
        value: &str,
    ) -> Result<State, BuildError> {
        match self
            .plan
            .resolve_from(value, self.stage, &self.file, ins.line)?
        {
            StageRef::Stage(i) => self.built[i]
                .clone()
                .ok_or_else(|| self.error_at(ins, format!("stage {value} was not built"))),
            StageRef::Image(name) => {
                let id = self.base_image(&name, ins.line)?;
                State::load(self.store, &id)
            }
        }
    }

    fn dispatch(&mut self, ins: &Instruction) -> Result<(), BuildError> {
        match ins.keyword {
            Keyword::Arg => self.dispatch_arg(ins),
            Keyword::Env => self.dispatch_env(ins),
            Keyword::Label => self.dispatch_label(ins),
            Keyword::Maintainer => self.dispatch_maintainer(ins),
            Keyword::Expose => self.dispatch_expose(ins),
            Keyword::Volume => self.dispatch_volume(ins),
            Keyword::Cmd => self.dispatch_cmd(ins),
            Keyword::Entrypoint => self.dispatch_entrypoint(ins),
            Keyword::Stopsignal => self.dispatch_stopsignal(ins),
            Keyword::Healthcheck => self.dispatch_healthcheck(ins),
            Keyword::Shell => self.dispatch_shell(ins),
            Keyword::Onbuild => self.dispatch_onbuild(ins),
            Keyword::User => self.dispatch_user(ins),
            Keyword::Workdir => self.dispatch_workdir(ins),
            Keyword::Run => self.dispatch_run(ins),
            Keyword::Copy | Keyword::Add => self.dispatch_copy(ins),
            Keyword::From => Err(self.error_at(ins, "FROM inside a stage")),
        }
    }
}
