//! Bad input: each case fails with one clear line on stderr and a non-zero
//! exit, leaves the store exactly as it was, and fsck stays clean.

use crate::common::*;
use serde_json::json;

/// A store with one good image in it, and its fingerprint.
fn seeded() -> (Env, String) {
    let env = Env::new();
    let tar = busybox_rootfs_tar(&env, "good");
    env.ok(&["import", tar.to_str().unwrap(), "good:1"]);
    let snap = env.snapshot();
    (env, snap)
}

fn import_fails(env: &Env, before: &str, layer: &[u8], expect: &str) {
    let path = env.path("bad-layer.tar");
    std::fs::write(&path, layer).unwrap();
    let line = env.fails(&["import", path.to_str().unwrap(), "bad:1"]);
    assert!(
        line.to_lowercase().contains(&expect.to_lowercase()),
        "expected {expect:?} in {line:?}"
    );
    assert_eq!(
        env.snapshot(),
        before,
        "the store changed after a refused import"
    );
    env.fsck_clean();
}

fn tar_of(entries: Vec<RawEntry>) -> Vec<u8> {
    let mut t = RawTar::default();
    for e in entries {
        t.add(e);
    }
    t.finish()
}

#[test]
fn refuses_escaping_and_invalid_paths() {
    let (env, before) = seeded();
    import_fails(
        &env,
        &before,
        &tar_of(vec![RawEntry::file(b"../evil", b"x")]),
        "'..'",
    );
    import_fails(
        &env,
        &before,
        &tar_of(vec![RawEntry::file(b"a/../../evil", b"x")]),
        "'..'",
    );
    import_fails(
        &env,
        &before,
        &tar_of(vec![RawEntry::file(b"/etc/evil", b"x")]),
        "absolute",
    );
    let long = vec![b'a'; 5000];
    let mut t = RawTar::default();
    t.pax(&[("path", &long)]);
    t.add(RawEntry::file(b"short", b"x"));
    import_fails(&env, &before, &t.finish(), "path length");
}

#[test]
fn refuses_invalid_whiteouts_and_duplicates() {
    let (env, before) = seeded();
    for name in [&b"dir/.wh."[..], b".wh..", b"dir/.wh...", b".wh..wh.other"] {
        import_fails(
            &env,
            &before,
            &tar_of(vec![RawEntry::dir(b"dir/"), RawEntry::file(name, b"")]),
            "invalid whiteout",
        );
    }
    import_fails(
        &env,
        &before,
        &tar_of(vec![
            RawEntry::file(b"a", b"1"),
            RawEntry::file(b"./a", b"2"),
        ]),
        "duplicate",
    );
    import_fails(
        &env,
        &before,
        &tar_of(vec![
            RawEntry::file(b"f", b"1"),
            RawEntry::file(b"f/inside", b"2"),
        ]),
        "non-directory",
    );
}

#[test]
fn refuses_bad_hardlinks() {
    let (env, before) = seeded();
    import_fails(
        &env,
        &before,
        &tar_of(vec![RawEntry::link(b"h", b'1', b"missing")]),
        "not an earlier entry",
    );
    import_fails(
        &env,
        &before,
        &tar_of(vec![
            RawEntry::file(b"a", b"1"),
            RawEntry::link(b"h", b'1', b"../a"),
        ]),
        "escapes",
    );
    import_fails(
        &env,
        &before,
        &tar_of(vec![
            RawEntry::file(b"a", b"1"),
            RawEntry::link(b"h", b'1', b"/a"),
        ]),
        "absolute",
    );
}

#[test]
fn refuses_oversized_headers_truncation_and_bad_checksums() {
    let (env, before) = seeded();
    let big = vec![b'v'; 2 << 20];
    let mut t = RawTar::default();
    t.pax(&[("comment", &big)]);
    t.add(RawEntry::file(b"a", b"x"));
    import_fails(&env, &before, &t.finish(), "exceeds the limit");
    // Truncated inside a file's content, and inside a header.
    let full = tar_of(vec![RawEntry::file(b"a", &[7u8; 3000])]);
    import_fails(&env, &before, &full[..1500], "truncated");
    import_fails(&env, &before, &full[..300], "truncated");
    let mut bad = full.clone();
    bad[0] ^= 0x20;
    import_fails(&env, &before, &bad, "checksum");
    // A size field that claims more than the stream has.
    let lying = tar_of(vec![RawEntry {
        size_override: Some(1 << 30),
        ..RawEntry::file(b"a", b"tiny")
    }]);
    import_fails(&env, &before, &lying, "truncated");
}

/// One gzip member of `data` (a multi-member stream is what pigz writes).
pub fn gzip_member(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gz, data).unwrap();
    gz.finish().unwrap()
}

