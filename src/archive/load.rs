//! `load`: docker-archive (legacy, and Docker 25+ with an OCI layout
//! inside), OCI layout as a directory or a tar, optionally gzip or zstd
//! compressed.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde::Deserialize;

use super::{uncompressed_manifest, ArchiveError};
use crate::digest::Digest;
use crate::image::oci::{self, Descriptor, Document, ImageConfig};
use crate::image::{
    ingest_layer_buffered, record_image, record_layer, stream_channel, Compression, IngestedLayer,
    Limits, MovedTag, NewImage, StreamReader,
};
use crate::reference::Reference;
use crate::store::{Staging, Store};

/// Members up to this size are kept in memory (manifests, configs, small
/// layers); larger ones are ingested as layers while they stream past.
const SMALL_MEMBER: u64 = 4 << 20;
/// The buffer the archive is read through: smaller than the chunks a
/// layer is handed over in ([`crate::image::CHUNK`]), so that an
/// uncompressed layer is read from the file straight into them
/// (`BufReader` passes a read at least its size through once its buffer
/// is drained) rather than copied through this buffer first (0.07 s of
/// CPU for a 300 MB layer).
const ARCHIVE_BUFFER: usize = crate::image::CHUNK / 4;

#[derive(Debug, Clone)]
pub struct LoadedImage {
    pub id: Digest,
    pub tags: Vec<Reference>,
}

#[derive(Debug, Default)]
pub struct LoadReport {
    pub images: Vec<LoadedImage>,
    pub moved: Vec<MovedTag>,
}

/// The archive's members, as read.
#[derive(Default)]
struct Members {
    small: HashMap<String, Vec<u8>>,
    layers: HashMap<String, Result<IngestedLayer, String>>,
    links: HashMap<String, String>,
}

fn clean(path: &str) -> String {
    let mut p = path;
    while let Some(rest) = p.strip_prefix("./") {
        p = rest;
    }
    p.trim_start_matches('/').to_string()
}

impl Members {
    /// Records a member the archive's reader sent.
    fn add(&mut self, store: &Store, staging: &mut Staging, member: Member, limits: &Limits) {
        match member {
            Member::Small { path, data } => {
                self.small.insert(path, data);
            }
            Member::Link { path, target } => {
                self.links.insert(path, target);
            }
            // Dropping the stream after tells the reader to skip what the
            // ingest did not read.
            Member::Large { path, mut stream } => {
                self.add_layer(store, staging, path, &mut stream, limits)
            }
        }
    }

    /// Ingests a member larger than [`SMALL_MEMBER`] as a layer, as it is
    /// read from `reader`.
    fn add_layer(
        &mut self,
        store: &Store,
        staging: &mut Staging,
        path: String,
        reader: &mut dyn BufRead,
        limits: &Limits,
    ) {
        // Parsed from the stream's own chunks (no copy into a buffer first).
        let result =
            ingest_layer_buffered(store, staging, reader, limits).map_err(|e| e.to_string());
        if let Err(e) = &result {
            // A limit or a malformed stream: only an error if the member is used.
            tracing::debug!("member {path} is not a layer: {e}");
        }
        self.layers.insert(path, result);
    }

    fn resolve(&self, path: &str) -> String {
        let mut p = clean(path);
        for _ in 0..16 {
            match self.links.get(&p) {
                Some(target) => p = target.clone(),
                None => break,
            }
        }
        p
    }

    fn bytes(&self, path: &str) -> Result<&[u8], ArchiveError> {
        let p = self.resolve(path);
        self.small.get(&p).map(Vec::as_slice).ok_or_else(|| {
            ArchiveError::Invalid(format!(
                "member {path} is missing or too large for a manifest or config"
            ))
        })
    }

    /// Makes sure the member at `path` is ingested as a layer; returns its key.
    fn layer(
        &mut self,
        store: &Store,
        staging: &mut Staging,
        path: &str,
        limits: &Limits,
    ) -> Result<String, ArchiveError> {
        let p = self.resolve(path);
        if !self.layers.contains_key(&p) {
            let data = self.small.get(&p).ok_or_else(|| {
                ArchiveError::Invalid(format!("layer {path} is missing from the archive"))
            })?;
            let result = ingest_layer_buffered(store, staging, &mut data.as_slice(), limits)
                .map_err(|e| ArchiveError::Layer {
                    member: path.to_string(),
                    source: e,
                })?;
            self.layers.insert(p.clone(), Ok(result));
        }
        match self.layers.get(&p) {
            Some(Ok(_)) => Ok(p),
            Some(Err(e)) => Err(ArchiveError::Invalid(format!("layer {path}: {e}"))),
            None => Err(ArchiveError::Invalid(format!(
                "layer {path} is missing from the archive"
            ))),
        }
    }

