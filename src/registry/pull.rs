//! `pull`: resolve a reference to a manifest (choosing the platform from
//! an index), fetch and verify the config, stream every missing layer
//! into the store (up to N at once), and record the image last.
//!
//! Every layer streams through its own handle on one staging, decoded by
//! a pipeline of four threads (reading the network and hashing the blob;
//! inflating; hashing the tar; parsing it and hashing and writing the
//! files), so that even a single big layer keeps both cores busy. About
//! once a second the files staged so far move to their final names in
//! `files/` (renames; a flush first where the store does not write
//! behind: docs/store.md), and again each time a layer is verified; no
//! row names them yet.
//! The image, its layers and every row are recorded in
//! one transaction at the end, once every layer is verified, so nothing
//! partial is ever listed. The staging keeps the gc lock shared for the
//! whole pull; a failed pull leaves the files it placed (unreferenced)
//! for gc.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use rusqlite::OptionalExtension;

use super::blob::{fetch_small_blob, BlobReader, MAX_CONFIG_SIZE};
use super::client::{ClientOptions, RegistryClient};
use super::manifest::{choose_manifest, fetch_manifest, pull_scope, FetchedManifest, Platform};
use super::RegistryError;
use crate::digest::Digest;
use crate::image::oci::{self, Descriptor, Document, ImageConfig, Manifest};
use crate::image::{
    ingest_layer_on_threads, layer_info, record_image, record_layer, record_layer_blob,
    IngestedLayer, Limits, NewImage,
};
use crate::reference::Reference;
use crate::store::{Staging, Store};

/// How to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    pub client: ClientOptions,
    /// The platform to choose from an index (default: this host's).
    pub platform: Option<Platform>,
    /// Layers downloaded at once.
    pub max_concurrent_downloads: usize,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            client: ClientOptions::default(),
            platform: None,
            max_concurrent_downloads: 3,
        }
    }
}

/// What happens during a pull, for the caller to show.
#[derive(Debug, Clone)]
pub enum PullEvent {
    /// The manifest is resolved; its layers follow.
    Resolved {
        reference: Reference,
        layers: Vec<(Digest, u64)>,
    },
    AlreadyExists {
        digest: Digest,
    },
    Waiting {
        digest: Digest,
    },
    Downloading {
        digest: Digest,
        done: u64,
        total: u64,
    },
    PullComplete {
        digest: Digest,
    },
}

/// What a pull did.
#[derive(Debug, Clone)]
pub struct PullOutcome {
    /// The reference pulled (tag or digest), fully qualified.
    pub reference: Reference,
    /// The digest of what the reference names (an index, or a manifest).
    pub digest: Digest,
    pub image_id: Digest,
    /// True when the reference already named this image locally.
    pub up_to_date: bool,
    pub layers_downloaded: usize,
}

