//! `push`: send an image's layers, config and manifest to a registry.
//!
//! For each layer, the compressed blobs the store remembers for it (from
//! pulls and earlier pushes) are tried first: a `HEAD` finds one the
//! repository has, a cross-repository mount reuses one from another
//! repository of the same registry. Only when neither works is the layer
//! rebuilt from the store (byte for byte, so its diff_id is unchanged),
//! compressed deterministically, and uploaded. When every layer keeps the
//! blob the stored manifest names, that manifest is pushed unchanged, so
//! its digest is kept too.

use std::io::Read;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::OptionalExtension;
use rusqlite::{params, Transaction, TransactionBehavior};

use super::client::{ClientOptions, RegistryClient};
use super::compress::{parallel_gzip, zstd_reader};
use super::upload::{blob_exists, mount_blob, push_scopes, upload_blob};
use super::RegistryError;
use crate::digest::Digest;
use crate::image::oci::{self, Descriptor, Document, Manifest};
use crate::image::{
    get_image, image_config, image_layer_ids, layer_info, open_layer_tar, record_image,
    record_layer_blob, resolve_image, NewImage,
};
use crate::reference::Reference;
use crate::store::{Store, StoreError};

/// How new layer blobs are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushCompression {
    Gzip,
    Zstd,
}

