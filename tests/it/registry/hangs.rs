//! Issue 16: no hang on a hostile registry. A loopback proxy that sends
//! 64 KiB of a blob and then stays silent; blobs whose size is not their
//! descriptor's. The store's `config.json` keeps the read timeout short.

use std::time::{Duration, Instant};

use crate::registry::harness::{Auth, Registry, Strata};
use crate::registry::images::{compress, push_test_image, test_layers, Compression};
use crate::registry::proxy::{Fault, Proxy, Rule};
use crate::require_tools;
use strata::digest::Digest;

/// A registry holding a test image; returns it with the image's diff_ids,
/// the digest of its biggest (3 MB) layer blob and that blob's size.
fn setup(salt: u64) -> (Registry, Vec<String>, Digest, usize) {
    let registry = Registry::start(Auth::None, None);
    let diff_ids = push_test_image(
        &format!("{}/hangs/app:1", registry.host()),
        salt,
        Compression::Gzip,
        None,
    );
    let blob = compress(&test_layers(salt)[1], Compression::Gzip);
    (registry, diff_ids, Digest::of(&blob), blob.len())
}

/// A store whose registry reads time out after a second.
fn strata_with_short_timeouts(attempts: u32) -> Strata {
    let strata = Strata::new();
    std::fs::write(
        strata.root().join("config.json"),
        format!(r#"{{"registry": {{"read_timeout": 1, "download_attempts": {attempts}}}}}"#),
    )
    .unwrap();
    strata
}

fn blob_requests(proxy: &Proxy, digest: &Digest) -> usize {
    let path = format!("/blobs/{digest}");
    proxy
        .authorizations()
        .iter()
        .filter(|(p, _)| p.contains(&path))
        .count()
}

#[test]
fn a_stalled_blob_is_resumed_after_the_read_timeout() {
    require_tools!("docker-registry", "skopeo");
    let (registry, diff_ids, big, _) = setup(160);
    let proxy = Proxy::start(
        registry.port,
        vec![Rule::new(
            "GET",
            &format!("/blobs/{big}"),
            Fault::StallAfter(64 << 10),
            1,
        )],
    );
    let strata = strata_with_short_timeouts(5);
    let reference = format!("{}/hangs/app:1", proxy.host());
    let started = Instant::now();
    strata.ok(&["pull", &reference]);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(proxy.faults_applied(), 1);
    assert_eq!(blob_requests(&proxy, &big), 2, "one stalled, one resumed");
    assert_eq!(strata.diff_ids(&reference), diff_ids);
    strata.assert_fsck_clean();
    strata.assert_no_staging_left();
}

#[test]
fn a_registry_that_keeps_stalling_fails_with_one_clear_line() {
    require_tools!("docker-registry", "skopeo");
    let (registry, _, big, _) = setup(161);
    let proxy = Proxy::start(
        registry.port,
        vec![Rule::new(
            "GET",
            &format!("/blobs/{big}"),
            Fault::StallAfter(64 << 10),
            usize::MAX,
        )],
    );
    let strata = strata_with_short_timeouts(3);
    let started = Instant::now();
    let err = strata.fails(&["pull", &format!("{}/hangs/app:1", proxy.host())]);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains(&big.to_string()) && err.contains("stalled") && err.contains("3 attempts"),
        "the error names the blob and the stall: {err}"
    );
    assert_eq!(blob_requests(&proxy, &big), 3);
    assert_eq!(strata.image_count(), 0);
    strata.assert_fsck_clean();
    strata.assert_no_staging_left();
}

#[test]
fn a_blob_shorter_or_longer_than_its_descriptor_fails_at_once() {
    require_tools!("docker-registry", "skopeo");
    let (registry, _, big, size) = setup(162);
    for actual in [size - 1000, size + 1000] {
        let proxy = Proxy::start(
            registry.port,
            vec![Rule::new(
                "GET",
                &format!("/blobs/{big}"),
                Fault::Resize(actual),
                usize::MAX,
            )],
        );
        let strata = Strata::new();
        let err = strata.fails(&["pull", &format!("{}/hangs/app:1", proxy.host())]);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        let expected = format!("size mismatch: expected {size} bytes, got {actual}");
        assert!(
            err.contains(&big.to_string()) && err.contains(&expected),
            "{expected}: {err}"
        );
        assert_eq!(blob_requests(&proxy, &big), 1, "no retry: {err}");
        assert_eq!(strata.image_count(), 0);
        strata.assert_fsck_clean();
        strata.assert_no_staging_left();
    }
}

