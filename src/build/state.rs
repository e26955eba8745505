//! A build state: an image config (its `rootfs.diff_ids` are the layers)
//! and, once stored, the digest of its config blob, which is the ID the
//! image would have. States are stored as config blobs pinned by cache
//! entries, not as images: only the result of a build (and, while a RUN
//! needs one, its parent) has an image row.

use rusqlite::OptionalExtension;

use super::cache;
use super::error::BuildError;
use crate::digest::Digest;
use crate::image::oci::{History, ImageConfig, RunConfig, OCI_CONFIG};
use crate::image::publish::uncompressed_manifest;
use crate::image::{layer_info, record_image, record_layer, IngestedLayer, NewImage};
use crate::reference::Reference;
use crate::store::{Staging, Store};

/// The diff_id of an empty layer tar (1024 zero bytes).
pub const EMPTY_LAYER: &str =
    "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";

#[derive(Debug, Clone)]
pub struct State {
    pub config: ImageConfig,
    /// The stored config's digest; `None` for `scratch`.
    pub id: Option<Digest>,
}

/// Docker's default PATH, set on every stage that has none.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl State {
    /// The empty state of `FROM scratch` for this host.
    pub fn scratch(os: &str, architecture: &str, variant: Option<String>) -> State {
        State {
            config: ImageConfig {
                architecture: architecture.into(),
                os: os.into(),
                variant,
                config: Some(RunConfig::default()),
                rootfs: crate::image::oci::RootFs {
                    kind: "layers".into(),
                    diff_ids: vec![],
                },
                ..Default::default()
            },
            id: None,
        }
    }

    /// A stored state (or image) by its config digest.
    pub fn load(store: &Store, id: &Digest) -> Result<State, BuildError> {
        let data = store.read_blob(id)?;
        let config: ImageConfig = serde_json::from_slice(&data)
            .map_err(|e| BuildError::Invalid(format!("config {id}: {e}")))?;
        Ok(State {
            config,
            id: Some(*id),
        })
    }

    pub fn run(&self) -> RunConfig {
        self.config.config.clone().unwrap_or_default()
    }

    pub fn run_mut(&mut self) -> &mut RunConfig {
        self.config.config.get_or_insert_with(RunConfig::default)
    }

    pub fn env(&self) -> Vec<String> {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.env.clone())
            .unwrap_or_default()
    }

    /// Adds Docker's default PATH if the environment has none.
    pub fn ensure_path(&mut self) {
        let mut env = self.env();
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.insert(0, DEFAULT_PATH.to_string());
            self.run_mut().env = Some(env);
        }
    }

    /// The layer row ids, bottom first.
    pub fn layer_rows(&self, store: &Store) -> Result<Vec<i64>, BuildError> {
        let mut out = Vec::new();
        for diff_id in &self.config.rootfs.diff_ids {
            let info = layer_info(store, diff_id)?.ok_or_else(|| {
                BuildError::Invalid(format!("layer {diff_id} of the build state is not stored"))
            })?;
            out.push(info.id);
        }
        Ok(out)
    }
}

/// What a step adds to its parent's history.
pub struct Step<'a> {
    pub created_by: String,
    pub comment: Option<String>,
    pub cache_key: &'a str,
    pub description: &'a str,
}

