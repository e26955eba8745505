//! kill -9 of the snapshotter during a pull and during a run: containerd
//! recovers once it is back, fsck is clean, nothing leaks.

use std::time::Duration;

use super::harness::{available, test_dir, wait_until_for, Containerd, StrataSnapshotter};
use super::{overlapping_layers, push_layers};
use crate::registry::harness::{Auth, Registry};

#[test]
fn kill9_of_the_snapshotter_during_a_pull_and_a_run() {
    if !available() {
        return;
    }
    let dir = test_dir();
    let registry = Registry::start(Auth::None, None);
    let image = format!("{}/snap/faults:t", registry.host());
    push_layers(&image, &overlapping_layers(7, 48));
    let mut strata = StrataSnapshotter::start(dir.path());
    let containerd = Containerd::start(dir.path(), &strata.socket);

    // During a pull: once the first layer's snapshot is being prepared.
    let mut pull = containerd
        .ctr_command(&[
            "images",
            "pull",
            "--plain-http",
            "--snapshotter",
            "strata",
            &image,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until_for("a snapshot to be prepared", Duration::from_secs(60), || {
        strata.count_snapshots(Some(2)) > 0
    });
    strata.kill9();
    let status = pull.wait().unwrap();
    assert!(
        !status.success(),
        "the pull fails while the snapshotter is gone"
    );
    strata.restart();
    containerd.wait_for_reconnect();
    containerd.pull(&image);
    let out = containerd.ctr_ok(&[
        "run",
        "--rm",
        "--snapshotter",
        "strata",
        &image,
        "faults-1",
        "/bin/busybox",
        "cat",
        "/etc/motd",
    ]);
    assert_eq!(out, "image 7\n");

    // During a run: the container keeps its root filesystem (its mount
    // has a daemon of its own), and is removed once the snapshotter is back.
    containerd.ctr_ok(&[
        "run",
        "-d",
        "--snapshotter",
        "strata",
        &image,
        "faults-2",
        "/bin/busybox",
        "sleep",
        "600",
    ]);
    strata.kill9();
    let read = containerd.ctr_ok(&[
        "tasks",
        "exec",
        "--exec-id",
        "e1",
        "faults-2",
        "/bin/busybox",
        "cat",
        "/etc/salt",
    ]);
    assert_eq!(read, "salt 7\n");
    strata.restart();
    containerd.wait_for_reconnect();
    containerd.ctr_ok(&["tasks", "kill", "-s", "SIGKILL", "faults-2"]);
    wait_until_for("the task to stop", Duration::from_secs(30), || {
        containerd
            .ctr(&["tasks", "ls"])
            .stdout
            .windows(7)
            .any(|w| w == b"STOPPED")
    });
    containerd.ctr_ok(&["tasks", "delete", "faults-2"]);
    containerd.ctr_ok(&["containers", "delete", "faults-2"]);
    let ls = containerd.ctr_ok(&["snapshots", "--snapshotter", "strata", "ls"]);
    assert!(!ls.contains("faults-2"), "{ls}");
    containerd.ctr_ok(&["images", "rm", "--sync", &image]);

    // Nothing leaks: no active snapshot, mount or mount daemon; the
    // staging the killed commit left is gone once Cleanup ran (at start).
    wait_until_for(
        "containerd's gc to remove the snapshots",
        Duration::from_secs(30),
        || strata.count_snapshots(None) == 0,
    );
    assert!(super::harness::mounts_under(&strata.root).is_empty());
    wait_until_for("mount daemons to exit", Duration::from_secs(10), || {
        strata.mount_daemons().is_empty()
    });
    wait_until_for("stale staging to go", Duration::from_secs(30), || {
        strata.staging_dirs() == 0
    });
    strata.fsck_clean(false);
}

/// The socket is its owner's alone (mode 0600, in a directory it makes
/// 0711), whatever the umask it starts with: a second local user who
/// could connect could remove every snapshot.
#[test]
fn the_socket_is_its_owners_alone_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = test_dir();
    let mut strata = StrataSnapshotter::start_with_umask(dir.path(), Some("000"));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&strata.socket), 0o600, "{}", strata.socket.display());
    assert_eq!(mode(strata.socket.parent().unwrap()), 0o711);
    strata.stop();
}
