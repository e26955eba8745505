//! SHA-256 digests (`sha256:<64 hex>`), and readers and writers that hash
//! what passes through them.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

mod twin;

/// A content digest. Only sha256 is accepted, as Docker does by default.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

#[derive(Debug, thiserror::Error)]
#[error("invalid digest {0:?}: expected sha256:<64 lowercase hex digits>")]
pub struct DigestParseError(pub String);

impl Digest {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Digest(bytes)
    }

    pub fn of(data: &[u8]) -> Self {
        Digest(Sha256::digest(data).into())
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 hex digits, without the algorithm.
    pub fn hex(&self) -> String {
        self.hex_digits().to_string()
    }

    /// The 64 hex digits in a buffer of their own (no allocation).
    fn hex_digits(&self) -> HexDigits {
        let mut out = [0u8; 64];
        // 32 bytes always fit 64 digits.
        let _ = hex::encode_to_slice(self.0, &mut out);
        HexDigits(out)
    }

    /// The 12-digit short form Docker prints.
    pub fn short(&self) -> String {
        self.hex()[..12].to_string()
    }

    /// Parses a bare 64-digit hex string.
    pub fn from_hex(s: &str) -> Result<Self, DigestParseError> {
        if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(DigestParseError(s.to_string()));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| DigestParseError(s.to_string()))?;
        Ok(Digest(out))
    }
}

impl FromStr for Digest {
    type Err = DigestParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix("sha256:") {
            Some(hex) => Digest::from_hex(hex).map_err(|_| DigestParseError(s.to_string())),
            None => Err(DigestParseError(s.to_string())),
        }
    }
}

/// Hex digits of a digest, on the stack.
struct HexDigits([u8; 64]);

impl std::ops::Deref for HexDigits {
    type Target = str;
    fn deref(&self) -> &str {
        // Hex digits are ASCII.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        f.write_str(&self.hex_digits())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A streaming SHA-256 with a byte count. Two hashers fed the same bytes
/// from the same point of a block can be fed together, at about the cost
/// of one ([`Hasher::update_twin`]).
#[derive(Clone)]
pub struct Hasher {
    state: [u32; 8],
    /// The bytes of the block not complete yet: `pending[..len % 64]`.
    pending: [u8; 64],
    len: u64,
}

impl Default for Hasher {
    fn default() -> Self {
        Hasher {
            state: twin::INITIAL,
            pending: [0; 64],
            len: 0,
        }
    }
}

impl Hasher {
    pub fn new() -> Self {
        Self::default()
    }

    fn pending_len(&self) -> usize {
        (self.len % 64) as usize
    }

    pub fn update(&mut self, data: &[u8]) {
        let rest = self.fill_pending(data);
        if self.pending_len() != 0 {
            return; // all of `data` went to a block still not complete
        }
        let whole = rest.len() / 64 * 64;
        twin::compress(&mut self.state, &rest[..whole]);
        self.keep(whole, &rest[whole..]);
    }

    /// Feeds `data` to both hashers, as `a.update(data); b.update(data)`
    /// would, and in one pass over its blocks where the two are at the same
    /// point of a block with the same bytes pending (as the tar stream's
    /// hasher and a file's are at the start of its content).
    pub fn update_twin(a: &mut Hasher, b: &mut Hasher, data: &[u8]) {
        let at = a.pending_len();
        if at != b.pending_len() || a.pending[..at] != b.pending[..at] {
            a.update(data);
            b.update(data);
            return;
        }
        let rest = a.fill_pending(data);
        b.fill_pending(data);
        if a.pending_len() != 0 {
            return;
        }
        let whole = rest.len() / 64 * 64;
        twin::compress_twin(&mut a.state, &mut b.state, &rest[..whole]);
        a.keep(whole, &rest[whole..]);
        b.keep(whole, &rest[whole..]);
    }

    /// Adds the start of `data` to the pending block (compressing it once
    /// complete) and returns what is left of `data`.
    fn fill_pending<'d>(&mut self, data: &'d [u8]) -> &'d [u8] {
        let at = self.pending_len();
        if at == 0 {
            return data;
        }
        let take = (64 - at).min(data.len());
        self.pending[at..at + take].copy_from_slice(&data[..take]);
        self.len += take as u64;
        if at + take == 64 {
            let block = self.pending;
            twin::compress(&mut self.state, &block);
        }
        &data[take..]
    }

    /// Counts `whole` bytes just compressed and keeps `tail`, less than a
    /// block, as pending.
    fn keep(&mut self, whole: usize, tail: &[u8]) {
        debug_assert!(tail.len() < 64 && self.pending_len() == 0);
        self.pending[..tail.len()].copy_from_slice(tail);
        self.len += (whole + tail.len()) as u64;
    }

