//! What the user-mode network helpers of an ordinary user's containers,
//! pasta (`pasta.rs`) and slirp4netns (`slirp4netns.rs`), share: finding
//! the program, the tap device they need, the descriptor of the
//! container's network namespace they inherit, the host port each `-p`
//! gets, and the helper's process. The process is the monitor's child,
//! dies with the thread that starts it (parent-death signal: a monitor
//! killed with -9 takes it along), is stopped on drop, and writes its
//! messages to a log in the container's directory: on a failure at start
//! the last of them is the one-line error, and the log and every other
//! file the start made are removed.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::config::PortBinding;
use super::error::NetworkError;
use super::records::PublishedPort;

/// `name` on PATH, if it is there.
pub fn program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// `name` on PATH, or the one-line error naming its Debian `package`.
pub fn require(name: &str, package: &str) -> Result<PathBuf, NetworkError> {
    program(name).ok_or_else(|| {
        NetworkError::Invalid(format!(
            "rootless: {name} is not installed (Debian's {package} package)"
        ))
    })
}

/// Fails with one line if this user may not open the tap device, which
/// `name` needs (a host may keep it to root).
pub fn check_tun(name: &str) -> Result<(), NetworkError> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map(drop)
        .map_err(|e| {
            NetworkError::Invalid(format!(
                "rootless: /dev/net/tun: {e} ({name} needs it open to every user, mode 0666 as Debian sets it)"
            ))
        })
}