    fn ingested(&self, key: &str) -> Result<&IngestedLayer, ArchiveError> {
        match self.layers.get(key) {
            Some(Ok(l)) => Ok(l),
            _ => Err(ArchiveError::Invalid(format!(
                "layer {key} is missing from the archive"
            ))),
        }
    }
}

/// An archive member, as the reading thread hands it over.
enum Member {
    /// Up to [`SMALL_MEMBER`] bytes (a manifest, a config, a small layer).
    Small { path: String, data: Vec<u8> },
    /// A larger member, streamed while it is read: a layer, ingested as
    /// it arrives.
    Large { path: String, stream: StreamReader },
    /// A symbolic or hard link, and the member it names.
    Link { path: String, target: String },
}

/// Loads from a stream (a tar, optionally gzip- or zstd-compressed). The
/// archive is read (and decompressed) on a thread of its own, which hands
/// each member over; this thread ingests the layers, so that reading the
/// archive does not hold up the parsing and hashing of a layer (the tar
/// crate's entries cannot leave the thread that reads them).
pub fn load_archive(
    store: &Store,
    input: &mut (dyn Read + Send),
    limits: &Limits,
) -> Result<LoadReport, ArchiveError> {
    let mut staging = store.begin_staging()?;
    let mut members = Members::default();
    let read = std::thread::scope(|scope| {
        let (sender, received) = std::sync::mpsc::sync_channel::<Member>(1);
        let reader = std::thread::Builder::new()
            .name("load-reader".into())
            .spawn_scoped(scope, move || read_members(input, &sender))
            .map_err(ArchiveError::Io)?;
        for member in received {
            members.add(store, &mut staging, member, limits);
        }
        reader.join().unwrap_or_else(|_| {
            Err(ArchiveError::Invalid(
                "the archive's reader panicked".into(),
            ))
        })
    });
    read?;
    finish(store, staging, members, limits)
}

/// The reading side of [`load_archive`]: sends each member of the archive
/// in `input` as it comes, until the end or the first error (returned; the
/// loading side stops at the end of what it was sent).
fn read_members(
    input: &mut (dyn Read + Send),
    members: &std::sync::mpsc::SyncSender<Member>,
) -> Result<(), ArchiveError> {
    let mut buffered = BufReader::with_capacity(ARCHIVE_BUFFER, input);
    let head = buffered.fill_buf()?;
    if head.is_empty() {
        return Err(ArchiveError::Invalid(
            "empty input: expected a tar archive".into(),
        ));
    }
    let decoded: Box<dyn Read + '_> = match Compression::sniff(head) {
        Compression::None => Box::new(buffered),
        Compression::Gzip => crate::image::gzip::decoder(buffered),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?),
    };
    let mut archive = tar::Archive::new(decoded);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = clean(&String::from_utf8_lossy(&entry.path_bytes()));
        let kind = entry.header().entry_type();
        let member = match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.size();
                if size <= SMALL_MEMBER {
                    let data = read_member(&mut entry, &path, size)?;
                    Member::Small { path, data }
                } else {
                    let (stream, received) = stream_channel();
                    if members
                        .send(Member::Large {
                            path,
                            stream: received,
                        })
                        .is_err()
                    {
                        return Ok(());
                    }
                    // Whatever the ingest leaves unread is skipped by
                    // the next entry.
                    stream.send_all(&mut entry)?;
                    continue;
                }
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
                    .unwrap_or_default();
                let target = if kind == tar::EntryType::Symlink {
                    let base = Path::new(&path).parent().unwrap_or(Path::new(""));
                    normalize_join(base, &target)
                } else {
                    clean(&target)
                };
                Member::Link { path, target }
            }
            _ => continue,
        };
        if members.send(member).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// The whole of a member of `size` bytes (at most [`SMALL_MEMBER`]), in
