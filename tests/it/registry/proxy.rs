//! A small loopback HTTP proxy in front of the registry that injects
//! faults into matching requests: a connection dropped mid-body, a 500 or
//! 429 answer, a flipped byte, or a redirect to another host. One request
//! per connection (`Connection: close`), bodies held in memory: test
//! images are small.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

#[derive(Clone, Debug)]
pub enum Fault {
    /// Close the connection after this many bytes of the response body.
    DropAfter(usize),
    /// Answer with this status instead (429 comes with `Retry-After: 1`).
    Status(u16),
    /// Flip the body byte at this offset.
    FlipByte(usize),
    /// Answer `307` to the same path on this base URL (`http://host:port`).
    Redirect(String),
    /// Answer 200 with this body, as an OCI manifest.
    Replace(Vec<u8>),
    /// Send the headers and this many bytes of the body, then stay silent
    /// with the connection open (until the proxy stops, at most 2 minutes).
    StallAfter(usize),
    /// Answer with the body resized to this many bytes (cut, or padded
    /// with zeros) and its `Content-Length` to match: a blob whose size is
    /// not its descriptor's.
    Resize(usize),
}

/// A fault for requests with this method whose path contains `path_contains`,
/// applied to the first `times` of them.
pub struct Rule {
    pub method: &'static str,
    pub path_contains: String,
    pub fault: Fault,
    pub times: AtomicUsize,
}

impl Rule {
    pub fn new(method: &'static str, path_contains: &str, fault: Fault, times: usize) -> Rule {
        Rule {
            method,
            path_contains: path_contains.to_string(),
            fault,
            times: AtomicUsize::new(times),
        }
    }
}

struct Shared {
    upstream: u16,
    rules: Vec<Rule>,
    /// The `Authorization` header of every request seen (None when absent).
    authorizations: Mutex<Vec<(String, Option<String>)>>,
    /// Replaces the `Authorization` header sent upstream.
    inject_authorization: Option<String>,
    faults_applied: AtomicUsize,
    stopped: AtomicBool,
}

/// A running proxy; stopped and joined on drop.
pub struct Proxy {
    pub port: u16,
    pub ip: &'static str,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Proxy {
    pub fn start(upstream: u16, rules: Vec<Rule>) -> Proxy {
        Self::start_on("127.0.0.1", upstream, rules, None)
    }

    pub fn start_on(
        ip: &'static str,
        upstream: u16,
        rules: Vec<Rule>,
        inject_authorization: Option<String>,
    ) -> Proxy {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            upstream,
            rules,
            authorizations: Mutex::new(Vec::new()),
            inject_authorization,
            faults_applied: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let shared = shared.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    let shared = shared.clone();
                    std::thread::spawn(move || {
                        let _ = handle(conn, &shared);
                    });
                }
            })
        };
        Proxy {
            port,
            ip,
            shared,
            stop,
            handle: Some(handle),
        }
    }

    pub fn host(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    pub fn faults_applied(&self) -> usize {
        self.shared.faults_applied.load(Ordering::Relaxed)
    }

    /// Ends every stall: the stalled connections close.
    pub fn release_stalls(&self) {
        self.shared.stopped.store(true, Ordering::Relaxed);
    }

    pub fn authorizations(&self) -> Vec<(String, Option<String>)> {
        self.shared.authorizations.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.shared.stopped.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect((self.ip, self.port));
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn handle(client: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut headers = Vec::new();
    let mut content_length = 0usize;
    let mut authorization = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end().to_string();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap_or((&line, ""));
        let lower = name.to_ascii_lowercase();
        match lower.as_str() {
            "content-length" => content_length = value.trim().parse().unwrap_or(0),
            "authorization" => authorization = Some(value.trim().to_string()),
            "connection" | "keep-alive" => continue,
            _ => {}
        }
        if lower == "authorization" && shared.inject_authorization.is_some() {
            continue;
        }
        headers.push(line);
    }
    let mut body = vec![0u8; content_length];
    reader.read_exact(&mut body)?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    shared
        .authorizations
        .lock()
        .unwrap()
        .push((path.clone(), authorization));

    let fault = shared.rules.iter().find_map(|rule| {
        if rule.method != method || !path.contains(&rule.path_contains) {
            return None;
        }
        rule.times
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| t.checked_sub(1))
            .ok()
            .map(|_| rule.fault.clone())
    });
    let mut out = client;
    if let Some(fault) = &fault {
        shared.faults_applied.fetch_add(1, Ordering::Relaxed);
        match fault {
            Fault::Status(code) => {
                let extra = if *code == 429 {
                    "Retry-After: 1\r\n"
                } else {
                    ""
                };
                write!(out, "HTTP/1.1 {code} Fault\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n")?;
                return out.shutdown(Shutdown::Both);
            }
            Fault::Replace(body) => {
                write!(
                    out,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )?;
                out.write_all(body)?;
                return out.shutdown(Shutdown::Both);
            }
            Fault::Redirect(base) => {
                write!(out, "HTTP/1.1 307 Temporary Redirect\r\nLocation: {base}{path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
                return out.shutdown(Shutdown::Both);
            }
            _ => {}
        }
    }
    let mut upstream = TcpStream::connect(("127.0.0.1", shared.upstream))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    for h in &headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    if let Some(auth) = &shared.inject_authorization {
        head.push_str(&format!("Authorization: {auth}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    upstream.write_all(head.as_bytes())?;
    upstream.write_all(&body)?;
    let mut response = Vec::new();
    upstream.read_to_end(&mut response)?;
    let body_start = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .unwrap_or(response.len());
    match fault {
        Some(Fault::DropAfter(n)) => {
            let end = (body_start + n).min(response.len());
            out.write_all(&response[..end])?;
        }
        Some(Fault::StallAfter(n)) => {
            let end = (body_start + n).min(response.len());
            out.write_all(&response[..end])?;
            out.flush()?;
            let until = std::time::Instant::now() + std::time::Duration::from_secs(120);
            while !shared.stopped.load(Ordering::Relaxed) && std::time::Instant::now() < until {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        Some(Fault::Resize(n)) => {
            let head = String::from_utf8_lossy(&response[..body_start]).into_owned();
            let mut body = response[body_start..].to_vec();
            body.resize(n, 0);
            let head: String = head
                .split_inclusive("\r\n")
                .map(|line| {
                    if line.to_ascii_lowercase().starts_with("content-length:") {
                        format!("Content-Length: {n}\r\n")
                    } else {
                        line.to_string()
                    }
                })
                .collect();
            out.write_all(head.as_bytes())?;
            out.write_all(&body)?;
        }
        Some(Fault::FlipByte(offset)) => {
            if body_start + offset < response.len() {
                response[body_start + offset] ^= 0xff;
            }
            out.write_all(&response)?;
        }
        _ => out.write_all(&response)?,
    }
    out.flush()?;
    out.shutdown(Shutdown::Both)
}