/// Pulls one reference, or (`all_tags`) every tag of its repository.
pub fn pull(
    store: &Store,
    reference: &Reference,
    all_tags: bool,
    options: &PullOptions,
    observer: &(dyn Fn(PullEvent) + Sync),
) -> Result<Vec<PullOutcome>, RegistryError> {
    let client = RegistryClient::connect(&reference.domain, &options.client)?;
    let record = |outcome: &PullOutcome| {
        let r = &outcome.reference;
        crate::events::record_image(store, &r.familiar(), &r.familiar_repository(), "pull");
    };
    if !all_tags {
        let outcome = pull_image(store, &client, reference, options, observer)?;
        record(&outcome);
        return Ok(vec![outcome]);
    }
    let mut outcomes = Vec::new();
    for tag in list_tags(&client, &reference.path)? {
        let outcome = pull_image(store, &client, &reference.with_tag(&tag), options, observer)?;
        record(&outcome);
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// The tags of a repository (`GET /v2/<name>/tags/list`), following pages.
pub fn list_tags(client: &RegistryClient, path: &str) -> Result<Vec<String>, RegistryError> {
    #[derive(serde::Deserialize)]
    struct Tags {
        #[serde(default)]
        tags: Option<Vec<String>>,
    }
    let what = format!("{}/{path}", client.registry());
    let mut next = Some(format!("v2/{path}/tags/list?n=1000"));
    let mut tags = Vec::new();
    while let Some(page) = next.take() {
        let url = client.url(&page)?;
        let resp = client.send_ok(&what, &pull_scope(path), &|http| http.get(url.clone()))?;
        next = super::search::next_link(resp.headers());
        let body = super::client::read_limited(resp, 16 << 20, &what)?;
        let parsed: Tags = serde_json::from_slice(&body).map_err(|e| RegistryError::Transport {
            what: what.clone(),
            reason: format!("invalid tag list: {e}"),
        })?;
        tags.extend(parsed.tags.unwrap_or_default());
    }
    Ok(tags)
}

/// Resolves a reference to one image manifest (choosing from an index).
/// Returns the top-level digest and the image manifest.
pub(super) fn resolve_manifest(
    client: &RegistryClient,
    reference: &Reference,
    platform: &Platform,
) -> Result<(Digest, FetchedManifest, Manifest), RegistryError> {
    let what = reference.to_string();
    let tag_or_digest = match (&reference.digest, &reference.tag) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.clone(),
        (None, None) => crate::reference::DEFAULT_TAG.to_string(),
    };
    let top = fetch_manifest(client, &reference.path, &tag_or_digest, &what)?;
    let bad = |reason: String| RegistryError::BadManifest {
        reference: what.clone(),
        reason,
    };
    match oci::parse_document(&top.bytes).map_err(bad)? {
        Document::Manifest(m) => Ok((top.digest, top.clone(), *m)),
        Document::Index(index) => {
            let chosen = choose_manifest(&index, platform).ok_or_else(|| {
                RegistryError::NoMatchingPlatform {
                    reference: what.clone(),
                    platform: platform.to_string(),
                }
            })?;
            let inner = fetch_manifest(client, &reference.path, &chosen.digest.to_string(), &what)?;
            if inner.bytes.len() as u64 != chosen.size {
                return Err(RegistryError::SizeMismatch {
                    what: format!("manifest {}@{}", reference.repository(), chosen.digest),
                    expected: chosen.size,
                    actual: inner.bytes.len() as u64,
                });
            }
            match oci::parse_document(&inner.bytes).map_err(bad)? {
                Document::Manifest(m) => Ok((top.digest, inner, *m)),
                Document::Index(_) => {
                    Err(bad("an index names another index for a platform".into()))
                }
            }
        }
    }
}

/// Pulls one image with an already connected client.
pub fn pull_image(
    store: &Store,
    client: &RegistryClient,
    reference: &Reference,
    options: &PullOptions,
    observer: &(dyn Fn(PullEvent) + Sync),
) -> Result<PullOutcome, RegistryError> {
    let what = reference.to_string();
    let platform = options.platform.clone().unwrap_or_else(Platform::host);
    let (top_digest, manifest_doc, manifest) = resolve_manifest(client, reference, &platform)?;
    for layer in &manifest.layers {
        if !oci::is_layer_media_type(&layer.media_type) {
            return Err(RegistryError::BadManifest {
                reference: what,
                reason: format!("unsupported layer media type {:?}", layer.media_type),
            });
        }
    }
    let config_bytes = fetch_small_blob(
        client,
        &reference.path,
        &manifest.config.digest,
        manifest.config.size,
        MAX_CONFIG_SIZE,
    )?;
    let config: ImageConfig =
        serde_json::from_slice(&config_bytes).map_err(|e| RegistryError::BadConfig {
            reference: what.clone(),
            digest: manifest.config.digest.to_string(),
            reason: e.to_string(),
        })?;
    if !config.os.is_empty() && config.os != "linux" {
        return Err(RegistryError::BadConfig {
            reference: what.clone(),
            digest: manifest.config.digest.to_string(),
            reason: format!(
                "image operating system {:?} cannot be used on this platform",
                config.os
            ),
        });
    }
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(RegistryError::BadConfig {
            reference: what.clone(),
            digest: manifest.config.digest.to_string(),
            reason: format!(
                "{} diff_ids for {} layers",
                config.rootfs.diff_ids.len(),
                manifest.layers.len()
            ),
        });
    }
    observer(PullEvent::Resolved {
        reference: reference.clone(),
        layers: manifest.layers.iter().map(|l| (l.digest, l.size)).collect(),
    });
    // The image's own staging, held from here on, keeps gc away until the image is recorded.
    let mut image_staging = store.begin_staging()?;
    let mut missing: Vec<(&Descriptor, Digest)> = Vec::new();
    let mut known_blobs: Vec<(&Descriptor, Digest)> = Vec::new();
    for (layer, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
        let stored =
            layer_info(store, diff_id).map_err(|e| layer_error(&what, &layer.digest, e))?;
        if stored.is_some() {
            if blob_maps_to(store, &layer.digest, diff_id)? {
                known_blobs.push((layer, *diff_id));
            }
            observer(PullEvent::AlreadyExists {
                digest: layer.digest,
            });
        } else if !missing.iter().any(|(d, _)| d.digest == layer.digest) {
            observer(PullEvent::Waiting {
                digest: layer.digest,
            });
            missing.push((layer, *diff_id));
        }
    }
    let limits = Limits::for_root(store.root()).map_err(RegistryError::StoreConfig)?;
    let downloaded = download_layers(
        store,
        &image_staging,
        client,
        &reference.path,
        &what,
        &missing,
        &limits,
        options.max_concurrent_downloads,
        observer,
    )?;

    // Every layer is in: one publish records them and the image together.
    let mut new_layers = Vec::new();
    for DownloadedLayer { layer, descriptor } in downloaded {
        new_layers.push((layer, descriptor));
    }
    let manifest_digest =
        image_staging.stage_blob(store, &manifest_doc.bytes, Some(&manifest_doc.media_type))?;
    let config_media_type = manifest.config.media_type.clone();
    image_staging.stage_blob(store, &config_bytes, Some(&config_media_type))?;
    let image_id = manifest.config.digest;
    let tag_name = reference
        .tag
        .as_ref()
        .filter(|_| reference.digest.is_none())
        .map(|t| reference.with_tag(t));
    let repo_digest = Reference {
        tag: None,
        ..reference.with_digest(top_digest)
    };
    let up_to_date = match &tag_name {
        Some(tag) => points_to(store, "tags", &tag.to_string(), &image_id)?,
        None => points_to(store, "repo_digests", &repo_digest.to_string(), &image_id)?,
    };
    let source = reference.repository();
    image_staging.publish(store, |tx| -> Result<(), RegistryError> {
        for (layer, descriptor) in &new_layers {
            record_layer(tx, layer).map_err(|e| layer_error(&what, &descriptor.digest, e))?;
            record_layer_blob(
                tx,
                &descriptor.digest,
                &layer.diff_id,
                &descriptor.media_type,
                descriptor.size,
                Some(&source),
            )
            .map_err(|e| layer_error(&what, &descriptor.digest, e))?;
        }
        for (layer, diff_id) in &known_blobs {
            record_layer_blob(
                tx,
                &layer.digest,
                diff_id,
                &layer.media_type,
                layer.size,
                Some(&source),
            )
            .map_err(|e| layer_error(&what, &layer.digest, e))?;
        }
        record_image(
            tx,
            &NewImage {
                config_digest: image_id,
                manifest_digest,
                config: config.clone(),
                tags: tag_name.clone().into_iter().collect(),
                repo_digests: vec![repo_digest.clone()],
            },
        )?;
        Ok(())
    })?;
    Ok(PullOutcome {
        reference: reference.clone(),
        digest: top_digest,
        image_id,
        up_to_date,
        layers_downloaded: missing.len(),
    })
}