impl PushCompression {
    /// Whether a layer media type is in this format.
    fn matches(self, media_type: &str) -> bool {
        match self {
            PushCompression::Gzip => media_type.ends_with("gzip"),
            PushCompression::Zstd => media_type.ends_with("zstd"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PushOptions {
    pub client: ClientOptions,
    /// `None`: reuse any blob the store knows for a layer, compress new ones
    /// with gzip. `Some(format)`: reuse only blobs in that format.
    pub compression: Option<PushCompression>,
    /// Blobs up to this size go in one request; larger ones in chunks of it.
    pub chunk_size: usize,
    pub max_concurrent_uploads: usize,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            client: ClientOptions::default(),
            compression: None,
            chunk_size: 16 << 20,
            max_concurrent_uploads: 3,
        }
    }
}

/// What happens during a push; layers are named by diff_id, as Docker does.
#[derive(Debug, Clone)]
pub enum PushEvent {
    Preparing {
        diff_id: Digest,
    },
    /// `done` of the layer's `total` uncompressed bytes are compressed
    /// (and at most a few MiB ahead of the upload).
    Pushing {
        diff_id: Digest,
        done: u64,
        total: u64,
    },
    Exists {
        diff_id: Digest,
    },
    Mounted {
        diff_id: Digest,
        from: String,
    },
    Pushed {
        diff_id: Digest,
    },
}

#[derive(Debug, Clone)]
pub struct PushOutcome {
    pub reference: Reference,
    pub digest: Digest,
    pub size: u64,
}

/// A compressed blob known to hold a layer.
#[derive(Debug, Clone)]
struct KnownBlob {
    digest: Digest,
    media_type: String,
    size: u64,
    source: Option<String>,
}

/// Pushes the local image `reference` names to the registry it names.
pub fn push(
    store: &Store,
    reference: &Reference,
    options: &PushOptions,
    observer: &(dyn Fn(PushEvent) + Sync),
) -> Result<PushOutcome, RegistryError> {
    if reference.digest.is_some() {
        return Err(RegistryError::PushByDigest {
            reference: reference.to_string(),
        });
    }
    let tag = reference
        .tag
        .clone()
        .unwrap_or_else(|| crate::reference::DEFAULT_TAG.to_string());
    let id = resolve_image(store, &reference.to_string())?;
    let record = get_image(store, &id)?;
    let (config, config_bytes) = image_config(store, &id)?;
    let layers = image_layer_ids(store, &id)?;
    let stored_manifest = match oci::parse_document(&store.read_blob(&record.manifest_digest)?) {
        Ok(Document::Manifest(m)) if m.layers.len() == layers.len() => Some(*m),
        _ => None,
    };
    let stored_manifest_type = store_media_type(store, &record.manifest_digest)?;
    // Held until the push ends, so gc leaves the image's layers alone.
    let gc_guard = store.begin_staging()?;
    let stamp = gc_guard.progress_stamp();
    let observer = &move |event: PushEvent| {
        stamp.touch();
        observer(event)
    };
    let client = RegistryClient::connect(&reference.domain, &options.client)?;
    let path = reference.path.clone();

    for (_, diff_id) in &layers {
        observer(PushEvent::Preparing { diff_id: *diff_id });
    }
    let mut jobs = Vec::new();
    for (position, (_, diff_id)) in layers.iter().enumerate() {
        let preferred = stored_manifest.as_ref().map(|m| m.layers[position].clone());
        let mut known = known_blobs(store, diff_id, preferred.as_ref())?;
        if let Some(format) = options.compression {
            known.retain(|b| format.matches(&b.media_type));
        }
        jobs.push((*diff_id, known));
    }
    let pushed = push_layers(store, &client, reference, &jobs, options, observer)?;

    // The config, then the manifest.
    let config_digest = record.config_digest;
    if blob_exists(&client, &path, &config_digest)?.is_none() {
        let mut open =
            || -> Result<Box<dyn Read + '_>, RegistryError> { Ok(Box::new(&config_bytes[..])) };
        upload_blob(
            &client,
            &path,
            Some(&config_digest),
            &mut open,
            options.chunk_size,
            &|_| {},
        )?;
    }
    let unchanged = stored_manifest.as_ref().is_some_and(|m| {
        m.layers
            .iter()
            .zip(&pushed)
            .all(|(a, b)| a.digest == b.digest)
            && m.config.digest == config_digest
    });
    let (manifest_bytes, media_type) = match (&stored_manifest, unchanged, stored_manifest_type) {
        (Some(_), true, Some(media_type)) => {
            (store.read_blob(&record.manifest_digest)?, media_type)
        }
        _ => build_manifest(
            stored_manifest.as_ref(),
            &config_digest,
            config_bytes.len() as u64,
            &pushed,
        )?,
    };
    let digest = put_manifest(&client, &path, &tag, &manifest_bytes, &media_type)?;

    let tx = Transaction::new_unchecked(store.conn(), TransactionBehavior::Immediate)
        .map_err(|e| store.db_err(e))?;
    record_image(
        &tx,
        &NewImage {
            config_digest,
            manifest_digest: record.manifest_digest,
            config,
            tags: Vec::new(),
            repo_digests: vec![Reference {
                tag: None,
                ..reference.with_digest(digest)
            }],
        },
    )?;
    tx.commit().map_err(|e| store.db_err(e))?;
    Ok(PushOutcome {
        reference: reference.with_tag(&tag),
        digest,
        size: manifest_bytes.len() as u64,
    })
}

fn store_media_type(store: &Store, digest: &Digest) -> Result<Option<String>, RegistryError> {
    let found: Option<Option<String>> = store
        .conn()
        .query_row(
            "SELECT media_type FROM blobs WHERE digest = ?1",
            [digest.to_string()],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| store.db_err(e))?;
    Ok(found.flatten())
}

/// The blobs the store knows for a layer, the stored manifest's first.
fn known_blobs(
    store: &Store,
    diff_id: &Digest,
    preferred: Option<&Descriptor>,
) -> Result<Vec<KnownBlob>, RegistryError> {
    let mut stmt = store
        .conn()
        .prepare_cached(
            "SELECT digest, media_type, size, source FROM layer_blobs WHERE diff_id = ?1",
        )
        .map_err(|e| store.db_err(e))?;
    let rows = stmt
        .query_map([diff_id.to_string()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })
        .map_err(|e| store.db_err(e))?;
    let mut blobs = Vec::new();
    if let Some(d) = preferred {
        if d.digest == *diff_id || oci::is_layer_media_type(&d.media_type) {
            blobs.push(KnownBlob {
                digest: d.digest,
                media_type: d.media_type.clone(),
                size: d.size,
                source: None,
            });
        }
    }
    for row in rows {
        let (digest, media_type, size, source) = row.map_err(|e| store.db_err(e))?;
        let Ok(digest) = digest.parse::<Digest>() else {
            continue;
        };
        match blobs.iter_mut().find(|b| b.digest == digest) {
            Some(existing) => existing.source = source,
            None => blobs.push(KnownBlob {
                digest,
                media_type,
                size: size as u64,
                source,
            }),
        }
    }
    // A blob the stored manifest names but the store cannot vouch for is
    // only usable if the registry already has it; keep it, HEAD decides.
    Ok(blobs)
}

/// Pushes every layer, up to `max_concurrent_uploads` at once; returns the
/// descriptors of the blobs used, in order.
fn push_layers(
    store: &Store,
    client: &RegistryClient,
    reference: &Reference,
    jobs: &[(Digest, Vec<KnownBlob>)],
    options: &PushOptions,
    observer: &(dyn Fn(PushEvent) + Sync),
) -> Result<Vec<Descriptor>, RegistryError> {
    let results: Mutex<Vec<Option<Result<Descriptor, RegistryError>>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    let next = AtomicUsize::new(0);
    let workers = options.max_concurrent_uploads.clamp(1, jobs.len().max(1));
    let root = store.root();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                let worker_store = Store::open(root);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= jobs.len() {
                        return;
                    }
                    let result = match &worker_store {
                        Ok(s) => push_layer(
                            s, client, reference, &jobs[i].0, &jobs[i].1, options, observer,
                        ),
                        Err(e) => Err(RegistryError::Store(StoreError::Corrupt {
                            path: root.to_path_buf(),
                            what: e.to_string(),
                        })),
                    };
                    let failed = result.is_err();
                    if let Ok(mut slots) = results.lock() {
                        slots[i] = Some(result);
                    }
                    if failed {
                        next.store(jobs.len(), Ordering::Relaxed);
                        return;
                    }
                }
            });
        }
    });
    let slots = results.into_inner().unwrap_or_default();
    let mut out = Vec::new();
    for slot in slots {
        match slot {
            Some(Ok(d)) => out.push(d),
            Some(Err(e)) => return Err(e),
            None => {}
        }
    }
    if out.len() != jobs.len() {
        return Err(RegistryError::Aborted {
            what: format!("push of {reference}"),
        });
    }
    Ok(out)
}

