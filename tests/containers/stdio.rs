//! stdin through `run -i`, `start -a -i` and `attach`; `-t` on a real
//! terminal (the test holds the pty's master end): size, resizing,
//! detaching with ctrl-p ctrl-q and attaching again.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::env_or_skip;
use crate::harness::{eventually, stdout, Env};

/// Runs strata with `input` on its stdin; its output.
fn run_with_input(env: &Env, args: &[&str], input: &[u8]) -> std::process::Output {
    let mut child = env
        .cmd(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn strata");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write stdin");
    child.wait_with_output().expect("wait strata")
}

#[test]
fn run_i_and_start_ai_pipe_stdin_into_the_container() {
    let env = env_or_skip!();
    let out = run_with_input(&env, &["run", "-i", "--rm", "bb", "cat"], b"hello\nworld\n");
    assert_eq!(stdout(&out), "hello\nworld\n");
    assert_eq!(out.status.code(), Some(0));
    // Without -i the container's stdin is empty.
    let out = run_with_input(&env, &["run", "--rm", "bb", "cat"], b"hello\n");
    assert_eq!(stdout(&out), "");
    let out = run_with_input(
        &env,
        &["run", "-i", "--rm", "bb", "sh", "-c", "wc -c; exit 4"],
        &vec![b'x'; 300_000],
    );
    assert_eq!(stdout(&out).trim(), "300000");
    assert_eq!(out.status.code(), Some(4));

    env.ok(&[
        "create",
        "-i",
        "--name",
        "catter",
        "bb",
        "sh",
        "-c",
        "cat; echo err >&2",
    ]);
    let out = run_with_input(&env, &["start", "-a", "-i", "catter"], b"again\n");
    assert_eq!(stdout(&out), "again\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    assert_eq!(out.status.code(), Some(0));
}

/// Reads a child's stdout until it contains `wanted`.
pub(crate) fn read_until(child: &mut Child, wanted: &str) -> String {
    let out = child.stdout.as_mut().expect("stdout");
    let mut text = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&text).contains(wanted) {
        let n = out.read(&mut buf).expect("read");
        assert!(
            n > 0,
            "EOF before {wanted:?}: {}",
            String::from_utf8_lossy(&text)
        );
        text.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&text).into_owned()
}

#[test]
fn attach_forwards_stdin_and_a_second_attach_can_too() {
    let env = env_or_skip!();
    env.ok(&[
        "run",
        "-d",
        "-i",
        "--name",
        "reader",
        "bb",
        "sh",
        "-c",
        "read a; echo got $a; read b; echo got $b; exit 7",
    ]);
    let attach = |env: &Env| {
        env.cmd(&["attach", "reader"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("attach")
    };
    let mut first = attach(&env);
    let mut input = first.stdin.take().expect("stdin");
    input.write_all(b"one\n").expect("write");
    read_until(&mut first, "got one\n");
    // The first client goes away (its end of input does not close the
    // container's: it was started detached).
    drop(input);
    first.kill().expect("kill attach");
    first.wait().expect("reap attach");

    let mut second = attach(&env);
    second
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"two\n")
        .expect("write");
    let out = second.wait_with_output().expect("attach output");
    assert_eq!(stdout(&out), "got two\n");
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(env.ok(&["logs", "reader"]), "got one\ngot two\n");
}

/// A pty for a strata client: the test keeps the master end.
pub(crate) struct Terminal {
    master: std::fs::File,
    seen: Vec<u8>,
}

impl Terminal {
    /// Starts `strata args` in a new session whose controlling terminal
    /// is a fresh pty of `rows` x `cols`.
    pub(crate) fn spawn(env: &Env, args: &[&str], rows: u16, cols: u16) -> (Terminal, Child) {
        Terminal::spawn_with_env(env, args, rows, cols, &[])
    }

    /// As [`Terminal::spawn`], with these environment variables set.
    pub(crate) fn spawn_with_env(
        env: &Env,
        args: &[&str],
        rows: u16,
        cols: u16,
        vars: &[(&str, &std::path::Path)],
    ) -> (Terminal, Child) {
        let size = nix::pty::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&size), None).expect("openpty");
        let slave = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup"));
        let child = Command::new("setsid")
            .arg("-c")
            .arg(&env.bin)
            .arg("--root")
            .arg(env.root())
            .args(args)
            .envs(vars.iter().copied())
            .stdin(slave(&pty.slave))
            .stdout(slave(&pty.slave))
            .stderr(slave(&pty.slave))
            .spawn()
            .expect("spawn strata on a pty");
        drop(pty.slave);
        let terminal = Terminal {
            master: std::fs::File::from(pty.master),
            seen: Vec::new(),
        };
        (terminal, child)
    }

    pub(crate) fn type_in(&mut self, text: &[u8]) {
        self.master.write_all(text).expect("type");
    }

    /// Reads until the output (since the last match) contains `wanted`.
    pub(crate) fn expect(&mut self, wanted: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut buf = [0u8; 1024];
        loop {
            let text = String::from_utf8_lossy(&self.seen).into_owned();
            if let Some(at) = text.find(wanted) {
                self.seen.drain(..at + wanted.len());
                return;
            }
            assert!(Instant::now() < deadline, "no {wanted:?} in {text:?}");
            let mut fds = [nix::poll::PollFd::new(
                self.master.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(200u16)).unwrap_or(0) == 0 {
                continue;
            }
            match self.master.read(&mut buf) {
                Ok(n) if n > 0 => self.seen.extend_from_slice(&buf[..n]),
                _ => panic!("terminal closed before {wanted:?} in {text:?}"),
            }
        }
    }

    pub(crate) fn resize(&self, rows: u16, cols: u16) {
        strata::container::sys::set_window_size(self.master.as_fd(), rows, cols).expect("resize");
    }
}

