//! Staging: new files and blobs are written under `tmp/stage-*/`, hashed
//! on the way, and published all at once.
//!
//! A staging may have several handles ([`Staging::share`]), one per
//! thread: they write into the same directory (each writer thread into a
//! directory of its own there) and whatever any of them staged is
//! published together, so content ingested in parallel costs
//! no extra rename. A handle lists a file only once it is complete, and
//! skips writing a content only when a complete copy is already listed
//! (or published): so every content a successful ingest names is staged,
//! whatever happens to the other handles.
//!
//! Publishing renames each object to its final name and commits the rows
//! that name them together with a batch row; a detached flusher then makes
//! them durable, and a crash before it did is found and repaired by the
//! next process (write-behind, `flush.rs`). Without a flusher it flushes
//! the staged data with one `syncfs`, renames, flushes the renames with a
//! second `syncfs`, and only then commits. A crash before the commit
//! leaves at most unreferenced objects, which gc removes.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use nix::fcntl::{Flock, FlockArg};
use rusqlite::{Transaction, TransactionBehavior};

use super::lock::Lease;
use super::{GcLock, Store, StoreError};
use crate::digest::{ContentRead, Digest, Hasher};

/// Files up to this size are hashed in memory before anything is written,
/// so content already in the store costs no write at all (a rebuilt image
/// whose layer holds mostly known files writes only the new ones). Larger
/// files are written as they stream in and dropped if known.
const IN_MEMORY: u64 = 8 << 20;
/// Files over this size have their block-aligned zero runs left as holes.
const SPARSE_FROM: u64 = 1 << 20;
const COPY_BUFFER: usize = 1 << 20;

/// A file content staged (or found in the store already).
#[derive(Debug, Clone, Copy)]
pub struct StagedFile {
    pub digest: Digest,
    /// Bytes written to disk for it: 0 when the content was known, and
    /// without the zero blocks of a large file, which are left as holes.
    pub written: u64,
}

/// The unit of holes in staged files: a filesystem block.
const HOLE_BLOCK: u64 = 4096;
static ZERO_BLOCK: [u8; HOLE_BLOCK as usize] = [0; HOLE_BLOCK as usize];

/// The runs of `data` (to be written at `offset`) that are not
/// block-aligned zero blocks, as ranges of `data`, in order. Each run
/// starts at a block boundary of the file (or at `data`'s start) and ends
/// at one (or at `data`'s end).
fn data_runs(data: &[u8], offset: u64) -> Vec<std::ops::Range<usize>> {
    let mut runs = Vec::new();
    // The run of non-zero blocks not closed yet: [run, at).
    let mut run = 0usize;
    let mut at = 0usize;
    while at < data.len() {
        let position = offset + at as u64;
        let to_boundary = (HOLE_BLOCK - position % HOLE_BLOCK) as usize;
        let end = (at + to_boundary).min(data.len());
        if data[at..end] == ZERO_BLOCK[..end - at] {
            if run < at {
                runs.push(run..at);
            }
            run = end;
        }
        at = end;
    }
    if run < data.len() {
        runs.push(run..data.len());
    }
    runs
}

/// Writes `data` at `offset` in `out`, leaving each block-aligned run of
/// zeros unwritten (a hole: it reads back as zeros, and costs no disk);
/// returns the bytes written.
fn write_sparse(out: &File, data: &[u8], offset: u64) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let mut written = 0u64;
    for run in data_runs(data, offset) {
        out.write_all_at(&data[run.clone()], offset + run.start as u64)?;
        written += run.len() as u64;
    }
    Ok(written)
}

/// Files of at least this size are written by the writer threads with
/// `O_DIRECT`: from its buffer straight to the disk, not copied into new
/// page cache first. An ingest writes each new content once and reads
/// none of it back, and the copy is most of an ingest's CPU time on a
/// machine whose free memory is given back to its host (each new
/// page-cache page then faults in the host: BENCHMARKS.md, "Direct
/// writes"). Smaller files stay buffered: a direct write waits for the
/// disk, which for a few KiB costs more than the copy it saves.
const DIRECT_FROM: u64 = 64 << 10;
/// The aligned bounce buffer of direct writes.
const DIRECT_CHUNK: usize = 1 << 20;

/// A buffer of [`DIRECT_CHUNK`] bytes aligned to [`HOLE_BLOCK`], as
/// `O_DIRECT` wants (a plain `Vec` one block longer, used from its first
/// aligned byte).
struct DirectBuffer(Vec<u8>);

impl DirectBuffer {
    fn new() -> DirectBuffer {
        DirectBuffer(vec![0; DIRECT_CHUNK + HOLE_BLOCK as usize])
    }

    fn aligned(&mut self) -> &mut [u8] {
        let skip = self.0.as_ptr().align_offset(HOLE_BLOCK as usize);
        &mut self.0[skip..skip + DIRECT_CHUNK]
    }
}

/// Writes `data` at offset 0 of `out`, opened with `O_DIRECT`: each run
/// of [`data_runs`] (all of `data` unless `sparse`). Every run starts on
/// a block boundary and all but the last end on one; whole blocks go
/// straight from `data` when it starts on a block boundary of memory
/// (see [`WriteJob`]), through the aligned buffer otherwise. The file's
/// last partial block is written through the page cache, after
/// `O_DIRECT` is cleared, into a block allocated with the rest of its run
/// beforehand (so the file lies in one piece): padding it to a whole
/// block and cutting the file after would make ext4 read that block back
/// from the disk to zero its end, one synchronous read per file. Returns the bytes the file
/// holds: less than `data` when it ends in a hole, which the caller
/// leaves by setting the length.
fn write_direct(
    out: &File,
    data: &[u8],
    sparse: bool,
    buffer: &mut DirectBuffer,
) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let runs = if sparse {
        data_runs(data, 0)
    } else {
        std::iter::once(0..data.len()).collect()
    };
    let block = HOLE_BLOCK as usize;
    let whole_blocks = data.len() / block * block;
    let in_place = data.as_ptr().align_offset(block) == 0;
    let aligned = buffer.aligned();
    let mut end = 0;
    for run in runs {
        let mut at = run.start;
        if run.end > whole_blocks {
            // The run with the last partial block is allocated in one
            // piece first. Otherwise its direct write took just its whole
            // blocks, and the last block, written through the page cache,
            // got one at writeback from wherever small files' blocks came
            // from then: 156 of a load's 1,227 files over 64 KiB were in
            // two pieces, each a second read when the file is read.
            let _ = rustix::fs::fallocate(
                out,
                rustix::fs::FallocateFlags::empty(),
                run.start as u64,
                (run.end - run.start) as u64,
            );
        }
        let direct_end = run.end.min(whole_blocks);
        if in_place && direct_end > at {
            out.write_all_at(&data[at..direct_end], at as u64)?;
            at = direct_end;
        }
        while at < direct_end {
            let n = (direct_end - at).min(DIRECT_CHUNK);
            aligned[..n].copy_from_slice(&data[at..at + n]);
            out.write_all_at(&aligned[..n], at as u64)?;
            at += n;
        }
        if at < run.end {
            buffered(out)?;
            out.write_all_at(&data[at..run.end], at as u64)?;
        }
        end = run.end;
    }
    Ok(end as u64)
}

/// Clears `O_DIRECT` on `file`: its next writes go through the page cache.
fn buffered(file: &File) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_retain(fcntl(file.as_raw_fd(), FcntlArg::F_GETFL)?);
    fcntl(file.as_raw_fd(), FcntlArg::F_SETFL(flags - OFlag::O_DIRECT))?;
    Ok(())
}