pub(super) fn layer_error(
    reference: &str,
    digest: &Digest,
    source: crate::image::LayerError,
) -> RegistryError {
    RegistryError::Layer {
        reference: reference.to_string(),
        digest: digest.to_string(),
        source: Box::new(source),
    }
}

/// Whether the store knows this compressed blob as the layer `diff_id`.
fn blob_maps_to(store: &Store, digest: &Digest, diff_id: &Digest) -> Result<bool, RegistryError> {
    if digest == diff_id {
        return Ok(true);
    }
    let found: Option<String> = store
        .conn()
        .query_row(
            "SELECT diff_id FROM layer_blobs WHERE digest = ?1",
            [digest.to_string()],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| store.db_err(e))?;
    Ok(found.as_deref() == Some(diff_id.to_string().as_str()))
}

fn points_to(store: &Store, table: &str, name: &str, id: &Digest) -> Result<bool, RegistryError> {
    let found: Option<String> = store
        .conn()
        .query_row(
            &format!("SELECT image_id FROM {table} WHERE name = ?1"),
            [name],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| store.db_err(e))?;
    Ok(found.as_deref() == Some(id.to_string().as_str()))
}

/// A layer streamed into the pull's staging and verified, not yet recorded.
struct DownloadedLayer {
    layer: IngestedLayer,
    descriptor: Descriptor,
}

