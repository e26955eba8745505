//! Layer ingest: a tar, tar+gzip or tar+zstd stream becomes staged file
//! contents, entry rows and a recipe, without ever touching a host path
//! named by the layer.
//!
//! The stream is decompressed and hashed by [`super::decode`] (the blob
//! digest and the diff_id), on this thread or a second one. Headers are
//! parsed here, block by block, rather than
//! through an extracting reader, so that every byte that is not file
//! content (headers, PAX records, padding, trailer) goes into the recipe
//! verbatim.

use std::collections::HashSet;
use std::hash::BuildHasher;
use std::io::{self, BufRead, Read};
use std::sync::atomic::Ordering;

pub use super::decode::Compression;
use super::decode::{
    decode_buffered, decode_on_threads, is_limit_violation, unwrap_io, Decoded, OutputCounter,
    READ_BUFFER,
};
use super::entry::{Kind, LayerEntry};
use super::limits::Limits;
use super::recipe::RecipeWriter;
use super::LayerError;
use crate::digest::{ContentRead, Digest};
use crate::store::{Staging, Store};

const BLOCK: usize = 512;

/// A layer read and staged, ready to be recorded.
#[derive(Debug)]
pub struct IngestedLayer {
    pub diff_id: Digest,
    /// Size of the uncompressed tar stream.
    pub tar_size: u64,
    /// Digest and size of the stream as it was given (equal to the diff_id
    /// and tar_size for an uncompressed stream).
    pub blob_digest: Digest,
    pub blob_size: u64,
    pub compression: Compression,
    /// Sum of the regular files' sizes.
    pub content_size: u64,
    pub entries: Vec<LayerEntry>,
    pub whiteouts: Vec<Vec<u8>>,
    pub opaque_dirs: Vec<Vec<u8>>,
    /// The directories the layer implies without an entry of its own (see
    /// [`super::dir_index`]), found while parsing.
    pub implicit_dirs: Vec<Vec<u8>>,
    pub recipe: Vec<u8>,
}

/// Reads a whole layer stream from `input`, staging new file contents in
/// `staging`. Nothing is recorded yet: see [`super::record_layer`].
pub fn ingest_layer(
    store: &Store,
    staging: &mut Staging,
    input: &mut dyn Read,
    limits: &Limits,
) -> Result<IngestedLayer, LayerError> {
    ingest_layer_buffered(
        store,
        staging,
        &mut std::io::BufReader::with_capacity(READ_BUFFER, input),
        limits,
    )
}

/// [`ingest_layer`] of an input buffered already (see
/// [`super::decode::decode_buffered`]).
pub fn ingest_layer_buffered(
    store: &Store,
    staging: &mut Staging,
    input: &mut dyn BufRead,
    limits: &Limits,
) -> Result<IngestedLayer, LayerError> {
    let output = OutputCounter::default();
    let mut parser = Parser::new(store, staging, limits, output.clone())?;
    let ((), decoded) = decode_buffered(input, limits, &output, |tar| parser.run(tar))?;
    parser.finish(decoded)
}

/// Like [`ingest_layer`], with the stream read, decompressed and hashed on
/// threads of their own while this one parses it and stages the files
/// (see [`super::decode::decode_on_threads`]): one layer keeps both cores
/// busy.
pub fn ingest_layer_on_threads(
    store: &Store,
    staging: &mut Staging,
    input: &mut (dyn Read + Send),
    limits: &Limits,
) -> Result<IngestedLayer, LayerError> {
    let output = OutputCounter::default();
    let mut parser = Parser::new(store, staging, limits, output.clone())?;
    let ((), decoded) = decode_on_threads(input, limits, &output, |tar| parser.run(tar))?;
    parser.finish(decoded)
}

