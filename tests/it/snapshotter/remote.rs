//! The snapshots API called directly, as containerd's metadata layer and
//! the CRI call it: remote-layer labels (which `ctr` does not send), and
//! containerd's error classes.

use strata::snapshotter::{IMAGE_LABEL, LAYER_LABEL, TARGET_LABEL};
use tonic::Code;

use super::client::Client;
use super::harness::{available, test_dir, MountGuard, StrataSnapshotter};
use super::{chain_ids, overlapping_layers, push_layers};
use crate::registry::harness::{Auth, Registry};

/// Prepares each layer of an image as containerd's unpacker does with the
/// CRI's labels; every Prepare must answer `already exists` and leave a
/// committed snapshot that containerd's Walk finds. Returns the top key.
fn unpack_with_labels(
    client: &mut Client,
    prefix: &str,
    image: &str,
    chains: &[String],
    blobs: &[String],
) -> String {
    let mut parent = String::new();
    for (i, (chain, blob)) in chains.iter().zip(blobs).enumerate() {
        let key = format!("{prefix}/{i}/extract-{i} {chain}");
        let labels = [
            (TARGET_LABEL, chain.as_str()),
            (IMAGE_LABEL, image),
            (LAYER_LABEL, blob.as_str()),
        ];
        let err = client.prepare(&key, &parent, &labels).unwrap_err();
        assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
        let filter = format!(r#"labels."{TARGET_LABEL}"=={chain},parent=={parent:?}"#);
        let found = client.list(&[&filter]).unwrap();
        assert_eq!(found.len(), 1, "{filter}: {found:?}");
        assert_eq!(found[0].kind, 3, "committed");
        assert_eq!(found[0].parent, parent);
        parent = found[0].name.clone();
    }
    parent
}

#[test]
fn cri_labels_make_strata_fetch_layers_itself() {
    if !available() {
        return;
    }
    let dir = test_dir();
    let registry = Registry::start(Auth::None, None);
    let image = format!("{}/snap/remote:t", registry.host());
    let (diff_ids, blobs) = push_layers(&image, &overlapping_layers(5, 6));
    let chains = chain_ids(&diff_ids);
    let strata = StrataSnapshotter::start(dir.path());
    let mut client = Client::connect(&strata.socket);

    let top = unpack_with_labels(&mut client, "ns1", &image, &chains, &blobs);
    // Nothing was applied through a mount: the layers are the registry's
    // blobs, recorded with their diff_ids.
    let db = strata.db();
    for (diff_id, blob) in diff_ids.iter().zip(&blobs) {
        let known: String = db
            .query_row(
                "SELECT diff_id FROM layer_blobs WHERE digest = ?1",
                [blob],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(&known, diff_id);
    }
    let mounts = client.prepare("ns1/9/run", &top, &[]).unwrap();
    let mounted = MountGuard::mount(&mounts, &dir.path().join("run"));
    let rootfs = mounted.target.clone();
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/motd")).unwrap(),
        "image 5\n"
    );
    assert_eq!(
        std::fs::read(rootfs.join("data/shared-003")).unwrap(),
        crate::registry::images::pseudo_random(9003, 64 << 10)
    );
    drop(mounted);
    client.remove("ns1/9/run").unwrap();

    // Another namespace unpacking the same image gets the same committed
    // snapshots (containerd's metadata layer records its own key for
    // them), as it would from any remote snapshotter.
    let shared = unpack_with_labels(&mut client, "ns2", &image, &chains, &blobs);
    assert_eq!(shared, top);

    // With those snapshots removed, their layers still in the store, an
    // unpack costs no download: the registry is gone, the store has the
    // blobs, and new snapshots name the stored layers.
    let bottom = client.stat(&top).unwrap().parent;
    client.remove(&top).unwrap();
    client.remove(&bottom).unwrap();
    drop(registry);
    let again = unpack_with_labels(&mut client, "ns3", &image, &chains, &blobs);
    assert_ne!(again, top);
    assert!(again.starts_with("ns3/"), "{again}");
    let layers: i64 = db
        .query_row("SELECT COUNT(*) FROM layers", [], |r| r.get(0))
        .unwrap();
    assert_eq!(layers, 2);

    // Labels that do not add up (the top layer's chain ID at the root,
    // where that layer's chain ID is its diff_id) are not trusted: an
    // ordinary Prepare, nothing recorded as committed.
    let wrong = [
        (TARGET_LABEL, chains[1].as_str()),
        (IMAGE_LABEL, image.as_str()),
        (LAYER_LABEL, blobs[1].as_str()),
    ];
    let mounts = client.prepare("ns4/1/extract", "", &wrong).unwrap();
    assert_eq!(mounts[0].r#type, "bind");
    client.remove("ns4/1/extract").unwrap();
    strata.fsck_clean(true);
}

fn code<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> Code {
    r.unwrap_err().code()
}

#[test]
fn errors_are_containerds_classes() {
    if !crate::common::require_root() {
        return;
    }
    let dir = test_dir();
    let strata = StrataSnapshotter::start(dir.path());
    let mut c = Client::connect(&strata.socket);
    c.prepare("a", "", &[]).unwrap();
    c.commit("c", "a").unwrap();
    c.prepare("a2", "c", &[]).unwrap();
    assert_eq!(code(c.prepare("a2", "c", &[])), Code::AlreadyExists);
    assert_eq!(code(c.prepare("c", "", &[])), Code::AlreadyExists);
    assert_eq!(code(c.prepare("x", "missing", &[])), Code::NotFound);
    assert_eq!(code(c.prepare("y", "a2", &[])), Code::InvalidArgument);
    assert_eq!(code(c.mounts("c")), Code::FailedPrecondition);
    assert_eq!(code(c.commit("c", "a2")), Code::AlreadyExists);
    assert_eq!(code(c.commit("d", "nope")), Code::NotFound);
    assert_eq!(code(c.remove("c")), Code::FailedPrecondition);
    assert_eq!(code(c.remove("nope")), Code::NotFound);
    assert_eq!(code(c.stat("nope")), Code::NotFound);
    assert_eq!(code(c.usage("nope")), Code::NotFound);
    assert_eq!(code(c.update_name("c", "other")), Code::InvalidArgument);
    assert_eq!(code(c.list(&["kind=="])), Code::InvalidArgument);
    let active = c.list(&["kind==active"]).unwrap();
    assert_eq!(
        active.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
        ["a2"]
    );
    c.view("v", "c").unwrap();
    assert_eq!(code(c.commit("e", "v")), Code::FailedPrecondition);
    // Nothing a failed call touched changed.
    assert_eq!(c.list(&[]).unwrap().len(), 3);
    strata.fsck_clean(true);
}

#[test]
fn a_cri_pull_through_containerd_leaves_the_layers_to_strata() {
    if !available() || !super::harness::go_available() {
        return;
    }
    let tool = super::harness::cri_pull_tool();
    let dir = test_dir();
    let registry = Registry::start(Auth::None, None);
    let image = format!("{}/snap/cri:t", registry.host());
    let (diff_ids, blobs) = push_layers(&image, &overlapping_layers(6, 6));
    let strata = StrataSnapshotter::start(dir.path());
    let containerd = super::harness::Containerd::start(dir.path(), &strata.socket);
    let pulled = std::process::Command::new(&tool)
        .arg(&containerd.address)
        .arg(&containerd.namespace)
        .arg("strata")
        .arg(&image)
        .output()
        .unwrap();
    assert!(
        pulled.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&pulled.stderr),
        containerd.log_tail()
    );
    // containerd fetched the manifest and config, not the layers: strata did.
    let content = containerd.ctr_ok(&["content", "ls", "-q"]);
    for blob in &blobs {
        assert!(
            !content.contains(blob.as_str()),
            "containerd downloaded {blob}:\n{content}"
        );
    }
    let db = strata.db();
    for (diff_id, blob) in diff_ids.iter().zip(&blobs) {
        let known: String = db
            .query_row(
                "SELECT diff_id FROM layer_blobs WHERE digest = ?1",
                [blob],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(&known, diff_id);
    }
    let out = containerd.run_rm(&image, &["/bin/busybox", "cat", "/etc/motd"]);
    assert_eq!(out, "image 6\n");
}
