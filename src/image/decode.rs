//! The decoding half of a layer ingest: the stream as given is hashed (the
//! blob digest), decompressed (gzip or zstd, recognised from its first
//! bytes), and the tar stream that comes out is hashed (the diff_id) and
//! held to the size limit; what the consumer really writes from it is held
//! to the compression-ratio limit (see [`OutputCounter`]).
//!
//! [`decode_buffered`] does it on the calling thread, for a consumer that pulls the
//! tar stream through `Read`. [`decode_on_threads`] splits it over two
//! threads of its own (reading and hashing the input; decompressing) and
//! hands the tar stream over in chunks, so that one layer keeps both cores
//! busy: the caller hashes the tar stream as it reads it, each file's
//! content in the same pass ([`ContentRead`]), and parses and writes the
//! files meanwhile.

use std::io::{self, BufRead, BufReader, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Arc;

use super::limits::Limits;
use super::LayerError;
use crate::digest::{ContentRead, Digest, Hasher};

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

/// Size of the chunks [`decode_on_a_thread`] and [`stream_channel`] hand
/// over.
pub const CHUNK: usize = 256 << 10;
/// The buffer a plain reader gets before it is decoded, and a decoder's
/// output before it is parsed.
pub const READ_BUFFER: usize = 256 << 10;
/// Chunks decoded ahead of the consumer, at most.
const CHUNKS_AHEAD: usize = 8;

/// Counts the bytes consumed through it into a shared counter.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: BufRead> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Counting<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        self.count.fetch_add(amount as u64, Ordering::Relaxed);
        self.inner.consume(amount);
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
    size: u64,
    compressed: Arc<AtomicU64>,
    compression: Compression,
    limits: &'a Limits,
    output: &'a OutputCounter,
}

impl ContentRead for Uncompressed<'_> {}

impl Read for Uncompressed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.size += n as u64;
        if self.size > self.limits.max_layer_size {
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

/// Decodes the whole of `input`, buffered already (a [`StreamReader`], a
/// slice, a `BufReader`), on the calling thread: `consume` reads the tar
/// stream, buffered, through a reader that hashes it and, where asked, a
/// file's content in the same pass ([`ContentRead`]); it need not read it
/// all: the rest is read, hashed and dropped after it returns. Then
/// whatever follows the compressed stream is read too, as part of the
/// blob. The input's own buffer is read from, with no copy into another
/// first, and an uncompressed stream is parsed straight from it (load's
/// ingesting thread spent 0.15 s of its 0.57 s copying a 300 MB layer
/// three times; 0.10 s now).
pub fn decode_buffered<T>(
    input: &mut dyn BufRead,
    limits: &Limits,
    output: &OutputCounter,
    consume: impl FnOnce(&mut dyn ContentRead) -> Result<T, LayerError>,
) -> Result<(T, Decoded), LayerError> {
    decode_with(input, Hashing::Both, limits, output, consume)
}

/// What [`decode_with`] hashes itself.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hashing {
    /// The stream as given (the blob digest) and the tar stream (the diff_id).
    Both,
    /// Neither: the caller does, and fills in [`Decoded`]'s digests.
    Neither,
}

