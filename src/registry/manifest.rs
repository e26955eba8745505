//! Manifests on the wire: fetching one (verified against its digest,
//! at most 4 MiB), choosing a platform from an index, and platforms.

use reqwest::header::{ACCEPT, CONTENT_TYPE};

use super::client::{read_limited, status_error, RegistryClient};
use super::RegistryError;
use crate::digest::Digest;
use crate::image::oci::{self, Descriptor, Index};

/// Manifests larger than this are refused, as containerd and Docker do.
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;

const ACCEPTED: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// A manifest or index as the registry sent it.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
}

/// `repository:<path>:pull`.
pub fn pull_scope(path: &str) -> Vec<String> {
    vec![format!("repository:{path}:pull")]
}

/// Fetches `path`'s manifest by tag or digest. A manifest fetched by
/// digest must hash to it; one fetched by tag must hash to the
/// `Docker-Content-Digest` the registry announced, if it announced one.
pub fn fetch_manifest(
    client: &RegistryClient,
    path: &str,
    tag_or_digest: &str,
    what: &str,
) -> Result<FetchedManifest, RegistryError> {
    let url = client.url(&format!("v2/{path}/manifests/{tag_or_digest}"))?;
    let resp = client.send(what, &pull_scope(path), &|http| {
        http.get(url.clone()).header(ACCEPT, ACCEPTED)
    })?;
    if resp.status() == reqwest::StatusCode::NOT_FOUND {
        return Err(RegistryError::ManifestUnknown {
            reference: what.to_string(),
        });
    }
    if !resp.status().is_success() {
        return Err(status_error(resp, what));
    }
    let header_type = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
    let announced = resp
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = read_limited(resp, MAX_MANIFEST_SIZE, &format!("manifest {what}"))?;
    let digest = Digest::of(&bytes);
    let expected = match tag_or_digest.parse::<Digest>() {
        Ok(d) => Some(d.to_string()),
        Err(_) => announced.filter(|a| a.starts_with("sha256:")),
    };
    if let Some(expected) = expected {
        if expected != digest.to_string() {
            return Err(RegistryError::DigestMismatch {
                what: format!("manifest {what}"),
                expected,
                actual: digest.to_string(),
            });
        }
    }
    let body_type = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| {
            v.get("mediaType")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        });
    let media_type = body_type
        .or(header_type)
        .unwrap_or_else(|| oci::OCI_MANIFEST.to_string());
    Ok(FetchedManifest {
        bytes,
        media_type,
        digest,
    })
}

/// An image platform: `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this strata runs on, in OCI's words.
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", None),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            "riscv64" => ("riscv64", None),
            "s390x" => ("s390x", None),
            other => (other, None),
        };
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: variant.map(str::to_string),
        }
    }

    pub fn parse(text: &str) -> Result<Platform, RegistryError> {
        let bad = || RegistryError::BadPlatform {
            platform: text.to_string(),
        };
        let parts: Vec<&str> = text.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        match parts.as_slice() {
            [os, arch] => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, variant] => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(variant.to_string()),
            }),
            _ => Err(bad()),
        }
    }

    fn matches(&self, p: &oci::Platform) -> bool {
        if p.os != self.os || p.architecture != self.architecture {
            return false;
        }
        match (&self.variant, &p.variant) {
            (Some(want), Some(have)) => want == have,
            (Some(want), None) => self.architecture == "arm64" && want == "v8",
            (None, _) => true,
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// The index entry for `platform`: an exact variant match first, then any
/// entry of the right os and architecture.
pub fn choose_manifest<'a>(index: &'a Index, platform: &Platform) -> Option<&'a Descriptor> {
    let candidates: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| !oci::is_index_media_type(&d.media_type))
        .filter(|d| d.platform.as_ref().is_some_and(|p| platform.matches(p)))
        .collect();
    candidates
        .iter()
        .find(|d| d.platform.as_ref().and_then(|p| p.variant.as_ref()) == platform.variant.as_ref())
        .or(candidates.first())
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descriptor(arch: &str, variant: Option<&str>, n: u8) -> Descriptor {
        Descriptor {
            media_type: oci::OCI_MANIFEST.into(),
            digest: Digest::of(&[n]),
            size: 1,
            annotations: None,
            platform: Some(oci::Platform {
                architecture: arch.into(),
                os: "linux".into(),
                variant: variant.map(str::to_string),
                extra: Default::default(),
            }),
            extra: Default::default(),
        }
    }

    #[test]
    fn chooses_the_platform() {
        let index = Index {
            schema_version: 2,
            media_type: Some(oci::OCI_INDEX.into()),
            manifests: vec![
                descriptor("arm", Some("v6"), 1),
                descriptor("arm", Some("v7"), 2),
                descriptor("amd64", None, 3),
            ],
            annotations: None,
            extra: Default::default(),
        };
        let pick =
            |p: &str| choose_manifest(&index, &Platform::parse(p).unwrap()).map(|d| d.digest);
        assert_eq!(pick("linux/arm/v7"), Some(Digest::of(&[2])));
        assert_eq!(pick("linux/amd64"), Some(Digest::of(&[3])));
        assert_eq!(pick("linux/arm"), Some(Digest::of(&[1])));
        assert_eq!(pick("linux/s390x"), None);
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux//v7").is_err());
        assert_eq!(
            Platform::parse("linux/arm64/v8").unwrap().to_string(),
            "linux/arm64/v8"
        );
    }
}