/// memory; an error if `reader` ends before.
fn read_member(reader: &mut dyn Read, path: &str, size: u64) -> Result<Vec<u8>, ArchiveError> {
    let mut data = Vec::with_capacity(size as usize);
    reader.take(size).read_to_end(&mut data)?;
    if data.len() as u64 != size {
        return Err(ArchiveError::Invalid(format!("member {path} is truncated")));
    }
    Ok(data)
}

fn normalize_join(base: &Path, target: &str) -> String {
    let mut parts: Vec<String> = if target.starts_with('/') {
        Vec::new()
    } else {
        base.components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect()
    };
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c.to_string()),
        }
    }
    parts.join("/")
}

/// Loads an OCI layout (or an unpacked docker-archive) from a directory.
pub fn load_directory(
    store: &Store,
    dir: &Path,
    limits: &Limits,
) -> Result<LoadReport, ArchiveError> {
    let mut staging = store.begin_staging()?;
    let mut members = Members::default();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let items = std::fs::read_dir(&d).map_err(|e| ArchiveError::File {
            path: d.display().to_string(),
            source: e,
        })?;
        for item in items {
            let item = item?;
            let path = item.path();
            let meta = std::fs::symlink_metadata(&path)?;
            let rel = path
                .strip_prefix(dir)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            if meta.is_dir() {
                stack.push(path);
            } else if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path)?;
                let base = Path::new(&rel)
                    .parent()
                    .unwrap_or(Path::new(""))
                    .to_path_buf();
                members
                    .links
                    .insert(rel, normalize_join(&base, &target.to_string_lossy()));
            } else if meta.is_file() {
                let mut file = std::fs::File::open(&path).map_err(|e| ArchiveError::File {
                    path: path.display().to_string(),
                    source: e,
                })?;
                let size = meta.len();
                if size <= SMALL_MEMBER {
                    let data = read_member(&mut file, &rel, size)?;
                    members.small.insert(rel, data);
                } else {
                    let mut file = BufReader::with_capacity(crate::image::READ_BUFFER, file);
                    members.add_layer(store, &mut staging, rel, &mut file, limits);
                }
            }
        }
    }
    finish(store, staging, members, limits)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// An image found in the archive, before recording.
struct Found {
    config: Vec<u8>,
    config_media_type: String,
    manifest: Option<Vec<u8>>,
    layer_keys: Vec<String>,
    tags: Vec<Reference>,
}