/// Records of a PAX extended header (`x`) for the next real entry. As in
/// Go's archive/tar, a second `x` header replaces the first one's records
/// entirely, and a record with an empty value keeps the header's field.
#[derive(Default)]
struct Pax {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<(i64, u32)>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Metadata carried by PAX and GNU records to the next real entry. A GNU
/// long name (or link) names the entry whatever PAX says, before or after
/// it, as Go's archive/tar (Docker's reader) has it.
#[derive(Default)]
struct Pending {
    pax: Pax,
    gnu_name: Option<Vec<u8>>,
    gnu_link: Option<Vec<u8>>,
}

impl Pending {
    fn path(&mut self) -> Option<Vec<u8>> {
        self.gnu_name.take().or_else(|| self.pax.path.take())
    }
    fn link(&mut self) -> Option<Vec<u8>> {
        self.gnu_link.take().or_else(|| self.pax.link.take())
    }
}

/// Entry paths to their position in the layer's entries, without a
/// second copy of each path (a million-entry layer's paths once, not
/// twice).
#[derive(Default)]
struct PathIndex {
    table: hashbrown::HashTable<usize>,
    hasher: std::hash::RandomState,
}

impl PathIndex {
    fn get(&self, entries: &[LayerEntry], path: &[u8]) -> Option<usize> {
        let hash = self.hasher.hash_one(path);
        self.table.find(hash, |&i| entries[i].path == path).copied()
    }

    /// Indexes `entries[position]` (whose path is not indexed yet).
    fn insert(&mut self, entries: &[LayerEntry], position: usize) {
        let hasher = &self.hasher;
        let hash = hasher.hash_one(entries[position].path.as_slice());
        self.table.insert_unique(hash, position, |&i| {
            hasher.hash_one(entries[i].path.as_slice())
        });
    }
}

struct Parser<'a> {
    store: &'a Store,
    staging: &'a mut Staging,
    limits: &'a Limits,
    offset: u64,
    recipe: RecipeWriter,
    entries: Vec<LayerEntry>,
    index: PathIndex,
    whiteouts: Vec<Vec<u8>>,
    /// The whiteouts still in force (an entry at the same path, later in
    /// the layer, replaces one).
    whiteout_set: HashSet<Vec<u8>>,
    opaque_dirs: Vec<Vec<u8>>,
    marker_seen: HashSet<Vec<u8>>,
    /// Directories that paths of this layer imply.
    implied_dirs: HashSet<Vec<u8>>,
    content_size: u64,
    /// Bytes really written (file contents not already stored, minus
    /// holes, and the recipe's raw bytes): what the bomb check weighs.
    output: OutputCounter,
}

impl<'a> Parser<'a> {
    fn new(
        store: &'a Store,
        staging: &'a mut Staging,
        limits: &'a Limits,
        output: OutputCounter,
    ) -> io::Result<Self> {
        Ok(Parser {
            store,
            staging,
            limits,
            offset: 0,
            recipe: RecipeWriter::new()?,
            entries: Vec::new(),
            index: PathIndex::default(),
            whiteouts: Vec::new(),
            whiteout_set: HashSet::new(),
            opaque_dirs: Vec::new(),
            marker_seen: HashSet::new(),
            implied_dirs: HashSet::new(),
            content_size: 0,
            output,
        })
    }

    /// The layer, once its whole stream is parsed and decoded.
    fn finish(self, decoded: Decoded) -> Result<IngestedLayer, LayerError> {
        let (index, entries) = (&self.index, &self.entries);
        let mut implicit_dirs: Vec<Vec<u8>> = self
            .implied_dirs
            .into_iter()
            .filter(|d| index.get(entries, d).is_none())
            .collect();
        implicit_dirs.sort_unstable();
        let in_force = self.whiteout_set;
        let mut whiteouts = self.whiteouts;
        whiteouts.retain(|w| in_force.contains(w));
        Ok(IngestedLayer {
            diff_id: decoded.diff_id,
            tar_size: decoded.tar_size,
            blob_digest: decoded.blob_digest,
            blob_size: decoded.blob_size,
            compression: decoded.compression,
            content_size: self.content_size,
            entries: self.entries,
            whiteouts,
            opaque_dirs: self.opaque_dirs,
            implicit_dirs,
            recipe: self.recipe.finish()?,
        })
    }