/// [`decode_buffered`], hashing what `hashing` says; without hashing, `consume`
/// reads the decoder's output as it comes (no buffer, no hash).
fn decode_with<T>(
    input: &mut dyn BufRead,
    hashing: Hashing,
    limits: &Limits,
    output: &OutputCounter,
    consume: impl FnOnce(&mut dyn ContentRead) -> Result<T, LayerError>,
) -> Result<(T, Decoded), LayerError> {
    let compressed_count = Arc::new(AtomicU64::new(0));
    let mut counted = Counting {
        inner: input,
        count: compressed_count.clone(),
    };
    let compression = Compression::sniff(counted.fill_buf()?);
    // The stream as given is hashed only when it differs from the tar: for
    // an uncompressed layer the blob digest is the diff_id.
    let mut buffered = HashingBufReader {
        inner: counted,
        hasher: (hashing == Hashing::Both && compression != Compression::None).then(Hasher::new),
    };
    let decoded: Box<dyn Read + '_> = match compression {
        Compression::None => Box::new(&mut buffered),
        Compression::Gzip => super::gzip::decoder(&mut buffered),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(&mut buffered)?),
    };
    let mut stream = Uncompressed {
        inner: decoded,
        size: 0,
        compressed: compressed_count,
        compression,
        limits,
        output,
    };
    let (value, diff_id) = if hashing == Hashing::Both {
        // An uncompressed stream is read from the input's buffer as it
        // is; a decoder's output is buffered for the parser's small reads.
        let (value, diff_id, _) = if compression == Compression::None {
            TarReader::read(&mut stream, consume)
        } else {
            TarReader::read(BufReader::with_capacity(READ_BUFFER, &mut stream), consume)
        }
        .map_err(unwrap_layer_error)?;
        (value, diff_id)
    } else {
        let value = consume(&mut stream).map_err(unwrap_layer_error)?;
        io::copy(&mut stream, &mut io::sink()).map_err(unwrap_io)?;
        (value, Digest::from_bytes([0; 32]))
    };
    let tar_size = stream.size;
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

/// Like [`decode_buffered`], as a pipeline of threads joined by bounded channels:
/// one reads `input` and hashes it (the blob digest: for a pull, the
/// network side), one decompresses it, and `consume` runs on the calling
/// thread, reading the tar stream as it is decoded through a reader that
/// hashes it (the diff_id) and, where asked, a file's content in the same
/// pass (a pull parses the stream and writes the files there). A single
/// gzip stream's inflate is the one step that cannot be split, so its
/// thread does nothing else. What `consume` leaves unread is read and
/// hashed after it. When several stages fail, the first one that failed
/// on its own is the cause: the stages after it only saw their stream end
/// early, the ones before it only saw the next one stop reading.
pub fn decode_on_threads<T>(
    input: &mut (dyn Read + Send),
    limits: &Limits,
    output: &OutputCounter,
    consume: impl FnOnce(&mut dyn ContentRead) -> Result<T, LayerError>,
) -> Result<(T, Decoded), LayerError> {
    let (raw_chunks, raw_received) = mpsc::sync_channel::<Vec<u8>>(CHUNKS_AHEAD);
    let (raw_recycle, raw_recycled) = mpsc::channel::<Vec<u8>>();
    let (tar_chunks, tar_received) = mpsc::sync_channel::<Vec<u8>>(CHUNKS_AHEAD);
    let (recycle, recycled) = mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || read_input(input, &raw_chunks, &raw_recycled));
        let decoder = scope.spawn(move || {
            let mut raw = ChunkReader::new(raw_received, raw_recycle);
            decode_with(&mut raw, Hashing::Neither, limits, output, |tar| {
                send_chunks(tar, &tar_chunks, &recycled)
            })
        });
        // Its reader, dropped when it returns, unblocks the stages
        // before, still sending.
        let consumed = TarReader::read(ChunkReader::new(tar_received, recycle), consume)
            .map_err(unwrap_layer_error);
        let panicked = |what: &str| LayerError::Io(io::Error::other(format!("{what} panicked")));
        let decoded = decoder
            .join()
            .unwrap_or_else(|_| Err(panicked("the decoder")));
        let read = reader
            .join()
            .unwrap_or_else(|_| Err(panicked("the reader")));
        match (read, decoded, consumed) {
            (Ok(blob), Ok(((), mut decoded)), Ok((value, diff_id, tar_size))) => {
                decoded.diff_id = diff_id;
                decoded.tar_size = tar_size;
                (decoded.blob_digest, decoded.blob_size) = match blob {
                    (Some(digest), size) => (digest, size),
                    // An uncompressed stream is the tar itself.
                    (None, _) => (diff_id, tar_size),
                };
                Ok((value, decoded))
            }
            (Err(e), _, _) if !is_stage_gone(&e) => Err(e),
            (_, Err(e), _) if !is_stage_gone(&e) => Err(e),
            (_, _, Err(e)) => Err(e),
            (Err(e), _, _) | (_, Err(e), _) => Err(e),
        }
    })
}