fn finish(
    store: &Store,
    mut staging: Staging,
    mut members: Members,
    limits: &Limits,
) -> Result<LoadReport, ArchiveError> {
    let mut found = Vec::new();
    if members.small.contains_key("manifest.json") {
        let entries: Vec<DockerManifestEntry> =
            serde_json::from_slice(members.bytes("manifest.json")?)
                .map_err(|e| ArchiveError::Invalid(format!("manifest.json: {e}")))?;
        if entries.is_empty() {
            return Err(ArchiveError::Invalid(
                "manifest.json lists no images".into(),
            ));
        }
        for entry in entries {
            let config = members.bytes(&entry.config)?.to_vec();
            check_named_digest(&entry.config, &config)?;
            let mut layer_keys = Vec::new();
            for layer in &entry.layers {
                let key = members.layer(store, &mut staging, layer, limits)?;
                let ingested = members.ingested(&key)?;
                if let Some(hex) = blob_hex(layer) {
                    if ingested.blob_digest.hex() != hex {
                        return Err(ArchiveError::Invalid(format!(
                            "{layer}: content is {}, not the digest its name says",
                            ingested.blob_digest
                        )));
                    }
                }
                layer_keys.push(key);
            }
            let tags = entry
                .repo_tags
                .iter()
                .map(|t| Reference::parse(t))
                .collect::<Result<Vec<_>, _>>()?;
            found.push(Found {
                config,
                config_media_type: oci::DOCKER_CONFIG.into(),
                manifest: None,
                layer_keys,
                tags,
            });
        }
    } else if members.small.contains_key("index.json") {
        if let Some(layout) = members.small.get("oci-layout") {
            let v: serde_json::Value = serde_json::from_slice(layout)
                .map_err(|e| ArchiveError::Invalid(format!("oci-layout: {e}")))?;
            if v.get("imageLayoutVersion").and_then(|x| x.as_str()) != Some("1.0.0") {
                return Err(ArchiveError::Invalid(
                    "oci-layout: unsupported imageLayoutVersion".into(),
                ));
            }
        }
        let index = match oci::parse_document(members.bytes("index.json")?) {
            Ok(Document::Index(i)) => i,
            Ok(Document::Manifest(_)) => {
                return Err(ArchiveError::Invalid(
                    "index.json is a manifest, not an index".into(),
                ))
            }
            Err(e) => return Err(ArchiveError::Invalid(format!("index.json: {e}"))),
        };
        for descriptor in &index.manifests {
            let tags = names_of(descriptor);
            collect_oci(
                store,
                &mut staging,
                &mut members,
                descriptor,
                tags,
                limits,
                &mut found,
                0,
            )?;
        }
    } else {
        return Err(ArchiveError::Invalid(
            "no manifest.json or index.json: not a docker-archive or OCI layout".into(),
        ));
    }

    // Every layer checked against its config, then everything recorded at once.
    let mut images = Vec::new();
    for f in &found {
        let config: ImageConfig = serde_json::from_slice(&f.config)
            .map_err(|e| ArchiveError::Invalid(format!("image config: {e}")))?;
        if !config.os.is_empty() && config.os != "linux" {
            return Err(ArchiveError::ForeignOs(format!(
                "cannot load {} image on linux",
                config.os
            )));
        }
        let diff_ids: Vec<Digest> = f
            .layer_keys
            .iter()
            .map(|k| members.ingested(k).map(|l| l.diff_id))
            .collect::<Result<_, _>>()?;
        if diff_ids.len() != config.rootfs.diff_ids.len() {
            return Err(ArchiveError::Invalid(format!(
                "the manifest lists {} layers, the config {} diff_ids",
                diff_ids.len(),
                config.rootfs.diff_ids.len()
            )));
        }
        for (actual, expected) in diff_ids.iter().zip(&config.rootfs.diff_ids) {
            if actual != expected {
                return Err(ArchiveError::Layer {
                    member: expected.to_string(),
                    source: crate::image::LayerError::DiffIdMismatch {
                        expected: expected.to_string(),
                        actual: actual.to_string(),
                    },
                });
            }
        }
        let config_digest = staging.stage_blob(store, &f.config, Some(&f.config_media_type))?;
        let manifest = match &f.manifest {
            Some(m) => m.clone(),
            None => {
                let layers: Vec<(Digest, u64)> = f
                    .layer_keys
                    .iter()
                    .map(|k| members.ingested(k).map(|l| (l.diff_id, l.tar_size)))
                    .collect::<Result<_, _>>()?;
                uncompressed_manifest(&config_digest, f.config.len() as u64, &layers)
            }
        };
        let manifest_digest = staging.stage_blob(store, &manifest, Some(oci::OCI_MANIFEST))?;
        images.push(NewImage {
            config_digest,
            manifest_digest,
            config,
            tags: f.tags.clone(),
            repo_digests: vec![],
        });
    }
    let used: Vec<String> = {
        let mut keys: Vec<String> = found
            .iter()
            .flat_map(|f| f.layer_keys.iter().cloned())
            .collect();
        keys.sort();
        keys.dedup();
        keys
    };
    let report = staging.publish(store, |tx| -> Result<LoadReport, ArchiveError> {
        for key in &used {
            record_layer(tx, members.ingested(key)?)?;
        }
        let mut report = LoadReport::default();
        for image in &images {
            report.moved.extend(record_image(tx, image)?);
            report.images.push(LoadedImage {
                id: image.config_digest,
                tags: image.tags.clone(),
            });
        }
        Ok(report)
    })?;
    Ok(report)
}

/// `blobs/sha256/<hex>` -> `<hex>`.
fn blob_hex(path: &str) -> Option<String> {
    let p = clean(path);
    let hex = p.strip_prefix("blobs/sha256/")?;
    (hex.len() == 64).then(|| hex.to_string())
}