pub(crate) fn wait_code(child: &mut Child) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("strata did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn tty_size_follows_the_client_and_detach_keys_detach() {
    let env = env_or_skip!();
    let (mut term, mut run) = Terminal::spawn(
        &env,
        &["run", "-it", "--name", "shell", "bb", "sh"],
        33,
        101,
    );
    term.type_in(b"stty size; tty; echo $((6*7))\n");
    term.expect("33 101");
    term.expect("/dev/pts/0");
    term.expect("42");
    // The client's terminal changes size: SIGWINCH, forwarded.
    term.resize(40, 120);
    std::thread::sleep(Duration::from_millis(300));
    term.type_in(b"stty size\n");
    term.expect("40 120");
    // ctrl-p ctrl-q: the client leaves, the container keeps running.
    term.type_in(&[0x10, 0x11]);
    assert_eq!(wait_code(&mut run), Some(0));
    assert!(eventually(5, || env
        .ok(&["ps", "-q", "--filter", "name=shell"])
        .trim()
        .len()
        == 12));

    // Attach again from another terminal, with its own size.
    let (mut term, mut attach) = Terminal::spawn(&env, &["attach", "shell"], 20, 70);
    term.type_in(b"stty size; echo $((100+23))\n");
    term.expect("20 70");
    term.expect("123");
    term.type_in(b"exit 5\n");
    assert_eq!(wait_code(&mut attach), Some(5));
    let state = env.container("shell").state;
    assert_eq!(state.exit_code, 5);
}

#[test]
fn run_t_without_i_gives_a_terminal_and_output() {
    let env = env_or_skip!();
    let (mut term, mut run) = Terminal::spawn(
        &env,
        &[
            "run",
            "-t",
            "--rm",
            "bb",
            "sh",
            "-c",
            "tty; stty size; exit 3",
        ],
        25,
        90,
    );
    term.expect("/dev/pts/0");
    term.expect("25 90");
    assert_eq!(wait_code(&mut run), Some(3));
    // Without a terminal on the client, -t still gives the container one.
    let out = env.run(&["run", "-t", "--rm", "bb", "tty"]);
    assert_eq!(stdout(&out).trim(), "/dev/pts/0");
}

/// A process the test started, killed (by pid) and reaped on drop.
struct Holder(Child);

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What pid 1 of the containers below runs: waits for /tmp/go, writes
/// 3000 lines and one to stderr, exits 4.
const WRITER: &str = "while [ ! -e /tmp/go ]; do sleep 0.05; done; i=0; \
                      while [ $i -lt 3000 ]; do echo line-$i; i=$((i+1)); done; \
                      echo bye >&2; exit 4";

