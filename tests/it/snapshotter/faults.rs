//! kill -9 of the snapshotter during a pull and during a run: containerd
//! recovers once it is back, fsck is clean, nothing leaks.

use std::time::{Duration, Instant};

use super::harness::{available, test_dir, Containerd, StrataSnapshotter};
use super::{overlapping_layers, push_layers};
use crate::registry::harness::{Auth, Registry};

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// containerd's connection to a proxy snapshotter backs off (up to 3 s in
/// 1.6) after the snapshotter went away: calls that reach it fail with
/// `unavailable` until it has reconnected. Waits for that by preparing
/// (and removing) a probe snapshot, as a node's kubelet retries.
fn wait_for_reconnect(containerd: &Containerd) {
    wait_until(
        "containerd to reach the snapshotter again",
        Duration::from_secs(30),
        || {
            let out = containerd.ctr(&[
                "snapshots",
                "--snapshotter",
                "strata",
                "prepare",
                "probe",
                "",
            ]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() || err.contains("unavailable"),
                "probe: {err}"
            );
            out.status.success()
        },
    );
    containerd.ctr_ok(&["snapshots", "--snapshotter", "strata", "rm", "probe"]);
}

fn staging_dirs(strata: &StrataSnapshotter) -> usize {
    std::fs::read_dir(strata.root.join("tmp"))
        .map(|d| d.count())
        .unwrap_or(0)
}

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
    wait_until("a snapshot to be prepared", Duration::from_secs(60), || {
        strata
            .db()
            .query_row("SELECT COUNT(*) FROM snapshots WHERE kind = 2", [], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap_or(0)
            > 0
    });
    strata.kill9();
    let status = pull.wait().unwrap();
    assert!(
        !status.success(),
        "the pull fails while the snapshotter is gone"
    );
    strata.restart();
    wait_for_reconnect(&containerd);
    containerd.ctr_ok(&[
        "images",
        "pull",
        "--plain-http",
        "--snapshotter",
        "strata",
        &image,
    ]);
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
    wait_for_reconnect(&containerd);
    containerd.ctr_ok(&["tasks", "kill", "-s", "SIGKILL", "faults-2"]);
    wait_until("the task to stop", Duration::from_secs(30), || {
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
    wait_until(
        "containerd's gc to remove the snapshots",
        Duration::from_secs(30),
        || {
            strata
                .db()
                .query_row("SELECT COUNT(*) FROM snapshots", [], |r| r.get::<_, i64>(0))
                .unwrap_or(1)
                == 0
        },
    );
    assert!(super::harness::mounts_under(&strata.root).is_empty());
    wait_until("mount daemons to exit", Duration::from_secs(10), || {
        strata.mount_daemons().is_empty()
    });
    wait_until("stale staging to go", Duration::from_secs(30), || {
        staging_dirs(&strata) == 0
    });
    let fsck = strata.strata(&["fsck"]);
    let out = String::from_utf8_lossy(&fsck.stdout);
    assert!(fsck.status.success() && !out.contains("note"), "{out}");
}
