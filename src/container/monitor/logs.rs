//! Container logs as Docker's json-file driver writes them: one JSON
//! object per line, `{"log":"...","stream":"stdout","time":"..."}`.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::container::error::ContainerError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub log: String,
    pub stream: String,
    pub time: String,
}

/// Appends log lines; shared by the threads that copy stdout and stderr.
/// With a `max-size` the log is rotated as Docker's json-file driver
/// rotates it: once the file has reached the size, before the next line,
/// `log.json` becomes `log.json.1` (`.1` becomes `.2`, ...), and only
/// `max-file` files are kept in all. `--log-driver none`: nothing is kept.
#[derive(Clone)]
pub struct LogWriter {
    file: Option<Arc<Mutex<Current>>>,
}

struct Current {
    file: File,
    path: PathBuf,
    size: u64,
    max_size: Option<u64>,
    max_files: usize,
}

impl Current {
    fn rotate(&mut self) -> std::io::Result<()> {
        let numbered = |n: usize| rotated_path(&self.path, n);
        if self.max_files > 1 {
            let _ = std::fs::remove_file(numbered(self.max_files - 1));
            for n in (1..self.max_files - 1).rev() {
                let _ = std::fs::rename(numbered(n), numbered(n + 1));
            }
            std::fs::rename(&self.path, numbered(1))?;
        } else {
            std::fs::remove_file(&self.path)?;
        }
        self.file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// `log.json.N`: the Nth newest rotated log.
pub fn rotated_path(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

impl LogWriter {
    /// The log at `path`, never rotated.
    pub fn open(path: &Path) -> Result<LogWriter, ContainerError> {
        Self::open_rotating(path, None, 1)
    }

    /// The log at `path`, rotated at `max_size` bytes, `max_files` kept.
    pub fn open_rotating(
        path: &Path,
        max_size: Option<u64>,
        max_files: usize,
    ) -> Result<LogWriter, ContainerError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| ContainerError::io(path, e))?;
        let size = file
            .metadata()
            .map_err(|e| ContainerError::io(path, e))?
            .len();
        Ok(LogWriter {
            file: Some(Arc::new(Mutex::new(Current {
                file,
                path: path.to_path_buf(),
                size,
                max_size,
                max_files: max_files.max(1),
            }))),
        })
    }

    /// A writer that keeps nothing (`--log-driver none`).
    pub fn discard() -> LogWriter {
        LogWriter { file: None }
    }

    /// Writes `data` as lines; a trailing partial line is written too
    /// (json-file does the same at each read boundary; callers buffer
    /// through [`LineSplitter`]).
    pub fn write(&self, stream: &str, line: &[u8]) {
        let Some(file) = &self.file else {
            return;
        };
        let record = LogLine {
            log: String::from_utf8_lossy(line).into_owned(),
            stream: stream.to_string(),
            time: crate::container::spec::now_rfc3339(),
        };
        if let Ok(mut text) = serde_json::to_string(&record) {
            text.push('\n');
            if let Ok(mut current) = file.lock() {
                if current.max_size.is_some_and(|max| current.size >= max) {
                    if let Err(e) = current.rotate() {
                        tracing::warn!("rotating {}: {e}", current.path.display());
                    }
                }
                if current.file.write_all(text.as_bytes()).is_ok() {
                    current.size += text.len() as u64;
                }
            }
        }
    }
}

/// Splits a byte stream into lines (keeping the `\n`), holding back a
/// partial line until it is completed or the stream ends.
#[derive(Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    pub fn push(&mut self, data: &[u8], mut emit: impl FnMut(&[u8])) {
        self.pending.extend_from_slice(data);
        while let Some(pos) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=pos).collect();
            emit(&line);
        }
        if self.pending.len() > 16 * 1024 {
            emit(&std::mem::take(&mut self.pending));
        }
    }
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8])) {
        if !self.pending.is_empty() {
            emit(&std::mem::take(&mut self.pending));
        }
    }
}

/// `logs` options.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub follow: bool,
    pub tail: Option<usize>,
    /// RFC 3339 time; lines before it are skipped.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    pub until: Option<chrono::DateTime<chrono::Utc>>,
}

pub fn log_path(container_dir: &Path) -> PathBuf {
    container_dir.join("log.json")
}

fn keep(line: &LogLine, options: &LogOptions) -> bool {
    let time = chrono::DateTime::parse_from_rfc3339(&line.time)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc));
    match (time, options.since, options.until) {
        (Some(t), Some(s), _) if t < s => false,
        (Some(t), _, Some(u)) if t > u => false,
        _ => true,
    }
}

