//! A tiny token issuer for the registry's `auth: token` mode. It signs
//! RS256 JWTs with a test key (through the openssl CLI), carrying its
//! self-signed certificate in `x5c`; the registry checks them against
//! that certificate as its root bundle.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use base64::Engine as _;

use super::harness::{run, TOKEN_ISSUER, TOKEN_SERVICE};

pub struct TokenServer {
    pub port: u16,
    pub cert: PathBuf,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    pub issued: Arc<AtomicUsize>,
    /// Requests that carried an `Authorization` header.
    pub credentials_seen: Arc<AtomicUsize>,
}

struct Issuer {
    key: PathBuf,
    cert_der_b64: String,
    user: String,
    password: String,
}

fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

impl TokenServer {
    /// Grants whatever is asked to `user:password`, and pull alone to anonymous users.
    pub fn start(dir: &Path, user: &str, password: &str) -> TokenServer {
        let key = dir.join("token.key");
        let cert = dir.join("token.crt");
        run(Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=strata-token-issuer",
                "-keyout",
            ])
            .arg(&key)
            .arg("-out")
            .arg(&cert));
        let der = run(Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert))
        .stdout;
        let issuer = Arc::new(Issuer {
            key,
            cert_der_b64: base64::engine::general_purpose::STANDARD.encode(der),
            user: user.to_string(),
            password: password.to_string(),
        });
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let issued = Arc::new(AtomicUsize::new(0));
        let credentials_seen = Arc::new(AtomicUsize::new(0));
        let handle = {
            let stop = stop.clone();
            let issued = issued.clone();
            let credentials_seen = credentials_seen.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    if let Ok(conn) = conn {
                        let _ = serve(conn, &issuer, &issued, &credentials_seen);
                    }
                }
            })
        };
        TokenServer {
            port,
            cert,
            stop,
            handle: Some(handle),
            issued,
            credentials_seen,
        }
    }

    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn serve(
    conn: TcpStream,
    issuer: &Issuer,
    issued: &AtomicUsize,
    credentials_seen: &AtomicUsize,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut authorization = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("authorization") {
                authorization = Some(value.trim().to_string());
            }
        }
    }
    if authorization.is_some() {
        credentials_seen.fetch_add(1, Ordering::Relaxed);
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or("");
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let scopes: Vec<String> = query
        .split('&')
        .filter_map(|kv| kv.strip_prefix("scope="))
        .map(percent_decode)
        .collect();
    let mut out = conn;
    let user = match authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Basic "))
    {
        Some(encoded) => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .unwrap_or_default();
            if decoded != format!("{}:{}", issuer.user, issuer.password).as_bytes() {
                write!(
                    out,
                    "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )?;
                return Ok(());
            }
            Some(issuer.user.clone())
        }
        None => None,
    };
    let mut access = Vec::new();
    for scope in scopes.iter().flat_map(|s| s.split(' ')) {
        let parts: Vec<&str> = scope.splitn(3, ':').collect();
        if parts.len() != 3 {
            continue;
        }
        let actions: Vec<&str> = parts[2]
            .split(',')
            .filter(|a| user.is_some() || *a == "pull")
            .collect();
        access.push(serde_json::json!({"type": parts[0], "name": parts[1], "actions": actions}));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [issuer.cert_der_b64]});
    let claims = serde_json::json!({
        "iss": TOKEN_ISSUER, "sub": user.clone().unwrap_or_default(), "aud": TOKEN_SERVICE,
        "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", issued.load(Ordering::Relaxed)),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(&issuer.key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(signing_input.as_bytes())?;
    let signature = child.wait_with_output()?.stdout;
    let token = format!("{signing_input}.{}", b64url(&signature));
    issued.fetch_add(1, Ordering::Relaxed);
    let body = serde_json::json!({"token": token, "expires_in": 300}).to_string();
    write!(out, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
}