    /// Reads exactly one block; `Ok(false)` on a clean end of stream.
    fn read_block(
        &mut self,
        r: &mut dyn Read,
        block: &mut [u8; BLOCK],
        what: &'static str,
    ) -> Result<bool, LayerError> {
        let mut got = 0;
        while got < BLOCK {
            let n = r.read(&mut block[got..])?;
            if n == 0 {
                if got == 0 {
                    return Ok(false);
                }
                return Err(LayerError::Truncated {
                    offset: self.offset + got as u64,
                    what,
                });
            }
            got += n;
        }
        self.offset += BLOCK as u64;
        Ok(true)
    }

    /// Reads `size` bytes of a record plus its padding into the recipe and
    /// returns the record.
    fn read_record(
        &mut self,
        r: &mut dyn Read,
        size: u64,
        what: &'static str,
    ) -> Result<Vec<u8>, LayerError> {
        if size > self.limits.max_pax_size {
            return Err(LayerError::RecordTooLarge {
                what,
                offset: self.offset,
                size,
                limit: self.limits.max_pax_size,
            });
        }
        let padded = padded(size);
        let mut data = vec![0u8; padded as usize];
        read_exact(r, &mut data, self.offset, what)?;
        self.offset += padded;
        self.raw(&data)?;
        data.truncate(size as usize);
        Ok(data)
    }

    fn run(&mut self, r: &mut dyn ContentRead) -> Result<(), LayerError> {
        let mut block = [0u8; BLOCK];
        let mut pending = Pending::default();
        loop {
            let header_offset = self.offset;
            if !self.read_block(r, &mut block, "a tar header")? {
                // The stream may end without the end-of-archive blocks, even
                // after an extended header with no entry: Go's reader (so
                // Docker) takes that as the end too.
                return Ok(());
            }
            self.raw(&block)?;
            if block.iter().all(|&b| b == 0) {
                return self.end_of_archive(r, &mut block);
            }
            let header = tar::Header::from_byte_slice(&block);
            verify_checksum(&block, header_offset)?;
            let bad = |reason: String| LayerError::BadHeader {
                offset: header_offset,
                reason,
            };
            let header_size = header.entry_size().map_err(|e| bad(format!("size: {e}")))?;
            match header.entry_type() {
                tar::EntryType::XHeader => {
                    let data = self.read_record(r, header_size, "PAX extended header")?;
                    pending.pax = parse_pax(&data).map_err(|e| bad(e.to_string()))?;
                    continue;
                }
                tar::EntryType::XGlobalHeader => {
                    // Global records are kept verbatim; strata applies none.
                    // Go's reader hands a global header over as an entry of
                    // its own, so what was pending does not reach the next.
                    let data = self.read_record(r, header_size, "PAX global header")?;
                    parse_pax(&data).map_err(|e| bad(e.to_string()))?;
                    pending = Pending::default();
                    continue;
                }
                tar::EntryType::GNULongName => {
                    let data = self.read_record(r, header_size, "GNU long name")?;
                    pending.gnu_name = Some(c_string(data)).filter(|n| !n.is_empty());
                    continue;
                }
                tar::EntryType::GNULongLink => {
                    let data = self.read_record(r, header_size, "GNU long link")?;
                    pending.gnu_link = Some(c_string(data)).filter(|n| !n.is_empty());
                    continue;
                }
                _ => {}
            }
            let meta = std::mem::take(&mut pending);
            self.entry(r, header, header_size, meta, header_offset)?;
        }
    }

    /// After a zero block: a second one (or the end of the stream) ends the
    /// archive and everything after it is kept verbatim; a header there is
    /// refused, as Go's reader refuses it.
    fn end_of_archive(
        &mut self,
        r: &mut dyn Read,
        block: &mut [u8; BLOCK],
    ) -> Result<(), LayerError> {
        let offset = self.offset;
        if self.read_block(r, block, "the end-of-archive blocks")? {
            self.raw(block)?;
            if block.iter().any(|&b| b != 0) {
                return Err(LayerError::BadHeader {
                    offset,
                    reason: "a header after a zero block (an archive ends with two zero blocks)"
                        .into(),
                });
            }
        }
        let mut chunk = vec![0u8; 64 << 10];
        loop {
            let n = match r.read(&mut chunk) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            self.offset += n as u64;
            self.raw(&chunk[..n])?;
        }
    }

