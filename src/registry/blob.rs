//! Blobs on the wire: small ones (configs) read whole and verified; layers
//! streamed through [`BlobReader`], which resumes a dropped or stalled
//! download with a `Range` request and never yields more than the
//! descriptor's size. A blob whose length differs from its descriptor's
//! (an answer's `Content-Length` or `Content-Range`, or a body that ends
//! early or goes on) fails at once: retrying cannot change it.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};

use reqwest::blocking::Response;
use reqwest::header::{CONTENT_RANGE, RANGE};
use reqwest::{StatusCode, Url};

use super::client::{
    error_chain, is_timeout, read_limited, status_error, transfer_error, RegistryClient,
};
use super::manifest::pull_scope;
use super::RegistryError;
use crate::digest::Digest;

/// Configs larger than this are refused.
pub const MAX_CONFIG_SIZE: u64 = 16 << 20;

/// Reconnections allowed for one blob in all.
const MAX_RESUMES: u32 = 64;

/// Fetches a small blob whole and verifies its digest and size.
pub fn fetch_small_blob(
    client: &RegistryClient,
    path: &str,
    digest: &Digest,
    size: u64,
    limit: u64,
) -> Result<Vec<u8>, RegistryError> {
    let what = format!("{}/{path}@{digest}", client.registry());
    if size > limit {
        return Err(RegistryError::TooLarge { what, limit });
    }
    let url = client.url(&format!("v2/{path}/blobs/{digest}"))?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let resp = client.send_ok(&what, &pull_scope(path), &|http| http.get(url.clone()))?;
        match read_limited(resp, limit, &what) {
            Ok(bytes) => return verify_bytes(bytes, digest, size, &what),
            Err(RegistryError::Transport { .. }) if attempt < client.options().attempts => {
                std::thread::sleep(client.backoff(attempt));
            }
            Err(e) => return Err(e),
        }
    }
}

