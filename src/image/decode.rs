//! The decoding half of a layer ingest: the stream as given is hashed (the
//! blob digest), decompressed (gzip or zstd, recognised from its first
//! bytes), and the tar stream that comes out is hashed (the diff_id) and
//! held to the size limit; what the consumer really writes from it is held
//! to the compression-ratio limit (see [`OutputCounter`]).
//!
//! [`decode`] does it on the calling thread, for a consumer that pulls the
//! tar stream through `Read`. [`decode_on_a_thread`] does it on a thread of
//! its own and hands the tar stream over in chunks, so that one layer keeps
//! two cores busy: this one inflating and hashing, the caller's parsing,
//! hashing and writing files.

use std::io::{self, BufRead, BufReader, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Arc;

use super::limits::Limits;
use super::LayerError;
use crate::digest::{Digest, Hasher};

/// How the given stream was compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// Recognises the compression from a stream's first bytes.
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// What decoding a whole stream found out.
#[derive(Debug, Clone, Copy)]
pub struct Decoded {
    pub compression: Compression,
    pub diff_id: Digest,
    /// Size of the uncompressed tar stream.
    pub tar_size: u64,
    /// Digest and size of the stream as it was given (equal to the diff_id
    /// and tar_size for an uncompressed stream).
    pub blob_digest: Digest,
    pub blob_size: u64,
}

/// Size of the chunks [`decode_on_a_thread`] hands over.
const CHUNK: usize = 256 << 10;
/// Chunks decoded ahead of the consumer, at most.
const CHUNKS_AHEAD: usize = 8;

/// Counts bytes read through it into a shared counter.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A buffered reader that hashes the bytes its consumers consume.
struct HashingBufReader<R> {
    inner: R,
    hasher: Option<Hasher>,
}

impl<R: BufRead> Read for HashingBufReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for HashingBufReader<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        if let Some(hasher) = self.hasher.as_mut() {
            if let Ok(available) = self.inner.fill_buf() {
                hasher.update(&available[..amount.min(available.len())]);
            }
        }
        self.inner.consume(amount);
    }
}

/// The bytes an ingest has really written so far: file contents the store
/// did not have (holes, the zero blocks of a file, not counted) and the
/// recipe's raw bytes. The consumer adds to it; the decoder weighs it
/// against the compressed bytes read.
#[derive(Debug, Clone, Default)]
pub struct OutputCounter(Arc<AtomicU64>);

impl OutputCounter {
    pub fn fetch_add(&self, bytes: u64, order: Ordering) {
        self.0.fetch_add(bytes, order);
    }
    pub fn load(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Hashes the uncompressed stream and enforces the size and ratio limits.
/// The ratio is that of the output really written to the compressed input
/// read: a zero-filled file expands a thousandfold and writes nothing, a
/// bomb of anything else writes what it expands to.
struct Uncompressed<'a> {
    inner: Box<dyn Read + 'a>,
    hasher: Hasher,
    compressed: Arc<AtomicU64>,
    compression: Compression,
    limits: &'a Limits,
    output: &'a OutputCounter,
}

impl Read for Uncompressed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        let total = self.hasher.len();
        if total > self.limits.max_layer_size {
            return Err(limit_error(LayerError::TooLarge {
                limit: self.limits.max_layer_size,
            }));
        }
        let written = self.output.load();
        if self.compression != Compression::None && written > self.limits.ratio_grace {
            let compressed = self.compressed.load(Ordering::Relaxed).max(1);
            if written / compressed > self.limits.max_compression_ratio {
                return Err(limit_error(LayerError::CompressionRatio {
                    limit: self.limits.max_compression_ratio,
                    written,
                    compressed,
                }));
            }
        }
        Ok(n)
    }
}

/// Carries a limit violation through `io::Read` so it surfaces unchanged.
#[derive(Debug)]
struct LimitViolation(LayerError);
impl std::fmt::Display for LimitViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
impl std::error::Error for LimitViolation {}

fn limit_error(e: LayerError) -> io::Error {
    io::Error::other(LimitViolation(e))
}

/// Whether an io error carries a limit violation.
pub fn is_limit_violation(e: &io::Error) -> bool {
    e.get_ref()
        .map(|inner| inner.is::<LimitViolation>())
        .unwrap_or(false)
}

/// Turns an io error back into the layer error it carries, if any.
pub fn unwrap_io(e: io::Error) -> LayerError {
    if is_limit_violation(&e) {
        if let Some(inner) = e.into_inner() {
            if let Ok(v) = inner.downcast::<LimitViolation>() {
                return v.0;
            }
        }
        return LayerError::Io(io::Error::other("limit exceeded"));
    }
    LayerError::Io(e)
}

/// A layer error with the limit violation it may carry brought out.
pub fn unwrap_layer_error(e: LayerError) -> LayerError {
    match e {
        LayerError::Io(io) => unwrap_io(io),
        other => other,
    }
}