/// Stores the state made from `config` (the parent's, changed by the
/// step) and the step's new layer, if any; records the cache entry.
/// A layer with no entries is no layer (`empty_layer` in the history,
/// as Docker does).
pub fn commit_state(
    store: &Store,
    mut config: ImageConfig,
    layer: Option<(Staging, IngestedLayer)>,
    step: Step,
) -> Result<State, BuildError> {
    let now = crate::container::spec::now_rfc3339();
    let layer = layer.filter(|(_, l)| {
        !l.entries.is_empty() || !l.whiteouts.is_empty() || !l.opaque_dirs.is_empty()
    });
    if let Some((_, l)) = &layer {
        config.rootfs.diff_ids.push(l.diff_id);
    }
    config.created = Some(now.clone());
    config.history.push(History {
        created: Some(now),
        created_by: Some(step.created_by),
        author: None,
        comment: step.comment,
        empty_layer: layer.is_none(),
    });
    let bytes = serde_json::to_vec(&config)
        .map_err(|e| BuildError::Invalid(format!("image config: {e}")))?;
    let (mut staging, ingested) = match layer {
        Some((s, l)) => (s, Some(l)),
        None => (store.begin_staging()?, None),
    };
    let id = staging.stage_blob(store, &bytes, Some(OCI_CONFIG))?;
    let size = ingested.as_ref().map_or(0, |l| l.content_size);
    let diff_ids = config.rootfs.diff_ids.clone();
    staging.publish(store, |tx| -> Result<(), BuildError> {
        if let Some(l) = &ingested {
            record_layer(tx, l)?;
        }
        cache::record(tx, step.cache_key, &id, step.description, size, &diff_ids)
    })?;
    Ok(State {
        config,
        id: Some(id),
    })
}

/// Records a state as an image (with `tags`); returns its ID and whether
/// the image row is new.
pub fn publish_image(
    store: &Store,
    state: &State,
    tags: Vec<Reference>,
) -> Result<(Digest, bool), BuildError> {
    let id = state.id.ok_or_else(|| {
        BuildError::Invalid("no image was generated: the target stage is an empty scratch".into())
    })?;
    if already_published(store, &id, &tags)? {
        return Ok((id, false));
    }
    // The stored bytes, not a re-serialisation: a base image's config
    // keeps its digest.
    let bytes = store.read_blob(&id)?;
    let mut layers = Vec::new();
    for diff_id in &state.config.rootfs.diff_ids {
        let info = layer_info(store, diff_id)?.ok_or_else(|| {
            BuildError::Invalid(format!("layer {diff_id} of the build state is not stored"))
        })?;
        layers.push((*diff_id, info.tar_size));
    }
    let mut staging = store.begin_staging()?;
    let config_digest = staging.stage_blob(store, &bytes, Some(OCI_CONFIG))?;
    let manifest = uncompressed_manifest(&config_digest, bytes.len() as u64, &layers);
    let manifest_digest =
        staging.stage_blob(store, &manifest, Some(crate::image::oci::OCI_MANIFEST))?;
    let image = NewImage {
        config_digest,
        manifest_digest,
        config: state.config.clone(),
        tags,
        repo_digests: vec![],
    };
    let new = staging.publish(store, |tx| -> Result<bool, BuildError> {
        let existed = tx
            .query_row(
                "SELECT 1 FROM images WHERE id = ?1",
                [config_digest.to_string()],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        record_image(tx, &image)?;
        Ok(!existed)
    })?;
    Ok((config_digest, new))
}

/// Whether the image is recorded and every tag names it already (a
/// cached rebuild): then there is nothing to write, no staging and no
/// commit with its fsyncs.
fn already_published(store: &Store, id: &Digest, tags: &[Reference]) -> Result<bool, BuildError> {
    let id_text = id.to_string();
    let conn = store.conn();
    if !conn
        .prepare_cached("SELECT 1 FROM images WHERE id = ?1")?
        .exists([&id_text])?
    {
        return Ok(false);
    }
    let mut stmt = conn.prepare_cached("SELECT image_id FROM tags WHERE name = ?1")?;
    for tag in tags {
        let current: Option<String> = stmt.query_row([tag.to_string()], |r| r.get(0)).optional()?;
        if current.as_deref() != Some(id_text.as_str()) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Removes an image row made only for a RUN, unless something else uses
/// it by now (a tag, a container, a mount).
pub fn drop_temporary_image(store: &Store, id: &Digest) {
    let _ = store.conn().execute(
        "DELETE FROM images WHERE id = ?1
           AND id NOT IN (SELECT image_id FROM tags)
           AND id NOT IN (SELECT image_id FROM containers)
           AND id NOT IN (SELECT image_id FROM mounts WHERE image_id IS NOT NULL)",
        [id.to_string()],
    );
}
