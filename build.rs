//! Generates the containerd snapshots gRPC service (src/snapshotter/)
//! from containerd's published .proto files in proto/, without protoc:
//! protox parses them into a descriptor set, tonic-prost-build writes the
//! Rust code. Also records the compiler's version for `strata version`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = std::process::Command::new(rustc)
        .arg("-V")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=STRATA_RUSTC_VERSION={version}");
    println!("cargo:rerun-if-changed=build.rs");

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
