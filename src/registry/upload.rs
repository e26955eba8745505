//! Blob uploads: `HEAD` to see whether the registry has a blob,
//! cross-repository mounts, and uploads, monolithic (`POST` then one `PUT`)
//! or chunked (`PATCH` with `Content-Range` per chunk, then `PUT`).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use reqwest::blocking::Body;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION};
use reqwest::{StatusCode, Url};

use super::client::{status_error, RegistryClient};
use super::RegistryError;
use crate::digest::Digest;

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

/// Where a blob's bytes come from: memory, or a file (re-read on retry).
#[derive(Clone, Copy)]
pub enum BlobSource<'a> {
    Bytes(&'a [u8]),
    File(&'a Path),
}

impl BlobSource<'_> {
    fn body(&self, offset: u64, len: u64) -> io::Result<Body> {
        match self {
            BlobSource::Bytes(data) => Ok(Body::from(
                data[offset as usize..(offset + len) as usize].to_vec(),
            )),
            BlobSource::File(path) => {
                let mut file = File::open(path)?;
                file.seek(SeekFrom::Start(offset))?;
                Ok(Body::sized(file.take(len), len))
            }
        }
    }
}

/// Uploads a blob of `size` bytes: in one `PUT` when it is at most
/// `chunk_size`, else in `PATCH` chunks of `chunk_size`. `progress` hears
/// the bytes sent after each request. A failed session is started over
/// (the registry discards its partial upload).
pub fn upload_blob(
    client: &RegistryClient,
    path: &str,
    digest: &Digest,
    size: u64,
    source: BlobSource<'_>,
    chunk_size: u64,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(), RegistryError> {
    let what = format!("upload of {digest} to {}/{path}", client.registry());
    let mut attempt = 0;
    loop {
        attempt += 1;
        match upload_session(
            client,
            path,
            digest,
            size,
            source,
            chunk_size.max(1),
            progress,
            &what,
        ) {
            Ok(()) => return Ok(()),
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

#[allow(clippy::too_many_arguments)]
fn upload_session(
    client: &RegistryClient,
    path: &str,
    digest: &Digest,
    size: u64,
    source: BlobSource<'_>,
    chunk_size: u64,
    progress: &(dyn Fn(u64) + Sync),
    what: &str,
) -> Result<(), RegistryError> {
    let scopes = push_scopes(path, None);
    let read_error = |e: io::Error| RegistryError::Transport {
        what: what.to_string(),
        reason: e.to_string(),
    };
    let mut location = start_upload(client, path, what)?;
    if size <= chunk_size {
        source.body(0, size).map_err(read_error)?;
        let url = with_digest(location, digest);
        let resp = client.send(what, &scopes, &|http| {
            let request = http
                .put(url.clone())
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, size.to_string());
            match source.body(0, size) {
                Ok(body) => request.body(body),
                // Unreadable now means unreadable on every try: send nothing, fail below.
                Err(_) => request.body(Vec::new()),
            }
        })?;
        if resp.status() != StatusCode::CREATED {
            return Err(status_error(resp, what));
        }
        progress(size);
        return Ok(());
    }
    let mut offset = 0u64;
    while offset < size {
        let len = chunk_size.min(size - offset);
        let url = location.clone();
        source.body(offset, len).map_err(read_error)?;
        let resp = client.send(what, &scopes, &|http| {
            let request = http
                .patch(url.clone())
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_RANGE, format!("{}-{}", offset, offset + len - 1))
                .header(CONTENT_LENGTH, len.to_string());
            match source.body(offset, len) {
                Ok(body) => request.body(body),
                Err(_) => request.body(Vec::new()),
            }
        })?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(status_error(resp, what));
        }
        location = self::location(client, &resp, what)?;
        offset += len;
        progress(offset);
    }
    let url = with_digest(location, digest);
    let resp = client.send(what, &scopes, &|http| {
        http.put(url.clone()).header(CONTENT_LENGTH, "0")
    })?;
    if resp.status() != StatusCode::CREATED {
        return Err(status_error(resp, what));
    }
    Ok(())
}
