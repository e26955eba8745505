//! COPY and ADD: a new layer written from the sources straight into the
//! store, never unpacking the parent. Docker's rules: sources are
//! relative to the context (or, with `--from`, to a stage or image),
//! wildcards expand, a directory source copies its contents, several
//! sources need a destination directory ending in `/`, a destination
//! that ends in `/` (or is a directory already) receives files by their
//! names, a relative destination is relative to WORKDIR, symlinks inside
//! a copied directory stay symlinks, new files and directories belong to
//! root unless `--chown`, `--chmod` sets modes. ADD also unpacks local
//! tar archives and downloads URLs (`--checksum` verifies them).
//!
//! The cache key names every source file's path, type, mode, size and
//! content digest: a changed or renamed file invalidates the step, a
//! touched but identical one does not.

use super::super::cache::KeyBuilder;
use super::super::context::{has_wildcard, ContextFile, ContextWalk};
use super::super::digests::KnownDigests;
use super::super::error::BuildError;
use super::super::execute::Builder;
use super::super::expand::{expand_word, glob_match, split_words};
use super::super::layer::{now_secs, Content, LayerBuilder, NewEntry, NewKind};
use super::super::parse::{Instruction, Keyword};
use super::super::state::{commit_state, Step};
use super::super::tree::{EntryKind, StateTree, TreeEntry};
use super::sources::{download, is_archive, unpack_archive};
use super::workdir::join_clean;
use crate::digest::Digest;

/// One file of the new layer and what the key knows of it.
struct Planned {
    path: String,
    entry: NewEntry,
    /// Content digest (files), target (symlinks).
    identity: String,
}

/// Where the sources come from.
enum Origin {
    Context,
    Tree(Box<StateTree>),
}

