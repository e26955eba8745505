//! `RUN --mount=...`: what a RUN's container gets mounted that never goes
//! into its layer. `type=cache` (a directory under `<root>/build-mounts/`
//! that persists across builds, by `id`, default the target),
//! `type=bind` (from the context, or `from=` a stage or image, read-only),
//! `type=tmpfs` (an empty directory for the RUN only) and `type=secret`
//! (a `--secret` file, read-only, at `/run/secrets/ID` by default). The
//! mount points the launcher had to create are taken out of the upper
//! directory before the layer is made.

use std::path::{Path, PathBuf};

use super::super::error::BuildError;
use super::super::execute::Builder;
use super::super::parse::Instruction;
use super::super::state::{drop_temporary_image, publish_image};
use super::super::tree::StateTree;
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
}

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
                    let dir = self
                        .store
                        .root()
                        .join("build-mounts")
                        .join(format!("cache-{}", &Digest::of(id.as_bytes()).hex()[..24]));
                    if !dir.exists() {
                        std::fs::create_dir_all(&dir).map_err(|e| BuildError::io(&dir, e))?;
                        let mode = get("mode")
                            .and_then(|m| u32::from_str_radix(&m, 8).ok())
                            .unwrap_or(0o755);
                        use std::os::unix::fs::PermissionsExt;
                        let _ =
                            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode));
                        let uid = get("uid").and_then(|u| u.parse().ok());
                        let gid = get("gid").and_then(|g| g.parse().ok());
                        if uid.is_some() || gid.is_some() {
                            let _ = std::os::unix::fs::chown(&dir, uid, gid);
                        }
                    }
                    out.key.push_str(&format!("cache:{id}:{t};"));
                    out.specs.push(bind(&dir, &t, false));
                    out.targets.push(t);
                }
                "tmpfs" => {
                    let t = super::workdir::join_clean(&workdir, &need_target()?);
                    let dir = self
                        .store
                        .tmp_dir()
                        .join(format!("build-tmpfs-{:016x}", rand::random::<u64>()));
                    std::fs::create_dir_all(&dir).map_err(|e| BuildError::io(&dir, e))?;
                    out.temp_dirs.push(dir.clone());
                    out.key.push_str(&format!("tmpfs:{t};"));
                    out.specs.push(bind(&dir, &t, false));
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
                            out.specs.push(bind(src, &t, true));
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
                    let host = match get("from") {
                        Some(from) => {
                            let state = self.state_of_from_flag(ins, &from)?;
                            let (image, made) = publish_image(self.store, &state, vec![])?;
                            if made {
                                out.temp_images.push(image);
                            }
                            let dir = self
                                .store
                                .tmp_dir()
                                .join(format!("build-from-{:016x}", rand::random::<u64>()));
                            let options = crate::mount::MountOptions::default();
                            let mounted = crate::mount::mount_image(
                                self.store,
                                &image.to_string(),
                                Some(&dir),
                                &options,
                            )
                            .map_err(|e| self.error_at(ins, format!("RUN --mount={value}: {e}")))?;
                            out.image_mounts.push(mounted.clone());
                            out.temp_dirs.push(dir);
                            let inside = StateTree::open(self.store, &state)?;
                            let resolved = inside
                                .resolve(&format!("/{source}"), true)?
                                .ok_or_else(|| {
                                    self.error_at(
                                        ins,
                                        format!(
                                            "RUN --mount={value}: {source} not found in {from}"
                                        ),
                                    )
                                })?;
                            out.key.push_str(&format!(
                                "bind:{from}:{}:{source}:{t};",
                                state.id.map(|d| d.to_string()).unwrap_or_default()
                            ));
                            mounted.join(resolved.0)
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
                            path
                        }
                    };
                    // Always read-only: a writable bind of the context
                    // would change the user's files (BuildKit gives a
                    // throw-away copy; strata refuses the writes).
                    out.specs.push(bind(&host, &t, true));
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

impl RunMounts {
    /// Unmounts and removes what the mounts needed (not the caches).
    pub fn release(&mut self, store: &crate::store::Store) {
        for m in self.image_mounts.drain(..) {
            let _ = crate::mount::unmount(store, &m.to_string_lossy());
        }
        for d in self.temp_dirs.drain(..) {
            let _ = std::fs::remove_dir_all(&d);
        }
        for i in self.temp_images.drain(..) {
            drop_temporary_image(store, &i);
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
    parent: &StateTree,
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
            let in_parent = parent.stat(&format!("/{rel}"), false)?;
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
