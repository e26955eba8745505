//! Blob uploads: `HEAD` to see whether the registry has a blob,
//! cross-repository mounts, and uploads, monolithic (`POST` then one `PUT`)
//! or chunked (`PATCH` with `Content-Range` per chunk, then `PUT`).

use std::io::{self, Read};

use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION};
use reqwest::{StatusCode, Url};

use super::client::{status_error, RegistryClient};
use super::RegistryError;
use crate::digest::{Digest, Hasher};

/// `repository:<path>:pull,push`, plus pull on a mount's source.
pub fn push_scopes(path: &str, mount_from: Option<&str>) -> Vec<String> {
    let mut scopes = vec![format!("repository:{path}:pull,push")];
    if let Some(from) = mount_from {
        scopes.push(format!("repository:{from}:pull"));
    }
    scopes
}

/// Whether the repository has the blob, with the size the registry reports.
pub fn blob_exists(
    client: &RegistryClient,
    path: &str,
    digest: &Digest,
) -> Result<Option<u64>, RegistryError> {
    let what = format!("{}/{path}@{digest}", client.registry());
    let url = client.url(&format!("v2/{path}/blobs/{digest}"))?;
    let resp = client.send(&what, &push_scopes(path, None), &|http| {
        http.head(url.clone())
    })?;
    match resp.status() {
        s if s.is_success() => Ok(Some(resp.content_length().unwrap_or(0))),
        StatusCode::NOT_FOUND => Ok(None),
        _ => Err(status_error(resp, &what)),
    }
}

/// Asks the registry to mount a blob from another repository. `Ok(true)`
/// when it did; `Ok(false)` when it started an ordinary upload instead.
pub fn mount_blob(
    client: &RegistryClient,
    path: &str,
    digest: &Digest,
    from: &str,
) -> Result<bool, RegistryError> {
    let what = format!(
        "mount {digest} from {from} into {}/{path}",
        client.registry()
    );
    let mut url = client.url(&format!("v2/{path}/blobs/uploads/"))?;
    url.query_pairs_mut()
        .append_pair("mount", &digest.to_string())
        .append_pair("from", from);
    let resp = client.send(&what, &push_scopes(path, Some(from)), &|http| {
        http.post(url.clone()).header(CONTENT_LENGTH, "0")
    })?;
    match resp.status() {
        StatusCode::CREATED => Ok(true),
        StatusCode::ACCEPTED => {
            // An upload session we will not use; let the registry forget it.
            if let Ok(location) = location(client, &resp, &what) {
                let _ = client.send(&what, &push_scopes(path, None), &|http| {
                    http.delete(location.clone())
                });
            }
            Ok(false)
        }
        _ => Err(status_error(resp, &what)),
    }
}

fn location(
    client: &RegistryClient,
    resp: &reqwest::blocking::Response,
    what: &str,
) -> Result<Url, RegistryError> {
    let value = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| RegistryError::Transport {
            what: what.to_string(),
            reason: "the registry gave no upload location".into(),
        })?;
    client.url(value)
}

fn start_upload(client: &RegistryClient, path: &str, what: &str) -> Result<Url, RegistryError> {
    let url = client.url(&format!("v2/{path}/blobs/uploads/"))?;
    let resp = client.send(what, &push_scopes(path, None), &|http| {
        http.post(url.clone()).header(CONTENT_LENGTH, "0")
    })?;
    if resp.status() != StatusCode::ACCEPTED {
        return Err(status_error(resp, what));
    }
    location(client, &resp, what)
}