fn verify_bytes(
    bytes: Vec<u8>,
    digest: &Digest,
    size: u64,
    what: &str,
) -> Result<Vec<u8>, RegistryError> {
    if bytes.len() as u64 != size {
        return Err(RegistryError::SizeMismatch {
            what: what.to_string(),
            expected: size,
            actual: bytes.len() as u64,
        });
    }
    let actual = Digest::of(&bytes);
    if actual != *digest {
        return Err(RegistryError::DigestMismatch {
            what: what.to_string(),
            expected: digest.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(bytes)
}

/// A layer blob as a reader: exactly `size` bytes, reconnecting with a
/// `Range` request when the connection drops. The caller verifies the
/// digest of what it read. When a read fails, [`BlobReader::take_error`]
/// says why in registry terms.
pub struct BlobReader<'a> {
    client: &'a RegistryClient,
    scopes: Vec<String>,
    url: Url,
    what: String,
    size: u64,
    offset: u64,
    response: Option<Response>,
    /// Whether the current answer said where its body ends (a length, or
    /// chunked framing): then a clean end before `size` is the blob's end.
    framed: bool,
    failures_in_a_row: u32,
    resumes: u32,
    stalls: u32,
    abort: &'a AtomicBool,
    progress: &'a (dyn Fn(u64) + Sync),
    error: Option<RegistryError>,
}

impl<'a> BlobReader<'a> {
    pub fn new(
        client: &'a RegistryClient,
        path: &str,
        digest: &Digest,
        size: u64,
        abort: &'a AtomicBool,
        progress: &'a (dyn Fn(u64) + Sync),
    ) -> Result<BlobReader<'a>, RegistryError> {
        Ok(BlobReader {
            client,
            scopes: pull_scope(path),
            url: client.url(&format!("v2/{path}/blobs/{digest}"))?,
            what: format!("{}/{path}@{digest}", client.registry()),
            size,
            offset: 0,
            response: None,
            framed: false,
            failures_in_a_row: 0,
            resumes: 0,
            stalls: 0,
            abort,
            progress,
            error: None,
        })
    }

    /// Why the last read failed, if it was the registry's doing.
    pub fn take_error(&mut self) -> Option<RegistryError> {
        self.error.take()
    }

    fn open(&mut self) -> Result<Response, RegistryError> {
        let offset = self.offset;
        let url = self.url.clone();
        let resp = self.client.send(&self.what, &self.scopes, &|http| {
            let request = http.get(url.clone());
            if offset > 0 {
                request.header(RANGE, format!("bytes={offset}-"))
            } else {
                request
            }
        })?;
        let mismatch = |actual: u64| RegistryError::SizeMismatch {
            what: self.what.clone(),
            expected: self.size,
            actual,
        };
        match resp.status() {
            StatusCode::OK => {
                if let Some(total) = resp.content_length().filter(|t| *t != self.size) {
                    return Err(mismatch(total));
                }
                self.framed = is_framed(&resp);
                let mut resp = resp;
                if offset > 0 {
                    // The server ignored the range: skip what we already have.
                    let skipped = io::copy(&mut (&mut resp).take(offset), &mut io::sink())
                        .map_err(|e| self.transport(error_chain(&e)))?;
                    if skipped != offset {
                        return Err(self.transport(format!(
                            "connection closed while skipping to byte {offset}"
                        )));
                    }
                }
                Ok(resp)
            }
            StatusCode::PARTIAL_CONTENT => {
                let range = resp
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if !range.starts_with(&format!("bytes {offset}-")) {
                    return Err(self.transport(format!(
                        "asked for bytes from {offset}, got range {range:?}"
                    )));
                }
                let total = range
                    .rsplit_once('/')
                    .and_then(|(_, t)| t.parse::<u64>().ok());
                let total = total.or(resp.content_length().map(|rest| offset + rest));
                if let Some(total) = total.filter(|t| *t != self.size) {
                    return Err(mismatch(total));
                }
                self.framed = is_framed(&resp);
                Ok(resp)
            }
            StatusCode::RANGE_NOT_SATISFIABLE => Err(RegistryError::SizeMismatch {
                what: self.what.clone(),
                expected: self.size,
                actual: offset,
            }),
            _ => Err(status_error(resp, &self.what)),
        }
    }

    fn transport(&self, reason: String) -> RegistryError {
        RegistryError::Transport {
            what: self.what.clone(),
            reason,
        }
    }

    fn fail(&mut self, error: RegistryError) -> io::Error {
        let text = error.to_string();
        self.error = Some(error);
        io::Error::other(text)
    }

    /// At the descriptor's size: a body without a length must end here
    /// (one with a length was checked when it was opened).
    fn check_end(&mut self) -> Result<(), io::Error> {
        let Some(response) = self.response.as_mut() else {
            return Ok(());
        };
        if response.content_length().is_some() {
            return Ok(());
        }
        let mut one = [0u8; 1];
        loop {
            return match response.read(&mut one) {
                Ok(0) => Ok(()),
                Ok(_) => {
                    let error = RegistryError::TooLong {
                        what: self.what.clone(),
                        expected: self.size,
                    };
                    Err(self.fail(error))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // The bytes are all here; a failure after them changes nothing.
                Err(_) => Ok(()),
            };
        }
    }

    /// After a dropped connection: wait, then let the next read reconnect;
    /// or give up when it keeps failing.
    /// A stall (`stalled`: nothing for the read timeout) counts against
    /// the blob's attempts even after progress: a registry that sends a
    /// little and then stalls again would otherwise hold the pull for
    /// `MAX_RESUMES` read timeouts.
    fn after_drop(&mut self, reason: String, stalled: bool) -> Result<(), io::Error> {
        self.response = None;
        self.failures_in_a_row += 1;
        self.resumes += 1;
        self.stalls += u32::from(stalled);
        let attempts = self.client.options().attempts;
        if self.failures_in_a_row >= attempts
            || self.stalls >= attempts
            || self.resumes > MAX_RESUMES
        {
            let error = self.transport(format!(
                "{reason} (at byte {} of {}; gave up after {} attempts)",
                self.offset, self.size, self.resumes
            ));
            return Err(self.fail(error));
        }
        tracing::debug!("{}: {reason} at byte {}; resuming", self.what, self.offset);
        std::thread::sleep(self.client.backoff(self.failures_in_a_row));
        Ok(())
    }
}

/// Whether an answer's body has framing (`Content-Length`, or chunked):
/// hyper then reports a connection that closes before its end as an
/// error, and a clean end is the end of the body.
fn is_framed(resp: &Response) -> bool {
    resp.content_length().is_some()
        || resp
            .headers()
            .get(reqwest::header::TRANSFER_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
}

impl Read for BlobReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.offset >= self.size || buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.abort.load(Ordering::Relaxed) {
                let error = RegistryError::Aborted {
                    what: self.what.clone(),
                };
                return Err(self.fail(error));
            }
            let response = match self.response.as_mut() {
                Some(r) => r,
                None => match self.open() {
                    Ok(r) => self.response.insert(r),
                    Err(e @ RegistryError::Transport { .. }) => {
                        self.after_drop(e.to_string(), false)?;
                        continue;
                    }
                    Err(e) => return Err(self.fail(e)),
                },
            };
            let want = buf
                .len()
                .min((self.size - self.offset).min(usize::MAX as u64) as usize);
            match response.read(&mut buf[..want]) {
                // The answer is complete (hyper fails a body cut short of
                // its framing), so the blob is this long.
                Ok(0) if self.framed => {
                    let error = RegistryError::SizeMismatch {
                        what: self.what.clone(),
                        expected: self.size,
                        actual: self.offset,
                    };
                    return Err(self.fail(error));
                }
                Ok(0) => self.after_drop("connection closed early".to_string(), false)?,
                Ok(n) => {
                    self.offset += n as u64;
                    self.failures_in_a_row = 0;
                    (self.progress)(self.offset);
                    if self.offset == self.size {
                        self.check_end()?;
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let reason = transfer_error(&e, self.client.options().read_timeout);
                    self.after_drop(reason, is_timeout(&e))?
                }
            }
        }
    }
}
