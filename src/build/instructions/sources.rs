//! What ADD reads besides plain files: http(s) URLs (downloaded, checked
//! against `--checksum`) and local tar archives (plain, gzip, bzip2, xz
//! or zstd), unpacked into the layer's entries. Archive paths are
//! normalised and may not climb out (`..`) of the destination.

use std::io::Read;
use std::path::Path;

use super::super::layer::{Content, NewEntry, NewKind};
use crate::digest::{Digest, Hasher};

/// A file's sha256, read in 1 MiB blocks.
pub fn file_digest(path: &Path) -> std::io::Result<Digest> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish())
}

enum Compression {
    None,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

fn sniff(head: &[u8]) -> Option<Compression> {
    if head.starts_with(&[0x1f, 0x8b]) {
        Some(Compression::Gzip)
    } else if head.starts_with(b"BZh") {
        Some(Compression::Bzip2)
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Some(Compression::Xz)
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some(Compression::Zstd)
    } else if head.len() >= 262 && &head[257..262] == b"ustar" {
        Some(Compression::None)
    } else {
        None
    }
}

fn decompressor<'a>(kind: Compression, file: std::fs::File) -> std::io::Result<Box<dyn Read + 'a>> {
    Ok(match kind {
        Compression::None => Box::new(file),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(file)),
        Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(file)),
        Compression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(file)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(file)?),
    })
}

/// Whether ADD unpacks this file: a tar, or a compressed stream whose
/// content is a tar.
pub fn is_archive(path: &Path) -> std::io::Result<bool> {
    let mut head = vec![0u8; 512];
    let mut f = std::fs::File::open(path)?;
    let n = read_up_to(&mut f, &mut head)?;
    head.truncate(n);
    match sniff(&head) {
        None => Ok(false),
        Some(Compression::None) => Ok(true),
        Some(kind) => {
            let f = std::fs::File::open(path)?;
            let mut inner = decompressor(kind, f)?;
            let mut block = vec![0u8; 512];
            let n = read_up_to(&mut inner, &mut block).unwrap_or(0);
            Ok(n >= 262 && &block[257..262] == b"ustar")
        }
    }
}

fn read_up_to(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The entries of a local archive: (relative path, entry, identity).
pub fn unpack_archive(path: &Path) -> Result<Vec<(String, NewEntry, String)>, String> {
    let mut head = vec![0u8; 512];
    let mut f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let n = read_up_to(&mut f, &mut head).map_err(|e| e.to_string())?;
    head.truncate(n);
    let kind = sniff(&head).ok_or("not an archive")?;
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let reader = decompressor(kind, f).map_err(|e| e.to_string())?;
    let mut archive = tar::Archive::new(reader);
    let mut out: Vec<(String, NewEntry, String)> = Vec::new();
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let raw = entry.path_bytes().into_owned();
        let rel = crate::image::ingest::normalize_path(&raw, 4096).map_err(|e| e.to_string())?;
        let rel = String::from_utf8_lossy(&rel).into_owned();
        if rel.is_empty() {
            continue;
        }
        let h = entry.header().clone();
        let mode = h.mode().unwrap_or(0o644) & 0o7777;
        let uid = h.uid().unwrap_or(0) as u32;
        let gid = h.gid().unwrap_or(0) as u32;
        let mtime = h.mtime().unwrap_or(0) as i64;
        let link = entry
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned());
        let (kind, content, identity) = match h.entry_type() {
            tar::EntryType::Directory => (NewKind::Dir, Content::None, String::new()),
            tar::EntryType::Symlink => {
                let t = link.unwrap_or_default();
                (NewKind::Symlink(t.clone()), Content::None, t)
            }
            tar::EntryType::Link => {
                // A hard link: a copy of what it names (already listed).
                let target = link.unwrap_or_default();
                let target = String::from_utf8_lossy(
                    &crate::image::ingest::normalize_path(target.as_bytes(), 4096)
                        .map_err(|e| e.to_string())?,
                )
                .into_owned();
                let found = out.iter().find(|(p, ..)| *p == target).cloned();
                match found {
                    Some((_, e, id)) => (e.kind, e.content, id),
                    None => {
                        return Err(format!(
                            "{rel}: hard link to {target}, which is not in the archive before it"
                        ))
                    }
                }
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                let (ma, mi) = (
                    h.device_major().ok().flatten().unwrap_or(0),
                    h.device_minor().ok().flatten().unwrap_or(0),
                );
                let k = if h.entry_type() == tar::EntryType::Char {
                    NewKind::CharDevice(ma, mi)
                } else {
                    NewKind::BlockDevice(ma, mi)
                };
                (k, Content::None, format!("{ma}:{mi}"))
            }
            tar::EntryType::Fifo => (NewKind::Fifo, Content::None, String::new()),
            t if t.is_file() => {
                let mut data = Vec::new();
                entry.read_to_end(&mut data).map_err(|e| e.to_string())?;
                let id = Digest::of(&data).to_string();
                (NewKind::File, Content::Bytes(data), id)
            }
            _ => continue,
        };
        let size = match &content {
            Content::Bytes(d) => d.len() as u64,
            _ => 0,
        };
        out.retain(|(p, ..)| *p != rel);
        out.push((
            rel,
            NewEntry {
                kind,
                mode,
                uid,
                gid,
                mtime,
                size,
                content,
            },
            identity,
        ));
    }
    Ok(out)
}

/// A downloaded file: its name (the URL's last path segment), content
/// and modification time (Last-Modified, else 0).
pub struct Fetched {
    pub name: String,
    pub data: Vec<u8>,
    pub mtime: i64,
}

/// Downloads `url`; with `checksum` (`sha256:<hex>`), verifies it.
pub fn download(url: &str, checksum: Option<&str>) -> Result<Fetched, String> {
    let client = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(600))
        .build()
        .map_err(|e| e.to_string())?;
    let response = client.get(url).send().map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("invalid response status {}", response.status()));
    }
    let mtime = response
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
        .map(|t| t.timestamp())
        .unwrap_or(0);
    let name = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty() && !n.contains(':'))
        .unwrap_or("__unnamed__")
        .to_string();
    let data = response.bytes().map_err(|e| e.to_string())?.to_vec();
    if let Some(sum) = checksum.filter(|s| !s.is_empty()) {
        let expected: Digest = sum
            .parse()
            .map_err(|_| format!("invalid checksum {sum:?}: sha256:<64 hex digits> is expected"))?;
        let actual = Digest::of(&data);
        if actual != expected {
            return Err(format!(
                "digest mismatch {actual}: {expected} was expected (--checksum)"
            ));
        }
    }
    Ok(Fetched { name, data, mtime })
}