    fn entry(
        &mut self,
        r: &mut dyn ContentRead,
        header: &tar::Header,
        header_size: u64,
        meta: Pending,
        header_offset: u64,
    ) -> Result<(), LayerError> {
        if self.entries.len() as u64 + self.whiteouts.len() as u64 >= self.limits.max_entries {
            return Err(LayerError::TooManyEntries {
                limit: self.limits.max_entries,
            });
        }
        let mut meta = meta;
        let raw_path = meta
            .path()
            .unwrap_or_else(|| header.path_bytes().into_owned());
        let size = meta.pax.size.unwrap_or(header_size);
        let entry_type = header.entry_type();
        let mut kind = match entry_type {
            tar::EntryType::Regular | tar::EntryType::Continuous => Kind::File,
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Symlink => Kind::Symlink,
            tar::EntryType::Link => Kind::Hardlink,
            tar::EntryType::Char => Kind::CharDevice,
            tar::EntryType::Block => Kind::BlockDevice,
            tar::EntryType::Fifo => Kind::Fifo,
            other => {
                return Err(LayerError::Unsupported {
                    path: show(&raw_path),
                    what: format!("tar entry type {:?}", other.as_byte() as char),
                })
            }
        };
        if header.as_bytes()[156] == 0 && raw_path.ends_with(b"/") {
            // Old tar: a directory is a type-NUL entry ending in '/' (not a
            // type-'0' one, which Go's reader keeps a file).
            kind = Kind::Dir;
        }
        // As in Go's reader, only regular files have data: the size field
        // of a link, directory, device or FIFO is not followed by any.
        let size = if kind == Kind::File { size } else { 0 };
        let path = normalize_path(&raw_path, self.limits.max_path_len)?;
        if path.is_empty() {
            // `.` or `./`, whatever its type: Docker's layer application
            // skips it (the root stays the directory it is), so its bytes
            // are kept for the recipe and nothing else.
            return self.keep_raw(r, size);
        }
        let display = show(&path);

        // Whiteouts and opaque markers, with Docker's (overlay2) rules for
        // what the same layer does around them: a whiteout of something the
        // layer made is refused, as is anything below a whiteout; an entry
        // at a whited-out path replaces the whiteout.
        let base = path.rsplit(|&b| b == b'/').next().unwrap_or(&path);
        if let Some(name) = base.strip_prefix(b".wh.") {
            let parent = &path[..path.len() - base.len()];
            let parent = parent.strip_suffix(b"/").unwrap_or(parent).to_vec();
            self.skip_data(r, size, "a whiteout's content")?;
            self.check_parents(&path)?;
            if name == b".wh..opq" {
                if !self.marker_seen.insert(path.clone()) {
                    return Err(LayerError::Duplicate { path: display });
                }
                // The root cannot be opaque: overlayfs (Docker's overlay2,
                // strata's overlay provider) ignores the marker there.
                if !parent.is_empty() {
                    self.note_parents(&path);
                    self.opaque_dirs.push(parent);
                }
                return Ok(());
            }
            if name.is_empty() || name == b"." || name == b".." || name.starts_with(b".wh.") {
                return Err(LayerError::InvalidWhiteout {
                    path: display,
                    reason: "names no valid entry",
                });
            }
            if kind == Kind::Dir {
                return Err(LayerError::InvalidWhiteout {
                    path: display,
                    reason: "a whiteout cannot be a directory",
                });
            }
            let mut target = parent;
            if !target.is_empty() {
                target.push(b'/');
            }
            target.extend_from_slice(name);
            if !self.marker_seen.insert(path.clone()) {
                return Err(LayerError::Duplicate { path: display });
            }
            if self.index.get(&self.entries, &target).is_some()
                || self.implied_dirs.contains(&target)
            {
                return Err(LayerError::InvalidWhiteout {
                    path: display,
                    reason: "it deletes an entry of the same layer",
                });
            }
            self.note_parents(&path);
            self.whiteout_set.insert(target.clone());
            self.whiteouts.push(target);
            return Ok(());
        }

        if self.index.get(&self.entries, &path).is_some() {
            return Err(LayerError::Duplicate { path: display });
        }
        self.check_parents(&path)?;
        self.whiteout_set.remove(&path);
        self.note_parents(&path);

        let mode = (header.mode().map_err(|e| LayerError::BadHeader {
            offset: header_offset,
            reason: e.to_string(),
        })?) & 0o7777;
        let uid = meta.pax.uid.unwrap_or(header.uid().unwrap_or(0));
        let gid = meta.pax.gid.unwrap_or(header.gid().unwrap_or(0));
        let (mtime_sec, mtime_nsec) = meta
            .pax
            .mtime
            .unwrap_or((header.mtime().unwrap_or(0) as i64, 0));
        let (uid, gid) = (
            u32::try_from(uid).map_err(|_| LayerError::BadHeader {
                offset: header_offset,
                reason: "uid out of range".into(),
            })?,
            u32::try_from(gid).map_err(|_| LayerError::BadHeader {
                offset: header_offset,
                reason: "gid out of range".into(),
            })?,
        );
        let mut entry = LayerEntry {
            path,
            kind,
            mode,
            uid,
            gid,
            mtime_sec,
            mtime_nsec,
            size: 0,
            digest: None,
            link_target: None,
            dev_major: 0,
            dev_minor: 0,
            xattrs: std::mem::take(&mut meta.pax.xattrs),
        };
        match kind {
            Kind::File => {
                let digest = self.stage_content(r, size)?;
                entry.size = size;
                entry.digest = Some(digest);
                self.content_size += size;
            }
            Kind::Symlink | Kind::Hardlink => {
                let target = meta.link().unwrap_or_else(|| {
                    header
                        .link_name_bytes()
                        .map(|l| l.into_owned())
                        .unwrap_or_default()
                });
                if target.is_empty() {
                    return Err(LayerError::InvalidPath {
                        path: display,
                        reason: "link with an empty target",
                    });
                }
                if kind == Kind::Hardlink {
                    let target = self.resolve_hardlink(&display, &target)?;
                    let target_entry = self
                        .index
                        .get(&self.entries, &target)
                        .map(|i| &self.entries[i])
                        .ok_or_else(|| LayerError::BadHardlink {
                            path: display.clone(),
                            target: show(&target),
                            reason: "the target is not an earlier entry of this layer",
                        })?;
                    entry.size = target_entry.size;
                    entry.digest = target_entry.digest;
                    entry.link_target = Some(target);
                } else {
                    entry.link_target = Some(target);
                }
                self.skip_data(r, size, "a link's content")?;
            }
            Kind::CharDevice | Kind::BlockDevice => {
                entry.dev_major = device_number(header, 329, header.device_major(), header_offset)?;
                entry.dev_minor = device_number(header, 337, header.device_minor(), header_offset)?;
                self.skip_data(r, size, "a device's content")?;
            }
            Kind::Dir | Kind::Fifo => self.skip_data(r, size, "an entry's content")?,
        }
        self.entries.push(entry);
        self.index.insert(&self.entries, self.entries.len() - 1);
        Ok(())
    }

