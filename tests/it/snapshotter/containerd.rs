//! `ctr` against containerd with strata's snapshotter: pull, run, and the
//! `ctr snapshots` commands agree with the store.

use std::collections::BTreeMap;

use super::harness::{available, test_dir, wait_until, Containerd, StrataSnapshotter};
use super::{chain_ids, overlapping_layers, push_layers};
use crate::registry::harness::{Auth, Registry};

/// The store key containerd uses for its key `name` (`<ns>/<n>/<name>`).
fn backend_key<'a>(
    store: &'a BTreeMap<String, (i64, Option<String>)>,
    ns: &str,
    name: &str,
) -> &'a str {
    let mut found = store
        .keys()
        .filter(|k| k.starts_with(&format!("{ns}/")) && k.ends_with(&format!("/{name}")));
    let key = found
        .next()
        .unwrap_or_else(|| panic!("no store snapshot for {name}: {store:?}"));
    assert!(found.next().is_none(), "two store snapshots for {name}");
    key
}

#[test]
fn pull_run_and_snapshot_commands_agree_with_the_store() {
    if !available() {
        return;
    }
    let dir = test_dir();
    let registry = Registry::start(Auth::None, None);
    let image = format!("{}/snap/one:t", registry.host());
    let (diff_ids, _) = push_layers(&image, &overlapping_layers(1, 8));
    let chains = chain_ids(&diff_ids);
    let strata = StrataSnapshotter::start(dir.path());
    let containerd = Containerd::start(dir.path(), &strata.socket);
    let ns = containerd.namespace.clone();

    containerd.pull(&image);
    let out = containerd.run_rm(
        &image,
        &[
            "/bin/busybox",
            "sh",
            "-c",
            "busybox cat /etc/salt /etc/motd; busybox ls /data | busybox wc -l; busybox sha256sum /data/shared-007",
        ],
    );
    let expected_sha =
        strata::digest::Digest::of(&crate::registry::images::pseudo_random(9007, 64 << 10)).hex();
    assert_eq!(
        out.lines().map(str::trim).collect::<Vec<_>>()[..3],
        ["salt 1", "image 1", "8"],
        "{out}"
    );
    assert!(out.contains(&expected_sha), "{out}");

    // ls: the image's two committed snapshots, as the store has them.
    let store = strata.snapshots();
    let ls = containerd.ctr_ok(&["snapshots", "--snapshotter", "strata", "ls"]);
    for (i, chain) in chains.iter().enumerate() {
        let line = ls
            .lines()
            .find(|l| l.starts_with(chain.as_str()))
            .unwrap_or_else(|| panic!("{chain} not in ctr snapshots ls:\n{ls}"));
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.last(), Some(&"Committed"), "{line}");
        let key = backend_key(&store, &ns, chain);
        assert_eq!(store[key].0, 3, "{key} is committed in the store");
        if i > 0 {
            assert_eq!(fields[1], chains[i - 1], "{line}");
            let parent = store[key].1.as_deref().unwrap();
            assert!(parent.ends_with(&format!("/{}", chains[i - 1])), "{parent}");
        }
    }
    // The run's active snapshot goes with its container, when containerd's
    // gc removes it from the snapshotter (after each deletion here, see
    // the harness's config).
    wait_until("the run's snapshot to be removed", || {
        strata.snapshots().values().all(|(kind, _)| *kind == 3)
    });

    // info and usage.
    let info = containerd.ctr_ok(&["snapshots", "--snapshotter", "strata", "info", &chains[1]]);
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["Kind"], "Committed", "{info}");
    assert_eq!(info["Parent"], chains[0].as_str(), "{info}");
    let usage = containerd.ctr_ok(&["snapshots", "--snapshotter", "strata", "usage", &chains[0]]);
    let row = usage
        .lines()
        .find(|l| l.starts_with(chains[0].as_str()))
        .expect(&usage);
    let inodes: u64 = row.split_whitespace().last().unwrap().parse().unwrap();
    assert!(inodes >= 8 + 5, "{usage}");

    // tree: the chain, child under parent.
    let tree = containerd.ctr_ok(&["snapshots", "--snapshotter", "strata", "tree"]);
    let p0 = tree.find(chains[0].as_str()).expect(&tree);
    let p1 = tree.find(chains[1].as_str()).expect(&tree);
    assert!(p0 < p1, "{tree}");

    // prepare, mounts, rm: an active snapshot is an overlay over its
    // parents' mount, gone with rm.
    containerd.ctr_ok(&[
        "snapshots",
        "--snapshotter",
        "strata",
        "prepare",
        "work",
        &chains[1],
    ]);
    let store = strata.snapshots();
    let key = backend_key(&store, &ns, "work");
    assert_eq!(store[key].0, 2);
    let id: i64 = strata
        .db()
        .query_row("SELECT id FROM snapshots WHERE key = ?1", [key], |r| {
            r.get(0)
        })
        .unwrap();
    let rootfs = strata.root.join(format!("snapshots/{id}/rootfs"));
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/motd")).unwrap(),
        "image 1\n"
    );
    let mounts = containerd.ctr_ok(&[
        "snapshots",
        "--snapshotter",
        "strata",
        "mounts",
        "/mnt",
        "work",
    ]);
    // A kernel overlay: the upper directory on the store's disk over the
    // parents' read-only strata-fs mount.
    assert!(mounts.contains("-t overlay"), "{mounts}");
    assert!(
        mounts.contains(&format!("lowerdir={}", rootfs.display())),
        "{mounts}"
    );
    assert!(
        mounts.contains(&format!(
            "upperdir={}",
            strata.root.join(format!("snapshots/{id}/upper")).display()
        )),
        "{mounts}"
    );
    let refused = containerd.ctr(&["snapshots", "--snapshotter", "strata", "rm", &chains[1]]);
    assert!(
        !refused.status.success(),
        "a parent with a child cannot be removed"
    );
    containerd.ctr_ok(&["snapshots", "--snapshotter", "strata", "rm", "work"]);
    // Remove deletes the row first and the directory after it (a crash in
    // between leaves an orphan directory for Cleanup), so wait for both.
    wait_until("containerd's gc to remove the snapshot", || {
        !strata.snapshots().contains_key(key) && !rootfs.exists()
    });
    assert!(super::harness::mounts_under(&strata.root).is_empty());
    assert!(
        strata.mount_daemons().is_empty(),
        "no mount daemon outlives its snapshot"
    );

    // gc keeps what snapshots use; fsck checks snapshot records too.
    let gc = strata.strata(&["gc"]);
    assert!(
        gc.status.success(),
        "{}",
        String::from_utf8_lossy(&gc.stderr)
    );
    let fsck_out = strata.fsck_clean(true);
    assert!(fsck_out.contains("2 snapshots"), "{fsck_out}");
    let again = containerd.run_rm(&image, &["/bin/busybox", "cat", "/etc/motd"]);
    assert_eq!(again, "image 1\n");
    // Images containerd pulled are containerd's: strata lists none.
    let images = strata.strata(&["images", "-q"]);
    assert_eq!(String::from_utf8_lossy(&images.stdout), "");
}