fn with_digest(mut url: Url, digest: &Digest) -> Url {
    url.query_pairs_mut()
        .append_pair("digest", &digest.to_string());
    url
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_full(reader: &mut dyn Read, buf: &mut Vec<u8>, limit: usize) -> io::Result<usize> {
    buf.clear();
    buf.resize(limit, 0);
    let mut got = 0;
    while got < limit {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    Ok(got)
}

/// Opens the bytes of a blob to upload, afresh for each attempt.
pub type OpenBlob<'a> = dyn FnMut() -> Result<Box<dyn Read + 'a>, RegistryError> + 'a;

/// Uploads a blob whose digest may be known only at its end. A blob that
/// fits in one chunk goes monolithically (`POST`, then `PUT ?digest=` with
/// the bytes); a larger one in `PATCH` requests of `chunk_size` bytes with
/// `Content-Range`, then an empty `PUT ?digest=`. The bytes are hashed as
/// they go; `expected`, when given, must match. A failed session is
/// started over from a fresh reader. Returns the digest and size.
pub fn upload_blob(
    client: &RegistryClient,
    path: &str,
    expected: Option<&Digest>,
    open: &mut OpenBlob<'_>,
    chunk_size: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(Digest, u64), RegistryError> {
    let what = match expected {
        Some(d) => format!("upload of {d} to {}/{path}", client.registry()),
        None => format!("upload to {}/{path}", client.registry()),
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut reader = open()?;
        match upload_session(
            client,
            path,
            expected,
            &mut *reader,
            chunk_size.max(1),
            progress,
            &what,
        ) {
            Ok(done) => return Ok(done),
            Err(e @ (RegistryError::Transport { .. } | RegistryError::Status { .. }))
                if attempt < client.options().attempts =>
            {
                tracing::debug!("{what}: {e}; starting over");
                std::thread::sleep(client.backoff(attempt));
            }
            Err(e) => return Err(e),
        }
    }
}

fn upload_session(
    client: &RegistryClient,
    path: &str,
    expected: Option<&Digest>,
    reader: &mut dyn Read,
    chunk_size: usize,
    progress: &(dyn Fn(u64) + Sync),
    what: &str,
) -> Result<(Digest, u64), RegistryError> {
    let scopes = push_scopes(path, None);
    let read_error = |e: io::Error| RegistryError::Transport {
        what: what.to_string(),
        reason: format!("reading the blob: {e}"),
    };
    let mut location = start_upload(client, path, what)?;
    let mut hasher = Hasher::new();
    let mut chunk = Vec::new();
    let mut offset = 0u64;
    loop {
        let n = read_full(reader, &mut chunk, chunk_size).map_err(read_error)?;
        hasher.update(&chunk);
        if offset == 0 && n < chunk_size {
            // The whole blob in one request.
            let digest = check_digest(hasher, expected, what)?;
            let url = with_digest(location, &digest);
            let resp = client.send(what, &scopes, &|http| {
                http.put(url.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, n.to_string())
                    .timeout(client.upload_timeout(n as u64))
                    .body(chunk.clone())
            })?;
            if resp.status() != StatusCode::CREATED {
                return Err(status_error(resp, what));
            }
            progress(n as u64);
            return Ok((digest, n as u64));
        }
        if n == 0 {
            break;
        }
        let url = location.clone();
        let range = format!("{}-{}", offset, offset + n as u64 - 1);
        let resp = client.send(what, &scopes, &|http| {
            http.patch(url.clone())
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_RANGE, range.clone())
                .header(CONTENT_LENGTH, n.to_string())
                .timeout(client.upload_timeout(n as u64))
                .body(chunk.clone())
        })?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(status_error(resp, what));
        }
        location = self::location(client, &resp, what)?;
        offset += n as u64;
        progress(offset);
        if n < chunk_size {
            break;
        }
    }
    let digest = check_digest(hasher, expected, what)?;
    let url = with_digest(location, &digest);
    let resp = client.send(what, &scopes, &|http| {
        http.put(url.clone()).header(CONTENT_LENGTH, "0")
    })?;
    if resp.status() != StatusCode::CREATED {
        return Err(status_error(resp, what));
    }
    Ok((digest, offset))
}

fn check_digest(
    hasher: Hasher,
    expected: Option<&Digest>,
    what: &str,
) -> Result<Digest, RegistryError> {
    let digest = hasher.finish();
    match expected {
        Some(e) if *e != digest => Err(RegistryError::DigestMismatch {
            what: what.to_string(),
            expected: e.to_string(),
            actual: digest.to_string(),
        }),
        _ => Ok(digest),
    }
}
