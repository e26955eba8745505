//! `save`: images as a docker-archive (the Docker 25+ layout: an OCI
//! layout plus manifest.json and repositories, readable by every docker
//! and OCI tool), an OCI archive, or an OCI directory. Layers are written
//! uncompressed, rebuilt byte for byte, so their digests are the diff_ids.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};
use std::path::Path;

use serde_json::json;

use super::{uncompressed_manifest, ArchiveError};
use crate::digest::{Digest, HashingReader};
use crate::image::oci::{OCI_INDEX, OCI_MANIFEST};
use crate::image::{get_image, image_layer_ids, layer_info, open_layer_tar, resolve_image};
use crate::reference::Reference;
use crate::store::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveFormat {
    DockerArchive,
    OciArchive,
    OciDir,
}

/// Where objects go: tar members or files in a directory.
trait Sink {
    fn add_bytes(&mut self, path: &str, data: &[u8]) -> Result<(), ArchiveError>;
    fn add_layer(
        &mut self,
        store: &Store,
        path: &str,
        diff_id: &Digest,
        size: u64,
    ) -> Result<(), ArchiveError>;
}

struct TarSink<W: Write> {
    builder: tar::Builder<W>,
}

fn header(
    path: &str,
    size: u64,
    mode: u32,
    kind: tar::EntryType,
) -> Result<tar::Header, ArchiveError> {
    let mut h = tar::Header::new_ustar();
    h.set_path(path).map_err(|e| ArchiveError::File {
        path: path.into(),
        source: e,
    })?;
    h.set_size(size);
    h.set_mode(mode);
    h.set_entry_type(kind);
    h.set_mtime(0);
    h.set_cksum();
    Ok(h)
}

impl<W: Write> TarSink<W> {
    fn dir(&mut self, path: &str) -> Result<(), ArchiveError> {
        let h = header(path, 0, 0o755, tar::EntryType::Directory)?;
        self.builder.append(&h, io::empty())?;
        Ok(())
    }
}

impl<W: Write> Sink for TarSink<W> {
    fn add_bytes(&mut self, path: &str, data: &[u8]) -> Result<(), ArchiveError> {
        let h = header(path, data.len() as u64, 0o644, tar::EntryType::Regular)?;
        self.builder.append(&h, data)?;
        Ok(())
    }

    fn add_layer(
        &mut self,
        store: &Store,
        path: &str,
        diff_id: &Digest,
        size: u64,
    ) -> Result<(), ArchiveError> {
        let h = header(path, size, 0o644, tar::EntryType::Regular)?;
        let mut reader = HashingReader::new(open_layer_tar(store, diff_id)?);
        self.builder.append(&h, &mut reader)?;
        check_rebuilt(reader, diff_id, size)
    }
}

/// A rebuilt layer must hash to its diff_id: anything else means the
/// store's files were damaged since they were ingested.
fn check_rebuilt<R: std::io::Read>(
    reader: HashingReader<R>,
    diff_id: &Digest,
    size: u64,
) -> Result<(), ArchiveError> {
    let (digest, len, _) = reader.finish();
    if digest != *diff_id || len != size {
        return Err(ArchiveError::Invalid(format!(
            "layer {diff_id} rebuilt as {digest} ({len} bytes): the store is damaged, run strata fsck"
        )));
    }
    Ok(())
}

struct DirSink<'a> {
    root: &'a Path,
}

impl Sink for DirSink<'_> {
    fn add_bytes(&mut self, path: &str, data: &[u8]) -> Result<(), ArchiveError> {
        let target = self.root.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| ArchiveError::File {
                path: parent.display().to_string(),
                source: e,
            })?;
        }
        std::fs::write(&target, data).map_err(|e| ArchiveError::File {
            path: target.display().to_string(),
            source: e,
        })
    }

    fn add_layer(
        &mut self,
        store: &Store,
        path: &str,
        diff_id: &Digest,
        size: u64,
    ) -> Result<(), ArchiveError> {
        let target = self.root.join(path);
        if target.exists() {
            return Ok(());
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| ArchiveError::File {
                path: parent.display().to_string(),
                source: e,
            })?;
        }
        let tmp = target.with_extension("partial");
        let mut out = std::fs::File::create(&tmp).map_err(|e| ArchiveError::File {
            path: tmp.display().to_string(),
            source: e,
        })?;
        let mut reader = HashingReader::new(open_layer_tar(store, diff_id)?);
        io::copy(&mut reader, &mut out)?;
        if let Err(e) = check_rebuilt(reader, diff_id, size) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, &target).map_err(|e| ArchiveError::File {
            path: target.display().to_string(),
            source: e,
        })
    }
}

/// One image to save, under the names the user gave.
struct Selected {
    id: Digest,
    config: Vec<u8>,
    layers: Vec<(Digest, u64)>,
    tags: Vec<Reference>,
}

