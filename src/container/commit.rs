//! `commit`: a new image from a container's changes. The upper directory
//! becomes one layer tar (OCI whiteouts; a renamed directory carries its
//! contents from the image, see `changes_tar`), which is ingested like any
//! other layer; the image's config gets the new diff_id and a history
//! entry. Works while the container runs.

use std::io::Write;
use std::path::Path;

use super::error::ContainerError;
use super::files::changes_tar::write_changes_tar;
use super::files::upper::ImagePaths;
use super::launch::rootfs::RootfsDirs;
use super::monitor::liveness::lookup;
use super::records::container_dir;
use crate::digest::Digest;
use crate::image::changes::apply_changes;
use crate::image::oci::History;
use crate::image::{image_config, ingest_layer, IngestedLayer, Limits};
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
    let mut staging = store.begin_staging()?;
    let layer = ingest_changes(store, &mut staging, &upper, &image)?;
    drop(image);
    let now = super::spec::now_rfc3339();
    let mut run = config.config.take().unwrap_or_default();
    // As Docker: the image records the container's own command and
    // config (what `run` gave it), then `--change` applies.
    let spec = &c.spec;
    run.cmd = (!spec.cmd.is_empty()).then(|| spec.cmd.clone());
    run.entrypoint = (!spec.entrypoint.is_empty()).then(|| spec.entrypoint.clone());
    run.env = (!spec.env.is_empty()).then(|| spec.env.clone());
    run.working_dir =
        (spec.working_dir != "/" || run.working_dir.is_some()).then(|| spec.working_dir.clone());
    run.user = (!spec.user.is_empty()).then(|| spec.user.clone());
    run.labels = (!spec.labels.is_empty()).then(|| spec.labels.clone());
    apply_changes(&mut run, &options.changes)
        .map_err(|e| ContainerError::Invalid(e.to_string()))?;
    config.config = Some(run);
    config.created = Some(now.clone());
    if let Some(a) = &options.author {
        config.author = Some(a.clone());
    }
    // Docker's image JSON keeps the message as `comment` (`.Comment`).
    match &options.message {
        Some(m) => config
            .extra
            .insert("comment".into(), serde_json::Value::String(m.clone())),
        None => config.extra.remove("comment"),
    };
    config.rootfs.diff_ids.push(layer.diff_id);
    config.history.push(History {
        created: Some(now),
        created_by: Some(c.spec.argv().join(" ")),
        author: options.author.clone(),
        comment: options.message.clone(),
        empty_layer: false,
    });
    let image = crate::image::publish::publish_image::<ContainerError>(
        store,
        staging,
        &layer,
        config,
        reference.into_iter().collect(),
    )?;
    let mut extra = vec![
        ("comment", options.message.clone().unwrap_or_default()),
        ("imageID", image.to_string()),
    ];
    if let Some(r) = &options.reference {
        extra.push(("imageRef", r.clone()));
    }
    super::events::record_container_event(store, &c, "commit", &extra);
    Ok(image)
}

/// Streams the changes tar into the store's ingest through a pipe, so the
/// layer is never written out whole: a renamed directory's files go from
/// their store files straight to the ingest.
fn ingest_changes(
    store: &Store,
    staging: &mut crate::store::Staging,
    upper: &Path,
    image: &ImagePaths,
) -> Result<IngestedLayer, ContainerError> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| ContainerError::sys("pipe for the commit's layer", e))?;
    let mut reader = std::fs::File::from(read);
    let writer = std::fs::File::from(write);
    if super::launch::userns::is_rootless() {
        // An ordinary user's container: its upper directory is read in a
        // user namespace with its maps, where its files of subordinate
        // ids have the owners the container gave them (files/inside.rs).
        let child = super::files::inside::spawn(super::files::inside::Place::Fresh, move || {
            let mut writer = std::io::BufWriter::with_capacity(1 << 20, writer);
            write_changes_tar(upper, image, &mut writer)?;
            writer.flush().map_err(|e| ContainerError::io(upper, e))
        })?;
        let ingested = ingest_layer(store, staging, &mut reader, &Limits::default());
        drop(reader);
        child.wait()?;
        return Ok(ingested?);
    }
    std::thread::scope(|scope| {
        let tar = scope.spawn(move || {
            let mut writer = std::io::BufWriter::with_capacity(1 << 20, writer);
            write_changes_tar(upper, image, &mut writer)?;
            writer.flush().map_err(|e| ContainerError::io(upper, e))
        });
        let ingested = ingest_layer(store, staging, &mut reader, &Limits::default());
        // Unblocks the writer if the ingest stopped early.
        drop(reader);
        let written = tar.join().unwrap_or_else(|_| {
            Err(ContainerError::io(
                upper,
                std::io::Error::other("writing the layer panicked"),
            ))
        });
        match (written, ingested) {
            // The ingest's own failure stopped the writer.
            (Err(ContainerError::Io { source, .. }), Err(e))
                if source.kind() == std::io::ErrorKind::BrokenPipe =>
            {
                Err(e.into())
            }
            // A failure to read the changes: the ingest only saw a short stream.
            (Err(e), _) => Err(e),
            (Ok(()), ingested) => Ok(ingested?),
        }
    })
}
