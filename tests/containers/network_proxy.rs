//! The userland proxy behind `-p` (src/network/proxy/): what it carries
//! (TCP both ways with half-close, UDP per client), that a connection
//! costs it no thread and nothing stays behind a finished one, and that
//! a port nothing answers is refused cleanly. The servers are the
//! test's own sockets, bound inside the container's network namespace
//! (a thread of the test enters it), so each side is under the test's
//! control; the container itself only sleeps.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::harness::{eventually, Env};
use crate::netns::free_port;

/// Runs `f` on a thread that has entered the network namespace of the
/// process `pid`: the sockets it makes belong to that namespace.
fn in_namespace_of<T: Send + 'static>(pid: i32, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).expect("netns");
        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("namespace thread")
}

/// A detached container that only sleeps, publishing `ports`; its
/// process and its monitor's pid.
fn sleeper(env: &Env, name: &str, ports: &[String]) -> (i32, i32) {
    let mut args = vec!["run", "-d", "--name", name];
    for p in ports {
        args.extend_from_slice(&["-p", p]);
    }
    args.extend_from_slice(&["bb", "sleep", "1000"]);
    env.ok(&args);
    let c = env.container(name);
    (c.state.pid, c.state.monitor_pid)
}

fn count_entries(dir: String) -> usize {
    std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0)
}

fn threads_of(pid: i32) -> usize {
    count_entries(format!("/proc/{pid}/task"))
}

fn descriptors_of(pid: i32) -> usize {
    count_entries(format!("/proc/{pid}/fd"))
}