/// The tar stream as the consumer reads it: every byte hashed for the
/// diff_id, and a file's content, where the consumer asks, hashed beside
/// it in the same pass (its blocks are the stream's: a content starts at
/// a 512-byte boundary).
struct TarReader<R> {
    inner: R,
    tar: Hasher,
    content: Option<Hasher>,
}

impl<R: Read> TarReader<R> {
    /// Runs `consume` on the stream `inner`, then reads and hashes what it
    /// left; returns its value, the diff_id and the stream's size.
    fn read<T>(
        inner: R,
        consume: impl FnOnce(&mut dyn ContentRead) -> Result<T, LayerError>,
    ) -> Result<(T, Digest, u64), LayerError> {
        let mut tar = TarReader {
            inner,
            tar: Hasher::new(),
            content: None,
        };
        let value = consume(&mut tar)?;
        io::copy(&mut tar, &mut io::sink())?;
        let size = tar.tar.len();
        Ok((value, tar.tar.finish(), size))
    }
}

impl<R: Read> Read for TarReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        match &mut self.content {
            Some(content) => Hasher::update_twin(&mut self.tar, content, &buf[..n]),
            None => self.tar.update(&buf[..n]),
        }
        Ok(n)
    }
}

impl<R: Read> ContentRead for TarReader<R> {
    fn start_content(&mut self) -> bool {
        self.content = Some(Hasher::new());
        true
    }
    fn content_digest(&mut self) -> Option<Digest> {
        self.content.take().map(Hasher::finish)
    }
}