fn blob_path(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

/// A legacy config is named `<hex>.json`, a new one `blobs/sha256/<hex>`:
/// either way the name must be the content's digest.
fn check_named_digest(name: &str, data: &[u8]) -> Result<(), ArchiveError> {
    let base = clean(name);
    let hex = blob_hex(&base).or_else(|| {
        base.strip_suffix(".json")
            .filter(|h| h.len() == 64 && !h.contains('/'))
            .map(str::to_string)
    });
    if let Some(hex) = hex {
        let actual = Digest::of(data);
        if actual.hex() != hex {
            return Err(ArchiveError::Invalid(format!(
                "{name}: content is {actual}, not the digest its name says"
            )));
        }
    }
    Ok(())
}

fn names_of(descriptor: &Descriptor) -> Vec<Reference> {
    let annotations = descriptor.annotations.clone().unwrap_or_default();
    let full = annotations.get("io.containerd.image.name").cloned();
    let short = annotations
        .get("org.opencontainers.image.ref.name")
        .cloned();
    let candidate = full.or_else(|| short.filter(|s| s.contains(':') || s.contains('/')));
    candidate
        .and_then(|c| Reference::parse(&c).ok())
        .into_iter()
        .collect()
}

fn read_descriptor<'a>(members: &'a Members, d: &Descriptor) -> Result<&'a [u8], ArchiveError> {
    let data = members.bytes(&blob_path(&d.digest))?;
    if data.len() as u64 != d.size {
        return Err(ArchiveError::Invalid(format!(
            "descriptor {} says {} bytes, the blob has {}",
            d.digest,
            d.size,
            data.len()
        )));
    }
    if Digest::of(data) != d.digest {
        return Err(ArchiveError::Invalid(format!(
            "blob {} does not match its digest",
            d.digest
        )));
    }
    Ok(data)
}

fn host_platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    ("linux", arch)
}

#[allow(clippy::too_many_arguments)]
fn collect_oci(
    store: &Store,
    staging: &mut Staging,
    members: &mut Members,
    descriptor: &Descriptor,
    tags: Vec<Reference>,
    limits: &Limits,
    found: &mut Vec<Found>,
    depth: usize,
) -> Result<(), ArchiveError> {
    if depth > 4 {
        return Err(ArchiveError::Invalid("indexes nested too deeply".into()));
    }
    let data = read_descriptor(members, descriptor)?.to_vec();
    match oci::parse_document(&data)
        .map_err(|e| ArchiveError::Invalid(format!("{}: {e}", descriptor.digest)))?
    {
        Document::Index(index) => {
            let (os, arch) = host_platform();
            let chosen = index
                .manifests
                .iter()
                .find(|m| {
                    m.platform
                        .as_ref()
                        .is_some_and(|p| p.os == os && p.architecture == arch)
                })
                .or_else(|| {
                    if index.manifests.len() == 1 {
                        index.manifests.first()
                    } else {
                        None
                    }
                })
                .ok_or_else(|| {
                    ArchiveError::Invalid(format!(
                        "index {} has no manifest for {os}/{arch}",
                        descriptor.digest
                    ))
                })?;
            collect_oci(
                store,
                staging,
                members,
                chosen,
                tags,
                limits,
                found,
                depth + 1,
            )
        }
        Document::Manifest(manifest) => {
            let config = read_descriptor(members, &manifest.config)?.to_vec();
            let mut layer_keys = Vec::new();
            for layer in &manifest.layers {
                if !oci::is_layer_media_type(&layer.media_type) {
                    return Err(ArchiveError::Invalid(format!(
                        "layer {} has unsupported media type {}",
                        layer.digest, layer.media_type
                    )));
                }
                let key = members.layer(store, staging, &blob_path(&layer.digest), limits)?;
                let ingested = members.ingested(&key)?;
                if ingested.blob_digest != layer.digest {
                    return Err(ArchiveError::Invalid(format!(
                        "layer blob {} does not match its digest (content is {})",
                        layer.digest, ingested.blob_digest
                    )));
                }
                if ingested.blob_size != layer.size {
                    return Err(ArchiveError::Invalid(format!(
                        "descriptor {} says {} bytes, the blob has {}",
                        layer.digest, layer.size, ingested.blob_size
                    )));
                }
                layer_keys.push(key);
            }
            found.push(Found {
                config,
                config_media_type: manifest.config.media_type.clone(),
                manifest: Some(data),
                layer_keys,
                tags,
            });
            Ok(())
        }
    }
}
