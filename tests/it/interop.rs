//! skopeo and umoci as independent oracles: what they write, strata loads
//! with the same diff_ids; what strata saves, they read back with the same
//! diff_ids and the same file tree.

use std::path::Path;

use crate::common::*;

fn tools() -> bool {
    require_tool("skopeo") && require_tool("umoci")
}

/// The diff_ids skopeo reads from an image.
fn skopeo_diff_ids(transport: &str) -> Vec<String> {
    let out = sh(&format!("skopeo inspect --config {transport}"));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect()
}

fn strata_diff_ids(env: &Env, image: &str) -> Vec<String> {
    let out = env.ok(&["inspect", "-f", "{{json .RootFS.Layers}}", image]);
    serde_json::from_str(out.trim()).unwrap()
}

/// A two-layer OCI layout made by umoci: a generated tree, then a change
/// set with a deleted file and a replaced directory (whiteouts).
fn umoci_layout(env: &Env) -> std::path::PathBuf {
    let layout = env.path("umoci-layout");
    let bundle = env.path("bundle");
    sh(&format!(
        "umoci init --layout {l} && umoci new --image {l}:base",
        l = layout.display()
    ));
    sh(&format!(
        "umoci unpack --rootless --image {}:base {}",
        layout.display(),
        bundle.display()
    ));
    let rootfs = bundle.join("rootfs");
    make_tree(&rootfs, 120, 3, 10_000);
    std::fs::write(rootfs.join("hello.txt"), "hello\n").unwrap();
    sh(&format!(
        "umoci repack --image {}:base {}",
        layout.display(),
        bundle.display()
    ));
    // A bundle repacks onto the image it was unpacked from: unpack again.
    let bundle = env.path("bundle2");
    sh(&format!(
        "umoci unpack --rootless --image {}:base {}",
        layout.display(),
        bundle.display()
    ));
    let rootfs = bundle.join("rootfs");
    std::fs::remove_file(rootfs.join("hello.txt")).unwrap();
    std::fs::remove_dir_all(rootfs.join("d01")).unwrap();
    std::fs::create_dir(rootfs.join("d01")).unwrap();
    std::fs::write(rootfs.join("d01/new"), "new\n").unwrap();
    sh(&format!(
        "umoci repack --image {}:base {}",
        layout.display(),
        bundle.display()
    ));
    sh(&format!(
        "umoci config --image {l}:base --tag v2 --config.cmd /bin/sh",
        l = layout.display()
    ));
    layout
}

#[test]
fn loads_what_umoci_and_skopeo_write() {
    if !tools() {
        return;
    }
    let env = Env::new();
    let layout = umoci_layout(&env);
    let expected = skopeo_diff_ids(&format!("oci:{}:v2", layout.display()));
    assert_eq!(expected.len(), 2);
    // OCI layout directory (gzip layers, from umoci): loaded by directory.
    let single = env.path("single");
    sh(&format!(
        "skopeo copy -q oci:{}:v2 oci:{}:v2",
        layout.display(),
        single.display()
    ));
    env.ok(&["load", "-i", single.to_str().unwrap()]);
    let id = env.ok(&["images", "-q", "--no-trunc"]).trim().to_string();
    assert_eq!(strata_diff_ids(&env, &id), expected);
    // docker-archive, oci-archive, and zstd layers, written by skopeo.
    for (name, dest) in [
        ("docker.tar", "docker-archive:{}:umoci/test:v2"),
        ("oci.tar", "oci-archive:{}:v2"),
    ] {
        let path = env.path(name);
        sh(&format!(
            "skopeo copy -q oci:{}:v2 {}",
            layout.display(),
            dest.replace("{}", path.to_str().unwrap())
        ));
        let other = Env::new();
        other.ok(&["load", "-i", path.to_str().unwrap()]);
        let id = other.ok(&["images", "-q", "--no-trunc"]).trim().to_string();
        assert_eq!(strata_diff_ids(&other, &id), expected, "{name}");
        other.fsck_clean();
    }
    let zstd_dir = env.path("zstd");
    sh(&format!(
        "skopeo copy -q --dest-compress-format zstd oci:{}:v2 oci:{}:v2",
        layout.display(),
        zstd_dir.display()
    ));
    let other = Env::new();
    other.ok(&["load", "-i", zstd_dir.to_str().unwrap()]);
    let id = other.ok(&["images", "-q", "--no-trunc"]).trim().to_string();
    assert_eq!(strata_diff_ids(&other, &id), expected);
    other.fsck_clean();
    env.fsck_clean();
}