    /// Data of an entry that has no content of its own is kept verbatim.
    fn skip_data(
        &mut self,
        r: &mut dyn Read,
        size: u64,
        what: &'static str,
    ) -> Result<(), LayerError> {
        if size == 0 {
            return Ok(());
        }
        if size > self.limits.max_pax_size {
            return Err(LayerError::RecordTooLarge {
                what,
                offset: self.offset,
                size,
                limit: self.limits.max_pax_size,
            });
        }
        self.read_record(r, size, what).map(|_| ())
    }

    fn stage_content(&mut self, r: &mut dyn ContentRead, size: u64) -> Result<Digest, LayerError> {
        let start = self.offset;
        let digest = match self.staging.stage_file(self.store, r, size) {
            Ok(staged) => {
                self.output.fetch_add(staged.written, Ordering::Relaxed);
                staged.digest
            }
            Err(crate::store::StoreError::Io { source, .. })
                if source.kind() == io::ErrorKind::UnexpectedEof =>
            {
                return Err(LayerError::Truncated {
                    offset: start,
                    what: "a file's content",
                })
            }
            Err(crate::store::StoreError::Io { source, .. }) if is_limit_violation(&source) => {
                return Err(unwrap_io(source))
            }
            Err(e) => return Err(e.into()),
        };
        self.recipe.file(&digest, size)?;
        self.offset += size;
        let pad = (padded(size) - size) as usize;
        if pad > 0 {
            let mut padding = [0u8; BLOCK];
            read_exact(r, &mut padding[..pad], self.offset, "a file's padding")?;
            self.offset += pad as u64;
            self.raw(&padding[..pad])?;
        }
        Ok(digest)
    }

