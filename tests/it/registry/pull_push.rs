//! Anonymous pull and push against the real registry: Docker's output,
//! layer reuse, mounts, unchanged manifests, errors for bad names.

use crate::registry::harness::{Auth, Registry, Strata};
use crate::registry::images::{push_test_image, Compression};
use crate::require_tools;

#[test]
fn pull_prints_docker_output_and_reuses_layers() {
    require_tools!("docker-registry", "skopeo");
    let registry = Registry::start(Auth::None, None);
    let repo = format!("{}/lib/busy", registry.host());
    let diff_ids = push_test_image(&format!("{repo}:1.0"), 1, Compression::Gzip, None);
    let strata = Strata::new();
    let out = strata.ok(&["pull", &format!("{repo}:1.0")]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1.0: Pulling from lib/busy", "{out}");
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.ends_with(": Pull complete"))
            .count(),
        3,
        "{out}"
    );
    assert!(
        lines[lines.len() - 3].starts_with("Digest: sha256:"),
        "{out}"
    );
    assert_eq!(
        lines[lines.len() - 2],
        format!("Status: Downloaded newer image for {repo}:1.0")
    );
    assert_eq!(lines[lines.len() - 1], format!("{repo}:1.0"));
    assert_eq!(strata.diff_ids(&format!("{repo}:1.0")), diff_ids);

    let again = strata.ok(&["pull", &format!("{repo}:1.0")]);
    assert_eq!(
        again
            .lines()
            .filter(|l| l.ends_with(": Already exists"))
            .count(),
        3,
        "{again}"
    );
    assert!(
        again.contains(&format!("Status: Image is up to date for {repo}:1.0")),
        "{again}"
    );
    assert_eq!(
        strata.ok(&["pull", "-q", &format!("{repo}:1.0")]),
        format!("{repo}:1.0\n")
    );

    // By digest: the same image, recorded under its repo digest.
    let digest = lines[lines.len() - 3].trim_start_matches("Digest: ");
    let by_digest = strata.ok(&["pull", &format!("{repo}@{digest}")]);
    assert!(
        by_digest.contains(&format!("{digest}: Pulling from lib/busy")),
        "{by_digest}"
    );
    assert_eq!(strata.image_count(), 1);
    strata.assert_fsck_clean();
}

#[test]
fn pull_errors_are_one_clear_line() {
    require_tools!("docker-registry", "skopeo");
    let registry = Registry::start(Auth::None, None);
    let strata = Strata::new();
    let missing = strata.fails(&["pull", &format!("{}/nothing/here:v1", registry.host())]);
    assert!(missing.contains("manifest unknown"), "{missing}");
    assert_eq!(missing.trim().lines().count(), 1, "{missing}");
    let invalid = strata.fails(&["pull", &format!("{}/UPPER:v1", registry.host())]);
    assert!(invalid.contains("invalid reference format"), "{invalid}");
    let bad_tag = strata.fails(&["pull", &format!("{}/x:-bad", registry.host())]);
    assert!(bad_tag.contains("invalid reference format"), "{bad_tag}");
    assert_eq!(strata.image_count(), 0);
    strata.assert_fsck_clean();
}