/// Fills `chunk` from `r` up to its length or the end of the stream;
/// returns how much it holds.
fn fill_chunk(r: &mut dyn Read, chunk: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < chunk.len() {
        match r.read(&mut chunk[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The reader's side: reads the stream as given in chunks, hashes it
/// (unless it is an uncompressed tar, whose digest is the diff_id the
/// decoder computes) and sends the chunks on. Returns the digest (if it
/// hashed) and the size of the whole stream.
fn read_input(
    input: &mut dyn Read,
    chunks: &SyncSender<Vec<u8>>,
    recycled: &Receiver<Vec<u8>>,
) -> Result<(Option<Digest>, u64), LayerError> {
    let mut hasher: Option<Hasher> = None;
    let mut size = 0u64;
    loop {
        let mut chunk = recycled.try_recv().unwrap_or_default();
        chunk.resize(CHUNK, 0);
        let filled = fill_chunk(input, &mut chunk)?;
        if filled == 0 {
            return Ok((hasher.map(Hasher::finish), size));
        }
        chunk.truncate(filled);
        if size == 0 && Compression::sniff(&chunk) != Compression::None {
            hasher = Some(Hasher::new());
        }
        if let Some(hasher) = hasher.as_mut() {
            hasher.update(&chunk);
        }
        size += filled as u64;
        if chunks.send(chunk).is_err() {
            return Err(stage_gone());
        }
    }
}

/// The decoder's side: reads the tar stream in chunks and sends them.
fn send_chunks(
    tar: &mut dyn Read,
    chunks: &SyncSender<Vec<u8>>,
    recycled: &Receiver<Vec<u8>>,
) -> Result<(), LayerError> {
    match send_stream(tar, chunks, recycled).map_err(unwrap_io)? {
        true => Ok(()),
        false => Err(stage_gone()),
    }
}

/// Reads `input` to its end and sends it in chunks; returns false if the
/// receiving side stopped reading first (the rest of `input` is left).
fn send_stream(
    input: &mut dyn Read,
    chunks: &SyncSender<Vec<u8>>,
    recycled: &Receiver<Vec<u8>>,
) -> io::Result<bool> {
    loop {
        let mut chunk = recycled.try_recv().unwrap_or_default();
        chunk.resize(CHUNK, 0);
        let filled = fill_chunk(input, &mut chunk)?;
        if filled == 0 {
            return Ok(true);
        }
        chunk.truncate(filled);
        if chunks.send(chunk).is_err() {
            return Ok(false);
        }
    }
}

/// The sending half of [`stream_channel`].
pub struct StreamSender {
    chunks: SyncSender<Vec<u8>>,
    recycled: Receiver<Vec<u8>>,
}

impl StreamSender {
    /// Reads `input` to its end and hands it over; returns false if the
    /// [`StreamReader`] was dropped first (the rest of `input` is left
    /// unread). The reader's stream ends when this sender is dropped.
    pub fn send_all(&self, input: &mut dyn Read) -> io::Result<bool> {
        send_stream(input, &self.chunks, &self.recycled)
    }
}

/// The receiving half of [`stream_channel`]: the stream, as sent.
pub struct StreamReader(ChunkReader);

impl Read for StreamReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl BufRead for StreamReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.0.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        self.0.consume(amount);
    }
}

/// A stream handed from the thread that reads it to another that consumes
/// it, in chunks of a bounded queue (their buffers go back for reuse):
/// `load` reads its archive on one thread while it parses and hashes a
/// layer on another, as a pull does with its network stream.
pub fn stream_channel() -> (StreamSender, StreamReader) {
    let (chunks, received) = mpsc::sync_channel::<Vec<u8>>(CHUNKS_AHEAD);
    let (recycle, recycled) = mpsc::channel::<Vec<u8>>();
    (
        StreamSender { chunks, recycled },
        StreamReader(ChunkReader::new(received, recycle)),
    )
}

fn stage_gone() -> LayerError {
    LayerError::Io(io::Error::new(io::ErrorKind::BrokenPipe, ConsumerGone))
}

/// Whether a stage stopped only because the next one stopped reading.
fn is_stage_gone(e: &LayerError) -> bool {
    matches!(e, LayerError::Io(io) if is_consumer_gone(io))
}

/// A stage stopped because the next one stopped reading.
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

/// The receiving side of a stage: the chunks as one stream; it ends when
/// the stage before is done (or has failed, which its result then says).
struct ChunkReader {
    chunks: Receiver<Vec<u8>>,
    recycle: Sender<Vec<u8>>,
    current: Vec<u8>,
    position: usize,
}

impl ChunkReader {
    fn new(chunks: Receiver<Vec<u8>>, recycle: Sender<Vec<u8>>) -> ChunkReader {
        ChunkReader {
            chunks,
            recycle,
            current: Vec::new(),
            position: 0,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tar_like(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn read_all(r: &mut dyn Read) -> Result<Vec<u8>, LayerError> {
        let mut out = Vec::new();
        r.read_to_end(&mut out)?;
        Ok(out)
    }

    /// The pipeline finds what the single-threaded decoder finds, for
    /// each compression, and hands over the whole stream.
    #[test]
    fn threads_agree_with_one_thread() {
        let tar = tar_like(3 << 20);
        let zstd = zstd::encode_all(tar.as_slice(), 1).unwrap();
        for input in [tar.clone(), gzip(&tar), zstd] {
            let limits = Limits::default();
            let (one, d1) = decode_buffered(
                &mut input.as_slice(),
                &limits,
                &OutputCounter::default(),
                |r| read_all(r),
            )
            .unwrap();
            let (many, d2) = decode_on_threads(
                &mut input.as_slice(),
                &limits,
                &OutputCounter::default(),
                |r| read_all(r),
            )
            .unwrap();
            assert_eq!(one, tar);
            assert_eq!(many, tar);
            assert_eq!(d1.compression, d2.compression);
            assert_eq!((d1.diff_id, d1.tar_size), (d2.diff_id, d2.tar_size));
            assert_eq!(
                (d1.blob_digest, d1.blob_size),
                (d2.blob_digest, d2.blob_size)
            );
            assert_eq!(d2.diff_id, Digest::of(&tar));
            assert_eq!(d2.blob_digest, Digest::of(&input));
        }
    }

    /// A stream handed over whole, in order; a reader that stops early
    /// tells the sender, which leaves the rest of its input unread.
    #[test]
    fn a_stream_channel_hands_over_the_stream() {
        let data = tar_like(5 * CHUNK + 123);
        let (sender, mut reader) = stream_channel();
        std::thread::scope(|scope| {
            let whole = data.as_slice();
            // The sender goes with its thread: the stream ends there.
            let sent = scope.spawn(move || sender.send_all(&mut &whole[..]));
            let mut got = Vec::new();
            reader.read_to_end(&mut got).unwrap();
            assert_eq!(got, data);
            assert!(sent.join().unwrap().unwrap());
        });

        // More than the queue holds: the sender must wait for the reader.
        let data = tar_like((CHUNKS_AHEAD + 4) * CHUNK);
        let (sender, mut reader) = stream_channel();
        let mut input = data.as_slice();
        let left = &mut input;
        std::thread::scope(|scope| {
            let sent = scope.spawn(move || sender.send_all(left));
            let mut some = vec![0u8; 1000];
            reader.read_exact(&mut some).unwrap();
            assert_eq!(some, data[..1000]);
            drop(reader);
            assert!(!sent.join().unwrap().unwrap(), "the sender went on");
        });
        assert!(!input.is_empty(), "the sender read all of its input");
    }

    /// A stream that fails after some bytes (a dropped connection).
    struct Failing {
        data: Vec<u8>,
        at: usize,
    }

    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.at >= self.data.len() / 2 {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "the network went away",
                ));
            }
            let n = buf.len().min(self.data.len() / 2 - self.at).min(4096);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    /// When the input fails, its error is the cause, not the truncated
    /// stream the later stages saw.
    #[test]
    fn the_first_failing_stage_is_the_cause() {
        let data = gzip(&tar_like(2 << 20));
        let mut input = Failing { data, at: 0 };
        let err = decode_on_threads(
            &mut input,
            &Limits::default(),
            &OutputCounter::default(),
            |r| read_all(r),
        )
        .unwrap_err();
        assert!(err.to_string().contains("the network went away"), "{err}");

        // A consumer that gives up is the cause, whatever it left unread.
        let data = gzip(&tar_like(4 << 20));
        let err = decode_on_threads(
            &mut data.as_slice(),
            &Limits::default(),
            &OutputCounter::default(),
            |r: &mut dyn ContentRead| -> Result<(), LayerError> {
                let mut some = [0u8; 1000];
                r.read_exact(&mut some)?;
                Err(LayerError::Io(io::Error::other("the parser refused it")))
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("the parser refused it"), "{err}");

        // A corrupt gzip stream: the decoder's error.
        let mut data = gzip(&tar_like(1 << 20));
        let middle = data.len() / 2;
        data[middle..middle + 64].fill(0xff);
        let err = decode_on_threads(
            &mut data.as_slice(),
            &Limits::default(),
            &OutputCounter::default(),
            |r| read_all(r),
        )
        .unwrap_err();
        assert!(!is_stage_gone(&err), "{err}");
    }

    /// The consumer's reader hashes a file's content in the same pass as
    /// the stream (each stretch at its own digest), and what the consumer
    /// leaves unread is still part of the diff_id.
    #[test]
    fn the_tar_reader_hashes_contents_and_the_whole_stream() {
        let tar = tar_like(3 << 20);
        let data = gzip(&tar);
        let limits = Limits::default();
        let (stretches, decoded) = decode_on_threads(
            &mut data.as_slice(),
            &limits,
            &OutputCounter::default(),
            |r: &mut dyn ContentRead| -> Result<Vec<(usize, usize, Digest)>, LayerError> {
                let mut at = 0;
                let mut found = Vec::new();
                // A header, a content from a block boundary read in odd
                // pieces, a content not on a boundary, then stop early.
                for (skip, len) in [(512, 100_000), (3, 70_001), (512, 0)] {
                    io::copy(&mut (&mut *r).take(skip as u64), &mut io::sink())?;
                    at += skip;
                    assert!(r.start_content());
                    let mut piece = vec![0u8; 777];
                    let mut left = len;
                    while left > 0 {
                        let n = r.read(&mut piece[..left.min(777)])?;
                        left -= n;
                    }
                    found.push((at, len, r.content_digest().unwrap()));
                    at += len;
                }
                Ok(found)
            },
        )
        .unwrap();
        for (at, len, digest) in stretches {
            assert_eq!(
                digest,
                Digest::of(&tar[at..at + len]),
                "{len} bytes at {at}"
            );
        }
        assert_eq!(decoded.diff_id, Digest::of(&tar));
        assert_eq!(decoded.tar_size, tar.len() as u64);
        assert_eq!(decoded.blob_digest, Digest::of(&data));
    }
}