    /// Refuses a path below a non-directory of this layer, or below a path
    /// this layer whited out (a character device, for Docker's overlay2).
    fn check_parents(&self, path: &[u8]) -> Result<(), LayerError> {
        for (i, &b) in path.iter().enumerate() {
            if b != b'/' {
                continue;
            }
            let parent = &path[..i];
            let non_directory = match self.index.get(&self.entries, parent) {
                Some(idx) => self.entries[idx].kind != Kind::Dir,
                None => self.whiteout_set.contains(parent),
            };
            if non_directory {
                return Err(LayerError::ParentNotDirectory {
                    path: show(path),
                    parent: show(parent),
                });
            }
        }
        Ok(())
    }

    /// Remembers the directories a path implies (as extracting it would
    /// create them), so that a later whiteout of one is refused.
    fn note_parents(&mut self, path: &[u8]) {
        for (i, &b) in path.iter().enumerate().rev() {
            if b == b'/' {
                if self.implied_dirs.contains(&path[..i]) {
                    return; // and so are its own parents
                }
                self.implied_dirs.insert(path[..i].to_vec());
            }
        }
    }

    /// Bytes that are not file content, kept for the recipe and counted
    /// as output written.
    fn raw(&mut self, data: &[u8]) -> Result<(), LayerError> {
        self.output.fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(self.recipe.raw(data)?)
    }

    /// The data of an entry strata skips, streamed into the recipe.
    fn keep_raw(&mut self, r: &mut dyn Read, size: u64) -> Result<(), LayerError> {
        let mut left = padded(size);
        let mut chunk = vec![0u8; left.min(64 << 10) as usize];
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            read_exact(r, &mut chunk[..n], self.offset, "an entry's content")?;
            self.offset += n as u64;
            self.raw(&chunk[..n])?;
            left -= n as u64;
        }
        Ok(())
    }

    fn resolve_hardlink(&self, display: &str, target: &[u8]) -> Result<Vec<u8>, LayerError> {
        let bad = |reason| LayerError::BadHardlink {
            path: display.to_string(),
            target: show(target),
            reason,
        };
        if target.starts_with(b"/") {
            return Err(bad("the target is an absolute path"));
        }
        let normalized = normalize_path(target, self.limits.max_path_len)
            .map_err(|_| bad("the target escapes the layer"))?;
        let Some(idx) = self.index.get(&self.entries, &normalized) else {
            return Err(bad("the target is not an earlier entry of this layer"));
        };
        let target_entry = &self.entries[idx];
        match target_entry.kind {
            Kind::Dir => Err(bad("the target is a directory")),
            Kind::Hardlink => Ok(target_entry.link_target.clone().unwrap_or(normalized)),
            _ => Ok(normalized),
        }
    }
}

/// A device number field; an empty one (all NUL or spaces) reads as 0,
/// as GNU tar and Go's archive/tar read it.
fn device_number(
    header: &tar::Header,
    at: usize,
    parsed: io::Result<Option<u32>>,
    offset: u64,
) -> Result<u32, LayerError> {
    match parsed {
        Ok(v) => Ok(v.unwrap_or(0)),
        Err(_)
            if header.as_bytes()[at..at + 8]
                .iter()
                .all(|&b| b == 0 || b == b' ') =>
        {
            Ok(0)
        }
        Err(e) => Err(LayerError::BadHeader {
            offset,
            reason: e.to_string(),
        }),
    }
}

fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK as u64) * BLOCK as u64
}

