//! The monitor's attach socket: its protocol and the client's side of it
//! (the relay), shared by `attach`, `run`, `start -a`, `exec -t` and the
//! monitor's stdio hub.
//!
//! Each monitor listens on `<container>/attach.sock` (reached through
//! `/proc/self/fd/N/attach.sock`, as the container directory's path can
//! be longer than a socket address allows). Both directions carry frames
//! of `[kind: u8][length: u32, big-endian][payload]`:
//!
//! - client to monitor: [`HELLO`] first (the client's terminal size,
//!   rows and columns as two big-endian u16, 0 0 if none), then
//!   [`STDIN`] data, [`CLOSE_STDIN`] at the end of the client's input,
//!   and [`RESIZE`] when the client's terminal changes size;
//! - monitor to client: [`STDOUT`] and [`STDERR`] data, until the
//!   container has exited (the monitor closes the socket).
//!
//! A detached `exec -t` hands its terminal to the monitor instead of
//! attaching: [`TERMINAL`] (empty) as the only frame, then the master
//! end as SCM_RIGHTS on one byte (see [`hand_over_terminal`]).
//!
//! The client's detach keys (ctrl-p ctrl-q unless `--detach-keys` says
//! otherwise, in Docker's syntax: [`parse_detach_keys`]) on a terminal
//! detach without stopping the container.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::container::error::ContainerError;
use crate::container::sys;

pub const HELLO: u8 = 0;
pub const STDIN: u8 = 1;
pub const CLOSE_STDIN: u8 = 2;
pub const RESIZE: u8 = 3;
/// In place of [`HELLO`]: the connection hands over a detached exec's
/// terminal.
pub const TERMINAL: u8 = 4;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;

/// The socket's name in the container's directory.
pub const SOCKET_NAME: &str = "attach.sock";

/// Frames are small; anything larger is a broken peer.
const MAX_FRAME: u32 = 1 << 20;

/// Writes one frame.
pub fn write_frame(w: &mut impl Write, kind: u8, payload: &[u8]) -> std::io::Result<()> {
    let mut frame = Vec::with_capacity(5 + payload.len());
    frame.push(kind);
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    w.write_all(&frame)
}

/// Reads one frame; `None` at the end of the stream.
pub fn read_frame(r: &mut impl Read) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut header = [0u8; 5];
    match r.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("attach frame of {len} bytes"),
        ));
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload)?;
    Ok(Some((header[0], payload)))
}

/// A terminal size as a frame payload.
pub fn size_payload(rows: u16, cols: u16) -> [u8; 4] {
    let (r, c) = (rows.to_be_bytes(), cols.to_be_bytes());
    [r[0], r[1], c[0], c[1]]
}

/// The terminal size in a HELLO or RESIZE payload (0 0: none).
pub fn parse_size(payload: &[u8]) -> Option<(u16, u16)> {
    match payload {
        [r0, r1, c0, c1] => {
            let size = (
                u16::from_be_bytes([*r0, *r1]),
                u16::from_be_bytes([*c0, *c1]),
            );
            (size.0 > 0 && size.1 > 0).then_some(size)
        }
        _ => None,
    }
}

/// The size of the terminal on the client's stdout (or stdin), if any.
fn client_size() -> Option<(u16, u16)> {
    sys::window_size(std::io::stdout().as_fd())
        .or_else(|_| sys::window_size(std::io::stdin().as_fd()))
        .ok()
        .filter(|(r, c)| *r > 0 && *c > 0)
}

/// Connects to the monitor listening in `container_dir` and says hello.
pub fn connect(container_dir: &Path) -> std::io::Result<UnixStream> {
    let mut stream = connect_socket(container_dir)?;
    let (rows, cols) = client_size().unwrap_or((0, 0));
    write_frame(&mut stream, HELLO, &size_payload(rows, cols))?;
    Ok(stream)
}

/// Connects to the monitor listening in `container_dir`, saying nothing.
pub fn connect_socket(container_dir: &Path) -> std::io::Result<UnixStream> {
    let dir = File::open(container_dir)?;
    let path = format!("/proc/self/fd/{}/{SOCKET_NAME}", dir.as_raw_fd());
    UnixStream::connect(path)
}