fn tree_listing(dir: &Path) -> String {
    sh(&format!("cd {} && find . -mindepth 1 ! -path './etc/passwd' -printf '%y %m %s %l %P\\n' | sort && find . -type f -exec sha256sum {{}} + | sort -k2", dir.display()))
}

#[test]
fn skopeo_reads_what_strata_saves() {
    if !tools() {
        return;
    }
    let env = Env::new();
    let tree = env.path("tree");
    make_tree(&tree, 150, 9, 30_000);
    std::os::unix::fs::symlink("d00/e00/f0.bin", tree.join("link")).unwrap();
    sh(&format!(
        "tar -C {} -czf {} .",
        tree.display(),
        env.path("tree.tgz").display()
    ));
    env.ok(&[
        "import",
        "-c",
        "ENV X=1",
        env.path("tree.tgz").to_str().unwrap(),
        "saved:1",
    ]);
    let diff_ids = strata_diff_ids(&env, "saved:1");
    for (format, transport) in [
        ("docker-archive", "docker-archive:{}"),
        ("oci-archive", "oci-archive:{}"),
        ("oci-dir", "oci:{}:1"),
    ] {
        let out = env.path(&format!("out-{format}"));
        env.ok(&[
            "save",
            "--format",
            format,
            "-o",
            out.to_str().unwrap(),
            "saved:1",
        ]);
        let t = transport.replace("{}", out.to_str().unwrap());
        assert_eq!(skopeo_diff_ids(&t), diff_ids, "{format}");
        // skopeo copies it (verifying every digest), umoci unpacks the copy.
        let copy = env.path(&format!("copy-{format}"));
        sh(&format!("skopeo copy -q {t} oci:{}:x", copy.display()));
        let bundle = env.path(&format!("bundle-{format}"));
        sh(&format!(
            "umoci unpack --rootless --image {}:x {}",
            copy.display(),
            bundle.display()
        ));
        assert_eq!(
            tree_listing(&bundle.join("rootfs")),
            tree_listing(&tree),
            "{format}: the unpacked tree differs"
        );
    }
}

#[test]
fn podman_loads_what_strata_saves() {
    if !require_tool("podman") || !require_root() {
        return;
    }
    let env = Env::new();
    let tar = busybox_rootfs_tar(&env, "pm");
    env.ok(&[
        "import",
        tar.to_str().unwrap(),
        "localhost/strata-podman-test:1",
    ]);
    let diff_ids = strata_diff_ids(&env, "localhost/strata-podman-test:1");
    let out = env.path("pm-save.tar");
    env.ok(&[
        "save",
        "-o",
        out.to_str().unwrap(),
        "localhost/strata-podman-test:1",
    ]);
    let storage = env.path("podman-storage");
    // podman refuses a runroot path longer than 50 characters.
    let runroot_dir = tempfile::Builder::new()
        .prefix("spm")
        .tempdir_in("/tmp")
        .unwrap();
    let runroot = runroot_dir.path();
    let podman = format!(
        "podman --root {} --runroot {} --storage-driver vfs",
        storage.display(),
        runroot.display()
    );
    sh(&format!("{podman} load -q -i {}", out.display()));
    let inspected = sh(&format!("{podman} image inspect --format '{{{{json .RootFS.Layers}}}}' localhost/strata-podman-test:1"));
    let podman_ids: Vec<String> = serde_json::from_str(inspected.trim()).unwrap();
    assert_eq!(podman_ids, diff_ids);
    let _ = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{podman} rmi -a -f >/dev/null 2>&1"))
        .status();
}
