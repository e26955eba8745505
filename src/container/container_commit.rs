//! `commit`: a new image from a container's changes. The upper directory
//! becomes one layer tar (OCI whiteouts; a renamed directory carries its
//! contents from the image, see `changes_tar`), which is ingested like any
//! other layer; the image's config gets the new diff_id and a history
//! entry. Works while the container runs.

use std::io::{Seek, SeekFrom};

use super::changes_tar::write_changes_tar;
use super::liveness::lookup;
use super::records::container_dir;
use super::rootfs::RootfsDirs;
use super::upper::ImagePaths;
use super::ContainerError;
use crate::digest::Digest;
use crate::image::changes::apply_changes;
use crate::image::oci::History;
use crate::image::{image_config, ingest_layer, Limits};
use crate::reference::Reference;
use crate::store::Store;

#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    pub reference: Option<String>,
    pub author: Option<String>,
    pub message: Option<String>,
    /// Dockerfile instructions (`CMD ...`, `ENV ...`) applied to the config.
    pub changes: Vec<String>,
}

/// Commits the container; returns the new image's ID.
pub fn commit_container(
    store: &Store,
    name_or_id: &str,
    options: &CommitOptions,
) -> Result<Digest, ContainerError> {
    let c = lookup(store, name_or_id)?;
    let reference = options
        .reference
        .as_deref()
        .map(Reference::parse)
        .transpose()
        .map_err(|e| ContainerError::Invalid(e.to_string()))?;
    let base: Digest = c.image_id.parse().map_err(|_| ContainerError::Corrupt {
        id: c.id.clone(),
        reason: "image id".into(),
    })?;
    let (mut config, _) = image_config(store, &base)?;
    let upper = RootfsDirs::of(&container_dir(store, &c.id)).upper;
    let image = ImagePaths::open(store, &base)?;
    let mut tar_file = tempfile_in(&store.tmp_dir())?;
    write_changes_tar(&upper, &image, &mut tar_file)?;
    drop(image);
    tar_file
        .seek(SeekFrom::Start(0))
        .map_err(|e| ContainerError::io(store.tmp_dir(), e))?;
    let mut staging = store.begin_staging()?;
    let layer = ingest_layer(store, &mut staging, &mut tar_file, &Limits::default())?;
    let now = super::spec::now_rfc3339();
    let mut run = config.config.take().unwrap_or_default();
    apply_changes(&mut run, &options.changes)
        .map_err(|e| ContainerError::Invalid(e.to_string()))?;
    config.config = Some(run);
    config.created = Some(now.clone());
    if let Some(a) = &options.author {
        config.author = Some(a.clone());
    }
    config.rootfs.diff_ids.push(layer.diff_id);
    config.history.push(History {
        created: Some(now),
        created_by: Some(c.spec.argv().join(" ")),
        author: options.author.clone(),
        comment: options.message.clone(),
        empty_layer: false,
    });
    crate::image::publish::publish_image(
        store,
        staging,
        &layer,
        config,
        reference.into_iter().collect(),
    )
}

/// An anonymous temporary file in the store's staging directory.
fn tempfile_in(dir: &std::path::Path) -> Result<std::fs::File, ContainerError> {
    let path = dir.join(format!("commit-{:016x}.tar", rand::random::<u64>()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| ContainerError::io(&path, e))?;
    let _ = std::fs::remove_file(&path);
    Ok(file)
}
