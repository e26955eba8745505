//! `RUN --mount=...`: what a RUN's container gets mounted that never goes
//! into its layer. `type=cache` (a directory under `<root>/build-mounts/`
//! that persists across builds, by `id`, default the target; `sharing=`
//! `shared`, `locked` or `private` through a flock per directory),
//! `type=bind` (from the context, or `from=` a stage or image, read-only,
//! or with `rw` writable into a throw-away overlay),
//! `type=tmpfs` (an empty directory for the RUN only) and `type=secret`
//! (a `--secret` file, read-only, at `/run/secrets/ID` by default). The
//! mount points the launcher had to create are taken out of the upper
//! directory before the layer is made.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use super::super::error::BuildError;
use super::super::execute::Builder;
use super::super::parse::Instruction;
use super::super::state::{drop_temporary_image, publish_image};
use super::super::tree::{StateTree, TreeEntry};
use crate::container::MountSpec;
use crate::digest::Digest;

/// The mounts of one RUN, ready for the container, and what to undo.
#[derive(Default)]
pub struct RunMounts {
    pub specs: Vec<MountSpec>,
    /// Destinations, to take out of the layer afterwards.
    pub targets: Vec<String>,
    /// What the cache key knows of them.
    pub key: String,
    /// Temporary directories to remove.
    temp_dirs: Vec<PathBuf>,
    /// Image mounts (for `from=`) to unmount, and temporary images.
    image_mounts: Vec<PathBuf>,
    temp_images: Vec<Digest>,
    /// Overlays of `type=bind,rw` mounts, unmounted first.
    overlays: Vec<PathBuf>,
    /// The cache directories' locks, held until the RUN is over.
    locks: Vec<Flock<File>>,
    /// What [`Builder::prepare_mounts`] still has to make, in order.
    pending: Vec<Pending>,
}

/// A mount planned (its part of the key known) and made only when the
/// RUN runs: a cached RUN takes no lock, mounts no image, makes no
/// directory.
enum Pending {
    Cache {
        id: String,
        sharing: Sharing,
        mode: u32,
        uid: Option<u32>,
        gid: Option<u32>,
        target: String,
    },
    Tmpfs {
        target: String,
    },
    /// A host path: a context path or a secret file.
    Host {
        path: PathBuf,
        target: String,
        writable: bool,
    },
    /// A path of a stage or image (`from=`), mounted for the RUN.
    Image {
        state: Box<super::super::state::State>,
        from: String,
        source: String,
        target: String,
        writable: bool,
        /// The `--mount` value, for errors.
        value: String,
    },
}

/// `type=cache,sharing=...`: how concurrent users of one cache id meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// All use the directory at the same time (the default).
    Shared,
    /// One at a time: the next waits until the RUN holding it ends.
    Locked,
    /// A user that finds it busy gets another directory of the same id.
    Private,
}

/// Instances of one cache id `sharing=private` may make, at most.
const PRIVATE_INSTANCES: usize = 64;

