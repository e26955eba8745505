//! Faults through a loopback proxy: a connection dropped mid-layer, 500s,
//! 429 with Retry-After, a flipped byte. Each pull either recovers or
//! fails with one clear line, and `strata fsck` is clean after each.

use std::time::{Duration, Instant};

use crate::registry::harness::{Auth, Registry, Strata};
use crate::registry::images::{compress, push_test_image, test_layers, Compression};
use crate::registry::proxy::{Fault, Proxy, Rule};
use crate::require_tools;
use strata::digest::Digest;

/// A registry holding a test image; returns it with the image's diff_ids
/// and the digest of its biggest (3 MB) layer blob.
fn setup(salt: u64) -> (Registry, Vec<String>, Digest) {
    let registry = Registry::start(Auth::None, None);
    let diff_ids = push_test_image(
        &format!("{}/faults/app:1", registry.host()),
        salt,
        Compression::Gzip,
        None,
    );
    let big = Digest::of(&compress(&test_layers(salt)[1], Compression::Gzip));
    (registry, diff_ids, big)
}

#[test]
fn dropped_connections_resume_with_range_requests() {
    require_tools!("docker-registry", "skopeo");
    let (registry, diff_ids, big) = setup(80);
    let proxy = Proxy::start(
        registry.port,
        vec![Rule::new(
            "GET",
            &format!("/blobs/{big}"),
            Fault::DropAfter(1_000_000),
            2,
        )],
    );
    let strata = Strata::new();
    let reference = format!("{}/faults/app:1", proxy.host());
    strata.ok(&["pull", &reference]);
    assert_eq!(proxy.faults_applied(), 2);
    let ranged = proxy.authorizations().len();
    assert!(
        ranged >= 6,
        "expected the layer to be fetched again: {ranged} requests"
    );
    assert_eq!(strata.diff_ids(&reference), diff_ids);
    strata.assert_fsck_clean();
    strata.assert_no_staging_left();
}

#[test]
fn server_errors_and_rate_limits_are_retried() {
    require_tools!("docker-registry", "skopeo");
    let (registry, diff_ids, big) = setup(81);
    let proxy = Proxy::start(
        registry.port,
        vec![
            Rule::new("GET", "/manifests/", Fault::Status(500), 2),
            Rule::new("GET", &format!("/blobs/{big}"), Fault::Status(503), 1),
            Rule::new("GET", "/blobs/", Fault::Status(429), 1),
        ],
    );
    let strata = Strata::new();
    let reference = format!("{}/faults/app:1", proxy.host());
    let started = Instant::now();
    strata.ok(&["pull", &reference]);
    assert_eq!(proxy.faults_applied(), 4);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was not honoured"
    );
    assert_eq!(strata.diff_ids(&reference), diff_ids);
    strata.assert_fsck_clean();
}

#[test]
fn a_flipped_byte_fails_clearly_and_leaves_nothing() {
    require_tools!("docker-registry", "skopeo");
    let (registry, diff_ids, big) = setup(82);
    let proxy = Proxy::start(
        registry.port,
        vec![Rule::new(
            "GET",
            &format!("/blobs/{big}"),
            Fault::FlipByte(2_000_000),
            usize::MAX,
        )],
    );
    let strata = Strata::new();
    let err = strata.fails(&["pull", &format!("{}/faults/app:1", proxy.host())]);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains(&big.to_string()),
        "the error names the layer: {err}"
    );
    assert_eq!(strata.image_count(), 0);
    strata.assert_fsck_clean();
    strata.assert_no_staging_left();
    // The same store then pulls the intact image.
    strata.ok(&["pull", &format!("{}/faults/app:1", registry.host())]);
    assert_eq!(
        strata.diff_ids(&format!("{}/faults/app:1", registry.host())),
        diff_ids
    );
    strata.assert_fsck_clean();
}

#[test]
fn a_registry_that_keeps_failing_gives_a_clear_error() {
    require_tools!("docker-registry", "skopeo");
    let (registry, _, big) = setup(83);
    let proxy = Proxy::start(
        registry.port,
        vec![Rule::new(
            "GET",
            &format!("/blobs/{big}"),
            Fault::Status(500),
            usize::MAX,
        )],
    );
    let strata = Strata::new();
    let err = strata.fails(&["pull", &format!("{}/faults/app:1", proxy.host())]);
    assert!(
        err.contains("500") && err.contains(&big.to_string()),
        "{err}"
    );
    assert_eq!(strata.image_count(), 0);
    strata.assert_fsck_clean();
    strata.assert_no_staging_left();
}

#[test]
fn bad_manifests_are_refused() {
    require_tools!("docker-registry", "skopeo");
    let (registry, _, _) = setup(84);
    let strata = Strata::new();
    let pull_with = |body: Vec<u8>, reference: &str| {
        let proxy = Proxy::start(
            registry.port,
            vec![Rule::new(
                "GET",
                "/manifests/",
                Fault::Replace(body),
                usize::MAX,
            )],
        );
        strata.fails(&["pull", &format!("{}/faults/app{reference}", proxy.host())])
    };
    let huge = pull_with(vec![b' '; 5 << 20], ":1");
    assert!(
        huge.contains("larger than the limit of 4194304 bytes"),
        "{huge}"
    );
    let both = br#"{"schemaVersion":2,"config":{"mediaType":"a","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1},"layers":[],"manifests":[]}"#;
    let ambiguous = pull_with(both.to_vec(), ":1");
    assert!(
        ambiguous.contains("both a manifest and an index"),
        "{ambiguous}"
    );
    // Fetched by digest, the bytes must hash to it.
    let wanted = Digest::of(b"something else");
    let swapped = pull_with(b"{}".to_vec(), &format!("@{wanted}"));
    assert!(
        swapped.contains("digest mismatch") && swapped.contains(&wanted.to_string()),
        "{swapped}"
    );
    assert_eq!(strata.image_count(), 0);
    strata.assert_fsck_clean();
}
