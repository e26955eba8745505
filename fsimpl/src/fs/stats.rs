//! Counters of how a mount served its file opens and file I/O, for tests
//! and diagnostics ([`crate::MountHandle::io_stats`]).

use std::sync::atomic::{AtomicU64, Ordering};

/// How a mount has served file opens and I/O so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoStats {
    /// Opens passed through to a lower (image) file.
    pub lower_passthrough_opens: u64,
    /// Opens passed through to an upper file.
    pub upper_passthrough_opens: u64,
    /// Opens whose reads and writes the daemon serves.
    pub cached_opens: u64,
    /// Opens answered `ESTALE` so that the kernel looks the path up again
    /// and opens the upper file under a new inode number (a copied-up file
    /// whose lower file is still attached as passthrough backing).
    pub relookups: u64,
    /// Read requests the daemon served.
    pub daemon_reads: u64,
    /// Write requests the daemon served.
    pub daemon_writes: u64,
    /// FLUSH requests (one per `close` until the daemon's first answer
    /// tells the kernel to send no more).
    pub flushes: u64,
    /// OPEN requests of a mount without an upper layer (one: the daemon's
    /// answer tells the kernel to send no more, see `no_open`).
    pub opens_declined: u64,
    /// OPENDIR requests of a mount without an upper layer (one, as for
    /// `opens_declined`).
    pub opendirs_declined: u64,
    /// Of `lower_passthrough_opens`, those served from the backing file
    /// a mount without an upper layer kept from the inode's earlier open.
    pub kept_backing_opens: u64,
}

/// The live counters behind [`IoStats`].
#[derive(Debug, Default)]
pub(crate) struct IoCounters {
    pub lower_passthrough_opens: AtomicU64,
    pub upper_passthrough_opens: AtomicU64,
    pub cached_opens: AtomicU64,
    pub relookups: AtomicU64,
    pub daemon_reads: AtomicU64,
    pub daemon_writes: AtomicU64,
    pub flushes: AtomicU64,
    pub opens_declined: AtomicU64,
    pub opendirs_declined: AtomicU64,
    pub kept_backing_opens: AtomicU64,
}

impl IoCounters {
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> IoStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        IoStats {
            lower_passthrough_opens: get(&self.lower_passthrough_opens),
            upper_passthrough_opens: get(&self.upper_passthrough_opens),
            cached_opens: get(&self.cached_opens),
            relookups: get(&self.relookups),
            daemon_reads: get(&self.daemon_reads),
            daemon_writes: get(&self.daemon_writes),
            flushes: get(&self.flushes),
            opens_declined: get(&self.opens_declined),
            opendirs_declined: get(&self.opendirs_declined),
            kept_backing_opens: get(&self.kept_backing_opens),
        }
    }
}
