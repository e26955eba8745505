//! Generates the containerd snapshots gRPC service (src/snapshotter/)
//! from containerd's published .proto files in proto/, without protoc:
//! protox parses them into a descriptor set, tonic-prost-build writes the
//! Rust code.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/github.com/containerd/containerd/api/types/mount.proto",
        "proto/github.com/containerd/containerd/api/services/snapshots/v1/snapshots.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    println!("cargo:rerun-if-changed=proto/gogoproto/gogo.proto");
    let descriptors = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