    pub fn len(&self) -> u64 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finish(mut self) -> Digest {
        let bits = self.len.wrapping_mul(8);
        let at = self.pending_len();
        let mut last = [0u8; 128];
        last[..at].copy_from_slice(&self.pending[..at]);
        last[at] = 0x80;
        let end = if at < 56 { 64 } else { 128 };
        last[end - 8..end].copy_from_slice(&bits.to_be_bytes());
        twin::compress(&mut self.state, &last[..end]);
        let mut out = [0u8; 32];
        for (bytes, word) in out.chunks_exact_mut(4).zip(self.state) {
            bytes.copy_from_slice(&word.to_be_bytes());
        }
        Digest(out)
    }
}

/// A reader that can hash a stretch of what it reads as one file's
/// content, beside whatever it hashes anyway: the tar stream of a pull
/// hashes each file's content in the same pass as the stream's own
/// digest ([`Hasher::update_twin`]). A reader that does not (the
/// defaults) leaves the content's hashing to the caller.
pub trait ContentRead: Read {
    /// Starts hashing what is read from here on as a content of its own;
    /// false where this reader does not (the caller then hashes it).
    fn start_content(&mut self) -> bool {
        false
    }
    /// The digest of what was read since [`ContentRead::start_content`],
    /// and stops hashing it.
    fn content_digest(&mut self) -> Option<Digest> {
        None
    }
}

impl ContentRead for &[u8] {}

/// A reader that hashes and counts every byte read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Hasher::new(),
        }
    }
    pub fn bytes_read(&self) -> u64 {
        self.hasher.len()
    }
    pub fn finish(self) -> (Digest, u64, R) {
        let len = self.hasher.len();
        (self.hasher.finish(), len, self.inner)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A writer that hashes and counts every byte written through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Hasher::new(),
        }
    }
    pub fn finish(self) -> (Digest, u64, W) {
        let len = self.hasher.len();
        (self.hasher.finish(), len, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_digest_is_the_well_known_one() {
        assert_eq!(
            Digest::of(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn parse_round_trips_and_rejects_bad_input() {
        let d = Digest::of(b"x");
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        assert!("sha256:abc".parse::<Digest>().is_err());
        assert!(format!("sha512:{}", d.hex()).parse::<Digest>().is_err());
        assert!(d.to_string().to_uppercase().parse::<Digest>().is_err());
    }

    /// `len` bytes of a xorshift sequence from `seed` (also the twin's tests').
    pub(super) fn bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// Splits `data` into pieces of lengths from `seed` (0 to 200 bytes).
    fn pieces(data: &[u8], seed: u64) -> Vec<&[u8]> {
        let cuts = bytes(data.len(), seed);
        let (mut out, mut at, mut i) = (Vec::new(), 0, 0);
        while at < data.len() {
            let n = (cuts[i] as usize % 201).min(data.len() - at);
            out.push(&data[at..at + n]);
            at += n;
            i += 1;
        }
        out
    }

    #[test]
    fn hasher_matches_sha2_at_every_length_and_split() {
        for len in (0..300).chain([1000, 4096, 65_537]) {
            let data = bytes(len, len as u64 + 1);
            let want = Digest(Sha256::digest(&data).into());
            let mut whole = Hasher::new();
            whole.update(&data);
            assert_eq!(whole.len(), len as u64);
            assert_eq!(whole.finish(), want, "{len} bytes at once");
            let mut split = Hasher::new();
            for piece in pieces(&data, len as u64 + 7) {
                split.update(piece);
            }
            assert_eq!(split.finish(), want, "{len} bytes in pieces");
        }
    }

    #[test]
    fn twin_updates_match_separate_hashes() {
        // A tar-like stream: a prefix, then a file's content from a block
        // boundary, then more; the second hasher rides along the content.
        for (prefix, content, after) in [(512, 10_000, 300), (0, 63, 1), (64, 65, 0), (1024, 0, 5)]
        {
            let stream = bytes(prefix + content + after, content as u64 + 3);
            let mut tar = Hasher::new();
            tar.update(&stream[..prefix]);
            let mut file = Hasher::new();
            for piece in pieces(&stream[prefix..prefix + content], 11) {
                Hasher::update_twin(&mut tar, &mut file, piece);
            }
            tar.update(&stream[prefix + content..]);
            assert_eq!(file.len(), content as u64);
            assert_eq!(file.finish(), Digest::of(&stream[prefix..prefix + content]));
            assert_eq!(tar.finish(), Digest::of(&stream));
        }
    }

    #[test]
    fn twin_updates_out_of_step_still_hash_each_stream() {
        // The file's content starts mid-block of the stream: the two are not
        // in step, and each must still get its own digest.
        let stream = bytes(5000, 5);
        let mut tar = Hasher::new();
        tar.update(&stream[..100]);
        let mut file = Hasher::new();
        for piece in pieces(&stream[100..4000], 13) {
            Hasher::update_twin(&mut tar, &mut file, piece);
        }
        tar.update(&stream[4000..]);
        assert_eq!(file.finish(), Digest::of(&stream[100..4000]));
        assert_eq!(tar.finish(), Digest::of(&stream));
    }
}