/// Hands the master end of a detached `exec -t`'s terminal to the
/// monitor on `stream` (from [`connect_socket`]), which keeps it open
/// and reads, discarding it, whatever the process writes until the
/// process and all it started have closed the terminal (Docker does not
/// log an exec's output). The descriptor in flight keeps the terminal
/// open even if the caller closes its own copy at once.
pub fn hand_over_terminal(mut stream: &UnixStream, master: BorrowedFd) -> std::io::Result<()> {
    write_frame(&mut stream, TERMINAL, &[])?;
    sys::send_fd(stream.as_fd(), master).map_err(std::io::Error::from)
}

/// Docker's default detach keys: ctrl-p ctrl-q.
pub const DEFAULT_DETACH_KEYS: &[u8] = &[CTRL_P, CTRL_Q];

/// Parses Docker's `--detach-keys` syntax: keys separated by commas,
/// each a single character or `ctrl-X` with X one of `a`-`z`, `@`, `[`,
/// `\`, `]`, `^`, `_`. An empty spec gives the default (ctrl-p ctrl-q).
pub fn parse_detach_keys(spec: &str) -> Result<Vec<u8>, ContainerError> {
    if spec.is_empty() {
        return Ok(DEFAULT_DETACH_KEYS.to_vec());
    }
    let invalid = || ContainerError::Invalid(format!("Invalid detach keys ({spec}) provided"));
    spec.split(',')
        .map(|key| match key.as_bytes() {
            [b] if b.is_ascii() => Ok(*b),
            _ => {
                let lower = key.to_ascii_lowercase();
                let Some([c]) = lower.strip_prefix("ctrl-").map(str::as_bytes) else {
                    return Err(invalid());
                };
                match c {
                    b'a'..=b'z' => Ok(c - b'a' + 1),
                    b'@' => Ok(0),
                    b'[' | b'\\' | b']' | b'^' | b'_' => Ok(c - b'@'),
                    _ => Err(invalid()),
                }
            }
        })
        .collect()
}

/// How the client's side is relayed.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// Forward the client's stdin.
    pub stdin: bool,
    /// The container has a terminal: resize it with the client's, and
    /// the detach keys detach.
    pub tty: bool,
    /// The detach keys (see [`parse_detach_keys`]).
    pub detach_keys: Vec<u8>,
    /// Without a terminal, signals the client receives go to this pid
    /// (Docker's sig-proxy); 0 for none.
    pub signal_pid: i32,
}

/// How a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relayed {
    /// The monitor closed the stream: the container has exited.
    Ended,
    /// The client typed the detach keys.
    Detached,
}

const PROXIED: &[Signal] = &[
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Copies the stream's output to the client's stdout and stderr, and
/// (with `stdin`) the client's input to the stream, until the container
/// exits or the client detaches.
pub fn relay(stream: UnixStream, options: RelayOptions) -> Result<Relayed, ContainerError> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGWINCH);
    if !options.tty && options.signal_pid > 0 {
        for s in PROXIED {
            set.add(*s);
        }
    }
    let mut old = SigSet::empty();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old))
        .map_err(|e| ContainerError::sys("sigprocmask", e))?;
    let result = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC)
        .map_err(|e| ContainerError::sys("signalfd", e))
        .and_then(|signals| Relay::new(stream, options, signals)?.run());
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    result
}

struct Relay {
    stream: UnixStream,
    /// Frames to the monitor, from this thread and the input thread.
    writer: Arc<Mutex<UnixStream>>,
    options: RelayOptions,
    signals: SignalFd,
    detached: Arc<AtomicBool>,
}

const CTRL_P: u8 = 0x10;
const CTRL_Q: u8 = 0x11;

impl Relay {
    fn new(
        stream: UnixStream,
        options: RelayOptions,
        signals: SignalFd,
    ) -> Result<Relay, ContainerError> {
        let writer = stream
            .try_clone()
            .map_err(|e| ContainerError::io("attach socket", e))?;
        Ok(Relay {
            stream,
            writer: Arc::new(Mutex::new(writer)),
            options,
            signals,
            detached: Arc::new(AtomicBool::new(false)),
        })
    }