/// Reads the log, calling `emit` for each line selected; with `follow`,
/// keeps reading until `running()` turns false and the file is drained.
pub fn read_logs(
    path: &Path,
    options: &LogOptions,
    running: &mut dyn FnMut() -> bool,
    emit: &mut dyn FnMut(&LogLine) -> bool,
) -> Result<(), ContainerError> {
    let mut lines = Vec::new();
    // The rotated files first, oldest first (json-file keeps at most a
    // handful; the numbers stop at the first missing one).
    let rotated: Vec<PathBuf> = (1..)
        .map(|n| rotated_path(path, n))
        .take_while(|p| p.exists())
        .collect();
    for old in rotated.iter().rev() {
        if let Ok(file) = File::open(old) {
            for line in BufReader::new(file).lines().map_while(Result::ok) {
                if let Ok(l) = serde_json::from_str::<LogLine>(&line) {
                    if keep(&l, options) {
                        lines.push(l);
                    }
                }
            }
        }
    }
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !options.follow => {
            emit_tail(&lines, options, emit);
            return Ok(());
        }
        Err(e) => return Err(ContainerError::io(path, e)),
    };
    let mut reader = BufReader::new(file);
    let mut buf = String::new();
    while reader
        .read_line(&mut buf)
        .map_err(|e| ContainerError::io(path, e))?
        > 0
    {
        if buf.ends_with('\n') {
            if let Ok(l) = serde_json::from_str::<LogLine>(&buf) {
                if keep(&l, options) {
                    lines.push(l);
                }
            }
            buf.clear();
        } else {
            break;
        }
    }
    if !emit_tail(&lines, options, emit) || !options.follow {
        return Ok(());
    }
    // Partial line read so far stays in `buf`; continue from there.
    let mut idle_after_stop = false;
    loop {
        let pos = reader
            .stream_position()
            .map_err(|e| ContainerError::io(path, e))?;
        let n = reader
            .read_line(&mut buf)
            .map_err(|e| ContainerError::io(path, e))?;
        if n > 0 && buf.ends_with('\n') {
            if let Ok(l) = serde_json::from_str::<LogLine>(&buf) {
                if keep(&l, options) && !emit(&l) {
                    return Ok(());
                }
            }
            buf.clear();
            continue;
        }
        if n == 0 {
            if idle_after_stop {
                return Ok(());
            }
            if !running() {
                idle_after_stop = true;
                continue;
            }
            // Rotated away: what was read is all of the old file (the
            // writer renames it only after a complete line); go on with
            // the new one.
            if buf.is_empty() && rotated_away(reader.get_ref(), path) {
                if let Ok(file) = File::open(path) {
                    reader = BufReader::new(file);
                    continue;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
            reader
                .seek(SeekFrom::Start(pos + n as u64))
                .map_err(|e| ContainerError::io(path, e))?;
        }
    }
}

/// Emits the selected lines (the last `tail` of them); false once `emit`
/// wants no more (the reader went away).
fn emit_tail(
    lines: &[LogLine],
    options: &LogOptions,
    emit: &mut dyn FnMut(&LogLine) -> bool,
) -> bool {
    let skip = options
        .tail
        .map(|t| lines.len().saturating_sub(t))
        .unwrap_or(0);
    lines[skip..].iter().all(emit)
}

/// Whether `path` is no longer the file `open` reads.
fn rotated_away(open: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (open.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.ino() != b.ino() || a.dev() != b.dev(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_with_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.json");
        let w = LogWriter::open(&path).unwrap();
        let mut split = LineSplitter::default();
        split.push(b"one\ntw", |l| w.write("stdout", l));
        split.push(b"o\nthree", |l| w.write("stderr", l));
        split.finish(|l| w.write("stdout", l));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("{\"log\":\"one\\n\",\"stream\":\"stdout\",\"time\":\""),
            "{text}"
        );
        let mut got = Vec::new();
        let options = LogOptions {
            tail: Some(2),
            ..Default::default()
        };
        read_logs(&path, &options, &mut || false, &mut |l| {
            got.push((l.log.clone(), l.stream.clone()));
            true
        })
        .unwrap();
        assert_eq!(
            got,
            vec![
                ("two\n".to_string(), "stderr".to_string()),
                ("three".to_string(), "stdout".to_string())
            ]
        );
    }

    #[test]
    fn rotation_keeps_max_files_and_reads_across_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.json");
        // Each line is about 70 bytes: rotate at every second line.
        let w = LogWriter::open_rotating(&path, Some(100), 3).unwrap();
        for i in 0..10 {
            w.write("stdout", format!("line {i}\n").as_bytes());
        }
        assert!(rotated_path(&path, 2).exists());
        assert!(!rotated_path(&path, 3).exists());
        let mut got = Vec::new();
        read_logs(&path, &LogOptions::default(), &mut || false, &mut |l| {
            got.push(l.log.clone());
            true
        })
        .unwrap();
        let want: Vec<String> = (4..10).map(|i| format!("line {i}\n")).collect();
        assert_eq!(got, want);
    }
}
