//! The HTTP side of the distribution API: one client per registry, which
//! finds the scheme (HTTPS, or plain HTTP for loopback registries, tried
//! first there, and for `--tls-verify=false`), authenticates (anonymous, Basic, Bearer tokens
//! cached per scope), and retries with backoff on 5xx, 429 (honouring
//! `Retry-After`) and dropped or stalled connections. Every request has a
//! connect timeout and a read (inactivity) timeout ([`ClientOptions`],
//! from the store's `config.json`, see `settings.rs`). Credentials never go
//! to a plain-HTTP token realm of an HTTPS registry unless
//! `--tls-verify=false`.
//!
//! Redirects are followed by reqwest, which drops the `Authorization`
//! header whenever a redirect leaves the registry's host, port or scheme.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{HeaderMap, AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{StatusCode, Url};

use super::auth::{basic_header, parse_challenge, scope_key, Challenge, TokenCache, TokenResponse};
use super::credentials::{default_config_path, load_credentials, Credentials};
use super::RegistryError;
use crate::reference::DEFAULT_DOMAIN;

/// The slowest upload allowed for (bytes per second): a 16 MiB chunk
/// gets 256 s more than the read timeout.
pub const MIN_UPLOAD_RATE: u64 = 64 << 10;

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Verify TLS certificates (and use HTTPS only, except for loopback).
    pub tls_verify: bool,
    /// Docker's per-registry TLS directory: `<certs_dir>/<host[:port]>/`
    /// holds CAs (`*.crt`) and client certificates (`*.cert` + `*.key`).
    pub certs_dir: PathBuf,
    /// Docker's `config.json` with the credentials.
    pub docker_config: PathBuf,
    /// Attempts per request (the first included) before giving up.
    pub attempts: u32,
    /// First backoff delay; doubled on each retry.
    pub backoff: Duration,
    /// The longest `Retry-After` honoured.
    pub max_retry_after: Duration,
    /// How long a TCP connection (with its TLS handshake) may take.
    pub connect_timeout: Duration,
    /// How long the registry may stay silent: until an answer's headers,
    /// and between two reads of its body. A request or blob that stalls
    /// longer is retried (see `attempts`).
    pub read_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            tls_verify: true,
            certs_dir: PathBuf::from("/etc/docker/certs.d"),
            docker_config: default_config_path(),
            attempts: 5,
            backoff: Duration::from_millis(250),
            max_retry_after: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// Where a registry's API lives: Docker Hub's references say `docker.io`.
pub fn registry_host(registry: &str) -> &str {
    if registry == DEFAULT_DOMAIN || registry == "index.docker.io" {
        "registry-1.docker.io"
    } else {
        registry
    }
}

/// Whether Docker would allow plain HTTP to this registry by default:
/// `localhost` and 127.0.0.0/8 (and `[::1]`).
pub fn is_loopback(registry: &str) -> bool {
    let host = match registry.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.is_empty() => h,
        _ => registry,
    };
    if host == "localhost" || host == "[::1]" {
        return true;
    }
    host.parse::<std::net::Ipv4Addr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

struct AuthState {
    challenge: Challenge,
    tokens: TokenCache,
}

/// A client for one registry.
pub struct RegistryClient {
    registry: String,
    base: Url,
    http: Client,
    credentials: Option<Credentials>,
    auth: Mutex<AuthState>,
    options: ClientOptions,
}

/// The full chain of an error's causes, on one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// Whether an error (or one of its causes) is a timeout of ours.
pub(crate) fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(cause) = next {
        if cause
            .downcast_ref::<reqwest::Error>()
            .is_some_and(|r| r.is_timeout())
        {
            return true;
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return true;
            }
            // An io::Error's source() skips the error it wraps.
            if let Some(inner) = io.get_ref() {
                next = Some(inner);
                continue;
            }
        }
        next = cause.source();
    }
    false
}