/// Downloads the missing layers, `max_concurrent` at a time, each worker
/// with its own store connection and handle on `staging`. The first
/// failure stops the others (and the caller drops the staging, so nothing
/// of the pull stays).
#[allow(clippy::too_many_arguments)]
fn download_layers(
    store: &Store,
    staging: &Staging,
    client: &RegistryClient,
    path: &str,
    what: &str,
    missing: &[(&Descriptor, Digest)],
    limits: &Limits,
    max_concurrent: usize,
    observer: &(dyn Fn(PullEvent) + Sync),
) -> Result<Vec<DownloadedLayer>, RegistryError> {
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let next = AtomicUsize::new(0);
    let abort = AtomicBool::new(false);
    let first_error: Mutex<Option<RegistryError>> = Mutex::new(None);
    let done: Mutex<Vec<DownloadedLayer>> = Mutex::new(Vec::new());
    let workers = max_concurrent.clamp(1, missing.len());
    // Largest first, so that the last layers to finish are small ones and
    // no worker is left alone with a big layer at the end.
    let mut order: Vec<usize> = (0..missing.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(missing[i].0.size));
    let root = store.root();
    let downloading = Downloading {
        workers: Mutex::new(workers),
        ended: Condvar::new(),
    };
    let fail = |e: RegistryError| {
        let was_aborted = abort.swap(true, Ordering::Relaxed);
        if let Ok(mut slot) = first_error.lock() {
            if !was_aborted || !matches!(e, RegistryError::Aborted { .. }) {
                slot.get_or_insert(e);
            }
        }
    };
    std::thread::scope(|scope| {
        let (next, abort, done, fail, order, downloading) =
            (&next, &abort, &done, &fail, &order, &downloading);
        for _ in 0..workers {
            let mut worker_staging = staging.share();
            scope.spawn(move || {
                let _departure = Departure(downloading);
                let worker_store = match Store::open(root) {
                    Ok(s) => s,
                    Err(e) => return fail(e.into()),
                };
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= order.len() || abort.load(Ordering::Relaxed) {
                        return;
                    }
                    let (descriptor, diff_id) = missing[order[i]];
                    match download_layer(
                        &worker_store,
                        &mut worker_staging,
                        client,
                        path,
                        what,
                        descriptor,
                        &diff_id,
                        limits,
                        abort,
                        observer,
                    ) {
                        Ok(layer) => match done.lock() {
                            Ok(mut list) => list.push(layer),
                            Err(_) => return,
                        },
                        Err(e) => return fail(e),
                    }
                }
            });
        }
        // Where the store does not write behind (its writers then leave
        // each file in the staging: see stage.rs, `place_at_once`), the
        // files staged so far move to their final names about once a
        // second while the layers download, so that the end of the pull
        // has few left to rename (a one-layer pull of 9,000 files spent
        // ~0.3 s on it after its last byte).
        let placer = staging.share();
        scope.spawn(move || {
            while downloading.wait(PLACE_EVERY) && !abort.load(Ordering::Relaxed) {
                if placer.unplaced_files() >= PLACE_AT_LEAST {
                    if let Err(e) = placer.place_files_in(root) {
                        return fail(e.into());
                    }
                }
            }
        });
    });
    if let Ok(Some(e)) = first_error.into_inner() {
        return Err(e);
    }
    let mut layers = done.into_inner().unwrap_or_default();
    if layers.len() != missing.len() {
        return Err(RegistryError::Aborted {
            what: what.to_string(),
        });
    }
    // Record in the manifest's order.
    layers.sort_by_key(|l| {
        missing
            .iter()
            .position(|(d, _)| d.digest == l.descriptor.digest)
    });
    Ok(layers)
}

