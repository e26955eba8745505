//! `import URL`: the tarball fetched over HTTP or HTTPS and streamed into
//! the import, never written to disk first. The HTTP client is the
//! registry client's for the URL's host (its timeouts, no proxy for
//! loopback, and `/etc/docker/certs.d/HOST:PORT/` CAs trusted beside
//! the system's for an https URL).

use reqwest::blocking::Response;

use super::ArchiveError;
use crate::registry::ClientOptions;

/// A download under way: read it to the end.
pub struct Download {
    pub response: Response,
    /// The length the server announced, if it did.
    pub length: Option<u64>,
}

/// Whether `source` is a URL `import` fetches (http:// or https://).
pub fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// Starts `GET url`; fails with one line naming the URL when it cannot
/// connect or the server does not answer 2xx.
pub fn open_url(url: &str, options: &ClientOptions) -> Result<Download, ArchiveError> {
    let fetch = |reason: String| ArchiveError::Fetch {
        url: url.to_string(),
        reason,
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| fetch(e.to_string()))?;
    let host = match (parsed.host_str(), parsed.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        (None, _) => return Err(fetch("no host in the URL".into())),
    };
    let http =
        crate::registry::client::build_http(&host, options).map_err(|e| fetch(e.to_string()))?;
    let response = http
        .get(parsed)
        .send()
        .map_err(|e| fetch(crate::registry::client::error_chain(&e)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(fetch(format!("server answered {status}")));
    }
    Ok(Download {
        length: response.content_length(),
        response,
    })
}