/// A copy of `fd` without close-on-exec, for the helper to inherit
/// (closed once it has started), with its `/proc/self/fd/N` path. The
/// helper opens the namespace through it: opening /proc/PID/ns/net of
/// this process, root in the user namespace with every capability, is a
/// ptrace check that a helper keeping only a few capabilities fails.
pub fn inheritable(fd: BorrowedFd, what: &str) -> Result<(OwnedFd, String), NetworkError> {
    let copy = fd
        .try_clone_to_owned()
        .map_err(|e| NetworkError::io(format!("a copy of {what}"), e))?;
    nix::fcntl::fcntl(
        copy.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .map_err(|e| NetworkError::sys(format!("fcntl(F_SETFD) of {what}"), e))?;
    let path = format!("/proc/self/fd/{}", copy.as_raw_fd());
    Ok((copy, path))
}

/// The host port of one binding: a binding without a host port gets a
/// free one of the host's, one with a range the first free port in it.
pub fn choose_host_port(b: &PortBinding) -> Result<u16, NetworkError> {
    if b.host_port == 0 {
        free_port(&b.host_ip, &b.proto, 0)
    } else if b.host_port_end > b.host_port {
        (b.host_port..=b.host_port_end)
            .find(|p| free_port(&b.host_ip, &b.proto, *p).is_ok())
            .ok_or_else(|| NetworkError::PortAllocated {
                container: String::new(),
                addr: format!("{}:{}-{}", b.host_ip, b.host_port, b.host_port_end),
            })
    } else {
        Ok(b.host_port)
    }
}

/// `port` if it is free on `ip` (0: any free port).
pub fn free_port(ip: &str, proto: &str, port: u16) -> Result<u16, NetworkError> {
    let ip = if ip.is_empty() { "0.0.0.0" } else { ip };
    let bound = if proto == "udp" {
        std::net::UdpSocket::bind((ip, port)).and_then(|s| s.local_addr())
    } else {
        std::net::TcpListener::bind((ip, port)).and_then(|s| s.local_addr())
    };
    bound
        .map(|a| a.port())
        .map_err(|e| NetworkError::io(format!("a free host port on {ip}"), e))
}

/// The record of a host port a helper listens on, on `host_ip` (no
/// container id yet, no target address: the helper has no address of
/// the container's to forward to).
pub fn published_port(b: &PortBinding, host_ip: &str, host_port: u16) -> PublishedPort {
    PublishedPort {
        container_id: String::new(),
        proto: b.proto.clone(),
        container_port: b.container_port,
        host_ip: host_ip.to_string(),
        host_port,
        target_ip: String::new(),
    }
}

/// Files a helper's start makes in the container's directory, removed
/// on drop (on a failure at start, and once it is ready).
pub struct StartFiles(Vec<PathBuf>);

impl StartFiles {
    pub fn new() -> StartFiles {
        StartFiles(Vec::new())
    }

    /// Adds `path` (removed now if it is there, left over from before).
    pub fn add(&mut self, path: PathBuf) -> &Path {
        let _ = std::fs::remove_file(&path);
        self.0.push(path);
        self.0.last().map_or(Path::new(""), PathBuf::as_path)
    }
}

impl Drop for StartFiles {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A running helper, this process's child, stopped on drop.
pub struct Helper {
    name: &'static str,
    child: Child,
    log: PathBuf,
    published: Vec<PublishedPort>,
    /// A start whose wait is left to [`Helper::ready`]: what tells that
    /// the helper is ready, and the files the start made (removed once
    /// it is, or with the helper).
    pending: Option<(ReadyCheck, StartFiles)>,
    /// The files of a start found [`Readiness::Usable`]: the helper may
    /// still write them, so they go with it.
    kept: Option<StartFiles>,
    /// Set before this process stops the helper (its exit is no failure).
    stopping: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// What a helper's readiness check finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    NotYet,
    /// Started: the namespace is configured and the host ports listen.
    Ready,
    /// The namespace is configured (addresses and routes) while the
    /// helper is still starting; packets the container sends meanwhile
    /// wait in the tap device's queue until it reads them.
    Usable,
}

type ReadyCheck = Box<dyn FnMut() -> Readiness + Send>;

impl Helper {
    /// Starts `command` (the helper `name`) with its messages in `log`
    /// (one of `files`), no stdin or stdout, dying with this thread.
    pub fn spawn(
        name: &'static str,
        mut command: Command,
        files: &mut StartFiles,
        log: PathBuf,
    ) -> Result<Helper, NetworkError> {
        let log = files.add(log).to_path_buf();
        let output = std::fs::File::create(&log)
            .map_err(|e| NetworkError::io(log.display().to_string(), e))?;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(output);
        super::sys::die_with_parent(&mut command);
        let child = command
            .spawn()
            .map_err(|e| NetworkError::io(format!("starting {name}"), e))?;
        Ok(Helper {
            name,
            child,
            log,
            published: Vec::new(),
            pending: None,
            kept: None,
            stopping: Default::default(),
        })
    }

    /// Leaves the wait for the helper to [`Helper::ready`], so that the
    /// caller's own set-up goes on meanwhile: `ready` says whether it is
    /// ready, `files` (its log among them) are removed then (with the
    /// helper, when it was only usable).
    pub fn ready_later(
        &mut self,
        ready: impl FnMut() -> Readiness + Send + 'static,
        files: StartFiles,
    ) {
        self.pending = Some((Box::new(ready), files));
    }

    /// Waits for a start left to later ([`Helper::ready_later`]); at
    /// once for one already waited for.
    pub fn ready(&mut self) -> Result<(), NetworkError> {
        match self.pending.take() {
            Some((mut ready, files)) => {
                let waited = self.wait_for(&mut ready)?;
                if waited == Readiness::Usable {
                    self.kept = Some(files);
                    self.watch_rest_of_start(ready);
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Waits until `ready` says the helper is ready; an exit before that
    /// is its failure, told by the last line of its log.
    pub fn wait_ready(&mut self, mut ready: impl FnMut() -> bool) -> Result<(), NetworkError> {
        self.wait_for(|| match ready() {
            true => Readiness::Ready,
            false => Readiness::NotYet,
        })
        .map(drop)
    }

    /// After a start found usable, the helper goes on starting while the
    /// container runs: a thread follows it until it is ready, and a
    /// failure meanwhile (the container then has no connectivity) is
    /// said in the monitor's log with the helper's last message.
    fn watch_rest_of_start(&self, mut ready: ReadyCheck) {
        let (name, pid, log) = (self.name, self.pid(), self.log.clone());
        let stopping = std::sync::Arc::clone(&self.stopping);
        let _ = std::thread::Builder::new()
            .name("helper-start".into())
            .spawn(move || {
                let deadline = Instant::now() + READY_TIMEOUT;
                while Instant::now() < deadline {
                    if ready() == Readiness::Ready {
                        return;
                    }
                    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"));
                    // The state follows the command name's closing parenthesis.
                    let state = stat.as_deref().ok().and_then(|s| {
                        s.rsplit_once(") ")
                            .and_then(|(_, rest)| rest.chars().next())
                    });
                    if stopping.load(std::sync::atomic::Ordering::SeqCst) {
                        return;
                    }
                    if matches!(state, None | Some('Z' | 'X')) {
                        let said = std::fs::read_to_string(&log).unwrap_or_default();
                        tracing::warn!(
                            "{name} failed after configuring the container's network, which has no connectivity now: {}",
                            last_message(&said).unwrap_or("no message")
                        );
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            });
    }

    /// Waits until `ready` finds the helper ready or usable (which it
    /// returns); an exit before that is its failure.
    fn wait_for(
        &mut self,
        mut ready: impl FnMut() -> Readiness,
    ) -> Result<Readiness, NetworkError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        // Short pauses: the container waits on this (a check is one
        // read of a small file or a pipe).
        let mut pause = Duration::from_micros(250);
        loop {
            match ready() {
                Readiness::NotYet => {}
                found => return Ok(found),
            }
            if !matches!(self.child.try_wait(), Ok(None)) {
                return Err(self.failure());
            }
            if Instant::now() >= deadline {
                return Err(NetworkError::Invalid(format!(
                    "rootless: {} did not configure the container's network within {} s",
                    self.name,
                    READY_TIMEOUT.as_secs()
                )));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(2));
        }
    }

    /// The helper's failure, in one line: its last message.
    pub fn failure(&self) -> NetworkError {
        let said = std::fs::read_to_string(&self.log).unwrap_or_default();
        NetworkError::Invalid(format!(
            "rootless: {} failed: {}",
            self.name,
            last_message(&said).unwrap_or("no message")
        ))
    }

    /// Records the host ports the helper listens on.
    pub fn set_published(&mut self, published: Vec<PublishedPort>) {
        self.published = published;
    }

    /// The host ports the helper listens on (no container id, no target
    /// address).
    pub fn published(&self) -> &[PublishedPort] {
        &self.published
    }

    /// The helper's name (`pasta`, `slirp4netns`).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The helper's pid.
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap_or(0)
    }
}

/// The last line of a helper's messages worth showing (not the notes
/// about where it logs).
fn last_message(said: &str) -> Option<&str> {
    said.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.contains("to syslog"))
}

/// How long a helper may take to configure a namespace.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

impl Helper {
    /// Stops the helper; it is reaped when dropped. A helper's exit
    /// takes a while (~25 ms: the kernel frees its tap device and its
    /// memory), which nothing need wait for unless it listens on host
    /// ports (see [`Sandbox::release`](super::Sandbox::release)).
    pub fn stop(mut self) -> Helper {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = self.child.kill();
        self
    }
}

impl Drop for Helper {
    /// Stops the helper and reaps it (it holds the host's ports until
    /// then).
    fn drop(&mut self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_message_is_the_reason() {
        assert_eq!(
            last_message("Failed to bind port 8080 (Address in use)\nCouldn't log to syslog\n\n"),
            Some("Failed to bind port 8080 (Address in use)")
        );
        assert_eq!(last_message(""), None);
    }

    fn shell(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    #[test]
    fn a_start_waited_for_later_fails_with_its_last_message_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = StartFiles::new();
        let command = shell("echo 'Failed to bind port 1' >&2; exit 1");
        let mut helper =
            Helper::spawn("sh", command, &mut files, dir.path().join("sh.log")).unwrap();
        helper.ready_later(|| Readiness::NotYet, files);
        let e = helper.ready().unwrap_err().to_string();
        assert!(e.ends_with("sh failed: Failed to bind port 1"), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_start_waited_for_later_is_ready_once_its_check_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = StartFiles::new();
        let ready_file = files.add(dir.path().join("ready")).to_path_buf();
        let script = format!(
            "sleep 0.05; echo up > {}; exec sleep 30",
            ready_file.display()
        );
        let mut helper =
            Helper::spawn("sh", shell(&script), &mut files, dir.path().join("sh.log")).unwrap();
        let check = ready_file.clone();
        helper.ready_later(
            move || match check.exists() {
                true => Readiness::Ready,
                false => Readiness::NotYet,
            },
            files,
        );
        assert!(!ready_file.exists());
        helper.ready().unwrap();
        // Its files are gone once it is ready; a second wait is none.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        helper.ready().unwrap();
        // Stopped, then reaped on drop.
        let pid = nix::unistd::Pid::from_raw(helper.pid());
        let stopped = helper.stop();
        drop(stopped);
        assert_eq!(
            nix::sys::signal::kill(pid, None),
            Err(nix::errno::Errno::ESRCH)
        );
    }

    #[test]
    fn a_start_found_usable_keeps_its_files_until_the_helper_stops() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = StartFiles::new();
        let usable = files.add(dir.path().join("usable")).to_path_buf();
        let ready_file = files.add(dir.path().join("ready")).to_path_buf();
        // Usable first; it goes on starting and writes its ready file
        // (and its log) after the wait.
        let script = format!(
            "echo > {}; sleep 0.1; echo up > {}; echo later >&2; exec sleep 30",
            usable.display(),
            ready_file.display()
        );
        let mut helper =
            Helper::spawn("sh", shell(&script), &mut files, dir.path().join("sh.log")).unwrap();
        let (u, r) = (usable.clone(), ready_file.clone());
        helper.ready_later(
            move || {
                if r.exists() {
                    Readiness::Ready
                } else if u.exists() {
                    Readiness::Usable
                } else {
                    Readiness::NotYet
                }
            },
            files,
        );
        helper.ready().unwrap();
        assert!(!ready_file.exists(), "returned before the helper was ready");
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(ready_file.exists());
        drop(helper.stop());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn start_files_are_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        {
            let mut files = StartFiles::new();
            files.add(path.clone());
            std::fs::write(&path, "left").unwrap();
        }
        assert!(!path.exists());
    }
}
