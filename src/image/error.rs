use crate::store::StoreError;

/// Errors of layer ingest and reconstruction. Each names the entry (path)
/// or the digest involved; `offset` is a byte offset in the uncompressed
/// tar stream.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("layer stream: {0}")]
    Io(#[from] std::io::Error),
    #[error("layer stream is truncated (ended at byte {offset} inside {what})")]
    Truncated { offset: u64, what: &'static str },
    #[error("invalid tar header at byte {offset}: {reason}")]
    BadHeader { offset: u64, reason: String },
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("invalid whiteout {path:?}: {reason}")]
    InvalidWhiteout { path: String, reason: &'static str },
    #[error("duplicate entry {path:?} in one layer")]
    Duplicate { path: String },
    #[error("entry {path:?} is inside {parent:?}, which this layer made a non-directory")]
    ParentNotDirectory { path: String, parent: String },
    #[error("hardlink {path:?} -> {target:?}: {reason}")]
    BadHardlink {
        path: String,
        target: String,
        reason: &'static str,
    },
    #[error("entry {path:?}: {what} is not supported")]
    Unsupported { path: String, what: String },
    #[error("{what} of {size} bytes at byte {offset} exceeds the limit of {limit} bytes")]
    RecordTooLarge {
        what: &'static str,
        offset: u64,
        size: u64,
        limit: u64,
    },
    #[error("layer has more than {limit} entries")]
    TooManyEntries { limit: u64 },
    #[error("layer is larger than the limit of {limit} bytes uncompressed")]
    TooLarge { limit: u64 },
    #[error("layer writes more than {limit}x its compressed size (compression bomb?): {written} bytes from {compressed}")]
    CompressionRatio {
        limit: u64,
        written: u64,
        compressed: u64,
    },
    #[error("layer diff_id mismatch: the config says {expected}, the content is {actual}")]
    DiffIdMismatch { expected: String, actual: String },
    #[error("layer {diff_id}: recipe is corrupt: {reason}")]
    CorruptRecipe { diff_id: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}
