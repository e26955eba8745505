//! The build context: a directory the Dockerfile's COPY and ADD read
//! from. It is never tarred or copied whole: only the paths an
//! instruction names are listed and read. `.dockerignore` (or
//! `<Dockerfile>.dockerignore` beside the Dockerfile, which wins) leaves
//! paths out. A source that leaves the context, lexically (`../x`) or
//! through a symlink (relative or absolute), is an error.

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode};

use super::error::BuildError;
use super::expand::glob_match;
use super::ignore::Ignore;

/// One path of the context: relative name and what it is.
#[derive(Debug, Clone)]
pub struct ContextFile {
    /// Relative to the directory the walk started at (`""` for itself).
    pub rel: String,
    /// Its lstat (for the walk's start: its stat, symlinks followed).
    pub stat: Stat,
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
    ///
    /// The walk goes by directory descriptor: each directory is opened
    /// once relative to its parent's descriptor (never following a
    /// symlink), read once, and each entry stat'ed relative to it, so the
    /// kernel looks up one name per entry instead of walking the whole
    /// absolute path again (a cached rebuild's COPY of 9,000 files is
    /// mostly this walk).
    pub fn walk(&self, rel: &str) -> Result<ContextWalk, BuildError> {
        let path = self
            .resolve(rel)
            .map_err(BuildError::Invalid)?
            .ok_or_else(|| BuildError::Invalid(format!("{rel}: not found")))?;
        let stat = nix::sys::stat::stat(&path).map_err(|e| BuildError::io(&path, e.into()))?;
        let stat = Stat(stat);
        let mut files = vec![ContextFile {
            rel: String::new(),
            stat,
        }];
        if stat.is_dir() {
            let dir = Dir::open(
                &path,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| BuildError::io(&path, e.into()))?;
            let mut walker = Walker {
                context: self,
                top: &path,
                out: &mut files,
                context_rel: rel.to_string(),
                rel: String::new(),
            };
            walker.walk_dir(dir)?;
        }
        Ok(ContextWalk { top: path, files })
    }
}

/// What a walk of one context path found.
pub struct ContextWalk {
    /// The host path the walk started at (symlinks resolved).
    pub top: PathBuf,
    /// `top` itself first, then what is below it, parents before children.
    pub files: Vec<ContextFile>,
}

impl ContextWalk {
    /// The host path of one of the walk's files.
    pub fn path_of(&self, file: &ContextFile) -> PathBuf {
        if file.rel.is_empty() {
            self.top.clone()
        } else {
            self.top.join(&file.rel)
        }
    }
}

/// The state of one directory walk: where it is, relative to the walk's
/// start (`rel`) and to the context (`context_rel`, for `.dockerignore`).
struct Walker<'a> {
    context: &'a BuildContext,
    top: &'a Path,
    out: &'a mut Vec<ContextFile>,
    context_rel: String,
    rel: String,
}

