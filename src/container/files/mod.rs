//! The files room: a container's tree as the host reads and writes it.
//! [`upper`] is the upper directory in overlayfs conventions and the
//! changes it holds (`diff`), [`changes_tar`] writes those changes as a
//! layer tar (`commit`, `build`), [`fdwalk`] walks and writes a tree
//! through directory fds without following symlinks (`cp`, `export`),
//! [`inside`] does that work for an ordinary user's container inside a
//! user namespace with its id maps.
//!
//! This room reads only the shared ground (`error`, `sys`) and the image
//! store; `launch/rootfs.rs` uses its xattr helpers.

pub mod changes_tar;
pub(super) mod fdwalk;
pub(crate) mod inside;
pub mod upper;
