//! One layer fetched by digest, for a caller that knows the image and the
//! layer but not the rest of the pull (containerd's remote-snapshotter
//! labels, see src/snapshotter/remote.rs): the image's manifest gives the
//! layer's size and media type, then the blob streams into the store as a
//! pulled layer does (decompressed, hashed, each file staged once). The
//! caller publishes the staging with its own rows.

use std::sync::atomic::AtomicBool;

use super::blob::BlobReader;
use super::client::{ClientOptions, RegistryClient};
use super::manifest::Platform;
use super::pull::{layer_error, resolve_manifest};
use super::RegistryError;
use crate::digest::Digest;
use crate::image::oci::{self, Descriptor};
use crate::image::{ingest_layer_on_threads, IngestedLayer, Limits};
use crate::reference::Reference;
use crate::store::{Staging, Store};

/// A layer downloaded into a staging that is not yet published.
pub struct FetchedLayer {
    pub staging: Staging,
    pub layer: IngestedLayer,
    pub descriptor: Descriptor,
}

/// The descriptor of layer `digest` in the image `reference` names (for
/// this host's platform, from an index).
pub fn find_layer(
    client: &RegistryClient,
    reference: &Reference,
    digest: &Digest,
) -> Result<Descriptor, RegistryError> {
    let (_, _, manifest) = resolve_manifest(client, reference, &Platform::host())?;
    let descriptor = manifest
        .layers
        .iter()
        .find(|l| l.digest == *digest)
        .ok_or_else(|| RegistryError::BadManifest {
            reference: reference.to_string(),
            reason: format!("has no layer {digest}"),
        })?;
    if !oci::is_layer_media_type(&descriptor.media_type) {
        return Err(RegistryError::BadManifest {
            reference: reference.to_string(),
            reason: format!("unsupported layer media type {:?}", descriptor.media_type),
        });
    }
    Ok(descriptor.clone())
}

/// Downloads layer `digest` of the image `reference` names into a new
/// staging; verifies its size and digest.
pub fn fetch_layer(
    store: &Store,
    reference: &Reference,
    digest: &Digest,
    options: &ClientOptions,
) -> Result<FetchedLayer, RegistryError> {
    let client = RegistryClient::connect(&reference.domain, options)?;
    let descriptor = find_layer(&client, reference, digest)?;
    let limits = Limits::for_root(store.root()).map_err(RegistryError::StoreConfig)?;
    let mut staging = store.begin_staging()?;
    let abort = AtomicBool::new(false);
    let stamp = staging.progress_stamp();
    let progress = move |_done: u64| stamp.touch();
    let what = reference.to_string();
    let mut reader = BlobReader::new(
        &client,
        &reference.path,
        digest,
        descriptor.size,
        &abort,
        &progress,
    )?;
    let layer = match ingest_layer_on_threads(store, &mut staging, &mut reader, &limits) {
        Ok(layer) => layer,
        Err(e) => {
            return Err(reader
                .take_error()
                .unwrap_or_else(|| layer_error(&what, digest, e)))
        }
    };
    drop(reader);
    let blob_what = format!("{}/{}@{digest}", client.registry(), reference.path);
    if layer.blob_size != descriptor.size {
        return Err(RegistryError::SizeMismatch {
            what: blob_what,
            expected: descriptor.size,
            actual: layer.blob_size,
        });
    }
    if layer.blob_digest != *digest {
        return Err(RegistryError::DigestMismatch {
            what: blob_what,
            expected: digest.to_string(),
            actual: layer.blob_digest.to_string(),
        });
    }
    Ok(FetchedLayer {
        staging,
        layer,
        descriptor,
    })
}