#[test]
fn push_skips_existing_blobs_mounts_and_keeps_the_manifest() {
    require_tools!("docker-registry", "skopeo");
    let registry = Registry::start(Auth::None, None);
    let source = format!("{}/team/src:v1", registry.host());
    push_test_image(&source, 2, Compression::Gzip, None);
    let strata = Strata::new();
    let pulled = strata.ok(&["pull", &source]);
    let digest = pulled
        .lines()
        .find_map(|l| l.strip_prefix("Digest: "))
        .unwrap()
        .to_string();

    // Same repository: every blob is there; the manifest is pushed unchanged.
    let same = strata.ok(&["push", &source]);
    assert_eq!(
        same.lines()
            .filter(|l| l.ends_with(": Layer already exists"))
            .count(),
        3,
        "{same}"
    );
    assert!(
        same.contains(&format!("v1: digest: {digest} size: ")),
        "{same}"
    );

    // Another repository of the same registry: mounted, not uploaded.
    let target = format!("{}/team/dst:v2", registry.host());
    strata.ok(&["tag", &source, &target]);
    let mounted = strata.ok(&["push", &target]);
    assert_eq!(
        mounted
            .lines()
            .filter(|l| l.ends_with(": Mounted from team/src"))
            .count(),
        3,
        "{mounted}"
    );
    assert!(
        mounted.starts_with(&format!(
            "The push refers to repository [{}/team/dst]",
            registry.host()
        )),
        "{mounted}"
    );
    assert!(
        mounted.contains(&format!("v2: digest: {digest} size: ")),
        "{mounted}"
    );

    // Another store pulls what was mounted, with the same diff_ids.
    let other = Strata::new();
    other.ok(&["pull", &target]);
    assert_eq!(other.diff_ids(&target), strata.diff_ids(&source));
    strata.assert_fsck_clean();
    other.assert_fsck_clean();
}

#[test]
fn push_of_a_local_image_uploads_and_pulls_back() {
    require_tools!("docker-registry");
    let registry = Registry::start(Auth::None, None);
    let strata = Strata::new();
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs.tar");
    std::fs::write(&rootfs, &crate::registry::images::test_layers(3)[1]).unwrap();
    let name = format!("{}/local/img:latest", registry.host());
    strata.ok(&["import", rootfs.to_str().unwrap(), &name]);
    let out = strata.ok(&["push", &name]);
    assert_eq!(
        out.lines().filter(|l| l.ends_with(": Pushed")).count(),
        1,
        "{out}"
    );
    // A second push finds the blob it made (deterministic compression).
    let again = strata.ok(&["push", &name]);
    assert!(again.contains(": Layer already exists"), "{again}");
    let d1 = out
        .lines()
        .last()
        .unwrap()
        .split_whitespace()
        .nth(2)
        .unwrap()
        .to_string();
    let d2 = again
        .lines()
        .last()
        .unwrap()
        .split_whitespace()
        .nth(2)
        .unwrap()
        .to_string();
    assert_eq!(d1, d2);
    let other = Strata::new();
    other.ok(&["pull", "-q", &name]);
    assert_eq!(other.diff_ids(&name), strata.diff_ids(&name));
    other.assert_fsck_clean();
}

#[test]
fn pull_all_tags_and_search() {
    require_tools!("docker-registry", "skopeo");
    let registry = Registry::start(Auth::None, None);
    let repo = format!("{}/many/tags", registry.host());
    push_test_image(&format!("{repo}:a"), 4, Compression::Gzip, None);
    push_test_image(&format!("{repo}:b"), 5, Compression::Zstd, None);
    push_test_image(
        &format!("{}/other/thing:x", registry.host()),
        6,
        Compression::None,
        None,
    );
    let strata = Strata::new();
    let out = strata.ok(&["pull", "-a", &repo]);
    assert!(
        out.contains("a: Pulling from many/tags") && out.contains("b: Pulling from many/tags"),
        "{out}"
    );
    assert_eq!(strata.image_count(), 2);
    let found = strata.ok(&["search", &format!("{}/tags", registry.host())]);
    assert!(found.starts_with("NAME"), "{found}");
    assert!(
        found.contains(&format!("{}/many/tags", registry.host())),
        "{found}"
    );
    assert!(!found.contains("other/thing"), "{found}");
    let limited = strata.ok(&["search", "--limit", "1", &format!("{}/t", registry.host())]);
    assert_eq!(limited.lines().count(), 2, "{limited}");
    let names = strata.ok(&[
        "search",
        "--format",
        "{{.Name}}|{{.IsOfficial}}",
        &format!("{}/tags", registry.host()),
    ]);
    assert_eq!(names, format!("{}/many/tags|\n", registry.host()));
}