impl Walker<'_> {
    /// Walks the open directory at `self.rel`; whether anything below it
    /// was kept.
    fn walk_dir(&mut self, mut dir: Dir) -> Result<bool, BuildError> {
        let here = |w: &Walker| -> PathBuf {
            if w.rel.is_empty() {
                w.top.to_path_buf()
            } else {
                w.top.join(&w.rel)
            }
        };
        let mut names: Vec<CString> = Vec::new();
        for entry in dir.iter() {
            let entry = entry.map_err(|e| BuildError::io(here(self), e.into()))?;
            let name = entry.file_name();
            if name.to_bytes() != b"." && name.to_bytes() != b".." {
                names.push(name.to_owned());
            }
        }
        names.sort_unstable();
        let fd = dir.as_raw_fd();
        let ignore = &self.context.ignore;
        let mut any = false;
        for name in names {
            let name_s = String::from_utf8_lossy(name.to_bytes());
            let stat = fstatat(Some(fd), name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                .map(Stat)
                .map_err(|e| BuildError::io(here(self).join(&*name_s), e.into()))?;
            let rel_len = self.rel.len();
            let context_len = self.context_rel.len();
            push_name(&mut self.rel, &name_s);
            // (`context_rel` is kept only for the patterns.)
            let excluded = if ignore.is_empty() {
                false
            } else {
                push_name(&mut self.context_rel, &name_s);
                self.context.excludes(&self.context_rel)
            };
            let keep_looking =
                excluded && stat.is_dir() && ignore.may_include_below(&self.context_rel);
            if !excluded || keep_looking {
                let index = self.out.len();
                self.out.push(ContextFile {
                    rel: self.rel.clone(),
                    stat,
                });
                let mut kept = !excluded;
                if stat.is_dir() {
                    let sub = Dir::openat(
                        Some(fd),
                        name.as_c_str(),
                        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| BuildError::io(here(self), e.into()))?;
                    kept |= self.walk_dir(sub)?;
                }
                if !kept {
                    self.out.truncate(index);
                }
                any |= kept;
            }
            self.rel.truncate(rel_len);
            self.context_rel.truncate(context_len);
        }
        Ok(any)
    }
}

fn push_name(path: &mut String, name: &str) {
    if !path.is_empty() {
        path.push('/');
    }
    path.push_str(name);
}

/// An lstat (`fstatat` without following a symlink), with the accessors
/// of [`std::fs::Metadata`] the build needs.
#[derive(Clone, Copy)]
pub struct Stat(nix::sys::stat::FileStat);

impl std::fmt::Debug for Stat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stat")
            .field("mode", &format_args!("{:o}", self.0.st_mode))
            .field("size", &self.0.st_size)
            .field("ino", &self.0.st_ino)
            .finish()
    }
}

impl Stat {
    fn format(&self) -> u32 {
        self.0.st_mode & libc::S_IFMT
    }
    pub fn is_dir(&self) -> bool {
        self.format() == libc::S_IFDIR
    }
    pub fn is_file(&self) -> bool {
        self.format() == libc::S_IFREG
    }
    pub fn is_symlink(&self) -> bool {
        self.format() == libc::S_IFLNK
    }
    pub fn is_fifo(&self) -> bool {
        self.format() == libc::S_IFIFO
    }
    pub fn is_char_device(&self) -> bool {
        self.format() == libc::S_IFCHR
    }
    pub fn is_block_device(&self) -> bool {
        self.format() == libc::S_IFBLK
    }
    /// Type and permission bits, as `st_mode`.
    pub fn mode(&self) -> u32 {
        self.0.st_mode
    }
    pub fn size(&self) -> u64 {
        self.0.st_size as u64
    }
    pub fn dev(&self) -> u64 {
        self.0.st_dev
    }
    pub fn ino(&self) -> u64 {
        self.0.st_ino
    }
    pub fn rdev(&self) -> u64 {
        self.0.st_rdev
    }
    /// Seconds of the modification time.
    pub fn mtime(&self) -> i64 {
        self.0.st_mtime
    }
    pub fn mtime_ns(&self) -> i64 {
        self.0.st_mtime * 1_000_000_000 + self.0.st_mtime_nsec
    }
    pub fn ctime_ns(&self) -> i64 {
        self.0.st_ctime * 1_000_000_000 + self.0.st_ctime_nsec
    }
}

/// The lstat of `path`.
pub fn lstat(path: &Path) -> std::io::Result<Stat> {
    nix::sys::stat::lstat(path)
        .map(Stat)
        .map_err(std::io::Error::from)
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
        let walked: Vec<String> = ctx
            .walk("")
            .unwrap()
            .files
            .into_iter()
            .map(|f| f.rel)
            .collect();
        assert!(walked.contains(&"sub/a.txt".to_string()));
        assert!(!walked.contains(&"b.txt".to_string()));
    }
}
