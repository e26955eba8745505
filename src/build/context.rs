//! The build context: a directory the Dockerfile's COPY and ADD read
//! from. It is never tarred or copied whole: only the paths an
//! instruction names are listed and read. `.dockerignore` (or
//! `<Dockerfile>.dockerignore` beside the Dockerfile, which wins) leaves
//! paths out. A source that leaves the context, lexically (`../x`) or
//! through a symlink (relative or absolute), is an error.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::error::BuildError;
use super::expand::glob_match;
use super::ignore::Ignore;

/// One path of the context: relative name, where it is, what it is.
#[derive(Debug, Clone)]
pub struct ContextFile {
    /// Relative to the directory the walk started at (`""` for itself).
    pub rel: String,
    pub path: PathBuf,
    pub meta: std::fs::Metadata,
}

/// An open build context.
pub struct BuildContext {
    root: PathBuf,
    ignore: Ignore,
}

/// Symlinks followed while resolving one path, at most (as the kernel).
const MAX_LINKS: usize = 40;

impl BuildContext {
    /// Opens the context at `root`; `dockerfile` is where the Dockerfile
    /// is (its own `.dockerignore` beside it wins over the context's).
    pub fn open(root: &Path, dockerfile: Option<&Path>) -> Result<BuildContext, BuildError> {
        let root = root.canonicalize().map_err(|e| {
            BuildError::Invalid(format!(
                "unable to prepare context: path {:?} not found: {e}",
                root.display().to_string()
            ))
        })?;
        if !root.is_dir() {
            return Err(BuildError::Invalid(format!(
                "unable to prepare context: context must be a directory: {}",
                root.display()
            )));
        }
        let mut ignore_file = root.join(".dockerignore");
        if let Some(df) = dockerfile {
            let mut name = df.as_os_str().to_os_string();
            name.push(".dockerignore");
            let own = PathBuf::from(name);
            if own.is_file() {
                ignore_file = own;
            }
        }
        let ignore = match std::fs::read_to_string(&ignore_file) {
            Ok(text) => Ignore::parse(&text).map_err(BuildError::Invalid)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ignore::default(),
            Err(e) => return Err(BuildError::io(&ignore_file, e)),
        };
        Ok(BuildContext { root, ignore })
    }

