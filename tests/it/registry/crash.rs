//! kill -9 of `pull` at random moments of a one-layer image (read,
//! inflated, hashed, parsed and written on four threads at once, its
//! files moved into place while it downloads) leaves a clean store: no
//! image, layer or row half recorded, every file it placed complete, and
//! what it left is garbage that prune removes.

use std::time::{Duration, Instant};

use crate::registry::harness::{Auth, Registry, Strata};
use crate::registry::images::{compress, pseudo_random, skopeo_push, Compression, Layout};
use crate::registry::proxy::{Fault, Proxy, Rule};
use crate::require_tools;
use strata::digest::Digest;

/// One gzip layer of `files` files (half of them compressible), ~20 MB.
fn big_layer(files: u64) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for i in 0..files {
        let size = 2_000 + (i * 7_919) % 12_000;
        let data = if i % 2 == 0 {
            pseudo_random(i, size as usize)
        } else {
            format!("line {i}\n").repeat(size as usize / 8).into_bytes()
        };
        let mut h = tar::Header::new_gnu();
        h.set_path(format!("data/d{:02}/f{i:05}", i % 50)).unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append(&h, data.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn kill_9_during_a_pull_leaves_a_clean_store() {
    require_tools!("docker-registry", "skopeo");
    let registry = Registry::start(Auth::None, None);
    let reference = format!("{}/crash/one:1", registry.host());
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    let (descriptor, diff_ids) = layout.put_image(&[big_layer(2_500)], Compression::Gzip, "amd64");
    layout.tag("t", descriptor);
    skopeo_push(&layout, "t", &reference, None, false, None);

    let strata = Strata::new();
    // How long an uninterrupted pull takes, to spread the kills over it.
    let start = Instant::now();
    strata.ok(&["pull", "-q", &reference]);
    let full = start.elapsed();
    assert_eq!(strata.diff_ids(&reference), diff_ids);
    strata.ok(&["rmi", &reference]);
    strata.ok(&["system", "prune", "-a", "-f"]);

    let mut schedule = crate::common::KillSchedule::new();
    let seed = schedule.seed;
    eprintln!(
        "kill -9 pull seed: {seed} (set STRATA_TEST_SEED to replay); a full pull takes {full:?}"
    );
    let mut killed_midway = 0;
    for run in 0..16 {
        let delay = schedule.next_delay(full, 11);
        let mut child = strata
            .command(&["pull", "-q", &reference])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let finished = child.try_wait().unwrap().is_some();
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let status = child.wait().unwrap();
        if !finished && !status.success() {
            killed_midway += 1;
        }
        strata.assert_fsck_clean();
        match strata.image_count() {
            0 => {}
            1 => {
                // Complete: its layer must rebuild to the same diff_id.
                assert_eq!(
                    strata.diff_ids(&reference),
                    diff_ids,
                    "run {run} (seed {seed})"
                );
                strata.ok(&["save", "-o", "/dev/null", &reference]);
                strata.ok(&["rmi", &reference]);
            }
            n => panic!("run {run} (seed {seed}): {n} images listed"),
        }
    }
    assert!(
        killed_midway >= 4,
        "only {killed_midway} pulls were interrupted; the test did not exercise crashes (seed {seed})"
    );
    // What the killed pulls placed is reused or garbage; the next pull completes.
    strata.ok(&["pull", "-q", &reference]);
    assert_eq!(strata.diff_ids(&reference), diff_ids);
    strata.assert_fsck_clean();
    strata.ok(&["rmi", &reference]);
    strata.ok(&["system", "prune", "-a", "-f"]);
    strata.assert_fsck_clean();
    let fsck = strata.ok(&["fsck"]);
    assert!(!fsck.contains("note:"), "prune left debris: {fsck}");
    let files = walk_count(&strata.root().join("files"));
    assert_eq!(files, 0, "files left after prune");
}

/// Regular files below `dir`.
fn walk_count(dir: &std::path::Path) -> usize {
    let mut count = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                count += 1;
            }
        }
    }
    count
}

/// The files of a layer move to their final names while it downloads
/// (about once a second), not all after its last byte: a pull stalled in
/// the middle of its one layer has files in `files/` already, none named
/// by any row, and completes cleanly once the registry answers again.
#[test]
fn files_are_placed_while_a_layer_downloads() {
    require_tools!("docker-registry", "skopeo");
    let registry = Registry::start(Auth::None, None);
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    let layer = big_layer(2_500);
    let blob = compress(&layer, Compression::Gzip);
    let (descriptor, diff_ids) = layout.put_image(&[layer], Compression::Gzip, "amd64");
    layout.tag("t", descriptor);
    skopeo_push(
        &layout,
        "t",
        &format!("{}/place/one:1", registry.host()),
        None,
        false,
        None,
    );
    let proxy = Proxy::start(
        registry.port,
        vec![Rule::new(
            "GET",
            &format!("/blobs/{}", Digest::of(&blob)),
            Fault::StallAfter(blob.len() * 2 / 3),
            1,
        )],
    );
    let strata = Strata::new();
    let reference = format!("{}/place/one:1", proxy.host());
    let mut pull = strata
        .command(&["pull", "-q", &reference])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while proxy.faults_applied() == 0 {
        assert!(
            Instant::now() < deadline,
            "the pull did not reach the stall"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Stalled two thirds into its only layer: give the placer its second.
    std::thread::sleep(Duration::from_millis(2500));
    let placed = walk_count(&strata.root().join("files"));
    let still_running = pull.try_wait().unwrap().is_none();
    proxy.release_stalls();
    let out = pull.wait_with_output().unwrap();
    assert!(still_running, "the pull ended during the stall");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        placed > 100,
        "{placed} files were in place two thirds into the layer"
    );
    assert_eq!(strata.diff_ids(&reference), diff_ids);
    strata.assert_fsck_clean();
}