/// How often files staged during a pull are moved to their final names,
/// and how many it takes to be worth a batch of renames.
const PLACE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
const PLACE_AT_LEAST: usize = 256;

/// The layer workers still running, for the thread that places files.
struct Downloading {
    workers: Mutex<usize>,
    ended: Condvar,
}

impl Downloading {
    /// Waits up to `timeout`, less if the last worker ends; returns
    /// whether some are still running.
    fn wait(&self, timeout: std::time::Duration) -> bool {
        let workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        let (workers, _) = self
            .ended
            .wait_timeout_while(workers, timeout, |w| *w > 0)
            .unwrap_or_else(|p| p.into_inner());
        *workers > 0
    }
}

/// Counts a layer worker out when it ends, however it ends.
struct Departure<'a>(&'a Downloading);

impl Drop for Departure<'_> {
    fn drop(&mut self) {
        let mut workers = self.0.workers.lock().unwrap_or_else(|p| p.into_inner());
        *workers = workers.saturating_sub(1);
        if *workers == 0 {
            self.0.ended.notify_all();
        }
    }
}

/// Streams one layer blob into the pull's staging: decompressed, hashed and
/// staged as it arrives; kept only if its digest, size and diff_id match.
#[allow(clippy::too_many_arguments)]
fn download_layer(
    store: &Store,
    staging: &mut Staging,
    client: &RegistryClient,
    path: &str,
    what: &str,
    descriptor: &Descriptor,
    diff_id: &Digest,
    limits: &Limits,
    abort: &AtomicBool,
    observer: &(dyn Fn(PullEvent) + Sync),
) -> Result<DownloadedLayer, RegistryError> {
    let digest = descriptor.digest;
    let total = descriptor.size;
    let stamp = staging.progress_stamp();
    let progress = move |done: u64| {
        stamp.touch();
        observer(PullEvent::Downloading {
            digest,
            done,
            total,
        })
    };
    let mut reader = BlobReader::new(client, path, &digest, total, abort, &progress)?;
    let layer = match ingest_layer_on_threads(store, staging, &mut reader, limits) {
        Ok(layer) => layer,
        Err(e) => {
            return Err(reader
                .take_error()
                .unwrap_or_else(|| layer_error(what, &digest, e)))
        }
    };
    let blob_what = format!("{}/{path}@{digest}", client.registry());
    if layer.blob_size != total {
        return Err(RegistryError::SizeMismatch {
            what: blob_what,
            expected: total,
            actual: layer.blob_size,
        });
    }
    if layer.blob_digest != digest {
        return Err(RegistryError::DigestMismatch {
            what: blob_what,
            expected: digest.to_string(),
            actual: layer.blob_digest.to_string(),
        });
    }
    if layer.diff_id != *diff_id {
        let source = crate::image::LayerError::DiffIdMismatch {
            expected: diff_id.to_string(),
            actual: layer.diff_id.to_string(),
        };
        return Err(layer_error(what, &digest, source));
    }
    // The files staged so far (this layer's, and any other layer's already
    // written) go to their final names now, while other layers download,
    // rather than all at the publish.
    staging.place_files(store)?;
    observer(PullEvent::PullComplete { digest });
    Ok(DownloadedLayer {
        layer,
        descriptor: descriptor.clone(),
    })
}