/// A TCP server of the test's inside the container's namespace: each
/// connection is read to its end, then answered with the number of
/// bytes read, then closed. Counts the connections it accepted.
struct CountingServer {
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl CountingServer {
    fn start(pid: i32, port: u16) -> CountingServer {
        let listener = in_namespace_of(pid, move || {
            TcpListener::bind(("0.0.0.0", port)).expect("bind in the container")
        });
        listener.set_nonblocking(true).unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, halt) = (accepted.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !halt.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        count.fetch_add(1, Ordering::SeqCst);
                        s.set_nonblocking(false).unwrap();
                        std::thread::spawn(move || {
                            let mut all = Vec::new();
                            if s.read_to_end(&mut all).is_ok() {
                                let _ = s.write_all(all.len().to_string().as_bytes());
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        CountingServer {
            accepted,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for CountingServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sends `bytes` through the proxy, shuts the sending side and reads
/// the answer to its end.
fn exchange(port: u16, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).expect("send");
    s.shutdown(Shutdown::Write).expect("shutdown");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("answer");
    answer
}

/// Connections are carried by the proxy's one thread: 50 open at once
/// add no thread to the monitor (two threads each before), and after
/// those and 500 more have ended, its threads and descriptors are what
/// they were.
#[test]
fn proxy_connections_cost_no_thread_and_leave_nothing_behind() {
    let env = crate::env_or_skip!();
    let port = free_port();
    let (pid, monitor) = sleeper(&env, "many", &[format!("127.0.0.1:{port}:7000")]);
    let server = CountingServer::start(pid, 7000);
    assert_eq!(exchange(port, b"warm"), "4");
    // The proxy closes its side a moment after the client has read the
    // end.
    std::thread::sleep(Duration::from_millis(200));
    let (threads, descriptors) = (threads_of(monitor), descriptors_of(monitor));

    let mut open = Vec::new();
    for _ in 0..50 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.write_all(b"x").unwrap();
        open.push(s);
    }
    assert!(
        eventually(10, || server.accepted.load(Ordering::SeqCst) == 51),
        "the container saw {} connections",
        server.accepted.load(Ordering::SeqCst)
    );
    let busy = threads_of(monitor);
    assert!(
        busy <= threads + 2,
        "50 open connections: the monitor has {busy} threads, {threads} before"
    );
    for mut s in open {
        s.shutdown(Shutdown::Write).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert_eq!(answer, "1");
    }
    for i in 0..500 {
        assert_eq!(
            exchange(port, format!("{i}").as_bytes()),
            format!("{i}").len().to_string()
        );
    }
    assert!(
        eventually(5, || threads_of(monitor) == threads
            && descriptors_of(monitor) == descriptors),
        "after 550 connections: {} threads (was {threads}), {} descriptors (was {descriptors})",
        threads_of(monitor),
        descriptors_of(monitor)
    );
    drop(server);
    env.ok(&["rm", "-f", "many"]);
}

/// Half-close passes through both ways: the client's shutdown reaches
/// the container while its answer still comes back, and the
/// container's shutdown reaches the client while what the client sends
/// still goes in. Bulk data (more than a pipe holds) arrives whole. A
/// port nothing listens on in the container is closed at once, and the
/// host port is refused once the container stops.
#[test]
fn half_close_passes_through_the_proxy_both_ways() {
    let env = crate::env_or_skip!();
    let (first, second) = (free_port(), free_port());
    let (pid, _) = sleeper(
        &env,
        "halves",
        &[
            format!("127.0.0.1:{first}:7000"),
            format!("127.0.0.1:{second}:7001"),
        ],
    );

    // Nothing listens in the container yet: the client's connection is
    // accepted by the proxy, then closed at once (not left hanging).
    let mut early = TcpStream::connect(("127.0.0.1", first)).expect("connect");
    early
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 16];
    let start = std::time::Instant::now();
    match early.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("{n} bytes from a port nothing listens on"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );

    // The client shuts its side first; 5 MiB go in before the answer.
    let server = CountingServer::start(pid, 7000);
    let big = vec![7u8; 5 << 20];
    assert_eq!(exchange(first, &big), big.len().to_string());
    drop(server);

    // The container shuts its side first, then reads what follows.
    let listener = in_namespace_of(pid, || TcpListener::bind("0.0.0.0:7001").expect("bind"));
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.write_all(b"first").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut rest = String::new();
        s.read_to_string(&mut rest).unwrap();
        rest
    });
    let mut client = TcpStream::connect(("127.0.0.1", second)).expect("connect");
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = String::new();
    client
        .read_to_string(&mut got)
        .expect("read to the container's end");
    assert_eq!(got, "first");
    client
        .write_all(b"second")
        .expect("send after the container's end");
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(server.join().expect("server"), "second");

    env.ok(&["stop", "-t", "1", "halves"]);
    let refused = TcpStream::connect(("127.0.0.1", first));
    assert_eq!(
        refused.map(|_| ()).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionRefused)
    );
    env.ok(&["rm", "-f", "halves"]);
}

/// UDP through `-p` on every address (`0.0.0.0` and `[::]`): each
/// client's datagrams reach the container from a socket of its own and
/// the answers come back to that client; the port is free once the
/// container stops.
#[test]
fn udp_datagrams_go_both_ways_per_client() {
    let env = crate::env_or_skip!();
    let port = free_port();
    let (pid, _) = sleeper(&env, "datagrams", &[format!("{port}:7002/udp")]);
    let echo = in_namespace_of(pid, || UdpSocket::bind("0.0.0.0:7002").expect("bind"));
    echo.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let halt = stop.clone();
    let server = std::thread::spawn(move || {
        let mut senders = std::collections::HashSet::new();
        let mut buf = [0u8; 2048];
        while !halt.load(Ordering::Relaxed) {
            if let Ok((n, from)) = echo.recv_from(&mut buf) {
                senders.insert(from);
                let mut answer = b"echo:".to_vec();
                answer.extend_from_slice(&buf[..n]);
                let _ = echo.send_to(&answer, from);
            }
        }
        senders.len()
    });
    let mut hosts: Vec<SocketAddr> = vec![format!("127.0.0.1:{port}").parse().unwrap()];
    if env.ok(&["port", "datagrams"]).contains(":::") {
        hosts.push(format!("[::1]:{port}").parse().unwrap());
    }
    let mut clients = 0;
    for host in &hosts {
        for name in ["a", "b"] {
            let bind = if host.is_ipv4() {
                "127.0.0.1:0"
            } else {
                "[::1]:0"
            };
            let c = UdpSocket::bind(bind).unwrap();
            c.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            clients += 1;
            // The first datagram may race the proxy's start: send again.
            let answer = (0..10).find_map(|_| {
                c.send_to(name.as_bytes(), host).unwrap();
                let mut buf = [0u8; 64];
                let (n, _) = c.recv_from(&mut buf).ok()?;
                Some(String::from_utf8_lossy(&buf[..n]).into_owned())
            });
            assert_eq!(answer.as_deref(), Some(&*format!("echo:{name}")), "{host}");
        }
    }
    env.ok(&["stop", "-t", "1", "datagrams"]);
    stop.store(true, Ordering::Relaxed);
    assert_eq!(server.join().expect("server"), clients);
    UdpSocket::bind(("127.0.0.1", port)).expect("the port is free after stop");
    env.ok(&["rm", "-f", "datagrams"]);
}
