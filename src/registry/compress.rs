//! Compression of rebuilt layers for push, as a reader the upload pulls.
//!
//! gzip runs on every core, with pigz's scheme: the tar is cut into 1 MiB
//! chunks, each deflated by a worker with the 32 KiB before it as its
//! dictionary and ended with a sync flush, so the pieces join into one
//! ordinary gzip member (what every gzip reader, Go's and flate2's
//! single-member decoder included, reads). Within a chunk, 64 KiB segments
//! whose bytes look random (an order-0 entropy above 7.5 bits per byte:
//! compressed or encrypted data) go into stored blocks instead of through
//! the deflater, which would spend most of its time on them and gain
//! nothing.
//!
//! The output depends only on the input and this build (fixed chunk and
//! segment sizes and level), never on the number of threads or their
//! timing: the same layer always gives the same blob, so a second push
//! finds the blob its first one made.
//!
//! zstd is compressed on the reading thread.

use std::io::{self, Read, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compress, FlushCompress};

/// gzip level for new blobs (deflate's fastest; the segments that would
/// cost it most are stored, not deflated).
const GZIP_LEVEL: u32 = 1;
const ZSTD_LEVEL: i32 = 3;

/// Input bytes per chunk handed to a worker.
const CHUNK: usize = 1 << 20;
/// Unit of the stored-or-deflated decision.
const SEGMENT: usize = 64 << 10;
/// Deflate's window: the dictionary each chunk gets from the one before.
const WINDOW: usize = 32 << 10;
/// Chunks compressed ahead of the reader, at most.
const CHUNKS_AHEAD: usize = 16;
/// Above this many bits per byte, a segment is stored.
const INCOMPRESSIBLE_BITS: f64 = 7.5;

/// A gzip stream of `tar` (see the module header), compressed on `workers`
/// threads.
pub fn parallel_gzip(tar: impl Read + Send + 'static, workers: usize) -> ParallelGzip {
    let (pieces, received) = mpsc::sync_channel(CHUNKS_AHEAD);
    let workers = workers.max(1);
    let coordinator = std::thread::spawn(move || coordinate(tar, workers, pieces));
    ParallelGzip {
        pieces: Some(received),
        coordinator: Some(coordinator),
        current: Vec::new(),
        position: 0,
    }
}

/// The zstd stream of `tar`, compressed as it is read.
pub fn zstd_reader(tar: impl Read + Send + 'static) -> io::Result<ZstdReader> {
    Ok(ZstdReader {
        tar: Box::new(tar),
        encoder: Some(zstd::stream::write::Encoder::new(Vec::new(), ZSTD_LEVEL)?),
        input: vec![0; 256 << 10],
        output: Vec::new(),
        position: 0,
    })
}

/// One piece of the output, in order: bytes, or a chunk still being
/// compressed.
enum Piece {
    Ready(Vec<u8>),
    Pending(Receiver<io::Result<Vec<u8>>>),
}

pub struct ParallelGzip {
    pieces: Option<Receiver<Piece>>,
    coordinator: Option<JoinHandle<io::Result<()>>>,
    current: Vec<u8>,
    position: usize,
}

impl ParallelGzip {
    /// The next piece; `None` at the end.
    fn next_piece(&mut self) -> io::Result<Option<Vec<u8>>> {
        let Some(pieces) = self.pieces.as_ref() else {
            return Ok(None);
        };
        match pieces.recv() {
            Ok(Piece::Ready(bytes)) => Ok(Some(bytes)),
            Ok(Piece::Pending(result)) => match result.recv() {
                Ok(bytes) => bytes.map(Some),
                Err(_) => Err(io::Error::other("a compression worker stopped")),
            },
            // The coordinator is done: it sent everything, or failed.
            Err(_) => {
                self.pieces = None;
                match self.coordinator.take().map(JoinHandle::join) {
                    Some(Ok(Err(e))) => Err(e),
                    Some(Err(_)) => Err(io::Error::other("the compression thread panicked")),
                    _ => Ok(None),
                }
            }
        }
    }
}