    fn run(mut self) -> Result<Relayed, ContainerError> {
        if self.options.stdin {
            self.start_input()?;
        }
        loop {
            let (stream_ready, signal_ready) = {
                let mut fds = [
                    PollFd::new(self.stream.as_fd(), PollFlags::POLLIN),
                    PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
                ];
                match poll(&mut fds, PollTimeout::NONE) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(ContainerError::sys("poll", e)),
                    Ok(_) => {}
                }
                let ready = |f: &PollFd| f.any().unwrap_or(true);
                (ready(&fds[0]), ready(&fds[1]))
            };
            if signal_ready {
                self.forward_signal();
            }
            if stream_ready && !self.copy_output()? {
                return Ok(if self.detached.load(Ordering::SeqCst) {
                    Relayed::Detached
                } else {
                    Relayed::Ended
                });
            }
        }
    }

    fn send(&self, kind: u8, payload: &[u8]) -> std::io::Result<()> {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        write_frame(&mut *w, kind, payload)
    }

    fn forward_signal(&mut self) {
        let Ok(Some(info)) = self.signals.read_signal() else {
            return;
        };
        let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
            return;
        };
        if sig == Signal::SIGWINCH {
            if let (true, Some((rows, cols))) = (self.options.tty, client_size()) {
                // A monitor already gone: the output's end says so.
                let _ = self.send(RESIZE, &size_payload(rows, cols));
            }
        } else if self.options.signal_pid > 0 {
            let pid = nix::unistd::Pid::from_raw(self.options.signal_pid);
            let _ = nix::sys::signal::kill(pid, sig);
        }
    }

    /// The client's input goes to the monitor from a thread of its own,
    /// so a container echoing a large input never waits on a client
    /// that waits on it. On the detach keys the thread ends this relay
    /// by shutting the stream's reading side.
    fn start_input(&self) -> Result<(), ContainerError> {
        let stdin = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| ContainerError::io("stdin", e))?;
        let writer = Arc::clone(&self.writer);
        let detached = Arc::clone(&self.detached);
        let keys = self.options.tty.then(|| self.options.detach_keys.clone());
        std::thread::Builder::new()
            .name("attach-stdin".into())
            .spawn(move || forward_input(stdin, &writer, keys, &detached))
            .map_err(|e| ContainerError::io("attach input thread", e))?;
        Ok(())
    }

    /// Copies one frame of output; false at the end of the stream.
    fn copy_output(&mut self) -> Result<bool, ContainerError> {
        let frame = match read_frame(&mut self.stream) {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(false),
            Err(e) => return Err(ContainerError::io("attach socket", e)),
        };
        let written = match frame.0 {
            STDERR => std::io::stderr().write_all(&frame.1),
            _ => {
                let mut out = std::io::stdout().lock();
                out.write_all(&frame.1).and_then(|_| out.flush())
            }
        };
        match written {
            // Output closed (`strata run ... | head -1`): the client stops,
            // as Docker's does (the command ends on SIGPIPE); the container
            // goes on.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                Err(ContainerError::io("standard output", e))
            }
            _ => Ok(true),
        }
    }
}

/// The input thread's loop: stdin to STDIN frames, CLOSE_STDIN at its
/// end; with detach keys (a terminal), typing them detaches.
fn forward_input(
    stdin: OwnedFd,
    writer: &Mutex<UnixStream>,
    detach_keys: Option<Vec<u8>>,
    detached: &AtomicBool,
) {
    let send = |kind: u8, payload: &[u8]| {
        let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
        write_frame(&mut *w, kind, payload)
    };
    let mut scanner = detach_keys.map(DetachScanner::new);
    let mut buf = [0u8; 8192];
    loop {
        let n = match nix::unistd::read(stdin.as_raw_fd(), &mut buf) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => 0,
        };
        if n == 0 {
            let _ = send(CLOSE_STDIN, &[]);
            return;
        }
        let (data, detach) = match scanner.as_mut() {
            Some(scanner) => scanner.scan(&buf[..n]),
            None => (buf[..n].to_vec(), false),
        };
        if !data.is_empty() && send(STDIN, &data).is_err() {
            return;
        }
        if detach {
            detached.store(true, Ordering::SeqCst);
            let w = writer.lock().unwrap_or_else(|p| p.into_inner());
            let _ = w.shutdown(std::net::Shutdown::Both);
            return;
        }
    }
}

