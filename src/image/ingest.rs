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

use std::collections::HashMap;
use std::io::{self, BufReader, Read};

pub use super::decode::Compression;
use super::decode::{decode, decode_on_a_thread, is_limit_violation, unwrap_io, Decoded};
use super::entry::{Kind, LayerEntry};
use super::limits::Limits;
use super::recipe::RecipeWriter;
use super::LayerError;
use crate::digest::Digest;
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
    let mut parser = Parser::new(store, staging, limits)?;
    let ((), decoded) = decode(input, limits, |tar| {
        parser.run(&mut BufReader::with_capacity(256 << 10, tar))
    })?;
    parser.finish(decoded)
}

/// Like [`ingest_layer`], with the stream decompressed and hashed on a
/// thread of its own while this one parses it and stages the files: one
/// layer keeps two cores busy.
pub fn ingest_layer_on_two_threads(
    store: &Store,
    staging: &mut Staging,
    input: &mut (dyn Read + Send),
    limits: &Limits,
) -> Result<IngestedLayer, LayerError> {
    let mut parser = Parser::new(store, staging, limits)?;
    let ((), decoded) = decode_on_a_thread(input, limits, |tar| parser.run(tar))?;
    parser.finish(decoded)
}

/// Metadata carried by PAX and GNU records to the next real entry.
#[derive(Default)]
struct Pending {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<(i64, u32)>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

struct Parser<'a> {
    store: &'a Store,
    staging: &'a mut Staging,
    limits: &'a Limits,
    offset: u64,
    recipe: RecipeWriter,
    entries: Vec<LayerEntry>,
    index: HashMap<Vec<u8>, usize>,
    whiteouts: Vec<Vec<u8>>,
    opaque_dirs: Vec<Vec<u8>>,
    marker_seen: std::collections::HashSet<Vec<u8>>,
    content_size: u64,
}

impl<'a> Parser<'a> {
    fn new(store: &'a Store, staging: &'a mut Staging, limits: &'a Limits) -> io::Result<Self> {
        Ok(Parser {
            store,
            staging,
            limits,
            offset: 0,
            recipe: RecipeWriter::new()?,
            entries: Vec::new(),
            index: HashMap::new(),
            whiteouts: Vec::new(),
            opaque_dirs: Vec::new(),
            marker_seen: Default::default(),
            content_size: 0,
        })
    }