/// The ingest leases in a store's `locks/`.
fn leases(strata: &Strata) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(strata.root().join("locks"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("lease-"))
        .map(|e| e.path())
        .collect()
}

/// Starts `strata pull` through a proxy that stalls the big blob after
/// 64 KiB, and waits until it is stalled there.
fn stalled_pull(strata: &Strata, proxy: &Proxy) -> KillOnDrop {
    let child = strata
        .command(&["pull", "-q", &format!("{}/hangs/app:1", proxy.host())])
        .stdout(std::process::Stdio::piped())
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
    // Until the first 64 KiB are in.
    std::thread::sleep(Duration::from_millis(300));
    KillOnDrop(Some(child))
}

/// A child process killed (by pid) if the test ends before it does.
struct KillOnDrop(Option<std::process::Child>);

impl KillOnDrop {
    fn take(mut self) -> std::process::Child {
        self.0.take().unwrap()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `strata gc`, killing it (and failing) if it takes longer than `limit`.
fn gc_within(strata: &Strata, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut gc = strata
        .command(&["gc"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    loop {
        if let Some(status) = gc.try_wait().unwrap() {
            assert!(status.success(), "gc failed");
            return started.elapsed();
        }
        if started.elapsed() > limit {
            let _ = gc.kill();
            let _ = gc.wait();
            panic!("gc still waiting after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn gc_revokes_the_lease_of_a_stalled_pull_which_then_records_nothing() {
    require_tools!("docker-registry", "skopeo");
    let (registry, diff_ids, big, _) = setup(164);
    let proxy = Proxy::start(
        registry.port,
        vec![Rule::new(
            "GET",
            &format!("/blobs/{big}"),
            Fault::StallAfter(64 << 10),
            1,
        )],
    );
    let strata = Strata::new();
    std::fs::write(
        strata.root().join("config.json"),
        r#"{"registry": {"read_timeout": 120}, "gc": {"stalled_ingest": 2}}"#,
    )
    .unwrap();
    let pull = stalled_pull(&strata, &proxy);
    let took = gc_within(&strata, Duration::from_secs(20));
    assert!(took >= Duration::from_secs(1), "gc did not wait: {took:?}");
    assert!(leases(&strata).is_empty(), "the lease was revoked");
    // The pull resumes and downloads everything, but must not record
    // rows naming files gc may have removed.
    proxy.release_stalls();
    let out = pull.take().wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the revoked pull succeeded");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("revoked"), "{err}");
    assert_eq!(strata.image_count(), 0);
    strata.assert_fsck_clean();
    strata.assert_no_staging_left();
    let reference = format!("{}/hangs/app:1", registry.host());
    strata.ok(&["pull", &reference]);
    assert_eq!(strata.diff_ids(&reference), diff_ids);
    strata.assert_fsck_clean();
}

#[test]
fn a_killed_ingest_does_not_hold_gc() {
    require_tools!("docker-registry", "skopeo");
    let (registry, _, big, _) = setup(165);
    let proxy = Proxy::start(
        registry.port,
        vec![Rule::new(
            "GET",
            &format!("/blobs/{big}"),
            Fault::StallAfter(64 << 10),
            1,
        )],
    );
    // The default bound (600 s) would hold gc if the lease counted.
    let strata = Strata::new();
    std::fs::write(
        strata.root().join("config.json"),
        r#"{"registry": {"read_timeout": 120}}"#,
    )
    .unwrap();
    let mut pull = stalled_pull(&strata, &proxy).take();
    assert_eq!(leases(&strata).len(), 1);
    pull.kill().unwrap();
    pull.wait().unwrap();
    gc_within(&strata, Duration::from_secs(5));
    assert!(leases(&strata).is_empty(), "the dead ingest's lease stays");
    assert_eq!(strata.image_count(), 0);
    strata.assert_fsck_clean();
    strata.assert_no_staging_left();
}