/// One handle on a staging directory (see the module header).
pub struct Staging {
    shared: Arc<Shared>,
    buffer: Vec<u8>,
    /// Writes this handle's in-memory files on a thread of its own, so
    /// that hashing and parsing go on while the page cache is filled
    /// (started at the first such file).
    writer: Option<Writer>,
    /// Contents handed to the writer and not listed yet: a second copy
    /// in the same layer is not queued again.
    queued: std::collections::HashSet<Digest>,
}

/// A file content, hashed, for the writer to stage.
struct WriteJob {
    digest: Digest,
    /// The file's content is `data[start..end]`; `start` puts it at a
    /// block boundary of memory, so a direct write needs no bounce copy.
    /// Past `end`, the rest of an earlier file: a buffer keeps its length
    /// from file to file, so that it is not zeroed again before each read.
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl WriteJob {
    fn content(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }
}

/// Files are handed to the writers in batches of up to [`BATCH_FILES`]
/// files, closed at [`BATCH_BYTES`]: one hand-over for a batch rather
/// than for each file. Each hand-over wakes a writer waiting for work
/// (on this VM an interrupt to the other core), and a writer taking a
/// file woke the other one waiting for the queue's lock: the ingesting
/// thread of a load of 9,000 files spent about 0.1 s of its CPU on those
/// wake-ups and the switches they caused.
const BATCH_FILES: usize = 16;
const BATCH_BYTES: usize = 1 << 20;

/// Batches queued at most: with files of up to [`IN_MEMORY`] bytes, at
/// most 4 x (1 MiB + 8 MiB) wait in memory.
const WRITE_QUEUE: usize = 4;

struct Writer {
    jobs: std::sync::mpsc::SyncSender<Vec<WriteJob>>,
    /// The batch not handed over yet.
    batch: Vec<WriteJob>,
    /// Buffers the writer is done with, for the next files (those of a
    /// small file only: a buffer keeps the largest size it held).
    spent: std::sync::mpsc::Receiver<Vec<u8>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Writer threads per handle. Each direct write waits for the disk, and
/// creating a file is kernel work of its own: with two, one creates the
/// next file while the other's write is in flight, so the stages before
/// them are not held up by the queue (BENCHMARKS.md, "two writers, no
/// read-back of the last block").
const WRITERS: usize = 2;

/// A writer thread: takes jobs until the queue closes or a writer failed
/// (the first error is kept for the publish; the queue closes once every
/// writer has stopped, so the next file queued reports it).
fn write_jobs(
    shared: &Arc<Shared>,
    incoming: &Mutex<std::sync::mpsc::Receiver<Vec<WriteJob>>>,
    give_back: &std::sync::mpsc::SyncSender<Vec<u8>>,
) {
    let mut buffer = DirectBuffer::new();
    // A directory of its own: the writers' creates do not wait for each
    // other's on one directory's lock.
    let sub = format!(
        "writer-{}",
        shared.next_part.fetch_add(1, Ordering::Relaxed)
    );
    let path = shared.dir.join(&sub);
    if let Err(e) = std::fs::create_dir(&path) {
        shared.fail(StoreError::io(&path, e));
        return;
    }
    loop {
        let batch = {
            let incoming = incoming.lock().unwrap_or_else(|p| p.into_inner());
            match incoming.recv() {
                Ok(batch) => batch,
                Err(_) => return,
            }
        };
        for job in batch {
            if shared.failures().is_some() {
                return;
            }
            if let Err(e) = write_staged(shared, &sub, &job, &mut buffer) {
                shared.fail(e);
                return;
            }
            if job.data.capacity() <= BATCH_BYTES + HOLE_BLOCK as usize {
                let _ = give_back.try_send(job.data);
            }
        }
    }
}

/// Stamps an ingest's lease with progress (see `lock.rs`).
#[derive(Clone)]
pub struct ProgressStamp(Arc<Shared>);

impl ProgressStamp {
    pub fn touch(&self) {
        self.0.lease.touch();
    }
}

/// What every handle of one staging shares; the directory goes with it.
struct Shared {
    dir: PathBuf,
    staged: Mutex<Staged>,
    /// The first error of a writer thread: the publish fails with it.
    failed: Mutex<Option<StoreError>>,
    next_part: AtomicU64,
    /// Whether the writer threads still try `O_DIRECT` (see [`DIRECT_FROM`]).
    direct: std::sync::atomic::AtomicBool,
    /// Whether the writer threads still write files unnamed where the
    /// store writes behind (see [`write_unnamed`]).
    unnamed: std::sync::atomic::AtomicBool,
    _dir_lock: Flock<File>,
    lease: Lease,
    /// Released first when the staging is dropped unpublished, so that
    /// [`Shared::remove_placed`] may take it exclusively.
    gc: Option<GcLock>,
    root: PathBuf,
    /// Whether the publish committed the rows of what was staged.
    published: bool,
    /// Whether the directory, renamed `spent-*` after the publish, is the
    /// flusher's to remove ([`remove_spent`]).
    left_to_flusher: bool,
    /// Whether the store writes behind (`flush.rs`): each file then gets
    /// its final name before the publish, no row naming it until then
    /// (the gc lock this staging holds keeps gc away from it; a crash
    /// leaves it unreferenced, for gc). A writer links a file hashed in
    /// memory at its final name once written ([`write_unnamed`]); a file
    /// in the staging is moved there as soon as it is listed, by the staging's
    /// [`Placer`], so that the publish has none left to rename (9,000
    /// renames took 0.11 s of a load's single busy thread). Without
    /// write-behind, the data must reach the disk before any name does,
    /// so files wait in the staging for [`Staging::place_files`] or the
    /// publish.
    place_at_once: bool,
    /// Started at the first file listed where `place_at_once`.
    placer: Mutex<Option<Placer>>,
}

/// The thread that moves a staging's listed files to their final names
/// (those streamed into the staging, and those whose final name was
/// taken when their writer would have created it there), in batches of
/// [`PLACE_BATCH`] as they come. One thread rather than each
/// writer: a rename from one directory to another takes the filesystem's
/// rename lock, which two writers renaming at once would wait on in turn.
/// Batches rather than one file at a time: a wake-up for each of a
/// layer's 9,000 files is a context switch each (on this VM an interrupt
/// to the other core too).
struct Placer {
    queue: Arc<PlaceQueue>,
    thread: std::thread::JoinHandle<Result<(), StoreError>>,
}

/// Files listed and not placed yet, and whether more may come.
#[derive(Default)]
struct PlaceQueue {
    state: Mutex<(Vec<(Digest, String)>, bool)>,
    ready: std::sync::Condvar,
}

/// Files the placer takes at a time (all that are left at the end).
const PLACE_BATCH: usize = 64;

impl Placer {
    fn start(root: &Path, dir: &Path) -> io::Result<Placer> {
        let queue = Arc::new(PlaceQueue::default());
        let incoming = Arc::clone(&queue);
        let (root, dir) = (root.to_path_buf(), dir.to_path_buf());
        let thread = std::thread::Builder::new()
            .name("stage-placer".into())
            .spawn(move || {
                // After a failure, the rest stays in the staging: the
                // publish fails with the first error.
                let mut result = Ok(());
                loop {
                    let (batch, closed) = {
                        let mut state = incoming.state.lock().unwrap_or_else(|p| p.into_inner());
                        while state.0.len() < PLACE_BATCH && !state.1 {
                            state = incoming
                                .ready
                                .wait(state)
                                .unwrap_or_else(|p| p.into_inner());
                        }
                        (std::mem::take(&mut state.0), state.1)
                    };
                    for (digest, name) in batch {
                        if result.is_ok() {
                            result = place_file(&root, &dir, &digest, &name);
                        }
                    }
                    if closed {
                        return result;
                    }
                }
            })?;
        Ok(Placer { queue, thread })
    }

