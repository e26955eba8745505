//! A new layer made of named entries (COPY, ADD, WORKDIR): the entries
//! are written as a tar stream on one thread and ingested into the store
//! on this one as they come, so a file's content goes from where it is
//! (the context, a store file, memory) straight into the store, and is
//! not written at all when the store has it already. The parent's tree
//! is never unpacked: directories on the way to an entry are taken from
//! it (their metadata) or made new.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use super::error::BuildError;
use super::tree::{EntryKind, StateTree};
use crate::image::{ingest_layer, IngestedLayer, Limits};
use crate::store::{Staging, Store};

/// Where an entry's content comes from.
#[derive(Debug, Clone)]
pub enum Content {
    None,
    Host(PathBuf),
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewKind {
    File,
    Dir,
    Symlink(String),
    CharDevice(u32, u32),
    BlockDevice(u32, u32),
    Fifo,
}

#[derive(Debug, Clone)]
pub struct NewEntry {
    pub kind: NewKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub size: u64,
    pub content: Content,
}

impl NewEntry {
    pub fn dir(mode: u32, uid: u32, gid: u32, mtime: i64) -> NewEntry {
        NewEntry {
            kind: NewKind::Dir,
            mode,
            uid,
            gid,
            mtime,
            size: 0,
            content: Content::None,
        }
    }
}

/// The entries of a layer being made, by path (relative, no leading `/`).
#[derive(Default)]
pub struct LayerBuilder {
    entries: BTreeMap<String, NewEntry>,
}

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl LayerBuilder {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Adds (or replaces) the entry at `path`.
    pub fn add(&mut self, path: &str, entry: NewEntry) {
        let path = path.trim_matches('/').to_string();
        if path.is_empty() {
            return;
        }
        self.entries.insert(path, entry);
    }

    pub fn contains(&self, path: &str) -> bool {
        self.entries.contains_key(path.trim_matches('/'))
    }

    /// Adds the directories leading to every entry: as they are in
    /// `parent` when they exist there, otherwise new (0755, owned by
    /// `owner`, Docker's rule for directories COPY creates).
    pub fn add_parents(&mut self, parent: &StateTree, owner: (u32, u32)) -> Result<(), BuildError> {
        let mut missing: BTreeMap<String, NewEntry> = BTreeMap::new();
        let now = now_secs();
        for path in self.entries.keys() {
            let mut end = 0;
            while let Some(slash) = path[end..].find('/') {
                let dir = &path[..end + slash];
                end += slash + 1;
                if self.entries.contains_key(dir) || missing.contains_key(dir) {
                    continue;
                }
                let entry = match parent.stat(&format!("/{dir}"), false)? {
                    Some(e) if e.kind == EntryKind::Dir => {
                        NewEntry::dir(e.mode, e.uid, e.gid, e.mtime)
                    }
                    _ => NewEntry::dir(0o755, owner.0, owner.1, now),
                };
                missing.insert(dir.to_string(), entry);
            }
        }
        self.entries.extend(missing);
        Ok(())
    }

    /// Writes the entries as a layer and ingests it; the staging holds
    /// its new files until the caller publishes.
    pub fn ingest(self, store: &Store) -> Result<(Staging, IngestedLayer), BuildError> {
        let mut staging = store.begin_staging()?;
        let (read_end, write_end) =
            nix::unistd::pipe().map_err(|e| BuildError::io("pipe", e.into()))?;
        let mut reader = std::fs::File::from(read_end);
        let writer = std::fs::File::from(write_end);
        let entries = self.entries;
        let result = std::thread::scope(|scope| {
            let producer = scope.spawn(move || write_tar(entries, writer));
            let ingested = ingest_layer(store, &mut staging, &mut reader, &Limits::default());
            drop(reader);
            let written = producer
                .join()
                .unwrap_or_else(|_| Err(BuildError::Invalid("the layer writer panicked".into())));
            // The writer's own error (an unreadable source) explains an
            // ingest that stopped short better than the ingest's.
            written?;
            ingested.map_err(BuildError::from)
        })?;
        Ok((staging, result))
    }
}

fn write_tar(entries: BTreeMap<String, NewEntry>, out: std::fs::File) -> Result<(), BuildError> {
    let mut builder = tar::Builder::new(std::io::BufWriter::with_capacity(1 << 20, out));
    builder.mode(tar::HeaderMode::Complete);
    let fail = |path: &str, e: std::io::Error| BuildError::io(path, e);
    for (path, e) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(e.mode & 0o7777);
        h.set_uid(e.uid as u64);
        h.set_gid(e.gid as u64);
        h.set_mtime(e.mtime.max(0) as u64);
        h.set_size(0);
        match &e.kind {
            NewKind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                builder
                    .append_data(&mut h, format!("{path}/"), std::io::empty())
                    .map_err(|err| fail(&path, err))?;
            }
            NewKind::Symlink(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                builder
                    .append_link(&mut h, &path, target)
                    .map_err(|err| fail(&path, err))?;
            }
            NewKind::CharDevice(major, minor) | NewKind::BlockDevice(major, minor) => {
                h.set_entry_type(if matches!(e.kind, NewKind::CharDevice(..)) {
                    tar::EntryType::Char
                } else {
                    tar::EntryType::Block
                });
                h.set_device_major(*major).map_err(|err| fail(&path, err))?;
                h.set_device_minor(*minor).map_err(|err| fail(&path, err))?;
                builder
                    .append_data(&mut h, &path, std::io::empty())
                    .map_err(|err| fail(&path, err))?;
            }
            NewKind::Fifo => {
                h.set_entry_type(tar::EntryType::Fifo);
                builder
                    .append_data(&mut h, &path, std::io::empty())
                    .map_err(|err| fail(&path, err))?;
            }
            NewKind::File => {
                h.set_entry_type(tar::EntryType::Regular);
                match &e.content {
                    Content::None => {
                        builder
                            .append_data(&mut h, &path, std::io::empty())
                            .map_err(|err| fail(&path, err))?;
                    }
                    Content::Bytes(data) => {
                        h.set_size(data.len() as u64);
                        builder
                            .append_data(&mut h, &path, data.as_slice())
                            .map_err(|err| fail(&path, err))?;
                    }
                    Content::Host(source) => {
                        let file = std::fs::File::open(source)
                            .map_err(|err| BuildError::io(source, err))?;
                        let size = file
                            .metadata()
                            .map_err(|err| BuildError::io(source, err))?
                            .len();
                        h.set_size(size);
                        use std::io::Read;
                        // A file that shrinks meanwhile must not make a
                        // short entry: read exactly `size` bytes.
                        let mut limited = file.take(size);
                        builder
                            .append_data(&mut h, &path, &mut limited)
                            .map_err(|err| BuildError::io(source, err))?;
                    }
                }
            }
        }
    }
    let mut inner = builder.into_inner().map_err(|e| fail("layer", e))?;
    inner.flush().map_err(|e| fail("layer", e))?;
    Ok(())
}