    /// The layer, once its whole stream is parsed and decoded.
    fn finish(self, decoded: Decoded) -> Result<IngestedLayer, LayerError> {
        Ok(IngestedLayer {
            diff_id: decoded.diff_id,
            tar_size: decoded.tar_size,
            blob_digest: decoded.blob_digest,
            blob_size: decoded.blob_size,
            compression: decoded.compression,
            content_size: self.content_size,
            entries: self.entries,
            whiteouts: self.whiteouts,
            opaque_dirs: self.opaque_dirs,
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
        self.recipe.raw(&data);
        data.truncate(size as usize);
        Ok(data)
    }

    fn run(&mut self, r: &mut dyn Read) -> Result<(), LayerError> {
        let mut block = [0u8; BLOCK];
        let mut pending = Pending::default();
        loop {
            let header_offset = self.offset;
            if !self.read_block(r, &mut block, "a tar header")? {
                return if pending.path.is_some() || pending.size.is_some() {
                    Err(LayerError::Truncated {
                        offset: self.offset,
                        what: "an extended header's entry",
                    })
                } else {
                    Ok(())
                };
            }
            self.recipe.raw(&block);
            if block.iter().all(|&b| b == 0) {
                // End of archive: everything after it is kept verbatim.
                let mut rest = Vec::new();
                r.read_to_end(&mut rest)?;
                self.offset += rest.len() as u64;
                self.recipe.raw(&rest);
                return Ok(());
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
                    apply_pax(&data, &mut pending).map_err(|e| bad(e.to_string()))?;
                    continue;
                }
                tar::EntryType::XGlobalHeader => {
                    // Global records are kept verbatim; strata applies none.
                    self.read_record(r, header_size, "PAX global header")?;
                    continue;
                }
                tar::EntryType::GNULongName => {
                    let mut data = self.read_record(r, header_size, "GNU long name")?;
                    trim_nul(&mut data);
                    pending.path = Some(data);
                    continue;
                }
                tar::EntryType::GNULongLink => {
                    let mut data = self.read_record(r, header_size, "GNU long link")?;
                    trim_nul(&mut data);
                    pending.link = Some(data);
                    continue;
                }
                _ => {}
            }
            let meta = std::mem::take(&mut pending);
            self.entry(r, header, header_size, meta, header_offset)?;
        }
    }

    fn entry(
        &mut self,
        r: &mut dyn Read,
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
        let raw_path = meta
            .path
            .unwrap_or_else(|| header.path_bytes().into_owned());
        let size = meta.size.unwrap_or(header_size);
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
        if kind == Kind::File && raw_path.ends_with(b"/") {
            kind = Kind::Dir; // old tar: a directory is a regular entry ending in '/'
        }
        let path = normalize_path(&raw_path, self.limits.max_path_len)?;
        let display = show(&path);

        // Whiteouts and opaque markers.
        let base = path.rsplit(|&b| b == b'/').next().unwrap_or(&path);
        if let Some(name) = base.strip_prefix(b".wh.") {
            let parent = &path[..path.len() - base.len()];
            let parent = parent.strip_suffix(b"/").unwrap_or(parent).to_vec();
            self.skip_data(r, size, "a whiteout's content")?;
            if name == b".wh..opq" {
                if !self.marker_seen.insert(path.clone()) {
                    return Err(LayerError::Duplicate { path: display });
                }
                self.opaque_dirs.push(parent);
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
            self.whiteouts.push(target);
            return Ok(());
        }

        if self.index.contains_key(&path) {
            return Err(LayerError::Duplicate { path: display });
        }
        self.check_parents(&path)?;

        let mode = (header.mode().map_err(|e| LayerError::BadHeader {
            offset: header_offset,
            reason: e.to_string(),
        })?) & 0o7777;
        let uid = meta.uid.unwrap_or(header.uid().unwrap_or(0));
        let gid = meta.gid.unwrap_or(header.gid().unwrap_or(0));
        let (mtime_sec, mtime_nsec) = meta
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
            path: path.clone(),
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
            xattrs: meta.xattrs,
        };
        match kind {
            Kind::File => {
                let digest = self.stage_content(r, size)?;
                entry.size = size;
                entry.digest = Some(digest);
                self.content_size += size;
            }
            Kind::Symlink | Kind::Hardlink => {
                let target = meta.link.unwrap_or_else(|| {
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
                    let target_entry = &self.entries[self.index[&target]];
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
        self.index.insert(path, self.entries.len());
        self.entries.push(entry);
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

    fn stage_content(&mut self, r: &mut dyn Read, size: u64) -> Result<Digest, LayerError> {
        let start = self.offset;
        let mut limited = r.take(size);
        let digest = match self.staging.stage_file(self.store, &mut limited, size) {
            Ok(d) => d,
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
            self.recipe.raw(&padding[..pad]);
        }
        Ok(digest)
    }

    fn check_parents(&self, path: &[u8]) -> Result<(), LayerError> {
        for (i, &b) in path.iter().enumerate() {
            if b == b'/' {
                if let Some(&idx) = self.index.get(&path[..i]) {
                    if self.entries[idx].kind != Kind::Dir {
                        return Err(LayerError::ParentNotDirectory {
                            path: show(path),
                            parent: show(&path[..i]),
                        });
                    }
                }
            }
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
        let Some(&idx) = self.index.get(&normalized) else {
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

fn trim_nul(data: &mut Vec<u8>) {
    while data.last() == Some(&0) {
        data.pop();
    }
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

/// Applies the records of a PAX extended header to the next entry.
fn apply_pax(data: &[u8], pending: &mut Pending) -> io::Result<()> {
    for ext in tar::PaxExtensions::new(data) {
        let ext = ext?;
        let key = ext.key_bytes();
        let value = ext.value_bytes();
        let text = || std::str::from_utf8(value).ok().map(str::trim);
        let invalid =
            |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("invalid PAX {what}"));
        let number = |what: &str| -> io::Result<u64> {
            text()
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| invalid(what))
        };
        match key {
            b"path" => pending.path = Some(value.to_vec()),
            b"linkpath" => pending.link = Some(value.to_vec()),
            b"size" => pending.size = Some(number("size")?),
            b"uid" => pending.uid = Some(number("uid")?),
            b"gid" => pending.gid = Some(number("gid")?),
            b"mtime" => {
                pending.mtime = Some(
                    text()
                        .and_then(parse_pax_time)
                        .ok_or_else(|| invalid("mtime"))?,
                )
            }
            _ => {
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    pending.xattrs.push((name.to_vec(), value.to_vec()));
                }
            }
        }
    }
    Ok(())
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