/// A gzip stream of a tar holding one file of `size` bytes of `fill`,
/// compressed a thousandfold.
pub fn gzip_one_file(size: u64, fill: u8) -> Vec<u8> {
    let header = RawTar::header(&RawEntry {
        size_override: Some(size),
        ..RawEntry::file(b"big", b"")
    });
    let mut stream = gzip_member(&header);
    let block = gzip_member(&vec![fill; 1 << 20]);
    for _ in 0..size >> 20 {
        stream.extend_from_slice(&block);
    }
    stream.extend_from_slice(&gzip_member(&[0u8; 1024]));
    stream
}

#[test]
fn refuses_a_gzip_bomb() {
    let (env, before) = seeded();
    // 2 GiB of one byte in one file, about 2 MB compressed. The check
    // weighs what is really written: zeros would be holes (see
    // image_commands::a_zero_filled_file_is_not_a_bomb), these are not.
    import_fails(
        &env,
        &before,
        &gzip_one_file(2 << 30, b'A'),
        "compression bomb",
    );
}

/// What Go's archive/tar refuses, so Docker does (`docker load`: "Error
/// processing tar file(exit status 1): archive/tar: invalid tar header"):
/// a NUL byte in a PAX path, linkpath or key, and a header after a single
/// zero block. strata accepted all four.
#[test]
fn refuses_what_gos_tar_reader_refuses() {
    let (env, before) = seeded();
    let mut t = RawTar::default();
    t.pax(&[("path", b"good\0bad")]);
    t.add(RawEntry::file(b"name", b"x"));
    import_fails(&env, &before, &t.finish(), "NUL");
    let mut t = RawTar::default();
    t.pax(&[("linkpath", b"target\0bad")]);
    t.add(RawEntry::link(b"sym", b'2', b"x"));
    import_fails(&env, &before, &t.finish(), "NUL");
    let mut t = RawTar::default();
    t.pax(&[("SCHILY.xattr.user.a\0b", b"v")]);
    t.add(RawEntry::file(b"f", b"x"));
    import_fails(&env, &before, &t.finish(), "NUL");
    let mut t = RawTar::default();
    t.add(RawEntry::file(b"f", b"x"));
    t.data.extend_from_slice(&[0u8; 512]);
    t.add(RawEntry::file(b"after", b"x"));
    import_fails(&env, &before, &t.finish(), "zero block");
}

/// A whiteout of something the same layer made, or anything below a
/// whiteout of the same layer: Docker's overlay2 refuses the layer
/// (`failed to mknod(".../x", S_IFCHR, 0): file exists`, and `open
/// .../x: not a directory`). strata accepted them.
#[test]
fn refuses_whiteouts_of_the_same_layers_entries() {
    let (env, before) = seeded();
    for (layer, expect) in [
        (
            tar_of(vec![
                RawEntry::file(b"x", b"1"),
                RawEntry::file(b".wh.x", b""),
            ]),
            "deletes an entry of the same layer",
        ),
        (
            tar_of(vec![RawEntry::dir(b"d/"), RawEntry::file(b".wh.d", b"")]),
            "deletes an entry of the same layer",
        ),
        // `d` is implied by `d/x`.
        (
            tar_of(vec![
                RawEntry::file(b"d/x", b"1"),
                RawEntry::file(b".wh.d", b""),
            ]),
            "deletes an entry of the same layer",
        ),
        (
            tar_of(vec![
                RawEntry::file(b".wh.d", b""),
                RawEntry::file(b"d/x", b"1"),
            ]),
            "non-directory",
        ),
    ] {
        import_fails(&env, &before, &layer, expect);
    }
}

/// A name of a megabyte is not echoed whole: the error line keeps its
/// start and end and says how long it was.
#[test]
fn long_names_are_cut_in_errors() {
    let (env, before) = seeded();
    let long = vec![b'n'; 1_000_000];
    let mut t = RawTar::default();
    t.pax(&[("path", &long)]);
    t.add(RawEntry::file(b"short", b"x"));
    let path = env.path("long-name.tar");
    std::fs::write(&path, t.finish()).unwrap();
    let out = env.run(&["import", path.to_str().unwrap(), "bad:1"]);
    let line = assert_fails_one_line(&out, &["import"]);
    assert!(
        out.stderr.len() < 1000,
        "{} bytes on stderr",
        out.stderr.len()
    );
    assert!(line.contains("path length"), "{line}");
    assert!(line.contains("(1000000 bytes)"), "{line}");
    assert_eq!(env.snapshot(), before);
}

