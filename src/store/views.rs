//! `views/`: the metadata trees kernel image mounts are made from (see
//! `mount/kernel.rs` and docs/fs.md, "Kernel image mounts"), a cache that
//! gc empties of what no image needs. Private to the store's owner
//! (0700), like every top-level entry but `mounts/`.
//!
//! Names:
//! - `<hex>/`: the complete view of the image whose id has that hex
//!   digest: `meta/` (the merged tree, every regular file an empty sparse
//!   file of its size carrying overlayfs's metacopy and redirect xattrs)
//!   and `data/` (one hard link to each store file the image uses, by a
//!   short name the redirects give);
//! - `.tmp-<hex>-<pid>-<nanos>/`: a view being built (or a killed
//!   build's), renamed to `<hex>/` once complete and flushed;
//! - `<hex>.failed`: why a background build of that image's view failed
//!   (an image with device nodes, say): its mounts stay FUSE's.

use std::path::{Path, PathBuf};

use super::layer_dirs::is_hex_digest;
use super::permissions::create_private_dir;
use super::StoreError;

/// The directory's name under the store root.
pub const NAME: &str = "views";

/// `<root>/views`.
pub fn base(root: &Path) -> PathBuf {
    root.join(NAME)
}

/// `<root>/views`, created (private) if missing.
pub fn ensure_base(root: &Path) -> Result<PathBuf, StoreError> {
    let base = base(root);
    create_private_dir(&base)?;
    Ok(base)
}

/// The hex digests of the stored images' ids: the views gc keeps.
pub(super) fn image_hexes(
    store: &super::Store,
) -> Result<std::collections::HashSet<String>, StoreError> {
    let db = |e| store.db_err(e);
    let mut stmt = store.conn().prepare("SELECT id FROM images").map_err(db)?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(db)?;
    Ok(rows
        .collect::<Result<Vec<_>, _>>()
        .map_err(db)?
        .into_iter()
        .filter_map(|id| id.parse::<crate::digest::Digest>().ok().map(|d| d.hex()))
        .collect())
}

/// The disk a view takes of its own: every inode's blocks in `meta/`
/// (directories, symlinks, and regular files, empty and sparse there but
/// for a file's xattr block where one is needed) and the `data/`
/// directory itself, not its entries (hard links to store files, whose
/// blocks the store counts).
pub fn view_size(view: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let blocks = |p: &Path| p.symlink_metadata().map_or(0, |m| m.blocks() * 512);
    let mut total = blocks(&view.join("data"));
    let mut stack = vec![view.join("meta")];
    while let Some(dir) = stack.pop() {
        total += blocks(&dir);
        let Ok(items) = std::fs::read_dir(&dir) else {
            continue;
        };
        for item in items.flatten() {
            match item.file_type() {
                Ok(t) if t.is_dir() => stack.push(item.path()),
                _ => total += blocks(&item.path()),
            }
        }
    }
    total
}

/// What an entry of `views/` is, by its name.
#[derive(Debug, PartialEq, Eq)]
pub enum Entry<'a> {
    /// A complete view (the hex of its image's id).
    View(&'a str),
    /// A build in progress or killed, with the pid that builds it.
    Build(Option<i32>),
    /// A failed build's note (the hex of its image's id).
    Failed(&'a str),
    Other,
}

impl Entry<'_> {
    /// A build whose process is alive.
    pub fn is_live_build(&self) -> bool {
        matches!(self, Entry::Build(Some(pid)) if Path::new(&format!("/proc/{pid}")).exists())
    }

    /// What gc removes: a view or failure note of an image not among
    /// `images` ([`image_hexes`]), a build whose process died.
    pub fn is_unused(&self, images: &std::collections::HashSet<String>) -> bool {
        match self {
            Entry::View(hex) | Entry::Failed(hex) => !images.contains(*hex),
            Entry::Build(_) => !self.is_live_build(),
            Entry::Other => false,
        }
    }
}

/// Classifies an entry name of `views/`.
pub fn classify(name: &str) -> Entry<'_> {
    if is_hex_digest(name) {
        return Entry::View(name);
    }
    if let Some(hex) = name.strip_suffix(".failed").filter(|h| is_hex_digest(h)) {
        return Entry::Failed(hex);
    }
    match name.strip_prefix(".tmp-") {
        Some(rest) => Entry::Build(rest.split('-').nth(1).and_then(|p| p.parse().ok())),
        None => Entry::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_classified() {
        let hex = "a".repeat(64);
        assert_eq!(classify(&hex), Entry::View(&hex));
        assert_eq!(
            classify(&format!(".tmp-{hex}-42-1234")),
            Entry::Build(Some(42))
        );
        assert_eq!(classify(".tmp-x"), Entry::Build(None));
        assert_eq!(classify(&format!("{hex}.failed")), Entry::Failed(&hex));
        assert_eq!(classify("abc"), Entry::Other);
    }
}
