//! Image references, normalised as Docker does: `debian` is
//! `docker.io/library/debian:latest`; `host:port/name:tag`;
//! `name@sha256:<hex>`.

use std::fmt;

use crate::digest::Digest;

pub const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DOMAIN: &str = "index.docker.io";
pub const DEFAULT_TAG: &str = "latest";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host, with port if any (`docker.io`, `localhost:5000`).
    pub domain: String,
    /// Repository path (`library/debian`, `team/app`).
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid reference format: {input:?}: {reason}")]
pub struct ReferenceError {
    pub input: String,
    pub reason: &'static str,
}

impl Reference {
    /// Parses and normalises a reference; a reference with neither tag nor
    /// digest gets `:latest`.
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        let mut r = Self::parse_loose(input)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some(DEFAULT_TAG.to_string());
        }
        Ok(r)
    }

    /// Parses without adding a default tag.
    pub fn parse_loose(input: &str) -> Result<Reference, ReferenceError> {
        let err = |reason| ReferenceError {
            input: input.to_string(),
            reason,
        };
        if input.is_empty() {
            return Err(err("empty reference"));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((rest, d)) => (
                rest,
                Some(d.parse::<Digest>().map_err(|_| err("invalid digest"))?),
            ),
            None => (input, None),
        };
        // A tag follows the last ':' that comes after the last '/'.
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            if !valid_tag(tag) {
                return Err(err("invalid tag"));
            }
        }
        if name.is_empty() || name.len() > 255 {
            return Err(err("repository name must be 1 to 255 characters"));
        }
        let (domain, path) = split_domain(name);
        if domain.is_empty() || !valid_domain(&domain) {
            return Err(err("invalid registry host"));
        }
        if path.is_empty() || !path.split('/').all(valid_component) {
            return Err(err(
                "repository name must be lowercase letters, digits and separators (. _ __ -)",
            ));
        }
        Ok(Reference {
            domain,
            path,
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// `docker.io/library/debian` (no tag or digest).
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The repository as Docker shows it: `debian`, `user/app`,
    /// `localhost:5000/app`.
    pub fn familiar_repository(&self) -> String {
        familiar(&self.repository())
    }

    /// The reference as Docker prints it in messages (`debian:latest`).
    pub fn familiar(&self) -> String {
        familiar(&self.to_string())
    }

    /// The same repository with another tag.
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: Some(tag.to_string()),
            digest: None,
        }
    }

    /// `repo@digest` form.
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: None,
            digest: Some(digest),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Shortens a fully qualified name the way Docker displays it.
pub fn familiar(full: &str) -> String {
    if let Some(rest) = full.strip_prefix("docker.io/") {
        if let Some(short) = rest.strip_prefix("library/") {
            if !short.contains('/') {
                return short.to_string();
            }
        }
        return rest.to_string();
    }
    full.to_string()
}

fn split_domain(name: &str) -> (String, String) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.')
                || first.contains(':')
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            let domain = if first == LEGACY_DOMAIN {
                DEFAULT_DOMAIN
            } else {
                first
            };
            let path = if domain == DEFAULT_DOMAIN && !rest.contains('/') {
                format!("library/{rest}")
            } else {
                rest.to_string()
            };
            (domain.to_string(), path)
        }
        _ => {
            let path = if name.contains('/') {
                name.to_string()
            } else {
                format!("library/{name}")
            };
            (DEFAULT_DOMAIN.to_string(), path)
        }
    }
}

fn valid_domain(domain: &str) -> bool {
    let (host, port) = match domain.rsplit_once(':') {
        Some((h, p)) if !h.contains(']') || h.ends_with(']') => (h, Some(p)),
        _ => (domain, None),
    };
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    if host.starts_with('[') && host.ends_with(']') {
        return host.len() > 2;
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[\w][\w.-]{0,127}`
pub fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&x| x.is_ascii_alphanumeric() || x == b'_' || x == b'.' || x == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(norm("debian"), "docker.io/library/debian:latest");
        assert_eq!(norm("user/app:1.0"), "docker.io/user/app:1.0");
        assert_eq!(norm("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(norm("127.0.0.1:5000/a/b:v2"), "127.0.0.1:5000/a/b:v2");
        assert_eq!(
            norm("index.docker.io/debian"),
            "docker.io/library/debian:latest"
        );
        assert_eq!(norm("localhost/app"), "localhost/app:latest");
        let d = Digest::of(b"x");
        assert_eq!(
            norm(&format!("debian@{d}")),
            format!("docker.io/library/debian@{d}")
        );
        assert_eq!(
            Reference::parse("debian").unwrap().familiar(),
            "debian:latest"
        );
        assert_eq!(Reference::parse("a/b:c").unwrap().familiar(), "a/b:c");
    }

    #[test]
    fn rejects_invalid() {
        for bad in [
            "",
            "UPPER",
            "a:",
            "a:-x",
            "a@sha256:12",
            "a//b",
            "a/",
            ":tag",
            "-a",
            "a..b",
            "host:port/x",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
