//! strata's store as a containerd snapshotter (`strata snapshotter`):
//! containerd's snapshots API over gRPC on a unix socket, for a
//! `proxy_plugins` entry of type `snapshot`.
//!
//! What it owns and guarantees:
//! - snapshot records (`records.rs`, the `snapshots` table): keys unique
//!   across kinds, parents committed, children keep their parents;
//! - committed snapshots are strata layers (`commit.rs`): files in the
//!   content store once, entries in SQLite, the same dedup as `pull` and
//!   `load`; a committed snapshot pins its layer against gc;
//! - active snapshots and views are strata-fs mounts served by daemons of
//!   their own (`mounts.rs`), handed to containerd as binds;
//! - remote layers (`remote.rs`) are fetched by strata itself when
//!   containerd's labels name the image and the layer;
//! - the semantics of every call (`snapshots.rs`, `filter.rs`) and the
//!   gRPC face (`service.rs`, code generated from containerd's .proto
//!   files in proto/, `proto.rs`).
//!
//! Images containerd pulls are containerd's: the store holds their layers
//! (as snapshots), not their manifests or tags, so `strata images` does
//! not list them (see docs/snapshotter.md).

mod commit;
mod error;
mod filter;
mod mounts;
pub mod proto;
mod records;
mod remote;
mod service;
mod snapshots;

pub use error::SnapshotterError;
pub use filter::Filter;
pub use mounts::{run_daemon, DaemonPlan, Mount, DAEMON_COMMAND};
pub use records::{Kind, Snapshot};
pub use remote::{chain_id, IMAGE_LABEL, LAYER_LABEL, TARGET_LABEL};
pub use service::serve;
pub use snapshots::{Info, Snapshotter, Usage};

/// Where `strata snapshotter` listens unless told otherwise.
pub const DEFAULT_ADDRESS: &str = "/run/strata/snapshotter.sock";