impl Read for ParallelGzip {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.position >= self.current.len() {
            match self.next_piece()? {
                Some(bytes) => {
                    self.current = bytes;
                    self.position = 0;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.position);
        buf[..n].copy_from_slice(&self.current[self.position..self.position + n]);
        self.position += n;
        Ok(n)
    }
}

impl Drop for ParallelGzip {
    fn drop(&mut self) {
        // A coordinator still sending sees the reader gone and stops.
        self.pieces = None;
        if let Some(coordinator) = self.coordinator.take() {
            let _ = coordinator.join();
        }
    }
}

/// A chunk for a worker, with the bytes before it and where to answer.
struct Job {
    dictionary: Vec<u8>,
    chunk: Vec<u8>,
    reply: SyncSender<io::Result<Vec<u8>>>,
}

/// Reads the tar in chunks, hands them to the workers and queues their
/// answers in order between the gzip header and trailer.
fn coordinate(mut tar: impl Read, workers: usize, pieces: SyncSender<Piece>) -> io::Result<()> {
    // No name, no time, unknown OS: as flate2 and Go write it.
    const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    if pieces.send(Piece::Ready(HEADER.to_vec())).is_err() {
        return Ok(());
    }
    let (jobs, queue) = mpsc::channel::<Job>();
    let queue = Arc::new(Mutex::new(queue));
    let pool: Vec<JoinHandle<()>> = (0..workers)
        .map(|_| {
            let queue = Arc::clone(&queue);
            std::thread::spawn(move || work(&queue))
        })
        .collect();
    let result = split(&mut tar, &jobs, &pieces);
    drop(jobs);
    for worker in pool {
        let _ = worker.join();
    }
    let (crc, size) = result?;
    // A final empty block, then the CRC-32 and size of the input.
    let mut trailer = vec![0x03, 0x00];
    trailer.extend_from_slice(&crc.to_le_bytes());
    trailer.extend_from_slice(&(size as u32).to_le_bytes());
    let _ = pieces.send(Piece::Ready(trailer));
    Ok(())
}

/// Sends the chunks of `tar` out as jobs; returns the input's CRC-32 and size.
fn split(
    tar: &mut dyn Read,
    jobs: &mpsc::Sender<Job>,
    pieces: &SyncSender<Piece>,
) -> io::Result<(u32, u64)> {
    let mut crc = flate2::Crc::new();
    let mut size = 0u64;
    let mut dictionary = Vec::new();
    loop {
        let chunk = read_chunk(tar)?;
        if chunk.is_empty() {
            return Ok((crc.sum(), size));
        }
        crc.update(&chunk);
        size += chunk.len() as u64;
        let next_dictionary = chunk[chunk.len().saturating_sub(WINDOW)..].to_vec();
        let (reply, result) = mpsc::sync_channel(1);
        let job = Job {
            dictionary: std::mem::replace(&mut dictionary, next_dictionary),
            chunk,
            reply,
        };
        if jobs.send(job).is_err() || pieces.send(Piece::Pending(result)).is_err() {
            // The reader is gone: nothing more to do.
            return Ok((crc.sum(), size));
        }
    }
}

/// Reads up to [`CHUNK`] bytes (fewer only at the end).
fn read_chunk(tar: &mut dyn Read) -> io::Result<Vec<u8>> {
    let mut chunk = vec![0; CHUNK];
    let mut filled = 0;
    while filled < CHUNK {
        match tar.read(&mut chunk[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    chunk.truncate(filled);
    Ok(chunk)
}

/// A worker: compresses chunks until the queue closes.
fn work(queue: &Mutex<Receiver<Job>>) {
    let mut deflater = Compress::new(flate2::Compression::new(GZIP_LEVEL), false);
    loop {
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let result = compress_chunk(&mut deflater, &job.dictionary, &job.chunk);
        // The reader may be gone; then nobody wants the answer.
        let _ = job.reply.send(result);
    }
}

/// Deflates one chunk into raw deflate blocks that end byte-aligned and
/// not final, so that chunks concatenate: runs of compressible segments
/// through the deflater (with the 32 KiB before them as dictionary), runs
/// of random-looking ones as stored blocks.
fn compress_chunk(deflater: &mut Compress, dictionary: &[u8], chunk: &[u8]) -> io::Result<Vec<u8>> {
    let stored: Vec<bool> = chunk.chunks(SEGMENT).map(looks_incompressible).collect();
    let mut out = Vec::with_capacity(chunk.len() / 2 + 1024);
    let mut segment = 0;
    while segment < stored.len() {
        let kind = stored[segment];
        let mut end = segment + 1;
        while end < stored.len() && stored[end] == kind {
            end += 1;
        }
        let (from, to) = (segment * SEGMENT, (end * SEGMENT).min(chunk.len()));
        if kind {
            write_stored(&chunk[from..to], &mut out);
        } else {
            deflater.reset();
            let history = history_before(dictionary, chunk, from);
            if !history.is_empty() {
                deflater
                    .set_dictionary(&history)
                    .map_err(io::Error::other)?;
            }
            deflate_sync(deflater, &chunk[from..to], &mut out)?;
        }
        segment = end;
    }
    Ok(out)
}

/// The (up to) 32 KiB of input before offset `at` of `chunk`.
fn history_before(dictionary: &[u8], chunk: &[u8], at: usize) -> Vec<u8> {
    if at >= WINDOW {
        return chunk[at - WINDOW..at].to_vec();
    }
    let from_dictionary = (WINDOW - at).min(dictionary.len());
    let mut history = dictionary[dictionary.len() - from_dictionary..].to_vec();
    history.extend_from_slice(&chunk[..at]);
    history
}

/// Deflates `input` and ends with a sync flush (byte-aligned, not final).
fn deflate_sync(deflater: &mut Compress, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    let start = deflater.total_in();
    loop {
        out.reserve(input.len() / 4 + 4096);
        let consumed = (deflater.total_in() - start) as usize;
        deflater
            .compress_vec(&input[consumed..], out, FlushCompress::Sync)
            .map_err(io::Error::other)?;
        let consumed = (deflater.total_in() - start) as usize;
        // Done when all input is in and the flush left room to spare.
        if consumed == input.len() && out.len() < out.capacity() {
            return Ok(());
        }
    }
}

/// Stored blocks (not final) holding `data`; the stream is byte-aligned
/// before and after them.
fn write_stored(data: &[u8], out: &mut Vec<u8>) {
    for piece in data.chunks(u16::MAX as usize) {
        let len = piece.len() as u16;
        out.push(0);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(piece);
    }
}

/// Whether a segment's bytes look random: the order-0 entropy of every
/// fourth byte above [`INCOMPRESSIBLE_BITS`]. Short segments never do.
fn looks_incompressible(segment: &[u8]) -> bool {
    let mut counts = [0u32; 256];
    let mut samples = 0u32;
    for &byte in segment.iter().step_by(4) {
        counts[usize::from(byte)] += 1;
        samples += 1;
    }
    if samples < 1024 {
        return false;
    }
    let n = f64::from(samples);
    let sum: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| f64::from(c) * f64::from(c).log2())
        .sum();
    n.log2() - sum / n > INCOMPRESSIBLE_BITS
}

/// zstd, compressed on the reading thread.
pub struct ZstdReader {
    tar: Box<dyn Read + Send>,
    encoder: Option<zstd::stream::write::Encoder<'static, Vec<u8>>>,
    input: Vec<u8>,
    output: Vec<u8>,
    position: usize,
}

impl ZstdReader {
    /// Compresses the next piece of the tar into `output`; false at the end.
    fn refill(&mut self) -> io::Result<bool> {
        let Some(encoder) = self.encoder.as_mut() else {
            return Ok(false);
        };
        let n = self.tar.read(&mut self.input)?;
        self.position = 0;
        if n == 0 {
            self.output = match self.encoder.take() {
                Some(e) => e.finish()?,
                None => Vec::new(),
            };
            return Ok(true);
        }
        encoder.write_all(&self.input[..n])?;
        self.output = std::mem::take(encoder.get_mut());
        Ok(true)
    }
}

impl Read for ZstdReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.position >= self.output.len() {
            if !self.refill()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.output.len() - self.position);
        buf[..n].copy_from_slice(&self.output[self.position..self.position + n]);
        self.position += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(data)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    fn compress(data: &[u8], workers: usize) -> Vec<u8> {
        let mut out = Vec::new();
        parallel_gzip(io::Cursor::new(data.to_vec()), workers)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    /// Text, random bytes and zeros, in pieces that straddle chunks and segments.
    fn mixed(len: usize) -> Vec<u8> {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut data = Vec::with_capacity(len);
        while data.len() < len {
            let kind = data.len() / 70_000 % 3;
            for _ in 0..70_000 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                data.push(match kind {
                    0 => b"the quick brown fox jumps over the lazy dog "[data.len() % 44],
                    1 => state as u8,
                    _ => 0,
                });
            }
        }
        data.truncate(len);
        data
    }

    #[test]
    fn round_trips_as_one_gzip_member() {
        for len in [0, 1, 1000, SEGMENT, CHUNK, CHUNK + 1, 3 * CHUNK + 12_345] {
            let data = mixed(len);
            let gz = compress(&data, 2);
            assert_eq!(gunzip(&gz), data, "length {len}");
        }
    }

    #[test]
    fn output_does_not_depend_on_the_workers() {
        let data = mixed(5 * CHUNK + 777);
        let one = compress(&data, 1);
        assert_eq!(compress(&data, 3), one);
        assert_eq!(compress(&data, 3), one);
    }

    #[test]
    fn random_segments_are_stored_and_text_compressed() {
        let data = mixed(3 * CHUNK);
        let gz = compress(&data, 2);
        // A third is random (stored: no gain), two thirds compress to little.
        assert!(gz.len() < data.len() / 2, "{} of {}", gz.len(), data.len());
        assert!(looks_incompressible(
            &mixed(2 * 70_000)[70_000..70_000 + SEGMENT]
        ));
        assert!(!looks_incompressible(&mixed(SEGMENT)));
    }

    #[test]
    fn a_failing_tar_fails_the_reader() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        let mut out = Vec::new();
        let err = parallel_gzip(Failing, 2).read_to_end(&mut out).unwrap_err();
        assert!(err.to_string().contains("disk on fire"));
    }
}
