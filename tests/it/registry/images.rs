//! Test images, built here (never downloaded): busybox from the host plus
//! generated files, packed with the `tar` crate into an OCI layout that
//! skopeo copies into the registry.

use std::io::Write;
use std::path::{Path, PathBuf};

use strata::digest::Digest;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Deterministic bytes (an xorshift stream) so layers are reproducible.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn header(path: &str, kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_path(path).unwrap();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    h
}

fn add_file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8], mode: u32) {
    let mut h = header(path, tar::EntryType::Regular, data.len() as u64, mode);
    b.append_data(&mut h, path, data).unwrap();
}

fn add_dir(b: &mut tar::Builder<Vec<u8>>, path: &str) {
    let mut h = header(path, tar::EntryType::Directory, 0, 0o755);
    b.append_data(&mut h, path, std::io::empty()).unwrap();
}

fn add_link(b: &mut tar::Builder<Vec<u8>>, path: &str, target: &str, kind: tar::EntryType) {
    let mut h = header(path, kind, 0, 0o777);
    b.append_link(&mut h, path, target).unwrap();
}

pub fn busybox() -> Vec<u8> {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        if let Ok(data) = std::fs::read(p) {
            return data;
        }
    }
    panic!("busybox not found (apt-get install busybox-static)");
}

/// Three layers: busybox; generated files (with a symlink and a
/// hardlink); a layer that whites out a file and changes another.
/// `salt` makes the content of distinct test images distinct.
pub fn test_layers(salt: u64) -> Vec<Vec<u8>> {
    let mut one = tar::Builder::new(Vec::new());
    add_dir(&mut one, "bin");
    add_file(&mut one, "bin/busybox", &busybox(), 0o755);
    add_link(&mut one, "bin/sh", "busybox", tar::EntryType::Symlink);
    let mut two = tar::Builder::new(Vec::new());
    add_dir(&mut two, "data");
    add_dir(&mut two, "etc");
    add_file(&mut two, "etc/hostname", b"strata-test\n", 0o644);
    add_file(&mut two, "etc/salt", salt.to_string().as_bytes(), 0o644);
    for i in 0..40u64 {
        let size = [0usize, 1, 511, 512, 513, 4096, 70_000][i as usize % 7] + i as usize;
        add_file(
            &mut two,
            &format!("data/file-{i:03}"),
            &pseudo_random(salt * 1000 + i, size),
            0o644,
        );
    }
    add_file(
        &mut two,
        "data/big",
        &pseudo_random(salt + 7, 3 << 20),
        0o600,
    );
    add_link(&mut two, "data/big-link", "data/big", tar::EntryType::Link);
    let mut three = tar::Builder::new(Vec::new());
    add_dir(&mut three, "etc");
    add_file(&mut three, "etc/.wh.hostname", b"", 0o644);
    add_file(&mut three, "etc/motd", b"layer three\n", 0o644);
    vec![
        one.into_inner().unwrap(),
        two.into_inner().unwrap(),
        three.into_inner().unwrap(),
    ]
}

pub fn compress(data: &[u8], compression: Compression) -> Vec<u8> {
    match compression {
        Compression::None => data.to_vec(),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Compression::Zstd => zstd::encode_all(data, 3).unwrap(),
    }
}

fn layer_media_type(c: Compression) -> &'static str {
    match c {
        Compression::None => "application/vnd.oci.image.layer.v1.tar",
        Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
        Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
    }
}

/// An OCI image layout on disk.
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout {
            dir: dir.to_path_buf(),
        }
    }

    pub fn put_blob(&self, data: &[u8]) -> (String, u64) {
        let digest = Digest::of(data);
        std::fs::write(self.dir.join("blobs/sha256").join(digest.hex()), data).unwrap();
        (digest.to_string(), data.len() as u64)
    }

    /// Writes an image; returns its manifest descriptor (JSON) and diff_ids.
    pub fn put_image(
        &self,
        layers: &[Vec<u8>],
        compression: Compression,
        arch: &str,
    ) -> (serde_json::Value, Vec<String>) {
        let diff_ids: Vec<String> = layers.iter().map(|l| Digest::of(l).to_string()).collect();
        let config = serde_json::json!({
            "architecture": arch,
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": layers.iter().map(|_| serde_json::json!({"created_by": "strata test"})).collect::<Vec<_>>(),
        });
        let (config_digest, config_size) = self.put_blob(&serde_json::to_vec(&config).unwrap());
        let layer_descriptors: Vec<serde_json::Value> = layers
            .iter()
            .map(|l| {
                let (digest, size) = self.put_blob(&compress(l, compression));
                serde_json::json!({"mediaType": layer_media_type(compression), "digest": digest, "size": size})
            })
            .collect();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
            "layers": layer_descriptors,
        });
        let (digest, size) = self.put_blob(&serde_json::to_vec(&manifest).unwrap());
        let descriptor = serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest,
            "size": size,
            "platform": {"architecture": arch, "os": "linux"},
        });
        (descriptor, diff_ids)
    }

    /// Names `descriptor` with `tag` in index.json.
    pub fn tag(&self, tag: &str, mut descriptor: serde_json::Value) {
        descriptor["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": tag});
        let path = self.dir.join("index.json");
        let mut index: serde_json::Value = std::fs::read(&path)
            .ok()
            .and_then(|d| serde_json::from_slice(&d).ok())
            .unwrap_or_else(|| serde_json::json!({"schemaVersion": 2, "manifests": []}));
        index["manifests"].as_array_mut().unwrap().push(descriptor);
        std::fs::write(path, serde_json::to_vec(&index).unwrap()).unwrap();
    }

    /// An image index over several manifests; returns its descriptor.
    pub fn put_index(&self, manifests: &[serde_json::Value]) -> serde_json::Value {
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        });
        let (digest, size) = self.put_blob(&serde_json::to_vec(&index).unwrap());
        serde_json::json!({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest, "size": size})
    }
}

/// `skopeo copy oci:LAYOUT:TAG docker://HOST/REPO` (plain HTTP), in the
/// given manifest format (`oci` or `v2s2`); `all` copies a whole index.
pub fn skopeo_push(
    layout: &Layout,
    tag: &str,
    dest: &str,
    format: Option<&str>,
    all: bool,
    dest_creds: Option<&str>,
) {
    let mut cmd = std::process::Command::new("skopeo");
    cmd.args(["--insecure-policy", "copy", "--dest-tls-verify=false"]);
    if let Some(f) = format {
        cmd.args(["--format", f]);
    }
    if all {
        cmd.arg("--all");
    }
    if let Some(c) = dest_creds {
        cmd.args(["--dest-creds", c]);
    }
    cmd.arg(format!("oci:{}:{tag}", layout.dir.display()))
        .arg(format!("docker://{dest}"));
    super::harness::run(&mut cmd);
}

/// A whole test image in a fresh layout, pushed by skopeo; returns its diff_ids.
pub fn push_test_image(
    dest: &str,
    salt: u64,
    compression: Compression,
    format: Option<&str>,
) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    let (descriptor, diff_ids) = layout.put_image(&test_layers(salt), compression, "amd64");
    layout.tag("t", descriptor);
    skopeo_push(&layout, "t", dest, format, false, None);
    diff_ids
}