/// Decodes the whole of `input` on the calling thread: `consume` reads the
/// tar stream (it need not read it all: the rest is read, hashed and
/// dropped after it returns), then whatever follows the compressed stream
/// is read too, as part of the blob.
pub fn decode<T>(
    input: &mut dyn Read,
    limits: &Limits,
    output: &OutputCounter,
    consume: impl FnOnce(&mut dyn Read) -> Result<T, LayerError>,
) -> Result<(T, Decoded), LayerError> {
    let compressed_count = Arc::new(AtomicU64::new(0));
    let mut counted = BufReader::with_capacity(
        256 << 10,
        Counting {
            inner: input,
            count: compressed_count.clone(),
        },
    );
    let compression = Compression::sniff(counted.fill_buf()?);
    // The stream as given is hashed only when it differs from the tar: for
    // an uncompressed layer the blob digest is the diff_id.
    let mut buffered = HashingBufReader {
        inner: counted,
        hasher: (compression != Compression::None).then(Hasher::new),
    };
    let decoded: Box<dyn Read + '_> = match compression {
        Compression::None => Box::new(&mut buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(&mut buffered)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(&mut buffered)?),
    };
    let mut stream = Uncompressed {
        inner: decoded,
        hasher: Hasher::new(),
        compressed: compressed_count,
        compression,
        limits,
        output,
    };
    let value = consume(&mut stream).map_err(unwrap_layer_error)?;
    io::copy(&mut stream, &mut io::sink()).map_err(unwrap_io)?;
    let tar_size = stream.hasher.len();
    let diff_id = std::mem::take(&mut stream.hasher).finish();
    drop(stream);
    // Whatever follows the compressed stream is part of the blob too.
    io::copy(&mut buffered, &mut io::sink())?;
    let (blob_digest, blob_size) = match buffered.hasher.take() {
        Some(hasher) => {
            let len = hasher.len();
            (hasher.finish(), len)
        }
        None => (diff_id, tar_size),
    };
    Ok((
        value,
        Decoded {
            compression,
            diff_id,
            tar_size,
            blob_digest,
            blob_size,
        },
    ))
}

/// Like [`decode`], with the decoding on a thread of its own: `consume`
/// runs on the calling thread and reads the tar stream as it is decoded.
/// When both sides fail, the decoder's error is the cause (the consumer
/// only saw the stream end early), unless the decoder stopped because the
/// consumer had.
pub fn decode_on_a_thread<T>(
    input: &mut (dyn Read + Send),
    limits: &Limits,
    output: &OutputCounter,
    consume: impl FnOnce(&mut dyn Read) -> Result<T, LayerError>,
) -> Result<(T, Decoded), LayerError> {
    let (chunks, received) = mpsc::sync_channel::<Vec<u8>>(CHUNKS_AHEAD);
    let (recycle, recycled) = mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        let decoder = scope.spawn(move || {
            decode(input, limits, output, |tar| {
                send_chunks(tar, &chunks, &recycled)
            })
        });
        let mut reader = ChunkReader {
            chunks: received,
            recycle,
            current: Vec::new(),
            position: 0,
        };
        let consumed = consume(&mut reader).map_err(unwrap_layer_error);
        // Unblocks a decoder still sending.
        drop(reader);
        let decoded = decoder
            .join()
            .unwrap_or_else(|_| Err(LayerError::Io(io::Error::other("the decoder panicked"))));
        match (consumed, decoded) {
            (Ok(value), Ok(((), decoded))) => Ok((value, decoded)),
            (Err(e), Err(LayerError::Io(io))) if is_consumer_gone(&io) => Err(e),
            (_, Err(e)) | (Err(e), Ok(_)) => Err(e),
        }
    })
}

/// The decoder's side: reads the tar stream in chunks and sends them.
fn send_chunks(
    tar: &mut dyn Read,
    chunks: &SyncSender<Vec<u8>>,
    recycled: &Receiver<Vec<u8>>,
) -> Result<(), LayerError> {
    loop {
        let mut chunk = recycled.try_recv().unwrap_or_default();
        chunk.resize(CHUNK, 0);
        let mut filled = 0;
        while filled < CHUNK {
            match tar.read(&mut chunk[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(unwrap_io(e)),
            }
        }
        if filled == 0 {
            return Ok(());
        }
        chunk.truncate(filled);
        if chunks.send(chunk).is_err() {
            return Err(LayerError::Io(io::Error::new(
                io::ErrorKind::BrokenPipe,
                ConsumerGone,
            )));
        }
    }
}

/// The decoder stopped because the consumer stopped reading.
#[derive(Debug)]
struct ConsumerGone;
impl std::fmt::Display for ConsumerGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the layer's reader stopped")
    }
}
impl std::error::Error for ConsumerGone {}

fn is_consumer_gone(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<ConsumerGone>())
}

/// The consumer's side: the chunks as one stream; it ends when the decoder
/// is done (or has failed, which the decoder's result then says).
struct ChunkReader {
    chunks: Receiver<Vec<u8>>,
    recycle: Sender<Vec<u8>>,
    current: Vec<u8>,
    position: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for ChunkReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.position >= self.current.len() {
            match self.chunks.recv() {
                Ok(next) => {
                    let done = std::mem::replace(&mut self.current, next);
                    // The decoder may be gone already; the buffer is then dropped.
                    let _ = self.recycle.send(done);
                    self.position = 0;
                }
                Err(_) => return Ok(&[]),
            }
        }
        Ok(&self.current[self.position..])
    }

    fn consume(&mut self, amount: usize) {
        self.position = (self.position + amount).min(self.current.len());
    }
}
