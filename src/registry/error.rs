use std::path::PathBuf;

use crate::image::{ImageError, LayerError};
use crate::store::StoreError;

/// Errors of the registry client. Each names the registry, reference,
/// repository or digest involved, so one line tells the user what failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Reference(#[from] crate::reference::ReferenceError),
    #[error("{registry}: cannot reach the registry: {reason}")]
    Connect { registry: String, reason: String },
    #[error("{registry}: TLS: {reason} (is the CA in /etc/docker/certs.d/{registry}/ca.crt? `--tls-verify=false` skips verification)")]
    Tls { registry: String, reason: String },
    #[error("{what}: unauthorized: authentication required (try `strata login {registry}`)")]
    Unauthorized { registry: String, what: String },
    #[error("{registry}: refusing to send credentials to the token realm {realm} over plain HTTP: the registry uses HTTPS (`--tls-verify=false` allows it)")]
    InsecureRealm { registry: String, realm: String },
    #[error("{what}: denied: requested access to the resource is denied")]
    Denied { what: String },
    #[error("{reference}: manifest unknown")]
    ManifestUnknown { reference: String },
    #[error("{what}: not found")]
    NotFound { what: String },
    #[error("{what}: toomanyrequests: the registry is rate limiting; try again later")]
    RateLimited { what: String },
    #[error("{what}: the registry answered {status}{}", if message.is_empty() { String::new() } else { format!(": {message}") })]
    Status {
        what: String,
        status: u16,
        message: String,
    },
    #[error("{what}: {reason}")]
    Transport { what: String, reason: String },
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("{what}: size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },
    #[error("{what}: size mismatch: the registry sent more than the {expected} bytes the descriptor gives")]
    TooLong { what: String, expected: u64 },
    #[error("{what}: larger than the limit of {limit} bytes")]
    TooLarge { what: String, limit: u64 },
    #[error("{reference}: invalid manifest: {reason}")]
    BadManifest { reference: String, reason: String },
    #[error("{reference}: invalid image config {digest}: {reason}")]
    BadConfig {
        reference: String,
        digest: String,
        reason: String,
    },
    #[error("{reference}: no matching manifest for {platform} in the manifest list entries")]
    NoMatchingPlatform { reference: String, platform: String },
    #[error("{reference}: layer {digest}: {source}")]
    Layer {
        reference: String,
        digest: String,
        source: Box<LayerError>,
    },
    #[error("{reference}: cannot push a reference with a digest; give a tag")]
    PushByDigest { reference: String },
    #[error("credentials {}: {reason}", path.display())]
    Credentials { path: PathBuf, reason: String },
    #[error("{}: {reason}", path.display())]
    ClientConfig { path: PathBuf, reason: String },
    #[error("credential helper docker-credential-{helper} ({server}): {reason}")]
    CredentialHelper {
        helper: String,
        server: String,
        reason: String,
    },
    #[error("invalid platform {platform:?}: expected os/arch[/variant]")]
    BadPlatform { platform: String },
    #[error("{what}: interrupted because another layer failed")]
    Aborted { what: String },
    #[error("store configuration: {0}")]
    StoreConfig(String),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Store(#[from] StoreError),
}