impl Builder<'_> {
    pub(in super::super) fn run_mounts(
        &mut self,
        ins: &Instruction,
    ) -> Result<RunMounts, BuildError> {
        let mut out = RunMounts::default();
        for value in ins.flag_values("mount") {
            let value = self.expand(ins, value.unwrap_or_default())?;
            let mut kind = "bind".to_string();
            let mut opts: Vec<(String, String)> = Vec::new();
            for part in value.split(',').filter(|p| !p.is_empty()) {
                let (k, v) = part.split_once('=').unwrap_or((part, "true"));
                if k == "type" {
                    kind = v.to_string();
                } else {
                    opts.push((k.to_string(), v.to_string()));
                }
            }
            let get = |k: &str| {
                opts.iter()
                    .rev()
                    .find(|(n, _)| n == k || (k == "target" && (n == "dst" || n == "destination")))
                    .map(|(_, v)| v.clone())
            };
            let target = get("target");
            let need_target = || {
                target.clone().ok_or_else(|| {
                    self.error_at(ins, format!("RUN --mount={value}: a target is required"))
                })
            };
            let workdir = self.state.run().working_dir.unwrap_or_default();
            match kind.as_str() {
                "cache" => {
                    let t = super::workdir::join_clean(&workdir, &need_target()?);
                    let id = get("id").unwrap_or_else(|| t.clone());
                    let sharing = match get("sharing").as_deref() {
                        None | Some("shared") => Sharing::Shared,
                        Some("locked") => Sharing::Locked,
                        Some("private") => Sharing::Private,
                        Some(other) => {
                            return Err(self.error_at(
                                ins,
                                format!("RUN --mount={value}: sharing={other}: not a sharing mode (shared, private or locked)"),
                            ))
                        }
                    };
                    out.key.push_str(&format!("cache:{id}:{t};"));
                    out.pending.push(Pending::Cache {
                        id,
                        sharing,
                        mode: get("mode")
                            .and_then(|m| u32::from_str_radix(&m, 8).ok())
                            .unwrap_or(0o755),
                        uid: get("uid").and_then(|u| u.parse().ok()),
                        gid: get("gid").and_then(|g| g.parse().ok()),
                        target: t.clone(),
                    });
                    out.targets.push(t);
                }
                "tmpfs" => {
                    let t = super::workdir::join_clean(&workdir, &need_target()?);
                    out.key.push_str(&format!("tmpfs:{t};"));
                    out.pending.push(Pending::Tmpfs { target: t.clone() });
                    out.targets.push(t);
                }
                "secret" => {
                    let id = get("id").or_else(|| {
                        target
                            .as_ref()
                            .and_then(|t| t.rsplit('/').next().map(str::to_string))
                    });
                    let Some(id) = id else {
                        return Err(self.error_at(
                            ins,
                            format!("RUN --mount={value}: a secret needs an id or a target"),
                        ));
                    };
                    let t = target
                        .clone()
                        .unwrap_or_else(|| format!("/run/secrets/{id}"));
                    let t = super::workdir::join_clean(&workdir, &t);
                    let required = get("required").is_some_and(|r| r == "true");
                    match self.options.secrets.get(&id) {
                        Some(src) => {
                            if !src.is_file() {
                                return Err(self.error_at(
                                    ins,
                                    format!("secret {id}: {} is not a file", src.display()),
                                ));
                            }
                            out.pending.push(Pending::Host {
                                path: src.clone(),
                                target: t.clone(),
                                writable: false,
                            });
                            out.targets.push(t.clone());
                            // The secret's content is not part of the key:
                            // it must never decide what is reused or shown.
                            out.key.push_str(&format!("secret:{id}:{t};"));
                        }
                        None if required => {
                            return Err(self.error_at(
                                ins,
                                format!(
                                    "secret {id} not found: pass it with --secret id={id},src=FILE"
                                ),
                            ));
                        }
                        None => {}
                    }
                }
                "bind" => {
                    let t = super::workdir::join_clean(&workdir, &need_target()?);
                    let source = get("source").or_else(|| get("src")).unwrap_or_default();
                    // `rw` (`readwrite`): the RUN may write, into a
                    // throw-away overlay over the source (BuildKit's
                    // semantics): nothing reaches the context, the other
                    // stage or the layer. Read-only otherwise.
                    let writable = get("rw")
                        .or_else(|| get("readwrite"))
                        .is_some_and(|v| v == "true");
                    match get("from") {
                        Some(from) => {
                            let state = self.state_of_from_flag(ins, &from)?;
                            out.key.push_str(&format!(
                                "bind:{from}:{}:{source}:{t};",
                                state.id.map(|d| d.to_string()).unwrap_or_default()
                            ));
                            out.pending.push(Pending::Image {
                                state: Box::new(state),
                                from,
                                source,
                                target: t.clone(),
                                writable,
                                value: value.clone(),
                            });
                        }
                        None => {
                            let path = self
                                .context
                                .resolve(&source)
                                .map_err(|e| self.error_at(ins, format!("RUN --mount={value}: {e}")))?
                                .ok_or_else(|| self.error_at(ins, format!("RUN --mount={value}: {source} not found in the build context")))?;
                            out.key.push_str(&format!(
                                "bind:context:{source}:{t}:{};",
                                context_fingerprint(&path)
                            ));
                            out.pending.push(Pending::Host {
                                path,
                                target: t.clone(),
                                writable,
                            });
                        }
                    }
                    if writable {
                        out.key.push_str("rw;");
                    }
                    out.targets.push(t);
                }
                other => {
                    return Err(self.error_at(ins, format!("RUN --mount: unsupported mount type {other:?} (bind, cache, tmpfs or secret)")));
                }
            }
        }
        Ok(out)
    }
}

