//! `import URL`: a root filesystem fetched over HTTP (a loopback server
//! of the test's own) or HTTPS (`openssl s_server`, its CA trusted
//! through certs.d), streamed into the store; errors name the URL.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{assert_fails_one_line, busybox_rootfs_tar, require_tool, Env};
use crate::registry::harness::TestCa;

/// Serves one file at `/rootfs.tar` (404 elsewhere) on loopback until
/// dropped.
struct FileServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FileServer {
    fn start(body: Vec<u8>) -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut request = String::new();
                let _ = reader.read_line(&mut request);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                }
                let path = request.split(' ').nth(1).unwrap_or("");
                if path == "/rootfs.tar" {
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(&body);
                } else {
                    let _ = stream.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                }
            }
        });
        FileServer {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn layer_of(env: &Env, image: &str) -> String {
    env.ok(&["inspect", "-f", "{{index .RootFS.Layers 0}}", image])
}

#[test]
fn import_fetches_an_http_url() {
    let env = Env::new();
    let tar = busybox_rootfs_tar(&env, "web");
    let server = FileServer::start(std::fs::read(&tar).expect("tar"));
    let url = format!("http://127.0.0.1:{}/rootfs.tar", server.port);
    let id = env.ok(&["import", "-c", "CMD [\"sh\"]", &url, "fromweb:1"]);
    assert!(id.starts_with("sha256:") && id.len() == 72, "{id:?}");
    env.ok(&["import", tar.to_str().expect("utf8"), "fromfile:1"]);
    assert_eq!(layer_of(&env, "fromweb:1"), layer_of(&env, "fromfile:1"));
    assert_eq!(
        env.ok(&["inspect", "-f", "{{json .Config.Cmd}}", "fromweb:1"]),
        "[\"sh\"]\n"
    );
    env.fsck_clean();

    // A missing file and a closed port: one line naming the URL, exit 1,
    // nothing stored.
    let images = env.ok(&["images", "-q"]);
    let missing = format!("http://127.0.0.1:{}/nothing.tar", server.port);
    let args = ["import", missing.as_str(), "no:1"];
    let out = env.run(&args);
    assert_eq!(out.status.code(), Some(1));
    let line = assert_fails_one_line(&out, &args);
    assert!(
        line.contains(&missing) && line.contains("404 Not Found"),
        "{line}"
    );
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let refused = format!("http://127.0.0.1:{closed}/rootfs.tar");
    let args = ["import", refused.as_str()];
    let out = env.run(&args);
    assert_eq!(out.status.code(), Some(1));
    assert!(assert_fails_one_line(&out, &args).contains(&refused));
    assert_eq!(env.ok(&["images", "-q"]), images);
}

/// `openssl s_server -WWW`: serves the files of `dir` over HTTPS.
struct TlsServer {
    child: Child,
    port: u16,
}

impl TlsServer {
    fn start(dir: &Path, cert: &Path, key: &Path) -> TlsServer {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let child = Command::new("openssl")
            .current_dir(dir)
            .args(["s_server", "-quiet", "-WWW", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(cert)
            .arg("-key")
            .arg(key)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "openssl s_server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        TlsServer { child, port }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn import_fetches_an_https_url_trusting_certs_d() {
    if !require_tool("openssl") {
        return;
    }
    let env = Env::new();
    let tar = busybox_rootfs_tar(&env, "secure");
    let served = env.path("served");
    std::fs::create_dir_all(&served).expect("mkdir");
    std::fs::copy(&tar, served.join("rootfs.tar")).expect("copy");
    let ca = TestCa::new();
    let server = TlsServer::start(
        &served,
        &ca.dir.path().join("server.crt"),
        &ca.dir.path().join("server.key"),
    );
    let url = format!("https://127.0.0.1:{}/rootfs.tar", server.port);
    let certs_d = env.path("certs.d");

    // Not trusted yet: one line naming the URL and the certificate.
    let out = env
        .cmd(&["import", &url, "tls:1"])
        .env("STRATA_CERTS_D", &certs_d)
        .output()
        .expect("strata");
    assert_eq!(out.status.code(), Some(1));
    let line = assert_fails_one_line(&out, &["import", &url]);
    assert!(
        line.contains(&url) && line.to_lowercase().contains("certificate"),
        "{line}"
    );

    let host_dir = certs_d.join(format!("127.0.0.1:{}", server.port));
    std::fs::create_dir_all(&host_dir).expect("mkdir");
    std::fs::copy(ca.ca(), host_dir.join("ca.crt")).expect("copy ca");
    let out = env
        .cmd(&["import", &url, "tls:1"])
        .env("STRATA_CERTS_D", &certs_d)
        .output()
        .expect("strata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.ok(&["import", tar.to_str().expect("utf8"), "local:1"]);
    assert_eq!(layer_of(&env, "tls:1"), layer_of(&env, "local:1"));
}