/// One line for a failed request or read; a timeout says that the
/// registry stalled, and for how long.
pub(crate) fn transfer_error(
    e: &(dyn std::error::Error + 'static),
    read_timeout: Duration,
) -> String {
    if is_timeout(e) {
        format!(
            "stalled: the registry sent nothing for {}s",
            read_timeout.as_secs_f64()
        )
    } else {
        error_chain(e)
    }
}

/// The HTTP client for one host: timeouts, no proxy for loopback, and the
/// host's `certs.d` CAs and client certificate (also used to fetch an
/// `import` URL).
pub(crate) fn build_http(registry: &str, options: &ClientOptions) -> Result<Client, RegistryError> {
    let mut builder = Client::builder()
        .user_agent(concat!("strata/", env!("CARGO_PKG_VERSION")))
        // reqwest's blocking client applies this timeout to the wait for
        // an answer's headers and to each read of its body separately: an
        // inactivity timeout, not a bound on the whole transfer. Requests
        // that send a body extend it ([`upload_timeout`]).
        .timeout(options.read_timeout)
        .connect_timeout(options.connect_timeout)
        .tcp_keepalive(Duration::from_secs(30))
        // Sent data left unacknowledged this long drops the connection.
        .tcp_user_timeout(options.read_timeout)
        .no_proxy_for_loopback(registry);
    if !options.tls_verify {
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    let dir = options.certs_dir.join(registry);
    if let Ok(items) = std::fs::read_dir(&dir) {
        let mut paths: Vec<PathBuf> = items.flatten().map(|item| item.path()).collect();
        paths.sort();
        let (certs, identity) = read_certs_dir(registry, &paths)?;
        builder = builder.tls_certs_merge(certs);
        if let Some(identity) = identity {
            builder = builder.identity(identity);
        }
    }
    builder.build().map_err(|e| RegistryError::Tls {
        registry: registry.to_string(),
        reason: error_chain(&e),
    })
}

/// What Docker reads from `certs.d/<host>/`: every `*.crt` is a CA to
/// trust; a `NAME.cert` with its `NAME.key` is a client certificate (the
/// first pair by name when there are several; one without the other is an
/// error, as in Docker).
fn read_certs_dir(
    registry: &str,
    paths: &[PathBuf],
) -> Result<(Vec<reqwest::Certificate>, Option<reqwest::Identity>), RegistryError> {
    let tls = |path: &Path, reason: String| RegistryError::Tls {
        registry: registry.to_string(),
        reason: format!("{}: {reason}", path.display()),
    };
    let read = |path: &Path| std::fs::read(path).map_err(|e| tls(path, e.to_string()));
    let mut certs = Vec::new();
    let mut identity = None;
    for path in paths {
        match path.extension().and_then(|e| e.to_str()) {
            Some("crt") => {
                let mut found = reqwest::Certificate::from_pem_bundle(&read(path)?)
                    .map_err(|e| tls(path, error_chain(&e)))?;
                certs.append(&mut found);
            }
            Some("cert") => {
                let key = path.with_extension("key");
                if !key.exists() {
                    return Err(tls(path, format!("missing key {}", key.display())));
                }
                if identity.is_none() {
                    let mut pem = read(&key)?;
                    pem.push(b'\n');
                    pem.extend_from_slice(&read(path)?);
                    identity = Some(
                        reqwest::Identity::from_pem(&pem)
                            .map_err(|e| tls(path, error_chain(&e)))?,
                    );
                }
            }
            Some("key") if !path.with_extension("cert").exists() => {
                let cert = path.with_extension("cert");
                return Err(tls(
                    path,
                    format!("missing client certificate {}", cert.display()),
                ));
            }
            _ => {}
        }
    }
    Ok((certs, identity))
}

/// Loopback registries are never reached through a proxy.
trait NoProxyForLoopback {
    fn no_proxy_for_loopback(self, registry: &str) -> Self;
}
impl NoProxyForLoopback for reqwest::blocking::ClientBuilder {
    fn no_proxy_for_loopback(self, registry: &str) -> Self {
        if is_loopback(registry) {
            self.no_proxy()
        } else {
            self
        }
    }
}

impl RegistryClient {
    /// Finds the registry's scheme and challenge with `GET /v2/`.
    /// Credentials come from Docker's `config.json`.
    pub fn connect(
        registry: &str,
        options: &ClientOptions,
    ) -> Result<RegistryClient, RegistryError> {
        let credentials = load_credentials(&options.docker_config, registry)?;
        Self::connect_with(registry, options, credentials)
    }

    /// Like [`RegistryClient::connect`], with the given credentials.
    pub fn connect_with(
        registry: &str,
        options: &ClientOptions,
        credentials: Option<Credentials>,
    ) -> Result<RegistryClient, RegistryError> {
        let http = build_http(registry, options)?;
        let host = registry_host(registry);
        // A loopback port speaks one protocol, and Docker allows plain HTTP
        // there: probing it first costs one local round trip, where a TLS
        // handshake that fails costs the TLS stack's start-up. Elsewhere
        // HTTPS comes first, and plain HTTP only without verification.
        let schemes: &[&str] = if is_loopback(registry) {
            &["http", "https"]
        } else if !options.tls_verify {
            &["https", "http"]
        } else {
            &["https"]
        };
        // When no scheme works, the HTTPS failure is the one that says why.
        let mut first_error: Option<RegistryError> = None;
        for &scheme in schemes {
            let base =
                Url::parse(&format!("{scheme}://{host}/")).map_err(|e| RegistryError::Connect {
                    registry: registry.to_string(),
                    reason: e.to_string(),
                })?;
            let client = RegistryClient {
                registry: registry.to_string(),
                base,
                http: http.clone(),
                credentials: credentials.clone(),
                auth: Mutex::new(AuthState {
                    challenge: Challenge::None,
                    tokens: TokenCache::default(),
                }),
                options: options.clone(),
            };
            match client.ping() {
                Ok(status)
                    if scheme == "https"
                        || status == StatusCode::OK
                        || status == StatusCode::UNAUTHORIZED =>
                {
                    return Ok(client);
                }
                Ok(status) => {
                    first_error.get_or_insert(RegistryError::Connect {
                        registry: registry.to_string(),
                        reason: format!("{scheme}: /v2/ answered {status}; not a registry"),
                    });
                }
                Err(e) if scheme == "https" => first_error = Some(e),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or(RegistryError::Connect {
            registry: registry.to_string(),
            reason: "no scheme to try".into(),
        }))
    }

    /// `GET /v2/`, retried on 5xx and dropped connections; remembers the
    /// challenge of a 401.
    fn ping(&self) -> Result<StatusCode, RegistryError> {
        let url = self.url("v2/")?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.http.get(url.clone()).send() {
                Ok(resp) => {
                    let status = resp.status();
                    if status.is_server_error() && attempt < self.options.attempts {
                        std::thread::sleep(self.backoff(attempt));
                        continue;
                    }
                    if status == StatusCode::UNAUTHORIZED {
                        self.remember_challenge(resp.headers());
                    }
                    return Ok(status);
                }
                Err(e) => {
                    let text = error_chain(&e);
                    let tls = self.base.scheme() == "https"
                        && (text.contains("certificate") || text.contains("Certificate"));
                    if tls {
                        return Err(RegistryError::Tls {
                            registry: self.registry.clone(),
                            reason: text,
                        });
                    }
                    return Err(RegistryError::Connect {
                        registry: self.registry.clone(),
                        reason: format!("{url}: {text}"),
                    });
                }
            }
        }
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// A URL on the registry (`path` relative to its root), or an absolute
    /// one (a `Location` header) resolved against it.
    pub fn url(&self, path: &str) -> Result<Url, RegistryError> {
        self.base.join(path).map_err(|e| RegistryError::Transport {
            what: format!("{}/{path}", self.registry),
            reason: format!("invalid URL: {e}"),
        })
    }

    /// The time allowed for a request that sends `bytes` of body before
    /// its answer: the read timeout plus the body at [`MIN_UPLOAD_RATE`]
    /// (reqwest bounds sending the body and waiting for the headers as
    /// one wait).
    pub(crate) fn upload_timeout(&self, bytes: u64) -> Duration {
        self.options
            .read_timeout
            .saturating_add(Duration::from_secs(bytes / MIN_UPLOAD_RATE))
    }

    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        self.options
            .backoff
            .saturating_mul(1 << attempt.saturating_sub(1).min(6))
    }

    fn remember_challenge(&self, headers: &HeaderMap) {
        let found = headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(parse_challenge);
        if let Some(challenge) = found {
            if let Ok(mut state) = self.auth.lock() {
                state.challenge = challenge;
            }
        }
    }

    fn challenge(&self) -> Challenge {
        self.auth
            .lock()
            .map(|s| s.challenge.clone())
            .unwrap_or_default()
    }

    /// The `Authorization` value for a request needing `scopes`, fetching a
    /// token if the registry wants one and none is cached.
    fn authorization(
        &self,
        scopes: &[String],
        what: &str,
    ) -> Result<Option<String>, RegistryError> {
        match self.challenge() {
            Challenge::None => Ok(None),
            Challenge::Basic => Ok(self.credentials.as_ref().map(basic_header)),
            Challenge::Bearer { realm, service } => {
                let key = scope_key(scopes);
                if let Some(token) = self
                    .auth
                    .lock()
                    .ok()
                    .and_then(|s| s.tokens.get(&key).map(str::to_string))
                {
                    return Ok(Some(format!("Bearer {token}")));
                }
                let (token, lifetime) =
                    self.fetch_token(&realm, service.as_deref(), scopes, what)?;
                if let Ok(mut state) = self.auth.lock() {
                    state.tokens.insert(key, token.clone(), lifetime);
                }
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    fn forget_token(&self, scopes: &[String]) {
        if let Ok(mut state) = self.auth.lock() {
            state.tokens.remove(&scope_key(scopes));
        }
    }

    /// The token flow: `GET realm?service=..&scope=..` with Basic
    /// credentials when the user has some.
    fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        what: &str,
    ) -> Result<(String, Duration), RegistryError> {
        let transport = |reason: String| RegistryError::Transport {
            what: format!("token for {what} from {realm}"),
            reason,
        };
        let mut url = Url::parse(realm).map_err(|e| transport(format!("invalid realm: {e}")))?;
        // As Docker: credentials for a registry reached over HTTPS never go
        // to a realm over plain HTTP, unless the user said the registry's
        // transport need not be secure (`--tls-verify=false`).
        if self.credentials.is_some()
            && self.base.scheme() == "https"
            && url.scheme() != "https"
            && self.options.tls_verify
        {
            return Err(RegistryError::InsecureRealm {
                registry: self.registry.clone(),
                realm: realm.to_string(),
            });
        }
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            for scope in scopes {
                query.append_pair("scope", scope);
            }
        }
        let mut attempt = 0;
        let resp = loop {
            attempt += 1;
            let mut request = self.http.get(url.clone());
            if let Some(credentials) = &self.credentials {
                request = request.header(AUTHORIZATION, basic_header(credentials));
            }
            match request.send() {
                Ok(resp) if resp.status().is_server_error() && attempt < self.options.attempts => {}
                Ok(resp) => break resp,
                Err(e) if attempt < self.options.attempts => {
                    tracing::debug!("token request: {}", error_chain(&e))
                }
                Err(e) => return Err(transport(error_chain(&e))),
            }
            std::thread::sleep(self.backoff(attempt));
        };
        match resp.status() {
            s if s.is_success() => {}
            StatusCode::UNAUTHORIZED => {
                return Err(RegistryError::Unauthorized {
                    registry: self.registry.clone(),
                    what: what.to_string(),
                })
            }
            StatusCode::FORBIDDEN => {
                return Err(RegistryError::Denied {
                    what: what.to_string(),
                })
            }
            s => return Err(transport(format!("token server answered {s}"))),
        }
        let body = read_limited(resp, 1 << 20, what)?;
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| transport(format!("invalid token answer: {e}")))?;
        parsed
            .into_token()
            .ok_or_else(|| transport("the token answer has no token".into()))
    }

    /// Sends a request built by `make` (called again for each attempt),
    /// authenticated for `scopes`. Retries dropped connections, 5xx and 429;
    /// answers a 401 by (re)authenticating once. Returns any other answer,
    /// success or not, for the caller to interpret.
    pub fn send(
        &self,
        what: &str,
        scopes: &[String],
        make: &dyn Fn(&Client) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let mut attempt = 0;
        let mut reauthenticated = false;
        loop {
            attempt += 1;
            let mut request = make(&self.http);
            if let Some(value) = self.authorization(scopes, what)? {
                request = request.header(AUTHORIZATION, value);
            }
            let last = attempt >= self.options.attempts;
            match request.send() {
                Err(e) => {
                    let reason = transfer_error(&e, self.options.read_timeout);
                    if last {
                        return Err(RegistryError::Transport {
                            what: what.to_string(),
                            reason: format!("{reason} (gave up after {attempt} attempts)"),
                        });
                    }
                    tracing::debug!("{what}: {reason}; retrying");
                    std::thread::sleep(self.backoff(attempt));
                }
                Ok(resp) => {
                    let status = resp.status();
                    if status == StatusCode::UNAUTHORIZED {
                        let had_credentials =
                            self.credentials.is_some() || self.challenge() != Challenge::None;
                        if reauthenticated
                            || (!had_credentials && !resp.headers().contains_key(WWW_AUTHENTICATE))
                        {
                            return Err(RegistryError::Unauthorized {
                                registry: self.registry.clone(),
                                what: what.to_string(),
                            });
                        }
                        reauthenticated = true;
                        self.remember_challenge(resp.headers());
                        self.forget_token(scopes);
                        attempt -= 1;
                        continue;
                    }
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        if last {
                            return Err(RegistryError::RateLimited {
                                what: what.to_string(),
                            });
                        }
                        let wait =
                            retry_after(resp.headers()).unwrap_or_else(|| self.backoff(attempt));
                        std::thread::sleep(wait.min(self.options.max_retry_after));
                        continue;
                    }
                    if status.is_server_error() && !last {
                        tracing::debug!("{what}: registry answered {status}; retrying");
                        std::thread::sleep(self.backoff(attempt));
                        continue;
                    }
                    return Ok(resp);
                }
            }
        }
    }

    /// `send`, then turns a non-success answer into an error.
    pub fn send_ok(
        &self,
        what: &str,
        scopes: &[String],
        make: &dyn Fn(&Client) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let resp = self.send(what, scopes, make)?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(status_error(resp, what))
        }
    }
}

