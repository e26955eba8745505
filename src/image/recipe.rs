//! Layer recipes: what is needed to rebuild a layer's uncompressed tar
//! byte for byte (tar-split style).
//!
//! A recipe is a zstd-compressed sequence of segments: raw bytes (headers,
//! PAX records, padding, the end-of-archive blocks and anything after
//! them) and references to file contents in the store by digest and size.
//! Format, after decompression, repeated to the end:
//! `0x01 <varint len> <len bytes>` or `0x02 <32-byte sha256> <varint size>`.

use std::io::{self, Read, Write};

use crate::digest::Digest;

const RAW: u8 = 1;
const FILE: u8 = 2;

/// Builds a recipe as a layer streams past.
pub struct RecipeWriter {
    encoder: zstd::stream::write::Encoder<'static, Vec<u8>>,
    pending: Vec<u8>,
}

impl RecipeWriter {
    pub fn new() -> io::Result<Self> {
        Ok(RecipeWriter {
            encoder: zstd::stream::write::Encoder::new(Vec::new(), 3)?,
            pending: Vec::new(),
        })
    }

    pub fn raw(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    pub fn file(&mut self, digest: &Digest, size: u64) -> io::Result<()> {
        self.flush_raw()?;
        self.encoder.write_all(&[FILE])?;
        self.encoder.write_all(digest.bytes())?;
        write_varint(&mut self.encoder, size)
    }

    fn flush_raw(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.encoder.write_all(&[RAW])?;
        write_varint(&mut self.encoder, self.pending.len() as u64)?;
        self.encoder.write_all(&self.pending)?;
        self.pending.clear();
        Ok(())
    }

    pub fn finish(mut self) -> io::Result<Vec<u8>> {
        self.flush_raw()?;
        self.encoder.finish()
    }
}

/// One segment of a decoded recipe.
#[derive(Debug, PartialEq, Eq)]
pub enum Segment {
    Raw(Vec<u8>),
    File { digest: Digest, size: u64 },
}

/// Decodes a recipe into its segments.
pub fn decode(recipe: &[u8]) -> io::Result<Vec<Segment>> {
    let mut data = Vec::new();
    zstd::stream::read::Decoder::new(recipe)?.read_to_end(&mut data)?;
    let mut pos = 0usize;
    let mut out = Vec::new();
    while pos < data.len() {
        let tag = data[pos];
        pos += 1;
        match tag {
            RAW => {
                let len = read_varint(&data, &mut pos)? as usize;
                let end = pos
                    .checked_add(len)
                    .filter(|&e| e <= data.len())
                    .ok_or_else(bad)?;
                out.push(Segment::Raw(data[pos..end].to_vec()));
                pos = end;
            }
            FILE => {
                let end = pos
                    .checked_add(32)
                    .filter(|&e| e <= data.len())
                    .ok_or_else(bad)?;
                let mut digest = [0u8; 32];
                digest.copy_from_slice(&data[pos..end]);
                pos = end;
                let size = read_varint(&data, &mut pos)?;
                out.push(Segment::File {
                    digest: Digest::from_bytes(digest),
                    size,
                });
            }
            _ => return Err(bad()),
        }
    }
    Ok(out)
}

fn bad() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "corrupt layer recipe")
}

fn write_varint(w: &mut impl Write, mut v: u64) -> io::Result<()> {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            return w.write_all(&[byte]);
        }
        w.write_all(&[byte | 0x80])?;
    }
}

fn read_varint(data: &[u8], pos: &mut usize) -> io::Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *data.get(*pos).ok_or_else(bad)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut w = RecipeWriter::new().unwrap();
        w.raw(b"header");
        w.raw(b"more");
        let d = Digest::of(b"content");
        w.file(&d, 300_000).unwrap();
        w.raw(&[0u8; 1024]);
        let enc = w.finish().unwrap();
        let segs = decode(&enc).unwrap();
        assert_eq!(
            segs,
            vec![
                Segment::Raw(b"headermore".to_vec()),
                Segment::File {
                    digest: d,
                    size: 300_000
                },
                Segment::Raw(vec![0u8; 1024])
            ]
        );
    }
}