impl Builder<'_> {
    /// Makes the mounts [`Builder::run_mounts`] planned (when the RUN is
    /// not cached): cache directories under their locks, temporary
    /// directories, image mounts, throw-away overlays.
    pub(in super::super) fn prepare_mounts(
        &mut self,
        ins: &Instruction,
        out: &mut RunMounts,
    ) -> Result<(), BuildError> {
        for planned in std::mem::take(&mut out.pending) {
            let (host, target, writable) = match planned {
                Pending::Cache {
                    id,
                    sharing,
                    mode,
                    uid,
                    gid,
                    target,
                } => {
                    let (dir, lock) = self.cache_dir(&id, sharing)?;
                    out.locks.push(lock);
                    if !dir.exists() {
                        make_cache_dir(&dir, mode, uid, gid).map_err(|e| {
                            self.error_at(
                                ins,
                                format!("RUN --mount=type=cache,target={target}: {e}"),
                            )
                        })?;
                    }
                    out.specs.push(bind(&dir, &target, false));
                    continue;
                }
                Pending::Tmpfs { target } => {
                    let dir = self
                        .store
                        .tmp_dir()
                        .join(format!("build-tmpfs-{:016x}", rand::random::<u64>()));
                    std::fs::create_dir_all(&dir).map_err(|e| BuildError::io(&dir, e))?;
                    out.temp_dirs.push(dir.clone());
                    out.specs.push(bind(&dir, &target, false));
                    continue;
                }
                Pending::Host {
                    path,
                    target,
                    writable,
                } => (path, target, writable),
                Pending::Image {
                    state,
                    from,
                    source,
                    target,
                    writable,
                    value,
                } => {
                    let dir = self
                        .store
                        .tmp_dir()
                        .join(format!("build-from-{:016x}", rand::random::<u64>()));
                    let inside = StateTree::open(self.store, &state)?;
                    let not_found = || {
                        self.error_at(
                            ins,
                            format!("RUN --mount={value}: {source} not found in {from}"),
                        )
                    };
                    if crate::container::launch::userns::is_rootless() {
                        // An ordinary user's FUSE mount is the host's
                        // (fusermount3): in the RUN's user namespace its
                        // owners would show as nobody and its files of
                        // mode 0600 could not be read. The RUN gets a
                        // copy made in a user namespace with the user's
                        // maps instead, already a throw-away one for `rw`.
                        out.temp_dirs.push(dir.clone());
                        let copy = copy_state_tree(&inside, &format!("/{source}"), &dir)
                            .map_err(|e| self.error_at(ins, format!("RUN --mount={value}: {e}")))?
                            .ok_or_else(not_found)?;
                        out.specs.push(bind(&copy, &target, !writable));
                        continue;
                    }
                    let (image, made) = publish_image(self.store, &state, vec![])?;
                    if made {
                        out.temp_images.push(image);
                    }
                    // Mounted once, for this RUN: a view (a kernel
                    // mount's) would cost more to build than it saves.
                    let options = crate::mount::MountOptions {
                        driver: crate::mount::Driver::Fuse,
                        ..Default::default()
                    };
                    let mounted = crate::mount::mount_image(
                        self.store,
                        &image.to_string(),
                        Some(&dir),
                        &options,
                    )
                    .map_err(|e| self.error_at(ins, format!("RUN --mount={value}: {e}")))?;
                    out.image_mounts.push(mounted.clone());
                    out.temp_dirs.push(dir);
                    let resolved = inside
                        .resolve(&format!("/{source}"), true)?
                        .ok_or_else(not_found)?;
                    (mounted.join(resolved.0), target, writable)
                }
            };
            let host = if writable {
                let scratch = self
                    .store
                    .tmp_dir()
                    .join(format!("build-rw-{:016x}", rand::random::<u64>()));
                out.temp_dirs.push(scratch.clone());
                let copy = throwaway_copy(&host, &scratch)
                    .map_err(|e| self.error_at(ins, format!("RUN --mount target={target}: {e}")))?;
                if copy.is_dir() {
                    out.overlays.push(copy.clone());
                }
                copy
            } else {
                host
            };
            out.specs.push(bind(&host, &target, !writable));
        }
        Ok(())
    }
}