fn read_exact(
    r: &mut dyn Read,
    buf: &mut [u8],
    offset: u64,
    what: &'static str,
) -> Result<(), LayerError> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            LayerError::Truncated { offset, what }
        } else {
            LayerError::Io(e)
        }
    })
}

fn verify_checksum(block: &[u8; BLOCK], offset: u64) -> Result<(), LayerError> {
    let field = &block[148..156];
    let text: Vec<u8> = field
        .iter()
        .copied()
        .filter(|&b| b != 0 && b != b' ')
        .collect();
    let stored = std::str::from_utf8(&text)
        .ok()
        .and_then(|s| u32::from_str_radix(s, 8).ok())
        .ok_or_else(|| LayerError::BadHeader {
            offset,
            reason: "unreadable checksum".into(),
        })?;
    let unsigned: u32 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(b)
            }
        })
        .sum();
    let signed: i64 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                i64::from(b as i8)
            }
        })
        .sum();
    if stored != unsigned && i64::from(stored) != signed {
        return Err(LayerError::BadHeader {
            offset,
            reason: "header checksum mismatch".into(),
        });
    }
    Ok(())
}

/// Parses the records of a PAX extended header as Go's archive/tar does:
/// a NUL byte in a `path`, `linkpath`, `uname` or `gname` value, or in any
/// key, makes the header invalid; a record with an empty value is ignored
/// (the header's own field stands); a later record of a key replaces an
/// earlier one.
fn parse_pax(data: &[u8]) -> io::Result<Pax> {
    let mut pax = Pax::default();
    let invalid =
        |what: String| io::Error::new(io::ErrorKind::InvalidData, format!("invalid PAX {what}"));
    for ext in tar::PaxExtensions::new(data) {
        let ext = ext?;
        let key = ext.key_bytes();
        let value = ext.value_bytes();
        let names_a_path = matches!(key, b"path" | b"linkpath" | b"uname" | b"gname");
        if key.is_empty() || key.contains(&0) || (names_a_path && value.contains(&0)) {
            return Err(invalid(format!(
                "record {:?}: a NUL byte or an empty key",
                show(key)
            )));
        }
        if value.is_empty() {
            continue;
        }
        let text = || std::str::from_utf8(value).ok().map(str::trim);
        let number = |what: &str| -> io::Result<u64> {
            text()
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| invalid(what.to_string()))
        };
        match key {
            b"path" => pax.path = Some(value.to_vec()),
            b"linkpath" => pax.link = Some(value.to_vec()),
            b"size" => pax.size = Some(number("size")?),
            b"uid" => pax.uid = Some(number("uid")?),
            b"gid" => pax.gid = Some(number("gid")?),
            b"mtime" => {
                pax.mtime = Some(
                    text()
                        .and_then(parse_pax_time)
                        .ok_or_else(|| invalid("mtime".into()))?,
                )
            }
            _ => {
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    pax.xattrs.retain(|(n, _)| n != name);
                    pax.xattrs.push((name.to_vec(), value.to_vec()));
                }
            }
        }
    }
    Ok(pax)
}

/// A GNU long name or link record: a C string (Go's reader stops at the
/// first NUL byte).
fn c_string(mut data: Vec<u8>) -> Vec<u8> {
    if let Some(end) = data.iter().position(|&b| b == 0) {
        data.truncate(end);
    }
    data
}

/// Parses a PAX time (`1700000000.123456789`, possibly negative).
fn parse_pax_time(s: &str) -> Option<(i64, u32)> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    let negative = int.starts_with('-');
    let secs: i64 = int.parse().ok()?;
    if !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let nsec: u32 = digits.parse().ok()?;
    if negative && nsec > 0 {
        Some((secs - 1, 1_000_000_000 - nsec))
    } else {
        Some((secs, nsec))
    }
}