    /// Queues a listed file; wakes the placer once a batch is ready.
    fn send(&self, digest: Digest, name: String) {
        let mut state = self.queue.state.lock().unwrap_or_else(|p| p.into_inner());
        state.0.push((digest, name));
        if state.0.len() >= PLACE_BATCH {
            self.queue.ready.notify_one();
        }
    }

    /// Waits for every file queued to be placed; the first error.
    fn finish(self) -> Result<(), StoreError> {
        self.queue.state.lock().unwrap_or_else(|p| p.into_inner()).1 = true;
        self.queue.ready.notify_one();
        self.thread.join().unwrap_or_else(|_| {
            Err(StoreError::io(
                Path::new("files"),
                io::Error::other("the staging's placer panicked"),
            ))
        })
    }
}

/// The complete objects staged so far.
#[derive(Default)]
struct Staged {
    /// Every file staged: digest and size.
    files: HashMap<Digest, u64>,
    /// The files still in the staging directory, by name there.
    unplaced: Vec<(Digest, String)>,
    /// The files moved to their final names before the publish (or that
    /// may have been, when a batch of moves failed).
    placed: Vec<Digest>,
    /// A blob's digest, size, media type and name in the staging directory.
    blobs: HashMap<Digest, (u64, Option<String>, String)>,
}

impl Drop for Staging {
    /// Every file this handle queued is written (and listed, for the
    /// publish) before the handle is gone.
    fn drop(&mut self) {
        self.finish_writer();
    }
}

/// A writer thread's work for one file, then listed. Where the store
/// writes behind, the file is written unnamed and linked at its final
/// name ([`write_unnamed`]); otherwise, or where that cannot be done, in
/// its directory `sub` of the staging under its digest (or another name
/// when the same content is there already).
fn write_staged(
    shared: &Arc<Shared>,
    sub: &str,
    job: &WriteJob,
    buffer: &mut DirectBuffer,
) -> Result<(), StoreError> {
    if shared.place_at_once
        && shared.unnamed.load(Ordering::Relaxed)
        && write_unnamed(shared, sub, job, buffer)?
    {
        return Ok(());
    }
    let content = job.content();
    let (name, file) = in_staging(shared, sub, &job.digest, new_read_only)?;
    let path = shared.dir.join(&name);
    let direct = choose_direct(shared, &file, content.len() as u64);
    write_content(shared, &file, direct, &path, content, buffer)?;
    list_file_in(
        shared,
        job.digest,
        content.len() as u64,
        Location::Staging(name),
    )
}

/// Makes the file of `digest` in the writer's directory `sub` of the
/// staging with `make` (which creates or links it at the path it is
/// given): under its digest, or `part-N` when that name is taken (the
/// same content is there already). Its name there, and what `make` gave.
fn in_staging<T>(
    shared: &Shared,
    sub: &str,
    digest: &Digest,
    make: impl Fn(&Path) -> io::Result<T>,
) -> Result<(String, T), StoreError> {
    let name = format!("{sub}/{}", digest.hex());
    match make(&shared.dir.join(&name)) {
        Ok(made) => return Ok((name, made)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(StoreError::io(&shared.dir.join(&name), e)),
    }
    let name = format!(
        "{sub}/part-{}",
        shared.next_part.fetch_add(1, Ordering::Relaxed)
    );
    let path = shared.dir.join(&name);
    let made = make(&path).map_err(|e| StoreError::io(&path, e))?;
    Ok((name, made))
}

/// Turns `O_DIRECT` on for a new `file` of `size` bytes where it pays
/// (see [`DIRECT_FROM`]) and the filesystem has it; whether it did.
fn choose_direct(shared: &Shared, file: &File, size: u64) -> bool {
    let want_direct = size >= DIRECT_FROM && shared.direct.load(Ordering::Relaxed);
    let direct = want_direct && set_direct(file);
    if want_direct && !direct {
        // This filesystem has no O_DIRECT: the rest of the ingest does
        // not ask again.
        shared.direct.store(false, Ordering::Relaxed);
    }
    direct
}

/// Writes the file of `job` into an unnamed file of the staging directory
/// (`O_TMPFILE`) and links it at its final name once it is complete, then
/// lists it. So a name in `files/` is only ever made for a whole file,
/// and no file is renamed (9,000 renames took 0.11 s of a load's busiest
/// thread). Unnamed, a file's inode is allocated where the staging's
/// directory is, as the files of one `tar -x` are near their directory:
/// created at its name in `files/<hh>/`, each went to its prefix
/// directory's block group once the first was full, and a cold read of
/// an image read an inode table block for nearly every file
/// (docs/store.md, "Where the bytes land").
///
/// When the final name exists without a row, it may be a copy another
/// ingest linked and has not published yet, one an older strata was
/// still writing there, or one a crash left: it is never trusted; the
/// file is linked into `sub` of the staging instead, and the placer
/// renames it over the name (a rename swaps the name to a whole file at
/// once). Returns false where the filesystem has no unnamed files or they
/// cannot be linked (what was written is dropped with its descriptor; the
/// caller stages the file by name, and the rest of the ingest does not
/// try again).
fn write_unnamed(
    shared: &Arc<Shared>,
    sub: &str,
    job: &WriteJob,
    buffer: &mut DirectBuffer,
) -> Result<bool, StoreError> {
    let file = match new_unnamed(&shared.dir) {
        Ok(file) => file,
        Err(e) if unnamed_unsupported(&e) => {
            shared.unnamed.store(false, Ordering::Relaxed);
            return Ok(false);
        }
        Err(e) => return Err(StoreError::io(&shared.dir, e)),
    };
    let content = job.content();
    let size = content.len() as u64;
    let direct = choose_direct(shared, &file, size);
    write_content(shared, &file, direct, &shared.dir, content, buffer)?;
    let target = super::file_path_in(&shared.root, &job.digest);
    match with_prefix_dir(&shared.root, &target, || link_unnamed(&file, &target))? {
        Ok(()) => {
            // Noted before it is listed: a failed ingest removes it.
            shared
                .staged
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .placed
                .push(job.digest);
            list_file_in(shared, job.digest, size, Location::Final)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let (name, ()) =
                in_staging(shared, sub, &job.digest, |path| link_unnamed(&file, path))?;
            list_file_in(shared, job.digest, size, Location::Staging(name))?;
            Ok(true)
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            // Neither way of linking an open file works here (no /proc):
            // staged by name from now on.
            shared.unnamed.store(false, Ordering::Relaxed);
            Ok(false)
        }
        Err(e) => Err(StoreError::io(&target, e)),
    }
}

/// An unnamed file in `dir` (`O_TMPFILE`), read-only (0444) once linked.
fn new_unnamed(dir: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .mode(0o444)
        .custom_flags(libc::O_TMPFILE)
        .open(dir)
}

/// Whether `O_TMPFILE` failed because the kernel or the filesystem does
/// not have it.
fn unnamed_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
    )
}

/// Gives the unnamed `file` the name `target`: by its descriptor
/// (`AT_EMPTY_PATH`, which Linux 6.10 allows the file's opener; before
/// that only with `CAP_DAC_READ_SEARCH`, else `ENOENT`), or through
/// `/proc/self/fd`.
fn link_unnamed(file: &File, target: &Path) -> io::Result<()> {
    use rustix::fs::{linkat, AtFlags, CWD};
    match linkat(file, "", CWD, target, AtFlags::EMPTY_PATH) {
        Err(rustix::io::Errno::NOENT) if target.parent().is_some_and(Path::is_dir) => {
            let by_proc = format!("/proc/self/fd/{}", file.as_raw_fd());
            linkat(CWD, by_proc.as_str(), CWD, target, AtFlags::SYMLINK_FOLLOW)
        }
        other => other,
    }
    .map_err(io::Error::from)
}

/// Writes `content` into `file`, new and empty at `path`, with direct
/// writes where `direct` (see [`write_direct`]), its block-aligned zero
/// runs left as holes if it is large.
fn write_content(
    shared: &Shared,
    file: &File,
    direct: bool,
    path: &Path,
    content: &[u8],
    buffer: &mut DirectBuffer,
) -> Result<(), StoreError> {
    let size = content.len() as u64;
    if direct {
        match write_direct(file, content, size > SPARSE_FROM, buffer) {
            Ok(end) => {
                if end < size {
                    file.set_len(size).map_err(|e| StoreError::io(path, e))?;
                }
                return Ok(());
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                // Opened, but its direct writes are refused (an alignment
                // this filesystem or device does not take): this file,
                // from its start, and the rest of the ingest are written
                // buffered.
                shared.direct.store(false, Ordering::Relaxed);
                buffered(file)
                    .and_then(|()| file.set_len(0))
                    .map_err(|e| StoreError::io(path, e))?;
            }
            Err(e) => return Err(StoreError::io(path, e)),
        }
    }
    if size > SPARSE_FROM {
        write_sparse(file, content, 0)
            .and_then(|_| file.set_len(size))
            .map_err(|e| StoreError::io(path, e))?;
    } else {
        let mut file = file;
        file.write_all(content)
            .map_err(|e| StoreError::io(path, e))?;
    }
    start_writeback(file, size);
    Ok(())
}

/// Turns `O_DIRECT` on for `file`; false where its filesystem refuses it
/// (the file stays as it was: buffered). Asked of the open file, so
/// nothing is created or removed by name to find out.
fn set_direct(file: &File) -> bool {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    fcntl(file.as_raw_fd(), FcntlArg::F_GETFL)
        .and_then(|flags| {
            let flags = OFlag::from_bits_retain(flags) | OFlag::O_DIRECT;
            fcntl(file.as_raw_fd(), FcntlArg::F_SETFL(flags))
        })
        .is_ok()
}

/// Where a file is when it is listed.
enum Location {
    /// In the staging directory, under this name.
    Staging(String),
    /// At its final name already ([`write_unnamed`]).
    Final,
}

/// [`Staging::list_file`] from any thread. Where the store writes behind,
/// a file still in the staging is sent on to be moved to its final name
/// at once (see [`Shared::place_at_once`]).
fn list_file_in(
    shared: &Shared,
    digest: Digest,
    size: u64,
    at: Location,
) -> Result<(), StoreError> {
    let listed = {
        let mut guard = shared
            .staged
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let staged = &mut *guard;
        match staged.files.entry(digest) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(size);
                match &at {
                    // Noted as placed when it was created.
                    Location::Final => {}
                    Location::Staging(_) if shared.place_at_once => staged.placed.push(digest),
                    Location::Staging(name) => staged.unplaced.push((digest, name.clone())),
                }
                true
            }
        }
    };
    let Location::Staging(name) = at else {
        // Listed, or another copy was: either way the name holds a
        // complete copy by the publish.
        return Ok(());
    };
    if !listed {
        let path = shared.dir.join(&name);
        std::fs::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
    } else if shared.place_at_once {
        // Listed, so no other handle moves this content. A failure to
        // place it fails the publish.
        let mut placer = shared.placer.lock().unwrap_or_else(|p| p.into_inner());
        if placer.is_none() {
            match Placer::start(&shared.root, &shared.dir) {
                Ok(started) => *placer = Some(started),
                // No thread: placed here, now.
                Err(_) => return place_file(&shared.root, &shared.dir, &digest, &name),
            }
        }
        if let Some(placer) = placer.as_ref() {
            placer.send(digest, name);
        }
    }
    Ok(())
}

