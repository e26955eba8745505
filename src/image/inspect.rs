//! What `inspect` and `history` show of an image.

use serde_json::{json, Value};

use super::layer_db::layer_info;
use super::records::{get_image, image_config, image_layer_ids, ImageError};
use crate::digest::Digest;
use crate::store::Store;

/// Docker's image inspect object.
pub fn inspect_image(store: &Store, id: &Digest) -> Result<Value, ImageError> {
    let record = get_image(store, id)?;
    let (config, raw) = image_config(store, id)?;
    let raw: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let layers: Vec<String> = config
        .rootfs
        .diff_ids
        .iter()
        .map(|d| d.to_string())
        .collect();
    let mut out = json!({
        "Id": record.id.to_string(),
        "RepoTags": record.familiar_tags(),
        "RepoDigests": record.familiar_repo_digests(),
        "Parent": "",
        "Comment": raw.get("comment").cloned().unwrap_or(Value::String(String::new())),
        "Created": config.created.clone().unwrap_or_default(),
        "DockerVersion": raw.get("docker_version").cloned().unwrap_or(Value::String(String::new())),
        "Author": config.author.clone().unwrap_or_default(),
        "Config": raw.get("config").cloned().unwrap_or(Value::Null),
        "Architecture": config.architecture,
        "Os": config.os,
        "Size": record.size,
        "GraphDriver": {
            "Name": "strata",
            "Data": {
                "Manifest": record.manifest_digest.to_string(),
                "Config": record.config_digest.to_string(),
            }
        },
        "RootFS": { "Type": "layers", "Layers": layers },
        "Metadata": { "LastTagTime": record.last_tag_time.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()) },
    });
    if let (Some(variant), Some(obj)) = (config.variant, out.as_object_mut()) {
        obj.insert("Variant".into(), Value::String(variant));
    }
    Ok(out)
}

/// One line of `history`, newest first.
#[derive(Debug, Clone)]
pub struct HistoryRow {
    /// The image ID on the top row, None (`<missing>`) below, as Docker.
    pub id: Option<Digest>,
    pub created: Option<String>,
    pub created_by: String,
    pub size: u64,
    pub comment: String,
}

pub fn image_history(store: &Store, id: &Digest) -> Result<Vec<HistoryRow>, ImageError> {
    let (config, _) = image_config(store, id)?;
    let layers = image_layer_ids(store, id)?;
    let mut sizes = Vec::new();
    for (_, diff_id) in &layers {
        sizes.push(
            layer_info(store, diff_id)
                .ok()
                .flatten()
                .map(|l| l.content_size)
                .unwrap_or(0),
        );
    }
    let mut rows = Vec::new();
    let mut layer_index = 0usize;
    if config.history.is_empty() {
        for size in &sizes {
            rows.push(HistoryRow {
                id: None,
                created: config.created.clone(),
                created_by: String::new(),
                size: *size,
                comment: String::new(),
            });
        }
    } else {
        for h in &config.history {
            let size = if h.empty_layer {
                0
            } else {
                let s = sizes.get(layer_index).copied().unwrap_or(0);
                layer_index += 1;
                s
            };
            rows.push(HistoryRow {
                id: None,
                created: h.created.clone(),
                created_by: h.created_by.clone().unwrap_or_default(),
                size,
                comment: h.comment.clone().unwrap_or_default(),
            });
        }
    }
    rows.reverse();
    if let Some(top) = rows.first_mut() {
        top.id = Some(*id);
    }
    Ok(rows)
}
