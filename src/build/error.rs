use std::path::PathBuf;

use crate::container::ContainerError;
use crate::image::{ImageError, LayerError};
use crate::store::StoreError;

/// Errors of `build`. Those about the Dockerfile name `FILE:LINE`.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The text cannot be read as a Dockerfile.
    #[error("{file}:{line}: {message}")]
    Syntax {
        file: String,
        line: usize,
        message: String,
    },
    /// An instruction that reads well but cannot be carried out.
    #[error("{file}:{line}: {message}")]
    At {
        file: String,
        line: usize,
        message: String,
    },
    /// A RUN whose process failed: BuildKit's wording.
    #[error(
        "{file}:{line}: process \"{command}\" did not complete successfully: exit code: {code}"
    )]
    StepFailed {
        file: String,
        line: usize,
        command: String,
        code: i32,
    },
    /// A bad option or argument of the build itself.
    #[error("{0}")]
    Invalid(String),
    /// `--target` names no stage of the Dockerfile.
    #[error("{file}: target stage {target:?} could not be found (stages: {stages})")]
    NoTarget {
        file: String,
        target: String,
        stages: String,
    },
    #[error("build interrupted (signal {0})")]
    Interrupted(i32),
    /// Stopped because a stage built at the same time failed (that
    /// stage's error is the one reported).
    #[error("build cancelled: another stage failed")]
    Cancelled,
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl BuildError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        BuildError::Io {
            path: path.into(),
            source,
        }
    }

    /// Docker's exit status for this error: 1 for a failed build, 125
    /// for a bad flag.
    pub fn exit_code(&self) -> i32 {
        match self {
            BuildError::Invalid(_) => 125,
            BuildError::Interrupted(_) => 130,
            _ => 1,
        }
    }
}

impl From<rusqlite::Error> for BuildError {
    fn from(e: rusqlite::Error) -> Self {
        BuildError::Store(StoreError::Db {
            path: "strata.db".into(),
            source: e,
        })
    }
}
