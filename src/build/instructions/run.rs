//! RUN: a container made from the parent state with the same launcher and
//! isolation as `strata run` (a writable strata-fs mount over the
//! parent's layers, served by the container's monitor), its output shown
//! as it comes, its exit awaited; then the upper directory becomes the
//! new layer (`container::files::upper::write_changes_tar`, O(changes)),
//! ingested straight into the store, and the container is removed. A
//! failure or an interrupt removes the container too.

use std::io::Write;
use std::os::fd::AsFd;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::super::cache::KeyBuilder;
use super::super::error::BuildError;
use super::super::execute::Builder;
use super::super::parse::Instruction;
use super::super::state::{commit_state, drop_temporary_image, publish_image, Step};
use super::super::tree::StateTree;
use super::mounts::{strip_launcher_paths, ParentEntries, RunMounts};
use crate::container::launch::rootfs::RootfsDirs;
use crate::container::{
    container_dir, create_container, remove_container, start_container, CreateOptions, Exit,
    NetworkMode,
};
use crate::image::{ingest_layer, Limits};

impl Builder<'_> {
    pub(in super::super) fn dispatch_run(&mut self, ins: &Instruction) -> Result<(), BuildError> {
        let argv = self.run_argv(ins);
        // BuildKit's RUN --network: `default` is the build's own network
        // (`--network`, the default bridge unless given).
        let network = match ins.flag_values("network").last() {
            None | Some(Some("default")) => self.options.network.clone(),
            Some(Some("host")) => NetworkMode::Host,
            Some(Some("none")) => NetworkMode::None,
            Some(v) => {
                return Err(self.error_at(
                    ins,
                    format!(
                        "RUN --network={}: not supported (default, host or none)",
                        v.unwrap_or("")
                    ),
                ))
            }
        };
        if let Some(Some(s)) = ins.flag_values("security").last() {
            if *s != "sandbox" {
                return Err(self.error_at(
                    ins,
                    format!("RUN --security={s}: only sandbox is supported"),
                ));
            }
        }
        let args = self.run_args();
        let shown_args: Vec<String> = args
            .iter()
            .filter(|(k, _)| !super::super::args::PROXY_ARGS.contains(&k.as_str()))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let mut created_by = argv.join(" ");
        if !shown_args.is_empty() {
            created_by = format!(
                "|{} {} {created_by}",
                shown_args.len(),
                shown_args.join(" ")
            );
        }
        let mut mounts = self.run_mounts(ins)?;
        let mut key = KeyBuilder::new(self.state.id.as_ref(), "RUN");
        for a in &argv {
            key.add(a.as_bytes());
        }
        key.add(format!("{args:?}").as_bytes());
        key.add(format!("{network:?}").as_bytes());
        key.add(mounts.key.as_bytes());
        key.add(
            serde_json::to_string(&self.state.config.config)
                .unwrap_or_default()
                .as_bytes(),
        );
        let key = key.finish();
        let text = format!("RUN {}", ins.text);
        let result = self.step(ins, key, |b, key, vertex| {
            b.prepare_mounts(ins, &mut mounts)?;
            b.run_container(ins, &argv, &args, network, &mounts, vertex)
                .and_then(|staging_layer| {
                    commit_state(
                        b.store,
                        b.state.config.clone(),
                        staging_layer,
                        Step {
                            created_by,
                            comment: None,
                            cache_key: key,
                            description: &text,
                        },
                    )
                })
        });
        mounts.release(self.store);
        result
    }

    /// The command a RUN runs: exec form as given; shell form through the
    /// shell; here-documents as the script (one alone) or appended to the
    /// command line (as a shell would read them).
    fn run_argv(&self, ins: &Instruction) -> Vec<String> {
        if let Some(list) = ins.json_args() {
            return list;
        }
        let mut argv = self.shell();
        if ins.heredocs.len() == 1
            && ins.args.trim_start().starts_with("<<")
            && ins.args.split_whitespace().count() == 1
        {
            argv.push(ins.heredocs[0].content.clone());
            return argv;
        }
        let mut script = ins.args.clone();
        for h in &ins.heredocs {
            script.push('\n');
            script.push_str(&h.content);
            script.push_str(&h.name);
        }
        argv.push(script);
        argv
    }

    /// Runs `argv` in a container over the current state; returns its
    /// changes as a staged layer (empty when nothing changed).
    fn run_container(
        &mut self,
        ins: &Instruction,
        argv: &[String],
        args: &[(String, String)],
        network: NetworkMode,
        mounts: &RunMounts,
        vertex: usize,
    ) -> Result<Option<(crate::store::Staging, crate::image::IngestedLayer)>, BuildError> {
        if self.state.id.is_none() {
            return Err(self.error_at(
                ins,
                "RUN on an empty scratch stage: there is nothing to run (no shell, no programs)",
            ));
        }
        let (image, made) = publish_image(self.store, &self.state, vec![])?;
        let run = self.state.run();
        let mut env = self.state.env();
        env.extend(args.iter().map(|(k, v)| format!("{k}={v}")));
        let options = CreateOptions {
            image: image.to_string(),
            cmd: argv.to_vec(),
            entrypoint: Some(String::new()),
            env,
            working_dir: run.working_dir.clone().filter(|w| !w.is_empty()),
            user: run.user.clone().filter(|u| !u.is_empty()),
            network,
            volumes: mounts
                .specs
                .iter()
                .map(|m| {
                    format!(
                        "{}:{}{}",
                        m.source,
                        m.destination,
                        if m.read_only { ":ro" } else { "" }
                    )
                })
                .collect(),
            // A RUN step runs no health check, whatever the image says.
            healthcheck: Some(crate::container::spec::HealthConfig {
                test: vec!["NONE".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = create_container(self.store, &options);
        let container = match created {
            Ok(c) => c,
            Err(e) => {
                if made {
                    drop_temporary_image(self.store, &image);
                }
                return Err(e.into());
            }
        };
        let outcome = self.run_attached(&container.id, vertex);
        let result = match outcome {
            Ok(0) => self.layer_from_upper(&container.id, mounts),
            Ok(code) => Err(BuildError::StepFailed {
                file: self.file.clone(),
                line: ins.line,
                command: argv.join(" "),
                code,
            }),
            Err(e) => Err(e),
        };
        let removed = remove_container(self.store, &container.id, true, true);
        if made {
            drop_temporary_image(self.store, &image);
        }
        let layer = result?;
        removed?;
        Ok(layer)
    }

    /// Starts the container attached, shows its output, waits; returns
    /// its exit code. An interrupt stops it.
    fn run_attached(&mut self, id: &str, vertex: usize) -> Result<i32, BuildError> {
        let mut started = match start_container(self.store, id, true) {
            Ok(s) => s,
            Err(crate::container::ContainerError::Launch { code, message }) => {
                self.progress
                    .output(vertex, format!("{message}\n").as_bytes());
                return Ok(code);
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(mut stream) = started.take_stream() {
            loop {
                let (stream_ready, signal_ready) = {
                    let [signals, stopped] = self.interrupt.fds();
                    let mut fds = [
                        PollFd::new(stream.as_fd(), PollFlags::POLLIN),
                        PollFd::new(signals, PollFlags::POLLIN),
                        PollFd::new(stopped, PollFlags::POLLIN),
                    ];
                    match poll(&mut fds, PollTimeout::NONE) {
                        Err(nix::errno::Errno::EINTR) => continue,
                        Err(e) => return Err(BuildError::io("poll", e.into())),
                        Ok(_) => {}
                    }
                    let ready = |f: &PollFd| f.any().unwrap_or(true);
                    (ready(&fds[0]), ready(&fds[1]) || ready(&fds[2]))
                };
                if signal_ready {
                    self.interrupt.check()?;
                }
                if stream_ready {
                    match crate::container::monitor::attach::read_frame(&mut stream) {
                        Ok(Some((kind, data)))
                            if kind == crate::container::monitor::attach::STDOUT
                                || kind == crate::container::monitor::attach::STDERR =>
                        {
                            self.progress.output(vertex, &data);
                        }
                        Ok(Some(_)) => {}
                        Ok(None) | Err(_) => break,
                    }
                }
            }
            let _ = std::io::stderr().flush();
        }
        match started.wait(self.store)? {
            Exit::Code(c) => Ok(c),
            Exit::Failed(code, message) => {
                self.progress
                    .output(vertex, format!("{message}\n").as_bytes());
                Ok(code)
            }
            Exit::Detached => Ok(0),
        }
    }

    /// The container's changes as a layer, staged in the store.
    fn layer_from_upper(
        &mut self,
        id: &str,
        mounts: &RunMounts,
    ) -> Result<Option<(crate::store::Staging, crate::image::IngestedLayer)>, BuildError> {
        let upper = RootfsDirs::of(&container_dir(self.store, id)).upper;
        let tree = StateTree::open(self.store, &self.state)?;
        let parent = ParentEntries::read(&tree, &mounts.targets)?;
        let image = crate::container::files::upper::ImagePaths::of_layers(
            self.store,
            self.state.layer_rows(self.store)?,
        )?;
        let rootless = crate::container::launch::userns::is_rootless();
        if rootless {
            // A forked child reads the upper directory (below): this
            // process has other threads (stages build at the same time),
            // so the child must not call SQLite (another thread may hold
            // one of its process-wide mutexes at the fork, forever in the
            // child): the image's tree is read before the fork.
            image.load_all()?;
        }
        let mut staging = self.store.begin_staging()?;
        let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| BuildError::io("pipe", e.into()))?;
        let mut reader = std::fs::File::from(read_end);
        let writer = std::fs::File::from(write_end);
        let targets = &mounts.targets;
        // Borrowed: dropped here, as its database connection closes
        // (never in the child, see above).
        let image = &image;
        let changes = move || -> Result<(), BuildError> {
            strip_launcher_paths(&upper, &parent, targets)?;
            let mut writer = std::io::BufWriter::with_capacity(1 << 20, writer);
            crate::container::files::changes_tar::write_changes_tar(&upper, image, &mut writer)?;
            writer.flush().map_err(|e| BuildError::io("layer", e))?;
            Ok(())
        };
        let store = &*self.store;
        if rootless {
            // An ordinary user's RUN: its upper directory holds files of
            // subordinate ids, read in a user namespace with the user's
            // maps, where they have the owners the step gave them
            // (container/files/inside.rs), as `commit` reads it.
            let child = crate::container::files::inside::spawn(
                crate::container::files::inside::Place::Fresh,
                move || {
                    changes()
                        .map_err(|e| crate::container::ContainerError::Unsupported(e.to_string()))
                },
            )?;
            let ingested = ingest_layer(store, &mut staging, &mut reader, &Limits::default());
            drop(reader);
            child.wait()?;
            return Ok(Some((staging, ingested?)));
        }
        let layer = std::thread::scope(|scope| {
            let producer = scope.spawn(changes);
            let ingested = ingest_layer(store, &mut staging, &mut reader, &Limits::default());
            drop(reader);
            let written = producer
                .join()
                .unwrap_or_else(|_| Err(BuildError::Invalid("the layer writer panicked".into())));
            written?;
            ingested.map_err(BuildError::from)
        })?;
        Ok(Some((staging, layer)))
    }
}