impl RunMounts {
    /// Unmounts and removes what the mounts needed (not the caches).
    pub fn release(&mut self, store: &crate::store::Store) {
        for o in self.overlays.drain(..) {
            let _ = crate::container::launch::rootfs::unmount_path(&o);
        }
        self.locks.clear();
        for m in self.image_mounts.drain(..) {
            let _ = crate::mount::unmount(store, &m.to_string_lossy());
        }
        for d in self.temp_dirs.drain(..) {
            // What the RUN wrote there may be of its other owners (an
            // ordinary user's subordinate ids).
            let _ = crate::container::launch::userns::remove_dir_of_any_owner(&d);
        }
        for i in self.temp_images.drain(..) {
            drop_temporary_image(store, &i);
        }
    }
}

impl Builder<'_> {
    /// The directory of cache `id` for one RUN and the lock that keeps
    /// it: `shared` takes the lock shared (never waits for another shared
    /// user), `locked` exclusively, waiting while another RUN (of this
    /// build or another process) holds it; `private` takes the first
    /// instance of the id nobody holds (`cache-<hash>`, then
    /// `cache-<hash>-1`...), which later builds find again.
    fn cache_dir(&self, id: &str, sharing: Sharing) -> Result<(PathBuf, Flock<File>), BuildError> {
        let base = self.store.root().join("build-mounts");
        std::fs::create_dir_all(&base).map_err(|e| BuildError::io(&base, e))?;
        let name = format!("cache-{}", &Digest::of(id.as_bytes()).hex()[..24]);
        let instances = if sharing == Sharing::Private {
            PRIVATE_INSTANCES
        } else {
            1
        };
        for n in 0..instances {
            let dir_name = if n == 0 {
                name.clone()
            } else {
                format!("{name}-{n}")
            };
            let lock_path = base.join(format!("{dir_name}.lock"));
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(&lock_path)
                .map_err(|e| BuildError::io(&lock_path, e))?;
            let arg = match sharing {
                Sharing::Shared => FlockArg::LockSharedNonblock,
                Sharing::Locked | Sharing::Private => FlockArg::LockExclusiveNonblock,
            };
            let mut file = file;
            loop {
                match Flock::lock(file, arg) {
                    Ok(lock) => return Ok((base.join(dir_name), lock)),
                    Err((f, nix::errno::Errno::EWOULDBLOCK)) => {
                        if sharing == Sharing::Private {
                            break;
                        }
                        // Shared waits only for a locked user; locked for
                        // anyone. Ctrl-C and a failing sibling stage still
                        // stop the wait.
                        self.interrupt.check()?;
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        file = f;
                    }
                    Err((_, e)) => return Err(BuildError::io(&lock_path, e.into())),
                }
            }
        }
        Err(BuildError::Invalid(format!(
            "RUN --mount=type=cache,id={id},sharing=private: all {PRIVATE_INSTANCES} instances of the cache are in use"
        )))
    }
}

/// A new cache directory with the mode and owners `mode=`, `uid=` and
/// `gid=` ask for. An ordinary user's RUN sees its uid 1000 as a
/// subordinate id, so the chown is done in a user namespace with the
/// user's maps (where a user without a subordinate range cannot give it
/// away: the error says so); a directory not made whole is removed.
fn make_cache_dir(
    dir: &Path,
    mode: u32,
    uid: Option<u32>,
    gid: Option<u32>,
) -> Result<(), BuildError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).map_err(|e| BuildError::io(dir, e))?;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode));
    if uid.is_none() && gid.is_none() {
        return Ok(());
    }
    let owned = dir.to_path_buf();
    let chown = move || {
        std::os::unix::fs::chown(&owned, uid, gid)
            .map_err(|e| crate::container::ContainerError::io(&owned, e))
    };
    let chowned = if crate::container::launch::userns::is_rootless() {
        crate::container::files::inside::spawn(crate::container::files::inside::Place::Fresh, chown)
            .and_then(|child| child.wait())
    } else {
        chown()
    };
    chowned.map_err(|e| {
        let _ = std::fs::remove_dir(dir);
        BuildError::Invalid(format!(
            "uid={} gid={}: {e}",
            uid.map_or("-".into(), |u| u.to_string()),
            gid.map_or("-".into(), |g| g.to_string())
        ))
    })
}

