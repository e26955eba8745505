//! Interrupted and concurrent writers: kill -9 of `load` at random moments
//! leaves a clean store with no half image, and two processes sharing a
//! root corrupt nothing.

use std::time::Instant;

use crate::common::*;

/// An archive big enough that a load takes a noticeable moment.
fn big_archive(env: &Env) -> (std::path::PathBuf, String) {
    let tree = env.path("tree");
    make_tree(&tree, 3000, 42, 40_000);
    tar_dir(&tree, &env.path("tree.tar"));
    let id = env
        .ok(&["import", env.path("tree.tar").to_str().unwrap(), "big:1"])
        .trim()
        .to_string();
    let archive = env.path("big.tar");
    env.ok(&["save", "-o", archive.to_str().unwrap(), "big:1"]);
    (archive, id)
}

#[test]
fn kill_9_during_load_leaves_a_clean_store() {
    let source = Env::new();
    let (archive, id) = big_archive(&source);
    let env = Env::new();
    // How long an uninterrupted load takes here, to spread the kills over it.
    let start = Instant::now();
    env.ok(&["load", "-i", archive.to_str().unwrap()]);
    let full = start.elapsed();
    env.ok(&["rmi", "big:1"]);
    let mut schedule = crate::common::KillSchedule::new();
    let seed = schedule.seed;
    eprintln!(
        "kill -9 test seed: {seed} (set STRATA_TEST_SEED to replay); full load takes {full:?}"
    );
    let mut killed_midway = 0;
    for run in 0..24 {
        let delay = schedule.next_delay(full, 12);
        let mut child = env
            .cmd(&["load", "-q", "-i", archive.to_str().unwrap()])
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
        env.fsck_clean();
        let listed = env.ok(&["images", "-q", "--no-trunc"]);
        match listed.trim() {
            "" => {}
            l if l == id => {
                // Complete: it must save back to the same layers.
                let out = env.path("check.tar");
                env.ok(&["save", "-o", out.to_str().unwrap(), "big:1"]);
                env.ok(&["rmi", "big:1"]);
            }
            other => {
                panic!("run {run} (seed {seed}): a partial or unknown image is listed: {other}")
            }
        }
    }
    assert!(killed_midway >= 5, "only {killed_midway} loads were interrupted; the test did not exercise crashes (seed {seed})");
    env.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(env.ok(&["images", "-q", "--no-trunc"]).trim(), id);
    env.fsck_clean();
    // The leftovers of killed loads are garbage, and prune removes them.
    env.ok(&["system", "prune", "-f"]);
    env.fsck_clean();
    let fsck = env.ok(&["fsck"]);
    assert!(!fsck.contains("note:"), "prune left debris: {fsck}");
}

#[test]
fn concurrent_loads_and_prunes_share_a_root() {
    let source = Env::new();
    let (archive, id) = big_archive(&source);
    let small = busybox_rootfs_tar(&source, "small");
    let env = Env::new();
    let mut children = Vec::new();
    for _ in 0..3 {
        children.push(
            env.cmd(&["load", "-q", "-i", archive.to_str().unwrap()])
                .spawn()
                .unwrap(),
        );
        children.push(
            env.cmd(&["import", small.to_str().unwrap()])
                .spawn()
                .unwrap(),
        );
        children.push(
            env.cmd(&["system", "prune", "-f"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
    }
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    env.fsck_clean();
    assert!(env.ok(&["images", "-q", "--no-trunc"]).contains(&id));
    // Everything listed is complete.
    env.ok(&["save", "-o", env.path("all.tar").to_str().unwrap(), "big:1"]);
}

/// Commands started together on a root that does not exist yet all
/// succeed: the first open of a store is serialized, where SQLite would
/// answer "database is locked" to one of them now and then.
#[test]
fn commands_started_together_on_a_fresh_root_all_succeed() {
    for _ in 0..100 {
        let env = Env::new();
        let children: Vec<_> = (0..6)
            .map(|i| {
                let args: &[&str] = if i % 2 == 0 {
                    &["images", "-q"]
                } else {
                    &["system", "prune", "-f"]
                };
                env.cmd(args)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in children {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
