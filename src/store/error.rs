use std::path::{Path, PathBuf};

/// Errors of the content store; each names the path or object involved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database {}: {source}", path.display())]
    Db {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("{}: corrupt: {what}", path.display())]
    Corrupt { path: PathBuf, what: String },
    #[error("content does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch { expected: String, actual: String },
    #[error("{}: revoked: garbage collection ran while this ingest made no progress; nothing was recorded, try again", lease.display())]
    LeaseRevoked { lease: PathBuf },
    #[error("store schema version {found} is newer than this strata supports ({supported}); upgrade strata")]
    SchemaTooNew { found: i64, supported: i64 },
}

impl StoreError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
    pub fn db(path: &Path, source: rusqlite::Error) -> Self {
        StoreError::Db {
            path: path.to_path_buf(),
            source,
        }
    }
}