/// Images for another operating system: Docker 20.10 refuses them at
/// load ("cannot load windows image on linux", exit 1) and at import
/// ("operating system is not supported").
#[test]
fn refuses_images_of_another_os() {
    let (env, before) = seeded();
    let layer = layer_tar();
    let config = serde_json::to_vec(&json!({"architecture": "amd64", "os": "windows", "config": {}, "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", sha256_hex(&layer))]}})).unwrap();
    let config_name = format!("blobs/sha256/{}", sha256_hex(&config));
    let layer_name = format!("blobs/sha256/{}", sha256_hex(&layer));
    let manifest = serde_json::to_vec(
        &json!([{"Config": config_name, "RepoTags": ["win:1"], "Layers": [layer_name]}]),
    )
    .unwrap();
    let data = archive(&[
        (&layer_name, layer.clone()),
        (&config_name, config),
        ("manifest.json", manifest),
    ]);
    load_fails(&env, &before, &data, "cannot load windows image on linux");
    let path = env.path("rootfs.tar");
    std::fs::write(&path, &layer).unwrap();
    let line = env.fails(&[
        "import",
        "--platform",
        "windows/amd64",
        path.to_str().unwrap(),
        "win:2",
    ]);
    assert!(line.contains("is not supported"), "{line}");
    assert_eq!(env.snapshot(), before);
}

/// Builds a docker-archive (Docker 25 layout) in memory from members.
fn archive(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, data.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

fn layer_tar() -> Vec<u8> {
    tar_of(vec![
        RawEntry::dir(b"etc/"),
        RawEntry::file(b"etc/x", b"content"),
    ])
}

fn config_for(diff_ids: &[String]) -> Vec<u8> {
    serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": diff_ids}})).unwrap()
}

fn load_fails(env: &Env, before: &str, data: &[u8], expect: &str) {
    let path = env.path("bad-archive.tar");
    std::fs::write(&path, data).unwrap();
    let line = env.fails(&["load", "-i", path.to_str().unwrap()]);
    assert!(
        line.to_lowercase().contains(&expect.to_lowercase()),
        "expected {expect:?} in {line:?}"
    );
    assert_eq!(
        env.snapshot(),
        before,
        "the store changed after a refused load"
    );
    env.fsck_clean();
}

/// A docker-archive whose config names another diff_id than its layer's.
fn diff_id_mismatch_archive() -> Vec<u8> {
    let layer = layer_tar();
    let wrong = format!("sha256:{}", sha256_hex(b"something else"));
    let config = config_for(&[wrong]);
    let config_name = format!("blobs/sha256/{}", sha256_hex(&config));
    let layer_name = format!("blobs/sha256/{}", sha256_hex(&layer));
    let manifest = serde_json::to_vec(
        &json!([{"Config": config_name, "RepoTags": ["bad:1"], "Layers": [layer_name]}]),
    )
    .unwrap();
    archive(&[
        (&layer_name, layer),
        (&config_name, config),
        ("manifest.json", manifest),
    ])
}

#[test]
fn refuses_a_diff_id_mismatch() {
    let (env, before) = seeded();
    load_fails(
        &env,
        &before,
        &diff_id_mismatch_archive(),
        "diff_id mismatch",
    );
}

/// A refused load removes the files it moved to their final names (the
/// test above) only when no other ingest runs: one that does may publish
/// the same content meanwhile. Beside one (here, the gc lock held shared,
/// as an ingest holds it) they stay, unreferenced, for gc, which removes
/// them once the other ingest is done.
#[test]
fn a_refused_load_beside_another_ingest_leaves_its_files_to_gc() {
    let (env, before) = seeded();
    let data = diff_id_mismatch_archive();
    let path = env.path("bad-archive.tar");
    std::fs::write(&path, &data).unwrap();
    let lock_file = std::fs::File::open(env.root.join("locks/gc.lock")).unwrap();
    let other_ingest = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockSharedNonblock)
        .map_err(|(_, e)| e)
        .unwrap();
    let line = env.fails(&["load", "-i", path.to_str().unwrap()]);
    assert!(line.contains("diff_id mismatch"), "{line}");
    let left = env.snapshot();
    assert_ne!(left, before, "the refused load's files should wait for gc");
    env.fsck_clean();
    drop(other_ingest);
    let gc = env.ok(&["gc"]);
    assert!(!gc.starts_with("removed 0 layers, 0 files"), "{gc}");
    assert_eq!(env.snapshot(), before, "gc left the refused load's files");
    env.fsck_clean();
}

