//! What a build shows while it runs. [`Progress`] is what the build
//! reports; [`PlainProgress`] prints it as BuildKit's plain progress does
//! (`#N [stage step/total] INSTRUCTION`, the RUN's output lines prefixed
//! with `#N` and the seconds since the step began, `#N CACHED`,
//! `#N DONE 0.3s`, `#N ERROR: ...`); [`QuietProgress`] prints nothing but
//! a failing step's output. [`TtyProgress`] keeps a compact live view: one
//! line per step, rewritten in place.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;
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
    /// The output of each running step (stages may run at once).
    running: BTreeMap<usize, Vec<u8>>,
}

impl Progress for QuietProgress {
    fn start(&mut self, id: usize, _name: &str) {
        self.running.insert(id, Vec::new());
    }
    fn output(&mut self, id: usize, data: &[u8]) {
        self.running.entry(id).or_default().extend_from_slice(data);
    }
    fn note(&mut self, _id: usize, _text: &str) {}
    fn cached(&mut self, id: usize) {
        self.running.remove(&id);
    }
    fn done(&mut self, id: usize) {
        self.running.remove(&id);
    }
    fn error(&mut self, id: usize, _message: &str) {
        let mut err = std::io::stderr();
        let _ = err.write_all(&self.running.remove(&id).unwrap_or_default());
    }
    fn warning(&mut self, message: &str) {
        eprintln!("WARNING: {message}");
    }
}

/// A running step of [`TtyProgress`].
struct TtyStep {
    name: String,
    began: Instant,
    output: Vec<u8>,
}

/// A compact live view for a terminal: each step is one line that shows
/// its name, then its last output line while it runs, then its time or
/// CACHED; a failing step prints its whole output. Steps of stages built
/// at the same time take turns on the live line.
pub struct TtyProgress {
    out: std::io::Stderr,
    running: BTreeMap<usize, TtyStep>,
    width: usize,
}

impl TtyProgress {
    pub fn new(width: usize) -> Self {
        TtyProgress {
            out: std::io::stderr(),
            running: BTreeMap::new(),
            width: width.max(40),
        }
    }

    fn redraw(&mut self, id: usize, tail: &str) {
        let Some(step) = self.running.get(&id) else {
            return;
        };
        let elapsed = step.began.elapsed().as_secs_f64();
        let mut line = format!(" => {} {elapsed:.1}s {tail}", step.name);
        if line.chars().count() > self.width - 1 {
            line = line.chars().take(self.width - 2).collect::<String>() + "…";
        }
        let _ = write!(self.out, "\r\x1b[2K{line}");
        let _ = self.out.flush();
    }

    /// Ends a step's live line with `text` (its name filled in).
    fn finish(&mut self, id: usize, text: impl FnOnce(&TtyStep) -> String) -> Option<TtyStep> {
        let step = self.running.remove(&id)?;
        let _ = write!(self.out, "\r\x1b[2K => {}\n", text(&step));
        Some(step)
    }
}

impl Progress for TtyProgress {
    fn start(&mut self, id: usize, name: &str) {
        self.running.insert(
            id,
            TtyStep {
                name: name.to_string(),
                began: Instant::now(),
                output: Vec::new(),
            },
        );
        self.redraw(id, "");
    }
    fn output(&mut self, id: usize, data: &[u8]) {
        let Some(step) = self.running.get_mut(&id) else {
            return;
        };
        step.output.extend_from_slice(data);
        let text = String::from_utf8_lossy(&step.output).into_owned();
        let last = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .to_string();
        self.redraw(id, &last);
    }
    fn note(&mut self, _id: usize, text: &str) {
        let _ = write!(self.out, "\r\x1b[2K => {text}\n");
    }
    fn cached(&mut self, id: usize) {
        self.finish(id, |s| format!("CACHED {}", s.name));
    }
    fn done(&mut self, id: usize) {
        self.finish(id, |s| {
            format!("{} {:.1}s", s.name, s.began.elapsed().as_secs_f64())
        });
    }
    fn error(&mut self, id: usize, message: &str) {
        if let Some(step) = self.finish(id, |s| format!("ERROR {}", s.name)) {
            let _ = self.out.write_all(&step.output);
        }
        let _ = writeln!(self.out, "ERROR: {message}");
    }
    fn warning(&mut self, message: &str) {
        let _ = write!(self.out, "\r\x1b[2KWARNING: {message}\n");
    }
}

/// The build's [`Progress`], shared by the stages built at the same time:
/// each report is one call under a lock, so the lines of parallel steps
/// interleave by line (BuildKit's plain output does the same), and
/// vertices are numbered `#N` in the order they start.
pub struct SharedProgress<'a> {
    inner: Mutex<(usize, &'a mut (dyn Progress + Send))>,
}

impl<'a> SharedProgress<'a> {
    pub fn new(progress: &'a mut (dyn Progress + Send)) -> Self {
        SharedProgress {
            inner: Mutex::new((0, progress)),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut usize, &mut dyn Progress) -> T) -> T {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (next, progress) = &mut *guard;
        f(next, &mut **progress)
    }
}

/// What a stage's builder reports through (a [`SharedProgress`]); a
/// trait object so that builders on other threads need not name the
/// progress' lifetime.
pub trait Reports: Sync {
    /// Starts a new vertex; returns its number.
    fn vertex(&self, name: &str) -> usize;
    fn output(&self, id: usize, data: &[u8]);
    fn note(&self, id: usize, text: &str);
    fn cached(&self, id: usize);
    fn done(&self, id: usize);
    fn error(&self, id: usize, message: &str);
    fn warning(&self, message: &str);
}

impl Reports for SharedProgress<'_> {
    fn vertex(&self, name: &str) -> usize {
        self.with(|next, p| {
            *next += 1;
            p.start(*next, name);
            *next
        })
    }
    fn output(&self, id: usize, data: &[u8]) {
        self.with(|_, p| p.output(id, data))
    }
    fn note(&self, id: usize, text: &str) {
        self.with(|_, p| p.note(id, text))
    }
    fn cached(&self, id: usize) {
        self.with(|_, p| p.cached(id))
    }
    fn done(&self, id: usize) {
        self.with(|_, p| p.done(id))
    }
    fn error(&self, id: usize, message: &str) {
        self.with(|_, p| p.error(id, message))
    }
    fn warning(&self, message: &str) {
        self.with(|_, p| p.warning(message))
    }
}