/// The bytes [`write_sparse`] writes of `data` at offset 0: all but its
/// block-aligned zero blocks.
fn sparse_len(data: &[u8]) -> u64 {
    data.chunks(HOLE_BLOCK as usize)
        .filter(|block| **block != ZERO_BLOCK[..block.len()])
        .map(|block| block.len() as u64)
        .sum()
}

impl Shared {
    /// The first error of a writer thread, if any (a poisoned lock still
    /// holds a consistent `Option`).
    fn failures(&self) -> MutexGuard<'_, Option<StoreError>> {
        self.failed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Removes the files this unpublished staging moved to their final
    /// names, so that a failed ingest leaves the store as it found it.
    /// Only what no row names, and only when no other ingest runs (the
    /// gc lock exclusively, at once): another ingest may have published
    /// the same content meanwhile, and it renames before it writes its
    /// rows. Otherwise they are left to gc, as a crash leaves them.
    fn remove_placed(&mut self) {
        let placed = std::mem::take(
            &mut self
                .staged
                .get_mut()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .placed,
        );
        if placed.is_empty() {
            return;
        }
        self.gc = None;
        let Ok(Some(_gc)) = GcLock::try_exclusive(&self.root) else {
            return;
        };
        let Ok(conn) = rusqlite::Connection::open_with_flags(
            self.root.join("strata.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        ) else {
            return;
        };
        for digest in placed {
            if let Ok(false) = super::file_is_named(&conn, &digest) {
                let _ = std::fs::remove_file(super::file_path_in(&self.root, &digest));
            }
        }
    }

    /// Waits for the placer, if one started, to place what it was sent.
    fn finish_placer(&mut self) -> Result<(), StoreError> {
        let placer = self
            .placer
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        placer.map_or(Ok(()), Placer::finish)
    }

    /// Keeps `e` unless a writer failed before.
    fn fail(&self, e: StoreError) {
        self.failures().get_or_insert(e);
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let _ = self.finish_placer();
        if !self.published {
            self.remove_placed();
        }
        if !self.left_to_flusher {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Prefix of a published staging directory left to the flusher.
pub(super) const SPENT: &str = "spent-";

/// Removes the staging directories publishes left to the flusher (see
/// [`Staging::publish`]), each once its publisher has let go of it:
/// waiting for that where `wait` (the flusher), passing over it otherwise
/// (`system sync`, which must not hang on a stopped publisher). What is
/// not removed is left to gc, which removes any unused entry of `tmp/`.
pub fn remove_spent(root: &Path, wait: bool) {
    let Ok(dir) = std::fs::read_dir(root.join("tmp")) else {
        return;
    };
    for item in dir.flatten() {
        if !item.file_name().to_string_lossy().starts_with(SPENT) {
            continue;
        }
        let path = item.path();
        // The publisher holds the lock until its staging is dropped, just
        // after the publish.
        let Ok(file) = File::open(path.join(".lock")) else {
            continue;
        };
        let how = if wait {
            FlockArg::LockExclusive
        } else {
            FlockArg::LockExclusiveNonblock
        };
        if Flock::lock(file, how).is_ok() {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

impl Staging {
    pub(super) fn new(store: &Store) -> Result<Staging, StoreError> {
        let (gc, lease) = GcLock::for_ingest(store.root())?;
        let dir = store
            .tmp_dir()
            .join(format!("stage-{:016x}", rand::random::<u64>()));
        std::fs::create_dir(&dir).map_err(|e| StoreError::io(&dir, e))?;
        let lock_path = dir.join(".lock");
        let file = File::create(&lock_path).map_err(|e| StoreError::io(&lock_path, e))?;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| StoreError::io(&lock_path, e.into()))?;
        Ok(Staging {
            shared: Arc::new(Shared {
                dir,
                staged: Mutex::new(Staged::default()),
                failed: Mutex::new(None),
                next_part: AtomicU64::new(0),
                direct: std::sync::atomic::AtomicBool::new(true),
                unnamed: std::sync::atomic::AtomicBool::new(true),
                _dir_lock: lock,
                lease,
                gc: Some(gc),
                root: store.root().to_path_buf(),
                published: false,
                left_to_flusher: false,
                place_at_once: super::flush::write_behind().is_some(),
                placer: Mutex::new(None),
            }),
            buffer: Vec::new(),
            writer: None,
            queued: Default::default(),
        })
    }

    /// Another handle on this staging, for another thread. Everything it
    /// stages is published by [`Staging::publish`] of any handle, which
    /// requires every other handle to be dropped first.
    pub fn share(&self) -> Staging {
        Staging {
            shared: Arc::clone(&self.shared),
            buffer: Vec::new(),
            writer: None,
            queued: Default::default(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Something to stamp this ingest's progress with, from any thread
    /// (a pull stamps it as bytes arrive; staging a file stamps it too).
    pub fn progress_stamp(&self) -> ProgressStamp {
        ProgressStamp(Arc::clone(&self.shared))
    }

    /// Number of distinct new files staged so far.
    pub fn staged_files(&self) -> usize {
        self.staged().files.len()
    }

    fn staged(&self) -> MutexGuard<'_, Staged> {
        // A panic while holding the lock leaves the maps consistent (each
        // change is one insert), so a poisoned lock is still usable.
        self.shared
            .staged
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn part_name(&self) -> String {
        format!(
            "part-{}",
            self.shared.next_part.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Lists a complete staged file, unless another handle listed the same
    /// content meanwhile (then this copy is removed).
    fn list_file(&self, digest: Digest, size: u64, name: String) -> Result<(), StoreError> {
        list_file_in(&self.shared, digest, size, Location::Staging(name))
    }

    /// Whether the store or this staging already has a complete copy.
    fn has_content(&self, store: &Store, digest: &Digest) -> Result<bool, StoreError> {
        Ok(self.staged().files.contains_key(digest) || store.has_file(digest)?)
    }

    /// Reads exactly `size` bytes of a regular file's content from `reader`,
    /// stages them unless the store (or this staging) already has them,
    /// and returns their digest and what it cost on disk. A large file's
    /// block-aligned zero runs are left as holes. The content is hashed
    /// by `reader` where it can ([`ContentRead`]), here otherwise.
    pub fn stage_file(
        &mut self,
        store: &Store,
        reader: &mut dyn ContentRead,
        size: u64,
    ) -> Result<StagedFile, StoreError> {
        let dir = self.shared.dir.clone();
        self.shared.lease.touch();
        let hashed_by_reader = reader.start_content();
        if size <= IN_MEMORY {
            // Read to a block boundary of memory (see WriteJob). The
            // buffer grows (moved, zeroed) only when it is too short: what
            // it holds of earlier files is overwritten, not zeroed first.
            let size = size as usize;
            let aligned = |buffer: &Vec<u8>| buffer.as_ptr().align_offset(HOLE_BLOCK as usize);
            if self.buffer.len() < aligned(&self.buffer) + size {
                self.buffer.clear();
                self.buffer.reserve(size + HOLE_BLOCK as usize);
                let start = aligned(&self.buffer);
                self.buffer.resize(start + size, 0);
            }
            let start = aligned(&self.buffer);
            let end = start + size;
            reader
                .read_exact(&mut self.buffer[start..end])
                .map_err(|e| {
                    // read_exact's own end of stream, not the reader's
                    // error (a gzip stream cut short says so itself).
                    if e.kind() == io::ErrorKind::UnexpectedEof && e.get_ref().is_none() {
                        truncated(&dir)
                    } else {
                        StoreError::io(&dir, e)
                    }
                })?;
            let content = &self.buffer[start..end];
            let digest = reader
                .content_digest()
                .unwrap_or_else(|| Digest::of(content));
            if self.queued.contains(&digest) || self.has_content(store, &digest)? {
                return Ok(StagedFile { digest, written: 0 });
            }
            let written = if size as u64 > SPARSE_FROM {
                sparse_len(content)
            } else {
                size as u64
            };
            self.queue_write(digest, start, end)?;
            return Ok(StagedFile { digest, written });
        }
        let name = self.part_name();
        let part = dir.join(&name);
        let out = create_read_only(&part)?;
        let mut hasher = Hasher::new();
        let mut offset = 0u64;
        let mut written = 0u64;
        self.buffer.resize(COPY_BUFFER, 0);
        while offset < size {
            let want = (size - offset).min(COPY_BUFFER as u64) as usize;
            let n = reader
                .read(&mut self.buffer[..want])
                .map_err(|e| StoreError::io(&part, e))?;
            if n == 0 {
                let _ = std::fs::remove_file(&part);
                return Err(truncated(&part));
            }
            if !hashed_by_reader {
                hasher.update(&self.buffer[..n]);
            }
            self.shared.lease.touch();
            written += write_sparse(&out, &self.buffer[..n], offset)
                .map_err(|e| StoreError::io(&part, e))?;
            offset += n as u64;
        }
        // Zero blocks at the end are holes too.
        out.set_len(size).map_err(|e| StoreError::io(&part, e))?;
        let digest = reader.content_digest().unwrap_or_else(|| hasher.finish());
        if store.has_file(&digest)? {
            // Removed before its pages are written back: no disk write.
            drop(out);
            std::fs::remove_file(&part).map_err(|e| StoreError::io(&part, e))?;
        } else {
            start_writeback(&out, size);
            drop(out);
            self.list_file(digest, size, name)?;
        }
        Ok(StagedFile { digest, written })
    }

    /// Hands the file in `self.buffer[start..]` to this handle's writer
    /// thread.
    fn queue_write(&mut self, digest: Digest, start: usize, end: usize) -> Result<(), StoreError> {
        if self.writer.is_none() {
            let (jobs, incoming) = std::sync::mpsc::sync_channel::<Vec<WriteJob>>(WRITE_QUEUE);
            let (give_back, spent) = std::sync::mpsc::sync_channel(WRITE_QUEUE * BATCH_FILES);
            let incoming = Arc::new(Mutex::new(incoming));
            let mut threads = Vec::with_capacity(WRITERS);
            for _ in 0..WRITERS {
                let shared = Arc::clone(&self.shared);
                let incoming = Arc::clone(&incoming);
                let give_back = give_back.clone();
                let thread = std::thread::Builder::new()
                    .name("stage-writer".into())
                    .spawn(move || write_jobs(&shared, &incoming, &give_back))
                    .map_err(|e| StoreError::io(&self.shared.dir, e))?;
                threads.push(thread);
            }
            self.writer = Some(Writer {
                jobs,
                batch: Vec::with_capacity(BATCH_FILES),
                spent,
                threads,
            });
        }
        let Some(writer) = &mut self.writer else {
            unreachable!("started above")
        };
        let next = writer.spent.try_recv().unwrap_or_default();
        let data = std::mem::replace(&mut self.buffer, next);
        writer.batch.push(WriteJob {
            digest,
            data,
            start,
            end,
        });
        self.queued.insert(digest);
        let bytes: usize = writer.batch.iter().map(|job| job.end - job.start).sum();
        if writer.batch.len() >= BATCH_FILES || bytes >= BATCH_BYTES {
            let batch = std::mem::replace(&mut writer.batch, Vec::with_capacity(BATCH_FILES));
            if writer.jobs.send(batch).is_err() {
                // The writers stopped at an error: report it now.
                self.finish_writer();
                return Err(self.writer_error().unwrap_or_else(|| {
                    StoreError::io(&self.shared.dir, io::Error::other("staging writer stopped"))
                }));
            }
        }
        Ok(())
    }

    /// Waits for this handle's writers to write everything queued (the
    /// batch not handed over yet too).
    fn finish_writer(&mut self) {
        if let Some(mut writer) = self.writer.take() {
            if !writer.batch.is_empty() {
                // Refused only when every writer stopped at an error,
                // which the publish reports.
                let _ = writer.jobs.send(std::mem::take(&mut writer.batch));
            }
            drop(writer.jobs);
            for thread in writer.threads {
                let _ = thread.join();
            }
        }
        self.queued.clear();
    }

    fn writer_error(&self) -> Option<StoreError> {
        self.shared.failures().take()
    }

    /// Stages a blob (manifest, index, config) whose bytes are in memory.
    pub fn stage_blob(
        &mut self,
        store: &Store,
        data: &[u8],
        media_type: Option<&str>,
    ) -> Result<Digest, StoreError> {
        let digest = Digest::of(data);
        if self.staged().blobs.contains_key(&digest) || store.has_blob(&digest)? {
            return Ok(digest);
        }
        let name = self.part_name();
        let path = self.shared.dir.join(&name);
        std::fs::write(&path, data).map_err(|e| StoreError::io(&path, e))?;
        let media_type = media_type.map(str::to_string);
        let duplicate = {
            let mut staged = self.staged();
            let duplicate = staged.blobs.contains_key(&digest);
            if !duplicate {
                staged
                    .blobs
                    .insert(digest, (data.len() as u64, media_type, name));
            }
            duplicate
        };
        if duplicate {
            std::fs::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
        }
        Ok(digest)
    }

    /// Moves the files staged so far (by any handle) to their final names
    /// in `files/` (after one flush of their data where the store does not
    /// write behind), so that the publish has fewer to move. No row names
    /// them until the publish: a crash leaves them as unreferenced objects
    /// for gc, which the gc lock this staging holds keeps away until then.
    pub fn place_files(&self, store: &Store) -> Result<(), StoreError> {
        self.place_files_in(store.root())
    }

    /// [`Staging::place_files`] for the store at `root`, from a thread
    /// that has no connection of its own.
    pub fn place_files_in(&self, root: &Path) -> Result<(), StoreError> {
        let batch = {
            let mut staged = self.staged();
            let batch = std::mem::take(&mut staged.unplaced);
            staged
                .placed
                .extend(batch.iter().map(|(digest, _)| *digest));
            batch
        };
        if batch.is_empty() {
            return Ok(());
        }
        if super::flush::write_behind().is_none() {
            syncfs(&self.shared.dir)?;
        }
        move_files(root, &self.shared.dir, &batch)
    }

    /// Number of complete staged files not moved to `files/` yet.
    pub fn unplaced_files(&self) -> usize {
        self.staged().unplaced.len()
    }

    /// Renames every staged object into place, then runs `record` in one
    /// immediate transaction that also inserts the rows of the new files
    /// and blobs (and their write-behind batch), commits it and starts the
    /// flusher; without write-behind, flushes before and after the renames
    /// instead. Every other handle of this staging must be dropped by then.
    pub fn publish<T, E>(
        mut self,
        store: &Store,
        record: impl FnOnce(&Transaction) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let dir = self.shared.dir.clone();
        self.finish_writer();
        if let Some(e) = self.writer_error() {
            return Err(e.into());
        }
        let Some(shared) = Arc::get_mut(&mut self.shared) else {
            return Err(StoreError::io(
                &dir,
                io::Error::other("published while another handle of the staging is alive"),
            )
            .into());
        };
        shared.finish_placer()?;
        let kept = shared
            .staged
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut staged = std::mem::take(kept);
        // What was placed stays listed until the commit: a publish that
        // fails before it removes those files (see Drop).
        std::mem::swap(&mut kept.placed, &mut staged.placed);
        let placed_early = !kept.placed.is_empty();
        let moving = !staged.unplaced.is_empty() || !staged.blobs.is_empty();
        // Written behind (flush.rs): the rows go first, a flusher follows.
        let behind = super::flush::write_behind();
        if moving {
            // 1. The data of every object still here reaches the disk.
            if behind.is_none() {
                syncfs(&dir)?;
            }
            // 2. Each object gets its final name.
            move_files(store.root(), &dir, &staged.unplaced)?;
            for (digest, (_, _, name)) in &staged.blobs {
                let target = store.blob_path(digest);
                std::fs::rename(dir.join(name), &target).map_err(|e| StoreError::io(&target, e))?;
            }
        }
        // 3. The new names reach the disk (one flush for every directory
        //    touched, rather than an fsync of each).
        if behind.is_none() && (moving || placed_early) {
            syncfs(&dir)?;
        }
        // 4. The rows that name them.
        let conn = store.conn();
        let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
            .map_err(|e| store.db_err(e))?;
        // gc revokes a stalled ingest's lease before it removes anything,
        // then waits for this transaction (it takes the write lock too):
        // so a lease held here stays valid until the commit.
        if !shared.lease.is_held() {
            return Err(StoreError::LeaseRevoked {
                lease: shared.lease.path().to_path_buf(),
            }
            .into());
        }
        {
            let mut insert_file = tx
                .prepare_cached("INSERT OR IGNORE INTO files(digest, size) VALUES (?1, ?2)")
                .map_err(|e| store.db_err(e))?;
            for (digest, size) in &staged.files {
                insert_file
                    .execute(rusqlite::params![&digest.bytes()[..], *size as i64])
                    .map_err(|e| store.db_err(e))?;
            }
            let mut insert_blob = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO blobs(digest, size, media_type) VALUES (?1, ?2, ?3)",
                )
                .map_err(|e| store.db_err(e))?;
            for (digest, (size, media_type, _)) in &staged.blobs {
                insert_blob
                    .execute(rusqlite::params![
                        digest.to_string(),
                        *size as i64,
                        media_type
                    ])
                    .map_err(|e| store.db_err(e))?;
            }
        }
        let value = record(&tx)?;
        let batch = match &behind {
            Some(behind) if !staged.files.is_empty() || !staged.blobs.is_empty() => {
                Some(behind.record(
                    &tx,
                    store.root(),
                    staged.files.keys().copied(),
                    staged.blobs.keys().copied(),
                )?)
            }
            _ => None,
        };
        // The checkpoint a commit past WAL_AUTOCHECKPOINT pages runs (the
        // pages read back from the WAL, written into the database, which
        // is then flushed: 7 of the 50 ms a load of 9,000 files spends
        // after its last file, BENCHMARKS.md) is left to the flusher that
        // follows this commit.
        let deferred = batch.is_some() && set_autocheckpoint(conn, 0);
        let committed = tx.commit();
        if deferred {
            set_autocheckpoint(conn, super::WAL_AUTOCHECKPOINT);
        }
        committed.map_err(|e| store.db_err(e))?;
        shared.published = true;
        truncate_large_wal(store);
        if let (Some(behind), Some(batch)) = (&behind, batch) {
            // The staging holds only its emptied directories now. Removing
            // them waits for the disk (ext4 mounted with `discard` trims
            // each freed extent there and then: 60 ms after a layer of
            // 8,000 files), so the flusher removes them, behind the
            // ingest as its flush is.
            let spent = dir.with_file_name(format!(
                "{SPENT}{}",
                dir.file_name().unwrap_or_default().to_string_lossy()
            ));
            let renamed = std::fs::rename(&dir, &spent).is_ok();
            if renamed {
                shared.dir = spent;
            }
            shared.left_to_flusher = behind.start_flusher(store.root(), batch) && renamed;
        }
        Ok(value)
    }
}

/// Sets `conn`'s `wal_autocheckpoint`; whether it took.
fn set_autocheckpoint(conn: &rusqlite::Connection, pages: u32) -> bool {
    conn.pragma_update(None, "wal_autocheckpoint", pages)
        .is_ok()
}

/// A WAL past this size after a commit is checkpointed and truncated.
const LARGE_WAL: u64 = 64 << 20;

/// After a large ingest (a layer of a million entries writes as much WAL
/// as database) the WAL file keeps its size after a checkpoint; copy its
/// pages into the database now (its flusher would do it only after the
/// data's flush) and truncate it, rather than keep the space until some
/// later write resets it. A reader in the way only means the WAL stays
/// for now.
fn truncate_large_wal(store: &Store) {
    let wal = store.root().join("strata.db-wal");
    if std::fs::metadata(&wal).is_ok_and(|m| m.len() > LARGE_WAL) {
        let _ = store
            .conn()
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    }
}

/// Renames one staged file, `name` in `dir`, to `files/<hh>/<hex>`,
/// making the prefix directory if it is not there yet.
fn place_file(root: &Path, dir: &Path, digest: &Digest, name: &str) -> Result<(), StoreError> {
    let target = super::file_path_in(root, digest);
    let source = dir.join(name);
    with_prefix_dir(root, &target, || std::fs::rename(&source, &target))?
        .map_err(|e| StoreError::io(&target, e))
}

/// Runs `make`, which gives the store file `target` its name; when it
/// fails because `target`'s `files/<hh>` directory is missing (made at
/// the first file with that prefix), makes it and runs `make` again. The
/// outer error is the directory's, the inner what `make` gave.
fn with_prefix_dir<T>(
    root: &Path,
    target: &Path,
    make: impl Fn() -> io::Result<T>,
) -> Result<io::Result<T>, StoreError> {
    match make() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let parent = target.parent().unwrap_or(root);
            if parent.is_dir() {
                return Ok(Err(e));
            }
            match std::fs::create_dir(parent) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                    Err(StoreError::io(parent, e))
                }
                _ => Ok(make()),
            }
        }
        other => Ok(other),
    }
}

/// Renames staged files (named as in `batch`) from `dir` to `files/<hh>/<hex>`.
fn move_files(root: &Path, dir: &Path, batch: &[(Digest, String)]) -> Result<(), StoreError> {
    for (digest, name) in batch {
        place_file(root, dir, digest, name)?;
    }
    Ok(())
}

/// Files from this size on start their writeback as soon as they are
/// staged; smaller ones (a call and an I/O each, for little data) are
/// left to the flush of the publish.
const EARLY_WRITEBACK: u64 = 64 << 10;

/// Starts writing a staged file of `size` bytes back to disk now, while
/// the ingest goes on, so that the flush of the publish has little left
/// to write. Only an optimisation: a failure here is left to that flush
/// to report.
fn start_writeback(file: &File, size: u64) {
    use std::os::fd::AsFd;
    if size >= EARLY_WRITEBACK {
        let _ = super::sys::start_writeback(file.as_fd());
    }
}

/// Flushes the whole filesystem that holds `dir` (data and metadata).
fn syncfs(dir: &Path) -> Result<(), StoreError> {
    let file = File::open(dir).map_err(|e| StoreError::io(dir, e))?;
    nix::unistd::syncfs(file.as_raw_fd()).map_err(|e| StoreError::io(dir, e.into()))
}

fn truncated(path: &Path) -> StoreError {
    StoreError::io(
        path,
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "stream ended inside a file's content",
        ),
    )
}

/// Creates a store file read-only (0444) from the start: the open
/// descriptor may still write it, and publishing needs no chmod.
fn create_read_only(path: &Path) -> Result<File, StoreError> {
    new_read_only(path).map_err(|e| StoreError::io(path, e))
}

/// [`create_read_only`], its error as the system gave it.
fn new_read_only(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// Stages each of `contents` through `staging`; their digests.
    fn stage_all(store: &Store, staging: &mut Staging, contents: &[Vec<u8>]) -> Vec<Digest> {
        contents
            .iter()
            .map(|data| {
                staging
                    .stage_file(store, &mut &data[..], data.len() as u64)
                    .unwrap()
                    .digest
            })
            .collect()
    }

    /// A store file as a writer creates it: [`create_read_only`], with
    /// `O_DIRECT` if `direct` and the filesystem has it ([`set_direct`]);
    /// says whether it has.
    fn create_staged(path: &Path, direct: bool) -> Result<(File, bool), StoreError> {
        let file = create_read_only(path)?;
        let direct = direct && set_direct(&file);
        Ok((file, direct))
    }

    #[test]
    fn zero_blocks_are_holes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = File::create(&path).unwrap();
        let mut data = vec![0u8; 64 << 10];
        data[5000] = 1; // in the second block
        data[60_000..60_010].copy_from_slice(b"0123456789");
        // Written in pieces that do not fall on block boundaries.
        let mut written = 0;
        for (i, piece) in data.chunks(3000).enumerate() {
            written += write_sparse(&file, piece, (i * 3000) as u64).unwrap();
        }
        file.set_len(data.len() as u64 + 10_000).unwrap();
        data.extend([0u8; 10_000]);
        assert_eq!(std::fs::read(&path).unwrap(), data);
        // The pieces that touch the two non-zero blocks, nothing else.
        assert!(written <= 4 * 3000, "{written}");
        assert!(file.metadata().unwrap().blocks() * 512 <= 4 * 4096);
    }

    #[test]
    fn sparse_len_counts_what_write_sparse_writes() {
        let dir = tempfile::tempdir().unwrap();
        let mut data = vec![0u8; (3 << 20) + 100];
        data[10] = 1;
        data[2 << 20] = 7;
        data[(3 << 20) + 99] = 9;
        let file = File::create(dir.path().join("f")).unwrap();
        assert_eq!(sparse_len(&data), write_sparse(&file, &data, 0).unwrap());
        assert_eq!(sparse_len(&data), 4096 + 4096 + 100);
    }

    /// Direct writes through the staging: every size around a block and
    /// a chunk boundary reads back exactly (the last partial block
    /// written through the page cache), a large file's zero blocks stay
    /// holes, and the file really
    /// was opened with O_DIRECT where the filesystem has it.
    #[test]
    fn direct_writes_read_back_exactly_and_keep_holes() {
        let dir = tempfile::tempdir().unwrap();
        let mut buffer = DirectBuffer::new();
        let sizes = [
            DIRECT_FROM as usize,
            DIRECT_FROM as usize + 1,
            DIRECT_CHUNK - 1,
            DIRECT_CHUNK,
            DIRECT_CHUNK + 4097,
            (3 << 20) + 100,
        ];
        for (size, from_aligned) in sizes.iter().flat_map(|&s| [(s, false), (s, true)]) {
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8 + 1).collect();
            // The content at a block boundary of memory (written in place)
            // and one byte past it (through the bounce buffer).
            let mut holder = vec![0u8; size + 2 * HOLE_BLOCK as usize];
            let skip =
                holder.as_ptr().align_offset(HOLE_BLOCK as usize) + usize::from(!from_aligned);
            holder[skip..skip + size].copy_from_slice(&data);
            let source = &holder[skip..skip + size];
            let path = dir.path().join(format!("f{size}-{from_aligned}"));
            let (file, direct) = create_staged(&path, true).unwrap();
            // Whole: no cut needed, which would read the last block back.
            assert_eq!(
                write_direct(&file, source, false, &mut buffer).unwrap(),
                size as u64
            );
            assert_eq!(file.metadata().unwrap().len(), size as u64);
            if direct {
                // Direct up to the last partial block, which went through
                // the page cache.
                let flags =
                    nix::fcntl::fcntl(file.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL).unwrap();
                let block_multiple = size % HOLE_BLOCK as usize == 0;
                assert_eq!(flags & libc::O_DIRECT != 0, block_multiple, "size {size}");
            }
            drop(file);
            assert!(std::fs::read(&path).unwrap() == data, "size {size}");
        }
        let mut data = vec![0u8; (3 << 20) + 100];
        data[10] = 1;
        data[2 << 20] = 7;
        data[(3 << 20) + 99] = 9;
        let path = dir.path().join("sparse");
        let (file, _) = create_staged(&path, true).unwrap();
        assert_eq!(
            write_direct(&file, &data, true, &mut buffer).unwrap(),
            data.len() as u64
        );
        assert_eq!(file.metadata().unwrap().len(), data.len() as u64);
        assert!(std::fs::read(&path).unwrap() == data);
        assert!(file.metadata().unwrap().blocks() * 512 <= 3 * 4096);
        // Ending in a hole: written up to its last data, the caller sets
        // the length.
        data[(3 << 20) + 99] = 0;
        let path = dir.path().join("sparse-end");
        let (file, _) = create_staged(&path, true).unwrap();
        let end = write_direct(&file, &data, true, &mut buffer).unwrap();
        assert_eq!(end, (2 << 20) + 4096);
        file.set_len(data.len() as u64).unwrap();
        assert!(std::fs::read(&path).unwrap() == data);
    }

    /// Files written by the writer thread: each content once, whichever
    /// handle staged it and however often; all of them named by the
    /// publish's rows.
    #[test]
    fn the_flusher_removes_spent_staging_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        for name in ["spent-stage-1", "stage-2", "removed-3"] {
            std::fs::create_dir_all(tmp.join(name).join("writer-0")).unwrap();
            std::fs::write(tmp.join(name).join(".lock"), b"").unwrap();
            std::fs::write(tmp.join(name).join("writer-0/part"), b"x").unwrap();
        }
        // Held by its publisher: passed over unless waited for.
        let held = Flock::lock(
            File::open(tmp.join("spent-stage-1/.lock")).unwrap(),
            FlockArg::LockExclusive,
        )
        .unwrap();
        remove_spent(dir.path(), false);
        assert!(tmp.join("spent-stage-1").exists());
        drop(held);
        remove_spent(dir.path(), true);
        let mut left: Vec<_> = std::fs::read_dir(&tmp)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["removed-3", "stage-2"]);
        // A store without tmp/ (removed meanwhile) is no error.
        remove_spent(&dir.path().join("gone"), true);
    }

    #[test]
    fn queued_files_are_written_once_and_published() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("root")).unwrap();
        let mut staging = store.begin_staging().unwrap();
        let mut other = staging.share();
        let contents: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; 5000 + usize::from(i)]).collect();
        let mut digests = Vec::new();
        for data in contents.iter().chain(contents.iter()) {
            let a = staging
                .stage_file(&store, &mut &data[..], data.len() as u64)
                .unwrap();
            let b = other
                .stage_file(&store, &mut &data[..], data.len() as u64)
                .unwrap();
            assert_eq!(a.digest, b.digest);
            digests.push(a.digest);
        }
        drop(other);
        staging
            .publish(&store, |_| Ok::<(), StoreError>(()))
            .unwrap();
        for (data, digest) in contents.iter().zip(&digests) {
            assert_eq!(&std::fs::read(store.file_path(digest)).unwrap(), data);
            assert!(store.has_file(digest).unwrap());
        }
        let published = std::fs::read_dir(dir.path().join("root/files"))
            .unwrap()
            .flatten()
            .map(|d| std::fs::read_dir(d.path()).unwrap().count())
            .sum::<usize>();
        assert_eq!(published, contents.len());
    }

    /// A filesystem without O_DIRECT (ramfs refuses the flag) gets
    /// buffered writes, from the first file on, and nothing else changes.
    #[test]
    fn a_filesystem_without_o_direct_gets_buffered_writes() {
        if !nix::unistd::geteuid().is_root() {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "needs root to mount ramfs"
            );
            eprintln!("skipped: mounting ramfs needs root");
            return;
        }
        struct Unmount(PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let mnt = dir.path().join("ramfs");
        std::fs::create_dir(&mnt).unwrap();
        nix::mount::mount(
            Some("ramfs"),
            &mnt,
            Some("ramfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        let _unmount = Unmount(mnt.clone());
        let (_, direct) = create_staged(&mnt.join("probe"), true).unwrap();
        assert!(!direct, "ramfs took O_DIRECT");

        let store = Store::open(&mnt.join("root")).unwrap();
        let mut staging = store.begin_staging().unwrap();
        let mut big = vec![0u8; (3 << 20) + 1];
        big[..5000].fill(9);
        big[3 << 20] = 1;
        let contents = [vec![7u8; 100_000], vec![8u8; DIRECT_FROM as usize], big];
        let digests = stage_all(&store, &mut staging, &contents);
        staging
            .publish(&store, |_| Ok::<(), StoreError>(()))
            .unwrap();
        for (data, digest) in contents.iter().zip(&digests) {
            assert!(std::fs::read(store.file_path(digest)).unwrap() == *data);
        }
    }

    /// Where the store writes behind, a file hashed in memory is written
    /// unnamed and linked whole at its final name, read-only; a name that
    /// exists without a row (a crash's leftover) is not trusted but
    /// replaced by this ingest's copy; nothing is left in the staging.
    #[test]
    fn files_written_behind_are_linked_whole_and_a_stray_name_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("root")).unwrap();
        let mut staging = store.begin_staging().unwrap();
        Arc::get_mut(&mut staging.shared).unwrap().place_at_once = true;
        let contents = [vec![3u8; 5000], vec![4u8; 2 * DIRECT_FROM as usize]];
        let stray = store.file_path(&Digest::of(&contents[1]));
        std::fs::create_dir_all(stray.parent().unwrap()).unwrap();
        std::fs::write(&stray, b"half").unwrap();
        let digests = stage_all(&store, &mut staging, &contents);
        let staging_dir = staging.dir().to_path_buf();
        staging
            .publish(&store, |_| Ok::<(), StoreError>(()))
            .unwrap();
        for (data, digest) in contents.iter().zip(&digests) {
            let path = store.file_path(digest);
            assert_eq!(&std::fs::read(&path).unwrap(), data);
            let meta = std::fs::metadata(&path).unwrap();
            assert_eq!(meta.mode() & 0o7777, 0o444);
            assert_eq!(meta.nlink(), 1, "a second name of {}", path.display());
            assert!(store.has_file(digest).unwrap());
        }
        assert!(!staging_dir.exists(), "the staging is left");
    }

    /// A write that fails on the writer thread fails the publish: no row
    /// may name a file that was not written.
    #[test]
    fn a_failed_write_fails_the_publish() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("root")).unwrap();
        let mut staging = store.begin_staging().unwrap();
        let data = b"some content".to_vec();
        let digest = Digest::of(&data);
        // The staging directory is gone: the writer cannot create the file.
        std::fs::remove_dir_all(staging.dir()).unwrap();
        let published = staging
            .stage_file(&store, &mut &data[..], data.len() as u64)
            .and_then(|_| staging.publish(&store, |_| Ok::<(), StoreError>(())));
        assert!(published.is_err(), "the publish succeeded");
        assert!(!store.has_file(&digest).unwrap());
    }
}
