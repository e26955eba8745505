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
#[derive(Clone)]
pub struct LogWriter {
    file: Arc<Mutex<File>>,
}

impl LogWriter {
    pub fn open(path: &Path) -> Result<LogWriter, ContainerError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| ContainerError::io(path, e))?;
        Ok(LogWriter {
            file: Arc::new(Mutex::new(file)),
        })
    }

    /// Writes `data` as lines; a trailing partial line is written too
    /// (json-file does the same at each read boundary; callers buffer
    /// through [`LineSplitter`]).
    pub fn write(&self, stream: &str, line: &[u8]) {
        let record = LogLine {
            log: String::from_utf8_lossy(line).into_owned(),
            stream: stream.to_string(),
            time: crate::container::spec::now_rfc3339(),
        };
        if let Ok(mut text) = serde_json::to_string(&record) {
            text.push('\n');
            if let Ok(mut f) = self.file.lock() {
                let _ = f.write_all(text.as_bytes());
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
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !options.follow => return Ok(()),
        Err(e) => return Err(ContainerError::io(path, e)),
    };
    let mut reader = BufReader::new(file);
    let mut lines = Vec::new();
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
    let skip = options
        .tail
        .map(|t| lines.len().saturating_sub(t))
        .unwrap_or(0);
    for l in &lines[skip..] {
        if !emit(l) {
            return Ok(());
        }
    }
    if !options.follow {
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
            std::thread::sleep(std::time::Duration::from_millis(50));
            reader
                .seek(SeekFrom::Start(pos + n as u64))
                .map_err(|e| ContainerError::io(path, e))?;
        }
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
}