impl Builder<'_> {
    pub(in super::super) fn dispatch_copy(&mut self, ins: &Instruction) -> Result<(), BuildError> {
        let name = ins.keyword.name();
        let is_add = ins.keyword == Keyword::Add;
        let flag = |b: &Self, f: &str| -> Result<Option<String>, BuildError> {
            match ins.flag_values(f).last() {
                Some(Some(v)) => Ok(Some(b.expand(ins, v)?)),
                Some(None) => Ok(Some(String::new())),
                None => Ok(None),
            }
        };
        let from = flag(self, "from")?;
        let chown = flag(self, "chown")?.filter(|c| !c.is_empty());
        let chmod = match flag(self, "chmod")?.filter(|c| !c.is_empty()) {
            Some(m) => Some(
                u32::from_str_radix(&m, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| {
                        self.error_at(
                            ins,
                            format!(
                                "{name} --chmod={m}: invalid mode (an octal number is expected)"
                            ),
                        )
                    })?,
            ),
            None => None,
        };
        let link = ins
            .flag_values("link")
            .last()
            .is_some_and(|v| v.is_none_or(|v| v != "false"));
        let checksum = flag(self, "checksum")?;
        // Words: JSON form or shell-like words, each expanded.
        let raw: Vec<String> = match ins.json_args() {
            Some(list) => list,
            None => split_words(&ins.args, self.escape),
        };
        let vars = self.vars();
        let mut words = Vec::new();
        let mut heredoc_index = 0;
        for w in &raw {
            if w.starts_with("<<") && heredoc_index < ins.heredocs.len() {
                words.push(Word::Heredoc(heredoc_index));
                heredoc_index += 1;
                continue;
            }
            let e = expand_word(w, &vars, self.escape)
                .map_err(|e| self.error_at(ins, format!("{name} {}: {e}", ins.args)))?;
            words.push(Word::Path(e));
        }
        let Some(Word::Path(dest_raw)) = words.pop() else {
            return Err(self.error_at(ins, format!("{name}: the destination must be a path")));
        };
        let workdir = self.state.run().working_dir.unwrap_or_default();
        let dest_dir_syntax =
            dest_raw.ends_with('/') || dest_raw == "." || dest_raw.ends_with("/.");
        let dest = join_clean(&workdir, &dest_raw);
        // The parent's tree (a connection of its own to the index) is
        // opened only when needed: a cached `COPY src/ /dst/` needs none.
        let parent_tree = if chown.is_some() || (!dest_dir_syntax && !link) {
            Some(StateTree::open(self.store, &self.state)?)
        } else {
            None
        };
        let owner = match &chown {
            Some(spec) => resolve_chown(parent_tree.as_ref().unwrap_or(&StateTree::empty()), spec)
                .map_err(|e| self.error_at(ins, format!("{name} --chown={spec}: {e}")))?,
            None => (0, 0),
        };
        let origin = match &from {
            Some(f) if !f.is_empty() => {
                let state = self.state_of_from_flag(ins, f)?;
                Origin::Tree(Box::new(StateTree::open(self.store, &state)?))
            }
            _ => Origin::Context,
        };
        // Expand every source to the items it names.
        let mut items: Vec<Item> = Vec::new();
        for word in &words {
            match word {
                Word::Heredoc(i) => {
                    let h = &ins.heredocs[*i];
                    let content = if h.expand {
                        expand_heredoc(&h.content, &vars)
                    } else {
                        h.content.clone()
                    };
                    items.push(Item::Bytes(h.name.clone(), content.into_bytes()));
                }
                Word::Path(p)
                    if is_add && (p.starts_with("http://") || p.starts_with("https://")) =>
                {
                    items.push(Item::Url(p.clone()));
                }
                Word::Path(p) => {
                    let found = match &origin {
                        Origin::Context => self
                            .context
                            .matches(p)
                            .map_err(|e| self.error_at(ins, format!("{name} {p}: {e}")))?
                            .into_iter()
                            .map(Item::Context)
                            .collect::<Vec<_>>(),
                        Origin::Tree(tree) => {
                            tree_matches(tree, p)?.into_iter().map(Item::Tree).collect()
                        }
                    };
                    if found.is_empty() {
                        let what = match &origin {
                            Origin::Context if has_wildcard(p) => "no source files were specified (the pattern matches nothing in the build context)".to_string(),
                            Origin::Context => "file not found in build context or excluded by .dockerignore".to_string(),
                            Origin::Tree(_) => format!("not found in {}", from.clone().unwrap_or_default()),
                        };
                        return Err(self.error_at(ins, format!("{name} {p}: {what}")));
                    }
                    items.extend(found);
                }
            }
        }
        if items.len() > 1 && !dest_dir_syntax {
            return Err(self.error_at(
                ins,
                format!("When using {name} with more than one source file, the destination must be a directory and end with a /"),
            ));
        }
        let dest_is_dir = dest_dir_syntax
            || match (&parent_tree, link) {
                (Some(tree), false) => tree.is_dir(&dest)?,
                _ => false,
            };
        let mut planned: Vec<Planned> = Vec::new();
        // The digests remembered while planning go in with one commit.
        let remember = self.store.conn().unchecked_transaction()?;
        for item in items {
            self.interrupt.check()?;
            match item {
                Item::Bytes(name_, data) => {
                    let path = if dest_is_dir {
                        format!("{dest}/{name_}")
                    } else {
                        dest.clone()
                    };
                    let identity = Digest::of(&data).to_string();
                    planned.push(Planned {
                        path,
                        entry: NewEntry {
                            kind: NewKind::File,
                            mode: chmod.unwrap_or(0o644),
                            uid: owner.0,
                            gid: owner.1,
                            mtime: now_secs(),
                            size: data.len() as u64,
                            content: Content::Bytes(data),
                        },
                        identity,
                    });
                }
                Item::Url(url) => {
                    let fetched = download(&url, checksum.as_deref())
                        .map_err(|e| self.error_at(ins, format!("ADD {url}: {e}")))?;
                    let path = if dest_dir_syntax {
                        format!("{dest}/{}", fetched.name)
                    } else {
                        dest.clone()
                    };
                    let identity = Digest::of(&fetched.data).to_string();
                    planned.push(Planned {
                        path,
                        entry: NewEntry {
                            kind: NewKind::File,
                            mode: chmod.unwrap_or(0o600),
                            uid: owner.0,
                            gid: owner.1,
                            mtime: fetched.mtime,
                            size: fetched.data.len() as u64,
                            content: Content::Bytes(fetched.data),
                        },
                        identity,
                    });
                }
                Item::Context(rel) => {
                    let walk = self.context.walk(&rel)?;
                    let top_is_dir = walk.files.first().is_some_and(|f| f.stat.is_dir());
                    if is_add
                        && !top_is_dir
                        && is_archive(&walk.top).map_err(|e| BuildError::io(&walk.top, e))?
                    {
                        let entries = unpack_archive(&walk.top)
                            .map_err(|e| self.error_at(ins, format!("ADD {rel}: {e}")))?;
                        for (p, mut e, identity) in entries {
                            if chown.is_some() {
                                e.uid = owner.0;
                                e.gid = owner.1;
                            }
                            planned.push(Planned {
                                path: format!("{dest}/{p}"),
                                entry: e,
                                identity,
                            });
                        }
                        continue;
                    }
                    let known = KnownDigests::load(self.store, &walk.top)?;
                    for f in &walk.files {
                        let target = copy_target(&dest, &rel, &f.rel, top_is_dir, dest_is_dir);
                        let is_context_root = f.rel.is_empty() && walk.top == self.context.root();
                        if let Some(mut p) =
                            plan_host(self.store, &known, &walk, f, target, owner, chmod)?
                        {
                            // The context root arrives as a fresh 0755
                            // directory in Docker's and buildah's builds,
                            // whatever mode it has on the client's disk.
                            if is_context_root && chmod.is_none() {
                                p.entry.mode = 0o755;
                            }
                            planned.push(p);
                        }
                    }
                }
                Item::Tree(found) => {
                    let Origin::Tree(tree) = &origin else {
                        continue;
                    };
                    let entries = tree.walk(&found, true)?;
                    let top_is_dir = entries.first().is_some_and(|e| e.kind == EntryKind::Dir);
                    for e in entries {
                        let target = copy_target(&dest, &found, &e.rel, top_is_dir, dest_is_dir);
                        planned.push(plan_tree(&e, target, owner, chmod));
                    }
                }
            }
        }
        remember.commit()?;
        // The key: the instruction and every planned entry.
        let text = format!("{name} {}", ins.text);
        let mut key = KeyBuilder::new(self.state.id.as_ref(), &text);
        key.add(dest.as_bytes());
        key.add(format!("{owner:?} {chmod:?} {link}").as_bytes());
        // (One buffer for every entry's line: a COPY of 9,000 files
        // would otherwise allocate 9,000 strings just to hash them.)
        let mut line = String::new();
        for p in &planned {
            use std::fmt::Write as _;
            line.clear();
            let _ = write!(
                line,
                "{}\0{:?}\0{:o}\0{}\0{}\0{}",
                p.path, p.entry.kind, p.entry.mode, p.entry.uid, p.entry.size, p.identity
            );
            key.add(line.as_bytes());
        }
        let key = key.finish();
        let summary = summarize(&planned);
        // Docker shows the destination as written (made absolute).
        let shown_dest = if dest_raw.starts_with('/') {
            dest_raw.clone()
        } else if dest_dir_syntax {
            format!("{}/", dest.trim_end_matches('/'))
        } else {
            dest.clone()
        };
        let created_by = format!(
            "{} #(nop) {name} {summary} in {shown_dest} ",
            self.shell().join(" ")
        );
        let config = self.state.config.clone();
        self.step(ins, key, move |b, key, _| {
            let mut layer = LayerBuilder::default();
            for p in planned {
                layer.add(&p.path, p.entry);
            }
            let inherit = match (link, parent_tree) {
                (true, _) => StateTree::empty(),
                (false, Some(tree)) => tree,
                (false, None) => StateTree::open(b.store, &b.state)?,
            };
            layer.add_parents(&inherit, owner)?;
            let ingested = layer.ingest(b.store)?;
            commit_state(
                b.store,
                config,
                Some(ingested),
                Step {
                    created_by,
                    comment: None,
                    cache_key: key,
                    description: &text,
                },
            )
        })
    }
}

