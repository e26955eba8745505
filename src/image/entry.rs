//! A layer's entries as the store records them, and their conversion into
//! the filesystem's input (`strata_fs::Layer`).

use crate::digest::Digest;

/// The kind of a layer entry, as stored in `entries.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File = 0,
    Dir = 1,
    Symlink = 2,
    Hardlink = 3,
    CharDevice = 4,
    BlockDevice = 5,
    Fifo = 6,
}

impl Kind {
    pub fn from_code(code: i64) -> Option<Kind> {
        Some(match code {
            0 => Kind::File,
            1 => Kind::Dir,
            2 => Kind::Symlink,
            3 => Kind::Hardlink,
            4 => Kind::CharDevice,
            5 => Kind::BlockDevice,
            6 => Kind::Fifo,
            _ => return None,
        })
    }
}

/// One entry of a layer: a path and its metadata. Regular files name their
/// content by digest; hardlinks name their target entry's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerEntry {
    pub path: Vec<u8>,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_sec: i64,
    pub mtime_nsec: u32,
    pub size: u64,
    pub digest: Option<Digest>,
    pub link_target: Option<Vec<u8>>,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Encodes xattrs for the `entries.xattrs` column:
/// repeated `<u32 name len><name><u32 value len><value>`, little endian.
pub fn encode_xattrs(xattrs: &[(Vec<u8>, Vec<u8>)]) -> Option<Vec<u8>> {
    if xattrs.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for (name, value) in xattrs {
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
    }
    Some(out)
}

pub fn decode_xattrs(data: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    let take = |pos: &mut usize| -> Option<Vec<u8>> {
        let len = u32::from_le_bytes(data.get(*pos..*pos + 4)?.try_into().ok()?) as usize;
        let bytes = data.get(*pos + 4..*pos + 4 + len)?.to_vec();
        *pos += 4 + len;
        Some(bytes)
    };
    while pos < data.len() {
        let name = take(&mut pos)?;
        let value = take(&mut pos)?;
        out.push((name, value));
    }
    Some(out)
}