/// An OCI layout with one manifest; `tweak` edits the manifest before it is written.
fn oci_layout(
    tweak: impl Fn(&mut serde_json::Value),
    index_tweak: impl Fn(&mut serde_json::Value),
) -> Vec<u8> {
    let layer = layer_tar();
    let config = config_for(&[format!("sha256:{}", sha256_hex(&layer))]);
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{}", sha256_hex(&config)), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": format!("sha256:{}", sha256_hex(&layer)), "size": layer.len()}],
    });
    tweak(&mut manifest);
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let mut index = json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{}", sha256_hex(&manifest)), "size": manifest.len(), "annotations": {"io.containerd.image.name": "docker.io/library/oci:1"}}]});
    index_tweak(&mut index);
    archive(&[
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
        (
            &format!("blobs/sha256/{}", sha256_hex(&layer)),
            layer.clone(),
        ),
        (
            &format!("blobs/sha256/{}", sha256_hex(&config)),
            config.clone(),
        ),
        (
            &format!("blobs/sha256/{}", sha256_hex(&manifest)),
            manifest.clone(),
        ),
        ("index.json", serde_json::to_vec(&index).unwrap()),
    ])
}

#[test]
fn oci_layout_descriptors_are_checked() {
    let (env, before) = seeded();
    // The well-formed layout loads (so the failures below are the tweaks).
    let good = Env::new();
    std::fs::write(good.path("ok.tar"), oci_layout(|_| {}, |_| {})).unwrap();
    assert_eq!(
        good.ok(&["load", "-i", good.path("ok.tar").to_str().unwrap()])
            .trim(),
        "Loaded image: oci:1"
    );
    load_fails(
        &env,
        &before,
        &oci_layout(|m| m["layers"][0]["size"] = json!(3), |_| {}),
        "says 3 bytes",
    );
    load_fails(
        &env,
        &before,
        &oci_layout(|m| m["config"]["size"] = json!(5), |_| {}),
        "says 5 bytes",
    );
    let other = format!("sha256:{}", sha256_hex(b"nope"));
    load_fails(
        &env,
        &before,
        &oci_layout(|m| m["layers"][0]["digest"] = json!(other.clone()), |_| {}),
        "missing",
    );
    load_fails(
        &env,
        &before,
        &oci_layout(|_| {}, |i| i["manifests"][0]["size"] = json!(10)),
        "says 10 bytes",
    );
    // A manifest that is also an index.
    load_fails(
        &env,
        &before,
        &oci_layout(|m| m["manifests"] = json!([]), |_| {}),
        "both a manifest and an index",
    );
    load_fails(
        &env,
        &before,
        b"not a tar at all, just some bytes that go on for a while.........",
        "",
    );
}

/// Clears the immutable flag it set, whatever the test's outcome (the
/// scratch directory could not be removed otherwise).
struct Immutable(std::path::PathBuf);

impl Immutable {
    fn set(path: std::path::PathBuf) -> Immutable {
        let status = std::process::Command::new("chattr")
            .arg("+i")
            .arg(&path)
            .status()
            .expect("chattr");
        assert!(status.success(), "chattr +i {}", path.display());
        Immutable(path)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .status();
    }
}

/// A new file that cannot be moved to its name in the store (its prefix
/// directory made immutable) fails the import with one line, and the
/// files of the same layer already moved into the store are removed:
/// the store is as it was, nothing is left in tmp/.
#[test]
fn an_import_whose_file_cannot_be_placed_changes_nothing() {
    if !require_root() {
        return;
    }
    let (env, before) = seeded();
    let contents: Vec<Vec<u8>> = (0..40)
        .map(|i| format!("file {i} of a layer that cannot be stored").into_bytes())
        .collect();
    let mut entries = vec![RawEntry::dir(b"data/")];
    let names: Vec<Vec<u8>> = (0..40)
        .map(|i| format!("data/f{i:02}").into_bytes())
        .collect();
    for (name, content) in names.iter().zip(&contents) {
        entries.push(RawEntry::file(name, content));
    }
    let layer = tar_of(entries);
    // The prefix directory of the 30th file: the files before it are
    // placed, then this one fails.
    let prefix = env.root.join("files").join(&sha256_hex(&contents[30])[..2]);
    let made = !prefix.exists();
    std::fs::create_dir_all(&prefix).unwrap();
    let path = env.path("unplaceable.tar");
    std::fs::write(&path, &layer).unwrap();
    let line = {
        let _frozen = Immutable::set(prefix.clone());
        env.fails(&["import", path.to_str().unwrap(), "unplaceable:1"])
    };
    assert!(
        line.contains(&sha256_hex(&contents[30])),
        "the error should name the file that could not be placed: {line}"
    );
    if made {
        std::fs::remove_dir(&prefix).unwrap();
    }
    assert_eq!(env.snapshot(), before, "the refused import left files");
    // The seeding import's spent staging is its flusher's, and may still
    // be there: waited for.
    env.assert_no_staging_left();
    env.fsck_clean();
}
