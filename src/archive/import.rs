//! `import`: a root filesystem tarball becomes a one-layer image.

use std::io::Read;

use super::ArchiveError;
use crate::digest::Digest;
use crate::image::changes::apply_changes;
use crate::image::oci::{History, ImageConfig, RootFs, RunConfig};
use crate::image::{ingest_layer, Limits};
use crate::reference::Reference;
use crate::store::Store;

#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    pub reference: Option<String>,
    pub changes: Vec<String>,
    pub message: Option<String>,
    /// Where the tarball came from, for the history comment ("-" for stdin).
    pub source: String,
    pub platform: Option<(String, String)>,
}

/// Imports a tarball (tar, tar+gzip, tar+zstd); returns the image ID.
pub fn import_rootfs(
    store: &Store,
    input: &mut dyn Read,
    options: &ImportOptions,
    limits: &Limits,
) -> Result<Digest, ArchiveError> {
    let reference = options
        .reference
        .as_deref()
        .map(Reference::parse)
        .transpose()?;
    if reference.as_ref().is_some_and(|r| r.digest.is_some()) {
        return Err(ArchiveError::Invalid(
            "an import reference cannot contain a digest".into(),
        ));
    }
    if let Some((os, _)) = &options.platform {
        if os != "linux" {
            return Err(ArchiveError::ForeignOs(format!(
                "operating system {os:?} is not supported"
            )));
        }
    }
    let mut run_config = RunConfig::default();
    apply_changes(&mut run_config, &options.changes)?;
    let mut staging = store.begin_staging()?;
    let layer =
        ingest_layer(store, &mut staging, input, limits).map_err(|e| ArchiveError::Layer {
            member: options.source.clone(),
            source: e,
        })?;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let (os, arch) = options
        .platform
        .clone()
        .unwrap_or_else(|| ("linux".into(), host_arch().into()));
    let config = ImageConfig {
        created: Some(now.clone()),
        author: None,
        architecture: arch,
        os,
        variant: None,
        config: Some(run_config),
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: vec![layer.diff_id],
        },
        history: vec![History {
            created: Some(now),
            created_by: None,
            author: None,
            comment: Some(
                options
                    .message
                    .clone()
                    .unwrap_or_else(|| format!("Imported from {}", options.source)),
            ),
            empty_layer: false,
        }],
        extra: Default::default(),
    };
    crate::image::publish::publish_image(
        store,
        staging,
        &layer,
        config,
        reference.into_iter().collect(),
    )
}

pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}
