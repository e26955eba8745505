//! What a build shows while it runs. [`Progress`] is what the build
//! reports; [`PlainProgress`] prints it as BuildKit's plain progress does
//! (`#N [stage step/total] INSTRUCTION`, the RUN's output lines prefixed
//! with `#N` and the seconds since the step began, `#N CACHED`,
//! `#N DONE 0.3s`, `#N ERROR: ...`); [`QuietProgress`] prints nothing but
//! a failing step's output. [`TtyProgress`] keeps a compact live view: one
//! line per step, rewritten in place.

use std::io::Write;
use std::time::Instant;

/// The build's reports, in the order they happen.
pub trait Progress {
    /// A new vertex: `#id name`.
    fn start(&mut self, id: usize, name: &str);
    /// Output of the vertex's process.
    fn output(&mut self, id: usize, data: &[u8]);
    /// A line about the vertex (`writing image sha256:... done`).
    fn note(&mut self, id: usize, text: &str);
    fn cached(&mut self, id: usize);
    fn done(&mut self, id: usize);
    fn error(&mut self, id: usize, message: &str);
    /// A warning about the build as a whole.
    fn warning(&mut self, message: &str);
}

/// BuildKit's `--progress=plain`, on any writer (stderr by default).
pub struct PlainProgress<W: Write> {
    out: W,
    started: Vec<(usize, Instant, Vec<u8>)>,
}

impl<W: Write> PlainProgress<W> {
    pub fn new(out: W) -> Self {
        PlainProgress {
            out,
            started: Vec::new(),
        }
    }

    fn began(&self, id: usize) -> Option<Instant> {
        self.started
            .iter()
            .find(|(i, ..)| *i == id)
            .map(|(_, t, _)| *t)
    }

    fn partial(&mut self, id: usize) -> Option<&mut Vec<u8>> {
        self.started
            .iter_mut()
            .find(|(i, ..)| *i == id)
            .map(|(.., p)| p)
    }

    fn flush_partial(&mut self, id: usize) {
        let elapsed = self.began(id).map_or(0.0, |t| t.elapsed().as_secs_f64());
        if let Some(p) = self.partial(id) {
            if !p.is_empty() {
                let line = std::mem::take(p);
                let _ = writeln!(
                    self.out,
                    "#{id} {elapsed:.3} {}",
                    String::from_utf8_lossy(&line)
                );
            }
        }
    }
}

impl<W: Write> Progress for PlainProgress<W> {
    fn start(&mut self, id: usize, name: &str) {
        self.started.push((id, Instant::now(), Vec::new()));
        let _ = writeln!(self.out, "#{id} {name}");
    }

    fn output(&mut self, id: usize, data: &[u8]) {
        let elapsed = self.began(id).map_or(0.0, |t| t.elapsed().as_secs_f64());
        let mut lines = Vec::new();
        if let Some(p) = self.partial(id) {
            p.extend_from_slice(data);
            while let Some(nl) = p.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = p.drain(..=nl).collect();
                lines.push(line);
            }
        }
        for line in lines {
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            let _ = writeln!(
                self.out,
                "#{id} {elapsed:.3} {}",
                text.trim_end_matches('\r')
            );
        }
        let _ = self.out.flush();
    }

    fn note(&mut self, id: usize, text: &str) {
        let _ = writeln!(self.out, "#{id} {text}");
    }

    fn cached(&mut self, id: usize) {
        let _ = writeln!(self.out, "#{id} CACHED\n");
    }

    fn done(&mut self, id: usize) {
        self.flush_partial(id);
        let elapsed = self.began(id).map_or(0.0, |t| t.elapsed().as_secs_f64());
        let _ = writeln!(self.out, "#{id} DONE {elapsed:.1}s\n");
        let _ = self.out.flush();
    }

    fn error(&mut self, id: usize, message: &str) {
        self.flush_partial(id);
        let _ = writeln!(self.out, "#{id} ERROR: {message}");
        let _ = self.out.flush();
    }

    fn warning(&mut self, message: &str) {
        let _ = writeln!(self.out, "WARNING: {message}");
    }
}

/// `-q` / `--progress=quiet`: nothing, except the output of a step that
/// fails (so the error can be understood).
#[derive(Default)]
pub struct QuietProgress {
    current: Vec<u8>,
}

impl Progress for QuietProgress {
    fn start(&mut self, _id: usize, _name: &str) {
        self.current.clear();
    }
    fn output(&mut self, _id: usize, data: &[u8]) {
        self.current.extend_from_slice(data);
    }
    fn note(&mut self, _id: usize, _text: &str) {}
    fn cached(&mut self, _id: usize) {}
    fn done(&mut self, _id: usize) {
        self.current.clear();
    }
    fn error(&mut self, _id: usize, _message: &str) {
        let mut err = std::io::stderr();
        let _ = err.write_all(&self.current);
    }
    fn warning(&mut self, message: &str) {
        eprintln!("WARNING: {message}");
    }
}

/// A compact live view for a terminal: each step is one line that shows
/// its name, then its last output line while it runs, then its time or
/// CACHED; a failing step prints its whole output.
pub struct TtyProgress {
    out: std::io::Stderr,
    id: usize,
    name: String,
    began: Option<Instant>,
    output: Vec<u8>,
    width: usize,
}

impl TtyProgress {
    pub fn new(width: usize) -> Self {
        TtyProgress {
            out: std::io::stderr(),
            id: 0,
            name: String::new(),
            began: None,
            output: Vec::new(),
            width: width.max(40),
        }
    }

    fn redraw(&mut self, tail: &str) {
        let elapsed = self.began.map_or(0.0, |t| t.elapsed().as_secs_f64());
        let mut line = format!(" => {} {elapsed:.1}s {tail}", self.name);
        if line.chars().count() > self.width - 1 {
            line = line.chars().take(self.width - 2).collect::<String>() + "…";
        }
        let _ = write!(self.out, "\r\x1b[2K{line}");
        let _ = self.out.flush();
    }
}

impl Progress for TtyProgress {
    fn start(&mut self, id: usize, name: &str) {
        self.id = id;
        self.name = name.to_string();
        self.began = Some(Instant::now());
        self.output.clear();
        self.redraw("");
    }
    fn output(&mut self, _id: usize, data: &[u8]) {
        self.output.extend_from_slice(data);
        let text = String::from_utf8_lossy(&self.output).into_owned();
        let last = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .to_string();
        self.redraw(&last);
    }
    fn note(&mut self, _id: usize, text: &str) {
        let _ = write!(self.out, "\r\x1b[2K => {text}\n");
    }
    fn cached(&mut self, _id: usize) {
        let _ = write!(self.out, "\r\x1b[2K => CACHED {}\n", self.name);
        self.began = None;
    }
    fn done(&mut self, _id: usize) {
        let elapsed = self.began.map_or(0.0, |t| t.elapsed().as_secs_f64());
        let _ = write!(self.out, "\r\x1b[2K => {} {elapsed:.1}s\n", self.name);
        self.began = None;
    }
    fn error(&mut self, _id: usize, message: &str) {
        let _ = write!(self.out, "\r\x1b[2K => ERROR {}\n", self.name);
        let _ = self.out.write_all(&self.output);
        let _ = writeln!(self.out, "ERROR: {message}");
    }
    fn warning(&mut self, message: &str) {
        let _ = write!(self.out, "\r\x1b[2KWARNING: {message}\n");
    }
}