/// Threads that compress one layer: every core (layers pushed at once
/// share them).
fn compression_threads() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

fn descriptor(blob: &KnownBlob) -> Descriptor {
    Descriptor {
        media_type: blob.media_type.clone(),
        digest: blob.digest,
        size: blob.size,
        annotations: None,
        platform: None,
        extra: Default::default(),
    }
}

/// One layer: reuse a blob the registry has or can mount, else compress and upload.
fn push_layer(
    store: &Store,
    client: &RegistryClient,
    reference: &Reference,
    diff_id: &Digest,
    known: &[KnownBlob],
    options: &PushOptions,
    observer: &(dyn Fn(PushEvent) + Sync),
) -> Result<Descriptor, RegistryError> {
    let path = &reference.path;
    let target = reference.repository();
    // The registry has the blob (already, or by a mount): note where.
    let record = |blob: &KnownBlob| {
        remember(
            store,
            &blob.digest,
            diff_id,
            &blob.media_type,
            blob.size,
            &target,
        )
    };
    for blob in known {
        if blob_exists(client, path, &blob.digest)?.is_some() {
            record(blob)?;
            observer(PushEvent::Exists { diff_id: *diff_id });
            return Ok(descriptor(blob));
        }
    }
    for blob in known {
        let Some(source) = &blob.source else { continue };
        let Some(from) = source.strip_prefix(&format!("{}/", reference.domain)) else {
            continue;
        };
        if from == path.as_str() {
            continue;
        }
        if mount_blob(client, path, &blob.digest, from)? {
            record(blob)?;
            observer(PushEvent::Mounted {
                diff_id: *diff_id,
                from: from.to_string(),
            });
            return Ok(descriptor(blob));
        }
    }
    let compression = options.compression.unwrap_or(PushCompression::Gzip);
    let media_type = match compression {
        PushCompression::Gzip => oci::OCI_LAYER_GZIP,
        PushCompression::Zstd => oci::OCI_LAYER_ZSTD,
    };
    let id = *diff_id;
    // Progress is the share of the layer's tar compressed so far (the
    // compressed size is known only at the end), as Docker shows it.
    let tar_size = layer_info(store, &id)
        .map_err(|e| RegistryError::Layer {
            reference: reference.to_string(),
            digest: id.to_string(),
            source: Box::new(e),
        })?
        .map_or(0, |info| info.tar_size);
    let progress = move |done: u64| {
        observer(PushEvent::Pushing {
            diff_id: id,
            done,
            total: tar_size,
        })
    };
    let mut open = || -> Result<Box<dyn Read + '_>, RegistryError> {
        let tar = open_layer_tar(store, &id).map_err(|e| RegistryError::Layer {
            reference: reference.to_string(),
            digest: id.to_string(),
            source: Box::new(e),
        })?;
        let read = Arc::new(AtomicU64::new(0));
        let tar = CountingReader {
            inner: tar,
            count: Arc::clone(&read),
        };
        let compressed: Box<dyn Read + Send> = match compression {
            PushCompression::Gzip => Box::new(parallel_gzip(tar, compression_threads())),
            PushCompression::Zstd => Box::new(
                zstd_reader(tar)
                    .map_err(|e| RegistryError::Store(StoreError::io(store.root(), e)))?,
            ),
        };
        Ok(Box::new(ProgressReader {
            inner: compressed,
            read,
            report: &progress,
        }))
    };
    progress(0);
    let (digest, size) = upload_blob(client, path, None, &mut open, options.chunk_size, &|_| {})?;
    observer(PushEvent::Pushed { diff_id: id });
    let blob = KnownBlob {
        digest,
        media_type: media_type.to_string(),
        size,
        source: None,
    };
    remember(
        store,
        &blob.digest,
        diff_id,
        &blob.media_type,
        blob.size,
        &target,
    )?;
    Ok(descriptor(&blob))
}