/// Finds the detach keys in a client's input. A prefix of the keys is
/// held back until the next bytes show whether the rest follows; if not,
/// it is sent on (Docker's escape proxy).
pub struct DetachScanner {
    keys: Vec<u8>,
    /// How many of the keys the input has matched so far.
    held: usize,
}

impl DetachScanner {
    pub fn new(keys: Vec<u8>) -> DetachScanner {
        DetachScanner { keys, held: 0 }
    }

    /// The bytes to send, and whether the keys were typed.
    pub fn scan(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len() + self.keys.len());
        if self.keys.is_empty() {
            out.extend_from_slice(input);
            return (out, false);
        }
        for &b in input {
            if b != self.keys[self.held] && self.held > 0 {
                out.extend_from_slice(&self.keys[..self.held]);
                self.held = 0;
            }
            if b == self.keys[self.held] {
                self.held += 1;
                if self.held == self.keys.len() {
                    self.held = 0;
                    return (out, true);
                }
            } else {
                out.push(b);
            }
        }
        (out, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_oversized_ones_are_refused() {
        let mut buf = Vec::new();
        write_frame(&mut buf, STDIN, b"hello").unwrap();
        write_frame(&mut buf, RESIZE, &size_payload(24, 80)).unwrap();
        let mut r = buf.as_slice();
        assert_eq!(
            read_frame(&mut r).unwrap(),
            Some((STDIN, b"hello".to_vec()))
        );
        let (kind, size) = read_frame(&mut r).unwrap().unwrap();
        assert_eq!((kind, parse_size(&size)), (RESIZE, Some((24, 80))));
        assert_eq!(read_frame(&mut r).unwrap(), None);
        assert_eq!(parse_size(&size_payload(0, 0)), None);
        let huge = [STDOUT, 0xff, 0, 0, 0];
        assert!(read_frame(&mut huge.as_slice()).is_err());
    }

    fn scan(scanner: &mut DetachScanner, input: &[u8]) -> (Vec<u8>, bool) {
        scanner.scan(input)
    }

    #[test]
    fn detach_keys_are_ctrl_p_ctrl_q_even_across_reads() {
        let mut s = DetachScanner::new(DEFAULT_DETACH_KEYS.to_vec());
        assert_eq!(scan(&mut s, b"ab"), (b"ab".to_vec(), false));
        assert_eq!(scan(&mut s, &[b'x', CTRL_P]), (b"x".to_vec(), false));
        assert_eq!(scan(&mut s, &[CTRL_Q, b'y']), (vec![], true));
        let mut s = DetachScanner::new(DEFAULT_DETACH_KEYS.to_vec());
        assert_eq!(
            scan(&mut s, &[CTRL_P, b'z', CTRL_P, CTRL_P, CTRL_Q]),
            (vec![CTRL_P, b'z', CTRL_P], true)
        );
    }

    #[test]
    fn detach_keys_parse_in_dockers_syntax() {
        assert_eq!(parse_detach_keys("").unwrap(), vec![CTRL_P, CTRL_Q]);
        assert_eq!(parse_detach_keys("ctrl-a,x").unwrap(), vec![1, b'x']);
        assert_eq!(parse_detach_keys("ctrl-@").unwrap(), vec![0]);
        assert_eq!(
            parse_detach_keys("CTRL-Z,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_,a,Q").unwrap(),
            vec![26, 27, 28, 29, 30, 31, b'a', b'Q']
        );
        for bad in ["ctrl-", "ctrl-1", "ab", "a,,b", "ctrl-a,", "alt-x", "é"] {
            let e = parse_detach_keys(bad).unwrap_err().to_string();
            assert!(e.contains("Invalid detach keys"), "{bad}: {e}");
        }
        let mut s = DetachScanner::new(parse_detach_keys("ctrl-a,x,y").unwrap());
        assert_eq!(
            scan(&mut s, &[CTRL_P, CTRL_Q, 1, b'x']),
            (vec![CTRL_P, CTRL_Q], false)
        );
        assert_eq!(scan(&mut s, b"z"), (vec![1, b'x', b'z'], false));
        assert_eq!(scan(&mut s, &[1, 1, b'x', b'y']), (vec![1], true));
    }
}