enum Word {
    Path(String),
    Heredoc(usize),
}

enum Item {
    /// A context path (relative).
    Context(String),
    /// A path of a `--from` tree (absolute).
    Tree(String),
    /// A here-document: name and content.
    Bytes(String, Vec<u8>),
    Url(String),
}

/// Expands `$VAR` and `${VAR}` in a here-document as a shell would
/// (no quote removal: quotes are content).
fn expand_heredoc(content: &str, vars: &super::super::expand::Vars) -> String {
    let mut out = String::new();
    let mut rest = content;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if pos > 0 && rest.as_bytes()[pos - 1] == b'\\' {
            out.pop();
            out.push('$');
            rest = after;
            continue;
        }
        let (name, consumed) = if let Some(inner) = after.strip_prefix('{') {
            match inner.find('}') {
                Some(end) => (&inner[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        if name.is_empty() {
            out.push('$');
            rest = after;
            continue;
        }
        out.push_str(vars.get(name).map(String::as_str).unwrap_or(""));
        rest = &after[consumed..];
    }
    out.push_str(rest);
    out
}

/// Where one entry of a walked source lands (context and `--from` alike):
/// a directory source's contents keep their paths below `dest`; a file
/// source goes into a destination directory by its name, else to `dest`.
fn copy_target(dest: &str, source: &str, rel: &str, top_is_dir: bool, dest_is_dir: bool) -> String {
    if top_is_dir {
        if rel.is_empty() {
            dest.to_string()
        } else {
            format!("{dest}/{rel}")
        }
    } else if dest_is_dir {
        let base = source.rsplit('/').next().unwrap_or(source);
        format!("{dest}/{base}")
    } else {
        dest.to_string()
    }
}

/// A context path as a planned entry (sockets are skipped, as Docker).
fn plan_host(
    store: &crate::store::Store,
    known: &KnownDigests,
    walk: &ContextWalk,
    file: &ContextFile,
    target: String,
    owner: (u32, u32),
    chmod: Option<u32>,
) -> Result<Option<Planned>, BuildError> {
    let stat = &file.stat;
    let mode = chmod.unwrap_or(stat.mode() & 0o7777);
    let (kind, size, content, identity) = if stat.is_dir() {
        (NewKind::Dir, 0, Content::None, String::new())
    } else if stat.is_symlink() {
        let path = walk.path_of(file);
        let t = std::fs::read_link(&path).map_err(|e| BuildError::io(&path, e))?;
        let t = t.to_string_lossy().into_owned();
        (NewKind::Symlink(t.clone()), 0, Content::None, t)
    } else if stat.is_file() {
        let path = walk.path_of(file);
        let digest = known.file_digest(store, &file.rel, &path, stat)?;
        (
            NewKind::File,
            stat.size(),
            Content::Host(path),
            digest_text(&digest),
        )
    } else if stat.is_fifo() {
        (NewKind::Fifo, 0, Content::None, String::new())
    } else if stat.is_char_device() || stat.is_block_device() {
        let rdev = stat.rdev();
        let (ma, mi) = (
            nix::sys::stat::major(rdev) as u32,
            nix::sys::stat::minor(rdev) as u32,
        );
        let k = if stat.is_char_device() {
            NewKind::CharDevice(ma, mi)
        } else {
            NewKind::BlockDevice(ma, mi)
        };
        (k, 0, Content::None, format!("{ma}:{mi}"))
    } else {
        return Ok(None);
    };
    let mode = if matches!(kind, NewKind::Symlink(_)) {
        0o777
    } else {
        mode
    };
    Ok(Some(Planned {
        path: target,
        entry: NewEntry {
            kind,
            mode,
            uid: owner.0,
            gid: owner.1,
            mtime: stat.mtime(),
            size,
            content,
        },
        identity,
    }))
}

/// `sha256:<hex>` in one allocation of the right size.
fn digest_text(digest: &Digest) -> String {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(71);
    let _ = write!(text, "{digest}");
    text
}

/// A `--from` tree entry as a planned entry.
fn plan_tree(e: &TreeEntry, target: String, owner: (u32, u32), chmod: Option<u32>) -> Planned {
    let mode = chmod.unwrap_or(e.mode);
    let (kind, size, content, identity) = match &e.kind {
        EntryKind::Dir => (NewKind::Dir, 0, Content::None, String::new()),
        EntryKind::File(size, backing) => {
            let identity = backing
                .as_ref()
                .and_then(|b| b.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let content = backing.clone().map_or(Content::None, Content::Host);
            (NewKind::File, *size, content, identity)
        }
        EntryKind::Symlink(t) => (NewKind::Symlink(t.clone()), 0, Content::None, t.clone()),
        EntryKind::CharDevice(rdev) | EntryKind::BlockDevice(rdev) => {
            let (ma, mi) = (
                nix::sys::stat::major(*rdev) as u32,
                nix::sys::stat::minor(*rdev) as u32,
            );
            let k = if matches!(e.kind, EntryKind::CharDevice(_)) {
                NewKind::CharDevice(ma, mi)
            } else {
                NewKind::BlockDevice(ma, mi)
            };
            (k, 0, Content::None, format!("{ma}:{mi}"))
        }
        EntryKind::Fifo => (NewKind::Fifo, 0, Content::None, String::new()),
    };
    Planned {
        path: target,
        entry: NewEntry {
            kind,
            mode,
            uid: owner.0,
            gid: owner.1,
            mtime: e.mtime,
            size,
            content,
        },
        identity,
    }
}

/// Paths of `tree` a `--from` source names (wildcards per component).
fn tree_matches(tree: &StateTree, source: &str) -> Result<Vec<String>, BuildError> {
    let parts: Vec<&str> = source
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let mut found = vec![String::new()];
    for part in parts {
        let mut next = Vec::new();
        for base in &found {
            if !has_wildcard(part) {
                next.push(format!("{base}/{part}"));
                continue;
            }
            let listing = tree.walk(if base.is_empty() { "/" } else { base }, true)?;
            for e in listing
                .iter()
                .filter(|e| !e.rel.is_empty() && !e.rel.contains('/'))
            {
                if glob_match(part, &e.rel) {
                    next.push(format!("{base}/{}", e.rel));
                }
            }
        }
        found = next;
    }
    let mut out = Vec::new();
    for f in found {
        let f = if f.is_empty() { "/".to_string() } else { f };
        if tree.stat(&f, true)?.is_some() {
            out.push(f);
        }
    }
    Ok(out)
}

/// `user[:group]` to numeric ids, names from the state's /etc files.
fn resolve_chown(tree: &StateTree, spec: &str) -> Result<(u32, u32), String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let lookup = |file: &str, name: &str| -> Result<u32, String> {
        if let Ok(n) = name.parse::<u32>() {
            return Ok(n);
        }
        let text = tree
            .read_file(file)
            .map_err(|e| e.to_string())?
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        text.lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.first() == Some(&name) && f.len() > 2)
            .and_then(|f| f[2].parse().ok())
            .ok_or_else(|| {
                format!(
                    "unable to find {} {name:?} in {file}",
                    if file.ends_with("passwd") {
                        "user"
                    } else {
                        "group"
                    }
                )
            })
    };
    let uid = lookup("/etc/passwd", user)?;
    let gid = match group {
        Some(g) => lookup("/etc/group", g)?,
        None => uid,
    };
    Ok((uid, gid))
}

/// Docker's history text for the sources: `file:<hex>`, `dir:<hex>` or
/// `multi:<hex>` (the hex a digest of what was copied).
fn summarize(planned: &[Planned]) -> String {
    let mut h = crate::digest::Hasher::new();
    for p in planned {
        h.update(p.path.as_bytes());
        h.update(p.identity.as_bytes());
    }
    let hex = h.finish().hex();
    let files = planned
        .iter()
        .filter(|p| p.entry.kind == NewKind::File)
        .count();
    let dirs = planned
        .iter()
        .filter(|p| p.entry.kind == NewKind::Dir)
        .count();
    let kind = if planned.len() == 1 && files == 1 {
        "file"
    } else if dirs >= 1
        && planned
            .first()
            .is_some_and(|p| p.entry.kind == NewKind::Dir)
    {
        "dir"
    } else {
        "multi"
    };
    format!("{kind}:{hex}")
}

#[cfg(test)]
mod tests {
    use super::copy_target;

    #[test]
    fn targets_follow_dockers_rules() {
        // A directory's contents keep their paths below the destination.
        assert_eq!(copy_target("/app", "files", "", true, false), "/app");
        assert_eq!(copy_target("/app", "files", "a/b", true, true), "/app/a/b");
        // A file goes into a destination directory by its name.
        assert_eq!(
            copy_target("/app", "sub/f.txt", "", false, true),
            "/app/f.txt"
        );
        assert_eq!(
            copy_target("/app", "/etc/passwd", "", false, true),
            "/app/passwd"
        );
        // Else it is the destination.
        assert_eq!(
            copy_target("/app/x", "sub/f.txt", "", false, false),
            "/app/x"
        );
    }
}