/// Normalises a tar path to the store's form (relative, no `./`, no
/// trailing `/`; the root is empty) and refuses anything that could
/// escape: absolute paths and `..` components.
pub fn normalize_path(raw: &[u8], max_len: usize) -> Result<Vec<u8>, LayerError> {
    let invalid = |reason| LayerError::InvalidPath {
        path: show(raw),
        reason,
    };
    if raw.len() > max_len {
        return Err(invalid("longer than the path length limit"));
    }
    if raw.starts_with(b"/") {
        return Err(invalid("absolute paths are not allowed in a layer"));
    }
    let mut out: Vec<u8> = Vec::with_capacity(raw.len());
    for component in raw.split(|&b| b == b'/') {
        match component {
            b"" | b"." => continue,
            b".." => return Err(invalid("'..' is not allowed in a layer path")),
            c => {
                if c.len() > 255 {
                    return Err(invalid("a path component is longer than 255 bytes"));
                }
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    Ok(out)
}

/// A path for messages: a long one (a layer may name a megabyte) keeps
/// its start and end.
pub fn show(path: &[u8]) -> String {
    const LONGEST: usize = 240;
    if path.len() <= LONGEST {
        return String::from_utf8_lossy(path).into_owned();
    }
    format!(
        "{}…{} ({} bytes)",
        String::from_utf8_lossy(&path[..LONGEST - 40]),
        String::from_utf8_lossy(&path[path.len() - 20..]),
        path.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_accepts_and_rejects() {
        assert_eq!(normalize_path(b"./a/b/", 4096).unwrap(), b"a/b");
        assert_eq!(normalize_path(b"./", 4096).unwrap(), b"");
        assert!(normalize_path(b"/etc/passwd", 4096).is_err());
        assert!(normalize_path(b"a/../../x", 4096).is_err());
        assert!(normalize_path(b"..", 4096).is_err());
        assert!(normalize_path(&[b'a'; 5000], 4096).is_err());
    }

    /// A ustar header block for `name` of `kind` with `size` bytes.
    fn header(name: &[u8], kind: u8, size: usize) -> Vec<u8> {
        let mut h = tar::Header::new_ustar();
        h.as_mut_bytes()[..name.len()].copy_from_slice(name);
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_size(size as u64);
        h.set_mode(0o644);
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    #[test]
    fn implicit_dirs_found_while_parsing_are_strata_fs_s() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut tar = Vec::new();
        for (name, kind) in [
            (&b"a/b/c/f"[..], b'0'),
            (b"a/b/", b'5'),
            (b"w/x/.wh.gone", b'0'),
            (b"o/p/.wh..wh..opq", b'0'),
            (b".wh..wh..opq", b'0'),
            (b"r/.wh.s", b'0'),
            (b"r/s/", b'5'),
            (b"./", b'5'),
        ] {
            tar.extend(header(name, kind, 0));
        }
        tar.extend([0u8; 1024]);
        let mut staging = store.begin_staging().unwrap();
        let layer = ingest_layer(
            &store,
            &mut staging,
            &mut tar.as_slice(),
            &Limits::default(),
        )
        .unwrap();
        let expected: Vec<Vec<u8>> = strata_fs::source::implicit_dirs(
            layer.entries.iter().map(|e| e.path.as_slice()),
            layer.whiteouts.iter().map(Vec::as_slice),
            layer.opaque_dirs.iter().map(Vec::as_slice),
        )
        .into_iter()
        .collect();
        assert_eq!(layer.implicit_dirs, expected);
        let show = |v: &[Vec<u8>]| v.iter().map(|p| show(p)).collect::<Vec<_>>();
        assert_eq!(
            show(&layer.implicit_dirs),
            ["a", "a/b/c", "o", "o/p", "r", "w", "w/x"]
        );
        // `./` and the root opaque marker are not recorded; the whiteout
        // of r/s is replaced by the directory.
        assert_eq!(show(&layer.opaque_dirs), ["o/p"]);
        assert_eq!(show(&layer.whiteouts), ["w/x/gone"]);
        assert!(layer.entries.iter().all(|e| !e.path.is_empty()));
    }

    #[test]
    fn pax_times() {
        assert_eq!(
            parse_pax_time("1700000000.5"),
            Some((1_700_000_000, 500_000_000))
        );
        assert_eq!(parse_pax_time("12"), Some((12, 0)));
        assert_eq!(parse_pax_time("-1.25"), Some((-2, 750_000_000)));
        assert_eq!(parse_pax_time("x"), None);
    }
}
