//! The code tonic-prost-build generates (build.rs) from containerd's
//! .proto files (proto/), nested as their packages are so the generated
//! cross-package paths resolve.
#![allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]

pub mod containerd {
    pub mod types {
        tonic::include_proto!("containerd.types");
    }
    pub mod services {
        pub mod snapshots {
            pub mod v1 {
                tonic::include_proto!("containerd.services.snapshots.v1");
            }
        }
    }
}

pub use containerd::services::snapshots::v1 as snapshots;
pub use containerd::types;