/// Counts the bytes read through it (on whatever thread reads it).
struct CountingReader<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Reports, as the upload reads the compressed stream, how much of the tar
/// the compressor has read.
struct ProgressReader<'a> {
    inner: Box<dyn Read + Send>,
    read: Arc<AtomicU64>,
    report: &'a (dyn Fn(u64) + Sync),
}

impl Read for ProgressReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.report)(self.read.load(Ordering::Relaxed));
        Ok(n)
    }
}

fn remember(
    store: &Store,
    digest: &Digest,
    diff_id: &Digest,
    media_type: &str,
    size: u64,
    source: &str,
) -> Result<(), RegistryError> {
    let tx = Transaction::new_unchecked(store.conn(), TransactionBehavior::Immediate)
        .map_err(|e| store.db_err(e))?;
    let exists = tx
        .query_row(
            "SELECT 1 FROM layers WHERE diff_id = ?1",
            params![diff_id.to_string()],
            |_| Ok(()),
        )
        .optional()
        .map_err(|e| store.db_err(e))?
        .is_some();
    if exists && digest != diff_id {
        record_layer_blob(&tx, digest, diff_id, media_type, size, Some(source)).map_err(|e| {
            RegistryError::Layer {
                reference: source.to_string(),
                digest: digest.to_string(),
                source: Box::new(e),
            }
        })?;
    }
    tx.commit().map_err(|e| store.db_err(e))?;
    Ok(())
}

/// A new manifest for the blobs pushed: OCI when the stored manifest was
/// OCI or any layer is zstd, else Docker schema2 (what Docker pushes).
fn build_manifest(
    stored: Option<&Manifest>,
    config_digest: &Digest,
    config_size: u64,
    layers: &[Descriptor],
) -> Result<(Vec<u8>, String), RegistryError> {
    let stored_oci = stored.is_some_and(|m| m.media_type.as_deref() != Some(oci::DOCKER_MANIFEST));
    let any_zstd = layers.iter().any(|l| l.media_type.contains("zstd"));
    let use_oci = stored_oci || any_zstd;
    let layers: Vec<Descriptor> = layers
        .iter()
        .map(|l| {
            let kind = if l.media_type.contains("zstd") {
                oci::OCI_LAYER_ZSTD
            } else if l.media_type.contains("gzip") {
                if use_oci {
                    oci::OCI_LAYER_GZIP
                } else {
                    oci::DOCKER_LAYER_GZIP
                }
            } else if use_oci {
                oci::OCI_LAYER
            } else {
                oci::DOCKER_LAYER
            };
            Descriptor {
                media_type: kind.to_string(),
                ..l.clone()
            }
        })
        .collect();
    let media_type = if use_oci {
        oci::OCI_MANIFEST
    } else {
        oci::DOCKER_MANIFEST
    };
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(media_type.to_string()),
        config: Descriptor {
            media_type: if use_oci {
                oci::OCI_CONFIG
            } else {
                oci::DOCKER_CONFIG
            }
            .to_string(),
            digest: *config_digest,
            size: config_size,
            annotations: None,
            platform: None,
            extra: Default::default(),
        },
        layers,
        annotations: stored
            .filter(|_| use_oci)
            .and_then(|m| m.annotations.clone()),
        extra: Default::default(),
    };
    let bytes = serde_json::to_vec(&manifest).map_err(|e| RegistryError::BadManifest {
        reference: config_digest.to_string(),
        reason: e.to_string(),
    })?;
    Ok((bytes, media_type.to_string()))
}

fn put_manifest(
    client: &RegistryClient,
    path: &str,
    tag: &str,
    bytes: &[u8],
    media_type: &str,
) -> Result<Digest, RegistryError> {
    let what = format!("{}/{path}:{tag}", client.registry());
    if bytes.len() as u64 > super::manifest::MAX_MANIFEST_SIZE {
        return Err(RegistryError::TooLarge {
            what,
            limit: super::manifest::MAX_MANIFEST_SIZE,
        });
    }
    let url = client.url(&format!("v2/{path}/manifests/{tag}"))?;
    let resp = client.send_ok(&what, &push_scopes(path, None), &|http| {
        http.put(url.clone())
            .header(reqwest::header::CONTENT_TYPE, media_type)
            .timeout(client.upload_timeout(bytes.len() as u64))
            .body(bytes.to_vec())
    })?;
    let digest = Digest::of(bytes);
    if let Some(announced) = resp
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
    {
        if announced != digest.to_string() {
            return Err(RegistryError::DigestMismatch {
                what,
                expected: digest.to_string(),
                actual: announced.to_string(),
            });
        }
    }
    Ok(digest)
}