/// `Retry-After` in seconds (HTTP dates are rare from registries; they
/// fall back to the backoff).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The distribution API's error body: `{"errors":[{"code":..,"message":..}]}`.
#[derive(serde::Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorItem>,
}
#[derive(serde::Deserialize)]
struct ErrorItem {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// One clear error for an unsuccessful answer.
pub fn status_error(resp: Response, what: &str) -> RegistryError {
    let status = resp.status();
    let mut body = Vec::new();
    let _ = resp.take(64 << 10).read_to_end(&mut body);
    let parsed = serde_json::from_slice::<ErrorBody>(&body).ok();
    let first = parsed.as_ref().and_then(|b| b.errors.first());
    let code = first.map(|e| e.code.as_str()).unwrap_or("");
    let message = first
        .map(|e| {
            if e.code.is_empty() {
                e.message.clone()
            } else {
                format!("{}: {}", e.code.to_lowercase(), e.message)
            }
        })
        .unwrap_or_else(|| {
            String::from_utf8_lossy(&body)
                .trim()
                .chars()
                .take(200)
                .collect()
        });
    match (status, code) {
        (_, "MANIFEST_UNKNOWN") => RegistryError::ManifestUnknown {
            reference: what.to_string(),
        },
        (StatusCode::NOT_FOUND, "")
        | (StatusCode::NOT_FOUND, "BLOB_UNKNOWN")
        | (StatusCode::NOT_FOUND, "NAME_UNKNOWN") => RegistryError::NotFound {
            what: what.to_string(),
        },
        (StatusCode::FORBIDDEN, _) | (_, "DENIED") => RegistryError::Denied {
            what: what.to_string(),
        },
        (StatusCode::TOO_MANY_REQUESTS, _) => RegistryError::RateLimited {
            what: what.to_string(),
        },
        _ => RegistryError::Status {
            what: what.to_string(),
            status: status.as_u16(),
            message,
        },
    }
}

/// Reads a whole (small) body, refusing more than `limit` bytes.
pub fn read_limited(resp: Response, limit: u64, what: &str) -> Result<Vec<u8>, RegistryError> {
    if resp.content_length().is_some_and(|len| len > limit) {
        return Err(RegistryError::TooLarge {
            what: what.to_string(),
            limit,
        });
    }
    let mut body = Vec::new();
    resp.take(limit + 1)
        .read_to_end(&mut body)
        .map_err(|e| RegistryError::Transport {
            what: what.to_string(),
            reason: error_chain(&e),
        })?;
    if body.len() as u64 > limit {
        return Err(RegistryError::TooLarge {
            what: what.to_string(),
            limit,
        });
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_hub_hosts() {
        for yes in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.3.2.1",
            "[::1]:5000",
        ] {
            assert!(is_loopback(yes), "{yes}");
        }
        for no in [
            "registry.example",
            "10.0.0.1:5000",
            "localhost.example:5000",
            "128.0.0.1",
        ] {
            assert!(!is_loopback(no), "{no}");
        }
        assert_eq!(registry_host("docker.io"), "registry-1.docker.io");
        assert_eq!(registry_host("quay.io"), "quay.io");
    }

    #[test]
    fn retry_after_in_seconds() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), None);
    }
}
