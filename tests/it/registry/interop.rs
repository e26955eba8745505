//! Interop with skopeo both ways: what skopeo pushes (Docker schema2 and
//! OCI; gzip, zstd, uncompressed; an index) strata pulls with the same
//! diff_ids; what strata pushes skopeo copies and reads.

use std::io::Read;

use crate::registry::harness::{run, Auth, Registry, Strata};
use crate::registry::images::{push_test_image, skopeo_push, test_layers, Compression, Layout};
use crate::require_tools;
use strata::digest::Digest;

#[test]
fn strata_pulls_what_skopeo_pushes() {
    require_tools!("docker-registry", "skopeo");
    let registry = Registry::start(Auth::None, None);
    let strata = Strata::new();
    let cases = [
        ("v2s2-gzip", Compression::Gzip, Some("v2s2")),
        ("oci-gzip", Compression::Gzip, Some("oci")),
        ("oci-zstd", Compression::Zstd, None),
        ("oci-plain", Compression::None, None),
    ];
    for (i, (name, compression, format)) in cases.into_iter().enumerate() {
        let reference = format!("{}/interop/{name}:t", registry.host());
        let diff_ids = push_test_image(&reference, 10 + i as u64, compression, format);
        strata.ok(&["pull", &reference]);
        assert_eq!(strata.diff_ids(&reference), diff_ids, "{name}");
    }
    strata.assert_fsck_clean();
}

#[test]
fn strata_chooses_the_platform_from_an_index() {
    require_tools!("docker-registry", "skopeo");
    let registry = Registry::start(Auth::None, None);
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    let (amd64, amd64_ids) = layout.put_image(&test_layers(20), Compression::Gzip, "amd64");
    let (arm64, arm64_ids) = layout.put_image(&test_layers(21), Compression::Zstd, "arm64");
    let index = layout.put_index(&[amd64, arm64]);
    layout.tag("multi", index);
    let reference = format!("{}/interop/multi:latest", registry.host());
    skopeo_push(&layout, "multi", &reference, None, true, None);

    let strata = Strata::new();
    strata.ok(&["pull", "--platform", "linux/arm64", &reference]);
    assert_eq!(strata.diff_ids(&reference), arm64_ids);
    strata.ok(&["pull", "--platform", "linux/amd64", &reference]);
    assert_eq!(strata.diff_ids(&reference), amd64_ids);
    let none = strata.fails(&["pull", "--platform", "linux/s390x", &reference]);
    assert!(
        none.contains("no matching manifest for linux/s390x"),
        "{none}"
    );
    strata.assert_fsck_clean();
}

/// Reads a `skopeo copy ... dir:` result: the config's diff_ids, and the
/// diff_id of each layer blob (decompressed here).
fn read_skopeo_dir(dir: &std::path::Path) -> (Vec<String>, Vec<String>, serde_json::Value) {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let blob =
        |digest: &str| std::fs::read(dir.join(digest.trim_start_matches("sha256:"))).unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&blob(manifest["config"]["digest"].as_str().unwrap())).unwrap();
    let config_ids = config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    let mut actual = Vec::new();
    for layer in manifest["layers"].as_array().unwrap() {
        let data = blob(layer["digest"].as_str().unwrap());
        assert_eq!(
            Digest::of(&data).to_string(),
            layer["digest"].as_str().unwrap()
        );
        let mut tar = Vec::new();
        match layer["mediaType"].as_str().unwrap() {
            t if t.ends_with("zstd") => tar = zstd::decode_all(&data[..]).unwrap(),
            t if t.ends_with("gzip") => {
                flate2::read::GzDecoder::new(&data[..])
                    .read_to_end(&mut tar)
                    .unwrap();
            }
            _ => tar = data,
        }
        actual.push(Digest::of(&tar).to_string());
    }
    (config_ids, actual, manifest)
}

#[test]
fn skopeo_reads_what_strata_pushes() {
    require_tools!("docker-registry", "skopeo");
    let registry = Registry::start(Auth::None, None);
    let strata = Strata::new();
    let source = format!("{}/interop/src:t", registry.host());
    let diff_ids = push_test_image(&source, 30, Compression::Gzip, Some("v2s2"));
    strata.ok(&["pull", &source]);
    // New repository names on a second registry: nothing to mount, every layer is rebuilt.
    let second = Registry::start(Auth::None, None);
    // gzip in one request per blob; zstd in 1 MB PATCH chunks.
    for (format, suffix, chunk) in [("gzip", "gzip", "16777216"), ("zstd", "zstd", "1000000")] {
        let target = format!("{}/interop/{suffix}:t", second.host());
        strata.ok(&["tag", &source, &target]);
        let out = strata.ok(&[
            "push",
            "--compression-format",
            format,
            "--chunk-size",
            chunk,
            &target,
        ]);
        assert_eq!(
            out.lines().filter(|l| l.ends_with(": Pushed")).count(),
            3,
            "{out}"
        );
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("copy");
        run(std::process::Command::new("skopeo")
            .args(["--insecure-policy", "copy", "--src-tls-verify=false"])
            .arg(format!("docker://{target}"))
            .arg(format!("dir:{}", dest.display())));
        let (config_ids, actual_ids, manifest) = read_skopeo_dir(&dest);
        assert_eq!(config_ids, diff_ids, "{format}");
        assert_eq!(
            actual_ids, diff_ids,
            "{format}: the pushed layers rebuild the pulled tars byte for byte"
        );
        let layer_type = manifest["layers"][0]["mediaType"].as_str().unwrap();
        assert!(layer_type.ends_with(suffix), "{format}: {layer_type}");
        let inspect = run(std::process::Command::new("skopeo")
            .args(["inspect", "--tls-verify=false"])
            .arg(format!("docker://{target}")));
        assert!(String::from_utf8_lossy(&inspect.stdout).contains("\"Architecture\": \"amd64\""));
    }
}
