//! Publishing a new image made here (import, commit): its config and a
//! manifest of uncompressed layers are staged beside the new layer's files,
//! and everything is recorded in one transaction.

use super::oci::{ImageConfig, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST};
use super::records::{record_image, ImageError, NewImage};
use super::{layer_info, record_layer, IngestedLayer, LayerError};
use crate::digest::Digest;
use crate::reference::Reference;
use crate::store::{Staging, Store, StoreError};

/// An OCI manifest for an image whose layers are stored uncompressed (what
/// load, import and commit record, and what save writes).
pub fn uncompressed_manifest(
    config_digest: &Digest,
    config_size: u64,
    layers: &[(Digest, u64)],
) -> Vec<u8> {
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest.to_string(), "size": config_size},
        "layers": layers
            .iter()
            .map(|(d, s)| serde_json::json!({"mediaType": OCI_LAYER, "digest": d.to_string(), "size": s}))
            .collect::<Vec<_>>(),
    });
    serde_json::to_vec(&manifest).unwrap_or_default()
}

/// Publishes `config` as a new image whose topmost layer is `new_layer`
/// (staged in `staging`); its other layers must already be stored.
/// Returns the image ID.
pub fn publish_image<E>(
    store: &Store,
    mut staging: Staging,
    new_layer: &IngestedLayer,
    config: ImageConfig,
    tags: Vec<Reference>,
) -> Result<Digest, E>
where
    E: From<StoreError> + From<LayerError> + From<ImageError>,
{
    let mut layers = Vec::with_capacity(config.rootfs.diff_ids.len());
    for diff_id in &config.rootfs.diff_ids {
        let size = if *diff_id == new_layer.diff_id {
            new_layer.tar_size
        } else {
            layer_info(store, diff_id)?
                .map(|l| l.tar_size)
                .ok_or_else(|| ImageError::MissingLayer {
                    image: "(new)".into(),
                    diff_id: diff_id.to_string(),
                })?
        };
        layers.push((*diff_id, size));
    }
    let config_bytes = serde_json::to_vec(&config).map_err(|e| ImageError::BadConfig {
        image: "(new)".into(),
        reason: e.to_string(),
    })?;
    let config_digest = staging.stage_blob(store, &config_bytes, Some(OCI_CONFIG))?;
    let manifest = uncompressed_manifest(&config_digest, config_bytes.len() as u64, &layers);
    let manifest_digest = staging.stage_blob(store, &manifest, Some(OCI_MANIFEST))?;
    let image = NewImage {
        config_digest,
        manifest_digest,
        config,
        tags,
        repo_digests: vec![],
    };
    staging.publish(store, |tx| -> Result<(), E> {
        record_layer(tx, new_layer)?;
        record_image(tx, &image)?;
        Ok(())
    })?;
    Ok(config_digest)
}