fn select(store: &Store, names: &[String]) -> Result<Vec<Selected>, ArchiveError> {
    let mut by_id: BTreeMap<Digest, Selected> = BTreeMap::new();
    let mut order = Vec::new();
    for name in names {
        let id = resolve_image(store, name)?;
        let record = get_image(store, &id)?;
        let tag = Reference::parse(name)
            .ok()
            .filter(|r| record.tags.contains(&r.to_string()));
        if let std::collections::btree_map::Entry::Vacant(slot) = by_id.entry(id) {
            let config = store.read_blob(&record.config_digest)?;
            let mut layers = Vec::new();
            for (_, diff_id) in image_layer_ids(store, &id)? {
                let info = layer_info(store, &diff_id)?
                    .ok_or_else(|| ArchiveError::Invalid(format!("layer {diff_id} is missing")))?;
                layers.push((diff_id, info.tar_size));
            }
            slot.insert(Selected {
                id,
                config,
                layers,
                tags: vec![],
            });
            order.push(id);
        }
        if let (Some(tag), Some(sel)) = (tag, by_id.get_mut(&id)) {
            if !sel.tags.contains(&tag) {
                sel.tags.push(tag);
            }
        }
    }
    Ok(order
        .into_iter()
        .filter_map(|id| by_id.remove(&id))
        .collect())
}

/// Saves the named images. `out` receives the archive for the archive
/// formats; `dir` is the target for [`SaveFormat::OciDir`].
pub fn save_images(
    store: &Store,
    names: &[String],
    format: SaveFormat,
    out: Option<&mut dyn Write>,
    dir: Option<&Path>,
) -> Result<(), ArchiveError> {
    let images = select(store, names)?;
    match format {
        SaveFormat::OciDir => {
            let root = dir.ok_or_else(|| {
                ArchiveError::Invalid("oci-dir needs an output directory (-o DIR)".into())
            })?;
            std::fs::create_dir_all(root).map_err(|e| ArchiveError::File {
                path: root.display().to_string(),
                source: e,
            })?;
            write_layout(store, &images, &mut DirSink { root }, false)
        }
        SaveFormat::DockerArchive | SaveFormat::OciArchive => {
            let out = out.ok_or_else(|| ArchiveError::Invalid("no output".into()))?;
            let mut sink = TarSink {
                builder: tar::Builder::new(out),
            };
            sink.dir("blobs/")?;
            sink.dir("blobs/sha256/")?;
            write_layout(
                store,
                &images,
                &mut sink,
                format == SaveFormat::DockerArchive,
            )?;
            sink.builder.into_inner()?.flush()?;
            Ok(())
        }
    }
}

fn write_layout(
    store: &Store,
    images: &[Selected],
    sink: &mut dyn Sink,
    docker: bool,
) -> Result<(), ArchiveError> {
    let mut written: BTreeSet<Digest> = BTreeSet::new();
    let mut index_manifests = Vec::new();
    let mut docker_manifest = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for image in images {
        for (diff_id, size) in &image.layers {
            if written.insert(*diff_id) {
                sink.add_layer(
                    store,
                    &format!("blobs/sha256/{}", diff_id.hex()),
                    diff_id,
                    *size,
                )?;
            }
        }
        if written.insert(image.id) {
            sink.add_bytes(&format!("blobs/sha256/{}", image.id.hex()), &image.config)?;
        }
        let manifest = uncompressed_manifest(&image.id, image.config.len() as u64, &image.layers);
        let manifest_digest = Digest::of(&manifest);
        if written.insert(manifest_digest) {
            sink.add_bytes(
                &format!("blobs/sha256/{}", manifest_digest.hex()),
                &manifest,
            )?;
        }
        let descriptor = |annotations: Option<serde_json::Value>| {
            let mut d = json!({"mediaType": OCI_MANIFEST, "digest": manifest_digest.to_string(), "size": manifest.len()});
            if let (Some(a), Some(obj)) = (annotations, d.as_object_mut()) {
                obj.insert("annotations".into(), a);
            }
            d
        };
        if image.tags.is_empty() {
            index_manifests.push(descriptor(None));
        }
        for tag in &image.tags {
            index_manifests.push(descriptor(Some(json!({
                "io.containerd.image.name": tag.to_string(),
                "org.opencontainers.image.ref.name": tag.tag.clone().unwrap_or_default(),
            }))));
            repositories
                .entry(tag.familiar_repository())
                .or_default()
                .insert(tag.tag.clone().unwrap_or_default(), image.id.hex());
        }
        docker_manifest.push(json!({
            "Config": format!("blobs/sha256/{}", image.id.hex()),
            "RepoTags": if image.tags.is_empty() { serde_json::Value::Null } else { json!(image.tags.iter().map(|t| t.familiar()).collect::<Vec<_>>()) },
            "Layers": image.layers.iter().map(|(d, _)| format!("blobs/sha256/{}", d.hex())).collect::<Vec<_>>(),
        }));
    }
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index_manifests});
    sink.add_bytes(
        "index.json",
        &serde_json::to_vec(&index).unwrap_or_default(),
    )?;
    if docker {
        sink.add_bytes(
            "manifest.json",
            &serde_json::to_vec(&docker_manifest).unwrap_or_default(),
        )?;
        if !repositories.is_empty() {
            sink.add_bytes(
                "repositories",
                &serde_json::to_vec(&repositories).unwrap_or_default(),
            )?;
        }
    }
    sink.add_bytes("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok(())
}