#[test]
fn a_container_ends_when_pid_1_exits_even_if_its_output_is_held_open() {
    let env = env_or_skip!();
    // A daemonised grandchild holding stdout dies with pid 1 (the end of
    // the pid namespace kills it): no wait for it.
    let started = Instant::now();
    let out = env.run(&[
        "run",
        "--rm",
        "bb",
        "sh",
        "-c",
        "sleep 60 & echo parent-done",
    ]);
    assert_eq!(stdout(&out), "parent-done\n");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    // A process outside the container holding its output open (through
    // /proc/PID/fd): the container ends all the same, with all of its
    // output, and the holder never sees it end.
    for tty in [false, true] {
        let name = if tty { "late-t" } else { "late" };
        let mut args = vec!["run", "--name", name];
        if tty {
            args.push("-t");
        }
        args.extend(["bb", "sh", "-c", WRITER]);
        let mut run = env
            .cmd(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run");
        let mut pid = 0;
        assert!(eventually(10, || {
            let store = strata::store::Store::open(env.root()).expect("store");
            pid = strata::container::lookup(&store, name).map_or(0, |c| c.state.pid);
            pid > 0
        }));
        let mut holder = Holder(
            Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "exec 3>/proc/{pid}/fd/1 4>/proc/{pid}/fd/2; echo ready; exec sleep 60"
                ))
                .stdout(Stdio::piped())
                .spawn()
                .expect("holder"),
        );
        read_until(&mut holder.0, "ready");
        env.ok(&["exec", name, "touch", "/tmp/go"]);
        assert_eq!(wait_code(&mut run), Some(4), "{name}");
        let out = run.wait_with_output().expect("run output");
        let text = stdout(&out).replace("\r\n", "\n");
        assert!(text.starts_with("line-0\n"), "{name}: {text}");
        assert!(text.contains("line-2999\n"), "{name}: {text}");
        if !tty {
            assert_eq!(String::from_utf8_lossy(&out.stderr), "bye\n");
        }
        let logs = env.ok(&["logs", name]).replace("\r\n", "\n");
        assert!(logs.contains("line-2999\n"), "{name}: {logs}");
        assert!(holder.0.try_wait().expect("holder").is_none());
    }
}

/// Runs strata with its stdout a pipe nobody reads any more.
fn with_closed_stdout(env: &Env, args: &[&str]) -> std::process::Output {
    let (read, write) = nix::unistd::pipe().expect("pipe");
    drop(read);
    env.cmd(args)
        .stdout(Stdio::from(write))
        .stderr(Stdio::piped())
        .output()
        .expect("run strata")
}

/// Output to a closed pipe (`strata ps | head -1`) ends a command as it
/// ends Docker's client: killed by SIGPIPE, nothing on stderr (strata
/// panicked, or `run` went on relaying output nobody read). The
/// container is not affected.
#[test]
fn closed_stdout_ends_container_commands_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let env = env_or_skip!();
    env.ok(&[
        "run",
        "--name",
        "talker",
        "bb",
        "sh",
        "-c",
        "echo one; echo two >&2",
    ]);
    for args in [
        &["ps", "-a"][..],
        &["ps", "-a", "--format", "{{.Names}}"],
        &["logs", "talker"],
        &["inspect", "talker"],
        &["run", "--rm", "bb", "sh", "-c", "echo hi; sleep 1"],
        &["run", "-d", "--name", "detached", "bb", "sleep", "1000"],
    ] {
        let out = with_closed_stdout(&env, args);
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "{args:?}: {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        // `logs` relays the container's own stderr line, which may come
        // before or after the stdout line that ends it: strata itself
        // adds nothing.
        let stderr = String::from_utf8_lossy(&out.stderr);
        if args[0] == "logs" {
            assert!(stderr.is_empty() || stderr == "two\n", "{args:?}: {stderr}");
        } else {
            assert_eq!(stderr, "", "{args:?}");
        }
    }
    // The detached container runs on.
    assert_eq!(
        env.ok(&["inspect", "-f", "{{.State.Status}}", "detached"]),
        "running\n"
    );
    env.ok(&["rm", "-f", "detached"]);
}
