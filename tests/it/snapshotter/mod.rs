//! The containerd snapshotter (issue 15) against the real thing: Debian's
//! containerd 1.6 and its `ctr`, started per test with a private root,
//! state directory, socket and namespace; containerd's own conformance
//! suite through a Go harness; a gRPC client for what `ctr` cannot send
//! (the CRI's remote-layer labels). Images are built by the tests and
//! pushed by skopeo to a docker-registry on loopback.

pub mod harness;

mod apply;
mod client;
mod conformance;
mod containerd;
mod faults;
mod remote;

use crate::registry::images::{busybox, compress, pseudo_random, Compression, Layout};
use strata::digest::Digest;

/// A tar of `(path, content, mode)` files, with their directories.
pub fn layer_tar(files: &[(&str, Vec<u8>, u32)], symlinks: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dirs = std::collections::BTreeSet::new();
    for (path, _, _) in files {
        let mut p = std::path::Path::new(path).parent();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(d.to_string_lossy().to_string());
            p = d.parent();
        }
    }
    for d in dirs {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, format!("{d}/"), std::io::empty())
            .unwrap();
    }
    for (path, data, mode) in files {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(*mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, path, &data[..]).unwrap();
    }
    for (path, target) in symlinks {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        h.set_mtime(1_700_000_000);
        b.append_link(&mut h, path, target).unwrap();
    }
    b.into_inner().unwrap()
}

/// Two layers: busybox, `shared` files of 64 KiB that every image with
/// the same `shared` count holds, and `/etc/salt`; then `/etc/motd`.
/// Images of different salts share most files but no layer.
pub fn overlapping_layers(salt: u64, shared: usize) -> Vec<Vec<u8>> {
    let mut files = vec![
        ("bin/busybox".to_string(), busybox(), 0o755),
        (
            "etc/salt".to_string(),
            format!("salt {salt}\n").into_bytes(),
            0o644,
        ),
    ];
    for i in 0..shared {
        files.push((
            format!("data/shared-{i:03}"),
            pseudo_random(9000 + i as u64, 64 << 10),
            0o644,
        ));
    }
    let files: Vec<(&str, Vec<u8>, u32)> = files
        .iter()
        .map(|(p, d, m)| (p.as_str(), d.clone(), *m))
        .collect();
    let one = layer_tar(&files, &[("bin/sh", "busybox")]);
    let two = layer_tar(
        &[("etc/motd", format!("image {salt}\n").into_bytes(), 0o644)],
        &[],
    );
    vec![one, two]
}

/// Pushes `layers` as `dest` (gzip) with skopeo; returns the diff_ids
/// and the compressed layer digests.
pub fn push_layers(dest: &str, layers: &[Vec<u8>]) -> (Vec<String>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    let (descriptor, diff_ids) = layout.put_image(layers, Compression::Gzip, "amd64");
    layout.tag("t", descriptor);
    crate::registry::images::skopeo_push(&layout, "t", dest, None, false, None);
    let blobs = layers
        .iter()
        .map(|l| Digest::of(&compress(l, Compression::Gzip)).to_string())
        .collect();
    (diff_ids, blobs)
}

/// containerd's chain IDs of a stack of diff_ids, bottom first.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(p) => Digest::of(format!("{p} {d}").as_bytes()).to_string(),
        };
        out.push(next);
    }
    out
}