    /// A context with nothing in it (a Dockerfile from stdin, `-`).
    pub fn empty(scratch: &Path) -> BuildContext {
        BuildContext {
            root: scratch.to_path_buf(),
            ignore: Ignore::default(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn excludes(&self, rel: &str) -> bool {
        !rel.is_empty() && self.ignore.excludes(rel)
    }

    /// The context paths a COPY/ADD source names (wildcards expanded),
    /// relative to the context, sorted. An empty list: nothing matched.
    pub fn matches(&self, source: &str) -> Result<Vec<String>, String> {
        let rel = lexical_rel(source)
            .ok_or_else(|| format!("forbidden path outside the build context: {source}"))?;
        if !has_wildcard(&rel) {
            if self.excludes(&rel) {
                return Ok(vec![]);
            }
            return match self.resolve(&rel)? {
                Some(_) => Ok(vec![rel]),
                None => Ok(vec![]),
            };
        }
        let mut found = vec![String::new()];
        for component in rel.split('/') {
            let mut next = Vec::new();
            for base in &found {
                let join = |name: &str| {
                    if base.is_empty() {
                        name.to_string()
                    } else {
                        format!("{base}/{name}")
                    }
                };
                if !has_wildcard(component) {
                    next.push(join(component));
                    continue;
                }
                let Some(dir) = self.resolve(base)? else {
                    continue;
                };
                let Ok(items) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for item in items.flatten() {
                    let name = item.file_name().to_string_lossy().into_owned();
                    if glob_match(component, &name) {
                        next.push(join(&name));
                    }
                }
            }
            found = next;
        }
        let mut out = Vec::new();
        for rel in found {
            if !self.excludes(&rel) && self.resolve(&rel)?.is_some() {
                out.push(rel);
            }
        }
        out.sort();
        Ok(out)
    }

    /// The host path of `rel`, following symlinks only inside the context;
    /// `None` if it does not exist. Leaving the context is an error.
    pub fn resolve(&self, rel: &str) -> Result<Option<PathBuf>, String> {
        let mut resolved: Vec<String> = Vec::new();
        let mut pending: Vec<String> = rel
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .rev()
            .map(str::to_string)
            .collect();
        let mut links = 0;
        while let Some(component) = pending.pop() {
            if component == ".." {
                if resolved.pop().is_none() {
                    return Err(format!("forbidden path outside the build context: {rel}"));
                }
                continue;
            }
            resolved.push(component);
            let path = self.root.join(resolved.join("/"));
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(_) => return Ok(None),
            };
            if !meta.file_type().is_symlink() {
                continue;
            }
            links += 1;
            if links > MAX_LINKS {
                return Err(format!("{rel}: too many levels of symbolic links"));
            }
            let target = std::fs::read_link(&path).map_err(|e| format!("{rel}: {e}"))?;
            resolved.pop();
            let target = target.to_string_lossy().into_owned();
            if let Some(abs) = target.strip_prefix('/') {
                let inside = Path::new("/").join(abs);
                match inside.strip_prefix(&self.root) {
                    Ok(r) => {
                        resolved.clear();
                        pending.extend(
                            r.to_string_lossy()
                                .split('/')
                                .filter(|c| !c.is_empty())
                                .rev()
                                .map(str::to_string)
                                .collect::<Vec<_>>(),
                        );
                    }
                    Err(_) => {
                        return Err(format!(
                        "forbidden path outside the build context: {rel} (a symlink to {target})"
                    ))
                    }
                }
            } else {
                pending.extend(
                    target
                        .split('/')
                        .filter(|c| !c.is_empty() && *c != ".")
                        .rev()
                        .map(str::to_string)
                        .collect::<Vec<_>>(),
                );
            }
        }
        Ok(Some(self.root.join(resolved.join("/"))))
    }

    /// Lists `rel` (resolved) and, for a directory, everything below it
    /// that `.dockerignore` keeps (symlinks below it as they are), parents
    /// before children, names sorted.
    pub fn walk(&self, rel: &str) -> Result<Vec<ContextFile>, BuildError> {
        let path = self
            .resolve(rel)
            .map_err(BuildError::Invalid)?
            .ok_or_else(|| BuildError::Invalid(format!("{rel}: not found")))?;
        let meta = std::fs::metadata(&path).map_err(|e| BuildError::io(&path, e))?;
        let mut out = vec![ContextFile {
            rel: String::new(),
            path: path.clone(),
            meta: meta.clone(),
        }];
        if meta.is_dir() {
            self.walk_dir(&path, rel, "", &mut out)?;
        }
        Ok(out)
    }

    fn walk_dir(
        &self,
        dir: &Path,
        context_rel: &str,
        rel: &str,
        out: &mut Vec<ContextFile>,
    ) -> Result<bool, BuildError> {
        let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(dir)
            .map_err(|e| BuildError::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        names.sort();
        let mut any = false;
        for name in names {
            let name_s = name.to_string_lossy();
            let child_rel = join(rel, &name_s);
            let child_context = join(context_rel, &name_s);
            let path = dir.join(&name);
            let meta = std::fs::symlink_metadata(&path).map_err(|e| BuildError::io(&path, e))?;
            let excluded = self.excludes(&child_context);
            if excluded && !(meta.is_dir() && self.ignore.may_include_below(&child_context)) {
                continue;
            }
            let index = out.len();
            out.push(ContextFile {
                rel: child_rel.clone(),
                path: path.clone(),
                meta: meta.clone(),
            });
            let mut kept = !excluded;
            if meta.is_dir() {
                kept |= self.walk_dir(&path, &child_context, &child_rel, out)?;
            }
            if !kept {
                out.truncate(index);
            }
            any |= kept;
        }
        Ok(any)
    }
}

fn join(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_string()
    } else {
        format!("{base}/{name}")
    }
}

/// `source` relative to the context root, lexically cleaned; `None` if
/// it climbs above the root.
pub fn lexical_rel(source: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in source.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

pub fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Device and inode, to tell hard links apart while walking.
pub fn inode_of(meta: &std::fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ctx");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a.txt"), "a").unwrap();
        std::fs::write(root.join("b.txt"), "b").unwrap();
        std::fs::write(dir.path().join("outside"), "x").unwrap();
        std::os::unix::fs::symlink("../outside", root.join("up")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("sub/a.txt", root.join("ok")).unwrap();
        std::fs::write(root.join(".dockerignore"), "b.txt\n").unwrap();
        let ctx = BuildContext::open(&root, None).unwrap();
        assert!(ctx.matches("../outside").is_err());
        assert!(ctx.matches("up").is_err());
        assert!(ctx.matches("abs").is_err());
        assert_eq!(ctx.matches("ok").unwrap(), vec!["ok"]);
        assert_eq!(ctx.matches("b.txt").unwrap(), Vec::<String>::new());
        assert_eq!(ctx.matches("*.txt").unwrap(), Vec::<String>::new());
        assert_eq!(ctx.matches("s*/*.txt").unwrap(), vec!["sub/a.txt"]);
        let walked: Vec<String> = ctx.walk("").unwrap().into_iter().map(|f| f.rel).collect();
        assert!(walked.contains(&"sub/a.txt".to_string()));
        assert!(!walked.contains(&"b.txt".to_string()));
    }
}