#[test]
fn three_overlapping_images_store_their_shared_files_once() {
    if !available() {
        return;
    }
    let dir = test_dir();
    let registry = Registry::start(Auth::None, None);
    let strata = StrataSnapshotter::start(dir.path());
    let containerd = Containerd::start(dir.path(), &strata.socket);
    let shared = 24;
    let mut images = Vec::new();
    for salt in 1..=3 {
        let image = format!("{}/snap/overlap{salt}:t", registry.host());
        push_layers(&image, &overlapping_layers(salt, shared));
        containerd.pull(&image);
        images.push(image);
    }
    for (i, image) in images.iter().enumerate() {
        let out = containerd.run_rm(image, &["/bin/busybox", "cat", "/etc/motd"]);
        assert_eq!(out, format!("image {}\n", i + 1));
    }
    let db = strata.db();
    let layers: i64 = db
        .query_row("SELECT COUNT(*) FROM layers", [], |r| r.get(0))
        .unwrap();
    assert_eq!(layers, 6, "two layers per image, none shared");
    // Each shared file and busybox once, whatever image holds it.
    let (files, bytes): (i64, i64) = db
        .query_row("SELECT COUNT(*), SUM(size) FROM files", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    let busybox = crate::registry::images::busybox().len() as i64;
    assert_eq!(
        files,
        1 + shared as i64 + 3 + 3,
        "busybox, shared files, 3 salts, 3 motds"
    );
    let logical = 3 * (busybox + shared as i64 * (64 << 10));
    assert!(
        bytes < logical / 2,
        "stored {bytes} bytes for {logical} bytes of image files"
    );
    strata.fsck_clean(true);
}
