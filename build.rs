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
    isal();

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

/// Builds the ISA-L shim (src/image/isal.rs) when ISA-L's header and
/// library are installed (Debian: libisal-dev), and says so with the
/// `strata_isal` cfg; without them, layers are inflated by flate2's
/// zlib-rs, somewhat more slowly, and the build says that once.
fn isal() {
    println!("cargo::rustc-check-cfg=cfg(strata_isal)");
    println!("cargo:rerun-if-changed=src/image/isal_shim.c");
    println!("cargo:rerun-if-env-changed=STRATA_NO_ISAL");
    if std::env::var_os("STRATA_NO_ISAL").is_some() {
        return;
    }
    let built = cc::Build::new()
        .file("src/image/isal_shim.c")
        .opt_level(2)
        .warnings(true)
        .cargo_warnings(false)
        .try_compile("strata_isal_shim");
    match built {
        Ok(()) => {
            println!("cargo:rustc-link-lib=dylib=isal");
            println!("cargo:rustc-cfg=strata_isal");
        }
        Err(_) => println!(
            "cargo:warning=ISA-L not found (libisal-dev): gzip layers are inflated by zlib-rs, more slowly"
        ),
    }
}