/// For an ordinary user's `RUN --mount=type=bind,from=...`: `source` of
/// a stage or image copied into `dir` (made here) by a child in a user
/// namespace with the user's maps, so that the RUN sees the owners,
/// modes and contents the stage has. The tar comes from the store's
/// index ([`super::super::export::write_tar`]); device nodes are left
/// out (a user namespace may not make them). Returns the path to bind:
/// `dir` for a directory, the file in it for anything else; None if
/// `source` is not there.
fn copy_state_tree(
    tree: &StateTree,
    source: &str,
    dir: &Path,
) -> Result<Option<PathBuf>, BuildError> {
    use super::super::tree::EntryKind;
    let mut entries = tree.walk(source, true)?;
    entries.retain(|e| !matches!(e.kind, EntryKind::CharDevice(_) | EntryKind::BlockDevice(_)));
    let top = entries
        .iter()
        .position(|e| e.rel.is_empty())
        .map(|i| entries.remove(i));
    let Some(top) = top else {
        return Ok(None);
    };
    std::fs::create_dir(dir).map_err(|e| BuildError::io(dir, e))?;
    let bound = if top.kind == EntryKind::Dir {
        dir.to_path_buf()
    } else {
        entries = vec![super::super::tree::TreeEntry {
            rel: "file".into(),
            ..top.clone()
        }];
        dir.join("file")
    };
    let (reader, writer) = crate::container::files::inside::pipe()?;
    let into = dir.to_path_buf();
    let unpack = move || {
        let fail = |e: std::io::Error| crate::container::ContainerError::io(&into, e);
        let mut archive = tar::Archive::new(std::io::BufReader::new(reader));
        archive.set_preserve_ownerships(true);
        archive.set_preserve_permissions(true);
        archive.set_preserve_mtime(true);
        archive.unpack(&into).map_err(fail)?;
        if top.kind == EntryKind::Dir {
            std::os::unix::fs::chown(&into, Some(top.uid), Some(top.gid)).map_err(fail)?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&into, std::fs::Permissions::from_mode(top.mode & 0o7777))
                .map_err(fail)?;
        }
        Ok(())
    };
    let child = crate::container::files::inside::spawn(
        crate::container::files::inside::Place::Fresh,
        unpack,
    )?;
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, writer);
    let written = super::super::export::write_tar(&mut writer, &entries)
        .and_then(|()| writer.flush().map_err(|e| BuildError::io("pipe", e)));
    drop(writer);
    child.wait()?;
    written?;
    Ok(Some(bound))
}

/// A writable throw-away view of `source` under `scratch` (made here):
/// a directory gets a kernel overlay (its upper directory in `scratch`),
/// a file a copy.
fn throwaway_copy(source: &Path, scratch: &Path) -> Result<PathBuf, String> {
    let make = |p: &Path| std::fs::create_dir_all(p).map_err(|e| format!("{}: {e}", p.display()));
    make(scratch)?;
    if !source.is_dir() {
        let copy = scratch.join("file");
        std::fs::copy(source, &copy).map_err(|e| format!("copying {}: {e}", source.display()))?;
        return Ok(copy);
    }
    let text = source.to_string_lossy();
    if text.contains([',', ':', '\\']) {
        return Err(format!(
            "{text}: a writable bind of a path with ',', ':' or '\\' is not supported (overlayfs options)"
        ));
    }
    let (upper, work, merged) = (
        scratch.join("upper"),
        scratch.join("work"),
        scratch.join("merged"),
    );
    for d in [&upper, &work, &merged] {
        make(d)?;
    }
    let data = format!(
        "lowerdir={text},upperdir={},workdir={}",
        upper.display(),
        work.display()
    );
    match nix::mount::mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        nix::mount::MsFlags::MS_NODEV,
        Some(data.as_str()),
    ) {
        Ok(()) => Ok(merged),
        // overlayfs refuses some lowers (a strata-fs view of another
        // stage or image: EINVAL): the RUN gets a copy instead (`cp -a`
        // keeps owners, modes, links and times), removed with `scratch`.
        Err(overlay_error) => {
            let copy = scratch.join("copy");
            let out = std::process::Command::new("cp")
                .arg("-a")
                .arg("--")
                .arg(source)
                .arg(&copy)
                .output()
                .map_err(|e| format!("a writable copy of {text}: cp: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "a writable view of {text}: overlay: {overlay_error}; cp -a: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            Ok(copy)
        }
    }
}

fn bind(source: &Path, target: &str, read_only: bool) -> MountSpec {
    MountSpec {
        kind: "bind".into(),
        source: source.to_string_lossy().into_owned(),
        destination: target.to_string(),
        read_only,
        anonymous: false,
    }
}

/// What a bound context path is, for the key: names, sizes and mtimes
/// (a bound directory is read by the RUN, so a change must rebuild it).
fn context_fingerprint(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let mut h = crate::digest::Hasher::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        h.update(
            format!(
                "{}\0{}\0{}\0{}\0",
                p.display(),
                meta.mode(),
                meta.len(),
                meta.mtime()
            )
            .as_bytes(),
        );
        if meta.is_dir() {
            if let Ok(items) = std::fs::read_dir(&p) {
                let mut names: Vec<PathBuf> = items.flatten().map(|e| e.path()).collect();
                names.sort();
                stack.extend(names.into_iter().rev());
            }
        }
    }
    h.finish().hex()
}

/// What [`strip_launcher_paths`] needs of the parent state: the entries
/// (or their absence) of the launcher's paths and their directories,
/// read before the upper directory is (an ordinary user's is read in a
/// forked child in a user namespace, which must not use the store).
pub struct ParentEntries(std::collections::HashMap<String, Option<TreeEntry>>);

impl ParentEntries {
    /// The entries of `targets` and of the launcher's files in `parent`,
    /// with every directory above them.
    pub fn read(parent: &StateTree, targets: &[String]) -> Result<ParentEntries, BuildError> {
        let mut entries = std::collections::HashMap::new();
        for t in targets.iter().map(String::as_str).chain(LAUNCHER_FILES) {
            let mut rel = t.trim_matches('/');
            while !rel.is_empty() {
                let path = format!("/{rel}");
                if let std::collections::hash_map::Entry::Vacant(slot) = entries.entry(path) {
                    let entry = parent.stat(slot.key(), false)?;
                    slot.insert(entry);
                }
                rel = rel.rfind('/').map_or("", |i| &rel[..i]);
            }
        }
        Ok(ParentEntries(entries))
    }

    fn get(&self, path: &str) -> Option<&TreeEntry> {
        self.0.get(path).and_then(Option::as_ref)
    }
}

/// Files the launcher bind-mounts over (`/etc/hostname`...): made empty
/// in the upper directory when the image lacks them, never the RUN's.
const LAUNCHER_FILES: [&str; 3] = ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"];

/// Takes out of `upper` the mount points the launcher made (the RUN's
/// `--mount` targets and its /etc files) when the parent state lacks
/// them, and the directories copied up only to hold them: an empty,
/// non-opaque upper directory whose metadata is the parent's. So a RUN
/// that changes nothing makes no layer, as with Docker.
pub fn strip_launcher_paths(
    upper: &Path,
    parent: &ParentEntries,
    targets: &[String],
) -> Result<(), BuildError> {
    use std::os::unix::fs::MetadataExt;
    let all = targets.iter().map(String::as_str).chain(LAUNCHER_FILES);
    for t in all {
        let mut rel = t.trim_matches('/').to_string();
        let mut leaf = true;
        while !rel.is_empty() {
            let p = upper.join(&rel);
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                break;
            };
            let in_parent = parent.get(&format!("/{rel}"));
            let removable = if meta.is_dir() {
                let empty = std::fs::read_dir(&p)
                    .map(|mut d| d.next().is_none())
                    .unwrap_or(false);
                empty
                    && match &in_parent {
                        None => true,
                        Some(e) => {
                            !leaf
                                && e.kind == super::super::tree::EntryKind::Dir
                                && e.mode == meta.mode() & 0o7777
                                && e.uid == meta.uid()
                                && e.gid == meta.gid()
                                && !crate::container::files::upper::is_opaque(&p)
                        }
                    }
            } else {
                leaf && in_parent.is_none() && meta.is_file() && meta.len() == 0
            };
            if !removable {
                break;
            }
            let removed = if meta.is_dir() {
                std::fs::remove_dir(&p).is_ok()
            } else {
                std::fs::remove_file(&p).is_ok()
            };
            if !removed {
                break;
            }
            leaf = false;
            rel = match rel.rfind('/') {
                Some(i) => rel[..i].to_string(),
                None => String::new(),
            };
        }
    }
    Ok(())
}
